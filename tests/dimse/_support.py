"""A DIMSE server and client on loopback for the session tests, and a raw PDU-level peer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence

from dicomwire.dimse.session import DimseSession, Handler, SinkFactory, open_session
from dicomwire.ul.association import Association, AssociationServer, Timeouts
from dicomwire.ul.negotiation import AcceptorPolicy, RequestorConfig, build_request
from dicomwire.ul.pdu import PDU, AAssociateAC, decode

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
MODALITY_PPS = "1.2.840.10008.3.1.2.3.3"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"

ALL_SYNTAXES = (VERIFICATION, CT_IMAGE, PATIENT_ROOT_FIND, MODALITY_PPS, STORAGE_COMMITMENT)


@contextlib.asynccontextmanager
async def dimse_pair(
    server_handlers: Mapping[int | tuple[str, int], Handler],
    *,
    server_sinks: Mapping[int | tuple[str, int], SinkFactory] | None = None,
    client_handlers: Mapping[int | tuple[str, int], Handler] | None = None,
    max_pdu_length: int = 16384,
    server_max_pdu_length: int = 16384,
    window: tuple[int, int] | None = None,
    timeouts: Timeouts | None = None,
    abstract_syntaxes: Sequence[str] = ALL_SYNTAXES,
) -> AsyncIterator[DimseSession]:
    """A server on 127.0.0.1 and a started client session to it."""

    async def handler(association: Association) -> None:
        session = DimseSession(association, handlers=server_handlers, sinks=server_sinks)
        await session.run()

    policy = AcceptorPolicy(
        ae_titles=("SERVER",),
        abstract_syntaxes={uid: (EXPLICIT, IMPLICIT) for uid in abstract_syntaxes},
        max_pdu_length=server_max_pdu_length,
    )
    async with AssociationServer(policy, handler) as server:
        await server.start("127.0.0.1", 0)
        config = RequestorConfig(
            "CLIENT",
            "SERVER",
            [(uid, [EXPLICIT, IMPLICIT]) for uid in abstract_syntaxes],
            max_pdu_length=max_pdu_length,
            maximum_invoked=window[0] if window else None,
            maximum_performed=window[1] if window else None,
        )
        async with open_session(
            "127.0.0.1", server.port, config, handlers=client_handlers, timeouts=timeouts
        ) as session:
            yield session


# --------------------------------------------------------------------------- raw peer


async def read_pdu(reader: asyncio.StreamReader, timeout: float = 5.0) -> PDU:
    """Read one whole PDU off a raw connection and decode it (PS3.8 §9.3.1 header)."""

    async def read() -> PDU:
        header = await reader.readexactly(6)
        body = await reader.readexactly(int.from_bytes(header[2:], "big"))
        return decode(header + body)

    return await asyncio.wait_for(read(), timeout)


@contextlib.asynccontextmanager
async def raw_association(
    port: int,
    contexts: Sequence[tuple[str, Sequence[str]]],
    *,
    called: str = "SERVER",
    max_pdu_length: int = 16384,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, AAssociateAC]]:
    """A plain TCP connection that negotiated an association with the PDU codec only.

    Yields the stream pair and the A-ASSOCIATE-AC; whatever is sent next is up to the test
    (no DIMSE, no state machine on this side). The connection is closed at the end.
    """
    request, _ = build_request(
        RequestorConfig("RAWPEER", called, list(contexts), max_pdu_length=max_pdu_length)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request.encode())
        accept = await read_pdu(reader)
        assert isinstance(accept, AAssociateAC), accept
        yield reader, writer, accept
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
