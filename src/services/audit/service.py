"""The node's audit trail (PS3.15 A.5.3 events from what the node does).

:class:`Audit` is a service without SOP classes: added to a node (``[audit]`` table), it
records, through an :class:`~.trail.AuditTrail`:

- Application Activity (start, stop) from :meth:`Audit.start`/:meth:`Audit.stop`;
- DICOM Instances Transferred (import) once per association that stored instances,
  with its studies (SOP classes and counts) and patients, as the storage SCP read them
  while they streamed in (:meth:`StorageSCP.observe`: no stored file is read again);
- Query for each C-FIND (Q/R and worklist), with the identifier as received;
- Begin Transferring and DICOM Instances Transferred (export) around each C-MOVE/C-GET;
- Procedure Record for MPPS N-CREATE/N-SET;
- Order Record when worklist entries are added or removed through the node's worklist
  store, or moved on by an MPPS (:func:`.tool.record_orders`);
- Security Alert (node authentication) for a failed TLS handshake, a refused
  certificate and a rejected association; Security Alert (software configuration) when
  the node starts with a configuration other than the last run's (a digest per key kept
  beside the audit file, ``audit.log.config``); User Authentication for user identity
  negotiation when the node checks identities (its policy's ``identity_check``).

Handlers are observed by wrapping them in the node's handler table, so the services
audited need no code of their own; nothing here waits for the trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import getpass
import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...dimse.commands import CommandField
from ...dimse.session import DimseSession, Handler, Request, SinkFactory
from ...dimse.status import Status
from ...ul.association import Association
from ...ul.tls import diagnose_tls_error
from ..service import Binding, HandlerKey, Service
from . import messages as m
from .trail import AuditConfig, AuditTrail, Sink, make_sink

if TYPE_CHECKING:
    from ...ul.pdu import UserIdentityRQItem
    from ..node import Node, NodeConfig
    from ..print.scp import PrintedFilm
    from ..storage.scp import StoredInstance

__all__ = ["NODE_EVENTS", "Audit", "AuditedEvent", "outcome_of"]

log = logging.getLogger("dicomwire.services.audit")

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
_PATIENT_ID, _PATIENT_NAME, _STUDY_UID, _SOP_CLASS = 0x00100020, 0x00100010, 0x0020000D, 0x00080016


@dataclass(frozen=True, slots=True)
class AuditedEvent:
    """An event the node records (a row of the conformance statement's audit table)."""

    event: m.Code
    detail: str
    when: str


#: What :class:`Audit` records, in the order of the module docstring (docs/audit.md has
#: the participants; a test keeps the two lists of events equal).
NODE_EVENTS: tuple[AuditedEvent, ...] = (
    AuditedEvent(m.APPLICATION_ACTIVITY, "Application Start, Stop", "the node starts, stops"),
    AuditedEvent(m.INSTANCES_TRANSFERRED, "action C", "an association that stored instances ends"),
    AuditedEvent(m.BEGIN_TRANSFERRING, "action E", "a C-MOVE or C-GET starts"),
    AuditedEvent(m.INSTANCES_TRANSFERRED, "action R", "that C-MOVE or C-GET ends"),
    AuditedEvent(m.QUERY, "action E", "each C-FIND (Q/R, worklist), with its identifier"),
    AuditedEvent(m.PROCEDURE_RECORD, "action C, U", "MPPS N-CREATE, N-SET"),
    AuditedEvent(
        m.ORDER_RECORD,
        "action C, U, D",
        "worklist entries added, moved on by an MPPS, removed",
    ),
    AuditedEvent(m.INSTANCES_ACCESSED, "action C", "the print SCP stores a film's Hardcopy images"),
    AuditedEvent(
        m.SECURITY_ALERT,
        "Node Authentication",
        "a TLS handshake fails, a certificate is refused, an association is rejected",
    ),
    AuditedEvent(
        m.SECURITY_ALERT,
        "Software Configuration",
        "the node starts with a configuration other than the last run's",
    ),
    AuditedEvent(m.USER_AUTHENTICATION, "Login", "user identity negotiation, accepted or refused"),
)


def outcome_of(result: object) -> int:
    """EventOutcomeIndicator of a handler's answer: 0 success, 4 warning/cancel, 8 failure."""
    status = getattr(result, "status", result if isinstance(result, int) else 0)
    code = Status(int(status or 0))
    if code.is_success:
        return m.SUCCESS
    return m.SERIOUS_FAILURE if code.is_failure else m.MINOR_FAILURE


def _address(pair: tuple[str, int] | None) -> str | None:
    return pair[0] if pair else None


class Audit(Service):
    """The audit trail as a unit of the node (see the module docstring)."""

    name = "audit"
    section = "audit"
    config_type = AuditConfig

    def __init__(self, config: AuditConfig | None = None, *, sinks: list[Sink] | None = None):
        self.config = config or AuditConfig()
        self._sinks = sinks
        self.trail: AuditTrail | None = None
        self.source = m.Source(self.config.source_id or "dicomwire")
        self._ae_title = "DICOMWIRE"
        self._stored: dict[DimseSession, list[StoredInstance]] = defaultdict(list)

    @classmethod
    def for_node(cls, config: NodeConfig) -> Audit | None:
        """The audit of ``dicomwire serve``: a local rotating file unless ``[audit]`` differs.

        ``[audit] enabled = false`` or ``destinations = []`` turns it off; a node that
        discards what it receives (a benchmark receiver) audits only with an ``[audit]``
        table.
        """
        audit = config.sections.get("audit")
        if audit is None:
            if config.storage.discard:
                return None
            audit = AuditConfig()
        if not audit.enabled or not audit.destinations:
            return None
        return cls(audit)

    def bindings(self) -> list[Binding]:
        return []

    # -- life ------------------------------------------------------------------------

    async def start(self, node: Node) -> None:
        config = self.config
        digests = configuration_digests(node.config)  # before the hooks below change it
        self._ae_title = node.config.ae_titles[0]
        self.source = m.Source(
            config.source_id or self._ae_title, config.enterprise_site_id or None
        )
        sinks = self._sinks
        default_file = Path(node.config.storage.root) / ".dicomwire" / "audit.log"
        if sinks is None:
            sinks = [
                make_sink(d, config, default_file=default_file, tls=node.config.tls)
                for d in config.destinations
            ]
        self.trail = AuditTrail(
            sinks,
            app_name=config.app_name,
            queue_size=config.queue_size,
            retry_seconds=config.retry_seconds,
            spool_limit=config.spool_limit,
        ).start()
        self._wrap_handlers(node)
        self._observe_storage(node)
        self._observe_connections(node)
        self._observe_identity(node)
        self._observe_worklist(node)
        self._observe_printing(node)
        self.record(m.application_activity(self.source, True, user=_user()))
        self._check_configuration(digests, default_file)

    async def stop(self) -> None:
        trail = self.trail
        if trail is None:
            return
        self.record(m.application_activity(self.source, False, user=_user()))
        await asyncio.to_thread(trail.close)
        if trail.dropped:
            log.error("audit: %d message(s) dropped while running", trail.dropped)

    def record(self, message: m.AuditMessage | Callable[[], m.AuditMessage | None]) -> None:
        """Queue an audit message (never blocks)."""
        if self.trail is not None:
            self.trail.record(message)

    # -- participants ----------------------------------------------------------------

    def _us(self, role: m.Code | None, requestor: bool = False) -> m.Participant:
        return m.Participant.ae(self._ae_title, requestor, role)

    @staticmethod
    def _peer(session: DimseSession, role: m.Code | None, requestor: bool = True) -> m.Participant:
        negotiated = session.negotiated
        return m.Participant.ae(
            negotiated.remote_ae_title, requestor, role, _address(session.association.peer_address)
        )

    # -- imports ---------------------------------------------------------------------

    def sinks(self, session: DimseSession) -> dict[HandlerKey, SinkFactory]:
        """Not a sink: where each association's end is watched (stored instances)."""
        session.association.closed.add_done_callback(lambda _: self._association_ended(session))
        return {}

    def _observe_storage(self, node: Node) -> None:
        try:
            scp = node.storage
        except KeyError:
            return
        stored = self._stored
        scp.observe(lambda instance, request: stored[request.session].append(instance))

    def _association_ended(self, session: DimseSession) -> None:
        instances = self._stored.pop(session, None)
        if not instances:
            return
        sender = self._peer(session, m.SOURCE)
        receiver = m.Participant.ae(session.negotiated.local_ae_title, False, m.DESTINATION)

        self.record(
            files_transferred(
                self.source, instances, sender=sender, receiver=receiver, imported=True
            )
        )

    # -- handlers --------------------------------------------------------------------

    def _wrap_handlers(self, node: Node) -> None:
        for key, handler in list(node.handlers.items()):
            if not isinstance(key, tuple):
                continue
            sop_class, command = key
            wrapper: Callable[[Handler], Handler] | None = None
            if command == CommandField.C_FIND_RQ:
                wrapper = self._audit_find
            elif command in (CommandField.C_MOVE_RQ, CommandField.C_GET_RQ):
                wrapper = self._audit_retrieve
            elif sop_class == MPPS_SOP_CLASS and command in (
                CommandField.N_CREATE_RQ,
                CommandField.N_SET_RQ,
            ):
                wrapper = self._audit_mpps
            if wrapper is not None:
                node.handlers[key] = wrapper(handler)

    def _audit_find(self, handler: Handler) -> Handler:
        def ended(request: Request, result: Any) -> None:
            message = request.message
            identifier = message.dataset if isinstance(message.dataset, bytes) else b""
            self.record(
                m.query(
                    self.source,
                    requestor=self._peer(request.session, m.SOURCE),
                    responder=m.Participant.ae(
                        request.negotiated.local_ae_title, False, m.DESTINATION
                    ),
                    sop_class_uid=message.sop_class_uid or "",
                    identifier=bytes(identifier),
                    transfer_syntax=message.transfer_syntax,
                    outcome=outcome_of(result) if result is not None else m.MINOR_FAILURE,
                )
            )

        return _then(handler, ended)

    def _audit_retrieve(self, handler: Handler) -> Handler:
        async def audited(request: Request) -> Any:
            command = request.command
            move = request.message.command_field == CommandField.C_MOVE_RQ
            destination_ae = str(command.get(0x00000600) or "").strip() if move else ""
            requestor = self._peer(request.session, None if move else m.DESTINATION)
            receiver = m.Participant.ae(destination_ae, False, m.DESTINATION) if move else requestor
            sender = m.Participant.ae(request.negotiated.local_ae_title, False, m.SOURCE)
            patients, studies = _identifier_objects(request)
            self.record(
                m.begin_transferring(
                    self.source,
                    sender=sender,
                    receiver=receiver,
                    patients=patients,
                    studies=studies,
                    requestor=requestor if move else None,
                )
            )

            def ended(request: Request, result: Any) -> None:
                completed = getattr(result, "completed", None)
                failed = getattr(result, "failed", None)
                self.record(
                    m.instances_transferred(
                        self.source,
                        sender=sender,
                        receiver=receiver,
                        patients=patients,
                        studies=studies,
                        outcome=outcome_of(result) if result is not None else m.SERIOUS_FAILURE,
                        imported=False,
                        requestor=requestor if move else None,
                        description=(
                            f"completed {completed}, failed {failed}"
                            if completed is not None or failed is not None
                            else None
                        ),
                    )
                )

            return await _then(handler, ended)(request)

        return audited

    def _audit_mpps(self, handler: Handler) -> Handler:
        def ended(request: Request, result: Any) -> None:
            patient: tuple[str, str | None] = ("-", None)
            with contextlib.suppress(Exception):
                dataset = request.decode()
                if dataset is not None and "PatientID" in dataset:
                    patient = (str(dataset.PatientID), str(dataset.get("PatientName", "")))
            create = request.message.command_field == CommandField.N_CREATE_RQ
            self.record(
                m.order_or_procedure_record(
                    self.source,
                    procedure=True,
                    action="C" if create else "U",
                    requestor=self._peer(request.session, None),
                    node=m.Participant.ae(request.negotiated.local_ae_title, False, None),
                    patient=patient,
                    outcome=outcome_of(result) if result is not None else m.SERIOUS_FAILURE,
                )
            )

        return _then(handler, ended)

    # -- orders ----------------------------------------------------------------------

    def _observe_worklist(self, node: Node) -> None:
        """Order Records for worklist entries added, removed or moved on by MPPS."""
        from .tool import record_orders

        try:
            store = getattr(node.service("worklist"), "store", None)
        except KeyError:
            return
        if store is not None:
            record_orders(store, self.record, self.source, self._us(None, True), self._us(None))

    # -- films ---------------------------------------------------------------------

    def _observe_printing(self, node: Node) -> None:
        """DICOM Instances Accessed (create) for the Hardcopy images each printed film
        stores beside its picture (the print SCP's ``on_printed`` hook).

        Not Data Export: the film is the export of the print SCU that composed it (its
        ``dicomwire print --audit`` records it, naming this printer as Destination Media);
        the printer recording a second export of the same film would count it twice.
        """
        try:
            scp = getattr(node.service("print"), "scp", None)
        except KeyError:
            return
        if scp is None:
            return
        previous = scp.on_printed

        def on_printed(film: PrintedFilm) -> Awaitable[None] | None:
            self.record(self._film_created(film))
            return previous(film) if previous is not None else None

        scp.on_printed = on_printed

    def _film_created(self, film: PrintedFilm) -> Callable[[], m.AuditMessage | None]:
        printer = m.Participant.ae(self._ae_title, False, None)
        requestor = m.Participant.ae(film.calling_ae, True, None)

        def build() -> m.AuditMessage | None:
            from .tool import describe_files

            try:
                job = json.loads(film.sidecar.read_text("utf-8"))
            except (OSError, ValueError) as exc:
                log.warning("audit: cannot read %s: %s", film.sidecar, exc)
                return None
            paths = [film.sidecar.parent / name for name in job.get("objects", ())]
            if not paths:
                return None
            patients, studies = describe_files(paths)
            return m.instances_accessed(
                self.source,
                action="C",
                accessors=[requestor, printer],
                patient=patients[0] if patients else ("-", None),
                studies=studies,
                description=f"film {film.film_box_uid} printed: {len(paths)} Hardcopy image(s)",
            )

        return build

    # -- configuration ---------------------------------------------------------------

    def _configuration_state(self, default_file: Path) -> Path:
        """Where the last run's configuration digests are: beside the (first) audit file."""
        for destination in self.config.destinations:
            if destination.startswith("file:"):
                path = destination[len("file:") :]
                return (Path(path) if path else default_file).with_name(
                    (Path(path).name if path else default_file.name) + ".config"
                )
        return default_file.with_name(default_file.name + ".config")

    def _check_configuration(self, now: dict[str, str], default_file: Path) -> None:
        """Security Alert (Software Configuration) when the configuration changed."""
        state = self._configuration_state(default_file)
        try:
            before = json.loads(state.read_text("utf-8")) if state.exists() else None
        except (OSError, ValueError) as exc:
            log.warning("audit: cannot read %s (%s): configuration taken as changed", state, exc)
            before = {}
        if before is not None and before != now:
            changed = sorted(k for k in {*before, *now} if before.get(k) != now.get(k))
            description = "configuration changed since the last run: " + ", ".join(changed)
            log.warning("audit: %s", description)
            self.record(
                m.security_alert(
                    self.source,
                    kind=m.SOFTWARE_CONFIGURATION,
                    subject=str(state.with_suffix("")),
                    description=description,
                    outcome=m.SUCCESS,
                )
            )
        if before != now:
            try:
                state.parent.mkdir(parents=True, exist_ok=True)
                state.write_text(json.dumps(now, indent=0, sort_keys=True), "utf-8")
            except OSError as exc:
                log.warning("audit: cannot keep the configuration digest in %s: %s", state, exc)

    # -- security --------------------------------------------------------------------

    def _observe_connections(self, node: Node) -> None:
        observers = getattr(node.server, "connection_observers", None)
        if observers is None:
            log.warning("audit: this server reports no connections; no security alerts")
            return
        observers.append(self._watch_connection)

    def _watch_connection(self, association: Association) -> None:
        association.closed.add_done_callback(lambda _: self._connection_closed(association))

    def _connection_closed(self, association: Association) -> None:
        address = _address(association.peer_address)
        failure = getattr(association, "tls_failure", None)
        rejection = getattr(association, "rejection", None)
        if failure is not None:
            diagnosis = diagnose_tls_error(failure, server_side=True)
            if diagnosis.reason in REFUSED_CERTIFICATE:
                description = f"certificate refused: {diagnosis.text}"
            else:
                description = f"TLS handshake failed: {diagnosis.text}"
        elif rejection is not None:
            description = f"association rejected: {rejection}"
        else:
            return
        self.record(
            m.security_alert(
                self.source,
                kind=m.NODE_AUTHENTICATION,
                subject=address or "-",
                description=description,
                performer=m.Participant("-", False, (), address=address) if address else None,
            )
        )

    def _observe_identity(self, node: Node) -> None:
        policy = node.policy
        check = policy.identity_check
        if check is None:
            return

        def audited(
            identity: UserIdentityRQItem, calling: str, host: str | None
        ) -> tuple[bool, bytes | None]:
            accepted, response = check(identity, calling, host)
            user = identity.primary_field.decode("utf-8", "replace")
            self.record(
                m.user_authentication(
                    self.source,
                    user=m.Participant(
                        user or "-",
                        True,
                        (),
                        alternative_user_id=f"AETITLES={calling}",
                        address=host,
                    ),
                    node=self._us(None),
                    success=accepted,
                )
            )
            return accepted, response

        policy.identity_check = audited


#: Handshake failures that are a certificate refused (ours or the peer's), not a mismatch.
REFUSED_CERTIFICATE = frozenset(
    {
        "untrusted-certificate",
        "expired-certificate",
        "hostname-mismatch",
        "certificate-refused",
        "certificate-required",
    }
)


def configuration_digests(config: object) -> dict[str, str]:
    """``{dotted.key: sha256 of its value}`` of a configuration (dataclasses, dicts, lists).

    Digests, not values: the file beside the audit log holds no password or path in clear.
    """
    flat: dict[str, str] = {}

    def walk(value: object, key: str) -> None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for item in dataclasses.fields(value):
                walk(getattr(value, item.name), f"{key}.{item.name}" if key else item.name)
        elif isinstance(value, dict):
            for name in sorted(value, key=str):
                walk(value[name], f"{key}.{name}" if key else str(name))
        else:
            flat[key] = hashlib.sha256(_canonical(value).encode("utf-8")).hexdigest()

    walk(config, "")
    return flat


def _canonical(value: object) -> str:
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_canonical(v) for v in value]
        return "[" + ",".join(sorted(items) if isinstance(value, (set, frozenset)) else items) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical(sorted(configuration_digests(value).items()))
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if callable(value):
        return f"callable:{getattr(value, '__qualname__', type(value).__name__)}"
    return repr(value)


