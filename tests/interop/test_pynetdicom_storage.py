"""Storage between dicomwire and pynetdicom, both ways (PS3.4 Annex B).

(a) a pynetdicom AE (StoragePresentationContexts as SCU) -> an in-process dicomwire
    :class:`Node` on 127.0.0.1: files sent by path and a pydicom Dataset are stored with
    the data set bytes pynetdicom sent;
(b) dicomwire (``store_files`` and the ``dicomwire store`` CLI) -> a pynetdicom SCP
    started with ``ae.start_server(("127.0.0.1", 0), block=False, ...)``: the data sets
    its C-STORE handler receives are the files' data sets; a pynetdicom SCP accepting
    only Implicit VR LE receives Explicit VR LE files converted, as the same data set.

pynetdicom blocks, so its SCU runs in a worker thread while the node serves on the event
loop; its SCP runs in its own threads and is shut down in ``finally``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID
from pynetdicom import AE, StoragePresentationContexts, build_context, evt

from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig, store_files
from dicomwire.testing.corpus import (
    CT_IMAGE_STORAGE,
    SECONDARY_CAPTURE_STORAGE,
    make_ct,
    write_corpus,
)
from dicomwire.ul.association import Timeouts

from ..conftest import LOCALHOST
from ..conftest import part10_data_set as data_set_of
from ..conftest import run_bounded as run

pytestmark = pytest.mark.interop

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
NODE_AE = "DICOMWIRE"
PEER_AE = "PYNETDICOM"
TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0)


def decode(data: bytes, transfer_syntax: str) -> Dataset:
    return read_dataset(
        BytesIO(data), is_implicit_VR=transfer_syntax == IMPLICIT_VR_LE, is_little_endian=True
    )


def same_elements(got: Dataset, expected: Dataset) -> None:
    assert [e.tag for e in got] == [e.tag for e in expected]
    for element in expected:
        assert got[element.tag].value == element.value, element.keyword


def sources(directory: Path) -> list[Path]:
    return [
        *write_corpus(directory / "explicit", 2, "ct", rows=64, columns=64),
        *write_corpus(directory / "implicit", 2, "small", transfer_syntax=IMPLICIT_VR_LE),
    ]


# --------------------------------------------------------------------------- (a) pynetdicom SCU


def test_pynetdicom_scu_to_dicomwire_node(tmp_path: Path) -> None:
    files = sources(tmp_path / "in")
    extra = make_ct(7, rows=32, columns=32)  # sent as a Dataset, encoded by pynetdicom
    extra.file_meta = FileMetaDataset()
    extra.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LE)
    root = tmp_path / "store"

    def pynetdicom_scu(port: int) -> list[int]:
        ae = AE(ae_title="PYNET-SCU")
        # StoragePresentationContexts propose Implicit/Explicit/Deflated/Big Endian, and the
        # node prefers Explicit VR LE: add Implicit-only contexts for the Implicit files
        ae.requested_contexts = [
            *StoragePresentationContexts,
            build_context(CT_IMAGE_STORAGE, [IMPLICIT_VR_LE]),
            build_context(SECONDARY_CAPTURE_STORAGE, [IMPLICIT_VR_LE]),
        ]
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        assoc = ae.associate(LOCALHOST, port, ae_title=NODE_AE)
        assert assoc.is_established
        try:
            statuses = [int(assoc.send_c_store(path).Status) for path in files]
            statuses.append(int(assoc.send_c_store(extra).Status))
        finally:
            assoc.release()
        return statuses

    async def scenario() -> list[int]:
        config = NodeConfig(
            ae_titles=[NODE_AE],
            host=LOCALHOST,
            port=0,
            storage=StorageConfig(root=root, fsync=False),
            timeouts=TIMEOUTS,
            shutdown_grace=1.0,
        )
        async with Node(config) as node:
            return await asyncio.to_thread(pynetdicom_scu, node.port)

    statuses = run(scenario())
    assert statuses == [0] * (len(files) + 1)
    stored = {p.stem: p for p in root.rglob("*.dcm")}
    assert len(stored) == len(files) + 1
    for path in files:
        uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert data_set_of(stored[uid]) == data_set_of(path)
        meta = dcmread(stored[uid], stop_before_pixels=True).file_meta
        assert meta.SourceApplicationEntityTitle == "PYNET-SCU"
    syntax, data = data_set_of(stored[str(extra.SOPInstanceUID)])
    assert syntax == EXPLICIT_VR_LE
    same_elements(decode(data, syntax), make_ct(7, rows=32, columns=32))  # deterministic
    assert not any((root / ".incoming").iterdir())


# --------------------------------------------------------------------------- (b) pynetdicom SCP


@dataclass
class Received:
    transfer_syntax: str
    calling_ae: str
    data: bytes


@pytest.fixture
def pynetdicom_scp() -> Iterator[Any]:
    """``pynetdicom_scp(transfer_syntaxes)`` -> (port, received list); shut down at the end."""
    servers: list[Any] = []

    def start(transfer_syntaxes: list[str] | None = None) -> tuple[int, list[Received]]:
        received: list[Received] = []

        def on_store(event: Any) -> int:
            received.append(
                Received(
                    str(event.context.transfer_syntax),
                    event.assoc.requestor.ae_title,
                    bytes(event.request.DataSet.getvalue()),
                )
            )
            return 0x0000

        ae = AE(ae_title=PEER_AE)
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 10
        for context in StoragePresentationContexts:
            ae.add_supported_context(
                context.abstract_syntax, transfer_syntaxes or context.transfer_syntax
            )
        server = ae.start_server(
            (LOCALHOST, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
        )
        servers.append(server)
        return server.server_address[1], received

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()


def test_dicomwire_store_files_to_pynetdicom_scp(tmp_path: Path, pynetdicom_scp: Any) -> None:
    files = sources(tmp_path / "in")
    port, received = pynetdicom_scp()

    summary = run(
        store_files(
            LOCALHOST,
            port,
            [tmp_path / "in"],
            calling_ae_title="DW-SCU",
            called_ae_title=PEER_AE,
            window=1,
            timeouts=TIMEOUTS,
        )
    )

    assert summary.sent == len(files)
    assert summary.failures == 0
    assert len(received) == len(files)
    by_uid = {str(decode(r.data, r.transfer_syntax).SOPInstanceUID): r for r in received}
    for path in files:
        syntax, data = data_set_of(path)
        got = by_uid[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)]
        assert got.transfer_syntax == syntax
        assert got.data == data
        assert got.calling_ae == "DW-SCU"


def test_dicomwire_store_cli_to_pynetdicom_scp_accepting_only_implicit(
    tmp_path: Path, pynetdicom_scp: Any
) -> None:
    files = sources(tmp_path / "in")
    port, received = pynetdicom_scp([IMPLICIT_VR_LE])

    async def cli() -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dicomwire.services.cli",
            "store",
            LOCALHOST,
            str(port),
            str(tmp_path / "in"),
            "--aec",
            PEER_AE,
            "--no-progress",
            "--window",
            "4",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, out, err = run(cli())
    assert code == 0, err
    assert f"sent {len(files)} of {len(files)} instances (0 warnings, 0 failures)" in out
    assert len(received) == len(files)
    assert {r.transfer_syntax for r in received} == {IMPLICIT_VR_LE}
    by_uid = {str(decode(r.data, IMPLICIT_VR_LE).SOPInstanceUID): r for r in received}
    for path in files:
        syntax, data = data_set_of(path)
        original = dcmread(path)
        got = by_uid[str(original.SOPInstanceUID)]
        if syntax == IMPLICIT_VR_LE:
            assert got.data == data  # sent as it is
        same_elements(decode(got.data, IMPLICIT_VR_LE), decode(data, syntax))
