"""Storage service class: C-STORE SCP and SCU (PS3.4 Annex B, PS3.7 §9.1.1, §9.3.1).

SCP: every received data set streams straight into a Part 10 file (file meta written first,
then the data set as received, never decoded), under a temporary name in the storage root;
only its header is read back (SOP Class/Instance UID check, Study/Series UIDs for the
path). It is fsync'd, renamed into place, and only then is success answered.

SCU: files are read only as far as their file meta; each is sent from disk in the
transfer syntax it is in, converted between uncompressed transfer syntaxes when the peer
accepted only another one, never silently decompressed.

Statuses the SCP answers (PS3.4 Table B.2-1, PS3.7 Annex C): 0000 success; A700 out of
resources (disk full, write error); A900 data set does not match SOP class (its SOP
Class/Instance UID differ from the command's); C000 cannot understand (header not
parseable); 0111 duplicate SOP instance (duplicates policy "reject").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import re
import struct
import time
import uuid
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from ..dimse.commands import CommandField, CommandSet, Tag
from ..dimse.datasets import DataSetError, decode_dataset, encode_dataset
from ..dimse.session import (
    DimseSession,
    Operation,
    Request,
    Response,
    SinkFactory,
    open_session,
)
from ..dimse.status import Status
from ..dimse.streams import DataSetSink, DiscardSink, FileSource
from ..errors import DicomWireError, NoAcceptedContextError
from ..uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
)
from ..ul.association import Timeouts
from ..ul.negotiation import DEFAULT_MAX_PDU_LENGTH, PresentationContext, RequestorConfig
from ..ul.tls import TLSConfig
from .part10 import FileInfo, Part10Error, build_file_meta, explicit_vr_value, read_file_info

__all__ = [
    "COMPRESSED_TRANSFER_SYNTAXES",
    "storage_sop_classes",
    "STORAGE_TRANSFER_SYNTAXES",
    "UNCOMPRESSED_TRANSFER_SYNTAXES",
    "StorageConfig",
    "StorageSCP",
    "StoreResult",
    "StoreSummary",
    "send_file",
    "store_dataset",
    "store_file",
    "store_files",
]

if TYPE_CHECKING:  # pydicom is imported only where a Dataset is needed
    from pydicom import Dataset

log = logging.getLogger("dicomwire.services.storage")

#: JPEG baseline/extended/lossless/SV1, JPEG-LS, JPEG 2000, HTJ2K, RLE (PS3.5 Annex A).
COMPRESSED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
    "1.2.840.10008.1.2.5",
)
#: The SCP's default transfer syntax preference order (DCMTK's: uncompressed first).
STORAGE_TRANSFER_SYNTAXES = UNCOMPRESSED_TRANSFER_SYNTAXES + COMPRESSED_TRANSFER_SYNTAXES


@functools.cache
def storage_sop_classes() -> dict[str, str]:
    """Every storage SOP class pydicom knows (PS3.4 Table B.5-1), UID -> name."""
    from pydicom._uid_dict import UID_dictionary

    return {
        uid: entry[0]
        for uid, entry in UID_dictionary.items()
        if entry[1] == "SOP Class"
        and "Storage" in entry[0]
        and "Commitment" not in entry[0]
        and uid != "1.2.840.10008.1.3.10"  # Media Storage Directory: a DICOMDIR, not sent
    }


OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
DUPLICATE_SOP_INSTANCE = 0x0111

Duplicates = Literal["overwrite", "keep", "reject"]
DEFAULT_LAYOUT = "{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"


@dataclass(slots=True)
class StorageConfig:
    """How the SCP stores what it receives.

    ``layout`` is a path relative to ``root`` with the fields {StudyInstanceUID},
    {SeriesInstanceUID}, {SOPInstanceUID}, {SOPClassUID} and {CallingAETitle}; values that
    are not safe path components are replaced by a digest, so no path escapes ``root``.
    """

    root: Path = Path("data")
    layout: str = DEFAULT_LAYOUT
    fsync: bool = True
    duplicates: Duplicates = "overwrite"
    discard: bool = False
    transfer_syntaxes: Sequence[str] = STORAGE_TRANSFER_SYNTAXES
    #: Called after each instance is stored: (path, request). May be async.
    on_stored: Callable[[Path, Request], Awaitable[None] | None] | None = None


# --------------------------------------------------------------------------- SCP


@dataclass(slots=True)
class StoreResult:
    """What a storage sink hands to the C-STORE handler."""

    path: Path | None
    length: int
    error: OSError | None = None
    dataset_offset: int = 0
    #: The first bytes of the data set (up to 64 KiB), for reading its header.
    head: bytes = b""


class _PartialFileSink:
    """Stream a Part 10 file under a temporary name; remember a write error, not raise it."""

    __slots__ = ("_file", "dataset_offset", "error", "head", "length", "path")

    def __init__(self, path: Path, meta: bytes) -> None:
        self.path = path
        self.dataset_offset = len(meta)
        self.length = 0
        #: The data set's first bytes, kept to read its header without reopening the file.
        self.head = bytearray()
        self.error: OSError | None = None
        self._file = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "wb")  # noqa: SIM115 - closed in close()/abort()
            self._file.write(meta)
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.error = exc
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    def write(self, data: memoryview) -> None:
        if self.length < _HEAD_BYTES:
            self.head += data[: _HEAD_BYTES - self.length]
        self.length += len(data)
        if self._file is None:
            return  # after an error: swallow the rest of the data set
        try:
            self._file.write(data)
        except OSError as exc:
            self._failed(exc)

    async def close(self) -> StoreResult:
        if self._file is not None:
            try:
                self._file.flush()
                self._file.close()
            except OSError as exc:
                self._failed(exc)
            self._file = None
        path = None if self.error else self.path
        return StoreResult(path, self.length, self.error, self.dataset_offset, bytes(self.head))

    async def abort(self) -> None:
        self._failed(OSError("association ended before the data set was complete"))


_SAFE_COMPONENT = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")


def _path_component(value: str | None) -> str:
    """``value`` if it is a safe file name, else a digest of it (never '..' or '/')."""
    if value and _SAFE_COMPONENT.fullmatch(value) and ".." not in value:
        return value
    digest = hashlib.sha256((value or "").encode("utf-8", "replace")).hexdigest()[:16]
    return f"unknown-{digest}" if not value else f"invalid-{digest}"


_HEADER_TAGS = (0x00080016, 0x00080018, 0x0020000D, 0x0020000E)


#: How much of each received data set is kept in memory to read its header from.
_HEAD_BYTES = 64 << 10
_ALL_HEADER_TAGS = frozenset(_HEADER_TAGS)


def _header_from_head(stored: StoreResult, transfer_syntax: str) -> dict[int, str] | None:
    """The header read from the bytes kept in memory, or None when they do not suffice.

    They suffice when the whole data set fits, or when every header element was found.
    A deflated data set is always read from the file.
    """
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN or not stored.head:
        return None
    whole = stored.length <= len(stored.head)
    try:
        header = _scan_header(stored.head, transfer_syntax)
        if header is None:  # something the scanner leaves to pydicom
            header = _parse_header(BytesIO(stored.head), transfer_syntax)
    except DataSetError:
        if whole:
            raise
        return None  # the cut at 64 KiB fell inside an element: read from the file
    if whole or header.keys() >= _ALL_HEADER_TAGS:
        return header
    return None


_ELEMENT_TAG = struct.Struct("<HH")
_LONG_LENGTH = struct.Struct("<L")
_LAST_HEADER_TAG = max(_HEADER_TAGS)


def _scan_header(data: bytes | bytearray, transfer_syntax: str) -> dict[int, str] | None:
    """:func:`_parse_header` without pydicom for the plain case (PS3.5 §7.1).

    Walks the top-level elements of a little endian data set up to (0020,000E), skipping
    each value by its length. Returns None for what it leaves to pydicom: big endian, an
    undefined length (a sequence or encapsulated value before the header elements), an
    item tag at the top level. An element whose value runs past
    ``data`` raises DataSetError, as pydicom's reader does.
    """
    if transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
        return None
    implicit = transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN  # else explicit, as pydicom reads it
    data = bytes(data)  # no copy when it already is bytes
    values: dict[int, str] = {}
    position, end = 0, len(data)
    while position + 8 <= end:
        group, element = _ELEMENT_TAG.unpack_from(data, position)
        tag = group << 16 | element
        if tag > _LAST_HEADER_TAG:
            break
        if group == 0xFFFE:
            return None
        if implicit:
            (length,) = _LONG_LENGTH.unpack_from(data, position + 4)
            start = position + 8
        else:
            value = explicit_vr_value(data, position)
            if value is None:
                break
            start, length = value
        if length == 0xFFFFFFFF:
            return None
        position = start + length
        if tag in _ALL_HEADER_TAGS:
            if position > end:
                raise DataSetError(
                    f"cannot read the data set header: ({group:04X},{element:04X}) is cut short"
                )
            values[tag] = data[start:position].decode("ascii", "replace").rstrip("\x00 ")
    return values


#: A deflated data set is inflated at most this far to find its header.
_DEFLATED_HEADER_LIMIT = 16 << 20


def _parse_header(source: BinaryIO, transfer_syntax: str) -> dict[int, str]:
    """SOP Class/Instance, Study and Series UIDs from a data set stream; DataSetError.

    Reads elements up to (0020,000E) only, skipping large values (pixel data, big private
    elements), however far into the data set they are.
    """
    from pydicom.filereader import read_dataset

    try:
        dataset = read_dataset(
            source,
            transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN,
            transfer_syntax != EXPLICIT_VR_BIG_ENDIAN,
            stop_when=lambda tag, vr, length: tag > 0x0020000E,
            defer_size=1024,
        )
        values: dict[int, str] = {}
        for tag in _HEADER_TAGS:
            if tag in dataset:
                value = dataset[tag].value
                values[tag] = str(value).rstrip("\x00 ") if value is not None else ""
        return values
    except Exception as exc:
        raise DataSetError(f"cannot read the data set header: {exc}") from exc


def _read_header(path: Path, offset: int, transfer_syntax: str) -> dict[int, str]:
    """The header of the data set stored in ``path`` at ``offset``; DataSetError."""
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
                inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                head = inflater.decompress(
                    file.read(_DEFLATED_HEADER_LIMIT), _DEFLATED_HEADER_LIMIT
                )
                return _parse_header(BytesIO(head), transfer_syntax)
            return _parse_header(file, transfer_syntax)
    except OSError as exc:
        raise DataSetError(f"cannot read the data set header: {exc}") from exc


class StorageSCP:
    """C-STORE SCP: a sink factory and a handler to register with a :class:`DimseSession`."""

    def __init__(self, config: StorageConfig) -> None:
        self.config = config
        self.root = config.root
        self._resolved_root = config.root.resolve()
        self._inside: dict[Path, bool] = {}
        self._incoming = config.root / ".incoming"
        self.stored = 0

    def sink_for(self, session: DimseSession) -> SinkFactory:
        """The C-STORE sink factory for one association (its AE is the Source AE Title)."""

        def factory(command: CommandSet, context: PresentationContext) -> DataSetSink:
            if self.config.discard:
                return DiscardSink()  # handle() answers 0000 before looking at it
            meta = build_file_meta(
                str(command.get(Tag.AffectedSOPClassUID) or ""),
                str(command.get(Tag.AffectedSOPInstanceUID) or ""),
                context.transfer_syntax or IMPLICIT_VR_LITTLE_ENDIAN,
                session.negotiated.remote_ae_title,
            )
            return _PartialFileSink(self._incoming / f"{uuid.uuid4().hex}.part", meta)

        return factory

    def _inside_root(self, directory: Path) -> bool:
        """Whether ``directory`` resolves inside the storage root (a symlink could lead out).

        Resolving costs a system call per path component, and a study's instances share
        their directories: answers are kept for the directories seen last.
        """
        known = self._inside.get(directory)
        if known is None:
            if len(self._inside) >= 4096:
                self._inside.clear()
            known = directory.resolve().is_relative_to(self._resolved_root)
            self._inside[directory] = known
        return known

    async def handle(self, request: Request) -> Response:
        """The C-STORE-RQ handler: check, place and make durable the received file."""
        result = request.message.dataset
        if self.config.discard:
            return Response(0)
        if not isinstance(result, StoreResult):
            # Data set arrived in memory (no storage sink registered): write it now.
            raise DicomWireError("StorageSCP.handle needs StorageSCP.sink_for() as sink")
        if result.error is not None or result.path is None:
            log.error("storing failed: %s", result.error)
            return Response(OUT_OF_RESOURCES, None, _comment(f"write failed: {result.error}"))
        partial = result.path
        try:
            return await self._place(request, partial, result)
        finally:
            with contextlib.suppress(OSError):
                partial.unlink()

    async def _place(self, request: Request, partial: Path, stored: StoreResult) -> Response:
        command = request.command
        sop_class = str(command.get(Tag.AffectedSOPClassUID) or "")
        instance = str(command.get(Tag.AffectedSOPInstanceUID) or "")
        transfer_syntax = request.context.transfer_syntax or IMPLICIT_VR_LITTLE_ENDIAN
        try:
            header = _header_from_head(stored, transfer_syntax)
            if header is None:  # not all in the first bytes: read it from the file
                header = await asyncio.to_thread(
                    _read_header, partial, stored.dataset_offset, transfer_syntax
                )
        except DataSetError as exc:
            return Response(CANNOT_UNDERSTAND, None, _comment(str(exc)))
        if 0x00080016 not in header and 0x00080018 not in header:
            # Nothing parseable where a composite instance starts: not a data set at all.
            return Response(
                CANNOT_UNDERSTAND, None, _comment("no SOP Class/Instance UID in the data set")
            )
        if header.get(0x00080016) != sop_class or header.get(0x00080018) != instance:
            return Response(
                DATASET_MISMATCH,
                None,
                _comment("SOP Class/Instance UID in the data set differ from the command"),
            )
        fields = {
            "StudyInstanceUID": _path_component(header.get(0x0020000D)),
            "SeriesInstanceUID": _path_component(header.get(0x0020000E)),
            "SOPInstanceUID": _path_component(instance),
            "SOPClassUID": _path_component(sop_class),
            "CallingAETitle": _path_component(request.negotiated.remote_ae_title),
        }
        target = self.root / self.config.layout.format(**fields)
        if not self._inside_root(target.parent):
            return Response(CANNOT_UNDERSTAND, None, _comment("storage path escapes the root"))
        if target.exists():
            if self.config.duplicates == "keep":
                log.info("duplicate %s kept as first received", instance)
                return Response(0)
            if self.config.duplicates == "reject":
                return Response(DUPLICATE_SOP_INSTANCE, None, _comment("duplicate SOP instance"))
        try:
            if self.config.fsync:  # fsync blocks for milliseconds: not on the event loop
                await asyncio.to_thread(_commit, partial, target, True)
            else:
                _commit(partial, target, False)
        except OSError as exc:
            log.error("storing %s failed: %s", target, exc)
            return Response(OUT_OF_RESOURCES, None, _comment(f"write failed: {exc.strerror}"))
        self.stored += 1
        log.info("stored %s", target)
        hook = self.config.on_stored
        if hook is not None:
            outcome = hook(target, request)
            if outcome is not None:
                await outcome
        return Response(0)


LAYOUT_FIELDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "CallingAETitle",
)


def validate_layout(layout: str) -> str:
    """Check a storage layout names only known fields and stays relative; return it."""
    try:
        sample = layout.format(**{name: "1.2.3" for name in LAYOUT_FIELDS})
    except (KeyError, IndexError, ValueError) as exc:
        raise DicomWireError(
            f"storage layout {layout!r} is invalid ({exc}); fields: {', '.join(LAYOUT_FIELDS)}"
        ) from None
    if not sample or Path(sample).is_absolute() or ".." in Path(sample).parts:
        raise DicomWireError(f"storage layout {layout!r} must be a relative path")
    return layout


def _comment(text: str) -> CommandSet:
    return {Tag.ErrorComment: text[:64]}


def _commit(partial: Path, target: Path, fsync: bool) -> None:
    """Make ``partial`` durable and move it to ``target`` atomically."""
    if fsync:
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, target)
    if fsync:
        try:
            fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            # Its name may not survive a crash and A700 is answered: a retry must not find
            # a file that looks stored (a duplicate to keep or reject).
            with contextlib.suppress(OSError):
                target.unlink()
            raise


# --------------------------------------------------------------------------- SCU


@dataclass(slots=True)
class FileOutcome:
    """How one file fared."""

    path: Path
    status: Status | None = None
    error: str | None = None
    attempts: int = 0
    #: The failure will not go away by trying again (e.g. a permanent rejection).
    permanent: bool = False


@dataclass(slots=True)
class StoreSummary:
    """Totals of a store run."""

    outcomes: list[FileOutcome] = field(default_factory=list)
    bytes_sent: int = 0
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return sum(1 for o in self.outcomes if o.status is not None and not o.status.is_failure)

    @property
    def warnings(self) -> int:
        return sum(
            1
            for o in self.outcomes
            if o.status is not None and o.status.category.value == "warning"
        )

    @property
    def failures(self) -> int:
        return sum(1 for o in self.outcomes if o.status is None or o.status.is_failure)

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes_sent / 1e6 / self.seconds if self.seconds > 0 else 0.0


def collect_files(paths: Iterable[str | Path]) -> tuple[list[FileInfo], list[FileOutcome]]:
    """Part 10 files under ``paths`` (directories recursively); unreadable ones as failures.

    Files come in path order, each once even when named twice (same device and inode).
    A file that is not DICOM is skipped quietly inside a directory and is a failure when
    named; symbolic links to directories are not followed (no loops).
    """
    infos: list[FileInfo] = []
    failures: list[FileOutcome] = []
    seen: set[tuple[int, int]] = set()
    for given in paths:
        path = Path(given)
        in_directory = path.is_dir()
        for candidate in _files_under(str(path)) if in_directory else [str(path)]:
            try:
                status = os.stat(candidate)
            except OSError:
                status = None
            if status is not None:
                identity = (status.st_dev, status.st_ino)
                if identity in seen:
                    continue  # the same file named twice is sent once
                seen.add(identity)
            try:
                infos.append(read_file_info(candidate))
            except Part10Error as exc:
                if in_directory and exc.reason == "not-dicom":
                    continue  # not a DICOM file inside a directory: skip quietly
                reason = str(exc).removeprefix(f"{candidate}: ")
                failures.append(FileOutcome(Path(candidate), error=reason, permanent=True))
    return infos, failures


def _files_under(directory: str) -> list[str]:
    """Regular files below ``directory``, depth first, each directory's entries by name."""
    found: list[str] = []
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as exc:
        log.warning("cannot list %s: %s", directory, exc.strerror or exc)
        return found
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                found.extend(_files_under(entry.path))
            elif entry.is_file():
                found.append(entry.path)
        except OSError:
            continue
    return found


