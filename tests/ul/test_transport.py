"""The asyncio adapter: TCP_NODELAY on both sides, IPv6, uvloop, both ways to use connect()."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest

from dicomwire.errors import AssociationAborted, AssociationRejected
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.verification import VERIFICATION_SOP_CLASS, echo
from dicomwire.ul.association import Association, AssociationServer, connect
from dicomwire.ul.negotiation import RequestorConfig

from ..conftest import import_or_fail


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


async def _nodelay_of_both_sides() -> tuple[int, int]:
    seen: dict[str, int] = {}

    async def handler(association: Association) -> None:
        sock = association.get_extra_info("socket")
        seen["acceptor"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await node.handle(association)

    node = Node(NodeConfig())
    async with AssociationServer(node.policy, handler) as server:
        await server.start("127.0.0.1", 0)
        config = RequestorConfig(
            "SCU", "DICOMWIRE", [(VERIFICATION_SOP_CLASS, ["1.2.840.10008.1.2"])]
        )
        async with await connect("127.0.0.1", server.port, config) as association:
            sock = association.get_extra_info("socket")
            seen["requestor"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    return seen["requestor"], seen["acceptor"]


def test_tcp_nodelay_on_both_sides() -> None:
    requestor, acceptor = asyncio.run(_nodelay_of_both_sides())
    assert requestor != 0
    assert acceptor != 0


def test_tcp_nodelay_with_uvloop() -> None:
    uvloop = import_or_fail("uvloop")
    requestor, acceptor = uvloop.run(_nodelay_of_both_sides())
    assert requestor != 0 and acceptor != 0


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_echo_over_ipv6() -> None:
    async def run() -> int:
        async with Node(NodeConfig(host="::1", port=0)) as node:
            return await echo("::1", node.port, called_ae_title="DICOMWIRE")

    assert asyncio.run(run()) == 0x0000


def test_connect_is_awaited_or_entered() -> None:
    """``await connect(...)`` and ``async with connect(...)`` both give the association."""

    async def run() -> None:
        config = RequestorConfig(
            "SCU", "DICOMWIRE", [(VERIFICATION_SOP_CLASS, ["1.2.840.10008.1.2"])]
        )
        async with Node(NodeConfig(host="127.0.0.1", port=0)) as node:
            association = await connect("127.0.0.1", node.port, config)
            assert isinstance(association, Association) and association.is_established
            await association.release()
            assert association.closed.done() and association.error is None

            async with connect("127.0.0.1", node.port, config) as entered:
                assert isinstance(entered, Association) and entered.is_established
                assert entered.negotiated is not None
                assert entered.negotiated.accepted_contexts
            assert entered.closed.done() and entered.error is None  # released

            with pytest.raises(RuntimeError, match="the body failed"):
                async with connect("127.0.0.1", node.port, config) as failed:
                    raise RuntimeError("the body failed")
            assert isinstance(failed.error, AssociationAborted)  # aborted, not released
            assert failed.closed.done()

            config.called_ae_title = "SOMEONE-ELSE"
            with pytest.raises(AssociationRejected):
                async with connect("127.0.0.1", node.port, config):
                    raise AssertionError("a rejected association has no body")

    asyncio.run(run())


@pytest.mark.parametrize("first", ["dicomwire.ul.server", "dicomwire.ul.association"])
def test_the_adapter_names_stay_importable_from_association(first: str) -> None:
    """The names that moved (server, timeouts, loop) are still where callers import them."""
    code = (
        f"import {first}\n"
        "from dicomwire.ul.association import (Association, AssociationAborted,\n"
        "    AssociationHandler, AssociationRejected, AssociationServer, DicomTimeoutError,\n"
        "    Timeouts, connect, run_event_loop)\n"
        "from dicomwire.ul import loop, server, timeouts\n"
        "assert AssociationServer is server.AssociationServer\n"
        "assert Timeouts is timeouts.Timeouts and run_event_loop is loop.run_event_loop\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
