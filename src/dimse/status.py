"""DIMSE status codes as typed values: PS3.7 Annex C and the service-class tables of PS3.4.

:class:`Status` is an ``int`` (so it compares with the raw code) that knows its category
(success, warning, failure, cancel, pending) and a meaning. General codes come from
PS3.7 Annex C; service-specific ranges (A7xx, A9xx, Cxxx, Bxxx) from PS3.4 (storage,
query/retrieve, MPPS, print). :meth:`Status.meaning_for` reads a code the way one service
class's table does (PS3.4 B.2.3, C.4.1.1.4, C.4.2.1.5, C.4.3.1.4, K.4.1.1.4, F.7, J.3, H.4),
since the same code means different things there (B000 is a coercion for storage and
failed sub-operations for C-MOVE).

The named constants (:data:`SUCCESS`, :data:`PENDING`, ...) are the one definition of
each code the rest of the package uses.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "CANCEL",
    "CANNOT_UNDERSTAND",
    "DATASET_MISMATCH",
    "DUPLICATE_INVOCATION",
    "DUPLICATE_SOP_INSTANCE",
    "IDENTIFIER_MISMATCH",
    "INVALID_ARGUMENT_VALUE",
    "INVALID_ATTRIBUTE_VALUE",
    "MISSING_ATTRIBUTE",
    "MISTYPED_ARGUMENT",
    "MOVE_DESTINATION_UNKNOWN",
    "NO_SUCH_ACTION_TYPE",
    "NO_SUCH_ATTRIBUTE",
    "NO_SUCH_EVENT_TYPE",
    "NO_SUCH_SOP_CLASS",
    "NO_SUCH_SOP_INSTANCE",
    "OUT_OF_RESOURCES",
    "OUT_OF_RESOURCES_MATCHES",
    "OUT_OF_RESOURCES_SUBOPS",
    "PENDING",
    "PENDING_WARNING",
    "PROCESSING_FAILURE",
    "RESOURCE_LIMITATION",
    "SOP_CLASS_NOT_SUPPORTED",
    "SUBOPS_FAILED",
    "SUBOPS_WARNING",
    "SUCCESS",
    "UNRECOGNIZED_OPERATION",
    "Category",
    "ServiceClass",
    "Status",
    "category_of",
    "meaning_of",
]


class Category(Enum):
    """Status categories of PS3.7 Annex C."""

    __hash__ = object.__hash__  # members are singletons: identity hash, in C

    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    CANCEL = "cancel"
    PENDING = "pending"


# PS3.7 Annex C.1-C.5 general statuses, and the commonest PS3.4 service-class ones.
_MEANINGS: dict[int, str] = {
    0x0000: "Success",
    0x0001: "Requested optional attributes are not supported",
    0x0107: "Attribute list error",
    0x0116: "Attribute value out of range",
    0x0105: "No such attribute",
    0x0106: "Invalid attribute value",
    0x0110: "Processing failure",
    0x0111: "Duplicate SOP Instance",
    0x0112: "No such SOP Instance",
    0x0113: "No such event type",
    0x0114: "No such argument",
    0x0115: "Invalid argument value",
    0x0117: "Invalid SOP Instance",
    0x0118: "No such SOP Class",
    0x0119: "Class-instance conflict",
    0x0120: "Missing attribute",
    0x0121: "Missing attribute value",
    0x0122: "SOP Class not supported",
    0x0123: "No such action type",
    0x0124: "Refused: not authorized",
    0x0210: "Duplicate invocation",
    0x0211: "Unrecognized operation",
    0x0212: "Mistyped argument",
    0x0213: "Resource limitation",
    0xA700: "Refused: out of resources",
    0xA701: "Refused: out of resources - unable to calculate number of matches",
    0xA702: "Refused: out of resources - unable to perform sub-operations",
    0xA801: "Refused: move destination unknown",
    0xA900: "Error: data set does not match SOP Class",
    0xB000: "Coercion of data elements / sub-operations complete with failures",
    0xB006: "Elements discarded",
    0xB007: "Data set does not match SOP Class",
    0xC000: "Error: cannot understand",
    0xFE00: "Cancel",
    0xFF00: "Pending",
    0xFF01: "Pending: optional keys not supported",
}


#: Pending: more responses follow (PS3.7 Annex C.4).
_PENDING_CODES = frozenset((0xFF00, 0xFF01))


def category_of(code: int) -> Category:
    """The category of a status code (PS3.7 Annex C)."""
    if code == 0x0000:
        return Category.SUCCESS
    if code in _PENDING_CODES:
        return Category.PENDING
    if code == 0xFE00:
        return Category.CANCEL
    if code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
        return Category.WARNING
    return Category.FAILURE


def meaning_of(code: int) -> str:
    """A short meaning for a status code, falling back to its range."""
    meaning = _MEANINGS.get(code)
    if meaning is not None:
        return meaning
    if 0xA700 <= code <= 0xA7FF:
        return "Refused: out of resources"
    if 0xA900 <= code <= 0xA9FF:
        return "Error: data set does not match SOP Class"
    if 0xC000 <= code <= 0xCFFF:
        return "Error: cannot understand"
    if 0xB000 <= code <= 0xBFFF:
        return "Warning"
    if 0xA000 <= code <= 0xAFFF:
        return "Failure"
    return f"{category_of(code).value} status"


class Status(int):
    """A DIMSE status code with its category and meaning; compares as the plain code."""

    __slots__ = ()

    def __new__(cls, code: int) -> Status:
        if not isinstance(code, int) or isinstance(code, bool):
            raise TypeError(f"status must be an int, not {type(code).__name__}")
        if not 0 <= code <= 0xFFFF:
            raise ValueError(f"status {code!r} is not a 16-bit value")
        return super().__new__(cls, code)

    @property
    def category(self) -> Category:
        return category_of(self)

    @property
    def meaning(self) -> str:
        return meaning_of(self)

    @property
    def is_success(self) -> bool:
        return self == 0x0000

    @property
    def is_pending(self) -> bool:
        return self in _PENDING_CODES  # category_of's first test, without the call

    @property
    def is_failure(self) -> bool:
        return self.category is Category.FAILURE

    def meaning_for(self, service: ServiceClass | str) -> str:
        """The meaning in ``service``'s status table (PS3.4), else the general one.

        ``service`` is a :class:`ServiceClass`, its value (``"storage"``) or a SOP Class
        UID that :meth:`ServiceClass.of_sop_class` knows.
        """
        service_class = ServiceClass.parse(service)
        if service_class is None:
            return meaning_of(self)
        code = int(self)
        meaning = _SERVICE_MEANINGS[service_class].get(code)
        if meaning is not None:
            return meaning
        for low, high, text in _SERVICE_RANGES[service_class]:
            if low <= code <= high:
                return text
        return meaning_of(code)

    def __repr__(self) -> str:
        return f"Status(0x{int(self):04X} {self.category.value}: {self.meaning})"

    def __str__(self) -> str:
        return f"0x{int(self):04X} ({self.meaning})"


class ServiceClass(Enum):
    """The PS3.4 service classes whose status tables :meth:`Status.meaning_for` knows."""

    VERIFICATION = "verification"
    STORAGE = "storage"
    QUERY_RETRIEVE = "query_retrieve"
    WORKLIST = "worklist"
    MPPS = "mpps"
    STORAGE_COMMITMENT = "storage_commitment"
    PRINT = "print"

    @classmethod
    def of_sop_class(cls, uid: str) -> ServiceClass | None:
        """The service class of a common SOP Class UID (PS3.4 annexes), or None."""
        exact = _SERVICE_OF_SOP_CLASS.get(uid)
        if exact is not None:
            return exact
        for prefix, service in _SERVICE_OF_PREFIX:
            if uid.startswith(prefix):
                return service
        return None

    @classmethod
    def parse(cls, service: ServiceClass | str) -> ServiceClass | None:
        """``service`` as a member: a member, a member's value or name, or a SOP Class UID."""
        if isinstance(service, ServiceClass):
            return service
        try:
            return cls(service.lower())
        except ValueError:
            pass
        if service.upper() in cls.__members__:
            return cls.__members__[service.upper()]
        return cls.of_sop_class(service)


