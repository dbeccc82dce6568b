"""``dicomwire store`` and ``dicomwire serve`` as operators run them (subprocesses).

``dicomwire store`` sends to an in-process :class:`Node` (127.0.0.1, port 0) or to a
``dicomwire serve`` subprocess bound to 127.0.0.1; every subprocess has a timeout and is
killed at the end. Checked: recursion into directories, the summary line and the exit
code, per-file failures (not DICOM; compressed for a peer taking only uncompressed: not
decompressed), conversion to the transfer syntax the peer accepted, ``--window`` and
``--associations``, ``serve --config node.toml`` (every table honoured, unknown keys exit
2), ``--help`` listing every flag, and a graceful exit 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.filereader import read_dataset

from dicomwire.dimse.session import open_session
from dicomwire.services.cli import main
from dicomwire.services.storage import StoreSummary, store_files
from dicomwire.testing.corpus import CT_IMAGE_STORAGE, make_ct, write_corpus, write_part10
from dicomwire.ul.negotiation import RequestorConfig

from ..conftest import get_free_tcp_port
from ..conftest import part10_data_set as data_set_of
from ..conftest import run_bounded as run
from ._support import CLI, NODE_AE, NODE_TIMEOUTS, Served, serve_processes, serving

LOCALHOST = "127.0.0.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
CLI_TIMEOUT = 30.0
TIMEOUTS = NODE_TIMEOUTS
SUMMARY = re.compile(
    r"sent (\d+) of (\d+) instances \((\d+) warnings, (\d+) failures\), "
    r"[\d.]+ MB in [\d.]+ s \([\d.]+ MB/s\)(?:, \d+ skipped \(not DICOM\))?"
)
DOCS = Path(__file__).resolve().parents[2] / "docs"

# --------------------------------------------------------------------------- helpers


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str

    def summary(self) -> tuple[int, int, int, int]:
        """(sent, total, warnings, failures) of the summary line, the last line of stdout."""
        lines = self.stdout.strip().splitlines()
        assert lines, f"no output; stderr: {self.stderr}"
        match = SUMMARY.fullmatch(lines[-1])
        assert match, f"not a summary line: {lines[-1]!r}"
        sent, total, warnings, failures = (int(g) for g in match.groups())
        return sent, total, warnings, failures


async def cli(*args: str | Path, timeout: float = CLI_TIMEOUT) -> Completed:
    """Run ``dicomwire ARGS...`` to completion (killed after ``timeout`` seconds)."""
    process = await asyncio.create_subprocess_exec(
        *CLI,
        *map(str, args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(errors="replace"), err.decode())


def store_args(port: int, *paths: Path, calling: str = "CLI-SCU") -> list[str | Path]:
    return [
        "store",
        LOCALHOST,
        str(port),
        *paths,
        "--aec",
        NODE_AE,
        "--aet",
        calling,
        "--no-progress",
        "--connect-timeout",
        "5",
        "--dimse-timeout",
        "10",
    ]


async def store_via_cli(root: Path, *paths: Path, **storage: Any) -> Completed:
    """``dicomwire store PATHS`` to an in-process node storing under ``root``."""
    async with serving(root, **storage) as node:
        return await cli(*store_args(node.port, *paths))


def stored(root: Path) -> dict[str, Path]:
    """SOP Instance UID -> stored file (from the file names of the default layout)."""
    return {p.stem: p for p in root.rglob("*.dcm")} if root.exists() else {}


def assert_stored_as_sent(root: Path, sources: list[Path]) -> None:
    received = stored(root)
    assert len(received) == len(sources)
    for source in sources:
        uid = str(dcmread(source, stop_before_pixels=True).SOPInstanceUID)
        assert data_set_of(received[uid]) == data_set_of(source)


# --------------------------------------------------------------------------- serve subprocess


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """``serve(*args)``: a ``dicomwire serve`` process, killed at teardown (see _support)."""
    with serve_processes(tmp_path) as start:
        yield start


def terminate(served: Served, timeout: float = 5.0) -> tuple[int, float]:
    """SIGTERM; (exit code, seconds it took). Fails if it does not exit in ``timeout``."""
    started = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    try:
        code = served.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dicomwire serve still running {timeout} s after SIGTERM")
    return code, time.monotonic() - started


# --------------------------------------------------------------------------- store


def test_store_sends_a_directory_recursively_and_prints_a_summary(tmp_path: Path) -> None:
    sources = [
        *write_corpus(tmp_path / "in" / "a", 2, "ct", rows=32, columns=32),
        *write_corpus(
            tmp_path / "in" / "b" / "c" / "d", 3, "small", transfer_syntax=IMPLICIT_VR_LE
        ),
    ]
    (tmp_path / "in" / "b" / "notes.txt").write_text("not DICOM: skipped in a directory")
    root = tmp_path / "store"

    result = run(store_via_cli(root, tmp_path / "in"))

    assert result.returncode == 0, result.stderr
    assert result.summary() == (5, 5, 0, 0)
    assert "failed" not in result.stderr
    assert_stored_as_sent(root, sources)
    for path in stored(root).values():
        assert dcmread(path, stop_before_pixels=True).file_meta.SourceApplicationEntityTitle == (
            "CLI-SCU"
        )


def test_store_exits_1_and_lists_a_named_file_that_is_not_dicom(tmp_path: Path) -> None:
    sources = write_corpus(tmp_path / "in", 2, "small")
    bad = tmp_path / "report.pdf"
    bad.write_bytes(b"%PDF-1.4 " + bytes(300))
    root = tmp_path / "store"

    result = run(store_via_cli(root, tmp_path / "in", bad))

    assert result.returncode == 1
    assert result.summary() == (2, 3, 0, 1)
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1
    assert str(bad) in failed[0]
    assert "not a DICOM" in failed[0]
    assert_stored_as_sent(root, sources)


def test_store_does_not_decompress_for_an_uncompressed_only_peer(
    tmp_path: Path, dcmtk_tool: Callable[[str], str]
) -> None:
    dcmcjpeg = dcmtk_tool("dcmcjpeg")
    source = write_part10(make_ct(0, rows=32, columns=32), tmp_path / "raw.dcm")
    jpeg = tmp_path / "in" / "jpeg.dcm"
    jpeg.parent.mkdir()
    subprocess.run(
        [dcmcjpeg, "+e1", str(source), str(jpeg)],
        check=True,
        timeout=30,
        capture_output=True,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    assert data_set_of(jpeg)[0] == JPEG_LOSSLESS_SV1
    plain = write_part10(make_ct(1, rows=32, columns=32), tmp_path / "in" / "plain.dcm")
    root = tmp_path / "store"

    result = run(
        store_via_cli(root, tmp_path / "in", transfer_syntaxes=(EXPLICIT_VR_LE, IMPLICIT_VR_LE))
    )

    assert result.returncode == 1
    assert result.summary() == (1, 2, 0, 1)
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1
    assert str(jpeg) in failed[0]
    assert JPEG_LOSSLESS_SV1 in failed[0]
    assert "not decompressed" in failed[0]
    assert_stored_as_sent(root, [plain])  # only the uncompressed file, nothing decompressed


def test_store_converts_explicit_to_implicit_for_a_peer_taking_only_implicit(
    tmp_path: Path,
) -> None:
    (source,) = write_corpus(tmp_path / "in", 1, "ct", rows=32, columns=32)
    assert data_set_of(source)[0] == EXPLICIT_VR_LE
    root = tmp_path / "store"

    result = run(store_via_cli(root, source, transfer_syntaxes=(IMPLICIT_VR_LE,)))

    assert result.returncode == 0, result.stderr
    assert result.summary() == (1, 1, 0, 0)
    (target,) = stored(root).values()
    syntax, data = data_set_of(target)
    assert syntax == IMPLICIT_VR_LE
    received = read_dataset_bytes(data, implicit=True)
    original = dcmread(source)
    assert [e.tag for e in received] == [e.tag for e in original]
    for element in original:
        assert received[element.tag].value == element.value, element.keyword


def read_dataset_bytes(data: bytes, *, implicit: bool) -> Dataset:
    return read_dataset(BytesIO(data), is_implicit_VR=implicit, is_little_endian=True)


@pytest.mark.parametrize("option", [["--window", "8"], ["--associations", "3"]])
def test_store_window_and_associations_deliver_every_file(
    tmp_path: Path, option: list[str]
) -> None:
    sources = write_corpus(tmp_path / "in", 12, "small", size=3000)
    root = tmp_path / "store"

    async def scenario() -> Completed:
        async with serving(root) as node:
            return await cli(*store_args(node.port, tmp_path / "in"), *option)

    result = run(scenario())
    assert result.returncode == 0, result.stderr
    assert result.summary() == (12, 12, 0, 0)
    assert_stored_as_sent(root, sources)


# --------------------------------------------------------------------------- serve


def test_serve_flags_store_and_sigterm_exits_0(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    sources = write_corpus(tmp_path / "in", 3, "small")
    root = tmp_path / "served"
    served = serve("--host", LOCALHOST, "--port", "0", "--storage", root, "--no-fsync")

    result = run(cli(*store_args(served.port, tmp_path / "in")))
    assert result.returncode == 0, result.stderr + served.output()
    assert result.summary() == (3, 3, 0, 0)
    assert_stored_as_sent(root, sources)

    code, seconds = terminate(served)
    assert code == 0, served.output()
    assert seconds < 5
    assert "Traceback" not in served.output()


def test_sigterm_with_an_open_association_exits_0_after_the_grace(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    config = tmp_path / "node.toml"
    config.write_text('host = "127.0.0.1"\nport = 0\nshutdown_grace = 0.5\n')
    served = serve("--config", config, "--storage", tmp_path / "store")

    async def scenario() -> tuple[int, float, bool]:
        requestor = RequestorConfig("IDLE-SCU", NODE_AE, [(CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])])
        async with open_session(LOCALHOST, served.port, requestor, timeouts=TIMEOUTS) as session:
            code, seconds = await asyncio.to_thread(terminate, served)
            await session.association.closed_or_timeout(5.0)
            return code, seconds, session.association.is_established

    code, seconds, still_established = run(scenario())
    assert code == 0, served.output()
    assert seconds < 5
    assert not still_established


def test_serve_honours_a_toml_config(tmp_path: Path, serve: Callable[..., Served]) -> None:
    port = get_free_tcp_port()
    root = tmp_path / "toml-store"
    config = tmp_path / "node.toml"
    config.write_text(
        f"""
