"""Helpers for the service-level tests: a node on its own thread, raw-socket peers.

- :func:`running_node` runs a :class:`~dicomwire.services.node.Node` on 127.0.0.1, port 0,
  in a thread with its own event loop, so blocking peers (sockets, DCMTK subprocesses) can
  talk to it from the test's thread; it always shuts down, even when the test fails.
- the raw-socket helpers send hand-built PDUs (PS3.8 §9.3) and read the answers byte for
  byte, independently of the association engine under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dicomwire.dimse.commands import CommandField, DataSetType, Tag, encode_command
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig
from dicomwire.services.verification import VERIFICATION_SOP_CLASS
from dicomwire.ul.association import AssociationServer, Timeouts
from dicomwire.ul.negotiation import AcceptorPolicy
from dicomwire.ul.pdu import (
    DICOM_APPLICATION_CONTEXT,
    AAssociateAC,
    AAssociateRQ,
    ApplicationContextItem,
    AssociateItem,
    PresentationContextRQItem,
    UserInformationItem,
    decode,
)

LOCALHOST = "127.0.0.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: Every blocking socket operation of a test gives up after this many seconds.
SOCKET_TIMEOUT = 10.0

T = TypeVar("T")


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- node thread


def node_config(**kwargs: Any) -> NodeConfig:
    """A NodeConfig for tests: storage discards what it receives (nothing written)."""
    kwargs.setdefault(
        "storage",
        StorageConfig(root=Path(tempfile.gettempdir()) / "dicomwire-test-unused", discard=True),
    )
    return NodeConfig(**kwargs)


class NodeThread:
    """A dicomwire :class:`Node` listening on 127.0.0.1 (port 0) in a thread of its own.

    ``policy`` replaces the node's acceptance policy (for policies no NodeConfig expresses).
    """

    def __init__(
        self,
        config: NodeConfig | None = None,
        *,
        policy: AcceptorPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.config = config or node_config()
        self.config.host, self.config.port = LOCALHOST, 0
        if timeouts is not None:
            self.config.timeouts = timeouts
        self.config.shutdown_grace = 1.0
        self._policy = policy
        self.port = 0
        self.node: Node | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="dicomwire-node", daemon=True)

    @property
    def server(self) -> AssociationServer:
        assert self.node is not None
        return self.node.server

    def start(self) -> NodeThread:
        self._thread.start()
        if not self._ready.wait(SOCKET_TIMEOUT):
            raise RuntimeError("the node did not start listening in time")
        if self._error is not None:
            raise RuntimeError("the node failed to start") from self._error
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        node = Node(self.config)
        if self._policy is not None:
            node.policy = node.server.policy = self._policy
        await node.start()
        self.node = node
        self.port = node.port
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await node.shutdown()

    def call(self, function: Callable[[], T], timeout: float = SOCKET_TIMEOUT) -> T:
        """Run ``function`` on the node's loop (thread-safe access to its objects)."""
        assert self.loop is not None

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    @property
    def active_associations(self) -> int:
        return self.call(lambda: self.server.active_associations)

    @property
    def open_connections(self) -> int:
        """Transport connections the server still holds (established or not)."""
        return self.call(lambda: len(self.server._associations))

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no association is active and no connection is held."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.active_associations == 0 and self.open_connections == 0:
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15.0)
        if self._thread.is_alive():
            raise RuntimeError("the node thread did not stop within 15 s")


@contextlib.contextmanager
def running_node(
    config: NodeConfig | None = None,
    *,
    policy: AcceptorPolicy | None = None,
    timeouts: Timeouts | None = None,
) -> Iterator[NodeThread]:
    node = NodeThread(config, policy=policy, timeouts=timeouts)
    node.start()
    try:
        yield node
    finally:
        node.stop()


# --------------------------------------------------------------------------- raw PDUs


def verification_rq(
    called: str = "DICOMWIRE",
    calling: str = "RAWSCU",
    *,
    max_pdu_length: int = 16384,
    application_context: str = DICOM_APPLICATION_CONTEXT,
    protocol_version: int = 1,
    contexts: Sequence[tuple[int, str, list[str]]] = (
        (1, VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LE]),
    ),
    user_information: UserInformationItem | None = None,
) -> AAssociateRQ:
    """An A-ASSOCIATE-RQ built straight from PDU items (no negotiation code involved)."""
    items: list[AssociateItem] = [ApplicationContextItem(application_context)]
    items.extend(PresentationContextRQItem.create(cid, a, list(ts)) for cid, a, ts in contexts)
    items.append(
        user_information
        or UserInformationItem.create(max_pdu_length, "1.2.826.0.1.3680043.9.7433.1", "RAWTEST")
    )
    return AAssociateRQ(called, calling, items, protocol_version=protocol_version)


