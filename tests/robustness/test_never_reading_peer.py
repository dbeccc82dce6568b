"""A peer that never reads what the node sends is cut off; others are served meanwhile.

Two ways a peer can stop reading (issue 8):

- it asks for a lot of output and never reads it. The node's own services answer with a
  few dozen bytes, so a C-FIND SCP handler (registered on the node, as an application
  would) answers with 1000 pending responses of 64 KiB. The peer's receive buffer is made
  small, the kernel buffers and then the transport's write buffer fill, writing pauses
  and after ``send_stall`` seconds the node aborts the association;
- it floods requests (C-ECHO-RQ, far past the negotiated window of one) and never reads
  the responses: the node aborts it (today the DIMSE layer's check on outstanding
  requests does it, then ARTIM closes the connection) and writes no more than a window's
  worth of responses.

Both peers are plain non-blocking sockets: nothing reads from them behind the test's back
(an asyncio StreamReader would keep reading into its own buffer).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from dicomwire.dimse.commands import CommandField, DataSetType, Tag, encode_command
from dicomwire.dimse.session import Request, open_session
from dicomwire.errors import DicomWireError
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.verification import echo_on
from dicomwire.testing.rawpeer import c_echo_rq, fragments
from dicomwire.ul.association import (
    Association,
    AssociationServer,
    DicomTimeoutError,
    Timeouts,
    connect,
)
from dicomwire.ul.negotiation import RequestorConfig, build_request
from dicomwire.ul.pdu import PDataTF, PresentationDataValue

from ._support import (
    CLIENT_TIMEOUTS,
    FD_SLACK,
    IMPLICIT_VR_LE,
    LOCALHOST,
    node_timeouts,
    open_fds,
    running_node,
    settle,
    verification_config,
)

SEND_STALL = 1.0
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
#: Far more than any kernel buffers (tcp_wmem max is typically 4 MiB) can absorb.
MATCHES = 1000
MATCH_SIZE = 64 << 10
#: The peer's receive buffer (the kernel doubles it and applies its minimum).
PEER_RCVBUF = 4096
FLOOD_REQUESTS = 20_000
#: A C-ECHO-RSP is about 100 bytes: a few hundred of them at most.
FLOOD_RESPONSE_BYTES = 64 << 10
SLACK = 2.0


# --------------------------------------------------------------------------- raw socket


async def _raw_associate(
    loop: asyncio.AbstractEventLoop, port: int, config: RequestorConfig
) -> socket.socket:
    """A non-blocking socket with a small receive buffer, associated (AC read, nothing more)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PEER_RCVBUF)  # before connect
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (LOCALHOST, port)), 5.0)
        request, _ = build_request(config)
        await asyncio.wait_for(loop.sock_sendall(sock, request.encode()), 5.0)
        header = b""
        while len(header) < 6:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 6 - len(header)), 5.0)
            assert chunk, "the node closed the connection instead of answering the RQ"
            header += chunk
        assert header[0] == 0x02, f"expected A-ASSOCIATE-AC, got PDU type 0x{header[0]:02X}"
        remaining = struct.unpack_from(">L", header, 2)[0]
        while remaining:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, remaining), 5.0)
            assert chunk, "the node closed the connection inside its A-ASSOCIATE-AC"
            remaining -= len(chunk)
    except BaseException:
        sock.close()
        raise
    return sock


async def _drain_until_closed(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, timeout: float = 10.0
) -> tuple[int, bool]:
    """Read everything until EOF or reset: (bytes read, True when it was a reset)."""
    total = 0
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"the connection is still open after {timeout} s ({total} bytes)"
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), remaining)
        except (ConnectionResetError, BrokenPipeError):
            return total, True
        if not data:
            return total, False
        total += len(data)


def _node_side(node: Node, sock: socket.socket) -> Association:
    """The node's Association for the connection of ``sock``."""
    port = sock.getsockname()[1]
    found = [a for a in node.server._associations if a.peer_address == (LOCALHOST, port)]
    assert len(found) == 1, f"{len(found)} node associations for local port {port}"
    return found[0]


