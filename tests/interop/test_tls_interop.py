"""DICOM TLS (PS3.15 Annex B) between dicomwire and DCMTK 3.6 / OpenSSL, both directions.

- ``echoscu``/``storescu +tls KEY CERT +cf CA +py|+px|+pz`` -> a dicomwire node's TLS port
  (in process, 127.0.0.1, port 0), RSA and ECDSA certificates, mutual authentication;
- ``dicomwire echo --tls`` / ``dicomwire store --tls`` -> ``storescp +tls ... +py`` run in
  inetd mode on one end of a 127.0.0.1 connection (DCMTK 3.6.7's storescp cannot bind one
  interface, so it never listens); a relay in the test accepts the dicomwire client on
  127.0.0.1 and checks that both directions really carry TLS records;
- downgrades with ``openssl s_client`` (TLS 1.0, TLS 1.1, a suite outside the profile, an
  untrusted client certificate): each fails its handshake cleanly, the node logs one line
  with the reason, and a normal TLS association works right after.

DCMTK tools run with TCP_NODELAY=1; every process is stopped in ``finally`` and bounded by a
timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydicom import dcmread

from dicomwire.services.certs import make_test_pki
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig
from dicomwire.testing.corpus import write_corpus
from dicomwire.ul.association import Timeouts
from dicomwire.ul.tls import PROFILE_CIPHERS, TLSConfig, TLSProfile

from ..conftest import LOCALHOST, connected_tcp_pair, find_tool, get_free_tcp_port, stop_process
from ._dcmtk_store_helpers import ToolResult
from ._dcmtk_store_helpers import run_tool as run_dcmtk_tool

pytestmark = pytest.mark.interop

T = TypeVar("T")
TIMEOUT = 30.0
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
PROFILE_FLAG = {
    TLSProfile.NON_DOWNGRADING_BCP195: "+py",
    TLSProfile.BCP195: "+px",
    TLSProfile.EXTENDED_BCP195: "+pz",
}
HANDSHAKE_FAILED = "TLS handshake with %s failed: %s"
TLS_HANDSHAKE_RECORD = 0x16


def need_tool(name: str) -> str:
    """Path of ``name``; skip when missing (fail when ``CI=true``)."""
    return find_tool(name, "apt-get install dcmtk openssl")


def dicomwire_argv() -> list[str]:
    script = Path(sys.executable).with_name("dicomwire")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dicomwire.services.cli"]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    async def limited() -> T:
        return await asyncio.wait_for(coroutine, 90)

    return asyncio.run(limited())


# --------------------------------------------------------------------------- certificates


@dataclass
class PKI:
    directory: Path
    ca: Path
    #: A CA with another name that the node does not trust, and a leaf it issued.
    foreign_ca: Path
    foreign_cert: Path
    foreign_key: Path

    def cert(self, kind: str) -> Path:
        return self.directory / f"localhost-{kind}.pem"

    def key(self, kind: str) -> Path:
        return self.directory / f"localhost-{kind}-key.pem"

    def p12(self, kind: str) -> Path:
        return self.directory / f"localhost-{kind}.p12"

    def config(self, kind: str = "rsa", **options: Any) -> TLSConfig:
        return TLSConfig(
            certificate=self.cert(kind), key=self.key(kind), ca_file=self.ca, **options
        )

    def dcmtk_tls(self, kind: str, ca: Path | None = None) -> list[str]:
        return ["+tls", str(self.key(kind)), str(self.cert(kind)), "+cf", str(ca or self.ca)]


def _foreign(directory: Path) -> tuple[Path, Path, Path]:
    """A CA named unlike the test CA and a localhost certificate it issued."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "somebody else's CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "leaf.pem", directory / "leaf-key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    ca, _ = make_test_pki(directory, ("localhost",))
    foreign_ca, foreign_cert, foreign_key = _foreign(tmp_path_factory.mktemp("foreign"))
    return PKI(directory, ca, foreign_ca, foreign_cert, foreign_key)


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_corpus(tmp_path_factory.mktemp("ct"), 2, "ct")


