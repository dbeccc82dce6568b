"""The node as a whole: ``dicomwire serve`` as a subprocess, driven like a hospital drives it.

One node, configured from TOML (an AE directory with a DCMTK ``storescp`` destination,
Orthanc and a pynetdicom MPPS SCP; a ``[worklist]`` folder of ``.wl`` files; ``[mpps]``
relaying to the MPPS SCP), serves every default service to real peers at once:

- DCMTK: ``echoscu``; ``storescu`` of pydicom's test files; ``findscu -S`` at study and
  image level; ``movescu`` to ``storescp``; ``getscu``; ``findscu -W`` against the ``.wl``
  folder;
- pynetdicom: MPPS N-CREATE and N-SET, relayed unchanged, in order, to the MPPS SCP;
- Orthanc: storage commitment (REST) answered by a report on a new association;
- our own command line: ``dicomwire find/move/get/worklist/mpps/commit``.

What arrives is read back where it lands: the node's storage, ``storescp``'s folder, the
C-GET folders, the MPPS SCP's record, Orthanc's job.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from ..conftest import LOCALHOST, find_dcmtk_tool, import_or_fail
from ..orthanc_peer import OrthancPeer, orthanc
from ..services._mpps_support import Peer, mpps_peer
from ..services.test_qr_retrieve import received_uids, storescp
from ..services.test_worklist_data import entries, entry, write_wl, write_wl_files
from ._dcmtk import background, dicomwire_argv, free_tcp_port, run
from ._mpps_peer import completed, new_step, pynetdicom_scu

pytestmark = pytest.mark.interop

NODE_AE = "DICOMWIRE"
FILES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")


@dataclass
class Instance:
    path: Path
    sop_class: str
    study: str
    series: str
    sop: str


@dataclass
class Hospital:
    port: int
    root: Path
    work: Path
    instances: dict[str, Instance]
    storescp_dir: Path
    orthanc: OrthancPeer
    mpps: Peer
    log: Path

    def node_log(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _instance(path: Path) -> Instance:
    data = dcmread(path, stop_before_pixels=True)
    return Instance(
        path,
        str(data.SOPClassUID),
        str(data.StudyInstanceUID),
        str(data.SeriesInstanceUID),
        str(data.SOPInstanceUID),
    )


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hospital]:
    """storescp, the MPPS SCP and Orthanc up; the node serving; the test files stored."""
    import_or_fail("pynetdicom")
    storescu = find_dcmtk_tool("storescu")
    work = tmp_path_factory.mktemp("hospital")
    files = [Path(shutil.copy(get_testdata_file(name), work / name)) for name in FILES]
    instances = {path.name: _instance(path) for path in files}
    worklists = work / "worklists"
    write_wl_files(worklists)
    port = free_tcp_port()
    with (
        storescp(work / "storescp") as storescp_port,
        mpps_peer(work) as mpps,
        orthanc(work, modalities={"DW": (NODE_AE, LOCALHOST, port)}) as peer,
    ):
        config = work / "node.toml"
        config.write_text(
            f"""
ae_titles = ["{NODE_AE}"]
host = "{LOCALHOST}"
port = {port}
max_associations = 128
max_operations_invoked = 1024
shutdown_grace = 2

[storage]
root = "{work / "storage"}"

[[nodes]]
ae_title = "STORESCP"
host = "{LOCALHOST}"
port = {storescp_port}

[[nodes]]
ae_title = "ORTHANC"
host = "{LOCALHOST}"
port = {peer.dicom_port}

[[nodes]]
ae_title = "PACS"
host = "{LOCALHOST}"
port = {mpps.port}

[worklist]
directory = "{worklists}"
poll_interval = 0

