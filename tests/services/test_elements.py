"""The shared element scanner (PS3.5 §7.1) walks what pydicom reads, and says when data is cut.

:func:`iter_elements` serves the Part 10 file meta reader, the storage SCP's header check
and indexes: each element's tag, VR, value offset and length, values skipped by length.
"""

from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from dicomwire.errors import DataSetError
from dicomwire.services.elements import UNDEFINED_LENGTH, iter_elements


def _dataset() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.PatientName = "Doe^Jane"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "9.8.7"
    ds.ReferencedStudySequence = Sequence([item])
    ds.add_new(0x00091010, "OB", bytes(300))
    ds.Rows = 2
    return ds


def _encode(ds: Dataset, *, implicit: bool, undefined_sequences: bool = False) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = True
    if undefined_sequences:
        for element in ds.iterall():
            if element.VR == "SQ":
                element.is_undefined_length = True
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize("implicit", [True, False])
def test_walks_the_elements_pydicom_reads(implicit: bool) -> None:
    data = _encode(_dataset(), implicit=implicit)
    walked = list(iter_elements(data, implicit=implicit))
    expected = read_dataset(DicomBytesIO(data), implicit, True)
    assert [tag for tag, _, _, _ in walked] == [int(e.tag) for e in expected]
    for tag, vr, start, length in walked:
        if implicit:
            assert vr is None
        else:
            assert vr is not None and vr.decode() == expected[tag].VR
        if tag == 0x00080018:
            assert data[start : start + length] == b"1.2.3.4.5.6\x00"
    assert walked[-1][2] + walked[-1][3] == len(data)  # the last value ends the data


def test_stops_after_the_tag_asked_for() -> None:
    data = _encode(_dataset(), implicit=False)
    tags = [tag for tag, _, _, _ in iter_elements(data, implicit=False, stop_after_tag=0x00081110)]
    assert tags == [0x00080016, 0x00080018, 0x00081110]


def test_an_undefined_length_is_yielded_last() -> None:
    data = _encode(_dataset(), implicit=False, undefined_sequences=True)
    walked = list(iter_elements(data, implicit=False))
    assert walked[-1][0] == 0x00081110 and walked[-1][3] == UNDEFINED_LENGTH


@pytest.mark.parametrize("implicit", [True, False])
def test_data_cut_short_raises_unless_partial(implicit: bool) -> None:
    data = _encode(_dataset(), implicit=implicit)
    inside_value = data[: data.index(b"Doe^Jane") + 3]
    name_at = data.index(b"Doe^Jane") - 8  # a PN header is 8 bytes in either encoding
    with pytest.raises(DataSetError, match=rf"\(0010,0010\) at byte {name_at}:"):
        list(iter_elements(inside_value, implicit=implicit))
    walked = list(iter_elements(inside_value, implicit=implicit, partial=True))
    tag, _, start, length = walked[-1]
    assert tag == 0x00100010 and start + length > len(inside_value)  # the cut one comes last

    inside_header = data[: data.index(b"Doe^Jane") - 5]  # the next header's first 3 bytes
    with pytest.raises(DataSetError, match="cut short"):
        list(iter_elements(inside_header, implicit=implicit))
    walked = list(iter_elements(inside_header, implicit=implicit, partial=True))
    assert [tag for tag, _, _, _ in walked] == [0x00080016, 0x00080018, 0x00081110, 0x00091010]


def test_a_long_vr_header_cut_short_raises_unless_partial() -> None:
    data = _encode(_dataset(), implicit=False)
    private = data.index(b"\x09\x00\x10\x10OB")
    cut = data[: private + 10]  # 8 of the 12 bytes of an OB element's header
    with pytest.raises(DataSetError, match="cut short"):
        list(iter_elements(cut, implicit=False))
    assert list(iter_elements(cut, implicit=False, partial=True))[-1][0] == 0x00081110


def test_an_item_tag_has_no_vr_in_explicit_vr() -> None:
    item = b"\xfe\xff\x00\xe0" + (4).to_bytes(4, "little") + b"abcd"
    assert list(iter_elements(item, implicit=False)) == [(0xFFFEE000, None, 8, 4)]
