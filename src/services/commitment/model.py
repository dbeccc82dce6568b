"""Storage Commitment Push Model data: PS3.4 Annex J.3 and the Storage Commitment Module
of PS3.3 C.14.

Pure functions shared by the SCP and the SCU: the N-ACTION information (action type 1,
PS3.4 Table J.3-1) checked as J.3.2.1.3 wants it answered (0120/0121 naming the attribute
in the Attribute Identifier List, PS3.7 C.5.14-C.5.15), the N-EVENT-REPORT information
built (event type 1: all committed; type 2: failures exist, PS3.4 Table J.3-2) and read
back into a :class:`CommitmentReport`, and the Failure Reasons of PS3.3 C.14.1.1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...ul.identifiers import is_valid_uid

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = [
    "ACTION_TYPE_REQUEST",
    "EVENT_TYPE_FAILURES",
    "EVENT_TYPE_SUCCESS",
    "FAILURE_REASONS",
    "STORAGE_COMMITMENT_INSTANCE",
    "STORAGE_COMMITMENT_SOP_CLASS",
    "ActionProblem",
    "CommitmentReport",
    "event_information",
    "parse_action",
    "parse_report",
]

#: Storage Commitment Push Model SOP Class and its well-known instance (PS3.4 J.3.1, J.3.2).
STORAGE_COMMITMENT_SOP_CLASS = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
#: N-ACTION Action Type ID: Request Storage Commitment (PS3.4 Table J.3-1).
ACTION_TYPE_REQUEST = 1
#: N-EVENT-REPORT Event Type IDs (PS3.4 Table J.3-2).
EVENT_TYPE_SUCCESS = 1
EVENT_TYPE_FAILURES = 2

#: Failure Reason (0008,1197) values (PS3.3 C.14.1.1).
FAILURE_REASONS: dict[int, str] = {
    0x0110: "processing failure",
    0x0112: "no such object instance",
    0x0119: "class / instance conflict",
    0x0122: "referenced SOP class not supported",
    0x0131: "duplicate transaction UID",
    0x0213: "resource limitation",
}

TRANSACTION_UID = 0x00081195
REFERENCED_SOP_SEQUENCE = 0x00081199
FAILED_SOP_SEQUENCE = 0x00081198
REFERENCED_SOP_CLASS_UID = 0x00081150
REFERENCED_SOP_INSTANCE_UID = 0x00081155
FAILURE_REASON = 0x00081197

MISSING_ATTRIBUTE = 0x0120
MISSING_ATTRIBUTE_VALUE = 0x0121
INVALID_ARGUMENT_VALUE = 0x0115


@dataclass(frozen=True, slots=True)
class ActionProblem:
    """Why an N-ACTION's information is refused: its status, the attributes, a comment."""

    status: int
    attributes: tuple[int, ...]
    comment: str


