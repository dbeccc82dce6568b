"""The audit trail of one tool run: ``dicomwire store|find|get|... --audit DEST`` (PS3.15 A.5.3).

The SCU side of the events the node records: Application Activity when the tool starts
and stops (A.5.3.1), DICOM Instances Transferred for what it sends (store: action R) or
receives (get, move with ``--receive-port``: action C) (A.5.3.7), Query for its C-FINDs
(find, worklist query; A.5.3.10), Data Export for what it prints on film and for the
instances it asks a peer to commit (A.5.3.4), DICOM Instances Accessed for the index
rows of deleted instances that ``index rebuild`` removes (A.5.3.6, action D), Procedure
Record for its MPPS requests (A.5.3.15) and Order Record for worklist entries it adds or
removes (A.5.3.13). The participant objects are the patients and studies concerned.

:func:`audited` wraps a subcommand's runner (start, stop; one trail per run); a runner
reports its events through :func:`audit_of`, which is a no-op without ``--audit``.
``--audit file:`` alone is ``~/.dicomwire/audit.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import logging
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ...errors import DicomWireError
from . import messages as m
from .messages import FILM, URI_MEDIA
from .trail import AuditConfig, AuditTrail, make_sink

if TYPE_CHECKING:
    from pydicom import Dataset

    from ..index import Index
    from ..worklist.store import WorklistStore

__all__ = [
    "FILM",
    "URI_MEDIA",
    "ToolAudit",
    "audit_of",
    "audited",
    "default_tool_file",
    "record_orders",
    "record_removals",
]

log = logging.getLogger("dicomwire.services.audit")

#: How the identifier of a query is kept in the message (ParticipantObjectQuery).
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

Store = TypeVar("Store", bound="WorklistStore")
#: Exit status of a bad command line (the tools' convention).
USAGE = 2


def default_tool_file() -> Path:
    """Where ``--audit file:`` writes: the user's ``~/.dicomwire/audit.log``."""
    return Path.home() / ".dicomwire" / "audit.log"


class ToolAudit:
    """The events of one run of a tool; every method is a no-op when ``trail`` is None."""

    def __init__(self, args: argparse.Namespace, trail: AuditTrail | None) -> None:
        self.args = args
        self.trail = trail
        self.ae_title = str(getattr(args, "aet", None) or "DICOMWIRE")
        self.source = m.Source(self.ae_title)

    @classmethod
    def open(cls, args: argparse.Namespace) -> ToolAudit:
        """The trail ``--audit`` asks for (started), or a silent one."""
        destinations: Sequence[str] = getattr(args, "audit", None) or ()
        if not destinations:
            return cls(args, None)
        from ..cli.flags import tls_config_from_arguments

        config = AuditConfig(destinations=list(destinations), spool=False)
        tls = tls_config_from_arguments(args)
        sinks = [
            make_sink(d, config, default_file=default_tool_file(), tls=tls) for d in destinations
        ]
        command = str(getattr(args, "command", "") or "tool")
        trail = AuditTrail(sinks, app_name=f"dicomwire-{command}").start()
        return cls(args, trail)

    @property
    def enabled(self) -> bool:
        return self.trail is not None

    def record(self, message: m.AuditMessage | Callable[[], m.AuditMessage | None]) -> None:
        if self.trail is not None:
            self.trail.record(message)

    def close(self) -> None:
        trail, self.trail = self.trail, None
        if trail is not None:
            trail.close()
            if trail.dropped:
                log.error("audit: %d message(s) dropped", trail.dropped)

    # -- participants ----------------------------------------------------------------

    def us(self, role: m.Code | None) -> m.Participant:
        return m.Participant.ae(self.ae_title, True, role, socket.gethostname())

    def peer(self, role: m.Code | None) -> m.Participant:
        host = getattr(self.args, "host", None)
        return m.Participant.ae(str(getattr(self.args, "aec", "") or "-"), False, role, host)

    # -- events ----------------------------------------------------------------------

    def transferred(
        self,
        paths: Iterable[Path],
        *,
        exported: bool,
        outcome: int = m.SUCCESS,
        description: str | None = None,
    ) -> None:
        """Instances sent (store: we are the source) or received (get/move: destination)."""
        if not self.enabled:
            return
        files = list(paths)
        if exported:
            sender, receiver = self.us(m.SOURCE), self.peer(m.DESTINATION)
        else:
            sender, receiver = self.peer(m.SOURCE), self.us(m.DESTINATION)

        from .service import files_transferred

        self.record(
            files_transferred(
                self.source,
                files,
                sender=sender,
                receiver=receiver,
                imported=not exported,
                outcome=outcome,
                description=description,
            )
        )

    def query(self, sop_class_uid: str, identifier: Dataset, outcome: int = m.SUCCESS) -> None:
        """A C-FIND we sent (find, worklist query), with its identifier."""
        if not self.enabled:
            return
        from ...dimse.datasets import encode_identifier

        self.record(
            m.query(
                self.source,
                requestor=self.us(m.SOURCE),
                responder=self.peer(m.DESTINATION),
                sop_class_uid=sop_class_uid,
                identifier=encode_identifier(identifier, EXPLICIT_VR_LITTLE_ENDIAN),
                transfer_syntax=EXPLICIT_VR_LITTLE_ENDIAN,
                outcome=outcome,
            )
        )

    def exported(
        self,
        paths: Iterable[Path],
        *,
        media: m.Code,
        outcome: int = m.SUCCESS,
        description: str | None = None,
    ) -> None:
        """Data Export: images printed on film (the printer), instances handed to a peer."""
        if not self.enabled:
            return
        files = list(paths)
        target = self.peer(m.DESTINATION_MEDIA)
        host, port = getattr(self.args, "host", "-"), getattr(self.args, "port", "")
        media_participant = m.Participant(
            f"dicom://{target.user_id}@{host}:{port}",
            False,
            (m.DESTINATION_MEDIA,),
            alternative_user_id=target.alternative_user_id,
            address=target.address,
            media=media,
        )
        exporter = self.us(m.SOURCE)

        def build() -> m.AuditMessage:
            patients, studies = describe_files(files)
            return m.data_export(
                self.source,
                exporter=exporter,
                media=media_participant,
                patients=patients,
                studies=studies,
                outcome=outcome,
                description=description,
            )

        self.record(build)

    def procedure(self, dataset: Dataset, *, create: bool, outcome: int = m.SUCCESS) -> None:
        """Procedure Record: an MPPS we created (C) or set (U)."""
        if not self.enabled:
            return
        self.record(
            m.order_or_procedure_record(
                self.source,
                procedure=True,
                action="C" if create else "U",
                requestor=self.us(None),
                node=self.peer(None),
                patient=_patient(dataset),
                studies=_studies(dataset),
                outcome=outcome,
            )
        )

    def worklist_store(self, store: Store) -> Store:
        """``store`` with its add/remove recording Order Records (this tool, no peer)."""
        if self.enabled:
            record_orders(store, self.record, self.source, self.us(None), self.us(None))
        return store


