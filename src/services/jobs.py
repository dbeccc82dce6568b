"""Durable job queues: work a node owes to other systems, kept across restarts.

Storage commitment reports (PS3.4 J.3.3: N-EVENT-REPORT sent later, often on a new
association) and the MPPS relay (PS3.4 F.7: every N-CREATE/N-SET passed on to other AEs)
must survive a restart between accepting a request and delivering its outcome, be retried
with backoff when the peer is down, and keep order where order matters (the N-SETs of one
MPPS instance after its N-CREATE). One queue serves them all.

:class:`JobQueue` is the interface (a PostgreSQL backend for several nodes comes later:
``claim`` then maps to ``SELECT ... FOR UPDATE SKIP LOCKED``); :class:`SQLiteJobQueue` the
embedded default, in the node's database file beside the index. :class:`JobRunner` runs a
queue's jobs of some kinds on the event loop with a :class:`RetryPolicy`.

A job is ``pending`` (due at ``not_before``), ``claimed`` by one runner until its lease
ends (a runner that died releases its jobs by letting the lease run out), then ``done`` or
``failed`` (kept, with the last error, for the operator). Jobs sharing a ``group`` run one
at a time in the order they were put.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import DicomWireError

__all__ = ["Job", "JobQueue", "JobRunner", "RetryPolicy", "SQLiteJobQueue"]

log = logging.getLogger("dicomwire.services.jobs")


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of owed work: what kind, its data, and how it has gone so far."""

    id: int
    kind: str
    payload: dict[str, Any]
    key: str | None
    group: str | None
    state: str  # pending, claimed, done, failed
    attempts: int
    not_before: float
    error: str | None
    created: float


class JobQueue:
    """What services ask of a durable queue (backends implement it)."""

    def put(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        key: str | None = None,
        group: str | None = None,
        delay: float = 0.0,
    ) -> int:
        """Add a job (JSON-serialisable ``payload``); its id. Durable when this returns."""
        return self._insert(kind, json.dumps(dict(payload)), key, group, delay)

    def _insert(
        self, kind: str, payload: str, key: str | None, group: str | None, delay: float
    ) -> int:
        """Write the job of :meth:`put` (its payload encoded) due in ``delay`` seconds."""
        raise NotImplementedError

    def claim(self, kinds: Sequence[str], owner: str, lease: float) -> Job | None:
        """Take the oldest due job of ``kinds`` no one holds (nor an earlier one of its group)."""
        raise NotImplementedError

    def done(self, job_id: int) -> None:
        """The job succeeded."""
        raise NotImplementedError

    def retry(self, job_id: int, delay: float, error: str) -> None:
        """The attempt failed; try again after ``delay`` seconds."""
        raise NotImplementedError

    def fail(self, job_id: int, error: str) -> None:
        """Give up on the job; it is kept as failed, with ``error``."""
        raise NotImplementedError

    def release(self, job_id: int) -> None:
        """Hand a claimed job back, due at once, its attempts unchanged (a runner stopping)."""
        raise NotImplementedError

    def get(self, job_id: int) -> Job | None:
        raise NotImplementedError

    def find(self, kind: str, key: str) -> list[Job]:
        """Every job of ``kind`` put with ``key`` (e.g. a transaction UID), oldest first."""
        raise NotImplementedError

    def jobs(self, kind: str | None = None, state: str | None = None) -> list[Job]:
        """Jobs by kind and state, oldest first (for the operator and the tests)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the backend's connections (the queue is not used afterwards)."""


_COLUMNS = "id, kind, payload, key, grp, state, attempts, not_before, error, created"


