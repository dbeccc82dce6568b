"""Running DCMTK tools and the ``dicomwire`` command line as real peers.

- :func:`dcmtk` finds a DCMTK binary; when it is missing the test is skipped, except in CI
  (``CI=true``), where a missing peer is a failure so CI cannot go green without DCMTK;
- :func:`dicomwire_argv` is the ``dicomwire`` console script of this interpreter's venv;
- :func:`background` starts a server subprocess on 127.0.0.1 and always stops it;
- :func:`run` runs a client with a timeout (never more than 30 s);
- :func:`rejection` reads DCMTK's report of an A-ASSOCIATE-RJ (PS3.8 Table 9-21).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..conftest import find_dcmtk_tool, get_free_tcp_port, wait_for_port

LOCALHOST = "127.0.0.1"
#: Upper bound for any subprocess of these tests.
PROCESS_TIMEOUT = 30.0


#: The DCMTK lookup of tests/conftest.py: skip when missing, fail in CI.
dcmtk = find_dcmtk_tool


def dicomwire_argv() -> list[str]:
    """The ``dicomwire`` command: the console script next to ``sys.executable``."""
    script = Path(sys.executable).with_name("dicomwire")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dicomwire.services.cli"]


free_tcp_port = get_free_tcp_port


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """Terminate ``process`` (only it), kill it if it lingers; return its exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    return process.returncode


@contextlib.contextmanager
def background(
    argv: Sequence[str], port: int, log: Path, *, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server (output to ``log``) until the block ends; it is stopped in any case."""
    with open(log, "wb") as out:
        process = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        wait_for_port(port, process)
        yield process
    finally:
        stop(process)


def run(
    argv: Sequence[str], timeout: float = PROCESS_TIMEOUT, *, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a client to completion (killed after ``timeout`` s); output captured as text."""
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )


_RESULT = re.compile(r"Result:\s*(Rejected \w+),\s*Source:\s*(.+?)\s*$", re.MULTILINE)
_REASON = re.compile(r"Reason:\s*(.+?)\s*$", re.MULTILINE)


def rejection(output: str) -> tuple[str, str, str] | None:
    """(result, source, reason) as DCMTK prints an A-ASSOCIATE-RJ, or None if none."""
    result = _RESULT.search(output)
    if result is None:
        return None
    reason = _REASON.search(output, result.end())
    assert reason is not None, f"DCMTK printed a result but no reason:\n{output}"
    return result.group(1), result.group(2), reason.group(1)
