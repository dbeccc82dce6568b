"""DIMSE messages over one association (PS3.7 §6.3): send and receive whole messages.

Fragmentation follows the peer's maximum PDU length; reassembly is done by
:class:`~dicomwire.dimse.messages.MessageAssembler`. Violations of the DIMSE rules abort the
association (A-ABORT) and raise :class:`~dicomwire.dimse.messages.DimseProtocolError`.
"""

from __future__ import annotations

import logging
from collections import deque

from ..ul.association import Association
from .commands import CommandError, CommandSet, encode_command
from .messages import DimseProtocolError, Message, MessageAssembler, fragment_message

__all__ = ["DimseChannel"]

log = logging.getLogger("dicomwire.dimse")


class DimseChannel:
    """Whole DIMSE messages in and out of an established :class:`Association`."""

    def __init__(self, association: Association) -> None:
        if association.negotiated is None:
            raise DimseProtocolError("the association is not established")
        self.association = association
        self.negotiated = association.negotiated
        self._assembler = MessageAssembler()
        self._ready: deque[Message] = deque()
        self._next_message_id = 1

    def next_message_id(self) -> int:
        """A fresh Message ID (1-65535, wrapping)."""
        message_id = self._next_message_id
        self._next_message_id = message_id % 0xFFFF + 1
        return message_id

    async def send(
        self, context_id: int, command: CommandSet, dataset: bytes | None = None
    ) -> None:
        """Send one message on ``context_id`` within the peer's maximum PDU length."""
        encoded = encode_command(command)
        limit = self.negotiated.remote_max_pdu_length
        for pdu in fragment_message(context_id, encoded, dataset, limit):
            await self.association.send(pdu)

    async def receive(self, timeout: float | None = None) -> Message | None:
        """The next whole message; None when the peer asked to release."""
        while not self._ready:
            pdu = await self.association.receive(timeout)
            if pdu is None:
                return None
            try:
                messages = self._assembler.feed(pdu)
            except (DimseProtocolError, CommandError) as exc:
                log.warning(
                    "DIMSE protocol violation from %s: %s", self.negotiated.remote_ae_title, exc
                )
                self.association.abort()
                raise DimseProtocolError(str(exc)) from exc
            for message in messages:
                if message.context_id not in self.negotiated.contexts or not (
                    self.negotiated.contexts[message.context_id].accepted
                ):
                    self.association.abort()
                    raise DimseProtocolError(
                        f"message on presentation context {message.context_id}, which was "
                        "not accepted"
                    )
            self._ready.extend(messages)
        return self._ready.popleft()
