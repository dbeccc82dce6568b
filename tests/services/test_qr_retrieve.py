"""C-MOVE and C-GET SCP (PS3.4 C.4.2, C.4.3, Annex Z) driven by dicomwire's own SCU.

The node serves an index of CT_small copies with new UIDs; destinations are real SCPs on
free ports: DCMTK storescp, or a dicomwire node whose storage handler records what each
C-STORE-RQ carried (Move Originator) and can hold a C-STORE until the test lets it go.
The helpers at the top are shared with tests/interop/test_qr_retrieve.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

import dicomwire
from dicomwire.dimse.commands import CommandField
from dicomwire.dimse.datasets import encode_identifier
from dicomwire.dimse.primitives import CGetRQ, CMoveRQ
from dicomwire.dimse.session import Request
from dicomwire.errors import DimseStatusError
from dicomwire.services.client import RetrieveResult
from dicomwire.services.directory import RemoteAE
from dicomwire.services.index import SQLiteIndex
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.qr import QueryRetrieve, QueryRetrieveConfig
from dicomwire.services.qr.models import QUERY_MODELS
from dicomwire.services.qr.retrieve import MOVE_WINDOW
from dicomwire.services.service import CustomService
from dicomwire.services.storage import Storage, StorageConfig
from dicomwire.services.verification import Verification
from dicomwire.ul.association import Timeouts

from ..conftest import LOCALHOST, find_dcmtk_tool, get_free_tcp_port, run_bounded, wait_for_port

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
NODE_AE = "DICOMWIRE"
TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=20.0, network_idle=20.0, connect=5.0)


# --------------------------------------------------------------------------- helpers


def make_study(directory: Path, count: int, *, patient_id: str = "QRPAT") -> tuple[str, list[Path]]:
    """``count`` copies of pydicom's CT_small.dcm in one new study; (Study UID, paths)."""
    source = dcmread(get_testdata_file("CT_small.dcm"))
    directory.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for number in range(count):
        source.StudyInstanceUID, source.SeriesInstanceUID = study, series
        source.SOPInstanceUID = source.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        source.PatientID = patient_id
        source.InstanceNumber = number + 1
        path = directory / f"ct{number:05d}.dcm"
        source.save_as(path, enforce_file_format=True)
        paths.append(path)
    return study, paths


def build_index(paths: Sequence[Path]) -> SQLiteIndex:
    """An in-memory index of ``paths``, each header read up to its pixel data."""
    index = SQLiteIndex(":memory:")
    for path in paths:
        header = dcmread(path, stop_before_pixels=True)
        index.add(header, path, str(header.file_meta.TransferSyntaxUID), path.stat().st_size)
    return index


def sop_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def node_config(root: Path, nodes: Sequence[RemoteAE] = ()) -> NodeConfig:
    return NodeConfig(
        ae_titles=[NODE_AE],
        host=LOCALHOST,
        port=0,
        storage=StorageConfig(root=root, fsync=False),
        timeouts=TIMEOUTS,
        shutdown_grace=1.0,
        nodes=list(nodes),
    )


@contextlib.asynccontextmanager
async def retrieve_node(
    root: Path, index: Any, nodes: Sequence[RemoteAE] = (), *, port: int = 0, **qr: Any
) -> AsyncIterator[Node]:
    """The node under test: Verification, Storage and Query/Retrieve over ``index``."""
    config = node_config(root, nodes)
    config.port = port
    services = [
        Verification(),
        Storage(config.storage),
        QueryRetrieve(index, QueryRetrieveConfig(**qr)),
    ]
    async with Node(config, services) as node:
        yield node


