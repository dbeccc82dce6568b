"""The acceptor over TCP: listen, answer each A-ASSOCIATE-RQ, run a handler (PS3.8 §9.2, §10).

:class:`AssociationServer` owns the listening sockets and the running associations. Each
connection gets an :class:`~dicomwire.ul.association.Association` whose
:class:`~dicomwire.ul.session.AssociationSession` answers the request through the
server's :class:`~dicomwire.ul.negotiation.AcceptorPolicy`, counting the associations
established now against the policy's limit; once established, the handler runs in its
own task.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable

from ..errors import DicomWireError
from .association import Association
from .negotiation import AcceptorPolicy
from .session import AssociationSession
from .timeouts import Timeouts
from .tls import TLSConfig, server_context

__all__ = ["AssociationHandler", "AssociationServer"]

log = logging.getLogger("dicomwire.ul")

AssociationHandler = Callable[[Association], Awaitable[None]]


class AssociationServer:
    """Accept associations on one or more addresses and run ``handler`` for each.

    ``policy`` answers each A-ASSOCIATE-RQ (see :class:`AcceptorPolicy`); the handler runs
    once the association is established and should consume P-DATA until
    :meth:`Association.receive` returns None, then call ``release_response()``.
    """

    def __init__(
        self,
        policy: AcceptorPolicy,
        handler: AssociationHandler,
        *,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.policy = policy
        self.handler = handler
        self.timeouts = timeouts or Timeouts(dimse=None)
        self._servers: list[asyncio.Server] = []
        self._associations: set[Association] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._established = 0
        #: Called with each new connection's association (e.g. the audit trail watches
        #: how it ends: failed TLS handshake, rejection).
        self.connection_observers: list[Callable[[Association], None]] = []

    @property
    def active_associations(self) -> int:
        """Associations established now (their handlers still running)."""
        return self._established

    @property
    def associations(self) -> frozenset[Association]:
        """The associations whose connection is open now (to observe them; read-only)."""
        return frozenset(self._associations)

    @property
    def sockets(self) -> list[socket.socket]:
        return [s for server in self._servers for s in server.sockets]

    @property
    def port(self) -> int:
        """The first listening port (useful with port 0)."""
        return int(self.sockets[0].getsockname()[1])

    async def start(
        self,
        host: str | None = "127.0.0.1",
        port: int = 11112,
        tls: TLSConfig | None = None,
        *,
        reuse_port: bool = False,
    ) -> None:
        """Start listening; ``host`` None listens on every address (IPv4 and IPv6).

        With ``tls`` this listener accepts only PS3.15 secure transport connections; call
        start() once per port to serve plain TCP and TLS side by side. ``reuse_port``
        (SO_REUSEPORT) lets several processes share the port; the kernel spreads
        connections among them.
        """
        loop = asyncio.get_running_loop()
        context = server_context(tls) if tls is not None else None
        handshake_timeout = tls.handshake_timeout if tls is not None else 15.0

        def factory() -> Association:
            return self._association(context, handshake_timeout)

        server = await loop.create_server(
            factory, host, port, reuse_address=True, reuse_port=reuse_port or None
        )
        self._servers.append(server)
        log.info("listening on %s", ", ".join(str(s.getsockname()) for s in server.sockets))

    def _association(
        self, tls_context: ssl.SSLContext | None, handshake_timeout: float
    ) -> Association:
        """A new connection's association (its asyncio protocol)."""
        session = AssociationSession(
            requestor=False,
            policy=self.policy,
            active_associations=lambda: self._established,
        )
        association = Association(
            session,
            timeouts=self.timeouts,
            tls_context=tls_context,
            handshake_timeout=handshake_timeout,
        )
        association.on_established = self._start_handler
        for observe in self.connection_observers:
            observe(association)
        self._associations.add(association)
        association.closed.add_done_callback(lambda _: self._associations.discard(association))
        return association

    def _start_handler(self, association: Association) -> None:
        self._established += 1
        task = asyncio.get_running_loop().create_task(self._run(association))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, association: Association) -> None:
        try:
            await self.handler(association)
        except DicomWireError as exc:
            log.info("association ended: %s", exc)
        except Exception:
            log.exception("association handler failed; aborting the association")
            association.abort()
        finally:
            self._established -= 1
            if association.release_requested:
                association.release_response()
            elif association.is_established:
                association.abort()
            await association.closed_or_timeout(self.timeouts.artim)

    def close(self) -> None:
        """Stop accepting new connections."""
        for server in self._servers:
            server.close()

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting, let running associations finish for ``grace`` s, abort the rest."""
        self.close()
        for server in self._servers:
            await server.wait_closed()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for association in list(self._associations):
                association.force_abort()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        for association in list(self._associations):
            association.cut()

    async def __aenter__(self) -> AssociationServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown(grace=1.0)