_SERVICE_OF_SOP_CLASS: dict[str, ServiceClass] = {
    "1.2.840.10008.1.1": ServiceClass.VERIFICATION,
    "1.2.840.10008.5.1.4.31": ServiceClass.WORKLIST,  # Modality Worklist - FIND (PS3.4 K)
    "1.2.840.10008.3.1.2.3.3": ServiceClass.MPPS,  # Modality Performed Procedure Step (F)
    "1.2.840.10008.3.1.2.3.4": ServiceClass.MPPS,  # ... Retrieve
    "1.2.840.10008.3.1.2.3.5": ServiceClass.MPPS,  # ... Notification
    "1.2.840.10008.1.20.1": ServiceClass.STORAGE_COMMITMENT,  # Push Model (J)
    "1.2.840.10008.1.20.1.1": ServiceClass.STORAGE_COMMITMENT,  # its well-known instance
}
#: UID prefixes of SOP class families (most specific first).
_SERVICE_OF_PREFIX: tuple[tuple[str, ServiceClass], ...] = (
    ("1.2.840.10008.5.1.4.1.1.", ServiceClass.STORAGE),  # PS3.4 B.5 storage SOP classes
    ("1.2.840.10008.5.1.4.1.2.", ServiceClass.QUERY_RETRIEVE),  # PS3.4 C.6 information models
    ("1.2.840.10008.5.1.1.", ServiceClass.PRINT),  # PS3.4 H.5 print SOP classes
)