ae_titles = ["TOMLNODE", "OTHERNAME"]
host = "127.0.0.1"
port = {port}

[storage]
root = "{root}"
layout = "{{CallingAETitle}}/{{SOPInstanceUID}}.dcm"
fsync = false
duplicates = "reject"

[timeouts]
artim = 1
network_idle = 30

[[known_nodes]]
ae_title = "GOODSCU"
host = "127.0.0.1"
"""
    )
    sources = write_corpus(tmp_path / "in", 2, "small")
    served = serve("--config", config)
    assert served.port == port

    async def send(calling: str, called: str) -> StoreSummary:
        return await store_files(
            LOCALHOST,
            port,
            sources,
            calling_ae_title=calling,
            called_ae_title=called,
            retries=0,
            timeouts=TIMEOUTS,
        )

    async def scenario() -> list[StoreSummary]:
        return [
            await send("GOODSCU", "TOMLNODE"),
            await send("GOODSCU", "OTHERNAME"),  # a duplicate by now: rejected
            await send("STRANGER", "TOMLNODE"),  # not in [[known_nodes]]
            await send("GOODSCU", "DICOMWIRE"),  # not one of ae_titles
        ]

    first, duplicate, stranger, wrong_called = run(scenario())
    assert [o.status for o in first.outcomes] == [0, 0]
    for source in sources:  # [storage] layout and root
        uid = str(dcmread(source, stop_before_pixels=True).SOPInstanceUID)
        assert data_set_of(root / "GOODSCU" / f"{uid}.dcm") == data_set_of(source)
    assert [o.status for o in duplicate.outcomes] == [0x0111, 0x0111]  # duplicates = reject
    for summary, reason in ((stranger, "calling AE"), (wrong_called, "called AE")):
        assert summary.sent == 0
        assert all(reason in (o.error or "") for o in summary.outcomes), summary.outcomes

    # [timeouts] artim = 1: a connection that never sends A-ASSOCIATE-RQ is closed
    with socket.create_connection((LOCALHOST, port), timeout=10) as idle:
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):  # a reset is a close too
            assert idle.recv(1) == b""
        assert time.monotonic() - started < 5

    code, _ = terminate(served)
    assert code == 0, served.output()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 'blue'\n", "unknown setting(s) in"),
        ("[storage]\nfsynk = false\n", "unknown setting(s) in [storage]: fsynk"),
    ],
    ids=["top-level", "storage"],
)
def test_serve_with_an_unknown_key_exits_2(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "node.toml"
    config.write_text(text)

    storage = tmp_path / "never-created"
    result = run(
        cli("serve", "--config", config, "--host", LOCALHOST, "--port", "0", "--storage", storage)
    )

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not storage.exists()


def test_serve_with_a_wrongly_typed_value_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("ae_titles = 5\n")

    result = run(
        cli(
            "serve",
            "--config",
            config,
            "--host",
            LOCALHOST,
            "--port",
            "0",
            "--storage",
            tmp_path / "s",
            timeout=10,
        )
    )

    assert "Traceback" not in result.stderr
    assert result.returncode == 2


# --------------------------------------------------------------------------- --help

SERVE_FLAGS = [
    "--config", "-c", "--port", "-p", "--host", "--aet", "-aet", "--storage", "-od",
    "--layout", "--discard", "--no-fsync", "--duplicates", "--promiscuous",
    "--max-associations", "--max-pdu", "-pdu", "--acse-timeout", "--artim-timeout",
    "--idle-timeout", "--verbose", "-v", "--debug", "-d",
]  # fmt: skip
STORE_FLAGS = [
    "--aet", "-aet", "--aec", "-aec", "--window", "--associations", "--retries",
    "--dimse-timeout", "--connect-timeout", "--no-progress", "--max-pdu", "-pdu",
    "--acse-timeout", "--artim-timeout", "--idle-timeout", "--verbose", "-v", "--debug", "-d",
]  # fmt: skip


def help_text(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def flags_in(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", text))


@pytest.mark.parametrize(("command", "expected"), [("serve", SERVE_FLAGS), ("store", STORE_FLAGS)])
def test_help_lists_every_flag(
    command: str, expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_text(command, capsys)
    listed = flags_in(text)
    assert set(expected) <= listed, sorted(set(expected) - listed)
    # and every option the parser has is in the help (none hidden)
    from dicomwire.services.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    sub = subparsers.choices[command]  # type: ignore[index]
    options = {s for action in sub._actions for s in action.option_strings}
    assert options <= listed, sorted(options - listed)
    if command == "serve":
        assert "{overwrite,keep,reject}" in text


def test_serve_help_has_every_flag_the_node_docs_mention(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = DOCS / "node.md"  # part of the repository: a missing one is a failure
    comments = [line.split("#", 1)[1] for line in doc.read_text().splitlines() if "#" in line]
    documented = {flag for comment in comments for flag in flags_in(comment) if flag[1] == "-"}
    assert documented
    listed = flags_in(help_text("serve", capsys))
    assert documented <= listed, sorted(documented - listed)
