"""Audit Trail Message Transmission Profiles (PS3.15 A.6): SYSLOG-TLS, SYSLOG-UDP, local file.

Each audit message is an RFC 5424 syslog message: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME
PROCID MSGID - MSG`` with facility 10 (security/authorization), severity 5 (notice) or 4
(warning) for a failure outcome, MSGID ``IHE+RFC-3881`` (IHE ITI-20) and the PS3.15 A.5
XML as MSG (UTF-8, after a BOM). Over TLS (RFC 5425, SYSLOG-TLS) each message is framed
by octet counting, ``MSG-LEN SP SYSLOG-MSG``, on a mutually authenticated connection; over
UDP (RFC 5426, SYSLOG-UDP) each is one datagram; a local file (the default) holds one
message per line and rotates by size.

:class:`AuditTrail` never blocks its caller: :meth:`AuditTrail.record` puts the message
on a bounded queue per destination, and one thread per destination formats and sends.
A full queue drops the message, counted in :attr:`AuditTrail.dropped` and logged. A
SYSLOG-TLS destination queues on disk (one file per message in its spool directory, sent
oldest first and removed once sent, kept across restarts) and retries a collector that is
down with back-off, so nothing is lost while the spool has room.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
import queue
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ...errors import ConfigError
from ...ul.tls import TLSConfig, client_context
from .messages import AuditMessage

__all__ = [
    "AuditConfig",
    "AuditTrail",
    "FileSink",
    "MSGID",
    "Sink",
    "TLSSink",
    "UDPSink",
    "format_syslog",
    "make_sink",
]

log = logging.getLogger("dicomwire.services.audit")

#: The syslog MSGID of a DICOM audit message (IHE ITI TF-2 §3.20.4.1.2).
MSGID = "IHE+RFC-3881"
#: Facility 10: security/authorization messages.
FACILITY = 10
_BOM = b"\xef\xbb\xbf"
#: Largest datagram payload sent over UDP (IPv4 maximum less headers).
MAX_DATAGRAM = 65507


@dataclass(slots=True)
class AuditConfig:
    """The ``[audit]`` table: where audit messages go and how they name this node.

    ``destinations``: ``file:PATH`` (one message per line; ``file:`` alone is
    ``<storage root>/.dicomwire/audit.log``), ``udp://host:port`` (SYSLOG-UDP) and
    ``tls://host:port`` (SYSLOG-TLS; ``ca_file``/``certificate``/``key`` default to the
    node's ``[tls]``). ``source_id`` (AuditSourceID) defaults to the first AE title.
    """

    destinations: list[str] = field(default_factory=lambda: ["file:"])
    #: ``false`` (or no destinations) turns the node's default audit trail off.
    enabled: bool = True
    app_name: str = "dicomwire"
    source_id: str = ""
    enterprise_site_id: str = ""
    ca_file: Path | None = None
    certificate: Path | None = None
    key: Path | None = None
    queue_size: int = 10000
    max_file_bytes: int = 10 << 20
    file_backups: int = 5
    retry_seconds: float = 2.0
    #: SYSLOG-TLS messages wait in ``<storage root>/.dicomwire/audit-spool/HOST-PORT`` until
    #: sent (they survive a restart); at most ``spool_limit`` of them, then drops are counted.
    spool: bool = True
    spool_limit: int = 100000

    def __post_init__(self) -> None:
        for destination in self.destinations:
            if destination.startswith("file:"):
                continue
            parts = urlsplit(destination)
            try:
                port = parts.port
            except ValueError:
                port = None
            if parts.scheme not in ("udp", "tls") or not parts.hostname or port is None:
                raise ValueError(
                    f"destination {destination!r}: expected file:PATH, udp://host:port or "
                    "tls://host:port"
                )
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, not {self.queue_size}")


def format_syslog(
    message: AuditMessage | bytes,
    *,
    app_name: str = "dicomwire",
    hostname: str | None = None,
    failed: bool = False,
    now: datetime.datetime | None = None,
) -> bytes:
    """The RFC 5424 SYSLOG-MSG carrying ``message`` (no framing)."""
    if isinstance(message, AuditMessage):
        failed, xml = message.failed, message.to_xml()
    else:
        xml = message
    severity = 4 if failed else 5
    moment = (now or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    stamp = moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    host = _field(hostname or socket.gethostname(), 255)
    app = _field(app_name, 48)
    pri = FACILITY * 8 + severity
    header = f"<{pri}>1 {stamp} {host} {app} {os.getpid()} {MSGID} -"
    return header.encode("ascii") + b" " + _BOM + xml


def _field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, ``-`` when empty (RFC 5424 §6)."""
    text = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return text or "-"


