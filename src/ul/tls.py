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
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ..errors import TLSError
from ..records import FrozenRecord, Record

__all__ = [
    "TLSConfig",
    "TLSError",
    "TLSProfile",
    "client_context",
    "HandshakeFailure",
    "describe_tls_error",
    "diagnose_tls_error",
    "profile_context",
    "server_context",
    "tls_failure",
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


@dataclass(slots=True, repr=False, eq=False)
class TLSConfig(Record):
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
    import tempfile  # here, not at the top: a plain-TCP tool never needs it

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
    import tempfile

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


#: OpenSSL reason codes of a TLS alert the peer sent (the alert's name follows the prefix).
_ALERT_PREFIXES = ("SSLV3_ALERT_", "TLSV1_ALERT_", "TLSV13_ALERT_")

#: X509 verify codes (``SSLCertVerificationError.verify_code``) with a reason of their own.
_X509_V_ERR_CERT_HAS_EXPIRED = 10
_X509_V_ERR_HOSTNAME_MISMATCH = 62
_X509_V_ERR_IP_ADDRESS_MISMATCH = 64

#: PDU types of PS3.8 §9.3 (A-ASSOCIATE-RQ ... A-ABORT): a first byte that is one of these,
#: then a zero reserved byte, is a DICOM PDU and not a TLS record (types 20-23).
_PDU_NAMES = {
    1: "A-ASSOCIATE-RQ",
    2: "A-ASSOCIATE-AC",
    3: "A-ASSOCIATE-RJ",
    4: "P-DATA-TF",
    5: "A-RELEASE-RQ",
    6: "A-RELEASE-RP",
    7: "A-ABORT",
}

#: (reason, text, permanent) of OpenSSL reason codes; ``{peer}`` is "the server" or "the
#: client" as seen from this side.
_SSL_REASONS: dict[str, tuple[str, str, bool]] = {
    "WRONG_VERSION_NUMBER": ("not-tls", "not TLS (plaintext on the TLS port?)", True),
    "HTTP_REQUEST": ("not-tls", "not TLS (plaintext on the TLS port?)", True),
    "UNSUPPORTED_PROTOCOL": (
        "protocol-version",
        "protocol version refused (TLS 1.2 or 1.3 only)",
        True,
    ),
    "NO_PROTOCOLS_AVAILABLE": (
        "protocol-version",
        "protocol version refused (TLS 1.2 or 1.3 only)",
        True,
    ),
    "NO_SHARED_CIPHER": ("no-shared-cipher", "no shared cipher suite", True),
    "NO_CIPHERS_AVAILABLE": ("no-shared-cipher", "no shared cipher suite", True),
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": (
        "certificate-required",
        "the peer sent no certificate",
        True,
    ),
    "CERTIFICATE_VERIFY_FAILED": ("untrusted-certificate", "certificate verification failed", True),
    # Alerts the peer sent:
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": (
        "certificate-required",
        "{peer} requires a client certificate",
        True,
    ),
    "TLSV1_ALERT_UNKNOWN_CA": (
        "certificate-refused",
        "{peer} does not trust our certificate",
        True,
    ),
    "SSLV3_ALERT_BAD_CERTIFICATE": ("certificate-refused", "{peer} refused our certificate", True),
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": (
        "certificate-refused",
        "{peer} refused our certificate",
        True,
    ),
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": (
        "certificate-refused",
        "{peer} refused our certificate",
        True,
    ),
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": (
        "certificate-refused",
        "{peer} says our certificate expired",
        True,
    ),
    "TLSV1_ALERT_PROTOCOL_VERSION": (
        "protocol-version",
        "protocol version refused (TLS 1.2 or 1.3 only)",
        True,
    ),
    "TLSV1_ALERT_INSUFFICIENT_SECURITY": ("no-shared-cipher", "no shared cipher suite", True),
    "SSLV3_ALERT_HANDSHAKE_FAILURE": (
        "handshake-failure",
        "handshake failure (no shared cipher suite, or a client certificate required?)",
        True,
    ),
}


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class HandshakeFailure(FrozenRecord):
    """Why a TLS connection failed: a stable ``reason`` code, a one-line ``text``, and
    ``permanent``: trying again with the same settings will not help."""

    reason: str
    text: str
    permanent: bool


def _dicom_pdu_name(received: bytes) -> str | None:
    """The PDU a peer answered with, if its first bytes are a DICOM PDU header."""
    if len(received) >= 2 and received[1] == 0:
        return _PDU_NAMES.get(received[0])
    return None


