"""The DIMSE primitives of C-FIND, C-GET, C-MOVE (PS3.7 §9.1.2-9.1.4) and the N-services
(PS3.7 §10.1): the classes of :mod:`dicomwire.dimse.primitives` that an echo or a store
never uses.

Kept apart so that importing :mod:`~dicomwire.dimse.primitives` does not build them (each
``@dataclass`` class costs its generated ``__init__`` at import: docs/performance.md,
start-up). That module re-exports every name here and imports this module on first use,
or when :func:`~dicomwire.dimse.primitives.parse` meets one of these command fields;
importing it enters its classes in that module's tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .commands import CommandField
from .primitives import (
    _REQUEST_CLASSES,
    _RESPONSE_CLASSES,
    RSP,
    DimseMessage,
    DimseRequest,
    DimseResponse,
    InstanceResponse,
    Priority,
    _register,
)

__all__ = [
    "REQUEST_CLASSES",
    "RESPONSE_CLASSES",
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
    "RequestedInstanceRequest",
    "SubOperationsResponse",
]


@dataclass(slots=True, repr=False, eq=False)
class SubOperationsResponse(DimseResponse):
    """A C-GET or C-MOVE response: the counts of its sub-operations (PS3.7 §9.1.3, §9.1.4)."""

    affected_sop_class_uid: str | None = None
    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None


@dataclass(slots=True, repr=False, eq=False)
class RequestedInstanceRequest(DimseRequest[RSP]):
    """An N-GET, N-SET, N-ACTION or N-DELETE request on one requested SOP instance."""

    requested_sop_class_uid: str
    requested_sop_instance_uid: str


# --------------------------------------------------------------------------- C-services §9


@dataclass(slots=True, repr=False, eq=False)
class CFindRSP(DimseResponse):
    """C-FIND-RSP (PS3.7 Table 9.3-4); pending ones carry a matching identifier."""

    command_field: ClassVar[CommandField] = CommandField.C_FIND_RSP
    affected_sop_class_uid: str | None = None


@dataclass(slots=True, repr=False, eq=False)
class CFindRQ(DimseRequest[CFindRSP]):
    """C-FIND-RQ (PS3.7 Table 9.3-3); the data set is the identifier."""

    command_field: ClassVar[CommandField] = CommandField.C_FIND_RQ
    response_class: ClassVar[type[DimseResponse]] = CFindRSP
    affected_sop_class_uid: str
    priority: Priority = Priority.MEDIUM


@dataclass(slots=True, repr=False, eq=False)
class CGetRSP(SubOperationsResponse):
    """C-GET-RSP (PS3.7 Table 9.3-6): sub-operation counts as fields."""

    command_field: ClassVar[CommandField] = CommandField.C_GET_RSP


@dataclass(slots=True, repr=False, eq=False)
class CGetRQ(DimseRequest[CGetRSP]):
    """C-GET-RQ (PS3.7 Table 9.3-5); the data set is the identifier."""

    command_field: ClassVar[CommandField] = CommandField.C_GET_RQ
    response_class: ClassVar[type[DimseResponse]] = CGetRSP
    affected_sop_class_uid: str
    priority: Priority = Priority.MEDIUM


@dataclass(slots=True, repr=False, eq=False)
class CMoveRSP(SubOperationsResponse):
    """C-MOVE-RSP (PS3.7 Table 9.3-8): sub-operation counts as fields."""

    command_field: ClassVar[CommandField] = CommandField.C_MOVE_RSP


@dataclass(slots=True, repr=False, eq=False)
class CMoveRQ(DimseRequest[CMoveRSP]):
    """C-MOVE-RQ (PS3.7 Table 9.3-7); the data set is the identifier."""

    command_field: ClassVar[CommandField] = CommandField.C_MOVE_RQ
    response_class: ClassVar[type[DimseResponse]] = CMoveRSP
    affected_sop_class_uid: str
    move_destination: str
    priority: Priority = Priority.MEDIUM


# --------------------------------------------------------------------------- N-services §10


@dataclass(slots=True, repr=False, eq=False)
class NEventReportRSP(InstanceResponse):
    """N-EVENT-REPORT-RSP (PS3.7 Table 10.3-2)."""

    command_field: ClassVar[CommandField] = CommandField.N_EVENT_REPORT_RSP
    event_type_id: int | None = None


@dataclass(slots=True, repr=False, eq=False)
class NEventReportRQ(DimseRequest[NEventReportRSP]):
    """N-EVENT-REPORT-RQ (PS3.7 Table 10.3-1); the data set is the event information."""

    command_field: ClassVar[CommandField] = CommandField.N_EVENT_REPORT_RQ
    response_class: ClassVar[type[DimseResponse]] = NEventReportRSP
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    event_type_id: int


@dataclass(slots=True, repr=False, eq=False)
class NGetRSP(InstanceResponse):
    """N-GET-RSP (PS3.7 Table 10.3-4); the data set is the attribute list."""

    command_field: ClassVar[CommandField] = CommandField.N_GET_RSP


@dataclass(slots=True, repr=False, eq=False)
class NGetRQ(RequestedInstanceRequest[NGetRSP]):
    """N-GET-RQ (PS3.7 Table 10.3-3)."""

    command_field: ClassVar[CommandField] = CommandField.N_GET_RQ
    response_class: ClassVar[type[DimseResponse]] = NGetRSP
    attribute_identifier_list: list[int] | None = None


@dataclass(slots=True, repr=False, eq=False)
class NSetRSP(InstanceResponse):
    """N-SET-RSP (PS3.7 Table 10.3-6)."""

    command_field: ClassVar[CommandField] = CommandField.N_SET_RSP


@dataclass(slots=True, repr=False, eq=False)
class NSetRQ(RequestedInstanceRequest[NSetRSP]):
    """N-SET-RQ (PS3.7 Table 10.3-5); the data set is the modification list."""

    command_field: ClassVar[CommandField] = CommandField.N_SET_RQ
    response_class: ClassVar[type[DimseResponse]] = NSetRSP


@dataclass(slots=True, repr=False, eq=False)
class NActionRSP(InstanceResponse):
    """N-ACTION-RSP (PS3.7 Table 10.3-8)."""

    command_field: ClassVar[CommandField] = CommandField.N_ACTION_RSP
    action_type_id: int | None = None


@dataclass(slots=True, repr=False, eq=False)
class NActionRQ(RequestedInstanceRequest[NActionRSP]):
    """N-ACTION-RQ (PS3.7 Table 10.3-7); the data set is the action information."""

    command_field: ClassVar[CommandField] = CommandField.N_ACTION_RQ
    response_class: ClassVar[type[DimseResponse]] = NActionRSP
    action_type_id: int


@dataclass(slots=True, repr=False, eq=False)
class NCreateRSP(InstanceResponse):
    """N-CREATE-RSP (PS3.7 Table 10.3-10)."""

    command_field: ClassVar[CommandField] = CommandField.N_CREATE_RSP


@dataclass(slots=True, repr=False, eq=False)
class NCreateRQ(DimseRequest[NCreateRSP]):
    """N-CREATE-RQ (PS3.7 Table 10.3-9); without an instance UID the performer assigns one."""

    command_field: ClassVar[CommandField] = CommandField.N_CREATE_RQ
    response_class: ClassVar[type[DimseResponse]] = NCreateRSP
    affected_sop_class_uid: str
    affected_sop_instance_uid: str | None = None


@dataclass(slots=True, repr=False, eq=False)
class NDeleteRSP(InstanceResponse):
    """N-DELETE-RSP (PS3.7 Table 10.3-12)."""

    command_field: ClassVar[CommandField] = CommandField.N_DELETE_RSP


@dataclass(slots=True, repr=False, eq=False)
class NDeleteRQ(RequestedInstanceRequest[NDeleteRSP]):
    """N-DELETE-RQ (PS3.7 Table 10.3-11)."""

    command_field: ClassVar[CommandField] = CommandField.N_DELETE_RQ
    response_class: ClassVar[type[DimseResponse]] = NDeleteRSP


_register(
    CFindRQ,
    CFindRSP,
    CGetRQ,
    CGetRSP,
    CMoveRQ,
    CMoveRSP,
    NEventReportRQ,
    NEventReportRSP,
    NGetRQ,
    NGetRSP,
    NSetRQ,
    NSetRSP,
    NActionRQ,
    NActionRSP,
    NCreateRQ,
    NCreateRSP,
    NDeleteRQ,
    NDeleteRSP,
)

#: Command field -> request class, of every primitive (C-CANCEL-RQ included).
REQUEST_CLASSES: dict[CommandField, type[DimseMessage]] = _REQUEST_CLASSES
#: Command field -> response class, of every primitive.
RESPONSE_CLASSES: dict[CommandField, type[DimseResponse]] = _RESPONSE_CLASSES
