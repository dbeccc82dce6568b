"""A scripted raw DICOM peer for wire tests: plain asyncio streams, bytes out, PDUs in.

The peer shares no code with the association machinery except the PDU codec and framer
(to build and read PDUs); what it sends is exactly the bytes a test scripts, in one write
per :meth:`RawPeer.send`, so several PDUs can reach the other side in one read.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from dicomwire.ul.framer import PDUFramer
from dicomwire.ul.negotiation import RequestorConfig, build_request
from dicomwire.ul.pdu import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRQ,
    PDataTF,
    PresentationDataValue,
)

LOCALHOST = "127.0.0.1"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"

#: An unknown PDU type (PS3.8 Table 9-26 reason 1, unrecognized PDU).
UNKNOWN_PDU = b"\x09\x00\x00\x00\x00\x00"

_FIXED_RQ = struct.pack(">HH16s16s32s", 1, 0, b"DICOMWIRE".ljust(16), b"SCU".ljust(16), bytes(32))

#: Bytes of PDUs that are not valid, each with the A-ABORT reason (Table 9-26) they earn.
INVALID_PDUS: dict[str, tuple[bytes, int]] = {
    "unknown-type": (UNKNOWN_PDU, 1),
    "unknown-type-0xff-with-body": (b"\xff\x00\x00\x00\x00\x02\x00\x00", 1),
    "release-rq-length-5": (b"\x05\x00\x00\x00\x00\x05" + bytes(5), 6),
    "abort-length-2": (b"\x07\x00\x00\x00\x00\x02\x00\x00", 6),
    "pdv-length-below-2": (b"\x04\x00\x00\x00\x00\x06\x00\x00\x00\x01\x01\x03", 6),
    "p-data-without-pdv": (b"\x04\x00\x00\x00\x00\x00", 6),
    # (An item of unknown type inside an RQ is not invalid: PS3.8 §9.3.1 has it skipped.)
    "associate-rq-with-ac-context-item": (
        b"\x01\x00" + struct.pack(">L", 68 + 8) + _FIXED_RQ + b"\x21\x00\x00\x04\x01\x00\x00\x00",
        5,
    ),
    "associate-rq-short-fixed-part": (b"\x01\x00\x00\x00\x00\x04" + bytes(4), 6),
}


def verification_request(called: str = "DICOMWIRE", calling: str = "RAWPEER") -> AAssociateRQ:
    """An A-ASSOCIATE-RQ proposing Verification (context 1) in Implicit VR Little Endian."""
    request, _ = build_request(RequestorConfig(calling, called, [(VERIFICATION, [IMPLICIT_VR_LE])]))
    return request


# --------------------------------------------------------------------------- DIMSE by hand


def _element(group: int, element: int, value: bytes) -> bytes:
    return struct.pack("<HHL", group, element, len(value)) + value


def c_echo_rq(message_id: int, context_id: int = 1) -> PDataTF:
    """A C-ECHO-RQ command (PS3.7 §9.3.5, Implicit VR LE) in one P-DATA-TF, built by hand."""
    body = (
        _element(0, 0x0002, VERIFICATION.encode() + b"\x00")
        + _element(0, 0x0100, struct.pack("<H", 0x0030))
        + _element(0, 0x0110, struct.pack("<H", message_id))
        + _element(0, 0x0800, struct.pack("<H", 0x0101))
    )
    command = _element(0, 0x0000, struct.pack("<L", len(body))) + body
    return PDataTF([PresentationDataValue(context_id, 0x03, command)])


def parse_command(pdu: PDataTF) -> dict[int, bytes]:
    """The elements (tag -> raw value) of a command set carried whole in one PDV."""
    assert len(pdu.pdvs) == 1, "a C-ECHO-RSP fits in one PDV"
    pdv = pdu.pdvs[0]
    assert pdv.is_command and pdv.is_last
    data, pos, elements = bytes(pdv.data), 0, {}
    while pos < len(data):
        group, element, length = struct.unpack_from("<HHL", data, pos)
        elements[(group << 16) | element] = data[pos + 8 : pos + 8 + length]
        pos += 8 + length
    return elements


def us(value: bytes) -> int:
    (result,) = struct.unpack("<H", value)
    return int(result)


# --------------------------------------------------------------------------- the peer


class RawPeer:
    """One TCP connection driven by a test script."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = PDUFramer()
        self.pending: deque[PDU] = deque()
        self.eof = False

    @classmethod
    async def connect(cls, port: int, host: str = LOCALHOST) -> RawPeer:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
        return cls(reader, writer)

    async def send(self, *parts: bytes | PDU) -> None:
        """Write the parts (PDUs or raw bytes) in one write."""
        data = b"".join(p if isinstance(p, bytes | bytearray) else p.encode() for p in parts)
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self, timeout: float = 3.0) -> PDU | None:
        """The next PDU; None once the other side closed. TimeoutError when none comes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.pending:
            if self.eof:
                return None
            try:
                data = await asyncio.wait_for(
                    self.reader.read(1 << 16), max(0.0, deadline - loop.time())
                )
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                self.eof = True
                assert self.framer.buffered == 0, "the connection closed inside a PDU"
                continue
            self.pending.extend(self.framer.feed(data))
        return self.pending.popleft()

    async def expect(self, kind: type[Any], timeout: float = 3.0) -> Any:
        pdu = await self.receive(timeout)
        assert isinstance(pdu, kind), f"expected {kind.__name__}, received {pdu!r}"
        return pdu

    async def expect_abort(self, source: int, reason: int, timeout: float = 3.0) -> None:
        pdu = await self.expect(AAbort, timeout)
        assert (pdu.source, pdu.reason) == (source, reason)

    async def expect_close(self, timeout: float = 3.0) -> float:
        """Wait for the other side to close without sending anything; return the wait."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        pdu = await self.receive(timeout)
        assert pdu is None, f"expected the connection to close, received {pdu!r}"
        return loop.time() - start

    async def expect_silence(self, duration: float) -> None:
        """Nothing arrives, and the connection stays open, for ``duration`` seconds."""
        try:
            pdu = await self.receive(duration)
        except TimeoutError:
            return
        raise AssertionError(f"expected silence, received {pdu!r}")

    async def associate(self, request: AAssociateRQ | None = None) -> AAssociateAC:
        """Send an A-ASSOCIATE-RQ (Verification by default) and return the AC."""
        await self.send(request or verification_request())
        ac: AAssociateAC = await self.expect(AAssociateAC)
        return ac

    async def echo(self, message_id: int) -> None:
        """One C-ECHO on context 1; the answer must be a successful C-ECHO-RSP."""
        await self.send(c_echo_rq(message_id))
        response = parse_command(await self.expect(PDataTF))
        assert us(response[0x00000100]) == 0x8030  # C-ECHO-RSP
        assert us(response[0x00000120]) == message_id
        assert us(response[0x00000900]) == 0x0000
        assert response[0x00000002].rstrip(b"\x00") == VERIFICATION.encode()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)


T = TypeVar("T")


def run(make: Callable[[], Coroutine[Any, Any, T]], timeout: float = 20.0) -> T:
    """Run one scenario on a fresh event loop, bounded by ``timeout`` seconds.

    Exceptions the loop reports to its exception handler (a protocol callback that raised,
    a task nobody awaited) fail the scenario too.
    """

    async def bounded() -> T:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        result = await asyncio.wait_for(make(), timeout)
        await asyncio.sleep(0)  # let pending callbacks report
        assert not errors, f"the event loop reported errors: {errors}"
        return result

    return asyncio.run(bounded())


async def gather_script(task: Awaitable[T], timeout: float = 5.0) -> T:
    """Await a raw peer's script task, bounded."""
    return await asyncio.wait_for(task, timeout)
