"""The dicomwire node: one process answering associations with the services it is made of.

PS3.8 acceptor (:class:`~dicomwire.ul.association.AssociationServer`) whose acceptance
policy (PS3.8 §9.3.3, PS3.7 Annex D) and DIMSE handler table (PS3.7 §9-§10) are both
derived from a list of :class:`~dicomwire.services.service.Service` units (verification,
storage, query/retrieve over the node's index, and the services of later issues), so they
cannot drift apart. Configuration is a
:class:`NodeConfig`, loaded from TOML by :func:`load_config`, whose schema is the node's
own keys plus one table per service (``section``/``config_type``) plus the AE directory
(``[[nodes]]``); ``dicomwire serve`` and ``make serve`` run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dimse.session import DimseSession, Handler
from ..errors import ConfigError, DicomWireError
from ..ul.association import Association, AssociationServer, Timeouts
from ..ul.identifiers import is_valid_uid, validate_ae_title
from ..ul.negotiation import (
    DEFAULT_MAX_PDU_LENGTH,
    AcceptorPolicy,
    KnownNode,
)
from ..ul.tls import TLSConfig
from .audit import Audit
from .commitment import StorageCommitment
from .config import build, check_tls_files
from .database import is_postgres_url, open_index
from .directory import AEDirectory, RemoteAE
from .mpps import MPPS, StatusHook
from .mpps.store import Step
from .print import Print
from .qr import QueryRetrieve
from .service import ANY_SOP_CLASS, Binding, HandlerKey, Service, merge_bindings
from .storage import Storage, StorageConfig, validate_layout
from .storage.scp import AssociationTally, peer_text, prepare_root
from .verification import Verification
from .worklist import Worklist
from .worklist.store import WorklistStore

__all__ = [
    "ConfigError",
    "Node",
    "NodeConfig",
    "SERVICE_TYPES",
    "default_services",
    "banner",
    "database_path",
    "load_config",
    "prepare_node",
    "run_node",
    "run_workers",
    "validate_config",
    "worklist_follows_mpps",
]

log = logging.getLogger("dicomwire.services.node")
#: One summary line per association (INFO: ``dicomwire serve -v``).
association_log = logging.getLogger("dicomwire.services.node.associations")

#: Service classes whose TOML table :func:`load_config` reads, by section name.
SERVICE_TYPES: dict[str, type[Service]] = {
    service.section: service
    for service in (Storage, QueryRetrieve, StorageCommitment, Worklist, MPPS, Print, Audit)
    if service.section is not None
}


@dataclass(slots=True)
class NodeConfig:
    """What a node is: AE titles, where it listens, limits, services' settings, known AEs.

    ``known_nodes`` restricts who may associate (when non-empty); ``nodes`` is the AE
    directory (C-MOVE destinations, report and relay targets), which also restricts the
    callers when ``restrict_callers`` is set. ``sections`` holds the configuration of
    services other than storage, by section name.
    """

    ae_titles: list[str] = field(default_factory=lambda: ["DICOMWIRE"])
    host: str | None = None
    port: int = 11112
    promiscuous: bool = False
    max_associations: int = 100
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH
    #: Asynchronous operations window offered (PS3.7 D.3.3.3; 0 = unlimited): how many
    #: operations a requestor may have outstanding on one association (invoked), and how
    #: many the node would invoke on it (performed). The acceptor answers the lower of
    #: these and what the requestor proposes; a RIS serves 1024 (issue 16).
    max_operations_invoked: int = 16
    max_operations_performed: int = 16
    known_nodes: list[KnownNode] = field(default_factory=list)
    nodes: list[RemoteAE] = field(default_factory=list)
    restrict_callers: bool = False
    storage: StorageConfig = field(default_factory=StorageConfig)
    sections: dict[str, Any] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=lambda: Timeouts(dimse=None))
    shutdown_grace: float = 10.0
    #: PS3.15 secure transport: listen for TLS on ``tls_port`` beside the plain ``port``.
    tls: TLSConfig | None = None
    tls_port: int | None = None
    #: Processes sharing the ports with SO_REUSEPORT (one per core); limits are per process.
    workers: int = 1
    #: The node's database (Q/R index, worklist entries, durable jobs): an SQLite file;
    #: empty means ``<storage root>/.dicomwire/node.sqlite`` (see :func:`database_path`);
    #: a ``postgresql://`` URL shares the Q/R index between nodes (docs/scale-out.md).
    database: str | Path | None = None
    #: Calling AE titles of load balancer health checks (``HAPROXY-CHECK``): their
    #: associations are summarised at DEBUG, not INFO, so ``-v`` is not one line per check.
    health_check_callers: list[str] = field(default_factory=list)


def database_path(config: NodeConfig) -> Path:
    """Where the node's SQLite database lives (its folder is created when it is opened).

    With a PostgreSQL ``database``, the node's own file for what is not shared yet.
    """
    if config.database is not None and not is_postgres_url(config.database):
        return Path(config.database)
    return Path(config.storage.root) / ".dicomwire" / "node.sqlite"


#: Tables the node reads itself ([storage] too: it lives in NodeConfig.storage); every
#: other service's table goes to NodeConfig.sections.
_NODE_TABLES = ("timeouts", "tls", "known_nodes", "nodes", "storage")


def load_config(
    path: str | Path, service_types: Mapping[str, type[Service]] = SERVICE_TYPES
) -> NodeConfig:
    """Read a node configuration from TOML (see docs/node.md for every key).

    Every key is checked against its dataclass field: an unknown key, a wrong type or a
    missing required value is a :class:`ConfigError` naming the file, the table and the key.
    """
    file = str(path)
    try:
        with open(path, "rb") as handle:
            data = dict(tomllib.load(handle))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", file=file) from exc
    if isinstance(data.get("ae_titles"), str):
        data["ae_titles"] = [data["ae_titles"]]
    tables = {name: data.pop(name) for name in list(data) if name in _NODE_TABLES}
    section_tables = {name: data.pop(name) for name in list(data) if name in service_types}

    def entries(name: str, kind: type[Any]) -> list[Any]:
        listed = tables.get(name, [])
        if not isinstance(listed, list):
            raise ConfigError(f"{file}: [[{name}]] must be an array of tables", file=file)
        return [build(kind, entry, file=file, where=f"[[{name}]]") for entry in listed]

    timeouts = dict(tables.get("timeouts", {}))
    for key, value in timeouts.items():  # 0 disables a timeout
        if value == 0 and not isinstance(value, bool):
            timeouts[key] = None
    config = build(NodeConfig, data, file=file, where=file)
    config.timeouts = build(Timeouts, {"dimse": None, **timeouts}, file=file, where="[timeouts]")
    config.storage = build(StorageConfig, tables.get("storage", {}), file=file, where="[storage]")
    config.known_nodes = entries("known_nodes", KnownNode)
    config.nodes = entries("nodes", RemoteAE)
    for name, table in section_tables.items():
        kind = service_types[name].config_type
        if kind is not None:
            config.sections[name] = build(kind, table, file=file, where=f"[{name}]")
    if "tls" in tables:
        config.tls = build(TLSConfig, tables["tls"], file=file, where="[tls]")
        if config.tls_port is None:
            config.tls_port = 2762  # the registered dicom-tls port
    try:
        return validate_config(config)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}", file=file, key=exc.key) from None


def _check(condition: bool, message: str, key: str) -> None:
    if not condition:
        raise ConfigError(message, key=key)


def validate_config(config: NodeConfig) -> NodeConfig:
    """Check every setting's type and range; raise :class:`ConfigError` naming the first bad one."""
    titles = config.ae_titles
    _check(
        isinstance(titles, list) and bool(titles) and all(isinstance(t, str) for t in titles),
        f"ae_titles must be a non-empty list of AE titles, not {titles!r}",
        "ae_titles",
    )
    try:
        config.ae_titles = [validate_ae_title(t) for t in titles]
    except DicomWireError as exc:
        raise ConfigError(f"ae_titles: {exc}", key="ae_titles") from None

    def whole(name: str, value: object, low: int, high: int) -> None:
        _check(
            isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
            f"{name} must be a whole number from {low} to {high}, not {value!r}",
            name,
        )

    whole("port", config.port, 0, 65535)
    if config.tls_port is not None:
        whole("tls_port", config.tls_port, 0, 65535)
    whole("max_associations", config.max_associations, 1, 1 << 30)
    whole("max_pdu_length", config.max_pdu_length, 0, 0xFFFFFFFF)
    whole("max_operations_invoked", config.max_operations_invoked, 0, 0xFFFF)
    whole("max_operations_performed", config.max_operations_performed, 0, 0xFFFF)
    whole("workers", config.workers, 1, 1024)
    for name in ("promiscuous", "restrict_callers"):
        _check(isinstance(getattr(config, name), bool), f"{name} must be true or false", name)
    _check(
        config.host is None or isinstance(config.host, str),
        f"host must be text: {config.host!r}",
        "host",
    )
    storage = config.storage
    for name in ("fsync", "discard"):
        _check(
            isinstance(getattr(storage, name), bool),
            f"storage.{name} must be true or false",
            f"storage.{name}",
        )
    _check(
        storage.duplicates in ("overwrite", "keep", "reject"),
        f"storage.duplicates must be overwrite, keep or reject, not {storage.duplicates!r}",
        "storage.duplicates",
    )
    try:
        validate_layout(storage.layout)
    except DicomWireError as exc:
        raise ConfigError(str(exc), key="storage.layout") from None
    _check(
        bool(storage.transfer_syntaxes) and all(is_valid_uid(t) for t in storage.transfer_syntaxes),
        f"storage.transfer_syntaxes must be a list of UIDs: {storage.transfer_syntaxes!r}",
        "storage.transfer_syntaxes",
    )
    for name in ("artim", "acse", "dimse", "network_idle", "connect"):
        value = getattr(config.timeouts, name)
        _check(
            value is None or (isinstance(value, int | float) and value > 0),
            f"timeouts.{name} must be a positive number of seconds, not {value!r}",
            f"timeouts.{name}",
        )
    _check(
        isinstance(config.shutdown_grace, int | float) and config.shutdown_grace >= 0,
        f"shutdown_grace must be a number of seconds, not {config.shutdown_grace!r}",
        "shutdown_grace",
    )
    AEDirectory(config.nodes)  # titles valid and unique, ports in range
    return config


