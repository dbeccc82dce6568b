"""The Q/R instance index in PostgreSQL, shared by several nodes: PS3.4 C.6.1 / C.6.2.

The same tables, columns and two-step query as :class:`~dicomwire.services.index.SQLiteIndex`
(SQL narrows, the reference matcher of :mod:`dicomwire.services.matching` decides), and the
same crash-consistent addition (intent, rename, row). What changes with several writers:

- The entity of each level is one row however many nodes store into it at once: unique
  indexes on the UIDs (patients on ID and issuer) and ``INSERT ... ON CONFLICT DO UPDATE``;
  an instance stored twice, through two nodes, is one row. A transaction that loses a race
  anyway (a parent removed as another node adds below it) is run again.
- Every intent names its owner: a random key whose advisory lock the owning process holds
  on a connection of its own while it lives. :meth:`PostgresIndex.reconcile` settles only
  the intents of owners whose lock is free (dead processes), never those of a node still
  storing. A file's identity is compared without its device number when the intent comes
  from another host (a shared filesystem has another device number on each client).
- A C-FIND on any node reads what any node committed: each query is one transaction of
  its own (READ COMMITTED snapshot), streamed from a server-side cursor.

Text columns are ``COLLATE "C"``: ranges and wild cards compare bytes, as SQLite and the
matcher do, whatever the database's locale.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import IndexUnavailableError
from ..index import (
    _COLUMNS,
    _PATIENT_KEYS,
    _STAT_TABLES,
    _TABLE,
    Index,
    IndexedInstance,
    IndexEntry,
    Reconciled,
    SchemaTypes,
    SQLDialect,
    _candidates_sql,
    _dataset,
    _entity_row,
    _entry,
    _find,
    _in_place,
    _instances,
    _Intent,
    _remove_replaced,
    _scan,
    entity_schema,
)
from ..index import _delete as _delete_row
from ..matching import Query
from .connection import Database, redact

if TYPE_CHECKING:
    import psycopg
    from pydicom import Dataset

    from ..storage.backend import StorageBackend

__all__ = ["PostgresIndex"]

log = logging.getLogger("dicomwire.services.postgres.index")

#: The patient's unique key, as its unique index and ``ON CONFLICT`` name it.
_CONFLICT_PATIENT = "(COALESCE(patient_id, '')), (COALESCE(issuer_of_patient_id, ''))"

#: Advisory lock class of intent owners ("DWIR"); the object id is the owner's key.
_OWNER_LOCK_CLASS = 1146571090
_HOST = socket.gethostname()


#: PostgreSQL's column types; text compares byte-wise (``COLLATE "C"``), as the matcher
#: and SQLite do. The patient's unique index is on expressions (NULL as empty), which a
#: lookup by ``patient_id = %s`` cannot use: patient_id keeps a plain index.
_POSTGRES_TYPES = SchemaTypes(
    text='TEXT COLLATE "C"',
    primary_key="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    reference="BIGINT",
    integer="BIGINT",
    blob="BYTEA",
    boolean="BOOLEAN",
    patient_unique=_CONFLICT_PATIENT,
    patient_unique_leads_with_id=False,
)


def _schema() -> str:
    statements = entity_schema(_POSTGRES_TYPES)
    statements += [
        "CREATE TABLE IF NOT EXISTS pending (pk BIGINT GENERATED ALWAYS AS IDENTITY "
        "PRIMARY KEY, owner INTEGER NOT NULL, host TEXT NOT NULL, sop_instance_uid TEXT "
        "NOT NULL, path TEXT NOT NULL, replaces TEXT, device BIGINT, inode BIGINT, "
        "file_size BIGINT, transfer_syntax TEXT, size BIGINT, header BYTEA, "
        "header_implicit BOOLEAN)",
        "CREATE INDEX IF NOT EXISTS pending_owner ON pending(owner)",
    ]
    return ";\n".join(statements)


_CONFLICT = {
    "PATIENT": f"({_CONFLICT_PATIENT})",
    "STUDY": "(study_instance_uid)",
    "SERIES": "(series_instance_uid)",
}
_IMAGE_COLUMNS = (
    *_COLUMNS["IMAGE"].values(),
    "series_pk",
    "transfer_syntax",
    "path",
    "size",
    "header",
    "header_implicit",
)
_INSERT_INSTANCE = (
    f"INSERT INTO instance ({', '.join(_IMAGE_COLUMNS)}) VALUES "
    f"({', '.join('%s' for _ in _IMAGE_COLUMNS)}) ON CONFLICT (sop_instance_uid) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _IMAGE_COLUMNS)
)


def _upsert(
    conn: psycopg.Connection[Any],
    level: str,
    values: dict[str, str | None],
    parent: int | None,
) -> int:
    """The pk of the entity with these keys, created or updated to ``values``.

    A row already holding them is not written again (a burst of one series); otherwise one
    ``INSERT ... ON CONFLICT DO UPDATE``, which another node's concurrent insert cannot
    turn into a second row.
    """
    table = _TABLE[level]
    row = _entity_row(level, values, parent)
    if level == "PATIENT":
        where = "COALESCE(patient_id, '') = %s AND COALESCE(issuer_of_patient_id, '') = %s"
        keys: tuple[Any, ...] = tuple(values[k] or "" for k in _PATIENT_KEYS)
    else:
        unique = "study_instance_uid" if level == "STUDY" else "series_instance_uid"
        where, keys = f"{unique} = %s", (values[unique],)
    found = conn.execute(f"SELECT pk, {', '.join(row)} FROM {table} WHERE {where}", keys).fetchone()
    if found is not None and tuple(found[1:]) == tuple(row.values()):
        return int(found[0])
    names = ", ".join(row)
    inserted = conn.execute(
        f"INSERT INTO {table} ({names}) VALUES ({', '.join('%s' for _ in row)}) "
        f"ON CONFLICT {_CONFLICT[level]} DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in row)
        + " RETURNING pk",
        tuple(row.values()),
    ).fetchone()
    assert inserted is not None
    return int(inserted[0])


def _delete(conn: psycopg.Connection[Any], sop_instance_uid: str) -> bool:
    """Delete one instance's row and the parents it leaves empty; was there a row?"""
    return bool(_delete_row(conn, sop_instance_uid, dialect=POSTGRES))