def _user() -> str | None:
    with contextlib.suppress(Exception):
        return getpass.getuser()
    return None


def _then(handler: Handler, ended: Callable[[Request, Any], None]) -> Handler:
    """``handler``, then ``ended(request, result)`` however it ended (None: it raised)."""

    async def audited(request: Request) -> Any:
        result: Any = None
        try:
            result = await handler(request)
            return result
        finally:
            ended(request, result)

    return audited


def files_transferred(
    source: m.Source,
    paths: Sequence[Path | StoredInstance],
    *,
    sender: m.Participant,
    receiver: m.Participant,
    imported: bool,
    outcome: int = m.SUCCESS,
    description: str | None = None,
) -> Callable[[], m.AuditMessage]:
    """DICOM Instances Transferred of stored files, built when recorded (the headers of
    those given as paths are read then, off the caller's path)."""

    def build() -> m.AuditMessage:
        patients, studies = _describe_files(paths)
        return m.instances_transferred(
            source,
            sender=sender,
            receiver=receiver,
            patients=patients,
            studies=studies,
            outcome=outcome,
            imported=imported,
            description=description,
        )

    return build


def _describe_files(
    paths: Sequence[Path | StoredInstance],
) -> tuple[list[tuple[str, str | None]], list[m.ParticipantObject]]:
    """Patients and studies (SOP classes with counts) of stored files: as the storage SCP
    described them, or (a path) read from their headers."""
    patients: dict[str, str | None] = {}
    classes: dict[str, Counter[str]] = defaultdict(Counter)
    for item in paths:
        if isinstance(item, Path):
            described = _read_description(item)
            if described is None:
                continue
            patient_id, patient_name, study, sop_class = described
        else:
            patient_id, patient_name = item.patient_id, item.patient_name
            study, sop_class = item.study_instance_uid, item.sop_class_uid
        patients.setdefault(patient_id, patient_name or None)
        classes[study or "-"][sop_class] += 1
    studies = [m.study_object(uid, sorted(counts.items())) for uid, counts in classes.items()]
    return list(patients.items()), studies


