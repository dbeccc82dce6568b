"""500 associations open on one node at the same time (issue 8), then nothing left behind.

Every client associates, does a C-ECHO and then waits at a barrier, so that all 500
associations are established together (the node counts them); once released, each does
one more C-ECHO and releases. Both ends run in this process, so each association holds two
file descriptors. Afterwards the process must hold as many descriptors as before, no task
but the test's own may run and the node must track no association or connection.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dicomwire.dimse.session import open_session
from dicomwire.services.verification import echo_on

from ..conftest import skip_or_fail
from ._support import (
    CLIENT_TIMEOUTS,
    FD_SLACK,
    LOCALHOST,
    ensure_fd_limit,
    node_timeouts,
    open_fds,
    running_node,
    settle,
    verification_config,
)

CONCURRENT = 500
#: Generous bounds for a 2-core machine: they catch hangs and starvation, not slowness.
OPEN_LIMIT = 40.0
CLOSE_LIMIT = 20.0


def test_500_concurrent_associations_on_one_node(tmp_path: Path) -> None:
    # Two descriptors per association in-process, plus the interpreter's own.
    if ensure_fd_limit(2 * CONCURRENT + 256) < 2 * CONCURRENT + 256:
        skip_or_fail("RLIMIT_NOFILE too low for 500 in-process associations")

    async def main() -> dict[str, float]:
        # The associations sit idle at the barrier: no network idle cut-off here; ARTIM is
        # generous because 500 connections arrive at once through a backlog of 100.
        timeouts = node_timeouts(artim=5.0, network_idle=None)
        async with running_node(tmp_path, timeouts=timeouts, max_associations=600) as node:
            fds_before = open_fds()
            all_open = asyncio.Barrier(CONCURRENT + 1)
            go = asyncio.Event()

            async def client() -> tuple[int, int]:
                async with open_session(
                    LOCALHOST, node.port, verification_config(), timeouts=CLIENT_TIMEOUTS
                ) as session:
                    first = await echo_on(session)
                    await all_open.wait()
                    await go.wait()
                    second = await echo_on(session)
                return int(first), int(second)

            started = time.perf_counter()
            clients = [asyncio.create_task(client()) for _ in range(CONCURRENT)]
            opened = asyncio.create_task(all_open.wait())
            done, _ = await asyncio.wait(
                {opened, *clients}, timeout=OPEN_LIMIT, return_when=asyncio.FIRST_COMPLETED
            )
            if opened not in done:  # a client failed (or everything hangs)
                failures = [t.exception() for t in done if t is not opened]
                waiting = all_open.n_waiting
                for task in (opened, *clients):
                    task.cancel()
                await asyncio.gather(opened, *clients, return_exceptions=True)
                pytest.fail(
                    f"only {waiting} of {CONCURRENT} associations open after "
                    f"{time.perf_counter() - started:.1f} s; failures: {failures[:3]!r}"
                )
            open_time = time.perf_counter() - started
            active = node.server.active_associations
            fds_held = open_fds() - fds_before

            go.set()
            released = time.perf_counter()
            results = await asyncio.wait_for(asyncio.gather(*clients), CLOSE_LIMIT)
            close_time = time.perf_counter() - released

            settle_time = await settle(node)
            fds_after = open_fds() - fds_before

        assert active == CONCURRENT, f"{active} associations active at the barrier"
        # The node's own files (database, audit trail) may open or close meanwhile: slack.
        assert fds_held >= 2 * CONCURRENT - FD_SLACK, f"only {fds_held} more descriptors while open"
        assert results == [(0, 0)] * CONCURRENT
        assert fds_after <= FD_SLACK, f"{fds_after} file descriptors leaked"
        return {
            "open_all": open_time,
            "echo_and_release_all": close_time,
            "settle": settle_time,
            "fds_held": fds_held,
            "fds_after": fds_after,
        }

    before = open_fds()
    measured = asyncio.run(main())
    after = open_fds()
    assert after - before <= FD_SLACK, f"file descriptors leaked: {before} before, {after} after"
    print(f"\n500 concurrent associations: { {k: round(v, 3) for k, v in measured.items()} }")
