"""C-MOVE and C-GET SCP (PS3.4 C.4.2, C.4.3): PLACEHOLDER until the Q/R retrieve work lands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...dimse.session import Request

if TYPE_CHECKING:
    from ..index import Index
    from ..node import Node
    from .service import QueryRetrieveConfig

__all__ = ["RetrieveSCP"]


class RetrieveSCP:
    """Answers C-MOVE-RQ and C-GET-RQ for every Q/R model from ``index``."""

    def __init__(self, index: Index, config: QueryRetrieveConfig) -> None:
        self.index = index
        self.config = config
        self.node: Node | None = None

    def attach(self, node: Node) -> None:
        """The node whose AE directory names C-MOVE destinations and whose AE calls out."""
        self.node = node

    async def stop(self) -> None:
        """Wait for (or end) the sub-operations still running."""

    async def handle_move(self, request: Request) -> int:
        return 0xC000  # placeholder: replaced by the C-MOVE SCP

    async def handle_get(self, request: Request) -> int:
        return 0xC000  # placeholder: replaced by the C-GET SCP
