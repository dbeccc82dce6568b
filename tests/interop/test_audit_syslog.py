"""Audit trail against a real collector: rsyslog (imudp, imtcp over gtls) started here.

PS3.15 A.6 SYSLOG-UDP (RFC 5426) and SYSLOG-TLS (RFC 5425 octet counting, mutual
authentication) carrying RFC 5424 messages whose MSG is the PS3.15 A.5.1 XML. rsyslog
parses each message itself (its rfc5424 parser) and writes the header fields it read and
the MSG to a file: a wrong framing, PRI, version or MSGID shows there. The node is driven
by DCMTK (storescu, findscu, echoscu) and by a TLS client without a certificate.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from dicomwire.services.audit import AuditConfig, AuditTrail, TLSSink, UDPSink
from dicomwire.services.audit import messages as m
from dicomwire.services.certs import make_test_pki
from dicomwire.services.storage import StorageConfig
from dicomwire.ul.tls import TLSConfig

from ..audit_schema import local_messages, validate
from ..conftest import find_tool, get_free_tcp_port, skip_or_fail, stop_process, wait_for_port
from ..services._support import node_config, running_node
from ._dcmtk import dcmtk, run

pytestmark = pytest.mark.interop

LOCALHOST = "127.0.0.1"
_FIELDS = "%inputname%\\t%pri%\\t%protocol-version%\\t%timereported:::date-rfc3339%\\t" + (
    "%hostname%\\t%app-name%\\t%procid%\\t%msgid%\\t%msg%\\n"
)
_CODED = ("csd-code", "codeSystemName", "originalText")


@dataclass
class Received:
    """One message as rsyslog parsed it."""

    input: str
    pri: int
    version: str
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    xml: ET.Element = field(repr=False)

    @property
    def event_id(self) -> str:
        return str(self.xml.find("EventIdentification/EventID").get("csd-code"))  # type: ignore[union-attr]


@dataclass
class Collector:
    udp_port: int
    tls_port: int
    output: Path
    pki: Path
    process: subprocess.Popen[bytes] | None = None

    def messages(self) -> list[Received]:
        if not self.output.exists():
            return []
        found = []
        for line in self.output.read_text("utf-8").splitlines():
            parts = line.split("\t", 8)
            if len(parts) < 9 or not parts[8].lstrip("\ufeff").startswith("<AuditMessage"):
                continue
            xml = ET.fromstring(parts[8].lstrip("\ufeff"))
            found.append(Received(parts[0], int(parts[1]), *parts[2:8], xml))  # type: ignore[arg-type]
        return found

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.messages()
            if len(found) >= count:
                return found
            time.sleep(0.1)
        return self.messages()


def _tls_files(pki: Path) -> TLSConfig:
    return TLSConfig(
        certificate=pki / "localhost-rsa.pem",
        key=pki / "localhost-rsa-key.pem",
        ca_file=pki / "ca.pem",
    )


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    make_test_pki(tmp_path / "pki", ("localhost",))
    return tmp_path / "pki"


def _write_config(collector: Collector, work: Path) -> Path:
    pki = collector.pki
    conf = work / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{work}" maxMessageSize="64k"\n'
        f'  defaultNetstreamDriverCAFile="{pki / "ca.pem"}"\n'
        f'  defaultNetstreamDriverCertFile="{pki / "localhost-ecdsa.pem"}"\n'
        f'  defaultNetstreamDriverKeyFile="{pki / "localhost-ecdsa-key.pem"}")\n'
        'module(load="imudp")\n'
        'module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1"'
        ' streamDriver.authMode="x509/certvalid")\n'
        f'template(name="fields" type="string" string="{_FIELDS}")\n'
        f'ruleset(name="audit") {{ action(type="omfile" file="{collector.output}"'
        ' template="fields") }\n'
        f'input(type="imudp" port="{collector.udp_port}" address="{LOCALHOST}" ruleset="audit")\n'
        f'input(type="imtcp" port="{collector.tls_port}" address="{LOCALHOST}" ruleset="audit")\n'
    )
    return conf


def _start(collector: Collector, work: Path) -> None:
    rsyslogd = find_tool("rsyslogd", "apt-get install rsyslog rsyslog-gnutls")
    if not list(Path("/usr/lib").glob("*/rsyslog/lmnsd_gtls.so")):
        skip_or_fail("rsyslog's TLS driver is missing (apt-get install rsyslog-gnutls)")
    conf = _write_config(collector, work)
    log = open(work / "rsyslogd.out", "wb")  # noqa: SIM115 - closed with the process
    collector.process = subprocess.Popen(
        [rsyslogd, "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        wait_for_port(collector.tls_port, collector.process)
    except BaseException:
        stop_process(collector.process)
        raise AssertionError((work / "rsyslogd.out").read_text(errors="replace")) from None
    # UDP has no handshake: the TLS listener is up, so is the UDP one (same start-up).


@pytest.fixture
def collector(tmp_path: Path, pki: Path) -> Iterator[Collector]:
    work = tmp_path / "rsyslog"
    work.mkdir()
    found = Collector(get_free_tcp_port(), get_free_tcp_port(), work / "received.log", pki)
    _start(found, work)
    try:
        yield found
    finally:
        if found.process is not None:
            stop_process(found.process)
        text = (work / "rsyslogd.out").read_text(errors="replace")
        assert "GnuTLS error" not in text, text  # e.g. a TLS close without close_notify


def check_message(message: ET.Element) -> None:
    """The required elements and attributes of PS3.15 A.5.1, in the schema's order."""
    validate(message)  # the A.5.1 schema itself (tests/data, RELAX NG)
    assert message.tag == "AuditMessage"
    tags = [child.tag for child in message]
    assert tags[0] == "EventIdentification"
    participants = tags.count("ActiveParticipant")
    assert participants >= 1
    assert tags[1 : 1 + participants] == ["ActiveParticipant"] * participants
    assert tags[1 + participants] == "AuditSourceIdentification"
    assert set(tags[2 + participants :]) <= {"ParticipantObjectIdentification"}
    event = message[0]
    assert event.get("EventActionCode") in {"C", "R", "U", "D", "E"}
    assert event.get("EventOutcomeIndicator") in {"0", "4", "8", "12"}
    assert event.get("EventDateTime", "").endswith("Z")
    coded = [event.find("EventID"), *event.findall("EventTypeCode")]
    for element in message.iter():
        if element.tag in ("RoleIDCode", "AuditSourceTypeCode", "ParticipantObjectIDTypeCode"):
            coded.append(element)
    for code in coded:
        assert code is not None
        assert all(code.get(name) for name in _CODED), ET.tostring(code)
    for participant in message.findall("ActiveParticipant"):
        assert participant.get("UserID")
        assert participant.get("UserIsRequestor") in ("true", "false")
    assert message.find("AuditSourceIdentification").get("AuditSourceID")  # type: ignore[union-attr]
    for item in message.findall("ParticipantObjectIdentification"):
        assert item.get("ParticipantObjectID")
        assert item.find("ParticipantObjectIDTypeCode") is not None


