"""PS3.15 Annex B secure transport connections, in process: a dicomwire node's TLS port.

- C-ECHO over TLS with RSA and ECDSA certificates, PEM and PKCS#12, under each profile
  (Non-Downgrading BCP 195, BCP 195, Extended BCP 195); TLS 1.2 negotiates one of the
  profile's suites (the server's preference), never compression;
- mutual authentication: no client certificate, another CA, an expired certificate, all
  refused with exactly one server log line naming the peer and the reason;
- the client refuses an expired or untrusted server certificate, and a host name the
  certificate is not for (the check is skipped when connecting to an address);
- plaintext on the TLS port, TLS on the plain port, silent peers: refused cleanly, the
  node keeps serving;
- ``AcceptorPolicy.certificate_check`` sees the peer certificate; refused -> RJ (1, 1, 3);
- configuration errors raise :class:`TLSError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import socket
import ssl
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dicomwire.dimse.session import open_session
from dicomwire.errors import DicomWireError
from dicomwire.services.certs import make_test_pki
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig, store_dataset
from dicomwire.services.verification import VERIFICATION_SOP_CLASS, echo_on
from dicomwire.testing.corpus import CT_IMAGE_STORAGE, make_ct
from dicomwire.ul.association import AssociationRejected, Timeouts
from dicomwire.ul.negotiation import RequestorConfig, build_request
from dicomwire.ul.tls import (
    PROFILE_CIPHERS,
    TLSConfig,
    TLSError,
    TLSProfile,
    client_context,
    server_context,
)

from ..conftest import find_tool, import_or_fail

LOCALHOST = "127.0.0.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
PASSWORD = b"dicomwire"
#: Every wait in these tests gives up after this many seconds.
WAIT = 10.0
TIMEOUTS = Timeouts(artim=WAIT, acse=WAIT, dimse=WAIT, network_idle=WAIT, connect=WAIT)
HANDSHAKE_FAILED = "TLS handshake with %s failed: %s"

T = TypeVar("T")

# --------------------------------------------------------------------------- certificates

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _new_key(kind: str) -> PrivateKey:
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class Authority:
    """A CA that can issue certificates with any names and validity (beside make_test_pki)."""

    directory: Path
    certificate: x509.Certificate
    key: PrivateKey
    path: Path

    @classmethod
    def load(cls, directory: Path, ca_path: Path, key_path: Path) -> Authority:
        cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        return cls(directory, cert, key, ca_path)

    @classmethod
    def create(cls, directory: Path, name: str) -> Authority:
        directory.mkdir(parents=True, exist_ok=True)
        key = _new_key("ecdsa")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256())
        )
        path = directory / "ca.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, cert, key, path)

    def issue(
        self,
        stem: str,
        common_name: str,
        *,
        dns: tuple[str, ...] = (),
        addresses: tuple[str, ...] = (),
        kind: str = "ecdsa",
        expired: bool = False,
    ) -> tuple[Path, Path]:
        """Write ``stem``.pem and ``stem``-key.pem; return their paths."""
        key = _new_key(kind)
        now = datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=3))
            .not_valid_after(now + datetime.timedelta(days=-1 if expired else 30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path = self.directory / f"{stem}.pem"
        key_path = self.directory / f"{stem}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(key))
        return cert_path, key_path


@dataclass
class PKI:
    """The test CA of make_test_pki, certificates it issued, and foreign ones."""

    directory: Path
    ca: Path
    ca_key: Path
    authority: Authority
    #: A CA with another name, and one with the same name but another key.
    foreign: Authority
    lookalike_ca: Path
    extra: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    def config(
        self,
        name: str = "localhost",
        kind: str = "rsa",
        form: str = "pem",
        *,
        ca: Path | None = None,
        **options: Any,
    ) -> TLSConfig:
        """TLSConfig with make_test_pki's NAME-KIND certificate, or an extra one by stem."""
        trust = ca or self.ca
        if name in self.extra:
            cert, key = self.extra[name]
            return TLSConfig(certificate=cert, key=key, ca_file=trust, **options)
        stem = f"{name}-{kind}"
        if form == "pkcs12":
            return TLSConfig(
                pkcs12=self.directory / f"{stem}.p12", password=PASSWORD, ca_file=trust, **options
            )
        return TLSConfig(
            certificate=self.directory / f"{stem}.pem",
            key=self.directory / f"{stem}-key.pem",
            ca_file=trust,
            **options,
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    ca, _ = make_test_pki(directory, ("localhost", "other.example"))
    authority = Authority.load(directory, ca, directory / "ca-key.pem")
    foreign = Authority.create(tmp_path_factory.mktemp("foreign"), "somebody else's CA")
    lookalike_dir = tmp_path_factory.mktemp("lookalike")
    lookalike_ca, _ = make_test_pki(lookalike_dir, ("localhost",))
    pki = PKI(directory, ca, directory / "ca-key.pem", authority, foreign, lookalike_ca)
    pki.extra["expired"] = authority.issue(
        "expired", "localhost", dns=("localhost",), addresses=("127.0.0.1",), expired=True
    )
    pki.extra["named-only"] = authority.issue(
        "named-only", "other.example", dns=("other.example",), kind="rsa"
    )
    pki.extra["foreign"] = foreign.issue(
        "foreign", "localhost", dns=("localhost",), addresses=("127.0.0.1",)
    )
    pki.extra["lookalike"] = (
        lookalike_dir / "localhost-rsa.pem",
        lookalike_dir / "localhost-rsa-key.pem",
    )
    return pki


# --------------------------------------------------------------------------- node and peers


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a test coroutine with an overall time limit."""

    async def limited() -> T:
        return await asyncio.wait_for(coroutine, 45)

    return asyncio.run(limited())


@dataclass
class Served:
    node: Node
    plain_port: int
    tls_port: int
    #: (peer certificate, calling AE title) of every certificate_check call.
    checks: list[tuple[Mapping[str, Any] | None, str]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def tls_node(
    tls: TLSConfig,
    *,
    check: Callable[[Mapping[str, Any] | None, str], bool] | None = None,
    storage: StorageConfig | None = None,
) -> AsyncIterator[Served]:
    """A node on 127.0.0.1 with a plain and a TLS port (both port 0); always shut down."""
    config = NodeConfig(
        host=LOCALHOST,
        port=0,
        tls=tls,
        tls_port=0,
        storage=storage or StorageConfig(root=Path("unused"), discard=True),
        timeouts=Timeouts(artim=WAIT, acse=WAIT, dimse=None, network_idle=WAIT),
        shutdown_grace=1.0,
    )
    node = Node(config)
    served = Served(node, 0, 0)

    def certificate_check(cert: Mapping[str, Any] | None, calling: str) -> bool:
        served.checks.append((cert, calling))
        return True if check is None else check(cert, calling)

    node.policy.certificate_check = certificate_check
    await node.start()
    try:
        ports = [int(s.getsockname()[1]) for s in node.server.sockets]
        assert len(ports) == 2, ports  # the plain listener, then the TLS listener
        served.plain_port, served.tls_port = ports
        yield served
    finally:
        await node.shutdown()


@dataclass
class EchoResult:
    status: int
    version: str | None
    cipher: tuple[str, str, int] | None
    compression: str | None
    peer_certificate: Mapping[str, Any] | None


async def tls_echo(
    port: int,
    tls: TLSConfig | None,
    *,
    host: str = LOCALHOST,
    calling: str = "TLSSCU",
) -> EchoResult:
    """Associate (over TLS when ``tls``), C-ECHO, release; what the connection was."""
    config = RequestorConfig(calling, "DICOMWIRE", [(VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LE])])
    async with open_session(host, port, config, timeouts=TIMEOUTS, tls=tls) as session:
        association = session.association
        assert not association.closed.done()
        sslobj = association.get_extra_info("ssl_object")
        status = await echo_on(session)
        return EchoResult(
            int(status),
            sslobj.version() if sslobj else None,
            sslobj.cipher() if sslobj else None,
            sslobj.compression() if sslobj else None,
            association.peer_certificate,
        )


def subject_cn(cert: Mapping[str, Any] | None) -> str | None:
    if not cert:
        return None
    subject = dict(pair for rdn in cert["subject"] for pair in rdn)
    value = subject.get("commonName")
    return str(value) if value is not None else None


async def raw_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, tuple]:
    """A plain TCP connection whose local address is known before it connects."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind((LOCALHOST, 0))
    local = sock.getsockname()
    await asyncio.wait_for(loop.sock_connect(sock, (LOCALHOST, port)), WAIT)
    reader, writer = await asyncio.open_connection(sock=sock)
    return reader, writer, local


@dataclass
class Handshake:
    """What a raw TLS client saw: the error (None if the handshake held) and its address."""

    error: BaseException | None
    local: tuple
    version: str | None = None
    cipher: str | None = None
    compression: str | None = None


async def raw_tls(port: int, context: ssl.SSLContext, *, hold: bool = False) -> Handshake:
    """Handshake with ``context`` from a known local address, then close.

    With ``hold`` the client waits for what the server says next: in TLS 1.3 a server
    refuses the client's certificate only after the client considered the handshake done.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind((LOCALHOST, 0))
    local = sock.getsockname()
    await asyncio.wait_for(loop.sock_connect(sock, (LOCALHOST, port)), WAIT)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(sock=sock, ssl=context, server_hostname=""), WAIT
        )
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        return Handshake(exc, local)
    sslobj = writer.get_extra_info("ssl_object")
    result = Handshake(None, local, sslobj.version(), sslobj.cipher()[0], sslobj.compression())
    try:
        if hold:
            data = await asyncio.wait_for(reader.read(), WAIT)
            result.error = ConnectionResetError(f"closed by the server after {data!r}")
    except (ssl.SSLError, OSError) as exc:
        result.error = exc
    finally:
        # Not close(): that sends close_notify and waits for the server's answer (see
        # test_close_notify_from_the_peer_closes_the_connection).
        writer.transport.abort()
    return result


def client_tls_context(config: TLSConfig, *, tls12: bool = False) -> ssl.SSLContext:
    context = client_context(config, LOCALHOST)
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


async def settle() -> None:
    """Let the server's side of a closed connection run its callbacks."""
    for _ in range(5):
        await asyncio.sleep(0.02)


def server_failures(caplog: pytest.LogCaptureFixture, served: Served) -> list[logging.LogRecord]:
    """The node's "TLS handshake with PEER failed" lines (the client's own name the node)."""
    return [
        r
        for r in caplog.records
        if r.name == "dicomwire.ul.tls"
        and r.msg == HANDSHAKE_FAILED
        and isinstance(r.args, tuple)
        and tuple(r.args[0])[1] != served.tls_port
    ]


def assert_one_failure(
    caplog: pytest.LogCaptureFixture, served: Served, peer: tuple, reason: str
) -> None:
    lines = server_failures(caplog, served)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    (line,) = lines
    assert line.levelno == logging.WARNING
    assert isinstance(line.args, tuple)
    assert tuple(line.args[0]) == tuple(peer)
    message = line.getMessage()
    assert str(tuple(peer)) in message
    assert reason in message, message


@pytest.fixture(autouse=True)
def _capture_dicomwire_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dicomwire")


def compatible(cipher: str, kind: str) -> bool:
    """A TLS 1.2 suite usable with a certificate of ``kind`` (RSA or ECDSA key)."""
    return ("ECDSA" in cipher) == (kind == "ecdsa")


# --------------------------------------------------------------------------- contexts


@pytest.mark.parametrize("profile", list(TLSProfile), ids=lambda p: p.value)
def test_contexts_offer_only_the_profile(pki: PKI, profile: TLSProfile) -> None:
    for context in (
        server_context(pki.config(profile=profile)),
        client_context(pki.config(profile=profile), LOCALHOST),
    ):
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2
        assert context.maximum_version is ssl.TLSVersion.TLSv1_3
        assert context.options & ssl.OP_NO_COMPRESSION
        assert context.options & ssl.OP_NO_RENEGOTIATION
        assert context.verify_mode is ssl.CERT_REQUIRED
        tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert tls12 == list(PROFILE_CIPHERS[profile])


def test_profile_suites_are_aead_or_sha2_with_forward_secrecy() -> None:
    for profile, suites in PROFILE_CIPHERS.items():
        for suite in suites:
            assert suite.startswith(("DHE-", "ECDHE-")), (profile, suite)
            assert "SHA256" in suite or "SHA384" in suite, (profile, suite)
    assert all("GCM" in s for s in PROFILE_CIPHERS[TLSProfile.NON_DOWNGRADING_BCP195])
    assert all(s.startswith("ECDHE-") for s in PROFILE_CIPHERS[TLSProfile.EXTENDED_BCP195])
    assert all("GCM" in s for s in PROFILE_CIPHERS[TLSProfile.EXTENDED_BCP195])


def test_client_checks_host_names_but_not_addresses(pki: PKI) -> None:
    assert client_context(pki.config(), "localhost").check_hostname
    for address in ("127.0.0.1", "::1", "fe80::1%lo"):
        assert not client_context(pki.config(), address).check_hostname


def test_server_without_mutual_authentication(pki: PKI) -> None:
    config = pki.config(require_peer_certificate=False)
    assert server_context(config).verify_mode is ssl.CERT_OPTIONAL
    config.ca_file = None
    assert server_context(config).verify_mode is ssl.CERT_NONE


# --------------------------------------------------------------------------- configuration errors


def test_configuration_errors(pki: PKI, tmp_path: Path) -> None:
    with pytest.raises(TLSError, match="needs a certificate"):
        server_context(TLSConfig(ca_file=pki.ca))
    untrusting = pki.config()
    untrusting.ca_file = None
    with pytest.raises(TLSError, match="trust store"):
        server_context(untrusting)  # mutual authentication without a trust store
    with pytest.raises(TLSError, match="trust store"):
        client_context(TLSConfig(), LOCALHOST)
    with pytest.raises(TLSError, match="cannot load"):
        server_context(pki.config(ca=tmp_path / "missing-ca.pem"))
    mismatched = pki.config()
    mismatched.key = pki.directory / "localhost-ecdsa-key.pem"
    with pytest.raises(TLSError, match="cannot load"):
        server_context(mismatched)
    wrong = pki.config(form="pkcs12")
    wrong.password = b"not the password"
    with pytest.raises(TLSError, match="PKCS#12"):
        server_context(wrong)
    missing = TLSConfig(pkcs12=tmp_path / "missing.p12", password=PASSWORD, ca_file=pki.ca)
    with pytest.raises(TLSError, match="PKCS#12"):
        client_context(missing, LOCALHOST)


def _encrypted_key(pki: PKI, directory: Path) -> Path:
    key = serialization.load_pem_private_key(
        (pki.directory / "localhost-rsa-key.pem").read_bytes(), None
    )
    path = directory / "encrypted-key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    return path


def test_encrypted_pem_key_with_password(pki: PKI, tmp_path: Path) -> None:
    config = pki.config()
    config.key = _encrypted_key(pki, tmp_path)
    config.password = b"s3cret"
    server_context(config)
    client_context(config, LOCALHOST)
    config.password = b"wrong"
    with pytest.raises(TLSError, match="cannot load"):
        server_context(config)


def test_encrypted_pem_key_without_password_never_prompts(pki: PKI, tmp_path: Path) -> None:
    key = _encrypted_key(pki, tmp_path)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from dicomwire.ul.tls import TLSConfig, TLSError, server_context\n"
        f"config = TLSConfig(certificate=Path({str(pki.directory / 'localhost-rsa.pem')!r}),"
        f" key=Path({str(key)!r}), ca_file=Path({str(pki.ca)!r}))\n"
        "try:\n"
        "    server_context(config)\n"
        "except TLSError as exc:\n"
        "    print('TLSError', exc)\n"
        "    sys.exit(3)\n"
        "print('loaded')\n"
    )
    # No controlling terminal, so OpenSSL's prompt falls back to stdin: offer the password
    # there and see whether it is taken.
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=b"s3cret\n",
        capture_output=True,
        timeout=30,
        start_new_session=True,
        check=False,
    )
    assert b"pass phrase" not in done.stderr, done.stderr
    assert done.returncode == 3, (done.stdout, done.stderr)