def echo_rq_pdata(
    context_id: int = 1, message_id: int = 1, *, padding: int = 0, control: int = 0x03
) -> bytes:
    """A P-DATA-TF with one PDV carrying a whole C-ECHO-RQ command set.

    ``padding`` adds an unknown group 0000 element of that many bytes (kept as raw bytes by
    the command codec) to make the PDU as long as a test needs.
    """
    command: dict[int, Any] = {
        Tag.AffectedSOPClassUID: VERIFICATION_SOP_CLASS,
        Tag.CommandField: CommandField.C_ECHO_RQ,
        Tag.MessageID: message_id,
        Tag.CommandDataSetType: DataSetType.ABSENT,
    }
    if padding:
        command[0x00005010] = bytes(padding)
    return pdata([(context_id, control, encode_command(command))])


def pdata(pdvs: Sequence[tuple[int, int, bytes]]) -> bytes:
    """P-DATA-TF bytes from (context ID, message control header, data) triples."""
    body = b"".join(
        struct.pack(">LBB", len(data) + 2, cid, control) + data for cid, control, data in pdvs
    )
    return struct.pack(">BBL", 0x04, 0, len(body)) + body


def command_status(raw_pdu: bytes) -> tuple[int, int]:
    """(command field, status) of a P-DATA-TF carrying one whole response command set."""
    from dicomwire.dimse.commands import decode_command

    assert raw_pdu[0] == 0x04, f"expected P-DATA-TF, got PDU type 0x{raw_pdu[0]:02X}"
    pdv_length, _, control = struct.unpack_from(">LBB", raw_pdu, 6)
    assert control == 0x03, f"expected one last command fragment, control 0x{control:02X}"
    command = decode_command(raw_pdu[12 : 12 + pdv_length - 2])
    field = command[Tag.CommandField]
    status = command[Tag.Status]
    assert isinstance(field, int) and isinstance(status, int)
    return field, status


def a_abort(source: int, reason: int) -> bytes:
    return bytes((0x07, 0, 0, 0, 0, 4, 0, 0, source, reason))


def a_associate_rj(result: int, source: int, reason: int) -> bytes:
    return bytes((0x03, 0, 0, 0, 0, 4, 0, result, source, reason))


A_RELEASE_RQ = bytes((0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0))
A_RELEASE_RP = bytes((0x06, 0, 0, 0, 0, 4, 0, 0, 0, 0))


# --------------------------------------------------------------------------- raw sockets


def raw_connect(port: int) -> socket.socket:
    sock = socket.create_connection((LOCALHOST, port), timeout=SOCKET_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv_exact(sock: socket.socket, count: int) -> bytes | None:
    """``count`` bytes, or None when the peer closes (or resets) before the first byte."""
    chunks = bytearray()
    while len(chunks) < count:
        try:
            chunk = sock.recv(count - len(chunks))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            if not chunks:
                return None
            raise AssertionError(f"connection closed inside a PDU after {len(chunks)} bytes")
        chunks += chunk
    return bytes(chunks)


def read_pdu_or_eof(sock: socket.socket) -> bytes | None:
    """The next whole PDU (header included), or None once the peer closed the connection."""
    header = _recv_exact(sock, 6)
    if header is None:
        return None
    (length,) = struct.unpack_from(">L", header, 2)
    assert length < 1 << 24, f"implausible PDU length {length}"
    body = _recv_exact(sock, length) if length else b""
    assert body is not None, "connection closed after a PDU header"
    return header + body


def read_pdu(sock: socket.socket) -> bytes:
    raw = read_pdu_or_eof(sock)
    assert raw is not None, "the peer closed the connection instead of sending a PDU"
    return raw


def wait_closed(sock: socket.socket, timeout: float = SOCKET_TIMEOUT) -> bool:
    """True once the peer closes the connection within ``timeout``; no data may arrive."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        sock.settimeout(SOCKET_TIMEOUT)
    assert data == b"", f"unexpected data {data!r} while waiting for the close"
    return True


def associate(sock: socket.socket, request: AAssociateRQ | None = None) -> AAssociateAC:
    """Send an A-ASSOCIATE-RQ (Verification by default) and return the AC."""
    sock.sendall((request or verification_rq()).encode())
    answer = decode(read_pdu(sock))
    assert isinstance(answer, AAssociateAC), f"expected A-ASSOCIATE-AC, got {answer!r}"
    return answer


def echo_ok(port: int, called: str = "DICOMWIRE", *, repeat: int = 1) -> int:
    """Run the library's own C-ECHO SCU against ``port`` on a fresh event loop."""
    from dicomwire.services.verification import echo

    return asyncio.run(
        echo(
            LOCALHOST,
            port,
            calling_ae_title="CHECKSCU",
            called_ae_title=called,
            repeat=repeat,
            timeouts=Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0),
        )
    )


def dicomwire_argv() -> list[str]:
    """The ``dicomwire`` command: the console script next to ``sys.executable``."""
    import sys

    script = Path(sys.executable).with_name("dicomwire")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dicomwire.services.cli"]


