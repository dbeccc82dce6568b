"""Helpers for the robustness tests: an in-process node with short timeouts, leak checks.

The node (:class:`~dicomwire.services.node.Node`) runs on the test's own event loop, on
127.0.0.1 port 0, with timeouts of about a second so that the mechanisms under test (ARTIM,
network idle, send stall) act within the test's time. Leak checks compare what the
process holds before and after a scenario: file descriptors (``/proc/self/fd``), asyncio
tasks, associations and connections the server still tracks, resident memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import resource
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig
from dicomwire.services.verification import VERIFICATION_SOP_CLASS
from dicomwire.ul.association import Timeouts
from dicomwire.ul.negotiation import RequestorConfig

LOCALHOST = "127.0.0.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
#: File descriptors a scenario may leave open without it being a leak (the loop's own).
FD_SLACK = 8

#: A well-behaved client: generous limits, so that only the node's short timeouts act.
CLIENT_TIMEOUTS = Timeouts(
    artim=5.0, acse=30.0, dimse=30.0, network_idle=None, connect=30.0, send_stall=30.0
)


def node_timeouts(
    *,
    artim: float = 1.0,
    network_idle: float | None = 1.0,
    send_stall: float | None = 1.0,
    acse: float | None = 5.0,
) -> Timeouts:
    """The node's timeouts: short, so that cutting a peer off takes about a second."""
    return Timeouts(
        artim=artim,
        acse=acse,
        dimse=None,
        network_idle=network_idle,
        connect=5.0,
        send_stall=send_stall,
    )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    """The resident set size of this process (VmRSS), after a full garbage collection."""
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def trim_heap() -> bool:
    """Give the C heap's free memory back to the system (glibc ``malloc_trim``).

    What resident memory still holds afterwards is what is really kept, not what the
    allocator caches. Returns False where there is no ``malloc_trim`` (not glibc).
    """
    gc.collect()
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def ensure_fd_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard limit when ``needed`` is above it.

    Returns the soft limit now in force (the test skips itself if it is still too low).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 30


@contextlib.contextmanager
def quiet(logger: str = "dicomwire", level: int = logging.ERROR) -> Iterator[None]:
    """Raise ``logger``'s level for a while.

    Thousands of expected warnings ("network idle", "A-P-ABORT") would otherwise be kept
    in memory by pytest's log capture and counted as the node's memory growth.
    """
    target = logging.getLogger(logger)
    previous = target.level
    target.setLevel(level)
    try:
        yield
    finally:
        target.setLevel(previous)


def verification_config(calling: str = "ROBUSTSCU") -> RequestorConfig:
    return RequestorConfig(
        calling, "DICOMWIRE", [(VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LE, EXPLICIT_VR_LE])]
    )


def storage_config(calling: str = "ROBUSTSCU") -> RequestorConfig:
    """Verification and Secondary Capture (what :func:`make_small` instances are)."""
    return RequestorConfig(
        calling,
        "DICOMWIRE",
        [
            (VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LE]),
            (SECONDARY_CAPTURE_STORAGE, [EXPLICIT_VR_LE, IMPLICIT_VR_LE]),
        ],
    )


@contextlib.asynccontextmanager
async def running_node(
    root: Path,
    *,
    timeouts: Timeouts | None = None,
    max_associations: int = 600,
    promiscuous: bool = False,
) -> AsyncIterator[Node]:
    """A node on 127.0.0.1 (port 0) storing under ``root``, always shut down afterwards."""
    config = NodeConfig(
        host=LOCALHOST,
        port=0,
        max_associations=max_associations,
        promiscuous=promiscuous,
        storage=StorageConfig(root=root, fsync=False),
        timeouts=timeouts or node_timeouts(),
        shutdown_grace=1.0,
    )
    node = Node(config)
    await node.start()
    # The services' own background work (a job runner's loop) is not a leak: it runs
    # from start to shutdown, whatever the peers do.
    _BACKGROUND[id(node)] = set(asyncio.all_tasks())
    try:
        yield node
    finally:
        _BACKGROUND.pop(id(node), None)
        await node.shutdown()


#: Tasks each running node had once started (by id of the node).
_BACKGROUND: dict[int, set[asyncio.Task[object]]] = {}


def _others(node: Node | None = None) -> list[asyncio.Task[object]]:
    current = asyncio.current_task()
    background = _BACKGROUND.get(id(node), set()) if node is not None else set()
    return [task for task in asyncio.all_tasks() if task is not current and task not in background]


async def settle(node: Node, timeout: float = 10.0) -> float:
    """Wait until the node holds nothing and no task but the caller's runs; return the wait.

    Raises AssertionError naming what is left when that does not happen in ``timeout`` s.
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        server = node.server
        if not _others(node) and server.active_associations == 0 and not server._associations:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    raise AssertionError(
        f"not settled after {timeout} s: {node.server.active_associations} associations "
        f"active, {len(node.server._associations)} connections held, tasks left: "
        f"{_others(node)[:5]}"
    )
