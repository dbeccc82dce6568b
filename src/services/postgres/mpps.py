"""Performed procedure steps in PostgreSQL, shared by several nodes (PS3.4 F.7.2).

The ``mpps_steps`` table of :class:`~dicomwire.services.mpps.store.StepStore` in the
shared database: the N-CREATE of a step through one node and its N-SETs through another
find one row. An N-CREATE of a SOP Instance UID that exists is refused whichever node
created it first (the primary key; ``ON CONFLICT DO NOTHING``), as PS3.4 F.7.2.1.2 asks
(0111, Duplicate SOP Instance).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..mpps.store import _COLUMNS, StepStore, to_json
from .connection import Database, redact

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = ["PostgresStepStore"]

_NOW = "extract(epoch FROM statement_timestamp())"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS mpps_steps (uid TEXT PRIMARY KEY, status TEXT NOT NULL, "
    "dataset TEXT NOT NULL, calling_ae TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, "
    "updated DOUBLE PRECISION NOT NULL);"
    "CREATE INDEX IF NOT EXISTS mpps_steps_status ON mpps_steps(status)"
)


class PostgresStepStore(StepStore):
    """The steps in the PostgreSQL database at ``url`` (connected on first use)."""

    _mark = "%s"

    def __init__(self, url: str, *, pool_size: int = 4) -> None:  # no SQLite file
        self.url = url
        self.path = redact(url)
        self._pg = Database(url, _SCHEMA, "mpps_steps_status", max_size=pool_size)

    def __repr__(self) -> str:
        return f"PostgresStepStore({self.path!r})"

    def close(self) -> None:
        self._pg.close()

    def insert(self, uid: str, status: str, dataset: Dataset | str, calling_ae: str) -> bool:
        row = self._pg.run(
            lambda conn: conn.execute(
                f"INSERT INTO mpps_steps ({_COLUMNS}) VALUES (%s, %s, %s, %s, {_NOW}, {_NOW}) "
                "ON CONFLICT (uid) DO NOTHING RETURNING uid",
                (uid, status, to_json(dataset), calling_ae),
            ).fetchone()
        )
        return row is not None

    def update(self, uid: str, status: str, dataset: Dataset | str) -> None:
        self._pg.run(
            lambda conn: conn.execute(
                f"UPDATE mpps_steps SET status = %s, dataset = %s, updated = {_NOW} WHERE uid = %s",
                (status, to_json(dataset), uid),
            )
        )

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return self._pg.run(lambda conn: conn.execute(sql, params).fetchall())
