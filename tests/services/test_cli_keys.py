"""DCMTK's -k syntax (services.cli.keys) into an identifier."""

from __future__ import annotations

import pytest

from dicomwire.errors import ValidationError
from dicomwire.services.cli.keys import parse_keys


def test_keywords_tags_and_return_keys() -> None:
    ds = parse_keys(
        ["QueryRetrieveLevel=STUDY", "0010,0010=DOE^*", "(0010,0020)", "StudyDate=20200101-"]
    )
    assert ds.QueryRetrieveLevel == "STUDY"
    assert ds.PatientName == "DOE^*"
    assert ds["PatientID"].value in (None, "")  # asked for, empty
    assert ds.StudyDate == "20200101-"


def test_sequence_paths_make_items_and_keep_earlier_keys() -> None:
    ds = parse_keys(
        [
            "(0040,0100)[0].Modality=CT",
            "ScheduledProcedureStepSequence[0].ScheduledStationAETitle=CT1\\CT2",
            "ScheduledProcedureStepSequence.ScheduledProcedureStepStartDate",
            "ReferencedStudySequence",
        ]
    )
    (item,) = ds.ScheduledProcedureStepSequence
    assert item.Modality == "CT"
    assert list(item.ScheduledStationAETitle) == ["CT1", "CT2"]
    assert "ScheduledProcedureStepStartDate" in item
    assert len(ds.ReferencedStudySequence) == 0  # universal sequence matching


def test_numbers_converted() -> None:
    ds = parse_keys(["NumberOfStudyRelatedInstances", "Rows=512"])
    assert ds.Rows == 512


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("NoSuchKeyword=1", "unknown keyword"),
        ("=x", "no key"),
        ("PatientName[0].PatientID=1", "not a sequence"),
        ("Rows=abc", "not a number"),
        ("0009,0010=x", "not in the data dictionary"),
        ("ReferencedStudySequence=x", "takes no value"),
        ("(00x0,0010)=x", "neither a keyword"),
    ],
)
def test_malformed_keys_say_why(spec: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        parse_keys([spec])
