"""Storage SCU: send Part 10 files and data sets with C-STORE (PS3.4 Annex B, PS3.7 §9.1.1).

Each file is checked before it goes on the wire (:func:`inspect_file`: its file meta, the
SOP Class/Instance UIDs of its data set, its element headers walked without reading pixel
data), then sent from disk in the transfer syntax it is in, converted between uncompressed
transfer syntaxes when the peer accepted only another one, never silently decompressed.
When the peer aborts, the files not yet answered go on a new association (PS3.8 §7.3).

The core is public so that every sender shares it (``dicomwire store``, and the C-MOVE and
C-GET SCPs' sub-operations): :func:`collect_files` lists files, :func:`plan_contexts`
proposes presentation contexts for them, :func:`batch_by_contexts` splits them so that
each association proposes at most 128 contexts (PS3.8 §9.3.2.2: context IDs are odd
numbers 1-255), :func:`choose_context` picks the accepted context for one file, and
:func:`send_files` sends them on an open session with its asynchronous operations window.
:func:`store_files` puts them together with associations, parallel lanes and bounded retries.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from ...dimse.commands import CommandSet, Tag
from ...dimse.datasets import decode_dataset, encode_dataset
from ...dimse.primitives import CStoreRQ
from ...dimse.session import DimseSession, Operation, open_session
from ...dimse.status import Status
from ...dimse.streams import FileSource, pread_range
from ...errors import DataSetError, DicomWireError, NoAcceptedContextError
from ...uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
)
from ...ul.association import Timeouts
from ...ul.negotiation import (
    DEFAULT_MAX_PDU_LENGTH,
    NegotiatedAssociation,
    PresentationContext,
    RequestorConfig,
)
from ...ul.tls import TLSConfig
from ..elements import UNDEFINED_LENGTH, iter_elements
from ..part10 import FileInfo, Part10Error, read_file_head
from .header import HEAD_BYTES, header_from_head, parse_header, read_header
from .sop_classes import storage_sop_classes

if TYPE_CHECKING:  # pydicom is imported only where a Dataset is needed
    from pydicom import Dataset

__all__ = [
    "MAX_CONTEXTS",
    "FileOutcome",
    "StoreSummary",
    "batch_by_contexts",
    "choose_context",
    "collect_files",
    "inspect_file",
    "plan_contexts",
    "send_file",
    "send_files",
    "store_dataset",
    "store_file",
    "store_files",
]

log = logging.getLogger("dicomwire.services.storage.scu")

#: Presentation contexts one A-ASSOCIATE-RQ can propose: IDs are odd, 1 to 255 (PS3.8 §9.3.2.2).
MAX_CONTEXTS = 128


@dataclass(slots=True)
class FileOutcome:
    """How one file fared: sent (a status), refused (a failure status), or not sent (why)."""

    path: Path
    status: Status | None = None
    error: str | None = None
    attempts: int = 0
    #: The failure will not go away by trying again (e.g. a permanent rejection).
    permanent: bool = False
    #: The Error Comment (0000,0902) the peer sent with its status, if any.
    error_comment: str | None = None
    #: Not sent and not a failure: a file that is not DICOM, found inside a directory.
    skipped: bool = False
    #: What was decided about the file (see :attr:`FileInfo.note`).
    note: str | None = None
    #: Its C-STORE-RQ went on the wire at least once (a failure is then "no answer").
    reached_peer: bool = False

    @property
    def delivered(self) -> bool:
        """The peer answered success or a warning: the instance is stored."""
        return self.status is not None and not self.status.is_failure

    @property
    def kind(self) -> str:
        """``sent``, ``warning`` (sent, with a warning status), ``failed`` or ``skipped``."""
        if self.skipped:
            return "skipped"
        if not self.delivered:
            return "failed"
        return "warning" if self.status is not None and not self.status.is_success else "sent"

    def describe(self) -> str:
        """What happened to the file and why, for its outcome line (after its :attr:`kind`).

        A status with its meaning and the peer's Error Comment; a file not sent with the
        reason; never a bare ``None``.
        """
        if self.skipped:
            return self.error or "not a DICOM file"
        if self.status is not None:
            text = f"status {int(self.status):04X}H ({self.status.meaning_for('storage')})"
            if self.status.is_failure:
                text = f"refused by the peer, {text}"
            if self.error_comment:
                text += f": {self.error_comment}"
        elif not self.reached_peer:  # refused before the wire, or no association
            text = f"not sent: {self.error or 'never tried'}"
        else:  # sent and never answered: why
            text = f"no answer: {self.error or 'the association ended'}"
        if self.attempts > 1:
            text += f" (after {self.attempts} attempts)"
        return text + (f"; {self.note}" if self.note else "")


@dataclass(slots=True)
class StoreSummary:
    """Totals of a store run."""

    outcomes: list[FileOutcome] = field(default_factory=list)
    bytes_sent: int = 0
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return sum(1 for o in self.outcomes if o.delivered)

    @property
    def warnings(self) -> int:
        return sum(
            1
            for o in self.outcomes
            if o.status is not None and o.delivered and not o.status.is_success
        )

    @property
    def skipped(self) -> int:
        return sum(1 for o in self.outcomes if o.skipped)

    @property
    def failures(self) -> int:
        return sum(1 for o in self.outcomes if not o.delivered and not o.skipped)

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes_sent / 1e6 / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------- inspection

#: SOP Class UID (0008,0016), SOP Instance UID (0008,0018): what the C-STORE-RQ names.
_SOP_CLASS_UID, _SOP_INSTANCE_UID = 0x00080016, 0x00080018
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
#: How much is read at a time to walk the element headers of a data set on disk.
_WALK_WINDOW = 16 << 10
#: What is read first after skipping a long value: enough for a few element headers.
_AFTER_JUMP_WINDOW = 512
#: A deflated data set is inflated whole to be checked and named only up to this size.
_DEFLATED_LIMIT = 256 << 20
#: Explicit VRs (PS3.5 Table 6.2-1): how a bare data set's first element tells its syntax.
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI "
    b"UL UN UR US UT UV".split()
)


def inspect_file(path: str | Path, *, without_meta: bool = False) -> FileInfo:
    """What a sender needs to know of one file, checked before it goes on the wire.

    The file meta (PS3.10 §7.1) says where the data set starts and in which transfer
    syntax; the SOP Class and Instance UIDs are the data set's own (0008,0016) and
    (0008,0018), as DCMTK storescu takes them: where the file meta's Media Storage UIDs
    differ, :attr:`FileInfo.note` says so. The data set's element headers are walked
    (values skipped by their length, pixel data never read) so that a file cut inside an
    element, or an encapsulated fragment of odd length (PS3.5 §A.4), is refused here with
    the reason rather than aborted by the peer. ``without_meta`` also takes a file with no
    preamble and file meta as a bare data set, its transfer syntax guessed from its first
    element, as DCMTK does. Raises :class:`Part10Error` (permanent) with the reason.
    """
    head = b""
    try:
        info, head = read_file_head(path)
        from_meta = True
    except Part10Error as exc:
        if not (without_meta and exc.reason == "not-dicom"):
            raise
        info, from_meta = _bare_dataset_info(Path(path)), False
    try:
        header, walked = _header_and_walk(info, head)
    except DataSetError as exc:
        raise Part10Error(f"{info.path}: {exc}", "bad-dataset") from exc
    if walked is not None:
        raise Part10Error(f"{info.path}: {walked}", "bad-dataset")
    sop_class, sop_instance = header.get(_SOP_CLASS_UID), header.get(_SOP_INSTANCE_UID)
    if not sop_class or not sop_instance:
        raise Part10Error(
            f"{info.path}: the data set has no SOP Class UID or SOP Instance UID", "bad-dataset"
        )
    disagreements = []
    if from_meta and sop_class != info.sop_class_uid:
        disagreements.append(f"SOP Class UID {info.sop_class_uid} in the file meta")
    if from_meta and sop_instance != info.sop_instance_uid:
        disagreements.append(f"SOP Instance UID {info.sop_instance_uid} in the file meta")
    note = None
    if disagreements:
        note = f"sent as the data set's {sop_class} / {sop_instance}, not the " + " and ".join(
            disagreements
        )
        log.warning("%s: %s", info.path, note)
    elif not from_meta:
        note = f"no file meta: sent as a bare data set in {info.transfer_syntax} (guessed)"
    odd_deflated = (
        info.transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
        and (info.size - info.dataset_offset) % 2 == 1
    )
    return FileInfo(
        info.path,
        sop_class,
        sop_instance,
        info.transfer_syntax,
        info.dataset_offset,
        info.size,
        note=note,
        pad=odd_deflated,
    )


def _bare_dataset_info(path: Path) -> FileInfo:
    """A file without file meta read as a bare data set, its syntax guessed from its start.

    The first element's group must be at most 0008 (a data set starts with its identifying
    elements); two VR letters after its tag mean Explicit VR, else Implicit VR; a group
    that reads as such only in big endian means Explicit VR Big Endian.
    """
    try:
        with open(path, "rb") as file:
            head = file.read(8)
            size = os.fstat(file.fileno()).st_size
    except OSError as exc:
        raise Part10Error(f"{path}: {exc.strerror or exc}", "unreadable") from exc
    not_dicom = Part10Error(
        f"{path}: not a DICOM file (no DICM prefix, nor a data set without file meta)",
        "not-dicom",
    )
    if len(head) < 8:
        raise not_dicom
    explicit = head[4:6] in _VRS
    if 0x0002 <= int.from_bytes(head[0:2], "little") <= 0x0008:
        syntax = EXPLICIT_VR_LITTLE_ENDIAN if explicit else IMPLICIT_VR_LITTLE_ENDIAN
    elif explicit and 0x0002 <= int.from_bytes(head[0:2], "big") <= 0x0008:
        syntax = EXPLICIT_VR_BIG_ENDIAN
    else:
        raise not_dicom
    return FileInfo(path, "", "", syntax, 0, size)


def _header_and_walk(info: FileInfo, head: bytes = b"") -> tuple[dict[int, str], str | None]:
    """The data set's header (:mod:`.header`) and what its walk found wrong, if anything.

    ``head`` holds the data set's first bytes when they were read with the file meta: the
    walk starts from them and reads the file only past them (never the pixel data), and
    takes the SOP Class and Instance UIDs as it passes them; :mod:`.header` reads them
    only when the walk could not (big endian, a value cut by the first read).
    """
    syntax, length = info.transfer_syntax, info.size - info.dataset_offset
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        if length > _DEFLATED_LIMIT:  # too big to check here: named by the header reader
            return read_header(info.path, info.dataset_offset, syntax), None
        with open(info.path, "rb") as file:
            file.seek(info.dataset_offset)
            deflated = file.read()
        try:
            inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(deflated)
        except zlib.error as exc:
            raise DataSetError(f"the deflated data set cannot be inflated: {exc}") from exc
        header = parse_header(BytesIO(inflated), EXPLICIT_VR_LITTLE_ENDIAN)
        return header, _walk(lambda at, size: inflated[at : at + size], len(inflated), False)
    if syntax == EXPLICIT_VR_BIG_ENDIAN:  # the scanner reads little endian only
        return read_header(info.path, info.dataset_offset, syntax), None
    reader = _DataSetReader(info, head)
    try:
        found: dict[int, bytes] = {}
        walked = _walk(reader.read, length, syntax == IMPLICIT_VR_LITTLE_ENDIAN, found)
        if len(found) == len(_NAMING_TAGS):
            return {tag: _uid_text(raw) for tag, raw in found.items()}, walked
        # Not met at the top level of the data set (or cut by a read): as the SCP reads it.
        first = reader.first(min(length, HEAD_BYTES))
        header = header_from_head(first, length, syntax) or read_header(
            info.path, info.dataset_offset, syntax
        )
        return header, walked
    except OSError as exc:
        raise DataSetError(f"cannot read the data set: {exc.strerror or exc}") from exc
    finally:
        reader.close()


#: What the C-STORE-RQ names, taken from the data set as it is walked.
_NAMING_TAGS = frozenset((_SOP_CLASS_UID, _SOP_INSTANCE_UID))


def _uid_text(raw: bytes) -> str:
    return raw.decode("ascii", "replace").rstrip("\x00 ")


class _DataSetReader:
    """Ranges of a file's data set: from the bytes read with its file meta, else the file.

    The file is opened only when the walk goes past those bytes (a long header, a value
    after the pixel data), once, and closed by :meth:`close`.
    """

    __slots__ = ("_fd", "head", "info", "length")

    def __init__(self, info: FileInfo, head: bytes) -> None:
        self.info = info
        self.head = head
        self.length = info.size - info.dataset_offset
        self._fd: int | None = None

    def read(self, at: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``at``: fewer when the first bytes end before that,
        but always a few element headers' worth, or up to the end of the data set."""
        head = self.head
        if at < len(head) and (len(head) - at >= _AFTER_JUMP_WINDOW or len(head) >= self.length):
            return head[at : at + size]
        return self._pread(at, size)

    def first(self, size: int) -> bytes:
        """The data set's first ``size`` bytes (fewer only where it ends)."""
        if len(self.head) >= size:
            return self.head[:size]
        return self._pread(0, size)

    def _pread(self, at: int, size: int) -> bytes:
        if self._fd is None:
            self._fd = os.open(self.info.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        return pread_range(self._fd, self.info.dataset_offset + at, min(size, self.length - at))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _walk(
    read: Callable[[int, int], bytes],
    length: int,
    implicit: bool,
    found: dict[int, bytes] | None = None,
) -> str | None:
    """Walk every element header of a data set of ``length`` bytes (PS3.5 §7.1, §7.5).

    Values are skipped by their length with the shared scanner (:func:`..elements
    .iter_elements`), a window of the data at a time; sequences and encapsulated pixel
    data of undefined length are entered and must end by their delimiters. Returns what
    is wrong (the data ends inside an element, an encapsulated fragment has an odd
    length), or None: also when the walk meets what it does not follow (an undefined
    length UN, whose content is Implicit VR), which is left to the peer. ``found``
    receives the raw values of the top-level :data:`_NAMING_TAGS` met on the way.
    """
    position, want = 0, _WALK_WINDOW
    open_values: list[int] = []  # the tags of the undefined-length values we are inside
    while position < length:
        origin, window = position, read(position, want)
        moved, want = False, _WALK_WINDOW
        for tag, vr, start, size in iter_elements(window, implicit=implicit, partial=True):
            at = origin + start
            if size == UNDEFINED_LENGTH:
                if vr == b"UN":
                    return None
                open_values.append(tag)
                position, moved = at, True
                break
            top_level_name = tag in _NAMING_TAGS and not open_values
            if top_level_name and found is not None and start + size <= len(window):
                found[tag] = window[start : start + size]
            if tag in (_ITEM_END, _SEQUENCE_END):
                if not open_values:
                    return f"a delimiter at byte {at - 8} closes nothing"
                open_values.pop()
            elif tag == _ITEM and open_values and open_values[-1] == _PIXEL_DATA and size % 2:
                return (
                    f"an encapsulated pixel data fragment has an odd length ({size} bytes, "
                    "PS3.5 §A.4): Odd Fragment Length"
                )
            if size % 2:
                return (
                    f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) has an odd length ({size} "
                    "bytes; PS3.5 §7.1.1: values are of even length)"
                )
            end = at + size
            if end > length:
                return (
                    f"truncated: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs "
                    f"{size} bytes but the data set ends {length - at} bytes after its header"
                )
            position, moved = end, True
            if start + size > len(window):
                # Its value runs past this window: read on from its end, a little first
                # (the next fragment's header, not the pixel data around it).
                want = _AFTER_JUMP_WINDOW
                break
        if not moved:
            return f"truncated: the data set ends inside an element header at byte {position}"
    if open_values:
        tag = open_values[-1]
        return (
            f"truncated: the data set ends inside ({tag >> 16:04X},{tag & 0xFFFF:04X}) "
            "before its delimiter"
        )
    return None


def collect_files(
    paths: Iterable[str | Path], *, without_meta: bool = False
) -> tuple[list[FileInfo], list[FileOutcome]]:
    """Files under ``paths`` (directories recursively), checked; and those not to send, why.

    Files come in path order, each once even when named twice (same device and inode),
    each checked by :func:`inspect_file` (``without_meta`` as there). A file that is not
    DICOM is *skipped* inside a directory (an outcome with ``skipped`` set, not a failure)
    and is a failure when named; a broken one is a permanent failure, never sent. Symbolic
    links to directories are not followed (no loops).
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
                infos.append(inspect_file(candidate, without_meta=without_meta))
            except Part10Error as exc:
                reason = str(exc).removeprefix(f"{candidate}: ")
                skipped = in_directory and exc.reason == "not-dicom"
                if skipped and not without_meta:
                    reason += " (a data set without file meta is sent with --no-header)"
                failures.append(
                    FileOutcome(Path(candidate), error=reason, permanent=True, skipped=skipped)
                )
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


def plan_contexts(infos: Iterable[FileInfo]) -> list[tuple[str, list[str]]]:
    """The presentation contexts to propose for sending ``infos``: (abstract syntax, syntaxes).

    One context per (SOP class, transfer syntax) the files are in, so each can be sent
    as it is, plus one per SOP class offering Explicit and Implicit VR Little Endian, to
    convert to when the peer accepts none of the others. Duplicates are proposed once, in
    the order the files come.
    """
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


def batch_by_contexts(infos: Iterable[FileInfo], limit: int = MAX_CONTEXTS) -> list[list[FileInfo]]:
    """``infos`` split, in order, into parts of at most ``limit`` planned contexts each.

    One association per part: :func:`plan_contexts` of a part proposes at most ``limit``.
    """
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


def choose_context(
    negotiated: NegotiatedAssociation, info: FileInfo
) -> tuple[PresentationContext, bool]:
    """The accepted context to send ``info`` on, and whether its data set must be converted.

    Its own transfer syntax if the peer accepted it; else, for an uncompressed file, any
    accepted uncompressed syntax (the data set is then re-encoded). A compressed file is
    never decompressed: :class:`~dicomwire.errors.NoAcceptedContextError` (permanent).
    """
    exact = negotiated.find_context(info.sop_class_uid, info.transfer_syntax)
    if exact is not None:
        return exact, False
    if info.transfer_syntax in UNCOMPRESSED_TRANSFER_SYNTAXES:
        for syntax in UNCOMPRESSED_TRANSFER_SYNTAXES:
            context = negotiated.find_context(info.sop_class_uid, syntax)
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


def _store_command_for(
    sop_class_uid: str, sop_instance_uid: str, move_originator: tuple[str, int] | None = None
) -> CommandSet:
    if move_originator is None:
        return CStoreRQ(sop_class_uid, sop_instance_uid).to_command()
    # A C-MOVE sub-operation names the AE and the message that asked for it (PS3.7 9.1.1.1).
    ae_title, message_id = move_originator
    return CStoreRQ(
        sop_class_uid,
        sop_instance_uid,
        move_originator_ae_title=ae_title,
        move_originator_message_id=message_id,
    ).to_command()


async def send_files(
    session: DimseSession,
    infos: Sequence[FileInfo],
    *,
    outcomes: Mapping[Path, FileOutcome] | None = None,
    on_outcome: Callable[[FileInfo, FileOutcome], None] | None = None,
) -> list[FileOutcome]:
    """C-STORE each file on an open session; its outcome per file, in the order given.

    Up to the session's asynchronous operations window are outstanding at once.
    Responses are settled in order, as soon as they are in, without a task per file: with
    one outstanding operation, file N's outcome is recorded just after file N+1 is sent.
    ``outcomes`` holds each file's outcome to update (earlier attempts counted in it);
    files missing from it get a new one. ``on_outcome`` is called as each file is settled
    (response in, or failed). When the association is lost, the oldest file sent and not
    answered gets the error (an attempt): the peer answers in order, so it is the one the
    peer failed on; the other files are left as they were, neither status nor error, with
    no attempt counted: to send on a new association.
    """
    known = {} if outcomes is None else outcomes
    results = [known.get(info.path) or FileOutcome(info.path, note=info.note) for info in infos]
    in_flight: deque[tuple[FileInfo, FileOutcome, Operation]] = deque()

    def settled(info: FileInfo, outcome: FileOutcome) -> None:
        if on_outcome is not None:
            on_outcome(info, outcome)

    charged_loss = False

    async def settle(info: FileInfo, outcome: FileOutcome, operation: Operation) -> None:
        nonlocal charged_loss
        try:
            response = await operation.wait()
            outcome.status = response.status
            # Read from the command set: the typed primitive is not built for every file.
            comment = response.command.get(Tag.ErrorComment)
            outcome.error_comment = str(comment) if comment else None
            outcome.error = None
        except DicomWireError as exc:
            if not session.association.is_established:
                # Lost with files in flight: the peer works in order, so the oldest one
                # unanswered is the suspect, charged an attempt; the others go again free.
                if charged_loss:
                    outcome.attempts -= 1
                    return
                charged_loss = True
            outcome.error = str(exc)
        settled(info, outcome)

    for info, outcome in zip(infos, results, strict=True):
        if not session.association.is_established:
            break  # lost: the rest is for another association
        outcome.attempts += 1
        try:
            operation = await send_file(session, info)
        except DicomWireError as exc:
            if not session.association.is_established:
                outcome.attempts -= 1  # lost before or while sending: not this file's doing
                break
            outcome.error = str(exc)
            outcome.permanent = exc.permanent
            settled(info, outcome)
            continue
        except OSError as exc:  # the file went away or became unreadable since inspected
            outcome.error = f"cannot read the file: {exc.strerror or exc}"
            outcome.permanent = True
            settled(info, outcome)
            if not session.association.is_established:
                break
            continue
        outcome.reached_peer = True
        in_flight.append((info, outcome, operation))
        while in_flight and in_flight[0][2].done:
            await settle(*in_flight.popleft())
    while in_flight:
        await settle(*in_flight.popleft())
    return results


async def send_file(
    session: DimseSession,
    info: FileInfo,
    *,
    move_originator: tuple[str, int] | None = None,
    negotiated: NegotiatedAssociation | None = None,
) -> Operation:
    """Send the C-STORE-RQ for one Part 10 file; return its operation (response pending).

    The data set goes in the file's transfer syntax, streamed from disk when large, or
    converted when the peer accepted only another uncompressed one
    (:class:`~dicomwire.errors.NoAcceptedContextError` when it accepted neither).
    ``move_originator`` is (AE title, Message ID) of the C-MOVE this C-STORE is a
    sub-operation of (PS3.7 9.1.1.1); ``negotiated`` narrows the contexts to choose from
    (C-GET: only those where the requestor took the SCP role), the session's by default.
    """
    context, convert = choose_context(negotiated or session.negotiated, info)
    payload: bytes | memoryview | FileSource
    if convert:
        payload = await asyncio.to_thread(_converted, info, context.transfer_syntax or "")
    else:
        source = FileSource(info.path, info.dataset_offset, info.size - info.dataset_offset)
        if info.pad:  # an odd deflated data set: sent with its pad byte (PS3.5 §A.5)
            payload = source.read() + b"\x00"
        elif not source.fits_in_memory():
            payload = source  # streamed from disk, a chunk at a time
        else:
            # Read it now, while the previous operation is still out.
            payload = source.read()
            if len(payload) != source.length:
                raise OSError(
                    errno.EIO,
                    f"the file changed since it was inspected: {len(payload)} of "
                    f"{source.length} data set bytes left",
                )
    command = _store_command_for(info.sop_class_uid, info.sop_instance_uid, move_originator)
    return await session.request(context.context_id, command, payload)


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
        context, convert = choose_context(session.negotiated, info)
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


def _final(outcome: FileOutcome, retries: int) -> bool:
    """Whether ``outcome`` is the file's last word: delivered, refused, or out of tries.

    An A7xx status (out of resources) and a lost association are transient: tried again
    until the file has had ``retries`` + 1 attempts. A permanent error and any other
    failure status (the peer refused the instance) are final at once.
    """
    if outcome.status is not None:
        transient = 0xA700 <= outcome.status <= 0xA7FF
        return not transient or outcome.attempts > retries
    if outcome.error is None:
        return False  # not sent yet
    return outcome.permanent or outcome.attempts > retries


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
    without_meta: bool = False,
) -> StoreSummary:
    """Send Part 10 files and directories; return per-file outcomes and totals.

    ``window`` > 1 proposes an asynchronous operations window; ``associations`` > 1 sends
    in parallel; ``without_meta`` also sends bare data sets (see :func:`inspect_file`).
    When the peer aborts or the association is lost, a new one is opened and the files
    not yet answered are sent on it: the oldest file in flight is charged an attempt, the
    others not, so a file the peer aborts every time costs only itself.
    Transient failures (A7xx, a lost association) are tried ``retries`` + 1 times in all;
    permanent ones (a permanent rejection, a failure status other than A7xx, a file that
    cannot be sent as it is) once. Every file ends with a status or the reason it has none.
    """
    started = time.perf_counter()
    infos, failures = collect_files(paths, without_meta=without_meta)
    summary = StoreSummary()
    outcomes: dict[Path, FileOutcome] = {
        info.path: FileOutcome(info.path, note=info.note) for info in infos
    }
    total = len(infos)
    counted: set[Path] = set()

    def count(info: FileInfo, outcome: FileOutcome) -> None:
        """Count ``info`` as done once its outcome is final (for ``progress``)."""
        if info.path in counted or not _final(outcome, retries):
            return
        counted.add(info.path)
        if outcome.delivered:
            summary.bytes_sent += info.dataset_length
        if progress is not None:
            progress(len(counted), total, summary.bytes_sent)

    async def send_batch(batch: list[FileInfo]) -> None:
        """Send ``batch`` over as many associations as it takes, within the bounds."""
        config = RequestorConfig(
            calling_ae_title,
            called_ae_title,
            plan_contexts(batch),
            max_pdu_length=max_pdu_length,
            maximum_invoked=window if window != 1 else None,
            maximum_performed=1 if window != 1 else None,
        )
        queue, fruitless = list(batch), 0
        while queue:
            lost: DicomWireError | None = None
            try:
                async with open_session(host, port, config, timeouts=timeouts, tls=tls) as session:
                    await send_files(session, queue, outcomes=outcomes, on_outcome=count)
            except DicomWireError as exc:
                lost = exc
            moved = any(
                outcomes[info.path].status is not None or outcomes[info.path].error is not None
                for info in queue
            )
            fruitless = 0 if moved else fruitless + 1
            # Nothing got on the wire: stop on a permanent failure, or after as many
            # fruitless associations as a file has attempts.
            give_up = not moved and ((lost is not None and lost.permanent) or fruitless > retries)
            remaining: list[FileInfo] = []
            for info in queue:
                outcome = outcomes[info.path]
                if outcome.status is None and outcome.error is None:
                    if give_up:
                        outcome.error = (
                            str(lost) if lost else "the association ended before it was sent"
                        )
                        outcome.permanent = lost is not None and lost.permanent
                        outcome.attempts = max(outcome.attempts, fruitless)
                        count(info, outcome)
                    else:
                        remaining.append(info)
                    continue
                if _final(outcome, retries):
                    count(info, outcome)
                    continue
                outcome.status = outcome.error = outcome.error_comment = None  # try again
                remaining.append(info)
            if remaining and lost is not None:
                log.warning(
                    "association to %s:%d lost (%s): %d files to send on a new one",
                    host,
                    port,
                    lost,
                    len(remaining),
                )
            if remaining and not moved:
                await asyncio.sleep(0.5 * fruitless)
            elif remaining and lost is None:
                await asyncio.sleep(0.5)  # A7xx: give the peer a moment
            queue = remaining

    async def lane(files: list[FileInfo]) -> None:
        for batch in batch_by_contexts(files):
            await send_batch(batch)

    lanes = [infos[i :: max(1, associations)] for i in range(max(1, associations))]
    await asyncio.gather(*(lane(files) for files in lanes if files))
    summary.outcomes = list(outcomes.values()) + failures
    summary.seconds = time.perf_counter() - started
    return summary
