"""Attribute matching for C-FIND and Modality Worklist: PS3.4 C.2.2.2, one pure module.

An identifier is compiled once (:func:`compile_query`) into one :class:`KeyCondition` per
key; the compiled :class:`Query` then tells whether a candidate data set matches. The
kinds of matching, as PS3.4 C.2.2.2 names them:

- **Universal** (C.2.2.2.3): a zero-length value, or a wildcard value of ``*`` alone, or a
  sequence with no item: everything matches (the key is only a return key);
- **Single Value** (C.2.2.2.1): the value itself; for PN case-insensitive by default (the
  standard lets an SCP ignore case for names) and trailing empty components ignored; for
  text VRs leading and trailing spaces are not significant; a DA/TM/DT value given with
  less precision stands for the whole period it names (``TM 10`` is 10:00 to 10:59:59.999);
- **Empty Value** (C.2.2.2.1, a value of two quotation marks ``""``): matches entities
  whose attribute is absent or has no value;
- **List of UID** (C.2.2.2.2): backslash-separated UIDs, any of which;
- **List of values** (an extension for keys a service names in ``list_keys``, such as the
  Modality Worklist's Scheduled Station AE Title, "single, multiple or wildcard" in the
  RIS statements we serve): backslash-separated single values, any of which;
- **Wild Card** (C.2.2.2.4): ``*`` (any run, possibly empty) and ``?`` (one character) in
  values of AE, CS, LO, LT, PN, SH, ST, UC, UR, UT;
- **Range** (C.2.2.2.5): ``A-B``, ``-B``, ``A-`` on DA, TM and DT, bounds included;
- **Sequence** (C.2.2.2.6): the query item's keys matched against each item of the
  candidate's sequence; any item matching is a match.

A multi-valued candidate attribute matches when any of its values does. Every matching
kind also has a plain-data form (:attr:`KeyCondition.kind` and its values) so an index can
turn it into SQL; the in-memory matcher is the reference the index is tested against.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from pydicom.multival import MultiValue

from ..errors import InvalidQueryError

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = [
    "KeyCondition",
    "MatchKind",
    "Query",
    "compile_query",
    "matches",
    "name_key",
    "period",
]

#: VRs whose values may hold wildcards (PS3.4 C.2.2.2.4).
WILDCARD_VRS = frozenset(("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"))
#: VRs range matching applies to (PS3.4 C.2.2.2.5).
RANGE_VRS = frozenset(("DA", "TM", "DT"))
#: Text VRs whose leading and trailing spaces are not significant (PS3.5 6.2).
_TRIMMED_VRS = WILDCARD_VRS | frozenset(("DS", "IS", "UI"))
#: Keys of an identifier that are not matching or return keys (PS3.4 C.4.1.1.3).
NOT_KEYS = frozenset(
    (
        0x00080005,  # Specific Character Set
        0x00080052,  # Query/Retrieve Level
        0x00080053,  # Query/Retrieve View
        0x00080054,  # Retrieve AE Title (answered, never matched)
        0x00080056,  # Instance Availability
        0x00080201,  # Timezone Offset From UTC
    )
)
_EMPTY_VALUE = '""'


class MatchKind(Enum):
    """How one key matches (PS3.4 C.2.2.2)."""

    UNIVERSAL = "universal"
    SINGLE = "single"
    EMPTY = "empty"
    UID_LIST = "uid-list"
    VALUE_LIST = "value-list"
    WILDCARD = "wildcard"
    RANGE = "range"
    SEQUENCE = "sequence"


@dataclass(slots=True)
class KeyCondition:
    """One key of a query: its tag, VR, kind and what it compares with.

    ``values`` holds the single value (normalised), the UIDs of a list, or the wildcard
    pattern; ``low``/``high`` the range bounds (None: open); ``items`` the conditions of a
    sequence's query item.
    """

    tag: int
    vr: str
    kind: MatchKind
    values: tuple[str, ...] = ()
    low: str | None = None
    high: str | None = None
    items: tuple[KeyCondition, ...] = ()
    case_insensitive: bool = False
    _pattern: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def matches(self, dataset: Dataset) -> bool:
        """Whether ``dataset``'s attribute (absent counts as empty) satisfies this key."""
        kind = self.kind
        if kind is MatchKind.UNIVERSAL:
            return True
        element = dataset.get(self.tag)
        value = None if element is None else element.value
        if kind is MatchKind.SEQUENCE:
            return any(all(c.matches(item) for c in self.items) for item in value or ())
        candidates = _text_values(value, self.vr)
        if kind is MatchKind.EMPTY:
            return not candidates
        return any(self._matches_one(text) for text in candidates)

    def _matches_one(self, text: str) -> bool:
        kind = self.kind
        if kind is MatchKind.RANGE:
            return _in_range(text, self.low, self.high, self.vr)
        if kind is MatchKind.WILDCARD:
            assert self._pattern is not None
            return self._pattern.fullmatch(self._normalise(text)) is not None
        if self.vr in RANGE_VRS:
            (wanted,) = self.values
            return _in_range(text, wanted, wanted, self.vr)
        return self._normalise(text) in self.values  # single value, or a list of values

    def _normalise(self, text: str) -> str:
        if self.vr == "PN":
            text = _trim_name(text)
        return text.casefold() if self.case_insensitive else text


