"""Connections to the shared PostgreSQL database: a pool per process, retried transactions.

Driver: psycopg 3 (the maintained reference driver, libpq underneath) with
``psycopg_pool``. Its synchronous API is used from threads, as the SQLite backends are:
the services already call the index and the queues from ``asyncio.to_thread`` or worker
threads, so one code path serves both backends and no event loop is blocked.

Several nodes write at once, so a transaction can lose a race that PostgreSQL reports as
an error — a deadlock, a serialization failure, a unique or foreign key violation from a
row another node inserted or removed meanwhile. Every write here is idempotent, so
:meth:`Database.transaction` runs it again (a few times) before giving up. Any other
driver error becomes :class:`~dicomwire.errors.IndexUnavailableError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ...errors import IndexUnavailableError

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["Database", "is_postgres_url", "redact"]

log = logging.getLogger("dicomwire.services.postgres")

_T = TypeVar("_T")
#: How often a transaction that lost a race with another writer is run again.
_ATTEMPTS = 8


def is_postgres_url(value: object) -> bool:
    """True for a libpq URL (``postgresql://...`` or ``postgres://...``)."""
    return isinstance(value, str) and value.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password (for logs and errors)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


class Database:
    """A pool of connections to one database, opened on first use, reopened after a fork.

    ``schema`` creates the tables the user needs, unless ``marker`` (the last object it
    creates) exists: ``CREATE INDEX IF NOT EXISTS`` locks its table before it finds the
    index, which would deadlock with other nodes' writes. Run under an advisory lock, so
    nodes starting together do not race on ``CREATE ... IF NOT EXISTS``.
    """

    def __init__(self, url: str, schema: str, marker: str, *, max_size: int = 8) -> None:
        self.url = url
        self._schema = schema
        self._marker = marker
        self._max_size = max_size
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._pid = 0

    def __repr__(self) -> str:
        return f"Database({redact(self.url)!r})"

    def pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                return self._pool
            try:
                from psycopg_pool import ConnectionPool
            except ImportError as exc:  # the optional extra is not installed
                raise IndexUnavailableError(
                    "PostgreSQL needs psycopg: pip install 'dicomwire[postgres]'"
                ) from exc
            # After a fork the parent's pool is left alone: its sockets are the parent's.
            pool = ConnectionPool(
                self.url,
                min_size=1,
                max_size=self._max_size,
                kwargs={"autocommit": True},
                open=False,
                name="dicomwire",
            )
            try:
                pool.open(wait=True, timeout=30.0)
                with pool.connection() as conn:
                    if not self._has_schema(conn):
                        conn.execute("SELECT pg_advisory_lock(1146571090, 0)")
                        try:  # checked again in a new transaction: it sees the winner's
                            if not self._has_schema(conn):
                                with conn.transaction():
                                    conn.execute(self._schema)
                        finally:
                            conn.execute("SELECT pg_advisory_unlock(1146571090, 0)")
            except Exception as exc:
                with contextlib.suppress(Exception):
                    pool.close()
                raise IndexUnavailableError(
                    f"cannot open the database {redact(self.url)}: {exc}"
                ) from exc
            self._pool, self._pid = pool, os.getpid()
            return pool

    def _has_schema(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (self._marker,)).fetchone()
        return bool(row and row[0])

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            if pool is not None and self._pid == os.getpid():
                with contextlib.suppress(Exception):
                    pool.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside a transaction.

        A connection the server closed while it sat in the pool (PostgreSQL restarted, an
        idle timeout) fails at ``BEGIN``, before any work: the next one is tried (the pool
        drops the dead one), so a database restart costs no failed request.
        """
        import psycopg

        for attempt in range(self._max_size + 1):
            with self.pool().connection() as conn:
                begun = contextlib.ExitStack()
                try:
                    begun.enter_context(conn.transaction())
                except psycopg.OperationalError:
                    if attempt == self._max_size:
                        raise
                    log.info("database %s: a pooled connection was closed", redact(self.url))
                    continue
                with begun:
                    yield conn
                return

    def run(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """``work`` in one transaction, run again when it lost a race with another writer."""
        import psycopg
        from psycopg import errors

        retried = (
            errors.SerializationFailure,
            errors.DeadlockDetected,
            errors.UniqueViolation,
            errors.ForeignKeyViolation,
        )
        for attempt in range(_ATTEMPTS):
            try:
                with self._transaction() as conn:
                    return work(conn)
            except retried as exc:
                if attempt == _ATTEMPTS - 1:
                    raise IndexUnavailableError(f"database {redact(self.url)}: {exc}") from exc
                log.debug("transaction lost a race (%s); running it again", exc)
            except psycopg.Error as exc:
                raise IndexUnavailableError(f"database {redact(self.url)}: {exc}") from exc
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def reading(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one read transaction (a streamed result's snapshot)."""
        import psycopg

        try:
            with self._transaction() as conn:
                yield conn
        except psycopg.Error as exc:
            raise IndexUnavailableError(f"database {redact(self.url)}: {exc}") from exc
