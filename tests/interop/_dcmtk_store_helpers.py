"""Helpers for the DCMTK C-STORE / C-ECHO interoperability tests.

- DICOM files made with pydicom (a small CT image, Explicit or Implicit VR Little Endian),
  and their data set bytes: what follows the File Meta Information group (PS3.10 §7.1);
- data set comparison across transfer syntaxes;
- DCMTK tools run as asyncio subprocesses, always bounded by a timeout and terminated;
- a recording TCP forwarder on 127.0.0.1 in front of ``storescp --inetd`` (DCMTK 3.6's
  storescp cannot bind one interface, so it never listens itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.uid import CTImageStorage, generate_uid

from dicomwire.ul.pdu import PDU, PDataTF, decode

from ..conftest import LOCALHOST

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = str(CTImageStorage)
TOOL_TIMEOUT = 30.0


def write_ct_file(path: Path, transfer_syntax: str, rows: int = 64, columns: int = 64) -> Dataset:
    """A CT image (16-bit MONOCHROME2) saved as a DICOM file with proper file meta."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = "20240102"
    ds.Modality = "CT"
    ds.PatientName = "Wire^Test"
    ds.PatientID = "DW-0001"
    ds.SliceThickness = "1.25"
    ds.KVP = "120"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.InstanceNumber = 7
    ds.ImagePositionPatient = [-125.0, -125.5, 30.25]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [0.5, 0.5]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.PixelData = bytes((i * 37 + (i >> 7)) & 0xFF for i in range(rows * columns * 2))
    ds.save_as(path, enforce_file_format=True)
    return ds


def file_dataset(path: Path) -> tuple[str, bytes]:
    """(transfer syntax, data set bytes) of a DICOM file: the bytes after the meta group."""
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM", f"{path} is not a DICOM file"
    group, element, vr, length = struct.unpack_from("<HH2sH", raw, 132)
    assert (group, element, vr, length) == (2, 0, b"UL", 4), "no (0002,0000) first"
    (group_length,) = struct.unpack_from("<L", raw, 140)
    meta = dcmread(path, stop_before_pixels=True).file_meta
    return str(meta.TransferSyntaxUID), raw[144 + group_length :]


def decode_dataset(data: bytes, transfer_syntax: str) -> Dataset:
    """Decode data set bytes independently of dicomwire."""
    implicit = transfer_syntax == IMPLICIT_VR_LE
    return read_dataset(BytesIO(data), is_implicit_VR=implicit, is_little_endian=True)


def assert_same_dataset(got: Dataset, expected: Dataset) -> None:
    """Same elements with the same values, whatever transfer syntax each was read from.

    VRs are compared too, except where implicit VR leaves them ambiguous (pixel data).
    """
    assert [int(e.tag) for e in got] == [int(e.tag) for e in expected]
    for element in expected:
        other = got[element.tag]
        assert other.value == element.value, element.keyword
        if element.keyword != "PixelData":
            assert other.VR == element.VR, element.keyword


# --------------------------------------------------------------------------- processes


@dataclass
class ToolResult:
    returncode: int
    output: str


async def run_tool(
    argv: Sequence[str],
    timeout: float = TOOL_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> ToolResult:
    """Run a tool to completion (killed after ``timeout`` s), stdout and stderr as text.

    ``env`` replaces the environment (None: inherited); stdin is empty, never the terminal.
    """
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return ToolResult(process.returncode, output.decode(errors="replace"))


# --------------------------------------------------------------------------- storescp --inetd


@dataclass
class Forwarded:
    """Raw bytes the client sent through the forwarder, and those it got back."""

    from_client: bytearray = field(default_factory=bytearray)
    from_server: bytearray = field(default_factory=bytearray)

    def client_pdus(self) -> list[PDU]:
        return split_pdus(bytes(self.from_client))


def split_pdus(stream: bytes) -> list[PDU]:
    """Cut a recorded byte stream into decoded PDUs by their 6-byte headers."""
    pdus: list[PDU] = []
    pos = 0
    while pos < len(stream):
        (length,) = struct.unpack_from(">L", stream, pos + 2)
        pdus.append(decode(stream[pos : pos + 6 + length]))
        pos += 6 + length
    return pdus


def p_data_lengths(pdus: Sequence[PDU]) -> list[int]:
    """The PDU length field of each P-DATA-TF (what PS3.8 D.1's maximum length bounds)."""
    return [len(pdu.encode()) - 6 for pdu in pdus if isinstance(pdu, PDataTF)]


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray
) -> None:
    try:
        while data := await reader.read(65536):
            record += data
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


@contextlib.asynccontextmanager
async def storescp_inetd(
    binary: str,
    output: Path,
    log: Path,
    *,
    ae_title: str,
    max_pdu: int,
    extra: Sequence[str] = (),
) -> AsyncIterator[tuple[int, Forwarded, asyncio.subprocess.Process]]:
    """``storescp --inetd`` on one end of a 127.0.0.1 connection, reachable through a
    forwarder listening on 127.0.0.1 (yielded: its port, the recording, the process).

    storescp serves one association and exits; it is killed if still running at the end.
    Its output goes to ``log``.
    """
    with socket.socket() as listener:
        listener.bind((LOCALHOST, 0))
        listener.listen(1)
        ours = socket.create_connection(listener.getsockname(), timeout=10)
        theirs, _ = listener.accept()
    ours.setblocking(False)
    argv = [binary, "--inetd", "-aet", ae_title, "-pdu", str(max_pdu), "-od", str(output)]
    try:
        with open(log, "wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                *argv, *extra, stdin=theirs, stdout=log_file, stderr=asyncio.subprocess.STDOUT
            )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    recording = Forwarded()
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(sock=ours)
        try:
            await asyncio.gather(
                _pump(reader, up_writer, recording.from_client),
                _pump(up_reader, writer, recording.from_server),
            )
        finally:
            writer.close()
            up_writer.close()
            done.set()

    server: asyncio.Server | None = None
    try:
        server = await asyncio.start_server(handle, LOCALHOST, 0)
        yield server.sockets[0].getsockname()[1], recording, process
        await asyncio.wait_for(done.wait(), TOOL_TIMEOUT)
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
        ours.close()
        if process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
