"""Real DCMTK traffic, recorded inside the test, through the PDU codec and framer.

A recording TCP proxy (asyncio, in the test) listens on 127.0.0.1 for ``echoscu`` /
``storescu`` and forwards to ``storescp``, which runs in inetd mode on the other end of a
127.0.0.1 connection (DCMTK 3.6's storescp cannot bind one interface, so it never listens
here at all); each direction's raw bytes are then cut into PDUs by their
headers (exact slices) and by :class:`PDUFramer`, and every PDU must decode, re-encode byte
for byte, and carry what DCMTK was told to send (PS3.8 §9.3, Annex D; PS3.7 Annex D.3.3).
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dicomwire.ul.framer import PDUFramer
from dicomwire.ul.pdu import (
    DICOM_APPLICATION_CONTEXT,
    PDU,
    AAssociateAC,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PresentationDataValue,
    decode,
)

from ..conftest import LOCALHOST, connected_tcp_pair, stop_process

pytestmark = pytest.mark.interop

TIMEOUT = 30
DCMTK_IMPLEMENTATION_ROOT = "1.2.276.0.7230010.3."
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
_TS_ENCODING = {  # transfer syntax -> (implicit VR, little endian)
    IMPLICIT_VR_LE: (True, True),
    EXPLICIT_VR_LE: (False, True),
    EXPLICIT_VR_BE: (False, False),
}
SCU_AET = "DW-RECORDER"
SCP_AET = "ANY-SCP"


# --------------------------------------------------------------------------- recording proxy


@dataclass
class Recording:
    """Raw bytes of one proxied TCP connection, per direction."""

    from_client: bytearray = field(default_factory=bytearray)
    from_server: bytearray = field(default_factory=bytearray)


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray
) -> None:
    try:
        while data := await reader.read(65536):
            record += data
            writer.write(data)
            await writer.drain()
    except OSError:  # the other side went away: what was recorded stays recorded
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def _record_session(
    upstream: socket.socket, client_argv: Callable[[int], list[str]]
) -> tuple[list[Recording], subprocess.CompletedProcess[bytes]]:
    recordings: list[Recording] = []
    finished = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        recording = Recording()
        recordings.append(recording)
        up_reader, up_writer = await asyncio.open_connection(sock=upstream)
        try:
            await asyncio.gather(
                _pump(reader, up_writer, recording.from_client),
                _pump(up_reader, writer, recording.from_server),
            )
        finally:
            writer.close()
            up_writer.close()
            finished.set()

    server = await asyncio.start_server(handle, LOCALHOST, 0)
    proxy_port = server.sockets[0].getsockname()[1]
    try:
        result = await asyncio.to_thread(
            subprocess.run, client_argv(proxy_port), capture_output=True, timeout=TIMEOUT
        )
        await asyncio.wait_for(finished.wait(), TIMEOUT)
    finally:
        server.close()
        await server.wait_closed()
    return recordings, result


def record_session(
    upstream: socket.socket, client_argv: Callable[[int], list[str]]
) -> tuple[Recording, subprocess.CompletedProcess[bytes]]:
    recordings, result = asyncio.run(_record_session(upstream, client_argv))
    assert result.returncode == 0, result.stdout.decode(errors="replace") + result.stderr.decode(
        errors="replace"
    )
    assert len(recordings) == 1
    return recordings[0], result


# --------------------------------------------------------------------------- framing checks


def split_by_headers(stream: bytes) -> list[bytes]:
    """Cut a byte stream into exact PDU slices using only the 6-byte headers."""
    pdus = []
    pos = 0
    while pos < len(stream):
        assert len(stream) - pos >= 6, "stream ends inside a PDU header"
        (length,) = struct.unpack_from(">L", stream, pos + 2)
        end = pos + 6 + length
        assert end <= len(stream), "stream ends inside a PDU"
        pdus.append(stream[pos:end])
        pos = end
    return pdus


def frame_and_check(stream: bytes) -> list[PDU]:
    """Every PDU re-encodes byte for byte; the framer (fed in odd chunks) agrees."""
    stream = bytes(stream)
    slices = split_by_headers(stream)
    assert slices, "nothing recorded"
    decoded = [decode(raw) for raw in slices]
    for raw, pdu in zip(slices, decoded, strict=True):
        assert pdu.encode() == raw
    framer = PDUFramer(max_pdu_length=0)
    framed: list[PDU] = []
    for pos in range(0, len(stream), 1000):
        framed += framer.feed(stream[pos : pos + 1000])
    assert framer.buffered == 0
    assert framed == decoded
    assert [pdu.encode() for pdu in framed] == slices
    return decoded


def type_sequence(pdus: Sequence[PDU]) -> str:
    return "".join(str(pdu.pdu_type) for pdu in pdus)


def check_association(
    client_pdus: list[PDU],
    server_pdus: list[PDU],
    *,
    calling: str,
    called: str,
    client_max_pdu: int,
    server_max_pdu: int,
) -> tuple[AAssociateRQ, AAssociateAC]:
    assert re.fullmatch("14+5", type_sequence(client_pdus)), type_sequence(client_pdus)
    assert re.fullmatch("24+6", type_sequence(server_pdus)), type_sequence(server_pdus)
    rq, ac = client_pdus[0], server_pdus[0]
    assert isinstance(rq, AAssociateRQ)
    assert isinstance(ac, AAssociateAC)
    assert isinstance(client_pdus[-1], AReleaseRQ)
    assert isinstance(server_pdus[-1], AReleaseRP)
    for pdu in (rq, ac):
        assert pdu.protocol_version == 1
        assert pdu.called_ae_title == called
        assert pdu.calling_ae_title == calling
        assert pdu.application_context_name == DICOM_APPLICATION_CONTEXT
        info = pdu.user_information
        assert info is not None
        assert info.implementation_class_uid is not None
        assert info.implementation_class_uid.startswith(DCMTK_IMPLEMENTATION_ROOT)
        assert (info.implementation_version_name or "").startswith("OFFIS_DCMTK")
    assert rq.user_information.maximum_length == client_max_pdu  # type: ignore[union-attr]
    assert ac.user_information.maximum_length == server_max_pdu  # type: ignore[union-attr]
    # every context the acceptor answers was proposed, with one of the proposed syntaxes
    proposed = {pc.context_id: pc for pc in rq.presentation_contexts}
    assert proposed
    assert all(cid % 2 == 1 for cid in proposed)
    for answer in ac.presentation_contexts:
        assert answer.context_id in proposed
        if answer.result == 0:
            assert answer.transfer_syntax in proposed[answer.context_id].transfer_syntaxes
    # P-DATA sent by either side respects the maximum length the receiver announced
    for pdu in client_pdus:
        if isinstance(pdu, PDataTF):
            assert len(pdu.encode()) - 6 <= server_max_pdu
    for pdu in server_pdus:
        if isinstance(pdu, PDataTF):
            assert len(pdu.encode()) - 6 <= client_max_pdu
    return rq, ac


def messages(pdus: list[PDU]) -> list[tuple[int, bytes, bytes]]:
    """Reassemble (context ID, command, data set) messages from the PDVs (PS3.8 Annex E)."""
    pdvs: list[PresentationDataValue] = [
        pdv for pdu in pdus if isinstance(pdu, PDataTF) for pdv in pdu.pdvs
    ]
    out = []
    command, dataset = bytearray(), bytearray()
    context_id = None
    for pdv in pdvs:
        context_id = pdv.context_id
        if pdv.is_command:
            command += pdv.data
            if pdv.is_last and not _has_dataset(bytes(command)):
                out.append((context_id, bytes(command), b""))
                command = bytearray()
        else:
            dataset += pdv.data
            if pdv.is_last:
                out.append((context_id, bytes(command), bytes(dataset)))
                command, dataset = bytearray(), bytearray()
    assert not command and not dataset, "a message is incomplete"
    return out


def _has_dataset(command: bytes) -> bool:
    """CommandDataSetType (0000,0800) != 0101H means a data set follows (PS3.7 §9.3)."""
    ds = read_dataset(BytesIO(command), is_implicit_VR=True, is_little_endian=True)
    return int(ds.CommandDataSetType) != 0x0101


def command_field(command: bytes) -> int:
    ds = read_dataset(BytesIO(command), is_implicit_VR=True, is_little_endian=True)
    return int(ds.CommandField)


# --------------------------------------------------------------------------- fixtures


def write_ct_file(path: Path, rows: int, columns: int) -> Dataset:
    """A small CT image (16-bit, MONOCHROME2) written as a DICOM file with file meta."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Wire^Test"
    ds.PatientID = "DW0001"
    ds.Modality = "CT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes((i * 7) & 0xFF for i in range(rows * columns * 2))
    ds.save_as(path, enforce_file_format=True)
    return ds


