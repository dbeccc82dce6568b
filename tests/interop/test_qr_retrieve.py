"""Our C-MOVE/C-GET SCP against real SCUs and destinations (PS3.4 C.4.2, C.4.3).

DCMTK movescu (to DCMTK storescp, and to itself with ``--port``) and getscu; pynetdicom's
movescu and getscu; Orthanc asking our node to move a study to Orthanc over REST
(``POST /modalities/{id}/move``). Each peer is started by the test on 127.0.0.1 and a
free port, and what arrived is read back from the peer's own storage.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from dicomwire.services.directory import RemoteAE
from dicomwire.services.node import Node

from ..conftest import (
    LOCALHOST,
    find_dcmtk_tool,
    get_free_tcp_port,
    import_or_fail,
    run_bounded,
)
from ..orthanc_peer import orthanc
from ..services.test_qr_retrieve import (
    NODE_AE,
    build_index,
    make_study,
    received_uids,
    retrieve_node,
    sop_uid,
    storescp,
)

PROCESS_TIMEOUT = 60.0


async def run_tool(argv: Sequence[str], cwd: Path | None = None) -> tuple[int, str]:
    """Run a peer's command line while the node serves on this loop; (exit code, output)."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), PROCESS_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def study_keys(study_uid: str) -> list[str]:
    return ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}"]


def _node_args(node: Node) -> list[str]:
    return [LOCALHOST, str(node.port)]


def test_dcmtk_movescu_to_storescp(tmp_path: Path) -> None:
    movescu = find_dcmtk_tool("movescu")
    study_uid, paths = make_study(tmp_path / "archive", 5)
    index = build_index(paths)
    with storescp(tmp_path / "dest", debug=True) as port:

        async def run() -> tuple[int, str]:
            nodes = [RemoteAE("STORESCP", LOCALHOST, port)]
            async with retrieve_node(tmp_path / "store", index, nodes) as node:
                argv = [movescu, "-v", "-S", "-aet", "MOVESCU", "-aec", NODE_AE, "-aem", "STORESCP"]
                return await run_tool([*argv, *study_keys(study_uid), *_node_args(node)])

        code, output = run_bounded(run(), 90)
    assert code == 0, output
    assert received_uids(tmp_path / "dest") == {sop_uid(p) for p in paths}
    # storescp's dump of each C-STORE-RQ names the C-MOVE it belongs to (PS3.7 9.1.1.1).
    log = (tmp_path / "dest.log").read_text(errors="replace")
    originators = re.findall(r"Move Originator AE Title\s*:\s*(\S+)", log)
    assert originators == ["MOVESCU"] * len(paths), log[-3000:]


def test_dcmtk_movescu_is_its_own_destination(tmp_path: Path) -> None:
    movescu = find_dcmtk_tool("movescu")
    study_uid, paths = make_study(tmp_path / "archive", 4)
    index = build_index(paths)
    port = get_free_tcp_port()
    received = tmp_path / "received"
    received.mkdir()

    async def run() -> tuple[int, str]:
        nodes = [RemoteAE("MOVESCU", LOCALHOST, port)]
        async with retrieve_node(tmp_path / "store", index, nodes) as node:
            argv = [movescu, "-v", "-S", "-aet", "MOVESCU", "-aec", NODE_AE, "-aem", "MOVESCU"]
            argv += ["--port", str(port), "-od", str(received)]
            return await run_tool([*argv, *study_keys(study_uid), *_node_args(node)])

    code, output = run_bounded(run(), 90)
    assert code == 0, output
    assert received_uids(received) == {sop_uid(p) for p in paths}


def test_dcmtk_movescu_patient_root_patient_level(tmp_path: Path) -> None:
    movescu = find_dcmtk_tool("movescu")
    _, paths = make_study(tmp_path / "archive", 3, patient_id="PAT-MOVE")
    _, others = make_study(tmp_path / "other", 2, patient_id="SOMEONE-ELSE")
    index = build_index(paths + others)
    with storescp(tmp_path / "dest") as port:

        async def run() -> tuple[int, str]:
            nodes = [RemoteAE("STORESCP", LOCALHOST, port)]
            async with retrieve_node(tmp_path / "store", index, nodes) as node:
                argv = [movescu, "-v", "-P", "-aec", NODE_AE, "-aem", "STORESCP"]
                argv += ["-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT-MOVE"]
                return await run_tool([*argv, *_node_args(node)])

        code, output = run_bounded(run(), 90)
    assert code == 0, output
    assert received_uids(tmp_path / "dest") == {sop_uid(p) for p in paths}


def test_dcmtk_movescu_unknown_destination_is_a801(tmp_path: Path) -> None:
    movescu = find_dcmtk_tool("movescu")
    study_uid, paths = make_study(tmp_path / "archive", 2)

    async def run() -> tuple[int, str]:
        async with retrieve_node(tmp_path / "store", build_index(paths)) as node:
            argv = [movescu, "-v", "-S", "-aec", NODE_AE, "-aem", "NOWHERE"]
            return await run_tool([*argv, *study_keys(study_uid), *_node_args(node)])

    _, output = run_bounded(run(), 90)
    assert "Refused: MoveDestinationUnknown" in output, output


