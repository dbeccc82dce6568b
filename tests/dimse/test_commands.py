"""Command set codec: PS3.7 §6.3.1 (group 0000, Implicit VR Little Endian), §9.3, §10.3, Annex E.

Every request and response type round-trips with its required elements; four command sets
are checked against bytes written out by hand; unknown elements survive decode/encode byte
for byte; malformed command sets raise :class:`CommandError` saying what is wrong.
"""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pydicom.filereader import read_dataset

from dicomwire.dimse.commands import (
    COMMAND_ELEMENTS,
    DATASET_FORBIDDEN,
    DATASET_REQUIRED,
    REQUIRED_ELEMENTS,
    CommandError,
    CommandField,
    CommandSet,
    DataSetType,
    Tag,
    decode_command,
    encode_command,
    validate_command,
)
from dicomwire.errors import DicomWireError
from dicomwire.ul.identifiers import WireStr

CF = CommandField
T = Tag
PRESENT = DataSetType.PRESENT
ABSENT = DataSetType.ABSENT

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
MPPS = "1.2.840.10008.3.1.2.3.3"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
PRINTER = "1.2.840.10008.5.1.1.16"
PRINTER_INSTANCE = "1.2.840.10008.5.1.1.17"
FILM_SESSION = "1.2.840.10008.5.1.1.1"
INSTANCE = "1.2.826.0.1.3680043.2.1125.1.42"  # odd length: padded with NUL


def _rq(field: int, **elements: object) -> CommandSet:
    return {T.CommandField: field, T.MessageID: 17, **{T[k]: v for k, v in elements.items()}}


def _rsp(field: int, status: int, **elements: object) -> CommandSet:
    return {
        T.CommandField: field,
        T.MessageIDBeingRespondedTo: 17,
        T.Status: status,
        **{T[k]: v for k, v in elements.items()},
    }