_QUERY_STATUSES: dict[int, str] = {
    0x0000: "Matching is complete",
    0x0122: "Refused: SOP Class not supported",
    0xA700: "Refused: out of resources",
    0xA900: "Error: identifier does not match SOP Class",
    0xFE00: "Matching terminated due to Cancel request",
    0xFF00: "Pending: matches are continuing",
    0xFF01: "Pending: matches are continuing - one or more optional keys were not supported",
}

#: Per service: code -> meaning, from the PS3.4 status tables.
_SERVICE_MEANINGS: dict[ServiceClass, dict[int, str]] = {
    ServiceClass.VERIFICATION: {0x0000: "Success"},  # PS3.4 A.4: success only
    ServiceClass.STORAGE: {  # PS3.4 Table B.2-1
        0x0000: "Success",
        0xB000: "Warning: coercion of data elements",
        0xB006: "Warning: elements discarded",
        0xB007: "Warning: data set does not match SOP Class",
    },
    ServiceClass.QUERY_RETRIEVE: {  # PS3.4 Tables C.4-1 (FIND), C.4-2 (MOVE), C.4-3 (GET)
        **_QUERY_STATUSES,
        0x0000: "Matching or sub-operations complete - no failures",
        0xA701: "Refused: out of resources - unable to calculate number of matches",
        0xA702: "Refused: out of resources - unable to perform sub-operations",
        0xA801: "Refused: move destination unknown",
        0xB000: "Sub-operations complete - one or more failures or warnings",
        0xFE00: "Matching or sub-operations terminated due to Cancel",
        0xFF00: "Pending: matches or sub-operations are continuing",
    },
    ServiceClass.WORKLIST: dict(_QUERY_STATUSES),  # PS3.4 Table K.4-1
    ServiceClass.MPPS: {},  # PS3.4 F.7: the general N-CREATE/N-SET statuses of PS3.7 C
    ServiceClass.STORAGE_COMMITMENT: {},  # PS3.4 J.3: general N-ACTION/N-EVENT-REPORT ones
    ServiceClass.PRINT: {  # PS3.4 H.4 (Film Session, Film Box, Image Box, Print Job)
        0xB600: "Warning: memory allocation not supported",
        0xB601: "Warning: film session printing (collation) is not supported",
        0xB602: "Warning: film session contains no image boxes (empty page)",
        0xB603: "Warning: film box contains no image boxes (empty page)",
        0xB604: "Warning: image larger than the image box; it has been demagnified",
        0xB605: "Warning: requested min or max density outside the printer's range",
        0xB609: "Warning: image larger than the image box; it has been cropped to fit",
        0xB60A: "Warning: image larger than the image box; it has been decimated to fit",
        0xC600: "Failure: film session contains no film boxes",
        0xC601: "Failure: unable to create a print job; the print queue is full",
        0xC602: "Failure: unable to create a print job for the film box; print queue full",
        0xC603: "Failure: image size is larger than the image box size",
        0xC604: "Failure: image position collision (several images for one position)",
        0xC605: "Failure: insufficient memory in the printer to store the image",
        0xC613: "Failure: combined print image size is larger than the image box size",
        0xC616: "Failure: a film box that has not been printed exists; new one refused",
    },
}