class _SQLJobQueue(JobQueue):
    """The statements every SQL backend shares; the placeholder and the clock are its own."""

    #: A parameter's placeholder.
    _mark = "?"

    def _update(self, sql: str, params: tuple[Any, ...]) -> None:
        """Run one write statement."""
        raise NotImplementedError

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """The rows of one query."""
        raise NotImplementedError

    def _after(self, delay: float) -> tuple[str, float]:
        """The SQL of the time ``delay`` seconds from now, and its parameter."""
        raise NotImplementedError

    def done(self, job_id: int) -> None:
        self._update(
            f"UPDATE jobs SET state = 'done', lease_until = NULL WHERE id = {self._mark}",
            (job_id,),
        )

    def retry(self, job_id: int, delay: float, error: str) -> None:
        m = self._mark
        later, param = self._after(delay)
        self._update(
            f"UPDATE jobs SET state = 'pending', attempts = attempts + 1, not_before = {later}, "
            f"error = {m}, lease_until = NULL, owner = NULL WHERE id = {m}",
            (param, error, job_id),
        )

    def fail(self, job_id: int, error: str) -> None:
        m = self._mark
        self._update(
            f"UPDATE jobs SET state = 'failed', attempts = attempts + 1, error = {m}, "
            f"lease_until = NULL WHERE id = {m}",
            (error, job_id),
        )

    def release(self, job_id: int) -> None:
        self._update(
            "UPDATE jobs SET state = 'pending', lease_until = NULL, owner = NULL "
            f"WHERE id = {self._mark} AND state = 'claimed'",
            (job_id,),
        )

    def get(self, job_id: int) -> Job | None:
        rows = self._rows(f"SELECT {_COLUMNS} FROM jobs WHERE id = {self._mark}", (job_id,))
        return _job(rows[0]) if rows else None

    def find(self, kind: str, key: str) -> list[Job]:
        m = self._mark
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM jobs WHERE kind = {m} AND key = {m} ORDER BY id", (kind, key)
        )
        return [_job(row) for row in rows]

    def jobs(self, kind: str | None = None, state: str | None = None) -> list[Job]:
        clauses, params = [], []
        if kind is not None:
            clauses.append(f"kind = {self._mark}")
            params.append(kind)
        if state is not None:
            clauses.append(f"state = {self._mark}")
            params.append(state)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._rows(f"SELECT {_COLUMNS} FROM jobs{where} ORDER BY id", params)
        return [_job(row) for row in rows]


