"""The storage SCP's header reader: its own scanner agrees with pydicom, or steps aside.

:func:`scan_header` reads the four UIDs the SCP checks and files by (PS3.5 §7.1) without
pydicom; anything it does not handle must come back as None so pydicom reads it instead.
"""

from __future__ import annotations

import asyncio
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from dicomwire.dimse.datasets import DataSetError
from dicomwire.services.storage import store_dataset
from dicomwire.services.storage.header import parse_header, scan_header
from dicomwire.testing.corpus import CT_IMAGE_STORAGE as CT_IMAGE

from .test_storage_scp import EXPLICIT_VR_LE, serving, session_to

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def _dataset(*, sequence: bool = False, private: int = 0) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.PatientName = "Doe^Jane"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.5"
    if sequence:
        item = Dataset()
        item.ReferencedSOPClassUID = CT_IMAGE
        item.ReferencedSOPInstanceUID = "9.8.7"
        ds.ReferencedStudySequence = Sequence([item])
    if private:
        ds.add_new(0x00091010, "OB", bytes(private))
    ds.Rows = 2
    return ds


def _encode(ds: Dataset, transfer_syntax: str, *, defined_lengths: bool = True) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR = transfer_syntax == IMPLICIT
    fp.is_little_endian = transfer_syntax != BIG_ENDIAN
    if not defined_lengths:
        for element in ds.iterall():
            if element.VR == "SQ":
                element.is_undefined_length = True
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize("transfer_syntax", [IMPLICIT, EXPLICIT, JPEG_BASELINE])
@pytest.mark.parametrize(("sequence", "private"), [(False, 0), (True, 0), (False, 70_000)])
def test_scanner_reads_what_pydicom_reads(
    transfer_syntax: str, sequence: bool, private: int
) -> None:
    data = _encode(_dataset(sequence=sequence, private=private), transfer_syntax)
    scanned = scan_header(data, transfer_syntax)
    assert scanned is not None
    assert scanned == parse_header(BytesIO(data), transfer_syntax)
    assert scanned[0x0020000E] == "1.2.3.4.5"


def test_scanner_leaves_big_endian_and_undefined_lengths_to_pydicom() -> None:
    assert scan_header(_encode(_dataset(), BIG_ENDIAN), BIG_ENDIAN) is None
    undefined = _encode(_dataset(sequence=True), EXPLICIT, defined_lengths=False)
    assert scan_header(undefined, EXPLICIT) is None
    assert parse_header(BytesIO(undefined), EXPLICIT)[0x00080018] == "1.2.3.4.5.6"


def test_scanner_stops_at_a_header_element_cut_short() -> None:
    data = _encode(_dataset(), EXPLICIT)
    cut = data[: data.index(b"1.2.3.4.5.6") + 3]  # inside the SOP Instance UID's value
    with pytest.raises(DataSetError):
        scan_header(cut, EXPLICIT)


def test_a_study_directory_that_links_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "store", tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    (root / "1.2.3.4").symlink_to(outside, target_is_directory=True)

    async def scenario() -> tuple[int, int]:
        async with serving(root) as node, session_to(node, (CT_IMAGE, [EXPLICIT_VR_LE])) as s:
            first = await store_dataset(s, _dataset())
            other = _dataset()
            other.StudyInstanceUID = "1.2.3.9"
            other.SOPInstanceUID = "1.2.3.9.1"
            second = await store_dataset(s, other)
            return int(first), int(second)

    assert asyncio.run(scenario()) == (0xC000, 0)
    assert list(outside.rglob("*")) == []
    assert (root / "1.2.3.9" / "1.2.3.4.5" / "1.2.3.9.1.dcm").is_file()


def test_scanner_takes_a_bytearray_as_well_as_bytes() -> None:
    data = _encode(_dataset(), EXPLICIT)
    assert scan_header(bytearray(data), EXPLICIT) == scan_header(data, EXPLICIT)
