"""The node as Storage SCP (PS3.4 Annex B; Part 10 files of PS3.10 §7.1).

An in-process :class:`Node` on 127.0.0.1 (port 0) receives instances sent with
:func:`store_files` / :func:`store_dataset` on the same event loop. Each stored file is
checked independently of dicomwire: its File Meta Information (PS3.10 Table 7.1-1) is
read with pydicom and its data set bytes (everything after the meta group) are compared
byte for byte with what was sent. Failure statuses of PS3.4 Table B.2-1: A700 (out of
resources: full or read-only storage), A900 (data set does not match the command's SOP
Class/Instance), C000 (cannot understand), 0111 (duplicate SOP instance, policy "reject").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import struct
import subprocess
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydicom import Dataset, dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from dicomwire import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicomwire.dimse.commands import CommandField, CommandSet, Tag
from dicomwire.dimse.session import DimseSession, Request, open_session
from dicomwire.dimse.status import Status
from dicomwire.errors import DicomWireError
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig, StoreSummary, store_dataset, store_files
from dicomwire.testing.corpus import (
    CT_IMAGE_STORAGE,
    SECONDARY_CAPTURE_STORAGE,
    make_ct,
    make_small,
    write_corpus,
)
from dicomwire.ul.association import Timeouts
from dicomwire.ul.negotiation import RequestorConfig

from ..conftest import skip_or_fail

LOCALHOST = "127.0.0.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
NODE_AE = "DICOMWIRE"
CALLING_AE = "MODALITY1"
TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0)
#: Every test's event loop gives up after this many seconds.
TEST_TIMEOUT = 30.0
INVALID_COMPONENT = re.compile(r"invalid-[0-9a-f]{16}")

T = TypeVar("T")


# --------------------------------------------------------------------------- helpers


def run(coroutine: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, TEST_TIMEOUT)

    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def serving(
    root: Path, *, database: Path | None = None, **storage: Any
) -> AsyncIterator[Node]:
    """A node on 127.0.0.1 (free port) storing under ``root``; shut down at the end.

    The node's database is under ``root`` unless ``database`` puts it elsewhere.
    """
    config = NodeConfig(
        database=database,
        ae_titles=[NODE_AE],
        host=LOCALHOST,
        port=0,
        storage=StorageConfig(root=root, **storage),
        timeouts=TIMEOUTS,
        shutdown_grace=1.0,
    )
    async with Node(config) as node:
        yield node


def requestor(*contexts: tuple[str, list[str]], calling: str = CALLING_AE) -> RequestorConfig:
    return RequestorConfig(calling, NODE_AE, list(contexts))


@contextlib.asynccontextmanager
async def session_to(
    node: Node, *contexts: tuple[str, list[str]], calling: str = CALLING_AE
) -> AsyncIterator[DimseSession]:
    config = requestor(*contexts, calling=calling)
    async with open_session(LOCALHOST, node.port, config, timeouts=TIMEOUTS) as session:
        yield session


def encode(ds: Dataset, transfer_syntax: str) -> bytes:
    """``ds`` encoded by pydicom alone (deflate: raw DEFLATE of Explicit VR LE, PS3.5 A.5)."""
    fp = DicomBytesIO()
    fp.is_implicit_VR = transfer_syntax == IMPLICIT_VR_LE
    fp.is_little_endian = transfer_syntax != EXPLICIT_VR_BE
    write_dataset(fp, ds)
    data = fp.getvalue()
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LE:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(data) + compressor.flush()
    return data


def split_part10(path: Path) -> tuple[Dataset, bytes]:
    """(file meta as pydicom reads it, data set bytes after the meta group) of a file."""
    raw = path.read_bytes()
    assert raw[:128] == bytes(128), "preamble is not zeros"
    assert raw[128:132] == b"DICM"
    assert struct.unpack_from("<HH2sH", raw, 132) == (2, 0, b"UL", 4)
    (group_length,) = struct.unpack_from("<L", raw, 140)
    meta = dcmread(path, stop_before_pixels=True).file_meta
    return meta, raw[144 + group_length :]


def expected_path(root: Path, ds: Dataset) -> Path:
    return root / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm"


def stored_files(root: Path) -> list[Path]:
    """Every regular file under ``root``, .incoming included (not the node's database)."""
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and ".dicomwire" not in p.parts)


