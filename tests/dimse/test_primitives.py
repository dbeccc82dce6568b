"""Typed DIMSE primitives (PS3.7 §9.1-9.3, §10.1-10.3): round trips, bytes, responses.

Every class goes through to_command -> encode_command -> decode_command -> parse and comes
back equal; a few are checked against command sets written out by hand from the PS3.7
tables (element by element, Implicit VR Little Endian, group 0000).
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from dicomwire.dimse.commands import (
    CommandError,
    CommandField,
    Tag,
    decode_command,
    encode_command,
    validate_command,
)
from dicomwire.dimse.datasets import build_dataset, decode_dataset, encode_identifier
from dicomwire.dimse.primitives import (
    REQUEST_CLASSES,
    RESPONSE_CLASSES,
    CCancelRQ,
    CEchoRQ,
    CEchoRSP,
    CFindRQ,
    CFindRSP,
    CGetRQ,
    CGetRSP,
    CMoveRQ,
    CMoveRSP,
    CStoreRQ,
    CStoreRSP,
    DimseMessage,
    DimseRequest,
    NActionRQ,
    NActionRSP,
    NCreateRQ,
    NCreateRSP,
    NDeleteRQ,
    NDeleteRSP,
    NEventReportRQ,
    NEventReportRSP,
    NGetRQ,
    NGetRSP,
    NSetRQ,
    NSetRSP,
    Priority,
    parse,
    response_command,
)
from dicomwire.dimse.status import (
    PENDING,
    SUBOPS_WARNING,
    SUCCESS,
    Category,
    ServiceClass,
    Status,
)
from dicomwire.errors import ValidationError

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
MPPS = "1.2.840.10008.3.1.2.3.3"
COMMITMENT = "1.2.840.10008.1.20.1"
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
PRINTER = "1.2.840.10008.5.1.1.16"
PRINTER_INSTANCE = "1.2.840.10008.5.1.1.17"
FILM_SESSION = "1.2.840.10008.5.1.1.1"
INSTANCE = "1.2.826.0.1.3680043.2.1125.1.42"
IMPLICIT = "1.2.840.10008.1.2"

#: One populated instance of every class (every optional field set somewhere).
EXAMPLES: list[DimseMessage] = [
    CEchoRQ(message_id=1),
    CEchoRSP(SUCCESS, VERIFICATION, message_id=1),
    CStoreRQ(
        CT_IMAGE,
        INSTANCE,
        Priority.HIGH,
        "MOVESCU",
        77,
        message_id=2,
        dataset=b"\x08\x00\x16\x00\x00\x00\x00\x00",
    ),
    CStoreRSP(Status(0xB007), CT_IMAGE, INSTANCE, message_id=2, error_comment="coerced"),
    CFindRQ(
        STUDY_ROOT_FIND, Priority.LOW, message_id=3, dataset=b"\x10\x00\x20\x00\x00\x00\x00\x00"
    ),
    CFindRSP(PENDING, STUDY_ROOT_FIND, message_id=3, dataset=b"\x10\x00\x20\x00\x02\x00\x00\x00X "),
    CGetRQ(STUDY_ROOT_GET, message_id=4, dataset=b"\x10\x00\x20\x00\x00\x00\x00\x00"),
    CGetRSP(PENDING, STUDY_ROOT_GET, 3, 5, 1, 0, message_id=4),
    CMoveRQ(STUDY_ROOT_MOVE, "STORESCP", message_id=5, dataset=b"\x10\x00\x20\x00\x00\x00\x00\x00"),
    CMoveRSP(
        SUBOPS_WARNING, STUDY_ROOT_MOVE, None, 9, 1, 0, message_id=5, offending_element=[0x00100020]
    ),
    CCancelRQ(message_id=5),
    NEventReportRQ(COMMITMENT, COMMITMENT_INSTANCE, 1, message_id=6, dataset=b"\x08\x00\x50\x00"),
    NEventReportRSP(SUCCESS, COMMITMENT, COMMITMENT_INSTANCE, 1, message_id=6),
    NGetRQ(PRINTER, PRINTER_INSTANCE, [0x21100010, 0x21100020], message_id=7),
    NGetRSP(SUCCESS, PRINTER, PRINTER_INSTANCE, message_id=7, dataset=b"\x10\x21\x10\x00"),
    NSetRQ(MPPS, INSTANCE, message_id=8, dataset=b"\x40\x00\x52\x02\x00\x00\x00\x00"),
    NSetRSP(Status(0x0110), MPPS, INSTANCE, message_id=8, error_id=0xA710),
    NActionRQ(COMMITMENT, COMMITMENT_INSTANCE, 1, message_id=9, dataset=b"\x08\x00\x50\x00"),
    NActionRSP(SUCCESS, COMMITMENT, COMMITMENT_INSTANCE, 1, message_id=9),
    NCreateRQ(FILM_SESSION, message_id=10, dataset=b"\x00\x20\x10\x00\x02\x00\x00\x001 "),
    NCreateRSP(SUCCESS, FILM_SESSION, INSTANCE, message_id=10),
    NDeleteRQ(FILM_SESSION, INSTANCE, message_id=11),
    NDeleteRSP(SUCCESS, FILM_SESSION, INSTANCE, message_id=11),
]


def test_every_command_field_has_one_class_and_one_example() -> None:
    fields = set(REQUEST_CLASSES) | set(RESPONSE_CLASSES)
    assert fields == set(CommandField)
    assert {type(example) for example in EXAMPLES} == {
        *REQUEST_CLASSES.values(),
        *RESPONSE_CLASSES.values(),
    }


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_through_the_wire_encoding(message: DimseMessage) -> None:
    command = message.to_command()
    validate_command(command)  # what to_command builds is a valid command set
    decoded = decode_command(encode_command(command))
    back = parse(decoded, message.dataset)
    assert type(back) is type(message)
    assert back == message
    assert back.to_command() == command  # the group length is recomputed, not kept


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHL", 0x0000, element, len(value)) + value


def _command_bytes(*elements: bytes) -> bytes:
    body = b"".join(elements)
    return _element(0x0000, struct.pack("<L", len(body))) + body


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


#: Command sets written out by hand from PS3.7 Tables 9.3-12, 9.3-1, 9.3-6 and 10.3-7.
BY_HAND: list[tuple[DimseMessage, bytes]] = [
    (
        CEchoRQ(message_id=1),
        _command_bytes(
            _element(0x0002, b"1.2.840.10008.1.1\x00"),
            _element(0x0100, _us(0x0030)),
            _element(0x0110, _us(1)),
            _element(0x0800, _us(0x0101)),
        ),
    ),
    (
        CStoreRQ("1.2.3", "1.2.3.4", Priority.LOW, message_id=0x1234, dataset=b""),
        _command_bytes(
            _element(0x0002, b"1.2.3\x00"),
            _element(0x0100, _us(0x0001)),
            _element(0x0110, _us(0x1234)),
            _element(0x0700, _us(0x0002)),
            _element(0x0800, _us(0x0000)),
            _element(0x1000, b"1.2.3.4\x00"),
        ),
    ),
    (
        CGetRSP(PENDING, "1.2.3", 3, 5, 1, 0, message_id=9),
        _command_bytes(
            _element(0x0002, b"1.2.3\x00"),
            _element(0x0100, _us(0x8010)),
            _element(0x0120, _us(9)),
            _element(0x0800, _us(0x0101)),
            _element(0x0900, _us(0xFF00)),
            _element(0x1020, _us(3)),
            _element(0x1021, _us(5)),
            _element(0x1022, _us(1)),
            _element(0x1023, _us(0)),
        ),
    ),
    (
        NActionRQ("1.2.840.10008.1.20.1", "1.2.840.10008.1.20.1.1", 1, message_id=2, dataset=b""),
        _command_bytes(
            _element(0x0003, b"1.2.840.10008.1.20.1"),
            _element(0x0100, _us(0x0130)),
            _element(0x0110, _us(2)),
            _element(0x0800, _us(0x0000)),
            _element(0x1001, b"1.2.840.10008.1.20.1.1"),
            _element(0x1008, _us(1)),
        ),
    ),
    (
        CCancelRQ(message_id=7),
        _command_bytes(
            _element(0x0100, _us(0x0FFF)),
            _element(0x0120, _us(7)),
            _element(0x0800, _us(0x0101)),
        ),
    ),
]


@pytest.mark.parametrize(("message", "expected"), BY_HAND, ids=lambda m: type(m).__name__)
def test_encodes_to_the_bytes_of_the_standard(message: DimseMessage, expected: bytes) -> None:
    assert encode_command(message.to_command()) == expected
    assert parse(decode_command(expected), message.dataset) == message


def test_to_command_gives_the_elements_of_the_table() -> None:
    command = CMoveRQ(
        STUDY_ROOT_MOVE, "DEST", Priority.HIGH, message_id=3, dataset=b""
    ).to_command()
    assert command == {
        Tag.CommandField: 0x0021,
        Tag.MessageID: 3,
        Tag.CommandDataSetType: 0x0000,
        Tag.AffectedSOPClassUID: STUDY_ROOT_MOVE,
        Tag.MoveDestination: "DEST",
        Tag.Priority: 1,
    }
    assert all(type(value) is not Priority for value in command.values())
    # None-valued optional fields are left out; no data set: 0101
    assert CFindRSP(SUCCESS, message_id=3).to_command() == {
        Tag.CommandField: 0x8020,
        Tag.MessageIDBeingRespondedTo: 3,
        Tag.CommandDataSetType: 0x0101,
        Tag.Status: 0,
    }


def test_from_command_is_lenient_and_typed() -> None:
    rsp = parse({Tag.CommandField: 0x8001, Tag.MessageIDBeingRespondedTo: 4, Tag.Status: 0xA700})
    assert isinstance(rsp, CStoreRSP)
    assert rsp.status == 0xA700 and isinstance(rsp.status, Status)
    assert rsp.status.category is Category.FAILURE
    assert rsp.affected_sop_class_uid is None and rsp.affected_sop_instance_uid is None
    rq = parse({Tag.CommandField: 0x0020, Tag.MessageID: 1, Tag.Priority: 1})
    assert isinstance(rq, CFindRQ) and rq.priority is Priority.HIGH
    # a required element missing: no error here (validate_command is the validator)
    assert rq.affected_sop_class_uid == ""


def test_parse_rejects_unknown_command_fields() -> None:
    with pytest.raises(CommandError, match="0x0042"):
        parse({Tag.CommandField: 0x0042})
    with pytest.raises(CommandError):
        parse({Tag.MessageID: 1})


def test_unknown_and_unmapped_elements_are_kept_and_written_back() -> None:
    command = CEchoRSP(SUCCESS, VERIFICATION, message_id=1).to_command()
    command[0x00001234] = b"\x01\x02"  # not in PS3.7 Annex E
    command[Tag.Priority] = 2  # known element, but no field of C-ECHO-RSP
    raw = encode_command(command)
    echo = parse(decode_command(raw))
    assert echo.extra == {0x00001234: b"\x01\x02", Tag.Priority: 2}
    assert encode_command(echo.to_command()) == raw


def test_response_copies_ids_uids_and_types() -> None:
    store = CStoreRQ(CT_IMAGE, INSTANCE, message_id=41, dataset=b"..")
    answer = store.response(0xB000, error_comment="coerced")
    assert isinstance(answer, CStoreRSP)
    assert (answer.message_id, answer.affected_sop_class_uid) == (41, CT_IMAGE)
    assert answer.affected_sop_instance_uid == INSTANCE
    assert answer.status == 0xB000 and isinstance(answer.status, Status)
    assert answer.dataset is None and answer.error_comment == "coerced"

    echo = CEchoRQ(message_id=2).response()
    assert echo == CEchoRSP(SUCCESS, VERIFICATION, message_id=2)

    action = NActionRQ(COMMITMENT, COMMITMENT_INSTANCE, 1, message_id=3).response()
    assert (action.affected_sop_class_uid, action.affected_sop_instance_uid) == (
        COMMITMENT,
        COMMITMENT_INSTANCE,
    )
    assert action.action_type_id == 1
    report = NEventReportRQ(COMMITMENT, COMMITMENT_INSTANCE, 2, message_id=4).response()
    assert report.event_type_id == 2
    get = NGetRQ(PRINTER, PRINTER_INSTANCE, message_id=5).response(0, b"attrs")
    assert (get.affected_sop_class_uid, get.affected_sop_instance_uid, get.dataset) == (
        PRINTER,
        PRINTER_INSTANCE,
        b"attrs",
    )
    created = NCreateRQ(FILM_SESSION, message_id=6).response(0, affected_sop_instance_uid="1.2")
    assert created.affected_sop_instance_uid == "1.2"

    progress = CMoveRQ(STUDY_ROOT_MOVE, "DEST", message_id=7).response(
        PENDING, remaining=3, completed=5, failed=0, warning=1
    )
    assert isinstance(progress, CMoveRSP)
    assert (progress.remaining, progress.completed, progress.failed, progress.warning) == (
        3,
        5,
        0,
        1,
    )
    assert progress.to_command()[Tag.NumberOfRemainingSuboperations] == 3


@pytest.mark.parametrize(
    "request_",
    [m for m in EXAMPLES if isinstance(m, DimseRequest)],
    ids=lambda m: type(m).__name__,
)
def test_response_command_is_what_response_builds(request_: DimseRequest[Any]) -> None:
    """The performer's shortcut from command set to command set agrees with response()."""
    command = decode_command(encode_command(request_.to_command()))
    for status, dataset in ((0, None), (0xFF00, b"match")):
        expected = parse(command).response(status, dataset).to_command()  # type: ignore[attr-defined]
        assert response_command(command, status, dataset is not None) == expected