def test_dcmtk_getscu(tmp_path: Path) -> None:
    getscu = find_dcmtk_tool("getscu")
    study_uid, paths = make_study(tmp_path / "archive", 5)
    received = tmp_path / "received"
    received.mkdir()

    async def run() -> tuple[int, str]:
        async with retrieve_node(tmp_path / "store", build_index(paths)) as node:
            argv = [getscu, "-v", "-S", "-aet", "GETSCU", "-aec", NODE_AE, "-od", str(received)]
            return await run_tool([*argv, *study_keys(study_uid), *_node_args(node)])

    code, output = run_bounded(run(), 90)
    assert code == 0, output
    assert received_uids(received) == {sop_uid(p) for p in paths}


def test_pynetdicom_movescu(tmp_path: Path) -> None:
    import_or_fail("pynetdicom")
    study_uid, paths = make_study(tmp_path / "archive", 4)
    index = build_index(paths)
    with storescp(tmp_path / "dest") as port:

        async def run() -> tuple[int, str]:
            nodes = [RemoteAE("STORESCP", LOCALHOST, port)]
            async with retrieve_node(tmp_path / "store", index, nodes) as node:
                argv = [sys.executable, "-m", "pynetdicom", "movescu", *_node_args(node)]
                argv += ["-S", "-aec", NODE_AE, "-aem", "STORESCP", *study_keys(study_uid)]
                return await run_tool(argv)

        code, output = run_bounded(run(), 90)
    assert code == 0, output
    assert received_uids(tmp_path / "dest") == {sop_uid(p) for p in paths}


def test_pynetdicom_movescu_relational_retrieve(tmp_path: Path) -> None:
    """Patient Root at the STUDY level without Patient ID: only once relational retrieve
    was agreed by extended negotiation (PS3.4 C.4.2.2.2); hierarchical, A900."""
    import_or_fail("pynetdicom")
    study_uid, paths = make_study(tmp_path / "archive", 3)
    index = build_index(paths)
    outputs = []
    with storescp(tmp_path / "dest") as port:

        async def run(relational: bool) -> tuple[int, str]:
            nodes = [RemoteAE("STORESCP", LOCALHOST, port)]
            async with retrieve_node(tmp_path / "store", index, nodes) as node:
                argv = [sys.executable, "-m", "pynetdicom", "movescu", *_node_args(node), "-d"]
                argv += ["-P", "-aec", NODE_AE, "-aem", "STORESCP", *study_keys(study_uid)]
                if relational:
                    argv.append("--relational-retrieval")
                return await run_tool(argv)

        for relational in (False, True):
            outputs.append(run_bounded(run(relational), 90))
    hierarchical, agreed = outputs
    assert "Move SCP Result: 0xA900" in hierarchical[1], hierarchical[1]
    assert agreed[0] == 0, agreed[1]
    assert received_uids(tmp_path / "dest") == {sop_uid(p) for p in paths}


def test_pynetdicom_getscu(tmp_path: Path) -> None:
    import_or_fail("pynetdicom")
    study_uid, paths = make_study(tmp_path / "archive", 4)
    received = tmp_path / "received"
    received.mkdir()

    async def run() -> tuple[int, str]:
        async with retrieve_node(tmp_path / "store", build_index(paths)) as node:
            argv = [sys.executable, "-m", "pynetdicom", "getscu", *_node_args(node)]
            argv += ["-S", "-aec", NODE_AE, "-od", str(received), *study_keys(study_uid)]
            return await run_tool(argv)

    code, output = run_bounded(run(), 90)
    assert code == 0, output
    assert received_uids(received) == {sop_uid(p) for p in paths}


def test_orthanc_rest_move_from_our_node_to_orthanc(tmp_path: Path) -> None:
    study_uid, paths = make_study(tmp_path / "archive", 4)
    index = build_index(paths)
    node_port = get_free_tcp_port()  # Orthanc must know it before our node starts
    with orthanc(tmp_path, modalities={"DW": (NODE_AE, LOCALHOST, node_port)}) as peer:

        async def run() -> object:
            nodes = [RemoteAE(peer.aet, LOCALHOST, peer.dicom_port)]
            async with retrieve_node(tmp_path / "store", index, nodes, port=node_port):
                body = {
                    "Level": "Study",
                    "Resources": [{"StudyInstanceUID": study_uid}],
                    "TargetAet": peer.aet,
                    "Timeout": 30,
                }
                return await asyncio.to_thread(peer.rest, "POST", "/modalities/DW/move", body)

        run_bounded(run(), 90)
        instances = peer.rest("GET", "/instances?expand")
    assert {item["MainDicomTags"]["SOPInstanceUID"] for item in instances} == {
        sop_uid(p) for p in paths
    }
