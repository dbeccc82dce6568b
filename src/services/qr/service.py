"""The Query/Retrieve SCP as a node service (PS3.4 Annex C): C-FIND, C-MOVE and C-GET.

One :class:`QueryRetrieve` serves every model of :data:`~.models.MODELS` over an
:class:`~dicomwire.services.index.Index`: C-FIND from :mod:`.find`, C-MOVE and C-GET from
:mod:`.retrieve`. Relational queries are offered by SOP Class Extended Negotiation (PS3.4
C.5.1.1, C.5.2.1, C.5.3.1) when ``relational`` is set. C-GET's C-STOREs go on storage
contexts the requestor proposed with the SCP role, so the service lets the requestor take
it for every storage SOP class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ...dimse.commands import CommandField
from ...dimse.session import Handler
from ...dimse.status import (
    CANCEL,
    IDENTIFIER_MISMATCH,
    MOVE_DESTINATION_UNKNOWN,
    OUT_OF_RESOURCES,
    OUT_OF_RESOURCES_SUBOPS,
    PENDING,
    SUBOPS_WARNING,
    SUCCESS,
)
from ..service import Binding, Service, StatusDeclaration, StatusTable
from ..storage.sop_classes import STORAGE_TRANSFER_SYNTAXES, storage_sop_classes
from .find import UNABLE_TO_PROCESS
from .models import MODELS
from .retrieve import INDEX_FAILURE

_RETRIEVE_STATUSES = (
    StatusDeclaration(PENDING, "sub-operations continue (with the counts)"),
    StatusDeclaration(SUCCESS, "every sub-operation succeeded"),
    StatusDeclaration(SUBOPS_WARNING, "sub-operations complete, some failed or warned"),
    StatusDeclaration(OUT_OF_RESOURCES_SUBOPS, "every sub-operation failed"),
    StatusDeclaration(CANCEL, "C-CANCEL received: the counts of what was done"),
    StatusDeclaration(IDENTIFIER_MISMATCH, "the identifier is not valid for the model/level"),
    StatusDeclaration(INDEX_FAILURE, "the index cannot be read"),
)

if TYPE_CHECKING:
    from ..index import Index
    from ..node import Node

__all__ = ["QueryRetrieve", "QueryRetrieveConfig"]


@dataclass(slots=True)
class QueryRetrieveConfig:
    """The ``[query_retrieve]`` table: limits and how progress is reported."""

    #: Agree to relational queries and retrieves when the requestor asks (PS3.4 C.5.1.1).
    relational: bool = True
    #: Most C-FIND responses per request (0: no limit); beyond it the query ends with
    #: A700 "Refused: Out of resources" and a comment saying so.
    max_find_responses: int = 0
    #: Seconds between C-MOVE/C-GET pending responses (0: one per sub-operation).
    pending_interval: float = 1.0
    #: C-MOVEs served at once (each opens an association to its destination).
    max_concurrent_moves: int = 8


class QueryRetrieve(Service):
    """C-FIND, C-MOVE and C-GET SCP over an index, for every Q/R information model."""

    name = "query-retrieve"
    section = "query_retrieve"
    config_type = QueryRetrieveConfig
    statuses: ClassVar[StatusTable] = {
        "C-FIND": (
            StatusDeclaration(PENDING, "one response per match"),
            StatusDeclaration(SUCCESS, "matching is complete"),
            StatusDeclaration(CANCEL, "C-CANCEL received: matching stopped"),
            StatusDeclaration(
                OUT_OF_RESOURCES, "more matches than [query_retrieve] max_find_responses"
            ),
            StatusDeclaration(IDENTIFIER_MISMATCH, "the identifier is not valid for the model"),
            StatusDeclaration(UNABLE_TO_PROCESS, "the index cannot be read"),
        ),
        "C-MOVE": (
            *_RETRIEVE_STATUSES,
            StatusDeclaration(MOVE_DESTINATION_UNKNOWN, "the move destination is not in [[nodes]]"),
        ),
        "C-GET": _RETRIEVE_STATUSES,
    }

    def __init__(self, index: Index, config: QueryRetrieveConfig | None = None) -> None:
        from .find import FindSCP
        from .retrieve import RetrieveSCP

        self.index = index
        self.config = config or QueryRetrieveConfig()
        self.find = FindSCP(index, self.config)
        self.retrieve = RetrieveSCP(index, self.config)

    async def start(self, node: Node) -> None:
        """C-MOVE destinations come from the node's AE directory; its AE title calls out."""
        self.retrieve.attach(node)

    async def stop(self) -> None:
        await self.retrieve.stop()

    def _relational(self, info: bytes) -> bytes | None:
        """PS3.4 C.5.1.1: byte 0 relational-queries (1 = asked); agreed when configured."""
        if not info:
            return None
        agreed = 1 if info[0] == 1 and self.config.relational else 0
        return bytes([agreed]) + bytes(info[1:2]) if len(info) > 1 else bytes([agreed])

    def bindings(self) -> Sequence[Binding]:
        handlers: dict[str, dict[int, Handler]] = {
            "find": {CommandField.C_FIND_RQ: self.find.handle},
            "move": {CommandField.C_MOVE_RQ: self.retrieve.handle_move},
            "get": {CommandField.C_GET_RQ: self.retrieve.handle_get},
        }
        bindings = [
            Binding(uid, handlers=handlers[operation], extended_negotiation=self._relational)
            for model in MODELS
            for operation, uid in model.sop_classes.items()
        ]
        # C-GET sends C-STOREs back: the requestor is the SCP of the storage classes.
        bindings += [
            Binding(uid, STORAGE_TRANSFER_SYNTAXES, requestor_may_be_scp=True)
            for uid in storage_sop_classes()
        ]
        return bindings