@dataclass
class StoreSCP:
    """A storescp serving exactly one association on the peer of ``upstream``."""

    process: subprocess.Popen[bytes]
    upstream: socket.socket
    output: Path
    max_pdu: int

    def finish(self) -> None:
        """Wait for storescp to exit on its own after the association; it must succeed."""
        assert self.process.wait(timeout=TIMEOUT) == 0


@pytest.fixture
def storescp(
    dcmtk_tool: Callable[[str], str], tmp_path: Path
) -> Iterator[Callable[[int], StoreSCP]]:
    """``storescp(max_pdu)`` runs DCMTK storescp in inetd mode on one end of a 127.0.0.1
    connection whose other end it returns; always terminated at teardown."""
    binary = dcmtk_tool("storescp")
    started: list[StoreSCP] = []

    def start(max_pdu: int = 16384) -> StoreSCP:
        output = tmp_path / f"received-{len(started)}"
        output.mkdir()
        ours, theirs = connected_tcp_pair()
        argv = [binary, "--inetd", "-aet", SCP_AET, "-pdu", str(max_pdu), "-od", str(output)]
        log = open(tmp_path / f"storescp-{len(started)}.log", "wb")  # noqa: SIM115
        try:
            process = subprocess.Popen(argv, stdin=theirs, stdout=log, stderr=subprocess.STDOUT)
        finally:
            theirs.close()
            log.close()
        scp = StoreSCP(process, ours, output, max_pdu)
        started.append(scp)
        return scp

    try:
        yield start
    finally:
        for scp in started:
            scp.upstream.close()
            stop_process(scp.process)