def assert_meta(
    meta: Dataset, sop_class: str, sop_instance: str, transfer_syntax: str, source_ae: str
) -> None:
    assert meta.FileMetaInformationVersion == b"\x00\x01"
    assert meta.MediaStorageSOPClassUID == sop_class
    assert meta.MediaStorageSOPInstanceUID == sop_instance
    assert meta.TransferSyntaxUID == transfer_syntax
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert meta.SourceApplicationEntityTitle == source_ae


def ct(index: int, **options: Any) -> Dataset:
    options.setdefault("rows", 16)
    options.setdefault("columns", 16)
    return make_ct(index, **options)


async def store_raw(
    node: Node,
    data: bytes,
    *,
    sop_class: str = CT_IMAGE_STORAGE,
    sop_instance: str,
    transfer_syntax: str = EXPLICIT_VR_LE,
) -> Status:
    async with session_to(node, (sop_class, [transfer_syntax])) as session:
        return await store_dataset(
            session,
            data,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            transfer_syntax=transfer_syntax,
        )


# --------------------------------------------------------------------------- tmpfs


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``tmpfs("size=1m")`` mounts a tmpfs with those options; unmounted at teardown.

    Needs root; skipped without it (or when mount fails) unless ``CI=true``.
    """
    mounted: list[Path] = []

    def unavailable(message: str) -> None:
        skip_or_fail(message)

    def mount(options: str) -> Path:
        if os.geteuid() != 0:
            unavailable("mounting a tmpfs needs root")
        point = tmp_path / f"tmpfs-{len(mounted)}"
        point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
            capture_output=True,
            timeout=10,
        )
        if result.returncode != 0:
            unavailable(f"mount -t tmpfs failed: {result.stderr.decode(errors='replace')}")
        mounted.append(point)
        return point

    try:
        yield mount
    finally:
        for point in reversed(mounted):
            result = subprocess.run(["umount", str(point)], capture_output=True, timeout=10)
            if result.returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=10)


# --------------------------------------------------------------------------- storing


@pytest.mark.parametrize("fsync", [False, True])
def test_files_arrive_as_part10_under_study_series_sop(tmp_path: Path, fsync: bool) -> None:
    sources = [
        *write_corpus(tmp_path / "in" / "ct", 3, "ct", rows=32, columns=32),
        *write_corpus(tmp_path / "in" / "sc", 2, "small", transfer_syntax=IMPLICIT_VR_LE),
    ]
    root = tmp_path / "store"

    async def scenario() -> tuple[StoreSummary, int]:
        async with serving(root, fsync=fsync) as node:
            summary = await store_files(
                LOCALHOST,
                node.port,
                [tmp_path / "in"],
                calling_ae_title=CALLING_AE,
                called_ae_title=NODE_AE,
                timeouts=TIMEOUTS,
            )
            return summary, node.storage.stored

    summary, stored = run(scenario())
    assert summary.failures == 0
    assert summary.sent == len(sources) == stored
    assert all(o.status == 0 for o in summary.outcomes)
    expected = set()
    for source in sources:
        original = dcmread(source)
        target = expected_path(root, original)
        expected.add(target)
        meta, data = split_part10(target)
        source_meta, source_data = split_part10(source)
        assert_meta(
            meta,
            original.SOPClassUID,
            original.SOPInstanceUID,
            source_meta.TransferSyntaxUID,
            CALLING_AE,
        )
        assert data == source_data
        # the whole file reads back as the same instance
        again = dcmread(target)
        assert again == original
    assert summary.bytes_sent == sum(len(split_part10(s)[1]) for s in sources)
    assert set(stored_files(root)) == expected  # nothing left in .incoming, nothing else
    assert not any((root / ".incoming").iterdir())


def test_store_dataset_sends_pydicom_datasets_and_raw_bytes(tmp_path: Path) -> None:
    root = tmp_path / "store"
    as_dataset = ct(1)
    as_bytes = make_small(2, size=1000)
    raw = encode(as_bytes, IMPLICIT_VR_LE)

    async def scenario() -> list[Status]:
        async with (
            serving(root, fsync=False) as node,
            session_to(
                node,
                (CT_IMAGE_STORAGE, [IMPLICIT_VR_LE]),
                (SECONDARY_CAPTURE_STORAGE, [IMPLICIT_VR_LE]),
                calling="RAW-SCU",
            ) as session,
        ):
            first = await store_dataset(session, as_dataset)
            second = await store_dataset(
                session,
                raw,
                sop_class_uid=SECONDARY_CAPTURE_STORAGE,
                sop_instance_uid=str(as_bytes.SOPInstanceUID),
                transfer_syntax=IMPLICIT_VR_LE,
            )
            return [first, second]

    assert run(scenario()) == [0, 0]
    meta, data = split_part10(expected_path(root, as_dataset))
    assert_meta(meta, CT_IMAGE_STORAGE, as_dataset.SOPInstanceUID, IMPLICIT_VR_LE, "RAW-SCU")
    assert data == encode(as_dataset, IMPLICIT_VR_LE)
    meta, data = split_part10(expected_path(root, as_bytes))
    assert_meta(meta, SECONDARY_CAPTURE_STORAGE, as_bytes.SOPInstanceUID, IMPLICIT_VR_LE, "RAW-SCU")
    assert data == raw


@pytest.mark.parametrize(
    "transfer_syntax", [DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE], ids=["deflated", "big-endian"]
)
def test_deflated_and_big_endian_are_stored_as_received(
    tmp_path: Path, transfer_syntax: str
) -> None:
    root = tmp_path / "store"
    ds = ct(3, rows=24, columns=24)
    raw = encode(ds, transfer_syntax)

    async def scenario() -> Status:
        async with serving(root, fsync=False) as node:
            return await store_raw(
                node, raw, sop_instance=ds.SOPInstanceUID, transfer_syntax=transfer_syntax
            )

    assert run(scenario()) == 0
    target = expected_path(root, ds)
    meta, data = split_part10(target)
    assert_meta(meta, CT_IMAGE_STORAGE, ds.SOPInstanceUID, transfer_syntax, CALLING_AE)
    assert data == raw
    assert dcmread(target).PixelData == ds.PixelData
    assert stored_files(root) == [target]


def test_pydicom_dataset_on_deflated_context_round_trips(tmp_path: Path) -> None:
    """store_dataset encodes a Dataset in the accepted (deflated) transfer syntax."""
    root = tmp_path / "store"
    ds = ct(4)

    async def scenario() -> Status:
        async with (
            serving(root, fsync=False) as node,
            session_to(node, (CT_IMAGE_STORAGE, [DEFLATED_EXPLICIT_VR_LE])) as session,
        ):
            return await store_dataset(session, ds)

    assert run(scenario()) == 0
    meta, data = split_part10(expected_path(root, ds))
    assert meta.TransferSyntaxUID == DEFLATED_EXPLICIT_VR_LE
    inflated = zlib.decompress(data, -zlib.MAX_WBITS)
    assert inflated == encode(ds, EXPLICIT_VR_LE)


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("mismatch", ["instance", "class"])
def test_data_set_not_matching_the_command_is_a900_and_not_stored(
    tmp_path: Path, mismatch: str
) -> None:
    root = tmp_path / "store"
    ds = ct(5)
    raw = encode(ds, EXPLICIT_VR_LE)
    sop_class = SECONDARY_CAPTURE_STORAGE if mismatch == "class" else CT_IMAGE_STORAGE
    instance = "1.2.3.4.5" if mismatch == "instance" else ds.SOPInstanceUID

    async def scenario() -> Status:
        async with serving(root, fsync=False) as node:
            return await store_raw(node, raw, sop_class=sop_class, sop_instance=instance)

    status = run(scenario())
    assert status == 0xA900
    assert status.is_failure
    assert stored_files(root) == []


def test_data_set_cut_inside_a_sequence_is_c000_and_not_stored(tmp_path: Path) -> None:
    root = tmp_path / "store"
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = "1.2.3.4.6"
    # (0008,1140) SQ of undefined length, an item of undefined length, then the end
    cut = encode(ds, EXPLICIT_VR_LE) + (
        b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    )

    async def scenario() -> Status:
        async with serving(root, fsync=False) as node:
            return await store_raw(node, cut, sop_instance=ds.SOPInstanceUID)

    assert run(scenario()) == 0xC000
    assert stored_files(root) == []


@pytest.mark.parametrize("garbage", [b"garbage!" * 8, b"\xff" * 64], ids=["ascii", "ff-bytes"])
def test_garbage_data_set_is_c000_and_not_stored(tmp_path: Path, garbage: bytes) -> None:
    root = tmp_path / "store"

    async def scenario() -> Status:
        async with serving(root, fsync=False) as node:
            return await store_raw(node, garbage, sop_instance="1.2.3.4.5")

    status = run(scenario())
    assert stored_files(root) == []
    assert status == 0xC000


@pytest.mark.parametrize("duplicates", ["overwrite", "keep", "reject"])
def test_duplicates_policy(tmp_path: Path, duplicates: str) -> None:
    root = tmp_path / "store"
    first = ct(7)
    second = ct(7)
    second.PatientName = "Second^Copy"
    target = expected_path(root, first)

    async def scenario() -> tuple[Status, bytes, int, Status]:
        async with serving(root, fsync=False, duplicates=duplicates) as node:
            async with session_to(node, (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])) as session:
                status_one = await store_dataset(session, first)
            before = target.read_bytes()
            inode = target.stat().st_ino
            async with session_to(node, (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])) as session:
                status_two = await store_dataset(session, second)
            return status_one, before, inode, status_two

    status_one, before, inode, status_two = run(scenario())
    assert status_one == 0
    assert stored_files(root) == [target]
    if duplicates == "overwrite":
        assert status_two == 0
        assert split_part10(target)[1] == encode(second, EXPLICIT_VR_LE)
    elif duplicates == "keep":
        assert status_two == 0
        assert target.read_bytes() == before
        assert target.stat().st_ino == inode
    else:
        assert status_two == 0x0111
        assert status_two.is_failure
        assert target.read_bytes() == before
        assert target.stat().st_ino == inode


def test_full_disk_is_a700_and_leaves_no_partial_file(
    tmp_path: Path, tmpfs: Callable[[str], Path]
) -> None:
    root = tmpfs("size=1m")
    big = make_ct(8, rows=1024, columns=1024)  # 2 MiB of pixel data
    small = ct(9)

    async def scenario() -> tuple[Status, list[Path], Status]:
        async with serving(root, fsync=True) as node:
            async with session_to(node, (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])) as session:
                full = await store_dataset(session, big)
            left = stored_files(root)
            async with session_to(node, (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])) as session:
                after = await store_dataset(session, small)
            return full, left, after

    full, left, after = run(scenario())
    assert full == 0xA700
    assert left == []  # no partial file in .incoming nor anywhere else
    # the space of the failed attempt was given back: a small instance still fits
    assert after == 0
    assert stored_files(root) == [expected_path(root, small)]


def test_a_full_disk_refusal_is_logged(
    tmpfs: Callable[[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    root = tmpfs("size=1m")
    big = make_ct(8, rows=1024, columns=1024)  # 2 MiB of pixel data

    async def scenario() -> Status:
        async with (
            serving(root) as node,
            session_to(node, (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])) as session,
        ):
            return await store_dataset(session, big)

    with caplog.at_level(logging.WARNING, logger="dicomwire.services.storage.scp"):
        assert run(scenario()) == 0xA700
    refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    (line,) = [m for m in refusals if m.startswith("refused C-STORE")]
    assert line.startswith(f"refused C-STORE of {big.SOPInstanceUID} from {CALLING_AE} at ")
    assert line.endswith(
        "Refused: out of resources (0xA700): write failed: [Errno 28] No space left on device"
    )


def test_read_only_storage_is_a700(tmp_path: Path, tmpfs: Callable[[str], Path]) -> None:
    root = tmpfs("ro,size=1m")

    async def scenario() -> Status:  # the node's database is elsewhere, and works
        async with (
            serving(root, fsync=False, database=tmp_path / "db" / "node.sqlite") as node,
            session_to(node, (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])) as session,
        ):
            return await store_dataset(session, ct(10))

    assert run(scenario()) == 0xA700
    assert list(root.iterdir()) == []


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize(
    ("study", "series"),
    [("../../etc", "1.2.3"), ("1.2/../../../x", "../.."), ("..", "/etc/passwd")],
    ids=["dotdot", "slashes", "bare-dotdot-absolute"],
)
def test_unsafe_uids_stay_inside_root(tmp_path: Path, study: str, series: str) -> None:
    root = tmp_path / "deep" / "er" / "store"
    ds = ct(11)
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series

    async def scenario() -> Status:
        async with (
            serving(root, fsync=False) as node,
            session_to(node, (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])) as session,
        ):
            return await store_dataset(session, ds)

    assert run(scenario()) == 0
    (target,) = stored_files(root)
    relative = target.relative_to(root)
    assert target.resolve().is_relative_to(root.resolve())
    assert len(relative.parts) == 3
    assert INVALID_COMPONENT.fullmatch(relative.parts[0])
    if series != "1.2.3":
        assert INVALID_COMPONENT.fullmatch(relative.parts[1])
    assert relative.parts[2] == f"{ds.SOPInstanceUID}.dcm"
    # nothing was written next to the storage root
    written = [p for p in tmp_path.rglob("*") if p.is_file() and ".dicomwire" not in p.parts]
    assert [p.name for p in written] == [target.name]


def test_layout_option(tmp_path: Path) -> None:
    root = tmp_path / "store"
    layout = "{CallingAETitle}/{SOPClassUID}/{StudyInstanceUID}-{SOPInstanceUID}.dcm"
    ds = ct(12)

    async def scenario() -> Status:
        async with (
            serving(root, fsync=False, layout=layout) as node,
            session_to(node, (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE]), calling="LAYOUT-SCU") as s,
        ):
            return await store_dataset(s, ds)

    assert run(scenario()) == 0
    target = (
        root / "LAYOUT-SCU" / CT_IMAGE_STORAGE / f"{ds.StudyInstanceUID}-{ds.SOPInstanceUID}.dcm"
    )
    assert stored_files(root) == [target]
    assert split_part10(target)[1] == encode(ds, EXPLICIT_VR_LE)


def test_discard_writes_nothing_and_answers_success(tmp_path: Path) -> None:
    root = tmp_path / "store"
    sources = write_corpus(tmp_path / "in", 3, "small")

    async def scenario() -> StoreSummary:
        async with serving(root, discard=True) as node:
            return await store_files(
                LOCALHOST,
                node.port,
                sources,
                calling_ae_title=CALLING_AE,
                called_ae_title=NODE_AE,
                timeouts=TIMEOUTS,
            )

    summary = run(scenario())
    assert [o.status for o in summary.outcomes] == [0, 0, 0]
    assert stored_files(root) == []


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_on_stored_hook_gets_the_final_path(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "store"
    datasets = [ct(13), ct(14)]
    calls: list[tuple[Path, bool, str, str]] = []

    def record(path: Path, request: Request) -> None:
        calls.append(
            (
                path,
                path.is_file(),
                str(request.command.get(Tag.AffectedSOPInstanceUID)),
                request.negotiated.remote_ae_title,
            )
        )

    async def record_async(path: Path, request: Request) -> None:
        await asyncio.sleep(0)
        record(path, request)

    hook = record if kind == "sync" else record_async

    async def scenario() -> list[Status]:
        async with (
            serving(root, fsync=False, on_stored=hook) as node,
            session_to(node, (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])) as session,
        ):
            return [await store_dataset(session, ds) for ds in datasets]

    assert run(scenario()) == [0, 0]
    assert calls == [
        (expected_path(root, ds), True, str(ds.SOPInstanceUID), CALLING_AE) for ds in datasets
    ]


def test_aborted_transfer_leaves_nothing_in_incoming(tmp_path: Path) -> None:
    root = tmp_path / "store"
    ds = ct(15)
    raw = encode(ds, EXPLICIT_VR_LE)

    async def scenario() -> tuple[list[Path], list[Path]]:
        sent = asyncio.Event()

        async def source() -> AsyncIterator[bytes]:
            yield raw[: len(raw) // 2]
            sent.set()
            await asyncio.sleep(60)  # never completes: the association is aborted
            yield raw[len(raw) // 2 :]

        async with serving(root, fsync=False) as node:
            async with session_to(node, (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])) as session:
                context = session.find_context(CT_IMAGE_STORAGE)
                command: CommandSet = {
                    Tag.CommandField: CommandField.C_STORE_RQ,
                    Tag.AffectedSOPClassUID: CT_IMAGE_STORAGE,
                    Tag.AffectedSOPInstanceUID: str(ds.SOPInstanceUID),
                    Tag.Priority: 0,
                }
                task = asyncio.create_task(session.request(context.context_id, command, source()))
                await asyncio.wait_for(sent.wait(), 5)
                partial: list[Path] = []
                for _ in range(1000):  # the partial file appears in .incoming
                    partial = stored_files(root)
                    if partial:
                        break
                    await asyncio.sleep(0.01)
                session.abort()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, DicomWireError):
                    await task
            left: list[Path] = stored_files(root)
            for _ in range(1000):
                if not left:
                    break
                await asyncio.sleep(0.01)
                left = stored_files(root)
            return partial, left

    partial, left = run(scenario())
    assert [p.parent.name for p in partial] == [".incoming"]
    assert partial[0].suffix == ".part"
    assert left == []


@pytest.mark.parametrize("where", ["private-ob", "sequence"])
def test_large_elements_before_study_uid_are_filed_by_study_and_series(
    tmp_path: Path, where: str
) -> None:
    root = tmp_path / "store"
    ds = ct(16)
    if where == "private-ob":
        ds.add_new(0x00090010, "LO", "ACME 1.0")  # private creator, group 0009
        ds.add_new(0x00091001, "OB", bytes(100_000))
    else:
        # about 80 KB in (0008,1140)
        ds.ReferencedImageSequence = Sequence([_referenced(i) for i in range(1200)])
    raw = encode(ds, EXPLICIT_VR_LE)
    assert len(raw) > 1 << 16

    async def scenario() -> Status:
        async with serving(root, fsync=False) as node:
            return await store_raw(node, raw, sop_instance=ds.SOPInstanceUID)

    status = run(scenario())
    assert status == 0
    assert stored_files(root) == [expected_path(root, ds)]


def _referenced(index: int) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    item.ReferencedSOPInstanceUID = f"1.2.3.4.{index}"
    return item


def test_failing_on_stored_hook_is_0110_and_the_association_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "store"
    failed: list[Path] = []

    def hook(path: Path, request: Request) -> None:
        if not failed:
            failed.append(path)
            raise RuntimeError("the embedding application failed")

    async def scenario() -> list[Status]:
        async with (
            serving(root, fsync=False, on_stored=hook) as node,
            session_to(node, (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])) as session,
        ):
            return [await store_dataset(session, ct(index)) for index in (18, 19)]

    first, second = run(scenario())
    assert first == 0x0110
    assert second == 0
    assert failed == [expected_path(root, ct(18))]
    assert expected_path(root, ct(19)).is_file()
