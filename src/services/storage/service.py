"""The Storage SCP as a node service (PS3.4 Annex B): bindings, sinks and its [storage] table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...dimse.commands import CommandField
from ...dimse.session import DimseSession, Handler, SinkFactory
from ..service import ANY_SOP_CLASS, Binding, HandlerKey, Service
from .scp import StorageConfig, StorageSCP
from .sop_classes import storage_sop_classes

__all__ = ["Storage"]


class Storage(Service):
    """C-STORE SCP for every storage SOP class; with ``accept_any`` for any abstract syntax.

    ``accept_any`` is the node's promiscuous mode: an abstract syntax nobody declared is
    accepted with the storage transfer syntaxes and its C-STOREs stored like any other.
    """

    name = "storage"
    section = "storage"
    config_type = StorageConfig

    def __init__(self, config: StorageConfig | None = None, *, accept_any: bool = False) -> None:
        self.config = config or StorageConfig()
        self.scp = StorageSCP(self.config)
        self.accept_any = accept_any

    def bindings(self) -> Sequence[Binding]:
        syntaxes = tuple(self.config.transfer_syntaxes)
        handlers: dict[int, Handler] = {CommandField.C_STORE_RQ: self.scp.handle}
        classes = list(storage_sop_classes())
        if self.accept_any:
            classes.append(ANY_SOP_CLASS)
        return [Binding(uid, syntaxes, handlers) for uid in classes]

    def sinks(self, session: DimseSession) -> Mapping[HandlerKey, SinkFactory]:
        return {CommandField.C_STORE_RQ: self.scp.sink_for(session)}
