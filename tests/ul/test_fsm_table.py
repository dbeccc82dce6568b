"""PS3.8 Table 9-10 as data (dicomwire.ul.fsm) against an independent transcription.

The grid below was typed from PS3.8 §9.2.3, Table 9-10 (DICOM Upper Layer Protocol State
Transition Table), one row per event and one column per state, and the next states from the
action definitions of §9.2.2, Tables 9-6 to 9-9. It deliberately shares no code with
:mod:`dicomwire.ul.fsm`: a typo in either shows up as a failing cell.
"""

from __future__ import annotations

import pytest

from dicomwire.ul.fsm import NEXT_STATE, TABLE_9_10, TRANSITIONS, Action, Event, State

# "." is an empty cell of the standard's table ("" below).
_GRID = """
        Sta1  Sta2  Sta3  Sta4  Sta5  Sta6  Sta7  Sta8  Sta9  Sta10 Sta11 Sta12 Sta13
Evt1    AE-1  .     .     .     .     .     .     .     .     .     .     .     .
Evt2    .     .     .     AE-2  .     .     .     .     .     .     .     .     .
Evt3    .     AA-1  AA-8  .     AE-3  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt4    .     AA-1  AA-8  .     AE-4  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt5    AE-5  .     .     .     .     .     .     .     .     .     .     .     .
Evt6    .     AE-6  AA-8  .     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7
Evt7    .     .     AE-7  .     .     .     .     .     .     .     .     .     .
Evt8    .     .     AE-8  .     .     .     .     .     .     .     .     .     .
Evt9    .     .     .     .     .     DT-1  .     AR-7  .     .     .     .     .
Evt10   .     AA-1  AA-8  .     AA-8  DT-2  AR-6  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt11   .     .     .     .     .     AR-1  .     .     .     .     .     .     .
Evt12   .     AA-1  AA-8  .     AA-8  AR-2  AR-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt13   .     AA-1  AA-8  .     AA-8  AA-8  AR-3  AA-8  AA-8  AR-10 AR-3  AA-8  AA-6
Evt14   .     .     .     .     .     .     .     AR-4  AR-9  .     .     AR-4  .
Evt15   .     .     AA-1  AA-2  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  .
Evt16   .     AA-2  AA-3  .     AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-2
Evt17   .     AA-5  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AR-5
Evt18   .     AA-2  .     .     .     .     .     .     .     .     .     .     AA-2
Evt19   .     AA-1  AA-8  .     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7
"""


def _parse_grid(text: str) -> dict[tuple[str, str], str]:
    lines = [line.split() for line in text.strip().splitlines()]
    states = lines[0]
    grid: dict[tuple[str, str], str] = {}
    for event, *cells in lines[1:]:
        assert len(cells) == len(states), f"row {event} has {len(cells)} cells"
        for state, cell in zip(states, cells, strict=True):
            grid[(state, event)] = "" if cell == "." else cell
    return grid


#: (state name, event name) -> action name, or "" for an empty cell.
STANDARD_TABLE_9_10 = _parse_grid(_GRID)

STATE_NAMES = [f"Sta{n}" for n in range(1, 14)]
EVENT_NAMES = [f"Evt{n}" for n in range(1, 20)]

