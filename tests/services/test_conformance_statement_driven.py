"""The statement's rejection, abort and status tables, walked against a running node.

The rows of :data:`~dicomwire.services.conformance.REJECTIONS`,
:data:`~dicomwire.services.conformance.ABORTS` and the statuses services declare that the
tests below drive (the node on 127.0.0.1 answers them to a raw peer or a client) are
listed in ``DRIVEN_*``; test_conformance_statement.py proves every row, driven or not, is
a constant the handler's code uses, and that the driven ones are declared rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import struct
import subprocess
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

import dicomwire
from dicomwire.dimse.datasets import encode_dataset
from dicomwire.dimse.primitives import CFindRQ
from dicomwire.errors import DimseStatusError
from dicomwire.services.conformance import ABORTS, REJECTIONS
from dicomwire.services.directory import RemoteAE
from dicomwire.services.index import SQLiteIndex
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.qr import QueryRetrieve, QueryRetrieveConfig
from dicomwire.services.storage import StorageConfig
from dicomwire.services.verification import Verification
from dicomwire.testing.rawpeer import (
    IMPLICIT_VR_LE,
    SECONDARY_CAPTURE,
    VERIFICATION,
    RawPeer,
    c_store_rq,
    new_uid,
    small_dataset,
)
from dicomwire.ul.association import Timeouts
from dicomwire.ul.negotiation import KnownNode, RequestorConfig, build_request
from dicomwire.ul.pdu import (
    AAssociateAC,
    AAssociateRJ,
    ApplicationContextItem,
)
from tests.conftest import find_dcmtk_tool
from tests.interop._mpps_peer import completed, new_step
from tests.services._support import node_config, running_node

LOCALHOST = "127.0.0.1"
NODE_AE = "DICOMWIRE"
T = TypeVar("T")

STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
MPPS = "1.2.840.10008.3.1.2.3.3"
COMMITMENT = "1.2.840.10008.1.20.1"
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

#: (result, source, reason) of each A-ASSOCIATE-RJ the tests below drive.
DRIVEN_REJECTIONS = {(1, 1, 1), (1, 1, 2), (1, 1, 3), (1, 1, 7), (1, 2, 1), (1, 2, 2), (2, 3, 2)}
#: (source, reason) of each A-ABORT the tests below drive.
DRIVEN_ABORTS = {(0, 0), (2, 1), (2, 2), (2, 6)}
#: (service, command, status) driven below.
DRIVEN_STATUSES = {
    ("verification", "C-ECHO", 0x0000),
    ("storage", "C-STORE", 0x0000),
    ("storage", "C-STORE", 0xA900),
    ("storage", "C-STORE", 0x0122),
    ("storage", "C-STORE", 0x0111),
    ("storage", "C-STORE", 0xC000),
    ("query-retrieve", "C-FIND", 0xFF00),
    ("query-retrieve", "C-FIND", 0x0000),
    ("query-retrieve", "C-FIND", 0xA900),
    ("query-retrieve", "C-MOVE", 0xA801),
    ("query-retrieve", "C-FIND", 0xA700),
    ("query-retrieve", "C-FIND", 0xFE00),
    ("query-retrieve", "C-MOVE", 0x0000),
    ("query-retrieve", "C-GET", 0x0000),
    ("session", "any", 0x0211),
    ("query-retrieve", "C-FIND", 0xC001),
    ("query-retrieve", "C-MOVE", 0xC001),
    ("storage-commitment", "N-ACTION", 0x0000),
    ("storage-commitment", "N-ACTION", 0x0117),
    ("storage-commitment", "N-ACTION", 0x0123),
    ("storage-commitment", "N-ACTION", 0x0120),
    ("mpps", "N-CREATE", 0x0000),
    ("mpps", "N-CREATE", 0x0111),
    ("mpps", "N-SET", 0x0000),
    ("mpps", "N-SET", 0x0112),
    ("mpps", "N-CREATE", 0x0120),
    ("mpps", "N-SET", 0x0110),
    ("worklist", "C-FIND", 0x0000),
}


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


def config(root: Path, **changes: Any) -> NodeConfig:
    settings: dict[str, Any] = {
        "ae_titles": [NODE_AE],
        "host": LOCALHOST,
        "port": 0,
        "storage": StorageConfig(root=root / "store", fsync=False, duplicates="reject"),
        "database": root / "node.sqlite",
        "timeouts": Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0),
        "shutdown_grace": 1.0,
    }
    settings.update(changes)
    return NodeConfig(**settings)


@contextlib.asynccontextmanager
async def node_on(root: Path, **changes: Any) -> AsyncIterator[Node]:
    async with Node(config(root, **changes)) as node:
        yield node


def client(node: Node, *services: str, **kwargs: Any) -> Any:
    return dicomwire.connect(
        LOCALHOST, node.port, called_ae=NODE_AE, calling_ae="PROBE", services=services, **kwargs
    )


# --------------------------------------------------------------------------- A-ASSOCIATE-RJ


def _request(called: str = NODE_AE, calling: str = "PROBE") -> Any:
    request, _ = build_request(RequestorConfig(calling, called, [(VERIFICATION, [IMPLICIT_VR_LE])]))
    return request


async def _reject(node: Node, request: Any = None, **kwargs: Any) -> tuple[int, int, int]:
    async with RawPeer.connect(LOCALHOST, node.port) as peer:
        answer = await peer.associate(request=request, **kwargs)
    assert isinstance(answer, AAssociateRJ), answer
    return answer.result, answer.source, answer.reason


def test_every_association_rejection_is_driven(tmp_path: Path) -> None:
    async def scenario() -> set[tuple[int, int, int]]:
        seen: set[tuple[int, int, int]] = set()
        async with node_on(tmp_path) as node:
            seen.add(await _reject(node, called_ae_title="NOT-US", calling_ae_title="PROBE"))
            seen.add(
                await _reject(
                    node,
                    called_ae_title=NODE_AE,
                    contexts=[("1.2.3.4.5.6", [IMPLICIT_VR_LE])],
                )
            )
            wrong_context = _request()
            wrong_context.variable_items[0] = ApplicationContextItem("1.2.3.4")
            seen.add(await _reject(node, wrong_context))
            old_version = dataclasses.replace(_request(), protocol_version=2)
            seen.add(await _reject(node, old_version))
            two_contexts = _request()
            two_contexts.variable_items.insert(0, ApplicationContextItem("1.2.840.10008.3.1.1.1"))
            seen.add(await _reject(node, two_contexts))
        known = [KnownNode("ONLYME")]
        async with node_on(tmp_path, known_nodes=known) as node:
            seen.add(await _reject(node, _request(calling="STRANGER")))
        async with (
            node_on(tmp_path, max_associations=1) as node,
            RawPeer.connect(LOCALHOST, node.port) as first,
        ):
            assert isinstance(await first.associate(called_ae_title=NODE_AE), AAssociateAC)
            seen.add(await _reject(node, _request()))
        return seen

    seen = run(scenario())
    assert seen == DRIVEN_REJECTIONS
    listed = {(int(r.result), int(r.source), int(r.reason)) for r in REJECTIONS}
    assert seen <= listed, seen - listed


# --------------------------------------------------------------------------- A-ABORT


def test_provider_aborts_are_driven(tmp_path: Path) -> None:
    async def scenario() -> set[tuple[int, int]]:
        seen: set[tuple[int, int]] = set()
        async with node_on(tmp_path) as node:
            unknown_pdu = bytes([0x0A, 0]) + struct.pack(">I", 0)
            async with RawPeer.connect(LOCALHOST, node.port) as peer:
                await peer.send(unknown_pdu)  # not an A-ASSOCIATE-RQ first: service-user
                abort = await peer.expect_abort()
                seen.add((abort.source, abort.reason))
            async with RawPeer.connect(LOCALHOST, node.port) as peer:
                await peer.associate(called_ae_title=NODE_AE)
                await peer.send(unknown_pdu)
                abort = await peer.expect_abort()
                seen.add((abort.source, abort.reason))
            async with RawPeer.connect(LOCALHOST, node.port) as peer:
                await peer.associate(called_ae_title=NODE_AE)
                await peer.send(AAssociateAC(NODE_AE, "PROBE", []))  # not in Sta6
                abort = await peer.expect_abort()
                seen.add((abort.source, abort.reason))
            async with RawPeer.connect(LOCALHOST, node.port) as peer:
                await peer.associate(called_ae_title=NODE_AE)
                await peer.send(bytes([0x05, 0]) + struct.pack(">I", 2) + b"\0\0")  # RQ is 4
                abort = await peer.expect_abort()
                seen.add((abort.source, abort.reason))
        return seen

    seen = run(scenario())
    assert seen == DRIVEN_ABORTS
    listed = {(int(a.source), int(a.reason)) for a in ABORTS}
    assert seen <= listed


# --------------------------------------------------------------------------- C-STORE / C-ECHO


def test_store_and_echo_statuses_are_driven(tmp_path: Path) -> None:
    ct = get_testdata_file("CT_small.dcm")
    assert ct is not None

    async def scenario() -> list[int]:
        codes: list[int] = []
        async with node_on(tmp_path) as node:
            async with client(node, "verification", sending=[ct]) as scu:
                codes.append(await scu.echo())
                codes.append(await scu.store(ct))
                codes.append(await scu.store(ct))  # duplicates = reject: 0111
            async with RawPeer.connect(LOCALHOST, node.port) as peer:
                await peer.associate(
                    "PROBE",
                    NODE_AE,
                    [(SECONDARY_CAPTURE, [IMPLICIT_VR_LE]), (CT_IMAGE, [IMPLICIT_VR_LE])],
                )
                context = peer.accepted_context(SECONDARY_CAPTURE)
                assert context is not None
                uid = new_uid()
                # Data set UIDs that are not the command's: A900.
                await peer.send_message(
                    context,
                    c_store_rq(SECONDARY_CAPTURE, uid),
                    small_dataset(SECONDARY_CAPTURE, new_uid()),
                )
                codes.append(int((await peer.receive_message()).status or 0))
                # The command's SOP class is not the context's: 0122.
                await peer.send_message(
                    context, c_store_rq(CT_IMAGE, uid), small_dataset(CT_IMAGE, uid)
                )
                codes.append(int((await peer.receive_message()).status or 0))
                # Not a data set at all: C000.
                await peer.send_message(context, c_store_rq(SECONDARY_CAPTURE, uid), b"\x01" * 16)
                codes.append(int((await peer.receive_message()).status or 0))
                await peer.release()
        return codes

    assert run(scenario()) == [0x0000, 0x0000, 0x0111, 0xA900, 0x0122, 0xC000]


# --------------------------------------------------------------------------- C-FIND / C-MOVE


def test_find_and_move_statuses_are_driven(tmp_path: Path) -> None:
    probe = RemoteAE("PROBE", LOCALHOST, 9)  # a known destination: the move reaches the index

    ct = get_testdata_file("CT_small.dcm")
    assert ct is not None

    async def scenario() -> dict[str, int]:
        codes: dict[str, int] = {}
        async with node_on(tmp_path, nodes=[probe]) as node:
            second = dcmread(ct)
            second.StudyInstanceUID = generate_uid()
            second.SeriesInstanceUID = generate_uid()
            second.SOPInstanceUID = generate_uid()
            async with client(node, sending=[ct]) as scu:
                assert await scu.store(ct) == 0
                assert await scu.store(second) == 0
            async with client(node, "find", "move") as scu:
                responses = scu.find({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""})
                codes["pending"] = len([match async for match in responses])
                codes["final"] = int(responses.status)
                try:
                    async for _ in scu.find({"QueryRetrieveLevel": "IMAGES"}):
                        pass
                except DimseStatusError as exc:
                    codes["mismatch"] = exc.status
                try:
                    await scu.move(
                        {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2"}, "NOWHERE"
                    )
                except DimseStatusError as exc:
                    codes["unknown destination"] = exc.status
                # The index made unreadable under the node: C001 (the index reopens on use).
                index = node.service("query-retrieve").index  # type: ignore[attr-defined]
                index.close()
                for stale in tmp_path.glob("node.sqlite*"):
                    stale.unlink()
                (tmp_path / "node.sqlite").write_bytes(b"not a database" * 512)
                try:
                    async for _ in scu.find(
                        {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""}
                    ):
                        pass
                except DimseStatusError as exc:
                    codes["find index failure"] = exc.status
                try:
                    await scu.move(
                        {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2"}, "PROBE"
                    )
                except DimseStatusError as exc:
                    codes["move index failure"] = exc.status
        return codes

    codes = run(scenario())
    assert codes == {
        "pending": 2,
        "final": 0x0000,
        "mismatch": 0xA900,
        "unknown destination": 0xA801,
        "find index failure": 0xC001,
        "move index failure": 0xC001,
    }


# --------------------------------------------------------------------------- N-ACTION / MPPS


def test_commitment_and_mpps_statuses_are_driven(tmp_path: Path) -> None:
    async def scenario() -> dict[str, int]:
        codes: dict[str, int] = {}
        request = Dataset()
        request.TransactionUID = generate_uid()
        item = Dataset()
        item.ReferencedSOPClassUID = CT_IMAGE
        item.ReferencedSOPInstanceUID = generate_uid()
        request.ReferencedSOPSequence = [item]
        async with node_on(tmp_path) as node:
            async with client(node, "storage-commitment") as scu:
                codes["commit"] = int(
                    (await scu.n_action(COMMITMENT, COMMITMENT_INSTANCE, 1, request)).status
                )
                codes["commit instance"] = int(
                    (await scu.n_action(COMMITMENT, "1.2.3", 1, request)).status
                )
                codes["commit action"] = int(
                    (await scu.n_action(COMMITMENT, COMMITMENT_INSTANCE, 7, request)).status
                )
                codes["commit missing"] = int(
                    (await scu.n_action(COMMITMENT, COMMITMENT_INSTANCE, 1, Dataset())).status
                )
            async with client(node, "mpps") as scu:
                step = new_step()
                uid = generate_uid()
                codes["create"] = int((await scu.n_create(MPPS, step, uid)).status)
                codes["duplicate"] = int((await scu.n_create(MPPS, step, uid)).status)
                change = Dataset()
                change.PerformedProcedureStepDescription = "changed"
                codes["set"] = int((await scu.n_set(MPPS, uid, change)).status)
                codes["set unknown"] = int((await scu.n_set(MPPS, generate_uid(), change)).status)
                codes["create missing"] = int((await scu.n_create(MPPS, Dataset())).status)
                codes["complete"] = int((await scu.n_set(MPPS, uid, completed())).status)
                codes["set final"] = int((await scu.n_set(MPPS, uid, change)).status)
            async with client(node, "worklist") as scu:
                query = {"PatientID": "", "ScheduledProcedureStepSequence": [{"Modality": "CT"}]}
                matches = scu.find(query, model="worklist")
                codes["worklist"] = len([m async for m in matches]) + int(matches.status)
        return codes

    assert run(scenario()) == {
        "commit": 0x0000,
        "commit instance": 0x0117,
        "commit action": 0x0123,
        "commit missing": 0x0120,
        "create": 0x0000,
        "duplicate": 0x0111,
        "set": 0x0000,
        "set unknown": 0x0112,
        "create missing": 0x0120,
        "complete": 0x0000,
        "set final": 0x0110,
        "worklist": 0x0000,
    }


def test_retrieve_limit_and_session_statuses_are_driven(tmp_path: Path) -> None:
    ct = get_testdata_file("CT_small.dcm")
    assert ct is not None
    second = dcmread(ct)
    second.StudyInstanceUID = generate_uid()
    second.SeriesInstanceUID = generate_uid()
    second.SOPInstanceUID = generate_uid()
    study = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": str(second.StudyInstanceUID)}
    limited = {"query_retrieve": QueryRetrieveConfig(max_find_responses=1)}

    async def scenario() -> dict[str, int]:
        codes: dict[str, int] = {}
        async with node_on(tmp_path / "destination", ae_titles=["DEST"]) as destination:
            target = RemoteAE("DEST", LOCALHOST, destination.port)
            async with node_on(tmp_path / "source", nodes=[target], sections=limited) as node:
                async with client(node, sending=[ct]) as scu:
                    assert await scu.store(ct) == 0
                    assert await scu.store(second) == 0
                async with client(node, "find", "move", "get") as scu:
                    try:
                        async for _ in scu.find({"QueryRetrieveLevel": "STUDY"}):
                            pass
                    except DimseStatusError as exc:
                        codes["find limit"] = exc.status
                    codes["move"] = int((await scu.move(study, "DEST")).status)
                    codes["get"] = int((await scu.get(study, tmp_path / "got")).status)
                async with RawPeer.connect(LOCALHOST, node.port) as peer:
                    await peer.associate("PROBE", NODE_AE)
                    context = peer.accepted_context(VERIFICATION)
                    assert context is not None
                    uid = new_uid()
                    await peer.send_message(
                        context, c_store_rq(VERIFICATION, uid), small_dataset(VERIFICATION, uid)
                    )
                    codes["no handler"] = int((await peer.receive_message()).status or 0)
                    await peer.release()
        return codes

    assert run(scenario()) == {
        "find limit": 0xA700,
        "move": 0x0000,
        "get": 0x0000,
        "no handler": 0x0211,
    }


class GatedIndex(SQLiteIndex):
    """An index whose scans wait after the first match until ``gate`` opens, so the
    C-CANCEL arrives while the query runs (the technique of test_qr_find.py)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate = threading.Event()

    def find(self, level: str, identifier: Dataset) -> Iterator[Dataset]:
        for number, match in enumerate(super().find(level, identifier)):
            if number == 1:
                self.gate.wait(20)
            yield match


