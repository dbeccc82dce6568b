"""``--audit`` on the tools (PS3.15 A.5.3, SCU side) and the node's Order Records.

Each tool runs in-process (``dicomwire.services.cli.main``) against a dicomwire node on
its own thread (a real peer on 127.0.0.1) and writes its audit messages to a local file;
every message is validated against the A.5.1 schema (tests/audit_schema.py). The node
audits to its default local file, where the worklist's Order Records land.
"""

from __future__ import annotations

import base64
import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from dicomwire.services.cli import main
from dicomwire.services.directory import RemoteAE
from dicomwire.services.index import SQLiteIndex
from dicomwire.services.node import NodeConfig
from dicomwire.services.print import PrintConfig
from dicomwire.services.storage import StorageConfig
from tests.audit_schema import local_messages

from ._support import LOCALHOST, free_tcp_port, running_node
from .test_worklist_data import entry

STUDY = "1.2.826.0.1.3680043.9.7433.96.1"


def _event(message: ET.Element) -> tuple[str, str]:
    event = message.find("EventIdentification")
    assert event is not None
    code = event.find("EventID")
    assert code is not None
    return str(code.get("csd-code")), str(event.get("EventActionCode"))


def _objects(message: ET.Element) -> set[str]:
    return {
        str(o.get("ParticipantObjectID")) for o in message.iter("ParticipantObjectIdentification")
    }


def _run(log: Path, *argv: str) -> list[ET.Element]:
    """Run one tool with ``--audit file:LOG``; the messages it added (start ... stop)."""
    before = len(local_messages(log)) if log.exists() else 0
    assert main([*argv, "--audit", f"file:{log}"]) == 0, argv
    added = local_messages(log)[before:]
    assert _event(added[0]) == ("110100", "E") and _event(added[-1]) == ("110100", "E")
    start, stop = (m.find("EventIdentification/EventTypeCode") for m in (added[0], added[-1]))
    assert start is not None and start.get("csd-code") == "110120"  # Application Start
    assert stop is not None and stop.get("csd-code") == "110121"  # Application Stop
    return added[1:-1]


def _wait_for(path: Path, wanted: tuple[str, str], timeout: float = 10.0) -> list[ET.Element]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in local_messages(path) if _event(m) == wanted] if path.exists() else []
        if found:
            return found
        time.sleep(0.05)
    return []


