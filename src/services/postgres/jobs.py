"""The durable job queue in PostgreSQL, shared by several nodes (storage commitment
reports, PS3.4 J.3.3; the MPPS relay, PS3.4 F.7).

The semantics of :class:`~dicomwire.services.jobs.JobQueue` (pending, claimed under a
lease, done or failed; a group's jobs one at a time, in order), with claims that several
nodes make at once: ``SELECT ... FOR UPDATE SKIP LOCKED`` takes the oldest due job no
other transaction holds, so a job is claimed by one runner only, and no runner waits for
another's claim. Times are the database server's clock (``statement_timestamp()``), so the
leases of nodes whose clocks differ are compared on one clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..jobs import Job, _job, _SQLJobQueue
from .connection import Database, redact

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresJobQueue"]

_NOW = "extract(epoch FROM statement_timestamp())"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS jobs (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "kind TEXT NOT NULL, payload TEXT NOT NULL, key TEXT, grp TEXT, state TEXT NOT NULL, "
    "attempts INTEGER NOT NULL DEFAULT 0, not_before DOUBLE PRECISION NOT NULL, "
    "lease_until DOUBLE PRECISION, owner TEXT, error TEXT, created DOUBLE PRECISION NOT NULL);"
    "CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, kind, not_before);"
    "CREATE INDEX IF NOT EXISTS jobs_key ON jobs(kind, key);"
    "CREATE INDEX IF NOT EXISTS jobs_grp ON jobs(grp, state)"
)
_COLUMNS = "id, kind, payload, key, grp, state, attempts, not_before, error, created"
_RETURNING = ", ".join(f"jobs.{c.strip()}" for c in _COLUMNS.split(","))


class PostgresJobQueue(_SQLJobQueue):
    """The queue in the ``jobs`` table of the PostgreSQL database at ``url``."""

    _mark = "%s"

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        self.url = url
        self.path = redact(url)
        self._db = Database(url, _SCHEMA, "jobs_grp", max_size=pool_size)

    def __repr__(self) -> str:
        return f"PostgresJobQueue({self.path!r})"

    def close(self) -> None:
        self._db.close()

    def _insert(
        self, kind: str, payload: str, key: str | None, group: str | None, delay: float
    ) -> int:
        def insert(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(
                "INSERT INTO jobs (kind, payload, key, grp, state, not_before, created) "
                f"VALUES (%s, %s, %s, %s, 'pending', {_NOW} + %s, {_NOW}) RETURNING id",
                (kind, payload, key, group, delay),
            ).fetchone()
            assert row is not None
            return int(row[0])

        return self._db.run(insert)

    def claim(self, kinds: Sequence[str], owner: str, lease: float) -> Job | None:
        if not kinds:
            return None

        def take(conn: psycopg.Connection[Any]) -> Job | None:
            # Locked rows are skipped, not waited for: another node's claim in progress. An
            # earlier job of the group still pending or claimed (locked or not) holds the
            # later ones back, so a group stays in order across nodes.
            row = conn.execute(
                f"WITH due AS (SELECT id FROM jobs j WHERE kind = ANY(%s) AND ("
                f"(state = 'pending' AND not_before <= {_NOW}) "
                f"OR (state = 'claimed' AND lease_until < {_NOW})) "
                "AND (grp IS NULL OR NOT EXISTS (SELECT 1 FROM jobs e WHERE e.grp = j.grp "
                "AND e.id < j.id AND e.state IN ('pending', 'claimed'))) "
                "ORDER BY not_before, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                f"UPDATE jobs SET state = 'claimed', owner = %s, lease_until = {_NOW} + %s "
                f"FROM due WHERE jobs.id = due.id RETURNING {_RETURNING}",
                (list(kinds), owner, lease),
            ).fetchone()
            return _job(row) if row is not None else None

        return self._db.run(take)

    def _update(self, sql: str, params: tuple[Any, ...]) -> None:
        self._db.run(lambda conn: conn.execute(sql, params))

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self._db.run(lambda conn: conn.execute(sql, params).fetchall())

    def _after(self, delay: float) -> tuple[str, float]:
        return f"{_NOW} + %s", delay