@contextlib.contextmanager
def storescp(directory: Path, ae_title: str = "STORESCP", *, debug: bool = False) -> Iterator[int]:
    """DCMTK storescp on a free port, writing to ``directory``; its port.

    Its output goes to ``<directory>.log`` (every DIMSE message dumped with ``debug``).
    """
    binary = find_dcmtk_tool("storescp")
    directory.mkdir(parents=True, exist_ok=True)
    port = get_free_tcp_port()
    log = open(directory.with_suffix(".log"), "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            binary,
            *(["-d"] if debug else []),
            "-aet",
            ae_title,
            "-od",
            str(directory),
            "+xa",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process)
        yield port
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def received_uids(directory: Path) -> set[str]:
    return {sop_uid(path) for path in directory.iterdir() if path.is_file()}


async def move(
    node: Node, query: dict[str, object], destination: str, *, model: str = "study"
) -> RetrieveResult:
    async with dicomwire.connect(
        LOCALHOST, node.port, called_ae=NODE_AE, services=["move", model_uid(model)]
    ) as client:
        return await client.move(query, destination, model=model)


def model_uid(model: str) -> str:
    from dicomwire.services.qr.models import QUERY_MODELS

    return QUERY_MODELS[(model, "move")]


class RecordingDestination:
    """A dicomwire node as C-MOVE destination: records each C-STORE-RQ; ``hold`` blocks them."""

    def __init__(self, ae_title: str = "RECORDER") -> None:
        self.ae_title = ae_title
        self.requests: list[tuple[str, str | None, int | None]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.arrived = asyncio.Event()
        #: A-ABORT the association on the first C-STORE-RQ (once).
        self.abort_first = False

    async def _store(self, request: Request) -> int:
        primitive: Any = request.primitive
        if self.abort_first:
            self.abort_first = False
            self.aborted = primitive.affected_sop_instance_uid
            request.session.abort()
            return 0
        self.requests.append(
            (
                primitive.affected_sop_instance_uid,
                primitive.move_originator_ae_title,
                primitive.move_originator_message_id,
            )
        )
        self.arrived.set()
        await self.hold.wait()
        return 0

    @contextlib.asynccontextmanager
    async def running(self, root: Path) -> AsyncIterator[RemoteAE]:
        config = node_config(root)
        config.ae_titles = [self.ae_title]
        service = CustomService({CT_IMAGE: {CommandField.C_STORE_RQ: self._store}})
        async with Node(config, [service]) as node:
            yield RemoteAE(self.ae_title, LOCALHOST, node.port)


@pytest.fixture
def study(tmp_path: Path) -> tuple[str, list[Path]]:
    return make_study(tmp_path / "archive", 6)


# --------------------------------------------------------------------------- C-MOVE


def move_study_to_storescp(tmp_path: Path, index: SQLiteIndex, study_uid: str) -> RetrieveResult:
    """C-MOVE the study from a node over ``index`` to DCMTK storescp (into tmp_path/dest)."""
    with storescp(tmp_path / "dest") as port:

        async def run() -> RetrieveResult:
            nodes = [RemoteAE("STORESCP", LOCALHOST, port)]
            async with retrieve_node(tmp_path / "store", index, nodes) as node:
                return await move(
                    node, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid}, "STORESCP"
                )

        return run_bounded(run(), 60)


def test_move_to_storescp_sends_every_instance(
    tmp_path: Path, study: tuple[str, list[Path]]
) -> None:
    study_uid, paths = study
    index = build_index(paths)
    result = move_study_to_storescp(tmp_path, index, study_uid)
    assert int(result.status) == 0x0000
    assert (result.completed, result.failed, result.warning) == (len(paths), 0, 0)
    assert received_uids(tmp_path / "dest") == {sop_uid(p) for p in paths}


def test_move_suboperations_carry_the_move_originator(
    tmp_path: Path, study: tuple[str, list[Path]]
) -> None:
    study_uid, paths = study
    destination = RecordingDestination()

    async def run() -> tuple[RetrieveResult, int]:
        async with (
            destination.running(tmp_path / "unused") as entry,
            retrieve_node(tmp_path / "store", build_index(paths), [entry]) as node,
            dicomwire.connect(
                LOCALHOST, node.port, called_ae=NODE_AE, calling_ae="ORIGIN", services=["move"]
            ) as client,
        ):
            request = CMoveRQ(
                model_uid("study"),
                destination.ae_title,
                dataset=_identifier(
                    client, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid}
                ),
            )
            operation = await client.session.send(request)
            final = await operation.wait()
            return RetrieveResult(final.status), operation.message_id

    result, message_id = run_bounded(run(), 60)
    assert int(result.status) == 0
    assert len(destination.requests) == len(paths)
    assert {(originator, mid) for _, originator, mid in destination.requests} == {
        ("ORIGIN", message_id)
    }


