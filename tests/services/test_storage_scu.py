"""The Storage SCU side: :func:`store_files` and :func:`collect_files` (PS3.4 Annex B).

Files are sent from disk in their own transfer syntax; converted between uncompressed
transfer syntaxes when the peer accepted only another one; never decompressed (a
compressed file the peer cannot take fails with a clear reason); transient failures
(A7xx) are retried. The peer is an in-process :class:`Node` on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filereader import read_dataset
from pydicom.uid import UID

from dicomwire.dimse.session import Request, open_session
from dicomwire.errors import NoAcceptedContextError
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import (
    FileOutcome,
    StorageConfig,
    StoreSummary,
    batch_by_contexts,
    choose_context,
    collect_files,
    plan_contexts,
    send_files,
    store_files,
)
from dicomwire.services.storage.scu import Part10Error, inspect_file
from dicomwire.testing.corpus import make_ct, write_corpus, write_part10
from dicomwire.ul.association import Timeouts
from dicomwire.ul.negotiation import RequestorConfig

from ..conftest import part10_data_set as split_part10
from ..conftest import run_bounded

LOCALHOST = "127.0.0.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
NODE_AE = "DICOMWIRE"
TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0)
TEST_TIMEOUT = 30.0

T = TypeVar("T")


def run(coroutine: Awaitable[T]) -> T:
    return run_bounded(coroutine, TEST_TIMEOUT)


@contextlib.asynccontextmanager
async def serving(
    root: Path,
    *,
    ae_titles: tuple[str, ...] = (NODE_AE,),
    database: Path | None = None,
    **storage: Any,
) -> AsyncIterator[Node]:
    config = NodeConfig(
        database=database,
        ae_titles=list(ae_titles),
        host=LOCALHOST,
        port=0,
        storage=StorageConfig(root=root, fsync=False, **storage),
        timeouts=TIMEOUTS,
        shutdown_grace=1.0,
    )
    async with Node(config) as node:
        yield node


async def send(node: Node, paths: list[Path], **options: Any) -> StoreSummary:
    options.setdefault("called_ae_title", NODE_AE)
    options.setdefault("timeouts", TIMEOUTS)
    return await store_files(LOCALHOST, node.port, paths, **options)


def decode(data: bytes, transfer_syntax: str) -> Dataset:
    return read_dataset(
        BytesIO(data),
        is_implicit_VR=transfer_syntax == IMPLICIT_VR_LE,
        is_little_endian=transfer_syntax != EXPLICIT_VR_BE,
    )


def stored(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.dcm")) if root.exists() else []


def write_jpeg_lossless(path: Path, index: int) -> Dataset:
    """A CT file in JPEG Lossless SV1 (encapsulated; the SCU never looks at the pixels)."""
    ds = make_ct(index, rows=8, columns=8)
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3 not really a JPEG stream \xff\xd9"])
    ds["PixelData"].VR = "OB"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(JPEG_LOSSLESS_SV1)
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds


def write_big_endian(path: Path, index: int) -> Dataset:
    ds = make_ct(index, rows=8, columns=8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(EXPLICIT_VR_BE)
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True, implicit_vr=False, little_endian=False)
    return ds


# --------------------------------------------------------------------------- conversion


@pytest.mark.parametrize(
    ("source_syntax", "peer_syntax"),
    [
        (EXPLICIT_VR_LE, IMPLICIT_VR_LE),
        (IMPLICIT_VR_LE, EXPLICIT_VR_LE),
        (EXPLICIT_VR_BE, IMPLICIT_VR_LE),
    ],
    ids=["explicit-to-implicit", "implicit-to-explicit", "big-endian-to-implicit"],
)
def test_uncompressed_files_are_converted_to_what_the_peer_accepts(
    tmp_path: Path, source_syntax: str, peer_syntax: str
) -> None:
    if source_syntax == EXPLICIT_VR_BE:
        path = tmp_path / "in" / "be.dcm"
        path.parent.mkdir()
        write_big_endian(path, 1)
    else:
        path = write_part10(
            make_ct(1, rows=16, columns=16), tmp_path / "in" / "one.dcm", source_syntax
        )
    root = tmp_path / "store"

    async def scenario() -> StoreSummary:
        async with serving(root, transfer_syntaxes=(peer_syntax,)) as node:
            return await send(node, [path])

    summary = run(scenario())
    assert [o.status for o in summary.outcomes] == [0]
    (target,) = stored(root)
    syntax, data = split_part10(target)
    assert syntax == peer_syntax
    original = dcmread(path)
    received = decode(data, peer_syntax)
    assert received.SOPInstanceUID == original.SOPInstanceUID
    assert received.PatientName == original.PatientName
    assert received.Rows == original.Rows
    assert received.PixelData == original.PixelData
    assert [e.tag for e in received] == [e.tag for e in original]
    for element in original:
        assert received[element.tag].value == element.value, element.keyword


def test_compressed_file_is_not_decompressed_for_an_uncompressed_only_peer(
    tmp_path: Path,
) -> None:
    jpeg = tmp_path / "in" / "jpeg.dcm"
    write_jpeg_lossless(jpeg, 2)
    plain = write_part10(make_ct(3, rows=8, columns=8), tmp_path / "in" / "plain.dcm")
    root = tmp_path / "store"

    async def scenario() -> StoreSummary:
        async with serving(root, transfer_syntaxes=(EXPLICIT_VR_LE, IMPLICIT_VR_LE)) as node:
            return await send(node, [jpeg, plain], retries=2)

    summary = run(scenario())
    outcomes = {o.path.name: o for o in summary.outcomes}
    assert outcomes["plain.dcm"].status == 0
    failed = outcomes["jpeg.dcm"]
    assert failed.status is None
    assert failed.error is not None
    assert "1.2.840.10008.1.2.4.70" in failed.error
    assert "not decompressed" in failed.error
    assert failed.attempts == 1  # a permanent failure: not retried
    assert summary.sent == 1
    assert summary.failures == 1
    assert [split_part10(p)[0] for p in stored(root)] == [EXPLICIT_VR_LE]


def test_compressed_file_goes_as_is_to_a_peer_accepting_it(tmp_path: Path) -> None:
    jpeg = tmp_path / "in" / "jpeg.dcm"
    write_jpeg_lossless(jpeg, 4)
    root = tmp_path / "store"

    async def scenario() -> StoreSummary:
        async with serving(root) as node:
            return await send(node, [jpeg])

    summary = run(scenario())
    assert [o.status for o in summary.outcomes] == [0]
    (target,) = stored(root)
    assert split_part10(target) == split_part10(jpeg)


# --------------------------------------------------------------------------- files


def test_collect_files_skips_non_dicom_in_directories_but_not_when_named(
    tmp_path: Path,
) -> None:
    good = write_corpus(tmp_path / "dir" / "deep" / "er", 2, "small")
    (tmp_path / "dir" / "README.txt").write_text("not DICOM")
    (tmp_path / "dir" / "deep" / "empty.dcm").write_bytes(b"")
    named = tmp_path / "named.txt"
    named.write_text("not DICOM either")

    infos, failures = collect_files([tmp_path / "dir", named])
    assert sorted(i.path for i in infos) == sorted(good)
    # Non-DICOM files inside a directory are listed as skipped (not failures); named, a failure.
    assert sorted(f.path for f in failures if f.skipped) == sorted(
        [tmp_path / "dir" / "README.txt", tmp_path / "dir" / "deep" / "empty.dcm"]
    )
    assert [f.path for f in failures if not f.skipped] == [named]
    assert all("not a DICOM" in (f.error or "") for f in failures)
    for info in infos:
        syntax, data = split_part10(info.path)
        assert info.transfer_syntax == syntax
        assert info.dataset_length == len(data)


@pytest.mark.parametrize("filler", [100, 3610, 20000], ids=["head", "across", "past"])
def test_inspect_file_names_and_checks_a_header_longer_than_the_first_read(
    tmp_path: Path, filler: int
) -> None:
    """The SOP UIDs before, across and after the end of the first page read with the meta.

    A value before (0008,0016) leaves the UIDs inside the first 4 KiB, pushes the SOP Class
    UID across its end (3610 bytes with make_ct's elements: the walk cannot take it, the
    header reader does) or far past it (read from the file); each file is named by its own
    UIDs, and one cut inside its pixel data is still refused.
    """
    ds = make_ct(1, rows=16, columns=16)
    ds.add_new(0x00080010, "OB", b"\x00" * filler)  # before the SOP Class UID
    path = write_part10(ds, tmp_path / "long.dcm")
    info = inspect_file(path)
    assert (info.sop_class_uid, info.sop_instance_uid) == (ds.SOPClassUID, ds.SOPInstanceUID)
    assert info.note is None

    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(Part10Error, match="truncated"):
        inspect_file(cut)


def test_store_files_reports_unreadable_files_as_failures(tmp_path: Path) -> None:
    good = write_corpus(tmp_path / "in", 2, "small")
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x00" * 200)
    root = tmp_path / "store"

    async def scenario() -> StoreSummary:
        async with serving(root) as node:
            return await send(node, [tmp_path / "in", bad])

    summary = run(scenario())
    assert summary.sent == 2
    assert summary.failures == 1
    (failure,) = [o for o in summary.outcomes if o.status is None]
    assert failure.path == bad
    assert len(stored(root)) == len(good)


def test_out_of_resources_is_retried(tmp_path: Path) -> None:
    path = write_part10(make_ct(5, rows=8, columns=8), tmp_path / "in" / "one.dcm")
    root = tmp_path / "not-a-directory"
    root.write_bytes(b"")  # every write under it fails: A700 each time

    async def scenario() -> StoreSummary:  # the node's database is elsewhere, and works
        async with serving(root, database=tmp_path / "db" / "node.sqlite") as node:
            return await send(node, [path], retries=1)

    summary = run(scenario())
    (outcome,) = summary.outcomes
    assert outcome.status == 0xA700
    assert outcome.attempts == 2
    assert summary.failures == 1


def test_permanent_association_rejection_is_not_retried(tmp_path: Path) -> None:
    path = write_part10(make_ct(6, rows=8, columns=8), tmp_path / "in" / "one.dcm")

    async def scenario() -> StoreSummary:
        async with serving(tmp_path / "store", ae_titles=("SOMEONE-ELSE",)) as node:
            return await send(node, [path], retries=2)

    summary = run(scenario())
    (outcome,) = summary.outcomes
    assert outcome.status is None
    assert "rejected" in (outcome.error or "")
    assert outcome.attempts == 1


# --------------------------------------------------------------------------- window / lanes


@pytest.mark.parametrize(("window", "associations"), [(8, 1), (1, 3), (4, 2)])
def test_window_and_parallel_associations_deliver_every_file(
    tmp_path: Path, window: int, associations: int
) -> None:
    sources = write_corpus(tmp_path / "in", 12, "small", size=2000)
    root = tmp_path / "store"
    seen: list[tuple[int, int, str]] = []

    def record(path: Path, request: Request) -> None:
        seen.append((id(request.session), request.negotiated.maximum_invoked, path.stem))

    async def scenario() -> StoreSummary:
        async with serving(root, on_stored=record) as node:
            return await send(node, [tmp_path / "in"], window=window, associations=associations)

    summary = run(scenario())
    assert summary.sent == len(sources)
    assert summary.failures == 0
    assert sorted(stem for _, _, stem in seen) == sorted(
        str(dcmread(s).SOPInstanceUID) for s in sources
    )
    assert len(stored(root)) == len(sources)
    assert len({session for session, _, _ in seen}) == associations
    assert {invoked for _, invoked, _ in seen} == {window}


def test_a_window_of_large_data_sets_arrives_and_a_file_cut_since_fails_alone(
    tmp_path: Path,
) -> None:
    """Data sets of 128 KiB and more, a window of them outstanding at once: each arrives
    byte for byte. A file cut short after it was inspected fails with the reason, and only
    it (not sent short): the others are stored."""
    sources = write_corpus(tmp_path / "in", 4, "ct", rows=256, columns=256)  # 131 KB each
    infos, failures = collect_files([tmp_path / "in"])
    assert failures == [] and all(i.dataset_length >= 128 << 10 for i in infos)
    cut = infos[1].path
    cut.write_bytes(cut.read_bytes()[: infos[1].dataset_offset + 1000])
    root = tmp_path / "store"

    async def scenario() -> list[FileOutcome]:
        async with serving(root) as node:
            config = RequestorConfig(
                "SCU", NODE_AE, plan_contexts(infos), maximum_invoked=4, maximum_performed=1
            )
            async with open_session(LOCALHOST, node.port, config, timeouts=TIMEOUTS) as session:
                return await send_files(session, infos)

    outcomes = run(scenario())
    assert [o.delivered for o in outcomes] == [True, False, True, True]
    assert "cannot read the file" in (outcomes[1].error or "")
    received = {split_part10(p)[1] for p in stored(root)}
    assert received == {split_part10(p)[1] for p in sources if p != cut}


# --------------------------------------------------------------------------- the public core


def test_the_scu_core_sends_on_a_session_the_caller_opened(tmp_path: Path) -> None:
    """plan_contexts / batch_by_contexts / choose_context / send_files, as C-MOVE uses them."""
    plain = write_corpus(tmp_path / "in", 3, "small")
    jpeg = tmp_path / "in" / "jpeg.dcm"
    write_jpeg_lossless(jpeg, 7)
    infos, failures = collect_files([tmp_path / "in"])
    assert failures == [] and len(infos) == 4
    contexts = plan_contexts(infos)
    sop_classes = {info.sop_class_uid for info in infos}
    # one per (SOP class, transfer syntax) the files are in, then uncompressed per class
    assert len(contexts) == len({(i.sop_class_uid, i.transfer_syntax) for i in infos}) + len(
        sop_classes
    )
    assert (dcmread(jpeg).SOPClassUID, [JPEG_LOSSLESS_SV1]) in contexts
    assert batch_by_contexts(infos) == [infos]
    parts = batch_by_contexts(infos, limit=2)
    assert len(parts) == 2 and [i for part in parts for i in part] == infos
    assert all(len(plan_contexts(part)) <= 2 for part in parts)
    root = tmp_path / "store"
    settled: list[tuple[Path, int | None]] = []

    async def scenario() -> list[FileOutcome]:
        async with serving(root) as node:
            # the peer is offered only the uncompressed fallback: the JPEG file cannot go
            offered = [(sop, syntaxes) for sop, syntaxes in contexts if len(syntaxes) == 2]
            config = RequestorConfig("SCU", NODE_AE, offered)
            async with open_session(LOCALHOST, node.port, config, timeouts=TIMEOUTS) as session:
                plain_info = next(i for i in infos if i.path != jpeg)
                context, convert = choose_context(session.negotiated, plain_info)
                assert context.transfer_syntax == plain_info.transfer_syntax and not convert
                with pytest.raises(NoAcceptedContextError):
                    choose_context(session.negotiated, next(i for i in infos if i.path == jpeg))
                return await send_files(
                    session,
                    infos,
                    on_outcome=lambda info, outcome: settled.append(
                        (info.path, None if outcome.status is None else int(outcome.status))
                    ),
                )

    outcomes = run(scenario())
    assert [o.path for o in outcomes] == [i.path for i in infos]
    assert settled == [
        (info.path, None if info.path == jpeg else 0) for info in infos
    ]  # one call per file, in order
    (refused,) = [o for o in outcomes if o.path == jpeg]
    assert refused.permanent and "not decompressed" in (refused.error or "")
    assert len(stored(root)) == len(plain)