#: Per service: ranges of codes a table gives one meaning (PS3.4 "xx" entries).
_SERVICE_RANGES: dict[ServiceClass, tuple[tuple[int, int, str], ...]] = {
    ServiceClass.VERIFICATION: (),
    ServiceClass.STORAGE: (
        (0xA700, 0xA7FF, "Refused: out of resources"),
        (0xA900, 0xA9FF, "Error: data set does not match SOP Class"),
        (0xC000, 0xCFFF, "Error: cannot understand"),
    ),
    ServiceClass.QUERY_RETRIEVE: ((0xC000, 0xCFFF, "Failed: unable to process"),),
    ServiceClass.WORKLIST: ((0xC000, 0xCFFF, "Failed: unable to process"),),
    ServiceClass.MPPS: (),
    ServiceClass.STORAGE_COMMITMENT: (),
    ServiceClass.PRINT: (
        (0xB600, 0xB6FF, "Warning (print management)"),
        (0xC600, 0xC6FF, "Failure (print management)"),
    ),
}

# -- named statuses: the one definition of each code used in the package (PS3.7 Annex C,
# PS3.4 tables for the service-specific ones).
SUCCESS = Status(0x0000)
PENDING = Status(0xFF00)
PENDING_WARNING = Status(0xFF01)  # pending, optional keys not supported (C-FIND)
CANCEL = Status(0xFE00)
NO_SUCH_ATTRIBUTE = Status(0x0105)
INVALID_ATTRIBUTE_VALUE = Status(0x0106)
PROCESSING_FAILURE = Status(0x0110)
DUPLICATE_SOP_INSTANCE = Status(0x0111)
NO_SUCH_SOP_INSTANCE = Status(0x0112)
NO_SUCH_EVENT_TYPE = Status(0x0113)
INVALID_ARGUMENT_VALUE = Status(0x0115)
NO_SUCH_SOP_CLASS = Status(0x0118)
MISSING_ATTRIBUTE = Status(0x0120)
SOP_CLASS_NOT_SUPPORTED = Status(0x0122)
NO_SUCH_ACTION_TYPE = Status(0x0123)
DUPLICATE_INVOCATION = Status(0x0210)
UNRECOGNIZED_OPERATION = Status(0x0211)
MISTYPED_ARGUMENT = Status(0x0212)
RESOURCE_LIMITATION = Status(0x0213)
OUT_OF_RESOURCES = Status(0xA700)
OUT_OF_RESOURCES_MATCHES = Status(0xA701)
OUT_OF_RESOURCES_SUBOPS = Status(0xA702)
SUBOPS_FAILED = OUT_OF_RESOURCES_SUBOPS  # C-MOVE/C-GET: unable to perform sub-operations
MOVE_DESTINATION_UNKNOWN = Status(0xA801)
DATASET_MISMATCH = Status(0xA900)
IDENTIFIER_MISMATCH = DATASET_MISMATCH  # the Q/R name of A900
SUBOPS_WARNING = Status(0xB000)  # sub-operations complete with failures or warnings
CANNOT_UNDERSTAND = Status(0xC000)
