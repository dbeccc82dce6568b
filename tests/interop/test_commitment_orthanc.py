"""Storage commitment with Orthanc 1.10 as the real peer, both ways (PS3.4 J.3).

- Orthanc as SCU (REST ``POST /modalities/DW/storage-commitment``) against the dicomwire
  SCP: Orthanc releases after the N-ACTION-RSP, so the report goes on a new association
  back to Orthanc's entry in the node's AE directory, proposing the SCP role, calling with
  the AE title Orthanc asked (Orthanc ignores a report from another AE).
- dicomwire's ``commit`` (API and CLI) against Orthanc's SCP: Orthanc reports on a new
  association to our listener, its ``DicomModalities`` entry for us.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from dicomwire.services.commitment import StorageCommitmentConfig, commit
from dicomwire.services.directory import RemoteAE
from tests.conftest import LOCALHOST, get_free_tcp_port, run_bounded
from tests.orthanc_peer import OrthancPeer, orthanc
from tests.services._support import dicomwire_argv
from tests.services.test_commitment import CT, MR, commitment_node, make_files, store, uids

pytestmark = pytest.mark.interop


def _instances(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"SOPClassUID": c, "SOPInstanceUID": i} for c, i in pairs]


def _wait_for_result(peer: OrthancPeer, job: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer: dict[str, Any] = peer.rest("GET", f"/storage-commitment/{job}")
        if answer.get("Status") != "Pending":
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"Orthanc got no report in {timeout} s:\n{peer.log()[-3000:]}")
        time.sleep(0.1)


def test_orthanc_asks_the_dicomwire_scp(tmp_path: Path) -> None:
    """All committed; then an unknown instance, a class conflict and a deleted file."""
    files = make_files(tmp_path / "in", 4)

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        config = StorageCommitmentConfig(same_association=True)  # Orthanc leaves anyway
        async with commitment_node(tmp_path / "node", config=config) as (node, _):
            await store(node.port, files)
            stored = sorted((tmp_path / "node" / "store").rglob("*.dcm"))
            deleted = uids(files[3])[1]
            with orthanc(tmp_path, modalities={"DW": ("DICOMWIRE", LOCALHOST, node.port)}) as peer:
                node.directory.add(RemoteAE("ORTHANC", LOCALHOST, peer.dicom_port))

                def ask(pairs: list[tuple[str, str]]) -> dict[str, Any]:
                    body = {"DicomInstances": _instances(pairs), "Timeout": 30}
                    job = peer.rest("POST", "/modalities/DW/storage-commitment", body)
                    return _wait_for_result(peer, str(job["ID"]))

                good = await asyncio.to_thread(ask, [uids(f) for f in files])
                next(p for p in stored if uids(p)[1] == deleted).unlink()
                mixed = [
                    uids(files[0]),
                    (CT, "1.2.3.4.5.6.7.404"),
                    (MR, uids(files[2])[1]),
                    uids(files[3]),
                ]
                bad = await asyncio.to_thread(ask, mixed)
                return good, bad

    good, bad = run_bounded(main(), 120)
    assert good["Status"] == "Success", good
    assert sorted(s["SOPInstanceUID"] for s in good["Success"]) == sorted(uids(f)[1] for f in files)
    assert bad["Status"] == "Failure", bad
    assert [s["SOPInstanceUID"] for s in bad["Success"]] == [uids(files[0])[1]]
    reasons = {f["SOPInstanceUID"]: f["FailureReason"] for f in bad["Failures"]}
    assert reasons == {
        "1.2.3.4.5.6.7.404": 0x0112,
        uids(files[2])[1]: 0x0119,
        uids(files[3])[1]: 0x0110,
    }


def test_dicomwire_asks_orthanc(tmp_path: Path) -> None:
    """Orthanc reports on a new association to our listener: committed and 0112."""
    files = make_files(tmp_path / "in", 2)
    listen = get_free_tcp_port()
    with orthanc(tmp_path, modalities={"DW": ("DICOMWIRE", LOCALHOST, listen)}) as peer:
        for path in files:
            peer.upload(path)
        unknown = (CT, "1.2.3.4.5.6.7.405")
        report = run_bounded(
            commit(
                (LOCALHOST, peer.dicom_port),
                [*files, unknown],
                called_ae="ORTHANC",
                calling_ae="DICOMWIRE",
                listen_port=listen,
                timeout=30,
            ),
            60,
        )
    assert report.event_type == 2 and not report.same_association
    assert report.reporter == "ORTHANC"
    assert sorted(report.committed) == sorted((i, c) for c, i in map(uids, files))
    assert report.failed == [(unknown[1], CT, 0x0112)]


def test_dicomwire_commit_cli_against_orthanc(tmp_path: Path) -> None:
    files = make_files(tmp_path / "in", 2)
    missing = make_files(tmp_path / "other", 1)  # never sent to Orthanc
    listen = get_free_tcp_port()
    with orthanc(tmp_path, modalities={"DW": ("DICOMWIRE", LOCALHOST, listen)}) as peer:
        for path in files:
            peer.upload(path)
        base = [*dicomwire_argv(), "commit", LOCALHOST, str(peer.dicom_port)]
        flags = ["-aec", "ORTHANC", "-aet", "DICOMWIRE", "--listen-port", str(listen)]
        flags += ["--timeout", "30"]
        good = subprocess.run(
            [*base, *map(str, files), *flags], capture_output=True, text=True, timeout=90
        )
        bad = subprocess.run(
            [*base, *map(str, files + missing), *flags, "--json"],
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert good.returncode == 0, good.stderr
    lines = good.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("committed: ") for line in lines), lines
    assert bad.returncode == 1, bad.stderr
    answer = json.loads(bad.stdout)
    assert answer["all_committed"] is False
    missing_uid = str(dcmread(missing[0], stop_before_pixels=True).SOPInstanceUID)
    assert [f["sop_instance_uid"] for f in answer["failed"]] == [missing_uid]
    assert answer["failed"][0]["failure_reason"] == "0112"
