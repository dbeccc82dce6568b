"""The shared test helpers behave as promised (skip vs fail for a missing tool or module)."""

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
    find_tool,
    get_free_tcp_port,
    import_or_fail,
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


@pytest.mark.parametrize(
    "missing",
    [
        lambda: find_tool(MISSING, "a hint"),
        lambda: import_or_fail("no_such_module_dicomwire"),
    ],
    ids=["program", "module"],
)
def test_other_missing_things_skip_outside_ci_and_fail_in_ci(
    monkeypatch: pytest.MonkeyPatch, missing: Callable[[], object]
) -> None:
    """Coverage a machine lacks is a skip locally, a failure in CI (CI=true)."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        missing()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        missing()


def test_import_or_fail_returns_the_module() -> None:
    assert import_or_fail("json").dumps([]) == "[]"


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