def _context_keys(info: FileInfo) -> tuple[tuple[str, str], tuple[str, str]]:
    """The two contexts a file needs: its own transfer syntax, and uncompressed LE."""
    return (info.sop_class_uid, info.transfer_syntax), (info.sop_class_uid, "uncompressed")


def _contexts_for(infos: Sequence[FileInfo]) -> list[tuple[str, list[str]]]:
    """One context per (SOP class, transfer syntax) plus Explicit/Implicit LE per class."""
    exact: dict[tuple[str, str], None] = {}
    fallback: dict[str, None] = {}
    for info in infos:
        exact.setdefault((info.sop_class_uid, info.transfer_syntax))
        fallback.setdefault(info.sop_class_uid)
    contexts = [(sop_class, [syntax]) for sop_class, syntax in exact]
    contexts.extend(
        (sop_class, [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN])
        for sop_class in fallback
    )
    return contexts


def _batches(infos: list[FileInfo], limit: int = 128) -> list[list[FileInfo]]:
    """Split files so that each association proposes at most ``limit`` contexts."""
    batches: list[list[FileInfo]] = []
    current: list[FileInfo] = []
    keys: set[tuple[str, str]] = set()
    for info in infos:
        needed = set(_context_keys(info)) - keys
        if current and len(keys) + len(needed) > limit:
            batches.append(current)
            current, keys = [], set()
            needed = set(_context_keys(info))
        current.append(info)
        keys |= needed
    if current:
        batches.append(current)
    return batches


