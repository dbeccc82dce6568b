"""pydicom's real-world test files through ``dicomwire store`` (issue 13; PS3.4 Annex B).

Every file of ``pydicom.data`` is copied into one directory. DCMTK ``storescu`` sends the
directory first (``+sd +r``: scan it; it reads data sets without file meta by default),
to know which files a mature SCU delivers. ``dicomwire store --no-header`` then sends the
same directory, in one run each, to DCMTK ``storescp +xa`` (accepting every transfer
syntax) and to a dicomwire node (the Node ``dicomwire serve`` runs, in process): each file
DCMTK delivered must be delivered, with the same data set at the receiver (byte for byte
at the node, which writes what it receives; element for element at storescp, which
re-encodes: it drops group lengths and trailing padding), and every other file must have
a line saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_files

from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig
from dicomwire.services.storage.scu import inspect_file
from dicomwire.ul.association import Timeouts

from ..conftest import get_free_tcp_port, part10_data_set, stop_process, wait_for_port

LOCALHOST = "127.0.0.1"
CLI = [sys.executable, "-m", "dicomwire.services.cli"]
TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0)
#: Without it DCMTK waits on delayed ACKs: seconds per run (PEERS.md).
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
TRAILING_PADDING = 0xFFFCFFFC
LINE = re.compile(r"^(sent|warning|failed|skipped): (.+?): ")


def corpus(directory: Path) -> list[Path]:
    """Every file of pydicom's test set, copied flat into ``directory`` (first of a name)."""
    directory.mkdir(parents=True)
    for source in get_testdata_files("**/*"):
        target = directory / Path(source).name
        if Path(source).is_file() and not target.exists():
            shutil.copy(source, target)
    return sorted(directory.iterdir())


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


def received_by_uid(root: Path) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and path.parent.name not in (".incoming", ".dicomwire"):
            found[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
    return found


def elements(path: Path) -> dict[int, object]:
    """Each element's value, but group lengths and trailing padding (storescp drops them)."""
    dataset = dcmread(path, force=True)
    return {
        int(element.tag): element.value
        for element in dataset
        if element.tag.element != 0 and element.tag != TRAILING_PADDING
    }


def assert_same_data_sets(sources: list[Path], receiver: Path, *, byte_exact: bool) -> None:
    """Each source whose SOP Instance UID is unique in the corpus arrived with its data set:
    byte for byte after the meta when ``byte_exact`` (a dicomwire node writes what it
    receives), else element for element (storescp re-encodes what it writes).
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
        got_syntax, got = part10_data_set(received[uid])
        info = inspect_file(same[0], without_meta=True)
        sent = same[0].read_bytes()[info.dataset_offset :] + b"\x00" * info.pad
        if byte_exact and got_syntax == info.transfer_syntax:
            assert got == sent, same[0]
        else:  # re-encoded by the receiver, or converted: the same elements
            assert elements(received[uid]) == elements(same[0]), same[0]


def outcome_lines_cover(files: list[Path], lines: dict[str, str], dcmtk: set[str]) -> None:
    names = {path.name for path in files}
    assert names <= lines.keys(), sorted(names - lines.keys())
    delivered = {name for name, line in lines.items() if line.startswith(("sent", "warning"))}
    assert dcmtk <= delivered, {name: lines[name] for name in dcmtk - delivered}
    for name in names - delivered:
        assert len(lines[name].split(": ", 2)[2]) > 5, lines[name]  # a reason is given


@contextlib.contextmanager
def storescp(binary: str, directory: Path) -> Iterator[int]:
    """DCMTK storescp accepting every transfer syntax it knows (+xa) into ``directory``."""
    directory.mkdir()
    port = get_free_tcp_port()
    process = subprocess.Popen(
        [binary, "-aet", "STORESCP", "+xa", "-od", str(directory), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=DCMTK_ENV,
    )
    try:
        wait_for_port(port, process)
        yield port
    finally:
        stop_process(process)


def test_pydicom_corpus_to_storescp_and_to_dicomwire(
    tmp_path: Path, dcmtk_tool: Callable[[str], str]
) -> None:
    files = corpus(tmp_path / "in")
    with storescp(dcmtk_tool("storescp"), tmp_path / "by-storescu") as port:
        delivered = dcmtk_delivered(dcmtk_tool("storescu"), port, tmp_path / "in")
    assert len(delivered) > 50  # sanity: most of the set goes
    out_ours = tmp_path / "by-dicomwire"
    with storescp(dcmtk_tool("storescp"), out_ours) as port:
        lines = dicomwire_store(port, "STORESCP", tmp_path / "in")
    outcome_lines_cover(files, lines, delivered)
    assert_same_data_sets(
        [tmp_path / "in" / name for name in delivered], out_ours, byte_exact=False
    )

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
    assert_same_data_sets([tmp_path / "in" / name for name in delivered], root, byte_exact=True)
