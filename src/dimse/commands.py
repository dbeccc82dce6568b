"""DIMSE command sets: PS3.7 §9.3 and §10.3, encoded per PS3.7 §6.3.1 (group 0000, Implicit VR LE).

A command set is a mapping of tag to value; :func:`encode_command` writes it with the
Command Group Length (0000,0000) computed, :func:`decode_command` reads it back. Elements
this module does not know are kept as raw bytes and written back unchanged.
"""

from __future__ import annotations

import functools
import struct
from enum import IntEnum
from typing import TypeAlias

from ..errors import CommandError
from ..ul.identifiers import WireStr, decode_uid, encode_uid

__all__ = [
    "COMMAND_ELEMENTS",
    "REQUIRED_ELEMENTS",
    "CommandError",
    "CommandField",
    "CommandSet",
    "DataSetType",
    "Tag",
    "decode_command",
    "encode_command",
    "require",
    "validate_command",
]


class Tag(IntEnum):
    """Command elements of PS3.7 Annex E (group 0000), as 32-bit tags."""

    CommandGroupLength = 0x00000000
    AffectedSOPClassUID = 0x00000002
    RequestedSOPClassUID = 0x00000003
    CommandField = 0x00000100
    MessageID = 0x00000110
    MessageIDBeingRespondedTo = 0x00000120
    MoveDestination = 0x00000600
    Priority = 0x00000700
    CommandDataSetType = 0x00000800
    Status = 0x00000900
    OffendingElement = 0x00000901
    ErrorComment = 0x00000902
    ErrorID = 0x00000903
    AffectedSOPInstanceUID = 0x00001000
    RequestedSOPInstanceUID = 0x00001001
    EventTypeID = 0x00001002
    AttributeIdentifierList = 0x00001005
    ActionTypeID = 0x00001008
    NumberOfRemainingSuboperations = 0x00001020
    NumberOfCompletedSuboperations = 0x00001021
    NumberOfFailedSuboperations = 0x00001022
    NumberOfWarningSuboperations = 0x00001023
    MoveOriginatorApplicationEntityTitle = 0x00001030
    MoveOriginatorMessageID = 0x00001031


class CommandField(IntEnum):
    """Command Field values of PS3.7 §9.3 and §10.3."""

    C_STORE_RQ = 0x0001
    C_STORE_RSP = 0x8001
    C_GET_RQ = 0x0010
    C_GET_RSP = 0x8010
    C_FIND_RQ = 0x0020
    C_FIND_RSP = 0x8020
    C_MOVE_RQ = 0x0021
    C_MOVE_RSP = 0x8021
    C_ECHO_RQ = 0x0030
    C_ECHO_RSP = 0x8030
    N_EVENT_REPORT_RQ = 0x0100
    N_EVENT_REPORT_RSP = 0x8100
    N_GET_RQ = 0x0110
    N_GET_RSP = 0x8110
    N_SET_RQ = 0x0120
    N_SET_RSP = 0x8120
    N_ACTION_RQ = 0x0130
    N_ACTION_RSP = 0x8130
    N_CREATE_RQ = 0x0140
    N_CREATE_RSP = 0x8140
    N_DELETE_RQ = 0x0150
    N_DELETE_RSP = 0x8150
    C_CANCEL_RQ = 0x0FFF


class DataSetType(IntEnum):
    """Command Data Set Type (0000,0800): 0101H means no data set follows."""

    PRESENT = 0x0000
    ABSENT = 0x0101


#: VR of each known command element.
COMMAND_ELEMENTS: dict[int, str] = {
    Tag.CommandGroupLength: "UL",
    Tag.AffectedSOPClassUID: "UI",
    Tag.RequestedSOPClassUID: "UI",
    Tag.CommandField: "US",
    Tag.MessageID: "US",
    Tag.MessageIDBeingRespondedTo: "US",
    Tag.MoveDestination: "AE",
    Tag.Priority: "US",
    Tag.CommandDataSetType: "US",
    Tag.Status: "US",
    Tag.OffendingElement: "AT",
    Tag.ErrorComment: "LO",
    Tag.ErrorID: "US",
    Tag.AffectedSOPInstanceUID: "UI",
    Tag.RequestedSOPInstanceUID: "UI",
    Tag.EventTypeID: "US",
    Tag.AttributeIdentifierList: "AT",
    Tag.ActionTypeID: "US",
    Tag.NumberOfRemainingSuboperations: "US",
    Tag.NumberOfCompletedSuboperations: "US",
    Tag.NumberOfFailedSuboperations: "US",
    Tag.NumberOfWarningSuboperations: "US",
    Tag.MoveOriginatorApplicationEntityTitle: "AE",
    Tag.MoveOriginatorMessageID: "US",
}