def check_header(received: Received, failed: bool = False) -> None:
    assert received.pri == 10 * 8 + (4 if failed else 5)  # authpriv.notice / .warning
    assert received.version == "1"
    assert received.hostname == socket.gethostname()
    assert received.app_name == "dicomwire"
    assert received.procid == str(os.getpid())
    assert received.msgid == "IHE+RFC-3881"
    assert received.timestamp.startswith(time.strftime("%Y-", time.gmtime()))


# --------------------------------------------------------------------------- the trail


def test_udp_and_tls_messages_parse_at_rsyslog(collector: Collector) -> None:
    source = m.Source("AUDITTEST", "SITE-1")
    sinks = [
        UDPSink(LOCALHOST, collector.udp_port),
        TLSSink(LOCALHOST, collector.tls_port, _tls_files(collector.pki)),
    ]
    with AuditTrail(sinks) as trail:
        trail.record(m.application_activity(source, True, user="tester"))
        trail.record(
            m.security_alert(
                source, kind=m.NODE_AUTHENTICATION, subject="10.0.0.9", description="bad cert"
            )
        )
    received = collector.wait_for(4)
    assert trail.dropped == 0
    assert sorted(r.input for r in received) == ["imtcp", "imtcp", "imudp", "imudp"]
    for message in received:
        check_message(message.xml)
        failed = message.event_id == "110113"
        check_header(message, failed=failed)
        source_element = message.xml.find("AuditSourceIdentification")
        assert source_element is not None
        assert source_element.get("AuditSourceID") == "AUDITTEST"
        assert source_element.get("AuditEnterpriseSiteID") == "SITE-1"
    assert {r.event_id for r in received} == {"110100", "110113"}


