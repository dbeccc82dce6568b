"""An association at work is not idle; an aborted one ends every wait on it.

The network idle timeout (PS3.8 has none; it is the node's guard against silent peers)
must not abort an association whose SCP is still performing a request — a requestor
waiting for a long C-MOVE rightly sends nothing. And once the peer aborts, a client
leaving a C-FIND early (which sends C-CANCEL and drains the responses) must not wait for
responses that will never come.
"""

from __future__ import annotations

import asyncio

import pytest
from pydicom import Dataset

import dicomwire
from dicomwire.dimse.commands import CommandField
from dicomwire.dimse.datasets import encode_identifier
from dicomwire.dimse.primitives import CFindRQ
from dicomwire.dimse.session import Request
from dicomwire.errors import DicomWireError
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.service import CustomService
from dicomwire.ul.association import Timeouts
from tests.conftest import LOCALHOST, run_bounded

STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def _node(handler: object, idle: float) -> Node:
    config = NodeConfig(
        ae_titles=["BUSY"],
        host=LOCALHOST,
        port=0,
        timeouts=Timeouts(dimse=None, network_idle=idle),
        shutdown_grace=0.5,
    )
    return Node(config, [CustomService({STUDY_FIND: {CommandField.C_FIND_RQ: handler}})])


async def _abort_mid_find(request: Request) -> int:
    """One match, then the node aborts the association (and never answers the request)."""
    match = Dataset()
    match.QueryRetrieveLevel, match.PatientID = "STUDY", "1"
    await request.send_pending(match)
    await asyncio.sleep(0.2)
    request.session.association.abort()
    await asyncio.sleep(10)
    return 0x0000


def test_a_handler_working_longer_than_the_idle_timeout_is_not_aborted() -> None:
    async def slow_find(request: Request) -> int:
        await asyncio.sleep(3.5)  # over three idle periods with nothing on the wire
        return 0x0000

    async def main() -> int:
        async with (
            _node(slow_find, idle=1.0) as node,
            dicomwire.connect(LOCALHOST, node.port, called_ae="BUSY", services=["find"]) as client,
        ):
            found = client.find({"QueryRetrieveLevel": "STUDY"})
            matches = [match async for match in found]
            return len(matches)

    assert run_bounded(main(), 30) == 0


def test_an_idle_association_is_still_aborted() -> None:
    async def main() -> None:
        async def never(request: Request) -> int:
            return 0x0000

        async with (
            _node(never, idle=0.3) as node,
            dicomwire.connect(LOCALHOST, node.port, called_ae="BUSY", services=["find"]) as client,
        ):
            await asyncio.sleep(1.5)
            with pytest.raises(DicomWireError):
                async for _ in client.find({"QueryRetrieveLevel": "STUDY"}):
                    pass

    run_bounded(main(), 30)


def test_every_wait_on_an_aborted_operation_ends_with_the_error() -> None:
    """The error that ended the session answers every later wait (a C-CANCEL's drain
    once waited for a response that never comes, with no DIMSE timeout set)."""

    async def main() -> None:
        async with _node(_abort_mid_find, idle=30) as node:
            client = await dicomwire.connect(
                LOCALHOST, node.port, called_ae="BUSY", services=["find"]
            )
            context = client.negotiated.find_context(STUDY_FIND)
            assert context is not None
            operation = await client.session.send(
                CFindRQ(
                    STUDY_FIND,
                    dataset=encode_identifier(
                        {"QueryRetrieveLevel": "STUDY"}, context.transfer_syntax or ""
                    ),
                ),
                context.context_id,
            )
            with pytest.raises(DicomWireError):
                async for _ in operation:
                    pass
            for _ in range(2):
                with pytest.raises(DicomWireError):
                    await asyncio.wait_for(operation.wait(), 5)
            client.abort()

    run_bounded(main(), 30)


def test_leaving_a_find_after_the_peer_aborted_does_not_hang() -> None:
    async def main() -> None:
        async with _node(_abort_mid_find, idle=30) as node:
            client = await dicomwire.connect(
                LOCALHOST, node.port, called_ae="BUSY", services=["find"]
            )
            with pytest.raises(DicomWireError):
                async for _ in client.find({"QueryRetrieveLevel": "STUDY", "PatientID": ""}):
                    await asyncio.sleep(0.5)  # the abort arrives while we look at a match
            client.abort()

    run_bounded(main(), 10)  # the drain once hung until the 25 s idle/ARTIM end