#: One fully populated command set per message type: the M elements of PS3.7 Tables
#: 9.3-1..9.3-13 and 10.3-1..10.3-12, plus the usual U/C ones.
MESSAGES: dict[CommandField, CommandSet] = {
    CF.C_STORE_RQ: _rq(
        CF.C_STORE_RQ,
        AffectedSOPClassUID=CT_IMAGE,
        Priority=2,
        CommandDataSetType=PRESENT,
        AffectedSOPInstanceUID=INSTANCE,
        MoveOriginatorApplicationEntityTitle="MOVE-SCU",
        MoveOriginatorMessageID=99,
    ),
    CF.C_STORE_RSP: _rsp(
        CF.C_STORE_RSP,
        0xB007,
        AffectedSOPClassUID=CT_IMAGE,
        CommandDataSetType=ABSENT,
        AffectedSOPInstanceUID=INSTANCE,
        OffendingElement=[0x00100010, 0x00100020],
        ErrorComment="coerced",
    ),
    CF.C_FIND_RQ: _rq(
        CF.C_FIND_RQ, AffectedSOPClassUID=PATIENT_ROOT_FIND, Priority=0, CommandDataSetType=PRESENT
    ),
    CF.C_FIND_RSP: _rsp(
        CF.C_FIND_RSP, 0xFF00, AffectedSOPClassUID=PATIENT_ROOT_FIND, CommandDataSetType=PRESENT
    ),
    CF.C_GET_RQ: _rq(
        CF.C_GET_RQ, AffectedSOPClassUID=PATIENT_ROOT_GET, Priority=1, CommandDataSetType=PRESENT
    ),
    CF.C_GET_RSP: _rsp(
        CF.C_GET_RSP,
        0xFF00,
        AffectedSOPClassUID=PATIENT_ROOT_GET,
        CommandDataSetType=ABSENT,
        NumberOfRemainingSuboperations=5,
        NumberOfCompletedSuboperations=3,
        NumberOfFailedSuboperations=1,
        NumberOfWarningSuboperations=0,
    ),
    CF.C_MOVE_RQ: _rq(
        CF.C_MOVE_RQ,
        AffectedSOPClassUID=PATIENT_ROOT_MOVE,
        Priority=0,
        CommandDataSetType=PRESENT,
        MoveDestination="STORE-SCP",
    ),
    CF.C_MOVE_RSP: _rsp(
        CF.C_MOVE_RSP,
        0xB000,
        AffectedSOPClassUID=PATIENT_ROOT_MOVE,
        CommandDataSetType=PRESENT,  # the Failed SOP Instance UID List
        NumberOfCompletedSuboperations=8,
        NumberOfFailedSuboperations=1,
        NumberOfWarningSuboperations=1,
    ),
    CF.C_ECHO_RQ: _rq(CF.C_ECHO_RQ, AffectedSOPClassUID=VERIFICATION, CommandDataSetType=ABSENT),
    CF.C_ECHO_RSP: _rsp(
        CF.C_ECHO_RSP, 0x0000, AffectedSOPClassUID=VERIFICATION, CommandDataSetType=ABSENT
    ),
    CF.C_CANCEL_RQ: {
        T.CommandField: CF.C_CANCEL_RQ,
        T.MessageIDBeingRespondedTo: 17,
        T.CommandDataSetType: ABSENT,
    },
    CF.N_EVENT_REPORT_RQ: _rq(
        CF.N_EVENT_REPORT_RQ,
        AffectedSOPClassUID=STORAGE_COMMITMENT,
        AffectedSOPInstanceUID=STORAGE_COMMITMENT_INSTANCE,
        EventTypeID=2,
        CommandDataSetType=PRESENT,
    ),
    CF.N_EVENT_REPORT_RSP: _rsp(
        CF.N_EVENT_REPORT_RSP,
        0x0000,
        AffectedSOPClassUID=STORAGE_COMMITMENT,
        AffectedSOPInstanceUID=STORAGE_COMMITMENT_INSTANCE,
        EventTypeID=2,
        CommandDataSetType=ABSENT,
    ),
    CF.N_GET_RQ: _rq(
        CF.N_GET_RQ,
        RequestedSOPClassUID=PRINTER,
        RequestedSOPInstanceUID=PRINTER_INSTANCE,
        AttributeIdentifierList=[0x21100010, 0x21100020],
        CommandDataSetType=ABSENT,
    ),
    CF.N_GET_RSP: _rsp(
        CF.N_GET_RSP,
        0x0001,
        AffectedSOPClassUID=PRINTER,
        AffectedSOPInstanceUID=PRINTER_INSTANCE,
        CommandDataSetType=PRESENT,
    ),
    CF.N_SET_RQ: _rq(
        CF.N_SET_RQ,
        RequestedSOPClassUID=MPPS,
        RequestedSOPInstanceUID=INSTANCE,
        CommandDataSetType=PRESENT,
    ),
    CF.N_SET_RSP: _rsp(
        CF.N_SET_RSP,
        0x0116,
        AffectedSOPClassUID=MPPS,
        AffectedSOPInstanceUID=INSTANCE,
        AttributeIdentifierList=[0x00400252],
        CommandDataSetType=ABSENT,
    ),
    CF.N_ACTION_RQ: _rq(
        CF.N_ACTION_RQ,
        RequestedSOPClassUID=STORAGE_COMMITMENT,
        RequestedSOPInstanceUID=STORAGE_COMMITMENT_INSTANCE,
        ActionTypeID=1,
        CommandDataSetType=PRESENT,
    ),
    CF.N_ACTION_RSP: _rsp(
        CF.N_ACTION_RSP,
        0x0000,
        AffectedSOPClassUID=STORAGE_COMMITMENT,
        AffectedSOPInstanceUID=STORAGE_COMMITMENT_INSTANCE,
        ActionTypeID=1,
        CommandDataSetType=ABSENT,
    ),
    CF.N_CREATE_RQ: _rq(
        CF.N_CREATE_RQ,
        AffectedSOPClassUID=FILM_SESSION,
        AffectedSOPInstanceUID=INSTANCE,
        CommandDataSetType=PRESENT,
    ),
    CF.N_CREATE_RSP: _rsp(
        CF.N_CREATE_RSP,
        0x0000,
        AffectedSOPClassUID=FILM_SESSION,
        AffectedSOPInstanceUID=INSTANCE,
        CommandDataSetType=PRESENT,
    ),
    CF.N_DELETE_RQ: _rq(
        CF.N_DELETE_RQ,
        RequestedSOPClassUID=FILM_SESSION,
        RequestedSOPInstanceUID=INSTANCE,
        CommandDataSetType=ABSENT,
    ),
    CF.N_DELETE_RSP: _rsp(
        CF.N_DELETE_RSP,
        0x0112,
        AffectedSOPClassUID=FILM_SESSION,
        AffectedSOPInstanceUID=INSTANCE,
        ErrorComment="no such film session",
        CommandDataSetType=ABSENT,
    ),
}

