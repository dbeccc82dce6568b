"""Storage SCP: C-STORE received straight into Part 10 files (PS3.4 Annex B, PS3.7 §9.1.1).

Every received data set streams into a Part 10 file (PS3.10 §7.1: file meta written first,
then the data set as received, never decoded), under a temporary name in the storage root
(``.incoming/*.part``). As it streams, its element boundaries are followed and its header
UIDs kept (:mod:`..completeness`: is it whole? SOP Class/Instance UID check, Study/Series
UIDs for the path). It is fsync'd, renamed into place, and only then is success answered.
With ``discard`` every check is made the same way; only the file is not written.

With an :class:`~dicomwire.services.index.Index` each stored instance is indexed in the
same step that makes its file visible: its header (the first bytes of the data set, kept
as they streamed in; the file is not read again) becomes an index entry; its row and an
intent are written in one transaction before the rename and confirmed after it, so a crash
leaves no file without a row and no row without a file once the index is reconciled at
start-up (docs/node.md). An index that cannot be written answers A700 and keeps no file.

Statuses the SCP answers (PS3.4 Table B.2-1, PS3.7 Annex C): 0000 success; A700 out of
resources (disk full, write error); A900 data set does not match SOP class (its SOP
Class/Instance UID differ from the command's); C000 cannot understand (the data set ends
inside an element, or has no SOP UIDs); 0122 SOP class not supported (the command's is not
its presentation context's); 0111 duplicate SOP instance (duplicates policy "reject").
Each refusal is logged at WARNING with the peer, the instance and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import logging
import os
import re
import secrets
import string
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ...dimse.commands import CommandSet, Tag
from ...dimse.primitives import DimseResponse
from ...dimse.session import DimseSession, Request, Response, SinkFactory
from ...dimse.status import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    DUPLICATE_SOP_INSTANCE,
    OUT_OF_RESOURCES,
    SOP_CLASS_NOT_SUPPORTED,
    ServiceClass,
    Status,
)
from ...dimse.streams import DataSetSink
from ...errors import ConfigError, DataSetError, DicomWireError, IndexUnavailableError
from ...uids import IMPLICIT_VR_LITTLE_ENDIAN
from ...ul.negotiation import PresentationContext
from ..completeness import CompletenessCheck, ascii_text
from ..index import (
    INDEXED_TAGS,
    Index,
    IndexEntry,
    entry_from_file,
    entry_from_walk,
    text_value,
)
from ..part10 import build_file_meta
from .backend import LOCAL_STORAGE, StorageBackend
from .header import HEAD_BYTES, HEADER_TAGS
from .sop_classes import STORAGE_TRANSFER_SYNTAXES

__all__ = [
    "AssociationTally",
    "PARTIAL_SUFFIX",
    "CANNOT_UNDERSTAND",
    "DATASET_MISMATCH",
    "DEFAULT_LAYOUT",
    "DUPLICATE_SOP_INSTANCE",
    "LAYOUT_FIELDS",
    "OUT_OF_RESOURCES",
    "Duplicates",
    "StorageConfig",
    "StorageSCP",
    "StoreResult",
    "StoredInstance",
    "peer_text",
    "prepare_root",
    "validate_layout",
]

log = logging.getLogger("dicomwire.services.storage.scp")


Duplicates = Literal["overwrite", "keep", "reject"]
DEFAULT_LAYOUT = "{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"
#: A data set being received is written to ``<root>/.incoming/<random>.part`` first.
PARTIAL_SUFFIX = ".part"


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

    #: The temporary file holding it (None when discarding, after a write error, or once
    #: renamed into place).
    path: Path | None
    length: int
    error: OSError | None = None
    dataset_offset: int = 0
    #: Why the data set is not whole (it ends inside an element), or None.
    incomplete: str | None = None
    #: Its SOP Class/Instance, Study and Series Instance UIDs (:data:`.header.HEADER_TAGS`).
    header: dict[int, str] = field(default_factory=dict)
    #: The data set's first bytes (up to :data:`.header.HEAD_BYTES`) when it is indexed.
    head: bytes = b""
    #: The walk that checked it: the index columns' values and the header's layout.
    walk: CompletenessCheck | None = None


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """One instance just stored, as the SCP read it while it streamed in: what an
    observer (:meth:`StorageSCP.observe`, e.g. the audit trail) needs without reading
    the file again."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    patient_id: str
    patient_name: str


