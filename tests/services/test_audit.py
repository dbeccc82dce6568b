"""Audit trail without a collector: messages (PS3.15 A.5.1), RFC 5424 header, the local
file, the bounded queue, the ``[audit]`` table, and the node's events for C-STORE, C-GET
and MPPS written to the local file (tests/interop/test_audit_syslog.py has rsyslog)."""

from __future__ import annotations

import base64
import datetime
import os
import socket
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

import dicomwire
from dicomwire.errors import ConfigError
from dicomwire.services.audit import Audit, AuditConfig, AuditTrail, FileSink, Sink, format_syslog
from dicomwire.services.audit import messages as m
from dicomwire.services.node import Node, NodeConfig, load_config
from dicomwire.services.storage import StorageConfig
from tests.audit_schema import local_messages, validate
from tests.conftest import run_bounded
from tests.interop._mpps_peer import new_step

SOURCE = m.Source("NODE1", "SITE")
MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"


def _local_messages(path: Path) -> list[ET.Element]:
    """The messages of the local file, each validated against the A.5.1 schema."""
    return local_messages(path)


def _event(message: ET.Element) -> str:
    return str(message.find("EventIdentification/EventID").get("csd-code"))  # type: ignore[union-attr]


def test_instances_transferred_message() -> None:
    message = m.instances_transferred(
        SOURCE,
        sender=m.Participant.ae("CT1", True, m.SOURCE, "10.1.2.3"),
        receiver=m.Participant.ae("NODE1", False, m.DESTINATION),
        patients=[("P1", "Doe^Jane\nline")],
        studies=[m.study_object("1.2.3", [("1.2.840.10008.5.1.4.1.1.2", 3)])],
    )
    xml = message.to_xml()
    validate(xml)
    assert b"\n" not in xml  # one message per line of the local file
    root = ET.fromstring(xml)
    event = root.find("EventIdentification")
    assert event is not None
    assert event.get("EventActionCode") == "C" and event.get("EventOutcomeIndicator") == "0"
    event_id = event.find("EventID")
    assert event_id is not None
    assert (event_id.get("csd-code"), event_id.get("codeSystemName")) == ("110104", "DCM")
    sender = root.findall("ActiveParticipant")[0]
    assert sender.get("UserID") == "CT1" and sender.get("UserIsRequestor") == "true"
    assert sender.get("AlternativeUserID") == "AETITLES=CT1"
    assert sender.get("NetworkAccessPointID") == "10.1.2.3"
    assert sender.get("NetworkAccessPointTypeCode") == "2"
    assert [c.tag for c in root] == [
        "EventIdentification",
        "ActiveParticipant",
        "ActiveParticipant",
        "AuditSourceIdentification",
        "ParticipantObjectIdentification",
        "ParticipantObjectIdentification",
    ]
    study, patient = root.findall("ParticipantObjectIdentification")
    assert study.get("ParticipantObjectTypeCodeRole") == "3"
    assert study.find("ParticipantObjectDescription/SOPClass").get("NumberOfInstances") == "3"  # type: ignore[union-attr]
    assert patient.findtext("ParticipantObjectName") == "Doe^Jane\nline"


def test_syslog_header_rfc5424() -> None:
    now = datetime.datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=datetime.UTC)
    message = m.security_alert(SOURCE, kind=m.NODE_AUTHENTICATION, subject="h", description="x")
    data = format_syslog(message, app_name="app name", hostname="node.example", now=now)
    header, body = data.split(b" - ", 1)
    assert header == b"<84>1 2026-03-04T05:06:07.890000Z node.example appname %d IHE+RFC-3881" % (
        os.getpid()
    )
    assert body.startswith(b"\xef\xbb\xbf<AuditMessage>")
    ok = format_syslog(m.application_activity(SOURCE, True), hostname="h")
    assert ok.startswith(b"<85>1 ")


def test_file_sink_rotates(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "audit.log", max_bytes=100, backups=2)
    for n in range(7):  # two lines fill a file
        sink.send(b"x" * 60 + b"%d" % n)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["audit.log", "audit.log.1", "audit.log.2", "audit.log.lock"]
    assert (tmp_path / "audit.log").read_bytes().endswith(b"6\n")
    assert (tmp_path / "audit.log.1").read_bytes().endswith(b"5\n")
    assert (tmp_path / "audit.log.2").read_bytes().startswith(b"x" * 60 + b"2")  # 0, 1 gone


