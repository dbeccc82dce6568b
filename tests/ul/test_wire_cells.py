"""PS3.8 Table 9-10 over a real socket: a scripted raw peer against both sides.

Acceptor side: an :class:`AssociationServer` running the node's policy and handler
(ARTIM 0.5 s) on 127.0.0.1, driven by a :class:`~tests.ul.rawpeer.RawPeer` through every
cell the network can reach: Sta2 (before the A-ASSOCIATE-RQ), Sta3 and Sta8 (by pipelining
two PDUs in one write, so the second is read before the local response), Sta6 and Sta13,
plus the node's own A-ABORT request (Evt15) on a DIMSE violation. Sta7 and Sta9-Sta12 need
the node to ask for release, which it never does; Sta4 and Sta5 are requestor states.

Requestor side: :func:`dicomwire.ul.association.connect` against a raw acceptor that
answers with AC, RJ, garbage, unexpected PDUs, A-ABORT, a close or nothing (Sta4, Sta5),
then releases, collides, aborts or misbehaves (Sta6, Sta7, Sta9, Sta11, Sta13).

Every scenario runs bounded (:func:`rawpeer.run`), fails on any error the event loop
reports, and ends with a normal C-ECHO association to prove the node still serves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from dicomwire.errors import AbortInfo, DicomWireError
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.verification import echo
from dicomwire.ul.association import (
    Association,
    AssociationAborted,
    AssociationRejected,
    AssociationServer,
    DicomTimeoutError,
    Timeouts,
    connect,
)
from dicomwire.ul.fsm import State
from dicomwire.ul.negotiation import (
    AcceptorPolicy,
    RequestorConfig,
    accept_or_reject,
)
from dicomwire.ul.pdu import (
    PDU,
    AAbort,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PresentationDataValue,
)

from .rawpeer import (
    IMPLICIT_VR_LE,
    INVALID_PDUS,
    LOCALHOST,
    UNKNOWN_PDU,
    VERIFICATION,
    RawPeer,
    c_echo_rq,
    parse_command,
    run,
    us,
    verification_request,
)

ARTIM = 0.5
#: Slack for scheduling when a close is due after ARTIM.
SLACK = 1.5
#: A wire test's timer must not have fired early: ARTIM measured from our side.
EARLY = ARTIM - 0.15

RQ = verification_request()
_POLICY = AcceptorPolicy(abstract_syntaxes={VERIFICATION: [IMPLICIT_VR_LE]})
_ANSWER = accept_or_reject(_POLICY, RQ)
assert isinstance(_ANSWER, tuple)
AC = _ANSWER[0]
RJ = AAssociateRJ(1, 1, 7)
P_DATA = PDataTF([PresentationDataValue(1, 0x03, b"\x00\x00")])

#: Well-formed PDUs by name, for the cells they trigger.
PDUS: dict[str, PDU] = {
    "AC": AC,
    "RJ": RJ,
    "RQ": RQ,
    "P-DATA": P_DATA,
    "RELEASE-RQ": AReleaseRQ(),
    "RELEASE-RP": AReleaseRP(),
}


def pdus(*names: str) -> list[object]:
    """Parameters for ``pdu``: the named PDUs, with their names as IDs."""
    return [pytest.param(PDUS[name], id=name) for name in names]


#: Invalid PDUs covering A-ABORT reasons 1, 5 and 6 (all are tested sans-I/O too). Reason 4
#: (unrecognized parameter) no longer arises: unknown items are skipped (PS3.8 §9.3.1).
WIRE_INVALID = {
    name: INVALID_PDUS[name]
    for name in (
        "unknown-type",
        "release-rq-length-5",
        "associate-rq-with-ac-context-item",
    )
}


def node_server(timeouts: Timeouts) -> AssociationServer:
    """The node's AssociationServer: its acceptance policy and DIMSE handler."""
    return Node(NodeConfig(host=LOCALHOST, port=0, timeouts=timeouts)).server


async def _accepted(server: AssociationServer) -> Association:
    """The node's one open association (the raw peer's), once the server accepted it."""
    while not server.associations:
        await asyncio.sleep(0.005)
    (association,) = server.associations
    return association


async def _ended(association: Association) -> None:
    """Wait (bounded) for the node's side of the connection to close."""
    await asyncio.wait_for(association.closed, ARTIM + SLACK)
    assert association.state is State.STA1