ALL_FIELDS = sorted(MESSAGES)


def _elements(encoded: bytes) -> list[tuple[int, bytes]]:
    """(tag, value) of each element, read independently of the code under test."""
    out = []
    pos = 0
    while pos < len(encoded):
        group, element, length = struct.unpack_from("<HHL", encoded, pos)
        out.append(((group << 16) | element, encoded[pos + 8 : pos + 8 + length]))
        pos += 8 + length
    assert pos == len(encoded)
    return out


# --------------------------------------------------------------------------- round trips


def test_every_message_type_is_covered() -> None:
    assert set(MESSAGES) == set(CommandField) == set(REQUIRED_ELEMENTS)
    for field, command in MESSAGES.items():
        assert command[T.CommandField] == field
        assert set(REQUIRED_ELEMENTS[field]) <= set(command), field.name


@pytest.mark.parametrize("field", ALL_FIELDS, ids=lambda f: CommandField(f).name)
def test_round_trip_every_message_type(field: CommandField) -> None:
    command = MESSAGES[field]
    validate_command(command)
    encoded = encode_command(command)

    elements = _elements(encoded)
    tags = [tag for tag, _ in elements]
    # Command Group Length first, UL, counting every byte after its own element
    assert tags[0] == T.CommandGroupLength
    assert elements[0][1] == struct.pack("<L", len(encoded) - 12)
    assert tags == sorted(tags) and len(set(tags)) == len(tags)
    assert set(tags) == {T.CommandGroupLength, *command}
    assert all(len(value) % 2 == 0 for _, value in elements)

    decoded = decode_command(encoded)
    assert decoded == {T.CommandGroupLength: len(encoded) - 12, **command}
    validate_command(decoded)
    assert encode_command(decoded) == encoded

    # pydicom, an independent Implicit VR LE reader, sees the same values
    ds = read_dataset(BytesIO(encoded), is_implicit_VR=True, is_little_endian=True)
    assert int(ds.CommandGroupLength) == len(encoded) - 12
    assert int(ds.CommandField) == field
    for tag, value in command.items():
        element = ds[tag]
        assert COMMAND_ELEMENTS[tag] == element.VR, T(tag).name
        if isinstance(value, list):
            got = element.value if element.VM > 1 else [element.value]
            assert [int(t) for t in got] == value
        elif isinstance(value, str):
            assert str(element.value).strip() == value
        else:
            assert element.value == value


# --------------------------------------------------------------------------- hand-made bytes
# Each element: group and element numbers (16-bit LE each), value length (32-bit LE), value;
# UIDs padded to even length with NUL, AE/LO with a space (PS3.5 §6.2, PS3.7 §6.3.1).

