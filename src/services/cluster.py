"""Several nodes behind HAProxy sharing one PostgreSQL database (docs/scale-out.md).

dicomwire does not cluster itself: N stateless ``dicomwire serve`` processes with the same
AE title, one storage root and one ``postgresql://`` database, behind HAProxy in TCP mode.
This module holds the two pieces that are dicomwire's own:

- the **health check**: HAProxy's ``tcp-check`` sends an A-ASSOCIATE-RQ proposing
  Verification (PS3.8 §9.3.2, built by :mod:`dicomwire.ul.negotiation`, never written
  by hand), expects an A-ASSOCIATE-AC (PDU type 02H, §9.3.3), then sends an
  A-RELEASE-RQ (§9.3.6) and expects the A-RELEASE-RP (06H, §9.3.7), so the node ends the
  association cleanly; :func:`haproxy_config` writes the configuration around it;
- :class:`Cluster`, a try-out on one machine (``dicomwire cluster``, ``make cluster``):
  a throwaway PostgreSQL (:mod:`.postgres.throwaway`), the nodes and HAProxy on free
  ports of 127.0.0.1, stopped together. The tests and ``bench/cluster.py`` use it too.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LaunchError
from ..uids import IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION_SOP_CLASS
from ..ul.negotiation import RequestorConfig, build_request
from ..ul.pdu import AReleaseRQ, PDUType
from .postgres.throwaway import ThrowawayPostgres, free_port, start_throwaway_postgres

__all__ = [
    "HEALTH_CHECK_AE_TITLE",
    "Cluster",
    "ClusterNode",
    "haproxy_config",
    "haproxy_server_states",
    "health_check_release",
    "health_check_request",
]

#: The calling AE title of HAProxy's health check; nodes list it in
#: ``health_check_callers`` so its associations are logged at DEBUG, not INFO.
HEALTH_CHECK_AE_TITLE = "HAPROXY-CHECK"

#: The nodes' AE title when none is given.
DEFAULT_AE_TITLE = "DICOMWIRE"


def health_check_request(
    called_ae_title: str, calling_ae_title: str = HEALTH_CHECK_AE_TITLE
) -> bytes:
    """The A-ASSOCIATE-RQ of the health check: Verification, Implicit VR Little Endian."""
    request, _ = build_request(
        RequestorConfig(
            calling_ae_title,
            called_ae_title,
            [(VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LITTLE_ENDIAN])],
        )
    )
    return request.encode()


def health_check_release() -> bytes:
    """The A-RELEASE-RQ that ends the health check's association."""
    return AReleaseRQ().encode()


def haproxy_config(
    nodes: Sequence[tuple[str, int]],
    *,
    listen: tuple[str, int],
    ae_title: str = DEFAULT_AE_TITLE,
    check_ae_title: str = HEALTH_CHECK_AE_TITLE,
    check_interval: float = 2.0,
    check_timeout: float = 5.0,
    stats_socket: Path | None = None,
) -> str:
    """HAProxy's configuration: TCP mode, least connections, the DICOM health check.

    ``nodes`` are (host, port); ``listen`` is where modalities connect. A node is taken
    out after two failed checks and back after two good ones (``check_interval`` apart);
    a connection refused by a node is retried on another (``redispatch``). A node that
    does not answer the check within ``check_timeout`` fails it.
    """
    interval_ms = max(100, round(check_interval * 1000))
    timeout_ms = max(100, round(check_timeout * 1000))
    associate_ac, release_rp = f"{PDUType.A_ASSOCIATE_AC:02x}", f"{PDUType.A_RELEASE_RP:02x}"
    lines = [
        "# Written by dicomwire (dicomwire.services.cluster.haproxy_config); docs/scale-out.md",
        "global",
        "    maxconn 4096",
    ]
    if stats_socket is not None:
        lines.append(f"    stats socket {stats_socket} mode 600 level admin")
    lines += [
        "",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    # an association may sit idle between operations (a modality's study);",
        "    # the nodes' own idle timeout ends it first",
        "    timeout client 1h",
        "    timeout server 1h",
        f"    timeout check {timeout_ms}ms",
        "    retries 3",
        "    option redispatch",
        "",
        "frontend dicom",
        f"    bind {listen[0]}:{listen[1]}",
        "    default_backend nodes",
        "",
        "backend nodes",
        "    # associations last from one C-ECHO to hours of C-STOREs: the least busy node",
        "    balance leastconn",
        "    option tcp-check",
        "    tcp-check connect",
        f"    # A-ASSOCIATE-RQ {check_ae_title} -> {ae_title}, Verification (PS3.8 9.3.2)",
        f"    tcp-check send-binary {health_check_request(ae_title, check_ae_title).hex()}",
        "    # the reply starts with an A-ASSOCIATE-AC, PDU type 02 (an -RJ is 03); min-recv 1:",
        "    # decide on the first byte (a node that rejects keeps the connection open)",
        f"    tcp-check expect min-recv 1 rbinary ^{associate_ac} comment A-ASSOCIATE-AC",
        "    # A-RELEASE-RQ; the A-RELEASE-RP (06) ends the association cleanly",
        f"    tcp-check send-binary {health_check_release().hex()}",
        f"    tcp-check expect min-recv 1 rbinary ^{release_rp} comment A-RELEASE-RP",
        f"    default-server inter {interval_ms}ms fall 2 rise 2",
    ]
    lines += [
        f"    server node{number} {host}:{port} check"
        for number, (host, port) in enumerate(nodes, 1)
    ]
    return "\n".join(lines) + "\n"


