"""Verification service class: C-ECHO SCU and SCP (PS3.4 Annex A, PS3.7 §9.1.5, §9.3.5)."""

from __future__ import annotations

import logging

from ..dimse.channel import DimseChannel
from ..dimse.commands import CommandField, CommandSet, DataSetType, Tag, require
from ..dimse.messages import Message
from ..errors import DicomWireError
from ..ul.association import Timeouts, connect
from ..ul.negotiation import DEFAULT_MAX_PDU_LENGTH, DEFAULT_TRANSFER_SYNTAXES, RequestorConfig

__all__ = ["VERIFICATION_SOP_CLASS", "echo", "echo_on", "echo_response"]

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

log = logging.getLogger("dicomwire.services.verification")


async def echo_on(channel: DimseChannel, timeout: float | None = None) -> int:
    """Send C-ECHO-RQ on an established association; return the response status."""
    context = channel.negotiated.find_context(VERIFICATION_SOP_CLASS)
    if context is None:
        raise DicomWireError("the peer did not accept the Verification SOP class")
    message_id = channel.next_message_id()
    await channel.send(
        context.context_id,
        {
            Tag.AffectedSOPClassUID: VERIFICATION_SOP_CLASS,
            Tag.CommandField: CommandField.C_ECHO_RQ,
            Tag.MessageID: message_id,
            Tag.CommandDataSetType: DataSetType.ABSENT,
        },
    )
    while True:
        response = await channel.receive(timeout)
        if response is None:
            raise DicomWireError("the peer asked to release before answering C-ECHO")
        if (
            response.command_field == CommandField.C_ECHO_RSP
            and response.command.get(Tag.MessageIDBeingRespondedTo) == message_id
        ):
            require(response.command, Tag.Status)
            status = response.command[Tag.Status]
            assert isinstance(status, int)
            return status
        log.warning("ignoring unexpected message 0x%04X", response.command_field)


async def echo(
    host: str,
    port: int,
    *,
    calling_ae_title: str = "DICOMWIRE",
    called_ae_title: str = "ANY-SCP",
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH,
    repeat: int = 1,
    timeouts: Timeouts | None = None,
) -> int:
    """Associate, send ``repeat`` C-ECHO requests, release; return the last status."""
    timeouts = timeouts or Timeouts()
    config = RequestorConfig(
        calling_ae_title,
        called_ae_title,
        [(VERIFICATION_SOP_CLASS, list(DEFAULT_TRANSFER_SYNTAXES))],
        max_pdu_length=max_pdu_length,
    )
    status = -1
    async with await connect(host, port, config, timeouts=timeouts) as association:
        channel = DimseChannel(association)
        for _ in range(repeat):
            status = await echo_on(channel, timeouts.dimse)
    return status


def echo_response(request: Message) -> CommandSet:
    """The C-ECHO-RSP command answering ``request`` with success (0000)."""
    command: CommandSet = {
        Tag.CommandField: CommandField.C_ECHO_RSP,
        Tag.MessageIDBeingRespondedTo: request.command.get(Tag.MessageID, 0),
        Tag.CommandDataSetType: DataSetType.ABSENT,
        Tag.Status: 0x0000,
    }
    sop_class = request.command.get(Tag.AffectedSOPClassUID)
    if sop_class is not None:
        command[Tag.AffectedSOPClassUID] = sop_class
    return command
