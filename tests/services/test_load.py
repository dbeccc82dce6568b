"""Load: many associations at once and many in a row against an in-process node.

The node (:class:`~dicomwire.services.node.Node`) and the C-ECHO SCUs
(:func:`~dicomwire.services.verification.echo`) share one event loop. Afterwards nothing
may be left behind: file descriptors, asyncio tasks, active associations, held connections.
Durations are printed (``pytest -s``) and bounded loosely, to catch pathologies rather
than to benchmark.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import pytest

from dicomwire.services.node import Node
from dicomwire.services.verification import echo
from dicomwire.ul.association import Timeouts

from ..conftest import import_or_fail
from ._support import LOCALHOST, node_config

CONCURRENT = 200
ECHOES_EACH = 10
SEQUENTIAL = 1000
#: A generous ceiling per phase (2 cores, debug builds, CI noise).
PHASE_LIMIT = 45.0
FD_SLACK = 5

CLIENT_TIMEOUTS = Timeouts(artim=10.0, acse=20.0, dimse=20.0, network_idle=30.0, connect=10.0)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _settled(node: Node, timeout: float = 10.0) -> None:
    """Wait until the node holds no association and no task but ours is left."""
    current = asyncio.current_task()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        others = [t for t in asyncio.all_tasks() if t is not current]
        if not others and node.server.active_associations == 0 and not node.server._associations:
            return
        await asyncio.sleep(0.01)


def run_against_node(
    scenario: Callable[[int], Awaitable[dict[str, float]]], max_associations: int
) -> dict[str, float]:
    """Run ``scenario(port)`` with a node on the same loop; check that nothing leaks."""

    async def main() -> dict[str, float]:
        config = node_config(host=LOCALHOST, port=0, max_associations=max_associations)
        node = Node(config)
        await node.start()
        try:
            timings = await scenario(node.port)
            started = time.perf_counter()
            await _settled(node)
            timings["settle"] = time.perf_counter() - started
            # Everything ended by itself, before any shutdown could tidy up.
            assert node.server.active_associations == 0
            assert len(node.server._associations) == 0, "connections still held by the server"
            leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert leftover == [], f"tasks left behind: {leftover}"
        finally:
            await node.server.shutdown(grace=1.0)
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert leftover == [], f"tasks left after shutdown: {leftover}"
        return timings

    before = open_fds()
    timings = asyncio.run(main())
    after = open_fds()
    assert after - before <= FD_SLACK, f"file descriptors leaked: {before} before, {after} after"
    print(f"\nload timings (s): { {k: round(v, 3) for k, v in timings.items()} }")
    return timings


async def _echo(port: int, repeat: int) -> int:
    return await echo(
        LOCALHOST,
        port,
        calling_ae_title="LOADSCU",
        called_ae_title="DICOMWIRE",
        repeat=repeat,
        timeouts=CLIENT_TIMEOUTS,
    )


def test_concurrent_associations() -> None:
    async def scenario(port: int) -> dict[str, float]:
        started = time.perf_counter()
        statuses = await asyncio.gather(
            *(_echo(port, ECHOES_EACH) for _ in range(CONCURRENT)), return_exceptions=True
        )
        elapsed = time.perf_counter() - started
        failures = [s for s in statuses if not isinstance(s, int) or s != 0]
        assert failures == [], f"{len(failures)} of {CONCURRENT} failed, e.g. {failures[:3]!r}"
        assert elapsed < PHASE_LIMIT
        return {"concurrent": elapsed, "echoes_per_s": CONCURRENT * ECHOES_EACH / elapsed}

    run_against_node(scenario, max_associations=CONCURRENT + 100)


def test_sequential_associations() -> None:
    async def scenario(port: int) -> dict[str, float]:
        started = time.perf_counter()
        for number in range(SEQUENTIAL):
            status = await _echo(port, 1)
            assert status == 0, f"association {number}: status 0x{status:04X}"
        elapsed = time.perf_counter() - started
        assert elapsed < PHASE_LIMIT
        return {"sequential": elapsed, "associations_per_s": SEQUENTIAL / elapsed}

    run_against_node(scenario, max_associations=1)


def test_over_the_limit_is_rejected_transiently_and_recovers() -> None:
    """With max_associations=50, 120 at once: some are rejected (2, 3, 2), none hang."""
    from dicomwire.ul.association import AssociationRejected

    async def scenario(port: int) -> dict[str, float]:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(_echo(port, 3) for _ in range(120)), return_exceptions=True
        )
        elapsed = time.perf_counter() - started
        ok = [r for r in results if r == 0]
        rejected = [r for r in results if isinstance(r, AssociationRejected)]
        other = [r for r in results if r != 0 and not isinstance(r, AssociationRejected)]
        assert other == [], other[:3]
        assert len(ok) >= 50
        assert all((r.result, r.source, r.reason) == (2, 3, 2) for r in rejected)
        # Once the burst is over the node accepts again.
        assert await _echo(port, 1) == 0
        return {"burst": elapsed, "accepted": len(ok), "rejected": len(rejected)}

    run_against_node(scenario, max_associations=50)


def test_failing_associations_leak_nothing() -> None:
    """Rejected associations and refused connections, 300 of each, leave nothing behind."""
    from dicomwire import DicomWireError
    from dicomwire.ul.association import AssociationRejected

    from ._support import free_tcp_port

    async def scenario(port: int) -> dict[str, float]:
        closed_port = free_tcp_port()
        started = time.perf_counter()
        for _ in range(300):
            with pytest.raises(AssociationRejected):
                await echo(LOCALHOST, port, called_ae_title="WRONG", timeouts=CLIENT_TIMEOUTS)
            with pytest.raises(DicomWireError, match="cannot connect"):
                await echo(LOCALHOST, closed_port, timeouts=CLIENT_TIMEOUTS)
        return {"failures": time.perf_counter() - started}

    run_against_node(scenario, max_associations=10)


@pytest.mark.parametrize("count", [50])
def test_uvloop_concurrent_associations(count: int) -> None:
    """The CLI runs on uvloop: the same concurrent scenario on it."""
    uvloop = import_or_fail("uvloop")

    async def main() -> float:
        node = Node(node_config(host=LOCALHOST, port=0, max_associations=count + 10))
        await node.start()
        try:
            started = time.perf_counter()
            statuses = await asyncio.gather(*(_echo(node.port, 5) for _ in range(count)))
            assert list(statuses) == [0] * count
            elapsed = time.perf_counter() - started
            await _settled(node)
            assert node.server.active_associations == 0
            return elapsed
        finally:
            await node.server.shutdown(grace=1.0)

    before = open_fds()
    elapsed = uvloop.run(main())
    assert open_fds() - before <= FD_SLACK
    print(f"\nuvloop: {count} x 5 echoes in {elapsed:.3f} s")