def _provider_aborted_locally(association: Association) -> AbortInfo:
    """The A-P-ABORT indication the node's provider recorded (AA-4, AA-8)."""
    error = association.error
    assert isinstance(error, AssociationAborted), error
    indication = error.indication
    assert indication.provider and indication.local, indication
    return indication


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[AssociationServer]:
    """The node on a free port; after the scenario a fresh C-ECHO association must work."""
    server = node_server(Timeouts(artim=ARTIM, acse=5.0, dimse=None, network_idle=None))
    await server.start(LOCALHOST, 0)
    try:
        yield server
        status = await echo(
            LOCALHOST,
            server.port,
            called_ae_title="DICOMWIRE",
            timeouts=Timeouts(artim=ARTIM, acse=3.0, dimse=3.0, connect=3.0),
        )
        assert int(status) == 0x0000
    finally:
        await server.shutdown(grace=1.0)


async def _established(port: int) -> RawPeer:
    """A raw peer in Sta6 with the node (Verification accepted on context 1)."""
    peer = await RawPeer.connect(port)
    ac = await peer.associate(RQ)
    assert [c.result for c in ac.presentation_contexts] == [0]
    return peer


async def _closes_after_artim(peer: RawPeer) -> None:
    waited = await peer.expect_close(ARTIM + SLACK)
    assert waited >= EARLY, f"closed after {waited:.3f} s, before ARTIM ran out"


async def _closes_at_once(peer: RawPeer) -> None:
    waited = await peer.expect_close(ARTIM + SLACK)
    assert waited < EARLY, f"closed after {waited:.3f} s; expected at once"


# --------------------------------------------------------------------------- acceptor: Sta2


@pytest.mark.parametrize(
    "pdu",
    pdus("AC", "RJ", "P-DATA", "RELEASE-RQ", "RELEASE-RP"),
)
def test_sta2_unexpected_pdu_aa1_then_artim_closes(pdu: PDU) -> None:
    """Sta2 + Evt3/4/10/12/13: AA-1, A-ABORT (0, 0); Sta13 + Evt18: AA-2 closes."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await RawPeer.connect(server.port)
            await peer.send(pdu)
            await peer.expect_abort(0, 0)  # AA-1: service-user source
            await _closes_after_artim(peer)
            await peer.close()

    run(scenario)


@pytest.mark.parametrize(("payload", "reason"), WIRE_INVALID.values(), ids=WIRE_INVALID.keys())
def test_sta2_invalid_pdu_aa1_with_its_reason(payload: bytes, reason: int) -> None:
    """Sta2 + Evt19: AA-1, A-ABORT (0, 0) (service-user source); then Sta13 + Evt18: AA-2."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await RawPeer.connect(server.port)
            await peer.send(payload)
            await peer.expect_abort(0, 0)  # AA-1: service-user source
            await _closes_after_artim(peer)

    run(scenario)


def test_sta2_a_abort_closes_at_once() -> None:
    """Sta2 + Evt16: AA-2, close without a word."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await RawPeer.connect(server.port)
            await peer.send(AAbort(0, 0))
            await _closes_at_once(peer)

    run(scenario)


def test_sta2_artim_expiry_closes() -> None:
    """Sta2 + Evt18: AA-2, no A-ASSOCIATE-RQ within ARTIM closes the connection."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await RawPeer.connect(server.port)
            await _closes_after_artim(peer)

    run(scenario)


@pytest.mark.parametrize(
    "partial", [b"", RQ.encode()[:3], RQ.encode()[:40]], ids=["clean", "in-header", "in-body"]
)
def test_sta2_transport_closed(partial: bytes) -> None:
    """Sta2 + Evt17: AA-5 (also with part of a PDU received): closed, nothing indicated."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await RawPeer.connect(server.port)
            association = await _accepted(server)
            if partial:
                await peer.send(partial)
            await peer.close()
            await _ended(association)
            assert association.error is None  # AA-5 indicates nothing
            assert association.negotiated is None  # never left Sta2

    run(scenario)


def test_sta2_rq_ae6_ae7_association_established() -> None:
    """Sta2 + Evt6: AE-6 (indication, Sta3); Sta3 + Evt7: AE-7 sends the AC; then C-ECHO."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            await peer.echo(7)
            await peer.send(AReleaseRQ())
            await peer.expect(AReleaseRP)
            await peer.close()

    run(scenario)


