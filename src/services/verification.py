"""Verification service class: C-ECHO SCU and SCP (PS3.4 Annex A, PS3.7 §9.1.5, §9.3.5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ..dimse.commands import CommandField
from ..dimse.primitives import CEchoRQ
from ..dimse.session import DimseSession, Request, open_session
from ..dimse.status import SUCCESS, Status
from ..uids import VERIFICATION_SOP_CLASS
from ..ul.association import Timeouts
from ..ul.negotiation import DEFAULT_MAX_PDU_LENGTH, DEFAULT_TRANSFER_SYNTAXES, RequestorConfig
from ..ul.tls import TLSConfig
from .service import Binding, Service, StatusDeclaration, StatusTable

__all__ = ["VERIFICATION_SOP_CLASS", "Verification", "echo", "echo_on", "handle_echo"]


async def echo_on(session: DimseSession) -> Status:
    """Send C-ECHO-RQ on an established association; return the response status."""
    operation = await session.send(CEchoRQ())
    response = await operation.wait()
    return response.status


async def echo(
    host: str,
    port: int,
    *,
    calling_ae_title: str = "DICOMWIRE",
    called_ae_title: str = "ANY-SCP",
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH,
    repeat: int = 1,
    timeouts: Timeouts | None = None,
    tls: TLSConfig | None = None,
) -> Status:
    """Associate, send ``repeat`` C-ECHO requests, release; return the last status."""
    config = RequestorConfig(
        calling_ae_title,
        called_ae_title,
        [(VERIFICATION_SOP_CLASS, list(DEFAULT_TRANSFER_SYNTAXES))],
        max_pdu_length=max_pdu_length,
    )
    status = Status(0xC000)
    async with open_session(host, port, config, timeouts=timeouts, tls=tls) as session:
        for _ in range(repeat):
            status = await echo_on(session)
    return status


async def handle_echo(request: Request) -> int:
    """Verification SCP: every C-ECHO-RQ succeeds."""
    return SUCCESS


class Verification(Service):
    """The Verification SCP as a node service: C-ECHO answered 0000 (PS3.4 A.4)."""

    name = "verification"
    statuses: ClassVar[StatusTable] = {"C-ECHO": (StatusDeclaration(SUCCESS, "always"),)}

    def bindings(self) -> Sequence[Binding]:
        return [
            Binding(
                VERIFICATION_SOP_CLASS,
                DEFAULT_TRANSFER_SYNTAXES,
                {CommandField.C_ECHO_RQ: handle_echo},
            )
        ]
