"""The instance index behind Query/Retrieve: PS3.4 C.6.1 / C.6.2 (Patient Root, Study Root).

Four levels — PATIENT, STUDY, SERIES, IMAGE — each a table with indexed columns for the
keys a C-FIND names most (PS3.4 Tables C.6-1 to C.6-4 and C.6-5 to C.6-8: the unique and
required keys, and the common optional ones) and, per instance, its header as DICOM JSON
(PS3.18 F.2, pydicom's ``to_json``; no pixel data) from which every other requested key is
answered. Derived keys (number of related series and instances, modalities in study) are
counted from the tables.

A query is answered in two steps: the key conditions that an indexed column can express
(single value, UID list, wild card, range, empty value) narrow the rows in SQL; then the
compiled query of :mod:`dicomwire.services.matching` — the reference implementation of
PS3.4 C.2.2.2 — decides on each candidate. SQL only ever narrows, so a backend whose SQL is
coarser (or a key with no column) answers the same matches, only slower.

:class:`SQLiteIndex` is the embedded default (WAL, one writer at a time). The interface
(:class:`Index`) keeps backend SQL out of the services.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataSetError, InvalidQueryError
from .matching import KeyCondition, MatchKind, Query, compile_query, name_key, period

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = ["LEVELS", "Index", "IndexedInstance", "SQLiteIndex", "rebuild"]

#: Query/Retrieve levels, top down (PS3.4 C.6.1.1 / C.6.2.1).
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")

#: Indexed keys per level: tag -> column (PS3.4 C.6.1.1.2-C.6.1.1.5 and C.6.2.1.2-C.6.2.1.4).
_COLUMNS: dict[str, dict[int, str]] = {
    "PATIENT": {
        0x00100010: "patient_name",
        0x00100020: "patient_id",
        0x00100021: "issuer_of_patient_id",
        0x00100030: "patient_birth_date",
        0x00100040: "patient_sex",
    },
    "STUDY": {
        0x0020000D: "study_instance_uid",
        0x00080020: "study_date",
        0x00080030: "study_time",
        0x00080050: "accession_number",
        0x00200010: "study_id",
        0x00081030: "study_description",
        0x00080090: "referring_physician_name",
    },
    "SERIES": {
        0x0020000E: "series_instance_uid",
        0x00080060: "modality",
        0x00200011: "series_number",
        0x0008103E: "series_description",
    },
    "IMAGE": {
        0x00080018: "sop_instance_uid",
        0x00080016: "sop_class_uid",
        0x00200013: "instance_number",
    },
}
_UNIQUE = {"STUDY": 0x0020000D, "SERIES": 0x0020000E, "IMAGE": 0x00080018}
_TABLE = {"PATIENT": "patient", "STUDY": "study", "SERIES": "series", "IMAGE": "instance"}
_PARENT = {"STUDY": "patient", "SERIES": "study", "IMAGE": "series"}
_PN_COLUMNS = {"patient_name", "referring_physician_name"}
_TIME_COLUMNS = {"study_time"}
#: Values larger than this are left out of the stored header (pixel data, big blobs).
_BULK_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class IndexedInstance:
    """What a retrieve needs of one instance: where it is and what it is."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: Path
    size: int


class Index:
    """What the Query/Retrieve service asks of an index (backends implement it)."""

    def add(self, header: Dataset, path: Path, transfer_syntax: str, size: int) -> None:
        """Index one stored instance (replacing an entry with its SOP Instance UID)."""
        raise NotImplementedError

    def remove(self, sop_instance_uid: str) -> bool:
        """Forget one instance (and its series, study, patient once empty)."""
        raise NotImplementedError

    def find(self, level: str, identifier: Dataset) -> Iterator[Dataset]:
        """The entities at ``level`` matching ``identifier``, streamed (hierarchical)."""
        raise NotImplementedError

    def instances(self, level: str, identifier: Dataset) -> Iterator[IndexedInstance]:
        """The instances below the matching entities at ``level`` (for C-MOVE and C-GET)."""
        raise NotImplementedError

    def count(self) -> int:
        """How many instances are indexed."""
        raise NotImplementedError


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    text = str(value).strip(" \x00")
    return text or None