# --------------------------------------------------------------------------- tests


def test_echoscu_through_recording_proxy(
    dcmtk_tool: Callable[[str], str], storescp: Callable[[int], StoreSCP]
) -> None:
    scp = storescp(16384)
    echoscu = dcmtk_tool("echoscu")
    recording, _ = record_session(
        scp.upstream, lambda port: [echoscu, "-aet", SCU_AET, "-aec", SCP_AET, LOCALHOST, str(port)]
    )
    scp.finish()
    client_pdus = frame_and_check(recording.from_client)
    server_pdus = frame_and_check(recording.from_server)
    rq, ac = check_association(
        client_pdus,
        server_pdus,
        calling=SCU_AET,
        called=SCP_AET,
        client_max_pdu=16384,
        server_max_pdu=16384,
    )
    assert [pc.abstract_syntax for pc in rq.presentation_contexts] == [VERIFICATION]
    (answer,) = ac.presentation_contexts
    assert answer.result == 0
    assert answer.transfer_syntax in _TS_ENCODING
    # C-ECHO-RQ (0030H) then C-ECHO-RSP (8030H), commands only
    (request,) = messages(client_pdus)
    (response,) = messages(server_pdus)
    assert command_field(request[1]) == 0x0030
    assert command_field(response[1]) == 0x8030
    assert request[2] == response[2] == b""
    assert request[0] == response[0] == answer.context_id


