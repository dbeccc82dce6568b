"""TLS secure transport connections: PS3.15 Annex B (B.9 BCP 195, B.10 Non-Downgrading
BCP 195, B.11 Extended BCP 195), on Python's ssl over OpenSSL.

Every profile here negotiates TLS 1.2 or 1.3 only, with no compression and no
renegotiation; a peer offering less fails the handshake — never a fallback to a weaker
version or to plaintext.

========================  ==========  =====================================================
profile                    versions    TLS 1.2 cipher suites (preference order)
========================  ==========  =====================================================
bcp195-nd (default)        1.2, 1.3    DHE-RSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256,
                                       DHE-RSA-AES256-GCM-SHA384, ECDHE-RSA-AES256-GCM-SHA384
                                       (+ ECDHE-ECDSA counterparts for ECDSA certificates)
bcp195                     1.2, 1.3    the four above, then the CBC/SHA-2 fallbacks
                                       DHE/ECDHE-RSA-AES128/256-SHA256/384
bcp195-ex                  1.2, 1.3    ECDHE-ECDSA/ECDHE-RSA with AES-GCM only
========================  ==========  =====================================================

TLS 1.3 suites are OpenSSL's (AES-128/256-GCM, ChaCha20-Poly1305).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ..errors import TLSError

__all__ = [
    "TLSConfig",
    "TLSError",
    "TLSProfile",
    "client_context",
    "describe_tls_error",
    "server_context",
]


class TLSProfile(Enum):
    """The secure transport connection profiles of PS3.15 Annex B that dicomwire offers."""

    NON_DOWNGRADING_BCP195 = "bcp195-nd"
    BCP195 = "bcp195"
    EXTENDED_BCP195 = "bcp195-ex"


_ND_SUITES = (
    "DHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
)

#: TLS 1.2 cipher suites (OpenSSL names) of each profile, in preference order.
PROFILE_CIPHERS: dict[TLSProfile, tuple[str, ...]] = {
    TLSProfile.NON_DOWNGRADING_BCP195: _ND_SUITES,
    TLSProfile.BCP195: (
        *_ND_SUITES,
        "DHE-RSA-AES128-SHA256",
        "ECDHE-RSA-AES128-SHA256",
        "DHE-RSA-AES256-SHA256",
        "ECDHE-RSA-AES256-SHA384",
    ),
    TLSProfile.EXTENDED_BCP195: (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
    ),
}

# RFC 7919 ffdhe2048: DHE suites need group parameters that Python does not set by itself.
_FFDHE2048 = b"""-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""


@dataclass(slots=True)
class TLSConfig:
    """Our certificate and key, whom we trust, and how strict to be.

    ``certificate``/``key`` are PEM files (``password`` for an encrypted key), or
    ``pkcs12`` is a .p12/.pfx file as modality vendors ship them. ``ca_file``/``ca_dir``
    form the trust store. ``require_peer_certificate`` is mutual authentication (on by
    default for the SCP; a client always verifies the server).
    """

    certificate: Path | None = None
    key: Path | None = None
    password: bytes | None = None
    pkcs12: Path | None = None
    ca_file: Path | None = None
    ca_dir: Path | None = None
    profile: TLSProfile = TLSProfile.NON_DOWNGRADING_BCP195
    require_peer_certificate: bool = True
    handshake_timeout: float = 15.0


