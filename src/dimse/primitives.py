"""Typed DIMSE primitives: one class per request and response of PS3.7 §9.1-9.3 and §10.1-10.3.

A primitive is the typed view of a command set (:data:`~dicomwire.dimse.commands.CommandSet`)
and its data set: fields named after the PS3.7 Annex E element keywords in snake_case,
``message_id`` for the Message ID (requests) or the Message ID Being Responded To
(responses and C-CANCEL), ``dataset`` for what travels after the command, and ``extra``
for command elements the class has no field for (written back unchanged)::

    request = CStoreRQ(CT_IMAGE, instance_uid, priority=Priority.HIGH)
    command = request.to_command()              # the CommandSet sent on the wire
    answer = request.response(SUCCESS)          # a CStoreRSP for the same instance
    parse(command)                              # back to a CStoreRQ

:meth:`DimseMessage.to_command` sets Command Data Set Type from ``dataset is None``;
:meth:`DimseMessage.from_command` is lenient (a missing optional element is None) and does
not validate: :func:`~dicomwire.dimse.commands.validate_command` stays the validator.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import MISSING, dataclass, field, fields
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from ..errors import CommandError
from ..lazy import lazy_attributes
from ..records import Record
from ..uids import VERIFICATION_SOP_CLASS
from .commands import (
    TAG_COMMAND_FIELD,
    TAG_DATA_SET_TYPE,
    TAG_GROUP_LENGTH,
    TAG_MESSAGE_ID,
    TAG_RESPONDED_TO,
    TAG_STATUS,
    CommandField,
    CommandSet,
    CommandValue,
    DataSetType,
    Tag,
)
from .status import SUCCESS, Status

__all__ = [
    "REQUEST_CLASSES",
    "RESPONSE_CLASSES",
    "RequestedInstanceRequest",
    "SubOperationsResponse",
    "CCancelRQ",
    "CEchoRQ",
    "CEchoRSP",
    "CFindRQ",
    "CFindRSP",
    "CGetRQ",
    "CGetRSP",
    "CMoveRQ",
    "CMoveRSP",
    "CStoreRQ",
    "CStoreRSP",
    "DimseMessage",
    "DimseRequest",
    "DimseResponse",
    "InstanceResponse",
    "NActionRQ",
    "NActionRSP",
    "NCreateRQ",
    "NCreateRSP",
    "NDeleteRQ",
    "NDeleteRSP",
    "NEventReportRQ",
    "NEventReportRSP",
    "NGetRQ",
    "NGetRSP",
    "NSetRQ",
    "NSetRSP",
    "Priority",
    "parse",
    "response_command",
]


class Priority(IntEnum):
    """Priority (0000,0700) of C-STORE, C-FIND, C-GET and C-MOVE requests (PS3.7 §9.1)."""

    MEDIUM = 0x0000
    HIGH = 0x0001
    LOW = 0x0002


#: Field name -> command element: the snake_case of each PS3.7 Annex E keyword.
_TAG_OF_FIELD: dict[str, int] = {
    "affected_sop_class_uid": Tag.AffectedSOPClassUID,
    "requested_sop_class_uid": Tag.RequestedSOPClassUID,
    "affected_sop_instance_uid": Tag.AffectedSOPInstanceUID,
    "requested_sop_instance_uid": Tag.RequestedSOPInstanceUID,
    "move_destination": Tag.MoveDestination,
    "priority": Tag.Priority,
    "status": Tag.Status,
    "offending_element": Tag.OffendingElement,
    "error_comment": Tag.ErrorComment,
    "error_id": Tag.ErrorID,
    "event_type_id": Tag.EventTypeID,
    "attribute_identifier_list": Tag.AttributeIdentifierList,
    "action_type_id": Tag.ActionTypeID,
    "remaining": Tag.NumberOfRemainingSuboperations,
    "completed": Tag.NumberOfCompletedSuboperations,
    "failed": Tag.NumberOfFailedSuboperations,
    "warning": Tag.NumberOfWarningSuboperations,
    "move_originator_ae_title": Tag.MoveOriginatorApplicationEntityTitle,
    "move_originator_message_id": Tag.MoveOriginatorMessageID,
}
_TAG_OF_FIELD = {name: int(tag) for name, tag in _TAG_OF_FIELD.items()}  # plain-int keys

#: Elements every message carries and no class has a field for.
_HEADER_TAGS = frozenset(
    (TAG_GROUP_LENGTH, TAG_COMMAND_FIELD, TAG_MESSAGE_ID, TAG_RESPONDED_TO, TAG_DATA_SET_TYPE)
)
_ABSENT = int(DataSetType.ABSENT)
_PRESENT = int(DataSetType.PRESENT)


@dataclass(slots=True, repr=False, eq=False)
class DimseMessage(Record):
    """What every DIMSE message has: its message ID, its data set, unknown elements.

    ``dataset`` is bytes, a pydicom Dataset, an async iterable of bytes or a
    :class:`~dicomwire.dimse.streams.FileSource` when sending; on a received message it is
    whatever the sink returned (bytes by default). None: no data set.
    """

    command_field: ClassVar[CommandField]
    #: (field name, element) of the class's own fields, in declaration order.
    _elements: ClassVar[tuple[tuple[str, int], ...]] = ()
    #: Required fields (M in PS3.7) and what a lenient parse puts there when absent.
    _required: ClassVar[dict[str, object]] = {}
    _id_tag: ClassVar[int] = TAG_MESSAGE_ID

    message_id: int = field(default=0, kw_only=True)
    dataset: object | None = field(default=None, kw_only=True)
    extra: CommandSet = field(default_factory=dict, kw_only=True)

    def to_command(self) -> CommandSet:
        """The command set: every field that is not None, ``extra`` and the header elements."""
        command: CommandSet = dict(self.extra) if self.extra else {}
        command[TAG_COMMAND_FIELD] = int(self.command_field)
        command[self._id_tag] = self.message_id
        command[TAG_DATA_SET_TYPE] = _ABSENT if self.dataset is None else _PRESENT
        for name, tag in self._elements:
            value = getattr(self, name)
            if value is not None:
                # enums (Status, Priority) go as plain ints: the codec's fast path
                command[tag] = int(value) if isinstance(value, int) else value
        return command

    @classmethod
    def from_command(cls, command: CommandSet, dataset: object | None = None) -> Any:
        """The typed view of ``command`` (not validated; missing optional elements: None)."""
        values: dict[str, Any] = dict(cls._required)
        extra: CommandSet = {}
        names = _NAMES_OF[cls]
        for tag, value in command.items():
            name = names.get(tag)
            if name is not None:
                values[name] = value
            elif tag not in _HEADER_TAGS:
                extra[tag] = value
        message_id = command.get(cls._id_tag)
        _coerce(values)
        return cls(
            message_id=message_id if isinstance(message_id, int) else 0,
            dataset=dataset,
            extra=extra,
            **values,
        )


def _coerce(values: dict[str, Any]) -> None:
    """Status and Priority values as their types, when they are valid ones."""
    status = values.get("status")
    if isinstance(status, int) and not isinstance(status, Status) and 0 <= status <= 0xFFFF:
        values["status"] = Status(status)
    priority = values.get("priority")
    if isinstance(priority, int) and priority in Priority._value2member_map_:
        values["priority"] = Priority(priority)


@dataclass(slots=True, repr=False, eq=False)
class DimseResponse(DimseMessage):
    """A response: its status and the error elements of PS3.7 Annex C."""

    _id_tag: ClassVar[int] = TAG_RESPONDED_TO

    status: Status = SUCCESS
    error_comment: str | None = field(default=None, kw_only=True)
    error_id: int | None = field(default=None, kw_only=True)
    offending_element: list[int] | None = field(default=None, kw_only=True)


RSP = TypeVar("RSP", bound=DimseResponse, covariant=True)


@dataclass(slots=True, repr=False, eq=False)
class DimseRequest(DimseMessage, Generic[RSP]):
    """A request; :meth:`response` builds its matching response."""

    response_class: ClassVar[type[DimseResponse]]

    def response(self, status: int = 0, dataset: object | None = None, **fields: Any) -> RSP:
        """The matching response: same message ID, SOP class and instance, event/action type.

        ``fields`` are fields of the response class (``remaining=3``); an unknown name
        raises TypeError.
        """
        response_class = self.response_class
        values: dict[str, Any] = {}
        for target, sources in _COPIED_FIELDS[response_class]:
            for source in sources:
                value = getattr(self, source, None)
                if value is not None:
                    values[target] = value
                    break
        values.update(fields)
        code = status if isinstance(status, Status) else Status(status)
        return response_class(  # type: ignore[return-value]
            code, message_id=self.message_id, dataset=dataset, **values
        )


#: What a response copies from its request: response field <- first request field set.
_COPIED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("affected_sop_class_uid", ("affected_sop_class_uid", "requested_sop_class_uid")),
    ("affected_sop_instance_uid", ("affected_sop_instance_uid", "requested_sop_instance_uid")),
    ("event_type_id", ("event_type_id",)),
    ("action_type_id", ("action_type_id",)),
)


@dataclass(slots=True, repr=False, eq=False)
class InstanceResponse(DimseResponse):
    """A response naming the SOP instance it concerns (C-STORE and the N-services)."""

    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None


# --------------------------------------------------------------------------- C-services §9


@dataclass(slots=True, repr=False, eq=False)
class CEchoRSP(DimseResponse):
    """C-ECHO-RSP (PS3.7 Table 9.3-13)."""

    command_field: ClassVar[CommandField] = CommandField.C_ECHO_RSP
    affected_sop_class_uid: str | None = None


@dataclass(slots=True, repr=False, eq=False)
class CEchoRQ(DimseRequest[CEchoRSP]):
    """C-ECHO-RQ (PS3.7 Table 9.3-12)."""

    command_field: ClassVar[CommandField] = CommandField.C_ECHO_RQ
    response_class: ClassVar[type[DimseResponse]] = CEchoRSP
    affected_sop_class_uid: str = VERIFICATION_SOP_CLASS


@dataclass(slots=True, repr=False, eq=False)
class CStoreRSP(InstanceResponse):
    """C-STORE-RSP (PS3.7 Table 9.3-2)."""

    command_field: ClassVar[CommandField] = CommandField.C_STORE_RSP


@dataclass(slots=True, repr=False, eq=False)
class CStoreRQ(DimseRequest[CStoreRSP]):
    """C-STORE-RQ (PS3.7 Table 9.3-1); the data set is the SOP instance."""

    command_field: ClassVar[CommandField] = CommandField.C_STORE_RQ
    response_class: ClassVar[type[DimseResponse]] = CStoreRSP
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    priority: Priority = Priority.MEDIUM
    move_originator_ae_title: str | None = None
    move_originator_message_id: int | None = None


@dataclass(slots=True, repr=False, eq=False)
class CCancelRQ(DimseMessage):
    """C-CANCEL-RQ (PS3.7 Table 9.3-9): ``message_id`` is the ID of the operation cancelled."""

    command_field: ClassVar[CommandField] = CommandField.C_CANCEL_RQ
    _id_tag: ClassVar[int] = TAG_RESPONDED_TO


#: Command field -> request class (C-CANCEL-RQ included), of every primitive once
#: :mod:`.other_primitives` is imported (reading this name imports it).
_REQUEST_CLASSES: dict[CommandField, type[DimseMessage]] = {}
#: Command field -> response class, likewise (``RESPONSE_CLASSES``).
_RESPONSE_CLASSES: dict[CommandField, type[DimseResponse]] = {}
_CLASS_OF: dict[int, type[DimseMessage]] = {}

#: Per class: element -> field name, and the names of its fields.
_NAMES_OF: dict[type[DimseMessage], dict[int, str]] = {}
_FIELD_NAMES: dict[type[DimseMessage], frozenset[str]] = {}
_EMPTY_OF_TYPE: dict[str, object] = {"str": "", "int": 0}

#: Per response class: (its field, the request fields it copies, first set wins), and
#: the same as command elements (by the response's command field), so both ways of
#: answering follow one table.
_COPIED_FIELDS: dict[type[DimseMessage], tuple[tuple[str, tuple[str, ...]], ...]] = {}
_COPIED_TAGS: dict[int, tuple[tuple[int, tuple[int, ...]], ...]] = {}


def _register(*classes: type[DimseMessage]) -> None:
    """Enter primitive classes in the tables above, from their dataclass fields."""
    for cls in classes:
        own = [f for f in fields(cls) if f.name in _TAG_OF_FIELD]
        cls._elements = tuple((f.name, _TAG_OF_FIELD[f.name]) for f in own)
        cls._required = {
            f.name: _EMPTY_OF_TYPE[str(f.type)]
            for f in own
            if str(f.type) in _EMPTY_OF_TYPE and f.default is MISSING
        }
        _NAMES_OF[cls] = {tag: name for name, tag in cls._elements}
        _FIELD_NAMES[cls] = frozenset(f.name for f in fields(cls))
        _CLASS_OF[int(cls.command_field)] = cls
        if not cls.command_field & 0x8000:
            _REQUEST_CLASSES[cls.command_field] = cls
            continue
        assert issubclass(cls, DimseResponse)
        _RESPONSE_CLASSES[cls.command_field] = cls
        copied = tuple((t, sources) for t, sources in _COPIED if t in _FIELD_NAMES[cls])
        _COPIED_FIELDS[cls] = copied
        _COPIED_TAGS[int(cls.command_field)] = tuple(
            (_TAG_OF_FIELD[t], tuple(_TAG_OF_FIELD[source] for source in sources))
            for t, sources in copied
        )


_register(CEchoRQ, CEchoRSP, CStoreRQ, CStoreRSP, CCancelRQ)

#: The module with the primitives of the other services (C-FIND, C-GET, C-MOVE, the
#: N-services): imported when one of its names is first used here, or when a command of
#: theirs arrives, so an echo or a store does not build their classes (start-up).
_OTHERS = "dicomwire.dimse.other_primitives"


def _registered(table: dict[int, Any], command_field: int) -> Any:
    """``table[command_field]``, importing the other services' primitives on a miss."""
    found = table.get(command_field)
    if found is None and _OTHERS not in sys.modules:
        importlib.import_module(_OTHERS)
        found = table.get(command_field)
    return found