CommandValue: TypeAlias = int | str | list[int] | bytes
CommandSet: TypeAlias = dict[int, CommandValue]

_ELEMENT_HEADER = struct.Struct("<HHL")
_US = struct.Struct("<H")
_UL = struct.Struct("<L")
_AT = struct.Struct("<HH")
#: A whole US element: tag, length 2, value (the most common element of a command).
_US_ELEMENT = struct.Struct("<HHLH")
#: (0000,0000) UL 4 and its value: the head of every encoded command set.
_GROUP_LENGTH_ELEMENT = struct.Struct("<HHLL")
_US_TAGS = frozenset(int(tag) for tag, vr in COMMAND_ELEMENTS.items() if vr == "US")
_UI_TAGS = frozenset(int(tag) for tag, vr in COMMAND_ELEMENTS.items() if vr == "UI")
#: Plain-int keys: hashing an IntEnum member in a hot loop is slower than hashing an int.
_VR_OF: dict[int, str] = {int(tag): vr for tag, vr in COMMAND_ELEMENTS.items()}
_COMMAND_GROUP_LENGTH = int(Tag.CommandGroupLength)

#: Command element tags as plain ints, for dictionary lookups on hot paths (hashing an
#: IntEnum member is slower than hashing an int); shared by the primitives and dispatcher.
TAG_COMMAND_FIELD = int(Tag.CommandField)
TAG_MESSAGE_ID = int(Tag.MessageID)
TAG_RESPONDED_TO = int(Tag.MessageIDBeingRespondedTo)
TAG_STATUS = int(Tag.Status)
TAG_DATA_SET_TYPE = int(Tag.CommandDataSetType)
TAG_AFFECTED_SOP_CLASS = int(Tag.AffectedSOPClassUID)
TAG_REQUESTED_SOP_CLASS = int(Tag.RequestedSOPClassUID)
TAG_AFFECTED_SOP_INSTANCE = int(Tag.AffectedSOPInstanceUID)
TAG_REQUESTED_SOP_INSTANCE = int(Tag.RequestedSOPInstanceUID)
TAG_GROUP_LENGTH = int(Tag.CommandGroupLength)
_DATA_SET_ABSENT = int(DataSetType.ABSENT)


_NAME_OF: dict[int, str] = {int(tag): tag.name for tag in Tag}


def _tag_name(tag: int) -> str:
    """The element's keyword for messages (a dictionary lookup: it runs per UID encoded)."""
    return _NAME_OF.get(tag) or f"(0000,{tag & 0xFFFF:04X})"


def _encode_value(tag: int, value: CommandValue) -> bytes:
    vr = _VR_OF.get(tag)
    if vr is None or isinstance(value, bytes):
        if not isinstance(value, bytes):
            raise CommandError(
                f"unknown command element ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs a bytes value"
            )
        return value
    if vr == "US":
        if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise CommandError(f"{_tag_name(tag)} must be an unsigned 16-bit int, not {value!r}")
        return _US.pack(value)
    if vr == "UL":
        if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            raise CommandError(f"{_tag_name(tag)} must be an unsigned 32-bit int, not {value!r}")
        return _UL.pack(value)
    if vr == "UI":
        if not isinstance(value, str):
            raise CommandError(f"{_tag_name(tag)} must be a UID string, not {value!r}")
        raw = encode_uid(value, _tag_name(tag))
        return raw + b"\x00" if len(raw) % 2 else raw
    if vr == "AT":
        tags = [value] if isinstance(value, int) else value
        if not isinstance(tags, list) or not all(isinstance(t, int) for t in tags):
            raise CommandError(f"{_tag_name(tag)} must be a tag or list of tags")
        return b"".join(_AT.pack(t >> 16, t & 0xFFFF) for t in tags)
    # AE, LO: text padded with a space to even length
    if not isinstance(value, str):
        raise CommandError(f"{_tag_name(tag)} must be text, not {value!r}")
    raw = value.wire if isinstance(value, WireStr) else value.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def encode_command(command: CommandSet) -> bytes:
    """Encode a command set, Command Group Length first and elements in tag order.

    A US element is packed whole in one call; a UID element (a str the application
    gave) comes from :func:`_uid_element`, which keeps the last few hundred encoded, so
    that the ones a requestor sends again and again (the SOP Class UID of every
    C-STORE-RQ) are validated and encoded once, not per message.
    """
    parts: list[bytes] = [b""]
    append = parts.append
    pack_us = _US_ELEMENT.pack
    for tag in sorted(command):
        value = command[tag]
        if tag in _US_TAGS and type(value) is int and 0 <= value <= 0xFFFF:
            append(pack_us(0, tag, 2, value))  # group 0000: the tag is the element number
        elif type(value) is str and tag in _UI_TAGS:
            append(_uid_element(tag, value))
        elif tag != _COMMAND_GROUP_LENGTH:
            append(_element(tag, value))
    parts[0] = _GROUP_LENGTH_ELEMENT.pack(0, 0, 4, sum(map(len, parts)))
    return b"".join(parts)


