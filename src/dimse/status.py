"""DIMSE status codes as typed values: PS3.7 Annex C and the service-class tables of PS3.4.

:class:`Status` is an ``int`` (so it compares with the raw code) that knows its category
(success, warning, failure, cancel, pending) and a meaning. General codes come from
PS3.7 Annex C; service-specific ranges (A7xx, A9xx, Cxxx, Bxxx) from PS3.4 (storage,
query/retrieve, MPPS, print).
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Category", "Status", "category_of", "meaning_of"]


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

    def __repr__(self) -> str:
        return f"Status(0x{int(self):04X} {self.category.value}: {self.meaning})"

    def __str__(self) -> str:
        return f"0x{int(self):04X} ({self.meaning})"
