"""A raw DICOM peer for tests and conformance probes: any PDU, any bytes, any timing.

:class:`RawPeer` opens a TCP (or PS3.15 TLS) connection to a DICOM node and lets a script
send what a well-behaved association requestor never would: PDUs out of order (PS3.8
Table 9-10), malformed PDUs (PS3.8 §9.3, Table 9-26), PDUs split at any byte or written
slowly, PDVs cut at any boundary (PS3.8 Annex E), raw bytes. What comes back is read with
the PDU codec and framer of :mod:`dicomwire.ul` (never with the association machinery
under test) and checked with explicit timeouts::

    async with RawPeer.connect("127.0.0.1", 11112) as peer:
        answer = await peer.associate("PROBE", "ANY-SCP", [(VERIFICATION, [IMPLICIT_VR_LE])])
        assert isinstance(answer, AAssociateAC)
        assert await peer.echo() == 0x0000
        await peer.send(AAssociateAC("X", "Y", []))  # out of order in Sta6
        await peer.expect_abort(source=2, reason=2)  # AA-8

Every wait is bounded: by the ``timeout`` argument of the call, else by the peer's
default ``timeout``. Expectations that do not hold raise :class:`ExpectationError`, which
is also an :class:`AssertionError` so test frameworks report it as a failed assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import ssl
import struct
import time
import uuid
from collections import deque
from collections.abc import Coroutine, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast, overload

from ..dimse.commands import (
    CommandError,
    CommandField,
    CommandSet,
    Tag,
    encode_command,
    validate_command,
)
from ..dimse.messages import CommandComplete, DataSetFragment, MessageAssembler
from ..dimse.primitives import CEchoRQ, CStoreRQ
from ..errors import DicomWireError
from ..ul.framer import PDUFramer
from ..ul.negotiation import (
    NegotiatedAssociation,
    PresentationContext,
    RequestorConfig,
    build_request,
    read_accept,
)
from ..ul.pdu import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PDUType,
    PresentationDataValue,
    UserIdentityRQItem,
)
from ..ul.tls import TLSConfig, client_context

__all__ = [
    "EXPLICIT_VR_LE",
    "IMPLICIT_VR_LE",
    "SECONDARY_CAPTURE",
    "VERIFICATION",
    "ExpectationError",
    "Message",
    "PeerClosedError",
    "RawPeer",
    "RawPeerError",
    "RawPeerTimeout",
    "c_echo_rq",
    "c_store_rq",
    "describe",
    "fragments",
    "new_uid",
    "small_dataset",
]

VERIFICATION = "1.2.840.10008.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"

P = TypeVar("P", AAssociateRQ, AAssociateAC, AAssociateRJ, PDataTF, AReleaseRQ, AReleaseRP, AAbort)

_PDU_CLASSES: dict[int, type] = {
    PDUType.A_ASSOCIATE_RQ: AAssociateRQ,
    PDUType.A_ASSOCIATE_AC: AAssociateAC,
    PDUType.A_ASSOCIATE_RJ: AAssociateRJ,
    PDUType.P_DATA_TF: PDataTF,
    PDUType.A_RELEASE_RQ: AReleaseRQ,
    PDUType.A_RELEASE_RP: AReleaseRP,
    PDUType.A_ABORT: AAbort,
}

#: Largest PDU (other than P-DATA-TF) the peer accepts from the node it talks to.
_MAX_CONTROL_PDU = 16 << 20


# --------------------------------------------------------------------------- errors


class RawPeerError(DicomWireError):
    """Root of the raw peer's errors."""


class RawPeerTimeout(RawPeerError, TimeoutError):
    """Nothing (or not enough) arrived within the timeout; the connection is still open."""


class PeerClosedError(RawPeerError, ConnectionError):
    """The connection was closed (or reset) while writing to it."""


class ExpectationError(RawPeerError, AssertionError):
    """The node did not answer as expected; :attr:`received` is what it did instead."""

    def __init__(self, message: str, received: PDU | None = None) -> None:
        self.received = received
        super().__init__(message)


# --------------------------------------------------------------------------- describing PDUs


