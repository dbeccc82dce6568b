"""The DICOM Upper Layer state machine as data: PS3.8 §9.2, Tables 9-6 to 9-10.

13 states, 19 events, the actions AE-1..AE-8, DT-1..DT-2, AR-1..AR-10 and AA-1..AA-8.
:data:`TRANSITIONS` is Table 9-10 itself: every (state, event) cell the standard fills maps
to its action; a cell the standard leaves empty is a local usage error (the application
asked for something impossible in that state) and never reachable from the network, since
every received-PDU event (Evt3, 4, 6, 10, 12, 13, 16, 19) is defined in every state where
a transport connection exists.

This module only names things; :mod:`dicomwire.ul.machine` carries the actions out.
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    """States of PS3.8 Table 9-1 (the value is the standard's name)."""

    __hash__ = object.__hash__  # members are singletons: identity hash, in C

    STA1 = "Sta1"  # Idle
    STA2 = "Sta2"  # Transport connection open (awaiting A-ASSOCIATE-RQ PDU)
    STA3 = "Sta3"  # Awaiting local A-ASSOCIATE response primitive
    STA4 = "Sta4"  # Awaiting transport connection opening to complete
    STA5 = "Sta5"  # Awaiting A-ASSOCIATE-AC or -RJ PDU
    STA6 = "Sta6"  # Association established and ready for data transfer
    STA7 = "Sta7"  # Awaiting A-RELEASE-RP PDU
    STA8 = "Sta8"  # Awaiting local A-RELEASE response primitive
    STA9 = "Sta9"  # Release collision requestor side; awaiting A-RELEASE response
    STA10 = "Sta10"  # Release collision acceptor side; awaiting A-RELEASE-RP PDU
    STA11 = "Sta11"  # Release collision requestor side; awaiting A-RELEASE-RP PDU
    STA12 = "Sta12"  # Release collision acceptor side; awaiting A-RELEASE response
    STA13 = "Sta13"  # Awaiting transport connection close indication


class Event(Enum):
    """Events of PS3.8 Table 9-10 (the value is the standard's name)."""

    __hash__ = object.__hash__  # members are singletons: identity hash, in C

    EVT1 = "Evt1"  # A-ASSOCIATE request (local user)
    EVT2 = "Evt2"  # Transport connection confirm (local transport service)
    EVT3 = "Evt3"  # A-ASSOCIATE-AC PDU received
    EVT4 = "Evt4"  # A-ASSOCIATE-RJ PDU received
    EVT5 = "Evt5"  # Transport connection indication (local transport service)
    EVT6 = "Evt6"  # A-ASSOCIATE-RQ PDU received
    EVT7 = "Evt7"  # A-ASSOCIATE response primitive (accept)
    EVT8 = "Evt8"  # A-ASSOCIATE response primitive (reject)
    EVT9 = "Evt9"  # P-DATA request primitive
    EVT10 = "Evt10"  # P-DATA-TF PDU received
    EVT11 = "Evt11"  # A-RELEASE request primitive
    EVT12 = "Evt12"  # A-RELEASE-RQ PDU received
    EVT13 = "Evt13"  # A-RELEASE-RP PDU received
    EVT14 = "Evt14"  # A-RELEASE response primitive
    EVT15 = "Evt15"  # A-ABORT request primitive
    EVT16 = "Evt16"  # A-ABORT PDU received
    EVT17 = "Evt17"  # Transport connection closed indication
    EVT18 = "Evt18"  # ARTIM timer expired
    EVT19 = "Evt19"  # Unrecognized or invalid PDU received


class Action(Enum):
    """Actions of PS3.8 Tables 9-6 to 9-9 (the value is the standard's name)."""

    __hash__ = object.__hash__  # members are singletons: identity hash, in C

    AE1 = "AE-1"  # Issue TRANSPORT CONNECT request -> Sta4
    AE2 = "AE-2"  # Send A-ASSOCIATE-RQ PDU -> Sta5
    AE3 = "AE-3"  # Issue A-ASSOCIATE confirmation (accept) -> Sta6
    AE4 = "AE-4"  # Issue A-ASSOCIATE confirmation (reject), close transport -> Sta1
    AE5 = "AE-5"  # Issue transport connection response; start ARTIM -> Sta2
    AE6 = "AE-6"  # Stop ARTIM; indication -> Sta3, or send RJ and start ARTIM -> Sta13
    AE7 = "AE-7"  # Send A-ASSOCIATE-AC PDU -> Sta6
    AE8 = "AE-8"  # Send A-ASSOCIATE-RJ PDU and start ARTIM -> Sta13
    DT1 = "DT-1"  # Send P-DATA-TF PDU -> Sta6
    DT2 = "DT-2"  # Issue P-DATA indication -> Sta6
    AR1 = "AR-1"  # Send A-RELEASE-RQ PDU -> Sta7
    AR2 = "AR-2"  # Issue A-RELEASE indication -> Sta8
    AR3 = "AR-3"  # Issue A-RELEASE confirmation, close transport -> Sta1
    AR4 = "AR-4"  # Send A-RELEASE-RP PDU and start ARTIM -> Sta13
    AR5 = "AR-5"  # Stop ARTIM -> Sta1
    AR6 = "AR-6"  # Issue P-DATA indication -> Sta7
    AR7 = "AR-7"  # Send P-DATA-TF PDU -> Sta8
    AR8 = "AR-8"  # Issue A-RELEASE indication (collision) -> Sta9 (requestor) or Sta10
    AR9 = "AR-9"  # Send A-RELEASE-RP PDU -> Sta11
    AR10 = "AR-10"  # Issue A-RELEASE confirmation -> Sta12
    AA1 = "AA-1"  # Send A-ABORT PDU, start (or restart) ARTIM -> Sta13
    AA2 = "AA-2"  # Stop ARTIM if running, close transport -> Sta1
    AA3 = "AA-3"  # Issue A-ABORT or A-P-ABORT indication, close transport -> Sta1
    AA4 = "AA-4"  # Issue A-P-ABORT indication -> Sta1
    AA5 = "AA-5"  # Stop ARTIM -> Sta1
    AA6 = "AA-6"  # Ignore PDU -> Sta13
    AA7 = "AA-7"  # Send A-ABORT PDU -> Sta13
    AA8 = "AA-8"  # Send A-ABORT PDU (provider), issue A-P-ABORT, start ARTIM -> Sta13


def _row(action: Action, states: str) -> dict[State, Action]:
    """Map each of the space-separated state numbers to ``action``."""
    return {State[f"STA{n}"]: action for n in states.split()}


_A = Action
_E = Event

#: PS3.8 Table 9-10, row by row: event -> {state -> action}.
TABLE_9_10: dict[Event, dict[State, Action]] = {
    _E.EVT1: _row(_A.AE1, "1"),
    _E.EVT2: _row(_A.AE2, "4"),
    _E.EVT3: {**_row(_A.AA1, "2"), **_row(_A.AE3, "5"), **_row(_A.AA6, "13")}
    | _row(_A.AA8, "3 6 7 8 9 10 11 12"),
    _E.EVT4: {**_row(_A.AA1, "2"), **_row(_A.AE4, "5"), **_row(_A.AA6, "13")}
    | _row(_A.AA8, "3 6 7 8 9 10 11 12"),
    _E.EVT5: _row(_A.AE5, "1"),
    _E.EVT6: {**_row(_A.AE6, "2"), **_row(_A.AA7, "13")} | _row(_A.AA8, "3 5 6 7 8 9 10 11 12"),
    _E.EVT7: _row(_A.AE7, "3"),
    _E.EVT8: _row(_A.AE8, "3"),
    _E.EVT9: {**_row(_A.DT1, "6"), **_row(_A.AR7, "8")},
    _E.EVT10: {**_row(_A.AA1, "2"), **_row(_A.DT2, "6"), **_row(_A.AR6, "7")}
    | _row(_A.AA8, "3 5 8 9 10 11 12")
    | _row(_A.AA6, "13"),
    _E.EVT11: _row(_A.AR1, "6"),
    _E.EVT12: {**_row(_A.AA1, "2"), **_row(_A.AR2, "6"), **_row(_A.AR8, "7")}
    | _row(_A.AA8, "3 5 8 9 10 11 12")
    | _row(_A.AA6, "13"),
    _E.EVT13: {**_row(_A.AA1, "2"), **_row(_A.AR3, "7 11"), **_row(_A.AR10, "10")}
    | _row(_A.AA8, "3 5 6 8 9 12")
    | _row(_A.AA6, "13"),
    _E.EVT14: {**_row(_A.AR4, "8 12"), **_row(_A.AR9, "9")},
    _E.EVT15: {**_row(_A.AA2, "4")} | _row(_A.AA1, "3 5 6 7 8 9 10 11 12"),
    _E.EVT16: {**_row(_A.AA2, "2 13")} | _row(_A.AA3, "3 5 6 7 8 9 10 11 12"),
    _E.EVT17: {**_row(_A.AA5, "2"), **_row(_A.AR5, "13")} | _row(_A.AA4, "3 4 5 6 7 8 9 10 11 12"),
    _E.EVT18: _row(_A.AA2, "2 13"),
    _E.EVT19: {**_row(_A.AA1, "2"), **_row(_A.AA7, "13")} | _row(_A.AA8, "3 5 6 7 8 9 10 11 12"),
}

#: The same table keyed by (state, event), the way the machine looks it up.
TRANSITIONS: dict[tuple[State, Event], Action] = {
    (state, event): action for event, row in TABLE_9_10.items() for state, action in row.items()
}

#: The state each action leads to; AE-6 and AR-8 choose at run time (None here).
NEXT_STATE: dict[Action, State | None] = {
    _A.AE1: State.STA4,
    _A.AE2: State.STA5,
    _A.AE3: State.STA6,
    _A.AE4: State.STA1,
    _A.AE5: State.STA2,
    _A.AE6: None,
    _A.AE7: State.STA6,
    _A.AE8: State.STA13,
    _A.DT1: State.STA6,
    _A.DT2: State.STA6,
    _A.AR1: State.STA7,
    _A.AR2: State.STA8,
    _A.AR3: State.STA1,
    _A.AR4: State.STA13,
    _A.AR5: State.STA1,
    _A.AR6: State.STA7,
    _A.AR7: State.STA8,
    _A.AR8: None,
    _A.AR9: State.STA11,
    _A.AR10: State.STA12,
    _A.AA1: State.STA13,
    _A.AA2: State.STA1,
    _A.AA3: State.STA1,
    _A.AA4: State.STA1,
    _A.AA5: State.STA1,
    _A.AA6: State.STA13,
    _A.AA7: State.STA13,
    _A.AA8: State.STA13,
}
