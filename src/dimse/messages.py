"""DIMSE messages on P-DATA: fragmentation and reassembly (PS3.7 §6.3.1, PS3.8 Annex E).

A message is a command set, then (when the command says so) a data set, each carried in
one or more PDVs of one presentation context; the message control header marks command
or data set fragments and the last one of each (PS3.8 Annex E.2).

Sending (PS3.8 E.1): every fragment of a message on the same presentation context, even
fragment lengths (DCMTK requires it), no fragment of another message until the current
one is complete; several PDVs of one message share a P-DATA-TF when they fit.

Receiving asks nothing the standard does not: fragments split at any boundary or of odd
length, command and data set PDVs in one PDU, PDVs of consecutive messages in one PDU
(E.1 asks senders not to do that; we accept it). What the standard forbids is answered
with :class:`DimseProtocolError` (the session aborts the association): a fragment on
another presentation context than its message's, fragments of two messages interleaved,
a data set fragment with no command before it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from ..errors import DicomWireError, DimseProtocolError
from ..ul.pdu import PDV_HEADER_LENGTH, PDataTF, PresentationDataValue
from .commands import TAG_DATA_SET_TYPE, CommandError, CommandSet, DataSetType, decode_command

__all__ = [
    "MAX_COMMAND_LENGTH",
    "CommandComplete",
    "DataSetFragment",
    "DimseProtocolError",
    "MessageAssembler",
    "fragment_limit",
    "fragment_message",
    "fragment_stream",
]

Buffer = bytes | bytearray | memoryview

#: A command set is a few hundred bytes; more than this is an attack or a bug.
MAX_COMMAND_LENGTH = 1 << 20

_COMMAND = 0x01
_LAST = 0x02
_ABSENT = int(DataSetType.ABSENT)


# Events are plain slotted classes: one or two are made per message, and a frozen
# dataclass's __init__ (object.__setattr__ per field) costs several times a plain one's.


class CommandComplete:
    """A whole command set arrived; a data set follows when ``has_dataset``."""

    __slots__ = ("command", "context_id", "has_dataset")

    def __init__(self, context_id: int, command: CommandSet, has_dataset: bool) -> None:
        self.context_id = context_id
        self.command = command
        self.has_dataset = has_dataset

    def __repr__(self) -> str:
        return f"CommandComplete(context_id={self.context_id}, has_dataset={self.has_dataset})"


class DataSetFragment:
    """A piece of the current message's data set (a view into the received PDU)."""

    __slots__ = ("context_id", "data", "last")

    def __init__(self, context_id: int, data: memoryview, last: bool) -> None:
        self.context_id = context_id
        self.data = data
        self.last = last

    def __repr__(self) -> str:
        return (
            f"DataSetFragment(context_id={self.context_id}, data=<{len(self.data)} bytes>, "
            f"last={self.last})"
        )


AssemblyEvent = CommandComplete | DataSetFragment


def fragment_limit(max_pdu_length: int) -> int:
    """Largest even fragment that fits a P-DATA-TF of ``max_pdu_length`` (0: no limit)."""
    if max_pdu_length == 0:
        return 0
    limit = (max_pdu_length - PDV_HEADER_LENGTH) & ~1
    if limit <= 0:
        raise DicomWireError(f"maximum PDU length {max_pdu_length} leaves no room for data")
    return limit


def _as_bytes_view(data: Buffer) -> memoryview:
    """A one-dimensional byte view of ``data`` (lengths and slices count bytes)."""
    view = memoryview(data)
    if view.format == "B" and view.ndim == 1:
        return view
    return view.cast("B") if view.c_contiguous else memoryview(view.tobytes())


def _fragments(
    context_id: int, data: Buffer, control: int, limit: int
) -> list[PresentationDataValue]:
    """``data`` cut into PDVs of at most ``limit`` bytes (0: one), the last one marked."""
    view = _as_bytes_view(data)
    size = len(view)
    if limit <= 0 or size <= limit:
        return [PresentationDataValue(context_id, control | _LAST, view)]
    return [
        PresentationDataValue(
            context_id,
            control | (_LAST if start + limit >= size else 0),
            view[start : start + limit],
        )
        for start in range(0, size, limit)
    ]


def _batch(pdvs: list[PresentationDataValue], max_pdu_length: int) -> list[PDataTF]:
    """Pack consecutive PDVs of one message into as few P-DATA-TF as fit."""
    pdus: list[PDataTF] = []
    batch: list[PresentationDataValue] = []
    size = 0
    for pdv in pdvs:
        needed = len(pdv.data) + PDV_HEADER_LENGTH
        if batch and max_pdu_length and size + needed > max_pdu_length:
            pdus.append(PDataTF(batch))
            batch, size = [], 0
        batch.append(pdv)
        size += needed
    if batch:
        pdus.append(PDataTF(batch))
    return pdus