def default_services(config: NodeConfig) -> list[Service]:
    """What ``dicomwire serve`` runs, sharing one database (:func:`database_path`).

    Verification, Storage (promiscuous if asked) and Query/Retrieve over one index
    (:func:`~.database.open_index`, opened when first used); when the node keeps what it stores,
    also Storage Commitment, Modality Worklist and MPPS (their ``[storage_commitment]``,
    ``[worklist]``, ``[mpps]`` tables tune them), the MPPS setting the worklist's step
    statuses (:func:`worklist_follows_mpps`). The virtual film printer runs when the
    configuration has a ``[print]`` table. The audit trail goes to a local rotating file
    unless ``[audit]`` says otherwise (:meth:`Audit.for_node`). A node discarding what it
    receives (a benchmark receiver) runs only the first three unless ``database`` is set
    (and audits only with an ``[audit]`` table).
    """
    index = open_index(config)
    sections = config.sections
    services: list[Service] = [
        Verification(),
        Storage(config.storage, accept_any=config.promiscuous, index=index),
        QueryRetrieve(index, sections.get("query_retrieve")),
    ]
    if not config.storage.discard or config.database is not None:
        worklist = Worklist.for_node(config)
        mpps = MPPS(sections.get("mpps"))
        mpps.hooks.append(worklist_follows_mpps(worklist.store, mpps.step))
        services += [
            StorageCommitment(sections.get("storage_commitment"), index=index),
            worklist,
            mpps,
        ]
    else:
        unserved = sorted({"storage_commitment", "worklist", "mpps"} & set(sections))
        if unserved:
            log.warning(
                "discarding what it receives without a database: [%s] configured but not "
                "served (set database to serve them)",
                "], [".join(unserved),
            )
    if "print" in sections:
        services.append(Print(sections["print"], storage_root=config.storage.root))
    audit = Audit.for_node(config)
    if audit is not None:
        services.append(audit)
    return services