def _find_rq_pdata(context_id: int = 1, message_id: int = 1) -> bytes:
    command = encode_command(
        {
            Tag.AffectedSOPClassUID: PATIENT_ROOT_FIND,
            Tag.CommandField: CommandField.C_FIND_RQ,
            Tag.MessageID: message_id,
            Tag.Priority: 0,
            Tag.CommandDataSetType: DataSetType.PRESENT,
        }
    )
    identifier = struct.pack("<HHL", 0x0010, 0x0020, 0)  # Patient ID, universal matching
    pdvs = fragments(context_id, command, command=True)
    pdvs += fragments(context_id, identifier, command=False)
    return PDataTF(pdvs).encode()


async def _echo_elsewhere(port: int) -> tuple[int, float]:
    started = time.monotonic()
    async with open_session(
        LOCALHOST, port, verification_config("BYSTANDER"), timeouts=CLIENT_TIMEOUTS
    ) as session:
        status = int(await echo_on(session))
    return status, time.monotonic() - started


# --------------------------------------------------------------------------- the stalling find


class _Finder:
    """A C-FIND SCP handler with a lot to say: MATCHES pending responses of MATCH_SIZE."""

    def __init__(self) -> None:
        self.sent = 0
        self.errors: list[BaseException] = []

    async def __call__(self, request: Request) -> int:
        try:
            for _ in range(MATCHES):
                await request.send_pending(bytes(MATCH_SIZE))
                self.sent += 1
        except Exception as exc:  # what the send stall raises into the handler
            self.errors.append(exc)
            raise
        return 0


@dataclass
class StallOutcome:
    cut_after: float  # request sent -> the node closed the connection
    bystander_status: int  # a C-ECHO by another client while the staller was stuck
    bystander_time: float
    after_status: int  # and one after the staller was cut off
    received: int  # bytes that reached the staller, kernel buffers included
    error: DicomWireError | None  # the node association's reason for ending
    pending_sent: int  # pending responses the handler managed to write
    handler_errors: list[BaseException]
    fds_after: int  # descriptors held beyond those before the scenario


def _stall_scenario(tmp_path: Path) -> StallOutcome:
    async def main() -> StallOutcome:
        loop = asyncio.get_running_loop()
        timeouts = node_timeouts(send_stall=SEND_STALL, network_idle=30.0)
        async with running_node(tmp_path, timeouts=timeouts, promiscuous=True) as node:
            finder = _Finder()
            # in place of the node's own Query/Retrieve C-FIND SCP (a default service)
            node.handlers[(PATIENT_ROOT_FIND, CommandField.C_FIND_RQ)] = finder
            fds_before = open_fds()
            config = RequestorConfig(
                "STALLER", "DICOMWIRE", [(PATIENT_ROOT_FIND, [IMPLICIT_VR_LE])]
            )
            sock = await _raw_associate(loop, node.port, config)
            try:
                association = _node_side(node, sock)
                await loop.sock_sendall(sock, _find_rq_pdata())
                started = time.monotonic()
                # Served while the staller's responses are stuck.
                bystander = asyncio.create_task(_echo_elsewhere(node.port))
                await asyncio.wait_for(asyncio.shield(association.closed), SEND_STALL + 10.0)
                cut_after = time.monotonic() - started
                status, echo_time = await bystander
                received, _ = await _drain_until_closed(loop, sock)
            finally:
                sock.close()
            after_status, _ = await _echo_elsewhere(node.port)
            await settle(node)
            return StallOutcome(
                cut_after=cut_after,
                bystander_status=status,
                bystander_time=echo_time,
                after_status=after_status,
                received=received,
                error=association.error,
                pending_sent=finder.sent,
                handler_errors=finder.errors,
                fds_after=open_fds() - fds_before,
            )

    return asyncio.run(main())


def test_peer_that_never_reads_is_aborted_after_send_stall(tmp_path: Path) -> None:
    outcome = _stall_scenario(tmp_path)
    print(
        f"\nnever-reading peer: cut after {outcome.cut_after:.3f} s, "
        f"{outcome.pending_sent} of {MATCHES} responses written, "
        f"{outcome.received} bytes reached the peer, bystander echo in "
        f"{outcome.bystander_time:.3f} s"
    )
    assert SEND_STALL * 0.9 <= outcome.cut_after <= SEND_STALL + SLACK
    # The node gave up: most of what the handler had to say was never written.
    assert outcome.pending_sent < MATCHES // 4
    assert outcome.received < MATCHES * MATCH_SIZE // 4
    assert len(outcome.handler_errors) == 1
    assert isinstance(outcome.handler_errors[0], DicomTimeoutError)
    assert outcome.bystander_status == 0 and outcome.after_status == 0
    assert outcome.bystander_time < 5.0
    assert outcome.fds_after <= FD_SLACK