def _identifier(client: Any, query: dict[str, object]) -> bytes:
    """The identifier encoded for the context the node accepted for Study Root C-MOVE."""
    from dicomwire.dimse.datasets import encode_identifier

    syntax = client.session.find_context(model_uid("study")).transfer_syntax
    return encode_identifier(query, syntax)


def test_unknown_destination_is_a801(tmp_path: Path, study: tuple[str, list[Path]]) -> None:
    study_uid, paths = study

    async def run() -> None:
        async with retrieve_node(tmp_path / "store", build_index(paths)) as node:
            await move(
                node, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid}, "NOWHERE"
            )

    with pytest.raises(DimseStatusError) as raised:
        run_bounded(run(), 30)
    assert int(raised.value.status) == 0xA801
    assert "NOWHERE" in str(raised.value)


def test_destination_down_fails_every_suboperation(
    tmp_path: Path, study: tuple[str, list[Path]]
) -> None:
    study_uid, paths = study
    nowhere = RemoteAE("DOWN", LOCALHOST, get_free_tcp_port())  # nothing listens there

    async def run() -> RetrieveResult:
        async with retrieve_node(tmp_path / "store", build_index(paths), [nowhere]) as node:
            return await move(
                node, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid}, "DOWN"
            )

    result = run_bounded(run(), 60)
    assert int(result.status) == 0xA702
    assert (result.completed, result.failed) == (0, len(paths))
    assert sorted(result.failed_instances) == sorted(sop_uid(p) for p in paths)


def test_missing_file_is_a_failed_suboperation(
    tmp_path: Path, study: tuple[str, list[Path]]
) -> None:
    study_uid, paths = study
    index = build_index(paths)
    gone = sop_uid(paths[2])
    paths[2].unlink()
    result = move_study_to_storescp(tmp_path, index, study_uid)
    assert int(result.status) == 0xB000
    assert (result.completed, result.failed) == (len(paths) - 1, 1)
    assert result.failed_instances == [gone]
    assert gone not in received_uids(tmp_path / "dest")


def _count_pendings(
    tmp_path: Path, paths: list[Path], study_uid: str, interval: float
) -> tuple[int, int]:
    destination = RecordingDestination()

    async def run() -> tuple[int, int]:
        async with destination.running(tmp_path / "unused") as entry:
            index = build_index(paths)
            async with (
                retrieve_node(
                    tmp_path / "store", index, [entry], pending_interval=interval
                ) as node,
                dicomwire.connect(
                    LOCALHOST, node.port, called_ae=NODE_AE, services=["move"]
                ) as client,
            ):
                query = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid}
                request = CMoveRQ(
                    model_uid("study"), destination.ae_title, dataset=_identifier(client, query)
                )
                operation = await client.session.send(request)
                pendings = 0
                async for response in operation:
                    if response.status.is_pending:
                        pendings += 1
                assert operation.final is not None
                return pendings, int(operation.final.status)

    return run_bounded(run(), 60)


def test_pending_interval_zero_reports_every_suboperation(
    tmp_path: Path, study: tuple[str, list[Path]]
) -> None:
    study_uid, paths = study
    pendings, status = _count_pendings(tmp_path, paths, study_uid, 0)
    assert status == 0
    assert pendings == len(paths) - 1  # after each but the last: the final response follows


def test_pending_interval_long_sends_no_pending(
    tmp_path: Path, study: tuple[str, list[Path]]
) -> None:
    study_uid, paths = study
    pendings, status = _count_pendings(tmp_path, paths, study_uid, 3600)
    assert (pendings, status) == (0, 0)