class FakePeer:
    """A scripted peer on 127.0.0.1: accepts one connection and runs ``script`` on it.

    ``script(sock)`` runs in a thread; what it returns is :attr:`result`, what it raises
    is re-raised by :meth:`join`. The listener and the connection are always closed.
    """

    def __init__(self, script: Callable[[socket.socket], object]) -> None:
        self._script = script
        self._listener = socket.create_server((LOCALHOST, 0))
        self._listener.settimeout(SOCKET_TIMEOUT)
        self.port: int = self._listener.getsockname()[1]
        self.result: object = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fake-peer", daemon=True)

    def _main(self) -> None:
        try:
            connection, _ = self._listener.accept()
            with connection:
                connection.settimeout(SOCKET_TIMEOUT)
                self.result = self._script(connection)
        except BaseException as exc:
            self._error = exc
        finally:
            self._listener.close()

    def __enter__(self) -> FakePeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(SOCKET_TIMEOUT + 5)
        self._listener.close()

    def join(self) -> object:
        self._thread.join(SOCKET_TIMEOUT + 5)
        assert not self._thread.is_alive(), "the fake peer's script did not finish"
        if self._error is not None:
            raise self._error
        return self.result


def accept_verification(sock: socket.socket, transfer_syntax: str = IMPLICIT_VR_LE) -> None:
    """Read an A-ASSOCIATE-RQ and accept presentation context 1 with ``transfer_syntax``."""
    from dicomwire.ul.pdu import PresentationContextACItem

    request = decode(read_pdu(sock))
    assert isinstance(request, AAssociateRQ)
    accept = AAssociateAC(
        request.called_ae_title,
        request.calling_ae_title,
        [
            ApplicationContextItem(),
            PresentationContextACItem.create(1, 0, transfer_syntax),
            UserInformationItem.create(16384, "1.2.826.0.1.3680043.9.7433.3", "FAKEPEER"),
        ],
    )
    sock.sendall(accept.encode())


def echo_response_pdata(message_id: int, status: int) -> bytes:
    command: dict[int, Any] = {
        Tag.AffectedSOPClassUID: VERIFICATION_SOP_CLASS,
        Tag.CommandField: CommandField.C_ECHO_RSP,
        Tag.MessageIDBeingRespondedTo: message_id,
        Tag.CommandDataSetType: DataSetType.ABSENT,
        Tag.Status: status,
    }
    return pdata([(1, 0x03, encode_command(command))])


# --------------------------------------------------------------------------- dicomwire serve

#: The ``dicomwire`` command of this interpreter, and the line ``serve`` logs once listening.
CLI = [sys.executable, "-m", "dicomwire.services.cli"]
LISTENING = re.compile(r"listening on port (\d+)")
NODE_AE = "DICOMWIRE"
NODE_TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0)


@dataclass
class Served:
    """A ``dicomwire serve`` process, its port and its log file."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serve_processes(directory: Path) -> Iterator[Callable[..., Served]]:
    """``start(*args, cwd=None)`` runs ``dicomwire serve ARGS`` (log in ``directory``) and
    returns once it logs that it listens; every process is killed when the block ends."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str | Path, cwd: Path | None = None) -> Served:
        log = directory / f"serve-{len(started)}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [*CLI, "serve", *map(str, args)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=cwd,
            )
        started.append(process)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            match = LISTENING.search(log.read_text(errors="replace"))
            if match:
                return Served(process, int(match.group(1)), log)
            if process.poll() is not None:
                raise AssertionError(f"serve exited ({process.returncode}): {log.read_text()}")
            time.sleep(0.02)
        raise AssertionError(f"serve did not listen within 15 s: {log.read_text()}")

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


@contextlib.asynccontextmanager
async def serving(root: Path, **storage: Any) -> AsyncIterator[Node]:
    """A node in this process storing under ``root`` (no fsync) with ``storage`` settings."""
    config = NodeConfig(
        ae_titles=[NODE_AE],
        host=LOCALHOST,
        port=0,
        storage=StorageConfig(root=root, fsync=False, **storage),
        timeouts=NODE_TIMEOUTS,
        shutdown_grace=1.0,
    )
    async with Node(config) as node:
        yield node


def accepted_over_associations(
    port: int, sources: Sequence[Path], timeouts: Timeouts, *, associations: int = 4
) -> int:
    """How many of ``sources`` the node on ``port`` stored (status 0), sent over several
    associations at once."""
    from dicomwire.services.storage import store_files
    from tests.conftest import run_bounded

    async def send_all() -> int:
        summary = await store_files(
            LOCALHOST,
            port,
            sources,
            called_ae_title=NODE_AE,
            associations=associations,
            timeouts=timeouts,
        )
        return sum(1 for o in summary.outcomes if o.status == 0)

    return run_bounded(send_all())
