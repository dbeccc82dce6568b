"""The durable job queue (services.jobs): order, groups, leases, retries, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from dicomwire.errors import DicomWireError
from dicomwire.services.jobs import Job, JobQueue, JobRunner, RetryPolicy, SQLiteJobQueue
from tests.conftest import run_bounded
from tests.pg_peer import fresh_database, postgres  # noqa: F401 (the session's server)

OpenQueue = Callable[[], Any]


@pytest.fixture(params=["sqlite", "postgres"])
def open_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenQueue]:
    """Opens queues on one empty store of each backend (every call: the same store)."""
    opened: list[Any] = []
    if request.param == "sqlite":
        with_database: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    else:
        from dicomwire.services.postgres import PostgresJobQueue

        with_database = fresh_database(request.getfixturevalue("postgres"))
    with with_database as url:

        def make() -> Any:
            if request.param == "sqlite":
                queue: Any = SQLiteJobQueue(tmp_path / "db" / "node.sqlite")
            else:
                queue = PostgresJobQueue(url)
            opened.append(queue)
            return queue

        try:
            yield make
        finally:
            for queue in opened:
                queue.close()


def test_jobs_survive_a_restart_and_are_claimed_once(open_queue: OpenQueue) -> None:
    queue = open_queue()
    first = queue.put("report", {"uid": "1.2"}, key="1.2")
    queue.close()
    reopened = open_queue()
    job = reopened.claim(["report"], "a", lease=60)
    assert job is not None and job.id == first and job.payload == {"uid": "1.2"}
    assert reopened.claim(["report"], "b", lease=60) is None  # held by "a"
    assert [j.id for j in reopened.find("report", "1.2")] == [first]


def test_an_expired_lease_releases_the_job(open_queue: OpenQueue) -> None:
    queue = open_queue()
    queue.put("relay", {})
    assert queue.claim(["relay"], "dead", lease=0.01) is not None
    time.sleep(0.05)
    again = queue.claim(["relay"], "alive", lease=60)
    assert again is not None and again.state == "claimed"


def test_a_group_runs_in_order_one_at_a_time(open_queue: OpenQueue) -> None:
    queue = open_queue()
    create = queue.put("relay", {"n": 1}, group="mpps-1")
    update = queue.put("relay", {"n": 2}, group="mpps-1")
    other = queue.put("relay", {"n": 3}, group="mpps-2")
    first = queue.claim(["relay"], "a", 60)
    second = queue.claim(["relay"], "a", 60)
    assert first is not None and second is not None
    assert (first.id, second.id) == (create, other)  # update waits for create
    assert queue.claim(["relay"], "a", 60) is None
    queue.done(create)
    third = queue.claim(["relay"], "a", 60)
    assert third is not None and third.id == update


def test_retry_delays_and_failure_is_kept(open_queue: OpenQueue) -> None:
    queue = open_queue()
    job_id = queue.put("report", {})
    assert queue.claim(["report"], "a", 60) is not None
    queue.retry(job_id, 60, "peer down")
    assert queue.claim(["report"], "a", 60) is None  # not due yet
    queue.fail(job_id, "gave up")
    failed = queue.get(job_id)
    assert failed is not None and failed.state == "failed" and failed.error == "gave up"
    assert failed.attempts == 2


@pytest.mark.parametrize("permanent", [False, True])
def test_runner_retries_then_succeeds_or_fails_at_once(
    open_queue: OpenQueue, permanent: bool
) -> None:
    queue = open_queue()
    job_id = queue.put("report", {"x": 1})
    calls: list[int] = []

    class Refused(DicomWireError):
        pass

    Refused.permanent = permanent

    async def handler(job: Job) -> None:
        calls.append(job.attempts)
        if len(calls) < 3:
            raise Refused("peer refused")

    async def main() -> Job | None:
        runner = JobRunner(
            queue, ["report"], handler, policy=RetryPolicy(first_delay=0.01), poll=0.01
        )
        runner.start()
        for _ in range(500):
            job = queue.get(job_id)
            if job is not None and job.state in ("done", "failed"):
                break
            await asyncio.sleep(0.01)
        await runner.stop()
        return queue.get(job_id)

    job = run_bounded(main(), 30)
    assert job is not None
    if permanent:
        assert (job.state, calls) == ("failed", [0])
        assert job.error is not None and "peer refused" in job.error
    else:
        assert (job.state, calls) == ("done", [0, 1, 2])


def test_retry_policy_backs_off_to_its_ceiling() -> None:
    policy = RetryPolicy(first_delay=5, factor=2, max_delay=30)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 30, 30]


def test_a_wake_during_an_empty_claim_is_not_lost(open_queue: OpenQueue) -> None:
    """A job put and woken for while the runner's claim finds nothing runs at once, not
    at the next poll (here an hour away)."""
    queue = open_queue()
    found_nothing = threading.Event()
    go_on = threading.Event()
    real_claim = queue.claim

    def slow_claim(kinds: Sequence[str], owner: str, lease: float) -> Job | None:
        job = real_claim(kinds, owner, lease)
        if not found_nothing.is_set():
            found_nothing.set()
            go_on.wait(10)
        return job

    queue.claim = slow_claim  # type: ignore[method-assign]

    async def main() -> None:
        done = asyncio.Event()

        async def handler(job: Job) -> None:
            done.set()

        runner = JobRunner(queue, ["report"], handler, poll=3600)
        runner.start()
        await asyncio.to_thread(found_nothing.wait, 10)
        queue.put("report", {})
        runner.wake()
        go_on.set()
        await done.wait()
        await runner.stop()

    run_bounded(main(), 20)


def test_release_hands_a_claimed_job_back_without_counting_an_attempt(
    open_queue: OpenQueue,
) -> None:
    queue = open_queue()
    job_id = queue.put("relay", {})
    assert queue.claim(["relay"], "a", 600) is not None
    queue.release(job_id)
    again = queue.claim(["relay"], "b", 600)
    assert again is not None and again.id == job_id and again.attempts == 0


class _SlowClaims(JobQueue):
    """A queue whose claims take a while (a busy database), to reach the runner's races."""

    delay = 0.3

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    def claim(self, kinds: Sequence[str], owner: str, lease: float) -> Job | None:
        found = self.queue.claim(kinds, owner, lease)
        time.sleep(self.delay)  # the answer comes back late
        return found

    def put(self, kind: str, payload: Any, **options: Any) -> int:
        return self.queue.put(kind, payload, **options)

    def get(self, job_id: int) -> Job | None:
        return self.queue.get(job_id)

    def done(self, job_id: int) -> None:
        self.queue.done(job_id)

    def release(self, job_id: int) -> None:
        self.queue.release(job_id)