class _Stuck(Sink):
    """A destination that takes its time (until released)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.received: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.release.wait(10)
        self.received.append(data)


def test_full_queue_drops_and_counts_without_blocking() -> None:
    sink = _Stuck()
    trail = AuditTrail([sink], queue_size=2).start()
    for _ in range(20):  # returns at once although nothing can be sent
        trail.record(m.application_activity(SOURCE, True))
    assert trail.dropped > 0
    sink.release.set()
    trail.close()
    assert len(sink.received) + trail.dropped == 20
    assert trail.sent == len(sink.received)


def test_audit_table_in_node_config(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        '[audit]\ndestinations = ["file:/tmp/a.log", "udp://127.0.0.1:514", "tls://arr:6514"]\n'
        'enterprise_site_id = "H1"\n'
    )
    config = load_config(path)
    audit = config.sections["audit"]
    assert isinstance(audit, AuditConfig)
    assert audit.destinations[2] == "tls://arr:6514" and audit.enterprise_site_id == "H1"
    path.write_text('[audit]\ndestinations = ["syslog://somewhere"]\n')
    with pytest.raises(ConfigError, match="audit"):
        load_config(path)
    path.write_text("[audit]\ncolour = 1\n")
    with pytest.raises(ConfigError, match="colour"):
        load_config(path)


def test_node_store_get_and_mpps_are_audited(tmp_path: Path) -> None:
    ct = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
    header = dcmread(ct, stop_before_pixels=True)
    log = tmp_path / "audit.log"
    config = NodeConfig(
        host="127.0.0.1",
        port=0,
        storage=StorageConfig(root=tmp_path / "store", fsync=False),
        shutdown_grace=1.0,
    )
    config.sections["audit"] = AuditConfig(destinations=[f"file:{log}"])

    async def main() -> None:
        async with Node(config) as node:
            assert any(isinstance(s, Audit) for s in node.services)
            async with dicomwire.connect(
                "127.0.0.1", node.port, called_ae="DICOMWIRE", calling_ae="CT1", sending=[ct]
            ) as client:
                assert await client.store(ct) == 0
            async with dicomwire.connect(
                "127.0.0.1",
                node.port,
                called_ae="DICOMWIRE",
                calling_ae="VIEWER",
                services=["get", "mpps", "worklist"],
            ) as client:
                query = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": header.StudyInstanceUID}
                result = await client.get(query, tmp_path / "got")
                assert result.completed == 1
                created = await client.n_create(MPPS_SOP_CLASS, new_step(PatientID="MPPS-7"))
                assert created.status == 0
                scheduled = client.find({"PatientID": "WL-1", "PatientName": ""}, model="worklist")
                assert [item async for item in scheduled] == []

    run_bounded(main(), 60)
    messages = _local_messages(log)
    events = [_event(e) for e in messages]
    assert events[0] == "110100" and events[-1] == "110100"  # start ... stop
    assert sorted(events[1:-1]) == ["110102", "110104", "110104", "110111", "110112"], events
    by_action = {
        (e.find("EventIdentification").get("EventActionCode"), _event(e)): e  # type: ignore[union-attr]
        for e in messages
    }
    imported = by_action[("C", "110104")]
    exported = by_action[("R", "110104")]
    for transfer in (imported, exported, by_action[("E", "110102")]):
        ids = {
            o.get("ParticipantObjectID") for o in transfer.iter("ParticipantObjectIdentification")
        }
        assert header.StudyInstanceUID in ids
    assert {
        o.get("ParticipantObjectID") for o in imported.iter("ParticipantObjectIdentification")
    } >= {header.PatientID}
    sender = exported.findall("ActiveParticipant")[0]
    assert sender.get("UserID") == "DICOMWIRE"
    assert sender.find("RoleIDCode").get("csd-code") == "110153"  # type: ignore[union-attr]
    receiver = exported.findall("ActiveParticipant")[1]
    assert receiver.get("UserID") == "VIEWER" and receiver.get("UserIsRequestor") == "true"
    procedure = by_action[("C", "110111")]
    patient = procedure.find("ParticipantObjectIdentification")
    assert patient is not None and patient.get("ParticipantObjectID") == "MPPS-7"
    assert socket.gethostname() in ET.tostring(messages[0]).decode()
    worklist = by_action[("E", "110112")].find("ParticipantObjectIdentification")
    assert worklist is not None
    assert worklist.get("ParticipantObjectID") == "1.2.840.10008.5.1.4.31"  # MWL FIND
    assert b"WL-1" in base64.b64decode(worklist.findtext("ParticipantObjectQuery") or "")


def test_user_identity_negotiation_is_audited(tmp_path: Path) -> None:
    from dicomwire.errors import AssociationRejected
    from dicomwire.ul.association import connect
    from dicomwire.ul.negotiation import RequestorConfig
    from dicomwire.ul.pdu import UserIdentityRQItem

    log = tmp_path / "audit.log"
    config = NodeConfig(
        host="127.0.0.1", port=0, storage=StorageConfig(root=tmp_path, discard=True)
    )
    config.sections["audit"] = AuditConfig(destinations=[f"file:{log}"])

    def check(identity: UserIdentityRQItem, calling: str, host: str | None) -> tuple[bool, None]:
        return identity.secondary_field == b"right", None

    def request(password: bytes) -> RequestorConfig:
        return RequestorConfig(
            "WORKSTATION",
            "DICOMWIRE",
            [("1.2.840.10008.1.1", ["1.2.840.10008.1.2"])],
            user_identity=UserIdentityRQItem(2, 0, b"alice", password),
        )

    async def main() -> None:
        node = Node(config)
        node.policy.identity_check = check
        async with node:
            async with connect("127.0.0.1", node.port, request(b"right")) as association:
                assert association.negotiated is not None
            with pytest.raises(AssociationRejected):
                async with connect("127.0.0.1", node.port, request(b"wrong")):
                    pass

    run_bounded(main(), 30)
    messages = _local_messages(log)
    logins = [e for e in messages if _event(e) == "110114"]
    outcomes = [e.find("EventIdentification").get("EventOutcomeIndicator") for e in logins]  # type: ignore[union-attr]
    assert outcomes == ["0", "4"]
    user = logins[0].find("ActiveParticipant")
    assert user is not None and user.get("UserID") == "alice"
    assert user.get("UserIsRequestor") == "true"
    login_type = logins[0].find("EventIdentification/EventTypeCode")
    assert login_type is not None and login_type.get("csd-code") == "110122"
    # the refused one is also a rejected association: a security alert
    assert [_event(e) for e in messages].count("110113") == 1


def test_serve_audits_to_a_local_file_by_default(tmp_path: Path) -> None:
    from dicomwire.services.node import default_services

    def config(**sections: object) -> NodeConfig:
        result = NodeConfig(storage=StorageConfig(root=tmp_path, fsync=False))
        result.sections.update(sections)
        return result

    def audits(node_config: NodeConfig) -> list[Audit]:
        return [s for s in default_services(node_config) if isinstance(s, Audit)]

    (default,) = audits(config())
    assert default.config.destinations == ["file:"]
    assert audits(config(audit=AuditConfig(enabled=False))) == []
    toml = tmp_path / "node.toml"
    toml.write_text(f"[storage]\nroot = '{tmp_path}'\n[audit]\nenabled = false\n")
    assert audits(load_config(toml)) == []
    assert audits(config(audit=AuditConfig(destinations=[]))) == []
    benchmark = NodeConfig(storage=StorageConfig(root=tmp_path, discard=True))
    assert audits(benchmark) == []  # a discarding receiver pays nothing...
    benchmark.sections["audit"] = AuditConfig()
    assert len(audits(benchmark)) == 1  # ...unless it asks

    node_config = config()
    node_config.host, node_config.port = "127.0.0.1", 0
    run_bounded(_serve(node_config), 30)
    events = [_event(e) for e in _local_messages(tmp_path / ".dicomwire" / "audit.log")]
    assert events == ["110100", "110100"]  # start, stop


async def _serve(config: NodeConfig) -> None:
    node = Node(config)
    async with node, dicomwire.connect("127.0.0.1", node.port, called_ae="DICOMWIRE") as c:
        assert await c.echo() == 0


def test_schema_rejects_what_a5_1_forbids() -> None:
    """The schema check can fail: a wrong outcome, a missing EventID, a bad date."""
    good = m.application_activity(SOURCE, True).to_xml()
    validate(good)
    for bad in (
        good.replace(b'EventOutcomeIndicator="0"', b'EventOutcomeIndicator="3"'),
        good.replace(b"<EventID ", b"<EventCode "),
        good.replace(b'EventDateTime="', b'EventDateTime="yesterday'),
        good.replace(b'UserIsRequestor="false"', b'UserIsRequestor="no"'),
        # CP-1638: AuditSourceTypeCode is a full coded value (no bare digit any more)
        good.replace(b'csd-code="4" codeSystemName="DCM"', b'csd-code="4"'),
    ):
        with pytest.raises(AssertionError, match=r"A\.5\.1"):
            validate(bad)
    study = m.instances_transferred(
        SOURCE,
        sender=m.Participant.ae("CT1", True, m.SOURCE),
        receiver=m.Participant.ae("NODE1", False, m.DESTINATION),
        patients=[("P1", None)],
        studies=[m.study_object("1.2.3", [("1.2.840.10008.5.1.4.1.1.2", 1)])],
    ).to_xml()
    validate(study)
    loose = study.replace(b"<ParticipantObjectDescription>", b"")
    with pytest.raises(AssertionError, match=r"A\.5\.1"):  # SOPClass belongs in the description
        validate(loose.replace(b"</ParticipantObjectDescription>", b""))


def test_configuration_change_is_a_security_alert(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"

    def config(max_associations: int) -> NodeConfig:
        result = NodeConfig(
            host="127.0.0.1",
            port=0,
            max_associations=max_associations,
            storage=StorageConfig(root=tmp_path / "store", fsync=False),
        )
        result.sections["audit"] = AuditConfig(destinations=[f"file:{log}"])
        return result

    def alerts() -> list[ET.Element]:
        return [
            e
            for e in _local_messages(log)
            if _event(e) == "110113"
            and e.find("EventIdentification/EventTypeCode").get("csd-code") == "110131"  # type: ignore[union-attr]
        ]

    run_bounded(_serve(config(100)), 30)  # first run: nothing to compare with
    run_bounded(_serve(config(100)), 30)  # the same configuration again
    assert alerts() == []
    state = tmp_path / "audit.log.config"
    assert str(tmp_path) not in state.read_text()  # digests, not values
    run_bounded(_serve(config(7)), 30)
    (alert,) = alerts()
    assert alert.find("EventIdentification").get("EventOutcomeIndicator") == "0"  # type: ignore[union-attr]
    description = alert.findtext("EventIdentification/EventOutcomeDescription")
    assert description == "configuration changed since the last run: max_associations"
    run_bounded(_serve(config(7)), 30)
    assert len(alerts()) == 1


_WRITER = """
import sys
from pathlib import Path
from dicomwire.services.audit import FileSink
path, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
sink = FileSink(path, max_bytes=4096, backups=1000)
sys.stdin.readline()  # both writers start together
for number in range(count):
    sink.send(f"<{name} {number:05d} {'x' * (40 + number % 60)}>".encode())
