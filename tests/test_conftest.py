"""The shared test helpers behave as promised (skip vs fail for a missing DCMTK tool)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Sequence

import pytest

from .conftest import (
    LOCALHOST,
    connected_tcp_pair,
    find_dcmtk_tool,
    get_free_tcp_port,
    stop_process,
)

MISSING = "no-such-dcmtk-tool-dicomwire"


def test_missing_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        find_dcmtk_tool(MISSING)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        find_dcmtk_tool(MISSING)


def test_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        find_dcmtk_tool(MISSING)


def test_present_tool_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/bin:/usr/bin")
    assert find_dcmtk_tool("sh").endswith("/sh")


def test_free_tcp_port_can_be_bound_on_localhost() -> None:
    port = get_free_tcp_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind((LOCALHOST, port))


def test_connected_tcp_pair_is_one_localhost_connection() -> None:
    ours, theirs = connected_tcp_pair()
    with ours, theirs:
        assert ours.getpeername() == theirs.getsockname()
        assert ours.getsockname()[0] == LOCALHOST
        ours.sendall(b"ping")
        assert theirs.recv(4) == b"ping"


def test_background_server_waits_until_listening_and_stops(
    background_server: Callable[[Sequence[str], int], subprocess.Popen[bytes]],
) -> None:
    port = get_free_tcp_port()
    argv = [sys.executable, "-m", "http.server", "--bind", LOCALHOST, str(port)]
    process = background_server(argv, port)
    assert process.poll() is None
    with socket.create_connection((LOCALHOST, port), timeout=5):
        pass
    stop_process(process)
    assert process.poll() is not None
