"""Attribute matching, PS3.4 C.2.2.2: each kind of matching, on real pydicom data sets.

The expectations are written from the standard's text, key by key, not from the module.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydicom import Dataset

from dicomwire.errors import InvalidQueryError
from dicomwire.services.matching import MatchKind, compile_query, matches


def dataset(**values: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


PATIENT = dataset(
    PatientName="Doe^John^^^",
    PatientID="PID-17",
    PatientSex="M",
    StudyDate="20261129",
    StudyTime="103015.250000",
    AcquisitionDateTime="20261129103015",
    StudyInstanceUID="1.2.840.99.1",
    ModalitiesInStudy=["CT", "PT"],
    StudyDescription="  HEAD CT  ",
    AccessionNumber="",
)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # C.2.2.2.3 universal: zero length, "*" alone
        ({"PatientID": ""}, True),
        ({"PatientName": "*"}, True),
        ({"AccessionNumber": ""}, True),
        # C.2.2.2.1 single value
        ({"PatientID": "PID-17"}, True),
        ({"PatientID": "PID-1"}, False),
        ({"PatientID": "pid-17"}, False),  # LO is case sensitive
        ({"PatientSex": "M"}, True),
        ({"StudyDescription": "HEAD CT"}, True),  # leading/trailing spaces not significant
        ({"PatientName": "DOE^JOHN"}, True),  # PN: case and trailing empty components ignored
        ({"PatientName": "Doe^Jane"}, False),
        ({"StudyDate": "20261129"}, True),
        ({"StudyDate": "20261128"}, False),
        ({"StudyTime": "10"}, True),  # a time given to the hour names the whole hour
        ({"StudyTime": "1030"}, True),
        ({"StudyTime": "1031"}, False),
        ({"AcquisitionDateTime": "20261129"}, True),  # DT to the day: the whole day
        # empty value matching: "" matches absent or empty values only
        ({"AccessionNumber": '""'}, True),
        ({"PatientID": '""'}, False),
        ({"ReferringPhysicianName": '""'}, True),
        # C.2.2.2.4 wild card
        ({"PatientName": "doe*"}, True),
        ({"PatientName": "D?E^J*"}, True),
        ({"PatientName": "D?E^Jane*"}, False),
        ({"PatientID": "PID-?"}, False),
        ({"PatientID": "PID-??"}, True),
        ({"PatientID": "*-17"}, True),
        ({"StudyDescription": "*CT"}, True),
        # multi-valued candidate: any value
        ({"ModalitiesInStudy": "PT"}, True),
        ({"ModalitiesInStudy": "MR"}, False),
        ({"ModalitiesInStudy": "P*"}, True),
        # C.2.2.2.5 range, bounds included, open ends
        ({"StudyDate": "20261101-20261130"}, True),
        ({"StudyDate": "20261129-20261129"}, True),
        ({"StudyDate": "20261130-"}, False),
        ({"StudyDate": "-20261129"}, True),
        ({"StudyDate": "-20261128"}, False),
        ({"StudyTime": "1000-1030"}, True),  # 10:30 as an upper bound includes 10:30:15
        ({"StudyTime": "1031-"}, False),
        ({"AcquisitionDateTime": "20261129100000-20261129110000"}, True),
        ({"AcquisitionDateTime": "20261130-"}, False),
        # C.2.2.2.2 list of UIDs
        ({"StudyInstanceUID": ["1.2.3", "1.2.840.99.1"]}, True),
        ({"StudyInstanceUID": ["1.2.3", "1.2.4"]}, False),
        ({"StudyInstanceUID": "1.2.840.99.1"}, True),
        # every key must match
        ({"PatientID": "PID-17", "StudyDate": "20261128"}, False),
        ({"PatientID": "PID-17", "StudyDate": "2026*"}, None),  # wildcard on DA: malformed
        # PS3.5 Table 6.2-1: digit counts are not enough, each field must be in range
        ({"StudyDate": "20261345"}, None),
        ({"StudyDate": "20260230-"}, None),  # no 30 February
        ({"StudyDate": "20240229"}, False),  # a leap day exists
        ({"StudyTime": "25"}, None),
        ({"StudyTime": "1060-"}, None),
        ({"StudyTime": "235960"}, False),  # a leap second is a valid TM
        ({"AcquisitionDateTime": "202613-"}, None),
        ({"AcquisitionDateTime": "2026112924-"}, None),
        ({"AcquisitionDateTime": "2026-"}, True),
    ],
)
def test_each_kind_of_matching(query: dict[str, Any], expected: bool | None) -> None:
    identifier = dataset(**query)
    if expected is None:
        with pytest.raises(InvalidQueryError) as caught:
            compile_query(identifier)
        assert caught.value.status == 0xA900
        return
    assert matches(identifier, PATIENT) is expected


def test_a_missing_attribute_matches_only_universally() -> None:
    empty = Dataset()
    assert matches(dataset(PatientID=""), empty)
    assert not matches(dataset(PatientID="X"), empty)
    assert not matches(dataset(StudyDate="20260101-"), empty)


def test_pn_case_sensitivity_can_be_asked_for() -> None:
    query = dataset(PatientName="DOE^JOHN")
    assert matches(query, PATIENT)
    assert not matches(query, PATIENT, case_insensitive_names=False)
    assert matches(dataset(PatientName="Doe^John"), PATIENT, case_insensitive_names=False)


def step(modality: str, station: str, date: str) -> Dataset:
    return dataset(
        Modality=modality,
        ScheduledStationAETitle=station,
        ScheduledProcedureStepStartDate=date,
    )


def test_sequence_matching_any_item_matches_all_keys_of_the_query_item() -> None:
    entry = dataset(
        PatientID="W-1",
        ScheduledProcedureStepSequence=[
            step("MR", "MR1", "20261129"),
            step("CT", "CT1", "20261130"),
        ],
    )
    wanted = dataset(ScheduledProcedureStepSequence=[step("CT", "CT*", "20261130")])
    assert matches(wanted, entry)
    # keys satisfied by different items are not a match: one item must satisfy them all
    mixed = dataset(ScheduledProcedureStepSequence=[step("CT", "MR1", "")])
    assert not matches(mixed, entry)
    # an empty query sequence, or an item of universal keys, is a return key only
    assert matches(dataset(ScheduledProcedureStepSequence=[]), Dataset())
    universal = dataset(ScheduledProcedureStepSequence=[step("", "", "")])
    assert compile_query(universal).keys[0].kind is MatchKind.UNIVERSAL
    assert not matches(wanted, dataset(PatientID="W-2"))


def test_a_sequence_key_with_two_items_is_malformed() -> None:
    query = dataset(ScheduledProcedureStepSequence=[step("CT", "", ""), step("MR", "", "")])
    with pytest.raises(InvalidQueryError, match="one item"):
        compile_query(query)


@pytest.mark.parametrize(
    "query",
    [
        {"StudyDate": "2026-11-29"},
        {"StudyDate": "-"},
        {"StudyTime": "25x"},
        {"StudyDate": "202611"},
        {"PatientID": ["A", "B"]},
    ],
)
def test_malformed_identifiers_are_a900(query: dict[str, Any]) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        compile_query(dataset(**query))
    assert caught.value.status == 0xA900 and caught.value.permanent


def test_query_level_and_character_set_are_not_keys() -> None:
    query = compile_query(
        dataset(
            QueryRetrieveLevel="STUDY",
            SpecificCharacterSet="ISO_IR 100",
            PatientID="PID-17",
            StudyInstanceUID="",
        )
    )
    assert [k.kind for k in query.keys] == [MatchKind.SINGLE, MatchKind.UNIVERSAL]
    assert query.return_tags == (0x00100020, 0x0020000D)
    assert [k.tag for k in query.matching_keys] == [0x00100020]
    assert list(query.filter([PATIENT, dataset(PatientID="other")])) == [PATIENT]


def test_latin1_names_match_case_insensitively() -> None:
    entry = dataset(SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Jürgen")
    assert matches(dataset(PatientName="MÜLLER^*"), entry)
    assert matches(dataset(PatientName="müller^jürgen"), entry)