# --------------------------------------------------------------------------- echo over TLS


@pytest.mark.parametrize("form", ["pem", "pkcs12"])
@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
@pytest.mark.parametrize("profile", list(TLSProfile), ids=lambda p: p.value)
def test_echo_over_tls(pki: PKI, profile: TLSProfile, kind: str, form: str) -> None:
    """Server certificate of ``kind``, client certificate of the other kind, mutual auth."""
    other = "ecdsa" if kind == "rsa" else "rsa"

    async def scenario() -> tuple[Served, EchoResult]:
        async with tls_node(pki.config("localhost", kind, form, profile=profile)) as served:
            tls = pki.config("localhost", other, form, profile=profile)
            result = await tls_echo(served.tls_port, tls, calling="MUTUAL")
            return served, result

    served, result = run(scenario())
    assert result.status == 0x0000
    assert result.version == "TLSv1.3"  # both sides allow 1.3: nothing lower is chosen
    assert result.compression is None
    assert subject_cn(result.peer_certificate) == "localhost"
    # The node saw (and the policy hook was given) the client's verified certificate.
    ((cert, calling),) = served.checks
    assert calling == "MUTUAL"
    assert subject_cn(cert) == "localhost"


def test_echo_over_tls_by_host_name(pki: PKI) -> None:
    async def scenario() -> EchoResult:
        async with tls_node(pki.config()) as served:
            return await tls_echo(served.tls_port, pki.config(kind="ecdsa"), host="localhost")

    assert run(scenario()).status == 0


