"""The dicomwire node: one AE answering associations (PS3.8 acceptor, PS3.7 DIMSE SCP).

Today the node is a Verification SCP; the storage and other service issues add their
handlers to :data:`HANDLERS`. ``dicomwire serve`` and ``make serve`` run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

from ..dimse.commands import CommandField
from ..dimse.session import DimseSession, Handler
from ..ul.association import Association, AssociationServer, Timeouts
from ..ul.negotiation import (
    DEFAULT_MAX_PDU_LENGTH,
    DEFAULT_TRANSFER_SYNTAXES,
    AcceptorPolicy,
    KnownNode,
)
from .verification import VERIFICATION_SOP_CLASS, handle_echo

__all__ = ["HANDLERS", "NodeConfig", "build_policy", "handle_association", "run_node"]

log = logging.getLogger("dicomwire.services.node")

#: Command field (or SOP class and command field) of a request -> its handler.
HANDLERS: dict[int | tuple[str, int], Handler] = {CommandField.C_ECHO_RQ: handle_echo}


@dataclass(slots=True)
class NodeConfig:
    """What a node is: AE titles, where it listens, limits, known remote nodes."""

    ae_titles: list[str] = field(default_factory=lambda: ["DICOMWIRE"])
    host: str | None = None
    port: int = 11112
    storage: Path = Path("data")
    promiscuous: bool = False
    max_associations: int = 100
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH
    known_nodes: list[KnownNode] = field(default_factory=list)
    timeouts: Timeouts = field(default_factory=lambda: Timeouts(dimse=None))


def build_policy(config: NodeConfig) -> AcceptorPolicy:
    """The acceptance policy a node with ``config`` applies."""
    return AcceptorPolicy(
        ae_titles=tuple(config.ae_titles),
        promiscuous=config.promiscuous,
        known_nodes=tuple(config.known_nodes),
        abstract_syntaxes={VERIFICATION_SOP_CLASS: DEFAULT_TRANSFER_SYNTAXES},
        max_pdu_length=config.max_pdu_length,
        max_associations=config.max_associations,
    )


async def handle_association(association: Association) -> None:
    """Serve DIMSE requests on one association until the peer releases or aborts."""
    await DimseSession(association, handlers=HANDLERS).run()


async def run_node(config: NodeConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run the node until SIGINT or SIGTERM, then shut down gracefully."""
    server = AssociationServer(build_policy(config), handle_association, timeouts=config.timeouts)
    await server.start(config.host, config.port)
    log.warning("dicomwire node %s listening on port %d", "/".join(config.ae_titles), server.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.warning("shutting down")
        await server.shutdown(grace=10.0)