def diagnose_tls_error(
    error: BaseException,
    *,
    server_side: bool,
    received: bytes = b"",
    after_handshake: bool = False,
    sent_certificate: bool = True,
) -> HandshakeFailure:
    """Classify a failed TLS handshake (or an alert right after it) from ssl's codes.

    ``received`` is the first bytes the peer sent, if any: a DICOM PDU there means the
    peer does not speak TLS on this port. ``after_handshake``: a requestor's connection
    ended right after its handshake, before the A-ASSOCIATE-AC (TLS 1.3 servers send their
    verdict on the client certificate only then). ``sent_certificate``: whether the
    requestor has a certificate to send (an ambiguous alert or close is read with it).
    Decided on OpenSSL's reason codes, X509 verify codes and alert names, never on message
    text.
    """
    peer = "the client" if server_side else "the server"
    pdu = _dicom_pdu_name(received)
    if pdu is not None:
        if server_side:
            text = f"not TLS: the client sent a DICOM {pdu} in plaintext (a plain client?)"
        else:
            text = f"it answered with a DICOM {pdu}"
        return HandshakeFailure("not-tls", text, True)
    if isinstance(error, ssl.SSLCertVerificationError):
        verify_code = error.verify_code
        if verify_code == _X509_V_ERR_CERT_HAS_EXPIRED:
            reason = "expired-certificate"
        elif verify_code in (_X509_V_ERR_HOSTNAME_MISMATCH, _X509_V_ERR_IP_ADDRESS_MISMATCH):
            reason = "hostname-mismatch"
        else:
            reason = "untrusted-certificate"
        return HandshakeFailure(
            reason, f"certificate verification failed: {error.verify_message}", True
        )
    if isinstance(error, ssl.SSLError):
        name = error.reason or ""
        known = _SSL_REASONS.get(name)
        alert = next((name[len(p) :].lower() for p in _ALERT_PREFIXES if name.startswith(p)), None)
        if known is not None:
            reason, text, permanent = known
            text = text.format(peer=peer)
            if reason == "not-tls" and not server_side:
                text = "it answered with something that is not TLS"
        else:
            reason, text, permanent = "handshake-failed", name or str(error), False
        if name == "SSLV3_ALERT_HANDSHAKE_FAILURE" and not server_side:
            # TLS 1.2 answers both a missing client certificate and no common suite so.
            if sent_certificate:
                reason, text = "no-shared-cipher", "no shared cipher suite or protocol version"
            else:
                text = "the server requires a client certificate, or shares no cipher suite"
        if alert is not None:
            text = f"{text} (alert {alert})"
        return HandshakeFailure(reason, text, permanent)
    if isinstance(error, TimeoutError):
        return HandshakeFailure("handshake-timeout", "handshake timed out", False)
    if isinstance(error, ConnectionError) and after_handshake:
        guess = (
            "it may not trust our certificate"
            if sent_certificate
            else "it may require a client certificate (we have none)"
        )
        return HandshakeFailure(
            "closed-after-handshake",
            "the server closed the connection right after the handshake, before answering "
            f"the A-ASSOCIATE-RQ: {guess}",
            True,
        )
    if isinstance(error, ConnectionError) and not server_side and not received:
        # Not a byte back: a plain DICOM server answers a ClientHello with A-ABORT, so this
        # is rather a TLS server that refuses our hello without an alert.
        return HandshakeFailure(
            "closed-during-handshake",
            "the server closed the connection during the handshake without a TLS alert (does "
            "it speak TLS on this port? does it share a TLS version and cipher suite with "
            "our profile?)",
            False,
        )
    if isinstance(error, ConnectionError):
        return HandshakeFailure("closed", "connection closed during the handshake", False)
    return HandshakeFailure("handshake-failed", str(error) or type(error).__name__, False)


def describe_tls_error(error: BaseException, *, server_side: bool = True) -> str:
    """A one-line reason for a failed handshake (unknown CA, expired, version, cipher...)."""
    return diagnose_tls_error(error, server_side=server_side).text


def tls_failure(
    host: str,
    port: int,
    error: BaseException,
    *,
    received: bytes = b"",
    after_handshake: bool = False,
    sent_certificate: bool = True,
) -> TLSError:
    """The :class:`TLSError` a requestor raises for a failed handshake with ``host:port``.

    Its ``reason`` and ``permanent`` come from :func:`diagnose_tls_error`.
    """
    failure = diagnose_tls_error(
        error,
        server_side=False,
        received=received,
        after_handshake=after_handshake,
        sent_certificate=sent_certificate,
    )
    if failure.reason == "not-tls":
        message = f"the server at {host}:{port} does not speak TLS ({failure.text})"
    else:
        message = f"TLS handshake with {host}:{port} failed: {failure.text}"
    tls_error = TLSError(message)
    tls_error.reason = failure.reason
    tls_error.permanent = failure.permanent
    return tls_error


def profile_context(profile: TLSProfile) -> ssl.SSLContext:
    """A requestor context of ``profile`` without certificates, built as every connection's
    is: what the profile negotiates (its versions, options and cipher suites), read by the
    conformance statement."""
    return _context(TLSConfig(profile=profile), ssl.PROTOCOL_TLS_CLIENT)