def test_cancel_mid_move_answers_fe00_with_the_rest_failed(tmp_path: Path) -> None:
    # More instances than the asynchronous window (MOVE_WINDOW): some are never started.
    count = MOVE_WINDOW + 8
    study_uid, paths = make_study(tmp_path / "archive", count)
    destination = RecordingDestination()
    destination.hold.clear()  # the first C-STORE waits until the cancel is in

    async def run() -> Any:
        async with (
            destination.running(tmp_path / "unused") as entry,
            retrieve_node(tmp_path / "store", build_index(paths), [entry]) as node,
            dicomwire.connect(LOCALHOST, node.port, called_ae=NODE_AE, services=["move"]) as client,
        ):
            query = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid}
            request = CMoveRQ(
                model_uid("study"), destination.ae_title, dataset=_identifier(client, query)
            )
            operation = await client.session.send(request)
            await asyncio.wait_for(destination.arrived.wait(), 10)
            await operation.cancel()
            await asyncio.sleep(0.2)  # the C-CANCEL is read before the stores end
            destination.hold.set()
            final = await operation.wait()
            return final.status, final.primitive, final.decode()

    status, primitive, identifier = run_bounded(run(), 60)
    assert int(status) == 0xFE00
    stored = {uid for uid, _, _ in destination.requests}
    assert primitive.failed == 0
    assert primitive.completed == len(stored) < count
    assert primitive.remaining == count - len(stored)
    assert set(identifier.FailedSOPInstanceUIDList) == {sop_uid(p) for p in paths} - stored


def test_queued_moves_beyond_the_limit_all_complete(tmp_path: Path) -> None:
    study_a, paths_a = make_study(tmp_path / "a", 3, patient_id="A")
    study_b, paths_b = make_study(tmp_path / "b", 3, patient_id="B")
    destination = RecordingDestination()

    async def run() -> list[RetrieveResult]:
        async with destination.running(tmp_path / "unused") as entry:
            index = build_index(paths_a + paths_b)
            async with retrieve_node(
                tmp_path / "store", index, [entry], max_concurrent_moves=1
            ) as node:
                return await asyncio.gather(
                    *(
                        move(
                            node,
                            {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": uid},
                            "RECORDER",
                        )
                        for uid in (study_a, study_b)
                    )
                )

    results = run_bounded(run(), 60)
    assert [(int(r.status), r.completed) for r in results] == [(0, 3), (0, 3)]
    assert len(destination.requests) == 6


def test_queued_move_gets_pendings_and_can_be_cancelled(tmp_path: Path) -> None:
    study_a, paths_a = make_study(tmp_path / "a", 2, patient_id="A")
    study_b, paths_b = make_study(tmp_path / "b", 3, patient_id="B")
    destination = RecordingDestination()
    destination.hold.clear()  # the first C-MOVE holds the only slot

    async def run() -> tuple[RetrieveResult, int, Any, Any]:
        async with (
            destination.running(tmp_path / "unused") as entry,
            retrieve_node(
                tmp_path / "store",
                build_index(paths_a + paths_b),
                [entry],
                max_concurrent_moves=1,
                pending_interval=0.1,
            ) as node,
        ):
            first = asyncio.ensure_future(
                move(node, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_a}, "RECORDER")
            )
            await asyncio.wait_for(destination.arrived.wait(), 10)
            async with dicomwire.connect(
                LOCALHOST, node.port, called_ae=NODE_AE, services=["move"]
            ) as client:
                query = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_b}
                request = CMoveRQ(
                    model_uid("study"), destination.ae_title, dataset=_identifier(client, query)
                )
                operation = await client.session.send(request)
                pendings = 0
                async for response in operation:
                    if response.status.is_pending:
                        pendings += 1
                        assert response.primitive.remaining == 3
                        if pendings == 2:
                            await operation.cancel()
                final = operation.final
                assert final is not None
            destination.hold.set()
            return await first, pendings, final.primitive, final.decode()

    first, pendings, primitive, identifier = run_bounded(run(), 60)
    assert (int(first.status), first.completed) == (0, 2)  # the first one was not disturbed
    assert pendings >= 2
    assert int(primitive.status) == 0xFE00
    assert (primitive.completed, primitive.failed, primitive.remaining) == (0, 0, 3)
    assert sorted(identifier.FailedSOPInstanceUIDList) == sorted(sop_uid(p) for p in paths_b)
    assert len(destination.requests) == 2


