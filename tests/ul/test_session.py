"""AssociationSession, sans-I/O: the decisions of PS3.8 §9.2 and §9.3.2-9.3.4 fed as bytes.

Bytes or local primitives in, events out; no socket, no event loop. The acceptor answers
through an AcceptorPolicy (a failing policy and no policy give the transient reject
2-3-1), the requestor reads the AC into a NegotiatedAssociation and an RJ into
AssociationRejected, release collisions are answered (Sta9 on the requestor, AR-10 in
Sta12 on the acceptor) and the error that ended an association is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest

from dicomwire.errors import AssociationAborted, AssociationRejected, DicomTimeoutError
from dicomwire.ul.fsm import State
from dicomwire.ul.machine import (
    ARTIMStart,
    ARTIMStop,
    CloseTransport,
    ConnectTransport,
    PDataIndication,
    SendPDU,
)
from dicomwire.ul.negotiation import (
    AcceptorPolicy,
    RequestorConfig,
    accept_or_reject,
    build_request,
)
from dicomwire.ul.pdu import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PresentationDataValue,
)
from dicomwire.ul.session import (
    CONGESTION,
    Aborted,
    AssociationSession,
    Established,
    Rejected,
    Released,
    ReleaseRequested,
    SessionEvent,
)

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
PEER = ("192.0.2.7", 40401)

POLICY = AcceptorPolicy(
    ae_titles=("STORE-SCP",), abstract_syntaxes={VERIFICATION: (EXPLICIT_VR_LE, IMPLICIT_VR_LE)}
)
CONFIG = RequestorConfig(
    "MY-SCU", "STORE-SCP", [(VERIFICATION, [IMPLICIT_VR_LE, EXPLICIT_VR_LE])], max_pdu_length=32768
)
REQUEST, _ = build_request(CONFIG)
P_DATA = PDataTF([PresentationDataValue(1, 0x03, b"\x00\x00")])


def wire(*pdus: PDU) -> bytes:
    return b"".join(pdu.encode() for pdu in pdus)


def sent(events: list[SessionEvent]) -> list[PDU]:
    return [event.pdu for event in events if isinstance(event, SendPDU)]


def kinds(events: list[SessionEvent]) -> list[type]:
    return [type(event) for event in events]


def acceptor(
    policy: AcceptorPolicy | None = POLICY, active: int = 0
) -> tuple[AssociationSession, list[SessionEvent]]:
    """An acceptor session whose transport just opened (Sta2)."""
    session = AssociationSession(requestor=False, policy=policy, active_associations=lambda: active)
    events = session.transport_connected(PEER)
    assert kinds(events) == [ARTIMStart] and session.state is State.STA2
    return session, events


def established_acceptor() -> AssociationSession:
    session, _ = acceptor()
    assert kinds(session.receive_data(wire(REQUEST)))[-1] is Established
    return session


def requestor() -> AssociationSession:
    """A requestor session that sent its RQ (Sta5)."""
    session = AssociationSession(requestor=True)
    assert kinds(session.request_association(CONFIG)) == [ConnectTransport]
    assert session.state is State.STA4
    (rq,) = sent(session.transport_connected(PEER))
    assert rq.encode() == REQUEST.encode()
    assert session.state is State.STA5
    return session


def accept_pdu() -> AAssociateAC:
    answer = accept_or_reject(POLICY, REQUEST)
    assert isinstance(answer, tuple)
    return answer[0]


def established_requestor() -> AssociationSession:
    session = requestor()
    assert kinds(session.receive_data(wire(accept_pdu()))) == [Established]
    return session


# --------------------------------------------------------------------------- acceptor


def test_acceptor_answers_through_its_policy() -> None:
    session, _ = acceptor()
    events = session.receive_data(wire(REQUEST))
    assert kinds(events) == [ARTIMStop, SendPDU, Established]
    (ac,) = sent(events)
    assert isinstance(ac, AAssociateAC)
    assert ac.encode() == accept_pdu().encode()
    established = events[-1]
    assert isinstance(established, Established)
    negotiated = established.negotiated
    assert session.negotiated is negotiated and session.is_established
    assert not negotiated.requestor
    assert negotiated.peer_address == PEER  # the policy was given the peer's address
    assert negotiated.remote_ae_title == "MY-SCU"
    (context,) = negotiated.accepted_contexts
    assert context.transfer_syntax == EXPLICIT_VR_LE  # the acceptor's preference
    assert session.state is State.STA6 and session.error is None


def test_acceptor_rejects_what_its_policy_rejects() -> None:
    session, _ = acceptor()
    request, _ = build_request(RequestorConfig("MY-SCU", "SOMEONE-ELSE", CONFIG.contexts))
    events = session.receive_data(wire(request))
    assert kinds(events) == [ARTIMStop, SendPDU, ARTIMStart, Rejected]
    (rj,) = sent(events)
    assert isinstance(rj, AAssociateRJ)
    assert (rj.result, rj.source, rj.reason) == (1, 1, 7)
    rejected = events[-1]
    assert isinstance(rejected, Rejected) and rejected.local
    assert (rejected.error.result, rejected.error.source, rejected.error.reason) == (1, 1, 7)
    assert session.state is State.STA13
    assert session.error is None  # rejecting is this side's decision, not a failure
    assert kinds(session.transport_closed()) == [ARTIMStop]
    assert session.state is State.STA1


def test_a_failing_policy_is_answered_with_transient_congestion(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(certificate: Mapping[str, Any] | None, calling: str) -> bool:
        raise RuntimeError("certificate store unreachable")

    session, _ = acceptor(AcceptorPolicy(ae_titles=("STORE-SCP",), certificate_check=broken))
    with caplog.at_level(logging.ERROR, logger="dicomwire.ul"):
        events = session.receive_data(wire(REQUEST))
    (rj,) = sent(events)
    assert isinstance(rj, AAssociateRJ)
    assert (rj.result, rj.source, rj.reason) == (2, 3, 1)
    assert kinds(events)[-1] is Rejected and session.state is State.STA13
    (line,) = [r for r in caplog.records if r.name == "dicomwire.ul"]
    assert line.levelno == logging.ERROR and line.getMessage() == "acceptance policy failed"
    assert line.exc_info is not None and isinstance(line.exc_info[1], RuntimeError)


def test_an_acceptor_without_policy_rejects_with_transient_congestion() -> None:
    session, _ = acceptor(policy=None)
    (rj,) = sent(session.receive_data(wire(REQUEST)))
    assert rj.encode() == CONGESTION.encode()
    assert isinstance(rj, AAssociateRJ) and (rj.result, rj.source, rj.reason) == (2, 3, 1)


@pytest.mark.parametrize(("active", "answer"), [(1, AAssociateAC), (2, AAssociateRJ)])
def test_the_established_count_reaches_the_policy(active: int, answer: type) -> None:
    policy = AcceptorPolicy(
        ae_titles=("STORE-SCP",),
        abstract_syntaxes={VERIFICATION: (IMPLICIT_VR_LE,)},
        max_associations=2,
    )
    session, _ = acceptor(policy, active=active)
    (pdu,) = sent(session.receive_data(wire(REQUEST)))
    assert isinstance(pdu, answer)
    if isinstance(pdu, AAssociateRJ):
        assert (pdu.result, pdu.source, pdu.reason) == (2, 3, 2)  # local limit exceeded


def test_a_request_already_aborted_in_the_same_read_is_not_answered() -> None:
    session, _ = acceptor()
    events = session.receive_data(wire(REQUEST, P_DATA))  # P-DATA in Sta3: AA-8
    assert not any(isinstance(e, Established | Rejected) for e in events)
    (abort,) = sent(events)
    assert isinstance(abort, AAbort) and (abort.source, abort.reason) == (2, 2)
    aborted = events[-2]
    assert isinstance(aborted, Aborted) and aborted.indication.local
    assert isinstance(session.error, AssociationAborted)
    assert session.state is State.STA13


def test_p_data_is_passed_on_as_the_machine_gives_it() -> None:
    session = established_acceptor()
    data = wire(P_DATA, P_DATA)
    buffer = session.get_buffer(len(data))
    buffer[: len(data)] = data
    events = session.buffer_updated(len(data))
    assert kinds(events) == [PDataIndication, PDataIndication]
    first = events[0]
    assert isinstance(first, PDataIndication) and first.pdu.encode() == P_DATA.encode()
    (sent_pdu,) = sent(session.send_data(P_DATA))
    assert sent_pdu is P_DATA


def test_the_peers_release_request_is_recorded_and_answered() -> None:
    session = established_acceptor()
    assert session.release_response() == []  # nothing to answer in Sta6
    assert kinds(session.receive_data(wire(AReleaseRQ()))) == [ReleaseRequested]
    assert session.release_requested and session.state is State.STA8
    events = session.release_response()
    assert kinds(events) == [SendPDU, ARTIMStart]
    assert isinstance(sent(events)[0], AReleaseRP)
    assert session.state is State.STA13


def test_release_collision_acceptor_answers_in_sta12() -> None:
    session = established_acceptor()
    assert isinstance(sent(session.request_release())[0], AReleaseRQ)
    assert session.state is State.STA7
    assert session.receive_data(wire(AReleaseRQ())) == []  # AR-8: Sta10, wait for the RP
    assert session.state is State.STA10 and not session.release_requested
    events = session.receive_data(wire(AReleaseRP()))  # AR-10 to Sta12, answered: AR-4
    assert kinds(events) == [SendPDU, ARTIMStart, Released]
    assert isinstance(sent(events)[0], AReleaseRP)
    assert session.state is State.STA13 and session.error is None


# --------------------------------------------------------------------------- requestor


def test_requestor_reads_the_accept_into_what_was_agreed() -> None:
    session = requestor()
    (event,) = session.receive_data(wire(accept_pdu()))
    assert isinstance(event, Established)
    negotiated = event.negotiated
    assert session.negotiated is negotiated and session.is_established
    assert negotiated.requestor and negotiated.peer_address == PEER
    assert negotiated.local_ae_title == "MY-SCU" and negotiated.remote_ae_title == "STORE-SCP"
    assert negotiated.local_max_pdu_length == 32768
    assert negotiated.remote_max_pdu_length == POLICY.max_pdu_length
    (context,) = negotiated.accepted_contexts
    assert (context.context_id, context.transfer_syntax) == (1, EXPLICIT_VR_LE)


def test_requestor_turns_a_reject_into_association_rejected() -> None:
    session = requestor()
    events = session.receive_data(wire(AAssociateRJ(2, 3, 2)))
    assert kinds(events) == [Rejected, CloseTransport]
    rejected = events[0]
    assert isinstance(rejected, Rejected) and not rejected.local
    error = session.error
    assert isinstance(error, AssociationRejected) and rejected.error is error
    assert (error.result, error.source, error.reason) == (2, 3, 2)
    assert not error.permanent
    assert "local limit exceeded" in str(error)
    assert session.state is State.STA1


def test_release_collision_requestor_answers_at_once_in_sta9() -> None:
    session = established_requestor()
    session.request_release()
    events = session.receive_data(wire(AReleaseRQ()))  # AR-8: Sta9, answered (AR-9)
    assert kinds(events) == [SendPDU]
    assert isinstance(sent(events)[0], AReleaseRP)
    assert session.state is State.STA11 and not session.release_requested
    events = session.receive_data(wire(AReleaseRP()))  # AR-3
    assert kinds(events) == [Released, CloseTransport]
    assert session.state is State.STA1 and session.error is None


# --------------------------------------------------------------------------- ending


def test_the_peers_abort_is_the_error() -> None:
    session = established_requestor()
    events = session.receive_data(wire(AAbort(0, 0)))
    assert kinds(events) == [Aborted, CloseTransport]
    aborted = events[0]
    assert isinstance(aborted, Aborted) and aborted.error is session.error
    assert isinstance(session.error, AssociationAborted)
    assert not aborted.indication.local and not aborted.indication.provider


def test_a_local_abort_is_the_error() -> None:
    session = established_acceptor()
    events = session.abort(reason=0)
    assert kinds(events) == [SendPDU, ARTIMStart]
    assert isinstance(sent(events)[0], AAbort)
    error = session.error
    assert isinstance(error, AssociationAborted) and error.indication.local
    assert session.state is State.STA13


def test_a_timeout_stays_the_reason_it_ended() -> None:
    session = requestor()
    timeout = DicomTimeoutError("no A-ASSOCIATE-AC or -RJ within 1 s")
    events = session.force_abort(timeout)  # Sta5: A-ABORT, then wait for the close
    assert isinstance(sent(events)[0], AAbort) and session.state is State.STA13
    assert session.error is timeout
    assert kinds(session.transport_closed()) == [ARTIMStop]  # AR-5: no indication
    assert session.error is timeout


def test_a_connection_lost_after_a_send_stall_keeps_the_stall_as_reason() -> None:
    session = established_acceptor()
    stall = DicomTimeoutError("the peer read nothing we sent for 1 s")
    session.fail(stall)
    (aborted,) = session.transport_closed()  # AA-4: A-P-ABORT indication
    assert isinstance(aborted, Aborted) and aborted.error is stall and session.error is stall


def test_force_abort_where_the_table_has_no_abort_returns_nothing() -> None:
    session, _ = acceptor()  # Sta2: no A-ABORT request there
    assert session.force_abort() == []
    assert session.state is State.STA2  # the adapter closes the transport itself


def test_artim_expiry_before_the_request_closes() -> None:
    session, _ = acceptor()
    assert kinds(session.artim_expired()) == [ARTIMStop, CloseTransport]  # AA-2
    assert session.state is State.STA1