def _element(tag: int, value: CommandValue) -> bytes:
    """One element, header and value, of any VR."""
    if type(value) is WireStr and tag in _UI_TAGS:  # a UID as received (a response's)
        encoded = value.wire if not len(value.wire) % 2 else value.wire + b"\x00"
    else:
        encoded = _encode_value(tag, value)
    return _ELEMENT_HEADER.pack(tag >> 16, tag & 0xFFFF, len(encoded)) + encoded


@functools.lru_cache(maxsize=256)
def _uid_element(tag: int, value: str) -> bytes:
    """A UID element from a plain str (validated), remembered for the next message.

    Only exact ``str`` values come here: a :class:`WireStr` equal to one would hash
    alike but carry other bytes. A value that fails validation raises and is not kept.
    """
    return _element(tag, value)


def _decode_value(tag: int, raw: bytes) -> CommandValue:
    vr = _VR_OF.get(tag)
    if vr == "US":
        if len(raw) != 2:
            raise CommandError(f"{_tag_name(tag)} has length {len(raw)}; expected 2")
        return int(_US.unpack(raw)[0])
    if vr == "UL":
        if len(raw) != 4:
            raise CommandError(f"{_tag_name(tag)} has length {len(raw)}; expected 4")
        return int(_UL.unpack(raw)[0])
    if vr == "UI":
        return decode_uid(raw)
    if vr == "AT":
        if len(raw) % 4:
            raise CommandError(f"{_tag_name(tag)} length {len(raw)} is not a multiple of 4")
        return [(g << 16) | e for g, e in _AT.iter_unpack(raw)]
    if vr in ("AE", "LO"):
        return WireStr.from_wire(raw, raw.decode("latin-1").strip(" \x00"))
    return raw


def _element_error(group: int, element: int, length: int, previous: int) -> CommandError:
    """What is wrong with an element header decode_command refused."""
    if group != 0:
        return CommandError(f"element ({group:04X},{element:04X}) is not in group 0000")
    if element <= previous:
        return CommandError(f"command elements out of order at ({group:04X},{element:04X})")
    return CommandError(f"element (0000,{element:04X}) length {length} overruns the command set")


def decode_command(data: bytes | bytearray | memoryview) -> CommandSet:
    """Decode a command set; raises :class:`CommandError` naming what is wrong."""
    raw = bytes(data)
    command: CommandSet = {}
    pos, end = 0, len(raw)
    previous = -1
    unpack_header = _ELEMENT_HEADER.unpack_from
    unpack_ul = _UL.unpack_from
    us_tags = _US_TAGS
    ui_tags = _UI_TAGS
    try:
        while pos < end:
            group, element, length = unpack_header(raw, pos)
            start = pos + 8
            pos = start + length
            if group or element <= previous or pos > end:
                raise _element_error(group, element, length, previous)
            previous = element
            if length == 2 and element in us_tags:  # little endian, read where it lies
                command[element] = raw[start] | raw[start + 1] << 8
            elif element in ui_tags:
                command[element] = decode_uid(raw[start:pos])
            elif element == _COMMAND_GROUP_LENGTH and length == 4:  # every command's first
                command[element] = unpack_ul(raw, start)[0]
            else:
                command[element] = _decode_value(element, raw[start:pos])
    except struct.error:  # fewer than 8 bytes left for an element header
        raise CommandError(f"truncated command element header at byte {pos}") from None
    group_length = command.get(_COMMAND_GROUP_LENGTH)
    if isinstance(group_length, int) and raw[:4] == b"\x00\x00\x00\x00":
        following = len(raw) - 12  # bytes after the (0000,0000) element itself
        if group_length != following:
            raise CommandError(
                f"CommandGroupLength says {group_length} bytes follow it, but {following} do"
            )
    return command


_CF = CommandField
_T = Tag
_RQ_BASE = (_T.CommandField, _T.MessageID, _T.CommandDataSetType)
_RSP_BASE = (_T.CommandField, _T.MessageIDBeingRespondedTo, _T.CommandDataSetType, _T.Status)

