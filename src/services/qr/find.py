"""C-FIND SCP over the index (PS3.4 C.4.1): PLACEHOLDER until the Q/R find work lands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...dimse.session import Request

if TYPE_CHECKING:
    from ..index import Index
    from .service import QueryRetrieveConfig

__all__ = ["FindSCP"]


class FindSCP:
    """Answers C-FIND-RQ for every Q/R model from ``index``."""

    def __init__(self, index: Index, config: QueryRetrieveConfig) -> None:
        self.index = index
        self.config = config

    async def handle(self, request: Request) -> int:
        return 0xC000  # placeholder: replaced by the C-FIND SCP