C_ECHO_RQ = {
    T.CommandField: CF.C_ECHO_RQ,
    T.MessageID: 1,
    T.CommandDataSetType: ABSENT,
    T.AffectedSOPClassUID: VERIFICATION,
}
C_ECHO_RQ_BYTES = b"".join(
    [
        bytes.fromhex("0000 0000 04000000 38000000"),  # (0000,0000) UL 56
        bytes.fromhex("0000 0200 12000000") + b"1.2.840.10008.1.1\x00",  # (0000,0002) UI, NUL pad
        bytes.fromhex("0000 0001 02000000 3000"),  # (0000,0100) US 0030H
        bytes.fromhex("0000 1001 02000000 0100"),  # (0000,0110) US 1
        bytes.fromhex("0000 0008 02000000 0101"),  # (0000,0800) US 0101H
    ]
)

C_STORE_RQ = {
    T.CommandField: CF.C_STORE_RQ,
    T.MessageID: 7,
    T.Priority: 0,
    T.CommandDataSetType: PRESENT,
    T.AffectedSOPClassUID: CT_IMAGE,
    T.AffectedSOPInstanceUID: "1.2.3.4.5",
    T.MoveOriginatorApplicationEntityTitle: "MOVESCU",
    T.MoveOriginatorMessageID: 3,
}
C_STORE_RQ_BYTES = b"".join(
    [
        bytes.fromhex("0000 0000 04000000 76000000"),  # (0000,0000) UL 118
        bytes.fromhex("0000 0200 1a000000") + b"1.2.840.10008.5.1.4.1.1.2\x00",  # (0000,0002) UI
        bytes.fromhex("0000 0001 02000000 0100"),  # (0000,0100) US 0001H
        bytes.fromhex("0000 1001 02000000 0700"),  # (0000,0110) US 7
        bytes.fromhex("0000 0007 02000000 0000"),  # (0000,0700) US 0 (medium)
        bytes.fromhex("0000 0008 02000000 0000"),  # (0000,0800) US 0000H
        bytes.fromhex("0000 0010 0a000000") + b"1.2.3.4.5\x00",  # (0000,1000) UI, NUL pad
        bytes.fromhex("0000 3010 08000000") + b"MOVESCU ",  # (0000,1030) AE, space pad
        bytes.fromhex("0000 3110 02000000 0300"),  # (0000,1031) US 3
    ]
)

C_FIND_RSP = {
    T.CommandField: CF.C_FIND_RSP,
    T.MessageIDBeingRespondedTo: 5,
    T.CommandDataSetType: ABSENT,
    T.Status: 0xA900,
    T.AffectedSOPClassUID: PATIENT_ROOT_FIND,
    T.OffendingElement: [0x00100010],
    T.ErrorComment: "Bad key",
}
C_FIND_RSP_BYTES = b"".join(
    [
        bytes.fromhex("0000 0000 04000000 68000000"),  # (0000,0000) UL 104
        bytes.fromhex("0000 0200 1c000000") + b"1.2.840.10008.5.1.4.1.2.1.1\x00",  # (0000,0002)
        bytes.fromhex("0000 0001 02000000 2080"),  # (0000,0100) US 8020H
        bytes.fromhex("0000 2001 02000000 0500"),  # (0000,0120) US 5
        bytes.fromhex("0000 0008 02000000 0101"),  # (0000,0800) US 0101H
        bytes.fromhex("0000 0009 02000000 00a9"),  # (0000,0900) US A900H
        bytes.fromhex("0000 0109 04000000 10001000"),  # (0000,0901) AT (0010,0010)
        bytes.fromhex("0000 0209 08000000") + b"Bad key ",  # (0000,0902) LO, space pad
    ]
)