def test_plain_port_beside_tls_port(pki: PKI) -> None:
    async def scenario() -> tuple[EchoResult, EchoResult, Served]:
        async with tls_node(pki.config()) as served:
            plain = await tls_echo(served.plain_port, None)
            secure = await tls_echo(served.tls_port, pki.config())
            return plain, secure, served

    plain, secure, served = run(scenario())
    assert plain.status == secure.status == 0
    assert plain.version is None and secure.version is not None
    assert [subject_cn(c) for c, _ in served.checks] == [None, "localhost"]
    assert served.checks[0][0] is None  # the plain connection has no certificate


def test_echo_over_tls_on_uvloop(pki: PKI) -> None:
    uvloop = import_or_fail("uvloop")

    async def scenario() -> EchoResult:
        async with tls_node(pki.config(kind="ecdsa")) as served:
            return await tls_echo(served.tls_port, pki.config(form="pkcs12"))

    result = uvloop.run(scenario())
    assert result.status == 0 and result.version == "TLSv1.3"


def test_trust_store_as_hashed_directory(pki: PKI, tmp_path: Path) -> None:
    """``ca_dir`` (``--ca DIR``): OpenSSL looks certificates up by subject hash."""
    openssl = find_tool("openssl", "the openssl command hashes the CA directory")
    digest = subprocess.run(
        [openssl, "x509", "-hash", "-noout", "-in", str(pki.ca)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    ).stdout.strip()
    (tmp_path / f"{digest}.0").write_bytes(pki.ca.read_bytes())

    def with_dir(config: TLSConfig) -> TLSConfig:
        config.ca_file, config.ca_dir = None, tmp_path
        return config

    async def scenario() -> EchoResult:
        async with tls_node(with_dir(pki.config())) as served:
            return await tls_echo(served.tls_port, with_dir(pki.config(kind="ecdsa")))

    assert run(scenario()).status == 0


def test_large_data_sets_over_tls(pki: PKI, tmp_path: Path) -> None:
    """Three 512x512 CT images (~0.5 MB each, many TLS records) arrive byte for byte."""
    from pydicom import dcmread

    images = [make_ct(index) for index in range(3)]
    storage = StorageConfig(root=tmp_path / "stored", fsync=False)

    async def scenario() -> list[int]:
        async with tls_node(pki.config(), storage=storage) as served:
            config = RequestorConfig(
                "BIGSCU", "DICOMWIRE", [(CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])], max_pdu_length=0
            )
            async with open_session(
                LOCALHOST, served.tls_port, config, timeouts=TIMEOUTS, tls=pki.config()
            ) as session:
                return [int(await store_dataset(session, ds)) for ds in images]

    assert run(scenario()) == [0, 0, 0]
    stored = {}
    for path in (tmp_path / "stored").rglob("*.dcm"):
        ds = dcmread(path)
        stored[str(ds.SOPInstanceUID)] = bytes(ds.PixelData)
    assert stored == {str(ds.SOPInstanceUID): bytes(ds.PixelData) for ds in images}