@pytest.mark.parametrize(
    ("request_", "reject"),
    [
        (verification_request(called="NOT-THE-NODE"), (1, 1, 7)),
        (
            AAssociateRQ("DICOMWIRE", "RAWPEER", RQ.variable_items, protocol_version=2),
            (1, 2, 2),
        ),
        (AAssociateRQ("DICOMWIRE", "RAWPEER", RQ.variable_items[1:]), (1, 2, 1)),
    ],
    ids=["called-ae-ae8", "protocol-version-ae6", "no-application-context-ae6"],
)
def test_sta2_rejected_rq_then_artim_closes(
    request_: AAssociateRQ, reject: tuple[int, int, int]
) -> None:
    """AE-8 (the user's reject from Sta3) or AE-6's refusal: RJ, then Sta13 + Evt18."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await RawPeer.connect(server.port)
            await peer.send(request_)
            rj = await peer.expect(AAssociateRJ)
            assert (rj.result, rj.source, rj.reason) == reject
            await _closes_after_artim(peer)

    run(scenario)


# --------------------------------------------------------------------------- acceptor: Sta3


@pytest.mark.parametrize(
    "pdu",
    pdus("AC", "RJ", "RQ", "P-DATA", "RELEASE-RQ", "RELEASE-RP"),
)
def test_sta3_pdu_before_the_response_aa8(pdu: PDU) -> None:
    """Sta3 + Evt3/4/6/10/12/13: AA-8, A-ABORT (2, 2), no AC; then ARTIM closes.

    Regression: the server used to answer the A-ASSOCIATE indication after the core had
    already left Sta3, so accept() raised inside buffer_updated and no A-ABORT was sent.
    """

    async def scenario() -> None:
        async with serving() as server:
            peer = await RawPeer.connect(server.port)
            await peer.send(RQ, pdu)  # one write: the PDU is read while in Sta3
            await peer.expect_abort(2, 2)
            await _closes_after_artim(peer)

    run(scenario)


def test_sta3_a_abort_before_the_response_aa3() -> None:
    """Sta3 + Evt16: AA-3, close at once, no AC, nothing logged as a crash."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await RawPeer.connect(server.port)
            await peer.send(RQ, AAbort(0, 0))
            await _closes_at_once(peer)

    run(scenario)


def test_sta3_invalid_pdu_before_the_response() -> None:
    """Sta3 + Evt19: AA-8, A-ABORT (2, 1) (the same bytes AA-1 would send from Sta2)."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await RawPeer.connect(server.port)
            await peer.send(RQ, UNKNOWN_PDU)
            await peer.expect_abort(2, 1)
            await _closes_after_artim(peer)

    run(scenario)


# --------------------------------------------------------------------------- acceptor: Sta6


@pytest.mark.parametrize("pdu", pdus("AC", "RJ", "RQ", "RELEASE-RP"))
def test_sta6_unexpected_pdu_aa8_then_artim_closes(pdu: PDU) -> None:
    """Sta6 + Evt3/4/6/13: AA-8, A-ABORT (2, 2); then Sta13 + Evt18: AA-2."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            await peer.send(pdu)
            await peer.expect_abort(2, 2)
            await _closes_after_artim(peer)

    run(scenario)


@pytest.mark.parametrize(("payload", "reason"), WIRE_INVALID.values(), ids=WIRE_INVALID.keys())
def test_sta6_invalid_pdu_aa8_with_its_reason(payload: bytes, reason: int) -> None:
    """Sta6 + Evt19: AA-8, A-ABORT (2, reason); then Sta13 + Evt18: AA-2."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            await peer.send(payload)
            await peer.expect_abort(2, reason)
            await _closes_after_artim(peer)

    run(scenario)


def _too_long_p_data() -> bytes:
    limit = NodeConfig().max_pdu_length
    return PDataTF([PresentationDataValue(1, 0x03, bytes(limit))]).encode()  # limit + 6


def test_sta6_p_data_above_the_announced_maximum_is_invalid() -> None:
    """A P-DATA-TF longer than the node's Maximum Length (PS3.8 D.1) is Evt19, reason 6."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            # Only the start of the PDU: its header alone makes it invalid.
            await peer.send(_too_long_p_data()[:64])
            await peer.expect_abort(2, 6)
            await _closes_after_artim(peer)

    run(scenario)