#: The Scheduled Procedure Step Status (0040,0020; PS3.3 C.4.10) a worklist entry takes
#: when the performed step that carries it out reaches a Performed Procedure Step Status.
SCHEDULED_STATUS_FOR = {
    "IN PROGRESS": "STARTED",
    "COMPLETED": "COMPLETED",
    "DISCONTINUED": "DISCONTINUED",
}


def worklist_follows_mpps(
    store: WorklistStore, current: Callable[[str], Step | None] | None = None
) -> StatusHook:
    """An MPPS ``on_status`` hook keeping the worklist in step with what was performed.

    Each scheduled step an MPPS names (Scheduled Step Attributes Sequence: Study Instance
    UID and Scheduled Procedure Step ID) gets the status of :data:`SCHEDULED_STATUS_FOR`
    in the entries added to ``store`` (a watched folder's files are the RIS's to change).
    The writes run on a thread, one at a time in the order of the changes: the modality's
    answer never waits for them, and a step created then ended at once ends COMPLETED.
    ``current`` (the MPPS service's ``step``) reads a step as it is now: a STARTED that
    comes late (another worker ended the step meanwhile) is then left out.
    """
    in_order = asyncio.Lock()

    async def follow(step: Step) -> None:
        status = SCHEDULED_STATUS_FOR.get(step.status)
        if status is None:
            return
        async with in_order:
            if not step.finished and current is not None:
                now = await asyncio.to_thread(current, step.uid)
                if now is not None and now.finished:
                    return
            for scheduled in step.scheduled:
                study = scheduled["StudyInstanceUID"]
                if not study:
                    continue
                step_id = scheduled["ScheduledProcedureStepID"] or None
                changed = await asyncio.to_thread(store.set_step_status, study, step_id, status)
                log.log(
                    logging.INFO if changed else logging.DEBUG,
                    "MPPS %s %s: %d worklist entries of study %s step %s now %s",
                    step.uid,
                    step.status,
                    changed,
                    study,
                    step_id or "(any)",
                    status,
                )

    return follow


