"""The Storage Commitment Push Model SCP as a node service (PS3.4 J.3.2, J.3.3).

N-ACTION (action type 1) is checked (PS3.4 J.3.2.1.3: 0117 for another SOP instance than
the well-known one, 0123 for another action type, 0120/0121 naming the attribute in the
Attribute Identifier List), written to the durable job queue (:mod:`..jobs`, keyed by the
Transaction UID) and only then answered 0000: accepted is not committed. A
:class:`~..jobs.JobRunner` then checks each referenced instance against the index and its
file (present, the same SOP class, readable and whole: :func:`~..storage.inspect_file`)
and sends the result as N-EVENT-REPORT (J.3.3: event type 1, or 2 with the Failed SOP
Sequence and a Failure Reason per instance). The report goes on the N-ACTION's
association when it is still open and ``same_association`` allows it, otherwise on a new
association to the requester's entry in the AE directory, proposing the SCP role for the
SOP class (PS3.7 D.3.3.4: SCU role 0, SCP role 1) and calling with the AE title the
N-ACTION was addressed to (J.3.3.1.2 note; Orthanc ignores a report from another AE).
A node restarted between the N-ACTION and the report still sends it (the job is in the
database); an unreachable requester is retried with backoff, then the job is failed and
logged.

The same service also serves the node's SCU side: the N-EVENT-REPORTs of transactions the
node started (:class:`~.scu.PendingCommitments`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ...dimse.commands import CommandField, Tag
from ...dimse.primitives import DimseResponse, NActionRQ, NEventReportRQ
from ...dimse.session import DimseSession, Request, open_session
from ...dimse.status import (
    NO_SUCH_ACTION_TYPE,
    NO_SUCH_EVENT_TYPE,
    PROCESSING_FAILURE,
    SUCCESS,
    Status,
)
from ...errors import ConfigError, DicomWireError, DimseStatusError, Part10Error
from ...ul.association import Timeouts
from ...ul.negotiation import (
    DEFAULT_MAX_PDU_LENGTH,
    DEFAULT_TRANSFER_SYNTAXES,
    RequestorConfig,
)
from ..service import Binding, Service, StatusDeclaration, StatusTable
from .model import (
    ACTION_TYPE_REQUEST,
    FAILURE_REASONS,
    INVALID_ARGUMENT_VALUE,
    MISSING_ATTRIBUTE,
    MISSING_ATTRIBUTE_VALUE,
    STORAGE_COMMITMENT_INSTANCE,
    STORAGE_COMMITMENT_SOP_CLASS,
    event_information,
    parse_action,
)
from .scu import PendingCommitments

if TYPE_CHECKING:
    from pydicom import Dataset

    from ...ul.tls import TLSConfig
    from ..directory import AEDirectory
    from ..index import Index, IndexedInstance
    from ..jobs import Job, JobQueue, JobRunner
    from ..node import Node

__all__ = ["REPORT_JOB", "StorageCommitment", "StorageCommitmentConfig", "new_transaction_uid"]

log = logging.getLogger("dicomwire.services.commitment")

#: The job kind of a report owed to a requester (payload: see ``_payload``).
REPORT_JOB = "storage-commitment-report"
#: The AE directory purpose of a requester that gets reports on a new association.
PURPOSE = "storage-commitment"
INVALID_OBJECT_INSTANCE = Status(0x0117)
#: Instance UIDs asked of the index at once (one UID-list query each).
_LOOKUP_CHUNK = 500


def new_transaction_uid() -> str:
    """A fresh Transaction UID (PS3.5 B.2: a UUID under 2.25)."""
    return f"2.25.{uuid.uuid4().int}"


@dataclass(slots=True)
class StorageCommitmentConfig:
    """The ``[storage_commitment]`` table."""

    #: Report on the N-ACTION's association when it is still open (else: a new one).
    same_association: bool = True
    #: Seconds between accepting a request and checking its instances (a modality may ask
    #: while its last C-STOREs are still arriving on another association).
    report_delay: float = 0.0
    #: Seconds to wait for the requester's N-EVENT-REPORT-RSP.
    report_timeout: float = 30.0
    #: Retry of an undelivered report: first delay, growth factor, ceiling, attempts.
    retry_first_delay: float = 5.0
    retry_factor: float = 2.0
    retry_max_delay: float = 300.0
    max_attempts: int = 10
    #: Reports checked and sent at once.
    concurrency: int = 4
    #: Seconds a runner holds a report job (a node that died releases it after this).
    lease: float = 120.0
    #: Instances per request checked; those beyond get Failure Reason 0213.
    max_instances: int = 50000

    def validate(self) -> StorageCommitmentConfig:
        """Raise ConfigError naming the first bad key."""
        if not isinstance(self.same_association, bool):
            raise ConfigError(
                "storage_commitment.same_association must be true or false", key="same_association"
            )
        for name in (
            "report_delay",
            "report_timeout",
            "retry_first_delay",
            "retry_factor",
            "retry_max_delay",
            "lease",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(
                    f"storage_commitment.{name} must be a number of seconds, not {value!r}",
                    key=name,
                )
        for name in ("max_attempts", "concurrency", "max_instances"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"storage_commitment.{name} must be a whole number from 1, not {value!r}",
                    key=name,
                )
        return self


@dataclass(slots=True)
class _Live:
    """The association a request came on, while its report may still use it."""

    session: DimseSession
    context_id: int
    answering: asyncio.Task[Any] | None


class StorageCommitment(Service):
    """Storage Commitment Push Model: SCP (N-ACTION, reports) and the node's report inbox.

    ``index``, ``jobs`` and ``directory`` default to the node's (its database file and
    ``[[nodes]]``) when the node starts the service.
    """

    name = "storage-commitment"
    statuses: ClassVar[StatusTable] = {
        "N-ACTION": (
            StatusDeclaration(SUCCESS, "the request is accepted; the report follows"),
            StatusDeclaration(INVALID_OBJECT_INSTANCE, "not the well-known SOP instance"),
            StatusDeclaration(NO_SUCH_ACTION_TYPE, "the action type is not 1"),
            StatusDeclaration(MISSING_ATTRIBUTE, "no Transaction UID or referenced sequence"),
            StatusDeclaration(MISSING_ATTRIBUTE_VALUE, "an empty required attribute"),
            StatusDeclaration(INVALID_ARGUMENT_VALUE, "a malformed UID or reference"),
        ),
        "N-EVENT-REPORT": (  # a report on the association of our own request
            StatusDeclaration(SUCCESS, "the report is taken"),
            StatusDeclaration(INVALID_OBJECT_INSTANCE, "not the well-known SOP instance"),
            StatusDeclaration(NO_SUCH_EVENT_TYPE, "the event type is not 1 or 2"),
            StatusDeclaration(MISSING_ATTRIBUTE, "no event information"),
            StatusDeclaration(INVALID_ARGUMENT_VALUE, "the event information is malformed"),
            StatusDeclaration(PROCESSING_FAILURE, "an unknown Transaction UID"),
        ),
    }
    section = "storage_commitment"
    config_type = StorageCommitmentConfig

    def __init__(
        self,
        config: StorageCommitmentConfig | None = None,
        *,
        index: Index | None = None,
        jobs: JobQueue | None = None,
        directory: AEDirectory | None = None,
        tls: TLSConfig | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.config = (config or StorageCommitmentConfig()).validate()
        self.index = index
        self.jobs = jobs
        self.directory = directory
        self.tls = tls
        self.timeouts = timeouts
        #: Reports for the transactions this node started (its SCU side).
        self.pending = PendingCommitments()
        self.max_pdu_length: int | None = None
        self.runner: JobRunner | None = None
        self._live: dict[int, _Live] = {}
        self._opened: list[Any] = []
        self._accepting = asyncio.Lock()

    def bindings(self) -> Sequence[Binding]:
        return [
            Binding(
                STORAGE_COMMITMENT_SOP_CLASS,
                handlers={
                    CommandField.N_ACTION_RQ: self.handle_action,
                    CommandField.N_EVENT_REPORT_RQ: self.pending.handle_report,
                },
                requestor_may_be_scp=True,  # an SCP reporting to this node's SCU side
            )
        ]

    async def start(self, node: Node) -> None:
        """Open the node's index and job queue (unless given) and run owed reports."""
        from ..database import open_index, open_job_queue

        config = node.config
        if self.index is None:  # the node's (SQLite file or shared PostgreSQL)
            self.index = open_index(config)
            self._opened.append(self.index)
        if self.jobs is None:
            self.jobs = open_job_queue(config)
            self._opened.append(self.jobs)
        if self.directory is None:
            self.directory = node.directory
        if self.tls is None:
            self.tls = config.tls
        if self.timeouts is None:
            self.timeouts = config.timeouts
        self.max_pdu_length = config.max_pdu_length
        self.start_runner()

    def start_runner(self) -> None:
        """Start running the report jobs (:meth:`start` does; call it without a node)."""
        from ..jobs import JobRunner, RetryPolicy

        if self.runner is not None:
            return
        if self.jobs is None or self.index is None or self.directory is None:
            raise ConfigError("storage commitment needs an index, a job queue and a directory")
        config = self.config
        self.runner = JobRunner(
            self.jobs,
            [REPORT_JOB],
            self._report,
            policy=RetryPolicy(
                first_delay=config.retry_first_delay,
                factor=config.retry_factor,
                max_delay=config.retry_max_delay,
                max_attempts=config.max_attempts,
            ),
            owner=f"storage-commitment-{uuid.uuid4().hex[:8]}",
            concurrency=config.concurrency,
            poll=min(1.0, max(0.05, config.retry_first_delay / 2)),
            lease=config.lease,
        )
        self.runner.start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.stop()
            self.runner = None
        for opened in self._opened:
            opened.close()
        self._opened.clear()

    # -- N-ACTION ------------------------------------------------------------------------

    async def handle_action(self, request: Request) -> DimseResponse:
        """Check the request, persist its report job, then answer 0000 (PS3.4 J.3.2.1.3)."""
        primitive = request.primitive
        assert isinstance(primitive, NActionRQ)
        requester = request.negotiated.remote_ae_title
        if primitive.requested_sop_instance_uid != STORAGE_COMMITMENT_INSTANCE:
            log.warning(
                "N-ACTION from %s refused (0117): SOP instance %s is not %s",
                requester,
                primitive.requested_sop_instance_uid,
                STORAGE_COMMITMENT_INSTANCE,
            )
            return primitive.response(
                INVALID_OBJECT_INSTANCE, error_comment="not the well-known instance"
            )
        if primitive.action_type_id != ACTION_TYPE_REQUEST:
            log.warning(
                "N-ACTION from %s refused (0123): action type %s is not 1",
                requester,
                primitive.action_type_id,
            )
            return primitive.response(NO_SUCH_ACTION_TYPE, error_comment="action type must be 1")
        parsed = parse_action(request.decode())
        if not isinstance(parsed, tuple):
            log.warning(
                "N-ACTION from %s refused (%04X): %s", requester, parsed.status, parsed.comment
            )
            return primitive.response(
                parsed.status,
                error_comment=parsed.comment[:64],
                extra={int(Tag.AttributeIdentifierList): list(parsed.attributes)},
            )
        transaction, pairs = parsed
        live = _Live(request.session, request.context.context_id, _current())
        await self.accept(transaction, pairs, requester, request.negotiated.local_ae_title, live)
        if self.runner is not None:
            self.runner.wake()
        return primitive.response(SUCCESS)

    async def accept(
        self,
        transaction: str,
        pairs: Sequence[tuple[str, str]],
        requester: str,
        called: str,
        live: _Live | None = None,
    ) -> int:
        """Persist the report owed for ``transaction`` (durable when this returns); its job id.

        A Transaction UID already used gets its report too, every instance failed with
        0131 (duplicate transaction UID, PS3.3 C.14.1.1).
        """
        jobs = self.jobs
        if jobs is None:
            raise DicomWireError("storage commitment is not started (no job queue)")
        async with self._accepting:  # one check-then-put at a time for a Transaction UID
            earlier = await asyncio.to_thread(jobs.find, REPORT_JOB, transaction)
            payload = {
                "transaction_uid": transaction,
                "instances": [list(pair) for pair in pairs],
                "requester": requester,
                "called_ae": called,
                "duplicate": bool(earlier),
            }
            job_id = await asyncio.to_thread(
                jobs.put, REPORT_JOB, payload, key=transaction, delay=self.config.report_delay
            )
            if live is not None:  # under the lock: the job's first attempt finds it
                self._live[job_id] = live
        log.info(
            "storage commitment %s from %s: %d instances accepted%s (job %d)",
            transaction,
            requester,
            len(pairs),
            ", duplicate transaction UID" if earlier else "",
            job_id,
        )
        return job_id

    # -- the report ----------------------------------------------------------------------

    def check(self, pairs: Sequence[tuple[str, str]]) -> list[int | None]:
        """Per (class, instance): None when committed, else its Failure Reason.

        Committed means: in the index, with the same SOP class, and its file is there,
        readable and whole, holding that instance.
        """
        from pydicom import Dataset

        from ..storage.sop_classes import storage_sop_classes

        index = self.index
        assert index is not None
        limit = self.config.max_instances
        checked = list(pairs[:limit])
        found: dict[str, IndexedInstance] = {}
        uids = list(dict.fromkeys(uid for _, uid in checked))
        for start in range(0, len(uids), _LOOKUP_CHUNK):
            identifier = Dataset()
            identifier.QueryRetrieveLevel = "IMAGE"
            identifier.SOPInstanceUID = uids[start : start + _LOOKUP_CHUNK]
            for entry in index.instances("IMAGE", identifier):
                found[entry.sop_instance_uid] = entry
        known_classes = storage_sop_classes()
        reasons: list[int | None] = []
        for sop_class, sop_instance in checked:
            indexed = found.get(sop_instance)
            if indexed is None:
                reasons.append(0x0112 if sop_class in known_classes else 0x0122)
            elif indexed.sop_class_uid != sop_class:
                reasons.append(0x0119)
            else:
                path = index.backend.local_path(indexed.path)
                reasons.append(_file_problem(path, sop_class, sop_instance))
        reasons.extend(0x0213 for _ in pairs[limit:])
        return reasons

    async def _report(self, job: Job) -> None:
        """One attempt of a report job; the last one failing says so, naming the transaction."""
        try:
            await self._attempt(job)
        except Exception as exc:
            last = (
                isinstance(exc, DicomWireError) and exc.permanent
            ) or job.attempts + 1 >= self.config.max_attempts
            if last:
                log.error(
                    "storage commitment %s: no report delivered to %s, given up after %d "
                    "attempts: %s",
                    job.payload.get("transaction_uid"),
                    job.payload.get("requester"),
                    job.attempts + 1,
                    exc,
                )
            raise

    async def _attempt(self, job: Job) -> None:
        """Check the instances and deliver the report."""
        payload = job.payload
        async with self._accepting:  # the N-ACTION that put the job has registered it
            live = self._live.pop(job.id, None)
        if live is not None and live.answering is not None and not live.answering.done():
            await asyncio.wait({live.answering})  # the N-ACTION-RSP goes first
        transaction = str(payload["transaction_uid"])
        pairs = [(str(c), str(i)) for c, i in payload["instances"]]
        if payload.get("duplicate"):
            reasons: list[int | None] = [0x0131] * len(pairs)
        else:
            reasons = await asyncio.to_thread(self.check, pairs)
        committed = [pair for pair, reason in zip(pairs, reasons, strict=True) if reason is None]
        failed = [
            (c, i, reason)
            for (c, i), reason in zip(pairs, reasons, strict=True)
            if reason is not None
        ]
        event_type, information = event_information(transaction, committed, failed)
        for sop_class, sop_instance, reason in failed:
            log.info(
                "storage commitment %s: %s (%s) not committed: %04X %s",
                transaction,
                sop_instance,
                sop_class,
                reason,
                FAILURE_REASONS[reason],
            )
        if (
            live is not None
            and self.config.same_association
            and live.session.association.is_established
        ):
            try:
                await self._send(live.session, live.context_id, event_type, information)
            except DimseStatusError:
                raise
            except (DicomWireError, TimeoutError) as exc:
                log.info(
                    "storage commitment %s: the N-ACTION's association is gone (%s); "
                    "reporting on a new one",
                    transaction,
                    exc,
                )
            else:
                self._delivered(transaction, payload, event_type, len(failed), "the same")
                return
        await self._report_on_new_association(payload, event_type, information)
        self._delivered(transaction, payload, event_type, len(failed), "a new")

    def _delivered(
        self, transaction: str, payload: dict[str, Any], event_type: int, failures: int, how: str
    ) -> None:
        log.info(
            "storage commitment %s reported to %s on %s association: event type %d, "
            "%d of %d instances committed",
            transaction,
            payload["requester"],
            how,
            event_type,
            len(payload["instances"]) - failures,
            len(payload["instances"]),
        )

    async def _send(
        self, session: DimseSession, context_id: int | None, event_type: int, information: Dataset
    ) -> None:
        """N-EVENT-REPORT on ``session``; a failure status raises DimseStatusError."""
        from ...dimse.datasets import encode_dataset

        if context_id is None:
            context_id = session.find_context(STORAGE_COMMITMENT_SOP_CLASS).context_id
        syntax = session.negotiated.contexts[context_id].transfer_syntax
        assert syntax is not None
        request = NEventReportRQ(
            STORAGE_COMMITMENT_SOP_CLASS,
            STORAGE_COMMITMENT_INSTANCE,
            event_type,
            dataset=encode_dataset(information, syntax),
        )
        operation = await session.send(request, context_id)
        response = await asyncio.wait_for(operation.wait(), self.config.report_timeout)
        status = response.status
        if not status.is_success:
            comment = getattr(response.primitive, "error_comment", None) or ""
            raise DimseStatusError(status, comment or "the requester refused the report")

    async def _report_on_new_association(
        self, payload: dict[str, Any], event_type: int, information: Dataset
    ) -> None:
        """Associate with the requester's directory entry as SCP of the SOP class."""
        assert self.directory is not None
        entry = self.directory.resolve(str(payload["requester"]), PURPOSE)
        tls = None
        if entry.tls:
            if self.tls is None:
                raise ConfigError(f"{entry.ae_title} is to be called over TLS; no [tls] configured")
            tls = self.tls
        config = RequestorConfig(
            str(payload["called_ae"]),
            entry.ae_title,
            [(STORAGE_COMMITMENT_SOP_CLASS, list(DEFAULT_TRANSFER_SYNTAXES))],
            roles={STORAGE_COMMITMENT_SOP_CLASS: (False, True)},
            max_pdu_length=self.max_pdu_length or DEFAULT_MAX_PDU_LENGTH,
        )
        timeouts = replace(self.timeouts or Timeouts(), dimse=self.config.report_timeout)
        assert entry.host is not None and entry.port is not None
        async with open_session(entry.host, entry.port, config, timeouts=timeouts, tls=tls) as s:
            await self._send(s, None, event_type, information)


def _current() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _file_problem(path: Path, sop_class: str, sop_instance: str) -> int | None:
    """0110 when the indexed file is gone, unreadable, cut short or another instance."""
    from ..storage import inspect_file

    try:
        info = inspect_file(path)
    except Part10Error as exc:
        log.warning("storage commitment: %s cannot be committed: %s", sop_instance, exc)
        return 0x0110
    except OSError as exc:
        log.warning("storage commitment: %s cannot be committed: %s", sop_instance, exc)
        return 0x0110
    if info.sop_instance_uid != sop_instance:
        log.warning(
            "storage commitment: %s holds %s, not %s", path, info.sop_instance_uid, sop_instance
        )
        return 0x0110
    if info.sop_class_uid != sop_class:
        return 0x0119
    return None