[mpps]
relay_to = ["PACS"]
relay_first_delay = 0.2
relay_max_delay = 1.0
relay_timeout = 10.0
"""
        )
        log = work / "node.log"
        argv = [*dicomwire_argv(), "serve", "--config", str(config), "-v"]
        with background(argv, port, log):
            stored = run([storescu, "-aec", NODE_AE, LOCALHOST, str(port), *map(str, files)])
            assert stored.returncode == 0, stored.stdout + stored.stderr + log.read_text()
            yield Hospital(
                port, work / "storage", work, instances, work / "storescp", peer, mpps, log
            )


def _dcmtk(hospital: Hospital, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = run([find_dcmtk_tool(tool), "-aec", NODE_AE, *args, LOCALHOST, str(hospital.port)])
    assert result.returncode == 0, result.stdout + result.stderr + hospital.node_log()
    return result


def _dicomwire(hospital: Hospital, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = run(
        [*dicomwire_argv(), command, LOCALHOST, str(hospital.port), "-aec", NODE_AE, *args]
    )
    assert result.returncode == 0, result.stdout + result.stderr + hospital.node_log()
    return result


def _responses(folder: Path) -> list[Any]:
    return [dcmread(path) for path in sorted(folder.glob("rsp*.dcm"))]


def _wait(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.1)


def test_storescu_files_are_stored_and_echoscu_answered(hospital: Hospital) -> None:
    _dcmtk(hospital, "echoscu")
    stored = {
        _instance(p).sop
        for p in hospital.root.rglob("*.dcm")
        if ".dicomwire" not in p.parts and ".incoming" not in p.parts
    }
    assert stored == {i.sop for i in hospital.instances.values()}


def test_findscu_study_and_image_level(hospital: Hospital) -> None:
    studies = hospital.work / "find-study"
    studies.mkdir()
    _dcmtk(hospital, "findscu", "-S", "-X", "-od", str(studies), "-k", "QueryRetrieveLevel=STUDY",
           "-k", "StudyInstanceUID", "-k", "PatientID")  # fmt: skip
    found = {str(r.StudyInstanceUID) for r in _responses(studies)}
    assert found == {i.study for i in hospital.instances.values()}
    ct = hospital.instances["CT_small.dcm"]
    images = hospital.work / "find-image"
    images.mkdir()
    _dcmtk(hospital, "findscu", "-S", "-X", "-od", str(images), "-k", "QueryRetrieveLevel=IMAGE",
           "-k", f"StudyInstanceUID={ct.study}", "-k", f"SeriesInstanceUID={ct.series}",
           "-k", "SOPInstanceUID", "-k", "SOPClassUID")  # fmt: skip
    (answer,) = _responses(images)
    assert (str(answer.SOPInstanceUID), str(answer.SOPClassUID)) == (ct.sop, ct.sop_class)


def test_movescu_to_storescp_and_getscu(hospital: Hospital) -> None:
    ct = hospital.instances["CT_small.dcm"]
    _dcmtk(hospital, "movescu", "-S", "-aet", "MOVESCU", "-aem", "STORESCP",
           "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={ct.study}")  # fmt: skip
    assert ct.sop in received_uids(hospital.storescp_dir)
    mr = hospital.instances["MR_small.dcm"]
    got = hospital.work / "getscu"
    got.mkdir()
    _dcmtk(hospital, "getscu", "-S", "-aet", "GETSCU", "-od", str(got),
           "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={mr.study}")  # fmt: skip
    assert received_uids(got) == {mr.sop}


def test_findscu_worklist_against_the_wl_folder(hospital: Hospital) -> None:
    out = hospital.work / "find-worklist"
    out.mkdir()
    _dcmtk(hospital, "findscu", "-W", "-aet", "CT1", "-X", "-od", str(out),
           "-k", "AccessionNumber", "-k", "PatientID=P1001",
           "-k", "(0040,0100)[0].Modality=CT")  # fmt: skip
    (answer,) = _responses(out)
    assert str(answer.AccessionNumber) == "A1"
    everything = json.loads(_dicomwire(hospital, "worklist", "--json").stdout)
    wanted = sorted(str(e.get("AccessionNumber", "")) for e in entries())
    got = sorted((m.get("00080050", {}).get("Value") or [""])[0] for m in everything)
    assert got == wanted


def test_mpps_from_pynetdicom_and_our_cli_is_relayed_in_order(hospital: Hospital) -> None:
    wl = entries()[0]
    step_uid = "1.2.826.0.1.3680043.9.7433.96.1"

    def script(assoc: Any) -> tuple[int, int]:
        from tests.interop._mpps_peer import MPPS

        created, _ = assoc.send_n_create(new_step(str(wl.StudyInstanceUID)), MPPS, step_uid)
        ended, _ = assoc.send_n_set(completed(), MPPS, step_uid)
        return int(created.Status), int(ended.Status)

    assert pynetdicom_scu(hospital.port, script, called_ae=NODE_AE) == (0, 0)
    item = sorted((hospital.work / "worklists").glob("*.wl"))[1]
    created = _dicomwire(hospital, "mpps", "create", "--from-worklist", str(item), "-aet", "CT2")
    cli_uid = created.stdout.strip().splitlines()[-1]
    _dicomwire(hospital, "mpps", "set", cli_uid, "--status", "DISCONTINUED", "-aet", "CT2")

    def relayed() -> list[tuple[str, str]]:
        ours = {step_uid, cli_uid}
        received = hospital.mpps.received()
        return [(r["op"], r["uid"]) for r in received if r["status"] == 0 and r["uid"] in ours]

    expected = [
        ("N-CREATE", step_uid),
        ("N-SET", step_uid),
        ("N-CREATE", cli_uid),
        ("N-SET", cli_uid),
    ]
    _wait(lambda: len(relayed()) >= 4, "the MPPS relay")
    assert sorted(relayed(), key=lambda r: r[1]) == sorted(expected, key=lambda r: r[1])
    for uid in (step_uid, cli_uid):  # per step: never an N-SET before its N-CREATE
        assert [op for op, u in relayed() if u == uid] == ["N-CREATE", "N-SET"]
    assert {r["calling_ae"] for r in hospital.mpps.received()} == {NODE_AE}


def test_orthanc_storage_commitment(hospital: Hospital) -> None:
    body = {
        "DicomInstances": [
            {"SOPClassUID": i.sop_class, "SOPInstanceUID": i.sop}
            for i in hospital.instances.values()
        ],
        "Timeout": 30,
    }
    job = hospital.orthanc.rest("POST", "/modalities/DW/storage-commitment", body)
    answer: dict[str, Any] = {}

    def reported() -> bool:
        nonlocal answer
        answer = hospital.orthanc.rest("GET", f"/storage-commitment/{job['ID']}")
        return answer.get("Status") != "Pending"

    _wait(reported, "Orthanc's storage commitment report")
    assert answer["Status"] == "Success", answer
    committed = {s["SOPInstanceUID"] for s in answer["Success"]}
    assert committed == {i.sop for i in hospital.instances.values()}


def test_our_cli_find_move_get_commit(hospital: Hospital) -> None:
    keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID"]
    found = json.loads(_dicomwire(hospital, "find", "-S", "--json", *keys).stdout)
    studies = {m["0020000D"]["Value"][0] for m in found}
    assert studies == {i.study for i in hospital.instances.values()}
    plan = hospital.instances["rtplan.dcm"]
    _dicomwire(hospital, "move", "-S", "--dest", "STORESCP", "-k", "QueryRetrieveLevel=STUDY",
               "-k", f"StudyInstanceUID={plan.study}")  # fmt: skip
    assert plan.sop in received_uids(hospital.storescp_dir)
    got = hospital.work / "dicomwire-get"
    _dicomwire(hospital, "get", "-S", "-od", str(got), "-k", "QueryRetrieveLevel=STUDY",
               "-k", f"StudyInstanceUID={plan.study}")  # fmt: skip
    assert {_instance(p).sop for p in got.rglob("*") if p.is_file()} == {plan.sop}
    paths = [str(i.path) for i in hospital.instances.values()]
    report = _dicomwire(hospital, "commit", *paths, "--same-association", "--timeout", "30")
    lines = report.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("committed: ") for line in lines), lines


def test_a_day_at_the_scanner(hospital: Hospital) -> None:
    """The RIS adds an order; the modality reads it, starts the step, sends and commits the
    images, completes the step: the worklist then says COMPLETED and the archive has it."""
    study = "1.2.826.0.1.3680043.9.7433.96.50"
    order = entry(study=study, name="ROE^RITA", patient_id="P9001", accession="A-DAY",
                  procedure_id="RP9", modality="CT", station_ae="CT9", date="20261129",
                  time="120000", station_name="CT9ROOM", step_id="SPS9")  # fmt: skip
    item = write_wl(order, hospital.work / "order.wl")
    config = str(hospital.work / "node.toml")
    added = run([*dicomwire_argv(), "worklist", "add", "--config", config, str(item)])
    assert added.returncode == 0, added.stdout + added.stderr

    def statuses() -> dict[str, str]:
        answers = json.loads(_dicomwire(hospital, "worklist", "--json", "-aet", "CT9").stdout)
        found = {}
        for answer in answers:
            accession = (answer.get("00080050", {}).get("Value") or [""])[0]
            step = answer["00400100"]["Value"][0]
            found[accession] = step["00400020"]["Value"][0]
        return found

    assert statuses()["A-DAY"] == "SCHEDULED"
    created = _dicomwire(hospital, "mpps", "create", "--from-worklist", str(item), "-aet", "CT9")
    uid = created.stdout.strip().splitlines()[-1]
    _wait(lambda: statuses()["A-DAY"] == "STARTED", "the worklist entry STARTED")
    images = hospital.work / "day-images"
    images.mkdir()
    ct = dcmread(hospital.instances["CT_small.dcm"].path)
    ct.StudyInstanceUID = study
    ct.SeriesInstanceUID = f"{study}.1"
    ct.SOPInstanceUID = f"{study}.1.1"
    ct.save_as(images / "ct.dcm")
    _dicomwire(hospital, "store", str(images), "-aet", "CT9", "--commit", "--same-association")
    _dicomwire(hospital, "mpps", "set", uid, "--status", "COMPLETED", "--series", str(images),
               "-aet", "CT9")  # fmt: skip
    _wait(lambda: statuses()["A-DAY"] == "COMPLETED", "the worklist entry COMPLETED")
    assert statuses()["A1"] == "SCHEDULED"  # the watched folder's entries are left alone
    stored = [p for p in hospital.root.rglob("*.dcm") if _instance(p).sop == f"{study}.1.1"]
    assert len(stored) == 1
    _wait(lambda: ("N-SET", uid) in [(r["op"], r["uid"]) for r in hospital.mpps.received()],
          "the relay of the step's N-SET")  # fmt: skip