#: Elements each message must carry (M in PS3.7 Tables 9.3-1..9.3-12 and 10.3-1..10.3-12).
REQUIRED_ELEMENTS: dict[int, tuple[Tag, ...]] = {
    _CF.C_STORE_RQ: (*_RQ_BASE, _T.AffectedSOPClassUID, _T.Priority, _T.AffectedSOPInstanceUID),
    _CF.C_STORE_RSP: _RSP_BASE,
    _CF.C_FIND_RQ: (*_RQ_BASE, _T.AffectedSOPClassUID, _T.Priority),
    _CF.C_FIND_RSP: _RSP_BASE,
    _CF.C_GET_RQ: (*_RQ_BASE, _T.AffectedSOPClassUID, _T.Priority),
    _CF.C_GET_RSP: _RSP_BASE,
    _CF.C_MOVE_RQ: (*_RQ_BASE, _T.AffectedSOPClassUID, _T.Priority, _T.MoveDestination),
    _CF.C_MOVE_RSP: _RSP_BASE,
    _CF.C_ECHO_RQ: (*_RQ_BASE, _T.AffectedSOPClassUID),
    _CF.C_ECHO_RSP: _RSP_BASE,
    _CF.C_CANCEL_RQ: (_T.CommandField, _T.MessageIDBeingRespondedTo, _T.CommandDataSetType),
    _CF.N_EVENT_REPORT_RQ: (
        *_RQ_BASE,
        _T.AffectedSOPClassUID,
        _T.AffectedSOPInstanceUID,
        _T.EventTypeID,
    ),
    _CF.N_EVENT_REPORT_RSP: _RSP_BASE,
    _CF.N_GET_RQ: (*_RQ_BASE, _T.RequestedSOPClassUID, _T.RequestedSOPInstanceUID),
    _CF.N_GET_RSP: _RSP_BASE,
    _CF.N_SET_RQ: (*_RQ_BASE, _T.RequestedSOPClassUID, _T.RequestedSOPInstanceUID),
    _CF.N_SET_RSP: _RSP_BASE,
    _CF.N_ACTION_RQ: (
        *_RQ_BASE,
        _T.RequestedSOPClassUID,
        _T.RequestedSOPInstanceUID,
        _T.ActionTypeID,
    ),
    _CF.N_ACTION_RSP: _RSP_BASE,
    _CF.N_CREATE_RQ: (*_RQ_BASE, _T.AffectedSOPClassUID),
    _CF.N_CREATE_RSP: _RSP_BASE,
    _CF.N_DELETE_RQ: (*_RQ_BASE, _T.RequestedSOPClassUID, _T.RequestedSOPInstanceUID),
    _CF.N_DELETE_RSP: _RSP_BASE,
}

#: Requests that must carry a data set, and those that must not (PS3.7 §9.3, §10.3).
DATASET_REQUIRED = frozenset(
    (_CF.C_STORE_RQ, _CF.C_FIND_RQ, _CF.C_GET_RQ, _CF.C_MOVE_RQ, _CF.N_SET_RQ)
)
DATASET_FORBIDDEN = frozenset(
    (_CF.C_ECHO_RQ, _CF.C_ECHO_RSP, _CF.C_CANCEL_RQ, _CF.N_GET_RQ, _CF.N_DELETE_RQ)
)


#: REQUIRED_ELEMENTS with plain-int tags, and the Data Set Type rule, for validate_command
#: (it runs for every message sent and received).
_REQUIRED_TAGS: dict[int, tuple[int, ...]] = {
    int(field): tuple(int(tag) for tag in tags) for field, tags in REQUIRED_ELEMENTS.items()
}
_DATASET_REQUIRED = frozenset(int(field) for field in DATASET_REQUIRED)
_DATASET_FORBIDDEN = frozenset(int(field) for field in DATASET_FORBIDDEN)


def validate_command(command: CommandSet) -> None:
    """Check a command set's required and conditional elements (PS3.7 §9.3, §10.3).

    Raises :class:`CommandError` naming the first missing or wrong element.
    """
    field = command.get(TAG_COMMAND_FIELD)
    if not isinstance(field, int):
        raise CommandError("command set lacks CommandField (0000,0100)")
    required = _REQUIRED_TAGS.get(field)
    if required is None:
        raise CommandError(f"unknown CommandField 0x{field:04X}")
    for tag in required:
        if tag not in command:
            require(command, Tag(tag))  # raises, naming it
    present = command[TAG_DATA_SET_TYPE] != _DATA_SET_ABSENT
    if field in _DATASET_REQUIRED and not present:
        name = CommandField(field).name
        raise CommandError(f"{name} needs a data set but CommandDataSetType says none")
    if field in _DATASET_FORBIDDEN and present:
        name = CommandField(field).name
        raise CommandError(f"{name} carries no data set but CommandDataSetType says one")


def require(command: CommandSet, *tags: Tag) -> None:
    """Raise :class:`CommandError` naming the first of ``tags`` missing from ``command``."""
    for tag in tags:
        if tag not in command:
            field = command.get(Tag.CommandField)
            kind = (
                CommandField(field).name
                if isinstance(field, int) and field in (CommandField._value2member_map_)
                else "?"
            )
            raise CommandError(f"{kind} command set lacks {tag.name} (0000,{tag & 0xFFFF:04X})")
