"""The Storage Commitment Push Model SCU (PS3.4 J.3.2.1.2, J.3.3.1.3).

:func:`commit` sends the N-ACTION for some instances and waits for the SCP's
N-EVENT-REPORT: on the same association (``same_association``), or on a listener of its
own (``listen_port``: a small node accepting the SCP's association with the SCP role for
the commitment SOP class, as J.3.3.1.3 requires of an SCU), or on a running node's
:class:`~.scp.StorageCommitment` service (``node``). The report comes back as data, a
:class:`~.model.CommitmentReport`.

:class:`PendingCommitments` is the registry of transactions started and not yet reported;
its :meth:`~PendingCommitments.handle_report` answers an N-EVENT-REPORT: 0000 for a
transaction it waits for; for an unknown Transaction UID 0110 (processing failure: the
instance, the well-known one, is right, so 0117 does not apply) and a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...dimse.commands import CommandField
from ...dimse.primitives import DimseResponse, NEventReportRQ
from ...dimse.session import DimseSession, Handler, Request
from ...dimse.status import NO_SUCH_EVENT_TYPE, PROCESSING_FAILURE, SUCCESS, Category, Status
from ...errors import (
    AssociationAborted,
    DicomTimeoutError,
    DimseStatusError,
    LocalProtocolError,
    TransportError,
)
from ...ul.negotiation import DEFAULT_MAX_PDU_LENGTH
from ..service import Binding, ScuActivity, Service, StatusReaction
from .model import (
    ACTION_TYPE_REQUEST,
    EVENT_TYPE_FAILURES,
    EVENT_TYPE_SUCCESS,
    INVALID_ARGUMENT_VALUE,
    MISSING_ATTRIBUTE,
    STORAGE_COMMITMENT_INSTANCE,
    STORAGE_COMMITMENT_SOP_CLASS,
    CommitmentReport,
    action_information,
    parse_report,
)

if TYPE_CHECKING:
    from ...ul.association import Timeouts
    from ...ul.tls import TLSConfig
    from ..client import Client
    from ..node import Node

__all__ = [
    "COMMITMENT_ACTIVITY",
    "PendingCommitments",
    "ReportInbox",
    "commit",
    "describe_status",
    "references",
]

log = logging.getLogger("dicomwire.services.commitment")

#: What :func:`commit` (and ``dicomwire commit``) do with the N-ACTION's status.
COMMITMENT_ACTIVITY = ScuActivity(
    "Ask for commitment",
    "dicomwire commit, store --commit; commit",
    (STORAGE_COMMITMENT_SOP_CLASS,),
    "N-ACTION (and N-EVENT-REPORT answered as SCP)",
    (
        StatusReaction(Category.SUCCESS, "the request is taken: the report is awaited (--timeout)"),
        StatusReaction(
            Category.WARNING,
            "not taken as a success: DimseStatusError; no report is awaited; commit exits 1",
        ),
        StatusReaction(
            Category.FAILURE,
            "DimseStatusError with the status and Error Comment; no report is awaited; "
            "commit exits 1",
        ),
    ),
)

Instance = str | Path | tuple[str, str] | Any  # a file, (class, instance) or a Dataset


@dataclass(slots=True)
class _Waiting:
    requested: list[tuple[str, str]]
    future: asyncio.Future[CommitmentReport]
    session: DimseSession | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class PendingCommitments:
    """Transactions started and waiting for their report, by Transaction UID."""

    def __init__(self) -> None:
        self._waiting: dict[str, _Waiting] = {}

    def __contains__(self, transaction_uid: str) -> bool:
        return transaction_uid in self._waiting

    def expect(
        self, transaction_uid: str, requested: Sequence[tuple[str, str]]
    ) -> asyncio.Future[CommitmentReport]:
        """Wait for the report of ``transaction_uid`` ((class, instance) pairs requested)."""
        future: asyncio.Future[CommitmentReport] = asyncio.get_running_loop().create_future()
        self._waiting[transaction_uid] = _Waiting(list(requested), future)
        return future

    def sent_on(self, transaction_uid: str, session: DimseSession) -> None:
        """The N-ACTION of ``transaction_uid`` went on ``session``."""
        waiting = self._waiting.get(transaction_uid)
        if waiting is not None:
            waiting.session = session

    def forget(self, transaction_uid: str) -> None:
        """Stop waiting (a report arriving later is answered as unknown)."""
        self._waiting.pop(transaction_uid, None)

    async def handle_report(self, request: Request) -> DimseResponse:
        """Answer an N-EVENT-REPORT of the Storage Commitment Push Model SOP Class."""
        primitive = request.primitive
        assert isinstance(primitive, NEventReportRQ)
        reporter = request.negotiated.remote_ae_title

        def refuse(status: int, why: str) -> DimseResponse:
            log.warning(
                "storage commitment report from %s refused (%04X): %s", reporter, status, why
            )
            return primitive.response(status, error_comment=why[:64])

        if primitive.affected_sop_instance_uid != STORAGE_COMMITMENT_INSTANCE:
            return refuse(0x0117, "not the well-known SOP instance")
        if primitive.event_type_id not in (EVENT_TYPE_SUCCESS, EVENT_TYPE_FAILURES):
            response = refuse(NO_SUCH_EVENT_TYPE, f"event type {primitive.event_type_id}")
            return response
        information = request.decode()
        if information is None:
            return refuse(MISSING_ATTRIBUTE, "no event information")
        try:
            report = parse_report(primitive.event_type_id, information)
        except ValueError as exc:
            return refuse(INVALID_ARGUMENT_VALUE, str(exc))
        waiting = self._waiting.pop(report.transaction_uid, None)
        if waiting is None or waiting.future.done():
            return refuse(PROCESSING_FAILURE, f"unknown Transaction UID {report.transaction_uid}")
        report.reporter = reporter
        report.same_association = waiting.session is request.session
        mentioned = {uid for uid, _ in report.committed} | {uid for uid, _, _ in report.failed}
        report.missing = [(i, c) for c, i in waiting.requested if i not in mentioned]
        waiting.future.set_result(report)
        log.info(
            "storage commitment %s reported by %s: %d committed, %d failed, %d missing",
            report.transaction_uid,
            reporter,
            len(report.committed),
            len(report.failed),
            len(report.missing),
        )
        return primitive.response(SUCCESS)


class ReportInbox(Service):
    """A node service that only receives Storage Commitment reports (the SCU's listener).

    It lets the SCP take the SCP role for the commitment SOP class (PS3.4 J.3.3.1.3).
    """

    name = "storage-commitment-reports"

    def __init__(self, pending: PendingCommitments) -> None:
        self.pending = pending

    def bindings(self) -> Sequence[Binding]:
        return [
            Binding(
                STORAGE_COMMITMENT_SOP_CLASS,
                handlers={CommandField.N_EVENT_REPORT_RQ: self.pending.handle_report},
                requestor_may_be_scp=True,
            )
        ]


def references(instances: Iterable[Instance]) -> list[tuple[str, str]]:
    """(SOP Class UID, SOP Instance UID) of each file, Dataset or pair given.

    A file is read as the Storage SCU reads it (:func:`~..storage.inspect_file`): a file
    that is not DICOM raises :class:`~dicomwire.errors.Part10Error`.
    """
    from ..storage import inspect_file

    pairs: list[tuple[str, str]] = []
    for item in instances:
        if isinstance(item, str | Path):
            info = inspect_file(item)
            pairs.append((info.sop_class_uid, info.sop_instance_uid))
        elif isinstance(item, tuple):
            sop_class, sop_instance = item
            pairs.append((str(sop_class), str(sop_instance)))
        else:
            pairs.append((str(item.SOPClassUID), str(item.SOPInstanceUID)))
    return pairs


def _pending_of(node: Node) -> PendingCommitments:
    for service in node.services:
        pending = getattr(service, "pending", None)
        if isinstance(pending, PendingCommitments):
            return pending
    raise LocalProtocolError("the node has no storage commitment service to receive reports")


async def commit(
    peer: Client | tuple[str, int],
    instances: Iterable[Instance],
    *,
    called_ae: str = "ANY-SCP",
    calling_ae: str = "DICOMWIRE",
    listen_port: int | None = None,
    listen_host: str | None = None,
    same_association: bool | None = None,
    node: Node | None = None,
    timeout: float = 60.0,
    transaction_uid: str | None = None,
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH,
    timeouts: Timeouts | None = None,
    tls: TLSConfig | None = None,
) -> CommitmentReport:
    """Ask ``peer`` to commit to ``instances``; the SCP's report, as data.

    ``peer`` is ``(host, port)`` (an association is opened with ``calling_ae`` and
    ``called_ae``) or an open :class:`~..client.Client` (left open). The report is
    awaited on the same association (``same_association``: the default unless a listener
    is given), on a listener started for the call on ``listen_port`` (AE title
    ``calling_ae``; the SCP must know it as such), or by ``node``'s storage commitment
    service. Raises :class:`~dicomwire.errors.DimseStatusError` when the N-ACTION is
    refused and :class:`~dicomwire.errors.DicomTimeoutError` when no report comes within
    ``timeout`` seconds.
    """
    from ..client import Client, connect
    from ..node import Node, NodeConfig
    from .scp import new_transaction_uid

    pairs = references(instances)
    if not pairs:
        raise LocalProtocolError("nothing to commit: no instances given")
    listener: Node | None = None
    pending = _pending_of(node) if node is not None else PendingCommitments()
    if same_association is None:
        same_association = node is None and listen_port is None
    if not same_association and node is None and listen_port is None:
        raise LocalProtocolError("a report on a new association needs listen_port or a node")
    transaction = transaction_uid or new_transaction_uid()
    future = pending.expect(transaction, pairs)
    report_key = (STORAGE_COMMITMENT_SOP_CLASS, int(CommandField.N_EVENT_REPORT_RQ))
    handlers: dict[int | tuple[str, int], Handler] = {report_key: pending.handle_report}
    opened: Client | None = None
    try:
        if listen_port is not None and node is None:
            listener = Node(
                NodeConfig(
                    ae_titles=[calling_ae],
                    host=listen_host,
                    port=listen_port,
                    shutdown_grace=2.0,
                    max_pdu_length=max_pdu_length,
                ),
                services=[ReportInbox(pending)],
            )
            try:
                await listener.start()
            except OSError as exc:
                listener = None
                raise TransportError(
                    f"cannot listen for the report on port {listen_port}: {exc.strerror or exc}"
                ) from exc
        if isinstance(peer, Client):
            client = peer
            client.session.handlers.update(handlers)
        else:
            host, port = peer
            opened = client = await connect(
                host,
                port,
                called_ae=called_ae,
                calling_ae=calling_ae,
                services=["storage-commitment"],
                handlers=handlers,
                max_pdu_length=max_pdu_length,
                timeouts=timeouts,
                tls=tls,
            )
        pending.sent_on(transaction, client.session)
        result = await client.n_action(
            STORAGE_COMMITMENT_SOP_CLASS,
            STORAGE_COMMITMENT_INSTANCE,
            ACTION_TYPE_REQUEST,
            action_information(transaction, pairs),
        )
        if not result.status.is_success:
            raise DimseStatusError(
                result.status, result.error_comment or "the SCP refused the storage commitment"
            )
        log.info(
            "storage commitment %s: %d instances accepted by %s", transaction, len(pairs), called_ae
        )
        if opened is not None and not same_association:
            # The request stands once accepted: a release that fails (the SCP's host
            # died, the connection was cut) does not cancel it, and the report comes on
            # a new association, perhaps from another node of a cluster.
            try:
                await opened.release()
            except (AssociationAborted, TransportError, DicomTimeoutError) as exc:
                log.warning(
                    "storage commitment %s: the release failed (%s); waiting for the report",
                    transaction,
                    exc,
                )
            opened = None
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise DicomTimeoutError(
                f"no storage commitment report for {transaction} within {timeout:g} s"
            ) from None
    finally:
        pending.forget(transaction)
        if opened is not None:
            with contextlib.suppress(Exception):
                if opened.session.association.is_established:
                    await opened.release()
                else:
                    opened.abort()
        if listener is not None:
            await listener.shutdown()


def describe_status(status: int) -> str:
    """``0112 (no such object instance)``-style text for a Failure Reason."""
    from .model import FAILURE_REASONS

    return f"{status:04X} ({FAILURE_REASONS.get(status, Status(status).meaning)})"
