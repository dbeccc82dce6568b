"""Test PKI for DICOM TLS (``dicomwire.services.certs``, ``dicomwire certs``).

What PS3.15 Annex B needs from the files: a CA that OpenSSL loads as a trust store; for
each name an RSA and an ECDSA certificate issued by that CA, valid for TLS server and
client use, with the name, 127.0.0.1 and ::1 as subject alternative names; their keys
(PEM, owner-only); a PKCS#12 bundle under the given password; ``expired=True`` makes
certificates that a verifier refuses.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dicomwire.services.certs import IssuedCertificate, make_test_pki
from dicomwire.services.cli import main

from ..conftest import import_or_fail

TIMEOUT = 30


def dicomwire_argv() -> list[str]:
    script = Path(sys.executable).with_name("dicomwire")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dicomwire.services.cli"]


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def common_name(cert: x509.Certificate) -> str:
    (attribute,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attribute.value)


def alternative_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    addresses = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    return dns, addresses


def public_der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[IssuedCertificate]]:
    return make_test_pki(tmp_path_factory.mktemp("pki"), ("localhost", "modality.example"))


# --------------------------------------------------------------------------- the files


def test_writes_ca_and_rsa_and_ecdsa_per_name(
    pki: tuple[Path, list[IssuedCertificate]],
) -> None:
    ca_path, issued = pki
    directory = ca_path.parent
    assert ca_path == directory / "ca.pem"
    assert [(i.name, i.kind) for i in issued] == [
        ("localhost", "rsa"),
        ("localhost", "ecdsa"),
        ("modality.example", "rsa"),
        ("modality.example", "ecdsa"),
    ]
    for item in issued:
        stem = f"{item.name}-{item.kind}"
        assert item.certificate == directory / f"{stem}.pem"
        assert item.key == directory / f"{stem}-key.pem"
        assert item.pkcs12 == directory / f"{stem}.p12"
        for path in (item.certificate, item.key, item.pkcs12):
            assert path.is_file() and path.stat().st_size > 0
    assert (directory / "ca-key.pem").is_file()


def test_ca_is_a_self_signed_ca(pki: tuple[Path, list[IssuedCertificate]]) -> None:
    ca = load_cert(pki[0])
    assert ca.subject == ca.issuer
    ca.verify_directly_issued_by(ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    now = datetime.datetime.now(datetime.UTC)
    assert ca.not_valid_before_utc < now < ca.not_valid_after_utc


def test_ca_loads_as_an_openssl_trust_store(pki: tuple[Path, list[IssuedCertificate]]) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(pki[0]))
    (loaded,) = context.get_ca_certs()
    assert dict(x[0] for x in loaded["subject"])["commonName"] == "dicomwire test CA"


def test_certificates_are_issued_by_the_ca_for_their_name(
    pki: tuple[Path, list[IssuedCertificate]],
) -> None:
    ca_path, issued = pki
    ca = load_cert(ca_path)
    now = datetime.datetime.now(datetime.UTC)
    for item in issued:
        cert = load_cert(item.certificate)
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)  # raises when the signature is not the CA's
        assert common_name(cert) == item.name
        assert cert.not_valid_before_utc < now < cert.not_valid_after_utc
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert not constraints.ca
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.SERVER_AUTH in usages
        assert ExtendedKeyUsageOID.CLIENT_AUTH in usages


def test_subject_alternative_names_are_name_and_loopback_addresses(
    pki: tuple[Path, list[IssuedCertificate]],
) -> None:
    for item in pki[1]:
        dns, addresses = alternative_names(load_cert(item.certificate))
        assert dns == [item.name]
        assert sorted(addresses) == sorted(
            [str(ipaddress.ip_address("127.0.0.1")), str(ipaddress.ip_address("::1"))]
        )


def test_key_types_and_that_each_key_matches_its_certificate(
    pki: tuple[Path, list[IssuedCertificate]],
) -> None:
    for item in pki[1]:
        key = serialization.load_pem_private_key(item.key.read_bytes(), password=None)
        cert = load_cert(item.certificate)
        if item.kind == "rsa":
            assert isinstance(key, rsa.RSAPrivateKey)
            assert key.key_size >= 2048
        else:
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            assert key.curve.name == "secp256r1"
        assert public_der(key.public_key()) == public_der(cert.public_key())


def test_private_files_are_owner_only(pki: tuple[Path, list[IssuedCertificate]]) -> None:
    ca_path, issued = pki
    private = [ca_path.parent / "ca-key.pem"]
    private += [p for i in issued for p in (i.key, i.pkcs12)]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_openssl_loads_each_certificate_and_key(
    pki: tuple[Path, list[IssuedCertificate]],
) -> None:
    for item in pki[1]:
        for purpose in (ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS_CLIENT):
            ssl.SSLContext(purpose).load_cert_chain(item.certificate, item.key)


def test_pkcs12_opens_with_the_password_and_holds_key_cert_and_ca(
    pki: tuple[Path, list[IssuedCertificate]],
) -> None:
    ca = load_cert(pki[0])
    for item in pki[1]:
        data = item.pkcs12.read_bytes()
        key, cert, extra = pkcs12.load_key_and_certificates(data, b"dicomwire")
        assert key is not None and cert is not None
        assert cert == load_cert(item.certificate)
        assert public_der(key.public_key()) == public_der(cert.public_key())
        assert extra == [ca]
        with pytest.raises(ValueError):
            pkcs12.load_key_and_certificates(data, b"not the password")
        with pytest.raises((ValueError, TypeError)):
            pkcs12.load_key_and_certificates(data, None)


def memory_handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> None:
    """A whole TLS handshake between two in-memory endpoints (OpenSSL verifies the chain)."""
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    server_end = server.wrap_bio(pipes[0], pipes[1], server_side=True)
    client_end = client.wrap_bio(pipes[2], pipes[3], server_hostname=hostname)
    done = {"server": False, "client": False}
    for _ in range(20):
        for name, end, outgoing, incoming in (
            ("client", client_end, pipes[3], pipes[0]),
            ("server", server_end, pipes[1], pipes[2]),
        ):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            incoming.write(outgoing.read())
        if all(done.values()):
            return
    raise AssertionError("the in-memory handshake did not finish")


def server_and_client(
    item: IssuedCertificate, ca_path: Path
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(item.certificate, item.key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    client.load_verify_locations(cafile=str(ca_path))
    return server, client


def test_openssl_verifies_chain_for_name_and_addresses(
    pki: tuple[Path, list[IssuedCertificate]],
) -> None:
    ca_path, issued = pki
    for item in issued:
        server, client = server_and_client(item, ca_path)
        for hostname in (item.name, "127.0.0.1", "::1"):
            memory_handshake(server, client, hostname)
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            memory_handshake(server, client, "not-this-host.example")


def test_chain_verifies_with_an_rfc5280_strict_verifier(
    pki: tuple[Path, list[IssuedCertificate]],
) -> None:
    verification = import_or_fail("cryptography.x509.verification")
    store = verification.Store([load_cert(pki[0])])
    for item in pki[1]:
        cert = load_cert(item.certificate)
        verifier = (
            verification.PolicyBuilder().store(store).build_server_verifier(x509.DNSName(item.name))
        )
        assert verifier.verify(cert, [])[0] == cert


# --------------------------------------------------------------------------- options


def test_password_and_days(tmp_path: Path) -> None:
    _, issued = make_test_pki(tmp_path, ["node"], password=b"s3cret", days=10)
    now = datetime.datetime.now(datetime.UTC)
    for item in issued:
        key, cert, _ = pkcs12.load_key_and_certificates(item.pkcs12.read_bytes(), b"s3cret")
        assert key is not None and cert is not None
        with pytest.raises(ValueError):
            pkcs12.load_key_and_certificates(item.pkcs12.read_bytes(), b"dicomwire")
        remaining = load_cert(item.certificate).not_valid_after_utc - now
        assert datetime.timedelta(days=9) < remaining <= datetime.timedelta(days=10)


def test_expired_certificates_ran_out_and_are_refused(tmp_path: Path) -> None:
    ca_path, issued = make_test_pki(tmp_path, ["localhost"], expired=True)
    now = datetime.datetime.now(datetime.UTC)
    ca = load_cert(ca_path)
    assert ca.not_valid_after_utc > now  # only the node certificates expired
    for item in issued:
        cert = load_cert(item.certificate)
        assert cert.not_valid_after_utc < now
        assert cert.not_valid_before_utc < cert.not_valid_after_utc
        cert.verify_directly_issued_by(ca)
    for item in issued:
        server, client = server_and_client(item, ca_path)
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"):
            memory_handshake(server, client, "localhost")


def test_each_call_makes_a_new_ca(tmp_path: Path) -> None:
    first, _ = make_test_pki(tmp_path / "a")
    second, _ = make_test_pki(tmp_path / "b")
    assert load_cert(first).public_key() != load_cert(second).public_key()


def test_directory_is_created(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "pki"
    ca_path, _ = make_test_pki(target)
    assert ca_path.parent == target


# --------------------------------------------------------------------------- dicomwire certs


def run_certs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*dicomwire_argv(), "certs", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_cli_certs_with_name(tmp_path: Path) -> None:
    target = tmp_path / "out"
    done = run_certs(str(target), "--name", "foo")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert f"CA: {target / 'ca.pem'}" in done.stdout
    for kind in ("rsa", "ecdsa"):
        cert_path = target / f"foo-{kind}.pem"
        line = (
            f"foo ({kind}): {cert_path} {target / f'foo-{kind}-key.pem'} "
            f"{target / f'foo-{kind}.p12'}"
        )
        assert line in done.stdout
        cert = load_cert(cert_path)
        assert common_name(cert) == "foo"
        assert alternative_names(cert)[0] == ["foo"]
        cert.verify_directly_issued_by(load_cert(target / "ca.pem"))
        key, p12_cert, _ = pkcs12.load_key_and_certificates(
            (target / f"foo-{kind}.p12").read_bytes(), b"dicomwire"
        )
        assert p12_cert == cert and key is not None
    assert not (target / "localhost-rsa.pem").exists()


def test_cli_certs_defaults_to_localhost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", str(tmp_path)]) == 0
    assert f"CA: {tmp_path / 'ca.pem'}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            "ca.pem",
            "ca-key.pem",
            "localhost-rsa.pem",
            "localhost-rsa-key.pem",
            "localhost-rsa.p12",
            "localhost-ecdsa.pem",
            "localhost-ecdsa-key.pem",
            "localhost-ecdsa.p12",
        ]
    )


def test_cli_certs_several_names_password_and_days(tmp_path: Path) -> None:
    argv = ["certs", str(tmp_path), "--name", "a.example", "--name", "b.example"]
    assert main([*argv, "--password", "pw", "--days", "3"]) == 0
    now = datetime.datetime.now(datetime.UTC)
    for name in ("a.example", "b.example"):
        for kind in ("rsa", "ecdsa"):
            cert = load_cert(tmp_path / f"{name}-{kind}.pem")
            assert alternative_names(cert)[0] == [name]
            assert cert.not_valid_after_utc - now <= datetime.timedelta(days=3)
            key, _, _ = pkcs12.load_key_and_certificates(
                (tmp_path / f"{name}-{kind}.p12").read_bytes(), b"pw"
            )
            assert key is not None