N_ACTION_RQ = {
    T.CommandField: CF.N_ACTION_RQ,
    T.MessageID: 0x1234,
    T.CommandDataSetType: PRESENT,
    T.RequestedSOPClassUID: STORAGE_COMMITMENT,
    T.RequestedSOPInstanceUID: STORAGE_COMMITMENT_INSTANCE,
    T.ActionTypeID: 1,
}
N_ACTION_RQ_BYTES = b"".join(
    [
        bytes.fromhex("0000 0000 04000000 62000000"),  # (0000,0000) UL 98
        bytes.fromhex("0000 0300 14000000") + b"1.2.840.10008.1.20.1",  # (0000,0003) UI, even
        bytes.fromhex("0000 0001 02000000 3001"),  # (0000,0100) US 0130H
        bytes.fromhex("0000 1001 02000000 3412"),  # (0000,0110) US 1234H
        bytes.fromhex("0000 0008 02000000 0000"),  # (0000,0800) US 0000H
        bytes.fromhex("0000 0110 16000000") + b"1.2.840.10008.1.20.1.1",  # (0000,1001) UI
        bytes.fromhex("0000 0810 02000000 0100"),  # (0000,1008) US 1
    ]
)

HAND_MADE = [
    pytest.param(C_ECHO_RQ, C_ECHO_RQ_BYTES, id="C-ECHO-RQ"),
    pytest.param(C_STORE_RQ, C_STORE_RQ_BYTES, id="C-STORE-RQ"),
    pytest.param(C_FIND_RSP, C_FIND_RSP_BYTES, id="C-FIND-RSP"),
    pytest.param(N_ACTION_RQ, N_ACTION_RQ_BYTES, id="N-ACTION-RQ"),
]


@pytest.mark.parametrize(("command", "expected"), HAND_MADE)
def test_encoding_matches_hand_computed_bytes(command: CommandSet, expected: bytes) -> None:
    validate_command(command)
    assert encode_command(command) == expected


@pytest.mark.parametrize(("command", "expected"), HAND_MADE)
def test_decoding_hand_computed_bytes(command: CommandSet, expected: bytes) -> None:
    decoded = decode_command(expected)
    assert decoded == {T.CommandGroupLength: len(expected) - 12, **command}
    # padding is not part of the values
    for tag in (T.AffectedSOPClassUID, T.AffectedSOPInstanceUID, T.ErrorComment):
        if tag in decoded:
            assert not str(decoded[tag]).endswith(("\x00", " "))
    assert encode_command(decoded) == expected


def test_command_group_length_given_by_the_caller_is_recomputed() -> None:
    assert encode_command({**C_ECHO_RQ, T.CommandGroupLength: 9999}) == C_ECHO_RQ_BYTES


def test_received_uid_padding_is_kept_on_reencode() -> None:
    # A peer pads the UID with a space instead of NUL: the value is the bare UID, and the
    # command set re-encodes exactly as received.
    raw = C_ECHO_RQ_BYTES.replace(b"1.2.840.10008.1.1\x00", b"1.2.840.10008.1.1 ")
    decoded = decode_command(raw)
    assert decoded[T.AffectedSOPClassUID] == VERIFICATION
    validate_command(decoded)
    assert encode_command(decoded) == raw


# --------------------------------------------------------------------------- unknown elements

UNKNOWN_0005 = bytes.fromhex("0000 0500 04000000 deadbeef")  # (0000,0005), 4 bytes
UNKNOWN_5010 = bytes.fromhex("0000 1050 06000000") + b"SET-7 "  # (0000,5010), 6 bytes


def _with_unknown_elements() -> bytes:
    """C-ECHO-RQ with (0000,0005) and (0000,5010) in tag order, group length adjusted."""
    body = C_ECHO_RQ_BYTES[12:]
    first, rest = body[:26], body[26:]  # (0000,0002) is 8 + 18 bytes
    body = first + UNKNOWN_0005 + rest + UNKNOWN_5010
    return b"\x00\x00\x00\x00\x04\x00\x00\x00" + struct.pack("<L", len(body)) + body


def test_unknown_elements_survive_decode_encode_byte_for_byte() -> None:
    raw = _with_unknown_elements()
    decoded = decode_command(raw)
    assert decoded[0x00000005] == b"\xde\xad\xbe\xef"
    assert decoded[0x00005010] == b"SET-7 "
    assert decoded[T.CommandField] == CF.C_ECHO_RQ
    validate_command(decoded)
    assert encode_command(decoded) == raw


