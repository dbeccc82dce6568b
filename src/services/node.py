"""The dicomwire node: one process answering associations as Verification and Storage SCP.

PS3.8 acceptor with the acceptance policy of :mod:`dicomwire.ul.negotiation`, PS3.7 DIMSE
through :class:`~dicomwire.dimse.session.DimseSession`, PS3.4 Annex A (verification) and
Annex B (storage). Configuration is a :class:`NodeConfig`, loaded from TOML by
:func:`load_config`; ``dicomwire serve`` and ``make serve`` run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..dimse.commands import CommandField
from ..dimse.session import DimseSession, Handler, SinkFactory
from ..errors import ConfigError, DicomWireError
from ..ul.association import Association, AssociationServer, Timeouts
from ..ul.identifiers import is_valid_uid, validate_ae_title
from ..ul.negotiation import (
    DEFAULT_MAX_PDU_LENGTH,
    DEFAULT_TRANSFER_SYNTAXES,
    AcceptorPolicy,
    KnownNode,
)
from ..ul.tls import TLSConfig, TLSProfile
from .storage import StorageConfig, StorageSCP, storage_sop_classes, validate_layout
from .verification import VERIFICATION_SOP_CLASS, handle_echo

__all__ = [
    "ConfigError",
    "Node",
    "NodeConfig",
    "load_config",
    "run_node",
    "run_workers",
    "validate_config",
]

log = logging.getLogger("dicomwire.services.node")


@dataclass(slots=True)
class NodeConfig:
    """What a node is: AE titles, where it listens, limits, storage, known remote nodes."""

    ae_titles: list[str] = field(default_factory=lambda: ["DICOMWIRE"])
    host: str | None = None
    port: int = 11112
    promiscuous: bool = False
    max_associations: int = 100
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH
    known_nodes: list[KnownNode] = field(default_factory=list)
    storage: StorageConfig = field(default_factory=StorageConfig)
    timeouts: Timeouts = field(default_factory=lambda: Timeouts(dimse=None))
    shutdown_grace: float = 10.0
    #: PS3.15 secure transport: listen for TLS on ``tls_port`` beside the plain ``port``.
    tls: TLSConfig | None = None
    tls_port: int | None = None
    #: Processes sharing the ports with SO_REUSEPORT (one per core); limits are per process.
    workers: int = 1


def _build(kind: type[Any], table: dict[str, Any], where: str) -> Any:
    names = {f.name for f in fields(kind)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s) in {where}: {', '.join(unknown)}")
    return kind(**table)


def load_config(path: str | Path) -> NodeConfig:
    """Read a node configuration from TOML (see docs/node.md for every key)."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    data = dict(data)
    try:
        storage = dict(data.pop("storage", {}))
        if "root" in storage:
            storage["root"] = Path(storage["root"])
        timeouts = {
            key: (None if value in (0, None) else float(value))
            for key, value in dict(data.pop("timeouts", {})).items()
        }
        known = [_build(KnownNode, dict(n), "[[known_nodes]]") for n in data.pop("known_nodes", [])]
        tls_table = dict(data.pop("tls", {}))
        for key in ("certificate", "key", "pkcs12", "ca_file", "ca_dir"):
            if key in tls_table:
                tls_table[key] = Path(tls_table[key])
        if "password" in tls_table:
            tls_table["password"] = str(tls_table["password"]).encode()
        if "profile" in tls_table:
            tls_table["profile"] = TLSProfile(tls_table["profile"])
        config: NodeConfig = _build(NodeConfig, data, str(path))
        config.storage = _build(StorageConfig, storage, "[storage]")
        config.timeouts = _build(Timeouts, {"dimse": None, **timeouts}, "[timeouts]")
        config.known_nodes = known
        if tls_table:
            config.tls = _build(TLSConfig, tls_table, "[tls]")
            if config.tls_port is None:
                config.tls_port = 2762  # the registered dicom-tls port
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if isinstance(config.ae_titles, str):
        config.ae_titles = [config.ae_titles]
    return validate_config(config)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate_config(config: NodeConfig) -> NodeConfig:
    """Check every setting's type and range; raise :class:`ConfigError` naming the first bad one."""
    titles = config.ae_titles
    _check(
        isinstance(titles, list) and bool(titles) and all(isinstance(t, str) for t in titles),
        f"ae_titles must be a non-empty list of AE titles, not {titles!r}",
    )
    try:
        config.ae_titles = [validate_ae_title(t) for t in titles]
    except DicomWireError as exc:
        raise ConfigError(f"ae_titles: {exc}") from None

    def whole(name: str, value: object, low: int, high: int) -> None:
        _check(
            isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
            f"{name} must be a whole number from {low} to {high}, not {value!r}",
        )

    whole("port", config.port, 0, 65535)
    if config.tls_port is not None:
        whole("tls_port", config.tls_port, 0, 65535)
    whole("max_associations", config.max_associations, 1, 1 << 30)
    whole("max_pdu_length", config.max_pdu_length, 0, 0xFFFFFFFF)
    whole("workers", config.workers, 1, 1024)
    for name in ("promiscuous",):
        _check(isinstance(getattr(config, name), bool), f"{name} must be true or false")
    _check(
        config.host is None or isinstance(config.host, str), f"host must be text: {config.host!r}"
    )
    storage = config.storage
    for name in ("fsync", "discard"):
        _check(isinstance(getattr(storage, name), bool), f"storage.{name} must be true or false")
    _check(
        storage.duplicates in ("overwrite", "keep", "reject"),
        f"storage.duplicates must be overwrite, keep or reject, not {storage.duplicates!r}",
    )
    try:
        validate_layout(storage.layout)
    except DicomWireError as exc:
        raise ConfigError(str(exc)) from None
    _check(
        bool(storage.transfer_syntaxes) and all(is_valid_uid(t) for t in storage.transfer_syntaxes),
        f"storage.transfer_syntaxes must be a list of UIDs: {storage.transfer_syntaxes!r}",
    )
    for name in ("artim", "acse", "dimse", "network_idle", "connect"):
        value = getattr(config.timeouts, name)
        _check(
            value is None or (isinstance(value, int | float) and value > 0),
            f"timeouts.{name} must be a positive number of seconds, not {value!r}",
        )
    _check(
        isinstance(config.shutdown_grace, int | float) and config.shutdown_grace >= 0,
        f"shutdown_grace must be a number of seconds, not {config.shutdown_grace!r}",
    )
    return config


