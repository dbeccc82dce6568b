"""The asyncio side of the Upper Layer: associations over TCP (PS3.8 §9, §10 TCP/IP mapping).

A thin adapter. :class:`Association` is the :class:`asyncio.BufferedProtocol` of one
connection: it receives straight into the framer's buffers (through a PS3.15 TLS session
when there is one), feeds its :class:`~dicomwire.ul.session.AssociationSession` and carries
out the events it returns: write PDUs, arm ARTIM, close the transport, queue P-DATA for the
application, wake whoever waits. Every association-level decision (what to answer, what
the AC means, release collisions, why it ended) is the session's. No thread per
association, no polling.

- requestor: ``async with connect(host, port, RequestorConfig(...)) as association`` or
  ``association = await connect(...)``;
- acceptor: :class:`~dicomwire.ul.server.AssociationServer` accepts connections and hands
  each established association to an async handler.

:class:`Timeouts` (:mod:`dicomwire.ul.timeouts`), :func:`run_event_loop`
(:mod:`dicomwire.ul.loop`), :class:`~dicomwire.ul.server.AssociationServer` and the
errors of :mod:`dicomwire.errors` stay importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from ..aio import Opening
from ..errors import AssociationAborted, AssociationRejected, DicomTimeoutError, DicomWireError
from .fsm import State
from .loop import run_event_loop
from .machine import (
    AbortIndication,
    ARTIMStart,
    ARTIMStop,
    CloseTransport,
    PDataIndication,
    SendPDU,
)
from .negotiation import NegotiatedAssociation, RequestorConfig
from .pdu import PDU, PDataTF
from .session import (
    Aborted,
    AssociationSession,
    Established,
    Rejected,
    Released,
    ReleaseRequested,
    SessionEvent,
)
from .timeouts import Timeouts
from .tls import TLSConfig, TLSError, client_context, diagnose_tls_error, tls_failure
from .tlstransport import TLSSession, TLSTransport
from .trace import active_trace

if TYPE_CHECKING:
    from .server import AssociationHandler as AssociationHandler
    from .server import AssociationServer

__all__ = [
    "run_event_loop",
    "Association",
    "AssociationAborted",
    "AssociationRejected",
    "AssociationServer",
    "DicomTimeoutError",
    "Timeouts",
    "connect",
]

log = logging.getLogger("dicomwire.ul")
pdu_log = logging.getLogger("dicomwire.ul.pdu")


def __getattr__(name: str) -> object:
    """The server's names are re-exported lazily: :mod:`~dicomwire.ul.server` imports us."""
    if name in ("AssociationServer", "AssociationHandler"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: A read this large counts as progress for the network idle timeout; smaller ones only
#: when they complete a PDU.
_PROGRESS_BYTES = 512

#: A read that leaves less than this much of a PDU still to come is acknowledged at once
#: (TCP_QUICKACK). A peer with Nagle's algorithm on that writes a PDU in two pieces (DCMTK
#: without ``TCP_NODELAY=1`` in its environment does) holds the second piece until the
#: first is acknowledged, and a delayed ACK waits ~40 ms: per message, without this.
_QUICKACK_BELOW = 4096
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux

# Bounded receive queue: past this many P-DATA-TF PDUs, or bytes, waiting for the
# application, stop reading the socket until it has caught up (backpressure to the peer).
_RECEIVE_QUEUE_HIGH = 64
_RECEIVE_QUEUE_HIGH_BYTES = 8 << 20
#: Messages sent in a row are written together up to this many bytes (one ``writev``);
#: a batch that reaches it is written at once, so that backpressure sees large messages.
_BATCH_BYTES = 64 << 10


def _tcp_socket(transport: asyncio.BaseTransport) -> socket.socket | None:
    """The connection's TCP socket, TCP_NODELAY set (without it Nagle and delayed ACKs
    cost ~40 ms per exchange); None when the transport is not TCP."""
    sock: socket.socket | None = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _payload_length(pdu: PDataTF) -> int:
    size = 0
    for pdv in pdu.pdvs:
        size += len(pdv.data)
    return size


class Association(asyncio.BufferedProtocol):
    """One association, established or being established, on either side.

    Applications get one from :func:`connect` (requestor) or from an
    :class:`~dicomwire.ul.server.AssociationServer` handler (acceptor). After establishment
    :attr:`negotiated` says what was agreed. P-DATA flows with :meth:`send` and
    :meth:`receive`; :meth:`release` and :meth:`abort` end it.

    It is also the connection's asyncio protocol (``connection_made``, ``get_buffer``,
    ``buffer_updated``, ...): with ``tls_context`` a
    :class:`~dicomwire.ul.tlstransport.TLSSession` runs the handshake first, the
    association sees the connection only once it succeeded, and a failed one is logged
    once with the peer's address and reason.
    """

    def __init__(
        self,
        session: AssociationSession,
        *,
        timeouts: Timeouts | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        tls_context: ssl.SSLContext | None = None,
        handshake_timeout: float = 15.0,
    ) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self.timeouts = timeouts or Timeouts()
        self._session = session
        self._trace = active_trace()
        self._trace_id = self._trace.new_association_id() if self._trace else 0
        #: PDUs are logged or traced (decided once, as for the PDUs received).
        self._log_pdus = pdu_log.isEnabledFor(logging.DEBUG) or self._trace is not None
        if self._log_pdus:
            session.on_pdu = self._log_received
        self._transport: asyncio.Transport | None = None
        self._tls_context = tls_context
        self._server_hostname: str | None = None  # requestor with hostname checking only
        self._remote: tuple[str, int] | None = None  # requestor: host and port as given
        self._sends_certificate = False  # requestor: a client certificate is configured
        #: Acceptor: whether an A-ASSOCIATE-RQ was answered (None: requestor).
        self._answered: bool | None = None if session.requestor else False
        self._handshake_timeout = handshake_timeout
        self._tls: TLSSession | None = None
        #: The TCP socket, for TCP_QUICKACK (None: not TCP, or not Linux).
        self._ack_socket: socket.socket | None = None
        self._handshake: asyncio.Future[None] | None = None
        self._ciphertext = bytearray()  # sized when TLS starts: plain TCP never needs it
        self._artim: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._last_receive = time.monotonic()
        #: Set by the layer above: True while work is in progress (DIMSE operations
        #: outstanding or being performed); the network idle timeout waits for it, since
        #: a peer awaiting a long C-MOVE's answer rightly sends nothing meanwhile.
        self.in_progress: Callable[[], bool] | None = None
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        #: Received P-DATA-TF PDUs not yet taken by receive(), with their payload sizes.
        self._received: deque[tuple[PDataTF, int]] = deque()
        self._received_bytes = 0
        self._corked: list[bytes | bytearray | memoryview] | None = None
        #: Messages of send_many_nowait not yet written: written at the loop's next turn.
        self._batch: list[bytes | bytearray | memoryview] = []
        self._batch_bytes = 0
        self._receive_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._established: asyncio.Future[NegotiatedAssociation] = self._loop.create_future()
        self._released: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._started = time.monotonic()
        self.negotiated: NegotiatedAssociation | None = None
        self.peer_address: tuple[str, int] | None = None
        #: The peer's certificate (as ``ssl.SSLSocket.getpeercert()``) on a TLS connection.
        self.peer_certificate: dict[str, Any] | None = None
        #: Called once the association is established, before any P-DATA is delivered
        #: (the server starts its handler there).
        self.on_established: Callable[[Association], None] | None = None
        #: Why the TLS handshake failed, if it did (observers audit it).
        self.tls_failure: BaseException | None = None
        #: The rejection this acceptor answered with, if it rejected the association.
        self.rejection: AssociationRejected | None = None

    # -- properties -------------------------------------------------------------------

    @property
    def session(self) -> AssociationSession:
        """The sans-I/O session that makes this association's decisions."""
        return self._session

    @property
    def state(self) -> State:
        """The PS3.8 Table 9-10 state (Sta1-Sta13)."""
        return self._session.state

    @property
    def is_established(self) -> bool:
        return self._session.is_established

    @property
    def release_requested(self) -> bool:
        """The peer asked to release; answer with :meth:`release_response`."""
        return self._session.release_requested

    @property
    def closed(self) -> asyncio.Future[None]:
        """Done once the transport connection is closed."""
        return self._closed

    @property
    def error(self) -> DicomWireError | None:
        """Why the association ended abnormally, if it did."""
        return self._session.error

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The transport's ``get_extra_info`` (``"socket"``, ``"ssl_object"``, ...) while open."""
        transport = self._transport
        return default if transport is None else transport.get_extra_info(name, default)

    # -- asyncio protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = _tcp_socket(transport)  # the raw connection's, TLS or not
        if _TCP_QUICKACK is not None:
            self._ack_socket = sock
        if self._tls_context is None:
            self._transport_ready(transport)
            return
        raw = cast(asyncio.Transport, transport)
        self._ciphertext = bytearray(1 << 16)
        self._handshake = self._loop.create_future()
        self._tls = TLSSession(
            raw,
            self._tls_context,
            server_side=not self._session.requestor,
            server_hostname=self._server_hostname,
            handshake_timeout=self._handshake_timeout,
            on_ready=self._tls_ready,
            on_failed=self._tls_failed,
        )

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._tls is not None:
            return memoryview(self._ciphertext)
        return self._session.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        session = self._session
        if self._tls is None:
            self._apply(session.buffer_updated(nbytes))
        else:
            for plaintext in self._tls.decrypt(memoryview(self._ciphertext)[:nbytes]):
                if self._closed.done():
                    return
                self._apply(session.receive_data(plaintext))
        if 0 < session.buffered < _QUICKACK_BELOW and self._ack_socket is not None:
            self._acknowledge_now()
        if nbytes >= _PROGRESS_BYTES or not session.buffered:
            # Progress: a real read, or one that completed a PDU. A peer trickling a byte at
            # a time does not count, so the network idle timeout still cuts it off.
            self._last_receive = time.monotonic()

    def _acknowledge_now(self) -> None:
        """Send the ACK of what was read now, not after the delayed-ACK timer."""
        assert self._ack_socket is not None and _TCP_QUICKACK is not None
        try:
            self._ack_socket.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        except OSError:
            self._ack_socket = None

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._tls is not None:
            self._tls.connection_lost()
        self._lost(exc)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_drainers()

    def _tls_ready(self, transport: TLSTransport) -> None:
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_result(None)
        self._transport_ready(transport)

    def _tls_failed(self, error: BaseException) -> None:
        self.tls_failure = error
        peer = self._tls.raw.get_extra_info("peername") if self._tls is not None else None
        if self.peer_address is None and isinstance(peer, tuple):
            self.peer_address = (str(peer[0]), int(peer[1]))
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(error)
            self._handshake.exception()  # retrieved here: connect() may be gone
        self._lost(None)

    def _transport_ready(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer_address = (str(peer[0]), int(peer[1]))
        self.peer_certificate = transport.get_extra_info("peercert")
        self._arm_idle()
        self._apply(self._session.transport_connected(self.peer_address, self.peer_certificate))

    def _unanswered(self) -> DicomWireError | None:
        """Why a requestor's connection closed with its A-ASSOCIATE-RQ unanswered, if known.

        Called only when the connection is lost. On TLS, an alert or a close before any
        answer is the server refusing the secure connection: TLS 1.3 sends its verdict on
        our certificate (e.g. certificate_required) after our handshake completed. On plain
        TCP, a server that closes without a byte may expect TLS.
        """
        session = self._session
        if (
            self._remote is None
            or session.state is not State.STA5
            or session.buffered
            or self._established.done()
        ):
            return None
        host, port = self._remote
        if self._tls is not None:
            error = self._tls.error or ConnectionResetError("connection closed")
            return tls_failure(
                host,
                port,
                error,
                after_handshake=True,
                sent_certificate=self._sends_certificate,
            )
        return AssociationAborted(
            AbortIndication(
                2,
                0,
                provider=True,
                local=True,
                detail=f"the server at {host}:{port} closed the connection without answering "
                "the A-ASSOCIATE-RQ (is it a TLS port?)",
            )
        )

    def _lost(self, exc: Exception | None) -> None:
        if self._closed.done():
            return
        session = self._session
        truncated = session.buffered
        refused = self._unanswered() if self._transport is not None else None
        if isinstance(refused, TLSError):
            # The secure connection was refused, as by a handshake that fails outright:
            # no A-P-ABORT, the caller gets the TLS reason.
            session.fail(refused)
            self._transport = None
        elif refused is not None:
            session.fail(refused)
        elif session.requestor and self._tls is not None and self._tls.error is not None:
            failure = diagnose_tls_error(self._tls.error, server_side=False)
            log.warning("TLS error from %s: %s", self.peer_address, failure.text)
        elif self._answered is False and session.state is State.STA13 and self._tls is None:
            # An acceptor that aborted before any A-ASSOCIATE-RQ (AA-1 in Sta2): the first
            # bytes were no A-ASSOCIATE-RQ, e.g. a TLS ClientHello on the plain port.
            log.warning(
                "connection from %s did not start with an A-ASSOCIATE-RQ: aborted (a TLS "
                "client on the plain port?)",
                self.peer_address,
            )
        # Never connected at this layer (e.g. a failed TLS handshake): no UL event.
        events = session.transport_closed() if self._transport is not None else []
        if truncated:
            log.debug("connection closed inside a PDU (%d bytes buffered)", truncated)
        self._apply(events)
        self._cancel_timers()
        self._transport = None
        self._wake_receiver()
        error = session.error
        if not self._established.done():
            self._established.set_exception(
                error
                or AssociationAborted(
                    AbortIndication(2, 0, provider=True, local=True, detail="connection closed")
                )
            )
            self._established.exception()  # mark retrieved: the caller may be gone
        if not self._released.done():
            self._released.set_exception(error or DicomWireError("connection closed"))
            self._released.exception()
        self._wake_drainers()
        if not self._closed.done():
            self._closed.set_result(None)
        if self.negotiated is not None:
            log.info(
                "association with %s ended after %.3f s%s",
                self.negotiated.remote_ae_title,
                time.monotonic() - self._started,
                f" ({error})" if error else "",
            )

    # -- events -----------------------------------------------------------------------

    def _apply(self, events: list[SessionEvent]) -> None:
        for event in events:
            if type(event) is PDataIndication:  # first: one per PDU of a data transfer
                pdu = event.pdu
                size = _payload_length(pdu)
                self._received.append((pdu, size))
                self._received_bytes += size
                if not self._reading_paused and (
                    len(self._received) >= _RECEIVE_QUEUE_HIGH
                    or self._received_bytes >= _RECEIVE_QUEUE_HIGH_BYTES
                ):
                    if self._transport is not None:
                        self._transport.pause_reading()
                    self._reading_paused = True
                self._wake_receiver()
            elif isinstance(event, SendPDU):
                self._write(event.pdu)
            elif isinstance(event, ARTIMStart):
                if self._artim is not None:
                    self._artim.cancel()
                self._artim = self._loop.call_later(self.timeouts.artim, self._on_artim)
            elif isinstance(event, ARTIMStop):
                if self._artim is not None:
                    self._artim.cancel()
                    self._artim = None
            elif isinstance(event, CloseTransport):
                if self._transport is not None:
                    self._flush()
                    if self._writing_paused:  # a peer that does not read would keep it open
                        self._transport.abort()
                    else:
                        self._transport.close()
            elif isinstance(event, Established):
                self._answered = True
                self.negotiated = event.negotiated
                if not self._established.done():
                    self._established.set_result(event.negotiated)
                if self.on_established is not None:
                    self.on_established(self)
            elif isinstance(event, Rejected):
                self._answered = True
                if event.local:
                    self.rejection = event.error
                if not event.local and not self._established.done():
                    self._established.set_exception(event.error)
            elif isinstance(event, ReleaseRequested):
                self._wake_receiver()
            elif isinstance(event, Released):
                if not self._released.done():
                    self._released.set_result(None)
            elif isinstance(event, Aborted):
                if not self._established.done():
                    self._established.set_exception(event.error)
                    self._established.exception()
                if not self._released.done():  # a release in progress ends here, not at ARTIM
                    self._released.set_exception(event.error)
                    self._released.exception()
                self._wake_receiver()
            # ConnectTransport: open() makes the connection itself, right after Evt1.

    def _write(self, pdu: PDU) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._batch and self._corked is None:  # what was sent before goes first
            self._flush()
        if self._log_pdus:
            pdu_log.debug("sent to %s: %r", self.peer_address, pdu)
            if self._trace is not None:
                self._trace.record("sent", self._trace_id, self.peer_address, pdu)
        if type(pdu) is PDataTF:
            if self._corked is not None:
                self._corked.extend(pdu.encode_parts())
            else:
                transport.writelines(pdu.encode_parts())
        else:
            transport.write(pdu.encode())

    def _log_received(self, pdu: PDU) -> None:
        pdu_log.debug("received from %s: %r", self.peer_address, pdu)
        if self._trace is not None:
            self._trace.record("received", self._trace_id, self.peer_address, pdu)

    def _wake_receiver(self) -> None:
        waiter = self._receive_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- timers -----------------------------------------------------------------------

    def _on_artim(self) -> None:
        self._artim = None
        log.info("ARTIM timer expired in %s", self._session.state.value)
        self._apply(self._session.artim_expired())

    def _arm_idle(self) -> None:
        idle = self.timeouts.network_idle
        if idle is not None:
            self._idle = self._loop.call_later(idle, self._check_idle)

    def _check_idle(self) -> None:
        idle = self.timeouts.network_idle
        assert idle is not None
        remaining = self._last_receive + idle - time.monotonic()
        if remaining <= 0 and self.in_progress is not None and self.in_progress():
            remaining = idle  # busy, not idle: the DIMSE timeout governs awaited answers
        if remaining > 0:
            self._idle = self._loop.call_later(remaining, self._check_idle)
            return
        self._idle = None
        log.warning("network idle for %.1f s: aborting", idle)
        self.force_abort(DicomTimeoutError(f"no data received for {idle} s"))

    def _cancel_timers(self) -> None:
        for handle in (self._artim, self._idle):
            if handle is not None:
                handle.cancel()
        self._artim = self._idle = None

    # -- application API --------------------------------------------------------------

    async def open(
        self, host: str, port: int, config: RequestorConfig, *, tls: TLSConfig | None = None
    ) -> NegotiatedAssociation:
        """Requestor: connect to ``host``:``port``, negotiate ``config`` (see :func:`connect`)."""
        timeouts = self.timeouts
        self._apply(self._session.request_association(config))
        self._remote = (host, port)
        if tls is not None:
            self._sends_certificate = tls.certificate is not None or tls.pkcs12 is not None
            context = client_context(tls, host)
            self._tls_context = context
            self._server_hostname = host if context.check_hostname else None
            self._handshake_timeout = tls.handshake_timeout
        try:
            await asyncio.wait_for(
                self._loop.create_connection(lambda: self, host, port), timeouts.connect
            )
            if self._handshake is not None:
                await self._handshake
        except (ssl.SSLError, ssl.CertificateError, ConnectionResetError) as exc:
            if self._handshake is None:
                raise DicomWireError(f"cannot connect to {host}:{port}: {exc}") from exc
            received = self._tls.received if self._tls is not None else b""
            raise tls_failure(
                host, port, exc, received=received, sent_certificate=self._sends_certificate
            ) from exc
        except TimeoutError:
            if self._handshake is not None and self._handshake.done():
                raise tls_failure(host, port, TimeoutError()) from None
            raise DicomTimeoutError(
                f"TCP connect to {host}:{port} took over {timeouts.connect} s"
            ) from None
        except OSError as exc:
            raise DicomWireError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
        try:
            negotiated = await asyncio.wait_for(asyncio.shield(self._established), timeouts.acse)
        except TimeoutError:
            error = DicomTimeoutError(f"no A-ASSOCIATE-AC or -RJ within {timeouts.acse} s")
            self.force_abort(error)
            await self.closed_or_timeout(1.0)
            raise error from None
        except DicomWireError:
            await self.closed_or_timeout(1.0)
            raise
        log.info(
            "associated with %s at %s:%d: %d of %d contexts accepted, "
            "max PDU %d sent / %d received",
            negotiated.remote_ae_title,
            host,
            port,
            len(negotiated.accepted_contexts),
            len(negotiated.contexts),
            negotiated.remote_max_pdu_length,
            negotiated.local_max_pdu_length,
        )
        return negotiated

    async def wait_established(self) -> NegotiatedAssociation:
        """Wait for A-ASSOCIATE-AC (or raise AssociationRejected / AssociationAborted)."""
        return await self._established

    async def send(self, pdu: PDataTF) -> None:
        """Send one P-DATA-TF, waiting while the peer is slow to read (backpressure)."""
        error = self._session.error
        if error is not None and not self.is_established:
            raise error
        self._apply(self._session.send_data(pdu))
        if self.writing_paused:
            await self._drain()

    def send_nowait(self, pdu: PDataTF) -> None:
        """Send one P-DATA-TF without waiting; call :meth:`drain` now and then."""
        self._apply(self._session.send_data(pdu))

    def send_many_nowait(self, pdus: Iterable[PDataTF]) -> None:
        """Send the P-DATA-TF of a message without waiting, written with the next ones.

        The messages sent before the event loop's next turn are written together, in one
        system call (``writev``): a window of small C-STOREs sent in a row, or the
        responses to requests received in one read. A batch is written as soon as it
        reaches :data:`_BATCH_BYTES`, and before any other PDU.
        """
        parts: list[bytes | bytearray | memoryview] = []
        self._corked = parts
        send_data = self._session.send_data
        try:
            for pdu in pdus:
                self._apply(send_data(pdu))
        finally:
            self._corked = None
            if parts:
                if not self._batch:
                    self._loop.call_soon(self._flush)
                self._batch += parts
                for part in parts:
                    self._batch_bytes += len(part)
                if self._batch_bytes >= _BATCH_BYTES:
                    self._flush()

    def _flush(self) -> None:
        """Write the messages batched by :meth:`send_many_nowait`."""
        parts = self._batch
        if not parts:
            return
        self._batch, self._batch_bytes = [], 0
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.writelines(parts)

    @property
    def writing_paused(self) -> bool:
        """True while the transport's write buffer is above its high-water mark."""
        return self._writing_paused and self._transport is not None

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        self._flush()
        if self.writing_paused:
            await self._drain()

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _drain(self) -> None:
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        stall = self.timeouts.send_stall
        try:
            if stall is None:
                await waiter
            else:
                await asyncio.wait_for(waiter, stall)
        except TimeoutError:
            # The peer has not read for that long: its window and our buffer are full.
            error = DicomTimeoutError(f"the peer read nothing we sent for {stall} s")
            self._session.fail(error)
            log.warning("%s: aborting", error)
            if self._transport is not None:
                self._transport.abort()
            raise error from None
        finally:
            if waiter in self._drain_waiters:
                self._drain_waiters.remove(waiter)

    async def receive(self, timeout: float | None = None) -> PDataTF | None:
        """The next received P-DATA-TF; None once the peer asked to release.

        Raises :class:`AssociationAborted` (or the error that ended the association)
        when it ends abnormally, :class:`DicomTimeoutError` after ``timeout`` seconds.
        """
        while not self._received:
            session = self._session
            if session.release_requested:
                return None
            if session.error is not None:
                raise session.error
            if self._released.done():
                return None
            if self._transport is None:
                raise DicomWireError("the association's connection is closed")
            waiter = self._loop.create_future()
            self._receive_waiter = waiter
            try:
                if timeout is None:
                    await waiter
                else:
                    await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                raise DicomTimeoutError(f"no P-DATA within {timeout} s") from None
            finally:
                self._receive_waiter = None
        pdu = self.poll()
        assert pdu is not None
        return pdu

    def poll(self) -> PDataTF | None:
        """The next received P-DATA-TF if one is waiting, else None (never blocks)."""
        if not self._received:
            return None
        pdu, size = self._received.popleft()
        self._received_bytes -= size
        if (
            self._reading_paused
            and len(self._received) <= _RECEIVE_QUEUE_HIGH // 4
            and self._received_bytes <= _RECEIVE_QUEUE_HIGH_BYTES // 4
        ):
            self._reading_paused = False
            if self._transport is not None:
                self._transport.resume_reading()
        return pdu

    async def release(self) -> None:
        """A-RELEASE: ask the peer to release and wait for its answer (ACSE timeout)."""
        if self._session.state is State.STA1 or self._closed.done():
            return
        if self._session.release_requested:  # the peer asked first: just answer
            self.release_response()
            return
        self._apply(self._session.request_release())
        try:
            if self.timeouts.acse is None:
                await self._released
            else:
                await asyncio.wait_for(asyncio.shield(self._released), self.timeouts.acse)
        except TimeoutError:
            error = DicomTimeoutError(f"no A-RELEASE-RP within {self.timeouts.acse} s")
            self.force_abort(error)
            raise error from None
        await self._closed_soon()

    def release_response(self) -> None:
        """Answer the peer's A-RELEASE-RQ (A-RELEASE response primitive)."""
        self._apply(self._session.release_response())

    def abort(self, reason: int = 0) -> None:
        """A-ABORT (service-user source); the transport closes once the peer does or ARTIM."""
        self._apply(self._session.abort(reason))
        if self.writing_paused:
            # The peer is not reading what it was already sent: the A-ABORT would wait
            # behind it until ARTIM, and the connection with it. Cut it now.
            assert self._transport is not None
            self._transport.abort()
        self._wake_receiver()

    def force_abort(self, error: DicomWireError | None = None) -> None:
        """End the association now, whatever its state (a timeout, a server shutting down).

        A-ABORT where Table 9-10 allows it, else the connection is closed; ``error``
        becomes :attr:`error`.
        """
        self._apply(self._session.force_abort(error))
        if self._transport is not None and self._session.state is not State.STA13:
            self._transport.close()

    def cut(self) -> None:
        """Drop the connection at once, unsent data discarded (a server shutting down).

        An association whose connection never opened is marked closed instead.
        """
        if self._transport is not None:
            self._transport.abort()
        else:
            self._lost(None)

    async def closed_or_timeout(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the connection to close, then cut it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._closed), timeout)
        if self._transport is not None:
            self._transport.abort()

    async def _closed_soon(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._closed), self.timeouts.artim)
        if self._transport is not None:
            self._transport.close()

    async def __aenter__(self) -> Association:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is None and self.is_established:
            with contextlib.suppress(DicomWireError):
                await self.release()
            return
        if self._session.state not in (State.STA1, State.STA13):
            self.abort()
        if self._transport is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._closed), 1.0)
            if self._transport is not None:
                self._transport.abort()


def connect(
    host: str,
    port: int,
    config: RequestorConfig,
    *,
    timeouts: Timeouts | None = None,
    tls: TLSConfig | None = None,
) -> Opening[Association]:
    """Open an association as requestor: ``await`` the result, or ``async with`` it.

    ``association = await connect(...)`` gives the established :class:`Association`;
    ``async with connect(...) as association:`` also releases it at the end (aborts it
    when the body raised).

    With ``tls`` the connection is a PS3.15 secure transport connection (its profile);
    a failed handshake raises :class:`~dicomwire.ul.tls.TLSError`.

    Raises :class:`AssociationRejected`, :class:`AssociationAborted`,
    :class:`DicomTimeoutError` (TCP connect or ACSE) or :class:`DicomWireError` when the
    connection cannot be made.
    """

    async def open_association() -> Association:
        association = Association(AssociationSession(requestor=True), timeouts=timeouts)
        await association.open(host, port, config, tls=tls)
        return association

    async def close(association: Association, exc: BaseException | None) -> None:
        await association.__aexit__(type(exc) if exc else None, exc, None)

    return Opening(open_association(), close)
