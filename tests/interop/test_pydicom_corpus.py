"""pydicom's real-world test files through ``dicomwire store`` (issue 13; PS3.4 Annex B).

Every file of ``pydicom.data`` is copied into one directory. DCMTK ``storescu`` sends the
directory first (``+sd +r``: scan it; it reads data sets without file meta by default),
to know which files a mature SCU delivers. ``dicomwire store --no-header`` then sends the
same directory, in one run each, to DCMTK ``storescp +xa`` (accepting every transfer
syntax) and to a dicomwire node: each file DCMTK delivered must be delivered, with the
same data set at the receiver, and every other file must have a line saying why.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_files

from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig
from dicomwire.services.storage.scu import inspect_file
from dicomwire.ul.association import Timeouts

from ..conftest import part10_data_set

LOCALHOST = "127.0.0.1"
CLI = [sys.executable, "-m", "dicomwire.services.cli"]
TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0)
#: Without it DCMTK waits on delayed ACKs: seconds per run (PEERS.md).
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
DEFLATED = "1.2.840.10008.1.2.1.99"
LINE = re.compile(r"^(sent|warning|failed|skipped): (.+?): ")


def corpus(directory: Path) -> list[Path]:
    """Every file of pydicom's test set, copied flat into ``directory`` (first of a name)."""
    directory.mkdir(parents=True)
    for source in get_testdata_files("**/*"):
        target = directory / Path(source).name
        if Path(source).is_file() and not target.exists():
            shutil.copy(source, target)
    return sorted(directory.iterdir())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


def dcmtk_delivered(storescu: str, port: int, directory: Path) -> set[str]:
    """Names of the files DCMTK storescu delivers from ``directory`` (its -v log)."""
    result = subprocess.run(
        [storescu, "-v", "-aec", "STORESCP", "-nh", "+sd", "+r", LOCALHOST, str(port), "."],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        env=DCMTK_ENV,
    )
    delivered, current = set(), ""
    for line in result.stdout.splitlines() + result.stderr.splitlines():
        if line.startswith("I: Sending file: "):
            current = Path(line.removeprefix("I: Sending file: ")).name
        elif line.startswith("I: Received Store Response (Success") or line.startswith(
            "I: Received Store Response (Warning"
        ):
            delivered.add(current)
    return delivered


def dicomwire_store(port: int, called: str, directory: Path) -> dict[str, str]:
    """``dicomwire store -v --no-header`` of ``directory``: each file's outcome line by name."""
    options = ("-v", "--no-header", "--no-progress", "-aec", called)
    result = subprocess.run(
        [*CLI, "store", *options, LOCALHOST, str(port), str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    lines: dict[str, str] = {}
    for line in (result.stdout + result.stderr).splitlines():
        match = LINE.match(line)
        if match:
            lines[Path(match.group(2)).name] = line
    return lines


def inflate(data: bytes) -> bytes:
    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(data)


def received_by_uid(root: Path) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and path.parent.name != ".incoming":
            found[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
    return found


def assert_same_data_sets(sources: list[Path], receiver: Path, *, exact: bool = True) -> None:
    """Each source whose SOP Instance UID is unique in the corpus arrived (with its data set,
    byte for byte, when ``exact``: storescp re-encodes what it writes, a dicomwire node not).
    """
    by_uid: dict[str, list[Path]] = {}
    for source in sources:
        uid = str(dcmread(source, force=True, stop_before_pixels=True).SOPInstanceUID)
        by_uid.setdefault(uid, []).append(source)
    received = received_by_uid(receiver)
    for uid, same in by_uid.items():
        if len(same) != 1:
            continue  # several corpus files share it: the receiver keeps one
        assert uid in received, same[0]
        if not exact:
            continue
        got_syntax, got = part10_data_set(received[uid])
        info = inspect_file(same[0], without_meta=True)
        sent = same[0].read_bytes()[info.dataset_offset :] + b"\x00" * info.pad
        if got_syntax == info.transfer_syntax == DEFLATED:  # storescp deflates anew
            assert inflate(got) == inflate(sent), same[0]
        elif got_syntax == info.transfer_syntax:
            assert got == sent, same[0]
        else:  # converted between uncompressed syntaxes: the same elements
            assert dcmread(received[uid]) == dcmread(same[0], force=True), same[0]


def outcome_lines_cover(files: list[Path], lines: dict[str, str], dcmtk: set[str]) -> None:
    names = {path.name for path in files}
    assert names <= lines.keys(), sorted(names - lines.keys())
    delivered = {name for name, line in lines.items() if line.startswith(("sent", "warning"))}
    assert dcmtk <= delivered, {name: lines[name] for name in dcmtk - delivered}
    for name in names - delivered:
        assert len(lines[name].split(": ", 2)[2]) > 5, lines[name]  # a reason is given


def test_pydicom_corpus_to_storescp_and_to_dicomwire(
    tmp_path: Path, dcmtk_tool: Callable[[str], str]
) -> None:
    files = corpus(tmp_path / "in")
    port = free_port()
    out_dcmtk, out_ours = tmp_path / "by-storescu", tmp_path / "by-dicomwire"
    out_dcmtk.mkdir()
    out_ours.mkdir()
    storescp = subprocess.Popen(
        [dcmtk_tool("storescp"), "-aet", "STORESCP", "+xa", "-od", str(out_dcmtk), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=DCMTK_ENV,
    )
    try:
        delivered = dcmtk_delivered(dcmtk_tool("storescu"), port, tmp_path / "in")
        assert len(delivered) > 50  # sanity: most of the set goes
        storescp.terminate()
        storescp.wait(10)
        storescp = subprocess.Popen(
            [dcmtk_tool("storescp"), "-aet", "STORESCP", "+xa", "-od", str(out_ours), str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=DCMTK_ENV,
        )
        lines = dicomwire_store(port, "STORESCP", tmp_path / "in")
    finally:
        storescp.terminate()
        storescp.wait(10)
    outcome_lines_cover(files, lines, delivered)
    assert_same_data_sets([tmp_path / "in" / name for name in delivered], out_ours, exact=False)

    root = tmp_path / "node"

    async def to_node() -> dict[str, str]:
        config = NodeConfig(
            ae_titles=["DICOMWIRE"],
            host=LOCALHOST,
            port=0,
            storage=StorageConfig(root=root, fsync=False),
            timeouts=TIMEOUTS,
            shutdown_grace=1.0,
        )
        async with Node(config) as node:
            return await asyncio.to_thread(dicomwire_store, node.port, "DICOMWIRE", tmp_path / "in")

    lines = asyncio.run(asyncio.wait_for(to_node(), 180))
    outcome_lines_cover(files, lines, delivered)
    assert_same_data_sets([tmp_path / "in" / name for name in delivered], root)
