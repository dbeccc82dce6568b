"""DIMSE message exchange over one association: PS3.7 §7 (operations, message IDs, the
asynchronous operations window of Annex D.3.3.3), §9.3 and §10.3 (requests, pending and
final responses, C-CANCEL).

:class:`DimseSession` is both sides at once, because an association carries requests both
ways (an SCU receives N-EVENT-REPORT and, with C-GET, C-STORE requests):

- as invoker, :meth:`DimseSession.request` sends a request and returns an
  :class:`Operation` whose responses (pending ones first) arrive as an async iterator; up to
  the negotiated window of operations are outstanding at once;
- as performer, each request received goes to the handler registered for its command (and
  SOP class), concurrently up to the negotiated window; what the handler returns (or
  raises) becomes the response, and an exception becomes a failure status, never a dead
  association.

Messages are never interleaved on the wire (PS3.8 E.1): one message is sent whole before
the next. Data sets stream through sinks and sources (:mod:`dicomwire.dimse.streams`);
they are decoded with pydicom only when a handler asks for a Dataset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from ..errors import AssociationStateError, DicomWireError, DimseStatusError, NoAcceptedContextError
from ..uids import IMPLICIT_VR_LITTLE_ENDIAN
from ..ul.association import (
    Association,
    DicomTimeoutError,
    Timeouts,
    connect,
)
from ..ul.negotiation import NegotiatedAssociation, PresentationContext, RequestorConfig
from ..ul.pdu import PDataTF
from ..ul.tls import TLSConfig
from .commands import (
    CommandError,
    CommandField,
    CommandSet,
    DataSetType,
    Tag,
    encode_command,
    validate_command,
)
from .datasets import DataSetError, decode_dataset, encode_dataset
from .messages import (
    CommandComplete,
    DimseProtocolError,
    MessageAssembler,
    fragment_message,
    fragment_stream,
)
from .status import (
    CANNOT_UNDERSTAND,
    DUPLICATE_INVOCATION,
    PENDING,
    PROCESSING_FAILURE,
    UNRECOGNIZED_OPERATION,
    Status,
)
from .streams import BytesSink, DataSetSink, FileSource

__all__ = [
    "DimseSession",
    "DimseStatusError",
    "Handler",
    "Operation",
    "ReceivedMessage",
    "Request",
    "Response",
    "SinkFactory",
    "open_session",
]

if TYPE_CHECKING:  # pydicom is imported only where a Dataset is encoded or decoded
    from pydicom import Dataset

log = logging.getLogger("dicomwire.dimse")

DataSetInput: TypeAlias = "bytes | bytearray | memoryview | Dataset | AsyncIterable[bytes] | None"

#: When a window value is 0 (unlimited), concurrency is still bounded by these.
_UNLIMITED_INVOKED = 1024
_UNLIMITED_PERFORMED = 64


# Command element tags as plain ints, for dictionary lookups on the hot path.
_COMMAND_FIELD = int(Tag.CommandField)
_MESSAGE_ID = int(Tag.MessageID)
_RESPONDED_TO = int(Tag.MessageIDBeingRespondedTo)
_STATUS = int(Tag.Status)
_AFFECTED_SOP_CLASS = int(Tag.AffectedSOPClassUID)
_REQUESTED_SOP_CLASS = int(Tag.RequestedSOPClassUID)
_AFFECTED_SOP_INSTANCE = int(Tag.AffectedSOPInstanceUID)
_REQUESTED_SOP_INSTANCE = int(Tag.RequestedSOPInstanceUID)


class ReceivedMessage:
    """A whole message as received: the command set and the data set (if any).

    ``dataset`` is what the sink returned: bytes by default, a path for a file sink.
    The command field and message ID are read once, here: every layer above asks for them.
    """

    __slots__ = (
        "_status",
        "command",
        "command_field",
        "context_id",
        "dataset",
        "message_id",
        "transfer_syntax",
    )

    def __init__(
        self,
        context_id: int,
        transfer_syntax: str,
        command: CommandSet,
        dataset: object | None = None,
    ) -> None:
        self.context_id = context_id
        self.transfer_syntax = transfer_syntax
        self.command = command
        self.dataset = dataset
        field_value = command.get(_COMMAND_FIELD)
        self.command_field: int = field_value if isinstance(field_value, int) else -1
        responds = self.command_field & 0x8000 or self.command_field == CommandField.C_CANCEL_RQ
        message_id = command.get(_RESPONDED_TO if responds else _MESSAGE_ID)
        self.message_id: int = message_id if isinstance(message_id, int) else -1
        self._status: Status | None = None

    def __repr__(self) -> str:
        return (
            f"ReceivedMessage(context_id={self.context_id}, command_field="
            f"0x{self.command_field:04X}, message_id={self.message_id})"
        )

    @property
    def status(self) -> Status:
        status = self._status
        if status is None:
            value = self.command.get(_STATUS)
            status = Status(value if isinstance(value, int) else CANNOT_UNDERSTAND)
            self._status = status
        return status

    @property
    def sop_class_uid(self) -> str | None:
        command = self.command
        for tag in (_AFFECTED_SOP_CLASS, _REQUESTED_SOP_CLASS):
            value = command.get(tag)
            if isinstance(value, str):
                return value
        return None

    @property
    def sop_instance_uid(self) -> str | None:
        command = self.command
        for tag in (_AFFECTED_SOP_INSTANCE, _REQUESTED_SOP_INSTANCE):
            value = command.get(tag)
            if isinstance(value, str):
                return value
        return None

    def decode(self) -> Dataset | None:
        """The data set as a pydicom Dataset (decoded now), or None without one."""
        data = self.dataset
        if data is None:
            return None
        if isinstance(data, Path):
            data = data.read_bytes()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DataSetError(f"the data set was consumed by a sink ({type(data).__name__})")
        return decode_dataset(data, self.transfer_syntax)


@dataclass(slots=True)
class Response:
    """What a handler answers: a status, an optional data set, extra command elements."""

    status: int
    dataset: DataSetInput = None
    fields: CommandSet = field(default_factory=dict)


class Request:
    """A received request as its handler sees it."""

    __slots__ = ("cancelled", "context", "message", "session")

    def __init__(
        self, session: DimseSession, message: ReceivedMessage, context: PresentationContext
    ) -> None:
        self.session = session
        self.message = message
        self.context = context
        #: Set when the requestor sends C-CANCEL-RQ for this operation.
        self.cancelled = asyncio.Event()

    @property
    def command(self) -> CommandSet:
        return self.message.command

    @property
    def negotiated(self) -> NegotiatedAssociation:
        return self.session.negotiated

    def decode(self) -> Dataset | None:
        """The request's data set as a pydicom Dataset."""
        return self.message.decode()

    async def send_pending(
        self, dataset: DataSetInput = None, status: int = PENDING, **fields: Any
    ) -> None:
        """Send a pending response (C-FIND identifiers, C-GET/C-MOVE progress)."""
        extra: CommandSet = {Tag[name]: value for name, value in fields.items()}
        await self.session._respond(self.message, Response(status, dataset, extra))