def test_send_stall_is_the_reported_reason(tmp_path: Path) -> None:
    outcome = _stall_scenario(tmp_path)
    assert isinstance(outcome.error, DicomTimeoutError), repr(outcome.error)


# --------------------------------------------------------------------------- flooding


def test_flooding_peer_that_never_reads_is_aborted(tmp_path: Path) -> None:
    """C-ECHO-RQs as fast as the socket takes them, nothing read: the node cuts it off."""

    async def main() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        timeouts = node_timeouts(send_stall=SEND_STALL, network_idle=30.0)
        async with running_node(tmp_path, timeouts=timeouts) as node:
            fds_before = open_fds()
            sock = await _raw_associate(loop, node.port, verification_config("FLOODER"))
            try:
                association = _node_side(node, sock)
                started = time.monotonic()
                sent = 0
                bystander = asyncio.create_task(_echo_elsewhere(node.port))
                while sent < FLOOD_REQUESTS and not association.closed.done():
                    batch = b"".join(
                        PDataTF(
                            fragments(1, c_echo_rq((sent + n) % 0xFFFF + 1), command=True)
                        ).encode()
                        for n in range(50)
                    )
                    try:
                        await asyncio.wait_for(loop.sock_sendall(sock, batch), 1.0)
                    except TimeoutError:
                        break  # the node stopped reading: wait for its verdict
                    except OSError:
                        break  # already cut off
                    sent += 50
                await asyncio.wait_for(asyncio.shield(association.closed), 10.0)
                cut_after = time.monotonic() - started
                status, echo_time = await bystander
                received, _ = await _drain_until_closed(loop, sock)
            finally:
                sock.close()
            after_status, _ = await _echo_elsewhere(node.port)
            settle_time = await settle(node)
            fds_after = open_fds() - fds_before

        assert cut_after <= 1.0 + 2 * SLACK, f"cut off after {cut_after:.2f} s"
        # The node answered a window's worth at most, not the thousands nobody read.
        assert received < FLOOD_RESPONSE_BYTES, f"{received} bytes of responses written"
        assert status == 0 and after_status == 0
        assert echo_time < 5.0
        assert fds_after <= FD_SLACK
        return {
            "cut_after": cut_after,
            "requests_sent": sent,
            "bytes_received": received,
            "bystander_echo": echo_time,
            "settle": settle_time,
        }

    measured = asyncio.run(main())
    print(f"\nflooding peer: { {k: round(v, 3) for k, v in measured.items()} }")


# --------------------------------------------------------------------------- the UL API


def test_concurrent_senders_both_resume_when_the_peer_reads() -> None:
    async def main() -> list[str]:
        gate = asyncio.Event()
        received = 0

        async def handler(association: Association) -> None:
            nonlocal received
            await gate.wait()  # read nothing until both senders wait in send()
            while await association.receive() is not None:
                received += 1
            association.release_response()

        policy = Node(NodeConfig()).policy
        async with AssociationServer(policy, handler, timeouts=Timeouts(dimse=None)) as server:
            await server.start(LOCALHOST, 0)
            association = await connect(
                LOCALHOST,
                server.port,
                verification_config(),
                timeouts=Timeouts(send_stall=SEND_STALL),
            )
            pdu = PDataTF([PresentationDataValue(1, 0, bytes(60_000))])
            while not association.writing_paused:
                association.send_nowait(pdu)

            async def sender() -> str:
                try:
                    await association.send(pdu)
                except DicomTimeoutError as exc:
                    return f"stalled: {exc}"
                return "sent"

            senders = [asyncio.create_task(sender()) for _ in range(2)]
            await asyncio.sleep(0.1)
            gate.set()  # the peer reads everything from now on
            outcome = await asyncio.wait_for(asyncio.gather(*senders), SEND_STALL + 5.0)
            if association.is_established:
                await association.release()
            return outcome

    assert asyncio.run(main()) == ["sent", "sent"]
