"""DIMSE encapsulation violations by a raw peer are answered with A-ABORT (PS3.8 Annex E.1).

A dicomwire server (AssociationServer + DimseSession) on 127.0.0.1; the peer negotiates a
real association with the PDU codec alone, then sends P-DATA-TF that break PS3.8 E.1 or
PS3.7 §6.3.1 (messages interleaved, a fragment on another presentation context, a data set
before its command, a PDV on a context that was not accepted, a command set that does not
decode). The server must answer A-ABORT, read off the raw socket, and go on serving new
associations.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import cast

import pytest

from dicomwire.dimse.commands import (
    CommandField,
    DataSetType,
    Tag,
    decode_command,
    encode_command,
)
from dicomwire.dimse.messages import DimseProtocolError
from dicomwire.dimse.session import DimseSession, Request, open_session
from dicomwire.errors import DicomWireError
from dicomwire.ul.association import Association, AssociationServer
from dicomwire.ul.negotiation import AcceptorPolicy, RequestorConfig
from dicomwire.ul.pdu import AAbort, AReleaseRP, AReleaseRQ, PDataTF, PresentationDataValue

from ._support import (
    CT_IMAGE,
    EXPLICIT,
    IMPLICIT,
    VERIFICATION,
    raw_association,
    read_pdu,
)

COMMAND = 0x01
LAST = 0x02
EXPLICIT_BIG_ENDIAN = "1.2.840.10008.1.2.2"
UNSUPPORTED = "1.2.826.0.1.3680043.2.1125.99.1"

#: Proposed by the raw peer: IDs 1 and 3 are accepted, 5 and 7 are not.
PROPOSED = [
    (VERIFICATION, [IMPLICIT]),  # 1
    (CT_IMAGE, [IMPLICIT]),  # 3
    (UNSUPPORTED, [IMPLICIT]),  # 5: abstract syntax not supported
    (CT_IMAGE, [EXPLICIT_BIG_ENDIAN]),  # 7: transfer syntax not supported
]

ECHO = encode_command(
    {
        Tag.CommandField: CommandField.C_ECHO_RQ,
        Tag.MessageID: 1,
        Tag.CommandDataSetType: DataSetType.ABSENT,
        Tag.AffectedSOPClassUID: VERIFICATION,
    }
)


def _store(message_id: int) -> bytes:
    return encode_command(
        {
            Tag.CommandField: CommandField.C_STORE_RQ,
            Tag.MessageID: message_id,
            Tag.Priority: 0,
            Tag.CommandDataSetType: DataSetType.PRESENT,
            Tag.AffectedSOPClassUID: CT_IMAGE,
            Tag.AffectedSOPInstanceUID: f"1.2.826.0.1.3680043.2.1125.5.{message_id}",
        }
    )


def _pdu(*pdvs: tuple[int, int, bytes]) -> bytes:
    return PDataTF([PresentationDataValue(c, h, d) for c, h, d in pdvs]).encode()


class Server:
    """The dicomwire server under attack, recording why each session ended."""

    def __init__(self) -> None:
        self.errors: list[BaseException | None] = []
        self.stored: list[bytes] = []
        self.port = 0

    async def _store(self, request: Request) -> int:
        assert isinstance(request.message.dataset, bytes)
        self.stored.append(request.message.dataset)
        return 0

    async def _echo(self, request: Request) -> int:
        return 0

    async def _handle(self, association: Association) -> None:
        session = DimseSession(
            association,
            handlers={CommandField.C_ECHO_RQ: self._echo, CommandField.C_STORE_RQ: self._store},
        )
        try:
            await session.run()
        except DicomWireError as exc:
            self.errors.append(exc)
            raise
        self.errors.append(None)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AssociationServer]:
        policy = AcceptorPolicy(
            ae_titles=("SERVER",),
            abstract_syntaxes={uid: (EXPLICIT, IMPLICIT) for uid in (VERIFICATION, CT_IMAGE)},
            max_pdu_length=16384,
        )
        async with AssociationServer(policy, self._handle) as server:
            await server.start("127.0.0.1", 0)
            self.port = server.port
            yield server

    async def echo_works(self) -> bool:
        """A new, well-behaved association gets its C-ECHO answered."""
        config = RequestorConfig("GOOD", "SERVER", [(VERIFICATION, [IMPLICIT])])
        async with open_session("127.0.0.1", self.port, config) as session:
            context = session.find_context(VERIFICATION)
            operation = await session.request(
                context.context_id,
                {Tag.CommandField: CommandField.C_ECHO_RQ, Tag.AffectedSOPClassUID: VERIFICATION},
            )
            return int((await operation.wait()).status) == 0


def test_raw_peer_negotiates_and_a_valid_exchange_works() -> None:
    """The harness itself: accepted contexts as planned, C-STORE and C-ECHO answered."""
    server = Server()

    async def run() -> None:
        async with (
            server.running(),
            raw_association(server.port, PROPOSED) as (reader, writer, accept),
        ):
            results = {pc.context_id: pc.result for pc in accept.presentation_contexts}
            assert results == {1: 0, 3: 0, 5: 3, 7: 4}
            writer.write(_pdu((3, COMMAND | LAST, _store(1)), (3, 0, b"\x08\x00")))
            writer.write(_pdu((3, LAST, b"\x18\x00\x00\x00\x00\x00")))
            writer.write(_pdu((1, COMMAND | LAST, ECHO)))
            responses = {}
            for _ in range(2):
                answer = await read_pdu(reader)
                assert isinstance(answer, PDataTF)
                (pdv,) = answer.pdvs  # a response command set, no data set
                assert pdv.is_command and pdv.is_last
                command = decode_command(pdv.data)
                responses[pdv.context_id] = (command[Tag.CommandField], command[Tag.Status])
            assert responses == {3: (0x8001, 0), 1: (0x8030, 0)}
            writer.write(AReleaseRQ().encode())
            assert isinstance(await read_pdu(reader), AReleaseRP)
        assert server.stored == [b"\x08\x00\x18\x00\x00\x00\x00\x00"]
        assert server.errors == [None]

    asyncio.run(run())


STORE1, STORE2 = _store(1), _store(2)

VIOLATIONS = [
    pytest.param(
        [
            _pdu((3, COMMAND | LAST, STORE1), (3, 0, b"\x08\x00\x18\x00")),
            _pdu((3, COMMAND | LAST, STORE2)),
        ],
        "messages interleaved",
        id="interleaved-messages",
    ),
    pytest.param(
        [_pdu((3, COMMAND | LAST, STORE1), (3, 0, b"\x08\x00")), _pdu((1, COMMAND | LAST, ECHO))],
        "presentation context 1 inside a message on context 3",
        id="interleaved-on-another-context",
    ),
    pytest.param(
        [_pdu((3, COMMAND | LAST, STORE1)), _pdu((1, LAST, b"\x08\x00\x18\x00"))],
        "presentation context 1 inside a message on context 3",
        id="data-set-on-wrong-context",
    ),
    pytest.param(
        [_pdu((3, COMMAND, STORE1[:20])), _pdu((1, COMMAND | LAST, STORE1[20:]))],
        "presentation context 1 inside a message on context 3",
        id="command-fragment-on-wrong-context",
    ),
    pytest.param(
        [_pdu((3, LAST, b"\x08\x00\x18\x00\x00\x00\x00\x00"))],
        "with no command before it",
        id="data-before-command",
    ),
    pytest.param(
        [_pdu((3, COMMAND, STORE1[:20]), (3, 0, b"\x08\x00"))],
        "before the command set was complete",
        id="data-inside-command",
    ),
    pytest.param(
        [_pdu((5, COMMAND | LAST, ECHO))],
        "presentation context 5, which was not accepted",
        id="context-rejected-abstract-syntax",
    ),
    pytest.param(
        [_pdu((7, COMMAND | LAST, STORE1), (7, LAST, b"\x08\x00\x18\x00"))],
        "presentation context 7, which was not accepted",
        id="context-rejected-transfer-syntax",
    ),
    pytest.param(
        [_pdu((9, COMMAND | LAST, ECHO))],
        "presentation context 9, which was not accepted",
        id="context-never-proposed",
    ),
    pytest.param(
        [_pdu((1, COMMAND | LAST, ECHO[:-1]))],
        "undecodable command set",
        id="undecodable-command",
    ),
]


@pytest.mark.parametrize(("pdus", "reason"), VIOLATIONS)
def test_violation_is_answered_with_a_abort(pdus: list[bytes], reason: str) -> None:
    server = Server()

    async def run() -> None:
        async with server.running() as listening:
            async with raw_association(server.port, PROPOSED) as (reader, writer, _):
                for pdu in pdus:
                    writer.write(pdu)
                await writer.drain()
                answer = await read_pdu(reader)
                # A-ABORT by the DIMSE service user (source 0, reason 0: PS3.8 §9.3.8)
                assert isinstance(answer, AAbort), answer
                assert (answer.source, answer.reason) == (0, 0)
                # nothing else follows: the server waits for us to close
                with pytest.raises((asyncio.IncompleteReadError, TimeoutError)):
                    await read_pdu(reader, timeout=0.2)
            # the server goes on serving new associations, more than once
            assert await server.echo_works()
            assert await server.echo_works()
            for _ in range(200):
                if listening.active_associations == 0:
                    break
                await asyncio.sleep(0.01)
            assert listening.active_associations == 0

        first, *rest = server.errors
        assert isinstance(first, DimseProtocolError)
        assert reason in str(first)
        assert rest == [None, None]
        assert server.stored == []

    asyncio.run(run())


def test_several_violating_peers_at_once() -> None:
    """Concurrent offenders each get A-ABORT; a well-behaved peer alongside is served."""
    server = Server()

    async def offend(pdus: list[bytes]) -> AAbort:
        async with raw_association(server.port, PROPOSED) as (reader, writer, _):
            for pdu in pdus:
                writer.write(pdu)
            answer = await read_pdu(reader)
            assert isinstance(answer, AAbort)
            return answer

    async def run() -> None:
        async with server.running():
            cases = [cast(list[bytes], param.values[0]) for param in VIOLATIONS]
            results = await asyncio.gather(*(offend(c) for c in cases), server.echo_works())
        assert results[-1] is True
        assert all(isinstance(r, AAbort) for r in results[:-1])
        assert sum(isinstance(e, DimseProtocolError) for e in server.errors) == len(VIOLATIONS)

    asyncio.run(run())