def test_response_rejects_fields_the_response_does_not_have() -> None:
    with pytest.raises(TypeError):
        CEchoRQ().response(remaining=3)
    with pytest.raises(TypeError):
        CStoreRQ(CT_IMAGE, INSTANCE).response(0, unknown=1)


@pytest.mark.parametrize(
    ("code", "service", "meaning"),
    [
        (0xB000, ServiceClass.STORAGE, "Warning: coercion of data elements"),
        (
            0xB000,
            ServiceClass.QUERY_RETRIEVE,
            "Sub-operations complete - one or more failures or warnings",
        ),
        (0xB007, "storage", "Warning: data set does not match SOP Class"),
        (0xA7AB, ServiceClass.STORAGE, "Refused: out of resources"),
        (0xC123, CT_IMAGE, "Error: cannot understand"),
        (0xC123, STUDY_ROOT_FIND, "Failed: unable to process"),
        (0xA900, ServiceClass.QUERY_RETRIEVE, "Error: identifier does not match SOP Class"),
        (0xA801, STUDY_ROOT_MOVE, "Refused: move destination unknown"),
        (
            0xFF01,
            ServiceClass.WORKLIST,
            "Pending: matches are continuing - one or more optional keys were not supported",
        ),
        (0xFE00, ServiceClass.WORKLIST, "Matching terminated due to Cancel request"),
        (0xB600, ServiceClass.PRINT, "Warning: memory allocation not supported"),
        (
            0xC616,
            FILM_SESSION,
            "Failure: a film box that has not been printed exists; new one refused",
        ),
        (0xC6AA, ServiceClass.PRINT, "Failure (print management)"),
        (0x0110, ServiceClass.MPPS, "Processing failure"),  # the general N-SET meaning
        (0x0213, "STORAGE_COMMITMENT", "Resource limitation"),
        (0xB600, ServiceClass.STORAGE, "Warning"),
        (0x0000, "not a service", "Success"),
    ],
)
def test_meaning_for_each_service(code: int, service: Any, meaning: str) -> None:
    assert Status(code).meaning_for(service) == meaning


