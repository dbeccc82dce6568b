"""C-FIND SCP over the index: PS3.4 C.4.1 (service), C.4.1.2-C.4.1.3 (behaviour), C.6.

One handler answers every query model of :data:`~.models.MODELS` that has a C-FIND SOP
class (Patient Root, Study Root, Patient/Study Only):

- the identifier is decoded with its own Specific Character Set (pydicom does it while
  reading), every value converted up front so a malformed one is an A900 with an Error
  Comment, never a traceback later; then checked against the model
  (:func:`~.models.check_identifier`: level, keys below the level, unique keys above it
  in a hierarchical query) and compiled (:func:`~dicomwire.services.matching.compile_query`:
  ranges, wild cards, UID lists, sequences);
- relational queries are allowed when SOP Class Extended Negotiation agreed to them
  (PS3.4 C.5.1.1) and the service's ``relational`` setting allows it; otherwise the
  hierarchical rules of C.4.1.3.1 apply;
- matches come from :meth:`Index.find <dicomwire.services.index.Index.find>`, read and
  encoded in a worker thread (the index is synchronous: a scan of a large table must not
  stall the event loop that serves every association) and handed over through a bounded
  queue, the worker pausing while it is full; each is a pending response FF00 holding
  every requested key (zero length when the entity has no value), in the matched
  instance's character set;
- the final response is 0000 (all sent), FE00 (C-CANCEL: the scan stops at once, even in
  the middle of a batch), A700 (more than ``max_find_responses`` matches, with a comment),
  A900 (identifier does not match the model, with the reason) or C001 (the index failed:
  logged, with a comment).

FF01 is never sent: every key is answered from the indexed header, so no optional key is
"not supported".
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ...dimse.datasets import encode_dataset
from ...dimse.primitives import CFindRSP
from ...dimse.session import Request
from ...dimse.status import CANCEL, IDENTIFIER_MISMATCH, OUT_OF_RESOURCES, SUCCESS
from ...errors import InvalidQueryError
from ...uids import IMPLICIT_VR_LITTLE_ENDIAN
from ..matching import KeyCondition, MatchKind, Query, compile_query
from .models import agreed_relational, check_identifier, model_of

if TYPE_CHECKING:
    from pydicom import Dataset

    from ..index import Index
    from .service import QueryRetrieveConfig

__all__ = ["UNABLE_TO_PROCESS", "FindSCP"]

log = logging.getLogger("dicomwire.services.qr.find")

#: C-FIND "Failed: Unable to process" (PS3.4 Table C.4-1, Cxxx): the index failed.
UNABLE_TO_PROCESS = 0xC001
#: Encoded answers waiting to be sent at most (the worker pauses when it is full).
QUEUE_SIZE = 32
#: Worker threads scanning the index at once (more queries wait for one).
SCAN_THREADS = 4
#: Keys of the identifier that are not matched but answered by the SCP itself.
_RETRIEVE_AE_TITLE = 0x00080054
_INSTANCE_AVAILABILITY = 0x00080056
_COMMENT_LIMIT = 64  # Error Comment is LO


class FindSCP:
    """Answers C-FIND-RQ for every Q/R model from ``index``."""

    def __init__(self, index: Index, config: QueryRetrieveConfig) -> None:
        self.index = index
        self.config = config
        # Scans have threads of their own: a long one never delays the default executor's
        # other work (the storage SCP's fsyncs).
        self._executor = ThreadPoolExecutor(SCAN_THREADS, thread_name_prefix="dicomwire-find")

    async def handle(self, request: Request) -> CFindRSP:
        """One C-FIND: pending responses per match, then the final status."""
        primitive = request.primitive
        sop_class = str(getattr(primitive, "affected_sop_class_uid", ""))
        caller = request.negotiated.remote_ae_title
        try:
            plan = self._plan(request, sop_class)
        except InvalidQueryError as exc:
            log.warning("C-FIND from %s refused (A900): %s", caller, exc)
            return _response(request, IDENTIFIER_MISMATCH, str(exc))
        log.info(
            "C-FIND from %s: %s root, %s level, %s",
            caller,
            plan.model_name,
            plan.level,
            "relational" if plan.relational else "hierarchical",
        )
        return await self._stream(request, plan)

    # -- the request -------------------------------------------------------------------

    def _plan(self, request: Request, sop_class: str) -> _Plan:
        """What to ask the index and how to answer; InvalidQueryError (A900) if invalid."""
        try:
            model, operation = model_of(sop_class)
        except KeyError:
            raise InvalidQueryError(f"{sop_class} is not a Query/Retrieve model") from None
        if operation != "find":
            raise InvalidQueryError(f"{sop_class} is not a C-FIND SOP class")
        identifier = _decoded(request)
        relational = agreed_relational(
            request.negotiated.extended_negotiation.get(sop_class), self.config.relational
        )
        level = check_identifier(model, "find", identifier, relational=relational)
        query = compile_query(identifier)
        transfer_syntax = request.context.transfer_syntax or IMPLICIT_VR_LITTLE_ENDIAN
        extras: dict[int, str] = {}
        if _RETRIEVE_AE_TITLE in identifier:  # PS3.4 C.4.1.1.3.2: where to C-MOVE from
            extras[_RETRIEVE_AE_TITLE] = request.negotiated.local_ae_title
        if _INSTANCE_AVAILABILITY in identifier:  # PS3.3 C.4.23.1.1: on this node's disk
            extras[_INSTANCE_AVAILABILITY] = "ONLINE"
        return _Plan(model.name, level, relational, identifier, query, transfer_syntax, extras)

    # -- the matches -------------------------------------------------------------------

    async def _stream(self, request: Request, plan: _Plan) -> CFindRSP:
        limit = self.config.max_find_responses
        loop = asyncio.get_running_loop()
        reader = _Reader(self.index, plan, loop, self._executor)
        watcher = loop.create_task(_on_cancel(request, reader))
        reader.start()
        sent = 0
        try:
            while True:
                item = await reader.queue.get()
                if item is _CANCELLED:
                    return self._cancelled(request, sent)
                if item is _DONE:
                    break
                if isinstance(item, Exception):
                    return self._index_failed(request, item, sent)
                if limit and sent >= limit:
                    return self._limited(request, limit)
                assert isinstance(item, bytes)
                await request.send_pending(item)
                reader.taken()
                sent += 1
                await asyncio.sleep(0)  # other associations' work between two matches
            log.info("C-FIND from %s: %d matches", request.negotiated.remote_ae_title, sent)
            return _response(request, SUCCESS)
        finally:
            watcher.cancel()
            reader.stop()

    def _cancelled(self, request: Request, sent: int) -> CFindRSP:
        log.info(
            "C-FIND from %s cancelled after %d matches", request.negotiated.remote_ae_title, sent
        )
        return _response(request, CANCEL)

    def _limited(self, request: Request, limit: int) -> CFindRSP:
        comment = f"more than {limit} matches: refine the query"
        log.warning("C-FIND from %s: %s (A700)", request.negotiated.remote_ae_title, comment)
        return _response(request, OUT_OF_RESOURCES, comment)

    def _index_failed(self, request: Request, exc: Exception, sent: int) -> CFindRSP:
        if isinstance(exc, InvalidQueryError):  # found by the index while matching
            caller = request.negotiated.remote_ae_title
            log.warning("C-FIND from %s refused (A900): %s", caller, exc)
            return _response(request, IDENTIFIER_MISMATCH, str(exc))
        log.error(
            "C-FIND from %s: the index failed after %d matches (%s: %s); answering C001",
            request.negotiated.remote_ae_title,
            sent,
            type(exc).__name__,
            exc,
        )
        log.debug("index failure", exc_info=exc)
        return _response(request, UNABLE_TO_PROCESS, f"index unavailable: {exc}")


class _Plan:
    """A validated query: what to ask the index and what to add to each answer."""

    __slots__ = ("extras", "identifier", "level", "model_name", "query", "relational", "syntax")

    def __init__(
        self,
        model_name: str,
        level: str,
        relational: bool,
        identifier: Dataset,
        query: Query,
        syntax: str,
        extras: dict[int, str],
    ) -> None:
        self.model_name = model_name
        self.level = level
        self.relational = relational
        self.identifier = identifier
        self.query = query
        self.syntax = syntax
        self.extras = extras


#: What the reader puts in its queue besides encoded answers and the index's error.
_DONE = object()
_CANCELLED = object()


async def _on_cancel(request: Request, reader: _Reader) -> None:
    """C-CANCEL: jump the queue, so the next thing the handler takes ends the query."""
    await request.cancelled.wait()
    reader.queue.put_nowait(_CANCELLED)


class _Reader:
    """The index's matches, read and encoded in a worker thread, handed to the event loop.

    The worker scans while fewer than :data:`QUEUE_SIZE` answers wait to be sent, then
    pauses (its thread goes back to the pool) until the handler has sent half of them:
    memory stays bounded however many entities match, and a slow peer holds no thread.
    Only one worker runs a given scan at a time. :meth:`stop` ends the scan at the next
    match (a scan cannot be interrupted between two matches).
    """

    def __init__(
        self, index: Index, plan: _Plan, loop: asyncio.AbstractEventLoop, executor: Executor
    ) -> None:
        self._index = index
        self._plan = plan
        self._loop = loop
        self._executor = executor
        self._slots = threading.Semaphore(QUEUE_SIZE)
        self._stopped = threading.Event()
        self._sequences = [k for k in plan.query.keys if k.vr == "SQ" and k.items]
        self._matches: Iterator[Dataset] | None = None
        self._carry: bytes | None = None  # encoded when the queue was full
        self._running = False  # event loop side: a worker has the scan
        self._paused = False
        self.queue: asyncio.Queue[object] = asyncio.Queue()

    # -- event loop side -----------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._loop.run_in_executor(self._executor, self._run).add_done_callback(self._ran)

    def _ran(self, run: asyncio.Future[bool]) -> None:
        self._running = False
        if run.cancelled():
            return
        if run.exception() is not None:  # _run reports errors through the queue
            self.queue.put_nowait(run.exception())
        elif run.result():
            self._paused = True
            self._resume_if_room()
        if self._stopped.is_set():
            self._close()

    def taken(self) -> None:
        """The handler sent one answer: room for another."""
        self._slots.release()
        self._resume_if_room()

    def _resume_if_room(self) -> None:
        if (
            self._paused
            and not self._running
            and not self._stopped.is_set()
            and self.queue.qsize() <= QUEUE_SIZE // 2
        ):
            self._paused = False
            self.start()

    def stop(self) -> None:
        """The query ended: no more answers; the scan is closed once no worker has it."""
        self._stopped.set()
        if not self._running:
            self._close()

    # -- worker thread side --------------------------------------------------------------

    def _run(self) -> bool:
        """Scan, encode, hand over; True when paused on a full queue, else finished."""
        try:
            if self._matches is None:
                self._matches = iter(self._index.find(self._plan.level, self._plan.identifier))
            if self._carry is not None:
                if not self._slots.acquire(blocking=False):
                    return True
                self._put(self._carry)
                self._carry = None
            for match in self._matches:
                if self._stopped.is_set():
                    break
                encoded = self._encode(match)
                if encoded is None:
                    continue
                if not self._slots.acquire(blocking=False):
                    self._carry = encoded
                    return True
                self._put(encoded)
            else:
                self._put(_DONE)
        except Exception as exc:  # the index is unavailable (closed, locked, I/O)
            self._put(exc)
        self._close()
        return False

    def _close(self) -> None:
        matches, self._matches = self._matches, None
        close = getattr(matches, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # closing a failed scan: nothing left to answer
                log.debug("closing an index scan: %s", exc)

    def _put(self, item: object) -> None:
        if not self._stopped.is_set():
            try:
                self._loop.call_soon_threadsafe(self.queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                self._stopped.set()

    def _encode(self, match: Dataset) -> bytes | None:
        plan = self._plan
        for condition in self._sequences:
            _project_sequence(match, condition)
        for tag, value in plan.extras.items():
            match.add_new(tag, "AE" if tag == _RETRIEVE_AE_TITLE else "CS", value)
        try:
            return encode_dataset(match, plan.syntax)
        except Exception as exc:  # a stored value the answer's character set cannot hold
            log.warning("a match cannot be encoded, left out: %s", exc)
            return None


def _project_sequence(answer: Dataset, condition: KeyCondition) -> None:
    """PS3.4 C.2.2.2.6: the matching items, holding only the requested attributes."""
    from pydicom.sequence import Sequence

    element = answer.get(condition.tag)
    if element is None or not element.value:
        return
    kept = Sequence()
    for item in element.value:
        matching = condition.kind is not MatchKind.SEQUENCE or all(
            c.matches(item) for c in condition.items
        )
        if not matching:
            continue
        kept.append(_projected_item(item, condition.items))
    answer[condition.tag].value = kept


def _projected_item(item: Dataset, conditions: tuple[KeyCondition, ...]) -> Dataset:
    from pydicom import Dataset
    from pydicom.datadict import dictionary_VR

    projected = Dataset()
    for condition in conditions:
        if condition.tag in item:
            if condition.vr == "SQ" and condition.items:
                copy = Dataset()
                copy[condition.tag] = item[condition.tag]
                _project_sequence(copy, condition)
                projected[condition.tag] = copy[condition.tag]
            else:
                projected[condition.tag] = item[condition.tag]
        else:
            projected.add_new(condition.tag, condition.vr or dictionary_VR(condition.tag), None)
    return projected


def _decoded(request: Request) -> Dataset:
    """The identifier, every value converted now: a malformed one is InvalidQueryError."""
    from ...errors import DataSetError

    try:
        identifier = request.decode()
    except DataSetError as exc:
        raise InvalidQueryError(f"the identifier cannot be decoded: {exc}") from exc
    if identifier is None:
        raise InvalidQueryError("the C-FIND request has no identifier")
    try:
        _convert(identifier)
    except InvalidQueryError:
        raise
    except Exception as exc:  # pydicom raises many types on bad values
        raise InvalidQueryError(f"malformed identifier: {exc}") from exc
    return identifier


def _convert(dataset: Any) -> None:
    """Decode every raw element (text with the data set's Specific Character Set)."""
    for element in dataset:  # iterating converts raw elements to DataElements
        if element.VR == "SQ":
            for item in element.value or ():
                _convert(item)
        else:
            _ = element.value


def _response(request: Request, status: int, comment: str | None = None) -> CFindRSP:
    if comment:  # Error Comment is one LO value in the command set: ASCII, no backslash
        comment = comment.encode("ascii", "replace").decode().replace("\\", "/")
    response = request.primitive.response(
        status, error_comment=comment[:_COMMENT_LIMIT] if comment else None
    )
    assert isinstance(response, CFindRSP)
    return response
