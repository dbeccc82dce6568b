"""C-MOVE and C-GET SCP (PS3.4 C.4.2, C.4.3; Composite Instance Root, Annex Y; Without
Bulk Data, Annex Z): the matching instances sent as C-STORE sub-operations.

- C-MOVE (PS3.4 C.4.2.3): the Move Destination is looked up in the node's AE directory
  (unknown: A801 with an Error Comment); the sub-operations go on a NEW association to
  it, whose calling AE title is the AE title the C-MOVE was addressed to, each C-STORE-RQ
  naming the Move Originator AE Title and Message ID (PS3.7 9.1.1.1). At most
  ``max_concurrent_moves`` C-MOVEs run at once; the others wait their turn (queued, not
  refused), answered meanwhile with pending responses so that the requestor's DIMSE
  timeout does not end them, and cancellable while they wait.
- C-GET (PS3.4 C.4.3.3): the sub-operations go on the SAME association, only on contexts
  the requestor proposed with the SCP role (PS3.7 D.3.3.4); an instance without one is a
  failed sub-operation, and why is logged. The Without Bulk Data model (PS3.4 Z.1.3)
  sends each instance without the attributes of Table Z.1-1 (and Waveform Data inside
  the Waveform Sequence).

Both share one sub-operation engine: contexts planned from the index (SOP class and
transfer syntax), each file checked by the storage SCU core
(:func:`~dicomwire.services.storage.scu.inspect_file`) just before it is sent, and sent
with :func:`~dicomwire.services.storage.scu.send_file` within the association's
asynchronous operations window, streamed from disk. Progress goes back as pending
responses at most every ``pending_interval`` seconds (0: after every sub-operation but
the last); the final status is 0000, B000 (some failed or warned) or A702 (every one
failed), with the Failed SOP Instance UID List (0008,0058) when any failed (PS3.4
C.4.2.1.4.2). C-CANCEL stops the sub-operations: FE00 with the counts, Remaining being
those never started, whose UIDs join the failed list. A file missing or broken on disk
is a failed sub-operation; a destination that cannot be reached or refuses the
association makes every sub-operation fail (A702); one that drops the association
mid-way fails the instance it stopped on and gets the rest on a new association (once).
The index failing is C001. See docs/retrieve.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ...dimse.primitives import CStoreRQ, DimseResponse
from ...dimse.session import DimseSession, Operation, Request, open_session
from ...dimse.status import (
    CANCEL,
    IDENTIFIER_MISMATCH,
    MOVE_DESTINATION_UNKNOWN,
    OUT_OF_RESOURCES_SUBOPS,
    SUBOPS_WARNING,
    SUCCESS,
    Status,
)
from ...errors import (
    DataSetError,
    DicomWireError,
    InvalidQueryError,
    NoAcceptedContextError,
    Part10Error,
    UnknownAEError,
)
from ...uids import IMPLICIT_VR_LITTLE_ENDIAN, UNCOMPRESSED_TRANSFER_SYNTAXES
from ...ul.negotiation import NegotiatedAssociation, RequestorConfig
from ..part10 import FileInfo
from ..storage.scu import batch_by_contexts, choose_context, inspect_file, plan_contexts, send_file
from .models import agreed_relational, check_identifier, model_of

if TYPE_CHECKING:
    from pydicom import Dataset

    from ..directory import RemoteAE
    from ..index import Index, IndexedInstance
    from ..node import Node
    from ..storage.backend import StorageBackend
    from .service import QueryRetrieveConfig

__all__ = ["INDEX_FAILURE", "MOVE_WINDOW", "RetrieveSCP", "without_bulk_data"]

log = logging.getLogger("dicomwire.services.qr.retrieve")

#: Failed: Unable to process (PS3.4 Table C.4-2 Cxxx): the index could not be read.
INDEX_FAILURE = Status(0xC001)
#: Asynchronous operations window proposed to a C-MOVE destination (it may answer 1).
MOVE_WINDOW = 16
#: DIMSE timeout on the destination association when the node sets none: a destination
#: that never answers a C-STORE must not hold the C-MOVE (and its slot) for ever.
DESTINATION_DIMSE_TIMEOUT = 60.0
#: New associations opened for the sub-operations not yet started when the destination
#: association is lost (the instance it was lost on has failed; the others go again).
DESTINATION_RETRIES = 1
#: Seconds between the pending responses of a C-MOVE waiting for a free slot when
#: ``pending_interval`` is 0.
QUEUED_KEEPALIVE = 1.0
#: A UI element's length in Explicit VR is 16 bits (PS3.5 7.1.2): the Failed SOP
#: Instance UID List is cut to fit (and the cut logged) rather than not sent at all.
_MAX_EXPLICIT_LENGTH = 0xFFFE

#: PS3.4 Table Z.1-1: not sent by the Without Bulk Data model (top level of the data set).
_BULK_TAGS = frozenset(
    {
        0x7FE00010,  # Pixel Data
        0x7FE00008,  # Float Pixel Data
        0x7FE00009,  # Double Float Pixel Data
        0x00287FE0,  # Pixel Data Provider URL
        0x56000020,  # Spectroscopy Data
        0x00420011,  # Encapsulated Document
    }
)
_WAVEFORM_SEQUENCE, _WAVEFORM_DATA = 0x54000100, 0x54001010


def _is_bulk(tag: int) -> bool:
    """Table Z.1-1, repeating groups included: Overlay Data (60xx,3000), Curve Data
    (50xx,3000) and Audio Sample Data (50xx,200C)."""
    if tag in _BULK_TAGS:
        return True
    group, element = tag >> 16, tag & 0xFFFF
    if 0x6000 <= group <= 0x601E and group % 2 == 0 and element == 0x3000:
        return True
    return 0x5000 <= group <= 0x501E and group % 2 == 0 and element in (0x3000, 0x200C)


def without_bulk_data(dataset: Dataset) -> Dataset:
    """``dataset`` without the attributes PS3.4 Z.1.3 leaves out (changed in place).

    Top-level bulk data only: the pixel data of Icon Image Sequence items is kept, as the
    note to Table Z.1-1 says; Waveform Data goes from every Waveform Sequence item.
    """
    for tag in [int(element.tag) for element in dataset if _is_bulk(int(element.tag))]:
        del dataset[tag]
    if _WAVEFORM_SEQUENCE in dataset:
        for item in dataset[_WAVEFORM_SEQUENCE].value:
            if _WAVEFORM_DATA in item:
                del item[_WAVEFORM_DATA]
    return dataset


@dataclasses.dataclass(slots=True)
class _Progress:
    """Counts of one C-MOVE or C-GET (PS3.7 Table 9.3-8) and the UIDs that failed."""

    total: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = dataclasses.field(default_factory=list)
    #: UIDs never started because of C-CANCEL (or because the requestor went away).
    not_started: list[str] = dataclasses.field(default_factory=list)
    cancelled: bool = False

    @property
    def remaining(self) -> int:
        return self.total - self.completed - self.failed - self.warning

    @property
    def settled(self) -> int:
        """Sub-operations with an outcome, or never to be started."""
        return self.completed + self.failed + self.warning + len(self.not_started)

    def fail(self, uid: str) -> None:
        self.failed += 1
        self.failed_uids.append(uid)

    def counts(self) -> dict[str, int]:
        return {"completed": self.completed, "failed": self.failed, "warning": self.warning}


class _Reporter:
    """Pending responses (PS3.4 C.4.2.3.1): at most one every ``interval`` seconds."""

    def __init__(self, request: Request, progress: _Progress, interval: float) -> None:
        self.request = request
        self.progress = progress
        self.interval = interval
        self.last = time.monotonic()
        self.sent = 0
        #: The requestor's association is gone: nobody is left to send to.
        self.gone = False

    async def pending(self) -> None:
        """Send one pending response with the counts now."""
        progress = self.progress
        try:
            await self.request.send_pending(
                remaining=progress.remaining,
                completed=progress.completed,
                failed=progress.failed,
                warning=progress.warning,
            )
        except DicomWireError as exc:
            if not self.gone:
                log.warning("cannot send a pending response: %s; stopping", exc)
            self.gone = True
            return
        self.sent += 1
        self.last = time.monotonic()

    async def tick(self) -> None:
        """A sub-operation ended: report if the interval has passed and more remain."""
        if self.progress.remaining == 0 or self.gone:
            return
        if self.interval > 0 and time.monotonic() - self.last < self.interval:
            return
        await self.pending()


class RetrieveSCP:
    """Answers C-MOVE-RQ and C-GET-RQ for every Q/R model from ``index``."""

    def __init__(self, index: Index, config: QueryRetrieveConfig) -> None:
        self.index = index
        self.config = config
        self.node: Node | None = None
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task[object]] = set()
        # (SOP class, reason) already logged at WARNING by a C-GET: once is enough.
        self._logged: set[tuple[str, str]] = set()

    def attach(self, node: Node) -> None:
        """The node whose AE directory names C-MOVE destinations and whose AE calls out."""
        self.node = node

    async def stop(self) -> None:
        """End the retrieves still running (their associations are aborted)."""
        running = [task for task in self._running if not task.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    # -- the requests ----------------------------------------------------------------

    async def handle_move(self, request: Request) -> DimseResponse | int:
        """C-MOVE (PS3.4 C.4.2.3): look up, wait for a slot, send to the destination."""
        with self._tracked():
            destination_title = str(getattr(request.primitive, "move_destination", "") or "")
            try:
                if self.node is None:
                    raise UnknownAEError("the service is not attached to a node")
                destination = self.node.directory.resolve(destination_title, "move-destination")
            except UnknownAEError as exc:
                log.warning("C-MOVE from %s refused: %s", request.negotiated.remote_ae_title, exc)
                return request.primitive.response(
                    MOVE_DESTINATION_UNKNOWN, error_comment=str(exc)[:64]
                )
            matched = await self._matches(request, "move")
            if isinstance(matched, DimseResponse):
                return matched
            instances = matched
            progress = _Progress(len(instances))
            reporter = _Reporter(request, progress, self.config.pending_interval)
            if not instances:
                return self._final(request, progress)
            if not await self._wait_for_slot(request, reporter):
                progress.cancelled = True
                progress.not_started = [i.sop_instance_uid for i in instances]
                return self._final(request, progress)
            started = time.monotonic()
            try:
                await self._move(request, destination, instances, progress, reporter)
            finally:
                assert self._slots is not None
                self._slots.release()
            log.info(
                "C-MOVE from %s to %s: %d completed, %d failed, %d warning%s in %.3f s",
                request.negotiated.remote_ae_title,
                destination.ae_title,
                progress.completed,
                progress.failed,
                progress.warning,
                ", cancelled" if progress.cancelled else "",
                time.monotonic() - started,
            )
            return self._final(request, progress)

    async def handle_get(self, request: Request) -> DimseResponse | int:
        """C-GET (PS3.4 C.4.3.3): C-STOREs back on this association, SCP-role contexts only."""
        with self._tracked():
            matched = await self._matches(request, "get")
            if isinstance(matched, DimseResponse):
                return matched
            instances = matched
            progress = _Progress(len(instances))
            reporter = _Reporter(request, progress, self.config.pending_interval)
            model, _ = model_of(self._sop_class(request))
            session = request.session
            negotiated = session.negotiated
            # Only contexts where the requestor is the storage SCP (PS3.7 D.3.3.4).
            scp_contexts = dataclasses.replace(
                negotiated,
                contexts={cid: c for cid, c in negotiated.contexts.items() if c.scp_role},
            )
            lost = await self._suboperations(
                request,
                session,
                instances,
                progress,
                reporter,
                negotiated=scp_contexts,
                bulk=model.name != "without-bulk-data",
            )
            self._all_failed(lost, progress, "the requestor's association ended")
            log.info(
                "C-GET from %s: %d completed, %d failed, %d warning%s",
                negotiated.remote_ae_title,
                progress.completed,
                progress.failed,
                progress.warning,
                ", cancelled" if progress.cancelled else "",
            )
            return self._final(request, progress)

    # -- matching ------------------------------------------------------------------

    @staticmethod
    def _sop_class(request: Request) -> str:
        return str(
            getattr(request.primitive, "affected_sop_class_uid", None)
            or request.context.abstract_syntax
        )

    async def _matches(
        self, request: Request, operation: str
    ) -> list[IndexedInstance] | DimseResponse:
        """The instances the identifier names, or the refusal to answer (A900, C001)."""
        sop_class = self._sop_class(request)
        refused = request.negotiated.remote_ae_title, operation.upper()
        try:
            try:
                model, _ = model_of(sop_class)
            except KeyError:
                raise InvalidQueryError(f"{sop_class} is not a Q/R SOP class") from None
            identifier = request.decode()  # DataSetError: answered C000 by the session
            if identifier is None:
                raise InvalidQueryError("the request has no identifier")
            for _element in identifier.iterall():  # every value converted now, or refused
                pass
            relational = agreed_relational(
                request.negotiated.extended_negotiation.get(sop_class), self.config.relational
            )
            level = check_identifier(model, operation, identifier, relational=relational)
        except DataSetError:
            raise
        except Exception as exc:  # InvalidQueryError, or a value pydicom cannot read
            reason = str(exc) if isinstance(exc, InvalidQueryError) else f"bad identifier: {exc}"
            log.warning("C-%s from %s refused (A900): %s", refused[1], refused[0], reason)
            return request.primitive.response(IDENTIFIER_MISMATCH, error_comment=reason[:64])
        try:
            return await asyncio.to_thread(_listed, self.index.instances(level, identifier))
        except InvalidQueryError as exc:  # a key the matching rules cannot apply
            log.warning("C-%s from %s refused (A900): %s", refused[1], refused[0], exc)
            return request.primitive.response(IDENTIFIER_MISMATCH, error_comment=str(exc)[:64])
        except Exception as exc:  # the index's own failure: the requestor learns of it
            log.exception("C-%s from %s: the index failed", refused[1], refused[0])
            comment = f"index failure: {type(exc).__name__}"
            return request.primitive.response(INDEX_FAILURE, error_comment=comment[:64])

    # -- C-MOVE ------------------------------------------------------------------------

    async def _wait_for_slot(self, request: Request, reporter: _Reporter) -> bool:
        """Take one of the ``max_concurrent_moves`` slots; False if cancelled meanwhile.

        While it waits the requestor gets pending responses (every ``pending_interval``,
        or :data:`QUEUED_KEEPALIVE` seconds), all sub-operations remaining.
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(1, self.config.max_concurrent_moves))
        slots = self._slots
        if not slots.locked():
            await slots.acquire()
            return True
        log.info(
            "C-MOVE from %s queued: %d running (max_concurrent_moves)",
            request.negotiated.remote_ae_title,
            self.config.max_concurrent_moves,
        )
        keepalive = self.config.pending_interval or QUEUED_KEEPALIVE
        acquire = asyncio.ensure_future(slots.acquire())
        cancelled = asyncio.ensure_future(request.cancelled.wait())
        try:
            while not acquire.done() and not cancelled.done() and not reporter.gone:
                done, _ = await asyncio.wait(
                    {acquire, cancelled}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    await reporter.pending()
        finally:
            cancelled.cancel()
            if not acquire.done():
                acquire.cancel()
        got = acquire.done() and not acquire.cancelled() and acquire.exception() is None
        if got and (request.cancelled.is_set() or reporter.gone):
            slots.release()
            return False
        return got

    async def _move(
        self,
        request: Request,
        destination: RemoteAE,
        instances: Sequence[IndexedInstance],
        progress: _Progress,
        reporter: _Reporter,
    ) -> None:
        """The sub-operations on new associations to ``destination`` (one per 128 contexts)."""
        assert self.node is not None
        node_config = self.node.config
        calling = request.negotiated.local_ae_title
        originator = (request.negotiated.remote_ae_title, request.message.message_id)
        timeouts = node_config.timeouts
        if timeouts.dimse is None:
            timeouts = dataclasses.replace(timeouts, dimse=DESTINATION_DIMSE_TIMEOUT)
        tls = None
        if destination.tls:
            tls = node_config.tls
            if tls is None:
                self._all_failed(
                    instances,
                    progress,
                    f"{destination.ae_title} wants TLS and the node has no [tls] table",
                )
                return
        plans = [_planned(instance) for instance in instances]
        instance_of = {id(plan): instance for plan, instance in zip(plans, instances, strict=True)}
        for batch in batch_by_contexts(plans):
            batch_instances = [instance_of[id(plan)] for plan in batch]
            if progress.cancelled or reporter.gone:
                progress.not_started.extend(i.sop_instance_uid for i in batch_instances)
                continue
            config = RequestorConfig(
                calling,
                destination.ae_title,
                plan_contexts(batch),
                max_pdu_length=node_config.max_pdu_length,
                maximum_invoked=MOVE_WINDOW,
                maximum_performed=1,
            )
            assert destination.host is not None and destination.port is not None
            where = f"{destination.ae_title} at {destination.host}:{destination.port}"
            remaining: Sequence[IndexedInstance] = batch_instances
            for attempt in range(1 + DESTINATION_RETRIES):
                if attempt:
                    log.warning(
                        "association to %s lost: %d sub-operations go on a new one",
                        where,
                        len(remaining),
                    )
                opened = False
                try:
                    async with open_session(
                        destination.host, destination.port, config, timeouts=timeouts, tls=tls
                    ) as session:
                        opened = True
                        remaining = await self._suboperations(
                            request,
                            session,
                            remaining,
                            progress,
                            reporter,
                            move_originator=originator,
                        )
                except DicomWireError as exc:
                    if not opened:  # unreachable or refusing: no use trying again now
                        self._all_failed(remaining, progress, f"association to {where}: {exc}")
                        remaining = []
                if not remaining:
                    break
            self._all_failed(remaining, progress, f"the association to {where} was lost")

    @staticmethod
    def _all_failed(instances: Sequence[IndexedInstance], progress: _Progress, reason: str) -> None:
        """Every instance in ``instances`` (none of them settled yet) fails for ``reason``."""
        for instance in instances:
            progress.fail(instance.sop_instance_uid)
        if instances:
            log.warning("%d sub-operations failed: %s", len(instances), reason)

    # -- the sub-operations --------------------------------------------------------------

    async def _suboperations(
        self,
        request: Request,
        session: DimseSession,
        instances: Sequence[IndexedInstance],
        progress: _Progress,
        reporter: _Reporter,
        *,
        move_originator: tuple[str, int] | None = None,
        negotiated: NegotiatedAssociation | None = None,
        bulk: bool = True,
    ) -> list[IndexedInstance]:
        """C-STORE ``instances`` on ``session`` within its window; count each outcome.

        Stops starting new ones on C-CANCEL (or when the requestor has gone); those never
        started are :attr:`_Progress.not_started`. Every instance started is settled.
        Returns the instances not started because the association ended (never raises a
        :class:`DicomWireError`): a C-MOVE sends them on a new association.
        """
        in_flight: deque[tuple[IndexedInstance, Operation]] = deque()
        unstarted: list[IndexedInstance] = []
        # Answers lost with the association: the peer works in order, so the oldest one
        # unanswered is the suspect and fails; the later ones go again (as ``store`` does).
        unanswered: list[IndexedInstance] = []
        charged = False

        async def settle() -> None:
            nonlocal charged
            instance, operation = in_flight.popleft()
            outcome = await self._settle(instance, operation, progress, session, charge=not charged)
            if outcome == "charged":
                charged = True
            elif outcome == "lost":
                unanswered.append(instance)
            await reporter.tick()

        def stopping(position: int) -> bool:
            """C-CANCEL received, the requestor or the association gone: stop here."""
            nonlocal unstarted
            if request.cancelled.is_set() or reporter.gone:
                progress.cancelled = progress.cancelled or request.cancelled.is_set()
                progress.not_started.extend(i.sop_instance_uid for i in instances[position:])
                return True
            if not session.association.is_established:
                unstarted = list(instances[position:])
                return True
            return False

        for position, instance in enumerate(instances):
            if stopping(position):
                break
            try:
                info = _inspected(instance, self.index.backend)  # while C-STOREs are out
            except (Part10Error, OSError) as exc:
                self._failed(session, instance, exc)
                progress.fail(instance.sop_instance_uid)
                await reporter.tick()
                continue
            # Wait for a free slot of the window here, not inside send_file: a C-CANCEL
            # that arrives meanwhile then stops this instance before it is sent.
            while in_flight and len(in_flight) >= session.invoke_window:
                await settle()
            if stopping(position):
                break
            try:
                operation = await self._send(session, info, move_originator, negotiated, bulk=bulk)
            except (Part10Error, NoAcceptedContextError, DataSetError, OSError) as exc:
                self._failed(session, instance, exc)
                progress.fail(instance.sop_instance_uid)
                await reporter.tick()
                continue
            except DicomWireError as exc:
                if not session.association.is_established:  # it went while sending
                    unstarted = list(instances[position:])
                    break
                log.warning("C-STORE of %s not sent: %s", instance.sop_instance_uid, exc)
                progress.fail(instance.sop_instance_uid)
                await reporter.tick()
                continue
            in_flight.append((instance, operation))
            while in_flight and in_flight[0][1].done:
                await settle()
        while in_flight:
            await settle()
        return unanswered + unstarted

    async def _send(
        self,
        session: DimseSession,
        info: FileInfo,
        move_originator: tuple[str, int] | None,
        negotiated: NegotiatedAssociation | None,
        *,
        bulk: bool,
    ) -> Operation:
        """Send the C-STORE-RQ of a checked file; its operation, response pending."""
        if bulk:
            return await send_file(
                session, info, move_originator=move_originator, negotiated=negotiated
            )
        contexts = negotiated or session.negotiated
        try:
            context, _ = choose_context(contexts, info)
        except NoAcceptedContextError:
            # Without its pixel data a compressed instance goes in any uncompressed syntax.
            found = next(
                (
                    contexts.find_context(info.sop_class_uid, syntax)
                    for syntax in UNCOMPRESSED_TRANSFER_SYNTAXES
                    if contexts.find_context(info.sop_class_uid, syntax) is not None
                ),
                None,
            )
            if found is None:
                raise
            context = found
        syntax = context.transfer_syntax or IMPLICIT_VR_LITTLE_ENDIAN
        payload = await asyncio.to_thread(_without_bulk_data_bytes, info, syntax)
        command = CStoreRQ(info.sop_class_uid, info.sop_instance_uid).to_command()
        return await session.request(context.context_id, command, payload)

    def _failed(self, session: DimseSession, instance: IndexedInstance, exc: Exception) -> None:
        """Log why a sub-operation could not start (a missing context once per SOP class)."""
        if isinstance(exc, NoAcceptedContextError):
            key = (instance.sop_class_uid, session.negotiated.remote_ae_title)
            level = logging.DEBUG if key in self._logged else logging.WARNING
            self._logged.add(key)
            log.log(
                level,
                "%s not sent to %s: %s",
                instance.sop_instance_uid,
                session.negotiated.remote_ae_title,
                exc,
            )
            return
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log.warning("%s (%s) not sent: %s", instance.sop_instance_uid, instance.path, reason)

    @staticmethod
    async def _settle(
        instance: IndexedInstance,
        operation: Operation,
        progress: _Progress,
        session: DimseSession,
        *,
        charge: bool,
    ) -> Literal["counted", "charged", "lost"]:
        """Count one sub-operation by its C-STORE-RSP status, or its lack.

        An answer lost with the association fails the sub-operation (``"charged"``) only
        when ``charge`` is set; otherwise it is left uncounted (``"lost"``), to go again.
        """
        try:
            response = await operation.wait()
        except DicomWireError as exc:
            gone = not session.association.is_established
            if gone and not charge:
                return "lost"
            log.warning("C-STORE of %s got no answer: %s", instance.sop_instance_uid, exc)
            progress.fail(instance.sop_instance_uid)
            return "charged" if gone else "counted"
        status = response.status
        if status.is_success:
            progress.completed += 1
        elif status.is_failure or status == CANCEL:
            comment = getattr(response.primitive, "error_comment", None)
            log.warning(
                "C-STORE of %s refused: %s%s",
                instance.sop_instance_uid,
                status,
                f" ({comment})" if comment else "",
            )
            progress.fail(instance.sop_instance_uid)
        else:
            progress.warning += 1
        return "counted"

    # -- the final response ------------------------------------------------------------

    @staticmethod
    def _final(request: Request, progress: _Progress) -> DimseResponse:
        """0000, B000, A702 or FE00 with the counts and the failed list (PS3.4 C.4.2.1.4.2)."""
        fields: dict[str, int] = progress.counts()
        failed = list(progress.failed_uids)
        if progress.cancelled:
            status = CANCEL
            fields["remaining"] = len(progress.not_started)
            failed += progress.not_started
        elif progress.failed == 0 and progress.warning == 0:
            status = SUCCESS
        elif progress.completed == 0 and progress.warning == 0:
            status = OUT_OF_RESOURCES_SUBOPS
        else:
            status = SUBOPS_WARNING
        dataset = None
        if failed:
            from pydicom import Dataset

            syntax = request.context.transfer_syntax or IMPLICIT_VR_LITTLE_ENDIAN
            dataset = Dataset()
            dataset.FailedSOPInstanceUIDList = _fitting(failed, syntax)
        return request.primitive.response(status, dataset, **fields)

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[None]:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._running.discard(task)


def _inspected(instance: IndexedInstance, backend: StorageBackend) -> FileInfo:
    """The instance's file (read where ``backend`` has it), checked (:func:`inspect_file`)
    and holding the indexed UID."""
    info = inspect_file(backend.local_path(instance.path))
    if info.sop_instance_uid != instance.sop_instance_uid:
        raise Part10Error(
            f"{instance.path} holds {info.sop_instance_uid}, not the indexed "
            f"{instance.sop_instance_uid}",
            "bad-dataset",
        )
    return info


def _listed(instances: Iterator[IndexedInstance]) -> list[IndexedInstance]:
    """Read the index's answer whole (run in a thread: the index is blocking I/O)."""
    return list(instances)


def _planned(instance: IndexedInstance) -> FileInfo:
    """What plans the contexts of an instance before its file is opened: the index's word."""
    return FileInfo(
        instance.path,
        instance.sop_class_uid,
        instance.sop_instance_uid,
        instance.transfer_syntax,
        0,
        instance.size,
    )


def _without_bulk_data_bytes(info: FileInfo, transfer_syntax: str) -> bytes:
    """The file's data set without bulk data (PS3.4 Z.1.3), encoded in ``transfer_syntax``."""
    from pydicom import dcmread

    from ...dimse.datasets import encode_dataset

    try:
        dataset: Dataset = dcmread(Path(info.path), defer_size=1 << 16)
    except Exception as exc:  # pydicom raises many types on a broken file
        raise DataSetError(f"{info.path}: cannot read: {exc}") from exc
    dataset = without_bulk_data(dataset)
    return encode_dataset(dataset, transfer_syntax)


def _fitting(uids: list[str], transfer_syntax: str) -> list[str]:
    """``uids`` cut to what one UI element can hold in ``transfer_syntax`` (logged)."""
    if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return uids
    length, kept = 0, 0
    for uid in uids:
        length += len(uid) + 1  # the backslash, or the pad byte
        if length > _MAX_EXPLICIT_LENGTH:
            break
        kept += 1
    if kept < len(uids):
        log.warning(
            "Failed SOP Instance UID List cut to %d of %d UIDs (64 KiB in explicit VR)",
            kept,
            len(uids),
        )
    return uids[:kept]