class SQLiteJobQueue(_SQLJobQueue):
    """The embedded queue: one table in an SQLite file (WAL), one writer at a time."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, "
            "payload TEXT NOT NULL, key TEXT, grp TEXT, state TEXT NOT NULL, "
            "attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL, "
            "lease_until REAL, owner TEXT, error TEXT, created REAL NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, kind, not_before)")
        self._db.execute("CREATE INDEX IF NOT EXISTS jobs_key ON jobs(kind, key)")
        self._db.execute("CREATE INDEX IF NOT EXISTS jobs_grp ON jobs(grp, state)")

    def close(self) -> None:
        self._db.close()

    def _insert(
        self, kind: str, payload: str, key: str | None, group: str | None, delay: float
    ) -> int:
        now = time.time()
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO jobs (kind, payload, key, grp, state, not_before, created) "
                "VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                (kind, payload, key, group, now + delay, now),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def claim(self, kinds: Sequence[str], owner: str, lease: float) -> Job | None:
        if not kinds:
            return None
        now = time.time()
        marks = ", ".join("?" for _ in kinds)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    f"SELECT {_COLUMNS} FROM jobs j WHERE kind IN ({marks}) AND ("
                    "(state = 'pending' AND not_before <= ?) "
                    "OR (state = 'claimed' AND lease_until < ?)) "
                    "AND (grp IS NULL OR NOT EXISTS (SELECT 1 FROM jobs e WHERE e.grp = j.grp "
                    "AND e.id < j.id AND e.state IN ('pending', 'claimed'))) "
                    "ORDER BY not_before, id LIMIT 1",
                    (*kinds, now, now),
                ).fetchone()
                if row is not None:
                    self._db.execute(
                        "UPDATE jobs SET state = 'claimed', owner = ?, lease_until = ? "
                        "WHERE id = ?",
                        (owner, now + lease, row[0]),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return replace(_job(row), state="claimed") if row is not None else None

    def _update(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute(sql, params)

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _after(self, delay: float) -> tuple[str, float]:
        return "?", time.time() + delay


def _job(row: Sequence[Any]) -> Job:
    return Job(
        id=int(row[0]),
        kind=str(row[1]),
        payload=json.loads(row[2]),
        key=row[3],
        group=row[4],
        state=str(row[5]),
        attempts=int(row[6]),
        not_before=float(row[7]),
        error=row[8],
        created=float(row[9]),
    )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait before the next attempt, and when to give up."""

    first_delay: float = 5.0
    factor: float = 2.0
    max_delay: float = 300.0
    max_attempts: int = 10

    def delay(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failed attempt (1-based)."""
        return float(min(self.max_delay, self.first_delay * self.factor ** max(0, attempts - 1)))


JobHandler = Callable[[Job], Awaitable[None]]


class JobRunner:
    """Runs the due jobs of ``kinds`` with ``handler``, up to ``concurrency`` at once.

    The handler returning is success. An exception is a failed attempt: retried after the
    policy's delay, unless it is a :class:`~dicomwire.errors.DicomWireError` marked
    ``permanent`` or the attempts are used up — then the job fails and is logged.
    :meth:`wake` runs newly put jobs at once instead of at the next poll.
    """

    def __init__(
        self,
        queue: JobQueue,
        kinds: Sequence[str],
        handler: JobHandler,
        *,
        policy: RetryPolicy | None = None,
        owner: str = "dicomwire",
        concurrency: int = 4,
        poll: float = 1.0,
        lease: float = 600.0,
    ) -> None:
        self.queue = queue
        self.kinds = tuple(kinds)
        self.handler = handler
        self.policy = policy or RetryPolicy()
        self.owner = owner
        self.poll = poll
        self.lease = lease
        self._slots = asyncio.Semaphore(concurrency)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"jobs:{','.join(self.kinds)}")

    def wake(self) -> None:
        self._wakeup.set()

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; wait for the jobs running, at most ``grace`` seconds if given.

        A job still running after ``grace`` is cut off: handed back to the queue, its
        attempt not counted, to run again after the next start.
        """
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        running = set(self._running)
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await self._slots.acquire()
            # Cleared before claiming: a wake() while the claim runs is not lost.
            self._wakeup.clear()
            try:
                job = await self._claim()
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception:
                self._slots.release()
                log.exception("job queue unavailable; trying again in %.0f s", self.poll)
                await asyncio.sleep(self.poll)
                continue
            if job is None:
                self._slots.release()
                await self._sleep()
                continue
            task = asyncio.create_task(self._run(job))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _claim(self) -> Job | None:
        """Claim in a thread; if stopped meanwhile, hand back what the thread claimed.

        (Cancelling ``to_thread`` does not stop the thread: without this a job claimed as
        the runner stops stayed claimed, unseen by the next runner, until its lease ran out.)
        """
        claiming = asyncio.ensure_future(
            asyncio.to_thread(self.queue.claim, self.kinds, self.owner, self.lease)
        )
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                job = await claiming
                if job is not None:
                    self.queue.release(job.id)
            raise

    async def _sleep(self) -> None:
        """Until :meth:`wake` or the next poll; a timer, not a task per poll (wait_for's)."""
        timer = asyncio.get_running_loop().call_later(self.poll, self._wakeup.set)
        try:
            await self._wakeup.wait()
        finally:
            timer.cancel()

    async def _run(self, job: Job) -> None:
        try:
            await self.handler(job)
        except asyncio.CancelledError:
            self.queue.release(job.id)  # cut off, not failed: the attempt does not count
            raise
        except Exception as exc:
            attempts = job.attempts + 1
            error = f"{type(exc).__name__}: {exc}"
            permanent = isinstance(exc, DicomWireError) and exc.permanent
            if permanent or attempts >= self.policy.max_attempts:
                log.error(
                    "job %d (%s) failed after %d attempts: %s", job.id, job.kind, attempts, error
                )
                self.queue.fail(job.id, error)
            else:
                delay = self.policy.delay(attempts)
                log.warning(
                    "job %d (%s) attempt %d failed (%s); retrying in %.0f s",
                    job.id,
                    job.kind,
                    attempts,
                    error,
                    delay,
                )
                self.queue.retry(job.id, delay, error)
        else:
            self.queue.done(job.id)
        finally:
            self._slots.release()