def _insert(
    conn: psycopg.Connection[Any],
    entry: IndexEntry,
    path: Path | str,
    transfer_syntax: str,
    size: int,
) -> None:
    """The instance's row, replacing any with its SOP Instance UID (parents upserted)."""
    values = entry.values
    _delete(conn, entry.sop_instance_uid)
    patient = _upsert(conn, "PATIENT", values["PATIENT"], None)
    study = _upsert(conn, "STUDY", values["STUDY"], patient)
    series = _upsert(conn, "SERIES", values["SERIES"], study)
    conn.execute(
        _INSERT_INSTANCE,
        (
            *values["IMAGE"].values(),
            series,
            transfer_syntax,
            str(path),
            size,
            entry.header,
            entry.implicit,
        ),
    )


def _like(pattern: str) -> str:
    """A DICOM wild card (``*``, ``?``) as a LIKE pattern with ``\\`` as its escape."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


#: PostgreSQL's spelling of the shared narrowing (:func:`dicomwire.services.index._condition_sql`).
POSTGRES = SQLDialect(
    mark="%s",
    multi_valued="strpos({column}, '\\') > 0",
    wildcard_operator="LIKE",
    wildcard=_like,
    modalities="string_agg(DISTINCT sse.modality, ',')",
    array_parameters=True,
)


class PostgresIndex(Index):
    """The index in a PostgreSQL database at ``url`` (libpq URL), shared by every node.

    Connections come from a pool opened on first use (:meth:`open`), per process. The
    schema is created if missing. See the module docstring for what several writers get.
    """

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self.url = url
        self.path = redact(url)  # what the node's banner prints
        self._db = Database(url, _schema(), "pending_owner", max_size=pool_size)
        #: This process's prepared additions: the intent, its host, whether it is durable.
        self._staged: dict[int, tuple[_Intent, str, bool]] = {}
        self._owner_lock = threading.Lock()
        self._owner: int | None = None
        self._owner_conn: Any = None
        self._owner_pid = 0

    def __repr__(self) -> str:
        return f"PostgresIndex({self.path!r})"

    def open(self) -> None:
        self._db.pool()

    def close(self) -> None:
        with self._owner_lock:
            conn, self._owner_conn, self._owner = self._owner_conn, None, None
            if conn is not None and self._owner_pid == os.getpid():
                with contextlib.suppress(Exception):
                    conn.close()  # the owner's lock goes with its session
        self._db.close()

    def _owner_key(self) -> int:
        """This process's owner key, its advisory lock held for as long as the index is open."""
        import psycopg

        with self._owner_lock:
            if self._owner is not None and self._owner_pid == os.getpid():
                return self._owner
            for _ in range(16):
                key = random.randrange(1, 1 << 31)
                try:
                    conn = psycopg.connect(self.url, autocommit=True)
                    (held,) = conn.execute(
                        "SELECT pg_try_advisory_lock(%s, %s)", (_OWNER_LOCK_CLASS, key)
                    ).fetchone() or (False,)
                except psycopg.Error as exc:
                    raise IndexUnavailableError(f"index {self.path}: {exc}") from exc
                if held:
                    self._owner, self._owner_conn, self._owner_pid = key, conn, os.getpid()
                    return key
                conn.close()
            raise IndexUnavailableError(f"index {self.path}: no free owner key")

    # -- writing ------------------------------------------------------------------------

    def add_entry(self, entry: IndexEntry, path: Path, transfer_syntax: str, size: int) -> None:
        self._db.run(lambda conn: _insert(conn, entry, path, transfer_syntax, size))

    def _prepare(self, intent: _Intent, durable: bool) -> int:
        owner = self._owner_key()
        entry, identity = intent.entry, intent.identity

        def record(conn: psycopg.Connection[Any]) -> int:
            if not durable:  # as SQLite's synchronous=NORMAL: a server crash may lose it
                conn.execute("SET LOCAL synchronous_commit = off")
            row = conn.execute(
                "INSERT INTO pending (owner, host, sop_instance_uid, path, replaces, device, "
                "inode, file_size, transfer_syntax, size, header, header_implicit) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING pk",
                (
                    owner,
                    _HOST,
                    entry.sop_instance_uid,
                    intent.path,
                    intent.replaces,
                    *identity,
                    intent.transfer_syntax,
                    intent.size,
                    entry.header,
                    entry.implicit,
                ),
            ).fetchone()
            assert row is not None
            return int(row[0])

        token = self._db.run(record)
        self._staged[token] = (intent, _HOST, durable)
        return token

    def commit_add(self, token: int) -> bool:
        staged = self._staged.pop(token, None)
        durable = staged is None or staged[2]
        storage = self.backend

        def complete(conn: psycopg.Connection[Any]) -> str:
            if not durable:  # as its intent: the row is visible at once, flushed shortly
                conn.execute("SET LOCAL synchronous_commit = off")
            return _complete(conn, token, staged[:2] if staged is not None else None, storage)

        return self._db.run(complete) == "completed"

    def cancel_add(self, token: int) -> None:
        self._staged.pop(token, None)
        storage = self.backend

        def cancel(conn: psycopg.Connection[Any]) -> None:
            row = conn.execute(
                "DELETE FROM pending WHERE pk = %s RETURNING sop_instance_uid", (token,)
            ).fetchone()
            if row is not None:
                _drop_if_missing(conn, row[0], storage)

        self._db.run(cancel)

    def reconcile(self) -> Reconciled:
        """Settle the intents of processes that are gone (their owner lock is free)."""
        mine = self._owner if self._owner_pid == os.getpid() else None
        storage = self.backend

        def settle(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
            completed = dropped = removed = 0
            owners = [r[0] for r in conn.execute("SELECT DISTINCT owner FROM pending")]
            for owner in owners:
                if owner == mine:
                    continue
                (free,) = conn.execute(
                    "SELECT pg_try_advisory_xact_lock(%s, %s)", (_OWNER_LOCK_CLASS, owner)
                ).fetchone() or (False,)
                if not free:
                    continue  # a live node's additions in progress: not ours to settle
                intents = conn.execute(
                    "SELECT pk, sop_instance_uid FROM pending WHERE owner = %s ORDER BY pk",
                    (owner,),
                ).fetchall()
                for token, uid in intents:
                    outcome = _complete(conn, token, None, storage)
                    if outcome == "completed":
                        completed += 1
                    elif outcome == "dropped":
                        dropped += 1
                        removed += _drop_if_missing(conn, uid, storage)
            return completed, dropped, removed

        completed, dropped, removed = self._db.run(settle)
        if completed or dropped:
            log.warning(
                "index %s: %d interrupted additions completed, %d dropped, "
                "%d rows without a file removed",
                self.path,
                completed,
                dropped,
                removed,
            )
        return Reconciled(completed, dropped, removed)

    def remove(self, sop_instance_uid: str) -> bool:
        return self._db.run(lambda conn: _delete(conn, sop_instance_uid))

    # -- reading ------------------------------------------------------------------------

    def locate(self, sop_instance_uid: str) -> Path | None:
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT path FROM instance WHERE sop_instance_uid = %s", (sop_instance_uid,)
            ).fetchone()
        return Path(row[0]) if row is not None else None

    def paths(self) -> Iterator[tuple[str, Path]]:
        with self._db.reading() as conn:
            cursor = conn.cursor(name="dicomwire_paths")
            cursor.itersize = 1024
            cursor.execute("SELECT sop_instance_uid, path FROM instance ORDER BY pk")
            for uid, path in cursor:
                yield uid, Path(path)

    def count(self) -> int:
        with self._db.reading() as conn:
            row = conn.execute("SELECT COUNT(*) FROM instance").fetchone()
        return int(row[0]) if row is not None else 0

    def stats(self) -> dict[str, int]:
        with self._db.reading() as conn:
            return {
                name: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # type: ignore[index]
                for name, table in _STAT_TABLES.items()
            }

    def _candidates(self, level: str, query: Query) -> Iterator[tuple[int, Dataset]]:
        """What the SQL lets by before the matcher decides (tests look at the narrowing)."""
        with self._db.reading() as conn:
            yield from _candidates(conn, level, query)

    def find(self, level: str, identifier: Dataset) -> Iterator[Dataset]:
        with self._db.reading() as conn:  # one snapshot for the candidates and their counts
            yield from _find(
                level,
                identifier,
                lambda level, query: _candidates(conn, level, query),
                lambda sql, params: _first(conn, sql, params),
                POSTGRES,
            )

    def instances(self, level: str, identifier: Dataset) -> Iterator[IndexedInstance]:
        with self._db.reading() as conn:
            yield from _instances(
                level,
                identifier,
                lambda level, query: _candidates(conn, level, query),
                lambda sql, params: conn.execute(sql, params).fetchall(),
                POSTGRES,
            )


