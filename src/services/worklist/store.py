"""The worklist store: scheduled procedure steps a Modality Worklist SCP answers from.

PS3.4 K.6.1 (Modality Worklist Information Model): one entry is one worklist item, a data
set holding the patient, the requested procedure and its Scheduled Procedure Step
Sequence (0040,0100). Entries come from two feeds, both kept in the same tables of the
node's database (``worklist_entries`` and ``worklist_steps``, beside the Q/R index's and
the job queue's tables in the same SQLite file):

- ``add`` (the Python API, ``dicomwire worklist add FILE.json|FILE.dcm``): kept until
  ``remove``d; an entry with the Study Instance UID and Scheduled Procedure Step ID of an
  existing one replaces it;
- a watched directory (:class:`WatchedDirectory`) of ``.wl``/``.dcm`` files, the folders
  DCMTK's ``wlmscpfs`` and Orthanc's worklists plugin serve: files directly in it are
  served to every called AE title, files in a sub-folder ``<AE>/`` only to queries
  addressed to that AE title (``wlmscpfs -dfp DIR`` serves ``DIR/<AE>/*.wl``). It is
  re-read by polling modification times (no inotify dependency): a file added, changed or
  removed is seen on the next scan.

A query narrows in SQL on indexed columns (the matching keys of the RIS statement's Table
3.2: Accession Number, Patient's Name, Patient ID, Requested Procedure ID, and per
scheduled step Modality, Scheduled Station AE Title, Start Date, Start Time and Scheduled
Station Name) and :mod:`dicomwire.services.matching` decides on each candidate, as the
Q/R index does (:mod:`dicomwire.services.index`): SQL only ever narrows.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import DataSetError
from ..index import SQLITE, SQLDialect, _condition_sql, _text
from ..matching import KeyCondition, MatchKind, Query, name_key

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = [
    "STEP_SEQUENCE",
    "SQLiteWorklistStore",
    "WatchedDirectory",
    "WatchedFile",
    "WorklistEntry",
    "WorklistStore",
    "read_entries",
]

log = logging.getLogger("dicomwire.services.worklist.store")

#: Scheduled Procedure Step Sequence (0040,0100).
STEP_SEQUENCE = 0x00400100
_STUDY_UID = 0x0020000D
_STEP_ID = 0x00400009
_STEP_STATUS = "ScheduledProcedureStepStatus"
#: Watched files written to the store per transaction.
_BATCH = 500
#: Extensions of worklist files in a watched directory (case-insensitive).
FILE_SUFFIXES = (".wl", ".dcm")

#: Indexed keys of an entry: tag -> column (Table 3.2's keys outside the step sequence).
_ENTRY_COLUMNS: dict[int, str] = {
    0x00080050: "accession_number",
    0x00100010: "patient_name",
    0x00100020: "patient_id",
    0x00401001: "requested_procedure_id",
}
#: Indexed keys of each scheduled procedure step (Table 3.2's keys inside the sequence).
_STEP_COLUMNS: dict[int, str] = {
    0x00080060: "modality",
    0x00400001: "station_ae",
    0x00400002: "start_date",
    0x00400003: "start_time",
    0x00400010: "station_name",
}
#: Columns SQL narrows on: text compared as stored (times are left to the matcher).
_NARROWED = {"accession_number", "patient_name", "patient_id", "requested_procedure_id"} | {
    "modality",
    "station_ae",
    "start_date",
    "station_name",
}


@dataclass(frozen=True, slots=True)
class WorklistEntry:
    """One stored entry as ``list`` shows it: its key, where it came from, its data set."""

    key: str
    source: str  # "api", or the watched file's path
    called_ae: str | None  # None: served to every called AE title
    dataset: Dataset


@dataclass(frozen=True, slots=True)
class WatchedFile:
    """One file of a watched directory as read: where, its (mtime_ns, size), its entry."""

    path: str
    stat: tuple[int, int]
    called_ae: str | None
    dataset: Dataset
    #: The entry as stored (:data:`STORED_SYNTAX` bytes), when the file already holds it.
    data: bytes | None = None


class WorklistStore:
    """What the Worklist SCP and the CLI ask of a store (backends implement it)."""

    def add(self, dataset: Dataset) -> str:
        """Keep one entry (replacing one with its Study Instance UID and step ID); its key."""
        raise NotImplementedError

    def remove(self, key: str) -> int:
        """Forget the added entries with this key or Study Instance UID; how many."""
        raise NotImplementedError

    def entries(self) -> list[WorklistEntry]:
        """Every entry, added ones first, each in the order it came."""
        raise NotImplementedError

    def find(self, queries: Sequence[Query], *, called_ae: str | None = None) -> list[Dataset]:
        """The entries every query matches, served to ``called_ae`` (None: any)."""
        raise NotImplementedError

    def set_step_status(self, study_instance_uid: str, step_id: str | None, status: str) -> int:
        """Set the Scheduled Procedure Step Status of matching added entries (MPPS); count."""
        raise NotImplementedError

    def file_states(self) -> dict[str, tuple[int, int]]:
        """Every file-fed entry's path -> (mtime_ns, size) as last read."""
        raise NotImplementedError

    def replace_files(self, files: Sequence[WatchedFile]) -> None:
        """The entries of watched files as just read (one transaction)."""
        raise NotImplementedError

    def forget_files(self, paths: Iterable[str]) -> None:
        """Forget the entries of watched files that are gone."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the database connections (the store reopens on next use)."""
        raise NotImplementedError