@pytest.mark.parametrize(
    ("uid", "service"),
    [
        (VERIFICATION, ServiceClass.VERIFICATION),
        (CT_IMAGE, ServiceClass.STORAGE),
        ("1.2.840.10008.5.1.4.1.1.481.3", ServiceClass.STORAGE),
        (STUDY_ROOT_FIND, ServiceClass.QUERY_RETRIEVE),
        ("1.2.840.10008.5.1.4.1.2.1.3", ServiceClass.QUERY_RETRIEVE),
        ("1.2.840.10008.5.1.4.31", ServiceClass.WORKLIST),
        (MPPS, ServiceClass.MPPS),
        (COMMITMENT, ServiceClass.STORAGE_COMMITMENT),
        (PRINTER, ServiceClass.PRINT),
        ("1.2.840.10008.5.1.1.9", ServiceClass.PRINT),
        ("1.2.3.4", None),
    ],
)
def test_service_class_of_sop_class(uid: str, service: ServiceClass | None) -> None:
    assert ServiceClass.of_sop_class(uid) is service


@pytest.mark.parametrize(
    ("code", "category"),
    [
        (0x0001, Category.WARNING),
        (0x0107, Category.WARNING),
        (0x0116, Category.WARNING),
        (0xB006, Category.WARNING),
        (0xB60A, Category.WARNING),
        (0xFF00, Category.PENDING),
        (0xFF01, Category.PENDING),
        (0xFE00, Category.CANCEL),
        (0x0000, Category.SUCCESS),
        (0xA801, Category.FAILURE),
        (0xC616, Category.FAILURE),
    ],
)
def test_category_per_annex_c(code: int, category: Category) -> None:
    assert Status(code).category is category