@dataclass(slots=True)
class AssociationTally:
    """What one association brought: instances stored (or accepted when discarding),
    refused, and the data set bytes received."""

    stored: int = 0
    refused: int = 0
    bytes: int = 0


class _ReceivedDataSet:
    """Take a data set as it streams in: follow its element boundaries and read its header
    on the way (:class:`~dicomwire.services.completeness.CompletenessCheck`) and, unless
    ``path`` is None (``--discard``), write it as a Part 10 file under a temporary name;
    remember a write error, not raise it. With ``keep_head`` its first bytes are kept for
    the index entry (one copy of at most :data:`.header.HEAD_BYTES`), and the walk notes
    the header's layout for it."""

    __slots__ = (
        "_check",
        "_fd",
        "_head",
        "_unwritten",
        "dataset_offset",
        "error",
        "length",
        "path",
    )

    def __init__(
        self,
        path: Path | None,
        meta: bytes,
        transfer_syntax: str,
        keep_head: bool = False,
        capture: frozenset[int] = frozenset(HEADER_TAGS),
    ) -> None:
        self.path = path
        self.dataset_offset = len(meta)
        self.length = 0
        self.error: OSError | None = None
        self._check = CompletenessCheck(transfer_syntax, capture, layout=keep_head)
        self._head = bytearray() if keep_head else None
        #: The file meta, written with the first fragment (a small data set: one write).
        self._unwritten = meta
        self._fd: int | None = None
        if path is None:
            return
        try:  # unbuffered: each fragment is written as it comes, in one system call
            try:
                self._fd = os.open(path, _CREATE, 0o666)
            except FileNotFoundError:  # .incoming removed while running: made again
                path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(path, _CREATE, 0o666)
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.error = exc
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()

    def write(self, data: memoryview) -> None:
        self.length += len(data)
        self._check.feed(data)
        head = self._head
        if head is not None and len(head) < HEAD_BYTES:
            head += data[: HEAD_BYTES - len(head)]
        if self._fd is None:
            return  # discarding, or after an error: swallow the rest of the data set
        try:
            if self._unwritten:
                _write_all(self._fd, self._unwritten + data)
                self._unwritten = b""
            else:
                _write_all(self._fd, data)
        except OSError as exc:
            self._failed(exc)

    async def close(self) -> StoreResult:
        if self._fd is not None:
            try:
                if self._unwritten:  # an empty data set: the file meta alone
                    _write_all(self._fd, self._unwritten)
                os.close(self._fd)
            except OSError as exc:
                self._fd = None  # closed even when close() fails (POSIX: do not retry)
                self._failed(exc)
            self._fd = None
        path = None if self.error else self.path
        check = self._check
        raw = check.raw
        return StoreResult(
            path,
            self.length,
            self.error,
            self.dataset_offset,
            check.problem(),
            {tag: ascii_text(raw[tag]) for tag in HEADER_TAGS if tag in raw},
            bytes(self._head) if self._head is not None else b"",
            check,
        )

    async def abort(self) -> None:
        if self.path is None:
            return
        self._failed(OSError("association ended before the data set was complete"))


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` (a regular file takes it whole; a short write continues)."""
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)
        while written < len(view):
            written += os.write(fd, view[written:])


#: What the SCP reads of each data set it keeps: the index columns (the header UIDs among
#: them) and the patient, for observers.
_STORED_TAGS = INDEXED_TAGS | frozenset(HEADER_TAGS)

_SAFE_COMPONENT = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")


def _path_component(value: str | None) -> str:
    """``value`` if it is a safe file name, else a digest of it (never '..' or '/')."""
    if value and _SAFE_COMPONENT.fullmatch(value) and ".." not in value:
        return value
    digest = hashlib.sha256((value or "").encode("utf-8", "replace")).hexdigest()[:16]
    return f"unknown-{digest}" if not value else f"invalid-{digest}"


class StorageSCP:
    """C-STORE SCP: a sink factory and a handler to register with a :class:`DimseSession`."""

    def __init__(
        self,
        config: StorageConfig,
        index: Index | None = None,
        backend: StorageBackend = LOCAL_STORAGE,
    ) -> None:
        self.config = config
        #: Where each stored instance is indexed (None: files only).
        self.index = index
        #: Where the files go (:mod:`.backend`); the index checks them through it too.
        self.backend = backend
        if index is not None:
            index.backend = backend
        self.root = config.root
        self._resolved_root = config.root.resolve()
        self._inside: dict[str, bool] = {}
        #: The layout's fields: only those are made safe for each instance.
        self._layout_fields = tuple(
            name for _, name, _, _ in string.Formatter().parse(config.layout) if name
        )
        self._incoming = config.root / ".incoming"
        #: Temporary names: a random prefix drawn once (unique across the processes and
        #: hosts sharing the storage; ``serve --workers`` makes its SCPs after the fork)
        #: and a counter, not a random draw per instance.
        self._partial_prefix = f"{secrets.token_hex(8)}-{os.getpid()}-"
        self._partial_numbers = itertools.count()
        self.stored = 0
        self._tallies: weakref.WeakKeyDictionary[DimseSession, AssociationTally] = (
            weakref.WeakKeyDictionary()
        )
        self._observers: list[Callable[[StoredInstance, Request], None]] = []

    def observe(self, observer: Callable[[StoredInstance, Request], None]) -> None:
        """Call ``observer`` after each instance is stored (before ``on_stored``), with
        what the SCP read of it: the file is not read again. It must not block."""
        self._observers.append(observer)

    def tally(self, session: DimseSession) -> AssociationTally:
        """What ``session``'s association brought so far (for its summary line)."""
        tally = self._tallies.get(session)
        if tally is None:
            tally = self._tallies[session] = AssociationTally()
        return tally

    def sink_for(self, session: DimseSession) -> SinkFactory:
        """The C-STORE sink factory for one association (its AE is the Source AE Title)."""

        def factory(command: CommandSet, context: PresentationContext) -> DataSetSink:
            transfer_syntax = context.transfer_syntax or IMPLICIT_VR_LITTLE_ENDIAN
            if self.config.discard:  # every check is made; only the write is skipped
                return _ReceivedDataSet(None, b"", transfer_syntax)
            meta = build_file_meta(
                str(command.get(Tag.AffectedSOPClassUID) or ""),
                str(command.get(Tag.AffectedSOPInstanceUID) or ""),
                transfer_syntax,
                session.negotiated.remote_ae_title,
            )
            name = f"{self._partial_prefix}{next(self._partial_numbers)}{PARTIAL_SUFFIX}"
            path = self._incoming / name
            indexed = self.index is not None
            return _ReceivedDataSet(path, meta, transfer_syntax, indexed, _STORED_TAGS)

        return factory

    def _inside_root(self, directory: str) -> bool:
        """Whether ``directory`` (relative to the root) resolves inside the storage root
        (a symlink could lead out).

        Resolving costs a system call per path component, and a study's instances share
        their directories: answers are kept for the directories seen last.
        """
        known = self._inside.get(directory)
        if known is None:
            if len(self._inside) >= 4096:
                self._inside.clear()
            resolved = (self.root / directory).resolve()
            known = resolved.is_relative_to(self._resolved_root)
            self._inside[directory] = known
        return known

    async def handle(self, request: Request) -> Response | DimseResponse:
        """The C-STORE-RQ handler: check, place and make durable the received file.

        With ``discard`` every check is made the same way; only the file is not kept.
        """
        result = request.message.dataset
        if not isinstance(result, StoreResult):
            # Data set arrived in memory (no storage sink registered): write it now.
            raise DicomWireError("StorageSCP.handle needs StorageSCP.sink_for() as sink")
        tally = self.tally(request.session)
        tally.bytes += result.length
        if result.error is not None:
            log.error("storing failed: %s", result.error)
            tally.refused += 1
            return _refuse(request, OUT_OF_RESOURCES, f"write failed: {result.error}")
        try:
            response = await self._place(request, result.path, result)
        finally:
            if result.path is not None:  # not placed (refused, a duplicate kept, an error)
                with contextlib.suppress(OSError):
                    result.path.unlink()
        if response.status and Status(response.status).is_failure:  # 0: stored
            tally.refused += 1
        else:
            tally.stored += 1
        return response

    async def _place(
        self, request: Request, partial: Path | None, stored: StoreResult
    ) -> Response | DimseResponse:
        command = request.command
        sop_class = str(command.get(Tag.AffectedSOPClassUID) or "")
        instance = str(command.get(Tag.AffectedSOPInstanceUID) or "")
        context_class = request.context.abstract_syntax
        if context_class and context_class != sop_class:
            return _refuse(
                request,
                SOP_CLASS_NOT_SUPPORTED,
                f"SOP Class {sop_class} is not that of context {request.context.context_id}",
            )
        if stored.incomplete is not None:
            return _refuse(request, CANNOT_UNDERSTAND, stored.incomplete)
        header = stored.header  # read as the data set streamed in: whole, every syntax
        if 0x00080016 not in header and 0x00080018 not in header:
            # Nothing parseable where a composite instance starts: not a data set at all.
            return _refuse(request, CANNOT_UNDERSTAND, "no SOP Class/Instance UID in the data set")
        if header.get(0x00080016) != sop_class or header.get(0x00080018) != instance:
            return _refuse(
                request,
                DATASET_MISMATCH,
                "SOP Class/Instance UID in the data set differ from the command",
            )
        if partial is None:
            return Response(0)  # discarding: all checked, nothing to keep
        named = {
            "StudyInstanceUID": header.get(0x0020000D),
            "SeriesInstanceUID": header.get(0x0020000E),
            "SOPInstanceUID": instance,
            "SOPClassUID": sop_class,
            "CallingAETitle": request.negotiated.remote_ae_title,
        }
        relative = self.config.layout.format(
            **{name: _path_component(named[name]) for name in self._layout_fields}
        )
        if not self._inside_root(relative.rpartition("/")[0]):
            return _refuse(request, CANNOT_UNDERSTAND, "storage path escapes the root")
        target = self.root / relative
        index, entry, previous = self.index, None, None
        # Overwriting, a duplicate changes nothing here: no lookup, no stat. The index
        # finds an earlier copy under another path itself, in the addition's transaction.
        overwrite = self.config.duplicates == "overwrite"
        if index is not None:
            transfer_syntax = request.context.transfer_syntax or IMPLICIT_VR_LITTLE_ENDIAN
            try:
                entry = _index_entry(stored, partial, transfer_syntax)
                if not overwrite:
                    previous = index.locate(instance)
            except DataSetError as exc:
                return _refuse(request, CANNOT_UNDERSTAND, f"cannot index: {exc}")
            except IndexUnavailableError as exc:
                log.error("cannot store %s: %s", target, exc)
                return _refuse(request, OUT_OF_RESOURCES, "index unavailable")
        storage = self.backend
        if not overwrite and (
            storage.exists(target)
            or (previous is not None and previous != target and storage.exists(previous))
        ):
            if self.config.duplicates == "keep":
                log.debug("duplicate %s kept as first received", instance)
                return Response(0)
            return _refuse(request, DUPLICATE_SOP_INSTANCE, "duplicate SOP instance")
        fsync = self.config.fsync
        try:
            if index is None or entry is None:
                if fsync:  # fsync blocks for milliseconds: not on the event loop
                    await asyncio.to_thread(storage.place, partial, target, durable=True)
                else:
                    storage.place(partial, target, durable=False)
            else:
                size = stored.dataset_offset + stored.length
                replaces = previous if previous is not None and previous != target else None
                place = functools.partial(
                    _commit_indexed, storage, partial, target, fsync, index, entry, overwrite
                )
                if fsync:  # the index's durable intent and the fsyncs, off the event loop
                    await asyncio.to_thread(place, transfer_syntax, size, replaces)
                else:
                    place(transfer_syntax, size, replaces)
        except OSError as exc:
            log.error("storing %s failed: %s", target, exc)
            return _refuse(request, OUT_OF_RESOURCES, f"write failed: {exc.strerror}")
        except IndexUnavailableError as exc:
            log.error("storing %s failed, no file kept: %s", target, exc)
            return _refuse(request, OUT_OF_RESOURCES, "index write failed")
        stored.path = None  # renamed into place: no temporary file left to remove
        self.stored += 1
        log.debug("stored %s", target)
        if self._observers:
            raw = stored.walk.raw if stored.walk is not None else {}
            described = StoredInstance(
                target,
                sop_class,
                instance,
                header.get(0x0020000D, ""),
                text_value(raw, 0x00100020),
                text_value(raw, 0x00100010),
            )
            for observer in self._observers:
                observer(described, request)
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


def _refuse(request: Request, status: int, comment: str) -> DimseResponse:
    """A C-STORE-RSP with a failure status and its Error Comment (at most 64 characters).

    Every refusal is logged at WARNING (shown by default) with who sent what and why.
    """
    log.warning(
        "refused C-STORE of %s from %s at %s: %s: %s",
        request.command.get(Tag.AffectedSOPInstanceUID) or "(no SOP Instance UID)",
        request.negotiated.remote_ae_title,
        peer_text(request.session.association.peer_address),
        Status(status).meaning_for(ServiceClass.STORAGE) + f" (0x{status:04X})",
        comment,
    )
    return request.primitive.response(status, error_comment=comment[:64])


def peer_text(address: tuple[str, int] | None) -> str:
    """``host:port`` of a peer (``[v6]:port``), for log lines."""
    if address is None:
        return "an unknown address"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _index_entry(stored: StoreResult, partial: Path, transfer_syntax: str) -> IndexEntry:
    """The index entry of a received data set: from what its walk found and the bytes kept
    as it streamed in, or (a header longer than them, a deflated or big endian data set)
    read from its file."""
    walk = stored.walk
    entry = entry_from_walk(stored.head, walk, transfer_syntax) if walk is not None else None
    return entry if entry is not None else entry_from_file(partial)


def _commit_indexed(
    storage: StorageBackend,
    partial: Path,
    target: Path,
    fsync: bool,
    index: Index,
    entry: IndexEntry,
    find_replaced: bool,
    transfer_syntax: str,
    size: int,
    replaces: Path | None,
) -> None:
    """:meth:`StorageBackend.place` with the index: row and intent, the file made visible,
    confirmed.

    A failure leaves neither: the intent is cancelled (the row then describes the file
    that is there, or goes), or the file placed is removed again when it cannot be
    confirmed. A crash leaves the intent to :meth:`Index.reconcile`. ``replaces``: an
    earlier copy under another path, removed (``find_replaced``: the index looks it up).
    """
    token = index.prepare_add(
        entry,
        target,
        transfer_syntax,
        size,
        staged=partial,
        replaces=replaces,
        durable=fsync,
        find_replaced=find_replaced,
    )
    try:
        storage.place(partial, target, durable=fsync)
    except BaseException:
        _cancel(index, token)
        raise
    try:
        index.commit_add(token)
    except BaseException:
        with contextlib.suppress(OSError):
            storage.remove(target)  # visible without its row: not stored, as A700 says
        _cancel(index, token)
        raise


def _cancel(index: Index, token: int) -> None:
    try:
        index.cancel_add(token)
    except IndexUnavailableError as exc:  # reconcile settles it at the next start
        log.error("cannot cancel index intent %d: %s", token, exc)


def prepare_root(config: StorageConfig) -> int:
    """Make the storage root ready before the node listens; the stale files removed.

    The root (and its ``.incoming``) is created if missing; a path that is not a directory,
    or a directory the process cannot write (checked by creating and removing a probe file
    in ``.incoming``), is a :class:`~dicomwire.errors.ConfigError` naming it, so the node
    refuses to start instead of answering A700 to every instance. ``.part`` files left in
    ``.incoming`` by a crash (never answered success) are removed: their count is returned.
    """
    root = config.root
    incoming = root / ".incoming"
    if root.exists() and not root.is_dir():
        raise ConfigError(f"storage directory {root} is not a directory", key="storage.root")
    try:
        incoming.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create storage directory {incoming}: {exc.strerror or exc}",
            key="storage.root",
        ) from None
    probe = incoming / f"probe-{secrets.token_hex(16)}.tmp"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"storage directory {root} is not writable: {exc.strerror or exc}",
            key="storage.root",
        ) from None
    removed = 0
    for stale in incoming.glob(f"*{PARTIAL_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
            removed += 1
    return removed
