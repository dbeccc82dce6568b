"""The Modality Worklist store in PostgreSQL, shared by several nodes (PS3.4 K.6.1).

The tables of :class:`~dicomwire.services.worklist.store.SQLiteWorklistStore` in the shared
database: an entry added through one node is answered by every node's C-FIND. SQL narrows
on the indexed keys as the Q/R index's PostgreSQL backend does, the reference matcher
decides. Two nodes adding an entry with one key at once leave one entry (the key's
advisory lock orders them); two nodes reading the same watched directory replace its
files' entries in turn (the path is unique; a transaction that loses the race runs again).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..matching import Query
from ..worklist.store import (
    _ENTRY_COLUMNS,
    _STEP_COLUMNS,
    WatchedFile,
    WorklistEntry,
    WorklistStore,
    _encode_entry,
    _entry_row,
    _find_sql,
    _index_statements,
    _insert_step_sql,
    _matching,
    _set_status,
    _step_rows,
    check_entry,
    decode_entry,
    entry_key,
)
from .connection import Database, redact
from .index import POSTGRES

if TYPE_CHECKING:
    import psycopg
    from pydicom import Dataset

__all__ = ["PostgresWorklistStore"]

log = logging.getLogger("dicomwire.services.postgres.worklist")

#: Advisory lock class of entry keys ("DWIS").
_KEY_LOCK_CLASS = 1146571091


def _schema() -> str:
    entry_columns = ", ".join(f'{c} TEXT COLLATE "C"' for c in _ENTRY_COLUMNS.values())
    step_columns = ", ".join(f'{c} TEXT COLLATE "C"' for c in _STEP_COLUMNS.values())
    statements = [
        "CREATE TABLE IF NOT EXISTS worklist_entries (pk BIGINT GENERATED ALWAYS AS IDENTITY "
        "PRIMARY KEY, entry_key TEXT NOT NULL, study_instance_uid TEXT, source TEXT NOT NULL, "
        f"path TEXT UNIQUE, mtime_ns BIGINT, size BIGINT, called_ae TEXT, {entry_columns}, "
        "data BYTEA NOT NULL, added DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE IF NOT EXISTS worklist_steps (pk BIGINT GENERATED ALWAYS AS IDENTITY "
        "PRIMARY KEY, entry_pk BIGINT NOT NULL REFERENCES worklist_entries(pk) "
        f"ON DELETE CASCADE, {step_columns})",
        *_index_statements(),
    ]
    statements.append("CREATE INDEX IF NOT EXISTS worklist_ready ON worklist_entries(source, pk)")
    return ";\n".join(statements)


def _insert(
    conn: psycopg.Connection[Any],
    dataset: Dataset,
    source: str,
    path: str | None,
    stat: tuple[int, int] | None,
    called_ae: str | None,
    data: bytes | None = None,
) -> None:
    row = _entry_row(dataset, source, path, stat, called_ae, data)
    names = ", ".join(row)
    found = conn.execute(
        f"INSERT INTO worklist_entries ({names}, added) VALUES "
        f"({', '.join('%s' for _ in row)}, extract(epoch FROM statement_timestamp())) "
        "RETURNING pk",
        tuple(row.values()),
    ).fetchone()
    assert found is not None
    for values in _step_rows(dataset):
        conn.execute(_insert_step_sql(POSTGRES), (found[0], *values))


class PostgresWorklistStore(WorklistStore):
    """The worklist in the PostgreSQL database at ``url`` (connected on first use)."""

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        self.url = url
        self.path = redact(url)
        self._db = Database(url, _schema(), "worklist_ready", max_size=pool_size)

    def __repr__(self) -> str:
        return f"PostgresWorklistStore({self.path!r})"

    def close(self) -> None:
        self._db.close()

    def add(self, dataset: Dataset) -> str:
        check_entry(dataset)
        key = entry_key(dataset)

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_KEY_LOCK_CLASS, key))
            conn.execute(
                "DELETE FROM worklist_entries WHERE source = 'api' AND entry_key = %s", (key,)
            )
            _insert(conn, dataset, "api", None, None, None)

        self._db.run(work)
        return key

    def remove(self, key: str) -> int:
        def work(conn: psycopg.Connection[Any]) -> int:
            return conn.execute(
                "DELETE FROM worklist_entries WHERE source = 'api' "
                "AND (entry_key = %s OR study_instance_uid = %s)",
                (key, key),
            ).rowcount

        return int(self._db.run(work))

    def set_step_status(self, study_instance_uid: str, step_id: str | None, status: str) -> int:
        def work(conn: psycopg.Connection[Any]) -> int:
            rows = conn.execute(
                "SELECT pk, data FROM worklist_entries WHERE source = 'api' "
                "AND study_instance_uid = %s FOR UPDATE",
                (study_instance_uid,),
            ).fetchall()
            changed = 0
            for pk, stored in rows:
                dataset = decode_entry(bytes(stored))
                if _set_status(dataset, step_id, status):
                    conn.execute(
                        "UPDATE worklist_entries SET data = %s WHERE pk = %s",
                        (_encode_entry(dataset), pk),
                    )
                    changed += 1
            return changed

        return int(self._db.run(work))

    def file_states(self) -> dict[str, tuple[int, int]]:
        rows = self._db.run(
            lambda conn: conn.execute(
                "SELECT DISTINCT path, mtime_ns, size FROM worklist_entries WHERE source = 'file'"
            ).fetchall()
        )
        return {path: (int(mtime), int(size)) for path, mtime, size in rows}

    def replace_files(self, files: Sequence[WatchedFile]) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            for file in files:
                conn.execute("DELETE FROM worklist_entries WHERE path = %s", (file.path,))
                _insert(conn, file.dataset, "file", file.path, file.stat, file.called_ae, file.data)

        if files:
            self._db.run(work)

    def forget_files(self, paths: Iterable[str]) -> None:
        listed = list(paths)
        if listed:
            self._db.run(
                lambda conn: conn.execute(
                    "DELETE FROM worklist_entries WHERE path = ANY(%s)", (listed,)
                )
            )

    def entries(self) -> list[WorklistEntry]:
        rows = self._db.run(
            lambda conn: conn.execute(
                "SELECT entry_key, source, path, called_ae, data FROM worklist_entries "
                "ORDER BY source = 'file', pk"
            ).fetchall()
        )
        return [
            WorklistEntry(
                key, path if source == "file" else "api", called, decode_entry(bytes(stored))
            )
            for key, source, path, called, stored in rows
        ]

    def count(self) -> int:
        row = self._db.run(
            lambda conn: conn.execute("SELECT COUNT(*) FROM worklist_entries").fetchone()
        )
        return int(row[0]) if row is not None else 0

    def find(self, queries: Sequence[Query], *, called_ae: str | None = None) -> list[Dataset]:
        sql, params = _find_sql(queries, called_ae, POSTGRES)
        rows = self._db.run(lambda conn: conn.execute(sql, params).fetchall())
        return _matching(rows, queries)