def test_unknown_element_added_by_the_application_is_written_in_tag_order() -> None:
    command = {**C_ECHO_RQ, 0x00005010: b"SET-7 ", 0x00000005: b"\xde\xad\xbe\xef"}
    assert encode_command(command) == _with_unknown_elements()


def test_unknown_element_needs_bytes() -> None:
    with pytest.raises(CommandError, match=r"\(0000,5010\)"):
        encode_command({**C_ECHO_RQ, 0x00005010: "text"})


# --------------------------------------------------------------------------- validation


REQUIRED_CASES = [
    pytest.param(field, tag, id=f"{CommandField(field).name}-{tag.name}")
    for field in ALL_FIELDS
    for tag in REQUIRED_ELEMENTS[field]
]


@pytest.mark.parametrize(("field", "tag"), REQUIRED_CASES)
def test_validate_names_the_missing_required_element(field: CommandField, tag: Tag) -> None:
    command = dict(MESSAGES[field])
    del command[tag]
    with pytest.raises(CommandError) as info:
        validate_command(command)
    message = str(info.value)
    assert tag.name in message
    assert f"(0000,{tag & 0xFFFF:04X})" in message
    if tag != T.CommandField:
        assert field.name in message


@pytest.mark.parametrize("field", sorted(DATASET_REQUIRED), ids=lambda f: CommandField(f).name)
def test_validate_requires_a_data_set(field: CommandField) -> None:
    command = {**MESSAGES[field], T.CommandDataSetType: ABSENT}
    with pytest.raises(CommandError, match=f"{field.name} needs a data set"):
        validate_command(command)


@pytest.mark.parametrize("field", sorted(DATASET_FORBIDDEN), ids=lambda f: CommandField(f).name)
def test_validate_forbids_a_data_set(field: CommandField) -> None:
    command = {**MESSAGES[field], T.CommandDataSetType: 0x0102}
    with pytest.raises(CommandError, match=f"{field.name} carries no data set"):
        validate_command(command)


def test_validate_rejects_unknown_command_field() -> None:
    with pytest.raises(CommandError, match="unknown CommandField 0x0042"):
        validate_command({**C_ECHO_RQ, T.CommandField: 0x0042})


def test_validate_rejects_a_command_set_without_command_field() -> None:
    with pytest.raises(CommandError, match=r"CommandField \(0000,0100\)"):
        validate_command({T.MessageID: 1})


@pytest.mark.parametrize(
    ("tag", "value", "match"),
    [
        (T.MessageID, 0x10000, "MessageID must be an unsigned 16-bit int"),
        (T.MessageID, -1, "MessageID must be an unsigned 16-bit int"),
        (T.Priority, "high", "Priority must be an unsigned 16-bit int"),
        (T.AffectedSOPClassUID, 1234, "AffectedSOPClassUID must be a UID string"),
        (T.OffendingElement, "PatientName", "OffendingElement must be a tag"),
        (T.ErrorComment, 42, "ErrorComment must be text"),
    ],
)
def test_encode_rejects_values_of_the_wrong_type(tag: Tag, value: object, match: str) -> None:
    with pytest.raises(CommandError, match=match):
        encode_command({**C_ECHO_RQ, tag: value})  # type: ignore[dict-item]


def test_encode_rejects_a_malformed_uid() -> None:
    with pytest.raises(DicomWireError, match="AffectedSOPClassUID"):
        encode_command({**C_ECHO_RQ, T.AffectedSOPClassUID: "1.02.3"})