def fragment_message(
    context_id: int, command: bytes, dataset: Buffer | None, max_pdu_length: int
) -> list[PDataTF]:
    """P-DATA-TF PDUs for one message whose data set is in memory.

    Built as lists, not generators: most messages are one PDU (built here without the
    cutting and batching a larger one needs), and the caller writes them all at once.
    """
    limit = fragment_limit(max_pdu_length)
    data = None if dataset is None else _as_bytes_view(dataset)
    size = len(command) + PDV_HEADER_LENGTH
    if data is not None:
        size += len(data) + PDV_HEADER_LENGTH
    if not limit or (size <= max_pdu_length and len(command) <= limit):
        pdvs = [PresentationDataValue(context_id, _COMMAND | _LAST, command)]
        if data is not None:
            pdvs.append(PresentationDataValue(context_id, _LAST, data))
        return [PDataTF(pdvs)]
    pdvs = _fragments(context_id, command, _COMMAND, limit)
    if data is not None:
        pdvs += _fragments(context_id, data, 0, limit)
    return _batch(pdvs, max_pdu_length)


async def fragment_stream(
    context_id: int, chunks: AsyncIterable[Buffer], max_pdu_length: int
) -> AsyncIterator[PDataTF]:
    """P-DATA-TF PDUs for a data set read from ``chunks`` of any size, one PDU at a time.

    Fragments are cut to the largest even size that fits; only the data set's very last
    fragment can be odd (when the data set itself is). Memory stays at about one PDU.
    """
    limit = fragment_limit(max_pdu_length) or (1 << 20)
    carry = b""  # always keep at least one byte back: the last fragment must be marked
    async for chunk in chunks:
        data = carry + bytes(chunk) if carry else bytes(chunk)
        view = memoryview(data)
        position = 0
        while len(view) - position > limit:
            yield PDataTF([PresentationDataValue(context_id, 0, view[position : position + limit])])
            position += limit
        carry = bytes(view[position:])
    yield PDataTF([PresentationDataValue(context_id, _LAST, carry)])


class MessageAssembler:
    """Turn received PDVs into :class:`CommandComplete` and :class:`DataSetFragment` events."""

    __slots__ = ("_command", "_context_id", "_in_dataset")

    def __init__(self) -> None:
        self._context_id: int | None = None
        self._command = bytearray()
        self._in_dataset = False

    @property
    def idle(self) -> bool:
        """True between messages."""
        return self._context_id is None

    def feed(self, pdu: PDataTF) -> list[AssemblyEvent]:
        """Consume one P-DATA-TF; raise :class:`DimseProtocolError` on a violation."""
        events: list[AssemblyEvent] = []
        for pdv in pdu.pdvs:
            context_id = pdv.context_id
            control = pdv.control_header
            if self._context_id is None:
                if not control & _COMMAND:
                    raise DimseProtocolError(
                        f"data set fragment on presentation context {context_id} with no "
                        "command before it"
                    )
                self._context_id = context_id
            elif context_id != self._context_id:
                raise DimseProtocolError(
                    f"fragment on presentation context {context_id} inside a message on "
                    f"context {self._context_id} (PS3.8 E.1)"
                )
            if self._in_dataset:
                if control & _COMMAND:
                    raise DimseProtocolError(
                        "command fragment while a data set is due: messages interleaved (PS3.8 E.1)"
                    )
                last = bool(control & _LAST)
                events.append(DataSetFragment(context_id, memoryview(pdv.data), last))
                if last:
                    self._context_id = None
                    self._in_dataset = False
                continue
            if not control & _COMMAND:
                raise DimseProtocolError("data set fragment before the command set was complete")
            if not control & _LAST:
                self._command += pdv.data
                if len(self._command) > MAX_COMMAND_LENGTH:
                    raise DimseProtocolError(f"command set longer than {MAX_COMMAND_LENGTH} bytes")
                continue
            if self._command:  # the last of several fragments
                self._command += pdv.data
                encoded: Buffer = self._command
                self._command = bytearray()
            else:  # the whole command set in one fragment: decoded where it lies
                encoded = pdv.data
            if len(encoded) > MAX_COMMAND_LENGTH:
                raise DimseProtocolError(f"command set longer than {MAX_COMMAND_LENGTH} bytes")
            try:
                command = decode_command(encoded)
            except CommandError as exc:
                raise DimseProtocolError(f"undecodable command set: {exc}") from exc
            has_dataset = command.get(TAG_DATA_SET_TYPE, _ABSENT) != _ABSENT
            events.append(CommandComplete(context_id, command, has_dataset))
            if has_dataset:
                self._in_dataset = True
            else:
                self._context_id = None
        return events