@dataclass(slots=True)
class Query:
    """A compiled identifier: its key conditions, and the keys to answer with."""

    keys: tuple[KeyCondition, ...]

    @property
    def matching_keys(self) -> tuple[KeyCondition, ...]:
        """The keys that restrict the matches (not universal)."""
        return tuple(k for k in self.keys if k.kind is not MatchKind.UNIVERSAL)

    @property
    def return_tags(self) -> tuple[int, ...]:
        """Every key's tag: each is answered in each response (PS3.4 C.4.1.2.2)."""
        return tuple(k.tag for k in self.keys)

    def matches(self, dataset: Dataset) -> bool:
        """Whether ``dataset`` satisfies every key."""
        return all(key.matches(dataset) for key in self.keys)

    def filter(self, candidates: Iterable[Dataset]) -> Iterable[Dataset]:
        """The candidates that match, lazily (a query's matches are streamed)."""
        return (candidate for candidate in candidates if self.matches(candidate))


def compile_query(
    identifier: Dataset,
    *,
    case_insensitive_names: bool = True,
    list_keys: frozenset[int] = frozenset(),
) -> Query:
    """Compile a C-FIND identifier; :class:`InvalidQueryError` (A900) when it is malformed.

    Keys that are not matching or return keys (Query/Retrieve Level, Specific Character
    Set...) are left out: the service answers those itself. A key whose tag is in
    ``list_keys`` may hold several values (:attr:`MatchKind.VALUE_LIST`, any of them), at
    any depth of sequences.
    """
    keys = [
        _condition(element, case_insensitive_names, list_keys)
        for element in identifier
        if element.tag not in NOT_KEYS and element.tag.group != 0x0002
    ]
    return Query(tuple(keys))


def matches(
    identifier: Dataset, candidate: Dataset, *, case_insensitive_names: bool = True
) -> bool:
    """Whether ``candidate`` matches ``identifier`` (compiles the query each call)."""
    return compile_query(identifier, case_insensitive_names=case_insensitive_names).matches(
        candidate
    )


# --------------------------------------------------------------------------- compiling


def _condition(
    element: Any, case_insensitive_names: bool, list_keys: frozenset[int] = frozenset()
) -> KeyCondition:
    tag, vr, value = int(element.tag), str(element.VR), element.value
    name = element.keyword or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    if vr == "SQ":
        items = list(value or ())
        if not items:
            return KeyCondition(tag, vr, MatchKind.UNIVERSAL)
        if len(items) > 1:
            raise InvalidQueryError(f"{name}: a sequence key holds one item, not {len(items)}")
        conditions = tuple(
            _condition(child, case_insensitive_names, list_keys) for child in items[0]
        )
        if all(c.kind is MatchKind.UNIVERSAL for c in conditions):
            return KeyCondition(tag, vr, MatchKind.UNIVERSAL, items=conditions)
        return KeyCondition(tag, vr, MatchKind.SEQUENCE, items=conditions)
    texts = _text_values(value, vr)
    if not texts:
        return KeyCondition(tag, vr, MatchKind.UNIVERSAL)
    folded = case_insensitive_names and vr == "PN"
    if len(texts) == 1 and texts[0] == _EMPTY_VALUE and vr in _TRIMMED_VRS | RANGE_VRS | {"PN"}:
        return KeyCondition(tag, vr, MatchKind.EMPTY)
    if vr == "UI":
        return KeyCondition(
            tag, vr, MatchKind.UID_LIST if len(texts) > 1 else MatchKind.SINGLE, tuple(texts)
        )
    if len(texts) > 1 and tag in list_keys and vr not in RANGE_VRS:
        if any("*" in t or "?" in t or t == _EMPTY_VALUE for t in texts):
            raise InvalidQueryError(f"{name}: a list of values holds no wildcard or empty value")
        values = tuple(_trim_name(t).casefold() if folded else t for t in texts)
        return KeyCondition(tag, vr, MatchKind.VALUE_LIST, values, case_insensitive=folded)
    if len(texts) > 1:
        raise InvalidQueryError(f"{name}: only a UID key may hold several values")
    text = texts[0]
    if vr in RANGE_VRS:
        return _range_or_point(tag, vr, text, name)
    if vr in WILDCARD_VRS and ("*" in text or "?" in text):
        if set(text) == {"*"}:
            return KeyCondition(tag, vr, MatchKind.UNIVERSAL)
        pattern = _wildcard_pattern(text.casefold() if folded else text)
        return KeyCondition(
            tag, vr, MatchKind.WILDCARD, (text,), case_insensitive=folded, _pattern=pattern
        )
    single = _trim_name(text) if vr == "PN" else text
    return KeyCondition(
        tag,
        vr,
        MatchKind.SINGLE,
        (single.casefold() if folded else single,),
        case_insensitive=folded,
    )