# --------------------------------------------------------------------------- sinks


class Sink:
    """Where syslog messages go; :meth:`send` raises OSError when it could not."""

    #: Whether a failed send is retried (the message kept) rather than dropped.
    retries = False
    #: A directory that keeps this destination's unsent messages on disk (None: in memory).
    spool: Path | None = None

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection or file."""


class FileSink(Sink):
    """Append one message per line to ``path``; rotate to ``path.1``... past ``max_bytes``.

    Several processes may share the file (``dicomwire serve --workers N``): each append,
    the size check and the rotation happen under an exclusive ``flock`` on ``path.lock``,
    so a message is never split nor written into a file another process is renaming, and
    only the writer whose message crossed ``max_bytes`` rotates (once).
    """

    retries = True

    def __init__(self, path: Path, max_bytes: int = 10 << 20, backups: int = 5) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.Lock()

    def send(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, _exclusive(self.lock_path):
            with open(self.path, "ab") as file:
                file.write(data + b"\n")
                size = file.tell()
            if self.max_bytes and size >= self.max_bytes:
                self._rotate()

    def _rotate(self) -> None:
        """Shift ``path.N`` to ``path.N+1`` and ``path`` to ``path.1`` (under the lock)."""
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
            return
        for number in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{number}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{number + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (shared by every process writing there)."""
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