# --------------------------------------------------------------------------- TLS 1.2 suites


def _outsiders() -> list[str]:
    return [
        "AES128-SHA256",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES128-SHA",
        "DHE-RSA-AES128-SHA",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA256",
    ]


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
@pytest.mark.parametrize("profile", list(TLSProfile), ids=lambda p: p.value)
def test_tls12_negotiates_only_profile_suites(
    pki: PKI, caplog: pytest.LogCaptureFixture, profile: TLSProfile, kind: str
) -> None:
    """A TLS 1.2 client offering one suite at a time: accepted iff the profile has it."""
    every = {s for suites in PROFILE_CIPHERS.values() for s in suites} | set(_outsiders())
    candidates = sorted(s for s in every if compatible(s, kind))

    async def scenario() -> tuple[Served, dict[str, Handshake]]:
        outcomes: dict[str, Handshake] = {}
        async with tls_node(pki.config(kind=kind, profile=profile)) as served:
            for suite in candidates:
                context = client_tls_context(pki.config(), tls12=True)
                try:
                    context.set_ciphers(suite)
                except ssl.SSLError:
                    continue  # this OpenSSL build does not offer it at all
                outcomes[suite] = await raw_tls(served.tls_port, context)
            await settle()
            return served, outcomes

    served, outcomes = run(scenario())
    allowed = set(PROFILE_CIPHERS[profile])
    assert allowed & set(outcomes), "no profile suite was tried"
    for suite, outcome in outcomes.items():
        if suite in allowed:
            assert outcome.error is None, (suite, outcome.error)
            assert (outcome.version, outcome.cipher) == ("TLSv1.2", suite)
            assert outcome.compression is None
        else:
            assert outcome.error is not None, f"{suite} was accepted under {profile.value}"
    # A client port can come back for a later connection, so compare multisets.
    refused = sorted(h.local for s, h in outcomes.items() if s not in allowed)
    lines = server_failures(caplog, served)
    logged = sorted(tuple(r.args[0]) for r in lines if isinstance(r.args, tuple))
    assert logged == refused  # exactly one line per refused connection
    assert all("no shared cipher suite" in r.getMessage() for r in lines)


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
@pytest.mark.parametrize("profile", list(TLSProfile), ids=lambda p: p.value)
def test_tls12_server_preference_wins(pki: PKI, profile: TLSProfile, kind: str) -> None:
    """The client lists the profile's suites backwards; the server's order decides."""
    suites = PROFILE_CIPHERS[profile]
    expected = next(s for s in suites if compatible(s, kind))

    async def scenario() -> Handshake:
        async with tls_node(pki.config(kind=kind, profile=profile)) as served:
            context = client_tls_context(pki.config(profile=profile), tls12=True)
            context.set_ciphers(":".join(reversed(suites)))
            return await raw_tls(served.tls_port, context)

    outcome = run(scenario())
    assert outcome.error is None, outcome.error
    assert outcome.version == "TLSv1.2"
    assert outcome.cipher == expected
    assert outcome.cipher in suites
    assert outcome.compression is None


