"""Test certificates for trying DICOM TLS locally (PS3.15 Annex B needs X.509 on both sides).

``dicomwire certs DIR`` writes a test CA and, for each node name, an RSA and an ECDSA
certificate with its key (PEM) and a PKCS#12 bundle (.p12, as modality vendors ship them).
Not for production: the CA key sits next to the certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["IssuedCertificate", "make_test_pki"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """Paths of one node's certificate, key and PKCS#12 bundle."""

    name: str
    kind: str
    certificate: Path
    key: Path
    pkcs12: Path


def _new_key(kind: str) -> PrivateKey:
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)
    return path


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_test_pki(
    directory: Path,
    names: Sequence[str] = ("localhost",),
    *,
    password: bytes = b"dicomwire",
    days: int = 365,
    expired: bool = False,
) -> tuple[Path, list[IssuedCertificate]]:
    """Write a test CA and RSA + ECDSA certificates for each name; return the CA path.

    Each certificate is valid for TLS server and client use, with the name (and 127.0.0.1
    and ::1) as subject alternative names. ``expired`` makes certificates that ran out
    yesterday (for testing refusals).
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dicomwire test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = _write(directory / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(directory / "ca-key.pem", _pem_key(ca_key), private=True)

    issued: list[IssuedCertificate] = []
    for name in names:
        for kind in ("rsa", "ecdsa"):
            key = _new_key(kind)
            not_after = (
                now - datetime.timedelta(days=1) if expired else now + datetime.timedelta(days=days)
            )
            alternative: list[x509.GeneralName] = [
                x509.DNSName(name),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]
            cert = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=2))
                .not_valid_after(not_after)
                .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
                .add_extension(  # RFC 5280 §4.2.1.1: MUST in certificates a CA issues
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                    critical=False,
                )
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
                )
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(
                    x509.ExtendedKeyUsage(
                        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                    ),
                    critical=False,
                )
                .sign(ca_key, hashes.SHA256())
            )
            stem = f"{name}-{kind}"
            cert_path = _write(
                directory / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM)
            )
            key_path = _write(directory / f"{stem}-key.pem", _pem_key(key), private=True)
            bundle = pkcs12.serialize_key_and_certificates(
                stem.encode(),
                key,
                cert,
                [ca_cert],
                serialization.BestAvailableEncryption(password),
            )
            p12_path = _write(directory / f"{stem}.p12", bundle, private=True)
            issued.append(IssuedCertificate(name, kind, cert_path, key_path, p12_path))
    return ca_path, issued