def describe(pdu: PDU | None) -> str:
    """A one-line description of a received PDU (None: the connection closed)."""
    if pdu is None:
        return "the connection closed"
    if isinstance(pdu, AAbort):
        return f"A-ABORT (source {pdu.source}, reason {pdu.reason})"
    if isinstance(pdu, AAssociateRJ):
        return f"A-ASSOCIATE-RJ (result {pdu.result}, source {pdu.source}, reason {pdu.reason})"
    if isinstance(pdu, AAssociateAC):
        results = ", ".join(f"{c.context_id}:{c.result}" for c in pdu.presentation_contexts)
        return f"A-ASSOCIATE-AC (context results {results or 'none'})"
    if isinstance(pdu, AAssociateRQ):
        return f"A-ASSOCIATE-RQ (from {pdu.calling_ae_title!r} to {pdu.called_ae_title!r})"
    if isinstance(pdu, PDataTF):
        parts = ", ".join(
            f"ctx {v.context_id} {'cmd' if v.is_command else 'data'}"
            f"{' last' if v.is_last else ''} {len(v.data)} B"
            for v in pdu.pdvs[:4]
        )
        more = f" +{len(pdu.pdvs) - 4} more" if len(pdu.pdvs) > 4 else ""
        return f"P-DATA-TF ({parts}{more})"
    if isinstance(pdu, AReleaseRQ):
        return "A-RELEASE-RQ"
    return "A-RELEASE-RP"


# --------------------------------------------------------------------------- DIMSE by hand


def new_uid() -> str:
    """A fresh UID under the 2.25 root (PS3.5 §B.2)."""
    return f"2.25.{uuid.uuid4().int}"


def c_echo_rq(message_id: int = 1) -> bytes:
    """The command set of a C-ECHO-RQ (PS3.7 §9.3.5), Implicit VR Little Endian."""
    return encode_command(CEchoRQ(VERIFICATION, message_id=message_id).to_command())


def c_store_rq(
    sop_class_uid: str, sop_instance_uid: str, message_id: int = 1, priority: int = 0
) -> bytes:
    """The command set of a C-STORE-RQ (PS3.7 §9.3.1); a data set follows it."""
    store = CStoreRQ(sop_class_uid, sop_instance_uid, message_id=message_id, dataset=b"")
    command = store.to_command()
    command[Tag.Priority] = priority  # any value: a probe may send one PS3.7 does not define
    return encode_command(command)


def _implicit(group: int, element: int, value: bytes, pad: bytes = b" ") -> bytes:
    if len(value) % 2:
        value += pad
    return struct.pack("<HHL", group, element, len(value)) + value


def small_dataset(sop_class_uid: str = SECONDARY_CAPTURE, sop_instance_uid: str = "") -> bytes:
    """A minimal data set (Implicit VR Little Endian) for C-STORE: a handful of elements.

    The instance UID defaults to a fresh one. Enough for a storage SCP to file it; it has
    no pixel data.
    """
    study, series = new_uid(), new_uid()
    instance = sop_instance_uid or new_uid()
    return b"".join(
        (
            _implicit(0x0008, 0x0016, sop_class_uid.encode(), b"\x00"),
            _implicit(0x0008, 0x0018, instance.encode(), b"\x00"),
            _implicit(0x0008, 0x0060, b"OT"),
            _implicit(0x0010, 0x0010, b"PROBE^DICOMWIRE"),
            _implicit(0x0010, 0x0020, b"PROBE"),
            _implicit(0x0020, 0x000D, study.encode(), b"\x00"),
            _implicit(0x0020, 0x000E, series.encode(), b"\x00"),
            _implicit(0x0020, 0x0013, b"1"),
        )
    )


def fragments(
    context_id: int, data: bytes, sizes: Iterable[int] = (), *, command: bool, last: bool = True
) -> list[PresentationDataValue]:
    """PDVs carrying ``data`` cut into pieces of ``sizes`` (cycled; empty: one piece).

    The message control header (PS3.8 E.2) marks command or data set fragments and, when
    ``last``, the final fragment.
    """
    cycle = itertools.cycle(list(sizes) or [max(len(data), 1)])
    result: list[PresentationDataValue] = []
    position = 0
    while True:
        size = next(cycle)
        if size <= 0:
            raise ValueError(f"fragment size {size} must be positive")
        piece = data[position : position + size]
        position += size
        final = position >= len(data)
        control = (0x01 if command else 0x00) | (0x02 if final and last else 0x00)
        result.append(PresentationDataValue(context_id, control, piece))
        if final:
            return result


@dataclass(slots=True)
class Message:
    """A whole DIMSE message received: its context, command set and data set bytes."""

    context_id: int
    command: CommandSet
    dataset: bytes | None = None

    @property
    def command_field(self) -> int:
        value = self.command.get(Tag.CommandField)
        return value if isinstance(value, int) else -1

    @property
    def status(self) -> int | None:
        value = self.command.get(Tag.Status)
        return value if isinstance(value, int) else None

    @property
    def message_id_being_responded_to(self) -> int | None:
        value = self.command.get(Tag.MessageIDBeingRespondedTo)
        return value if isinstance(value, int) else None