def response_command(request: CommandSet, status: int, has_dataset: bool) -> CommandSet:
    """The command set of the response to the request ``request`` with ``status``.

    What ``parse(request).response(status).to_command()`` gives, built straight from the
    command sets without the dataclasses in between: the performer's path for every
    request whose handler answers a plain status.
    """
    field_value = request.get(TAG_COMMAND_FIELD)
    copied = (
        _registered(_COPIED_TAGS, field_value | 0x8000) if isinstance(field_value, int) else None
    )
    if copied is None:
        raise CommandError(f"no response to CommandField {field_value!r}")
    command: CommandSet = {
        TAG_COMMAND_FIELD: field_value | 0x8000,  # type: ignore[operator]
        TAG_RESPONDED_TO: request.get(TAG_MESSAGE_ID, 0),
        TAG_DATA_SET_TYPE: _PRESENT if has_dataset else _ABSENT,
        TAG_STATUS: int(status),
    }
    for target, sources in copied:
        for source in sources:
            value = request.get(source)
            if value is not None:
                command[target] = value
                break
    return command


def parse(command: CommandSet, dataset: object | None = None) -> DimseMessage:
    """The typed primitive for ``command``, chosen by its Command Field.

    Raises :class:`CommandError` when the command field is missing or unknown.
    """
    field_value: CommandValue | None = command.get(TAG_COMMAND_FIELD)
    cls = _registered(_CLASS_OF, field_value) if isinstance(field_value, int) else None
    if cls is None:
        shown = f"0x{field_value:04X}" if isinstance(field_value, int) else "none"
        raise CommandError(f"no DIMSE primitive for CommandField {shown}")
    message: DimseMessage = cls.from_command(command, dataset)
    return message


if TYPE_CHECKING:
    from .other_primitives import (
        REQUEST_CLASSES,
        RESPONSE_CLASSES,
        CFindRQ,
        CFindRSP,
        CGetRQ,
        CGetRSP,
        CMoveRQ,
        CMoveRSP,
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
        RequestedInstanceRequest,
        SubOperationsResponse,
    )

__getattr__ = lazy_attributes(
    globals(),
    dict.fromkeys(
        (
            "REQUEST_CLASSES",
            "RESPONSE_CLASSES",
            "RequestedInstanceRequest",
            "SubOperationsResponse",
            "CFindRQ",
            "CFindRSP",
            "CGetRQ",
            "CGetRSP",
            "CMoveRQ",
            "CMoveRSP",
            "NActionRQ",
            "NActionRSP",
            "NCreateRQ",
            "NCreateRSP",
            "NDeleteRQ",
            "NDeleteRSP",
            "NEventReportRQ",
            "NEventReportRSP",
            "NGetRQ",
            "NGetRSP",
            "NSetRQ",
            "NSetRSP",
        ),
        _OTHERS,
    ),
)