def record_removals(index: Index, audit: ToolAudit) -> Callable[[], None]:
    """Make ``index.remove`` collect what it removes; the returned function records it.

    ``dicomwire index rebuild`` removes the rows of instances whose files are gone: the
    node no longer holds them. Recorded as DICOM Instances Accessed, action D (A.5.3.6),
    one message per patient with its studies and SOP classes (read from the row before it
    goes), the tool as the accessor. Nothing is collected without ``--audit``.
    """
    if not audit.enabled:
        return lambda: None
    from pydicom import Dataset

    remove = index.remove
    removed: dict[tuple[str, str | None], dict[str, Counter[str]]] = {}

    def audited_remove(sop_instance_uid: str) -> bool:
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.SOPInstanceUID = sop_instance_uid
        for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "SOPClassUID"):
            setattr(query, keyword, "")
        rows: list[Dataset] = []
        with contextlib.suppress(Exception):  # a row that cannot be read is still removed
            rows = list(index.find("IMAGE", query))
        done = remove(sop_instance_uid)
        for row in rows[:1] if done else ():
            studies = removed.setdefault(_patient(row), {})
            study = str(row.get("StudyInstanceUID", "") or "") or "-"
            studies.setdefault(study, Counter())[str(row.get("SOPClassUID", ""))] += 1
        return done

    def flush() -> None:
        accessor = audit.us(None)
        for patient, studies in removed.items():
            count = sum(sum(c.values()) for c in studies.values())
            audit.record(
                m.instances_accessed(
                    audit.source,
                    action="D",
                    accessors=[accessor],
                    patient=patient,
                    studies=[m.study_object(u, sorted(c.items())) for u, c in studies.items()],
                    description=f"{count} index row(s) of deleted files removed",
                )
            )
        removed.clear()

    index.remove = audited_remove  # type: ignore[method-assign]
    return flush


