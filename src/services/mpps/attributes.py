"""The attribute rules of an MPPS instance: PS3.4 F.7.2 Table F.7.2-1, as data.

Each :class:`Rule` is one row of Table F.7.2-1 ("Modality Performed Procedure Step SOP
Class N-CREATE, N-SET and Final State Attributes"): its requirement type in the N-CREATE
(``"1"``: present with a value, ``"2"``: present, may be empty, ``"3"``: optional),
whether an N-SET may carry it ("Not allowed" rows may not), and whether the final state
(the step N-SET to COMPLETED or DISCONTINUED) needs a value. Rows of sequences carry the
rows of their items.

The checks return :class:`Problem` lists; :mod:`.service` turns them into the statuses of
PS3.7 Annex C: 0120 (missing attribute), 0121 (missing attribute value), 0105 (an
attribute an N-SET may not carry), 0106 (invalid attribute value), each with the
Attribute Identifier List (0000,1005) of the attributes at fault.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = [
    "COMPLETED",
    "CREATE_RULES",
    "DISCONTINUED",
    "FINAL_STATES",
    "IN_PROGRESS",
    "STATUS_TAG",
    "Problem",
    "Rule",
    "attribute_list",
    "check_create",
    "check_final",
    "check_set",
    "tag_name",
]

#: Performed Procedure Step Status (0040,0252) and its enumerated values (PS3.3 C.4.14).
STATUS_TAG = 0x00400252
IN_PROGRESS = "IN PROGRESS"
COMPLETED = "COMPLETED"
DISCONTINUED = "DISCONTINUED"
FINAL_STATES = frozenset((COMPLETED, DISCONTINUED))
STATES = frozenset((IN_PROGRESS, COMPLETED, DISCONTINUED))

SPECIFIC_CHARACTER_SET = 0x00080005
SCHEDULED_STEP_ATTRIBUTES = 0x00400270
PERFORMED_SERIES = 0x00400340


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of Table F.7.2-1: N-CREATE type, N-SET allowed, final-state value needed."""

    tag: int
    create: str
    settable: bool
    final: bool = False
    items: tuple[Rule, ...] = ()


def _rows(settable: bool, *rows: tuple[int, str] | Rule) -> tuple[Rule, ...]:
    return tuple(r if isinstance(r, Rule) else Rule(r[0], r[1], settable) for r in rows)


#: The items of Scheduled Step Attributes Sequence (0040,0270): all "Not allowed" in N-SET.
_SCHEDULED_ITEM = _rows(
    False,
    (0x0020000D, "1"),  # Study Instance UID
    (0x00081110, "2"),  # Referenced Study Sequence
    (0x00080050, "2"),  # Accession Number
    (0x00401001, "2"),  # Requested Procedure ID
    (0x00321060, "2"),  # Requested Procedure Description
    (0x00400009, "2"),  # Scheduled Procedure Step ID
    (0x00400007, "2"),  # Scheduled Procedure Step Description
    (0x00400008, "2"),  # Scheduled Protocol Code Sequence
)

#: The items of Performed Series Sequence (0040,0340), whenever an item is sent.
_SERIES_ITEM = _rows(
    True,
    (0x00081050, "2"),  # Performing Physician's Name
    (0x00181030, "1"),  # Protocol Name
    (0x00081070, "2"),  # Operators' Name
    (0x0020000E, "1"),  # Series Instance UID
    (0x0008103E, "2"),  # Series Description
    (0x00080054, "2"),  # Retrieve AE Title
    (0x00081140, "2"),  # Referenced Image Sequence
    (0x00400220, "2"),  # Referenced Non-Image Composite SOP Instance Sequence
)

#: Table F.7.2-1, top level (Type 3 rows that an N-SET may carry are not listed: anything
#: not listed may be sent in either request).
CREATE_RULES: tuple[Rule, ...] = (
    # SOP Common / Performed Procedure Step Relationship
    Rule(SCHEDULED_STEP_ATTRIBUTES, "1", False, items=_SCHEDULED_ITEM),
    *_rows(
        False,
        (0x00100010, "2"),  # Patient's Name
        (0x00100020, "2"),  # Patient ID
        (0x00100030, "2"),  # Patient's Birth Date
        (0x00100040, "2"),  # Patient's Sex
        (0x00081120, "2"),  # Referenced Patient Sequence
        # Performed Procedure Step Information
        (0x00400253, "1"),  # Performed Procedure Step ID
        (0x00400241, "1"),  # Performed Station AE Title
        (0x00400242, "2"),  # Performed Station Name
        (0x00400243, "2"),  # Performed Location
        (0x00400244, "1"),  # Performed Procedure Step Start Date
        (0x00400245, "1"),  # Performed Procedure Step Start Time
        # Image Acquisition Results
        (0x00080060, "1"),  # Modality
        (0x00200010, "2"),  # Study ID
    ),
    Rule(STATUS_TAG, "1", True),
    *_rows(
        True,
        (0x00400254, "2"),  # Performed Procedure Step Description
        (0x00400255, "2"),  # Performed Procedure Type Description
        (0x00081032, "2"),  # Procedure Code Sequence
        (0x00400260, "2"),  # Performed Protocol Code Sequence
    ),
    Rule(0x00400250, "2", True, final=True),  # Performed Procedure Step End Date
    Rule(0x00400251, "2", True, final=True),  # Performed Procedure Step End Time
    Rule(PERFORMED_SERIES, "2", True, final=True, items=_SERIES_ITEM),
)

