"""PDUFramer: incremental framing of a TCP byte stream into PDUs (PS3.8 §9.3.1)."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomwire.ul.framer import DEFAULT_MAX_CONTROL_PDU_LENGTH, PDUFramer
from dicomwire.ul.pdu import PDU, AReleaseRQ, PDataTF, PDUError, PresentationDataValue, decode

from . import strategies as s

BOUNDED = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXAMPLES = s.example_pdus()
MiB = 1 << 20


def p_data(size: int, context_id: int = 1, control: int = 0x02, fill: int | None = None) -> bytes:
    data = bytes([fill]) * size if fill is not None else bytes(i & 0xFF for i in range(size))
    return PDataTF([PresentationDataValue(context_id, control, data)]).encode()


def feed_in_chunks(framer: PDUFramer, stream: bytes, cuts: list[int]) -> list[PDU]:
    out: list[PDU] = []
    prev = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        out += framer.feed(stream[prev:cut])
        prev = cut
    return out


def read_via_buffers(framer: PDUFramer, stream: bytes, reads: list[int]) -> list[PDU]:
    """Simulate asyncio.BufferedProtocol over a socket: each read fills at most
    ``reads[i]`` bytes of the buffer that get_buffer returned (cycling through ``reads``)."""
    out: list[PDU] = []
    pos = 0
    i = 0
    while pos < len(stream):
        buf = framer.get_buffer(-1)
        assert len(buf) > 0
        n = min(len(buf), reads[i % len(reads)], len(stream) - pos)
        i += 1
        buf[:n] = stream[pos : pos + n]
        pos += n
        out += framer.buffer_updated(n)
    return out


# --------------------------------------------------------------------------- chunking


@BOUNDED
@given(
    st.lists(s.pdu_objects, min_size=1, max_size=12),
    st.data(),
)
def test_any_chunking_yields_the_same_pdus_in_order(pdus: list[PDU], data: st.DataObject) -> None:
    raws = [pdu.encode() for pdu in pdus]
    stream = b"".join(raws)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=40))
    framer = PDUFramer()
    got = feed_in_chunks(framer, stream, cuts)
    assert got == pdus
    assert [pdu.encode() for pdu in got] == raws
    assert framer.buffered == 0


@BOUNDED
@given(st.lists(s.wire_pdus, min_size=1, max_size=8), st.data())
def test_any_chunking_of_wire_pdus(raws: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(raws)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=40))
    got = feed_in_chunks(PDUFramer(), stream, cuts)
    assert [pdu.encode() for pdu in got] == raws


def test_one_byte_chunks_of_every_pdu_type() -> None:
    stream = b"".join(EXAMPLES.values())
    framer = PDUFramer()
    got: list[PDU] = []
    boundaries = set()
    total = 0
    for raw in EXAMPLES.values():
        total += len(raw)
        boundaries.add(total)
    for i in range(len(stream)):
        got += framer.feed(stream[i : i + 1])
        assert (framer.buffered == 0) == (i + 1 in boundaries)
    assert [pdu.encode() for pdu in got] == list(EXAMPLES.values())


def test_whole_stream_in_one_feed_and_empty_feeds() -> None:
    stream = b"".join(EXAMPLES.values())
    framer = PDUFramer()
    assert framer.feed(b"") == []
    got = framer.feed(memoryview(bytearray(stream)))
    assert [pdu.encode() for pdu in got] == list(EXAMPLES.values())
    assert framer.feed(b"") == []
    assert framer.buffered == 0


def test_buffered_counts_the_incomplete_pdu() -> None:
    raw = EXAMPLES["A-ASSOCIATE-RQ"]
    framer = PDUFramer()
    assert framer.buffered == 0
    assert framer.feed(raw[:3]) == []
    assert framer.buffered == 3
    assert framer.feed(raw[3:50]) == []
    assert framer.buffered == 50
    (pdu,) = framer.feed(raw[50:] + raw[:7])
    assert pdu.encode() == raw
    assert framer.buffered == 7


# --------------------------------------------------------------------------- BufferedProtocol


@BOUNDED
@given(
    st.lists(s.pdu_objects, min_size=1, max_size=12),
    st.lists(st.integers(1, 70_000), min_size=1, max_size=20),
)
def test_buffered_protocol_path_yields_the_same_pdus(pdus: list[PDU], reads: list[int]) -> None:
    raws = [pdu.encode() for pdu in pdus]
    framer = PDUFramer()
    got = read_via_buffers(framer, b"".join(raws), reads)
    assert got == pdus
    assert [pdu.encode() for pdu in got] == raws
    assert framer.buffered == 0


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.sampled_from([100, 16 << 10, 40_000, 200_000]), min_size=1, max_size=6),
    st.lists(st.integers(1, 100_000), min_size=1, max_size=10),
)
def test_buffered_protocol_with_large_p_data(sizes: list[int], reads: list[int]) -> None:
    raws = [p_data(size, context_id=2 * i + 1) for i, size in enumerate(sizes)]
    raws.insert(len(raws) // 2, EXAMPLES["A-ASSOCIATE-RQ"])
    got = read_via_buffers(PDUFramer(), b"".join(raws), reads)
    assert [pdu.encode() for pdu in got] == raws


def test_one_mib_p_data_is_read_straight_into_its_own_buffer() -> None:
    raw = p_data(MiB)
    framer = PDUFramer(max_pdu_length=MiB + 6)
    staging = framer.get_buffer(-1)
    staging_obj = staging.obj
    n = min(len(staging), 4096)  # a first socket read: the header and a little body
    staging[:n] = raw[:n]
    assert framer.buffer_updated(n) == []
    pos = n
    direct_bytes = 0
    direct_objs = set()
    got: list[PDU] = []
    while pos < len(raw):
        buf = framer.get_buffer(-1)
        k = min(len(buf), 100_000, len(raw) - pos)  # the socket fills the buffer partially
        buf[:k] = raw[pos : pos + k]
        if buf.obj is not staging_obj:
            direct_bytes += k
            direct_objs.add(id(buf.obj))
        pos += k
        got += framer.buffer_updated(k)
    (pdu,) = got
    assert isinstance(pdu, PDataTF)
    (pdv,) = pdu.pdvs
    assert isinstance(pdv.data, memoryview)
    assert pdv.data.obj is not staging_obj
    assert isinstance(pdv.data.obj, bytearray)
    assert len(pdv.data.obj) == len(raw)
    # all but the tail under the direct-read threshold went straight into the PDU buffer
    assert direct_bytes >= len(raw) - n - (16 << 10)
    assert direct_objs == {id(pdv.data.obj)}
    assert pdv.data == raw[12:]
    assert framer.buffered == 0


def test_feed_copies_into_a_buffer_of_the_pdu_size() -> None:
    raw = p_data(MiB)
    chunk = bytearray(64 << 10)
    framer = PDUFramer()
    got: list[PDU] = []
    for pos in range(0, len(raw), len(chunk)):
        piece = raw[pos : pos + len(chunk)]
        chunk[: len(piece)] = piece
        got += framer.feed(memoryview(chunk)[: len(piece)])
    (pdu,) = got
    assert isinstance(pdu, PDataTF)
    data = pdu.pdvs[0].data
    assert isinstance(data, memoryview)
    assert data.obj is not chunk
    assert isinstance(data.obj, bytearray)
    assert len(data.obj) == len(raw)
    chunk[:] = bytes(len(chunk))  # the caller reuses its chunk buffer
    assert data == raw[12:]


@pytest.mark.parametrize("path", ["feed", "buffers"])
def test_p_data_views_stay_valid_after_later_pdus(path: str) -> None:
    raws = [p_data(size, fill=i) for i, size in enumerate([10, 50_000, 300, 20_000, 5])]
    stream = b"".join(raws) + EXAMPLES["A-RELEASE-RQ"]
    framer = PDUFramer()
    if path == "feed":
        first = framer.feed(stream[: len(raws[0])])
        rest = feed_in_chunks(framer, stream[len(raws[0]) :], list(range(0, len(stream), 777)))
    else:
        first = read_via_buffers(framer, stream[: len(raws[0])], [3])
        rest = read_via_buffers(framer, stream[len(raws[0]) :], [777, 70_000])
    pdus = first + rest
    assert isinstance(pdus[-1], AReleaseRQ)
    views = [pdu.pdvs[0].data for pdu in pdus[:-1]]  # type: ignore[union-attr]
    for i, (view, raw) in enumerate(zip(views, raws, strict=True)):
        assert view == raw[12:]
        assert bytes(view) == bytes([i]) * (len(raw) - 12)
    # the buffers behind the views are distinct objects
    assert len({id(v.obj) for v in views}) == len(views)  # type: ignore[union-attr]


# --------------------------------------------------------------------------- limits


def test_p_data_over_the_maximum_length_is_refused_from_the_header() -> None:
    framer = PDUFramer(max_pdu_length=16384)
    header = struct.pack(">BBL", 0x04, 0, 0xFFFFFFF0)
    assert framer.feed(header[:5]) == []
    tracemalloc.start()
    try:
        with pytest.raises(PDUError) as info:
            framer.feed(header[5:])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.offset == 2
    assert peak < MiB
    assert framer.buffered <= 6


def test_p_data_length_exactly_the_maximum_is_accepted() -> None:
    raw = p_data(16384 - 6)
    assert len(raw) - 6 == 16384
    (pdu,) = PDUFramer(max_pdu_length=16384).feed(raw)
    assert pdu.encode() == raw
    with pytest.raises(PDUError):
        PDUFramer(max_pdu_length=16383).feed(raw[:6])


def test_p_data_over_the_maximum_via_get_buffer() -> None:
    framer = PDUFramer(max_pdu_length=4096)
    buf = framer.get_buffer(-1)
    header = struct.pack(">BBL", 0x04, 0, 4097)
    buf[:6] = header
    with pytest.raises(PDUError):
        framer.buffer_updated(6)
    framer.get_buffer(-1)  # still a buffer to read into...
    with pytest.raises(PDUError):
        framer.buffer_updated(1)  # ...but what arrives is refused


@pytest.mark.parametrize("pdu_type", [0x01, 0x02, 0x03, 0x05, 0x06, 0x07])
def test_control_pdu_over_the_control_limit_is_refused_from_the_header(pdu_type: int) -> None:
    framer = PDUFramer(max_pdu_length=0)
    tracemalloc.start()
    try:
        with pytest.raises(PDUError) as info:
            framer.feed(struct.pack(">BBL", pdu_type, 0, 0xFFFFFFF0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.offset == 2
    assert peak < MiB
    assert framer.buffered <= 6


def test_control_limit_is_configurable() -> None:
    raw = EXAMPLES["A-ASSOCIATE-RQ"]
    assert DEFAULT_MAX_CONTROL_PDU_LENGTH >= 64 << 10
    (pdu,) = PDUFramer(max_control_pdu_length=len(raw) - 6).feed(raw)
    assert pdu.encode() == raw
    with pytest.raises(PDUError):
        PDUFramer(max_control_pdu_length=len(raw) - 7).feed(raw)
    # P-DATA-TF is bounded by max_pdu_length, not by the control limit
    big = p_data(100_000)
    (pdu,) = PDUFramer(max_control_pdu_length=1000).feed(big)
    assert pdu.encode() == big


def test_unlimited_maximum_does_not_allocate_what_the_header_claims() -> None:
    framer = PDUFramer(max_pdu_length=0)
    header = struct.pack(">BBL", 0x04, 0, 0xFFFFFFF0)
    pdv_header = struct.pack(">LBB", 0xFFFFFFEC, 1, 0)
    chunk = bytes(64 << 10)
    tracemalloc.start()
    try:
        assert framer.feed(header) == []
        assert framer.feed(pdv_header) == []
        for _ in range(8):
            assert framer.feed(chunk) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert framer.buffered == 6 + 6 + 8 * len(chunk)
    assert peak < 4 * MiB


def test_unlimited_maximum_large_pdu_grows_and_completes() -> None:
    raw = p_data(3 * MiB)
    framer = PDUFramer(max_pdu_length=0)
    got = read_via_buffers(framer, raw, [65536])
    (pdu,) = got
    assert pdu.encode() == raw


# --------------------------------------------------------------------------- after an error


@pytest.mark.parametrize(
    "bad",
    [
        b"\x08\x00\x00\x00\x00\x04\x00\x00\x00\x00",  # unknown type
        b"\x04\x00\x00\x00\x00\x00",  # empty P-DATA-TF (error when the body completes)
        b"\x05\x00\x00\x00\x00\x03\x00\x00\x00",  # A-RELEASE-RQ of length 3
    ],
)
def test_every_call_raises_after_an_error(bad: bytes) -> None:
    framer = PDUFramer()
    assert framer.feed(EXAMPLES["A-RELEASE-RQ"]) != []
    with pytest.raises(PDUError) as first:
        framer.feed(bad + EXAMPLES["A-RELEASE-RP"])
    with pytest.raises(PDUError) as again:
        framer.feed(EXAMPLES["A-RELEASE-RQ"])
    assert again.value is first.value
    with pytest.raises(PDUError):
        framer.feed(b"")
    # a transport may keep reading: get_buffer still gives a buffer, buffer_updated raises
    buffer = framer.get_buffer(-1)
    assert len(buffer) > 0
    with pytest.raises(PDUError) as through_buffer:
        framer.buffer_updated(1)
    assert through_buffer.value is first.value


def test_pdus_before_bad_bytes_in_one_chunk_are_returned() -> None:
    framer = PDUFramer()
    pdus = framer.feed(EXAMPLES["A-RELEASE-RQ"] + b"\x09\x00\x00\x00\x00\x00")
    assert [type(p).__name__ for p in pdus] == ["AReleaseRQ"]
    error = framer.deferred_error
    assert error is not None and error.abort_reason == 1
    with pytest.raises(PDUError) as later:
        framer.feed(EXAMPLES["A-RELEASE-RP"])
    assert later.value is error


def test_error_in_a_directly_read_body_sticks() -> None:
    # a P-DATA-TF whose single PDV claims more than the PDU holds, read via direct reads
    body = struct.pack(">LBB", 300_000, 1, 0) + bytes(200_000)
    raw = struct.pack(">BBL", 0x04, 0, len(body)) + body
    framer = PDUFramer()
    with pytest.raises(PDUError) as info:
        read_via_buffers(framer, raw, [40_000])
    assert info.value.offset == 6
    framer.get_buffer(-1)
    with pytest.raises(PDUError):
        framer.buffer_updated(1)
    with pytest.raises(PDUError):
        framer.feed(EXAMPLES["A-RELEASE-RQ"])


def test_pdus_before_the_error_are_not_lost_in_separate_feeds() -> None:
    framer = PDUFramer()
    good = EXAMPLES["P-DATA-TF"]
    (pdu,) = framer.feed(good)
    assert pdu == decode(good)
    with pytest.raises(PDUError):
        framer.feed(b"\x00" * 6)
