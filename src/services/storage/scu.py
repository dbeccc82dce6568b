"""Storage SCU: send Part 10 files and data sets with C-STORE (PS3.4 Annex B, PS3.7 §9.1.1).

Files are read only as far as their file meta (:func:`..part10.read_file_info`); each is
sent from disk in the transfer syntax it is in, converted between uncompressed transfer
syntaxes when the peer accepted only another one, never silently decompressed.

The core is public so that every sender shares it (``dicomwire store``, and the C-MOVE and
C-GET SCPs' sub-operations): :func:`collect_files` lists files, :func:`plan_contexts`
proposes presentation contexts for them, :func:`batch_by_contexts` splits them so that
each association proposes at most 128 contexts (PS3.8 §9.3.2.2: context IDs are odd
numbers 1-255), :func:`choose_context` picks the accepted context for one file, and
:func:`send_files` sends them on an open session with its asynchronous operations window.
:func:`store_files` puts them together with associations, parallel lanes and retries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ...dimse.commands import CommandSet
from ...dimse.datasets import decode_dataset, encode_dataset
from ...dimse.primitives import CStoreRQ
from ...dimse.session import DimseSession, Operation, open_session
from ...dimse.status import Status
from ...dimse.streams import FileSource
from ...errors import DicomWireError, NoAcceptedContextError
from ...uids import (
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
from ..part10 import FileInfo, Part10Error, read_file_info
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


def _store_command_for(sop_class_uid: str, sop_instance_uid: str) -> CommandSet:
    return CStoreRQ(sop_class_uid, sop_instance_uid).to_command()


def _store_command(info: FileInfo) -> CommandSet:
    return _store_command_for(info.sop_class_uid, info.sop_instance_uid)


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
    (response in, or failed). When the association is lost the remaining files are left
    unsent: their outcomes have neither status nor error.
    """
    known = {} if outcomes is None else outcomes
    results = [known.get(info.path) or FileOutcome(info.path) for info in infos]
    in_flight: deque[tuple[FileInfo, FileOutcome, Operation]] = deque()

    def settled(info: FileInfo, outcome: FileOutcome) -> None:
        if on_outcome is not None:
            on_outcome(info, outcome)

    async def settle(info: FileInfo, outcome: FileOutcome, operation: Operation) -> None:
        try:
            response = await operation.wait()
            outcome.status = response.status
            outcome.error = None
        except DicomWireError as exc:
            outcome.error = str(exc)
        settled(info, outcome)

    for info, outcome in zip(infos, results, strict=True):
        outcome.attempts += 1
        try:
            operation = await send_file(session, info)
        except DicomWireError as exc:
            outcome.error = str(exc)
            outcome.permanent = exc.permanent
            settled(info, outcome)
            if not session.association.is_established:
                break
            continue
        in_flight.append((info, outcome, operation))
        while in_flight and in_flight[0][2].done:
            await settle(*in_flight.popleft())
    while in_flight:
        await settle(*in_flight.popleft())
    return results


async def send_file(session: DimseSession, info: FileInfo) -> Operation:
    """Send the C-STORE-RQ for one Part 10 file; return its operation (response pending).

    The data set goes in the file's transfer syntax, streamed from disk when large, or
    converted when the peer accepted only another uncompressed one
    (:class:`~dicomwire.errors.NoAcceptedContextError` when it accepted neither).
    """
    context, convert = choose_context(session.negotiated, info)
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

    def settled(info: FileInfo, outcome: FileOutcome) -> None:
        if outcome.status is not None and not outcome.status.is_failure:
            summary.bytes_sent += info.dataset_length
        tick()

    pending = list(infos)
    for attempt in range(retries + 1):
        if not pending:
            break
        lanes = [pending[i::associations] for i in range(max(1, associations))]

        async def lane(files: list[FileInfo]) -> None:
            for batch in batch_by_contexts(files):
                config = RequestorConfig(
                    calling_ae_title,
                    called_ae_title,
                    plan_contexts(batch),
                    max_pdu_length=max_pdu_length,
                    maximum_invoked=window if window != 1 else None,
                    maximum_performed=1 if window != 1 else None,
                )
                try:
                    async with open_session(
                        host, port, config, timeouts=timeouts, tls=tls
                    ) as session:
                        await send_files(session, batch, outcomes=outcomes, on_outcome=settled)
                except DicomWireError as exc:
                    permanent = exc.permanent
                    for info in batch:
                        outcome = outcomes[info.path]
                        if outcome.status is None and outcome.error is None:
                            outcome.error = str(exc)
                            outcome.attempts += 1
                            outcome.permanent = permanent
                            tick()

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