class Node:
    """A node made of services: acceptance policy and handler table derived from them.

    ``services`` defaults to :func:`default_services` (Verification, Storage, Q/R). The
    policy accepts exactly the SOP classes the services bind, with their transfer
    syntaxes; the handler table is the union of their handlers; the AE directory
    (``directory``) is ``config.nodes``.
    """

    def __init__(self, config: NodeConfig, services: Sequence[Service] | None = None) -> None:
        self.config = validate_config(config)
        self.services: list[Service] = (
            list(services) if services is not None else default_services(config)
        )
        self.directory = AEDirectory(config.nodes)
        self.handlers: dict[HandlerKey, Handler] = {}
        for service in self.services:
            self.handlers.update(service.handler_table())
        self.policy = self.build_policy()
        self.server = AssociationServer(self.policy, self.handle, timeouts=config.timeouts)

    def service(self, name: str) -> Service:
        """The service called ``name`` (KeyError if the node has none)."""
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    @property
    def storage(self) -> Any:
        """The Storage service's SCP (its ``stored`` counter), if the node stores."""
        service = self.service("storage")
        assert isinstance(service, Storage)
        return service.scp

    def build_policy(self) -> AcceptorPolicy:
        """The acceptance policy the services' bindings imply (PS3.8 §9.3.3.2, Table 9-18)."""
        bindings = merge_bindings(self.services)
        catch_all = bindings.pop(ANY_SOP_CLASS, None)
        callers: Sequence[KnownNode] = self.config.known_nodes or (
            self.config.nodes if self.config.restrict_callers else ()
        )
        return AcceptorPolicy(
            ae_titles=tuple(self.config.ae_titles),
            promiscuous=self.config.promiscuous,
            known_nodes=tuple(callers),
            abstract_syntaxes={uid: tuple(b.transfer_syntaxes) for uid, b in bindings.items()},
            transfer_syntaxes=(
                tuple(catch_all.transfer_syntaxes)
                if catch_all is not None
                else tuple(self.config.storage.transfer_syntaxes)
            ),
            accept_any_abstract_syntax=catch_all is not None,
            scp_role_for=tuple(uid for uid, b in bindings.items() if b.requestor_may_be_scp),
            extended_negotiation=_extended_negotiation(bindings),
            max_pdu_length=self.config.max_pdu_length,
            maximum_invoked=self.config.max_operations_invoked,
            maximum_performed=self.config.max_operations_performed,
            max_associations=self.config.max_associations,
        )

    async def handle(self, association: Association) -> None:
        """Serve DIMSE requests on one association until the peer releases or aborts.

        Its end is one summary line (INFO, ``-v``): who, from where, instances stored and
        refused, bytes, seconds, and how it ended.
        """
        started = time.monotonic()
        session = DimseSession(association, handlers=self.handlers)
        for service in self.services:
            session.sinks.update(service.sinks(session))
        ending: BaseException | None = None
        try:
            await session.run()
        except BaseException as exc:
            ending = exc
            raise
        finally:
            negotiated = association.negotiated
            quiet = negotiated is not None and (
                negotiated.remote_ae_title.strip() in self.config.health_check_callers
            )
            level = logging.DEBUG if quiet else logging.INFO
            if association_log.isEnabledFor(level):
                self._summarize(association, session, time.monotonic() - started, ending, level)

    def _summarize(
        self,
        association: Association,
        session: DimseSession,
        seconds: float,
        ending: BaseException | None,
        level: int = logging.INFO,
    ) -> None:
        tally = AssociationTally()
        with contextlib.suppress(KeyError):
            tally = self.storage.tally(session)
        error = ending if isinstance(ending, DicomWireError) else association.error
        negotiated = association.negotiated
        association_log.log(
            level,
            "association from %s at %s: %d stored, %d refused, %d bytes in %.3f s (%s)",
            negotiated.remote_ae_title if negotiated is not None else "?",
            peer_text(association.peer_address),
            tally.stored,
            tally.refused,
            tally.bytes,
            seconds,
            error if error is not None else "released",
        )

    @property
    def port(self) -> int:
        """The port listened on (useful with port 0)."""
        return self.server.port

    async def start(self) -> None:
        """Listen (plain TCP, and TLS when configured), then start every service."""
        shared = self.config.workers > 1
        await self.server.start(self.config.host, self.config.port, reuse_port=shared)
        if self.config.tls is not None and self.config.tls_port is not None:
            await self.server.start(
                self.config.host, self.config.tls_port, self.config.tls, reuse_port=shared
            )
        for service in self.services:
            await service.start(self)

    async def shutdown(self) -> None:
        """Stop accepting, let associations finish (``shutdown_grace``), stop the services."""
        await self.server.shutdown(grace=self.config.shutdown_grace)
        for service in reversed(self.services):
            try:
                await service.stop()
            except Exception:  # one service's failure must not keep the others running
                log.exception("stopping service %s failed", service.name)

    async def serve_forever(self) -> None:
        """Start (if not started) and serve until cancelled."""
        if not self.server.sockets:
            await self.start()
        await asyncio.Event().wait()

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()


