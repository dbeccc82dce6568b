"""Storage between dicomwire and DCMTK (PS3.4 Annex B, PS3.10 files on both ends).

(a) DCMTK ``storescu`` -> an in-process dicomwire :class:`Node` on 127.0.0.1: Implicit VR
    LE, Explicit VR LE and JPEG Lossless SV1 (made by ``dcmcjpeg +e1``) files, at the
    default maximum PDU and at ``-pdu 4096`` (both sides' limit): every file is stored in
    its own transfer syntax with the same data set bytes (after the file meta) and the
    same pydicom data set;
(b) ``dicomwire store`` -> DCMTK ``storescp --inetd`` on one end of a 127.0.0.1
    connection (DCMTK 3.6's storescp cannot bind one interface, so it never listens),
    reached through the recording proxy of ``test_dcmtk_pdus``: the files storescp
    writes have the data sets that were sent.

DCMTK tools run with TCP_NODELAY=1 (Nagle would cost ~45 ms per message), bounded by a
timeout and killed if still running.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig
from dicomwire.testing.corpus import make_ct, make_small, write_part10
from dicomwire.ul.association import Timeouts
from dicomwire.ul.negotiation import DEFAULT_MAX_PDU_LENGTH

from ..conftest import LOCALHOST, connected_tcp_pair, stop_process
from ..conftest import part10_data_set as data_set_of
from ..conftest import run_bounded as run
from .test_dcmtk_pdus import record_session

pytestmark = pytest.mark.interop

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
NODE_AE = "DICOMWIRE"
SCU_AE = "DCMTK-SCU"
TOOL_TIMEOUT = 30.0
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0)
#: storescu option proposing the files' own transfer syntax first (no conversion).
PROPOSE = {IMPLICIT_VR_LE: "-xi", EXPLICIT_VR_LE: "-xe", JPEG_LOSSLESS_SV1: "-xs"}


def without_meta(path: Path) -> Dataset:
    ds = dcmread(path)
    del ds.file_meta
    return ds


def by_instance(paths: Sequence[Path]) -> dict[str, Path]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in paths}


def assert_same_instances(received: Sequence[Path], sent: Sequence[Path]) -> None:
    """Same SOP instances; each with identical data set bytes and transfer syntax."""
    got, expected = by_instance(received), by_instance(sent)
    assert sorted(got) == sorted(expected)
    for uid, source in expected.items():
        assert data_set_of(got[uid]) == data_set_of(source), uid
        assert without_meta(got[uid]) == without_meta(source), uid


def make_inputs(
    directory: Path, transfer_syntax: str, dcmtk_tool: Callable[[str], str]
) -> list[Path]:
    """Three instances (8 KiB to 128 KiB of pixel data) in ``transfer_syntax``."""
    datasets = [
        make_ct(0, rows=64, columns=64),
        make_ct(1, rows=256, columns=256),
        make_small(2, size=4000),
    ]
    directory.mkdir(parents=True)
    if transfer_syntax != JPEG_LOSSLESS_SV1:
        return [
            write_part10(ds, directory / f"in{index}.dcm", transfer_syntax)
            for index, ds in enumerate(datasets)
        ]
    dcmcjpeg = dcmtk_tool("dcmcjpeg")
    outputs = []
    for index, ds in enumerate(datasets):
        plain = write_part10(ds, directory / f"plain{index}.dcm")
        output = directory / f"in{index}.dcm"
        subprocess.run(
            [dcmcjpeg, "+e1", str(plain), str(output)],
            check=True,
            capture_output=True,
            timeout=TOOL_TIMEOUT,
            env=DCMTK_ENV,
        )
        plain.unlink()
        assert data_set_of(output)[0] == JPEG_LOSSLESS_SV1
        outputs.append(output)
    return outputs


async def run_tool(argv: Sequence[str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=DCMTK_ENV,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), TOOL_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


# --------------------------------------------------------------------------- (a) storescu


@pytest.mark.parametrize("max_pdu", [None, 4096], ids=["default-pdu", "pdu-4096"])
@pytest.mark.parametrize(
    "transfer_syntax",
    [IMPLICIT_VR_LE, EXPLICIT_VR_LE, JPEG_LOSSLESS_SV1],
    ids=["implicit", "explicit", "jpeg-lossless"],
)
def test_storescu_to_dicomwire_node(
    tmp_path: Path,
    dcmtk_tool: Callable[[str], str],
    transfer_syntax: str,
    max_pdu: int | None,
) -> None:
    storescu = dcmtk_tool("storescu")
    sources = make_inputs(tmp_path / "in", transfer_syntax, dcmtk_tool)
    root = tmp_path / "store"
    config = NodeConfig(
        ae_titles=[NODE_AE],
        host=LOCALHOST,
        port=0,
        storage=StorageConfig(root=root, fsync=False),
        timeouts=TIMEOUTS,
        shutdown_grace=1.0,
    )
    if max_pdu is not None:
        config.max_pdu_length = max_pdu
    pdu = ["-pdu", str(max_pdu)] if max_pdu is not None else []

    async def scenario() -> tuple[int, str, int]:
        async with Node(config) as node:
            code, output = await run_tool(
                [
                    storescu,
                    "-v",
                    PROPOSE[transfer_syntax],
                    *pdu,
                    "-aet",
                    SCU_AE,
                    "-aec",
                    NODE_AE,
                    LOCALHOST,
                    str(node.port),
                    *map(str, sources),
                ]
            )
            return code, output, node.storage.stored

    code, output, count = run(scenario())
    assert code == 0, output
    assert output.count("Received Store Response (Success)") == len(sources), output
    assert count == len(sources)
    # storescu fragments to the node's maximum PDU length (PDV = PDU - 12 bytes of headers)
    assert f"Max Send PDV: {(max_pdu or DEFAULT_MAX_PDU_LENGTH) - 12}" in output, output
    received = sorted(root.rglob("*.dcm"))
    assert_same_instances(received, sources)
    for path in received:
        meta = dcmread(path, stop_before_pixels=True).file_meta
        assert meta.TransferSyntaxUID == transfer_syntax
        assert meta.SourceApplicationEntityTitle == SCU_AE
    assert not any((root / ".incoming").iterdir())


# --------------------------------------------------------------------------- (b) storescp


@pytest.mark.parametrize("pdu", [16384, 4096])
def test_dicomwire_store_to_storescp(
    tmp_path: Path, dcmtk_tool: Callable[[str], str], pdu: int
) -> None:
    storescp = dcmtk_tool("storescp")
    sources = [
        write_part10(make_ct(0, rows=64, columns=64), tmp_path / "in" / "ct-explicit.dcm"),
        write_part10(
            make_ct(1, rows=128, columns=128), tmp_path / "in" / "ct-implicit.dcm", IMPLICIT_VR_LE
        ),
        write_part10(make_small(2, size=5000), tmp_path / "in" / "deep" / "sc.dcm"),
    ]
    output = tmp_path / "received"
    output.mkdir()
    ours, theirs = connected_tcp_pair()
    log_path = tmp_path / "storescp.log"
    with open(log_path, "wb") as log:
        try:
            process = subprocess.Popen(
                [storescp, "--inetd", "-aet", "ANY-SCP", "-pdu", str(pdu), "-od", str(output)],
                stdin=theirs,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=DCMTK_ENV,
            )
        finally:
            theirs.close()
    try:
        _, result = record_session(
            ours,
            lambda port: [
                sys.executable,
                "-m",
                "dicomwire.services.cli",
                "store",
                LOCALHOST,
                str(port),
                str(tmp_path / "in"),
                "--aet",
                "DW-STORE",
                "--aec",
                "ANY-SCP",
                "--max-pdu",
                str(pdu),
                "--no-progress",
                "--retries",
                "0",
            ],
        )
        assert process.wait(timeout=TOOL_TIMEOUT) == 0, log_path.read_text()
    finally:
        ours.close()
        stop_process(process)
    assert b"sent 3 of 3 instances (0 warnings, 0 failures)" in result.stdout
    received = [p for p in output.iterdir() if p.is_file()]
    assert len(received) == len(sources)
    assert_same_instances(received, sources)