def test_tls_framing_is_octet_counting(collector: Collector) -> None:
    """RFC 5425 §4.3: MSG-LEN SP SYSLOG-MSG, so a line feed inside a message is content.

    With LF-terminated (non-transparent) framing rsyslog would see two messages here.
    """
    sink = TLSSink(LOCALHOST, collector.tls_port, _tls_files(collector.pki))
    try:
        sink.send(b"<85>1 2026-01-01T00:00:00Z host dicomwire 1 IHE+RFC-3881 - first\nsecond")
        sink.send(b"<85>1 2026-01-01T00:00:00Z host dicomwire 1 IHE+RFC-3881 - third")
    finally:
        sink.close()
    deadline = time.monotonic() + 10
    lines: list[str] = []
    while time.monotonic() < deadline and len(lines) < 2:
        lines = collector.output.read_text().splitlines() if collector.output.exists() else []
        time.sleep(0.1)
    assert len(lines) == 2, lines
    assert lines[0].split("\t")[8] == "first#012second"  # one message, its LF escaped
    assert lines[1].split("\t")[8] == "third"


def test_tls_collector_down_then_up_loses_nothing(tmp_path: Path, pki: Path) -> None:
    work = tmp_path / "later"
    work.mkdir()
    collector = Collector(get_free_tcp_port(), get_free_tcp_port(), work / "received.log", pki)
    trail = AuditTrail(
        [TLSSink(LOCALHOST, collector.tls_port, _tls_files(pki))], retry_seconds=0.2
    ).start()
    try:
        source = m.Source("AUDITTEST")
        for _ in range(5):
            trail.record(m.application_activity(source, True))
        time.sleep(0.5)  # the collector is down: the trail retries, keeps the messages
        assert trail.sent == 0
        _start(collector, work)
        received = collector.wait_for(5)
        assert len(received) == 5
        assert trail.dropped == 0
    finally:
        trail.close(timeout=5.0)
        if collector.process is not None:
            stop_process(collector.process)


def test_spooled_messages_survive_a_restart_while_the_collector_is_down(
    tmp_path: Path, pki: Path
) -> None:
    """The on-disk queue: messages a closed trail could not send are sent by the next one."""
    work = tmp_path / "later"
    work.mkdir()
    collector = Collector(get_free_tcp_port(), get_free_tcp_port(), work / "received.log", pki)
    spool = tmp_path / "spool"

    def trail() -> AuditTrail:
        sink = TLSSink(LOCALHOST, collector.tls_port, _tls_files(pki), spool=spool)
        return AuditTrail([sink], retry_seconds=0.2).start()

    first = trail()
    for n in range(4):
        first.record(m.application_activity(m.Source(f"RUN{n}"), True))
    first.close(timeout=3.0)
    assert first.sent == 0 and first.dropped == 0
    assert len(list(spool.glob("*.msg"))) == 4  # kept on disk, not lost
    second = trail()
    try:
        second.record(m.application_activity(m.Source("RUN4"), True))
        _start(collector, work)
        received = collector.wait_for(5)
        sources = [
            r.xml.find("AuditSourceIdentification").get("AuditSourceID")  # type: ignore[union-attr]
            for r in received
        ]
        assert sources == ["RUN0", "RUN1", "RUN2", "RUN3", "RUN4"]  # oldest first
    finally:
        second.close(timeout=5.0)
        if collector.process is not None:
            stop_process(collector.process)
    assert second.sent == 5
    assert not list(spool.glob("*.msg"))


# --------------------------------------------------------------------------- the node