def test_tools_audit_what_they_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ct = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
    header = dcmread(ct, stop_before_pixels=True)
    log = tmp_path / "tools.log"
    root = tmp_path / "node"
    move_port = free_tcp_port()
    config = NodeConfig(
        storage=StorageConfig(root=root, fsync=False),
        nodes=[RemoteAE("MOVER", LOCALHOST, move_port)],
    )
    config.sections["print"] = PrintConfig()
    node_log = root / ".dicomwire" / "audit.log"  # the node's default trail
    with running_node(config) as node:
        peer = [LOCALHOST, str(node.port)]

        assert _run(log, "echo", *peer) == []  # start and stop only

        (sent,) = _run(log, "store", *peer, str(ct))
        assert _event(sent) == ("110104", "R")  # exported
        assert {header.StudyInstanceUID, header.PatientID} <= _objects(sent)
        sender, receiver = sent.findall("ActiveParticipant")
        assert sender.get("UserID") == "DICOMWIRE" and sender.get("UserIsRequestor") == "true"
        assert receiver.get("NetworkAccessPointID") == LOCALHOST

        (query,) = _run(log, "find", *peer, "-S", "-k", f"PatientID={header.PatientID}")
        assert _event(query) == ("110112", "E")
        detail = query.find("ParticipantObjectIdentification/ParticipantObjectQuery")
        assert detail is not None
        assert header.PatientID.encode() in base64.b64decode(detail.text or "")

        got = _run(
            log, "get", *peer, "-S", "-k", f"StudyInstanceUID={header.StudyInstanceUID}",
            "--output-directory", str(tmp_path / "got"),
        )  # fmt: skip
        (received,) = got
        assert _event(received) == ("110104", "C")  # imported
        assert header.StudyInstanceUID in _objects(received)

        (moved_in,) = _run(
            log, "move", *peer, "-S", "-k", f"StudyInstanceUID={header.StudyInstanceUID}",
            "--aet", "MOVER", "--port", str(move_port), "-od", str(tmp_path / "moved"),
        )  # fmt: skip
        assert _event(moved_in) == ("110104", "C")  # imported by our own storage SCP
        assert {header.StudyInstanceUID, header.PatientID} <= _objects(moved_in)

        (committed,) = _run(log, "commit", *peer, str(ct), "--timeout", "20")
        assert _event(committed) == ("110106", "R")  # Data Export
        media = committed.find("ActiveParticipant/MediaIdentifier/MediaType")
        assert media is not None and media.get("csd-code") == "110037"  # URI

        (printed,) = _run(log, "print", *peer, str(ct))
        assert _event(printed) == ("110106", "R")
        media = printed.find("ActiveParticipant/MediaIdentifier/MediaType")
        assert media is not None and media.get("csd-code") == "110010"  # Film
        assert header.PatientID in _objects(printed)
        # the printer stored the film's image as a Hardcopy image: Instances Accessed, create
        (film,) = _wait_for(node_log, ("110103", "C"))
        description = film.find("ParticipantObjectIdentification/ParticipantObjectDescription")
        assert description is not None
        (hardcopy,) = description.findall("SOPClass")
        assert hardcopy.get("UID") == "1.2.840.10008.5.1.1.29"  # Hardcopy Grayscale Image
        assert hardcopy.get("NumberOfInstances") == "1"
        accessors = film.findall("ActiveParticipant")
        assert [a.get("UserID") for a in accessors] == ["DICOMWIRE", "DICOMWIRE"]
        assert [a.get("UserIsRequestor") for a in accessors] == ["true", "false"]
        assert not _wait_for(node_log, ("110106", "R"), timeout=0.1)  # no Data Export here

        # the worklist: an order added with the tool, performed (MPPS), removed
        item = entry(
            study=STUDY, name="DOE^JANE", patient_id="WL-9", accession="A9", procedure_id="RP9",
            modality="CT", station_ae="CT1", date="20261129", time="090000",
            station_name="CT9", step_id="SPS9",
        )  # fmt: skip
        source = tmp_path / "order.json"
        source.write_text(json.dumps(item.to_json_dict()))
        database = ["--database", str(root / ".dicomwire" / "node.sqlite")]
        (added,) = _run(log, "worklist", "add", str(source), *database)
        assert _event(added) == ("110109", "C")  # Order Record
        assert {"WL-9", STUDY} <= _objects(added)

        (scheduled,) = _run(log, "worklist", "query", *peer, "--patient-id", "WL-9")
        assert _event(scheduled) == ("110112", "E")
        assert _objects(scheduled) == {"1.2.840.10008.5.1.4.31"}

        (performed,) = _run(log, "mpps", *peer, "create", "--from-worklist", str(source))
        assert _event(performed) == ("110111", "C")  # Procedure Record
        assert "WL-9" in _objects(performed)
        # the node moved the order on (STARTED): an Order Record update in its own trail
        (moved,) = _wait_for(node_log, ("110109", "U"))
        assert {"WL-9", STUDY} <= _objects(moved)
        description = moved.findtext("EventIdentification/EventOutcomeDescription") or ""
        assert "STARTED" in description

        (removed,) = _run(log, "worklist", "remove", STUDY, *database)
        assert _event(removed) == ("110109", "D")
        assert "WL-9" in _objects(removed)
    capsys.readouterr()
    node_events = [_event(m) for m in local_messages(node_log)]
    assert ("110111", "C") in node_events and ("110104", "C") in node_events
    assert node_events.count(("110102", "E")) == 2  # the get and the move began
    assert node_events.count(("110104", "R")) == 2  # and ended (sent by the node)

    # a stored file deleted by hand: `index rebuild` removes its row (Instances Accessed, D)
    index = SQLiteIndex(root / ".dicomwire" / "node.sqlite")
    stored = index.locate(header.SOPInstanceUID)
    index.close()
    assert stored is not None
    stored.unlink()
    films = sorted((root / "print").rglob("*.dcm"))
    assert films  # the print spool under the root: its Hardcopy images are left out
    (deleted,) = _run(log, "index", "rebuild", str(root))
    assert _event(deleted) == ("110103", "D")
    assert {header.StudyInstanceUID, header.PatientID} <= _objects(deleted)
    (ct_class,) = deleted.iter("SOPClass")
    assert (ct_class.get("UID"), ct_class.get("NumberOfInstances")) == (header.SOPClassUID, "1")
    assert _run(log, "index", "rebuild", str(root)) == []  # nothing removed: nothing recorded


def test_audit_flag_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["echo", LOCALHOST, "104", "--audit", "syslog://somewhere"])
    assert exit_info.value.code == 2
    # SYSLOG-TLS needs the tool's certificates (--tls --cert --key --ca): a usage error
    assert main(["echo", LOCALHOST, "104", "--audit", "tls://127.0.0.1:6514"]) == 2
    assert "--audit" in capsys.readouterr().err


def test_node_orders_added_and_removed_through_the_store_api(tmp_path: Path) -> None:
    root = tmp_path / "node"
    node_log = root / ".dicomwire" / "audit.log"
    item = entry(
        study=STUDY, name="ROE^RICHARD", patient_id="WL-10", accession="A10",
        procedure_id="RP10", modality="MR", station_ae="MR1", date="20261129",
        time="100000", station_name="MR1",
    )  # fmt: skip
    with running_node(NodeConfig(storage=StorageConfig(root=root, fsync=False))) as node:
        assert node.node is not None
        store = node.node.service("worklist").store  # type: ignore[attr-defined]
        key = store.add(item)
        assert store.remove(key) == 1
    orders = [m for m in local_messages(node_log) if _event(m)[0] == "110109"]
    assert [_event(m)[1] for m in orders] == ["C", "D"]
    for order in orders:
        assert {"WL-10", STUDY} <= _objects(order)