def _range_or_point(tag: int, vr: str, text: str, name: str) -> KeyCondition:
    if vr == "DT":
        text = _without_offsets(text)
    if "-" in text:
        low, _, high = (part.strip() for part in text.partition("-"))
        if not low and not high:
            raise InvalidQueryError(f"{name}: a range needs at least one bound, not {text!r}")
        for bound in (low, high):
            if bound and not _valid(bound, vr):
                raise InvalidQueryError(f"{name}: {bound!r} is not a valid {vr} value")
        return KeyCondition(tag, vr, MatchKind.RANGE, low=low or None, high=high or None)
    if not _valid(text, vr):
        raise InvalidQueryError(f"{name}: {text!r} is not a valid {vr} value")
    return KeyCondition(tag, vr, MatchKind.SINGLE, (text,))


def _wildcard_pattern(text: str) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile("".join(parts), re.DOTALL)


_NUMBER = re.compile(r"\d+(\.\d{1,6})?")
#: A DT value's UTC offset (&ZZXX, PS3.5 Table 6.2-1): a sign and four digits after at
#: least a date. Offsets are dropped before comparing (values compared as given); a range
#: whose upper bound is a bare four-digit year right after a full date is read as an offset.
_DT_OFFSET = re.compile(r"(?<=\d{8})[+-]\d{4}(?=$|-)")


def _without_offsets(text: str) -> str:
    return _DT_OFFSET.sub("", text)


def _valid(text: str, vr: str) -> bool:
    """A DA (YYYYMMDD), TM (HH[MM[SS[.F{1,6}]]]) or DT (YYYY[MM...]) value (PS3.5 Table
    6.2-1): the right digit counts, and each field in its range (a real calendar date,
    hours 00-23, minutes 00-59, seconds 00-60 for a leap second)."""
    core = text.replace(":", "") if vr == "TM" else text  # ACR-NEMA's HH:MM:SS still seen
    if not _NUMBER.fullmatch(core):
        return False
    whole, _, fraction = core.partition(".")
    if vr == "DA":
        return len(whole) == 8 and not fraction and _valid_date(whole)
    if vr == "TM":
        return len(whole) in (2, 4, 6) and (not fraction or len(whole) == 6) and _valid_time(whole)
    if len(whole) not in (4, 6, 8, 10, 12, 14) or (fraction and len(whole) != 14):
        return False
    date, time = whole[:8], whole[8:]
    if len(date) >= 6 and not 1 <= int(date[4:6]) <= 12:
        return False
    return (len(date) < 8 or _valid_date(date)) and _valid_time(time)


def _valid_date(digits: str) -> bool:
    """Eight digits naming a day that exists (20260229 does not)."""
    try:
        datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return False
    return True


def _valid_time(digits: str) -> bool:
    """HH[MM[SS]] digits within their ranges (an empty string: no time given)."""
    fields = [int(digits[i : i + 2]) for i in range(0, len(digits), 2)]
    return all(value <= limit for value, limit in zip(fields, (23, 59, 60), strict=False))


# --------------------------------------------------------------------------- comparing


def _text_values(value: Any, vr: str) -> list[str]:
    """A value as its non-empty texts (several for a multi-valued attribute)."""
    if value is None or value == "":
        return []
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    items: Sequence[Any] = value if isinstance(value, list | tuple | MultiValue) else [value]
    texts = []
    for item in items:
        text = str(item)
        if vr in _TRIMMED_VRS or vr in RANGE_VRS:
            text = text.strip(" \x00")
        if text:
            texts.append(text)
    return texts


def _in_range(text: str, low: str | None, high: str | None, vr: str) -> bool:
    """Whether ``text`` (a DA/TM/DT value) lies in [low, high]; less precise ends widen."""
    value = period(text, vr)
    if value is None:
        return False
    start, end = value
    if low is not None:
        low_start, _ = period(low, vr) or ("", "")
        if end < low_start:
            return False
    if high is not None:
        _, high_end = period(high, vr) or ("", "")
        if start > high_end:
            return False
    return True


def _trim_name(text: str) -> str:
    """A PN value without trailing empty components (``Doe^John^^^`` is ``Doe^John``)."""
    return text.rstrip(" ^=")


def name_key(text: str) -> str:
    """A PN value as case-insensitive matching compares it (an index stores this form)."""
    return _trim_name(text).casefold()


def period(text: str, vr: str) -> tuple[str, str] | None:
    """The first and last instant a DA/TM/DT value names, as comparable fixed-width digits.

    A value given with less precision names a period: ``TM 10`` runs from 100000.000000 to
    105959.999999, ``DA``-precision ``DT 20261129`` through the whole day.
    """
    text = text.strip()
    if vr == "TM":
        text = text.replace(":", "")
    elif vr == "DT":
        text = _without_offsets(text)
    digits = text.replace(".", "", 1)
    if not digits.isdigit():
        return None
    width = {"DA": 8, "TM": 12, "DT": 20}[vr]
    return digits.ljust(width, "0")[:width], digits.ljust(width, "9")[:width]
