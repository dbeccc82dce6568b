"""Malformed and unexpected input on a live node, from a raw socket (PS3.8 §9.2, §9.3).

On an established association (Sta6) every invalid PDU is Evt19 and gets AA-8: an A-ABORT
with source 2 (service-provider) and the reason of PS3.8 Table 9-26 (1 unrecognized PDU,
2 unexpected PDU, 4 unrecognized PDU parameter, 6 invalid PDU parameter value). A DIMSE
violation inside well-formed P-DATA is the DIMSE layer's to answer: an A-ABORT from the UL
service-user (source 0). While the association is being established (Sta2) an unparsable
or out-of-place PDU gets AA-1 (A-ABORT with service-user source (0, 0), Table 9-9, then
Sta13), an A-ABORT gets AA-2 (close), and
silence ends with the ARTIM timer. After each case the node still serves a fresh
C-ECHO association and holds nothing of the broken one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import pytest

from dicomwire import DicomWireError
from dicomwire.dimse.commands import (
    CommandField,
    DataSetType,
    Tag,
    decode_command,
    encode_command,
)
from dicomwire.services.verification import VERIFICATION_SOP_CLASS, echo
from dicomwire.ul.association import AssociationAborted, DicomTimeoutError, Timeouts
from dicomwire.ul.pdu import AAssociateAC

from ._support import (
    A_RELEASE_RP,
    A_RELEASE_RQ,
    IMPLICIT_VR_LE,
    LOCALHOST,
    FakePeer,
    NodeThread,
    a_abort,
    a_associate_rj,
    accept_verification,
    associate,
    command_status,
    dicomwire_argv,
    echo_ok,
    echo_response_pdata,
    echo_rq_pdata,
    pdata,
    raw_connect,
    read_pdu,
    read_pdu_or_eof,
    running_node,
    verification_rq,
    wait_closed,
)

ARTIM = 1.5
IDLE = 1.0
#: Our Maximum Length Received (the node's default, PS3.8 D.1).
OUR_MAX_PDU = 65536


@pytest.fixture
def node() -> Iterator[NodeThread]:
    timeouts = Timeouts(artim=ARTIM, acse=5.0, dimse=None, network_idle=30.0, connect=5.0)
    with running_node(timeouts=timeouts) as running:
        yield running
        # Whatever the test did, the node recovers: nothing held, a new association works.
        assert running.wait_idle(ARTIM + 3), "the node still holds the broken association"
        assert echo_ok(running.port) == 0


def header(pdu_type: int, length: int) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, length)


def established(node: NodeThread) -> socket.socket:
    sock = raw_connect(node.port)
    associate(sock)
    return sock


def nothing_more(sock: socket.socket, wait: float = 0.2) -> None:
    """No further byte arrives: the node closed, or waits for our close (Sta13)."""
    sock.settimeout(wait)
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        assert sock.recv(1) == b""


def expect_abort(sock: socket.socket, source: int, reason: int) -> None:
    """The node answers A-ABORT(source, reason) and then sends nothing else."""
    assert read_pdu(sock) == a_abort(source, reason)
    nothing_more(sock)


# --------------------------------------------------------------------------- baseline


def test_raw_echo_on_the_association_works(node: NodeThread) -> None:
    """The raw peer itself is right: a C-ECHO-RQ gets success, release gets RP."""
    with established(node) as sock:
        sock.sendall(echo_rq_pdata(message_id=7))
        assert command_status(read_pdu(sock)) == (CommandField.C_ECHO_RSP, 0)
        sock.sendall(A_RELEASE_RQ)
        assert read_pdu(sock) == A_RELEASE_RP
        nothing_more(sock)


def test_peer_without_a_maximum_length_gets_one_pdu(node: NodeThread) -> None:
    """Maximum length 0 means no limit (PS3.8 D.1): the response comes unfragmented."""
    with raw_connect(node.port) as sock:
        associate(sock, verification_rq(max_pdu_length=0))
        sock.sendall(echo_rq_pdata())
        assert command_status(read_pdu(sock)) == (CommandField.C_ECHO_RSP, 0)


def test_peer_with_a_tiny_maximum_length_gets_tiny_fragments(node: NodeThread) -> None:
    with raw_connect(node.port) as sock:
        associate(sock, verification_rq(max_pdu_length=8))
        sock.sendall(echo_rq_pdata())
        command = bytearray()
        while True:
            raw = read_pdu(sock)
            assert raw[0] == 0x04 and len(raw) - 6 <= 8
            (pdv_length,) = struct.unpack_from(">L", raw, 6)
            assert pdv_length == 4  # 2 bytes of data: even fragments
            command += raw[12:]
            if raw[11] & 0x02:
                break
        response = decode_command(bytes(command))
        assert response[Tag.Status] == 0


def test_peer_with_a_maximum_length_too_small_for_any_data(node: NodeThread) -> None:
    with raw_connect(node.port) as sock:
        sock.sendall(verification_rq(max_pdu_length=6).encode())
        answer = read_pdu(sock)
        if answer[0] == 0x03:  # rejecting the association is a fine answer too
            return
        assert answer[0] == 0x02
        sock.sendall(echo_rq_pdata())
        sock.settimeout(3.0)
        try:
            raw = read_pdu(sock)
        except TimeoutError:
            pytest.fail("no answer at all within 3 s: the association just hangs")
        assert raw[0] == 0x07, f"expected A-ABORT, got {raw!r}"


def test_rq_sent_one_byte_at_a_time(node: NodeThread) -> None:
    with raw_connect(node.port) as sock:
        for byte in verification_rq().encode():
            sock.send(bytes((byte,)))
        assert read_pdu(sock)[0] == AAssociateAC.pdu_type
        request = echo_rq_pdata()
        for start in range(0, len(request), 5):
            sock.send(request[start : start + 5])
        assert command_status(read_pdu(sock)) == (CommandField.C_ECHO_RSP, 0)


# --------------------------------------------------------------------------- Sta6: UL


@pytest.mark.parametrize("pdu_type", [0x00, 0x08, 0x10, 0xFF])
def test_unknown_pdu_type(node: NodeThread, pdu_type: int) -> None:
    with established(node) as sock:
        sock.sendall(header(pdu_type, 4) + bytes(4))
        expect_abort(sock, 2, 1)


def test_truncated_pdu_then_close(node: NodeThread) -> None:
    with established(node) as sock:
        sock.sendall(echo_rq_pdata()[:20])
        sock.shutdown(socket.SHUT_WR)
        # Evt17 in Sta6 is AA-4: an A-P-ABORT indication, nothing sent, connection closed.
        assert read_pdu_or_eof(sock) is None


def test_truncated_header_then_close(node: NodeThread) -> None:
    with established(node) as sock:
        sock.sendall(b"\x04\x00\x00")
        sock.shutdown(socket.SHUT_WR)
        assert read_pdu_or_eof(sock) is None


def test_pdv_overruns_the_pdu(node: NodeThread) -> None:
    with established(node) as sock:
        # PDU length 12, PDV item length 100.
        sock.sendall(header(0x04, 12) + struct.pack(">LBB", 100, 1, 0x03) + bytes(6))
        expect_abort(sock, 2, 6)


@pytest.mark.parametrize("pdv_length", [0, 1])
def test_pdv_length_below_2(node: NodeThread, pdv_length: int) -> None:
    with established(node) as sock:
        body = struct.pack(">LBB", pdv_length, 1, 0x03)
        sock.sendall(header(0x04, len(body)) + body)
        expect_abort(sock, 2, 6)


def test_truncated_pdv_header(node: NodeThread) -> None:
    with established(node) as sock:
        sock.sendall(header(0x04, 3) + b"\x00\x00\x00")
        expect_abort(sock, 2, 6)


def test_empty_p_data(node: NodeThread) -> None:
    with established(node) as sock:
        sock.sendall(header(0x04, 0))
        expect_abort(sock, 2, 6)


def test_p_data_of_exactly_our_maximum_length_is_accepted(node: NodeThread) -> None:
    with established(node) as sock:
        base = len(echo_rq_pdata())
        request = echo_rq_pdata(padding=OUR_MAX_PDU + 6 - base - 8)
        assert struct.unpack_from(">L", request, 2)[0] == OUR_MAX_PDU
        sock.sendall(request)
        assert command_status(read_pdu(sock)) == (CommandField.C_ECHO_RSP, 0)


def test_p_data_longer_than_our_maximum_length(node: NodeThread) -> None:
    with established(node) as sock:
        # Refused from the header alone: the body is never sent.
        sock.sendall(header(0x04, OUR_MAX_PDU + 1))
        expect_abort(sock, 2, 6)


@pytest.mark.parametrize("length", [0xFFFFFFFF, 0xFFFFFFF0, 1 << 31])
@pytest.mark.parametrize("pdu_type", [0x04, 0x01, 0x05])
def test_length_near_2_to_the_32(node: NodeThread, pdu_type: int, length: int) -> None:
    with established(node) as sock:
        sock.sendall(header(pdu_type, length) + bytes(64))
        expect_abort(sock, 2, 6)


@pytest.mark.parametrize("length", [0, 3, 5])
def test_release_rq_with_wrong_length(node: NodeThread, length: int) -> None:
    with established(node) as sock:
        sock.sendall(header(0x05, length) + bytes(length))
        expect_abort(sock, 2, 6)


@pytest.mark.parametrize(
    "pdu",
    [
        verification_rq().encode(),  # A-ASSOCIATE-RQ again
        header(0x02, 68) + struct.pack(">HH", 1, 0) + b"DICOMWIRE".ljust(16) * 2 + bytes(32),
        header(0x03, 4) + bytes((0, 1, 1, 1)),  # A-ASSOCIATE-RJ
        A_RELEASE_RP,
    ],
    ids=["associate-rq", "associate-ac", "associate-rj", "release-rp"],
)
def test_unexpected_pdu(node: NodeThread, pdu: bytes) -> None:
    with established(node) as sock:
        sock.sendall(pdu)
        expect_abort(sock, 2, 2)


def test_abort_from_the_peer_closes(node: NodeThread) -> None:
    with established(node) as sock:
        sock.sendall(a_abort(0, 0))
        # AA-3: A-ABORT indication, close; nothing is sent back.
        assert read_pdu_or_eof(sock) is None


def test_silence_in_sta13_is_ended_by_artim(node: NodeThread) -> None:
    with established(node) as sock:
        sock.sendall(header(0x08, 0))
        assert read_pdu(sock) == a_abort(2, 1)
        started = time.monotonic()
        assert wait_closed(sock, ARTIM + 3)  # we keep the socket open; ARTIM closes it
        assert time.monotonic() - started >= ARTIM * 0.8


# --------------------------------------------------------------------------- Sta6: DIMSE


def test_endless_command_set(node: NodeThread) -> None:
    """Command fragments that never end are cut off past 1 MiB (bounded memory)."""
    with established(node) as sock:
        fragment = pdata([(1, 0x01, bytes(OUR_MAX_PDU - 6))])
        sent = 0
        try:
            while sent <= (1 << 20) + OUR_MAX_PDU:
                sock.sendall(fragment)
                sent += len(fragment)
        except (BrokenPipeError, ConnectionResetError):
            pass
        expect_abort(sock, 0, 0)


def test_garbage_command_set(node: NodeThread) -> None:
    with established(node) as sock:
        sock.sendall(pdata([(1, 0x03, b"\xde\xad\xbe\xef" * 8)]))
        expect_abort(sock, 0, 0)


def test_command_element_overruns_the_command_set(node: NodeThread) -> None:
    with established(node) as sock:
        command = encode_command({Tag.CommandField: CommandField.C_ECHO_RQ, Tag.MessageID: 1})
        sock.sendall(pdata([(1, 0x03, command[:-1] + b"\xff\xff")]))
        expect_abort(sock, 0, 0)


def test_data_set_fragment_before_any_command(node: NodeThread) -> None:
    with established(node) as sock:
        sock.sendall(pdata([(1, 0x02, b"\x08\x00\x16\x00\x00\x00\x00\x00")]))
        expect_abort(sock, 0, 0)


def test_message_on_a_context_that_was_not_proposed(node: NodeThread) -> None:
    with established(node) as sock:
        sock.sendall(echo_rq_pdata(context_id=3))
        expect_abort(sock, 0, 0)


def test_message_on_a_rejected_context(node: NodeThread) -> None:
    request = verification_rq(
        contexts=[
            (1, VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LE]),
            (3, "1.2.3.4.5.6.7", [IMPLICIT_VR_LE]),  # abstract syntax not supported
        ]
    )
    with raw_connect(node.port) as sock:
        accept = associate(sock, request)
        assert {i.context_id: i.result for i in accept.presentation_contexts} == {1: 0, 3: 3}
        sock.sendall(echo_rq_pdata(context_id=3))
        expect_abort(sock, 0, 0)


def test_command_fragments_switching_context(node: NodeThread) -> None:
    with established(node) as sock:
        command = encode_command(
            {
                Tag.AffectedSOPClassUID: VERIFICATION_SOP_CLASS,
                Tag.CommandField: CommandField.C_ECHO_RQ,
                Tag.MessageID: 1,
                Tag.CommandDataSetType: DataSetType.ABSENT,
            }
        )
        sock.sendall(pdata([(1, 0x01, command[:10]), (3, 0x03, command[10:])]))
        expect_abort(sock, 0, 0)


# --------------------------------------------------------------------------- Sta2


def test_rq_that_cannot_be_parsed(node: NodeThread) -> None:
    """Evt19 in Sta2 is AA-1: A-ABORT with service-user source (0, 0), then Sta13."""
    with raw_connect(node.port) as sock:
        sock.sendall(header(0x01, 10) + bytes(10))  # below the fixed 68 bytes
        expect_abort(sock, 0, 0)


def test_rq_with_an_item_overrunning_the_pdu(node: NodeThread) -> None:
    raw = bytearray(verification_rq().encode())
    struct.pack_into(">H", raw, 6 + 68 + 2, 0xFFF0)  # the application context item's length
    with raw_connect(node.port) as sock:
        sock.sendall(raw)
        expect_abort(sock, 0, 0)


def test_rq_with_an_item_of_unknown_type_is_accepted(node: NodeThread) -> None:
    """PS3.8 §9.3.1: an item of unrecognized type is ignored and skipped."""
    raw = verification_rq().encode() + struct.pack(">BBH", 0x99, 0, 4) + bytes(4)
    raw = raw[:2] + struct.pack(">L", len(raw) - 6) + raw[6:]
    with raw_connect(node.port) as sock:
        sock.sendall(raw)
        assert read_pdu(sock)[0] == AAssociateAC.pdu_type


@pytest.mark.parametrize(("item_type", "reason"), [(0x21, 5), (0x30, 5)])
def test_rq_with_a_misplaced_item(node: NodeThread, item_type: int, reason: int) -> None:
    raw = verification_rq().encode() + struct.pack(">BBH", item_type, 0, 4) + bytes(4)
    raw = raw[:2] + struct.pack(">L", len(raw) - 6) + raw[6:]
    with raw_connect(node.port) as sock:
        sock.sendall(raw)
        expect_abort(sock, 0, 0)  # AA-1: service-user source


def test_rq_with_length_near_2_to_the_32(node: NodeThread) -> None:
    with raw_connect(node.port) as sock:
        sock.sendall(header(0x01, 0xFFFFFFFF) + bytes(100))
        expect_abort(sock, 0, 0)


def test_unknown_pdu_type_first(node: NodeThread) -> None:
    with raw_connect(node.port) as sock:
        sock.sendall(header(0x42, 4) + bytes(4))
        expect_abort(sock, 0, 0)


@pytest.mark.parametrize(
    "pdu", [echo_rq_pdata(), A_RELEASE_RQ, A_RELEASE_RP], ids=["p-data", "release-rq", "release-rp"]
)
def test_other_pdu_before_the_rq(node: NodeThread, pdu: bytes) -> None:
    with raw_connect(node.port) as sock:
        sock.sendall(pdu)
        expect_abort(sock, 0, 0)


def test_abort_before_the_rq_closes(node: NodeThread) -> None:
    with raw_connect(node.port) as sock:
        sock.sendall(a_abort(0, 0))
        assert read_pdu_or_eof(sock) is None  # AA-2: close, nothing sent


def test_rejected_peer_that_never_closes_is_closed_by_artim(node: NodeThread) -> None:
    with raw_connect(node.port) as sock:
        sock.sendall(verification_rq(called="WRONG").encode())
        assert read_pdu(sock) == a_associate_rj(1, 1, 7)
        started = time.monotonic()
        assert wait_closed(sock, ARTIM + 3)  # AE-8 started ARTIM; its expiry closes (AA-2)
        assert time.monotonic() - started >= ARTIM * 0.8


def test_silent_connection_closed_by_artim(node: NodeThread) -> None:
    with raw_connect(node.port) as sock:
        started = time.monotonic()
        assert wait_closed(sock, ARTIM + 3)
        assert time.monotonic() - started >= ARTIM * 0.8


def test_half_an_rq_then_silence_closed_by_artim(node: NodeThread) -> None:
    with raw_connect(node.port) as sock:
        sock.sendall(verification_rq().encode()[:40])
        assert wait_closed(sock, ARTIM + 3)


# --------------------------------------------------------------------------- idle


def test_idle_established_association_is_aborted() -> None:
    timeouts = Timeouts(artim=ARTIM, acse=5.0, dimse=None, network_idle=IDLE, connect=5.0)
    with running_node(timeouts=timeouts) as node:
        with established(node) as sock:
            started = time.monotonic()
            assert read_pdu(sock) == a_abort(0, 0)
            assert time.monotonic() - started >= IDLE * 0.8
            nothing_more(sock)
        assert node.wait_idle(ARTIM + 3)
        assert echo_ok(node.port) == 0


# --------------------------------------------------------------------------- the SCU side


SCU_TIMEOUTS = Timeouts(artim=2.0, acse=3.0, dimse=1.0, network_idle=10.0, connect=3.0)


def read_request_id(sock: socket.socket) -> int:
    """Read a P-DATA-TF carrying one whole C-ECHO-RQ; return its Message ID."""
    raw = read_pdu(sock)
    assert raw[0] == 0x04, f"expected P-DATA-TF, got {raw!r}"
    (pdv_length,) = struct.unpack_from(">L", raw, 6)
    command = decode_command(raw[12 : 12 + pdv_length - 2])
    assert command[Tag.CommandField] == CommandField.C_ECHO_RQ
    message_id = command[Tag.MessageID]
    assert isinstance(message_id, int)
    return message_id


def scu_echo(port: int) -> int:
    return asyncio.run(
        echo(LOCALHOST, port, called_ae_title="FAKE", repeat=1, timeouts=SCU_TIMEOUTS)
    )


def answer_release(sock: socket.socket) -> None:
    assert read_pdu(sock) == A_RELEASE_RQ
    sock.sendall(A_RELEASE_RP)


def test_scu_success_status_from_a_scripted_peer() -> None:
    def script(sock: socket.socket) -> None:
        accept_verification(sock)
        sock.sendall(echo_response_pdata(read_request_id(sock), 0x0000))
        answer_release(sock)

    with FakePeer(script) as peer:
        assert scu_echo(peer.port) == 0
        peer.join()


def test_scu_failure_status_is_returned() -> None:
    def script(sock: socket.socket) -> None:
        accept_verification(sock)
        sock.sendall(echo_response_pdata(read_request_id(sock), 0x0110))
        answer_release(sock)

    with FakePeer(script) as peer:
        assert scu_echo(peer.port) == 0x0110
        peer.join()


def test_scu_ignores_a_response_to_another_message() -> None:
    def script(sock: socket.socket) -> None:
        accept_verification(sock)
        message_id = read_request_id(sock)
        sock.sendall(echo_response_pdata(message_id + 100, 0x0110))
        sock.sendall(echo_response_pdata(message_id, 0x0000))
        answer_release(sock)

    with FakePeer(script) as peer:
        assert scu_echo(peer.port) == 0
        peer.join()


def test_scu_peer_aborts() -> None:
    def script(sock: socket.socket) -> bytes | None:
        accept_verification(sock)
        read_request_id(sock)
        sock.sendall(a_abort(0, 0))
        return read_pdu_or_eof(sock)  # AA-3: the SCU closes, sending nothing

    with FakePeer(script) as peer:
        with pytest.raises(AssociationAborted) as raised:
            scu_echo(peer.port)
        assert raised.value.indication.source == 0
        assert not raised.value.indication.local
        assert peer.join() is None


def test_scu_peer_closes_after_the_ac() -> None:
    def script(sock: socket.socket) -> None:
        accept_verification(sock)

    with FakePeer(script) as peer:
        with pytest.raises(DicomWireError):
            scu_echo(peer.port)
        peer.join()


def test_scu_peer_never_answers_dimse_timeout_aborts() -> None:
    def script(sock: socket.socket) -> bytes:
        accept_verification(sock)
        read_request_id(sock)
        return read_pdu(sock)

    with FakePeer(script) as peer:
        started = time.monotonic()
        with pytest.raises(DicomTimeoutError):
            scu_echo(peer.port)
        assert time.monotonic() - started < SCU_TIMEOUTS.dimse + 3  # type: ignore[operator]
        abort = peer.join()
        assert isinstance(abort, bytes) and abort[0] == 0x07, abort


def test_scu_answers_an_invalid_pdu_with_a_provider_abort() -> None:
    def script(sock: socket.socket) -> bytes:
        accept_verification(sock)
        read_request_id(sock)
        sock.sendall(header(0x09, 4) + bytes(4))
        return read_pdu(sock)

    with FakePeer(script) as peer:
        with pytest.raises(AssociationAborted):
            scu_echo(peer.port)
        assert peer.join() == a_abort(2, 1)


def test_scu_accepted_transfer_syntax_never_proposed() -> None:
    def script(sock: socket.socket) -> bytes | None:
        accept_verification(sock, transfer_syntax="1.2.840.10008.1.2.4.50")
        return read_pdu_or_eof(sock)

    with FakePeer(script) as peer:
        with pytest.raises(DicomWireError, match="no accepted presentation context"):
            scu_echo(peer.port)
        # The SCU ends the unusable association with A-ABORT (service-user), no P-DATA.
        assert peer.join() == a_abort(0, 0)


def test_cli_echo_against_an_aborting_peer_exits_1() -> None:
    def script(sock: socket.socket) -> None:
        accept_verification(sock)
        read_request_id(sock)
        sock.sendall(a_abort(0, 0))
        read_pdu_or_eof(sock)

    with FakePeer(script) as peer:
        done = subprocess.run(
            [*dicomwire_argv(), "echo", LOCALHOST, str(peer.port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        peer.join()
    assert done.returncode == 1
    assert done.stderr.strip() == "echo failed: A-ABORT by the peer (source 0, reason 0)"
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- shutdown


def test_shutdown_aborts_held_associations_and_closes_idle_connections() -> None:
    node = NodeThread().start()
    try:
        held = raw_connect(node.port)
        associate(held)
        idle = raw_connect(node.port)  # connected, no A-ASSOCIATE-RQ yet
        # Let the node accept it first: a connection whose accept is still in flight when
        # the server closes is lost inside asyncio 3.11 (see the report), not tested here.
        deadline = time.monotonic() + 5
        while node.open_connections < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert node.open_connections == 2
    finally:
        started = time.monotonic()
        node.stop()  # shutdown grace of 1 s
    with held, idle:
        assert read_pdu(held) == a_abort(0, 0)
        assert read_pdu_or_eof(held) is None
        assert read_pdu_or_eof(idle) is None
    assert time.monotonic() - started < 10