@contextlib.contextmanager
def _pem_from_pkcs12(path: Path, password: bytes | None) -> Iterator[tuple[str, str]]:
    """Certificate chain and key of a PKCS#12 file as PEM files that live for the block."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        key, cert, extra = pkcs12.load_key_and_certificates(path.read_bytes(), password)
    except (OSError, ValueError) as exc:
        raise TLSError(f"cannot read PKCS#12 file {path}: {exc}") from exc
    if key is None or cert is None:
        raise TLSError(f"PKCS#12 file {path} holds no key and certificate")
    chain = cert.public_bytes(serialization.Encoding.PEM) + b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in extra
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with tempfile.TemporaryDirectory(prefix="dicomwire-tls-") as directory:
        os.chmod(directory, 0o700)
        cert_path = os.path.join(directory, "cert.pem")
        key_path = os.path.join(directory, "key.pem")
        for target, data in ((cert_path, chain), (key_path, key_pem)):
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(data)
        yield cert_path, key_path


def _context(config: TLSConfig, purpose: int) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.set_ciphers(":".join(PROFILE_CIPHERS[config.profile]))
    except ssl.SSLError as exc:  # pragma: no cover - depends on the OpenSSL build
        raise TLSError(f"OpenSSL offers none of the {config.profile.value} suites") from exc
    try:
        if config.pkcs12 is not None:
            with _pem_from_pkcs12(config.pkcs12, config.password) as (cert, key):
                context.load_cert_chain(cert, key)
        elif config.certificate is not None:
            # Never let OpenSSL prompt on a terminal for an encrypted key's pass phrase:
            # without a password, an empty one is tried and a clear error follows.
            password = config.password if config.password is not None else (lambda: b"")
            context.load_cert_chain(config.certificate, config.key, password=password)
        if config.ca_file is not None or config.ca_dir is not None:
            context.load_verify_locations(
                cafile=str(config.ca_file) if config.ca_file else None,
                capath=str(config.ca_dir) if config.ca_dir else None,
            )
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(f"cannot load certificates or keys: {exc}") from exc
    return context


def server_context(config: TLSConfig) -> ssl.SSLContext:
    """The SSLContext of a TLS acceptor (the node's TLS port)."""
    if config.certificate is None and config.pkcs12 is None:
        raise TLSError("a TLS acceptor needs a certificate and key (or a PKCS#12 file)")
    context = _context(config, ssl.PROTOCOL_TLS_SERVER)
    with tempfile.NamedTemporaryFile(suffix=".pem") as dh:
        dh.write(_FFDHE2048)
        dh.flush()
        context.load_dh_params(dh.name)
    if config.require_peer_certificate:
        if config.ca_file is None and config.ca_dir is None:
            raise TLSError("mutual authentication needs a trust store (--ca)")
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = (
            ssl.CERT_OPTIONAL if config.ca_file or config.ca_dir else ssl.CERT_NONE
        )
    return context


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def client_context(config: TLSConfig, host: str) -> ssl.SSLContext:
    """The SSLContext of a TLS requestor connecting to ``host``.

    The server's certificate is always verified against the trust store; its host name is
    checked when ``host`` is a name (not an address).
    """
    if config.ca_file is None and config.ca_dir is None:
        raise TLSError("a TLS requestor needs a trust store (--ca) to verify the peer")
    context = _context(config, ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = not _is_address(host)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def describe_tls_error(error: BaseException) -> str:
    """A one-line reason for a failed handshake (unknown CA, expired, version, cipher...)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        reason = error.reason or ""
        known = {
            "WRONG_VERSION_NUMBER": "not TLS (plaintext on the TLS port?)",
            "HTTP_REQUEST": "not TLS (plaintext on the TLS port?)",
            "UNSUPPORTED_PROTOCOL": "protocol version refused (TLS 1.2 or 1.3 only)",
            "NO_SHARED_CIPHER": "no shared cipher suite",
            "NO_CIPHERS_AVAILABLE": "no shared cipher suite",
            "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust our certificate (unknown CA)",
            "SSLV3_ALERT_CERTIFICATE_EXPIRED": "certificate expired",
            "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the peer sent no certificate",
            "CERTIFICATE_VERIFY_FAILED": "certificate verification failed",
            "TLSV1_ALERT_PROTOCOL_VERSION": "protocol version refused (TLS 1.2 or 1.3 only)",
            "SSLV3_ALERT_HANDSHAKE_FAILURE": "handshake failure (no shared cipher suite?)",
            "SSLV3_ALERT_BAD_CERTIFICATE": "the peer refused our certificate",
            "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the peer refused our certificate",
        }
        return known.get(reason, reason or str(error))
    if isinstance(error, TimeoutError):
        return "handshake timed out"
    return str(error) or type(error).__name__
