"""Shared fixtures: DCMTK tools, free TCP ports on 127.0.0.1, background servers, and the
helpers several test modules need (a bounded asyncio.run, a Part 10 reader of their own).

DCMTK is the interoperability peer: when a tool is missing the test is skipped, except in
CI (``CI=true``) where a missing peer is a failure, so CI cannot silently go green.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import NoReturn, TypeVar

import pytest
from pydicom import dcmread

LOCALHOST = "127.0.0.1"

T = TypeVar("T")


def run_bounded(coroutine: Awaitable[T], timeout: float = 60.0) -> T:
    """``asyncio.run`` that gives up after ``timeout`` seconds: a test never hangs."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


def part10_data_set(path: Path) -> tuple[str, bytes]:
    """(transfer syntax, data set bytes after the meta group), read without dicomwire."""
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM", f"{path} is not a Part 10 file"
    assert struct.unpack_from("<HH2sH", raw, 132) == (2, 0, b"UL", 4)
    (group_length,) = struct.unpack_from("<L", raw, 140)
    meta = dcmread(path, stop_before_pixels=True).file_meta
    return str(meta.TransferSyntaxUID), raw[144 + group_length :]


def skip_or_fail(message: str) -> NoReturn:
    """Skip a test that cannot run here; in CI (``CI=true``) lost coverage is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def import_or_fail(name: str) -> ModuleType:
    """``pytest.importorskip`` that fails when ``CI=true`` (see :func:`skip_or_fail`)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        skip_or_fail(f"cannot import {name}: {exc}")


def find_tool(name: str, hint: str) -> str:
    """Path of the program ``name``; skip (or fail when ``CI=true``) if it is missing."""
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name!r} not found on PATH ({hint})")
    return path


def find_dcmtk_tool(name: str) -> str:
    """Path of the DCMTK binary ``name``; skip (or fail when ``CI=true``) if it is missing."""
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"DCMTK tool {name!r} not found on PATH (apt-get install dcmtk)")
    return path


@pytest.fixture
def dcmtk_tool() -> Callable[[str], str]:
    """``dcmtk_tool("storescp")`` -> path of the binary (skip/fail when missing)."""
    return find_dcmtk_tool


def get_free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def free_tcp_port() -> int:
    return get_free_tcp_port()


def connected_tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of one TCP connection over 127.0.0.1 (the listener is closed at once).

    Hand one end to a server run in inetd mode (e.g. ``storescp --inetd``) and it serves
    that connection without ever listening on a port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOCALHOST, 0))
        listener.listen(1)
        ours = socket.create_connection(listener.getsockname(), timeout=10)
        theirs, _ = listener.accept()
    ours.settimeout(None)
    return ours, theirs


def wait_for_port(
    port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 10.0
) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} before listening")
        try:
            with socket.create_connection((LOCALHOST, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on {LOCALHOST}:{port} after {timeout}s"
                ) from None
            time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate ``process`` (and only it), killing it if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


@pytest.fixture
def background_server(
    tmp_path: Path,
) -> Iterator[Callable[[Sequence[str], int], subprocess.Popen[bytes]]]:
    """Start servers that are always terminated at teardown.

    ``background_server(argv, port)`` starts ``argv`` (output to a log file in ``tmp_path``)
    and returns once it accepts connections on 127.0.0.1:``port``.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: Sequence[str], port: int) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"server-{len(started)}.log", "wb")  # noqa: SIM115
        try:
            process = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        started.append(process)
        wait_for_port(port, process)
        return process

    try:
        yield start
    finally:
        for process in started:
            stop_process(process)