@pytest.mark.parametrize(
    ("option", "preferred"),
    [
        ("-xi", IMPLICIT_VR_LE),
        ("-xe", EXPLICIT_VR_LE),
        ("-xb", EXPLICIT_VR_BE),
    ],
)
def test_storescu_through_recording_proxy(
    dcmtk_tool: Callable[[str], str],
    storescp: Callable[[int], StoreSCP],
    tmp_path: Path,
    option: str,
    preferred: str,
) -> None:
    scp = storescp(16384)
    storescu = dcmtk_tool("storescu")
    path = tmp_path / "ct-small.dcm"
    original = write_ct_file(path, 16, 16)  # 512 bytes of pixel data
    recording, _ = record_session(
        scp.upstream,
        lambda port: [
            storescu,
            option,
            "-aet",
            SCU_AET,
            "-aec",
            SCP_AET,
            LOCALHOST,
            str(port),
            str(path),
        ],
    )
    scp.finish()
    client_pdus = frame_and_check(recording.from_client)
    server_pdus = frame_and_check(recording.from_server)
    rq, ac = check_association(
        client_pdus,
        server_pdus,
        calling=SCU_AET,
        called=SCP_AET,
        client_max_pdu=16384,
        server_max_pdu=16384,
    )
    ct_contexts = [pc for pc in rq.presentation_contexts if pc.abstract_syntax == CTImageStorage]
    assert ct_contexts
    # storescu proposes the preferred syntax alone first, then (unless -xi) the others
    assert ct_contexts[0].transfer_syntaxes == [preferred]
    for pc in ct_contexts:
        assert set(pc.transfer_syntaxes) <= set(_TS_ENCODING)
        if option == "-xi":
            assert pc.transfer_syntaxes == [IMPLICIT_VR_LE]

    accepted = {
        pc.context_id: pc.transfer_syntax for pc in ac.presentation_contexts if pc.result == 0
    }
    (request,) = messages(client_pdus)
    (response,) = messages(server_pdus)
    context_id, command, dataset = request
    assert command_field(command) == 0x0001  # C-STORE-RQ
    assert command_field(response[1]) == 0x8001  # C-STORE-RSP
    implicit, little = _TS_ENCODING[accepted[context_id]]
    sent = read_dataset(BytesIO(dataset), is_implicit_VR=implicit, is_little_endian=little)
    assert sent.SOPInstanceUID == original.SOPInstanceUID
    assert sent.PatientName == "Wire^Test"
    assert bytes(sent.PixelData) == original.PixelData
    received = list(scp.output.iterdir())
    assert len(received) == 1


def test_storescu_small_pdus_fragment_p_data(
    dcmtk_tool: Callable[[str], str], storescp: Callable[[int], StoreSCP], tmp_path: Path
) -> None:
    scp = storescp(4096)
    storescu = dcmtk_tool("storescu")
    path = tmp_path / "ct-large.dcm"
    original = write_ct_file(path, 256, 256)  # 128 KiB of pixel data
    recording, _ = record_session(
        scp.upstream,
        lambda port: [
            storescu,
            "-xe",
            "-pdu",
            "4096",
            "-aet",
            SCU_AET,
            "-aec",
            SCP_AET,
            LOCALHOST,
            str(port),
            str(path),
        ],
    )
    scp.finish()
    client_pdus = frame_and_check(recording.from_client)
    server_pdus = frame_and_check(recording.from_server)
    _, ac = check_association(
        client_pdus,
        server_pdus,
        calling=SCU_AET,
        called=SCP_AET,
        client_max_pdu=4096,
        server_max_pdu=4096,
    )
    p_data = [pdu for pdu in client_pdus if isinstance(pdu, PDataTF)]
    assert len(p_data) >= len(original.PixelData) // 4096
    lengths = [len(pdu.encode()) - 6 for pdu in p_data]
    assert max(lengths) <= 4096
    # fragments (nearly) fill the PDU: DCMTK sends 4090-byte PDUs here
    assert sum(1 for n in lengths if n >= 4096 - 16) >= len(p_data) - 3
    # only the last data set fragment has the "last" bit; no PDV mixes with a command here
    data_pdvs = [pdv for pdu in p_data for pdv in pdu.pdvs if not pdv.is_command]
    assert [pdv.is_last for pdv in data_pdvs] == [False] * (len(data_pdvs) - 1) + [True]
    accepted = {
        pc.context_id: pc.transfer_syntax for pc in ac.presentation_contexts if pc.result == 0
    }
    (request,) = messages(client_pdus)
    context_id, _, dataset = request
    implicit, little = _TS_ENCODING[accepted[context_id]]
    sent = read_dataset(BytesIO(dataset), is_implicit_VR=implicit, is_little_endian=little)
    assert bytes(sent.PixelData) == original.PixelData
    assert len(list(scp.output.iterdir())) == 1
    # The same stream through the BufferedProtocol path, socket reads of odd sizes.
    stream = bytes(recording.from_client)
    framer = PDUFramer(max_pdu_length=4096)
    framed: list[PDU] = []
    pos = 0
    while pos < len(stream):
        buf = framer.get_buffer(-1)
        n = min(len(buf), 1500, len(stream) - pos)
        buf[:n] = stream[pos : pos + n]
        pos += n
        framed += framer.buffer_updated(n)
    assert framed == client_pdus