@dataclass(slots=True)
class CommitmentReport:
    """What the SCP reported for one transaction (PS3.4 J.3.3).

    ``committed`` holds (SOP Instance UID, SOP Class UID) pairs; ``failed`` holds
    (SOP Instance UID, SOP Class UID, Failure Reason). ``missing`` lists instances the
    request named that the report mentions nowhere (the SCP broke J.3.3.1.2): they are
    not committed. ``reporter`` is the calling AE title of the association the report
    came on, ``same_association`` whether it was the N-ACTION's own.
    """

    transaction_uid: str
    event_type: int
    committed: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, int]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    reporter: str = ""
    same_association: bool = False

    @property
    def all_committed(self) -> bool:
        """True when every requested instance is committed."""
        return not self.failed and not self.missing and self.event_type == EVENT_TYPE_SUCCESS

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``dicomwire commit --json``)."""
        return {
            "transaction_uid": self.transaction_uid,
            "event_type": self.event_type,
            "all_committed": self.all_committed,
            "reporter": self.reporter,
            "same_association": self.same_association,
            "committed": [{"sop_instance_uid": u, "sop_class_uid": c} for u, c in self.committed],
            "failed": [
                {
                    "sop_instance_uid": u,
                    "sop_class_uid": c,
                    "failure_reason": f"{r:04X}",
                    "meaning": FAILURE_REASONS.get(r, "unknown reason"),
                }
                for u, c, r in self.failed
            ],
            "missing": [{"sop_instance_uid": u, "sop_class_uid": c} for u, c in self.missing],
        }


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _references(
    dataset: Dataset, tag: int, name: str
) -> tuple[list[tuple[str, str]], ActionProblem | None]:
    """(class, instance) of each item of a reference sequence, or what is wrong with it."""
    if tag not in dataset:
        return [], ActionProblem(MISSING_ATTRIBUTE, (tag,), f"no {name}")
    items = dataset[tag].value or []
    if not items:
        return [], ActionProblem(MISSING_ATTRIBUTE_VALUE, (tag,), f"{name} is empty")
    pairs: list[tuple[str, str]] = []
    for number, item in enumerate(items, 1):
        for wanted, keyword in (
            (REFERENCED_SOP_CLASS_UID, "Referenced SOP Class UID"),
            (REFERENCED_SOP_INSTANCE_UID, "Referenced SOP Instance UID"),
        ):
            if wanted not in item:
                return [], ActionProblem(
                    MISSING_ATTRIBUTE, (wanted,), f"item {number} has no {keyword}"
                )
            if not _text(item[wanted].value):
                return [], ActionProblem(
                    MISSING_ATTRIBUTE_VALUE, (wanted,), f"item {number}: {keyword} is empty"
                )
        sop_class = _text(item[REFERENCED_SOP_CLASS_UID].value)
        sop_instance = _text(item[REFERENCED_SOP_INSTANCE_UID].value)
        for uid, tag_of in (
            (sop_class, REFERENCED_SOP_CLASS_UID),
            (sop_instance, REFERENCED_SOP_INSTANCE_UID),
        ):
            if not is_valid_uid(uid):
                return [], ActionProblem(
                    INVALID_ARGUMENT_VALUE, (tag_of,), f"item {number}: {uid[:30]!r} is no UID"
                )
        pairs.append((sop_class, sop_instance))
    return pairs, None


def parse_action(dataset: Dataset | None) -> tuple[str, list[tuple[str, str]]] | ActionProblem:
    """The Transaction UID and the (class, instance) pairs of an N-ACTION's information.

    Missing Transaction UID or Referenced SOP Sequence (or their items' UIDs): 0120 with
    the attribute; present without a value: 0121 (PS3.4 Table J.3-1 makes them type 1).
    """
    if dataset is None:
        return ActionProblem(
            MISSING_ATTRIBUTE,
            (TRANSACTION_UID, REFERENCED_SOP_SEQUENCE),
            "no action information",
        )
    if TRANSACTION_UID not in dataset:
        return ActionProblem(MISSING_ATTRIBUTE, (TRANSACTION_UID,), "no Transaction UID")
    transaction = _text(dataset[TRANSACTION_UID].value)
    if not transaction:
        return ActionProblem(MISSING_ATTRIBUTE_VALUE, (TRANSACTION_UID,), "Transaction UID empty")
    if not is_valid_uid(transaction):
        return ActionProblem(
            INVALID_ARGUMENT_VALUE, (TRANSACTION_UID,), "Transaction UID is not a UID"
        )
    pairs, problem = _references(dataset, REFERENCED_SOP_SEQUENCE, "Referenced SOP Sequence")
    if problem is not None:
        return problem
    return transaction, pairs


def action_information(transaction_uid: str, instances: Iterable[tuple[str, str]]) -> Dataset:
    """The N-ACTION information for (class, instance) pairs (PS3.4 Table J.3-1)."""
    from pydicom import Dataset

    dataset = Dataset()
    dataset.TransactionUID = transaction_uid
    dataset.ReferencedSOPSequence = [_reference(c, i) for c, i in instances]
    return dataset


def _reference(sop_class: str, sop_instance: str, reason: int | None = None) -> Dataset:
    from pydicom import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    if reason is not None:
        item.FailureReason = reason
    return item


def event_information(
    transaction_uid: str,
    committed: Sequence[tuple[str, str]],
    failed: Sequence[tuple[str, str, int]],
) -> tuple[int, Dataset]:
    """The Event Type ID and the N-EVENT-REPORT information (PS3.4 Table J.3-2).

    ``committed`` holds (class, instance), ``failed`` (class, instance, reason). Event type
    1 lists the committed instances; type 2 adds the Failed SOP Sequence (and leaves the
    Referenced SOP Sequence out when nothing was committed).
    """
    from pydicom import Dataset

    dataset = Dataset()
    dataset.TransactionUID = transaction_uid
    if committed:
        dataset.ReferencedSOPSequence = [_reference(c, i) for c, i in committed]
    if not failed:
        return EVENT_TYPE_SUCCESS, dataset
    dataset.FailedSOPSequence = [_reference(c, i, r) for c, i, r in failed]
    return EVENT_TYPE_FAILURES, dataset


def parse_report(event_type: int, dataset: Dataset) -> CommitmentReport:
    """A :class:`CommitmentReport` from an N-EVENT-REPORT's type and information.

    Raises ValueError naming what is wrong (no Transaction UID, a malformed item).
    """
    transaction = _text(dataset.get("TransactionUID"))
    if not transaction:
        raise ValueError("the event information has no Transaction UID")
    report = CommitmentReport(transaction, event_type)
    for item in dataset.get("ReferencedSOPSequence") or []:
        sop_class = _text(item.get("ReferencedSOPClassUID"))
        sop_instance = _text(item.get("ReferencedSOPInstanceUID"))
        if not sop_instance:
            raise ValueError("a Referenced SOP Sequence item has no SOP Instance UID")
        report.committed.append((sop_instance, sop_class))
    for item in dataset.get("FailedSOPSequence") or []:
        sop_class = _text(item.get("ReferencedSOPClassUID"))
        sop_instance = _text(item.get("ReferencedSOPInstanceUID"))
        if not sop_instance:
            raise ValueError("a Failed SOP Sequence item has no SOP Instance UID")
        reason = item.get("FailureReason")
        report.failed.append((sop_instance, sop_class, int(reason) if reason is not None else 0))
    return report