def read_entries(path: str | Path) -> list[Dataset]:
    """The worklist entries in a file: DICOM JSON (one object or a list) or DICOM.

    A ``.json`` file holds DICOM JSON (PS3.18 F.2); anything else is read as DICOM, a
    Part 10 file or a bare data set (``wlmscpfs``'s ``.wl`` files are either).
    :class:`DataSetError` names the file when it cannot be read.
    """
    from pydicom import Dataset, dcmread

    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            loaded = json.loads(path.read_text(encoding="utf-8"))
            objects = loaded if isinstance(loaded, list) else [loaded]
            return [Dataset.from_json(item) for item in objects]
        return [Dataset(dcmread(path, force=True))]  # the data set without its file meta
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DataSetError(f"{path}: not a worklist entry ({type(exc).__name__}: {exc})") from exc


def read_watched_file(path: Path) -> tuple[Dataset, bytes | None]:
    """A watched file's entry, and its stored form when the file holds it as it is.

    A Part 10 file in explicit VR little endian (what ``dump2dcm`` and pydicom write by
    default) is kept byte for byte after its file meta (PS3.10 7.1: the group length
    (0002,0000) says where the data set starts): nothing decoded but the keys indexed.
    """
    from ...dimse.datasets import decode_dataset

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataSetError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if data[128:132] == b"DICM" and data[132:138] == b"\x02\x00\x00\x00UL":
        start = 144 + int.from_bytes(data[140:144], "little")
        try:
            meta = decode_dataset(data[132:start], STORED_SYNTAX)
            syntax = str(meta.get("TransferSyntaxUID", "")).strip("\x00 ")
            if syntax == STORED_SYNTAX:
                stored = data[start:]
                dataset = decode_entry(stored)
                _checked(dataset, path)
                return dataset, stored
        except DataSetError:
            pass  # read it the long way below, which names the problem
    dataset = read_entries(path)[0]
    _checked(dataset, path)
    return dataset, None


def _checked(dataset: Dataset, path: Path) -> None:
    """:func:`check_entry`, any decoding error of the keys it reads a DataSetError."""
    try:
        check_entry(dataset)
        for tag in (*_ENTRY_COLUMNS, _STUDY_UID):
            _value(dataset, tag)
        for step in _steps(dataset):
            for tag in _STEP_COLUMNS:
                _value(step, tag)
    except DataSetError as exc:
        raise DataSetError(f"{path}: {exc}") from exc
    except Exception as exc:  # pydicom raises many types on bad values
        raise DataSetError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc


def _value(dataset: Dataset, tag: int) -> str | None:
    element = dataset.get(tag)
    return None if element is None else _text(element.value)


def _steps(dataset: Dataset) -> list[Dataset]:
    element = dataset.get(STEP_SEQUENCE)
    if element is None or element.VR != "SQ":
        return []
    return list(element.value or ())


def check_entry(dataset: Dataset) -> None:
    """An entry needs a Study Instance UID and at least one scheduled procedure step."""
    if not _value(dataset, _STUDY_UID):
        raise DataSetError("a worklist entry needs a Study Instance UID (0020,000D)")
    if not _steps(dataset):
        raise DataSetError(
            "a worklist entry needs a Scheduled Procedure Step Sequence (0040,0100) with an item"
        )


def entry_key(dataset: Dataset) -> str:
    """``STUDY-UID`` or ``STUDY-UID/STEP-ID`` (the first step's Scheduled Procedure Step ID)."""
    study = _value(dataset, _STUDY_UID) or ""
    steps = _steps(dataset)
    step = _value(steps[0], _STEP_ID) if steps else None
    return f"{study}/{step}" if step else study


#: Entries are kept as explicit VR little endian data sets: read back lazily, only the
#: elements a query touches are decoded, and an answer in the entry's character set
#: reuses the stored bytes.
STORED_SYNTAX = "1.2.840.10008.1.2.1"
_TEXT_VRS = frozenset(("PN", "LO", "SH", "ST", "LT", "UT", "UC"))


def _encode_entry(dataset: Dataset) -> bytes:
    """The entry as stored; text beyond ASCII without a character set is stored as UTF-8."""
    from ...dimse.datasets import encode_dataset

    if "SpecificCharacterSet" not in dataset and not _ascii(dataset):
        from pydicom import Dataset

        dataset = Dataset(dataset)
        dataset.SpecificCharacterSet = "ISO_IR 192"
    return encode_dataset(dataset, STORED_SYNTAX)


def _ascii(dataset: Dataset) -> bool:
    for element in dataset.iterall():
        if element.VR in _TEXT_VRS and element.value:
            value = element.value
            values = value if isinstance(value, list | tuple) else [value]
            if not all(str(v).isascii() for v in values):
                return False
    return True


def decode_entry(stored: bytes) -> Dataset:
    """A stored entry as a Dataset (its elements decoded when first read)."""
    from ...dimse.datasets import decode_dataset

    return decode_dataset(stored, STORED_SYNTAX)


def _index_statements() -> list[str]:
    """The worklist tables' indexes, the same DDL in every backend (the columns narrowed)."""
    return [
        "CREATE INDEX IF NOT EXISTS worklist_steps_entry ON worklist_steps(entry_pk)",
        "CREATE INDEX IF NOT EXISTS worklist_entries_key ON worklist_entries(entry_key)",
        "CREATE INDEX IF NOT EXISTS worklist_entries_study ON worklist_entries(study_instance_uid)",
        *(
            f"CREATE INDEX IF NOT EXISTS worklist_entries_{c} ON worklist_entries({c})"
            for c in _ENTRY_COLUMNS.values()
        ),
        *(
            f"CREATE INDEX IF NOT EXISTS worklist_steps_{c} ON worklist_steps({c})"
            for c in _STEP_COLUMNS.values()
            if c in _NARROWED
        ),
    ]