def _complete(
    conn: psycopg.Connection[Any],
    token: int,
    staged: tuple[_Intent, str] | None,
    storage: StorageBackend,
) -> str:
    """Settle one intent: "completed", "dropped" or "gone".

    Prepared by this process (``staged``), the intent is completed even if a reconcile
    settled it meanwhile (an owner lock lost with its connection): the file at the path is
    still checked to be this one, so the row describes what is on disk.
    """
    row = conn.execute(
        "DELETE FROM pending WHERE pk = %s RETURNING path, replaces, device, inode, "
        "file_size, transfer_syntax, size, header, header_implicit, host",
        (token,),
    ).fetchone()
    if staged is not None:
        intent, host = staged
    elif row is None:
        return "gone"
    else:
        implicit = bool(row[8])
        header, values = _scan(bytes(row[7]), implicit)
        intent = _Intent(
            _entry(header, values, implicit),
            row[0],
            row[1],
            (int(row[2]), int(row[3]), int(row[4])),
            row[5],
            int(row[6]),
        )
        host = row[9]
    if not _in_place(intent.path, intent.identity, same_host=host == _HOST, storage=storage):
        return "dropped"  # not renamed into place, or another copy was renamed over it
    _insert(conn, intent.entry, intent.path, intent.transfer_syntax, intent.size)
    _remove_replaced(intent.path, intent.replaces, storage)  # the earlier copy: overwritten
    return "completed"


