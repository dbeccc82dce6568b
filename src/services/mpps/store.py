"""Performed procedure steps kept across restarts: one table in the node's database.

PS3.4 F.7.2: an MPPS SOP Instance lives from its N-CREATE until the SCP forgets it; its
N-SETs come later, often on other associations, possibly after the node restarted. Each
step is a row of ``mpps_steps`` (SQLite, WAL, in the node's database file beside the Q/R
index and the job queue): its SOP Instance UID, its Performed Procedure Step Status, the
whole attribute set as DICOM JSON (PS3.18 F.2) and who created it when.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .attributes import FINAL_STATES, SCHEDULED_STEP_ATTRIBUTES

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = ["Step", "StepStore", "to_json"]


@dataclass(frozen=True, slots=True)
class Step:
    """One performed procedure step as stored: what the hooks and the API see."""

    uid: str
    status: str
    dataset: Dataset
    calling_ae: str
    created: float
    updated: float

    @property
    def finished(self) -> bool:
        """True once COMPLETED or DISCONTINUED (no N-SET is accepted any more)."""
        return self.status in FINAL_STATES

    @property
    def scheduled(self) -> list[dict[str, str]]:
        """The scheduled steps it performed: one dict per Scheduled Step Attributes item.

        Keys ``StudyInstanceUID``, ``AccessionNumber``, ``RequestedProcedureID`` and
        ``ScheduledProcedureStepID`` (empty when the item has no value): what a worklist
        needs to find the entry the step belongs to.
        """
        found: list[dict[str, str]] = []
        if SCHEDULED_STEP_ATTRIBUTES not in self.dataset:
            return found
        for item in self.dataset[SCHEDULED_STEP_ATTRIBUTES].value or ():
            found.append(
                {
                    key: str(item.get(key, "") or "")
                    for key in (
                        "StudyInstanceUID",
                        "AccessionNumber",
                        "RequestedProcedureID",
                        "ScheduledProcedureStepID",
                    )
                }
            )
        return found


def to_json(dataset: Dataset | str) -> str:
    """A step's attributes as stored: DICOM JSON (a str is taken as already encoded)."""
    if isinstance(dataset, str):
        return dataset
    return json.dumps(dataset.to_json_dict(bulk_data_threshold=1 << 30), separators=(",", ":"))


def _from_json(text: str) -> Dataset:
    from pydicom import Dataset

    return Dataset.from_json(text)


class StepStore:
    """The ``mpps_steps`` table: insert a step, read it, replace it after an N-SET."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS mpps_steps (uid TEXT PRIMARY KEY, status TEXT NOT NULL, "
            "dataset TEXT NOT NULL, calling_ae TEXT NOT NULL, created REAL NOT NULL, "
            "updated REAL NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS mpps_steps_status ON mpps_steps(status)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def insert(self, uid: str, status: str, dataset: Dataset | str, calling_ae: str) -> bool:
        """Store a new step; False when ``uid`` exists already (nothing changed)."""
        now = time.time()
        try:
            with self._lock:
                self._db.execute(
                    f"INSERT INTO mpps_steps ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (uid, status, to_json(dataset), calling_ae, now, now),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def update(self, uid: str, status: str, dataset: Dataset | str) -> None:
        """Replace the step's attributes and status (after an accepted N-SET)."""
        with self._lock:
            self._db.execute(
                "UPDATE mpps_steps SET status = ?, dataset = ?, updated = ? WHERE uid = ?",
                (status, to_json(dataset), time.time(), uid),
            )

    #: A parameter's placeholder (the PostgreSQL store's differs).
    _mark = "?"

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """The rows of one query."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def exists(self, uid: str) -> bool:
        return bool(self._rows(f"SELECT 1 FROM mpps_steps WHERE uid = {self._mark}", (uid,)))

    def get(self, uid: str) -> Step | None:
        """The step ``uid``, or None."""
        rows = self._rows(f"SELECT {_COLUMNS} FROM mpps_steps WHERE uid = {self._mark}", (uid,))
        return _step(rows[0]) if rows else None

    def steps(self, status: str | None = None) -> list[Step]:
        """Every step (with ``status``), oldest first."""
        where, params = (f"WHERE status = {self._mark}", (status,)) if status else ("", ())
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM mpps_steps {where} ORDER BY created, uid", params
        )
        return [_step(row) for row in rows]


_COLUMNS = "uid, status, dataset, calling_ae, created, updated"


def _step(row: Any) -> Step:
    return Step(
        uid=str(row[0]),
        status=str(row[1]),
        dataset=_from_json(row[2]),
        calling_ae=str(row[3]),
        created=float(row[4]),
        updated=float(row[5]),
    )