def test_destination_refusing_the_association_fails_every_suboperation(
    tmp_path: Path, study: tuple[str, list[Path]]
) -> None:
    study_uid, paths = study
    destination = RecordingDestination()

    async def run() -> RetrieveResult:
        async with destination.running(tmp_path / "unused") as entry:
            # Listed under another AE title: the destination rejects the called AE title.
            wrong = RemoteAE("NOTRECORDER", entry.host, entry.port)
            async with retrieve_node(tmp_path / "store", build_index(paths), [wrong]) as node:
                return await move(
                    node,
                    {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid},
                    "NOTRECORDER",
                )

    result = run_bounded(run(), 60)
    assert (int(result.status), result.completed, result.failed) == (0xA702, 0, len(paths))
    assert sorted(result.failed_instances) == sorted(sop_uid(p) for p in paths)
    assert destination.requests == []


def test_destination_aborting_gets_the_rest_on_a_new_association(tmp_path: Path) -> None:
    count = MOVE_WINDOW + 6  # more than can be in flight when the abort comes
    study_uid, paths = make_study(tmp_path / "archive", count)
    destination = RecordingDestination()
    destination.abort_first = True

    async def run() -> RetrieveResult:
        async with (
            destination.running(tmp_path / "unused") as entry,
            retrieve_node(tmp_path / "store", build_index(paths), [entry]) as node,
        ):
            return await move(
                node, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid}, "RECORDER"
            )

    result = run_bounded(run(), 60)
    stored = {uid for uid, _, _ in destination.requests}
    # The one the destination aborted on fails; those in flight behind it go again.
    assert int(result.status) == 0xB000
    assert (result.completed, result.failed) == (count - 1, 1)
    assert result.failed_instances == [destination.aborted]
    assert stored == {sop_uid(p) for p in paths} - {destination.aborted}


def test_composite_instance_root_moves_by_sop_instance_uid(
    tmp_path: Path, study: tuple[str, list[Path]]
) -> None:
    _, paths = study
    wanted = [sop_uid(paths[1]), sop_uid(paths[4])]
    destination = RecordingDestination()

    async def run() -> RetrieveResult:
        async with (
            destination.running(tmp_path / "unused") as entry,
            retrieve_node(tmp_path / "store", build_index(paths), [entry]) as node,
        ):
            query = {"QueryRetrieveLevel": "IMAGE", "SOPInstanceUID": wanted}
            return await move(node, query, "RECORDER", model="composite-instance")

    result = run_bounded(run(), 60)
    assert (int(result.status), result.completed) == (0, 2)
    assert sorted(uid for uid, _, _ in destination.requests) == sorted(wanted)


def test_invalid_identifier_is_a900(tmp_path: Path, study: tuple[str, list[Path]]) -> None:
    _, paths = study
    destination = RecordingDestination()

    async def run() -> None:
        async with (
            destination.running(tmp_path / "unused") as entry,
            retrieve_node(tmp_path / "store", build_index(paths), [entry]) as node,
        ):
            await move(node, {"QueryRetrieveLevel": "STUDY"}, "RECORDER")

    with pytest.raises(DimseStatusError) as raised:
        run_bounded(run(), 30)
    assert int(raised.value.status) == 0xA900