def test_sta6_p_data_dt2_dt1_c_echo() -> None:
    """Sta6 + Evt10: DT-2; the node answers with Evt9: DT-1 (C-ECHO-RSP)."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            for message_id in (1, 2, 0xFFFF):
                await peer.echo(message_id)
            await peer.send(c_echo_rq(10), c_echo_rq(11))  # two PDUs in one write
            answered = set()
            for _ in range(2):
                response = parse_command(await peer.expect(PDataTF))
                answered.add(us(response[0x00000120]))  # Message ID Being Responded To
            assert answered == {10, 11}
            await peer.send(AReleaseRQ())
            await peer.expect(AReleaseRP)
            await peer.close()

    run(scenario)


def test_sta6_release_rq_ar2_ar4_then_artim_closes() -> None:
    """Sta6 + Evt12: AR-2; the node's response: AR-4 (RP, ARTIM); Sta13 + Evt18: AA-2."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            await peer.send(AReleaseRQ())
            await peer.expect(AReleaseRP)
            await _closes_after_artim(peer)

    run(scenario)


def test_sta6_release_rq_then_we_close_ar5() -> None:
    """After AR-4 we close first: Sta13 + Evt17, AR-5: a release, not an abort."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            association = await _accepted(server)
            await peer.send(AReleaseRQ())
            await peer.expect(AReleaseRP)
            assert association.state is State.STA13
            await peer.close()
            await _ended(association)
            assert association.error is None  # released: no abort recorded
            assert association.negotiated is not None

    run(scenario)


@pytest.mark.parametrize(("source", "reason"), [(0, 0), (2, 1)])
def test_sta6_a_abort_aa3_closes_at_once(source: int, reason: int) -> None:
    """Sta6 + Evt16: AA-3, the node closes without a word."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            await peer.send(AAbort(source, reason))
            await _closes_at_once(peer)

    run(scenario)


@pytest.mark.parametrize("partial", [b"", c_echo_rq(1).encode()[:20]], ids=["clean", "truncated"])
def test_sta6_transport_closed_aa4(partial: bytes) -> None:
    """Sta6 + Evt17: AA-4 (also inside a PDU): an A-P-ABORT indication, source 2 reason 0."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            association = await _accepted(server)
            assert association.state is State.STA6
            if partial:
                await peer.send(partial)
            await peer.close()
            await _ended(association)
            indication = _provider_aborted_locally(association)
            assert (indication.source, indication.reason) == (2, 0)

    run(scenario)


def test_sta6_dimse_violation_is_a_local_abort_aa1() -> None:
    """The node's A-ABORT request (Evt15 in Sta6): AA-1, A-ABORT with service-user source."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            await peer.send(c_echo_rq(1, context_id=3))  # a context never proposed
            await peer.expect_abort(0, 0)
            await _closes_after_artim(peer)

    run(scenario)


# --------------------------------------------------------------------------- acceptor: Sta8


@pytest.mark.parametrize(
    "pdu",
    pdus("AC", "RJ", "RQ", "P-DATA", "RELEASE-RQ", "RELEASE-RP"),
)
def test_sta8_pdu_before_the_release_response_aa8(pdu: PDU) -> None:
    """Sta8 + Evt3/4/6/10/12/13: AA-8, A-ABORT (2, 2) and no A-RELEASE-RP."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            await peer.send(AReleaseRQ(), pdu)  # one write: read while in Sta8
            await peer.expect_abort(2, 2)
            await _closes_after_artim(peer)

    run(scenario)


def test_sta8_invalid_pdu_before_the_release_response_aa8() -> None:
    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            await peer.send(AReleaseRQ(), UNKNOWN_PDU)
            await peer.expect_abort(2, 1)
            await _closes_after_artim(peer)

    run(scenario)


def test_sta8_a_abort_before_the_release_response_aa3() -> None:
    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            await peer.send(AReleaseRQ(), AAbort(0, 0))
            await _closes_at_once(peer)

    run(scenario)


# --------------------------------------------------------------------------- acceptor: Sta13


async def _in_sta13_after_release(port: int) -> RawPeer:
    peer = await _established(port)
    await peer.send(AReleaseRQ())
    await peer.expect(AReleaseRP)  # AR-4: the node is in Sta13 with ARTIM running
    return peer


@pytest.mark.parametrize(
    "pdu",
    pdus("AC", "RJ", "P-DATA", "RELEASE-RQ", "RELEASE-RP"),
)
def test_sta13_pdu_is_ignored_aa6(pdu: PDU) -> None:
    """Sta13 + Evt3/4/10/12/13: AA-6, ignored; ARTIM still closes."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _in_sta13_after_release(server.port)
            await peer.send(pdu)
            await _closes_after_artim(peer)

    run(scenario)