# --------------------------------------------------------------------------- the peer


class _Connecting:
    """What :meth:`RawPeer.connect` returns: await it, or use it with ``async with``."""

    def __init__(self, opener: Coroutine[Any, Any, RawPeer]) -> None:
        self._opener = opener
        self._peer: RawPeer | None = None

    def __await__(self) -> Generator[Any, None, RawPeer]:
        peer: RawPeer = yield from self._opener.__await__()
        return peer

    async def __aenter__(self) -> RawPeer:
        self._peer = await self._opener
        return self._peer

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._peer is not None:
            await self._peer.close()


ContextSpec = PresentationContext | tuple[str, Sequence[str]]


class RawPeer:
    """One transport connection to a DICOM node, driven PDU by PDU or byte by byte.

    Create it with :meth:`connect`. ``timeout`` is the default bound of every wait.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float = 5.0
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.framer = PDUFramer(0, _MAX_CONTROL_PDU)
        self._pending: deque[PDU] = deque()
        self._assembler = MessageAssembler()
        self._dataset = bytearray()
        #: True once the node closed the connection (EOF or reset).
        self.closed = False
        #: True when the connection ended with a reset rather than an orderly close.
        self.reset = False
        #: Every PDU received so far, in order.
        self.received: list[PDU] = []
        #: Bytes written so far.
        self.bytes_sent = 0
        #: The node's A-ASSOCIATE-AC and what it agreed on, after :meth:`associate`.
        self.accept: AAssociateAC | None = None
        self.negotiated: NegotiatedAssociation | None = None
        self._message_id = 0

    # -- opening and closing --------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        *,
        tls: TLSConfig | ssl.SSLContext | None = None,
        timeout: float = 5.0,
    ) -> _Connecting:
        """Open a connection (TLS when ``tls`` is given): ``await`` it or ``async with`` it.

        Raises :class:`RawPeerTimeout` when the connection is not made within ``timeout``,
        :class:`RawPeerError` when it is refused or the TLS handshake fails.
        """
        return _Connecting(cls._open(host, port, tls, timeout))

    @classmethod
    async def _open(
        cls, host: str, port: int, tls: TLSConfig | ssl.SSLContext | None, timeout: float
    ) -> RawPeer:
        context = client_context(tls, host) if isinstance(tls, TLSConfig) else tls
        server_hostname = host if context is not None and context.check_hostname else None
        try:
            if context is None:
                opening = asyncio.open_connection(host, port)
            else:
                opening = asyncio.open_connection(
                    host, port, ssl=context, server_hostname=server_hostname or ""
                )
            reader, writer = await asyncio.wait_for(opening, timeout)
        except TimeoutError:
            raise RawPeerTimeout(f"no connection to {host}:{port} within {timeout} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise RawPeerError(f"cannot connect to {host}:{port}: {exc}") from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, timeout)

    async def __aenter__(self) -> RawPeer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, timeout: float = 2.0) -> None:
        """Close the connection in an orderly way (TCP FIN); idempotent."""
        if self.writer.is_closing():
            return
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), timeout)

    def abort_transport(self) -> None:
        """Drop the connection at once with a TCP reset (SO_LINGER 0), nothing flushed."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    # -- sending --------------------------------------------------------------------------

    @staticmethod
    def _bytes(item: PDU | bytes | bytearray | memoryview) -> bytes:
        if isinstance(item, bytes | bytearray | memoryview):
            return bytes(item)
        return item.encode()

    async def _write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise PeerClosedError("the connection is closed")
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), self.timeout)
        except TimeoutError:
            raise RawPeerTimeout(f"the node read nothing for {self.timeout} s") from None
        except (ConnectionError, OSError) as exc:
            raise PeerClosedError(f"the connection closed while writing: {exc}") from exc
        self.bytes_sent += len(data)

    async def send(self, *items: PDU | bytes | bytearray | memoryview) -> None:
        """Write PDUs and raw bytes, all in one write (so the node may read them together).

        Raises :class:`PeerClosedError` when the connection is gone.
        """
        await self._write(b"".join(self._bytes(item) for item in items))

    async def send_split(
        self,
        data: PDU | bytes | bytearray | memoryview,
        sizes: Iterable[int],
        *,
        delay: float = 0.0,
    ) -> None:
        """Write ``data`` in pieces of ``sizes`` bytes (cycled), one write per piece.

        With TCP_NODELAY each piece leaves as its own segment; ``delay`` seconds pass
        between pieces.
        """
        raw = self._bytes(data)
        cycle = itertools.cycle(list(sizes) or [len(raw) or 1])
        position = 0
        while position < len(raw):
            size = next(cycle)
            if size <= 0:
                raise ValueError(f"piece size {size} must be positive")
            await self._write(raw[position : position + size])
            position += size
            if delay and position < len(raw):
                await asyncio.sleep(delay)

    async def send_slowly(
        self, data: PDU | bytes | bytearray | memoryview, delay: float, chunk: int = 1
    ) -> None:
        """Write ``data`` ``chunk`` bytes at a time, ``delay`` seconds apart."""
        await self.send_split(data, [chunk], delay=delay)

    # -- receiving ------------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> PDU | None:
        """The next PDU; None once the node closed the connection.

        Raises :class:`RawPeerTimeout` when none arrives within ``timeout`` seconds, and
        :class:`~dicomwire.ul.pdu.PDUError` when the node sends bytes that are not a PDU.
        """
        limit = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not self._pending:
            if self.closed:
                return None
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise RawPeerTimeout(f"nothing received within {limit} s")
            try:
                data = await asyncio.wait_for(self.reader.read(1 << 16), remaining)
            except TimeoutError:
                raise RawPeerTimeout(f"nothing received within {limit} s") from None
            except (ConnectionError, OSError, ssl.SSLError):
                data = b""
                self.reset = True
            if not data:
                self.closed = True
                continue
            self._pending.extend(self.framer.feed(data))
        pdu = self._pending.popleft()
        self.received.append(pdu)
        return pdu

    @overload
    async def expect(self, kind: type[P], timeout: float | None = None) -> P: ...

    @overload
    async def expect(self, kind: int, timeout: float | None = None) -> PDU: ...

    async def expect(self, kind: type[P] | int, timeout: float | None = None) -> P | PDU:
        """The next PDU, which must be of ``kind`` (a PDU class or a :class:`PDUType`).

        Raises :class:`ExpectationError` for another PDU or a close, :class:`RawPeerTimeout`
        when nothing arrives in time.
        """
        cls = _PDU_CLASSES.get(kind) if isinstance(kind, int) else kind
        if cls is None:
            raise ValueError(f"unknown PDU type {kind!r}")
        pdu = await self.receive(timeout)
        if pdu is None or not isinstance(pdu, cls):
            raise ExpectationError(f"expected {cls.__name__}, received {describe(pdu)}", pdu)
        return cast(P, pdu)

    async def expect_abort(
        self, source: int | None = None, reason: int | None = None, timeout: float | None = None
    ) -> AAbort:
        """The next PDU must be an A-ABORT with this source and reason (None: any)."""
        abort = await self.expect(AAbort, timeout)
        if (source is not None and abort.source != source) or (
            reason is not None and abort.reason != reason
        ):
            raise ExpectationError(
                f"expected A-ABORT (source {source}, reason {reason}), received {describe(abort)}",
                abort,
            )
        return abort

    async def expect_close(self, timeout: float | None = None) -> float:
        """The node must close the connection without sending anything; return the wait."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        pdu = await self.receive(timeout)
        if pdu is not None:
            raise ExpectationError(f"expected a close, received {describe(pdu)}", pdu)
        return loop.time() - start

    async def expect_silence(self, duration: float) -> None:
        """Nothing must arrive, and the connection must stay open, for ``duration`` s."""
        try:
            pdu = await self.receive(duration)
        except RawPeerTimeout:
            return
        raise ExpectationError(f"expected silence, received {describe(pdu)}", pdu)

    # -- association helpers ----------------------------------------------------------------

    async def associate(
        self,
        calling_ae_title: str = "RAWPEER",
        called_ae_title: str = "ANY-SCP",
        contexts: Sequence[ContextSpec] = ((VERIFICATION, (IMPLICIT_VR_LE,)),),
        *,
        max_pdu_length: int = 1 << 16,
        roles: Mapping[str, tuple[bool, bool]] | None = None,
        window: tuple[int, int] | None = None,
        user_identity: UserIdentityRQItem | None = None,
        request: AAssociateRQ | None = None,
        timeout: float | None = None,
    ) -> AAssociateAC | AAssociateRJ:
        """Send an A-ASSOCIATE-RQ and return the node's AC or RJ.

        The RQ is built with :func:`~dicomwire.ul.negotiation.build_request` unless
        ``request`` is given (the escape hatch for deliberately odd requests). After an AC,
        :attr:`accept` and :attr:`negotiated` say what was agreed. Raises
        :class:`ExpectationError` for anything but AC or RJ.
        """
        config = RequestorConfig(
            calling_ae_title,
            called_ae_title,
            list(contexts),
            max_pdu_length=max_pdu_length,
            maximum_invoked=window[0] if window else None,
            maximum_performed=window[1] if window else None,
            roles=dict(roles or {}),
            user_identity=user_identity,
        )
        built, proposed = build_request(config)
        await self.send(request or built)
        answer = await self.receive(timeout)
        if isinstance(answer, AAssociateAC):
            self.accept = answer
            if request is None:
                self.negotiated = read_accept(config, proposed, answer)
            return answer
        if isinstance(answer, AAssociateRJ):
            return answer
        raise ExpectationError(
            f"expected A-ASSOCIATE-AC or -RJ, received {describe(answer)}", answer
        )

    @property
    def peer_max_pdu_length(self) -> int:
        """The Maximum Length the node announced in its AC (0: unlimited or no AC yet)."""
        if self.accept is None or self.accept.user_information is None:
            return 0
        return self.accept.user_information.maximum_length or 0

    def accepted_context(self, abstract_syntax: str) -> int | None:
        """The ID of an accepted presentation context for ``abstract_syntax``, if any."""
        if self.negotiated is None:
            return None
        context = self.negotiated.find_context(abstract_syntax)
        return context.context_id if context is not None else None

    async def release(self, timeout: float | None = None) -> None:
        """A-RELEASE-RQ; the node must answer A-RELEASE-RP; then close the connection."""
        await self.send(AReleaseRQ())
        await self.expect(AReleaseRP, timeout)
        await self.close()

    # -- DIMSE helpers ------------------------------------------------------------------------

    def next_message_id(self) -> int:
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    async def send_message(
        self,
        context_id: int,
        command: bytes,
        dataset: bytes | None = None,
        *,
        sizes: Iterable[int] = (),
        pdvs_per_pdu: int = 0,
    ) -> None:
        """Send one DIMSE message: the command set, then the data set, as PDVs.

        Fragments are cut to ``sizes`` (cycled; default whole); ``pdvs_per_pdu`` PDVs go
        in each P-DATA-TF (0: all of them in one PDU, command and data set together).
        """
        sizes = list(sizes)
        pdvs = fragments(context_id, command, sizes, command=True)
        if dataset is not None:
            pdvs += fragments(context_id, dataset, sizes, command=False)
        step = pdvs_per_pdu or len(pdvs)
        pdus = [PDataTF(pdvs[i : i + step]) for i in range(0, len(pdvs), step)]
        await self.send(*pdus)

    async def receive_message(self, timeout: float | None = None) -> Message:
        """The next whole DIMSE message (PDVs reassembled, PS3.8 Annex E).

        Raises :class:`ExpectationError` when a PDU other than P-DATA-TF arrives first.
        """
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        pending: Message | None = None
        while True:
            pdu = await self.receive(max(0.0, deadline - time.monotonic()))
            if not isinstance(pdu, PDataTF):
                raise ExpectationError(f"expected a DIMSE message, received {describe(pdu)}", pdu)
            for event in self._assembler.feed(pdu):
                if isinstance(event, CommandComplete):
                    pending = Message(event.context_id, event.command)
                    if not event.has_dataset:
                        return pending
                    self._dataset = bytearray()
                elif isinstance(event, DataSetFragment) and pending is not None:
                    self._dataset += event.data
                    if event.last:
                        pending.dataset = bytes(self._dataset)
                        return pending

    async def echo(self, context_id: int | None = None, timeout: float | None = None) -> int:
        """One C-ECHO on ``context_id`` (default: the accepted Verification context).

        Returns the response's status; raises :class:`ExpectationError` when the answer
        is not a valid C-ECHO-RSP to this request (PS3.7 §9.3.5.2).
        """
        if context_id is None:
            context_id = self.accepted_context(VERIFICATION)
            if context_id is None:
                raise ExpectationError("no accepted Verification presentation context")
        message_id = self.next_message_id()
        await self.send_message(context_id, c_echo_rq(message_id))
        response = await self.receive_message(timeout)
        if (
            response.command_field != CommandField.C_ECHO_RSP
            or response.message_id_being_responded_to != message_id
            or response.status is None
        ):
            raise ExpectationError(f"expected a C-ECHO-RSP to message {message_id}: {response}")
        try:
            validate_command(response.command)
        except CommandError as exc:
            raise ExpectationError(f"invalid C-ECHO-RSP: {exc}") from None
        return response.status
