"""C-STORE and C-ECHO between dicomwire and DCMTK at several maximum PDU sizes.

(a) DCMTK ``storescu`` / ``echoscu`` -> a dicomwire server (AssociationServer + DimseSession
    with a C-STORE handler that keeps the data set bytes): every data set arrives byte for
    byte as it is in the file (the bytes after the File Meta Information, PS3.10 §7.1), in
    the file's transfer syntax, and is answered with Success;
(b) a dicomwire session -> DCMTK ``storescp``: the data set bytes of each file, sent on a
    presentation context with the file's transfer syntax (from memory and streamed from
    the file), are what storescp writes; C-ECHO too.

The maximum PDU length is set on both sides (``-pdu`` / ``max_pdu_length``), so each
side fragments to the other's limit (PS3.8 D.1, Annex E).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomwire.dimse.commands import CommandField, CommandSet, Tag
from dicomwire.dimse.session import DimseSession, Request, open_session
from dicomwire.dimse.streams import FileSource
from dicomwire.ul.association import Association, AssociationServer
from dicomwire.ul.negotiation import AcceptorPolicy, RequestorConfig

from ..conftest import LOCALHOST
from ._dcmtk_store_helpers import (
    CT_IMAGE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    VERIFICATION,
    assert_same_dataset,
    decode_dataset,
    file_dataset,
    p_data_lengths,
    run_tool,
    storescp_inetd,
    write_ct_file,
)

pytestmark = pytest.mark.interop

PDU_SIZES = [4096, 16384, 131072]  # storescu's -pdu accepts 4096..131072
SCU_AET = "DW-SCU"
SCP_AET = "DW-SCP"
TRANSFER_SYNTAXES = {"explicit": EXPLICIT_VR_LE, "implicit": IMPLICIT_VR_LE}
#: storescu option proposing the file's own transfer syntax first (no conversion).
PROPOSE = {EXPLICIT_VR_LE: "-xe", IMPLICIT_VR_LE: "-xi"}
#: (rows, columns) of the instances sent in one association.
SHAPES = [(64, 64), (64, 64), (96, 128)]


def _make_files(directory: Path, transfer_syntax: str, prefix: str = "ct") -> list[Path]:
    paths = []
    for index, (rows, columns) in enumerate(SHAPES):
        path = directory / f"{prefix}-{index}.dcm"
        write_ct_file(path, transfer_syntax, rows, columns)
        paths.append(path)
    return paths


def _original(path: Path) -> tuple[str, Dataset]:
    """(SOP Instance UID, data set without file meta) as pydicom reads the file."""
    ds = dcmread(path)
    return str(ds.SOPInstanceUID), ds


# --------------------------------------------------------------------------- (a) DCMTK -> us


@dataclass
class Stored:
    context_id: int
    transfer_syntax: str
    command: CommandSet
    dataset: bytes


class DicomwireSCP:
    """A dicomwire storage and verification SCP on 127.0.0.1 for DCMTK to call."""

    def __init__(self, max_pdu: int) -> None:
        self.max_pdu = max_pdu
        self.stored: dict[str, Stored] = {}
        self.echoes = 0
        self.peer_max_pdu: list[int] = []
        self.port = 0

    async def _store(self, request: Request) -> int:
        message = request.message
        assert isinstance(message.dataset, bytes)
        uid = str(message.sop_instance_uid)
        self.stored[uid] = Stored(
            message.context_id, message.transfer_syntax, dict(message.command), message.dataset
        )
        return 0

    async def _echo(self, request: Request) -> int:
        self.echoes += 1
        return 0

    async def _serve(self, association: Association) -> None:
        assert association.negotiated is not None
        self.peer_max_pdu.append(association.negotiated.remote_max_pdu_length)
        session = DimseSession(
            association,
            handlers={CommandField.C_STORE_RQ: self._store, CommandField.C_ECHO_RQ: self._echo},
        )
        await session.run()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        policy = AcceptorPolicy(
            ae_titles=(SCP_AET,),
            abstract_syntaxes={
                CT_IMAGE: (EXPLICIT_VR_LE, IMPLICIT_VR_LE),
                VERIFICATION: (EXPLICIT_VR_LE, IMPLICIT_VR_LE),
            },
            max_pdu_length=self.max_pdu,
        )
        async with AssociationServer(policy, self._serve) as server:
            await server.start(LOCALHOST, 0)
            self.port = server.port
            yield


@pytest.mark.parametrize("variant", sorted(TRANSFER_SYNTAXES))
@pytest.mark.parametrize("max_pdu", PDU_SIZES)
def test_storescu_to_dicomwire(
    dcmtk_tool: Callable[[str], str], tmp_path: Path, max_pdu: int, variant: str
) -> None:
    storescu = dcmtk_tool("storescu")
    transfer_syntax = TRANSFER_SYNTAXES[variant]
    paths = _make_files(tmp_path, transfer_syntax)
    scp = DicomwireSCP(max_pdu)

    async def run() -> str:
        async with scp.running():
            result = await run_tool(
                [
                    storescu,
                    "-v",
                    PROPOSE[transfer_syntax],
                    "-aet",
                    SCU_AET,
                    "-aec",
                    SCP_AET,
                    "-pdu",
                    str(max_pdu),
                    LOCALHOST,
                    str(scp.port),
                    *map(str, paths),
                ]
            )
        assert result.returncode == 0, result.output
        return result.output

    output = asyncio.run(run())
    # storescu saw Success for every instance
    assert output.count("Received Store Response (Success)") == len(paths), output
    assert scp.peer_max_pdu == [max_pdu]
    assert len(scp.stored) == len(paths)
    for path in paths:
        uid, original = _original(path)
        file_syntax, file_bytes = file_dataset(path)
        assert file_syntax == transfer_syntax
        got = scp.stored[uid]
        assert got.transfer_syntax == transfer_syntax
        assert got.command[Tag.AffectedSOPClassUID] == CT_IMAGE
        assert got.dataset == file_bytes
        assert_same_dataset(decode_dataset(got.dataset, got.transfer_syntax), original)


@pytest.mark.parametrize("max_pdu", PDU_SIZES)
def test_echoscu_to_dicomwire(dcmtk_tool: Callable[[str], str], max_pdu: int) -> None:
    echoscu = dcmtk_tool("echoscu")
    scp = DicomwireSCP(max_pdu)

    async def run() -> str:
        async with scp.running():
            result = await run_tool(
                [
                    echoscu,
                    "-v",
                    "-aet",
                    SCU_AET,
                    "-aec",
                    SCP_AET,
                    "-pdu",
                    str(max_pdu),
                    "--repeat",
                    "3",
                    LOCALHOST,
                    str(scp.port),
                ]
            )
        assert result.returncode == 0, result.output
        return result.output

    output = asyncio.run(run())
    assert output.count("Received Echo Response (Success)") == 3, output
    assert scp.echoes == 3
    assert scp.peer_max_pdu == [max_pdu]


# --------------------------------------------------------------------------- (b) us -> DCMTK


def _store_command(uid: str) -> CommandSet:
    return {
        Tag.CommandField: CommandField.C_STORE_RQ,
        Tag.AffectedSOPClassUID: CT_IMAGE,
        Tag.AffectedSOPInstanceUID: uid,
        Tag.Priority: 0,
    }


@pytest.mark.parametrize("bit_preserving", [False, True], ids=["rewritten", "bit-preserving"])
@pytest.mark.parametrize("max_pdu", PDU_SIZES)
def test_dicomwire_to_storescp(
    dcmtk_tool: Callable[[str], str], tmp_path: Path, max_pdu: int, bit_preserving: bool
) -> None:
    storescp = dcmtk_tool("storescp")
    output = tmp_path / "received"
    output.mkdir()
    paths = _make_files(tmp_path, EXPLICIT_VR_LE, "explicit") + _make_files(
        tmp_path, IMPLICIT_VR_LE, "implicit"
    )
    large = tmp_path / "ct-large.dcm"  # 128 KiB of pixel data, streamed from the file
    write_ct_file(large, EXPLICIT_VR_LE, 256, 256)
    config = RequestorConfig(
        SCU_AET,
        SCP_AET,
        [
            (VERIFICATION, [IMPLICIT_VR_LE]),
            (CT_IMAGE, [EXPLICIT_VR_LE]),
            (CT_IMAGE, [IMPLICIT_VR_LE]),
        ],
        max_pdu_length=max_pdu,
    )
    extra = ["+B"] if bit_preserving else []

    async def send_all(session: DimseSession) -> tuple[int, list[int]]:
        assert session.negotiated.remote_max_pdu_length == max_pdu
        operation = await session.request(
            session.find_context(VERIFICATION).context_id,
            {Tag.CommandField: CommandField.C_ECHO_RQ, Tag.AffectedSOPClassUID: VERIFICATION},
        )
        echo_status = int((await operation.wait()).status)
        statuses = []
        for path in [*paths, large]:
            syntax, data = file_dataset(path)
            uid, _ = _original(path)
            context = session.find_context(CT_IMAGE, syntax)
            dataset: bytes | FileSource = data
            if path == large:  # streamed from the file, after its meta group
                size = path.stat().st_size
                dataset = FileSource(path, offset=size - len(data), chunk_size=10_000)
            operation = await session.request(context.context_id, _store_command(uid), dataset)
            statuses.append(int((await operation.wait()).status))
        return echo_status, statuses

    async def run() -> tuple[int, list[int], int]:
        scp = storescp_inetd(
            storescp,
            output,
            tmp_path / "storescp.log",
            ae_title=SCP_AET,
            max_pdu=max_pdu,
            extra=extra,
        )
        async with (
            scp as (port, recording, process),
            open_session(LOCALHOST, port, config) as session,
        ):
            echo_status, statuses = await send_all(session)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        lengths = p_data_lengths(recording.client_pdus())
        assert lengths and max(lengths) <= max_pdu
        return echo_status, statuses, len(lengths)

    echo_status, statuses, p_data_count = asyncio.run(run())
    log = (tmp_path / "storescp.log").read_text(errors="replace")
    assert echo_status == 0
    assert statuses == [0] * (len(paths) + 1), log
    # 1 echo + 7 stores at least, and the 128 KiB image split to the PDU size
    assert p_data_count >= 8 + (128 << 10) // max_pdu
    sent = [*paths, large]
    written = {path.name: path for path in output.iterdir()}
    assert len(written) == len(sent), (sorted(written), log)
    for path in sent:
        uid, original = _original(path)
        syntax, data = file_dataset(path)
        received = written[f"CT.{uid}"]
        stored = dcmread(received)
        assert str(stored.file_meta.TransferSyntaxUID) == syntax
        assert str(stored.file_meta.MediaStorageSOPInstanceUID) == uid
        assert_same_dataset(stored, original)
        stored_syntax, stored_bytes = file_dataset(received)
        assert stored_syntax == syntax
        if bit_preserving:
            assert stored_bytes == data