@pytest.fixture(autouse=True)
def _capture_dicomwire_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dicomwire")


# --------------------------------------------------------------------------- processes


async def run_tool(argv: Sequence[str], timeout: float = TIMEOUT) -> ToolResult:
    """A DCMTK client run to completion with TCP_NODELAY set (see DCMTK_ENV)."""
    return await run_dcmtk_tool(argv, timeout, env=DCMTK_ENV)


# --------------------------------------------------------------------------- the dicomwire node


@dataclass
class Served:
    node: Node
    tls_port: int
    checks: list[tuple[Mapping[str, Any] | None, str]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def tls_node(tls: TLSConfig, storage: StorageConfig | None = None) -> AsyncIterator[Served]:
    config = NodeConfig(
        host=LOCALHOST,
        port=0,
        tls=tls,
        tls_port=0,
        promiscuous=True,
        storage=storage or StorageConfig(root=Path("unused"), discard=True),
        timeouts=Timeouts(artim=10, acse=10, dimse=None, network_idle=10),
        shutdown_grace=1.0,
    )
    node = Node(config)
    served = Served(node, 0)

    def check(cert: Mapping[str, Any] | None, calling: str) -> bool:
        served.checks.append((cert, calling))
        return True

    node.policy.certificate_check = check
    await node.start()
    try:
        served.tls_port = int(node.server.sockets[1].getsockname()[1])
        yield served
    finally:
        await node.shutdown()


def subject_cn(cert: Mapping[str, Any] | None) -> str | None:
    if not cert:
        return None
    return str(dict(pair for rdn in cert["subject"] for pair in rdn).get("commonName"))


def node_failures(caplog: pytest.LogCaptureFixture, served: Served) -> list[str]:
    """The node's "TLS handshake with PEER failed: REASON" lines, each checked for the peer."""
    lines = []
    for record in caplog.records:
        if record.name == "dicomwire.ul.tls" and record.msg == HANDSHAKE_FAILED:
            assert isinstance(record.args, tuple)
            peer = tuple(record.args[0])
            assert peer[0] == LOCALHOST and peer[1] != served.tls_port, peer
            assert record.levelno == logging.WARNING
            lines.append(record.getMessage())
    return lines


def echoscu_argv(binary: str, port: int, tls: Sequence[str], *more: str) -> list[str]:
    return [binary, *tls, *more, "-aet", "ECHOSCU", "-aec", "DICOMWIRE", "-d", LOCALHOST, str(port)]


def tls_details(output: str) -> tuple[str | None, str | None]:
    """(protocol, cipher suite) from DCMTK's "TLS CONNECTION DETAILS" debug block."""
    protocol = cipher = None
    for line in output.splitlines():
        if "Protocol    :" in line:
            protocol = line.split("Protocol    :", 1)[1].strip()
        if "Ciphersuite :" in line:
            cipher = line.split("Ciphersuite :", 1)[1].split(",")[0].strip()
    return protocol, cipher


# --------------------------------------------------------------------------- DCMTK -> dicomwire


@pytest.mark.parametrize("client_kind", ["rsa", "ecdsa"])
@pytest.mark.parametrize("server_kind", ["rsa", "ecdsa"])
@pytest.mark.parametrize("profile", list(TLSProfile), ids=lambda p: p.value)
def test_echoscu_tls_to_node(
    pki: PKI, profile: TLSProfile, server_kind: str, client_kind: str
) -> None:
    echoscu = need_tool("echoscu")

    async def scenario() -> tuple[ToolResult, Served]:
        async with tls_node(pki.config(server_kind, profile=profile)) as served:
            argv = echoscu_argv(
                echoscu, served.tls_port, pki.dcmtk_tls(client_kind), PROFILE_FLAG[profile]
            )
            return await run_tool(argv), served

    done, served = run(scenario())
    assert done.returncode == 0, done.output
    assert "Received Echo Response (Success)" in done.output
    protocol, cipher = tls_details(done.output)
    assert protocol in ("TLSv1.2", "TLSv1.3"), done.output
    if protocol == "TLSv1.2":
        assert cipher in PROFILE_CIPHERS[profile]
    if profile is TLSProfile.EXTENDED_BCP195:  # DCMTK's Extended profile is TLS 1.2, ECDHE
        algorithm = "ECDSA" if server_kind == "ecdsa" else "RSA"
        assert (protocol, cipher) == ("TLSv1.2", f"ECDHE-{algorithm}-AES128-GCM-SHA256")
    ((cert, calling),) = served.checks  # mutual authentication: the node saw DCMTK's cert
    assert (subject_cn(cert), calling) == ("localhost", "ECHOSCU")


@pytest.mark.parametrize("client_kind", ["rsa", "ecdsa"])
def test_storescu_tls_to_node(
    pki: PKI, ct_files: list[Path], tmp_path: Path, client_kind: str
) -> None:
    storescu = need_tool("storescu")
    root = tmp_path / "stored"

    async def scenario() -> ToolResult:
        storage = StorageConfig(root=root, fsync=False)
        async with tls_node(pki.config("ecdsa" if client_kind == "rsa" else "rsa"), storage) as s:
            argv = [
                storescu,
                *pki.dcmtk_tls(client_kind),
                "+py",
                "-aet",
                "STORESCU",
                "-aec",
                "DICOMWIRE",
                LOCALHOST,
                str(s.tls_port),
                *map(str, ct_files),
            ]
            return await run_tool(argv)

    done = run(scenario())
    assert done.returncode == 0, done.output
    sent = {str(dcmread(p).SOPInstanceUID): bytes(dcmread(p).PixelData) for p in ct_files}
    stored = {}
    for path in root.rglob("*.dcm"):
        ds = dcmread(path)
        stored[str(ds.SOPInstanceUID)] = bytes(ds.PixelData)
    assert stored == sent


def test_echoscu_without_tls_on_tls_port(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    echoscu = need_tool("echoscu")

    async def scenario() -> tuple[ToolResult, ToolResult, Served]:
        async with tls_node(pki.config()) as served:
            plain = await run_tool(echoscu_argv(echoscu, served.tls_port, []), timeout=20)
            secure = await run_tool(echoscu_argv(echoscu, served.tls_port, pki.dcmtk_tls("rsa")))
            return plain, secure, served

    plain, secure, served = run(scenario())
    assert plain.returncode != 0
    assert "Received Echo Response" not in plain.output
    assert secure.returncode == 0, secure.output
    (line,) = node_failures(caplog, served)
    assert "not TLS" in line


def test_echoscu_with_untrusted_certificate(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    echoscu = need_tool("echoscu")
    foreign = ["+tls", str(pki.foreign_key), str(pki.foreign_cert), "+cf", str(pki.ca)]

    async def scenario() -> tuple[ToolResult, ToolResult, Served]:
        async with tls_node(pki.config()) as served:
            refused = await run_tool(echoscu_argv(echoscu, served.tls_port, foreign, "+px"))
            secure = await run_tool(echoscu_argv(echoscu, served.tls_port, pki.dcmtk_tls("rsa")))
            return refused, secure, served

    refused, secure, served = run(scenario())
    assert refused.returncode != 0
    assert "Received Echo Response" not in refused.output
    assert secure.returncode == 0, secure.output
    (line,) = node_failures(caplog, served)
    assert "certificate verification failed: unable to get local issuer certificate" in line
    assert [subject_cn(c) for c, _ in served.checks] == ["localhost"]


def test_echoscu_refuses_untrusted_node(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    echoscu = need_tool("echoscu")

    async def scenario() -> tuple[ToolResult, Served]:
        async with tls_node(pki.config()) as served:
            tls = pki.dcmtk_tls("ecdsa", ca=pki.foreign_ca)
            return await run_tool(echoscu_argv(echoscu, served.tls_port, tls)), served

    refused, served = run(scenario())
    assert refused.returncode != 0
    assert "Received Echo Response" not in refused.output
    (line,) = node_failures(caplog, served)
    assert "does not trust our certificate (alert unknown_ca)" in line
    assert served.checks == []


def test_echoscu_without_certificate_on_node(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    """``echoscu +tla`` (TLS without a certificate) against a node requiring one."""
    echoscu = need_tool("echoscu")

    async def scenario() -> tuple[ToolResult, Served]:
        async with tls_node(pki.config()) as served:
            anonymous = ["+tla", "+cf", str(pki.ca)]
            return await run_tool(echoscu_argv(echoscu, served.tls_port, anonymous)), served

    refused, served = run(scenario())
    assert refused.returncode != 0
    assert "Received Echo Response" not in refused.output
    (line,) = node_failures(caplog, served)
    assert line.endswith("failed: the peer sent no certificate"), line
    assert served.checks == []


# --------------------------------------------------------------------------- dicomwire -> DCMTK


@dataclass
class Relay:
    """Accepts one client on 127.0.0.1 and relays it to storescp's end of a socket pair."""

    upstream: Any
    port: int = 0
    from_client: bytearray = field(default_factory=bytearray)
    from_server: bytearray = field(default_factory=bytearray)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(sock=self.upstream)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, self.from_client),
                self._pump(up_reader, writer, self.from_server),
            )
        finally:
            writer.close()
            up_writer.close()
            self.done.set()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray
    ) -> None:
        try:
            while data := await reader.read(1 << 16):
                if len(record) < 64:
                    record += data[:64]
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if writer.can_write_eof():
                    writer.write_eof()


@contextlib.asynccontextmanager
async def storescp_tls(
    pki: PKI, kind: str, directory: Path, *options: str
) -> AsyncIterator[tuple[Relay, subprocess.Popen[bytes]]]:
    """``storescp --inetd +tls`` serving one association, reachable through a relay."""
    binary = need_tool("storescp")
    output = directory / "received"
    output.mkdir()
    ours, theirs = connected_tcp_pair()
    argv = [
        binary,
        "--inetd",
        "-aet",
        "ANY-SCP",
        *pki.dcmtk_tls(kind),
        "-pw",  # the key is not encrypted: never prompt (stdin is the connection)
        *options,
        "-od",
        str(output),
    ]
    with open(directory / "storescp.log", "wb") as log:
        process = subprocess.Popen(
            argv, stdin=theirs, stdout=log, stderr=subprocess.STDOUT, env=DCMTK_ENV
        )
    theirs.close()
    relay = Relay(ours)
    server = await asyncio.start_server(relay.handle, LOCALHOST, 0)
    relay.port = int(server.sockets[0].getsockname()[1])
    try:
        yield relay, process
    finally:
        server.close()
        await server.wait_closed()
        ours.close()
        await asyncio.to_thread(stop_process, process)


def dicomwire_tls(pki: PKI, kind: str, form: str, tmp_path: Path) -> list[str]:
    if form == "pkcs12":
        password = tmp_path / "password.txt"
        password.write_text("dicomwire\n")
        return [
            "--tls",
            "--pkcs12",
            str(pki.p12(kind)),
            "--password-file",
            str(password),
            "--ca",
            str(pki.ca),
        ]
    return [
        "--tls",
        "--cert",
        str(pki.cert(kind)),
        "--key",
        str(pki.key(kind)),
        "--ca",
        str(pki.ca),
    ]


@pytest.mark.parametrize(
    ("server_kind", "client_kind", "form"),
    [("rsa", "ecdsa", "pem"), ("ecdsa", "rsa", "pkcs12"), ("rsa", "rsa", "pkcs12")],
)
def test_dicomwire_echo_tls_to_storescp(
    pki: PKI, tmp_path: Path, server_kind: str, client_kind: str, form: str
) -> None:
    async def scenario() -> tuple[ToolResult, Relay, int]:
        async with storescp_tls(pki, server_kind, tmp_path, "+py", "--ignore") as (relay, scp):
            argv = [*dicomwire_argv(), "echo", LOCALHOST, str(relay.port), "--repeat", "2"]
            done = await run_tool([*argv, *dicomwire_tls(pki, client_kind, form, tmp_path)])
            await asyncio.wait_for(relay.done.wait(), TIMEOUT)
            return done, relay, await asyncio.to_thread(scp.wait, TIMEOUT)

    done, relay, scp_status = run(scenario())
    assert done.returncode == 0, done.output
    assert "success (0x0000)" in done.output
    assert "Traceback" not in done.output
    # Both directions start with a TLS handshake record, never a PDU (0x01 / 0x02).
    assert relay.from_client[0] == TLS_HANDSHAKE_RECORD
    assert relay.from_server[0] == TLS_HANDSHAKE_RECORD
    assert scp_status == 0


def test_dicomwire_store_tls_to_storescp(pki: PKI, ct_files: list[Path], tmp_path: Path) -> None:
    async def scenario() -> tuple[ToolResult, Relay, int]:
        async with storescp_tls(pki, "ecdsa", tmp_path, "+py") as (relay, scp):
            argv = [*dicomwire_argv(), "store", LOCALHOST, str(relay.port), *map(str, ct_files)]
            argv += ["--aec", "ANY-SCP", "--no-progress"]
            done = await run_tool([*argv, *dicomwire_tls(pki, "rsa", "pem", tmp_path)])
            await asyncio.wait_for(relay.done.wait(), TIMEOUT)
            return done, relay, await asyncio.to_thread(scp.wait, TIMEOUT)

    done, relay, scp_status = run(scenario())
    assert done.returncode == 0, done.output
    assert f"sent {len(ct_files)} of {len(ct_files)} instances" in done.output
    assert relay.from_client[0] == relay.from_server[0] == TLS_HANDSHAKE_RECORD
    assert scp_status == 0
    sent = {str(dcmread(p).SOPInstanceUID): bytes(dcmread(p).PixelData) for p in ct_files}
    received = {}
    for path in (tmp_path / "received").iterdir():
        ds = dcmread(path)
        received[str(ds.SOPInstanceUID)] = bytes(ds.PixelData)
    assert received == sent


def test_dicomwire_refuses_untrusted_storescp(pki: PKI, tmp_path: Path) -> None:
    async def scenario() -> ToolResult:
        async with storescp_tls(pki, "rsa", tmp_path, "+py", "--ignore") as (relay, _):
            argv = [*dicomwire_argv(), "echo", LOCALHOST, str(relay.port), "--tls"]
            argv += ["--cert", str(pki.cert("rsa")), "--key", str(pki.key("rsa"))]
            return await run_tool([*argv, "--ca", str(pki.foreign_ca)])

    done = run(scenario())
    assert done.returncode == 1
    assert "certificate verification failed" in done.output
    assert "Traceback" not in done.output


def test_dicomwire_echo_without_certificate_to_storescp(pki: PKI, tmp_path: Path) -> None:
    """storescp requires a client certificate (its default); DCMTK closes without an alert."""

    async def scenario() -> tuple[ToolResult, int]:
        async with storescp_tls(pki, "rsa", tmp_path, "+py", "--ignore") as (relay, _):
            argv = [*dicomwire_argv(), "echo", LOCALHOST, str(relay.port), "--tls"]
            done = await run_tool([*argv, "--ca", str(pki.ca)])
            return done, relay.port

    done, port = run(scenario())
    assert done.returncode == 1
    # storescp sends certificate_required, then closes; when its close resets the connection
    # (our A-ASSOCIATE-RQ unread), the alert can be lost: either line names the certificate.
    (line,) = done.output.splitlines()
    assert line in (
        f"echo failed: TLS handshake with {LOCALHOST}:{port} failed: the server requires a "
        "client certificate (alert certificate_required)",
        f"echo failed: TLS handshake with {LOCALHOST}:{port} failed: the server closed the "
        "connection right after the handshake, before answering the A-ASSOCIATE-RQ: it may "
        "require a client certificate (we have none)",
    ), line


# --------------------------------------------------------------------------- downgrades


@pytest.mark.parametrize(
    ("name", "options", "reason"),
    [
        ("tls1.0", ["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"], "protocol version refused"),
        ("tls1.1", ["-tls1_1"], "protocol version refused"),
        ("cbc-rsa-kx", ["-tls1_2", "-cipher", "AES128-SHA256"], "no shared cipher suite"),
        (
            "untrusted-cert",
            ["-tls1_2", "-cert", "{foreign_cert}", "-key", "{foreign_key}"],
            "certificate verification failed: unable to get local issuer certificate",
        ),
    ],
    ids=["tls1.0", "tls1.1", "cbc-rsa-kx", "untrusted-cert"],
)
def test_openssl_downgrade_refused(
    pki: PKI, caplog: pytest.LogCaptureFixture, name: str, options: list[str], reason: str
) -> None:
    openssl = need_tool("openssl")
    echoscu = need_tool("echoscu")
    options = [
        o.format(foreign_cert=pki.foreign_cert, foreign_key=pki.foreign_key) for o in options
    ]

    async def scenario() -> tuple[ToolResult, ToolResult, Served]:
        async with tls_node(pki.config()) as served:
            attempt = await run_tool(
                [
                    openssl,
                    "s_client",
                    "-connect",
                    f"{LOCALHOST}:{served.tls_port}",
                    "-CAfile",
                    str(pki.ca),
                    *options,
                ],
                timeout=20,
            )
            after = await run_tool(echoscu_argv(echoscu, served.tls_port, pki.dcmtk_tls("rsa")))
            return attempt, after, served

    attempt, after, served = run(scenario())
    assert attempt.returncode != 0, attempt.output
    assert "alert" in attempt.output
    if name != "untrusted-cert":  # these never agree on anything
        assert "Cipher is (NONE)" in attempt.output
    (line,) = node_failures(caplog, served)
    assert reason in line
    assert after.returncode == 0, after.output
    assert [subject_cn(c) for c, _ in served.checks] == ["localhost"]  # only the good one


# --------------------------------------------------------------------------- dicomwire serve


def test_serve_cli_tls_port_with_echoscu(pki: PKI, tmp_path: Path) -> None:
    """``dicomwire serve --tls-port`` from flags: plain and TLS side by side, mutual auth."""
    echoscu = need_tool("echoscu")
    plain_port, tls_port = get_free_tcp_port(), get_free_tcp_port()
    argv = [
        *dicomwire_argv(),
        "serve",
        "--host",
        LOCALHOST,
        "--port",
        str(plain_port),
        "--tls-port",
        str(tls_port),
        "--pkcs12",
        str(pki.p12("ecdsa")),
        "--password-file",
        str(tmp_path / "pw"),
        "--ca",
        str(pki.ca),
        "--tls-profile",
        "bcp195-ex",
        "--discard",
        "-v",
    ]
    (tmp_path / "pw").write_text("dicomwire\n")
    log_path = tmp_path / "serve.log"

    async def scenario() -> tuple[ToolResult, ToolResult, ToolResult]:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            await _wait_until_serving(log_path, process)
            secure = await run_tool([*echoscu_argv(echoscu, tls_port, pki.dcmtk_tls("rsa")), "+pz"])
            plain = await run_tool(echoscu_argv(echoscu, plain_port, []))
            anonymous = await run_tool(
                echoscu_argv(echoscu, tls_port, ["+tla", "+cf", str(pki.ca)]), timeout=20
            )
            return secure, plain, anonymous
        finally:
            await asyncio.to_thread(stop_process, process)

    secure, plain, anonymous = run(scenario())
    assert secure.returncode == 0, secure.output
    assert tls_details(secure.output) == ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert plain.returncode == 0, plain.output
    assert anonymous.returncode != 0  # no client certificate: refused
    assert "Received Echo Response" not in anonymous.output
    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text
    assert text.count("TLS handshake with ('127.0.0.1'") == 1, text
    assert "the peer sent no certificate" in text


async def _wait_until_serving(log_path: Path, process: subprocess.Popen[bytes]) -> None:
    """Wait for run_node's "listening" line: both ports are open by then (no probe needed,
    which on the TLS port would itself be a failed handshake)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while "listening on port" not in log_path.read_text(errors="replace"):
        if process.poll() is not None:
            raise RuntimeError(f"dicomwire serve exited with {process.returncode}")
        if loop.time() > deadline:
            raise TimeoutError("dicomwire serve did not start listening")
        await asyncio.sleep(0.05)