class UDPSink(Sink):
    """SYSLOG-UDP (RFC 5426): one message per datagram."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_DGRAM)

    def send(self, data: bytes) -> None:
        if len(data) > MAX_DATAGRAM:
            raise OSError(f"message of {len(data)} bytes does not fit a UDP datagram")
        self._socket.sendto(data, self.address)

    def close(self) -> None:
        self._socket.close()


class TLSSink(Sink):
    """SYSLOG-TLS (RFC 5425): octet-counted messages over a mutually authenticated TLS link."""

    retries = True

    def __init__(
        self,
        host: str,
        port: int,
        tls: TLSConfig,
        timeout: float = 10.0,
        *,
        spool: Path | None = None,
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.spool = spool
        self.context: ssl.SSLContext = client_context(tls, host)
        self._socket: ssl.SSLSocket | None = None

    def _connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            secure = self.context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        log.info(
            "audit: connected to syslog collector %s:%d (%s)",
            self.host,
            self.port,
            secure.version(),
        )
        return secure

    def send(self, data: bytes) -> None:
        if self._socket is None:
            self._socket = self._connect()
        try:
            self._socket.sendall(b"%d " % len(data) + data)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError, ValueError):
                self._socket.settimeout(1.0)
                self._socket.unwrap()  # close_notify: a clean end for the collector
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None


def make_sink(
    destination: str, config: AuditConfig, *, default_file: Path, tls: TLSConfig | None = None
) -> Sink:
    """The sink a destination string names (see :class:`AuditConfig`); ConfigError if bad."""
    if destination.startswith("file:"):
        path = destination[len("file:") :]
        return FileSink(
            Path(path) if path else default_file, config.max_file_bytes, config.file_backups
        )
    parts = urlsplit(destination)
    port = parts.port
    if parts.scheme not in ("udp", "tls") or not parts.hostname or port is None:
        raise ConfigError(f"audit destination {destination!r}", key="audit.destinations")
    if parts.scheme == "udp":
        return UDPSink(parts.hostname, port)
    base = tls or TLSConfig()
    settings = TLSConfig(
        certificate=config.certificate or base.certificate,
        key=config.key or (base.key if config.certificate is None else None),
        password=base.password,
        pkcs12=None if config.certificate else base.pkcs12,
        ca_file=config.ca_file or base.ca_file,
        ca_dir=None if config.ca_file else base.ca_dir,
        profile=base.profile,
    )
    if settings.ca_file is None and settings.ca_dir is None:
        raise ConfigError(
            f"audit destination {destination}: needs ca_file (or [tls])", key="audit.ca_file"
        )
    spool = None
    if config.spool:
        spool = default_file.parent / "audit-spool" / f"{parts.hostname}-{port}"
    return TLSSink(parts.hostname, port, settings, spool=spool)


# --------------------------------------------------------------------------- trail

Pending = AuditMessage | Callable[[], AuditMessage | None]


class _Channel:
    """One destination: its bounded queue and the thread that empties it."""

    def __init__(self, sink: Sink, trail: AuditTrail, size: int) -> None:
        self.sink = sink
        self.trail = trail
        self.queue: queue.Queue[bytes | None] = queue.Queue(size)
        self.sent = 0
        self.dropped = 0
        self.thread = threading.Thread(
            target=self._run, name=f"dicomwire-audit-{type(sink).__name__}", daemon=True
        )

    def offer(self, data: bytes) -> None:
        try:
            self.queue.put_nowait(data)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error(
                    "audit queue of %s full: %d message(s) dropped so far",
                    type(self.sink).__name__,
                    self.dropped,
                )

    def _run(self) -> None:
        while True:
            data = self.queue.get()
            if data is None:
                break
            while True:
                try:
                    self.sink.send(data)
                    self.sent += 1
                    break
                except OSError as exc:  # ssl.SSLError is one
                    if not self.sink.retries or self.trail._draining.is_set():
                        self.dropped += 1
                        log.error("audit message to %s lost: %s", type(self.sink).__name__, exc)
                        break
                    log.warning(
                        "audit: %s failed (%s); retrying in %.1f s",
                        type(self.sink).__name__,
                        exc,
                        self.trail.retry_seconds,
                    )
                    self.trail._draining.wait(self.trail.retry_seconds)
        self.sink.close()


class _SpooledChannel(_Channel):
    """A destination whose queue is a directory: one file per message, oldest sent first.

    Messages left there (collector down at close, or a crash) are sent after the next start.
    """

    def __init__(self, sink: Sink, trail: AuditTrail, limit: int) -> None:
        super().__init__(sink, trail, 1)
        assert sink.spool is not None
        self.directory = sink.spool
        self.directory.mkdir(parents=True, exist_ok=True)
        self.limit = limit
        self._wake = threading.Event()
        self._stopping = False
        waiting = sorted(self.directory.glob("*.msg"))
        self._pending = len(waiting)
        self._next = int(waiting[-1].stem) + 1 if waiting else 0
        if waiting:
            log.info("audit: %d message(s) waiting in %s", len(waiting), self.directory)

    def offer(self, data: bytes) -> None:  # the builder's thread
        if self._pending >= self.limit:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("audit spool %s full: %d dropped", self.directory, self.dropped)
            return
        target = self.directory / f"{self._next:020d}.msg"
        self._next += 1
        try:
            partial = target.with_suffix(".part")
            partial.write_bytes(data)
            partial.replace(target)
        except OSError as exc:
            self.dropped += 1
            log.error("audit: cannot spool a message in %s: %s", self.directory, exc)
            return
        self._pending += 1
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def _run(self) -> None:
        closing = self.trail._closing
        while True:
            self._wake.clear()
            waiting = sorted(self.directory.glob("*.msg"))
            if not waiting:
                if self._stopping:
                    break
                self._wake.wait()
                continue
            for path in waiting:
                try:
                    self.sink.send(path.read_bytes())
                except OSError as exc:
                    if self._stopping or closing.is_set():
                        log.warning(
                            "audit: %s unreachable at close (%s); %d message(s) kept in %s",
                            type(self.sink).__name__,
                            exc,
                            len(waiting),
                            self.directory,
                        )
                        self.sink.close()
                        return
                    log.warning(
                        "audit: %s failed (%s); retrying in %.1f s",
                        type(self.sink).__name__,
                        exc,
                        self.trail.retry_seconds,
                    )
                    closing.wait(self.trail.retry_seconds)
                    break
                path.unlink(missing_ok=True)
                self._pending -= 1
                self.sent += 1
        self.sink.close()


class AuditTrail:
    """Audit messages to their destinations, off the caller's thread (see module doc)."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        app_name: str = "dicomwire",
        queue_size: int = 10000,
        retry_seconds: float = 2.0,
        spool_limit: int = 100000,
    ) -> None:
        self.app_name = app_name
        self.retry_seconds = retry_seconds
        self.hostname = socket.gethostname()
        self._closing = threading.Event()
        #: Closing: an in-memory destination that fails now is not retried (drop, count).
        self._draining = threading.Event()
        self._pending: queue.Queue[Pending | None] = queue.Queue(queue_size)
        self._channels = [
            _Channel(sink, self, queue_size)
            if sink.spool is None
            else _SpooledChannel(sink, self, spool_limit)
            for sink in sinks
        ]
        self._builder = threading.Thread(target=self._build, name="dicomwire-audit", daemon=True)
        self._refused = 0  # queue full (counted on the caller's thread)
        self._failed = 0  # could not be built (counted on the builder's thread)
        self._started = False

    @property
    def dropped(self) -> int:
        """Messages lost: queue full, or a destination failed for good."""
        return self._refused + self._failed + sum(c.dropped for c in self._channels)

    @property
    def sent(self) -> int:
        """Messages handed to every destination (summed over destinations)."""
        return sum(channel.sent for channel in self._channels)

    def start(self) -> AuditTrail:
        if not self._started:
            self._started = True
            self._builder.start()
            for channel in self._channels:
                channel.thread.start()
        return self

    def record(self, message: Pending) -> None:
        """Queue a message (or a function building it, run off this thread); never blocks."""
        try:
            self._pending.put_nowait(message)
        except queue.Full:
            self._refused += 1
            if self._refused == 1 or self._refused % 1000 == 0:
                log.error("audit queue full: %d message(s) dropped so far", self._refused)

    def _build(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                break
            try:
                message = item() if callable(item) else item
                if message is None:
                    continue
                data = format_syslog(message, app_name=self.app_name, hostname=self.hostname)
            except Exception:  # a bad event must not stop the trail
                log.exception("building an audit message failed")
                self._failed += 1
                continue
            for channel in self._channels:
                channel.offer(data)
        for channel in self._channels:
            if isinstance(channel, _SpooledChannel):
                channel.stop()
                continue
            with contextlib.suppress(queue.Full):
                channel.queue.put(None, timeout=5.0)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (for up to ``timeout`` s), then stop the threads."""
        if not self._started:
            return
        self._draining.set()
        try:
            self._pending.put(None, timeout=timeout)
        except queue.Full:
            log.error("audit: queue still full at close")
        self._builder.join(timeout)
        for channel in self._channels:
            channel.thread.join(timeout)
            if channel.thread.is_alive():
                self._closing.set()  # a dead collector: stop retrying
                channel.thread.join(2.0)
        unsent = sum(channel.queue.qsize() for channel in self._channels)
        if unsent:
            log.error("audit: %d message(s) unsent at close", unsent)

    def __enter__(self) -> AuditTrail:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