def _tls_client_without_certificate(port: int, ca: Path) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    with socket.create_connection((LOCALHOST, port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw) as secure:
                secure.sendall(b"\x01\x00")  # TLS 1.3: the server's verdict comes after
                secure.recv(1)
        except (ssl.SSLError, OSError):
            pass  # refused, as it should be


def test_node_events_reach_the_collector(tmp_path: Path, collector: Collector) -> None:
    storescu, findscu, echoscu = dcmtk("storescu"), dcmtk("findscu"), dcmtk("echoscu")
    tls = _tls_files(collector.pki)
    config = node_config(storage=StorageConfig(root=tmp_path / "store", fsync=False))
    config.tls, config.tls_port = tls, get_free_tcp_port()
    local_log = tmp_path / "audit.log"
    config.sections["audit"] = AuditConfig(
        destinations=[
            f"file:{local_log}",
            f"udp://{LOCALHOST}:{collector.udp_port}",
            f"tls://{LOCALHOST}:{collector.tls_port}",
        ],
        enterprise_site_id="HOSPITAL",
    )
    ct = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
    header = dcmread(ct, stop_before_pixels=True)
    with running_node(config) as node:
        port = str(node.port)
        stored = run([storescu, "-aec", "DICOMWIRE", "-aet", "MODALITY", LOCALHOST, port, str(ct)])
        assert stored.returncode == 0, stored.stderr
        found = run(
            [findscu, "-S", "-aec", "DICOMWIRE", "-aet", "VIEWER", "-k", "QueryRetrieveLevel=STUDY",
             "-k", "StudyInstanceUID", "-k", f"PatientID={header.PatientID}", LOCALHOST, port]
        )  # fmt: skip
        assert found.returncode == 0, found.stderr
        refused = run([echoscu, "-aec", "NOT-US", "-aet", "INTRUDER", LOCALHOST, port])
        assert refused.returncode != 0
        _tls_client_without_certificate(int(config.tls_port), collector.pki / "ca.pem")
        plain = run([echoscu, "-aec", "DICOMWIRE", LOCALHOST, str(config.tls_port)])
        assert plain.returncode != 0  # plain DICOM to the TLS port: a handshake failure
        node.wait_idle()
    # start, import, query, 3 security alerts, stop: over UDP and TLS each
    received = collector.wait_for(14)
    by_input: dict[str, list[Received]] = {"imudp": [], "imtcp": []}
    for message in received:
        check_message(message.xml)
        check_header(message, failed=message.event_id == "110113")
        by_input[message.input].append(message)
    for messages in by_input.values():
        events = sorted(r.event_id for r in messages)
        assert events == ["110100", "110100", "110104", "110112", *["110113"] * 3], events
    local = local_messages(local_log)
    assert len(local) == 7
    messages = by_input["imtcp"]

    def event(code: str) -> list[ET.Element]:
        return [r.xml for r in messages if r.event_id == code]

    imported = event("110104")[0]
    assert imported.find("EventIdentification").get("EventActionCode") == "C"  # type: ignore[union-attr]
    roles = {
        p.get("UserID"): (p.get("UserIsRequestor"), p.find("RoleIDCode").get("csd-code"))  # type: ignore[union-attr]
        for p in imported.findall("ActiveParticipant")
    }
    assert roles == {"MODALITY": ("true", "110153"), "DICOMWIRE": ("false", "110152")}
    objects = {
        o.find("ParticipantObjectIDTypeCode").get("csd-code"): o  # type: ignore[union-attr]
        for o in imported.findall("ParticipantObjectIdentification")
    }
    assert objects["2"].get("ParticipantObjectID") == header.PatientID
    study = objects["110180"]
    assert study.get("ParticipantObjectID") == header.StudyInstanceUID
    sop_class = study.find("ParticipantObjectDescription/SOPClass")
    assert sop_class is not None
    assert sop_class.get("UID") == header.SOPClassUID
    assert sop_class.get("NumberOfInstances") == "1"

    query = event("110112")[0]
    target = query.find("ParticipantObjectIdentification")
    assert target is not None
    assert target.get("ParticipantObjectID") == "1.2.840.10008.5.1.4.1.2.2.1"  # study root FIND
    identifier = base64.b64decode(target.findtext("ParticipantObjectQuery") or "")
    assert header.PatientID.encode() in identifier
    starts = [e.find("EventIdentification/EventTypeCode").get("csd-code") for e in event("110100")]  # type: ignore[union-attr]
    assert starts == ["110120", "110121"]
    alerts = " ".join(
        e.findtext("EventIdentification/EventOutcomeDescription") or "" for e in event("110113")
    )
    # a client without a certificate: a refused certificate, told apart from other failures
    assert "certificate refused: the peer sent no certificate" in alerts
    assert "TLS handshake failed: not TLS" in alerts
    assert "association rejected" in alerts
    for alert in event("110113"):
        assert alert.find("EventIdentification").get("EventOutcomeIndicator") == "4"  # type: ignore[union-attr]
        source = alert.find("AuditSourceIdentification")
        assert source is not None and source.get("AuditEnterpriseSiteID") == "HOSPITAL"


def test_a_tool_audits_to_the_collector(collector: Collector, tmp_path: Path) -> None:
    """``dicomwire store --audit udp://...``: start, the export, stop reach rsyslog."""
    from dicomwire.services.cli import main

    ct = get_testdata_file("CT_small.dcm")
    header = dcmread(ct, stop_before_pixels=True)
    config = node_config(storage=StorageConfig(root=tmp_path / "store", fsync=False))
    with running_node(config) as node:
        audit = f"udp://{LOCALHOST}:{collector.udp_port}"
        assert main(["store", LOCALHOST, str(node.port), str(ct), "--audit", audit]) == 0
    received = collector.wait_for(3)
    assert [r.event_id for r in received] == ["110100", "110104", "110100"]
    for message in received:
        check_message(message.xml)
        assert message.app_name == "dicomwire-store" and message.msgid == "IHE+RFC-3881"
    objects = {
        o.get("ParticipantObjectID")
        for o in received[1].xml.iter("ParticipantObjectIdentification")
    }
    assert {header.StudyInstanceUID, header.PatientID} <= objects