def test_find_cancel_is_driven(tmp_path: Path) -> None:
    ct = get_testdata_file("CT_small.dcm")
    assert ct is not None
    gated = GatedIndex(str(tmp_path / "index.sqlite"))
    for _ in range(3):
        header = dcmread(ct, stop_before_pixels=True)
        header.StudyInstanceUID = generate_uid()
        header.SeriesInstanceUID = generate_uid()
        header.SOPInstanceUID = generate_uid()
        gated.add(header, Path("/x.dcm"), "1.2.840.10008.1.2.1", 1)
    services = [Verification(), QueryRetrieve(gated)]

    async def scenario() -> list[int]:
        statuses: list[int] = []
        async with Node(config(tmp_path), services) as node, client(node, "find") as scu:
            identifier = Dataset()
            identifier.QueryRetrieveLevel = "STUDY"
            identifier.StudyInstanceUID = ""
            context = scu.session.find_context(STUDY_FIND)
            encoded = encode_dataset(identifier, context.transfer_syntax or "")
            operation = await scu.session.send(CFindRQ(STUDY_FIND, dataset=encoded))
            async for response in operation:
                statuses.append(int(response.status))
                if len(statuses) == 1:
                    await operation.cancel()
            gated.gate.set()
        return statuses

    try:
        assert run(scenario(), 30) == [0xFF00, 0xFE00]
    finally:
        gated.gate.set()


def test_dcmtk_reads_the_statements_rejection_as_listed(tmp_path: Path) -> None:
    """A real peer (DCMTK echoscu) reports the (1, 1, 7) rejection the statement lists."""
    echoscu = find_dcmtk_tool("echoscu")
    with running_node(node_config(ae_titles=[NODE_AE])) as node:
        done = subprocess.run(
            [echoscu, "-aec", "NOT-US", LOCALHOST, str(node.port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Called AE Title Not Recognized" in output, output
    assert any(
        (r.result, r.source, r.reason) == (1, 1, 7) and "called AE title" in r.when
        for r in REJECTIONS
    )
