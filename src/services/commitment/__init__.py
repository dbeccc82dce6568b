"""Storage Commitment Push Model (PS3.4 Annex J.3): SCP, SCU and the reports between them.

- :mod:`.model` — the SOP class, the N-ACTION and N-EVENT-REPORT information, the
  :class:`CommitmentReport` and the Failure Reasons (PS3.3 C.14);
- :mod:`.scp` — :class:`StorageCommitment`, the node service (``[storage_commitment]``):
  durable report jobs, reports on the same or a new association, and the node's inbox for
  reports of transactions it started;
- :mod:`.scu` — :func:`commit` (``dicomwire commit``) and the pending-transactions registry.

See docs/commitment.md.
"""

from __future__ import annotations

from .model import (
    FAILURE_REASONS,
    STORAGE_COMMITMENT_INSTANCE,
    STORAGE_COMMITMENT_SOP_CLASS,
    CommitmentReport,
)
from .scp import REPORT_JOB, StorageCommitment, StorageCommitmentConfig, new_transaction_uid
from .scu import PendingCommitments, ReportInbox, commit, describe_status, references

__all__ = [
    "FAILURE_REASONS",
    "REPORT_JOB",
    "STORAGE_COMMITMENT_INSTANCE",
    "STORAGE_COMMITMENT_SOP_CLASS",
    "CommitmentReport",
    "PendingCommitments",
    "ReportInbox",
    "StorageCommitment",
    "StorageCommitmentConfig",
    "commit",
    "describe_status",
    "new_transaction_uid",
    "references",
]
