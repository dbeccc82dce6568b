"""The DIMSE dispatcher without I/O: PS3.7 §7.5 (message IDs), Annex D.3.3.3 (the
asynchronous operations window), §9.3 and §10.3 (requests, pending and final responses,
C-CANCEL), PS3.8 Annex E (a message's PDVs).

:class:`DimseDispatcher` holds the protocol state of DIMSE over one association, in the
style of h2's connection: received P-DATA-TF PDUs go in (:meth:`~DimseDispatcher.receive`),
events come out; local requests and responses go in, P-DATA-TF PDUs to send come out. It
never awaits, reads a clock or touches a socket, so every rule below is testable with PDUs
alone (tests/dimse/test_dispatcher.py); :class:`~dicomwire.dimse.session.DimseSession` is
the asyncio shell around it (tasks, locks, futures, sinks' awaitables, timeouts).

Rules held here:

- Message IDs are allocated 1..65535 in turn, wrapping, skipping IDs still outstanding.
- At most the negotiated window of invoked operations is outstanding
  (:attr:`~DimseDispatcher.window_full`); at most the performed window runs at once, the
  rest of a peer's requests wait in order, and a peer far beyond its window is a protocol
  error (it is flooding us).
- A response matches the outstanding operation with its Message ID Being Responded To; a
  pending one keeps the operation open, a final one ends it; a response to nothing
  outstanding is logged and ignored.
- A request whose Message ID is that of a request whose handler is running is answered
  0210 (duplicate invocation, checked when its own handler would start); C-CANCEL-RQ is
  routed to the operation it names.
- A received command set that violates PS3.7 (undecodable, missing required elements, on
  a context that was not accepted) raises :class:`DimseProtocolError`: the shell aborts.
- A data set streams to the sink chosen when its command arrived.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeAlias, TypeVar

from ..errors import CommandError, DataSetError, DimseProtocolError, LocalProtocolError
from ..ul.negotiation import NegotiatedAssociation, PresentationContext
from ..ul.pdu import PDataTF
from .commands import (
    TAG_AFFECTED_SOP_CLASS,
    TAG_AFFECTED_SOP_INSTANCE,
    TAG_COMMAND_FIELD,
    TAG_DATA_SET_TYPE,
    TAG_MESSAGE_ID,
    TAG_REQUESTED_SOP_CLASS,
    TAG_REQUESTED_SOP_INSTANCE,
    TAG_RESPONDED_TO,
    TAG_STATUS,
    CommandField,
    CommandSet,
    DataSetType,
    encode_command,
    validate_command,
)
from .datasets import decode_dataset
from .messages import (
    CommandComplete,
    MessageAssembler,
    fragment_message,
)
from .primitives import CCancelRQ, DimseMessage, DimseResponse, parse, response_command
from .status import CANNOT_UNDERSTAND, Status
from .streams import BytesSink, DataSetSink

if TYPE_CHECKING:  # pydicom is imported only where a Dataset is decoded
    from pydicom import Dataset

__all__ = [
    "CancelRequested",
    "DataSetChunk",
    "DimseDispatcher",
    "MessageReceived",
    "ReceivedMessage",
    "RequestReceived",
    "Response",
    "ResponseReceived",
]

log = logging.getLogger("dicomwire.dimse")

Buffer: TypeAlias = bytes | bytearray | memoryview

#: When a window value is 0 (unlimited), concurrency is still bounded by these.
UNLIMITED_INVOKED = 1024
UNLIMITED_PERFORMED = 64

# Command element tags as plain ints, for dictionary lookups on the hot path.
_C_CANCEL_RQ = int(CommandField.C_CANCEL_RQ)


class ReceivedMessage:
    """A whole message as received: the command set and the data set (if any).

    ``dataset`` is what the sink returned: bytes by default, a path for a file sink.
    The command field and message ID are read once, here: every layer above asks for them;
    :attr:`primitive` is the typed view, built when first asked for.
    """

    __slots__ = (
        "_primitive",
        "_status",
        "command",
        "command_field",
        "context_id",
        "dataset",
        "message_id",
        "sop_class_uid",
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
        field_value = command.get(TAG_COMMAND_FIELD)
        self.command_field: int = field_value if isinstance(field_value, int) else -1
        responds = self.command_field & 0x8000 or self.command_field == _C_CANCEL_RQ
        message_id = command.get(TAG_RESPONDED_TO if responds else TAG_MESSAGE_ID)
        self.message_id: int = message_id if isinstance(message_id, int) else -1
        #: The Affected, else the Requested, SOP Class UID (handlers and sinks are chosen by it).
        self.sop_class_uid: str | None = self._first_uid(
            TAG_AFFECTED_SOP_CLASS, TAG_REQUESTED_SOP_CLASS
        )
        self._status: Status | None = None
        self._primitive: DimseMessage | None = None

    def __repr__(self) -> str:
        return (
            f"ReceivedMessage(context_id={self.context_id}, command_field="
            f"0x{self.command_field:04X}, message_id={self.message_id})"
        )

    @property
    def is_request(self) -> bool:
        return not self.command_field & 0x8000

    @property
    def primitive(self) -> DimseMessage:
        """The typed primitive (:mod:`dicomwire.dimse.primitives`) of this message."""
        primitive = self._primitive
        if primitive is None:
            primitive = self._primitive = parse(self.command, self.dataset)
        elif primitive.dataset is not self.dataset:
            primitive.dataset = self.dataset  # the sink's result came in after the parse
        return primitive

    @property
    def status(self) -> Status:
        status = self._status
        if status is None:
            value = self.command.get(TAG_STATUS)
            status = Status(value if isinstance(value, int) else CANNOT_UNDERSTAND)
            self._status = status
        return status

    @property
    def sop_instance_uid(self) -> str | None:
        """The Affected, else the Requested, SOP Instance UID."""
        return self._first_uid(TAG_AFFECTED_SOP_INSTANCE, TAG_REQUESTED_SOP_INSTANCE)

    def _first_uid(self, *tags: int) -> str | None:
        command = self.command
        for tag in tags:
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
    """What a handler answers: a status, an optional data set, extra command elements.

    A handler may return a response primitive (``request.primitive.response(...)``)
    instead; this class stays for handlers that set raw command elements.
    """

    status: int
    dataset: object | None = None
    fields: CommandSet = field(default_factory=dict)


# --------------------------------------------------------------------------- events


# Events are plain slotted classes: one or two are made per PDU, and a dataclass would
# cost more to define at import than it saves in lines.


class DataSetChunk:
    """Write ``data`` (a view into the received PDU) to ``sink``, awaiting what it returns."""

    __slots__ = ("data", "sink")

    def __init__(self, sink: DataSetSink, data: memoryview) -> None:
        self.sink = sink
        self.data = data


class MessageReceived:
    """A whole message arrived. When ``sink`` is set its data set went there: close it,
    put what it returns in ``message.dataset``, then :meth:`DimseDispatcher.route` it."""

    __slots__ = ("message", "sink")

    def __init__(self, message: ReceivedMessage, sink: DataSetSink | None) -> None:
        self.message = message
        self.sink = sink


Op = TypeVar("Op")  # the shell's handle on an invoked operation
R = TypeVar("R")  # the shell's handle on a performed request


class ResponseReceived(Generic[Op]):
    """A response to the invoked ``operation``; ``final`` when it ends the operation."""

    __slots__ = ("final", "message", "operation")

    def __init__(self, operation: Op, message: ReceivedMessage, final: bool) -> None:
        self.operation = operation
        self.message = message
        self.final = final


class RequestReceived(Generic[R]):
    """Perform ``request`` now (a slot of the performed window is its own)."""

    __slots__ = ("request",)

    def __init__(self, request: R) -> None:
        self.request = request


class CancelRequested(Generic[R]):
    """The peer sent C-CANCEL-RQ for ``request`` (running or waiting for a slot)."""

    __slots__ = ("request",)

    def __init__(self, request: R) -> None:
        self.request = request


Routed: TypeAlias = "ResponseReceived[Op] | RequestReceived[R] | CancelRequested[R] | None"


class DimseDispatcher(Generic[Op, R]):
    """DIMSE protocol state for one association (see the module docstring).

    ``make_request`` turns a received request into the shell's handle for it (what
    :class:`RequestReceived` and :class:`CancelRequested` carry); ``sink_for`` chooses
    where a request's data set goes (a :class:`BytesSink` when it returns None).
    Responses' data sets always go to memory.
    """

    def __init__(
        self,
        negotiated: NegotiatedAssociation,
        make_request: Callable[[ReceivedMessage, PresentationContext], R],
        sink_for: Callable[[ReceivedMessage, PresentationContext], DataSetSink | None]
        | None = None,
    ) -> None:
        self.negotiated = negotiated
        self._make_request = make_request
        self._sink_for = sink_for
        invoked, performed = negotiated.maximum_invoked, negotiated.maximum_performed
        if not negotiated.requestor:  # the windows are named from the requestor's side
            invoked, performed = performed, invoked
        self.invoke_window: int = invoked or UNLIMITED_INVOKED
        self.perform_window: int = performed or UNLIMITED_PERFORMED
        #: Requests beyond this many (running plus waiting) mean a peer ignoring its window.
        self.perform_limit = self.perform_window * 4 + 64
        self._max_pdu_length = negotiated.remote_max_pdu_length
        #: Invoked operations awaiting their final response, by message ID.
        self.outstanding: dict[int, Op] = {}
        #: Received requests holding a slot of the performed window.
        self.performing = 0
        #: Requests whose handler runs, by message ID (duplicates and C-CANCEL look here).
        self.running: dict[int, R] = {}
        self._waiting: deque[tuple[int, R]] = deque()
        self._next_id = 1
        self._assembler = MessageAssembler()
        # The message whose data set is arriving, and its sink.
        self._receiving: tuple[ReceivedMessage, DataSetSink] | None = None

    # -- invoking ---------------------------------------------------------------------

    @property
    def window_full(self) -> bool:
        """True while the negotiated window of invoked operations is all outstanding."""
        return len(self.outstanding) >= self.invoke_window

    def _allocate_id(self) -> int:
        outstanding = self.outstanding
        for _ in range(0xFFFF):
            message_id = self._next_id
            self._next_id = message_id % 0xFFFF + 1
            if message_id not in outstanding:
                return message_id
        raise LocalProtocolError("every message ID is in use")

    def invoke(
        self,
        context_id: int,
        command: CommandSet,
        operation: Op,
        dataset: Buffer | None = None,
        *,
        streamed: bool = False,
    ) -> tuple[int, CommandSet, list[PDataTF]]:
        """Start an operation: its Message ID, its command and the PDUs to send.

        With ``streamed`` the data set follows from the caller (fragment_stream) and the
        PDUs carry the command only. Raises :class:`LocalProtocolError` when the window
        is full and :class:`CommandError` for an invalid command set.
        """
        if self.window_full:
            raise LocalProtocolError(f"the window of {self.invoke_window} operations is full")
        command = dict(command)
        command[TAG_MESSAGE_ID] = message_id = self._allocate_id()
        # Command Data Set Type tells the truth about what is sent (a primitive built
        # without its data set says "none"); a caller's own "present" value is kept.
        if streamed or dataset is not None:
            if command.get(TAG_DATA_SET_TYPE, DataSetType.ABSENT) == DataSetType.ABSENT:
                command[TAG_DATA_SET_TYPE] = DataSetType.PRESENT
        else:
            command[TAG_DATA_SET_TYPE] = DataSetType.ABSENT
        validate_command(command)
        pdus = self.message_pdus(context_id, command, None if streamed else dataset)
        self.outstanding[message_id] = operation
        return message_id, command, pdus

    def cancel(self, context_id: int, message_id: int) -> list[PDataTF]:
        """C-CANCEL-RQ PDUs for an outstanding operation (none when it is over)."""
        if message_id not in self.outstanding:
            return []
        return self.message_pdus(context_id, CCancelRQ(message_id=message_id).to_command(), None)

    def forget(self, message_id: int) -> Op | None:
        """The operation ended locally (not sent, timed out): free its slot."""
        return self.outstanding.pop(message_id, None)

    def fail_all(self) -> list[Op]:
        """The association ended: every outstanding operation, now forgotten."""
        operations = list(self.outstanding.values())
        self.outstanding.clear()
        self.performing = 0
        self.running.clear()
        self._waiting.clear()
        return operations

    # -- sending ----------------------------------------------------------------------

    def message_pdus(
        self, context_id: int, command: CommandSet, dataset: Buffer | None
    ) -> list[PDataTF]:
        """P-DATA-TF PDUs for one whole message, within the peer's maximum PDU length."""
        return fragment_message(context_id, encode_command(command), dataset, self._max_pdu_length)

    def response_command(
        self, message: ReceivedMessage, result: Response | DimseResponse
    ) -> tuple[CommandSet, object | None]:
        """The command set (and data set) answering ``message`` with ``result``."""
        if isinstance(result, DimseResponse):
            if result.message_id != message.message_id:
                result = replace(result, message_id=message.message_id)
            return result.to_command(), result.dataset
        command = response_command(message.command, result.status, result.dataset is not None)
        if result.fields:
            command.update(result.fields)
        return command, result.dataset

    def begin(self, message_id: int, request: R) -> bool:
        """``request``'s handler starts: False when its Message ID is one already running
        (a duplicate invocation, to answer 0210 without running it)."""
        if message_id in self.running:
            return False
        self.running[message_id] = request
        return True

    def end(self, message_id: int, request: R) -> None:
        """``request``'s handler returned (its response is being sent)."""
        if self.running.get(message_id) is request:
            del self.running[message_id]

    def finish(self) -> R | None:
        """A performed request was answered: free its slot; the next waiting one, if any."""
        self.performing = max(0, self.performing - 1)
        if not self._waiting or self.performing >= self.perform_window:
            return None
        self.performing += 1
        return self._waiting.popleft()[1]

    # -- receiving --------------------------------------------------------------------

    def receive(self, pdu: PDataTF) -> list[DataSetChunk | MessageReceived]:
        """Consume one P-DATA-TF; raise :class:`DimseProtocolError` on a violation."""
        events: list[DataSetChunk | MessageReceived] = []
        for event in self._assembler.feed(pdu):
            if isinstance(event, CommandComplete):
                message = self._on_command(event)
                if message is not None:
                    events.append(MessageReceived(message, None))
                continue
            receiving = self._receiving
            assert receiving is not None  # the assembler saw the command first
            events.append(DataSetChunk(receiving[1], event.data))
            if event.last:
                self._receiving = None
                events.append(MessageReceived(receiving[0], receiving[1]))
        return events

    @property
    def receiving_sink(self) -> DataSetSink | None:
        """The sink of a data set still arriving (to abort when the association ends)."""
        return self._receiving[1] if self._receiving is not None else None

    def _on_command(self, event: CommandComplete) -> ReceivedMessage | None:
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
        if not event.has_dataset:
            return message
        sink = None
        if not message.command_field & 0x8000 and self._sink_for is not None:  # a request
            sink = self._sink_for(message, context)
        self._receiving = (message, sink if sink is not None else BytesSink())
        return None

    def route(self, message: ReceivedMessage) -> Routed[Op, R]:
        """Where a whole received message goes (see the module docstring for the rules)."""
        message_id = message.message_id
        if message.command_field & 0x8000:
            operation = self.outstanding.get(message_id)
            if operation is None:
                log.warning(
                    "response 0x%04X to message %d, which is not outstanding: ignored",
                    message.command_field,
                    message_id,
                )
                return None
            final = not message.status.is_pending
            if final:
                del self.outstanding[message_id]
            return ResponseReceived(operation, message, final)
        if message.command_field == _C_CANCEL_RQ:
            request = self.running.get(message_id)
            if request is None:
                request = next((r for i, r in self._waiting if i == message_id), None)
            return None if request is None else CancelRequested(request)
        request = self._make_request(message, self.negotiated.contexts[message.context_id])
        if self.performing < self.perform_window:
            self.performing += 1
            return RequestReceived(request)
        if self.performing + len(self._waiting) >= self.perform_limit:
            raise DimseProtocolError(
                f"{self.performing + len(self._waiting)} requests outstanding, far "
                "beyond the negotiated window"
            )
        self._waiting.append((message_id, request))
        return None
