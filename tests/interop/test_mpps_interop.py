"""MPPS (PS3.4 F.7) with pynetdicom as the peer on both sides (no packaged tool speaks MPPS).

- pynetdicom SCU -> dicomwire MPPS SCP: N-CREATE then N-SET COMPLETED; the bad sequences
  (N-SET before N-CREATE, after COMPLETED, duplicate N-CREATE, missing or wrong
  attributes) answered with the statuses of PS3.7 Annex C / PS3.4 F.7, read off the wire
  from pynetdicom's response command set;
- dicomwire relay -> a pynetdicom MPPS SCP script recording what it receives: in order,
  the destination down when the messages are queued and up later, the node restarted
  between acceptance and relay, 64 associations creating steps at once;
- the ``dicomwire mpps`` CLI and the Python API -> the pynetdicom MPPS SCP.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dicomwire.services.mpps import COMPLETED, NOT_UPDATABLE_COMMENT, RELAY_KIND
from tests.conftest import import_or_fail, run_bounded
from tests.interop._mpps_peer import MPPS, completed, new_step, pynetdicom_scu
from tests.services._mpps_support import NODE_AE, PEER_AE, mpps_node, mpps_peer, wait_until

pytestmark = pytest.mark.interop

UID = "1.2.826.0.1.3680043.9.7433.99.100"


@pytest.fixture(autouse=True)
def _pynetdicom() -> None:
    import_or_fail("pynetdicom")


def _status(assoc: Any, answer: Any) -> dict[str, Any]:
    """The response just received, from its command set as pynetdicom decoded it."""
    status, _ = answer
    command = assoc.dimse_received[-1]
    assert int(command.Status) == int(status.Status)
    identifiers = command.get("AttributeIdentifierList", None)
    if identifiers is not None and not isinstance(identifiers, list | tuple):
        identifiers = [identifiers]
    return {
        "status": int(command.Status),
        "uid": str(command.get("AffectedSOPInstanceUID", "") or ""),
        "comment": str(command.get("ErrorComment", "") or ""),
        "error_id": command.get("ErrorID", None),
        "attributes": [int(t) for t in identifiers] if identifiers else [],
    }


def _create(assoc: Any, step: Any, uid: str | None = None) -> dict[str, Any]:
    return _status(assoc, assoc.send_n_create(step, MPPS, uid))


def _set(assoc: Any, modification: Any, uid: str) -> dict[str, Any]:
    return _status(assoc, assoc.send_n_set(modification, MPPS, uid))


# --------------------------------------------------------------------------- pynetdicom SCU


def test_pynetdicom_scu_creates_then_completes_a_step(tmp_path: Path) -> None:
    def modality(assoc: Any) -> list[dict[str, Any]]:
        return [
            _create(assoc, new_step(), UID),
            _set(assoc, completed(), UID),
            _create(assoc, new_step()),  # the SCP assigns the UID
        ]

    async def main() -> tuple[list[dict[str, Any]], Any, Any]:
        async with mpps_node(tmp_path) as (node, service):
            answers = await asyncio.to_thread(pynetdicom_scu, node.port, modality)
            return answers, service.step(UID), service.step(answers[2]["uid"])

    answers, step, assigned = run_bounded(main(), 60)
    assert [a["status"] for a in answers] == [0, 0, 0]
    assert answers[0]["uid"] == answers[1]["uid"] == UID
    assert step is not None and step.status == COMPLETED
    assert step.calling_ae == "CT1"
    assert step.dataset.PatientID == "PAT1"
    assert step.dataset.PerformedProcedureStepEndTime == "103000"
    assert step.dataset.PerformedSeriesSequence[0].ProtocolName == "HEAD"
    assert step.scheduled == [
        {
            "StudyInstanceUID": "1.2.826.0.1.3680043.9.7433.99.1",
            "AccessionNumber": "ACC1",
            "RequestedProcedureID": "RP1",
            "ScheduledProcedureStepID": "SPS1",
        }
    ]
    assert answers[2]["uid"].startswith("2.25.")
    assert assigned is not None and assigned.status == "IN PROGRESS"


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_bad_sequences_get_the_standard_statuses(tmp_path: Path) -> None:
    other = UID + ".1"

    def modality(assoc: Any) -> dict[str, dict[str, Any]]:
        answers = {}
        answers["set before create"] = _set(assoc, completed(), UID)
        answers["no station AE"] = _create(assoc, new_step(PerformedStationAETitle=None), UID)
        answers["empty modality"] = _create(assoc, new_step(Modality=""), UID)
        answers["created completed"] = _create(
            assoc, new_step(PerformedProcedureStepStatus=COMPLETED), UID
        )
        answers["create"] = _create(assoc, new_step(), UID)
        answers["duplicate"] = _create(assoc, new_step(), UID)
        patient = completed()
        patient.PatientID = "OTHER"
        answers["set patient"] = _set(assoc, patient, UID)
        wrong = completed()
        wrong.PerformedProcedureStepStatus = "DONE"
        answers["wrong status"] = _set(assoc, wrong, UID)
        answers["no series"] = _set(assoc, completed(series=0), UID)
        answers["complete"] = _set(assoc, completed(), UID)
        answers["set after"] = _set(assoc, completed(), UID)
        answers["bad uid"] = _create(assoc, new_step(), "1.2.03.x")
        answers["create other"] = _create(assoc, new_step(), other)
        answers["discontinue"] = _set(assoc, completed("DISCONTINUED", series=0), other)
        return answers

    async def main() -> dict[str, dict[str, Any]]:
        async with mpps_node(tmp_path) as (node, _):
            return await asyncio.to_thread(pynetdicom_scu, node.port, modality)

    answers = run_bounded(main(), 60)
    summary = {name: (a["status"], a["attributes"]) for name, a in answers.items()}
    assert summary == {
        "set before create": (0x0112, []),
        "no station AE": (0x0120, [0x00400241]),
        "empty modality": (0x0121, [0x00080060]),
        "created completed": (0x0106, [0x00400252]),
        "create": (0x0000, []),
        "duplicate": (0x0111, []),
        "set patient": (0x0105, [0x00100020]),
        "wrong status": (0x0106, [0x00400252]),
        "no series": (0x0121, [0x00400340]),
        "complete": (0x0000, []),
        "set after": (0x0110, []),
        "bad uid": (0x0117, []),
        "create other": (0x0000, []),
        "discontinue": (0x0000, []),  # DISCONTINUED may end with no series
    }
    assert answers["set after"]["comment"] == NOT_UPDATABLE_COMMENT
    assert answers["set after"]["error_id"] == 0xA710
    assert "PerformedStationAETitle" in answers["no station AE"]["comment"]


# --------------------------------------------------------------------------- relay


def test_accepted_messages_are_relayed_in_order(tmp_path: Path) -> None:
    def modality(assoc: Any) -> list[int]:
        progress = completed()
        del progress.PerformedProcedureStepStatus  # an update while IN PROGRESS
        progress.PerformedProcedureStepEndDate = ""
        return [
            _create(assoc, new_step(), UID)["status"],
            _set(assoc, completed(), UID + ".9")["status"],  # refused
            _set(assoc, progress, UID)["status"],
            _set(assoc, completed(), UID)["status"],
        ]

    with mpps_peer(tmp_path) as peer:

        async def main() -> list[int]:
            async with mpps_node(tmp_path, relay_port=peer.port) as (node, service):
                statuses = await asyncio.to_thread(pynetdicom_scu, node.port, modality)
                relay = service.relay
                assert relay is not None
                await wait_until(lambda: relay.counts["delivered"] >= 3)
                assert relay.counts["delivered"] == 3
                return statuses

        statuses = run_bounded(main(), 60)
        received = peer.received()
    assert statuses == [0, 0x0112, 0, 0]
    assert [(r["op"], r["uid"], r["status"]) for r in received] == [
        ("N-CREATE", UID, 0),
        ("N-SET", UID, 0),
        ("N-SET", UID, 0),
    ]
    assert {r["calling_ae"] for r in received} == {NODE_AE}
    create, _, final = (r["dataset"] for r in received)
    assert create["00100020"]["Value"] == ["PAT1"]  # the attribute list as sent
    assert final["00400252"]["Value"] == [COMPLETED]


def test_a_create_relayed_twice_counts_as_delivered(tmp_path: Path) -> None:
    """A node that stopped after sending but before marking the job done sends it again:
    the destination answers 0111, and the relay takes it as delivered."""
    with mpps_peer(tmp_path) as peer:

        async def main() -> list[str]:
            async with mpps_node(tmp_path, relay_port=peer.port) as (node, service):
                relay, queue = service.relay, service.queue
                assert relay is not None and queue is not None

                def modality(assoc: Any) -> int:
                    return int(_create(assoc, new_step(), UID)["status"])

                assert await asyncio.to_thread(pynetdicom_scu, node.port, modality) == 0
                await wait_until(lambda: relay.counts["delivered"] == 1)
                first = queue.jobs(RELAY_KIND)[0]
                queue.put(RELAY_KIND, first.payload, key=first.key, group=first.group)
                relay.wake()
                await wait_until(lambda: relay.counts["delivered"] == 2)
                return [job.state for job in queue.jobs(RELAY_KIND)]

        states = run_bounded(main(), 60)
        received = peer.received()
    assert states == ["done", "done"]
    assert [(r["op"], r["status"]) for r in received] == [("N-CREATE", 0), ("N-CREATE", 0x0111)]


def test_relay_waits_for_a_destination_that_is_down(tmp_path: Path) -> None:
    with mpps_peer(tmp_path, start=False) as peer:

        async def main() -> None:
            async with mpps_node(tmp_path, relay_port=peer.port) as (node, service):

                def modality(assoc: Any) -> list[int]:
                    return [
                        _create(assoc, new_step(), UID)["status"],
                        _set(assoc, completed(), UID)["status"],
                    ]

                # accepted at once although the destination cannot be reached
                assert await asyncio.to_thread(pynetdicom_scu, node.port, modality) == [0, 0]
                relay = service.relay
                assert relay is not None
                await wait_until(lambda: relay.counts["retried"] >= 2)
                assert peer.received() == []
                await asyncio.to_thread(peer.start)
                await wait_until(lambda: relay.counts["delivered"] == 2)
                assert service.queue is not None
                jobs = service.queue.jobs(RELAY_KIND)
                assert [j.state for j in jobs] == ["done", "done"]

        run_bounded(main(), 90)
        received = peer.received()
    assert [(r["op"], r["uid"], r["status"]) for r in received] == [
        ("N-CREATE", UID, 0),
        ("N-SET", UID, 0),
    ]


def test_relay_survives_a_restart_of_the_node(tmp_path: Path) -> None:
    with mpps_peer(tmp_path, start=False) as peer:

        async def accept_then_stop() -> None:
            async with mpps_node(tmp_path, relay_port=peer.port) as (node, _):

                def modality(assoc: Any) -> list[int]:
                    return [
                        _create(assoc, new_step(), UID)["status"],
                        _set(assoc, completed(), UID)["status"],
                    ]

                assert await asyncio.to_thread(pynetdicom_scu, node.port, modality) == [0, 0]

        async def restart() -> None:
            async with mpps_node(tmp_path, relay_port=peer.port) as (_, service):
                relay = service.relay
                assert relay is not None
                await wait_until(lambda: relay.counts["delivered"] == 2)
                step = service.step(UID)
                assert step is not None and step.status == COMPLETED

        run_bounded(accept_then_stop(), 60)
        assert peer.received() == []
        peer.start()
        run_bounded(restart(), 60)
        received = peer.received()
    assert [(r["op"], r["uid"]) for r in received] == [("N-CREATE", UID), ("N-SET", UID)]


def test_64_associations_create_steps_at_once(tmp_path: Path) -> None:
    count = 64
    together = threading.Barrier(count, timeout=60)

    def modality(n: int, port: int) -> list[int]:
        def script(assoc: Any) -> list[int]:
            together.wait()  # every association is open before any step is created
            uid = f"{UID}.{n}"
            step = new_step(PerformedProcedureStepID=f"PPS{n}")
            return [
                _create(assoc, step, uid)["status"],
                _set(assoc, completed(), uid)["status"],
            ]

        return pynetdicom_scu(port, script, calling_ae=f"CT{n}")  # type: ignore[no-any-return]

    with mpps_peer(tmp_path) as peer:

        async def main() -> list[list[int]]:
            async with mpps_node(tmp_path, relay_port=peer.port, relay_concurrency=8) as (
                node,
                service,
            ):
                loop = asyncio.get_running_loop()
                with ThreadPoolExecutor(count) as modalities:  # not the loop's own executor
                    answers = await asyncio.gather(
                        *(
                            loop.run_in_executor(modalities, modality, n, node.port)
                            for n in range(count)
                        )
                    )
                relay = service.relay
                assert relay is not None
                await wait_until(lambda: relay.counts["delivered"] >= 2 * count, 120)
                assert len(service.steps(COMPLETED)) == count
                return list(answers)

        answers = run_bounded(main(), 240)
        received = peer.received()
    assert answers == [[0, 0]] * count
    assert len(received) == 2 * count
    for n in range(count):
        ops = [r["op"] for r in received if r["uid"] == f"{UID}.{n}"]
        assert ops == ["N-CREATE", "N-SET"], (n, ops)
    assert all(r["status"] == 0 for r in received)


# --------------------------------------------------------------------------- our SCU


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomwire.services.cli", "mpps", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_reports_a_step_to_a_pynetdicom_scp(tmp_path: Path) -> None:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    ct = Path(str(get_testdata_file("CT_small.dcm")))
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(ct, images / "ct.dcm")
    (images / "notes.txt").write_text("not DICOM")
    attributes = tmp_path / "step.json"
    attributes.write_text(new_step().to_json())
    with mpps_peer(tmp_path) as peer:
        port = str(peer.port)
        created = _cli("127.0.0.1", port, "create", attributes, "-aec", PEER_AE, "-aet", "CT1")
        assert created.returncode == 0, created.stderr
        uid = created.stdout.strip()
        ended = _cli(
            "127.0.0.1", port, "-aec", PEER_AE, "set", uid, "--status", "COMPLETED",
            "--series", images,
        )  # fmt: skip
        assert ended.returncode == 0, ended.stderr
        unknown = _cli("127.0.0.1", port, "set", UID + ".404", "--status", "DISCONTINUED")
        received = peer.received()
    assert uid.startswith("2.25.")  # assigned by the peer and read from its response
    assert unknown.returncode == 1 and "0x0112" in unknown.stderr
    assert [(r["op"], r["uid"], r["calling_ae"]) for r in received[:2]] == [
        ("N-CREATE", uid, "CT1"),
        ("N-SET", uid, "DICOMWIRE"),
    ]
    series = received[1]["dataset"]["00400340"]["Value"]
    header = dcmread(ct, stop_before_pixels=True)
    assert [item["0020000E"]["Value"][0] for item in series] == [header.SeriesInstanceUID]
    image = series[0]["00081140"]["Value"][0]
    assert image["00081155"]["Value"] == [header.SOPInstanceUID]
    assert received[1]["dataset"]["00400252"]["Value"] == [COMPLETED]


def test_python_api_reports_a_step_to_a_pynetdicom_scp(tmp_path: Path) -> None:
    import dicomwire
    from dicomwire.services.mpps import completion, create_step, set_step, step_from_worklist

    with mpps_peer(tmp_path) as peer:

        async def main() -> str:
            async with dicomwire.connect(
                "127.0.0.1", peer.port, called_ae=PEER_AE, calling_ae="CT1", services=["mpps"]
            ) as client:
                step = step_from_worklist(
                    station_ae="CT1", modality="CT", PatientID="P9", PatientName="Roe^Richard"
                )
                uid = await create_step(client, step, UID)
                await set_step(client, uid, completion("DISCONTINUED"))
                return uid

        uid = run_bounded(main(), 60)
        received = peer.received()
    assert uid == UID
    assert [(r["op"], r["status"]) for r in received] == [("N-CREATE", 0), ("N-SET", 0)]
    assert received[0]["dataset"]["00100020"]["Value"] == ["P9"]
    assert received[1]["dataset"]["00400252"]["Value"] == ["DISCONTINUED"]