def test_stopping_during_a_claim_leaves_no_job_claimed(open_queue: OpenQueue) -> None:
    """Regression: a claim finishing in its thread after stop() kept the job for a lease."""
    queue = _SlowClaims(open_queue())
    job_id = queue.put("relay", {})
    handled: list[int] = []

    async def handler(job: Job) -> None:
        handled.append(job.id)

    async def main() -> None:
        runner = JobRunner(queue, ["relay"], handler, poll=0.01, lease=600)
        runner.start()
        await asyncio.sleep(0.05)  # the runner is inside its first (slow) claim
        await runner.stop()

    run_bounded(main(), 30)
    job = queue.get(job_id)
    assert job is not None
    assert handled or job.state == "pending", job.state


def test_stop_with_a_grace_cuts_off_a_job_and_hands_it_back(open_queue: OpenQueue) -> None:
    queue = open_queue()
    job_id = queue.put("relay", {})
    started = asyncio.Event

    async def main() -> None:
        running = started()

        async def handler(job: Job) -> None:
            running.set()
            await asyncio.sleep(3600)  # a peer that never answers

        runner = JobRunner(queue, ["relay"], handler, poll=0.01)
        runner.start()
        await asyncio.wait_for(running.wait(), 10)
        await runner.stop(grace=0.05)

    run_bounded(main(), 30)
    job = queue.get(job_id)
    assert job is not None and (job.state, job.attempts) == ("pending", 0)
