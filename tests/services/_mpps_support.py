"""Helpers for the MPPS tests: a node serving MPPS, the pynetdicom MPPS SCP peer process."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from dicomwire.services.directory import RemoteAE
from dicomwire.services.mpps import MPPS, MPPSConfig, StatusHook
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig
from dicomwire.services.verification import Verification
from dicomwire.ul.association import Timeouts
from tests.conftest import get_free_tcp_port, import_or_fail, wait_for_port
from tests.interop._mpps_peer import read_record

LOCALHOST = "127.0.0.1"
NODE_AE = "RIS"
PEER_AE = "PACS"
PEER_SCRIPT = Path(__file__).resolve().parent.parent / "interop" / "_mpps_peer.py"
TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=30.0, connect=5.0)


def node_config(tmp_path: Path, relay_port: int | None = None, **kwargs: Any) -> NodeConfig:
    """A node called RIS with its database under ``tmp_path`` (and PACS in its directory)."""
    nodes = [RemoteAE(PEER_AE, LOCALHOST, relay_port)] if relay_port is not None else []
    return NodeConfig(
        ae_titles=[NODE_AE],
        host=LOCALHOST,
        port=0,
        storage=StorageConfig(root=tmp_path / "storage", discard=True),
        nodes=nodes,
        timeouts=TIMEOUTS,
        shutdown_grace=1.0,
        database=tmp_path / "node.sqlite",
        **kwargs,
    )


@contextlib.asynccontextmanager
async def mpps_node(
    tmp_path: Path,
    *,
    relay_port: int | None = None,
    hook: StatusHook | None = None,
    node_settings: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[Node, MPPS]]:
    """A running node (Verification, MPPS); relaying to PACS at ``relay_port`` when given.

    Relay retries are quick (0.2 s, at most 1 s apart) so a test sees them happen.
    """
    if relay_port is not None:
        settings.setdefault("relay_to", [PEER_AE])
    settings.setdefault("relay_first_delay", 0.2)
    settings.setdefault("relay_max_delay", 1.0)
    settings.setdefault("relay_timeout", 5.0)
    service = MPPS(MPPSConfig(**settings), on_status=hook)
    config = node_config(tmp_path, relay_port, **(node_settings or {}))
    async with Node(config, services=[Verification(), service]) as node:
        yield node, service


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


class Peer:
    """The pynetdicom MPPS SCP script, on ``port``, recording into ``record``."""

    def __init__(self, port: int, record: Path, log: Path) -> None:
        self.port = port
        self.record = record
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Peer:
        import_or_fail("pynetdicom")
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, str(PEER_SCRIPT), str(self.port), str(self.record)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.process, timeout=20)
        return self

    def received(self) -> list[dict[str, Any]]:
        return read_record(self.record)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def mpps_peer(tmp_path: Path, *, start: bool = True) -> Iterator[Peer]:
    """A :class:`Peer` on a free port (started unless ``start`` is False); always stopped."""
    peer = Peer(get_free_tcp_port(), tmp_path / "received.jsonl", tmp_path / "peer.log")
    try:
        yield peer.start() if start else peer
    finally:
        peer.stop()