def _choose(session: DimseSession, info: FileInfo) -> tuple[PresentationContext, bool]:
    """The context to send ``info`` on, and whether its data set must be converted."""
    exact = session.negotiated.find_context(info.sop_class_uid, info.transfer_syntax)
    if exact is not None:
        return exact, False
    if info.transfer_syntax in UNCOMPRESSED_TRANSFER_SYNTAXES:
        for syntax in UNCOMPRESSED_TRANSFER_SYNTAXES:
            context = session.negotiated.find_context(info.sop_class_uid, syntax)
            if context is not None:
                return context, True
    name = storage_sop_classes().get(info.sop_class_uid, info.sop_class_uid)
    raise NoAcceptedContextError(
        f"the peer accepted no context for {name} in {info.transfer_syntax}"
        + (
            ""
            if info.transfer_syntax in UNCOMPRESSED_TRANSFER_SYNTAXES
            else " (compressed: not decompressed silently)"
        ),
        info.sop_class_uid,
        info.transfer_syntax,
    )


def _store_command_for(sop_class_uid: str, sop_instance_uid: str) -> CommandSet:
    return {
        Tag.CommandField: CommandField.C_STORE_RQ,
        Tag.AffectedSOPClassUID: sop_class_uid,
        Tag.AffectedSOPInstanceUID: sop_instance_uid,
        Tag.Priority: 0,
    }


