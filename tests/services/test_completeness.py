"""Whether a data set ends where its last element ends (PS3.5 §7.1, §7.5), decided as it
streams in (:mod:`dicomwire.services.completeness`).

Checked against pydicom's own test files: every Part 10 file pydicom reads whole is whole
here too, in one piece and in fragments of any size; its two truncated files
(``MR_truncated.dcm``, ``rtplan_truncated.dcm``) are not; and the header values the walk
keeps are those pydicom reads.
"""

from __future__ import annotations

import random
import warnings
import zlib
from io import BytesIO
from pathlib import Path

import pydicom.data
import pytest
from pydicom import dcmread
from pydicom.filereader import _read_file_meta_info, read_preamble

from dicomwire.services.completeness import CompletenessCheck, incompleteness
from dicomwire.services.storage.header import HEADER_TAGS
from dicomwire.services.storage.scp import _STORED_TAGS

TEST_FILES = Path(pydicom.data.get_testdata_file("MR_truncated.dcm")).parent
TRUNCATED = {"MR_truncated.dcm", "rtplan_truncated.dcm"}
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"


def part10_files() -> list[tuple[str, str, bytes]]:
    """(name, transfer syntax, data set bytes) of pydicom's Part 10 test files whose data
    set is encoded as their transfer syntax says (pydicom reads it without guessing)."""
    found = []
    for path in sorted(TEST_FILES.glob("*.dcm")):
        raw = path.read_bytes()
        stream = BytesIO(raw)
        try:
            read_preamble(stream, False)
            meta = _read_file_meta_info(stream)
        except Exception:
            continue
        syntax = meta.get("TransferSyntaxUID")
        if syntax is None:
            continue
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            try:
                dcmread(path, defer_size=256)
            except Exception:
                continue
        if any("Expected explicit VR, but found implicit" in str(w.message) for w in warned):
            continue  # a data set that is not in its own transfer syntax (SC_rgb_jpeg.dcm)
        found.append((path.name, str(syntax), raw[stream.tell() :]))
    return found


FILES = part10_files()


def test_the_test_set_is_there() -> None:
    names = {name for name, _, _ in FILES}
    assert names >= TRUNCATED
    assert len(names) > 40


@pytest.mark.parametrize(("name", "syntax", "data"), FILES, ids=[f[0] for f in FILES])
def test_pydicom_test_files_whole_or_truncated(name: str, syntax: str, data: bytes) -> None:
    problem = incompleteness(data, syntax)
    if name in TRUNCATED:
        assert problem is not None and problem.startswith("data set ends inside ")
    else:
        assert problem is None
    chunks = random.Random(name)
    check = CompletenessCheck(syntax, frozenset(HEADER_TAGS))
    position = 0
    while position < len(data):
        size = chunks.choice([1, 2, 7, 11, 100, 4093, 16384])
        check.feed(memoryview(data)[position : position + size])
        position += size
    assert check.problem() == problem
    if problem is None:
        dataset = dcmread(TEST_FILES / name, stop_before_pixels=True)
        for tag in HEADER_TAGS:
            if tag in dataset:
                assert check.values[tag] == str(dataset[tag].value).rstrip("\x00 ")


def test_a_sequence_never_closed_is_incomplete() -> None:
    uid = b"\x08\x00\x18\x00UI\x06\x001.2.3\x00"
    open_sequence = b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff"
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + uid
    assert incompleteness(uid + open_sequence + item, EXPLICIT) == (
        "data set ends inside sequence (FFFE,E000)"
    )
    closed = open_sequence + item + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    closed += b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    assert incompleteness(uid + closed + uid, EXPLICIT) is None


def test_an_item_outside_a_sequence_is_a_broken_structure() -> None:
    assert incompleteness(b"\xfe\xff\x00\xe0\x00\x00\x00\x00", IMPLICIT) == (
        "misplaced item or delimiter (FFFE,E000) at byte 0"
    )


def test_a_cut_element_header_is_incomplete() -> None:
    uid = b"\x08\x00\x18\x00\x06\x00\x00\x001.2.3\x00"
    assert incompleteness(uid + b"\x10\x00", IMPLICIT) == (
        "data set ends inside an element header at byte 14"
    )


def test_a_deflated_data_set_must_end_its_deflate_stream() -> None:
    plain = b"\x08\x00\x18\x00UI\x06\x001.2.3\x00"
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(plain) + compressor.flush()
    assert incompleteness(deflated, DEFLATED) is None
    assert incompleteness(deflated + b"\x00", DEFLATED) is None  # a pad byte (PS3.5 A.5)
    assert incompleteness(deflated[:-3], DEFLATED) == (
        "deflated data set ends before its deflate stream does"
    )


def _walked(syntax: str, data: bytes, sizes: list[int], seed: int) -> tuple[object, ...]:
    """Everything a walk answers, fed in fragments of the given sizes (chosen at random)."""
    check = CompletenessCheck(syntax, frozenset(_STORED_TAGS), layout=True)
    chunks, position = random.Random(seed), 0
    while position < len(data):
        size = chunks.choice(sizes)
        check.feed(memoryview(data)[position : position + size])
        position += size
    problem = check.problem()
    # how far a broken walk got depends on where the fragment with the fault began
    length = check.length if problem is None else None
    return problem, check.raw, check.header_end, check.bulk, length


@pytest.mark.parametrize(
    ("name", "syntax", "data"),
    [f for f in FILES if len(f[2]) < 400_000 and f[1] != DEFLATED],
    ids=[f[0] for f in FILES if len(f[2]) < 400_000 and f[1] != DEFLATED],
)
def test_cut_and_damaged_data_sets_answer_the_same_in_any_fragments(
    name: str, syntax: str, data: bytes
) -> None:
    """A data set cut anywhere, or with a bit flipped in its first elements, gets the same
    answers (problem, kept values, layout, length) whole and in fragments of any size; a
    cut one is whole only where the cut falls between two top-level elements (then what
    follows the cut is a whole data set too)."""
    cuts = random.Random(name)
    for _ in range(12):
        cut = cuts.randrange(len(data) + 1)
        variant = data[:cut]
        once = _walked(syntax, variant, [len(variant) or 1], 0)
        assert _walked(syntax, variant, [1, 3, 8, 13, 4096], cut) == once
        if once[0] is None:
            assert incompleteness(data[cut:], syntax) is None
        damaged = bytearray(data[: min(len(data), 4096)])
        if damaged:
            damaged[cuts.randrange(len(damaged))] ^= 1 << cuts.randrange(8)
            answers = _walked(syntax, bytes(damaged), [len(damaged)], 0)
            assert _walked(syntax, bytes(damaged), [2, 5, 64], cut) == answers
