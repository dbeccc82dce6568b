"""Deterministic synthetic DICOM instances for tests and benchmarks (PS3.10 files).

Images are CT Image Storage (PS3.3 A.3) with pixel data derived from a seed, so the same
call always writes the same bytes: runs of a benchmark compare like with like.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .. import IMPLEMENTATION_CLASS_UID

__all__ = ["CT_IMAGE_STORAGE", "SECONDARY_CAPTURE_STORAGE", "make_ct", "make_small", "write_corpus"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
_ROOT = "2.25.1234567890"


def _uid(*parts: object) -> str:
    digest = int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:30], 16)
    return f"{_ROOT}.{digest}"[:64]


def _pixels(size: int, seed: int) -> bytes:
    block = hashlib.sha256(f"pixels/{seed}".encode()).digest()
    whole = block * (size // len(block) + 1)
    return whole[:size]


def _base(sop_class: str, study: int, series: int, index: int) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = _uid("instance", study, series, index)
    ds.StudyInstanceUID = _uid("study", study)
    ds.SeriesInstanceUID = _uid("series", study, series)
    ds.PatientName = f"Synthetic^{study}"
    ds.PatientID = f"SYN{study:05d}"
    ds.StudyDate = "20260101"
    ds.Modality = "CT" if sop_class == CT_IMAGE_STORAGE else "OT"
    ds.InstanceNumber = index + 1
    return ds


def make_ct(
    index: int,
    *,
    rows: int = 512,
    columns: int = 512,
    study: int = 1,
    series: int = 1,
    frames: int = 1,
) -> Dataset:
    """A CT image, 16 bits per pixel (512x512: about 512 KiB of pixel data)."""
    ds = _base(CT_IMAGE_STORAGE, study, series, index)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = _pixels(rows * columns * 2 * frames, index)
    return ds


def make_small(index: int, *, study: int = 1, series: int = 2, size: int = 8000) -> Dataset:
    """A small Secondary Capture instance of about ``size`` bytes."""
    ds = _base(SECONDARY_CAPTURE_STORAGE, study, series, index)
    ds.ConversionType = "WSD"
    ds.Rows = 1
    ds.Columns = size // 2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = _pixels((size // 2) * 2, index)
    return ds


def write_part10(ds: Dataset, path: Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write ``ds`` as a Part 10 file in an uncompressed transfer syntax."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(
        path,
        enforce_file_format=True,
        implicit_vr=transfer_syntax == ImplicitVRLittleEndian,
        little_endian=True,
    )
    return path


def write_corpus(
    directory: Path,
    count: int,
    kind: str = "ct",
    transfer_syntax: str = ExplicitVRLittleEndian,
    **options: int,
) -> list[Path]:
    """Write ``count`` instances of ``kind`` ("ct" or "small") under ``directory``."""
    make = make_ct if kind == "ct" else make_small
    return [
        write_part10(make(index, **options), directory / f"{kind}{index:05d}.dcm", transfer_syntax)
        for index in range(count)
    ]