class SQLiteWorklistStore(WorklistStore):
    """The embedded store: two tables in an SQLite file (WAL), one writer at a time.

    ``worklist_entries`` holds each entry (indexed top-level keys, its data set as DICOM
    JSON, its source) and ``worklist_steps`` each of its scheduled procedure steps.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection, opened (and the tables made) on first use: a node built but
        not started creates no file."""
        if self._connection is None:
            self._connection = self._open(self.path)
        return self._connection

    def _open(self, path: str | Path) -> sqlite3.Connection:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
        if str(path) != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        entry_columns = ", ".join(f"{c} TEXT" for c in _ENTRY_COLUMNS.values())
        step_columns = ", ".join(f"{c} TEXT" for c in _STEP_COLUMNS.values())
        statements = [
            "CREATE TABLE IF NOT EXISTS worklist_entries (pk INTEGER PRIMARY KEY, "
            "entry_key TEXT NOT NULL, study_instance_uid TEXT, source TEXT NOT NULL, "
            f"path TEXT UNIQUE, mtime_ns INTEGER, size INTEGER, called_ae TEXT, {entry_columns}, "
            "data BLOB NOT NULL, added REAL NOT NULL)",
            "CREATE TABLE IF NOT EXISTS worklist_steps (pk INTEGER PRIMARY KEY, entry_pk INTEGER "
            f"NOT NULL REFERENCES worklist_entries(pk) ON DELETE CASCADE, {step_columns})",
            *_index_statements(),
        ]
        for statement in statements:
            db.execute(statement)
        return db

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- writing ------------------------------------------------------------------------

    def _insert(
        self,
        dataset: Dataset,
        source: str,
        path: str | None,
        stat: tuple[int, int] | None,
        called_ae: str | None,
        data: bytes | None = None,
    ) -> None:
        row = _entry_row(dataset, source, path, stat, called_ae, data)
        row["added"] = time.time()
        names = ", ".join(row)
        cursor = self._db.execute(
            f"INSERT INTO worklist_entries ({names}) VALUES ({', '.join('?' for _ in row)})",
            tuple(row.values()),
        )
        entry_pk = cursor.lastrowid
        for values in _step_rows(dataset):
            self._db.execute(_insert_step_sql(SQLITE), (entry_pk, *values))

    def _write(self, work: Any) -> Any:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return result

    def add(self, dataset: Dataset) -> str:
        check_entry(dataset)
        key = entry_key(dataset)

        def work() -> None:
            self._db.execute(
                "DELETE FROM worklist_entries WHERE source = 'api' AND entry_key = ?", (key,)
            )
            self._insert(dataset, "api", None, None, None)

        self._write(work)
        return key

    def remove(self, key: str) -> int:
        def work() -> int:
            cursor = self._db.execute(
                "DELETE FROM worklist_entries WHERE source = 'api' "
                "AND (entry_key = ? OR study_instance_uid = ?)",
                (key, key),
            )
            return cursor.rowcount

        return int(self._write(work))

    def set_step_status(self, study_instance_uid: str, step_id: str | None, status: str) -> int:
        def work() -> int:
            rows = self._db.execute(
                "SELECT pk, data FROM worklist_entries WHERE source = 'api' "
                "AND study_instance_uid = ?",
                (study_instance_uid,),
            ).fetchall()
            changed = 0
            for pk, stored in rows:
                dataset = decode_entry(stored)
                if _set_status(dataset, step_id, status):
                    self._db.execute(
                        "UPDATE worklist_entries SET data = ? WHERE pk = ?",
                        (_encode_entry(dataset), pk),
                    )
                    changed += 1
            return changed

        return int(self._write(work))

    def file_states(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT path, mtime_ns, size FROM worklist_entries WHERE source = 'file'"
            ).fetchall()
        return {path: (int(mtime), int(size)) for path, mtime, size in rows}

    def replace_files(self, files: Sequence[WatchedFile]) -> None:
        def work() -> None:
            for file in files:
                self._db.execute("DELETE FROM worklist_entries WHERE path = ?", (file.path,))
                # a file holds one entry (path is unique), as wlmscpfs reads it
                self._insert(file.dataset, "file", file.path, file.stat, file.called_ae, file.data)

        if files:
            self._write(work)

    def forget_files(self, paths: Iterable[str]) -> None:
        listed = list(paths)

        def work() -> None:
            self._db.executemany(
                "DELETE FROM worklist_entries WHERE path = ?", [(p,) for p in listed]
            )

        if listed:
            self._write(work)

    # -- reading ------------------------------------------------------------------------

    def entries(self) -> list[WorklistEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT entry_key, source, path, called_ae, data FROM worklist_entries "
                "ORDER BY source = 'file', pk"
            ).fetchall()
        return [
            WorklistEntry(key, path if source == "file" else "api", called, decode_entry(stored))
            for key, source, path, called, stored in rows
        ]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM worklist_entries").fetchone()[0])

    def find(self, queries: Sequence[Query], *, called_ae: str | None = None) -> list[Dataset]:
        sql, params = _find_sql(queries, called_ae, SQLITE)
        with self._lock:  # one connection: reads wait for a write in progress
            rows = self._db.execute(sql, params).fetchall()
        return _matching(rows, queries)


