"""Sans-I/O fragmentation and reassembly of DIMSE messages (PS3.7 §6.3.1, PS3.8 Annex E, D.1).

Sending: every P-DATA-TF within the receiver's maximum length, command before data set,
even fragments (odd only for the last fragment of an odd data set), the "last" bit on the
last fragment of each. Receiving: any split, several PDVs (even of two messages) per PDU;
what Annex E.1 forbids raises :class:`DimseProtocolError`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from array import array
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomwire.dimse.commands import CommandField, DataSetType, Tag, decode_command, encode_command
from dicomwire.dimse.messages import (
    MAX_COMMAND_LENGTH,
    CommandComplete,
    DataSetFragment,
    DimseProtocolError,
    MessageAssembler,
    fragment_limit,
    fragment_message,
    fragment_stream,
)
from dicomwire.errors import DicomWireError
from dicomwire.ul.pdu import PDataTF, PresentationDataValue, decode

COMMAND = 0x01
LAST = 0x02
MAX_PDUS = [4096, 16384, 1 << 20, 0]
SIZES = [0, 1, 2, 4089, 4090, 4091, 16377, 16378, 100_001, (3 << 20) + 1]


def _store_command(has_dataset: bool = True, message_id: int = 1) -> bytes:
    return encode_command(
        {
            Tag.CommandField: CommandField.C_STORE_RQ,
            Tag.MessageID: message_id,
            Tag.Priority: 0,
            Tag.CommandDataSetType: DataSetType.PRESENT if has_dataset else DataSetType.ABSENT,
            Tag.AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
            Tag.AffectedSOPInstanceUID: "1.2.826.0.1.3680043.2.1125.7",
        }
    )


def _echo_command(message_id: int = 2) -> bytes:
    return encode_command(
        {
            Tag.CommandField: CommandField.C_ECHO_RQ,
            Tag.MessageID: message_id,
            Tag.CommandDataSetType: DataSetType.ABSENT,
            Tag.AffectedSOPClassUID: "1.2.840.10008.1.1",
        }
    )


def _pattern(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def _reassemble(
    pdus: Sequence[PDataTF], assembler: MessageAssembler | None = None
) -> list[tuple[int, bytes, bytes | None]]:
    """Feed PDUs to an assembler: (context ID, command set bytes, data set) per message."""
    assembler = assembler or MessageAssembler()
    messages: list[tuple[int, bytes, bytes | None]] = []
    dataset: bytearray | None = None
    for pdu in pdus:
        for event in assembler.feed(pdu):
            if isinstance(event, CommandComplete):
                assert dataset is None, "a command completed inside a data set"
                messages.append((event.context_id, encode_command(event.command), None))
                if event.has_dataset:
                    dataset = bytearray()
            else:
                assert isinstance(event, DataSetFragment)
                assert dataset is not None
                assert event.context_id == messages[-1][0]
                dataset += event.data
                if event.last:
                    context_id, command, _ = messages[-1]
                    messages[-1] = (context_id, command, bytes(dataset))
                    dataset = None
    assert dataset is None, "a data set is incomplete"
    assert assembler.idle
    return messages


def _check_sent(
    pdus: list[PDataTF], max_pdu: int, context_id: int, command: bytes, dataset: bytes | None
) -> None:
    limit = fragment_limit(max_pdu)
    for pdu in pdus:
        encoded = pdu.encode()
        if max_pdu:
            assert len(encoded) - 6 <= max_pdu
        assert decode(encoded) == pdu  # a well-formed P-DATA-TF
    pdvs = [pdv for pdu in pdus for pdv in pdu.pdvs]
    assert all(pdv.context_id == context_id for pdv in pdvs)
    commands = [pdv for pdv in pdvs if pdv.is_command]
    data = [pdv for pdv in pdvs if not pdv.is_command]
    # command first, then data set, each with the last bit on its last fragment only
    assert pdvs == commands + data
    assert [pdv.is_last for pdv in commands] == [False] * (len(commands) - 1) + [True]
    assert b"".join(bytes(pdv.data) for pdv in commands) == command
    assert all(len(pdv.data) % 2 == 0 for pdv in commands)
    if dataset is None:
        assert not data
        return
    assert [pdv.is_last for pdv in data] == [False] * (len(data) - 1) + [True]
    assert b"".join(bytes(pdv.data) for pdv in data) == dataset
    assert all(len(pdv.data) % 2 == 0 for pdv in data[:-1])
    assert len(data[-1].data) % 2 == len(dataset) % 2
    if limit:
        # fragments are as large as fit: all but the last exactly the limit
        assert all(len(pdv.data) == limit for pdv in data[:-1])
        assert 0 < len(data[-1].data) <= limit or len(dataset) == 0
    else:
        assert len(data) == 1 and len(pdus) == 1


# --------------------------------------------------------------------------- fragment_message


def test_fragment_limit() -> None:
    assert fragment_limit(0) == 0
    assert fragment_limit(4096) == 4090
    assert fragment_limit(4097) == 4090  # even, even when the PDU limit is odd
    assert fragment_limit(16384) == 16378
    assert fragment_limit(8) == 2
    for too_small in (6, 7):
        with pytest.raises(DicomWireError, match="leaves no room"):
            fragment_limit(too_small)


@pytest.mark.parametrize("max_pdu", MAX_PDUS)
@pytest.mark.parametrize("size", SIZES)
def test_fragment_message_and_reassemble(max_pdu: int, size: int) -> None:
    command = _store_command()
    dataset = _pattern(size)
    pdus = list(fragment_message(5, command, dataset, max_pdu))
    _check_sent(pdus, max_pdu, 5, command, dataset)
    assert _reassemble(pdus) == [(5, command, dataset)]


@pytest.mark.parametrize("max_pdu", MAX_PDUS)
def test_fragment_message_without_data_set(max_pdu: int) -> None:
    command = _echo_command()
    pdus = list(fragment_message(1, command, None, max_pdu))
    assert len(pdus) == 1
    _check_sent(pdus, max_pdu, 1, command, None)
    assert _reassemble(pdus) == [(1, command, None)]


@pytest.mark.parametrize("max_pdu", [64, 100, 4096])
def test_command_longer_than_a_pdu_is_fragmented(max_pdu: int) -> None:
    command = encode_command(
        {
            Tag.CommandField: CommandField.N_GET_RQ,
            Tag.MessageID: 3,
            Tag.CommandDataSetType: DataSetType.ABSENT,
            Tag.RequestedSOPClassUID: "1.2.840.10008.5.1.1.16",
            Tag.RequestedSOPInstanceUID: "1.2.840.10008.5.1.1.17",
            Tag.AttributeIdentifierList: list(range(0x00100010, 0x00100010 + 2000)),
        }
    )
    assert len(command) > max_pdu
    pdus = list(fragment_message(3, command, None, max_pdu))
    _check_sent(pdus, max_pdu, 3, command, None)
    assert sum(pdv.is_command for pdu in pdus for pdv in pdu.pdvs) > 1
    assert _reassemble(pdus) == [(3, command, None)]


def test_small_message_shares_one_pdu() -> None:
    # Command and data set PDVs of one message travel in one P-DATA-TF when they fit.
    command = _store_command()
    (pdu,) = fragment_message(1, command, b"\x08\x00\x18\x00\x02\x00\x00\x001\x00", 16384)
    assert [pdv.control_header for pdv in pdu.pdvs] == [COMMAND | LAST, LAST]


# --------------------------------------------------------------------------- fragment_stream


async def _chunks(data: bytes, sizes: Sequence[int]) -> AsyncIterator[bytes]:
    pos = 0
    index = 0
    while pos < len(data):
        size = sizes[index % len(sizes)]
        index += 1
        yield data[pos : pos + size]
        pos += size
        await asyncio.sleep(0)


def _stream(data: bytes, sizes: Sequence[int], max_pdu: int) -> list[PDataTF]:
    async def collect() -> list[PDataTF]:
        return [pdu async for pdu in fragment_stream(7, _chunks(data, sizes), max_pdu)]

    return asyncio.run(collect())


@pytest.mark.parametrize("max_pdu", MAX_PDUS)
@pytest.mark.parametrize("size", [0, 1, 4091, 100_001, (3 << 20) + 1])
def test_fragment_stream_random_chunks_gives_the_same_bytes(max_pdu: int, size: int) -> None:
    rng = random.Random(size * 31 + max_pdu)
    dataset = os.urandom(size)
    sizes = [rng.choice([1, 3, 1000, 4095, 65_537, 1 << 20, 3 << 20]) for _ in range(50)]
    streamed = _stream(dataset, sizes, max_pdu)
    command = _store_command()
    head = list(fragment_message(7, command, None, max_pdu))
    if max_pdu:
        _check_sent(head + streamed, max_pdu, 7, command, dataset)
    pdvs = [pdv for pdu in streamed for pdv in pdu.pdvs]
    assert all(not pdv.is_command for pdv in pdvs)
    assert [pdv.is_last for pdv in pdvs] == [False] * (len(pdvs) - 1) + [True]
    assert b"".join(bytes(pdv.data) for pdv in pdvs) == dataset
    assert all(len(pdv.data) % 2 == 0 for pdv in pdvs[:-1])
    limit = fragment_limit(max_pdu) or (1 << 20)
    assert all(len(pdv.data) <= limit for pdv in pdvs)
    if max_pdu:
        # the same fragments as the in-memory path
        in_memory = [
            pdv
            for pdu in fragment_message(7, command, dataset, max_pdu)
            for pdv in pdu.pdvs
            if not pdv.is_command
        ]
        assert pdvs == in_memory
    assert _reassemble(head + streamed) == [(7, command, dataset)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=20_000),
    sizes=st.lists(st.integers(1, 9000), min_size=1, max_size=20),
    max_pdu=st.sampled_from([8, 9, 100, 4096, 16384, 0]),
)
def test_fragment_stream_any_chunking(data: bytes, sizes: list[int], max_pdu: int) -> None:
    streamed = _stream(data, sizes, max_pdu)
    pdvs = [pdv for pdu in streamed for pdv in pdu.pdvs]
    assert b"".join(bytes(pdv.data) for pdv in pdvs) == data
    assert [pdv.is_last for pdv in pdvs] == [False] * (len(pdvs) - 1) + [True]
    assert all(len(pdv.data) % 2 == 0 for pdv in pdvs[:-1])
    if max_pdu:
        assert all(len(pdu.encode()) - 6 <= max_pdu for pdu in streamed)


# --------------------------------------------------------------------------- reassembly


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def _pdvs(
    context_id: int, command: bytes, dataset: bytes | None, draw: st.DataObject
) -> list[PresentationDataValue]:
    pieces = _split(command, draw.draw(st.lists(st.integers(1, len(command) - 1), max_size=8)))
    pdvs = [
        PresentationDataValue(context_id, COMMAND | (LAST if i == len(pieces) - 1 else 0), piece)
        for i, piece in enumerate(pieces)
    ]
    if dataset is not None:
        cuts = draw.draw(st.lists(st.integers(1, max(1, len(dataset) - 1)), max_size=12))
        parts = _split(dataset, cuts) or [b""]
        pdvs += [
            PresentationDataValue(context_id, LAST if i == len(parts) - 1 else 0, part)
            for i, part in enumerate(parts)
        ]
    return pdvs


def _group(pdvs: list[PresentationDataValue], draw: st.DataObject) -> list[PDataTF]:
    cuts = draw.draw(st.lists(st.integers(1, max(1, len(pdvs) - 1)), max_size=len(pdvs)))
    points = sorted({c for c in cuts if 0 < c < len(pdvs)})
    bounds = [0, *points, len(pdvs)]
    return [PDataTF(pdvs[a:b]) for a, b in itertools.pairwise(bounds)]


@settings(max_examples=150, deadline=None)
@given(draw=st.data(), dataset=st.binary(max_size=3000), context_id=st.integers(1, 255))
def test_assembler_accepts_any_split(draw: st.DataObject, dataset: bytes, context_id: int) -> None:
    # fragments of any (odd) length and boundary, grouped into PDUs in any way
    command = _store_command()
    pdus = _group(_pdvs(context_id, command, dataset, draw), draw)
    assert _reassemble(pdus) == [(context_id, command, dataset)]


@settings(max_examples=100, deadline=None)
@given(
    draw=st.data(),
    first=st.binary(max_size=2000),
    second=st.one_of(st.none(), st.binary(max_size=2000)),
    contexts=st.tuples(st.integers(1, 255), st.integers(1, 255)),
)
def test_assembler_accepts_consecutive_messages_sharing_pdus(
    draw: st.DataObject, first: bytes, second: bytes | None, contexts: tuple[int, int]
) -> None:
    command_a = _store_command(message_id=1)
    command_b = _store_command(message_id=2) if second is not None else _echo_command(2)
    pdvs = _pdvs(contexts[0], command_a, first, draw)
    pdvs += _pdvs(contexts[1], command_b, second, draw)
    pdus = _group(pdvs, draw)
    assert _reassemble(pdus) == [
        (contexts[0], command_a, first),
        (contexts[1], command_b, second),
    ]


def test_command_and_data_set_and_next_message_in_one_pdu() -> None:
    store, echo = _store_command(), _echo_command()
    pdu = PDataTF(
        [
            PresentationDataValue(1, COMMAND, store[:7]),
            PresentationDataValue(1, COMMAND | LAST, store[7:]),
            PresentationDataValue(1, 0, b"\x01\x02\x03"),
            PresentationDataValue(1, LAST, b"\x04"),
            PresentationDataValue(3, COMMAND | LAST, echo),
        ]
    )
    assembler = MessageAssembler()
    events = assembler.feed(pdu)
    assert [type(e) for e in events] == [
        CommandComplete,
        DataSetFragment,
        DataSetFragment,
        CommandComplete,
    ]
    first, _, _, second = events
    assert isinstance(first, CommandComplete) and first.has_dataset
    assert first.command == decode_command(store)
    assert isinstance(second, CommandComplete) and not second.has_dataset
    assert second.context_id == 3
    assert assembler.idle


def test_data_set_fragments_are_views_of_the_pdu() -> None:
    received = decode(PDataTF([PresentationDataValue(1, LAST, b"abcd")]).encode())
    assembler = MessageAssembler()
    assembler.feed(PDataTF([PresentationDataValue(1, COMMAND | LAST, _store_command())]))
    (event,) = assembler.feed(received)  # type: ignore[arg-type]
    assert isinstance(event, DataSetFragment)
    assert isinstance(event.data, memoryview) and bytes(event.data) == b"abcd"
    assert event.last


# --------------------------------------------------------------------------- violations


def _pdu(*pdvs: tuple[int, int, bytes]) -> PDataTF:
    return PDataTF([PresentationDataValue(c, h, d) for c, h, d in pdvs])


STORE = _store_command()

VIOLATIONS = [
    pytest.param(
        [_pdu((1, LAST, b"\x00\x00"))],
        "data set fragment on presentation context 1 with no command before it",
        id="data-set-without-command",
    ),
    pytest.param(
        [_pdu((1, 0, b"\x00\x00"))],
        "with no command before it",
        id="data-set-not-last-without-command",
    ),
    pytest.param(
        [_pdu((1, COMMAND, STORE[:10]), (3, COMMAND | LAST, STORE[10:]))],
        "presentation context 3 inside a message on context 1",
        id="command-fragment-on-another-context",
    ),
    pytest.param(
        [_pdu((1, COMMAND | LAST, STORE)), _pdu((3, LAST, b"\x00\x00"))],
        "presentation context 3 inside a message on context 1",
        id="data-set-on-another-context",
    ),
    pytest.param(
        [_pdu((1, COMMAND | LAST, STORE), (1, 0, b"\x00\x00")), _pdu((1, COMMAND, STORE))],
        "command fragment while a data set is due",
        id="interleaved-command",
    ),
    pytest.param(
        [_pdu((1, COMMAND | LAST, STORE)), _pdu((1, COMMAND | LAST, _echo_command()))],
        "command fragment while a data set is due",
        id="next-message-before-data-set",
    ),
    pytest.param(
        [_pdu((1, COMMAND, STORE[:10]), (1, LAST, b"\x00\x00"))],
        "data set fragment before the command set was complete",
        id="data-set-inside-command",
    ),
    pytest.param(
        [_pdu((1, COMMAND | LAST, b"\x00\x00\x00\x00\x04\x00"))],
        "undecodable command set: truncated",
        id="undecodable-command",
    ),
    pytest.param(
        [_pdu((1, COMMAND, bytes(1 << 16))) for _ in range(MAX_COMMAND_LENGTH >> 16)]
        + [_pdu((1, COMMAND, b"\x00\x00"))],
        f"command set longer than {MAX_COMMAND_LENGTH} bytes",
        id="oversize-command",
    ),
]


@pytest.mark.parametrize(("pdus", "match"), VIOLATIONS)
def test_assembler_raises_on_violations(pdus: list[PDataTF], match: str) -> None:
    assembler = MessageAssembler()
    with pytest.raises(DimseProtocolError, match=match):
        for pdu in pdus:
            assembler.feed(pdu)


def test_oversize_command_is_refused_before_the_last_fragment() -> None:
    # the limit is enforced on what is buffered, not when the command completes
    assembler = MessageAssembler()
    assembler.feed(_pdu((1, COMMAND, bytes(MAX_COMMAND_LENGTH))))
    with pytest.raises(DimseProtocolError, match="longer than"):
        assembler.feed(_pdu((1, COMMAND, b"\x00\x00")))


def test_fragment_message_measures_buffers_in_bytes() -> None:
    words = array("H", range(3000))  # 6000 bytes
    command = _store_command()
    pdus = list(fragment_message(1, command, memoryview(words), 4096))
    for pdu in pdus:
        encoded = pdu.encode()
        assert len(encoded) - 6 <= 4096
        assert decode(encoded) == pdu
    data = b"".join(bytes(pdv.data) for pdu in pdus for pdv in pdu.pdvs if not pdv.is_command)
    assert data == words.tobytes()
