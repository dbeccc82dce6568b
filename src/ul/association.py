"""The asyncio side of the Upper Layer: associations over TCP (PS3.8 §9, §10 TCP/IP mapping).

A thin adapter: :class:`_Protocol` (an :class:`asyncio.BufferedProtocol`) receives straight
into the framer's buffers and feeds :class:`~dicomwire.ul.machine.UpperLayer`; the effects
it returns are carried out here (write PDUs, arm ARTIM, close the transport, wake the
application). No thread per association, no polling.

- requestor: ``async with connect(host, port, RequestorConfig(...)) as association``;
- acceptor: :class:`AssociationServer` accepts connections and hands each established
  association to an async handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ..errors import AssociationAborted, AssociationRejected, DicomTimeoutError, DicomWireError
from .fsm import State
from .machine import (
    AbortIndication,
    ARTIMStart,
    ARTIMStop,
    AssociateAccepted,
    AssociateIndication,
    AssociateRejected,
    AssociationStateError,
    CloseTransport,
    ConnectTransport,
    Effect,
    PDataIndication,
    ReleaseConfirmation,
    ReleaseIndication,
    SendPDU,
    UpperLayer,
)
from .negotiation import (
    AcceptorPolicy,
    NegotiatedAssociation,
    PresentationContext,
    RequestorConfig,
    accept_or_reject,
    build_request,
    read_accept,
)
from .pdu import (
    PDU,
    AAssociateRJ,
    AbortSource,
    PDataTF,
    PresentationRejectReason,
    RejectResult,
    RejectSource,
)
from .tls import TLSConfig, TLSError, client_context, describe_tls_error, server_context
from .tlstransport import TLSSession, TLSTransport
from .trace import active_trace

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

_T = TypeVar("_T")

log = logging.getLogger("dicomwire.ul")
pdu_log = logging.getLogger("dicomwire.ul.pdu")

_REJECT_TEXT = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


@dataclass(slots=True)
class Timeouts:
    """Timeouts in seconds; None disables one (defaults as PS3.8 users expect them).

    ``network_idle`` also ends a peer that trickles bytes without completing PDUs;
    ``send_stall`` ends a peer that stops reading what we send (our write buffer full).
    """

    artim: float = 30.0
    acse: float | None = 30.0
    dimse: float | None = 60.0
    network_idle: float | None = 60.0
    connect: float | None = 15.0
    send_stall: float | None = 60.0


#: A read this large counts as progress for the network idle timeout; smaller ones only
#: when they complete a PDU.
_PROGRESS_BYTES = 512


def _set_nodelay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY: without it Nagle and delayed ACKs cost ~40 ms per exchange."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Protocol(asyncio.BufferedProtocol):
    """Bytes in and out for one :class:`Association`.

    With ``tls_context`` set, a :class:`~dicomwire.ul.tlstransport.TLSSession` runs the
    handshake first; the association sees the connection only once it succeeded, and a
    failed one is logged once with the peer's address and reason.
    """

    def __init__(
        self,
        association: Association,
        tls_context: ssl.SSLContext | None = None,
        *,
        server_hostname: str | None = None,
        handshake_timeout: float = 15.0,
    ) -> None:
        self.association = association
        self.tls_context = tls_context
        self.server_hostname = server_hostname
        self.handshake_timeout = handshake_timeout
        self.tls: TLSSession | None = None
        self.handshake: asyncio.Future[None] | None = None
        self._ciphertext = bytearray()  # sized when TLS starts: plain TCP never needs it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.tls_context is None:
            self.association._connection_made(transport)
            return
        raw = cast(asyncio.Transport, transport)
        _set_nodelay(raw)
        self._ciphertext = bytearray(1 << 16)
        self.handshake = asyncio.get_running_loop().create_future()
        self.tls = TLSSession(
            raw,
            self.tls_context,
            server_side=self.server_hostname is None,
            server_hostname=self.server_hostname or None,
            handshake_timeout=self.handshake_timeout,
            on_ready=self._tls_ready,
            on_failed=self._tls_failed,
        )

    def _tls_ready(self, transport: TLSTransport) -> None:
        if self.handshake is not None and not self.handshake.done():
            self.handshake.set_result(None)
        self.association._connection_made(transport)

    def _tls_failed(self, error: BaseException) -> None:
        if self.handshake is not None and not self.handshake.done():
            self.handshake.set_exception(error)
            self.handshake.exception()  # retrieved here: connect() may be gone
        self.association._connection_lost(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.tls is not None:
            return memoryview(self._ciphertext)
        return self.association._core.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        association = self.association
        core = association._core
        if self.tls is None:
            association._apply(core.buffer_updated(nbytes))
        else:
            for plaintext in self.tls.decrypt(memoryview(self._ciphertext)[:nbytes]):
                if association._closed.done():
                    return
                association._apply(core.receive_data(plaintext))
        if nbytes >= _PROGRESS_BYTES or not core.buffered:
            # Progress: a real read, or one that completed a PDU. A peer trickling a byte at
            # a time does not count, so the network idle timeout still cuts it off.
            association._last_receive = time.monotonic()

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.tls is not None:
            self.tls.connection_lost()
        self.association._connection_lost(exc)

    def pause_writing(self) -> None:
        self.association._writing_paused = True

    def resume_writing(self) -> None:
        association = self.association
        association._writing_paused = False
        association._wake_drainers()


# Bounded receive queue: past this many P-DATA-TF PDUs, or bytes, waiting for the
# application, stop reading the socket until it has caught up (backpressure to the peer).
_RECEIVE_QUEUE_HIGH = 64
_RECEIVE_QUEUE_HIGH_BYTES = 8 << 20


def _payload_length(pdu: PDataTF) -> int:
    size = 0
    for pdv in pdu.pdvs:
        size += len(pdv.data)
    return size


class Association:
    """One association, established or being established, on either side.

    Applications get one from :func:`connect` (requestor) or from an
    :class:`AssociationServer` handler (acceptor). After establishment
    :attr:`negotiated` says what was agreed. P-DATA flows with :meth:`send` and
    :meth:`receive`; :meth:`release` and :meth:`abort` end it.
    """

    def __init__(
        self,
        *,
        requestor: bool,
        max_pdu_length: int,
        timeouts: Timeouts | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self.timeouts = timeouts or Timeouts()
        self._core = UpperLayer(requestor=requestor, max_pdu_length=max_pdu_length)
        self._trace = active_trace()
        self._trace_id = self._trace.new_association_id() if self._trace else 0
        if pdu_log.isEnabledFor(logging.DEBUG) or self._trace is not None:
            self._core.on_pdu = self._log_received
        self._transport: asyncio.Transport | None = None
        self._artim: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._last_receive = time.monotonic()
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        #: Received P-DATA-TF PDUs not yet taken by receive(), with their payload sizes.
        self._received: deque[tuple[PDataTF, int]] = deque()
        self._received_bytes = 0
        self._corked: list[bytes | bytearray | memoryview] | None = None
        self._receive_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._established: asyncio.Future[NegotiatedAssociation] = self._loop.create_future()
        self._released: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._release_requested = False
        self._error: DicomWireError | None = None
        self._started = time.monotonic()
        self.negotiated: NegotiatedAssociation | None = None
        self.peer_address: tuple[str, int] | None = None
        #: The peer's certificate (as ``ssl.SSLSocket.getpeercert()``) on a TLS connection.
        self.peer_certificate: dict[str, Any] | None = None
        #: Acceptor only: how to answer the A-ASSOCIATE indication.
        self.on_associate: Callable[[Association, AssociateIndication], None] | None = None
        #: Set by the DIMSE layer: offered each received P-DATA-TF when nothing is queued
        #: before it; returning True means it was consumed there and then (no queue, no
        #: wake-up of the reading task). Used for the fragments of a data set.
        self.on_data: Callable[[PDataTF], bool] | None = None
        self._proposed: list[PresentationContext] = []
        self._config: RequestorConfig | None = None

    # -- properties -------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._core.state

    @property
    def is_established(self) -> bool:
        return self._core.state in (State.STA6, State.STA7, State.STA8)

    @property
    def release_requested(self) -> bool:
        """The peer asked to release; answer with :meth:`release_response`."""
        return self._release_requested

    @property
    def closed(self) -> asyncio.Future[None]:
        """Done once the transport connection is closed."""
        return self._closed

    @property
    def error(self) -> DicomWireError | None:
        """Why the association ended abnormally, if it did."""
        return self._error

    # -- transport callbacks -----------------------------------------------------------

    def _connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        _set_nodelay(transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer_address = (str(peer[0]), int(peer[1]))
        self.peer_certificate = transport.get_extra_info("peercert")
        self._arm_idle()
        self._apply(self._core.transport_connected())

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._closed.done():
            return
        truncated = self._core.buffered
        # Never connected at this layer (e.g. a failed TLS handshake): no UL event.
        effects = self._core.transport_closed() if self._transport is not None else []
        if truncated:
            log.debug("connection closed inside a PDU (%d bytes buffered)", truncated)
        self._apply(effects)
        self._cancel_timers()
        self._transport = None
        self._wake_receiver()
        if not self._established.done():
            self._established.set_exception(
                self._error
                or AssociationAborted(
                    AbortIndication(2, 0, provider=True, local=True, detail="connection closed")
                )
            )
            self._established.exception()  # mark retrieved: the caller may be gone
        if not self._released.done():
            self._released.set_exception(self._error or DicomWireError("connection closed"))
            self._released.exception()
        self._wake_drainers()
        if not self._closed.done():
            self._closed.set_result(None)
        if self.negotiated is not None:
            log.info(
                "association with %s ended after %.3f s%s",
                self.negotiated.remote_ae_title,
                time.monotonic() - self._started,
                f" ({self._error})" if self._error else "",
            )

    # -- effects ----------------------------------------------------------------------

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if type(effect) is PDataIndication:  # first: one per PDU of a data transfer
                pdu = effect.pdu
                on_data = self.on_data
                if on_data is not None and not self._received and on_data(pdu):
                    continue
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
            elif isinstance(effect, SendPDU):
                self._write(effect.pdu)
            elif isinstance(effect, ARTIMStart):
                if self._artim is not None:
                    self._artim.cancel()
                self._artim = self._loop.call_later(self.timeouts.artim, self._on_artim)
            elif isinstance(effect, ARTIMStop):
                if self._artim is not None:
                    self._artim.cancel()
                    self._artim = None
            elif isinstance(effect, CloseTransport):
                if self._transport is not None:
                    if self._writing_paused:  # a peer that does not read would keep it open
                        self._transport.abort()
                    else:
                        self._transport.close()
            elif isinstance(effect, AssociateIndication):
                self._on_associate_indication(effect)
            elif isinstance(effect, AssociateAccepted):
                assert self._config is not None
                self.negotiated = read_accept(self._config, self._proposed, effect.accept)
                self.negotiated.peer_address = self.peer_address
                if not self._established.done():
                    self._established.set_result(self.negotiated)
            elif isinstance(effect, AssociateRejected):
                rj = effect.reject
                self._error = AssociationRejected(rj.result, rj.source, rj.reason)
                if not self._established.done():
                    self._established.set_exception(self._error)
            elif isinstance(effect, ReleaseIndication):
                self._on_release_indication(effect)
            elif isinstance(effect, ReleaseConfirmation):
                if self._core.state is State.STA12:  # collision, acceptor side: AR-10
                    self._apply(self._core.release_response())
                if not self._released.done():
                    self._released.set_result(None)
            elif isinstance(effect, AbortIndication):
                self._on_abort(effect)
            elif isinstance(effect, ConnectTransport):
                pass  # connect() opens the connection itself, right after Evt1

    def _write(self, pdu: PDU) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if pdu_log.isEnabledFor(logging.DEBUG):
            pdu_log.debug("sent to %s: %r", self.peer_address, pdu)
        if self._trace is not None:
            self._trace.record("sent", self._trace_id, self.peer_address, pdu)
        if isinstance(pdu, PDataTF):
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

    def _on_associate_indication(self, indication: AssociateIndication) -> None:
        if self._core.state is not State.STA3:
            return  # already aborted by a PDU read together with the RQ
        if self.on_associate is None:
            self._apply(self._core.reject(AAssociateRJ(2, 3, 1)))
        else:
            self.on_associate(self, indication)

    def _on_release_indication(self, indication: ReleaseIndication) -> None:
        if indication.collision:
            # AR-8 -> Sta9 on the requestor: answer at once (AR-9). The state is checked
            # because PDUs read together with the RQ may already have moved it on.
            if self._core.requestor and self._core.state is State.STA9:
                self._apply(self._core.release_response())
            return  # acceptor side (Sta10): wait for the peer's A-RELEASE-RP
        self._release_requested = True
        self._wake_receiver()

    def _on_abort(self, indication: AbortIndication) -> None:
        aborted = AssociationAborted(indication)
        if self._error is None:  # a timeout that caused the abort stays the reason
            self._error = aborted
        level = logging.INFO if not indication.local else logging.WARNING
        log.log(level, "%s", aborted)
        if not self._established.done():
            self._established.set_exception(self._error)
            self._established.exception()
        if not self._released.done():  # a release in progress ends here, not at ARTIM
            self._released.set_exception(self._error)
            self._released.exception()
        self._wake_receiver()

    def _wake_receiver(self) -> None:
        waiter = self._receive_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- timers -----------------------------------------------------------------------

    def _on_artim(self) -> None:
        self._artim = None
        log.info("ARTIM timer expired in %s", self._core.state.value)
        self._apply(self._core.artim_expired())

    def _arm_idle(self) -> None:
        idle = self.timeouts.network_idle
        if idle is not None:
            self._idle = self._loop.call_later(idle, self._check_idle)

    def _check_idle(self) -> None:
        idle = self.timeouts.network_idle
        assert idle is not None
        remaining = self._last_receive + idle - time.monotonic()
        if remaining > 0:
            self._idle = self._loop.call_later(remaining, self._check_idle)
            return
        self._idle = None
        log.warning("network idle for %.1f s: aborting", idle)
        self._error = DicomTimeoutError(f"no data received for {idle} s")
        self._force_abort()

    def _cancel_timers(self) -> None:
        for handle in (self._artim, self._idle):
            if handle is not None:
                handle.cancel()
        self._artim = self._idle = None

    def _force_abort(self) -> None:
        """Abort whatever the state: A-ABORT where the table allows it, else close."""
        with contextlib.suppress(AssociationStateError):
            self._apply(self._core.abort())
        if self._transport is not None and self._core.state is not State.STA13:
            self._transport.close()

    # -- application API --------------------------------------------------------------

    async def wait_established(self) -> NegotiatedAssociation:
        """Wait for A-ASSOCIATE-AC (or raise AssociationRejected / AssociationAborted)."""
        return await self._established

    async def send(self, pdu: PDataTF) -> None:
        """Send one P-DATA-TF, waiting while the peer is slow to read (backpressure)."""
        if self._error is not None and not self.is_established:
            raise self._error
        self._apply(self._core.send_data(pdu))
        if self.writing_paused:
            await self._drain()

    def send_nowait(self, pdu: PDataTF) -> None:
        """Send one P-DATA-TF without waiting; call :meth:`drain` now and then."""
        self._apply(self._core.send_data(pdu))

    def send_many_nowait(self, pdus: Iterable[PDataTF]) -> None:
        """Send several P-DATA-TF in one write (one system call for a small message)."""
        self._corked = []
        try:
            for pdu in pdus:
                self._apply(self._core.send_data(pdu))
        finally:
            parts, self._corked = self._corked, None
            if parts and self._transport is not None and not self._transport.is_closing():
                self._transport.writelines(parts)

    @property
    def writing_paused(self) -> bool:
        """True while the transport's write buffer is above its high-water mark."""
        return self._writing_paused and self._transport is not None

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
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
            self._error = DicomTimeoutError(f"the peer read nothing we sent for {stall} s")
            log.warning("%s: aborting", self._error)
            if self._transport is not None:
                self._transport.abort()
            raise self._error from None
        finally:
            if waiter in self._drain_waiters:
                self._drain_waiters.remove(waiter)

    async def receive(self, timeout: float | None = None) -> PDataTF | None:
        """The next received P-DATA-TF; None once the peer asked to release.

        Raises :class:`AssociationAborted` (or the error that ended the association)
        when it ends abnormally, :class:`DicomTimeoutError` after ``timeout`` seconds.
        """
        while not self._received:
            if self._release_requested:
                return None
            if self._error is not None:
                raise self._error
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
        if self._core.state is State.STA1 or self._closed.done():
            return
        if self._release_requested:  # the peer asked first: just answer
            self.release_response()
            return
        self._apply(self._core.request_release())
        try:
            if self.timeouts.acse is None:
                await self._released
            else:
                await asyncio.wait_for(asyncio.shield(self._released), self.timeouts.acse)
        except TimeoutError:
            self._error = DicomTimeoutError(f"no A-RELEASE-RP within {self.timeouts.acse} s")
            self._force_abort()
            raise self._error from None
        await self._closed_soon()

    def release_response(self) -> None:
        """Answer the peer's A-RELEASE-RQ (A-RELEASE response primitive)."""
        if self._core.state in (State.STA8, State.STA9, State.STA12):
            self._apply(self._core.release_response())

    def abort(self, reason: int = 0) -> None:
        """A-ABORT (service-user source); the transport closes once the peer does or ARTIM."""
        self._apply(self._core.abort(AbortSource.SERVICE_USER, reason))
        if self.writing_paused:
            # The peer is not reading what it was already sent: the A-ABORT would wait
            # behind it until ARTIM, and the connection with it. Cut it now.
            assert self._transport is not None
            self._transport.abort()
        if self._error is None:
            self._error = AssociationAborted(
                AbortIndication(0, reason, provider=False, local=True, detail="aborted locally")
            )
        self._wake_receiver()

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
        if self._core.state not in (State.STA1, State.STA13):
            self.abort()
        if self._transport is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._closed), 1.0)
            if self._transport is not None:
                self._transport.abort()


