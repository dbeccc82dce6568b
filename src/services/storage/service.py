"""The Storage SCP as a node service (PS3.4 Annex B): bindings, sinks and its [storage] table."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from ...dimse.commands import CommandField
from ...dimse.session import DimseSession, Handler, SinkFactory
from ...dimse.status import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    DUPLICATE_SOP_INSTANCE,
    OUT_OF_RESOURCES,
    SOP_CLASS_NOT_SUPPORTED,
    SUCCESS,
)
from ...errors import IndexUnavailableError
from ..service import ANY_SOP_CLASS, Binding, HandlerKey, Service, StatusDeclaration, StatusTable
from .backend import LOCAL_STORAGE, StorageBackend
from .scp import StorageConfig, StorageSCP
from .sop_classes import storage_sop_classes

if TYPE_CHECKING:
    from ..index import Index
    from ..node import Node

__all__ = ["Storage"]

log = logging.getLogger("dicomwire.services.storage.service")


class Storage(Service):
    """C-STORE SCP for every storage SOP class; with ``accept_any`` for any abstract syntax.

    ``accept_any`` is the node's promiscuous mode: an abstract syntax nobody declared is
    accepted with the storage transfer syntaxes and its C-STOREs stored like any other.
    ``index``: each stored instance is indexed as its file becomes visible (the node's
    Query/Retrieve index); it is opened when the node starts.
    """

    name = "storage"
    section = "storage"
    config_type = StorageConfig
    statuses: ClassVar[StatusTable] = {
        "C-STORE": (
            StatusDeclaration(SUCCESS, "the instance is stored (and indexed)"),
            StatusDeclaration(
                OUT_OF_RESOURCES, "the file or index cannot be written, or the index is down"
            ),
            StatusDeclaration(
                DATASET_MISMATCH, "the data set's SOP Class/Instance UIDs differ from the command's"
            ),
            StatusDeclaration(
                SOP_CLASS_NOT_SUPPORTED, "the command's SOP class is not the context's"
            ),
            StatusDeclaration(
                DUPLICATE_SOP_INSTANCE, "the instance exists and [storage] duplicates = reject"
            ),
            StatusDeclaration(
                CANNOT_UNDERSTAND, "the data set is truncated, lacks its UIDs or cannot be indexed"
            ),
        )
    }

    def __init__(
        self,
        config: StorageConfig | None = None,
        *,
        accept_any: bool = False,
        index: Index | None = None,
        backend: StorageBackend = LOCAL_STORAGE,
    ) -> None:
        self.config = config or StorageConfig()
        self.index = index
        self.scp = StorageSCP(self.config, None if self.config.discard else index, backend)
        self.accept_any = accept_any

    async def start(self, node: Node) -> None:
        """Open the index now; if it cannot be opened, say so (``dicomwire serve`` has
        already refused to start: :func:`~dicomwire.services.node.prepare_node`). Each
        C-STORE then tries again and is refused with A700 while it fails."""
        if self.scp.index is not None:
            try:
                self.scp.index.open()
            except IndexUnavailableError as exc:
                log.error("%s: every C-STORE is refused (A700) until it opens", exc)

    async def stop(self) -> None:
        """Close the index's connections (it reopens if used again)."""
        if self.scp.index is not None:
            self.scp.index.close()

    def bindings(self) -> Sequence[Binding]:
        syntaxes = tuple(self.config.transfer_syntaxes)
        handlers: dict[int, Handler] = {CommandField.C_STORE_RQ: self.scp.handle}
        classes = list(storage_sop_classes())
        if self.accept_any:
            classes.append(ANY_SOP_CLASS)
        return [Binding(uid, syntaxes, handlers) for uid in classes]

    def sinks(self, session: DimseSession) -> Mapping[HandlerKey, SinkFactory]:
        return {CommandField.C_STORE_RQ: self.scp.sink_for(session)}
