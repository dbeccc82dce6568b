"""A DIMSE server and client on loopback for the session tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence

from dicomwire.dimse.session import DimseSession, Handler, SinkFactory, open_session
from dicomwire.ul.association import Association, AssociationServer, Timeouts
from dicomwire.ul.negotiation import AcceptorPolicy, RequestorConfig

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
