"""Memory stays bounded by the PDU size, not the object size (DESIGN.md, performance rules).

A 1 GiB data set streams from a :class:`FileSource` to a server :class:`FileSink` over
loopback, both ends in this process; the peak memory growth must stay below
64 MiB + 2 x max PDU. Measured twice: tracemalloc's peak of Python allocations, and the
kernel's peak resident set size (VmHWM, reset through /proc/self/clear_refs) for
everything else (C buffers, the event loop). The received file must be identical.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicomwire.dimse.commands import CommandField, Tag
from dicomwire.dimse.session import Request
from dicomwire.dimse.streams import BytesSink, DataSetSink, FileSink, FileSource

from ._support import CT_IMAGE, dimse_pair

MIB = 1 << 20
GIB = 1 << 30
SMALL_PDU_SIZE = 256 * MIB  # enough to pass the bound four times over, in a few seconds


@dataclass
class Source:
    path: Path
    digests: dict[int, str]  # length of a prefix -> its SHA-256


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """1 GiB of random-looking bytes (each MiB different), written in about a second."""
    path = tmp_path_factory.mktemp("memory") / "dataset.bin"
    block = os.urandom(MIB)
    digest = hashlib.sha256()
    digests = {}
    with open(path, "wb") as file:
        for index in range(GIB // MIB):
            chunk = index.to_bytes(8, "big") + block[8:]
            file.write(chunk)
            digest.update(chunk)
            if (index + 1) * MIB == SMALL_PDU_SIZE:
                digests[SMALL_PDU_SIZE] = digest.hexdigest()
    digests[GIB] = digest.hexdigest()
    yield Source(path, digests)
    path.unlink()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


class PeakRSS:
    """Peak resident set size growth, from /proc/self/status VmHWM after a reset."""

    def __init__(self) -> None:
        self.available = False
        try:
            with open("/proc/self/clear_refs", "w") as file:
                file.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self.available = True
        except OSError:
            return
        self.baseline = self._read("VmRSS")

    @staticmethod
    def _read(field: str) -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise LookupError(field)

    def growth(self) -> int:
        return self._read("VmHWM") - self.baseline


def _stream(source: Path, length: int, max_pdu: int, sink: Callable[[], DataSetSink]) -> object:
    """C-STORE ``length`` bytes of ``source`` over loopback; what the server handler got."""
    stored: list[object] = []

    async def store(request: Request) -> int:
        stored.append(request.message.dataset)
        return 0

    async def run() -> int:
        async with dimse_pair(
            {CommandField.C_STORE_RQ: store},
            server_sinks={CommandField.C_STORE_RQ: lambda command, context: sink()},
            max_pdu_length=max_pdu,
            server_max_pdu_length=max_pdu,
        ) as session:
            context = session.find_context(CT_IMAGE)
            operation = await session.request(
                context.context_id,
                {
                    Tag.CommandField: CommandField.C_STORE_RQ,
                    Tag.AffectedSOPClassUID: CT_IMAGE,
                    Tag.AffectedSOPInstanceUID: "1.2.826.0.1.3680043.2.1125.1.1",
                    Tag.Priority: 0,
                },
                FileSource(source, length=length, chunk_size=MIB),
            )
            return int((await operation.wait()).status)

    assert asyncio.run(run()) == 0
    (dataset,) = stored
    return dataset


def _measure(action: Callable[[], object]) -> tuple[object, int, int | None, float]:
    """Run ``action``: its result, tracemalloc peak growth, VmHWM growth, seconds."""
    rss = PeakRSS()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline, _ = tracemalloc.get_traced_memory()
        started = time.monotonic()
        result = action()
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak - baseline, rss.growth() if rss.available else None, elapsed


@pytest.mark.parametrize(
    ("max_pdu", "length"),
    [
        pytest.param(MIB, GIB, id="1GiB-pdu-1MiB"),
        pytest.param(16384, SMALL_PDU_SIZE, id="pdu-16KiB"),
    ],
)
def test_streaming_memory_is_bounded_by_the_pdu_size(
    source: Source,
    tmp_path: Path,
    max_pdu: int,
    length: int,
    record_property: Callable[[str, object], None],
) -> None:
    bound = 64 * MIB + 2 * max_pdu
    target = tmp_path / "received.bin"
    try:
        received, traced, resident, elapsed = _measure(
            lambda: _stream(source.path, length, max_pdu, lambda: FileSink(target))
        )
        record_property("seconds", round(elapsed, 2))
        record_property("tracemalloc_peak_growth_mib", round(traced / MIB, 2))
        if resident is not None:
            record_property("vmhwm_growth_mib", round(resident / MIB, 2))
        print(
            f"\n{length // MIB} MiB at max PDU {max_pdu}: {elapsed:.2f} s, "
            f"tracemalloc peak +{traced / MIB:.1f} MiB, "
            f"VmHWM +{(resident or 0) / MIB:.1f} MiB (bound {bound / MIB:.0f} MiB)"
        )
        assert received == target
        assert traced < bound
        if resident is not None:
            assert resident < bound
        assert target.stat().st_size == length
        assert _sha256(target) == source.digests[length]
    finally:
        target.unlink(missing_ok=True)


def test_the_measurement_sees_a_data_set_held_in_memory(source: Source) -> None:
    """Control: the same path into a BytesSink must show the whole data set as growth."""
    length = 96 * MIB
    received, traced, resident, _ = _measure(lambda: _stream(source.path, length, MIB, BytesSink))
    assert isinstance(received, bytes) and len(received) == length
    assert traced >= length
    if resident is not None:
        assert resident >= length