def haproxy_server_states(stats_socket: Path) -> dict[str, str]:
    """The backend's servers and their states (``UP``, ``DOWN``...), from HAProxy's stats
    socket (``show stat``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(stats_socket))
        sock.sendall(b"show stat\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    lines = b"".join(chunks).decode(errors="replace").splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    header = lines[0][2:].split(",")
    name, state = header.index("svname"), header.index("status")
    rows = [line.split(",") for line in lines[1:] if line]
    return {
        row[name]: row[state]
        for row in rows
        if row[0] == "nodes" and row[name] not in ("BACKEND", "FRONTEND")
    }


def wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once ``host:port`` accepts connections; LaunchError if ``process`` exits."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace") if log.exists() else ""
            raise LaunchError(f"{process.args!r} exited {process.returncode}: {output}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise LaunchError(f"{process.args!r} did not listen on {host}:{port} within 30 s")


@dataclass
class ClusterNode:
    """One ``dicomwire serve`` process of a :class:`Cluster`."""

    name: str
    port: int
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0


@dataclass
class Cluster:
    """PostgreSQL, ``nodes`` ``dicomwire serve`` processes and HAProxy on 127.0.0.1.

    Every node has the same AE title, the storage root ``directory/storage`` and the
    database ``database_url`` (a throwaway PostgreSQL when None), and an audit trail of its
    own (``directory/<name>-audit.log``, AuditSourceID ``<AE title>-<name>``).
    ``node_tables`` is TOML appended to each node's configuration (tables only, not
    ``[storage]`` or ``[audit]``: ``[[nodes]]``, ``[storage_commitment]``...). Use it as a
    context manager or call :meth:`start` and :meth:`stop`.
    """

    directory: Path
    nodes: int = 3
    ae_title: str = DEFAULT_AE_TITLE
    database_url: str | None = None
    port: int = 0
    host: str = "127.0.0.1"
    check_interval: float = 2.0
    fsync: bool = True
    verbose: bool = True
    node_tables: str = ""
    members: list[ClusterNode] = field(default_factory=list)
    postgres: ThrowawayPostgres | None = None
    haproxy: subprocess.Popen[bytes] | None = None

    @property
    def storage_root(self) -> Path:
        return self.directory / "storage"

    @property
    def stats_socket(self) -> Path:
        return self.directory / "haproxy.sock"

    def start(self) -> Cluster:
        """Start everything; LaunchError (everything started stopped again) on failure."""
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            raise LaunchError("HAProxy is not installed (apt-get install haproxy)", missing=True)
        try:
            if self.database_url is None:
                self.postgres = start_throwaway_postgres()
                self.database_url = self.postgres.create_database("dicomwire")
            self.storage_root.mkdir(parents=True, exist_ok=True)
            for number in range(1, self.nodes + 1):
                self.members.append(self._configure(f"node{number}"))
            for node in self.members:
                self.start_node(node)
            self.port = self.port or free_port(self.host)
            config = self.directory / "haproxy.cfg"
            config.write_text(
                haproxy_config(
                    [(self.host, node.port) for node in self.members],
                    listen=(self.host, self.port),
                    ae_title=self.ae_title,
                    check_interval=self.check_interval,
                    stats_socket=self.stats_socket,
                )
            )
            log = self.directory / "haproxy.log"
            with open(log, "wb") as output:
                self.haproxy = subprocess.Popen(
                    [haproxy, "-db", "-f", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            wait_for_port(self.host, self.port, self.haproxy, log)
            self.wait_for_servers(up=len(self.members))
        except BaseException:
            self.stop()
            raise
        return self

    def _configure(self, name: str) -> ClusterNode:
        port = free_port(self.host)
        config = self.directory / f"{name}.toml"
        config.write_text(
            f'ae_titles = ["{self.ae_title}"]\nhost = "{self.host}"\nport = {port}\n'
            f'database = "{self.database_url}"\n'
            f'health_check_callers = ["{HEALTH_CHECK_AE_TITLE}"]\n'
            f'[storage]\nroot = "{self.storage_root}"\nfsync = {str(self.fsync).lower()}\n'
            # each node its own audit trail and AuditSourceID: the default file lives in
            # the (shared) storage root, and the AE title is every node's
            f'[audit]\ndestinations = ["file:{self.directory / name}-audit.log"]\n'
            f'source_id = "{self.ae_title}-{name}"\n'
            f"{self.node_tables}"
        )
        return ClusterNode(name, port, config, self.directory / f"{name}.log")

    def start_node(self, node: ClusterNode) -> None:
        """Start (or start again) ``node``'s ``dicomwire serve``; return once it listens."""
        argv = [sys.executable, "-m", "dicomwire.services.cli", "serve", "--config"]
        argv += [str(node.config), *(["-v"] if self.verbose else [])]
        with open(node.log, "ab") as output:
            node.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
        wait_for_port(self.host, node.port, node.process, node.log)

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL ``node`` (no goodbye: as a crash or a power cut) and reap it."""
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait(timeout=10)

    def server_states(self) -> dict[str, str]:
        """HAProxy's view: each node's server name to its state (``UP``, ``DOWN``...)."""
        return haproxy_server_states(self.stats_socket)

    def wait_for_servers(self, up: int, timeout: float = 30.0) -> dict[str, str]:
        """Wait until exactly ``up`` servers are UP in HAProxy (its checks passed)."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                states = self.server_states()
            except OSError:
                states = {}
            if sum(state == "UP" for state in states.values()) == up and states:
                return states
            time.sleep(0.1)
        raise LaunchError(f"HAProxy did not see {up} nodes UP within {timeout} s: {states}")

    def stop(self) -> None:
        """Stop HAProxy, the nodes (SIGTERM, then SIGKILL) and the throwaway PostgreSQL."""
        processes = [self.haproxy, *(node.process for node in self.members)]
        for process in processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            if process is None:
                continue
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None

    def instructions(self) -> str:
        """How to send to the cluster, with DCMTK's tools."""
        at = f"{self.host} {self.port}"
        aec = f"-aec {self.ae_title}"
        lines = [
            f"HAProxy on {self.host}:{self.port} in front of {len(self.members)} nodes "
            f"(AE title {self.ae_title}):",
            *(
                f"  {node.name}: {self.host}:{node.port}, pid {node.pid}, log {node.log}"
                for node in self.members
            ),
            f"PostgreSQL: {self.database_url}",
            f"storage root (shared): {self.storage_root}",
            f"HAProxy: {self.directory / 'haproxy.cfg'}, log {self.directory / 'haproxy.log'}",
            "",
            "Try:",
            f"  echoscu -v {aec} {at}",
            f"  storescu -v {aec} +sd {at} /path/to/dicom/folder",
            f"  findscu -v -S {aec} -k QueryRetrieveLevel=STUDY -k StudyInstanceUID {at}",
            f"  dicomwire find {aec} -k QueryRetrieveLevel=STUDY -k StudyInstanceUID {at}",
            "",
            "Ctrl-C stops them all.",
        ]
        return "\n".join(lines)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_cluster(nodes: int, port: int, ae_title: str, directory: Path | None) -> int:
    """``dicomwire cluster``: start, print how to use it, wait for SIGINT/SIGTERM, stop."""
    keep = directory is not None
    base = directory or Path(tempfile.mkdtemp(prefix="dicomwire-cluster-"))
    base.mkdir(parents=True, exist_ok=True)
    stopping = False

    def stop_on_signal(number: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, stop_on_signal)
    cluster = Cluster(base, nodes=nodes, ae_title=ae_title, port=port)
    try:
        cluster.start()
        print(cluster.instructions(), flush=True)
        while not stopping:
            for node in cluster.members:
                if node.process is not None and node.process.poll() is not None:
                    print(f"{node.name} exited ({node.process.returncode}); see {node.log}")
                    node.process = None
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the cluster", file=sys.stderr)
        cluster.stop()
        signal.signal(signal.SIGTERM, previous)
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - python -m dicomwire.services.cluster
    raise SystemExit(run_cluster(3, 0, DEFAULT_AE_TITLE, None))