def record_orders(
    store: WorklistStore,
    record: Callable[[m.AuditMessage], None],
    source: m.Source,
    requestor: m.Participant,
    node: m.Participant,
) -> None:
    """Make ``store.add``/``remove``/``set_step_status`` record Order Record C/D/U (A.5.3.13).

    ``set_step_status`` is how the node's MPPS moves a worklist entry on (STARTED,
    COMPLETED, DISCONTINUED): an update of the order.
    """
    add, remove = store.add, store.remove

    def message(action: str, dataset: Dataset | None, outcome: int, what: str) -> m.AuditMessage:
        patient = _patient(dataset) if dataset is not None else ("-", None)
        studies = _studies(dataset) if dataset is not None else ()
        return m.order_or_procedure_record(
            source,
            procedure=False,
            action=action,
            requestor=requestor,
            node=node,
            patient=patient,
            studies=studies,
            outcome=outcome,
            description=what,
        )

    def audited_add(dataset: Dataset) -> str:
        try:
            key = add(dataset)
        except Exception as exc:
            record(message("C", dataset, m.MINOR_FAILURE, f"worklist entry refused: {exc}"))
            raise
        record(message("C", dataset, m.SUCCESS, f"worklist entry {key} added"))
        return key

    def audited_remove(key: str) -> int:
        removed: list[Dataset] = []
        with contextlib.suppress(Exception):
            removed = [
                entry.dataset
                for entry in store.entries()
                if entry.source == "api"
                and (entry.key == key or entry.dataset.get("StudyInstanceUID", "") == key)
            ]
        count = remove(key)
        if count:
            for dataset in removed or [None]:  # type: ignore[list-item]
                record(message("D", dataset, m.SUCCESS, f"worklist entry {key} removed"))
        return count

    set_step_status = store.set_step_status

    def audited_set_step_status(study_instance_uid: str, step_id: str | None, status: str) -> int:
        study = study_instance_uid
        changed = set_step_status(study, step_id, status)
        if changed:  # the MPPS moved the order on (worklist_follows_mpps)
            entries: list[Dataset] = []
            with contextlib.suppress(Exception):
                entries = [
                    e.dataset
                    for e in store.entries()
                    if e.source == "api" and e.dataset.get("StudyInstanceUID", "") == study
                ]
            what = f"scheduled step {step_id or '(any)'} of study {study} now {status}"
            for dataset in entries[:1] or [None]:  # type: ignore[list-item]
                record(message("U", dataset, m.SUCCESS, what))
        return changed

    store.add = audited_add  # type: ignore[method-assign]
    store.remove = audited_remove  # type: ignore[method-assign]
    store.set_step_status = audited_set_step_status  # type: ignore[method-assign]


def _patient(dataset: Dataset) -> tuple[str, str | None]:
    return (
        str(dataset.get("PatientID", "") or "") or "-",
        str(dataset.get("PatientName", "") or "") or None,
    )


def _studies(dataset: Dataset) -> list[str]:
    uids = [str(dataset.get("StudyInstanceUID", "") or "")]
    for item in dataset.get("ScheduledStepAttributesSequence", None) or ():
        uids.append(str(item.get("StudyInstanceUID", "") or ""))
    return list(dict.fromkeys(uid for uid in uids if uid))


def describe_files(
    paths: list[Path],
) -> tuple[list[tuple[str, str | None]], list[m.ParticipantObject]]:
    from .service import _describe_files

    return _describe_files(paths)


# --------------------------------------------------------------------------- runs


def audit_of(args: argparse.Namespace) -> ToolAudit:
    """The audit of this run (silent when the tool has no ``--audit``)."""
    audit = getattr(args, "audit_run", None)
    return audit if isinstance(audit, ToolAudit) else ToolAudit(args, None)


Runner = Callable[[argparse.Namespace], int | Awaitable[int]]


def audited(run: Runner) -> Runner:
    """``run`` between Application Activity start and stop when ``--audit`` is given."""
    if inspect.iscoroutinefunction(run):

        @functools.wraps(run)
        async def run_async(args: argparse.Namespace) -> int:
            audit = _begin(args)
            if audit is None:
                return USAGE
            try:
                return int(await run(args))
            finally:
                await _end_async(audit)

        return run_async

    @functools.wraps(run)
    def run_sync(args: argparse.Namespace) -> int:
        audit = _begin(args)
        if audit is None:
            return USAGE
        try:
            result: Any = run(args)
            return int(result)
        finally:
            _end(audit)

    return run_sync


def _begin(args: argparse.Namespace) -> ToolAudit | None:
    """The run's trail, started (Application Start recorded); None: unusable ``--audit``."""
    try:
        audit = ToolAudit.open(args)
    except DicomWireError as exc:  # e.g. tls:// without --tls certificates
        sys.stderr.write(f"dicomwire {getattr(args, 'command', '')}: --audit: {exc}\n")
        return None
    args.audit_run = audit
    audit.record(m.application_activity(audit.source, True, user=_user()))
    return audit


def _end(audit: ToolAudit) -> None:
    audit.record(m.application_activity(audit.source, False, user=_user()))
    audit.close()


async def _end_async(audit: ToolAudit) -> None:
    import asyncio

    await asyncio.to_thread(_end, audit)


def _user() -> str | None:
    from .service import _user as user

    return user()