def test_undecodable_identifier_is_c000(tmp_path: Path, study: tuple[str, list[Path]]) -> None:
    _, paths = study
    destination = RecordingDestination()

    async def run() -> Any:
        async with (
            destination.running(tmp_path / "unused") as entry,
            retrieve_node(tmp_path / "store", build_index(paths), [entry]) as node,
            dicomwire.connect(LOCALHOST, node.port, called_ae=NODE_AE, services=["move"]) as client,
        ):
            # A sequence of undefined length whose item header is cut short.
            garbage = b"\x08\x00\x52\x00SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\x10\x00"
            request = CMoveRQ(model_uid("study"), destination.ae_title, dataset=garbage)
            operation = await client.session.send(request)
            return (await operation.wait()).primitive

    primitive = run_bounded(run(), 30)
    assert int(primitive.status) == 0xC000
    assert primitive.error_comment
    assert destination.requests == []


class BrokenIndex(SQLiteIndex):
    """An index whose storage fails when read (as a lost database file would)."""

    def instances(self, level: str, identifier: Any) -> Iterator[Any]:
        raise RuntimeError("database disk image is malformed")


def test_index_failure_is_c001(tmp_path: Path) -> None:
    destination = RecordingDestination()

    async def run() -> None:
        async with (
            destination.running(tmp_path / "unused") as entry,
            retrieve_node(tmp_path / "store", BrokenIndex(":memory:"), [entry]) as node,
        ):
            await move(
                node, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.3"}, "RECORDER"
            )

    with pytest.raises(DimseStatusError) as raised:
        run_bounded(run(), 30)
    assert int(raised.value.status) == 0xC001
    assert "index failure" in str(raised.value)


def test_no_match_is_success_with_no_suboperations(
    tmp_path: Path, study: tuple[str, list[Path]]
) -> None:
    _, paths = study
    destination = RecordingDestination()

    async def run() -> RetrieveResult:
        async with (
            destination.running(tmp_path / "unused") as entry,
            retrieve_node(tmp_path / "store", build_index(paths), [entry]) as node,
        ):
            return await move(
                node, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.3.4"}, "RECORDER"
            )

    result = run_bounded(run(), 30)
    assert (int(result.status), result.completed, result.failed) == (0, 0, 0)
    assert destination.requests == []


# --------------------------------------------------------------------------- C-GET


def test_get_stores_back_on_the_same_association(
    tmp_path: Path, study: tuple[str, list[Path]]
) -> None:
    study_uid, paths = study

    async def run() -> RetrieveResult:
        async with (
            retrieve_node(tmp_path / "store", build_index(paths)) as node,
            dicomwire.connect(LOCALHOST, node.port, called_ae=NODE_AE, services=["get"]) as client,
        ):
            query = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid}
            return await client.get(query, tmp_path / "got")

    result = run_bounded(run(), 60)
    assert (int(result.status), result.completed, result.failed) == (0, len(paths), 0)
    got = {sop_uid(p) for p in (tmp_path / "got").rglob("*.dcm")}
    assert got == {sop_uid(p) for p in paths}


def test_get_cancel_answers_fe00(tmp_path: Path, study: tuple[str, list[Path]]) -> None:
    study_uid, paths = study
    received: list[str] = []
    arrived, hold = asyncio.Event(), asyncio.Event()

    async def held_store(request: Request) -> int:  # our side of the C-GET's C-STOREs
        received.append(request.primitive.affected_sop_instance_uid)  # type: ignore[attr-defined]
        arrived.set()
        await hold.wait()
        return 0

    async def run() -> Any:
        async with (
            retrieve_node(tmp_path / "store", build_index(paths)) as node,
            dicomwire.connect(
                LOCALHOST,
                node.port,
                called_ae=NODE_AE,
                services=["get"],
                handlers={CommandField.C_STORE_RQ: held_store},
            ) as client,
        ):
            query = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid}
            syntax = client.session.find_context(QUERY_MODELS[("study", "get")]).transfer_syntax
            request = CGetRQ(
                QUERY_MODELS[("study", "get")], dataset=encode_identifier(query, syntax)
            )
            operation = await client.session.send(request)
            await asyncio.wait_for(arrived.wait(), 10)
            await operation.cancel()
            await asyncio.sleep(0.2)
            hold.set()
            final = await operation.wait()
            return final.primitive, final.decode()

    primitive, identifier = run_bounded(run(), 60)
    assert int(primitive.status) == 0xFE00
    # One C-STORE at a time on this association (no window): the first was in flight.
    assert (primitive.completed, primitive.failed, primitive.remaining) == (1, 0, len(paths) - 1)
    assert received == [received[0]]
    assert set(identifier.FailedSOPInstanceUIDList) == {sop_uid(p) for p in paths} - {received[0]}