def test_sta13_rq_aa7() -> None:
    """Sta13 + Evt6: AA-7, A-ABORT (2, 2)."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _in_sta13_after_release(server.port)
            await peer.send(RQ)
            await peer.expect_abort(2, 2)
            await peer.expect_close(ARTIM + SLACK)

    run(scenario)


def test_sta13_invalid_pdu_aa7() -> None:
    """Sta13 + Evt19: AA-7, A-ABORT (2, 1)."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _in_sta13_after_release(server.port)
            await peer.send(UNKNOWN_PDU)
            await peer.expect_abort(2, 1)
            await peer.expect_close(ARTIM + SLACK)

    run(scenario)


def test_sta13_a_abort_aa2_closes_at_once() -> None:
    async def scenario() -> None:
        async with serving() as server:
            peer = await _in_sta13_after_release(server.port)
            await peer.send(AAbort(0, 0))
            await _closes_at_once(peer)

    run(scenario)


def test_sta13_after_aa8_still_answers_rq_with_aa7() -> None:
    """Sta13 reached by AA-8: P-DATA is ignored (AA-6), an RQ earns AA-7."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            association = await _accepted(server)
            await peer.send(AC)
            await peer.expect_abort(2, 2)
            await peer.send(P_DATA)
            await peer.expect_silence(0.1)
            await peer.send(RQ)
            await peer.expect_abort(2, 2)
            await peer.close()  # Sta13 + Evt17: AR-5; AA-8's indication stays the reason
            await _ended(association)
            indication = _provider_aborted_locally(association)
            assert (indication.source, indication.reason) == (2, 2)

    run(scenario)


def test_sta13_after_ae8_answers_rq_with_aa7() -> None:
    async def scenario() -> None:
        async with serving() as server:
            peer = await RawPeer.connect(server.port)
            association = await _accepted(server)
            await peer.send(verification_request(called="NOT-THE-NODE"))
            await peer.expect(AAssociateRJ)
            await peer.send(RQ)
            await peer.expect_abort(2, 2)
            await peer.close()  # Sta13 + Evt17: AR-5; a local rejection is no error
            await _ended(association)
            assert association.error is None and association.negotiated is None

    run(scenario)


# --------------------------------------------------------- acceptor: bytes after an invalid PDU


def test_sta13_after_invalid_pdu_our_close_is_ar5() -> None:
    """Sta6 + Evt19 (AA-8), then we close: Sta13 + Evt17, AR-5, cleanly.

    Regression: get_buffer() used to re-raise the PDUError for every later read (EOF
    included), which asyncio reports as a fatal protocol error.
    """

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            association = await _accepted(server)
            await peer.send(UNKNOWN_PDU)
            await peer.expect_abort(2, 1)
            assert association.state is State.STA13
            await peer.close()
            await _ended(association)
            # AR-5 records nothing of its own: the AA-8 abort (2, 1) stays the reason,
            # not an AA-4 "transport closed" (2, 0).
            indication = _provider_aborted_locally(association)
            assert (indication.source, indication.reason) == (2, 1)

    run(scenario)


def test_sta13_after_invalid_pdu_more_bytes_are_evt19_aa7() -> None:
    """Sta13 after AA-8: the stream cannot be resynchronised, more bytes are Evt19: AA-7."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            await peer.send(UNKNOWN_PDU)
            await peer.expect_abort(2, 1)
            await peer.send(RQ)
            await peer.expect_abort(2, 1)
            await _closes_after_artim(peer)

    run(scenario)


