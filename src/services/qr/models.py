"""Query/Retrieve information models (PS3.4 C.6) and the identifier rules of C.4.1-C.4.3.

One table names every model's SOP classes per operation and its levels; the identifier a
C-FIND, C-MOVE or C-GET carries is checked against it here (PS3.4 C.4.1.2.1, C.4.2.2.1,
C.4.3.2.1; hierarchical and relational rules of C.4.1.3): a level the model does not have,
a unique key missing above the level of a hierarchical request, a key below the level, or a
retrieve without its level's unique key is :class:`~dicomwire.errors.InvalidQueryError`
(answered A900). The Composite Instance Root and its Without Bulk Data variant (PS3.4
C.6.3, Z.1) retrieve by SOP Instance UID only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import InvalidQueryError

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = [
    "MODELS",
    "QUERY_MODELS",
    "QueryModel",
    "agreed_relational",
    "check_identifier",
    "key_level",
    "model_of",
]


@dataclass(frozen=True, slots=True)
class QueryModel:
    """One information model: its name, levels top down and SOP class per operation."""

    name: str
    levels: tuple[str, ...]
    sop_classes: dict[str, str]  # operation ("find", "move", "get") -> SOP class UID


MODELS: tuple[QueryModel, ...] = (
    QueryModel(
        "patient",
        ("PATIENT", "STUDY", "SERIES", "IMAGE"),
        {
            "find": "1.2.840.10008.5.1.4.1.2.1.1",
            "move": "1.2.840.10008.5.1.4.1.2.1.2",
            "get": "1.2.840.10008.5.1.4.1.2.1.3",
        },
    ),
    QueryModel(
        "study",
        ("STUDY", "SERIES", "IMAGE"),
        {
            "find": "1.2.840.10008.5.1.4.1.2.2.1",
            "move": "1.2.840.10008.5.1.4.1.2.2.2",
            "get": "1.2.840.10008.5.1.4.1.2.2.3",
        },
    ),
    QueryModel(
        "patient-study",  # retired in the standard; still sent by old SCUs
        ("PATIENT", "STUDY"),
        {
            "find": "1.2.840.10008.5.1.4.1.2.3.1",
            "move": "1.2.840.10008.5.1.4.1.2.3.2",
            "get": "1.2.840.10008.5.1.4.1.2.3.3",
        },
    ),
    QueryModel(
        "composite-instance",  # PS3.4 C.6.3: retrieve only, by SOP Instance UID
        ("IMAGE",),
        {"move": "1.2.840.10008.5.1.4.1.2.4.2", "get": "1.2.840.10008.5.1.4.1.2.4.3"},
    ),
    QueryModel(
        "without-bulk-data",  # PS3.4 Z.1: C-GET only, bulk data left out
        ("IMAGE",),
        {"get": "1.2.840.10008.5.1.4.1.2.5.3"},
    ),
)

#: (model, operation) -> SOP class UID, with Modality Worklist (PS3.4 K.6) for the client.
QUERY_MODELS: dict[tuple[str, str], str] = {
    **{(m.name, op): uid for m in MODELS for op, uid in m.sop_classes.items()},
    ("worklist", "find"): "1.2.840.10008.5.1.4.31",
}

_BY_UID: dict[str, tuple[QueryModel, str]] = {
    uid: (m, op) for m in MODELS for op, uid in m.sop_classes.items()
}

#: Unique key of each level (PS3.4 C.6.1.1.1, C.6.2.1.1).
UNIQUE_KEYS: dict[str, int] = {
    "PATIENT": 0x00100020,  # Patient ID
    "STUDY": 0x0020000D,
    "SERIES": 0x0020000E,
    "IMAGE": 0x00080018,
}

#: Keys that belong to a level (PS3.4 Tables C.6-1 to C.6-4 and the attributes of the IOD
#: modules each level stands for: Patient, Patient Study / General Study, General Series /
#: equipment, General Image); any other key is taken to belong to the level queried (an
#: optional key: answered, empty when the entity lacks it).
_LEVEL_KEYS: dict[str, frozenset[int]] = {
    "PATIENT": frozenset(
        {0x00100010, 0x00100020, 0x00100021, 0x00100024, 0x00100030, 0x00100032, 0x00100040}
        | {0x00101000, 0x00101001, 0x00101002, 0x00102160, 0x00104000}
        | {0x00201200, 0x00201202, 0x00201204}
    ),
    "STUDY": frozenset(
        {0x0020000D, 0x00080020, 0x00080030, 0x00080050, 0x00080051, 0x00200010, 0x00081030}
        | {0x00080090, 0x00081032, 0x00081060, 0x00081080, 0x00080061, 0x00080062}
        | {0x00101010, 0x00101020, 0x00101030, 0x00102180, 0x001021B0, 0x00201070}
        | {0x00201206, 0x00201208}
    ),
    "SERIES": frozenset(
        {0x0020000E, 0x00080060, 0x00200011, 0x0008103E, 0x00080021, 0x00080031}
        | {0x00180015, 0x00200060, 0x00181030, 0x00400244, 0x00400245, 0x00400275}
        | {0x00201209}
    ),
    "IMAGE": frozenset(
        {0x00080018, 0x00080016, 0x00200013, 0x00080008, 0x00080023, 0x00080033}
        | {0x00080022, 0x00080032, 0x00280008, 0x00083002}
    ),
}
#: Not keys: the identifier's own bookkeeping (PS3.4 C.4.1.1.3.1).
_NOT_KEYS = frozenset((0x00080005, 0x00080052, 0x00080054, 0x00080056, 0x00080201, 0x00400512))


def model_of(sop_class_uid: str) -> tuple[QueryModel, str]:
    """The model and operation of a Q/R SOP class (KeyError if it is none)."""
    return _BY_UID[sop_class_uid]


def key_level(tag: int, model: QueryModel, queried: str) -> str:
    """The level a key belongs to in ``model`` (Study Root files patient keys under STUDY)."""
    for level, keys in _LEVEL_KEYS.items():
        if tag in keys:
            if level not in model.levels:
                return model.levels[0]  # e.g. Patient's Name in Study Root: a study key
            return level
    return queried


def check_identifier(
    model: QueryModel, operation: str, identifier: Dataset, *, relational: bool = False
) -> str:
    """The Query/Retrieve Level of ``identifier``, once it is valid for ``model``.

    Raises :class:`InvalidQueryError` (A900) naming what is wrong: no or an unknown
    level; for hierarchical requests a missing unique key above the level (PS3.4
    C.4.1.3.1.1) or a key below it; for C-MOVE/C-GET a missing unique key at the level.
    """
    raw = identifier.get("QueryRetrieveLevel")
    level = str(raw or "").strip().upper()
    if not level:
        raise InvalidQueryError("Query/Retrieve Level (0008,0052) is missing")
    if level not in model.levels:
        raise InvalidQueryError(
            f"Query/Retrieve Level {level!r} is not one of the {model.name} root's "
            f"({', '.join(model.levels)})"
        )
    depth = model.levels.index(level)
    for element in identifier:
        tag = int(element.tag)
        if tag in _NOT_KEYS:
            continue
        owner = key_level(tag, model, level)
        if model.levels.index(owner) > depth:
            raise InvalidQueryError(
                f"key {element.keyword or element.tag} belongs to the {owner} level, "
                f"below the {level} level queried"
            )
    if not relational:
        for above in model.levels[:depth]:
            tag = UNIQUE_KEYS[above]
            value = identifier.get(tag)
            text = "" if value is None else _text(value.value)
            if not text:
                raise InvalidQueryError(
                    f"hierarchical: {_keyword(tag)} must be given (the unique key of the "
                    f"{above} level above {level}; PS3.4 C.4.1.3.1.1)"
                )
            if "\\" in text or "*" in text or "?" in text:  # PS3.4 C.4.1.2.1: one value
                raise InvalidQueryError(
                    f"hierarchical: {_keyword(tag)} must be a single value, not {text!r} "
                    f"(the unique key of the {above} level above {level})"
                )
    if operation in ("move", "get"):
        value = identifier.get(UNIQUE_KEYS[level])
        if value is None or not str(value.value or "").strip():
            raise InvalidQueryError(
                f"{operation}: the unique key {_keyword(UNIQUE_KEYS[level])} of the {level} "
                "level must be given"
            )
    return level


def _text(value: Any) -> str:
    """A key's value as text (several values joined with backslashes, as on the wire)."""
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip(" \x00")


def _keyword(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def agreed_relational(proposed: bytes | None, allowed: bool) -> bool:
    """Whether relational queries/retrieves were agreed for this context (PS3.4 C.5.1.1).

    ``proposed`` is the requestor's extended negotiation information for the SOP class
    (``request.negotiated.extended_negotiation.get(uid)``); ``allowed`` the SCP's setting.
    """
    return bool(allowed and proposed and proposed[0] == 1)