def _extended_negotiation(
    bindings: Mapping[str, Binding],
) -> Callable[[str, bytes], bytes | None] | None:
    """The policy's extended negotiation: each SOP class's sub-item to its binding."""
    answering = {
        uid: b.extended_negotiation for uid, b in bindings.items() if b.extended_negotiation
    }
    if not answering:
        return None

    def answer(sop_class_uid: str, info: bytes) -> bytes | None:
        handler = answering.get(sop_class_uid)
        return handler(info) if handler is not None else None

    return answer


def prepare_node(config: NodeConfig) -> None:
    """Check what must hold before listening; settle what a crash left behind.

    The storage root must be a writable directory (:func:`~.storage.scp.prepare_root`);
    TLS certificate, key and CA files must exist; the index must open (its folder is
    created). A :class:`ConfigError` names the path. Stale ``.part`` files are removed
    and the index reconciled with the files (:meth:`~.index.Index.reconcile`: additions a
    crash interrupted are completed or dropped), both logged. Run it once, before any
    process serves: ``run_workers`` runs it in the parent, before the fork.
    """
    if config.tls is not None:
        check_tls_files(config.tls)
    if config.storage.discard and config.database is None:
        return  # nothing is written
    if not config.storage.discard:
        removed = prepare_root(config.storage)
        if removed:
            log.warning(
                "removed %d partial files left in %s by an earlier run",
                removed,
                config.storage.root / ".incoming",
            )
    index = open_index(config)
    try:
        index.reconcile()
    except DicomWireError as exc:
        raise ConfigError(str(exc), key="database") from None
    finally:
        index.close()  # each process (worker) opens its own connection


