"""Files the node stores, judged by DCMTK: ``dcmftest`` (PS3.10 Part 10 file test) and
``dciodvfy`` where it is installed, and the file meta byte for byte (PS3.10 §7.1).

- DCMTK ``storescu -xi`` (Implicit VR Little Endian only, calling AE of odd length) and
  dicomwire's :func:`store_files` send CT images to an in-process node;
- every stored file passes ``dcmftest`` ("yes: FILE", exit status 0);
- its meta group equals the bytes tests/services/test_file_meta_bytes.py builds from the
  standard, with the Implementation Class UID / Version Name of the node's
  A-ASSOCIATE-AC read off the wire, and the data set is the sent file's, byte for byte;
- ``dciodvfy`` (dicom3tools), when present, finds no error in the file meta.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest
from pydicom import dcmread

from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig, store_files
from dicomwire.testing.corpus import make_ct, write_part10
from dicomwire.ul.association import Timeouts

from ..conftest import LOCALHOST, find_dcmtk_tool
from ..services._wire_spy import WireSpy
from ..services.test_file_meta_bytes import (
    CT_IMAGE_STORAGE,
    data_set_bytes,
    expected_file_meta,
    implementation_of,
)
from ._dcmtk_store_helpers import run_tool

pytestmark = pytest.mark.interop

NODE_AE = "DICOMWIRE"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
T = TypeVar("T")


def run(coroutine: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, 90)

    return asyncio.run(bounded())


def write_sources(directory: Path, transfer_syntax: str) -> list[Path]:
    """Two CT images, with SOP Instance UIDs of odd and of even length."""
    sources = []
    for index, instance in enumerate(("1.2.826.0.1.3680043.9.7.1", "1.2.826.0.1.3680043.9.7.12")):
        ds = make_ct(index, rows=16, columns=16)
        ds.SOPInstanceUID = instance
        sources.append(write_part10(ds, directory / f"ct{index}.dcm", transfer_syntax))
    return sources


async def node_receiving(root: Path, send: object) -> None:
    """Run ``send(port)`` (a coroutine function) against a node storing under ``root``."""
    node = Node(
        NodeConfig(
            ae_titles=[NODE_AE],
            host=LOCALHOST,
            port=0,
            storage=StorageConfig(root=root),
            timeouts=Timeouts(artim=10, acse=10, dimse=None, network_idle=10),
            shutdown_grace=1.0,
        )
    )
    await node.start()
    try:
        await send(node.port)  # type: ignore[operator]
    finally:
        await node.shutdown()


def stored_by_instance(root: Path) -> dict[str, Path]:
    files = [p for p in root.rglob("*.dcm") if ".incoming" not in p.parts]
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}


def check_stored(
    root: Path, sources: list[Path], transfer_syntax: str, calling: str, wire: WireSpy
) -> None:
    stored = stored_by_instance(root)
    assert len(stored) == len(sources)
    (accept,) = wire.accepts
    class_uid, version_name = implementation_of(accept)
    dcmftest = find_dcmtk_tool("dcmftest")
    done = subprocess.run(
        [dcmftest, *map(str, stored.values())], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("yes: ") == len(stored), done.stdout
    for source in sources:
        instance = str(dcmread(source, stop_before_pixels=True).SOPInstanceUID)
        raw = stored[instance].read_bytes()
        expected = expected_file_meta(
            sop_class=CT_IMAGE_STORAGE,
            sop_instance=instance.encode(),
            transfer_syntax=transfer_syntax.encode(),
            implementation_class_uid=class_uid,
            implementation_version_name=version_name,
            source_ae_title=calling.encode(),
        )
        assert raw[: len(expected)] == expected, instance
        assert raw[len(expected) :] == data_set_bytes(source), instance
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is not None:  # dicom3tools: optional, seldom packaged
        for path in stored.values():
            verified = subprocess.run(
                [dciodvfy, "-filename", str(path)], capture_output=True, text=True, timeout=30
            )
            meta_errors = [
                line
                for line in (verified.stdout + verified.stderr).splitlines()
                if line.startswith("Error") and "Meta" in line
            ]
            assert meta_errors == [], meta_errors


def test_files_from_storescu_pass_dcmftest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storescu = find_dcmtk_tool("storescu")
    sources = write_sources(tmp_path / "in", IMPLICIT_VR_LE)
    root = tmp_path / "store"
    calling = "DCMTKSCU1"  # odd length: padded with a space in (0002,0016)
    wire = WireSpy().install(monkeypatch)

    async def send(port: int) -> None:
        argv = [storescu, "-xi", "-aet", calling, "-aec", NODE_AE, LOCALHOST, str(port)]
        done = await run_tool([*argv, *map(str, sources)], env={**os.environ, "TCP_NODELAY": "1"})
        assert done.returncode == 0, done.output

    run(node_receiving(root, send))
    monkeypatch.undo()
    check_stored(root, sources, IMPLICIT_VR_LE, calling, wire)


def test_files_from_store_files_pass_dcmftest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = write_sources(tmp_path / "in", EXPLICIT_VR_LE)
    root = tmp_path / "store"
    calling = "DWSCU"
    wire = WireSpy().install(monkeypatch)

    async def send(port: int) -> None:
        summary = await store_files(
            LOCALHOST, port, sources, calling_ae_title=calling, called_ae_title=NODE_AE
        )
        assert [o.status for o in summary.outcomes] == [0, 0]

    run(node_receiving(root, send))
    monkeypatch.undo()
    check_stored(root, sources, EXPLICIT_VR_LE, calling, wire)
