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

from ..matching import KeyCondition, MatchKind, Query, name_key
from ..worklist.store import (
    _ENTRY_COLUMNS,
    _NARROWED,
    _STEP_COLUMNS,
    _STEP_ID,
    _STEP_STATUS,
    _STUDY_UID,
    STEP_SEQUENCE,
    WatchedFile,
    WorklistEntry,
    WorklistStore,
    _encode_entry,
    _steps,
    _value,
    check_entry,
    decode_entry,
    entry_key,
)
from .connection import Database, redact
from .index import _condition_sql

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
        "CREATE INDEX IF NOT EXISTS worklist_steps_entry ON worklist_steps(entry_pk)",
        "CREATE INDEX IF NOT EXISTS worklist_entries_key ON worklist_entries(entry_key)",
        "CREATE INDEX IF NOT EXISTS worklist_entries_study ON worklist_entries(study_instance_uid)",
    ]
    statements += [
        f"CREATE INDEX IF NOT EXISTS worklist_entries_{c} ON worklist_entries({c})"
        for c in _ENTRY_COLUMNS.values()
    ]
    statements += [
        f"CREATE INDEX IF NOT EXISTS worklist_steps_{c} ON worklist_steps({c})"
        for c in _STEP_COLUMNS.values()
        if c in _NARROWED
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
    row: dict[str, Any] = {
        "entry_key": entry_key(dataset),
        "study_instance_uid": _value(dataset, _STUDY_UID),
        "source": source,
        "path": path,
        "mtime_ns": stat[0] if stat else None,
        "size": stat[1] if stat else None,
        "called_ae": called_ae,
        "data": data if data is not None else _encode_entry(dataset),
    }
    for tag, column in _ENTRY_COLUMNS.items():
        text = _value(dataset, tag)
        row[column] = name_key(text) if text and column == "patient_name" else text
    names = ", ".join(row)
    found = conn.execute(
        f"INSERT INTO worklist_entries ({names}, added) VALUES "
        f"({', '.join('%s' for _ in row)}, extract(epoch FROM statement_timestamp())) "
        "RETURNING pk",
        tuple(row.values()),
    ).fetchone()
    assert found is not None
    for step in _steps(dataset):
        values = [_value(step, tag) for tag in _STEP_COLUMNS]
        conn.execute(
            f"INSERT INTO worklist_steps (entry_pk, {', '.join(_STEP_COLUMNS.values())}) "
            f"VALUES (%s, {', '.join('%s' for _ in values)})",
            (found[0], *values),
        )


def _column_sql(condition: KeyCondition, column: str, name: str, params: list[Any]) -> str | None:
    keep_multi = f"strpos({column}, '\\') > 0"
    if condition.kind is MatchKind.VALUE_LIST:
        params.append(list(condition.values))
        return f"({column} = ANY(%s) OR {keep_multi})"
    return _condition_sql(condition, column, name, params)


def _narrowing(condition: KeyCondition, params: list[Any]) -> str | None:
    """SQL keeping every entry ``condition`` can match (None: the matcher decides)."""
    if condition.tag == STEP_SEQUENCE and condition.kind is MatchKind.SEQUENCE:
        parts = []
        for item in condition.items:
            column = _STEP_COLUMNS.get(item.tag)
            if column is None or column not in _NARROWED:
                continue
            clause = _column_sql(item, f"s.{column}", column, params)
            if clause is not None:
                parts.append(clause)
        if not parts:
            return None
        return (
            "EXISTS (SELECT 1 FROM worklist_steps s WHERE s.entry_pk = e.pk AND "
            f"{' AND '.join(parts)})"
        )
    column = _ENTRY_COLUMNS.get(condition.tag)
    if column is None:
        return None
    return _column_sql(condition, f"e.{column}", column, params)


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
                touched = False
                for step in _steps(dataset):
                    if step_id is None or _value(step, _STEP_ID) == step_id:
                        setattr(step, _STEP_STATUS, status)
                        touched = True
                if touched:
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
        params: list[Any] = []
        clauses = ["(e.called_ae IS NULL OR e.called_ae = %s)"] if called_ae is not None else []
        if called_ae is not None:
            params.append(called_ae)
        for query in queries:
            for condition in query.matching_keys:
                clause = _narrowing(condition, params)
                if clause is not None:
                    clauses.append(clause)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.run(
            lambda conn: conn.execute(
                f"SELECT e.data FROM worklist_entries e{where} ORDER BY e.pk", params
            ).fetchall()
        )
        matched = []
        for (stored,) in rows:
            try:
                candidate = decode_entry(bytes(stored))
                if all(query.matches(candidate) for query in queries):
                    matched.append(candidate)
            except Exception as exc:  # one damaged entry must not fail every query
                log.warning("worklist entry left out of a query: cannot decode it: %s", exc)
        return matched