def _read_description(path: Path) -> tuple[str, str, str, str] | None:
    """(patient ID, patient name, Study Instance UID, SOP Class UID) of a stored file."""
    from pydicom import dcmread

    try:
        dataset = dcmread(
            path,
            stop_before_pixels=True,
            specific_tags=[_PATIENT_ID, _PATIENT_NAME, _STUDY_UID, _SOP_CLASS],
        )
    except Exception as exc:  # moved or deleted since: audit what can be read
        log.debug("audit: cannot read %s: %s", path, exc)
        return None
    return (
        str(dataset.get("PatientID", "") or ""),
        str(dataset.get("PatientName", "") or ""),
        str(dataset.get("StudyInstanceUID", "") or ""),
        str(dataset.get("SOPClassUID", "")),
    )


def _identifier_objects(
    request: Request,
) -> tuple[list[tuple[str, str | None]], list[m.ParticipantObject]]:
    """Patient and studies a C-MOVE/C-GET identifier names (what it can say)."""
    try:
        dataset = request.decode()
    except Exception:
        dataset = None
    if dataset is None:
        return [("-", None)], []
    uids = dataset.get("StudyInstanceUID", "") or ""
    if isinstance(uids, str):
        uids = [u for u in uids.split("\\") if u]
    studies = [m.study_object(str(uid)) for uid in uids]
    patient = str(dataset.get("PatientID", "") or "") or "-"
    return [(patient, None)], studies