def test_sta6_whole_too_long_p_data_aa8_then_aa7() -> None:
    """The body of a too-long P-DATA-TF still arrives after its header was judged (AA-8):
    those bytes cannot be framed any more, so each read of them is Evt19 in Sta13 (AA-7,
    A-ABORT again) until ARTIM, started by AA-8 and not restarted by AA-7, closes."""

    async def scenario() -> None:
        async with serving() as server:
            peer = await _established(server.port)
            await peer.send(_too_long_p_data())
            await peer.expect_abort(2, 6)
            loop = asyncio.get_running_loop()
            start = loop.time()
            while (pdu := await peer.receive(ARTIM + SLACK)) is not None:
                assert isinstance(pdu, AAbort) and (pdu.source, pdu.reason) == (2, 6)
            assert loop.time() - start >= EARLY - 0.1

    run(scenario)


# --------------------------------------------------------------------------- requestor side

Script = Callable[[RawPeer], Awaitable[None]]

CONFIG = RequestorConfig("DICOMWIRE", "RAWSCP", [(VERIFICATION, [IMPLICIT_VR_LE])])
REQUESTOR_TIMEOUTS = Timeouts(artim=ARTIM, acse=0.5, dimse=2.0, network_idle=None, connect=2.0)


@contextlib.asynccontextmanager
async def raw_acceptor(script: Script) -> AsyncIterator[tuple[int, asyncio.Future[None]]]:
    """A one-connection raw acceptor running ``script``; yields (port, script done).

    On exit the script's outcome is awaited (its assertion errors fail the test) and a
    normal C-ECHO association to a real node checks the requestor code still works.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = RawPeer(reader, writer)
        try:
            await script(peer)
        except BaseException as exc:  # reported through ``done``
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(None)
        finally:
            await peer.close()

    server = await asyncio.start_server(handle, LOCALHOST, 0)
    try:
        yield server.sockets[0].getsockname()[1], done
        await asyncio.wait_for(asyncio.shield(done), 5.0)
    finally:
        server.close()
        await server.wait_closed()
    async with serving():
        pass  # serving() runs a C-ECHO association on exit


async def _answer_ac(peer: RawPeer) -> None:
    request = await peer.expect(AAssociateRQ)
    policy = AcceptorPolicy(ae_titles=("RAWSCP",), abstract_syntaxes=_POLICY.abstract_syntaxes)
    answer = accept_or_reject(policy, request)
    assert isinstance(answer, tuple)
    await peer.send(answer[0])


def test_requestor_ac_established_then_released() -> None:
    """Sta4 + Evt2: AE-2; Sta5 + Evt3: AE-3; Sta6 + Evt11: AR-1; Sta7 + Evt13: AR-3."""

    async def script(peer: RawPeer) -> None:
        await _answer_ac(peer)
        await peer.expect(AReleaseRQ)
        await peer.send(AReleaseRP())
        await _closes_at_once(peer)  # AR-3 closes the requestor's transport

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, done):
            association = await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)
            assert association.state is State.STA6
            assert association.negotiated is not None
            assert association.negotiated.find_context(VERIFICATION) is not None
            await association.release()
            await asyncio.wait_for(association.closed, 2.0)
            assert association.state is State.STA1
            await done

    run(scenario)


@pytest.mark.parametrize("reject", [(1, 1, 7), (2, 3, 2), (1, 2, 2), (1, 1, 3)])
def test_requestor_rj_ae4(reject: tuple[int, int, int]) -> None:
    """Sta5 + Evt4: AE-4, AssociationRejected with result/source/reason; we close."""

    async def script(peer: RawPeer) -> None:
        await peer.expect(AAssociateRQ)
        await peer.send(AAssociateRJ(*reject))
        await _closes_at_once(peer)

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, _):
            with pytest.raises(AssociationRejected) as caught:
                await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)
            error = caught.value
            assert (error.result, error.source, error.reason) == reject

    run(scenario)


@pytest.mark.parametrize(("payload", "reason"), WIRE_INVALID.values(), ids=WIRE_INVALID.keys())
def test_requestor_garbage_aa8(payload: bytes, reason: int) -> None:
    """Sta5 + Evt19: AA-8, the acceptor receives A-ABORT (2, reason); AssociationAborted."""

    async def script(peer: RawPeer) -> None:
        await peer.expect(AAssociateRQ)
        await peer.send(payload)
        await peer.expect_abort(2, reason)
        await _closes_after_artim(peer)  # the requestor's Sta13 + Evt18: AA-2

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, _):
            with pytest.raises(AssociationAborted) as caught:
                await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)
            indication = caught.value.indication
            assert (indication.source, indication.reason) == (2, reason)
            assert indication.provider and indication.local

    run(scenario)


@pytest.mark.parametrize(
    "pdu",
    pdus("RQ", "P-DATA", "RELEASE-RQ", "RELEASE-RP"),
)
def test_requestor_unexpected_pdu_in_sta5_aa8(pdu: PDU) -> None:
    """Sta5 + Evt6/10/12/13: AA-8, A-ABORT (2, 2)."""

    async def script(peer: RawPeer) -> None:
        await peer.expect(AAssociateRQ)
        await peer.send(pdu)
        await peer.expect_abort(2, 2)

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, _):
            with pytest.raises(AssociationAborted) as caught:
                await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)
            assert (caught.value.indication.source, caught.value.indication.reason) == (2, 2)

    run(scenario)


@pytest.mark.parametrize(("source", "reason"), [(0, 0), (2, 0), (2, 6)])
def test_requestor_a_abort_in_sta5_aa3(source: int, reason: int) -> None:
    """Sta5 + Evt16: AA-3, A-ABORT (source 0) or A-P-ABORT indication; we close."""

    async def script(peer: RawPeer) -> None:
        await peer.expect(AAssociateRQ)
        await peer.send(AAbort(source, reason))
        await _closes_at_once(peer)

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, _):
            with pytest.raises(AssociationAborted) as caught:
                await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)
            indication = caught.value.indication
            assert (indication.source, indication.reason) == (source, reason)
            assert indication.provider is (source != 0)
            assert not indication.local

    run(scenario)


def test_requestor_close_in_sta5_aa4() -> None:
    async def script(peer: RawPeer) -> None:
        await peer.expect(AAssociateRQ)  # then close without answering

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, _):
            with pytest.raises(AssociationAborted) as caught:
                await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)
            assert caught.value.indication.local

    run(scenario)


def test_requestor_silence_times_out_and_aborts() -> None:
    """No answer within the ACSE timeout: DicomTimeoutError and A-ABORT (0, 0) (AA-1)."""

    async def script(peer: RawPeer) -> None:
        await peer.expect(AAssociateRQ)
        await peer.expect_abort(0, 0, timeout=3.0)

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, _):
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(DicomTimeoutError):
                await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)
            assert loop.time() - start >= 0.4

    run(scenario)


def test_requestor_connection_refused_in_sta4() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(DicomWireError, match="cannot connect"):
            await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)

    run(scenario)


def test_requestor_release_collision_ar8_ar9_ar3() -> None:
    """Sta7 + Evt12: AR-8 (Sta9); our response AR-9 sends RP (Sta11); Evt13: AR-3."""

    async def script(peer: RawPeer) -> None:
        await _answer_ac(peer)
        await peer.expect(AReleaseRQ)
        await peer.send(AReleaseRQ())  # the acceptor releases too: Sta7 -> Sta10 there
        await peer.expect(AReleaseRP)  # the requestor's AR-9
        await peer.send(AReleaseRP())  # the acceptor's AR-4 after its AR-10
        await _closes_at_once(peer)

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, done):
            association = await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)
            await association.release()
            await asyncio.wait_for(association.closed, 2.0)
            assert association.state is State.STA1
            assert association.error is None
            await done

    run(scenario)


def test_requestor_p_data_while_awaiting_release_rp_ar6() -> None:
    """Sta7 + Evt10: AR-6, the P-DATA is still delivered; then Evt13: AR-3."""

    async def script(peer: RawPeer) -> None:
        await _answer_ac(peer)
        await peer.expect(AReleaseRQ)
        await peer.send(P_DATA, AReleaseRP())
        await _closes_at_once(peer)

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, done):
            association = await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)
            await association.release()
            assert await association.receive(timeout=1.0) == P_DATA
            assert association.state is State.STA1
            await done

    run(scenario)


def test_requestor_release_rp_never_comes() -> None:
    """Sta7 with no answer: the ACSE timeout aborts (Evt15, AA-1, A-ABORT (0, 0))."""

    async def script(peer: RawPeer) -> None:
        await _answer_ac(peer)
        await peer.expect(AReleaseRQ)
        await peer.expect_abort(0, 0, timeout=3.0)

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, _):
            association = await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)
            with pytest.raises(DicomTimeoutError):
                await association.release()

    run(scenario)


def test_requestor_peer_releases_ar2_ar4() -> None:
    """Sta6 + Evt12: AR-2, receive() ends; the response AR-4 sends RP; the peer closes."""

    async def script(peer: RawPeer) -> None:
        await _answer_ac(peer)
        await peer.send(AReleaseRQ())
        await peer.expect(AReleaseRP)

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, done):
            association = await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)
            assert await association.receive(timeout=2.0) is None
            assert association.release_requested
            association.release_response()
            assert association.state is State.STA13
            await done
            await asyncio.wait_for(association.closed, 2.0)
            assert association.state is State.STA1  # Evt17 in Sta13: AR-5

    run(scenario)


@pytest.mark.parametrize(
    ("settle", "timeout"),
    [
        pytest.param(False, None, id="waiting-without-timeout"),
        pytest.param(True, 2.0, id="after-the-close"),
    ],
)
def test_requestor_peer_aborts_established_association_aa3(
    settle: bool, timeout: float | None
) -> None:
    """Sta6 + Evt16: AA-3; receive() raises AssociationAborted, also once closed."""
    received_ac = asyncio.Event()
    send_abort = asyncio.Event()

    async def script(peer: RawPeer) -> None:
        await _answer_ac(peer)
        received_ac.set()
        await send_abort.wait()
        await peer.send(AAbort(2, 0))
        await _closes_at_once(peer)

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, _):
            association = await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)
            await received_ac.wait()
            send_abort.set()
            if settle:  # the abort arrives and the connection closes before receive()
                await asyncio.wait_for(association.closed, 2.0)
            with pytest.raises(AssociationAborted) as caught:
                await association.receive(timeout=timeout)
            assert caught.value.indication.provider
            assert (caught.value.indication.source, caught.value.indication.reason) == (2, 0)
            await asyncio.wait_for(association.closed, 2.0)
            assert association.state is State.STA1

    run(scenario)


def test_requestor_unexpected_ac_in_sta6_aa8() -> None:
    async def script(peer: RawPeer) -> None:
        await _answer_ac(peer)
        await peer.send(AC)
        await peer.expect_abort(2, 2)

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, _):
            association = await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)
            with pytest.raises(AssociationAborted):
                await association.receive(timeout=2.0)
            assert association.state is State.STA13
            await asyncio.wait_for(association.closed, ARTIM + SLACK)

    run(scenario)


@pytest.mark.parametrize("pdu", pdus("RELEASE-RP", "P-DATA", "RELEASE-RQ", "AC"))
def test_requestor_pdu_in_sta9_before_our_release_response_aa8(pdu: PDU) -> None:
    """Sta7 + Evt12: AR-8 (Sta9); a PDU in the same read: Sta9 + Evt*: AA-8, A-ABORT (2, 2)."""

    async def script(peer: RawPeer) -> None:
        await _answer_ac(peer)
        await peer.expect(AReleaseRQ)
        await peer.send(AReleaseRQ(), pdu)  # one write: read while in Sta9
        await peer.expect_abort(2, 2)
        await _closes_after_artim(peer)

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, done):
            association = await connect(LOCALHOST, port, CONFIG, timeouts=REQUESTOR_TIMEOUTS)
            with pytest.raises(AssociationAborted):
                await association.release()
            await done

    run(scenario)


def test_requestor_invalid_pdu_while_awaiting_release_rp_ends_release_at_once() -> None:
    """Sta7 + Evt19: AA-8; the A-P-ABORT indication ends the pending release() at once."""
    timeouts = Timeouts(artim=1.0, acse=3.0, dimse=2.0, network_idle=None, connect=2.0)

    async def script(peer: RawPeer) -> None:
        await _answer_ac(peer)
        await peer.expect(AReleaseRQ)
        await peer.send(UNKNOWN_PDU)
        await peer.expect_abort(2, 1)
        await peer.expect_close(3.0)  # the requestor's ARTIM (Sta13 + Evt18, AA-2)

    async def scenario() -> None:
        async with raw_acceptor(script) as (port, done):
            association = await connect(LOCALHOST, port, CONFIG, timeouts=timeouts)
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(AssociationAborted):
                await association.release()
            assert loop.time() - start < 0.5
            await done

    run(scenario)