def test_tls12_echo_with_each_profile(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    """dicomwire's own requestor, held to TLS 1.2, agrees on a suite of the profile."""
    contexts: list[ssl.SSLContext] = []

    def tls12_client_context(config: TLSConfig, host: str) -> ssl.SSLContext:
        context = client_context(config, host)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        contexts.append(context)
        return context

    monkeypatch.setattr("dicomwire.ul.association.client_context", tls12_client_context)

    async def scenario() -> list[tuple[TLSProfile, EchoResult]]:
        results = []
        for profile in TLSProfile:
            for kind in ("rsa", "ecdsa"):
                async with tls_node(pki.config(kind=kind, profile=profile)) as served:
                    tls = pki.config(kind=kind, profile=profile)
                    results.append((profile, await tls_echo(served.tls_port, tls)))
        return results

    results = run(scenario())
    assert len(contexts) == len(results) == 6
    for profile, result in results:
        assert result.status == 0
        assert result.version == "TLSv1.2"
        assert result.cipher is not None and result.cipher[0] in PROFILE_CIPHERS[profile]
        assert result.compression is None


def test_tls10_and_tls11_refused(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[Served, list[Handshake], EchoResult]:
        outcomes = []
        async with tls_node(pki.config()) as served:
            for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    context.minimum_version = context.maximum_version = version
                context.set_ciphers("DEFAULT:@SECLEVEL=0")
                context.load_verify_locations(cafile=str(pki.ca))
                context.check_hostname = False
                outcomes.append(await raw_tls(served.tls_port, context))
            await settle()
            after = await tls_echo(served.tls_port, pki.config())
            return served, outcomes, after

    served, outcomes, after = run(scenario())
    assert all(o.error is not None for o in outcomes)
    lines = server_failures(caplog, served)
    assert sorted(tuple(r.args[0]) for r in lines if isinstance(r.args, tuple)) == sorted(
        o.local for o in outcomes
    )
    assert all("protocol version refused" in r.getMessage() for r in lines)
    assert after.status == 0


# --------------------------------------------------------------------------- mutual authentication


@pytest.mark.parametrize("tls12", [True, False], ids=["tls1.2", "tls1.3"])
def test_client_without_certificate_refused(
    pki: PKI, caplog: pytest.LogCaptureFixture, tls12: bool
) -> None:
    async def scenario() -> tuple[Served, Handshake, EchoResult]:
        async with tls_node(pki.config()) as served:
            context = client_tls_context(TLSConfig(ca_file=pki.ca), tls12=tls12)
            outcome = await raw_tls(served.tls_port, context, hold=True)
            await settle()
            after = await tls_echo(served.tls_port, pki.config())
            return served, outcome, after

    served, outcome, after = run(scenario())
    assert outcome.error is not None
    assert_one_failure(caplog, served, outcome.local, "the peer sent no certificate")
    assert after.status == 0
    assert len(served.checks) == 1  # only the good association reached the policy


def test_requestor_without_certificate_gets_an_error(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[Served, BaseException]:
        async with tls_node(pki.config()) as served:
            with pytest.raises(DicomWireError) as caught:
                await tls_echo(served.tls_port, TLSConfig(ca_file=pki.ca))
            await settle()
            assert served.node.server.active_associations == 0
            return served, caught.value

    served, _ = run(scenario())
    assert served.checks == []  # never reached the association layer
    lines = server_failures(caplog, served)
    assert len(lines) == 1
    assert "the peer sent no certificate" in lines[0].getMessage()


@pytest.mark.parametrize(
    ("stem", "reason"),
    [
        ("foreign", "unable to get local issuer certificate"),
        # a CA with the same name but another key: the AKI no longer matches any trusted CA
        ("lookalike", "unable to get local issuer certificate"),
        ("expired", "certificate has expired"),
    ],
)
@pytest.mark.parametrize("tls12", [True, False], ids=["tls1.2", "tls1.3"])
def test_client_certificate_refused(
    pki: PKI, caplog: pytest.LogCaptureFixture, stem: str, reason: str, tls12: bool
) -> None:
    async def scenario() -> tuple[Served, Handshake, EchoResult]:
        async with tls_node(pki.config()) as served:
            context = client_tls_context(pki.config(stem), tls12=tls12)
            outcome = await raw_tls(served.tls_port, context, hold=True)
            await settle()
            after = await tls_echo(served.tls_port, pki.config())
            return served, outcome, after

    served, outcome, after = run(scenario())
    assert outcome.error is not None
    assert_one_failure(caplog, served, outcome.local, f"certificate verification failed: {reason}")
    assert after.status == 0


def test_optional_client_certificate(pki: PKI) -> None:
    async def scenario() -> tuple[Served, EchoResult, EchoResult]:
        async with tls_node(pki.config(require_peer_certificate=False)) as served:
            anonymous = await tls_echo(served.tls_port, TLSConfig(ca_file=pki.ca))
            known = await tls_echo(served.tls_port, pki.config(kind="ecdsa"))
            return served, anonymous, known

    served, anonymous, known = run(scenario())
    assert anonymous.status == known.status == 0
    assert [subject_cn(c) for c, _ in served.checks] == [None, "localhost"]


# --------------------------------------------------------------------------- server certificate


def test_expired_server_certificate_refused_by_client(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[Served, TLSError]:
        async with tls_node(pki.config("expired")) as served:
            with pytest.raises(TLSError) as caught:
                await tls_echo(served.tls_port, pki.config())
            await settle()
            return served, caught.value

    served, error = run(scenario())
    assert "certificate" in str(error)
    assert "expired" in str(error)
    lines = server_failures(caplog, served)
    assert len(lines) == 1 and "expired" in lines[0].getMessage()
    assert served.checks == []


def test_untrusted_server_certificate_refused_by_client(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[Served, TLSError]:
        async with tls_node(pki.config()) as served:
            with pytest.raises(TLSError) as caught:
                await tls_echo(served.tls_port, pki.config(ca=pki.foreign.path))
            await settle()
            return served, caught.value

    served, error = run(scenario())
    assert "certificate verification failed" in str(error)
    lines = server_failures(caplog, served)
    assert len(lines) == 1
    assert "does not trust our certificate (alert unknown_ca)" in lines[0].getMessage()


def test_host_name_verified_when_connecting_by_name(pki: PKI) -> None:
    async def scenario() -> tuple[TLSError, EchoResult, EchoResult]:
        async with tls_node(pki.config("named-only")) as served:
            with pytest.raises(TLSError) as caught:
                await tls_echo(served.tls_port, pki.config(), host="localhost")
            # The certificate names neither 127.0.0.1 nor localhost: by address, the name
            # check is skipped (client_context) and the chain alone is verified.
            by_address = await tls_echo(served.tls_port, pki.config(), host=LOCALHOST)
        async with tls_node(pki.config("other.example")) as served:
            # make_test_pki certificates name 127.0.0.1 too.
            other = await tls_echo(served.tls_port, pki.config(), host=LOCALHOST)
        return caught.value, by_address, other

    error, by_address, other = run(scenario())
    assert "certificate" in str(error)
    assert "Hostname mismatch" in str(error) or "localhost" in str(error)
    assert by_address.status == 0
    assert subject_cn(by_address.peer_certificate) == "other.example"
    assert other.status == 0


# --------------------------------------------------------------------------- not TLS


def test_plaintext_associate_rq_on_tls_port(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    request, _ = build_request(
        RequestorConfig("PLAIN", "DICOMWIRE", [(VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LE])])
    )

    async def scenario() -> tuple[Served, bytes, tuple, EchoResult, EchoResult]:
        async with tls_node(pki.config()) as served:
            reader, writer, local = await raw_client(served.tls_port)
            writer.write(request.encode())
            try:
                answer = await asyncio.wait_for(reader.read(), WAIT)
            finally:
                writer.close()
            await settle()
            secure = await tls_echo(served.tls_port, pki.config())
            plain = await tls_echo(served.plain_port, None)
            return served, answer, local, secure, plain

    served, answer, local, secure, plain = run(scenario())
    assert answer == b""  # closed without a single plaintext byte (no A-ASSOCIATE-RJ)
    assert_one_failure(caplog, served, local, "not TLS")
    assert secure.status == plain.status == 0
    assert [c for c, _ in served.checks if c is None] == [None]  # only the plain echo


def test_plaintext_on_tls_port_on_uvloop(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    uvloop = import_or_fail("uvloop")
    request, _ = build_request(
        RequestorConfig("PLAIN", "DICOMWIRE", [(VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LE])])
    )

    async def scenario() -> tuple[Served, bytes, tuple, EchoResult]:
        async with tls_node(pki.config()) as served:
            reader, writer, local = await raw_client(served.tls_port)
            writer.write(request.encode())
            try:
                answer = await asyncio.wait_for(reader.read(), WAIT)
            finally:
                writer.close()
            await settle()
            return served, answer, local, await tls_echo(served.tls_port, pki.config())

    served, answer, local, after = uvloop.run(scenario())
    assert answer == b""
    assert_one_failure(caplog, served, local, "not TLS")
    assert after.status == 0


def test_tls_requestor_on_plain_port(pki: PKI) -> None:
    async def scenario() -> tuple[TLSError, EchoResult]:
        async with tls_node(pki.config()) as served:
            with pytest.raises(TLSError) as caught:
                await tls_echo(served.plain_port, pki.config())
            return caught.value, await tls_echo(served.plain_port, None)

    error, after = run(scenario())
    assert "does not speak TLS (it answered with a DICOM A-ABORT)" in str(error)
    assert error.reason == "not-tls"
    assert after.status == 0


def test_silent_client_times_out_on_the_server(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[Served, bytes, tuple, float]:
        async with tls_node(pki.config(handshake_timeout=0.3)) as served:
            reader, writer, local = await raw_client(served.tls_port)
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                answer = await asyncio.wait_for(reader.read(), WAIT)
            finally:
                writer.close()
            return served, answer, local, loop.time() - started

    served, answer, local, elapsed = run(scenario())
    assert answer == b""
    assert 0.2 < elapsed < 5
    assert_one_failure(caplog, served, local, "handshake timed out")


def test_silent_server_times_out_on_the_client(pki: PKI) -> None:
    async def scenario() -> tuple[TLSError, float]:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                await reader.read()
            writer.close()

        server = await asyncio.start_server(silent, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            with pytest.raises(TLSError) as caught:
                await tls_echo(port, pki.config(handshake_timeout=0.3))
        finally:
            server.close()
            await server.wait_closed()
        return caught.value, loop.time() - started

    error, elapsed = run(scenario())
    assert "timed out" in str(error)
    assert elapsed < 5


# --------------------------------------------------------------------------- certificate policy


def test_certificate_check_refuses_subject(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    """Only the certificate for "localhost" may call as MODALITY; anything else is (1, 1, 3)."""

    def check(cert: Mapping[str, Any] | None, calling: str) -> bool:
        return subject_cn(cert) == "localhost" and calling == "MODALITY"

    async def scenario() -> tuple[Served, list[Any]]:
        outcomes: list[Any] = []
        async with tls_node(pki.config(), check=check) as served:
            for config, calling in (
                (pki.config("other.example"), "MODALITY"),
                (pki.config("localhost"), "INTRUDER"),
                (pki.config("localhost", "ecdsa"), "MODALITY"),
            ):
                try:
                    outcomes.append(await tls_echo(served.tls_port, config, calling=calling))
                except AssociationRejected as exc:
                    outcomes.append(exc)
            return served, outcomes

    served, outcomes = run(scenario())
    wrong_subject, wrong_caller, good = outcomes
    for rejected in (wrong_subject, wrong_caller):
        assert isinstance(rejected, AssociationRejected)
        assert (rejected.result, rejected.source, rejected.reason) == (1, 1, 3)
    assert isinstance(good, EchoResult) and good.status == 0
    assert [(subject_cn(c), calling) for c, calling in served.checks] == [
        ("other.example", "MODALITY"),
        ("localhost", "INTRUDER"),
        ("localhost", "MODALITY"),
    ]
    assert server_failures(caplog, served) == []  # TLS itself succeeded every time


# --------------------------------------------------------------------------- closure


@pytest.mark.parametrize("tls12", [True, False], ids=["tls1.2", "tls1.3"])
def test_close_notify_from_the_peer_closes_the_connection(pki: PKI, tls12: bool) -> None:
    """A client that ends TLS with close_notify (and keeps TCP open) is let go at once."""

    async def scenario() -> tuple[bool, int]:
        async with tls_node(pki.config()) as served:
            context = client_tls_context(pki.config(), tls12=tls12)
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(LOCALHOST, served.tls_port, ssl=context), WAIT
            )
            writer.close()  # close_notify, then wait for the server's close
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
                closed = True
            except TimeoutError:
                closed = False
            held = len(served.node.server._associations)
            writer.transport.abort()
            return closed, held

    closed, held = run(scenario())
    assert held == 0, "the node still holds the connection after close_notify"
    assert closed