async def connect(
    host: str,
    port: int,
    config: RequestorConfig,
    *,
    timeouts: Timeouts | None = None,
    tls: TLSConfig | None = None,
) -> Association:
    """Open an association as requestor; use it with ``async with``.

    With ``tls`` the connection is a PS3.15 secure transport connection (its profile);
    a failed handshake raises :class:`~dicomwire.ul.tls.TLSError`.

    Raises :class:`AssociationRejected`, :class:`AssociationAborted`,
    :class:`DicomTimeoutError` (TCP connect or ACSE) or :class:`DicomWireError` when the
    connection cannot be made.
    """
    timeouts = timeouts or Timeouts()
    loop = asyncio.get_running_loop()
    request, proposed = build_request(config)
    association = Association(
        requestor=True, max_pdu_length=config.max_pdu_length, timeouts=timeouts, loop=loop
    )
    association._config = config
    association._proposed = proposed
    association._apply(association._core.request_association(request))
    context = client_context(tls, host) if tls is not None else None
    protocol = _Protocol(
        association,
        context,
        server_hostname=host if context is not None and context.check_hostname else "",
        handshake_timeout=tls.handshake_timeout if tls is not None else 15.0,
    )
    try:
        await asyncio.wait_for(
            loop.create_connection(lambda: protocol, host, port), timeouts.connect
        )
        if protocol.handshake is not None:
            await protocol.handshake
    except (ssl.SSLError, ssl.CertificateError, ConnectionResetError) as exc:
        if protocol.handshake is None:
            raise DicomWireError(f"cannot connect to {host}:{port}: {exc}") from exc
        raise TLSError(
            f"TLS handshake with {host}:{port} failed: {describe_tls_error(exc)}"
        ) from exc
    except TimeoutError:
        if protocol.handshake is not None and protocol.handshake.done():
            raise TLSError(f"TLS handshake with {host}:{port} timed out") from None
        raise DicomTimeoutError(
            f"TCP connect to {host}:{port} took over {timeouts.connect} s"
        ) from None
    except OSError as exc:
        raise DicomWireError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
    try:
        negotiated = await asyncio.wait_for(
            asyncio.shield(association._established),
            timeouts.acse,
        )
    except TimeoutError:
        association._error = DicomTimeoutError(f"no A-ASSOCIATE-AC or -RJ within {timeouts.acse} s")
        association._force_abort()
        await association.closed_or_timeout(1.0)
        raise association._error from None
    except DicomWireError:
        await association.closed_or_timeout(1.0)
        raise
    log.info(
        "associated with %s at %s:%d: %d of %d contexts accepted, max PDU %d sent / %d received",
        negotiated.remote_ae_title,
        host,
        port,
        len(negotiated.accepted_contexts),
        len(proposed),
        negotiated.remote_max_pdu_length,
        negotiated.local_max_pdu_length,
    )
    return association


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

    @property
    def active_associations(self) -> int:
        return self._established

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

        def factory() -> _Protocol:
            return self._protocol(context, tls.handshake_timeout if tls is not None else 15.0)

        server = await loop.create_server(
            factory, host, port, reuse_address=True, reuse_port=reuse_port or None
        )
        self._servers.append(server)
        log.info("listening on %s", ", ".join(str(s.getsockname()) for s in server.sockets))

    def _protocol(
        self, tls_context: ssl.SSLContext | None = None, handshake_timeout: float = 15.0
    ) -> _Protocol:
        association = Association(
            requestor=False, max_pdu_length=self.policy.max_pdu_length, timeouts=self.timeouts
        )
        association.on_associate = self._answer  # no closure: no reference cycle
        self._associations.add(association)
        association.closed.add_done_callback(lambda _: self._associations.discard(association))
        return _Protocol(association, tls_context, handshake_timeout=handshake_timeout)

    def _answer(self, association: Association, indication: AssociateIndication) -> None:
        core = association._core
        if core.state is not State.STA3:
            # PDUs that came in the same read as the RQ were already acted on (AA-8 in
            # Sta3): the association is gone before we could answer it.
            return
        try:
            answer = accept_or_reject(
                self.policy,
                indication.request,
                association.peer_address,
                self._established,
                association.peer_certificate,
            )
        except Exception:  # a policy bug must not kill the server: answer congestion
            log.exception("acceptance policy failed")
            answer = AAssociateRJ(
                RejectResult.REJECTED_TRANSIENT,
                RejectSource.SERVICE_PROVIDER_PRESENTATION,
                PresentationRejectReason.TEMPORARY_CONGESTION,
            )
        if isinstance(answer, AAssociateRJ):
            log.info(
                "rejected association from %s (%s) at %s: result %d source %d reason %d",
                indication.request.calling_ae_title,
                association.peer_address,
                indication.request.called_ae_title,
                answer.result,
                answer.source,
                answer.reason,
            )
            association._apply(core.reject(answer))
            return
        accept, negotiated = answer
        association.negotiated = negotiated
        association._apply(core.accept(accept))
        log.info(
            "accepted association from %s at %s: %d of %d contexts, max PDU %d / %d",
            negotiated.remote_ae_title,
            association.peer_address,
            len(negotiated.accepted_contexts),
            len(negotiated.contexts),
            negotiated.remote_max_pdu_length,
            negotiated.local_max_pdu_length,
        )
        association._established.set_result(negotiated)
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
                association._force_abort()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        for association in list(self._associations):
            if association._transport is not None:
                association._transport.abort()
            else:  # accepted while the server closed: never connected, nothing to wait for
                association._connection_lost(None)

    async def __aenter__(self) -> AssociationServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown(grace=1.0)


def run_event_loop(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