def _drop_if_missing(
    conn: psycopg.Connection[Any], sop_instance_uid: str, storage: StorageBackend
) -> bool:
    """Remove the instance's row if its file is gone (an overwrite undone halfway)."""
    found = conn.execute(
        "SELECT path FROM instance WHERE sop_instance_uid = %s", (sop_instance_uid,)
    ).fetchone()
    if found is None or storage.exists(found[0]):
        return False
    return _delete(conn, sop_instance_uid)


def _candidates(
    conn: psycopg.Connection[Any], level: str, query: Query
) -> Iterator[tuple[int, Dataset]]:
    """(pk, header) of each entity at ``level`` that the SQL part of ``query`` lets by."""
    sql, params = _candidates_sql(level, query, POSTGRES)
    cursor = conn.cursor(name=f"dicomwire_{level.lower()}")
    cursor.itersize = 256  # streamed: a large result is never all in memory
    cursor.execute(sql, params)
    try:
        for pk, stored, implicit in cursor:
            yield int(pk), _dataset(bytes(stored) if stored is not None else None, bool(implicit))
    finally:
        cursor.close()


def _first(conn: psycopg.Connection[Any], sql: str, params: Sequence[Any]) -> Any:
    """The first column of a query's one row (None: no row)."""
    row = conn.execute(sql, params).fetchone()
    return row[0] if row is not None else None
