"""The public SCU API (issue 12, item 6): ``dicomwire.connect`` and every DIMSE service.

Each service is exercised against a node built from services (a user's handlers where no
service class exists yet) and, where a packaged peer speaks it, against DCMTK.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import dicomwire
from dicomwire.dimse.commands import CommandField
from dicomwire.dimse.datasets import encode_dataset
from dicomwire.dimse.primitives import CStoreRQ, NEventReportRQ
from dicomwire.dimse.session import Request, Response
from dicomwire.errors import (
    AssociationRejected,
    DimseStatusError,
    LocalProtocolError,
    NoAcceptedContextError,
)
from dicomwire.services.client import COMMON_STORAGE_SOP_CLASSES, Client, propose_contexts
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.service import CustomService, Service
from dicomwire.services.storage import Storage, StorageConfig
from dicomwire.services.verification import Verification

from ..conftest import LOCALHOST, find_dcmtk_tool, get_free_tcp_port, run_bounded, wait_for_port

STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
MPPS = "1.2.840.10008.3.1.2.3.3"
COMMITMENT = "1.2.840.10008.1.20.1"
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


def node_config(tmp_path: Path, **kwargs: Any) -> NodeConfig:
    config = NodeConfig(host=LOCALHOST, port=0, **kwargs)
    config.storage = StorageConfig(root=tmp_path / "node")
    config.shutdown_grace = 1.0
    return config


def serve(tmp_path: Path, *extra: Service) -> Node:
    config = node_config(tmp_path)
    return Node(config, services=[Verification(), Storage(config.storage), *extra])


@contextlib.asynccontextmanager
async def client_of(tmp_path: Path, *extra: Service, **connect: Any) -> AsyncIterator[Client]:
    """A node with ``extra`` services and a client associated with it."""
    async with (
        serve(tmp_path, *extra) as node,
        dicomwire.connect(LOCALHOST, node.port, called_ae="DICOMWIRE", **connect) as assoc,
    ):
        yield assoc


# --------------------------------------------------------------------------- connect


def test_connect_is_awaitable_and_an_async_context_manager(tmp_path: Path) -> None:
    async def main() -> tuple[int, int, bool]:
        async with serve(tmp_path) as node:
            async with dicomwire.connect(LOCALHOST, node.port, called_ae="DICOMWIRE") as assoc:
                first = await assoc.echo()
            second_assoc = await dicomwire.connect(LOCALHOST, node.port, called_ae="DICOMWIRE")
            second = await second_assoc.echo()
            await second_assoc.release()
            return first, second, second_assoc.session.association.is_established

    first, second, established = run_bounded(main())
    assert (first, second) == (0, 0)
    assert not established


def test_a_rejection_is_raised_with_its_fields(tmp_path: Path) -> None:
    async def main() -> None:
        async with serve(tmp_path) as node:
            await dicomwire.connect(LOCALHOST, node.port, called_ae="SOMEONE-ELSE")

    with pytest.raises(AssociationRejected) as caught:
        run_bounded(main())
    assert (caught.value.result, caught.value.source, caught.value.reason) == (1, 1, 7)
    assert caught.value.permanent


def test_contexts_are_planned_from_what_is_sent() -> None:
    contexts, roles = propose_contexts(["verification"], [CT_SMALL])
    abstracts = [abstract for abstract, _ in contexts]
    ct = str(dcmread(CT_SMALL, stop_before_pixels=True).SOPClassUID)
    assert abstracts.count(ct) == 2  # its own transfer syntax, and uncompressed fallbacks
    assert roles == {}
    contexts, roles = propose_contexts(["get"], receive=COMMON_STORAGE_SOP_CLASSES)
    assert all(roles[uid] == (False, True) for uid in COMMON_STORAGE_SOP_CLASSES)
    with pytest.raises(LocalProtocolError, match="128"):
        propose_contexts([f"1.2.3.{n}" for n in range(129)])
    with pytest.raises(LocalProtocolError, match="unknown service"):
        propose_contexts(["telepathy"])


# --------------------------------------------------------------------------- storage


def test_store_a_path_a_dataset_and_raw_bytes(tmp_path: Path) -> None:
    dataset = dcmread(CT_SMALL)
    dataset.SOPInstanceUID = generate_uid()
    raw_uid = generate_uid()

    async def main() -> list[int]:
        async with (
            serve(tmp_path) as node,
            dicomwire.connect(
                LOCALHOST, node.port, called_ae="DICOMWIRE", sending=[CT_SMALL]
            ) as assoc,
        ):
            copy = dataset.copy()
            copy.SOPInstanceUID = raw_uid
            raw = encode_dataset(copy, ExplicitVRLittleEndian)
            return [
                await assoc.store(CT_SMALL),
                await assoc.store(dataset),
                await assoc.store(
                    raw,
                    sop_class_uid=str(dataset.SOPClassUID),
                    sop_instance_uid=raw_uid,
                    transfer_syntax=ExplicitVRLittleEndian,
                ),
            ]

    assert run_bounded(main()) == [0, 0, 0]
    stored = {dcmread(p).SOPInstanceUID for p in (tmp_path / "node").rglob("*.dcm")}
    original = dcmread(CT_SMALL).SOPInstanceUID
    assert stored == {original, dataset.SOPInstanceUID, raw_uid}


def test_a_sop_class_not_proposed_fails_before_the_wire(tmp_path: Path) -> None:
    async def main() -> None:
        node = serve(tmp_path)
        async with (
            node,
            dicomwire.connect(LOCALHOST, node.port, called_ae="DICOMWIRE") as assoc,
        ):
            await assoc.store(CT_SMALL)

    with pytest.raises(NoAcceptedContextError) as caught:
        run_bounded(main())
    assert caught.value.abstract_syntax == str(dcmread(CT_SMALL).SOPClassUID)


def test_store_to_dcmtk_storescp(tmp_path: Path) -> None:
    storescp = find_dcmtk_tool("storescp")
    port = get_free_tcp_port()
    out = tmp_path / "received"
    out.mkdir()
    process = subprocess.Popen(
        [storescp, "-aet", "STORESCP", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)

        async def main() -> tuple[int, int]:
            async with dicomwire.connect(
                LOCALHOST, port, called_ae="STORESCP", sending=[CT_SMALL]
            ) as assoc:
                return await assoc.echo(), await assoc.store(CT_SMALL)

        assert run_bounded(main()) == (0, 0)
    finally:
        process.terminate()
        process.wait(10)
    received = list(out.iterdir())
    assert len(received) == 1
    assert dcmread(received[0]).SOPInstanceUID == dcmread(CT_SMALL).SOPInstanceUID


# --------------------------------------------------------------------------- query


def study(number: int) -> Dataset:
    match = Dataset()
    match.QueryRetrieveLevel = "STUDY"
    match.PatientID = "123"
    match.StudyInstanceUID = f"1.2.3.{number}"
    return match


def test_find_yields_every_match_and_stops_at_the_final_response(tmp_path: Path) -> None:
    queries: list[Dataset] = []

    async def on_find(request: Request) -> int:
        query = request.decode()
        assert query is not None
        queries.append(query)
        for number in range(3):
            await request.send_pending(study(number))
        return 0

    async def main() -> list[str]:
        finder = CustomService({STUDY_FIND: {CommandField.C_FIND_RQ: on_find}})
        async with client_of(tmp_path, finder, services=["find"]) as assoc:
            query = {"QueryRetrieveLevel": "STUDY", "PatientID": "123", "StudyInstanceUID": ""}
            return [str(m.StudyInstanceUID) async for m in assoc.find(query)]

    assert run_bounded(main()) == ["1.2.3.0", "1.2.3.1", "1.2.3.2"]
    assert queries[0].PatientID == "123" and "StudyInstanceUID" in queries[0]


def test_leaving_a_find_early_sends_c_cancel(tmp_path: Path) -> None:
    cancelled: list[bool] = []

    async def on_find(request: Request) -> int:
        for number in range(1000):
            if request.cancelled.is_set():
                cancelled.append(True)
                return 0xFE00
            await request.send_pending(study(number))
            await asyncio.sleep(0.01)
        return 0

    async def main() -> str:
        finder = CustomService({STUDY_FIND: {CommandField.C_FIND_RQ: on_find}})
        async with client_of(tmp_path, finder, services=["find", "verification"]) as assoc:
            results = assoc.find({"QueryRetrieveLevel": "STUDY"})
            async for match in results:
                first = str(match.StudyInstanceUID)
                break
            await results.aclose()
            assert await assoc.echo() == 0  # the association is still usable
            return first

    assert run_bounded(main()) == "1.2.3.0"
    assert cancelled == [True]


def test_a_failed_find_raises_with_the_error_comment(tmp_path: Path) -> None:
    async def on_find(request: Request) -> Response:
        return request.primitive.response(0xA900, error_comment="level missing")

    async def main() -> None:
        finder = CustomService({STUDY_FIND: {CommandField.C_FIND_RQ: on_find}})
        async with client_of(tmp_path, finder, services=["find"]) as assoc:
            async for _ in assoc.find({"PatientID": "1"}):
                pass

    with pytest.raises(DimseStatusError) as caught:
        run_bounded(main())
    assert caught.value.status == 0xA900
    assert caught.value.comment == "level missing"


#: A worklist entry with every attribute wlmscpfs requires (it ignores incomplete files),
#: written as a dump2dcm text dump (DCMTK's own example format).
WORKLIST_DUMP = """
(0008,0050) SH  ACC1
(0008,0005) CS  [ISO_IR 100]
(0010,0010) PN  DOE^JANE
(0010,0020) LO  W-1
(0010,0030) DA  19700101
(0010,0040) CS  F
(0020,000d) UI  1.2.826.0.1.3680043.10.7
(0032,1032) PN  SMITH
(0032,1060) LO  CT HEAD
(0040,0100) SQ
(fffe,e000) -
(0008,0060) CS  CT
(0032,1070) LO  NONE
(0040,0001) AE  CT1
(0040,0002) DA  20261129
(0040,0003) TM  083000
(0040,0006) PN  JOHNSON
(0040,0007) LO  HEAD
(0040,0009) SH  SPS1
(0040,0010) SH  STATION1
(0040,0011) SH  ROOM1
(0040,0012) LO
(0040,0400) LT
(fffe,e00d) -
(fffe,e0dd) -
(0040,1001) SH  RP1
(0040,1003) SH  LOW
"""


def test_worklist_find_against_dcmtk_wlmscpfs(tmp_path: Path) -> None:
    wlmscpfs = find_dcmtk_tool("wlmscpfs")
    dump2dcm = find_dcmtk_tool("dump2dcm")
    folder = tmp_path / "worklists" / "WLMSCP"
    folder.mkdir(parents=True)
    (folder / "lockfile").touch()
    (tmp_path / "one.dump").write_text(WORKLIST_DUMP)
    subprocess.run(
        [dump2dcm, str(tmp_path / "one.dump"), str(folder / "one.wl")], check=True, timeout=30
    )
    port = get_free_tcp_port()
    process = subprocess.Popen(
        [wlmscpfs, "-dfp", str(tmp_path / "worklists"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)

        async def main() -> list[Dataset]:
            async with dicomwire.connect(
                LOCALHOST, port, called_ae="WLMSCP", services=["worklist"]
            ) as assoc:
                query = {
                    "PatientName": "",
                    "PatientID": "",
                    "AccessionNumber": "",
                    "ScheduledProcedureStepSequence": [
                        {"Modality": "CT", "ScheduledStationAETitle": ""}
                    ],
                }
                return [match async for match in assoc.find(query, model="worklist")]

        matches = run_bounded(main())
    finally:
        process.terminate()
        process.wait(10)
    assert [(str(m.PatientID), str(m.AccessionNumber)) for m in matches] == [("W-1", "ACC1")]
    assert matches[0].ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "CT1"


# --------------------------------------------------------------------------- retrieve


def test_move_returns_the_sub_operation_counts(tmp_path: Path) -> None:
    destinations: list[str] = []

    async def on_move(request: Request) -> Response:
        destinations.append(request.primitive.move_destination)
        await request.send_pending(remaining=1, completed=1, failed=0, warning=0)
        failed = Dataset()
        failed.FailedSOPInstanceUIDList = ["1.2.3.9"]
        return request.primitive.response(
            0xB000, failed, remaining=0, completed=1, failed=1, warning=0
        )

    async def main() -> dicomwire.RetrieveResult:
        mover = CustomService({STUDY_MOVE: {CommandField.C_MOVE_RQ: on_move}})
        async with client_of(tmp_path, mover, services=["move"]) as assoc:
            return await assoc.move({"StudyInstanceUID": "1.2.3"}, "ARCHIVE")

    result = run_bounded(main())
    assert destinations == ["ARCHIVE"]
    assert (result.status, result.completed, result.failed, result.remaining) == (
        0xB000,
        1,
        1,
        0,
    )
    assert result.failed_instances == ["1.2.3.9"]


def test_a_refused_move_raises(tmp_path: Path) -> None:
    async def on_move(request: Request) -> Response:
        return request.primitive.response(0xA801, error_comment="who is NOWHERE?")

    async def main() -> None:
        mover = CustomService({STUDY_MOVE: {CommandField.C_MOVE_RQ: on_move}})
        async with client_of(tmp_path, mover, services=["move"]) as assoc:
            await assoc.move({"StudyInstanceUID": "1"}, "NOWHERE")

    with pytest.raises(DimseStatusError) as caught:
        run_bounded(main())
    assert caught.value.status == 0xA801 and "NOWHERE" in caught.value.comment


def test_get_stores_the_instances_sent_back_on_the_association(tmp_path: Path) -> None:
    source = dcmread(CT_SMALL)
    ct_class = str(source.SOPClassUID)

    async def on_get(request: Request) -> Response:
        session = request.session
        context = session.find_context(ct_class)
        uid = str(source.SOPInstanceUID)
        sub = await session.send(CStoreRQ(ct_class, uid, dataset=source), context.context_id)
        status = (await sub.wait()).status
        done = int(status == 0)
        return request.primitive.response(0, remaining=0, completed=done, failed=1 - done)

    async def main() -> dicomwire.RetrieveResult:
        getter = CustomService(
            {STUDY_GET: {CommandField.C_GET_RQ: on_get}, ct_class: {}},
            requestor_may_be_scp=[ct_class],  # its C-STOREs come back to the requestor
        )
        async with client_of(tmp_path, getter, services=["get"]) as assoc:
            assert assoc.negotiated.find_context(ct_class).scp_role
            return await assoc.get({"StudyInstanceUID": "1"}, tmp_path / "got")

    result = run_bounded(main())
    assert (result.status, result.completed, result.failed) == (0, 1, 0)
    files = list((tmp_path / "got").rglob("*.dcm"))
    assert [dcmread(f).SOPInstanceUID for f in files] == [source.SOPInstanceUID]


# --------------------------------------------------------------------------- DIMSE-N


class StepStore(Service):
    """A tiny N-service SCP: instances created, set, read, acted on, deleted."""

    name = "steps"

    def __init__(self) -> None:
        self.instances: dict[str, Dataset] = {}
        self.actions: list[int] = []

    def bindings(self) -> Sequence[dicomwire.Binding]:
        return [
            dicomwire.Binding(
                MPPS,
                handlers={
                    CommandField.N_CREATE_RQ: self.create,
                    CommandField.N_SET_RQ: self.set,
                    CommandField.N_GET_RQ: self.get,
                    CommandField.N_ACTION_RQ: self.act,
                    CommandField.N_DELETE_RQ: self.delete,
                },
            )
        ]

    async def create(self, request: Request) -> Response:
        primitive = request.primitive
        uid = primitive.affected_sop_instance_uid or "1.2.826.0.1.3680043.10.1"
        dataset = request.decode()
        assert dataset is not None
        self.instances[uid] = dataset
        return primitive.response(0, dataset, affected_sop_instance_uid=uid)

    async def set(self, request: Request) -> Response:
        primitive = request.primitive
        target = self.instances.get(primitive.requested_sop_instance_uid)
        if target is None:
            return primitive.response(0x0112)
        changes = request.decode()
        assert changes is not None
        target.update(changes)
        return primitive.response(0)

    async def get(self, request: Request) -> Response:
        primitive = request.primitive
        return primitive.response(0, self.instances[primitive.requested_sop_instance_uid])

    async def act(self, request: Request) -> Response:
        self.actions.append(request.primitive.action_type_id)
        return request.primitive.response(0)

    async def delete(self, request: Request) -> Response:
        del self.instances[request.primitive.requested_sop_instance_uid]
        return request.primitive.response(0)


def test_every_n_service_round_trips(tmp_path: Path) -> None:
    steps = StepStore()

    async def main() -> list[Any]:
        async with client_of(tmp_path, steps, services=["mpps"]) as assoc:
            created = await assoc.n_create(MPPS, {"PerformedProcedureStepStatus": "IN PROGRESS"})
            uid = created.affected_sop_instance_uid
            assert uid is not None
            updated = await assoc.n_set(MPPS, uid, {"PerformedProcedureStepStatus": "COMPLETED"})
            read = await assoc.n_get(MPPS, uid)
            acted = await assoc.n_action(MPPS, uid, 7)
            missing = await assoc.n_set(MPPS, "9.9", {"PatientID": "x"})
            deleted = await assoc.n_delete(MPPS, uid)
            assert read.dataset is not None
            return [
                created.status,
                updated.status,
                read.dataset.PerformedProcedureStepStatus,
                acted.status,
                missing.status,
                deleted.status,
            ]

    assert run_bounded(main()) == [0, 0, "COMPLETED", 0, 0x0112, 0]
    assert steps.actions == [7] and steps.instances == {}


def test_an_event_report_from_the_scp_reaches_the_scu_handler(tmp_path: Path) -> None:
    """Storage commitment on one association: N-ACTION, then N-EVENT-REPORT back."""
    reports: list[tuple[int, str]] = []

    async def on_action(request: Request) -> Response:
        primitive = request.primitive
        context = request.session.find_context(COMMITMENT)
        report = NEventReportRQ(
            COMMITMENT, primitive.requested_sop_instance_uid, 1, dataset=request.message.dataset
        )
        answer = primitive.response(0)
        asyncio.get_running_loop().create_task(_send_later(request, report, context.context_id))
        return answer

    async def on_report(request: Request) -> int:
        dataset = request.decode()
        assert dataset is not None
        reports.append((request.primitive.event_type_id, str(dataset.TransactionUID)))
        return 0

    async def main() -> None:
        commitment = CustomService({COMMITMENT: {CommandField.N_ACTION_RQ: on_action}})
        async with (
            serve(tmp_path, commitment) as node,
            dicomwire.connect(
                LOCALHOST,
                node.port,
                called_ae="DICOMWIRE",
                services=["storage-commitment"],
                handlers={CommandField.N_EVENT_REPORT_RQ: on_report},
            ) as assoc,
        ):
            result = await assoc.n_action(
                COMMITMENT, "1.2.840.10008.1.20.1.1", 1, {"TransactionUID": "1.2.3.4"}
            )
            assert result.status == 0
            for _ in range(200):
                if reports:
                    break
                await asyncio.sleep(0.01)

    run_bounded(main())
    assert reports == [(1, "1.2.3.4")]


async def _send_later(request: Request, report: Any, context_id: int) -> None:
    await asyncio.sleep(0.05)  # after the N-ACTION-RSP
    operation = await request.session.send(report, context_id)
    await operation.wait()