class Node:
    """The node's acceptance policy and the DIMSE services each association gets."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = validate_config(config)
        self.storage = StorageSCP(config.storage)
        self.handlers: dict[int | tuple[str, int], Handler] = {
            CommandField.C_ECHO_RQ: handle_echo,
            CommandField.C_STORE_RQ: self.storage.handle,
        }
        self.policy = self.build_policy()
        self.server = AssociationServer(self.policy, self.handle, timeouts=config.timeouts)

    def build_policy(self) -> AcceptorPolicy:
        """Verification plus every storage SOP class (any abstract syntax if promiscuous)."""
        syntaxes: dict[str, tuple[str, ...]] = {
            uid: tuple(self.config.storage.transfer_syntaxes) for uid in storage_sop_classes()
        }
        syntaxes[VERIFICATION_SOP_CLASS] = DEFAULT_TRANSFER_SYNTAXES
        return AcceptorPolicy(
            ae_titles=tuple(self.config.ae_titles),
            promiscuous=self.config.promiscuous,
            known_nodes=tuple(self.config.known_nodes),
            abstract_syntaxes=syntaxes,
            transfer_syntaxes=tuple(self.config.storage.transfer_syntaxes),
            accept_any_abstract_syntax=self.config.promiscuous,
            max_pdu_length=self.config.max_pdu_length,
            max_associations=self.config.max_associations,
        )

    async def handle(self, association: Association) -> None:
        """Serve DIMSE requests on one association until the peer releases or aborts."""
        session = DimseSession(association, handlers=self.handlers)
        sink: SinkFactory = self.storage.sink_for(session)
        session.sinks[CommandField.C_STORE_RQ] = sink
        await session.run()

    @property
    def port(self) -> int:
        """The port listened on (useful with port 0)."""
        return self.server.port

    async def start(self) -> None:
        shared = self.config.workers > 1
        await self.server.start(self.config.host, self.config.port, reuse_port=shared)
        if self.config.tls is not None and self.config.tls_port is not None:
            await self.server.start(
                self.config.host, self.config.tls_port, self.config.tls, reuse_port=shared
            )

    async def shutdown(self) -> None:
        await self.server.shutdown(grace=self.config.shutdown_grace)

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()


async def run_node(config: NodeConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run the node until SIGINT or SIGTERM, then shut down gracefully."""
    config.storage.root.mkdir(parents=True, exist_ok=True)
    node = Node(config)
    await node.start()
    log.warning(
        "dicomwire node %s listening on port %d, storing under %s%s",
        "/".join(config.ae_titles),
        node.server.port,
        config.storage.root,
        " (discarding)" if config.storage.discard else "",
    )
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
        log.warning("shutting down")
        await node.shutdown()


def _worker(config: NodeConfig) -> None:  # pragma: no cover - runs in a child process
    from ..ul.association import run_event_loop

    with contextlib.suppress(KeyboardInterrupt):
        run_event_loop(run_node(config))


def run_workers(config: NodeConfig) -> int:
    """Run ``config.workers`` node processes on the same ports (SO_REUSEPORT).

    The parent only supervises: SIGINT/SIGTERM are passed on, and it returns once every
    worker has stopped (exit code 1 if one failed).
    """
    import multiprocessing

    config.storage.root.mkdir(parents=True, exist_ok=True)
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