def _column_value(column: str, value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    if column in _PN_COLUMNS:
        return name_key(text)  # PN compared case-insensitively, as the matcher does
    if column in _TIME_COLUMNS:
        start = period(text, "TM")  # fixed-width digits: text order is time order
        return start[0] if start is not None else None
    return text


class SQLiteIndex(Index):
    """The embedded index: one SQLite file (or ``":memory:"``), WAL, one writer at a time."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._create()

    def close(self) -> None:
        self._db.close()

    def _create(self) -> None:
        statements = []
        for level in LEVELS:
            table = _TABLE[level]
            columns = [f"{name} TEXT" for name in _COLUMNS[level].values()]
            parent = _PARENT.get(level)
            if parent is not None:
                columns.append(f"{parent}_pk INTEGER NOT NULL REFERENCES {parent}(pk)")
            if level == "IMAGE":
                columns += ["transfer_syntax TEXT", "path TEXT", "size INTEGER", "header TEXT"]
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {table} (pk INTEGER PRIMARY KEY, {', '.join(columns)})"
            )
            for name in _COLUMNS[level].values():
                statements.append(f"CREATE INDEX IF NOT EXISTS {table}_{name} ON {table}({name})")
            if parent is not None:
                statements.append(
                    f"CREATE INDEX IF NOT EXISTS {table}_{parent} ON {table}({parent}_pk)"
                )
        for level, tag in _UNIQUE.items():
            table, column = _TABLE[level], _COLUMNS[level][tag]
            statements.append(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_unique ON {table}({column})"
            )
        statements.append(
            "CREATE UNIQUE INDEX IF NOT EXISTS patient_unique "
            "ON patient(patient_id, IFNULL(issuer_of_patient_id, ''))"
        )
        with self._lock:
            for statement in statements:
                self._db.execute(statement)

    # -- writing ------------------------------------------------------------------------

    def add(self, header: Dataset, path: Path, transfer_syntax: str, size: int) -> None:
        values = {
            level: {
                column: _column_value(column, header.get(tag).value if tag in header else None)
                for tag, column in _COLUMNS[level].items()
            }
            for level in LEVELS
        }
        for level, tag in _UNIQUE.items():
            if not values[level][_COLUMNS[level][tag]]:
                name = _COLUMNS[level][tag]
                raise DataSetError(f"cannot index an instance without {name}")
        stored = _header_json(header)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                self._delete(values["IMAGE"]["sop_instance_uid"] or "")
                patient = self._upsert(
                    "PATIENT", values["PATIENT"], None, ("patient_id", "issuer_of_patient_id")
                )
                study = self._upsert("STUDY", values["STUDY"], patient, ("study_instance_uid",))
                series = self._upsert("SERIES", values["SERIES"], study, ("series_instance_uid",))
                row = {
                    **values["IMAGE"],
                    "series_pk": series,
                    "transfer_syntax": transfer_syntax,
                    "path": str(path),
                    "size": size,
                    "header": stored,
                }
                names = ", ".join(row)
                marks = ", ".join("?" for _ in row)
                db.execute(f"INSERT INTO instance ({names}) VALUES ({marks})", tuple(row.values()))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _upsert(
        self, level: str, values: dict[str, str | None], parent: int | None, keys: Sequence[str]
    ) -> int:
        table = _TABLE[level]
        where = " AND ".join(f"IFNULL({k}, '') = ?" for k in keys)
        found = self._db.execute(
            f"SELECT pk FROM {table} WHERE {where}", tuple(values[k] or "" for k in keys)
        ).fetchone()
        row: dict[str, Any] = dict(values)
        if parent is not None:
            row[f"{_PARENT[level]}_pk"] = parent
        if found is not None:  # the newest instance's values describe the entity
            assignments = ", ".join(f"{k} = ?" for k in row)
            self._db.execute(
                f"UPDATE {table} SET {assignments} WHERE pk = ?", (*row.values(), found[0])
            )
            return int(found[0])
        names = ", ".join(row)
        cursor = self._db.execute(
            f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in row)})",
            tuple(row.values()),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def remove(self, sop_instance_uid: str) -> bool:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                removed = self._delete(sop_instance_uid)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return removed

    def _delete(self, sop_instance_uid: str) -> bool:
        db = self._db
        row = db.execute(
            "SELECT instance.pk, series_pk, study_pk, patient_pk FROM instance "
            "JOIN series ON series.pk = series_pk JOIN study ON study.pk = study_pk "
            "WHERE sop_instance_uid = ?",
            (sop_instance_uid,),
        ).fetchone()
        if row is None:
            return False
        db.execute("DELETE FROM instance WHERE pk = ?", (row[0],))
        for table, child, pk in (
            ("series", "instance", row[1]),
            ("study", "series", row[2]),
            ("patient", "study", row[3]),
        ):
            if db.execute(f"SELECT 1 FROM {child} WHERE {table}_pk = ? LIMIT 1", (pk,)).fetchone():
                break
            db.execute(f"DELETE FROM {table} WHERE pk = ?", (pk,))
        return True

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM instance").fetchone()[0])

    # -- reading ------------------------------------------------------------------------

    def find(self, level: str, identifier: Dataset) -> Iterator[Dataset]:
        query = compile_query(identifier)
        wanted = {int(element.tag) for element in identifier}
        for pk, candidate in self._candidates(level, query):
            self._derive(level, pk, wanted, candidate)
            if query.matches(candidate):
                yield _answer(candidate, query, level)

    def instances(self, level: str, identifier: Dataset) -> Iterator[IndexedInstance]:
        query = compile_query(identifier)
        below, column = _BELOW[level]
        for pk, candidate in self._candidates(level, query):
            if not query.matches(candidate):
                continue
            rows = self._db.execute(
                "SELECT ii.sop_instance_uid, ii.sop_class_uid, ii.transfer_syntax, ii.path, "
                f"ii.size {below} WHERE {column} = ? ORDER BY ii.pk",
                (pk,),
            ).fetchall()
            for row in rows:
                yield IndexedInstance(row[0], row[1], row[2], Path(row[3]), int(row[4]))

    def _candidates(self, level: str, query: Query) -> Iterator[tuple[int, Dataset]]:
        """(pk, header) of each entity at ``level`` that the SQL part of ``query`` lets by."""
        if level not in _FROM:
            raise InvalidQueryError(f"unknown Query/Retrieve level {level!r}")
        clauses: list[str] = []
        params: list[Any] = []
        depth = LEVELS.index(level)
        for condition in query.matching_keys:
            found = _COLUMN_OF.get(condition.tag)
            if found is None or LEVELS.index(found[0]) > depth:
                continue  # no column, or a key below the level: the matcher decides
            clause = _condition_sql(condition, f"{_ALIAS[found[0]]}.{found[1]}", found[1], params)
            if clause is not None:
                clauses.append(clause)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        alias = _ALIAS[level]
        below, column = _BELOW[level]
        header = (
            "i.header"
            if level == "IMAGE"
            else f"(SELECT ii.header {below} WHERE {column} = {alias}.pk "
            "ORDER BY ii.pk DESC LIMIT 1)"
        )
        cursor = self._db.execute(
            f"SELECT {alias}.pk, {header} {_FROM[level]}{where} ORDER BY {alias}.pk", params
        )
        while True:  # streamed: a large result is never all in memory
            rows = cursor.fetchmany(256)
            if not rows:
                return
            for pk, stored in rows:
                yield int(pk), _dataset(stored)

    def _derive(self, level: str, pk: int, wanted: set[int], candidate: Dataset) -> None:
        """Derived keys (PS3.4 C.6.1.1.x, C.6.2.1.x): counts and modalities, when asked for."""
        below, column = _BELOW[level]
        for tag, (keyword, levels, expression) in _DERIVED.items():
            if tag not in wanted or level not in levels:
                continue
            (value,) = self._db.execute(
                f"SELECT {expression} {below} WHERE {column} = ?", (pk,)
            ).fetchone()
            if keyword == "ModalitiesInStudy":
                value = sorted({v for v in (value or "").split(",") if v})
            setattr(candidate, keyword, value)


#: Each level joined up to the patient (aliases p, s, se, i): what a query filters.
_FROM = {
    "PATIENT": "FROM patient p",
    "STUDY": "FROM study s JOIN patient p ON p.pk = s.patient_pk",
    "SERIES": (
        "FROM series se JOIN study s ON s.pk = se.study_pk JOIN patient p ON p.pk = s.patient_pk"
    ),
    "IMAGE": (
        "FROM instance i JOIN series se ON se.pk = i.series_pk "
        "JOIN study s ON s.pk = se.study_pk JOIN patient p ON p.pk = s.patient_pk"
    ),
}
_ALIAS = {"PATIENT": "p", "STUDY": "s", "SERIES": "se", "IMAGE": "i"}
#: The instances below an entity of each level (aliases ii, sse, ss) and the column that
#: names the entity.
_BELOW = {
    "PATIENT": (
        "FROM instance ii JOIN series sse ON sse.pk = ii.series_pk "
        "JOIN study ss ON ss.pk = sse.study_pk",
        "ss.patient_pk",
    ),
    "STUDY": ("FROM instance ii JOIN series sse ON sse.pk = ii.series_pk", "sse.study_pk"),
    "SERIES": ("FROM instance ii JOIN series sse ON sse.pk = ii.series_pk", "ii.series_pk"),
    "IMAGE": ("FROM instance ii JOIN series sse ON sse.pk = ii.series_pk", "ii.pk"),
}
_COLUMN_OF: dict[int, tuple[str, str]] = {
    tag: (level, column) for level, columns in _COLUMNS.items() for tag, column in columns.items()
}
#: Derived keys: tag -> (keyword, levels, SQL over the instances below the entity).
_DERIVED: dict[int, tuple[str, tuple[str, ...], str]] = {
    0x00201200: ("NumberOfPatientRelatedStudies", ("PATIENT",), "COUNT(DISTINCT ss.pk)"),
    0x00201202: ("NumberOfPatientRelatedSeries", ("PATIENT",), "COUNT(DISTINCT sse.pk)"),
    0x00201204: ("NumberOfPatientRelatedInstances", ("PATIENT",), "COUNT(*)"),
    0x00201206: ("NumberOfStudyRelatedSeries", ("STUDY",), "COUNT(DISTINCT sse.pk)"),
    0x00201208: ("NumberOfStudyRelatedInstances", ("STUDY",), "COUNT(*)"),
    0x00201209: ("NumberOfSeriesRelatedInstances", ("SERIES",), "COUNT(*)"),
    0x00080061: ("ModalitiesInStudy", ("STUDY",), "GROUP_CONCAT(DISTINCT sse.modality)"),
}


def _condition_sql(
    condition: KeyCondition, column: str, name: str, params: list[Any]
) -> str | None:
    """A WHERE clause that keeps every row the condition can match (None: no narrowing).

    A multi-valued stored value (with a backslash) is always kept: the matcher decides.
    """
    kind = condition.kind
    keep_multi = f"instr(IFNULL({column}, ''), '\\') > 0"
    if kind is MatchKind.EMPTY:
        return f"({column} IS NULL OR {keep_multi})"
    if kind is MatchKind.UID_LIST or (kind is MatchKind.SINGLE and condition.vr == "UI"):
        params.extend(condition.values)
        return f"{column} IN ({', '.join('?' for _ in condition.values)})"
    if kind is MatchKind.WILDCARD:
        (pattern,) = condition.values
        if name in _PN_COLUMNS:
            pattern = pattern.casefold()  # as the matcher compiles it; stored names are folded
        elif condition.case_insensitive:
            return None
        params.append(pattern.replace("[", "[[]"))
        return f"({column} GLOB ? OR {keep_multi})"
    if kind is MatchKind.RANGE or (kind is MatchKind.SINGLE and condition.vr in ("DA", "TM")):
        if condition.vr not in ("DA", "TM"):
            return None  # DT: offsets make text order unsafe; the matcher decides
        low = condition.low if kind is MatchKind.RANGE else condition.values[0]
        high = condition.high if kind is MatchKind.RANGE else condition.values[0]
        parts = []
        first = period(low, condition.vr) if low else None
        last = period(high, condition.vr) if high else None
        if first is not None:
            params.append(first[0])
            parts.append(f"{column} >= ?")
        if last is not None:
            params.append(last[1])
            parts.append(f"{column} <= ?")
        if not parts:
            return None
        return f"(({' AND '.join(parts)}) OR {keep_multi})"
    if kind is MatchKind.SINGLE:
        (value,) = condition.values
        if name in _PN_COLUMNS:
            value = value.casefold()
        elif condition.vr in ("DT",) or name in _TIME_COLUMNS:
            return None
        params.append(value)
        return f"({column} = ? OR {keep_multi})"
    return None


def _header_json(header: Dataset) -> str:
    """The header as DICOM JSON (PS3.18 F.2) without pixel data and other large values."""
    return json.dumps(
        header.to_json_dict(bulk_data_threshold=_BULK_LIMIT, bulk_data_element_handler=_drop)
    )


def _drop(element: Any) -> str:
    return ""  # a BulkDataURI nobody resolves: large values are not kept in the index


def _dataset(stored: str | None) -> Dataset:
    from pydicom import Dataset

    return Dataset.from_json(stored) if stored else Dataset()


def _answer(candidate: Dataset, query: Query, level: str) -> Dataset:
    """A C-FIND response identifier: every requested key, zero length when absent."""
    from pydicom import Dataset
    from pydicom.datadict import dictionary_VR

    answer = Dataset()
    if "SpecificCharacterSet" in candidate:
        answer.SpecificCharacterSet = candidate.SpecificCharacterSet
    answer.QueryRetrieveLevel = level
    for key in query.keys:
        if key.tag in candidate:
            answer[key.tag] = candidate[key.tag]
        else:
            answer.add_new(key.tag, key.vr or dictionary_VR(key.tag), None)
    return answer


def rebuild(index: Index, root: Path) -> tuple[int, list[tuple[Path, str]]]:
    """Index every Part 10 file under ``root`` (``.incoming`` left out): (count, failures).

    What ``dicomwire index rebuild DIR`` runs after a crash or a copy of files by hand;
    each file's header is read up to the pixel data, never the pixels.
    """
    from pydicom import dcmread

    added = 0
    failures: list[tuple[Path, str]] = []
    for path in sorted(root.rglob("*.dcm")):
        if ".incoming" in path.relative_to(root).parts:
            continue
        try:
            header = dcmread(path, stop_before_pixels=True)
            syntax = str(header.file_meta.TransferSyntaxUID)
            index.add(header, path, syntax, path.stat().st_size)
            added += 1
        except Exception as exc:  # one unreadable file must not stop the others
            failures.append((path, f"{type(exc).__name__}: {exc}"))
    return added, failures