def test_a_uid_encoded_once_is_encoded_alike_and_a_received_one_keeps_its_bytes() -> None:
    # Plain-str UID elements are remembered between messages: the second encoding is the
    # same, a malformed UID raises every time, and a received UID equal to a remembered
    # one still goes out with its own padding.
    assert encode_command(dict(C_ECHO_RQ)) == encode_command(dict(C_ECHO_RQ)) == C_ECHO_RQ_BYTES
    for _ in range(2):
        with pytest.raises(DicomWireError, match="AffectedSOPClassUID"):
            encode_command({**C_ECHO_RQ, T.AffectedSOPClassUID: "1.02.3"})
    received = WireStr.from_wire(b"1.2.840.10008.1.1 ", VERIFICATION)
    encoded = encode_command({**C_ECHO_RQ, T.AffectedSOPClassUID: received})
    assert encoded == C_ECHO_RQ_BYTES.replace(b"1.2.840.10008.1.1\x00", b"1.2.840.10008.1.1 ")


# --------------------------------------------------------------------------- malformed input


def _element(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value


def _us(tag: int, value: int) -> bytes:
    return _element(tag, struct.pack("<H", value))


MALFORMED = [
    pytest.param(C_ECHO_RQ_BYTES[:-3], "truncated command element header", id="short-header"),
    pytest.param(C_ECHO_RQ_BYTES[:-1], "length 2 overruns the command set", id="short-value"),
    pytest.param(
        C_ECHO_RQ_BYTES[:20] + b"1.2", r"\(0000,0002\) length 18 overruns", id="truncated-uid"
    ),
    pytest.param(
        C_ECHO_RQ_BYTES + _us(0x00080016, 1), r"\(0008,0016\) is not in group 0000", id="group-8"
    ),
    pytest.param(
        _us(T.CommandField, 0x30) + _us(0x00020100, 1),
        r"\(0002,0100\) is not in group 0000",
        id="group-2",
    ),
    pytest.param(
        _us(T.MessageID, 1) + _us(T.CommandField, 0x30),
        r"out of order at \(0000,0100\)",
        id="out-of-order",
    ),
    pytest.param(
        _us(T.CommandField, 0x30) + _us(T.CommandField, 0x30),
        r"out of order at \(0000,0100\)",
        id="duplicate",
    ),
    pytest.param(
        _element(T.CommandField, b"\x30\x00\x00\x00"),
        "CommandField has length 4; expected 2",
        id="US-length-4",
    ),
    pytest.param(
        _element(T.MessageID, b"\x01"), "MessageID has length 1; expected 2", id="US-length-1"
    ),
    pytest.param(_element(T.Status, b""), "Status has length 0; expected 2", id="US-length-0"),
    pytest.param(
        _element(T.CommandGroupLength, b"\x00\x00") + _us(T.CommandField, 0x30),
        "CommandGroupLength has length 2; expected 4",
        id="UL-length-2",
    ),
    pytest.param(
        _element(T.OffendingElement, b"\x10\x00\x10\x00\x20\x00"),
        "OffendingElement length 6 is not a multiple of 4",
        id="AT-length-6",
    ),
    pytest.param(
        struct.pack("<HHL", 0, 0x0100, 0xFFFFFFFF) + b"\x30\x00",
        "overruns the command set",
        id="undefined-length",
    ),
]


@pytest.mark.parametrize(("raw", "match"), MALFORMED)
def test_malformed_command_sets_raise_command_error(raw: bytes, match: str) -> None:
    with pytest.raises(CommandError, match=match):
        decode_command(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(C_STORE_RQ_BYTES[:-10], id="last-element-missing"),
        pytest.param(C_STORE_RQ_BYTES + _us(0x00005010, 1), id="element-beyond-group"),
    ],
)
def test_group_length_disagreeing_with_the_command_set_raises(raw: bytes) -> None:
    with pytest.raises(CommandError, match="CommandGroupLength"):
        decode_command(raw)


def test_empty_command_set_decodes_to_nothing_and_fails_validation() -> None:
    assert decode_command(b"") == {}
    with pytest.raises(CommandError, match="lacks CommandField"):
        validate_command(decode_command(b""))
