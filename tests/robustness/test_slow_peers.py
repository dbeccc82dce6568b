"""Slow peers are cut off by the timeouts without starving anyone else (issue 8).

A peer that writes a byte every 0.2 s or every second never completes a PDU in useful
time. Before association the node's ARTIM timer ends it (PS3.8 Table 9-10: Evt18 in Sta2
is AA-2, close the connection without a PDU); on an established association the network
idle timeout does (an A-ABORT), because reads of a byte that complete no PDU do not count
as progress. Meanwhile a well-behaved client on the same node runs C-ECHOs and C-STOREs at
full speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from dicomwire.dimse.session import open_session
from dicomwire.services.storage import store_dataset
from dicomwire.services.verification import echo_on
from dicomwire.testing.corpus import make_small
from dicomwire.testing.rawpeer import (
    IMPLICIT_VR_LE,
    VERIFICATION,
    RawPeer,
    c_echo_rq,
    fragments,
)
from dicomwire.ul.negotiation import RequestorConfig, build_request
from dicomwire.ul.pdu import AAssociateAC, PDataTF

from ._support import (
    CLIENT_TIMEOUTS,
    FD_SLACK,
    LOCALHOST,
    node_timeouts,
    open_fds,
    running_node,
    settle,
    storage_config,
)

ARTIM = 1.0
NETWORK_IDLE = 2.0  # unlike ARTIM, so that each cut-off is attributed to its own timer
#: Bytes a second: 5 (one per 0.2 s) and 1.
INTERVALS = (0.2, 1.0)
RQ_TRICKLERS = 20
PDATA_TRICKLERS = 5
ECHOES = 50
STORES = 3
#: The well-behaved client's whole session, associate to release: a starvation bound,
#: not a benchmark (it takes a few tens of milliseconds when nothing is wrong).
NORMAL_CLIENT_LIMIT = 5.0
#: Slack on the timer-driven cut-offs (event loop latency on a busy 2-core machine).
SLACK = 1.5


def _association_rq() -> bytes:
    config = RequestorConfig("TRICKLE", "DICOMWIRE", [(VERIFICATION, [IMPLICIT_VR_LE])])
    request, _ = build_request(config)
    return request.encode()


def _echo_pdata() -> bytes:
    return PDataTF(fragments(1, c_echo_rq(1), command=True)).encode()


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def _trickle_rq(port: int, interval: float) -> tuple[float, int]:
    """Trickle an A-ASSOCIATE-RQ; return (seconds until the node closed, bytes sent)."""
    peer = await RawPeer.connect(LOCALHOST, port, timeout=5.0)
    started = time.monotonic()
    trickle = asyncio.create_task(peer.send_slowly(_association_rq(), interval))
    try:
        # AA-2: the connection is closed, no PDU is sent (expect_close fails on a PDU).
        await peer.expect_close(timeout=ARTIM + 5.0)
        return time.monotonic() - started, peer.bytes_sent
    finally:
        await _stop(trickle)
        await peer.close()


async def _trickle_pdata(port: int, interval: float) -> tuple[float, int]:
    """Associate, then trickle a P-DATA-TF; return (seconds until A-ABORT, bytes sent)."""
    peer = await RawPeer.connect(LOCALHOST, port, timeout=5.0)
    try:
        answer = await peer.associate("TRICKLE", "DICOMWIRE")
        assert isinstance(answer, AAssociateAC)
        associated = time.monotonic()
        before = peer.bytes_sent
        trickle = asyncio.create_task(peer.send_slowly(_echo_pdata(), interval))
        try:
            await peer.expect_abort(timeout=NETWORK_IDLE + 5.0)
            return time.monotonic() - associated, peer.bytes_sent - before
        finally:
            await _stop(trickle)
    finally:
        await peer.close()


async def _normal_client(port: int) -> tuple[float, list[int]]:
    started = time.monotonic()
    statuses: list[int] = []
    async with open_session(LOCALHOST, port, storage_config(), timeouts=CLIENT_TIMEOUTS) as session:
        for _ in range(ECHOES):
            statuses.append(int(await echo_on(session)))
        for index in range(STORES):
            statuses.append(int(await store_dataset(session, make_small(index))))
    return time.monotonic() - started, statuses


def test_trickling_peers_are_cut_off_without_starving_others(tmp_path: Path) -> None:
    async def main() -> dict[str, float]:
        timeouts = node_timeouts(artim=ARTIM, network_idle=NETWORK_IDLE, send_stall=1.0)
        async with running_node(tmp_path / "store", timeouts=timeouts) as node:
            fds_before = open_fds()
            rq_peers = [
                asyncio.create_task(_trickle_rq(node.port, INTERVALS[n % 2]))
                for n in range(RQ_TRICKLERS)
            ]
            pdata_peers = [
                asyncio.create_task(_trickle_pdata(node.port, INTERVALS[n % 2]))
                for n in range(PDATA_TRICKLERS)
            ]
            # Every slow peer connected (and the P-DATA ones associated) before we start.
            deadline = time.monotonic() + 5.0
            while node.server.active_associations < PDATA_TRICKLERS or len(
                node.server._associations
            ) < (RQ_TRICKLERS + PDATA_TRICKLERS):
                assert time.monotonic() < deadline, "the slow peers did not all connect"
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # a byte or two into each trickle
            held_at_start = len(node.server._associations)

            normal_time, statuses = await _normal_client(node.port)
            held_at_end = len(node.server._associations)

            rq_results = await asyncio.gather(*rq_peers)
            pdata_results = await asyncio.gather(*pdata_peers)
            settle_time = await settle(node)
            fds_after = open_fds() - fds_before

        assert held_at_start == RQ_TRICKLERS + PDATA_TRICKLERS
        assert statuses == [0] * (ECHOES + STORES)
        assert normal_time < NORMAL_CLIENT_LIMIT, f"the normal client took {normal_time:.2f} s"
        stored = list((tmp_path / "store").rglob("*.dcm"))
        assert len(stored) == STORES, stored
        for waited, sent in rq_results:
            assert ARTIM * 0.8 <= waited <= ARTIM + SLACK, f"closed after {waited:.2f} s"
            assert 0 < sent < len(_association_rq())
        for waited, sent in pdata_results:
            assert NETWORK_IDLE * 0.8 <= waited <= NETWORK_IDLE + SLACK, (
                f"aborted after {waited:.2f} s"
            )
            assert 0 < sent < len(_echo_pdata())
        assert fds_after <= FD_SLACK, f"{fds_after} file descriptors leaked"
        return {
            "normal_client": normal_time,
            "held_at_start": held_at_start,
            "held_at_end": held_at_end,
            "rq_closed_max": max(w for w, _ in rq_results),
            "pdata_aborted_max": max(w for w, _ in pdata_results),
            "settle": settle_time,
        }

    measured = asyncio.run(main())
    print(f"\nslow peers: { {k: round(v, 3) for k, v in measured.items()} }")
