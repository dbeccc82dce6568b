"""Micro benchmarks of the PDU codec and framer (PS3.8 §9.3): the C-STORE hot path.

Run: ``pytest -q bench --benchmark-only``. Nothing here asserts a timing; the assertions
only check that each benchmark did the work it claims.
"""

from __future__ import annotations

import pytest

from dicomwire.ul.framer import PDUFramer
from dicomwire.ul.pdu import (
    AAssociateRQ,
    ApplicationContextItem,
    PDataTF,
    PresentationContextRQItem,
    PresentationDataValue,
    RoleSelectionItem,
    UserIdentityRQItem,
    UserInformationItem,
    decode,
)

KiB = 1 << 10
MiB = 1 << 20
SOCKET_READ = 64 * KiB  # what one recv typically hands over
TRANSFER_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"]


def p_data_tf(pdu_length: int) -> PDataTF:
    """A P-DATA-TF whose length field is ``pdu_length``: one PDV, the last data fragment."""
    data = bytes(i & 0xFF for i in range(pdu_length - 6))
    return PDataTF([PresentationDataValue(1, 0x02, data)])


def associate_rq_128() -> AAssociateRQ:
    items: list[object] = [ApplicationContextItem()]
    for n in range(128):
        items.append(
            PresentationContextRQItem.create(
                2 * n + 1, f"1.2.840.10008.5.1.4.1.1.{n + 1}", TRANSFER_SYNTAXES
            )
        )
    items.append(
        UserInformationItem.create(
            16384,
            "2.25.668790844997978913503397512529915765",
            "DICOMWIRE_010",
            asynchronous_operations_window=(16, 16),
            role_selections=[RoleSelectionItem("1.2.840.10008.5.1.4.1.1.2", 1, 1)],
            user_identity=UserIdentityRQItem(2, 1, b"user", b"password"),
        )
    )
    return AAssociateRQ("STORE-SCP", "DICOMWIRE", items)  # type: ignore[arg-type]


SIZES = {"16KiB": 16 * KiB, "1MiB": MiB}


# --------------------------------------------------------------------------- P-DATA-TF


@pytest.mark.benchmark(group="p-data-tf decode")
@pytest.mark.parametrize("size", list(SIZES))
def test_decode_p_data_tf(benchmark, size: str) -> None:  # type: ignore[no-untyped-def]
    raw = bytearray(p_data_tf(SIZES[size]).encode())
    pdu = benchmark(decode, raw)
    assert isinstance(pdu, PDataTF)
    assert len(pdu.pdvs[0].data) == SIZES[size] - 6


@pytest.mark.benchmark(group="p-data-tf encode")
@pytest.mark.parametrize("size", list(SIZES))
def test_encode_p_data_tf(benchmark, size: str) -> None:  # type: ignore[no-untyped-def]
    pdu = p_data_tf(SIZES[size])
    raw = benchmark(pdu.encode)
    assert len(raw) == SIZES[size] + 6


@pytest.mark.benchmark(group="p-data-tf encode")
@pytest.mark.parametrize("size", list(SIZES))
def test_encode_parts_p_data_tf(benchmark, size: str) -> None:  # type: ignore[no-untyped-def]
    """The writelines() path: headers built, payload not copied."""
    pdu = p_data_tf(SIZES[size])
    parts = benchmark(pdu.encode_parts)
    assert sum(len(part) for part in parts) == SIZES[size] + 6


# --------------------------------------------------------------------------- A-ASSOCIATE-RQ


@pytest.mark.benchmark(group="a-associate-rq 128 contexts")
def test_decode_associate_rq_128_contexts(benchmark) -> None:  # type: ignore[no-untyped-def]
    raw = associate_rq_128().encode()
    pdu = benchmark(decode, raw)
    assert isinstance(pdu, AAssociateRQ)
    assert len(pdu.presentation_contexts) == 128


@pytest.mark.benchmark(group="a-associate-rq 128 contexts")
def test_encode_associate_rq_128_contexts(benchmark) -> None:  # type: ignore[no-untyped-def]
    pdu = associate_rq_128()
    raw = benchmark(pdu.encode)
    assert decode(raw) == pdu


@pytest.mark.benchmark(group="a-associate-rq 128 contexts")
def test_reencode_decoded_associate_rq_128_contexts(benchmark) -> None:  # type: ignore[no-untyped-def]
    """Encoding a decoded RQ: the WireStr fast path, no validation."""
    raw = associate_rq_128().encode()
    pdu = decode(raw)
    assert benchmark(pdu.encode) == raw


# --------------------------------------------------------------------------- framing

STREAM_PDUS = 64
STREAM = b"".join(p_data_tf(16 * KiB).encode() for _ in range(STREAM_PDUS))


def frame_with_feed(stream: bytes) -> int:
    framer = PDUFramer(max_pdu_length=16 * KiB)
    view = memoryview(stream)
    count = 0
    for pos in range(0, len(view), SOCKET_READ):
        count += len(framer.feed(view[pos : pos + SOCKET_READ]))
    return count


def frame_with_buffers(stream: bytes) -> int:
    framer = PDUFramer(max_pdu_length=16 * KiB)
    view = memoryview(stream)
    count = 0
    pos, end = 0, len(view)
    while pos < end:
        buf = framer.get_buffer(-1)
        n = min(len(buf), SOCKET_READ, end - pos)
        buf[:n] = view[pos : pos + n]  # what the kernel's recv_into does
        pos += n
        count += len(framer.buffer_updated(n))
    return count


@pytest.mark.benchmark(group="framing 64 x 16KiB p-data-tf")
def test_frame_stream_with_feed(benchmark) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(frame_with_feed, STREAM) == STREAM_PDUS


@pytest.mark.benchmark(group="framing 64 x 16KiB p-data-tf")
def test_frame_stream_with_get_buffer(benchmark) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(frame_with_buffers, STREAM) == STREAM_PDUS