"""


def test_processes_sharing_one_file_lose_nothing_across_rotations(tmp_path: Path) -> None:
    """``serve --workers 2``: two processes append to one audit file and rotate it."""
    import subprocess
    import sys

    path = tmp_path / "audit.log"
    count = 1500
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), name, str(count)],
            stdin=subprocess.PIPE,
        )
        for name in ("A", "B")
    ]
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.write(b"go\n")
        writer.stdin.close()
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    files = [path, *sorted(tmp_path.glob("audit.log.[0-9]*"))]
    assert len(files) > 20  # rotated many times while both wrote
    lines = [line for file in files for line in file.read_bytes().split(b"\n") if line]
    assert all(line.startswith(b"<") and line.endswith(b">") for line in lines)  # none split
    assert all(file.stat().st_size < 4096 + 200 for file in files)  # rotated once per crossing
    for name in ("A", "B"):
        numbers = sorted(int(line.split()[1]) for line in lines if line[1:2] == name.encode())
        assert numbers == list(range(count))  # each message once, none lost


def test_docs_and_the_statement_list_the_same_node_events() -> None:
    """docs/audit.md's event table and NODE_EVENTS (the conformance statement's) agree."""
    import re

    from dicomwire.services.audit.service import NODE_EVENTS
    from dicomwire.services.conformance import conformance_statement

    docs = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text("utf-8")
    table = docs.split("## Events", 1)[1].split("\n\n", 2)[1]
    documented = {re.search(r"\((\d{6})\)", row).group(1) for row in table.splitlines()[2:]}  # type: ignore[union-attr]
    assert documented == {event.event.code for event in NODE_EVENTS}
    statement = conformance_statement()
    for event in NODE_EVENTS:
        assert f"| {event.event.text} ({event.event.code}) | {event.detail} |" in statement