#: What an N-SET may not carry (Table F.7.2-1 "Not allowed"), item rows included.
_NOT_SETTABLE = frozenset(rule.tag for rule in CREATE_RULES if not rule.settable)


@dataclass(frozen=True, slots=True)
class Problem:
    """One attribute at fault: ``kind`` is missing, empty, not-allowed or invalid."""

    kind: str
    tag: int
    path: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}"


def tag_name(tag: int) -> str:
    """The keyword of ``tag`` (its (gggg,eeee) form when the dictionary has none)."""
    from pydicom.datadict import keyword_for_tag

    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _is_empty(dataset: Dataset, tag: int) -> bool:
    value = dataset[tag].value
    if value is None:
        return True
    if isinstance(value, str | bytes):
        return not value.strip(" \0") if isinstance(value, str) else not value
    try:
        return len(value) == 0
    except TypeError:
        return False


def _check_rules(
    dataset: Dataset,
    rules: Iterable[Rule],
    check_type2: bool,
    prefix: str = "",
) -> list[Problem]:
    problems: list[Problem] = []
    for rule in rules:
        path = prefix + tag_name(rule.tag)
        if rule.tag not in dataset:
            if rule.create == "1" or (rule.create == "2" and check_type2):
                problems.append(Problem("missing", rule.tag, path))
            continue
        if rule.create == "1" and _is_empty(dataset, rule.tag):
            problems.append(Problem("empty", rule.tag, path))
            continue
        problems.extend(_check_items(dataset, rule, check_type2, path))
    return problems


def _check_items(dataset: Dataset, rule: Rule, check_type2: bool, path: str) -> list[Problem]:
    if not rule.items or dataset[rule.tag].VR != "SQ":
        return []
    problems: list[Problem] = []
    for item in dataset[rule.tag].value or ():
        problems.extend(_check_rules(item, rule.items, check_type2, path + ">"))
    return problems


def check_create(dataset: Dataset | None, *, check_type2: bool = False) -> list[Problem]:
    """What an N-CREATE attribute list lacks, or has wrong (PS3.4 F.7.2.1).

    Type 1 attributes must be there with a value, Type 2 ones (when ``check_type2``) at
    least present; the Performed Procedure Step Status must be IN PROGRESS (F.7.2.1.3).
    """
    if dataset is None:
        return [
            Problem("missing", rule.tag, tag_name(rule.tag))
            for rule in CREATE_RULES
            if rule.create == "1" or (rule.create == "2" and check_type2)
        ]
    problems = _check_rules(dataset, CREATE_RULES, check_type2)
    if not problems and str(dataset[STATUS_TAG].value).strip() != IN_PROGRESS:
        problems.append(Problem("invalid", STATUS_TAG, tag_name(STATUS_TAG)))
    return problems


def check_set(modification: Dataset | None, *, check_type2: bool = False) -> list[Problem]:
    """What an N-SET modification list may not carry, or carries wrong (PS3.4 F.7.2.2).

    "Not allowed" attributes are refused (Specific Character Set excepted: a modification
    with non-ASCII names needs it); a status must be one of the enumerated values; a
    Performed Series Sequence item must hold its Type 1 attributes.
    """
    if modification is None:
        return []
    problems = [
        Problem("not-allowed", int(element.tag), tag_name(int(element.tag)))
        for element in modification
        if int(element.tag) in _NOT_SETTABLE
    ]
    if STATUS_TAG in modification:
        value = str(modification[STATUS_TAG].value or "").strip()
        if value not in STATES:
            problems.append(Problem("invalid", STATUS_TAG, tag_name(STATUS_TAG)))
    for rule in CREATE_RULES:
        if rule.items and rule.settable and rule.tag in modification:
            problems.extend(_check_items(modification, rule, check_type2, tag_name(rule.tag)))
    return problems


def check_final(dataset: Dataset, status: str) -> list[Problem]:
    """What the final state lacks (Table F.7.2-1 "Final State" column, its Note 2).

    End Date and End Time need values; a COMPLETED step needs at least one Performed
    Series Sequence item. A DISCONTINUED one may have none (a step stopped before
    anything was acquired, as IHE Scheduled Workflow allows).
    """
    problems: list[Problem] = []
    for rule in CREATE_RULES:
        if not rule.final:
            continue
        path = tag_name(rule.tag)
        if rule.tag == PERFORMED_SERIES and status == DISCONTINUED:
            continue
        if rule.tag not in dataset:
            problems.append(Problem("missing", rule.tag, path))
        elif _is_empty(dataset, rule.tag):
            problems.append(Problem("empty", rule.tag, path))
    return problems


def attribute_list(problems: Sequence[Problem]) -> list[int]:
    """The Attribute Identifier List (0000,1005) of ``problems``: each tag once, in order."""
    return list(dict.fromkeys(problem.tag for problem in problems))
