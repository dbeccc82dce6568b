"""The instance index behind Query/Retrieve: PS3.4 C.6.1 / C.6.2 (Patient Root, Study Root).

Four levels — PATIENT, STUDY, SERIES, IMAGE — each a table with indexed columns for the
keys a C-FIND names most (PS3.4 Tables C.6-1 to C.6-4 and C.6-5 to C.6-8: the unique and
required keys, and the common optional ones) and, per instance, its encoded header (the
top-level elements before Pixel Data, as received, bulk values left out) from which every
other requested key is answered. Derived keys (number of related series and instances,
modalities in study) are counted from the tables.

A query is answered in two steps: the key conditions that an indexed column can express
(single value, UID list, wild card, range, empty value) narrow the rows in SQL; then the
compiled query of :mod:`dicomwire.services.matching` — the reference implementation of
PS3.4 C.2.2.2 — decides on each candidate. SQL only ever narrows, so a backend whose SQL is
coarser (or a key with no column) answers the same matches, only slower.

Adding a received instance is crash-consistent with its file (docs/node.md): the storage
SCP prepares it (:meth:`Index.prepare_add`: the row and an intent naming the file's
identity, durable before the file's rename), makes the file visible, then confirms it
(:meth:`Index.commit_add`, which checks that the file at the path is the one prepared).
:meth:`Index.reconcile` — run at start-up, before anyone writes — checks each intent left
against the files: a row stays if its file is in place, else it is made to describe the
file that is there (an overwrite's earlier copy) or removed, so a crash at any step leaves
no file without a row and no row without a file.

:class:`SQLiteIndex` is the embedded default (WAL, one writer at a time), opened on first
use. The interface (:class:`Index`) keeps backend SQL out of the services.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import DataSetError, IndexUnavailableError, InvalidQueryError
from ..uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)
from .completeness import BULK_LIMIT, CompletenessCheck
from .elements import LONG_VRS, UNDEFINED_LENGTH
from .matching import KeyCondition, MatchKind, Query, compile_query, name_key, period

if TYPE_CHECKING:
    from pydicom import Dataset

    from .storage.backend import StorageBackend

__all__ = [
    "LEVELS",
    "Index",
    "IndexEntry",
    "IndexedInstance",
    "Reconciled",
    "SQLiteIndex",
    "entry_from_dataset",
    "entry_from_file",
    "entry_from_head",
    "entry_from_walk",
    "INDEXED_TAGS",
    "text_value",
    "rebuild",
]

log = logging.getLogger("dicomwire.services.index")

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
_BULK_LIMIT = BULK_LIMIT

#: The VRs whose large values are left out of the stored header (PS3.5 Table 6.2-1).
_BINARY_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"UN"))
_PIXEL_DATA = 0x7FE00010
_SPECIFIC_CHARACTER_SET = 0x00080005
_ITEM, _ITEM_DELIMITER, _SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_TAG_LENGTH = struct.Struct("<HHL")  # group, element, 32-bit length (Implicit VR, items)
_TAG_VR_LENGTH = struct.Struct("<HH2sH")  # group, element, VR, 16-bit length (Explicit VR)
_UINT32 = struct.Struct("<L")


@dataclass(frozen=True, slots=True)
class IndexedInstance:
    """What a retrieve needs of one instance: where it is and what it is."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One instance as the index keeps it: its key columns per level and its header.

    ``header`` is the data set's top-level elements before Pixel Data, encoded as received
    (Implicit VR Little Endian when ``implicit``, else Explicit VR Little Endian), with
    binary values over 1 KiB left out: what a C-FIND answers any other key from.
    """

    values: dict[str, dict[str, str | None]]
    header: bytes
    implicit: bool

    @property
    def sop_instance_uid(self) -> str:
        return self.values["IMAGE"]["sop_instance_uid"] or ""


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What :meth:`Index.reconcile` did with the intents a crash left."""

    completed: int = 0
    dropped: int = 0
    rows_removed: int = 0


class Index:
    """What the storage and Query/Retrieve services ask of an index (backends implement it).

    Writing a received instance takes three calls around the file's rename (see the
    module docstring): :meth:`prepare_add` before, :meth:`commit_add` after, or
    :meth:`cancel_add` when the file could not be placed. Backend failures raise
    :class:`~dicomwire.errors.IndexUnavailableError`.
    """

    #: Where the index lives, for messages: a file, ``":memory:"``, a URL (no password).
    path: str | Path = ""
    _backend: StorageBackend | None = None
    #: Whether :meth:`_prepare` looks up the earlier copy of ``find_replaced`` itself.
    _finds_replaced = False

    @property
    def backend(self) -> StorageBackend:
        """Where the indexed files are (:mod:`.storage.backend`): intents and reconcile
        check and remove files through it. The local filesystem unless set."""
        if self._backend is None:
            self._backend = _local_storage()
        return self._backend

    @backend.setter
    def backend(self, backend: StorageBackend) -> None:
        self._backend = backend

    def open(self) -> None:
        """Connect and create the schema now (it is otherwise done on first use)."""

    def close(self) -> None:
        """Release the connections (the index reopens on next use)."""

    def add(self, header: Dataset, path: Path, transfer_syntax: str, size: int) -> None:
        """Index one stored instance (replacing an entry with its SOP Instance UID)."""
        self.add_entry(entry_from_dataset(header), path, transfer_syntax, size)

    def add_entry(self, entry: IndexEntry, path: Path, transfer_syntax: str, size: int) -> None:
        """Index one instance from its :class:`IndexEntry` (replacing one with its UID)."""
        raise NotImplementedError

    def prepare_add(
        self,
        entry: IndexEntry,
        path: Path,
        transfer_syntax: str,
        size: int,
        *,
        staged: Path,
        replaces: Path | None = None,
        durable: bool = True,
        find_replaced: bool = False,
    ) -> int:
        """Record the intent to place ``staged`` at ``path``; return its token.

        The file's identity (device, inode, size) is recorded: a rename keeps it, so
        :meth:`commit_add` and :meth:`reconcile` can tell whether ``path`` now holds this
        file. ``replaces`` is the file of an earlier copy of the instance stored under
        another path (removed once this one is visible). ``durable``: the intent is on
        stable storage when this returns (needed before the rename when files are fsync'd).
        ``find_replaced``: the caller did not look the instance up; the index finds the
        earlier copy under another path itself (:class:`SQLiteIndex` in the transaction
        that replaces its row, saving the separate lookup).
        A backend may write the instance's row here already, with the intent, in one
        transaction (:class:`SQLiteIndex` does: the row is then visible a moment before
        its file is, and :meth:`reconcile` corrects it if the file never comes).
        """
        identity = self.backend.identity(staged)
        if identity is None:
            raise IndexUnavailableError(f"cannot prepare {path}: {staged} is gone")
        if find_replaced and replaces is None and not self._finds_replaced:
            previous = self.locate(entry.sop_instance_uid)
            if previous is not None and str(previous) != str(path):
                replaces = previous
        intent = _Intent(
            entry,
            str(path),
            str(replaces) if replaces is not None else None,
            identity,
            transfer_syntax,
            size,
            find_replaced and replaces is None,
        )
        return self._prepare(intent, durable)

    def _prepare(self, intent: _Intent, durable: bool) -> int:
        """Record ``intent`` (:meth:`prepare_add` checked its file); return its token."""
        raise NotImplementedError

    def commit_add(self, token: int) -> bool:
        """Settle the intent: the instance's row describes the prepared file, if ``path``
        holds it (once this returns, a restart finds the row).

        False when another copy of the instance was renamed over it meanwhile (that
        writer's own commit describes the file); the intent is settled either way.
        """
        raise NotImplementedError

    def cancel_add(self, token: int) -> None:
        """Forget the intent (its file was not placed): the row describes the file that
        is at its path (or the earlier copy's), or goes."""
        raise NotImplementedError

    def reconcile(self) -> Reconciled:
        """Settle the intents a crash left: run at start-up, while nobody else writes."""
        raise NotImplementedError

    def locate(self, sop_instance_uid: str) -> Path | None:
        """The file of the indexed instance ``sop_instance_uid`` (None if not indexed)."""
        raise NotImplementedError

    def remove(self, sop_instance_uid: str) -> bool:
        """Forget one instance (and its series, study, patient once empty)."""
        raise NotImplementedError

    def paths(self) -> Iterator[tuple[str, Path]]:
        """(SOP Instance UID, path) of every indexed instance."""
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

    def stats(self) -> dict[str, int]:
        """Rows per level (patients, studies, series, instances) and pending intents."""
        raise NotImplementedError