#: Tables 9-6 to 9-9: the state each action leads to; a tuple when the action chooses.
STANDARD_NEXT_STATE: dict[str, str | tuple[str, str]] = {
    # Table 9-6, association establishment
    "AE-1": "Sta4",
    "AE-2": "Sta5",
    "AE-3": "Sta6",
    "AE-4": "Sta1",
    "AE-5": "Sta2",
    "AE-6": ("Sta3", "Sta13"),  # indication if acceptable, else A-ASSOCIATE-RJ
    "AE-7": "Sta6",
    "AE-8": "Sta13",
    # Table 9-7, data transfer
    "DT-1": "Sta6",
    "DT-2": "Sta6",
    # Table 9-8, association release
    "AR-1": "Sta7",
    "AR-2": "Sta8",
    "AR-3": "Sta1",
    "AR-4": "Sta13",
    "AR-5": "Sta1",
    "AR-6": "Sta7",
    "AR-7": "Sta8",
    "AR-8": ("Sta9", "Sta10"),  # requestor, acceptor
    "AR-9": "Sta11",
    "AR-10": "Sta12",
    # Table 9-9, association abort
    "AA-1": "Sta13",
    "AA-2": "Sta1",
    "AA-3": "Sta1",
    "AA-4": "Sta1",
    "AA-5": "Sta1",
    "AA-6": "Sta13",
    "AA-7": "Sta13",
    "AA-8": "Sta13",
}

CELLS = [(s, e) for e in EVENT_NAMES for s in STATE_NAMES]


def test_transcription_is_complete() -> None:
    assert len(STANDARD_TABLE_9_10) == 13 * 19 == len(CELLS)
    assert set(STANDARD_TABLE_9_10) == set(CELLS)
    used = {a for a in STANDARD_TABLE_9_10.values() if a}
    assert used == set(STANDARD_NEXT_STATE), "every action of Tables 9-6..9-9 is used"


def test_enums_name_the_standard_states_events_and_actions() -> None:
    assert [s.value for s in State] == STATE_NAMES
    assert [e.value for e in Event] == EVENT_NAMES
    assert {a.value for a in Action} == set(STANDARD_NEXT_STATE)
    assert len(Action) == 28


@pytest.mark.parametrize(("state", "event"), CELLS, ids=[f"{s}-{e}" for s, e in CELLS])
def test_cell_matches_table_9_10(state: str, event: str) -> None:
    expected = STANDARD_TABLE_9_10[(state, event)]
    action = TRANSITIONS.get((State(state), Event(event)))
    assert (action.value if action else "") == expected
    row_action = TABLE_9_10[Event(event)].get(State(state))
    assert (row_action.value if row_action else "") == expected


def test_transitions_has_exactly_the_filled_cells() -> None:
    filled = {(State(s), Event(e)) for (s, e), a in STANDARD_TABLE_9_10.items() if a}
    assert set(TRANSITIONS) == filled
    assert sum(len(row) for row in TABLE_9_10.values()) == len(filled)
    assert set(TABLE_9_10) == set(Event)


@pytest.mark.parametrize("action", sorted(STANDARD_NEXT_STATE))
def test_next_state_matches_tables_9_6_to_9_9(action: str) -> None:
    expected = STANDARD_NEXT_STATE[action]
    actual = NEXT_STATE[Action(action)]
    if isinstance(expected, tuple):
        assert actual is None, f"{action} chooses its next state at run time"
    else:
        assert actual is State(expected)


def test_every_received_pdu_event_is_defined_wherever_a_transport_exists() -> None:
    """The fsm module's claim: an empty cell is never reachable from the network."""
    with_transport = [s for s in STATE_NAMES if s not in ("Sta1", "Sta4")]
    pdu_events = ["Evt3", "Evt4", "Evt6", "Evt10", "Evt12", "Evt13", "Evt16", "Evt19"]
    for event in [*pdu_events, "Evt17"]:
        for state in with_transport:
            assert STANDARD_TABLE_9_10[(state, event)], (state, event)
            assert (State(state), Event(event)) in TRANSITIONS
    for event in pdu_events:
        for state in ("Sta1", "Sta4"):
            assert (State(state), Event(event)) not in TRANSITIONS


def test_artim_is_only_expected_to_expire_in_sta2_and_sta13() -> None:
    states = {s for s in STATE_NAMES if STANDARD_TABLE_9_10[(s, "Evt18")]}
    assert states == {"Sta2", "Sta13"}
    assert {s.value for (s, e) in TRANSITIONS if e is Event.EVT18} == states
