"""DIMSE messages on P-DATA: fragmentation and reassembly (PS3.7 §6.3.1, PS3.8 Annex E).

A message is a command set, then (when the command says so) a data set, each carried in
one or more PDVs of one presentation context. The message control header marks command vs
data set fragments and the last fragment of each (PS3.8 Annex E.2).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import DicomWireError
from ..ul.pdu import PDV_HEADER_LENGTH, PDataTF, PresentationDataValue
from .commands import CommandSet, DataSetType, Tag, decode_command

__all__ = ["DimseProtocolError", "Message", "MessageAssembler", "fragment_message"]

Buffer = bytes | bytearray | memoryview

_COMMAND = 0x01
_LAST = 0x02


class DimseProtocolError(DicomWireError):
    """The peer broke the DIMSE rules of PS3.7 §6.3.1 (answered with A-ABORT)."""


@dataclass(slots=True)
class Message:
    """A reassembled DIMSE message: its command set and data set bytes, if any."""

    context_id: int
    command: CommandSet
    dataset: bytes | None = None

    @property
    def command_field(self) -> int:
        value = self.command.get(Tag.CommandField)
        return value if isinstance(value, int) else -1


def _fragments(
    context_id: int, data: Buffer, control: int, limit: int
) -> Iterator[PresentationDataValue]:
    view = memoryview(data)
    if limit <= 0 or len(view) <= limit:
        yield PresentationDataValue(context_id, control | _LAST, view)
        return
    for start in range(0, len(view), limit):
        chunk = view[start : start + limit]
        last = _LAST if start + limit >= len(view) else 0
        yield PresentationDataValue(context_id, control | last, chunk)


def fragment_message(
    context_id: int, command: bytes, dataset: Buffer | None, max_pdu_length: int
) -> Iterator[PDataTF]:
    """P-DATA-TF PDUs for one message within the peer's maximum PDU length.

    Fragments are even-length (DCMTK requires it); several PDVs share a PDU when they fit.
    ``max_pdu_length`` 0 means the peer set no limit.
    """
    limit = 0
    if max_pdu_length:
        limit = (max_pdu_length - PDV_HEADER_LENGTH) & ~1
        if limit <= 0:
            raise DicomWireError(f"maximum PDU length {max_pdu_length} leaves no room for data")
    pdvs = list(_fragments(context_id, command, _COMMAND, limit))
    if dataset is not None:
        pdvs.extend(_fragments(context_id, dataset, 0, limit))
    batch: list[PresentationDataValue] = []
    size = 0
    for pdv in pdvs:
        needed = len(pdv.data) + PDV_HEADER_LENGTH
        if batch and max_pdu_length and size + needed > max_pdu_length:
            yield PDataTF(batch)
            batch, size = [], 0
        batch.append(pdv)
        size += needed
    if batch:
        yield PDataTF(batch)


class MessageAssembler:
    """Reassemble DIMSE messages from received PDVs, one message at a time."""

    __slots__ = ("_command", "_context_id", "_dataset", "_message")

    def __init__(self) -> None:
        self._context_id: int | None = None
        self._command = bytearray()
        self._dataset: bytearray | None = None
        self._message: Message | None = None

    def feed(self, pdu: PDataTF) -> list[Message]:
        """Consume a P-DATA-TF; return the messages it completes."""
        done: list[Message] = []
        for pdv in pdu.pdvs:
            if self._context_id is None:
                self._context_id = pdv.context_id
            elif pdv.context_id != self._context_id:
                raise DimseProtocolError(
                    f"PDV on presentation context {pdv.context_id} inside a message on "
                    f"context {self._context_id}"
                )
            if pdv.is_command:
                if self._message is not None:
                    raise DimseProtocolError("command fragment received while a data set is due")
                self._command += pdv.data
                if pdv.is_last:
                    command = decode_command(self._command)
                    self._command = bytearray()
                    message = Message(pdv.context_id, command)
                    if command.get(Tag.CommandDataSetType, DataSetType.ABSENT) == (
                        DataSetType.ABSENT
                    ):
                        done.append(message)
                        self._context_id = None
                    else:
                        self._message = message
                        self._dataset = bytearray()
            else:
                if self._message is None or self._dataset is None:
                    raise DimseProtocolError("data set fragment received before its command")
                self._dataset += pdv.data
                if pdv.is_last:
                    self._message.dataset = bytes(self._dataset)
                    done.append(self._message)
                    self._message, self._dataset, self._context_id = None, None, None
        return done