# -- what both backends share (their SQL differs only by the dialect's spelling) -------------


def _entry_row(
    dataset: Dataset,
    source: str,
    path: str | None,
    stat: tuple[int, int] | None,
    called_ae: str | None,
    data: bytes | None,
) -> dict[str, Any]:
    """The ``worklist_entries`` columns of one entry (but its time of addition)."""
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
    return row


def _step_rows(dataset: Dataset) -> list[list[str | None]]:
    """The ``worklist_steps`` columns of each scheduled step of an entry."""
    return [[_value(step, tag) for tag in _STEP_COLUMNS] for step in _steps(dataset)]


def _insert_step_sql(dialect: SQLDialect) -> str:
    """INSERT of one step: its entry's pk, then the values of :func:`_step_rows`."""
    marks = ", ".join(dialect.mark for _ in _STEP_COLUMNS)
    columns = ", ".join(_STEP_COLUMNS.values())
    return f"INSERT INTO worklist_steps (entry_pk, {columns}) VALUES ({dialect.mark}, {marks})"


def _set_status(dataset: Dataset, step_id: str | None, status: str) -> bool:
    """Set the status of the entry's step ``step_id`` (None: every step); any changed?"""
    touched = False
    for step in _steps(dataset):
        if step_id is None or _value(step, _STEP_ID) == step_id:
            setattr(step, _STEP_STATUS, status)
            touched = True
    return touched


def _find_sql(
    queries: Sequence[Query], called_ae: str | None, dialect: SQLDialect
) -> tuple[str, list[Any]]:
    """The SELECT of the stored entries every query can match (narrowed, never more)."""
    params: list[Any] = []
    mark = dialect.mark
    clauses = [f"(e.called_ae IS NULL OR e.called_ae = {mark})"] if called_ae is not None else []
    if called_ae is not None:
        params.append(called_ae)
    for query in queries:
        for condition in query.matching_keys:
            clause = _narrowing(condition, params, dialect)
            if clause is not None:
                clauses.append(clause)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return f"SELECT e.data FROM worklist_entries e{where} ORDER BY e.pk", params


def _narrowing(condition: KeyCondition, params: list[Any], dialect: SQLDialect) -> str | None:
    """SQL keeping every entry ``condition`` can match (None: the matcher decides)."""
    if condition.tag == STEP_SEQUENCE and condition.kind is MatchKind.SEQUENCE:
        parts = []
        for item in condition.items:
            column = _STEP_COLUMNS.get(item.tag)
            if column is None or column not in _NARROWED:
                continue
            clause = _condition_sql(item, f"s.{column}", column, params, dialect)
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
    return _condition_sql(condition, f"e.{column}", column, params, dialect)


def _matching(rows: Iterable[Sequence[Any]], queries: Sequence[Query]) -> list[Dataset]:
    """The stored entries of ``rows`` (``(data,)`` each) that every query matches."""
    matched = []
    for (stored,) in rows:
        try:
            candidate = decode_entry(bytes(stored))
            if all(query.matches(candidate) for query in queries):
                matched.append(candidate)
        except Exception as exc:  # one damaged entry must not fail every query
            log.warning("worklist entry left out of a query: cannot decode it: %s", exc)
    return matched