def _store_command(info: FileInfo) -> CommandSet:
    return _store_command_for(info.sop_class_uid, info.sop_instance_uid)


async def _send_batch(
    session: DimseSession,
    infos: Sequence[FileInfo],
    outcomes: dict[Path, FileOutcome],
    summary: StoreSummary,
    progress: Callable[[], None],
) -> None:
    """Send files on one association, up to its window outstanding at once.

    Responses are settled in order, as soon as they are in, without a task per file: with
    one outstanding operation, file N's outcome is recorded just after file N+1 is sent.
    """
    in_flight: deque[tuple[FileInfo, Operation]] = deque()

    async def settle(info: FileInfo, operation: Operation) -> None:
        outcome = outcomes[info.path]
        try:
            response = await operation.wait()
            outcome.status = response.status
            outcome.error = None
            if not response.status.is_failure:
                summary.bytes_sent += info.dataset_length
        except DicomWireError as exc:
            outcome.error = str(exc)
        progress()

    for info in infos:
        outcome = outcomes[info.path]
        outcome.attempts += 1
        try:
            operation = await send_file(session, info)
        except DicomWireError as exc:
            outcome.error = str(exc)
            outcome.permanent = exc.permanent
            if not session.association.is_established:
                break
            progress()
            continue
        in_flight.append((info, operation))
        while in_flight and in_flight[0][1].done:
            await settle(*in_flight.popleft())
    while in_flight:
        await settle(*in_flight.popleft())