Handler = Callable[[Request], Awaitable[Response | int | None]]
#: ``(command of the request, its presentation context) -> sink`` for its data set.
SinkFactory = Callable[[CommandSet, PresentationContext], DataSetSink]


class Operation:
    """An invoked operation: iterate to receive its responses, pending ones first."""

    __slots__ = (
        "_received",
        "_session",
        "_waiter",
        "command",
        "context_id",
        "final",
        "message_id",
    )

    def __init__(
        self, session: DimseSession, message_id: int, context_id: int, command: CommandSet
    ) -> None:
        self._session = session
        self.message_id = message_id
        self.context_id = context_id
        self.command = command
        self.final: ReceivedMessage | None = None
        # Responses (or the error that ended the session) not yet taken by _next().
        self._received: deque[ReceivedMessage | BaseException] = deque()
        self._waiter: asyncio.Future[None] | None = None

    @property
    def done(self) -> bool:
        """True once the final response, or the error that ended the session, is in."""
        if self.final is not None:
            return True
        return any(
            isinstance(item, BaseException) or not item.status.is_pending for item in self._received
        )

    def _deliver(self, item: ReceivedMessage | BaseException) -> None:
        """A response arrived (or the session ended): wake whoever waits."""
        self._received.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> AsyncIterator[ReceivedMessage]:
        return self._responses()

    async def _responses(self) -> AsyncIterator[ReceivedMessage]:
        while self.final is None:
            response = await self._next()
            yield response

    async def _next(self) -> ReceivedMessage:
        if not self._received:
            await self._wait_for_response()
        item = self._received.popleft()
        if isinstance(item, BaseException):
            raise item
        if not item.status.is_pending:
            self.final = item
        return item

    async def _wait_for_response(self) -> None:
        """Wait up to the DIMSE timeout; on expiry abort the association and raise."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiter = waiter
        timeout = self._session.timeouts.dimse
        # A timer handle rather than asyncio.wait_for: no task per response awaited.
        timer = None if timeout is None else loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if not self._received:
            error = DicomTimeoutError(
                f"no response to message {self.message_id} within {timeout} s"
            )
            self._session._fail(error, abort=True)
            raise error

    async def wait(self) -> ReceivedMessage:
        """Wait for the final response, dropping pending ones."""
        while self.final is None:
            await self._next()
        return self.final

    async def cancel(self) -> None:
        """Send C-CANCEL-RQ for this operation (C-FIND, C-GET, C-MOVE)."""
        if self.final is None:
            await self._session._send(
                self.context_id,
                {
                    Tag.CommandField: CommandField.C_CANCEL_RQ,
                    Tag.MessageIDBeingRespondedTo: self.message_id,
                    Tag.CommandDataSetType: DataSetType.ABSENT,
                },
                None,
            )


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class DimseSession:
    """DIMSE over one established association (see the module docstring).

    ``handlers`` maps a request's command field, or (SOP class UID, command field), to its
    handler; ``sinks`` likewise chooses where a request's data set goes (memory by
    default).
    """

    def __init__(
        self,
        association: Association,
        *,
        handlers: Mapping[int | tuple[str, int], Handler] | None = None,
        sinks: Mapping[int | tuple[str, int], SinkFactory] | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        negotiated = association.negotiated
        if negotiated is None:
            raise AssociationStateError("the association is not established")
        self.association = association
        self.negotiated = negotiated
        self.timeouts = timeouts or association.timeouts
        self.handlers: dict[int | tuple[str, int], Handler] = dict(handlers or {})
        self.sinks: dict[int | tuple[str, int], SinkFactory] = dict(sinks or {})
        invoked, performed = negotiated.maximum_invoked, negotiated.maximum_performed
        if not negotiated.requestor:
            invoked, performed = performed, invoked
        self.invoke_window = invoked or _UNLIMITED_INVOKED
        self.perform_window = performed or _UNLIMITED_PERFORMED
        self._invoke_slots = asyncio.Semaphore(self.invoke_window)
        self._perform_slots = asyncio.Semaphore(self.perform_window)
        self._send_lock = asyncio.Lock()
        self._assembler = MessageAssembler()
        self._outstanding: dict[int, Operation] = {}
        self._running: dict[int, Request] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_id = 1
        self._current: tuple[ReceivedMessage, DataSetSink, bool] | None = None
        # The read loop is between taking a PDU and finishing its events.
        self._busy = False
        # What a data set fragment taken at arrival (_take_fragment) left to the read loop:
        # a sink's backpressure to wait for, or the exception its write raised.
        self._pending_write: Awaitable[None] | None = None
        self._sink_error: BaseException | None = None
        self._reader: asyncio.Task[None] | None = None
        self._error: DicomWireError | None = None
        self._finished = asyncio.Event()
        self._no_outstanding = asyncio.Event()
        self._no_outstanding.set()

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start reading in the background (requestor side)."""
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    async def run(self) -> None:
        """Serve until the peer releases or the association ends (acceptor side)."""
        await self._read_loop()
        if self._error is not None and not isinstance(self._error, _Released):
            raise self._error

    async def release(self) -> None:
        """Wait for outstanding operations, then release the association."""
        if self._outstanding:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._no_outstanding.wait(), self.timeouts.dimse)
        await self.association.release()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._reader), self.timeouts.artim)

    def abort(self) -> None:
        """A-ABORT the association; outstanding operations fail."""
        self._fail(DicomWireError("association aborted locally"), abort=True)

    async def __aenter__(self) -> DimseSession:
        self.start()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is None and self.association.is_established:
            await self.release()
        else:
            self.abort()
            await self.association.closed_or_timeout(1.0)

    # -- invoking -------------------------------------------------------------------

    def find_context(
        self, abstract_syntax: str, transfer_syntax: str | None = None
    ) -> PresentationContext:
        """An accepted context for ``abstract_syntax``, or a DicomWireError."""
        context = self.negotiated.find_context(abstract_syntax, transfer_syntax)
        if context is None:
            raise NoAcceptedContextError(
                f"no accepted presentation context for {abstract_syntax}"
                + (f" in {transfer_syntax}" if transfer_syntax else ""),
                abstract_syntax,
                transfer_syntax,
            )
        return context

    def _allocate_id(self) -> int:
        for _ in range(0xFFFF):
            message_id = self._next_id
            self._next_id = message_id % 0xFFFF + 1
            if message_id not in self._outstanding:
                return message_id
        raise DicomWireError("every message ID is in use")

    async def request(
        self, context_id: int, command: CommandSet, dataset: DataSetInput = None
    ) -> Operation:
        """Send a request (Message ID assigned here) and return its :class:`Operation`.

        Waits while the negotiated window of outstanding operations is full.
        """
        if self._error is not None:
            raise self._error
        await self._invoke_slots.acquire()
        message_id = self._allocate_id()
        command = dict(command)
        command[Tag.MessageID] = message_id
        command.setdefault(
            Tag.CommandDataSetType, DataSetType.ABSENT if dataset is None else DataSetType.PRESENT
        )
        operation = Operation(self, message_id, context_id, command)
        self._outstanding[message_id] = operation
        self._no_outstanding.clear()
        try:
            validate_command(command)
            await self._send(context_id, command, dataset)
        except BaseException:
            self._forget(message_id)
            raise
        return operation

    # -- sending --------------------------------------------------------------------

    async def _send(self, context_id: int, command: CommandSet, dataset: DataSetInput) -> None:
        """Send one whole message; no other message's fragments until it is done."""
        association = self.association
        limit = self.negotiated.remote_max_pdu_length
        if dataset is not None and not isinstance(
            dataset, (bytes, bytearray, memoryview, AsyncIterable)
        ):  # a pydicom Dataset
            context = self.negotiated.contexts[context_id]
            dataset = encode_dataset(dataset, context.transfer_syntax or IMPLICIT_VR_LITTLE_ENDIAN)
        if isinstance(dataset, FileSource) and dataset.fits_in_memory():
            dataset = dataset.read()  # small: one write with the command
        encoded = encode_command(command)
        lock = self._send_lock
        if dataset is None or isinstance(dataset, (bytes, bytearray, memoryview)):
            pdus = fragment_message(context_id, encoded, dataset, limit)
            if lock.locked():  # another message is streaming: ours goes after it
                async with lock:
                    association.send_many_nowait(pdus)
            else:  # written whole, with no await in between: nothing can interleave
                association.send_many_nowait(pdus)
            if association.writing_paused:
                await association.drain()
            return
        async with lock:
            association.send_many_nowait(fragment_message(context_id, encoded, None, limit))
            async for pdu in fragment_stream(context_id, dataset, limit):
                association.send_nowait(pdu)
                await association.drain()

    async def _respond(self, request: ReceivedMessage, response: Response) -> None:
        command: CommandSet = {
            Tag.CommandField: request.command_field | 0x8000,
            Tag.MessageIDBeingRespondedTo: request.message_id,
            Tag.CommandDataSetType: (
                DataSetType.ABSENT if response.dataset is None else DataSetType.PRESENT
            ),
            Tag.Status: int(response.status),
        }
        sop_class = request.sop_class_uid
        if sop_class is not None:
            command[Tag.AffectedSOPClassUID] = sop_class
        instance = request.sop_instance_uid
        if instance is not None and request.command_field != CommandField.C_ECHO_RQ:
            command[Tag.AffectedSOPInstanceUID] = instance
        command.update(response.fields)
        await self._send(request.context_id, command, response.dataset)

    # -- receiving ------------------------------------------------------------------

    def _take_fragment(self, pdu: PDataTF) -> bool:
        """Give a data set fragment to its sink as it arrives, when nothing is in the way.

        Only the plain case: one PDV, a middle fragment (not a command, not the last) of
        the message being received, on its context, while the read loop is idle. Anything
        else is left to the read loop and the assembler, which check everything.
        """
        current = self._current
        if (
            current is None
            or self._busy
            or self._pending_write is not None
            or self._sink_error is not None
        ):
            return False
        pdvs = pdu.pdvs
        if len(pdvs) != 1:
            return False
        pdv = pdvs[0]
        message, sink, _ = current
        if pdv.context_id != message.context_id or pdv.control_header & 0x03:
            return False
        try:
            self._pending_write = sink.write(memoryview(pdv.data))
        except Exception as exc:  # raised by the read loop, where the write would have been
            self._sink_error = exc
        return True

    async def _read_loop(self) -> None:
        association = self.association
        association.on_data = self._take_fragment
        try:
            while True:
                # PDUs already queued are taken without a coroutine per PDU.
                pdu = association.poll() or await association.receive()
                # A fragment taken at arrival may have left work behind, due before this PDU.
                pending_write = self._pending_write
                if pending_write is not None:
                    await pending_write  # still set meanwhile: no fragment is taken early
                    self._pending_write = None
                if self._sink_error is not None:
                    error, self._sink_error = self._sink_error, None
                    raise error
                if pdu is None:
                    await self._peer_released()
                    return
                self._busy = True
                for event in self._assembler.feed(pdu):
                    if isinstance(event, CommandComplete):
                        self._on_command(event)
                        continue
                    assert self._current is not None
                    message, sink, is_request = self._current
                    pending = sink.write(event.data)
                    if pending is not None:
                        await pending
                    if event.last:
                        self._current = None
                        message.dataset = await sink.close()
                        self._dispatch(message, is_request)
                self._busy = False
        except DimseProtocolError as exc:
            log.warning("DIMSE protocol violation by %s: %s", self.negotiated.remote_ae_title, exc)
            self._fail(exc, abort=True)
        except DicomWireError as exc:
            self._fail(exc, abort=False)
        except asyncio.CancelledError:
            self._fail(DicomWireError("DIMSE session cancelled"), abort=True)
            raise
        finally:
            association.on_data = None
            if self._current is not None:
                _, sink, _ = self._current
                self._current = None
                await sink.abort()
            self._finished.set()

    async def _peer_released(self) -> None:
        """The peer sent A-RELEASE-RQ: finish what runs, answer, fail what is left."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        self._fail(_Released("the peer released the association"), abort=False)
        self.association.release_response()

    def _on_command(self, event: CommandComplete) -> None:
        context = self.negotiated.contexts.get(event.context_id)
        if context is None or not context.accepted:
            raise DimseProtocolError(
                f"message on presentation context {event.context_id}, which was not accepted"
            )
        message = ReceivedMessage(event.context_id, context.transfer_syntax or "", event.command)
        try:
            validate_command(event.command)
        except CommandError as exc:
            raise DimseProtocolError(f"invalid command set: {exc}") from exc
        is_request = not message.command_field & 0x8000
        if not event.has_dataset:
            self._dispatch(message, is_request)
            return
        sink: DataSetSink = BytesSink()
        if is_request:
            factory = self._lookup(self.sinks, message)
            if factory is not None:
                sink = factory(message.command, context)
        self._current = (message, sink, is_request)

    @staticmethod
    def _lookup(table: Mapping[int | tuple[str, int], Any], message: ReceivedMessage) -> Any:
        sop_class = message.sop_class_uid
        if sop_class is not None:
            found = table.get((sop_class, message.command_field))
            if found is not None:
                return found
        return table.get(message.command_field)

    def _dispatch(self, message: ReceivedMessage, is_request: bool) -> None:
        field_value = message.command_field
        if field_value == CommandField.C_CANCEL_RQ:
            running = self._running.get(message.message_id)
            if running is not None:
                running.cancelled.set()
            return
        if not is_request:
            operation = self._outstanding.get(message.message_id)
            if operation is None:
                log.warning(
                    "response 0x%04X to message %d, which is not outstanding: ignored",
                    field_value,
                    message.message_id,
                )
                return
            if not message.status.is_pending:
                # Free the window slot first: a request waiting for it is woken before
                # whoever waits for this response (the next send is on the critical path).
                self._forget(message.message_id)
            operation._deliver(message)
            return
        if len(self._tasks) >= self.perform_window * 4 + 64:
            raise DimseProtocolError(
                f"{len(self._tasks)} requests outstanding, far beyond the negotiated window"
            )
        task = asyncio.get_running_loop().create_task(self._perform(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _perform(self, message: ReceivedMessage) -> None:
        async with self._perform_slots:
            context = self.negotiated.contexts[message.context_id]
            request = Request(self, message, context)
            message_id = message.message_id
            if message_id in self._running:
                response = Response(DUPLICATE_INVOCATION)
            else:
                self._running[message_id] = request
                try:
                    response = await self._call_handler(request)
                finally:
                    self._running.pop(message_id, None)
            if self._error is None:
                try:
                    await self._respond(message, response)
                except DicomWireError as exc:
                    # A response that cannot be sent leaves the peer waiting: end it.
                    log.warning("cannot send the response to message %d: %s", message_id, exc)
                    self._fail(exc, abort=True)

    async def _call_handler(self, request: Request) -> Response:
        message = request.message
        handler = self._lookup(self.handlers, message)
        if handler is None:
            return Response(UNRECOGNIZED_OPERATION)
        try:
            result = await handler(request)
        except DimseStatusError as exc:
            fields: CommandSet = {Tag.ErrorComment: exc.comment[:64]} if exc.comment else {}
            return Response(exc.status, None, fields)
        except DataSetError as exc:
            log.warning("cannot decode the data set of message %d: %s", message.message_id, exc)
            return Response(CANNOT_UNDERSTAND, None, {Tag.ErrorComment: str(exc)[:64]})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception(
                "handler for 0x%04X (message %d) failed", message.command_field, message.message_id
            )
            return Response(PROCESSING_FAILURE, None, {Tag.ErrorComment: type(exc).__name__[:64]})
        if isinstance(result, Response):
            return result
        return Response(0 if result is None else int(result))

    def _forget(self, message_id: int) -> None:
        """The operation is over: free its window slot."""
        if self._outstanding.pop(message_id, None) is not None:
            self._invoke_slots.release()
        if not self._outstanding:
            self._no_outstanding.set()

    def _fail(self, error: DicomWireError, *, abort: bool) -> None:
        """End the session: outstanding operations get ``error``; abort if asked."""
        if self._error is None:
            self._error = error
        for message_id, operation in list(self._outstanding.items()):
            operation._deliver(error)
            self._forget(message_id)
        if abort and self.association.is_established:
            self.association.abort()
        for task in list(self._tasks):
            if abort:
                task.cancel()


class _Released(DicomWireError):
    """The peer released the association (normal end of an acceptor's session)."""


@contextlib.asynccontextmanager
async def open_session(
    host: str,
    port: int,
    config: RequestorConfig,
    *,
    handlers: Mapping[int | tuple[str, int], Handler] | None = None,
    sinks: Mapping[int | tuple[str, int], SinkFactory] | None = None,
    timeouts: Timeouts | None = None,
    tls: TLSConfig | None = None,
) -> AsyncIterator[DimseSession]:
    """Associate and yield a started :class:`DimseSession`; release (or abort) at the end."""
    association = await connect(host, port, config, timeouts=timeouts, tls=tls)
    session = DimseSession(association, handlers=handlers, sinks=sinks, timeouts=timeouts)
    async with session:
        yield session
