"""Reading Part 10 files without pydicom (PS3.10 §7.1), listing them, and FileSource.

The sender reads every file's meta before it associates, with its own reader
(:func:`read_file_info`) and lister (:func:`collect_files`); these tests hold them to what
pydicom says of the same files and to the edge cases a fast path could miss.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from pydicom import dcmread

from dicomwire.dimse.streams import FileSource
from dicomwire.services.part10 import Part10Error, build_file_meta, read_file_info
from dicomwire.services.storage import collect_files
from dicomwire.testing.corpus import write_corpus

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _meta_with_private_information(size: int) -> bytes:
    """A file meta whose group holds (0002,0102) Private Information of ``size`` bytes."""
    meta = build_file_meta(CT_IMAGE, "1.2.3.4", EXPLICIT_LE)
    prefix, elements = meta[:132], meta[144:]
    creator = b"1.2.3.99"  # Private Information Creator UID, even length
    extra = struct.pack("<HH2sH", 2, 0x0100, b"UI", len(creator)) + creator
    extra += struct.pack("<HH2s2xL", 2, 0x0102, b"OB", size) + b"\xab" * size
    body = elements + extra
    return prefix + struct.pack("<HH2sHL", 2, 0, b"UL", 4, len(body)) + body


def test_read_file_info_matches_pydicom_on_generated_files(tmp_path: Path) -> None:
    for path in write_corpus(tmp_path, 3, "small"):
        info = read_file_info(path)
        with open(path, "rb") as file:
            ds = dcmread(file, stop_before_pixels=True)
            data_start = file.seek(0, 2) - info.dataset_length
        assert info.sop_class_uid == ds.file_meta.MediaStorageSOPClassUID
        assert info.sop_instance_uid == ds.file_meta.MediaStorageSOPInstanceUID
        assert info.transfer_syntax == ds.file_meta.TransferSyntaxUID
        assert info.dataset_offset == data_start
        assert info.size == path.stat().st_size


def test_read_file_info_reads_a_file_meta_longer_than_its_first_read(tmp_path: Path) -> None:
    path = tmp_path / "long-meta.dcm"
    meta = _meta_with_private_information(10_000)  # more than the 4 KiB read at first
    dataset = b"\x08\x00\x18\x00UI\x08\x001.2.3.4\x00"
    path.write_bytes(meta + dataset)
    info = read_file_info(path)
    assert (info.sop_class_uid, info.sop_instance_uid) == (CT_IMAGE, "1.2.3.4")
    assert info.transfer_syntax == EXPLICIT_LE
    assert info.dataset_offset == len(meta)
    assert info.dataset_length == len(dataset)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no DICM prefix"),
        (bytes(128) + b"DICX" + bytes(20), "no DICM prefix"),
        (bytes(128) + b"DICM" + struct.pack("<HH2sHL", 2, 1, b"OB", 2, 0), "group length"),
        (bytes(128) + b"DICM" + struct.pack("<HH2sHL", 2, 0, b"UL", 4, 5 << 20), "absurd"),
        (bytes(128) + b"DICM" + struct.pack("<HH2sHL", 2, 0, b"UL", 4, 400), "truncated"),
    ],
)
def test_read_file_info_names_what_is_wrong(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.dcm"
    path.write_bytes(content)
    with pytest.raises(Part10Error, match=message):
        read_file_info(path)


def test_read_file_info_missing_file_is_a_part10_error(tmp_path: Path) -> None:
    with pytest.raises(Part10Error, match="No such file"):
        read_file_info(tmp_path / "absent.dcm")


def test_collect_files_orders_depth_first_by_name_and_sends_each_file_once(
    tmp_path: Path,
) -> None:
    root = tmp_path / "in"
    (root / "b").mkdir(parents=True)
    (root / "a.d").mkdir()
    names = [root / "c.dcm", root / "b" / "x.dcm", root / "a.d" / "y.dcm", root / "a.dcm"]
    for path in names:
        (source,) = write_corpus(tmp_path / "gen" / path.name, 1, "small")
        source.rename(path)
    (root / "link.dcm").symlink_to(root / "c.dcm")  # the same file under another name
    (root / "loop").symlink_to(root, target_is_directory=True)  # never followed
    infos, failures = collect_files([root, root / "a.dcm"])
    assert failures == []
    expected = sorted(names, key=lambda p: p.relative_to(root).parts)
    assert [info.path for info in infos] == expected


def test_collect_files_reports_named_files_that_are_missing_or_not_dicom(
    tmp_path: Path,
) -> None:
    (good,) = write_corpus(tmp_path, 1, "small")
    missing = tmp_path / "absent.dcm"
    text = tmp_path / "notes.txt"
    text.write_text("not DICOM")
    infos, failures = collect_files([missing, good, text])
    assert [info.path for info in infos] == [good]
    assert [(f.path, f.permanent) for f in failures] == [(missing, True), (text, True)]
    assert "No such file" in (failures[0].error or "")
    assert "not a DICOM" in (failures[1].error or "")


@pytest.mark.parametrize(("offset", "length"), [(0, None), (10, None), (10, 100), (0, 0)])
def test_file_source_read_returns_the_range(
    tmp_path: Path, offset: int, length: int | None
) -> None:
    path = tmp_path / "data.bin"
    content = bytes(range(256)) * 40
    path.write_bytes(content)
    end = None if length is None else offset + length
    assert FileSource(path, offset, length).read() == content[offset:end]
    assert FileSource(str(path), offset, length).path == path


def test_file_source_read_stops_at_the_end_of_a_shorter_file(tmp_path: Path) -> None:
    path = tmp_path / "short.bin"
    path.write_bytes(b"0123456789")
    assert FileSource(path, 4, 100).read() == b"456789"