async def send_file(session: DimseSession, info: FileInfo) -> Operation:
    """Send the C-STORE-RQ for one Part 10 file; return its operation (response pending).

    The data set goes in the file's transfer syntax, streamed from disk when large, or
    converted when the peer accepted only another uncompressed one
    (:class:`~dicomwire.errors.NoAcceptedContextError` when it accepted neither).
    """
    context, convert = _choose(session, info)
    payload: bytes | FileSource
    if convert:
        payload = await asyncio.to_thread(_converted, info, context.transfer_syntax or "")
    else:
        source = FileSource(info.path, info.dataset_offset, info.dataset_length)
        # Read a small data set now, while the previous operation is still out.
        payload = source.read() if source.fits_in_memory() else source
    return await session.request(context.context_id, _store_command(info), payload)


async def store_file(session: DimseSession, info: FileInfo) -> Status:
    """C-STORE one Part 10 file on an open session; return the response status."""
    return (await (await send_file(session, info)).wait()).status


async def store_dataset(
    session: DimseSession,
    dataset: Dataset | bytes,
    *,
    sop_class_uid: str | None = None,
    sop_instance_uid: str | None = None,
    transfer_syntax: str | None = None,
) -> Status:
    """C-STORE one instance on an open session; return the response status.

    A pydicom Dataset is encoded in the transfer syntax of the context the peer accepted
    for its SOP class. Raw bytes need their SOP class, instance and transfer syntax; they
    are sent as they are, or converted when only another uncompressed syntax was accepted.
    """
    if not isinstance(dataset, (bytes, bytearray, memoryview)):  # a pydicom Dataset
        sop_class_uid = sop_class_uid or str(dataset.SOPClassUID)
        sop_instance_uid = sop_instance_uid or str(dataset.SOPInstanceUID)
        context = session.find_context(sop_class_uid)
        payload: bytes | Dataset = dataset
    else:
        if not (sop_class_uid and sop_instance_uid and transfer_syntax):
            raise DicomWireError(
                "raw data sets need sop_class_uid, sop_instance_uid and transfer_syntax"
            )
        info = FileInfo(Path(), sop_class_uid, sop_instance_uid, transfer_syntax, 0, len(dataset))
        context, convert = _choose(session, info)
        payload = dataset
        if convert:
            payload = await asyncio.to_thread(
                _recode,
                dataset,
                transfer_syntax,
                context.transfer_syntax or IMPLICIT_VR_LITTLE_ENDIAN,
            )
    command = _store_command_for(sop_class_uid, sop_instance_uid)
    operation = await session.request(context.context_id, command, payload)
    return (await operation.wait()).status