# --------------------------------------------------------------------------- entries


def _element_at(data: bytes, position: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, VR, value start, length) of the element at ``position`` (PS3.5 §7.1, §7.5).

    IndexError when its header runs past ``data`` (the caller reads further, or fails).
    """
    if position + 8 > len(data):
        raise IndexError(position)
    if implicit:
        group, number, length = _TAG_LENGTH.unpack_from(data, position)
        return group << 16 | number, None, position + 8, length
    group, number, vr, length = _TAG_VR_LENGTH.unpack_from(data, position)
    if group == 0xFFFE:  # items and delimiters: a 4-byte length, no VR
        (length,) = _UINT32.unpack_from(data, position + 4)
        return group << 16 | number, None, position + 8, length
    if vr in LONG_VRS:
        if position + 12 > len(data):
            raise IndexError(position)
        (length,) = _UINT32.unpack_from(data, position + 8)
        return group << 16 | number, vr, position + 12, length
    return group << 16 | number, vr, position + 8, length


def _skip_undefined(data: bytes, position: int, implicit: bool) -> int:
    """The offset after a value of undefined length starting at ``position`` (its items,
    then the Sequence Delimitation Item); IndexError when cut, DataSetError when broken."""
    while True:
        tag, _, start, length = _element_at(data, position, True)  # FFFE tags: no VR
        if tag == _SEQUENCE_DELIMITER:
            return start
        if tag != _ITEM:
            raise DataSetError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) where an item was expected")
        if length != UNDEFINED_LENGTH:
            position = start + length
            continue
        position = start  # an item of undefined length: a nested data set up to E00D
        while True:
            tag, vr, start, length = _element_at(data, position, implicit)
            if tag == _ITEM_DELIMITER:
                position = start
                break
            if length == UNDEFINED_LENGTH:
                position = _skip_undefined(data, start, implicit or vr == b"UN")
            else:
                position = start + length
            if position > len(data):
                raise IndexError(position)


def _scan(data: bytes, implicit: bool) -> tuple[bytes, dict[int, bytes]]:
    """The header to keep and the raw values of the column keys, from a data set's start.

    Walks the top-level elements up to Pixel Data, dropping binary values over
    :data:`_BULK_LIMIT`. IndexError when ``data`` ends before the header does. (The
    element header is read inline, as in :func:`_element_at`: this runs per stored
    instance.)
    """
    values: dict[int, bytes] = {}
    parts: list[bytes] = []
    kept_from = position = 0
    end = len(data)
    wanted = _SCANNED
    read_implicit, read_explicit = _TAG_LENGTH.unpack_from, _TAG_VR_LENGTH.unpack_from
    vr: bytes | None = None
    while position < end:
        start = position + 8
        if start > end:
            raise IndexError(position)
        if implicit:
            group, number, length = read_implicit(data, position)
        else:
            group, number, vr, length = read_explicit(data, position)
            if group == 0xFFFE:
                vr = None
                (length,) = _UINT32.unpack_from(data, position + 4)
            elif vr in LONG_VRS:
                start += 4
                if start > end:
                    raise IndexError(position)
                (length,) = _UINT32.unpack_from(data, position + 8)
        tag = group << 16 | number
        if tag >= _PIXEL_DATA:
            break
        if length == UNDEFINED_LENGTH:
            following = _skip_undefined(data, start, implicit or vr == b"UN")
        else:
            following = start + length
            if following > end:
                raise IndexError(following)
            if tag in wanted:
                values[tag] = data[start:following]
            elif length > _BULK_LIMIT and _binary(tag, vr):
                parts.append(data[kept_from:position])
                kept_from = following
        position = following
    parts.append(data[kept_from:position])
    return (parts[0] if len(parts) == 1 else b"".join(parts)), values


def _binary(tag: int, vr: bytes | None) -> bool:
    if vr is not None:
        return vr in _BINARY_VRS
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag).encode() in _BINARY_VRS
    except KeyError:  # private or unknown: its bytes are opaque
        return True


def _entry(header: bytes, values: dict[int, bytes], implicit: bool) -> IndexEntry:
    """The entry of a scanned header: column values decoded with its character set."""
    encodings: list[str] | None = None
    columns: dict[str, dict[str, str | None]] = {}
    get = values.get
    for level, plan in _ENTRY_PLAN:
        row: dict[str, str | None] = {}
        for tag, column, normalised in plan:
            raw = get(tag)
            if raw is None:
                row[column] = None
                continue
            if raw.isascii():
                text = raw.decode("ascii").strip(" \x00")
                if not normalised or not text:
                    row[column] = text or None  # the usual case: UIDs, codes, numbers
                    continue
            else:
                if encodings is None:
                    encodings = _encodings(get(_SPECIFIC_CHARACTER_SET))
                text = _decode(raw, column, encodings)
            row[column] = _column_value(column, text)
        columns[level] = row
    for level, name in _UNIQUE_COLUMNS:
        if not columns[level][name]:
            raise DataSetError(f"cannot index an instance without {name}")
    return IndexEntry(columns, header, implicit)


def _encodings(charset: bytes | None) -> list[str]:
    from pydicom.charset import convert_encodings

    terms = (charset or b"").decode("ascii", "replace").strip(" \x00").split("\\")
    return list(convert_encodings([t.strip() for t in terms] if any(terms) else []))


def _decode(raw: bytes, column: str, encodings: list[str]) -> str:
    """A non-ASCII text value decoded as pydicom would (ISO 2022 escapes included)."""
    from pydicom.values import convert_PN, convert_text

    value: Any = (
        convert_PN(raw, encodings) if column in _PN_COLUMNS else convert_text(raw, encodings)
    )
    if isinstance(value, str) or not isinstance(value, Sequence):
        return str(value)
    return "\\".join(str(v) for v in value)


def entry_from_head(head: bytes, transfer_syntax: str, *, whole: bool) -> IndexEntry | None:
    """The entry of a data set from its first bytes ``head`` (``whole``: all of it).

    None when the bytes do not suffice — the header runs past them, or a transfer syntax
    the scanner leaves to pydicom (deflated, big endian): read the file then
    (:func:`entry_from_file`). DataSetError when the data set cannot be indexed.
    """
    if transfer_syntax in (DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN):
        return None
    implicit = transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN
    try:
        header, values = _scan(head, implicit)
    except IndexError:
        if whole:
            raise DataSetError("cannot index: the data set ends inside its header") from None
        return None
    except (DataSetError, struct.error):
        return None  # something unusual: pydicom reads the file and decides
    return _entry(header, values, implicit)


def entry_from_walk(
    head: bytes, walk: CompletenessCheck, transfer_syntax: str
) -> IndexEntry | None:
    """The entry of a received data set from the walk that checked it as it streamed in.

    ``walk`` captured :data:`INDEXED_TAGS` and noted the layout (where the header ends,
    its large values); ``head`` is the data set's first bytes. The header kept is cut from
    ``head`` as :func:`entry_from_head` would, with no second walk. None when the header
    runs past ``head``, or the transfer syntax is one the scanner leaves to pydicom.
    """
    if transfer_syntax in (DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN):
        return None
    end = walk.header_end if walk.header_end is not None else walk.length
    if end > len(head) or walk.bulk is None:
        return None
    parts: list[bytes] = []
    kept_from = 0
    for start, following, tag, vr in walk.bulk:
        if start >= end:
            break
        if _binary(tag, vr):
            parts.append(head[kept_from:start])
            kept_from = following
    header = head[kept_from:end] if not parts else b"".join((*parts, head[kept_from:end]))
    return _entry(header, walk.raw, transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN)


def text_value(values: dict[int, bytes], tag: int) -> str:
    """A captured text element's value as pydicom reads it (in the data set's character
    set, padding stripped); "" when absent."""
    raw = values.get(tag)
    if not raw:
        return ""
    if raw.isascii():
        return raw.decode("ascii").strip(" \x00")
    column = _COLUMN_OF[tag][1] if tag in _COLUMN_OF else ""
    encodings = _encodings(values.get(_SPECIFIC_CHARACTER_SET))
    return _decode(raw, column, encodings).strip(" \x00")


def entry_from_dataset(dataset: Dataset) -> IndexEntry:
    """The entry of a pydicom data set (encoded Explicit VR Little Endian, bulk left out)."""
    from pydicom import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    kept = Dataset()
    for element in dataset:
        tag = int(element.tag)
        if tag >= _PIXEL_DATA:
            break
        value = element.value
        large = isinstance(value, bytes | bytearray) and len(value) > _BULK_LIMIT
        if large and element.VR.encode() in _BINARY_VRS:
            continue
        kept.add(element)
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    try:
        write_dataset(buffer, kept)
        header, values = _scan(buffer.getvalue(), False)
    except (IndexError, ValueError, TypeError, struct.error) as exc:
        raise DataSetError(f"cannot index the data set: {exc}") from exc
    return _entry(header, values, False)


def entry_from_file(path: Path) -> IndexEntry:
    """The entry of a stored Part 10 file, read with pydicom up to its Pixel Data."""
    from pydicom import dcmread

    try:
        dataset = dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many kinds for a broken file
        raise DataSetError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    return entry_from_dataset(dataset)


def _text(value: Any) -> str | None:
    """An element's value as stripped text (multiple values joined by ``\\``), None if empty."""
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