def test_named_status_constants() -> None:
    from dicomwire.dimse import status

    expected = {
        "SUCCESS": 0x0000,
        "PENDING": 0xFF00,
        "PENDING_WARNING": 0xFF01,
        "CANCEL": 0xFE00,
        "PROCESSING_FAILURE": 0x0110,
        "DUPLICATE_INVOCATION": 0x0210,
        "UNRECOGNIZED_OPERATION": 0x0211,
        "CANNOT_UNDERSTAND": 0xC000,
        "OUT_OF_RESOURCES": 0xA700,
        "DATASET_MISMATCH": 0xA900,
        "DUPLICATE_SOP_INSTANCE": 0x0111,
        "NO_SUCH_SOP_INSTANCE": 0x0112,
        "MOVE_DESTINATION_UNKNOWN": 0xA801,
        "SUBOPS_FAILED": 0xA702,
        "SUBOPS_WARNING": 0xB000,
    }
    for name, code in expected.items():
        value = getattr(status, name)
        assert isinstance(value, Status) and value == code, name


def test_build_dataset_and_encode_identifier() -> None:
    query = {
        "QueryRetrieveLevel": "STUDY",
        "PatientID": "123",
        "StudyDate": "",
        "ReferencedSeriesSequence": [{"SeriesInstanceUID": "1.2.3"}],
    }
    dataset = build_dataset(query)
    assert dataset.PatientID == "123" and dataset.StudyDate == ""
    assert dataset.ReferencedSeriesSequence[0].SeriesInstanceUID == "1.2.3"
    assert build_dataset(dataset) is dataset
    raw = encode_identifier(query, IMPLICIT)
    # (0008,0020) StudyDate with no value comes first, in Implicit VR LE
    assert raw.startswith(b"\x08\x00\x20\x00\x00\x00\x00\x00")
    back = decode_dataset(raw, IMPLICIT)
    assert back.QueryRetrieveLevel == "STUDY" and back.PatientID == "123"
    assert back.ReferencedSeriesSequence[0].SeriesInstanceUID == "1.2.3"


def test_build_dataset_names_an_unknown_keyword() -> None:
    with pytest.raises(ValidationError, match="PatientId"):
        build_dataset({"PatientID": "1", "PatientId": "2"})