def _recode(data: bytes, source: str, target: str) -> bytes:
    return encode_dataset(decode_dataset(data, source), target)


def _converted(info: FileInfo, transfer_syntax: str) -> bytes:
    with open(info.path, "rb") as file:
        file.seek(info.dataset_offset)
        raw = file.read()
    return _recode(raw, info.transfer_syntax, transfer_syntax)


def _retryable(outcome: FileOutcome) -> bool:
    if outcome.permanent:
        return False
    if outcome.status is None:
        return outcome.error is not None
    return 0xA700 <= outcome.status <= 0xA7FF


async def store_files(
    host: str,
    port: int,
    paths: Iterable[str | Path],
    *,
    calling_ae_title: str = "DICOMWIRE",
    called_ae_title: str = "ANY-SCP",
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH,
    window: int = 1,
    associations: int = 1,
    retries: int = 2,
    timeouts: Timeouts | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    tls: TLSConfig | None = None,
) -> StoreSummary:
    """Send Part 10 files and directories; return per-file outcomes and totals.

    ``window`` > 1 proposes an asynchronous operations window; ``associations`` > 1 sends
    in parallel; transient failures (A7xx, a lost association) are retried ``retries`` times.
    """
    started = time.perf_counter()
    infos, failures = collect_files(paths)
    summary = StoreSummary()
    outcomes: dict[Path, FileOutcome] = {info.path: FileOutcome(info.path) for info in infos}
    total = len(infos)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, summary.bytes_sent)

    pending = list(infos)
    for attempt in range(retries + 1):
        if not pending:
            break
        lanes = [pending[i::associations] for i in range(max(1, associations))]

        async def lane(files: list[FileInfo]) -> None:
            for batch in _batches(files):
                config = RequestorConfig(
                    calling_ae_title,
                    called_ae_title,
                    _contexts_for(batch),
                    max_pdu_length=max_pdu_length,
                    maximum_invoked=window if window != 1 else None,
                    maximum_performed=1 if window != 1 else None,
                )
                try:
                    async with open_session(
                        host, port, config, timeouts=timeouts, tls=tls
                    ) as session:
                        await _send_batch(session, batch, outcomes, summary, tick)
                except DicomWireError as exc:
                    permanent = exc.permanent
                    for info in batch:
                        outcome = outcomes[info.path]
                        if outcome.status is None and outcome.error is None:
                            outcome.error = str(exc)
                            outcome.attempts += 1
                            outcome.permanent = permanent

        await asyncio.gather(*(lane(files) for files in lanes if files))
        pending = [info for info in pending if _retryable(outcomes[info.path])]
        if pending and attempt < retries:
            log.warning("retrying %d files after transient failures", len(pending))
            for info in pending:
                done -= 1
                outcomes[info.path].status = None
                outcomes[info.path].error = None
            await asyncio.sleep(0.5 * (attempt + 1))
    summary.outcomes = list(outcomes.values()) + failures
    summary.seconds = time.perf_counter() - started
    return summary