def _local_storage() -> StorageBackend:
    """The filesystem storage (imported late: the storage package imports this module)."""
    from .storage.backend import LOCAL_STORAGE

    return LOCAL_STORAGE


@dataclass(frozen=True, slots=True)
class _Intent:
    """A pending addition of this process: what :meth:`SQLiteIndex.prepare_add` wrote."""

    entry: IndexEntry
    path: str
    replaces: str | None
    identity: tuple[int, int, int]
    transfer_syntax: str
    size: int
    #: The earlier copy under another path is to be found by the backend (``replaces``
    #: is then None until it is).
    find_replaced: bool = False


class SQLiteIndex(Index):
    """The embedded index: one SQLite file (or ``":memory:"``), WAL, one writer at a time.

    Nothing touches the disk until first use (or :meth:`open`): then the file's folder is
    created. Writes go through one connection under a lock (``BEGIN IMMEDIATE``, so
    several processes on one file take turns); queries use a second connection, so a
    streamed result never sees a write half done. Commits are ``synchronous=NORMAL``
    (WAL: consistent after a crash, the last commits may be lost on power failure) except
    a durable :meth:`prepare_add`, which is ``FULL``: the row and its intent are on disk
    before the file they name is renamed into place (docs/performance.md argues it).

    One transaction per stored instance: :meth:`prepare_add` writes the instance's row
    (with its file's identity) and the intent together; :meth:`commit_add` writes nothing
    in the usual case — it checks the rename happened and queues the intent's removal,
    done at the start of the next write transaction (or at :meth:`close`). An intent left
    by a crash is only re-checked by :meth:`reconcile`: the row stays if its file is in
    place, else the row is made to describe the file that is there (the earlier copy of an
    overwrite), or removed.

    :meth:`commit_add` reads nothing either when no write transaction of this object
    came between the prepare and it: the row is then still this copy's unless another
    connection wrote, which the next write transaction sees (``PRAGMA data_version``) and
    only then checks the row, before it removes the intent — so a crash in between still
    leaves the intent for :meth:`reconcile`.
    """

    _finds_replaced = True

    def __init__(self, path: str | Path) -> None:
        self.path = path if str(path) == ":memory:" else Path(path)
        self._lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._synchronous = ""
        #: Entries prepared by this process, by token (else re-read from the files).
        self._staged: dict[int, _Intent] = {}
        #: Intents settled by :meth:`commit_add`, removed with the next write transaction.
        self._settled: list[int] = []
        #: Of those, the ones whose row was not read back (nothing of this object wrote
        #: since their prepare): checked by the next transaction if another connection wrote.
        self._unchecked: list[_Intent] = []
        #: Write transactions this object committed; per prepared token, the count after
        #: its own (:meth:`commit_add` compares them).
        self._writes = 0
        self._prepared_at: dict[int, int] = {}
        #: The parent rows of the last addition (:func:`_upsert`), valid while no other
        #: connection writes (``PRAGMA data_version``) and no parent is deleted.
        self._parents: _Parents = {}
        self._data_version = -1

    # -- connections ----------------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            self._connect()

    def close(self) -> None:
        if self._settled and self._writer is not None:
            with contextlib.suppress(IndexUnavailableError), self._transaction():
                pass  # the settled intents' removal
        with self._lock:
            for db in {id(d): d for d in (self._reader, self._writer) if d is not None}.values():
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            self._writer = self._reader = None
            self._synchronous = ""

    def _connect(self) -> sqlite3.Connection:
        """The writer connection (the caller holds the lock), opened on first use."""
        if self._writer is not None:
            return self._writer
        memory = self.path == ":memory:"
        try:
            if not memory:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            writer = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
            )
            if not memory:
                writer.execute("PRAGMA journal_mode=WAL")
                # Checkpoint every ~40 MB of WAL rather than 4 MB: the pages every addition
                # touches (intents, the newest leaves) are then copied back far less often.
                writer.execute("PRAGMA wal_autocheckpoint=10000")
            writer.execute("PRAGMA foreign_keys=ON")
            _create(writer)
            reader = writer
            if not memory:
                reader = sqlite3.connect(
                    str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
                )
                reader.execute("PRAGMA query_only=ON")
        except (sqlite3.Error, OSError) as exc:
            raise IndexUnavailableError(f"cannot open the index {self.path}: {exc}") from exc
        self._writer, self._reader = writer, reader
        return writer

    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            self.open()
        assert self._reader is not None
        return self._reader

    @contextlib.contextmanager
    def _transaction(
        self, durable: bool = False, adding: bool = False
    ) -> Iterator[sqlite3.Connection]:
        """One write transaction; a backend failure becomes IndexUnavailableError.

        It starts by removing the intents :meth:`commit_add` settled since the last one.
        Only an ``adding`` transaction keeps the parent rows known (the others may delete).
        """
        with self._lock:
            db = self._connect()
            try:
                synchronous = "FULL" if durable else "NORMAL"
                if synchronous != self._synchronous:
                    db.execute(f"PRAGMA synchronous={synchronous}")
                    self._synchronous = synchronous
                db.execute("BEGIN IMMEDIATE")
                if not adding:
                    self._parents.clear()
                others_wrote = False
                if adding or self._unchecked:
                    (version,) = db.execute("PRAGMA data_version").fetchone()
                    if version != self._data_version:  # another connection wrote
                        others_wrote = self._data_version != -1 or bool(self._unchecked)
                        self._parents.clear()
                        self._data_version = version
            except sqlite3.Error as exc:
                self._parents.clear()
                raise IndexUnavailableError(f"index {self.path}: {exc}") from exc
            settled = self._settled
            try:
                if others_wrote:
                    for intent in self._unchecked:
                        self._check_row(db, intent)
                if len(settled) == 1:
                    db.execute(_DELETE_INTENT, settled)
                elif settled:
                    db.executemany(_DELETE_INTENT, [(token,) for token in settled])
                yield db
                db.execute("COMMIT")
                self._writes += 1
            except BaseException as exc:
                self._parents.clear()  # rows it created are gone
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise IndexUnavailableError(f"index {self.path}: {exc}") from exc
                raise
            if settled:
                self._settled = []
                self._unchecked = []

    def _check_row(self, db: sqlite3.Connection, intent: _Intent) -> None:
        """Make the row of a confirmed copy describe it again if another connection's
        prepare of another copy rewrote it and that copy's rename never came (the file at
        the path decides). A row removed meanwhile stays removed: the removal may have
        come after the confirmation."""
        if self.backend.identity(intent.path) != intent.identity:
            return  # renamed over since: that copy's own commit describes it
        uid = intent.entry.sop_instance_uid
        row = db.execute(_ROW_IDENTITY, (uid,)).fetchone()
        if row is not None and (tuple(row[1:]) != intent.identity or row[0] != intent.path):
            entry, identity = intent.entry, intent.identity
            _insert(db, entry, intent.path, intent.transfer_syntax, intent.size, identity)

    # -- writing ------------------------------------------------------------------------

    def add_entry(self, entry: IndexEntry, path: Path, transfer_syntax: str, size: int) -> None:
        identity = self.backend.identity(path)
        with self._transaction() as db:
            _insert(db, entry, path, transfer_syntax, size, identity)

    def _prepare(self, intent: _Intent, durable: bool) -> int:
        entry, identity = intent.entry, intent.identity
        # The row and the intent in one transaction: the row is visible (and, durable,
        # on disk) before its file is; the intent tells a reconcile to check that file.
        with self._transaction(durable, adding=True) as db:
            previous = _insert(
                db, entry, intent.path, intent.transfer_syntax, intent.size, identity, self._parents
            )
            if intent.find_replaced and previous is not None and previous != intent.path:
                intent = dataclasses.replace(intent, replaces=previous)
            token = db.execute(
                _INSERT_INTENT, (entry.sop_instance_uid, intent.path, intent.replaces, *identity)
            ).lastrowid
            written = self._writes + 1  # this transaction's, counted at its commit
        assert token is not None
        self._staged[token] = intent
        self._prepared_at[token] = written
        return token

    def commit_add(self, token: int) -> bool:
        intent = self._staged.pop(token, None)
        written = self._prepared_at.pop(token, None)
        if intent is None:  # not prepared by this process: settle it as a reconcile would
            with self._transaction() as db:
                return self._settle_intent(db, token) == "completed"
        if self.backend.identity(intent.path) != intent.identity:
            with self._lock:
                self._settled.append(token)
            return False  # not renamed into place, or another copy was renamed over it
        with self._lock:
            if written == self._writes:  # the row is as prepared, unless another connection
                self._settled.append(token)  # wrote: the next transaction checks then
                self._unchecked.append(intent)
                written = None
        if written is None:
            _remove_replaced(intent.path, intent.replaces, self.backend)
            return True
        uid = intent.entry.sop_instance_uid
        try:
            with self._lock:
                row = self._connect().execute(_ROW_IDENTITY, (uid,)).fetchone()
                ours = row is not None and tuple(row[1:]) == intent.identity
                if ours:
                    self._settled.append(token)
        except sqlite3.Error as exc:
            raise IndexUnavailableError(f"index {self.path}: {exc}") from exc
        if not ours:  # another copy prepared after this one, renamed before it: rewrite
            with self._transaction() as db:
                entry, identity = intent.entry, intent.identity
                _insert(db, entry, intent.path, intent.transfer_syntax, intent.size, identity)
                db.execute(_DELETE_INTENT, (token,))
        _remove_replaced(intent.path, intent.replaces, self.backend)
        return True

    def cancel_add(self, token: int) -> None:
        self._staged.pop(token, None)
        self._prepared_at.pop(token, None)
        with self._transaction() as db:
            self._settle_intent(db, token)

    def _settle_intent(self, db: sqlite3.Connection, token: int) -> str:
        """Settle one recorded intent from the files: "completed", "dropped", "removed"
        (dropped, and the instance's row went with it) or "gone" (settled already)."""
        found = db.execute(
            "SELECT sop_instance_uid, path, replaces, device, inode, file_size "
            "FROM pending WHERE pk = ?",
            (token,),
        ).fetchone()
        if found is None:
            return "gone"
        db.execute(_DELETE_INTENT, (token,))
        uid, path, replaces, *identity = found
        storage = self.backend
        if storage.identity(path) == tuple(identity):
            row = db.execute(_ROW_IDENTITY, (uid,)).fetchone()
            if row is None or tuple(row[1:]) != tuple(identity) or row[0] != path:
                _reindex(db, uid, [path], storage=storage)  # the row is another copy's
            _remove_replaced(path, replaces, storage)
            return "completed"
        outcome = _reindex(db, uid, [path, replaces], keep=True, storage=storage)
        return "removed" if outcome == "removed" else "dropped"

    def reconcile(self) -> Reconciled:
        completed = dropped = removed = 0
        with self._transaction(durable=True) as db:
            intents = [pk for (pk,) in db.execute("SELECT pk FROM pending ORDER BY pk")]
            for token in intents:
                outcome = self._settle_intent(db, token)
                completed += outcome == "completed"
                dropped += outcome in ("dropped", "removed")
                removed += outcome == "removed"
        self._staged.clear()
        self._prepared_at.clear()
        if dropped or removed:
            log.warning(
                "index %s: %d interrupted additions dropped, %d rows without a file removed "
                "(%d completed)",
                self.path,
                dropped,
                removed,
                completed,
            )
        elif intents:
            log.info("index %s: %d additions confirmed", self.path, completed)
        return Reconciled(completed, dropped, removed)

    def locate(self, sop_instance_uid: str) -> Path | None:
        # On the writer's connection when it is free: its page cache stays valid across its
        # own writes, where the reader's is dropped after each (a lookup per store, so it
        # counts). Never waits for a write in progress (the SCP calls this on the event
        # loop): the reader's connection answers then.
        sql = "SELECT path FROM instance WHERE sop_instance_uid = ?"
        try:
            if self._lock.acquire(blocking=False):
                try:
                    row = self._connect().execute(sql, (sop_instance_uid,)).fetchone()
                finally:
                    self._lock.release()
            else:
                row = self._read().execute(sql, (sop_instance_uid,)).fetchone()
        except sqlite3.Error as exc:
            raise IndexUnavailableError(f"index {self.path}: {exc}") from exc
        return Path(row[0]) if row is not None else None

    def remove(self, sop_instance_uid: str) -> bool:
        with self._transaction() as db:
            return bool(_delete(db, sop_instance_uid))

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Any]:
        """The rows of a query, streamed from the reader's connection (its own snapshot).

        An in-memory index has one connection: there the rows are fetched whole under the
        writer's lock, so a reader never sees a write transaction half done.
        """
        reader = self._read()
        if reader is self._writer:
            with self._lock:
                found = reader.execute(sql, params).fetchall()
            yield from found
            return
        cursor = reader.execute(sql, params)
        while rows := cursor.fetchmany(256):  # a large result is never all in memory
            yield from rows

    def _value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of a query's one row."""
        return next(self._rows(sql, params))[0]

    def paths(self) -> Iterator[tuple[str, Path]]:
        for uid, path in self._rows("SELECT sop_instance_uid, path FROM instance ORDER BY pk"):
            yield uid, Path(path)

    def count(self) -> int:
        return int(self._value("SELECT COUNT(*) FROM instance"))

    def stats(self) -> dict[str, int]:
        if self._settled:
            with self._transaction():
                pass  # the settled intents' removal: "pending" counts the unsettled only
        return {
            name: int(self._value(f"SELECT COUNT(*) FROM {table}"))
            for name, table in _STAT_TABLES.items()
        }

    # -- reading ------------------------------------------------------------------------

    def find(self, level: str, identifier: Dataset) -> Iterator[Dataset]:
        return _find(level, identifier, self._candidates, self._value, SQLITE)

    def instances(self, level: str, identifier: Dataset) -> Iterator[IndexedInstance]:
        rows = self._rows
        return _instances(level, identifier, self._candidates, lambda *q: list(rows(*q)), SQLITE)

    def _candidates(self, level: str, query: Query) -> Iterator[tuple[int, Dataset]]:
        """(pk, header) of each entity at ``level`` that the SQL part of ``query`` lets by."""
        for pk, stored, implicit in self._rows(*_candidates_sql(level, query, SQLITE)):
            yield int(pk), _dataset(stored, bool(implicit))