class WatchedDirectory:
    """A folder of worklist files kept in step with a store by polling modification times.

    Files directly in ``root`` are served to every called AE title; files in a sub-folder
    are served to queries addressed to the sub-folder's name (``wlmscpfs``'s
    ``DIR/<AE>/*.wl``; its ``lockfile`` and other names are ignored). :meth:`refresh`
    rescans when ``poll_interval`` seconds have passed since the last scan (0: always).
    A file that cannot be read is logged once (until it changes) and left out.
    """

    def __init__(self, store: WorklistStore, root: str | Path, poll_interval: float = 2.0) -> None:
        self.store = store
        self.root = Path(root)
        self.poll_interval = poll_interval
        self._scanned = -float("inf")
        self._lock = threading.Lock()
        self._unreadable: dict[str, tuple[int, int]] = {}
        self._unlisted = False

    def refresh(self, *, force: bool = False) -> tuple[int, int]:
        """Rescan if due: (files read, files forgotten)."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._scanned < self.poll_interval:
                return 0, 0
            result = self._scan()
            self._scanned = time.monotonic()
            return result

    def _listing(self) -> tuple[list[tuple[Path, str | None]], list[str]] | None:
        """(worklist files with their called AE, folders that could not be read), or None
        when the directory itself cannot be read (its entries are then kept as they are)."""
        try:
            top = list(os.scandir(self.root))
        except OSError as exc:
            if not self._unlisted:  # once, not at every poll
                log.warning("cannot read the worklist directory %s: %s", self.root, exc)
            self._unlisted = True
            return None
        self._unlisted = False
        files: list[tuple[Path, str | None]] = []
        unreadable: list[str] = []
        for item in top:
            if item.is_dir(follow_symlinks=True):
                try:
                    inner = list(os.scandir(item.path))
                except OSError as exc:
                    log.warning("cannot read the worklist folder %s: %s", item.path, exc)
                    unreadable.append(item.path + os.sep)
                    continue
                files += [(Path(c.path), item.name) for c in inner if _is_worklist_file(c)]
            elif _is_worklist_file(item):
                files.append((Path(item.path), None))
        return files, unreadable

    def _scan(self) -> tuple[int, int]:
        listing = self._listing()
        if listing is None:
            return 0, 0
        files, unreadable = listing
        known = self.store.file_states()
        seen: set[str] = set()
        read = 0
        batch: list[WatchedFile] = []
        for path, called_ae in files:
            name = str(path)
            try:
                info = path.stat()
            except OSError:
                continue  # removed while listing
            stat = (info.st_mtime_ns, info.st_size)
            seen.add(name)
            if known.get(name) == stat or self._unreadable.get(name) == stat:
                continue
            try:
                dataset, data = read_watched_file(path)
            except DataSetError as exc:
                self._unreadable[name] = stat
                log.warning("worklist file left out: %s", exc)
                if name in known:
                    self.store.forget_files([name])
                continue
            self._unreadable.pop(name, None)
            batch.append(WatchedFile(name, stat, called_ae, dataset, data))
            read += 1
            if len(batch) >= _BATCH:
                self.store.replace_files(batch)
                batch = []
        self.store.replace_files(batch)
        gone = [
            name
            for name in known
            if name not in seen and not any(name.startswith(u) for u in unreadable)
        ]
        self.store.forget_files(gone)
        for name in list(self._unreadable):
            if name not in seen:
                del self._unreadable[name]
        if read or gone:
            log.info("worklist directory %s: %d files read, %d gone", self.root, read, len(gone))
        return read, len(gone)


def _is_worklist_file(entry: os.DirEntry[str]) -> bool:
    return entry.name.lower().endswith(FILE_SUFFIXES) and entry.is_file(follow_symlinks=True)