@pytest.mark.parametrize("storage_context", [False, True], ids=["no-context", "scu-role-only"])
def test_get_without_scp_role_contexts_fails_every_suboperation(
    tmp_path: Path, study: tuple[str, list[Path]], storage_context: bool
) -> None:
    study_uid, paths = study
    # CT Image Storage proposed without role selection: the requestor stays SCU only.
    services = ["get", CT_IMAGE] if storage_context else ["get"]

    async def run() -> RetrieveResult:
        async with (
            retrieve_node(tmp_path / "store", build_index(paths)) as node,
            dicomwire.connect(
                LOCALHOST, node.port, called_ae=NODE_AE, services=services, receive=[]
            ) as client,
        ):
            query = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid}
            return await client.get(query, tmp_path / "got")

    result = run_bounded(run(), 60)
    assert (int(result.status), result.completed, result.failed) == (0xA702, 0, len(paths))
    assert sorted(result.failed_instances) == sorted(sop_uid(p) for p in paths)


def test_get_without_bulk_data_leaves_out_the_pixel_data(
    tmp_path: Path, study: tuple[str, list[Path]]
) -> None:
    _, paths = study
    wanted = sop_uid(paths[0])

    async def run() -> RetrieveResult:
        async with (
            retrieve_node(tmp_path / "store", build_index(paths)) as node,
            dicomwire.connect(
                LOCALHOST,
                node.port,
                called_ae=NODE_AE,
                services=["1.2.840.10008.5.1.4.1.2.5.3"],
                receive=[CT_IMAGE],
            ) as client,
        ):
            query = {"QueryRetrieveLevel": "IMAGE", "SOPInstanceUID": wanted}
            return await client.get(query, tmp_path / "got", model="without-bulk-data")

    result = run_bounded(run(), 60)
    assert (int(result.status), result.completed) == (0, 1)
    (received,) = list((tmp_path / "got").rglob("*.dcm"))
    dataset = dcmread(received)
    original = dcmread(paths[0])
    assert "PixelData" not in dataset
    assert dataset.SOPInstanceUID == wanted
    assert dataset.Rows == original.Rows and dataset.PatientID == original.PatientID


def test_without_bulk_data_strips_table_z1_attributes() -> None:
    from pydicom import Dataset

    from dicomwire.services.qr.retrieve import without_bulk_data

    dataset = Dataset()
    dataset.PatientID = "X"
    dataset.PixelData = b"\0\0"
    dataset.add_new(0x60003000, "OW", b"\0\0")  # Overlay Data, group 6000
    dataset.add_new(0x60023000, "OW", b"\0\0")  # and 6002
    dataset.EncapsulatedDocument = b"%PDF"
    icon = Dataset()
    icon.PixelData = b"\1\1"
    dataset.IconImageSequence = [icon]
    wave = Dataset()
    wave.WaveformData = b"\0\0"
    wave.NumberOfWaveformChannels = 1
    dataset.WaveformSequence = [wave]
    without_bulk_data(dataset)
    assert sorted(e.keyword for e in dataset) == [
        "IconImageSequence",
        "PatientID",
        "WaveformSequence",
    ]
    assert "PixelData" in dataset.IconImageSequence[0]  # Z.1.3 note: icons kept
    assert list(dataset.WaveformSequence[0].keys()) == [0x003A0005]