_PATIENT_KEYS = ("patient_id", "issuer_of_patient_id")
#: Columns a unique index starts with (a second, plain index on them is only more writing).
_UNIQUELY_INDEXED = frozenset(
    {"patient_id", *(_COLUMNS[level][tag] for level, tag in _UNIQUE.items())}
)
#: Instance columns without an index of their own: an IMAGE-level query names its series
#: (PS3.4 C.4.1.3.1.1; the series' index narrows it to a few rows), and every index is one
#: more page written per stored instance (docs/performance.md). SQL still narrows on them.
_UNINDEXED = frozenset({"sop_class_uid", "instance_number"})
#: The identity of an instance's file when its row was written: (device, inode, size).
_IDENTITY_COLUMNS = ("device", "inode", "file_size")
_INSERT_INSTANCE = (
    f"INSERT INTO instance ({', '.join(_COLUMNS['IMAGE'].values())}, series_pk, "
    "transfer_syntax, path, size, header, header_implicit, device, inode, file_size) VALUES "
    f"({', '.join('?' for _ in range(len(_COLUMNS['IMAGE']) + 9))})"
)
_INSERT_INTENT = (
    "INSERT INTO pending (sop_instance_uid, path, replaces, device, inode, file_size) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_DELETE_INTENT = "DELETE FROM pending WHERE pk = ?"
_ROW_IDENTITY = "SELECT path, device, inode, file_size FROM instance WHERE sop_instance_uid = ?"


@dataclass(frozen=True)
class SchemaTypes:
    """How a backend spells the entity tables' column types and keys (:func:`entity_schema`)."""

    #: Key and attribute columns (PostgreSQL: byte-wise collation, as the matcher compares).
    text: str
    #: A row's own key, and what references it.
    primary_key: str
    reference: str
    #: Sizes and file identities; the stored header and whether it is implicit VR.
    integer: str
    blob: str
    boolean: str
    #: The unique index expression of a patient: its ID and issuer, NULL as empty.
    patient_unique: str
    #: Whether :attr:`patient_unique` serves a lookup by ``patient_id = ?`` (it does when
    #: it starts with the bare column, not an expression of it).
    patient_unique_leads_with_id: bool
    #: Columns of the instance table beyond the shared ones.
    instance_extra: tuple[str, ...] = ()


def entity_schema(types: SchemaTypes) -> list[str]:
    """The statements creating the patient, study, series and instance tables and their
    indexes, for both backends: one place decides which columns get an index."""
    statements = []
    uniquely_indexed = _UNIQUELY_INDEXED - (
        set() if types.patient_unique_leads_with_id else {"patient_id"}
    )
    for level in LEVELS:
        table = _TABLE[level]
        columns = [f"{name} {types.text}" for name in _COLUMNS[level].values()]
        parent = _PARENT.get(level)
        if parent is not None:
            columns.append(f"{parent}_pk {types.reference} NOT NULL REFERENCES {parent}(pk)")
        if level == "IMAGE":
            columns += [
                "transfer_syntax TEXT",
                "path TEXT",
                f"size {types.integer}",
                f"header {types.blob}",
                f"header_implicit {types.boolean}",
                *types.instance_extra,
            ]
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {table} (pk {types.primary_key}, {', '.join(columns)})"
        )
        for name in _COLUMNS[level].values():
            if name in uniquely_indexed or name in _UNINDEXED:
                continue  # the unique index below serves lookups by it
            statements.append(f"CREATE INDEX IF NOT EXISTS {table}_{name} ON {table}({name})")
        if parent is not None:
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {table}_{parent} ON {table}({parent}_pk)"
            )
    for level, tag in _UNIQUE.items():
        table, column = _TABLE[level], _COLUMNS[level][tag]
        statements.append(f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_unique ON {table}({column})")
    statements.append(
        f"CREATE UNIQUE INDEX IF NOT EXISTS patient_unique ON patient({types.patient_unique})"
    )
    return statements


_SQLITE_TYPES = SchemaTypes(
    text="TEXT",
    primary_key="INTEGER PRIMARY KEY",
    reference="INTEGER",
    integer="INTEGER",
    blob="BLOB",
    boolean="INTEGER",
    patient_unique="patient_id, IFNULL(issuer_of_patient_id, '')",
    patient_unique_leads_with_id=True,
    instance_extra=tuple(f"{name} INTEGER" for name in _IDENTITY_COLUMNS),
)


def _create(db: sqlite3.Connection) -> None:
    """The schema: a table per level, the instances' files, and the pending intents."""
    statements = entity_schema(_SQLITE_TYPES)
    statements.append(
        "CREATE TABLE IF NOT EXISTS pending (pk INTEGER PRIMARY KEY, sop_instance_uid TEXT "
        "NOT NULL, path TEXT NOT NULL, replaces TEXT, device INTEGER, inode INTEGER, "
        "file_size INTEGER)"
    )
    for statement in statements:
        db.execute(statement)
    # An index written by an earlier version: its rows get the file identity columns (NULL:
    # unknown), its intents keep columns no longer written (NULL from now on).
    have = {row[1] for row in db.execute("PRAGMA table_info(instance)")}
    for name in _IDENTITY_COLUMNS:
        if name not in have:
            db.execute(f"ALTER TABLE instance ADD COLUMN {name} INTEGER")


#: The entity rows this process wrote or read last, per level: ((values, parent), pk).
_Parents = dict[str, tuple[tuple[Any, ...], int]]


def _upsert(
    db: sqlite3.Connection,
    level: str,
    values: dict[str, str | None],
    parent: int | None,
    keys: Sequence[str],
    known: _Parents | None = None,
) -> int:
    """The pk of the entity with these keys, created or updated to ``values``.

    The newest instance's values describe the entity; a row already holding them is not
    written again (the common case: a burst of instances of one series). ``known``: the
    rows of the last call, when nobody else wrote since; equal values need no statement.
    """
    if known is not None:
        cached = (*values.values(), parent)
        hit = known.get(level)
        if hit is not None and hit[0] == cached:
            return hit[1]
        known[level] = (cached, pk := _upsert(db, level, values, parent, keys))
        return pk
    table = _TABLE[level]
    row = _entity_row(level, values, parent)
    # As the unique indexes are written, so that the lookup uses them (not a table scan).
    clauses, params = [], []
    for key in keys:
        value = values[key]
        if key == "issuer_of_patient_id":
            clauses.append(f"IFNULL({key}, '') = ?")
            params.append(value or "")
        elif value is None:
            clauses.append(f"{key} IS NULL")
        else:
            clauses.append(f"{key} = ?")
            params.append(value)
    found = db.execute(
        f"SELECT pk, {', '.join(row)} FROM {table} WHERE {' AND '.join(clauses)}", params
    ).fetchone()
    if found is not None:
        if tuple(found[1:]) != tuple(row.values()):
            assignments = ", ".join(f"{k} = ?" for k in row)
            db.execute(f"UPDATE {table} SET {assignments} WHERE pk = ?", (*row.values(), found[0]))
        return int(found[0])
    cursor = db.execute(
        f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
        tuple(row.values()),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _insert(
    db: sqlite3.Connection,
    entry: IndexEntry,
    path: Path | str,
    transfer_syntax: str,
    size: int,
    identity: tuple[int, int, int] | None,
    known: _Parents | None = None,
) -> str | None:
    """Write one instance's row (replacing the row of its SOP Instance UID); return the
    path of the row it replaced (None: there was none).

    The parents first, then the earlier row deleted: an overwrite in the same series
    leaves nothing to clean up. ``known``: see :func:`_upsert` (cleared when a parent is
    deleted).
    """
    values = entry.values
    patient = _upsert(db, "PATIENT", values["PATIENT"], None, _PATIENT_KEYS, known)
    study = _upsert(db, "STUDY", values["STUDY"], patient, ("study_instance_uid",), known)
    series = _upsert(db, "SERIES", values["SERIES"], study, ("series_instance_uid",), known)
    outcome, previous = _delete_row(db, entry.sop_instance_uid, series)
    if outcome == "parents" and known is not None:
        known.clear()
    db.execute(
        _INSERT_INSTANCE,
        (
            *values["IMAGE"].values(),
            series,
            transfer_syntax,
            str(path),
            size,
            entry.header,
            int(entry.implicit),
            *(identity or (None, None, None)),
        ),
    )
    return previous


def _stored_entry(path: Path) -> tuple[IndexEntry, str, int]:
    """(entry, transfer syntax, size) of a stored Part 10 file: its header read from its
    first bytes as the storage SCP reads a received one (pydicom only for what the
    scanner leaves to it), never the pixels."""
    from .part10 import read_file_info
    from .storage.header import HEAD_BYTES

    info = read_file_info(path)
    with open(path, "rb") as file:
        file.seek(info.dataset_offset)
        head = file.read(HEAD_BYTES)
    whole = info.size - info.dataset_offset <= len(head)
    entry = entry_from_head(head, info.transfer_syntax, whole=whole)
    if entry is None:
        entry = entry_from_file(path)
    return entry, info.transfer_syntax, info.size


def _in_place(
    path: str,
    identity: Sequence[int | None],
    *,
    same_host: bool = True,
    storage: StorageBackend | None = None,
) -> bool:
    """Whether ``path`` holds the file of this identity (unknown identity: any file).

    An identity taken on another host is compared on inode and size only: a shared
    filesystem has another device number on each client.
    """
    storage = storage or _local_storage()
    if identity[0] is None:
        return storage.exists(path)
    found = storage.identity(path)
    if found is None or same_host:
        return found == tuple(identity)
    return found[1:] == tuple(identity[1:])


def _reindex(
    db: sqlite3.Connection,
    uid: str,
    candidates: Sequence[str | None],
    *,
    keep: bool = False,
    storage: StorageBackend | None = None,
) -> str:
    """Make the row of ``uid`` describe a file that is there: "kept" (``keep``: its own
    file is in place), "restored" from the first of ``candidates`` that holds the
    instance, else "removed" (or "none": there was no row)."""
    storage = storage or _local_storage()
    if keep:
        row = db.execute(_ROW_IDENTITY, (uid,)).fetchone()
        if row is not None and _in_place(row[0], row[1:], storage=storage):
            return "kept"
    for candidate in candidates:
        if not candidate or not storage.exists(candidate):
            continue
        try:
            entry, transfer_syntax, size = _stored_entry(Path(candidate))
        except (DataSetError, OSError) as exc:
            log.warning("index: cannot re-read %s: %s", candidate, exc)
            continue
        if entry.sop_instance_uid == uid:
            _insert(db, entry, candidate, transfer_syntax, size, storage.identity(candidate))
            return "restored"
    return "removed" if _delete(db, uid) else "none"


class _Connection(Protocol):
    """What the shared writing helpers use of a backend's connection (sqlite3, psycopg)."""

    def execute(self, sql: str, params: Sequence[Any], /) -> Any: ...


def _delete(
    db: _Connection, sop_instance_uid: str, kept_series: int = 0, dialect: SQLDialect | None = None
) -> str:
    """Delete one instance's row and the parents it leaves empty (not ``kept_series``).

    "" when there was no row, "row" when only the row went, "parents" when parents too.
    """
    return _delete_row(db, sop_instance_uid, kept_series, dialect)[0]


def _delete_row(
    db: _Connection, sop_instance_uid: str, kept_series: int = 0, dialect: SQLDialect | None = None
) -> tuple[str, str | None]:
    """:func:`_delete`'s outcome, and the deleted row's path."""
    mark = (dialect or SQLITE).mark
    row = db.execute(
        f"DELETE FROM instance WHERE sop_instance_uid = {mark} RETURNING series_pk, path",
        (sop_instance_uid,),
    ).fetchone()
    if row is None:
        return "", None  # the usual case: one statement
    pk, path = row
    if pk == kept_series:
        return "row", path  # replaced in the same series: its parents stay
    outcome = "row"
    for table, child, parent in (
        ("series", "instance", "study"),
        ("study", "series", "patient"),
        ("patient", "study", None),
    ):
        if db.execute(f"SELECT 1 FROM {child} WHERE {table}_pk = {mark} LIMIT 1", (pk,)).fetchone():
            break
        outcome = "parents"
        if parent is None:
            db.execute(f"DELETE FROM {table} WHERE pk = {mark}", (pk,))
            break
        found = db.execute(
            f"DELETE FROM {table} WHERE pk = {mark} RETURNING {parent}_pk", (pk,)
        ).fetchone()
        if found is None:
            break
        pk = found[0]
    return outcome, path


def _remove_replaced(
    path: str, replaces: str | None, storage: StorageBackend | None = None
) -> None:
    """Remove an overwritten instance's earlier copy, when it was under another path."""
    if replaces and replaces != path:
        (storage or _local_storage()).remove(replaces)


def _entity_row(level: str, values: dict[str, str | None], parent: int | None) -> dict[str, Any]:
    """The columns of an entity's row: its key values and its parent's pk."""
    row: dict[str, Any] = dict(values)
    if parent is not None:
        row[f"{_PARENT[level]}_pk"] = parent
    return row


#: Rows per table, as :meth:`Index.stats` names them.
_STAT_TABLES = {
    "patients": "patient",
    "studies": "study",
    "series": "series",
    "instances": "instance",
    "pending": "pending",
}


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
#: What :func:`_scan` keeps the raw value of: the columns' keys and the character set.
_SCANNED = frozenset(_COLUMN_OF) | {_SPECIFIC_CHARACTER_SET}
#: The top-level elements an index entry is made of (its columns and their character set):
#: what a walk over a received data set captures (:func:`entry_from_walk`).
INDEXED_TAGS = _SCANNED
#: Columns stored in a normalised form (see :func:`_column_value`).
_NORMALISED = _PN_COLUMNS | _TIME_COLUMNS
#: :data:`_COLUMNS` as :func:`_entry` walks it, per level: (tag, column, whether its text is
#: normalised), worked out once rather than per instance.
_ENTRY_PLAN = tuple(
    (level, tuple((tag, column, column in _NORMALISED) for tag, column in tags.items()))
    for level, tags in _COLUMNS.items()
)
_UNIQUE_COLUMNS = tuple((level, _COLUMNS[level][tag]) for level, tag in _UNIQUE.items())
#: Derived keys: tag -> (keyword, levels, SQL over the instances below the entity; the
#: modalities' aggregate is the dialect's, :attr:`SQLDialect.modalities`).
_DERIVED: dict[int, tuple[str, tuple[str, ...], str]] = {
    0x00201200: ("NumberOfPatientRelatedStudies", ("PATIENT",), "COUNT(DISTINCT ss.pk)"),
    0x00201202: ("NumberOfPatientRelatedSeries", ("PATIENT",), "COUNT(DISTINCT sse.pk)"),
    0x00201204: ("NumberOfPatientRelatedInstances", ("PATIENT",), "COUNT(*)"),
    0x00201206: ("NumberOfStudyRelatedSeries", ("STUDY",), "COUNT(DISTINCT sse.pk)"),
    0x00201208: ("NumberOfStudyRelatedInstances", ("STUDY",), "COUNT(*)"),
    0x00201209: ("NumberOfSeriesRelatedInstances", ("SERIES",), "COUNT(*)"),
    0x00080061: ("ModalitiesInStudy", ("STUDY",), "SQLDialect.modalities"),
}


@dataclass(frozen=True, slots=True)
class SQLDialect:
    """How a backend spells the few things the shared SQL narrowing writes differently."""

    #: A parameter's placeholder.
    mark: str
    #: True when ``{column}`` holds a backslash: a multi-valued value the matcher decides on.
    multi_valued: str
    #: The operator comparing a column to :attr:`wildcard`'s operand.
    wildcard_operator: str
    #: A DICOM wild card (``*``, ``?``) as the operand of :attr:`wildcard_operator`.
    wildcard: Callable[[str], str]
    #: The distinct modalities of the series below an entity, comma separated.
    modalities: str = "GROUP_CONCAT(DISTINCT sse.modality)"
    #: A list of values is one array parameter (``= ANY(...)``), not one per value.
    array_parameters: bool = False

    def in_list(self, column: str, values: Sequence[str], params: list[Any]) -> str:
        """``column`` equal to one of ``values``."""
        if self.array_parameters:
            params.append(list(values))
            return f"{column} = ANY({self.mark})"
        params.extend(values)
        return f"{column} IN ({', '.join(self.mark for _ in values)})"


#: SQLite: GLOB compares bytes as the matcher does (``[`` is GLOB's own, escaped).
SQLITE = SQLDialect(
    mark="?",
    multi_valued="instr(IFNULL({column}, ''), '\\') > 0",
    wildcard_operator="GLOB",
    wildcard=lambda pattern: pattern.replace("[", "[[]"),
)


def _condition_sql(
    condition: KeyCondition,
    column: str,
    name: str,
    params: list[Any],
    dialect: SQLDialect = SQLITE,
) -> str | None:
    """A WHERE clause that keeps every row the condition can match (None: no narrowing).

    A multi-valued stored value (with a backslash) is always kept: the matcher decides.
    A list of values (:attr:`MatchKind.VALUE_LIST`, the worklist's) narrows too.
    """
    kind = condition.kind
    mark = dialect.mark
    keep_multi = dialect.multi_valued.format(column=column)
    if kind is MatchKind.EMPTY:
        return f"({column} IS NULL OR {keep_multi})"
    if kind is MatchKind.UID_LIST or (kind is MatchKind.SINGLE and condition.vr == "UI"):
        return dialect.in_list(column, condition.values, params)
    if kind is MatchKind.VALUE_LIST:
        return f"({dialect.in_list(column, condition.values, params)} OR {keep_multi})"
    if kind is MatchKind.WILDCARD:
        (pattern,) = condition.values
        if name in _PN_COLUMNS:
            pattern = pattern.casefold()  # as the matcher compiles it; stored names are folded
        elif condition.case_insensitive:
            return None
        params.append(dialect.wildcard(pattern))
        return f"({column} {dialect.wildcard_operator} {mark} OR {keep_multi})"
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
            parts.append(f"{column} >= {mark}")
        if last is not None:
            params.append(last[1])
            parts.append(f"{column} <= {mark}")
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
        return f"({column} = {mark} OR {keep_multi})"
    return None


def _candidates_sql(level: str, query: Query, dialect: SQLDialect) -> tuple[str, list[Any]]:
    """The SELECT of (pk, header, header_implicit) of each entity at ``level`` that the SQL
    part of ``query`` lets by (the newest instance's header stands for an entity above)."""
    if level not in _FROM:
        raise InvalidQueryError(f"unknown Query/Retrieve level {level!r}")
    clauses: list[str] = []
    params: list[Any] = []
    depth = LEVELS.index(level)
    for condition in query.matching_keys:
        found = _COLUMN_OF.get(condition.tag)
        if found is None or LEVELS.index(found[0]) > depth:
            continue  # no column, or a key below the level: the matcher decides
        column = f"{_ALIAS[found[0]]}.{found[1]}"
        clause = _condition_sql(condition, column, found[1], params, dialect)
        if clause is not None:
            clauses.append(clause)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    alias = _ALIAS[level]
    below, column = _BELOW[level]
    header = (
        "i.header, i.header_implicit"
        if level == "IMAGE"
        else f"(SELECT ii.header {below} WHERE {column} = {alias}.pk "
        "ORDER BY ii.pk DESC LIMIT 1), "
        f"(SELECT ii.header_implicit {below} WHERE {column} = {alias}.pk "
        "ORDER BY ii.pk DESC LIMIT 1)"
    )
    return f"SELECT {alias}.pk, {header} {_FROM[level]}{where} ORDER BY {alias}.pk", params


#: Candidates of a query: (pk, header) per entity the SQL lets by (see :func:`_candidates_sql`).
_Candidates = Callable[[str, Query], Iterator[tuple[int, "Dataset"]]]
#: Runs one SQL statement of a backend: the first column of its one row, or all its rows.
_Statement = Callable[[str, Sequence[Any]], Any]


def _find(
    level: str,
    identifier: Dataset,
    candidates: _Candidates,
    value: _Statement,
    dialect: SQLDialect,
) -> Iterator[Dataset]:
    """:meth:`Index.find` over a backend's candidates: the matcher decides on each."""
    query = compile_query(identifier)
    wanted = {int(element.tag) for element in identifier}
    for pk, candidate in candidates(level, query):
        _derive(level, pk, wanted, candidate, value, dialect)
        if query.matches(candidate):
            yield _answer(candidate, query, level)


def _derive(
    level: str,
    pk: int,
    wanted: set[int],
    candidate: Dataset,
    value: _Statement,
    dialect: SQLDialect,
) -> None:
    """Derived keys (PS3.4 C.6.1.1.x, C.6.2.1.x): counts and modalities, when asked for."""
    below, column = _BELOW[level]
    for tag, (keyword, levels, expression) in _DERIVED.items():
        if tag not in wanted or level not in levels:
            continue
        if keyword == "ModalitiesInStudy":
            expression = dialect.modalities
        found = value(f"SELECT {expression} {below} WHERE {column} = {dialect.mark}", (pk,))
        if keyword == "ModalitiesInStudy":
            found = sorted({v for v in (found or "").split(",") if v})
        setattr(candidate, keyword, found)


def _instances(
    level: str,
    identifier: Dataset,
    candidates: _Candidates,
    rows: _Statement,
    dialect: SQLDialect,
) -> Iterator[IndexedInstance]:
    """:meth:`Index.instances` over a backend's candidates: those below each match."""
    query = compile_query(identifier)
    if level not in _BELOW:
        raise InvalidQueryError(f"unknown Query/Retrieve level {level!r}")
    below, column = _BELOW[level]
    for pk, candidate in candidates(level, query):
        if not query.matches(candidate):
            continue
        found = rows(
            "SELECT ii.sop_instance_uid, ii.sop_class_uid, ii.transfer_syntax, ii.path, "
            f"ii.size {below} WHERE {column} = {dialect.mark} ORDER BY ii.pk",
            (pk,),
        )
        for row in found:
            yield IndexedInstance(row[0], row[1], row[2], Path(row[3]), int(row[4]))


def _dataset(stored: bytes | None, implicit: bool) -> Dataset:
    """A stored header as a pydicom data set (values decoded when a matcher reads them)."""
    from pydicom import Dataset
    from pydicom.filereader import read_dataset

    if not stored:
        return Dataset()
    return read_dataset(BytesIO(stored), implicit, True)


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


def rebuild(
    index: Index,
    root: Path,
    *,
    on_indexed: Callable[[Path], None] | None = None,
    exclude: Sequence[Path] = (),
) -> tuple[int, list[tuple[Path, str]]]:
    """Index every Part 10 file under ``root`` (``.incoming`` and the folders in
    ``exclude``, such as the print spool, left out): (count, failures).

    What ``dicomwire index rebuild DIR`` runs after a crash or a copy of files by hand.
    Each file's header is read from its first bytes as the storage SCP reads a received
    one (pydicom only for what the scanner leaves to it), never the pixels. Rows of files
    under ``root`` that no longer exist are removed, so the index ends equal to the files.
    """
    added = 0
    failures: list[tuple[Path, str]] = []
    seen: set[str] = set()
    excluded = [folder.resolve() for folder in exclude]
    for path in sorted(root.rglob("*.dcm")):
        if ".incoming" in path.relative_to(root).parts:
            continue
        if excluded and any(path.resolve().is_relative_to(folder) for folder in excluded):
            continue
        try:
            entry, transfer_syntax, size = _stored_entry(path)
            index.add_entry(entry, path, transfer_syntax, size)
            seen.add(str(path))
            added += 1
            if on_indexed is not None:
                on_indexed(path)
        except IndexUnavailableError:
            raise  # the database itself failed: no point in trying the next file
        except Exception as exc:  # one unreadable file must not stop the others
            failures.append((path, f"{type(exc).__name__}: {exc}"))
    resolved = root.resolve()
    stale = [
        uid
        for uid, path in index.paths()
        if str(path) not in seen and path.resolve().is_relative_to(resolved) and not path.exists()
    ]
    for uid in stale:
        index.remove(uid)
    return added, failures
