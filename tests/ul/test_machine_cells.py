"""Every (state, event) cell of PS3.8 Table 9-10 on the sans-I/O UpperLayer.

Each test reaches its state legitimately (only public primitives and received bytes, see
:func:`drive_to`), fires one event the way production does (a local primitive, bytes
received, a transport or timer callback) and checks the effects the action of Tables 9-6 to
9-9 demands, in order, and the next state. The expected action of each cell comes from the
independent transcription in ``test_fsm_table``, not from :mod:`dicomwire.ul.fsm`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dicomwire.ul.fsm import Action, Event, State
from dicomwire.ul.machine import (
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
from dicomwire.ul.negotiation import RequestorConfig, build_request
from dicomwire.ul.pdu import (
    DICOM_APPLICATION_CONTEXT,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    ApplicationContextItem,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PresentationContextACItem,
    PresentationDataValue,
    UserInformationItem,
)

from .rawpeer import INVALID_PDUS, UNKNOWN_PDU
from .test_fsm_table import STANDARD_NEXT_STATE, STANDARD_TABLE_9_10

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"

RQ, _ = build_request(RequestorConfig("SCU", "DICOMWIRE", [(VERIFICATION, [IMPLICIT_VR_LE])]))
AC = AAssociateAC(
    "DICOMWIRE",
    "SCU",
    [
        ApplicationContextItem(DICOM_APPLICATION_CONTEXT),
        PresentationContextACItem.create(1, 0, IMPLICIT_VR_LE),
        UserInformationItem.create(16384, "1.2.826.0.1.3680043.8.498.1"),
    ],
)
RJ = AAssociateRJ(1, 1, 7)
P_DATA = PDataTF([PresentationDataValue(1, 0x03, b"\x00\x00\x00\x00")])

BOTH = (True, False)
#: Roles (requestor?) for which PS3.8 can put an association in each state.
ROLES: dict[State, tuple[bool, ...]] = {
    State.STA1: BOTH,
    State.STA2: (False,),
    State.STA3: (False,),
    State.STA4: (True,),
    State.STA5: (True,),
    State.STA6: BOTH,
    State.STA7: BOTH,
    State.STA8: BOTH,
    State.STA9: (True,),
    State.STA10: (False,),
    State.STA11: (True,),
    State.STA12: (False,),
    State.STA13: BOTH,
}

ARTIM_STATES = frozenset((State.STA2, State.STA13))


# --------------------------------------------------------------------------- driving


def _step(ul: UpperLayer, effects: list[Effect], state: State) -> None:
    assert ul.state is state, f"expected {state.value}, got {ul.state.value} after {effects}"
    # Invariant of Tables 9-6..9-9: ARTIM runs exactly while awaiting an RQ or a close.
    assert ul.artim_running is (state in ARTIM_STATES)


def drive_to(state: State, *, requestor: bool) -> UpperLayer:
    """An UpperLayer brought to ``state`` through primitives and received PDUs only."""
    assert requestor in ROLES[state], f"{state.value} is not a state of this role"
    ul = UpperLayer(requestor=requestor)
    _step(ul, [], State.STA1)
    if state is State.STA1:
        return ul
    if requestor:
        _step(ul, ul.request_association(RQ), State.STA4)
        if state is State.STA4:
            return ul
        _step(ul, ul.transport_connected(), State.STA5)
        if state is State.STA5:
            return ul
        _step(ul, ul.receive_data(AC.encode()), State.STA6)
    else:
        _step(ul, ul.transport_connected(), State.STA2)
        if state is State.STA2:
            return ul
        _step(ul, ul.receive_data(RQ.encode()), State.STA3)
        if state is State.STA3:
            return ul
        _step(ul, ul.accept(AC), State.STA6)
    if state is State.STA6:
        return ul
    if state is State.STA13:  # AA-1 (requestor) or AR-4 (acceptor): both start ARTIM
        if requestor:
            _step(ul, ul.abort(), State.STA13)
        else:
            _step(ul, ul.receive_data(AReleaseRQ().encode()), State.STA8)
            _step(ul, ul.release_response(), State.STA13)
        return ul
    if state is State.STA8:
        _step(ul, ul.receive_data(AReleaseRQ().encode()), State.STA8)
        return ul
    _step(ul, ul.request_release(), State.STA7)
    if state is State.STA7:
        return ul
    # Release collision: the peer's A-RELEASE-RQ crosses ours (AR-8).
    collision = State.STA9 if requestor else State.STA10
    effects = ul.receive_data(AReleaseRQ().encode())
    _step(ul, effects, collision)
    assert effects == [ReleaseIndication(collision=True)]
    if state is collision:
        return ul
    if requestor:
        _step(ul, ul.release_response(), State.STA11)
    else:
        _step(ul, ul.receive_data(AReleaseRP().encode()), State.STA12)
    assert ul.state is state
    return ul


def _as_role(ul: UpperLayer, requestor: bool, call: Callable[[], list[Effect]]) -> list[Effect]:
    """Fire a transport event of the given role (Evt2 is the requestor's, Evt5 the acceptor's)."""
    saved = ul.requestor
    ul.requestor = requestor
    try:
        return call()
    finally:
        ul.requestor = saved


FIRE: dict[Event, Callable[[UpperLayer], list[Effect]]] = {
    Event.EVT1: lambda ul: ul.request_association(RQ),
    Event.EVT2: lambda ul: _as_role(ul, True, ul.transport_connected),
    Event.EVT3: lambda ul: ul.receive_data(AC.encode()),
    Event.EVT4: lambda ul: ul.receive_data(RJ.encode()),
    Event.EVT5: lambda ul: _as_role(ul, False, ul.transport_connected),
    Event.EVT6: lambda ul: ul.receive_data(RQ.encode()),
    Event.EVT7: lambda ul: ul.accept(AC),
    Event.EVT8: lambda ul: ul.reject(RJ),
    Event.EVT9: lambda ul: ul.send_data(P_DATA),
    Event.EVT10: lambda ul: ul.receive_data(P_DATA.encode()),
    Event.EVT11: lambda ul: ul.request_release(),
    Event.EVT12: lambda ul: ul.receive_data(AReleaseRQ().encode()),
    Event.EVT13: lambda ul: ul.receive_data(AReleaseRP().encode()),
    Event.EVT14: lambda ul: ul.release_response(),
    Event.EVT15: lambda ul: ul.abort(),
    Event.EVT16: lambda ul: ul.receive_data(AAbort(0, 0).encode()),
    Event.EVT17: lambda ul: ul.transport_closed(),
    Event.EVT18: lambda ul: ul.artim_expired(),
    Event.EVT19: lambda ul: ul.receive_data(UNKNOWN_PDU),
}


# --------------------------------------------------------------------------- expectations


def describe(effect: Effect) -> tuple[object, ...]:
    """An effect as a comparable tuple of its type and key fields."""
    if isinstance(effect, SendPDU):
        pdu = effect.pdu
        if isinstance(pdu, AAbort):
            return ("send", "A-ABORT", pdu.source, pdu.reason)
        if isinstance(pdu, AAssociateRJ):
            return ("send", "A-ASSOCIATE-RJ", pdu.result, pdu.source, pdu.reason)
        return ("send", type(pdu).__name__)
    if isinstance(effect, AbortIndication):
        return ("abort-ind", effect.source, effect.reason, effect.provider, effect.local)
    if isinstance(effect, ReleaseIndication):
        return ("release-ind", effect.collision)
    simple: dict[type, str] = {
        ConnectTransport: "connect",
        CloseTransport: "close",
        ARTIMStart: "artim-start",
        ARTIMStop: "artim-stop",
        AssociateIndication: "associate-ind",
        AssociateAccepted: "associate-accepted",
        AssociateRejected: "associate-rejected",
        PDataIndication: "p-data-ind",
        ReleaseConfirmation: "release-conf",
    }
    return (simple[type(effect)],)


def expected_effects(action: str, event: Event, artim_running: bool) -> list[tuple[object, ...]]:
    """What PS3.8 Tables 9-6..9-9 say ``action`` does, for the events FIRE produces."""
    stop: list[tuple[object, ...]] = [("artim-stop",)] if artim_running else []
    if event is Event.EVT15:
        abort_by = (0, 0)  # A-ABORT request primitive: service-user source
    elif event is Event.EVT19:
        abort_by = (2, 1)  # UNKNOWN_PDU: service-provider, unrecognized PDU
    else:
        abort_by = (2, 2)  # a well-formed PDU out of place: service-provider, unexpected PDU
    table: dict[str, list[tuple[object, ...]]] = {
        "AE-1": [("connect",)],
        "AE-2": [("send", "AAssociateRQ")],
        "AE-3": [("associate-accepted",)],
        "AE-4": [("associate-rejected",), ("close",)],
        "AE-5": [("artim-start",)],
        "AE-6": [*stop, ("associate-ind",)],  # RQ acceptable to the provider
        "AE-7": [("send", "AAssociateAC")],
        "AE-8": [("send", "A-ASSOCIATE-RJ", 1, 1, 7), ("artim-start",)],
        "DT-1": [("send", "PDataTF")],
        "DT-2": [("p-data-ind",)],
        "AR-1": [("send", "AReleaseRQ")],
        "AR-2": [("release-ind", False)],
        "AR-3": [("release-conf",), ("close",)],
        "AR-4": [("send", "AReleaseRP"), ("artim-start",)],
        "AR-5": [("artim-stop",)],
        "AR-6": [("p-data-ind",)],
        "AR-7": [("send", "PDataTF")],
        "AR-8": [("release-ind", True)],
        "AR-9": [("send", "AReleaseRP")],
        "AR-10": [("release-conf",)],
        # AA-1 (Table 9-9): "service-user source"; received-PDU triggers send (0, 0)
        "AA-1": [
            ("send", "A-ABORT", *(abort_by if event is Event.EVT15 else (0, 0))),
            ("artim-start",),
        ],
        "AA-2": [*stop, ("close",)],
        "AA-3": [*stop, ("abort-ind", 0, 0, False, False), ("close",)],
        "AA-4": [*stop, ("abort-ind", 2, 0, True, True)],
        "AA-5": [*stop],
        "AA-6": [],
        "AA-7": [("send", "A-ABORT", *abort_by)],
        "AA-8": [
            ("send", "A-ABORT", 2, abort_by[1]),
            ("abort-ind", 2, abort_by[1], True, True),
            ("artim-start",),
        ],
    }
    return table[action]


def expected_next_state(action: str, requestor: bool) -> State:
    target = STANDARD_NEXT_STATE[action]
    if action == "AE-6":
        return State.STA3  # the RQ is acceptable; the refusal branch is tested below
    if action == "AR-8":
        return State.STA9 if requestor else State.STA10
    assert isinstance(target, str)
    return State(target)


#: Primitives and transport events whose empty cells are a no-op, not an error.
def _undefined_is_noop(state: State, event: Event) -> bool:
    if event is Event.EVT18:
        return True  # a stale ARTIM expiry: the timer is not running outside Sta2/Sta13
    if event is Event.EVT17 and state is State.STA1:
        return True  # no connection, nothing to close
    return event is Event.EVT15 and state in (State.STA1, State.STA13)  # already gone


CASES = [(s, e, r) for s in State for e in Event for r in ROLES[s]]


def _case_id(case: tuple[State, Event, bool]) -> str:
    state, event, requestor = case
    return f"{state.value}-{event.value}-{'req' if requestor else 'acc'}"


def test_cases_cover_all_247_cells() -> None:
    assert {(s, e) for s, e, _ in CASES} == {(s, e) for s in State for e in Event}
    assert len({(s, e) for s, e, _ in CASES}) == 247


@pytest.mark.parametrize(("state", "event", "requestor"), CASES, ids=map(_case_id, CASES))
def test_cell(state: State, event: Event, requestor: bool) -> None:
    ul = drive_to(state, requestor=requestor)
    artim_before = ul.artim_running
    last_before = ul.last_action
    action = STANDARD_TABLE_9_10[(state.value, event.value)]

    if not action:
        if _undefined_is_noop(state, event):
            assert FIRE[event](ul) == []
        else:
            with pytest.raises(AssociationStateError):
                FIRE[event](ul)
        assert ul.state is state
        assert ul.artim_running is artim_before
        assert ul.last_action is last_before
        return

    effects = FIRE[event](ul)
    described = [describe(e) for e in effects]
    expected = expected_effects(action, event, artim_before)
    if event is Event.EVT18:
        # The timer has just expired: AA-2's "stop ARTIM if running" may be a no-op stop.
        described = [d for d in described if d != ("artim-stop",)]
        expected = [d for d in expected if d != ("artim-stop",)]
    assert described == expected
    assert ul.last_action is Action(action)
    _step(ul, effects, expected_next_state(action, requestor))

    # The effects carry the right objects, not just the right types.
    for effect in effects:
        if isinstance(effect, SendPDU) and action == "AE-2":
            assert effect.pdu is RQ
        elif isinstance(effect, SendPDU) and action == "AE-7":
            assert effect.pdu is AC
        elif isinstance(effect, SendPDU) and action in ("DT-1", "AR-7"):
            assert effect.pdu is P_DATA
        elif isinstance(effect, SendPDU) and action == "AE-8":
            assert effect.pdu is RJ
        elif isinstance(effect, AssociateIndication):
            assert effect.request == RQ
        elif isinstance(effect, AssociateAccepted):
            assert effect.accept == AC
        elif isinstance(effect, AssociateRejected):
            assert effect.reject == RJ
        elif isinstance(effect, PDataIndication):
            assert effect.pdu == P_DATA


# --------------------------------------------------------------------------- special cases


def test_transport_connected_is_evt2_for_a_requestor_and_evt5_for_an_acceptor() -> None:
    requestor = drive_to(State.STA4, requestor=True)
    assert [describe(e) for e in requestor.transport_connected()] == [("send", "AAssociateRQ")]
    assert requestor.last_action is Action.AE2
    acceptor = UpperLayer(requestor=False)
    assert acceptor.transport_connected() == [ARTIMStart()]
    assert acceptor.last_action is Action.AE5
    # A requestor that never asked for an association has no Evt2 to handle in Sta1.
    with pytest.raises(AssociationStateError):
        UpperLayer(requestor=True).transport_connected()


@pytest.mark.parametrize("state", [s for s in State if s not in ARTIM_STATES])
def test_artim_expiry_is_ignored_when_the_timer_is_not_running(state: State) -> None:
    ul = drive_to(state, requestor=ROLES[state][0])
    assert not ul.artim_running
    assert ul.artim_expired() == []
    assert ul.state is state


@pytest.mark.parametrize("state", sorted(ARTIM_STATES, key=lambda s: int(s.value[3:])))
def test_artim_expiry_closes_once(state: State) -> None:
    ul = drive_to(state, requestor=False)
    effects = ul.artim_expired()
    assert effects[-1] == CloseTransport()
    assert not any(isinstance(e, SendPDU) for e in effects)
    assert ul.state is State.STA1 and not ul.artim_running
    assert ul.artim_expired() == []  # a second expiry callback changes nothing


@pytest.mark.parametrize(
    ("request_", "reject"),
    [
        (AAssociateRQ(RQ.called_ae_title, "SCU", RQ.variable_items, protocol_version=2), (1, 2, 2)),
        (AAssociateRQ("DICOMWIRE", "SCU", RQ.variable_items[1:]), (1, 2, 1)),
    ],
    ids=["protocol-version-without-bit-0", "no-application-context"],
)
def test_ae6_refusal_sends_rj_and_starts_artim(
    request_: AAssociateRQ, reject: tuple[int, int, int]
) -> None:
    ul = drive_to(State.STA2, requestor=False)
    effects = ul.receive_data(request_.encode())
    assert [describe(e) for e in effects] == [
        ("artim-stop",),
        ("send", "A-ASSOCIATE-RJ", *reject),
        ("artim-start",),
    ]
    assert ul.last_action is Action.AE6
    _step(ul, effects, State.STA13)


def test_ae6_uses_the_configured_provider_check() -> None:
    seen: list[AAssociateRQ] = []

    def refuse(request: AAssociateRQ) -> AAssociateRJ:
        seen.append(request)
        return AAssociateRJ(2, 3, 1)

    ul = UpperLayer(requestor=False, provider_check=refuse)
    ul.transport_connected()
    effects = ul.receive_data(RQ.encode())
    assert seen == [RQ]
    assert [describe(e) for e in effects][1] == ("send", "A-ASSOCIATE-RJ", 2, 3, 1)
    assert ul.state is State.STA13


@pytest.mark.parametrize(("payload", "reason"), INVALID_PDUS.values(), ids=INVALID_PDUS.keys())
@pytest.mark.parametrize(
    ("state", "requestor", "action"),
    [
        (State.STA3, False, Action.AA8),
        (State.STA5, True, Action.AA8),
        (State.STA6, True, Action.AA8),
        (State.STA6, False, Action.AA8),
        (State.STA7, True, Action.AA8),
        (State.STA8, False, Action.AA8),
        (State.STA9, True, Action.AA8),
        (State.STA10, False, Action.AA8),
        (State.STA11, True, Action.AA8),
        (State.STA12, False, Action.AA8),
        (State.STA13, False, Action.AA7),
    ],
    ids=lambda v: v.value if isinstance(v, State | Action) else ("req" if v else "acc"),
)
def test_evt19_aborts_with_the_pdu_errors_reason(
    state: State, requestor: bool, action: Action, payload: bytes, reason: int
) -> None:
    """Evt19: A-ABORT source 2 (service-provider) with the reason of Table 9-26."""
    ul = drive_to(state, requestor=requestor)
    effects = ul.receive_data(payload)
    assert ul.last_action is action
    assert describe(effects[0]) == ("send", "A-ABORT", 2, reason)
    if action is Action.AA8:
        indication = effects[1]
        assert isinstance(indication, AbortIndication)
        assert describe(indication) == ("abort-ind", 2, reason, True, True)
        assert indication.detail  # says what was wrong with the PDU
    _step(ul, effects, State.STA13)


def test_evt19_when_a_p_data_tf_exceeds_the_announced_maximum_length() -> None:
    ul = UpperLayer(requestor=False, max_pdu_length=64)
    ul.transport_connected()
    ul.receive_data(RQ.encode())
    ul.accept(AC)
    small = PDataTF([PresentationDataValue(1, 0x03, bytes(58))])  # exactly 64 bytes
    assert [describe(e) for e in ul.receive_data(small.encode())] == [("p-data-ind",)]
    big = PDataTF([PresentationDataValue(1, 0x03, bytes(60))])
    effects = ul.receive_data(big.encode())
    assert describe(effects[0]) == ("send", "A-ABORT", 2, 6)
    assert ul.state is State.STA13


@pytest.mark.parametrize(
    ("source", "reason", "provider"),
    [(0, 0, False), (0, 3, False), (2, 1, True), (2, 6, True), (1, 0, True)],
)
@pytest.mark.parametrize("state", [State.STA3, State.STA6, State.STA8, State.STA12])
def test_aa3_reports_the_peers_abort(
    state: State, source: int, reason: int, provider: bool
) -> None:
    """AA-3: A-ABORT indication for a service-user abort, A-P-ABORT otherwise."""
    ul = drive_to(state, requestor=ROLES[state][0])
    effects = ul.receive_data(AAbort(source, reason).encode())
    assert [describe(e) for e in effects] == [
        ("abort-ind", source, reason, provider, False),
        ("close",),
    ]
    assert ul.state is State.STA1


@pytest.mark.parametrize("state", [State.STA3, State.STA5, State.STA6, State.STA7, State.STA12])
def test_aa1_local_abort_sends_the_callers_source_and_reason(state: State) -> None:
    ul = drive_to(state, requestor=ROLES[state][0])
    effects = ul.abort(0, 0)
    assert [describe(e) for e in effects] == [("send", "A-ABORT", 0, 0), ("artim-start",)]
    ul2 = drive_to(state, requestor=ROLES[state][0])
    effects = ul2.abort(2, 5)
    assert [describe(e) for e in effects] == [("send", "A-ABORT", 2, 5), ("artim-start",)]


@pytest.mark.parametrize(
    "pdu",
    [AC, RJ, P_DATA, AReleaseRQ(), AReleaseRP()],
    ids=lambda p: type(p).__name__,
)
def test_aa1_in_sta2_for_a_well_formed_pdu_is_service_user_source(pdu: object) -> None:
    """Table 9-9 AA-1: "Send A-ABORT PDU (service-user source)"; its reason is 00H (§9.3.8)."""
    ul = drive_to(State.STA2, requestor=False)
    effects = ul.receive_data(pdu.encode())  # type: ignore[attr-defined]
    assert [describe(e) for e in effects] == [("send", "A-ABORT", 0, 0), ("artim-start",)]
    assert ul.last_action is Action.AA1
    assert ul.state is State.STA13


def test_aa4_in_sta4_when_the_connection_attempt_fails() -> None:
    ul = drive_to(State.STA4, requestor=True)
    assert [describe(e) for e in ul.transport_closed()] == [("abort-ind", 2, 0, True, True)]
    assert ul.state is State.STA1
    assert ul.transport_closed() == []  # Evt17 again in Sta1: nothing left to do


def test_aa2_in_sta4_closes_without_sending() -> None:
    ul = drive_to(State.STA4, requestor=True)
    assert ul.abort() == [CloseTransport()]
    assert ul.state is State.STA1


def test_pdu_fed_one_byte_at_a_time_is_one_event() -> None:
    ul = drive_to(State.STA2, requestor=False)
    data = RQ.encode()
    for i in range(len(data) - 1):
        assert ul.receive_data(data[i : i + 1]) == []
        assert ul.state is State.STA2
        assert ul.buffered == i + 1
    effects = ul.receive_data(data[-1:])
    assert [describe(e) for e in effects] == [("artim-stop",), ("associate-ind",)]
    assert ul.state is State.STA3 and ul.buffered == 0


def test_buffered_protocol_path_fires_the_same_events() -> None:
    ul = drive_to(State.STA6, requestor=False)
    data = AReleaseRQ().encode() + AAbort(2, 4).encode()
    effects: list[Effect] = []
    for i in range(len(data)):
        buffer = ul.get_buffer(-1)
        buffer[:1] = data[i : i + 1]
        effects += ul.buffer_updated(1)
    assert [describe(e) for e in effects] == [
        ("release-ind", False),
        ("abort-ind", 2, 4, True, False),
        ("close",),
    ]
    assert ul.state is State.STA1


def test_several_pdus_in_one_chunk_are_events_in_order() -> None:
    ul = drive_to(State.STA6, requestor=False)
    effects = ul.receive_data(P_DATA.encode() + AReleaseRQ().encode() + P_DATA.encode())
    # DT-2 in Sta6, AR-2 to Sta8, then P-DATA in Sta8 is AA-8.
    assert [describe(e) for e in effects] == [
        ("p-data-ind",),
        ("release-ind", False),
        ("send", "A-ABORT", 2, 2),
        ("abort-ind", 2, 2, True, True),
        ("artim-start",),
    ]
    assert ul.state is State.STA13


def test_pdus_after_the_association_ends_in_the_same_chunk_are_not_acted_on() -> None:
    ul = drive_to(State.STA7, requestor=True)
    effects = ul.receive_data(AReleaseRP().encode() + AReleaseRQ().encode())
    assert [describe(e) for e in effects] == [("release-conf",), ("close",)]
    assert ul.state is State.STA1


def test_a_pdu_received_in_sta3_is_aa8_before_the_local_response() -> None:
    """Sta3 + Evt10: the indication is still returned, then AA-8 in the same call."""
    ul = drive_to(State.STA2, requestor=False)
    effects = ul.receive_data(RQ.encode() + P_DATA.encode())
    assert [describe(e) for e in effects] == [
        ("artim-stop",),
        ("associate-ind",),
        ("send", "A-ABORT", 2, 2),
        ("abort-ind", 2, 2, True, True),
        ("artim-start",),
    ]
    assert ul.state is State.STA13
    with pytest.raises(AssociationStateError):
        ul.accept(AC)  # too late: an adapter must check the state before answering


@pytest.mark.parametrize(
    ("state", "requestor", "first", "expected", "final"),
    [
        (
            State.STA6,
            False,
            AAbort(0, 0),
            [("abort-ind", 0, 0, False, False), ("close",)],
            State.STA1,
        ),
        (State.STA7, True, AReleaseRP(), [("release-conf",), ("close",)], State.STA1),
        (
            State.STA6,
            False,
            AReleaseRQ(),
            [
                ("release-ind", False),
                ("send", "A-ABORT", 2, 1),
                ("abort-ind", 2, 1, True, True),
                ("artim-start",),
            ],
            State.STA13,
        ),
    ],
    ids=["abort-then-garbage", "release-rp-then-garbage", "release-rq-then-garbage"],
)
def test_valid_pdu_followed_by_garbage_in_one_chunk(
    state: State,
    requestor: bool,
    first: AAbort | AReleaseRP | AReleaseRQ,
    expected: list[tuple[object, ...]],
    final: State,
) -> None:
    """Events keep their order of arrival: the valid PDU acts before the bad bytes do.

    Regression: the framer used to raise for the bad bytes and drop the PDU before them.
    """
    ul = drive_to(state, requestor=requestor)
    effects = ul.receive_data(first.encode() + UNKNOWN_PDU)
    assert [describe(e) for e in effects] == expected
    assert ul.state is final


def test_after_evt19_every_further_chunk_is_evt19_again_in_sta13() -> None:
    """The stream cannot be resynchronised: AA-7 answers each later read."""
    ul = drive_to(State.STA6, requestor=False)
    ul.receive_data(UNKNOWN_PDU)
    assert ul.state is State.STA13
    effects = ul.receive_data(AReleaseRQ().encode())
    assert [describe(e) for e in effects] == [("send", "A-ABORT", 2, 1)]
    assert ul.last_action is Action.AA7
    assert ul.state is State.STA13 and ul.artim_running


def test_on_pdu_sees_every_received_pdu_before_it_is_acted_on() -> None:
    ul = drive_to(State.STA6, requestor=False)
    seen: list[str] = []
    ul.on_pdu = lambda pdu: seen.append(type(pdu).__name__)
    ul.receive_data(P_DATA.encode() + AReleaseRQ().encode())
    assert seen == ["PDataTF", "AReleaseRQ"]


def test_buffered_protocol_path_after_evt19_is_aa7_like_receive_data() -> None:
    """Regression: get_buffer() used to re-raise the PDUError (fatal for asyncio)."""
    ul = drive_to(State.STA6, requestor=False)
    ul.receive_data(UNKNOWN_PDU)
    assert ul.state is State.STA13
    data = AReleaseRQ().encode()
    buffer = ul.get_buffer(-1)  # asyncio calls this before every read, EOF included
    buffer[: len(data)] = data
    effects = ul.buffer_updated(len(data))
    assert [describe(e) for e in effects] == [("send", "A-ABORT", 2, 1)]
    assert ul.transport_closed() == [ARTIMStop()]  # Evt17 in Sta13: AR-5
    assert ul.state is State.STA1


@pytest.mark.parametrize(("payload", "reason"), INVALID_PDUS.values(), ids=INVALID_PDUS.keys())
def test_aa1_in_sta2_for_an_invalid_pdu_is_service_user_source(payload: bytes, reason: int) -> None:
    ul = drive_to(State.STA2, requestor=False)
    effects = ul.receive_data(payload)
    assert ul.last_action is Action.AA1
    assert [describe(e) for e in effects] == [("send", "A-ABORT", 0, 0), ("artim-start",)]