def banner(node: Node) -> str:
    """The start line: AE titles, addresses, TLS, storage, directory, the Q/R index, services."""
    config = node.config
    ports = [str(s.getsockname()[1]) for s in node.server.sockets]
    plain = ports[0] if ports else str(config.port)
    tls = "no TLS"
    if config.tls is not None:
        tls_port = ports[-1] if len(ports) > 1 else config.tls_port
        tls = f"TLS port {tls_port} ({config.tls.profile.value})"
    storage = (
        "discarding what it receives"
        if config.storage.discard
        else f"storing under {config.storage.root}"
    )
    index = open_index(config).path
    callers = config.known_nodes or (config.nodes if config.restrict_callers else ())
    return (
        f"dicomwire node {'/'.join(config.ae_titles)} listening on port {plain} "
        f"({config.host or 'every address'}), {tls}; {storage}; "
        f"{len(config.known_nodes)} known nodes, {len(config.nodes)} directory entries"
        f"{'' if callers else ', any caller accepted'}"
        f"; Q/R index {'in memory' if index == ':memory:' else index}"
        f"; services {', '.join(service.name for service in node.services)}"
    )


async def run_node(
    config: NodeConfig, *, ready: asyncio.Event | None = None, prepared: bool = False
) -> None:
    """Run the node until SIGINT or SIGTERM, then shut down gracefully.

    ``prepared``: :func:`prepare_node` already ran (a worker: the parent ran it once).
    """
    if not prepared:
        prepare_node(config)
    node = Node(config)
    await node.start()
    log.info("%s", banner(node))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await node.shutdown()


def _worker(config: NodeConfig) -> None:  # pragma: no cover - runs in a child process
    from ..ul.association import run_event_loop

    with contextlib.suppress(KeyboardInterrupt):
        run_event_loop(run_node(config, prepared=True))


def run_workers(config: NodeConfig) -> int:
    """Run ``config.workers`` node processes on the same ports (SO_REUSEPORT).

    The parent only supervises: SIGINT/SIGTERM are passed on, and it returns once every
    worker has stopped (exit code 1 if one failed).
    """
    import multiprocessing

    prepare_node(config)
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(target=_worker, args=(config,), name=f"dicomwire-worker-{n}")
        for n in range(config.workers)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, frame: object) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for process in processes:
            process.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if all(p.exitcode == 0 for p in processes) else 1
