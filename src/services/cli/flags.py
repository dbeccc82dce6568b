"""The flags every ``dicomwire`` subcommand shares, DCMTK-like, and what they mean.

AE titles (PS3.8 §9.3.2: 16 characters, no backslash or control characters), ports,
ranges, the maximum PDU length (PS3.8 §D.1), timeouts, logging, known nodes, and the
PS3.15 Annex B secure transport flags: DCMTK's ``+tls``, ``+cf``, ``+py`` spelled out as
``--tls``, ``--cert``, ``--key``, ``--pkcs12``, ``--password-file``, ``--ca``,
``--tls-profile`` (and ``--tls-port``, ``--no-peer-cert`` for a node).

Only what building a parser needs is imported here: a subcommand's runner imports the
rest, so ``dicomwire --version`` starts fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from ...errors import ConfigError, DicomWireError
from ...ul.identifiers import validate_ae_title
from ...ul.negotiation import DEFAULT_MAX_PDU_LENGTH, KnownNode
from ...ul.tls import TLSConfig, TLSProfile

if TYPE_CHECKING:
    from ...aio import Opening
    from ...ul.association import Timeouts
    from ..client import Client
    from ..directory import RemoteAE

__all__ = [
    "add_audit",
    "add_common",
    "add_peer",
    "add_scu_timeouts",
    "add_tls_arguments",
    "ae_title",
    "configure_logging",
    "int_in",
    "known_node",
    "remote_ae",
    "NODE_LOG_LEVELS",
    "pdu_length",
    "seconds",
    "seconds_or_zero",
    "peer_port",
    "port_number",
    "positive",
    "timeouts",
    "tls_config_from_arguments",
]


def ae_title(value: str) -> str:
    """An argparse type: an AE title (PS3.8 §9.3.2), its error a usage error."""
    try:
        return validate_ae_title(value)
    except DicomWireError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def int_in(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{what} must be from {low} to {high}")
        return number

    return parse


#: A peer's TCP port: 1 to 65535.
peer_port = int_in(1, 65535, "port")
#: A count or size: 1 and up.
positive = int_in(1, 1 << 30, "value")


def seconds(value: str) -> float:
    """An argparse type: a positive number of seconds (a timeout, a grace period)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: must be a positive number of seconds")
    return number


def seconds_or_zero(value: str) -> float:
    """An argparse type: a number of seconds, 0 meaning none (no timeout, no grace)."""
    if value.strip() in ("0", "0.0"):
        return 0.0
    try:
        return seconds(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{value!r}: must be a positive number of seconds, or 0 for none"
        ) from None


def port_number(value: str) -> int:
    """An argparse type: a TCP port to listen on, 0 (any free port) to 65535."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("port must be a whole number") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError("port must be from 0 to 65535")
    return number


def pdu_length(value: str) -> int:
    """An argparse type: a Maximum Length to receive, 0 (unlimited) or 4096 and up."""
    number = int(value)
    if number != 0 and not 4096 <= number <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError("max PDU must be 0 (unlimited) or 4096..4294967295")
    return number


def known_node(value: str) -> KnownNode:
    """``AE``, ``AE@HOST`` or ``AE@HOST:PORT`` (HOST may be an address or a network)."""
    title, _, where = value.partition("@")
    host, port = where, None
    if where.count(":") == 1:  # an IPv6 address or network has several colons
        host, _, port_text = where.partition(":")
        port = peer_port(port_text)
    return KnownNode(ae_title(title), host or None, port)


def remote_ae(value: str) -> RemoteAE:
    """``AE@HOST:PORT`` for the AE directory, ``+tls`` after it to call over TLS."""
    from ..directory import RemoteAE

    text, tls = (value[:-4], True) if value.endswith("+tls") else (value, False)
    entry = known_node(text)
    if entry.host is None or entry.port is None or "/" in entry.host:
        raise argparse.ArgumentTypeError(f"{value!r}: the AE directory needs AE@HOST:PORT")
    return RemoteAE(entry.ae_title, entry.host, entry.port, tls=tls)


def add_peer(parser: argparse.ArgumentParser) -> None:
    """HOST and PORT of the peer, our (calling) and its (called) AE title: an SCU's flags."""
    parser.add_argument("host", help="peer host name or address")
    parser.add_argument("port", type=peer_port, help="peer TCP port")
    parser.add_argument(
        "--aet",
        "-aet",
        type=ae_title,
        default="DICOMWIRE",
        help="our (calling) AE title (DICOMWIRE)",
    )
    parser.add_argument(
        "--aec",
        "-aec",
        type=ae_title,
        default="DICOMWIRE",
        help="the peer's (called) AE title (DICOMWIRE, a dicomwire node's default)",
    )


def add_scu_timeouts(parser: argparse.ArgumentParser, response: str) -> None:
    """The DIMSE and connect timeouts of an SCU waiting for each ``response``."""
    parser.add_argument(
        "--dimse-timeout",
        type=seconds_or_zero,
        default=60.0,
        metavar="S",
        help=f"seconds to wait for each {response} (60)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=seconds,
        default=15.0,
        metavar="S",
        help="seconds to wait for the TCP connection (15)",
    )


def add_common(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """Flags every tool has; ``defaults=False`` leaves them None so a config file wins."""

    def default(value: float) -> float | None:
        return value if defaults else None

    parser.add_argument("-v", "--verbose", action="store_true", help="log association events")
    parser.add_argument("-d", "--debug", action="store_true", help="log every PDU decoded")
    parser.add_argument(
        "--trace",
        type=Path,
        metavar="FILE",
        help="write every PDU sent and received to FILE as JSON lines (exact bytes, base64)",
    )
    parser.add_argument(
        "--max-pdu",
        "-pdu",
        type=pdu_length,
        default=DEFAULT_MAX_PDU_LENGTH if defaults else None,
        metavar="N",
        help=f"maximum PDU length we receive (0 = unlimited; default {DEFAULT_MAX_PDU_LENGTH})",
    )
    parser.add_argument(
        "--acse-timeout",
        type=seconds_or_zero,
        default=default(30.0),
        metavar="S",
        help="seconds to wait for A-ASSOCIATE-AC/RJ and A-RELEASE-RP (30)",
    )
    parser.add_argument(
        "--artim-timeout",
        type=seconds,
        default=default(30.0),
        metavar="S",
        help="ARTIM timer in seconds (30)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=seconds_or_zero,
        default=default(60.0),
        metavar="S",
        help="abort after this many seconds without data (60; 0 = never)",
    )


def audit_destination(value: str) -> str:
    """An argparse type: an audit destination (``file:[PATH]``, ``udp://``, ``tls://``)."""
    if value.startswith("file:"):
        return value
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("udp", "tls") or not parts.hostname or port is None:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected file:[PATH], udp://HOST:PORT or tls://HOST:PORT"
        )
    return value


def add_audit(parser: argparse.ArgumentParser) -> None:
    """``--audit DEST``: the tool's audit trail (PS3.15 A.5; see docs/audit.md)."""
    parser.add_argument(
        "--audit",
        action="append",
        type=audit_destination,
        default=[],
        metavar="DEST",
        help="record PS3.15 audit messages (start/stop, transfers, queries...) to DEST: "
        "file:[PATH] (default ~/.dicomwire/audit.log), udp://HOST:PORT (SYSLOG-UDP) or "
        "tls://HOST:PORT (SYSLOG-TLS, with the --tls certificates); repeatable",
    )


def add_scu_flags(parser: argparse.ArgumentParser, response: str) -> None:
    """What every SCU command ends with: its timeouts (waiting for each ``response``), the
    common flags, TLS and ``--audit``, in that order (its ``--help`` reads alike)."""
    add_scu_timeouts(parser, response)
    add_common(parser)
    add_tls_arguments(parser)
    add_audit(parser)


def add_tls_arguments(parser: argparse.ArgumentParser, *, server: bool = False) -> None:
    """PS3.15 secure transport flags (DCMTK's +tls, +cf, +py... spelled out)."""
    group = parser.add_argument_group("TLS (PS3.15 Annex B secure transport)")
    if server:
        group.add_argument(
            "--tls-port",
            type=port_number,
            metavar="N",
            help="also listen for TLS connections on port N (2762 when a certificate is given)",
        )
        group.add_argument(
            "--no-peer-cert",
            dest="require_peer_cert",
            action="store_false",
            default=True,
            help="do not require a client certificate (mutual auth is the default)",
        )
    else:
        group.add_argument("--tls", action="store_true", help="connect with TLS")
    group.add_argument("--cert", type=Path, help="our certificate (PEM)")
    group.add_argument("--key", type=Path, help="our private key (PEM)")
    group.add_argument(
        "--pkcs12", type=Path, metavar="FILE", help="our certificate and key as PKCS#12 (.p12/.pfx)"
    )
    group.add_argument(
        "--password-file", type=Path, metavar="F", help="file holding the key or PKCS#12 password"
    )
    group.add_argument(
        "--ca",
        type=Path,
        metavar="FILE_OR_DIR",
        help="trusted CA certificates (a PEM file or a hashed directory)",
    )
    group.add_argument(
        "--tls-profile",
        choices=[p.value for p in TLSProfile],
        default=TLSProfile.NON_DOWNGRADING_BCP195.value,
        help="secure transport profile (bcp195-nd: Non-Downgrading BCP 195)",
    )


def tls_config_from_arguments(args: argparse.Namespace) -> TLSConfig | None:
    """The TLS settings the flags describe, or None without TLS."""
    wanted = getattr(args, "tls", False) or getattr(args, "tls_port", None) is not None
    if hasattr(args, "tls_port"):  # serve: a certificate alone turns the TLS port on
        wanted = wanted or args.cert is not None or args.pkcs12 is not None
    if not wanted:
        return None
    password = None
    if args.password_file is not None:
        try:
            password = args.password_file.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(
                f"cannot read password file {args.password_file}: {exc.strerror or exc}",
                key="password_file",
            ) from None
    ca = args.ca
    config = TLSConfig(
        certificate=args.cert,
        key=args.key,
        password=password,
        pkcs12=args.pkcs12,
        ca_file=ca if ca is not None and not ca.is_dir() else None,
        ca_dir=ca if ca is not None and ca.is_dir() else None,
        profile=TLSProfile(args.tls_profile),
        require_peer_certificate=getattr(args, "require_peer_cert", True),
    )
    from ..config import check_tls_files

    check_tls_files(config)
    return config


#: Logger levels by verbosity (default, ``-v``, ``-d``) that a subcommand sets beside the
#: ``dicomwire`` logger's; ``dicomwire serve`` uses :data:`NODE_LOG_LEVELS`.
LogLevels = dict[str, tuple[int, int, int]]

#: A node's log: by default its start and stop, every refusal and rejection (WARNING);
#: ``-v`` adds one summary line per association; ``-d`` every instance and PDU.
NODE_LOG_LEVELS: LogLevels = {
    "dicomwire.services.node": (logging.INFO, logging.INFO, logging.DEBUG),
    "dicomwire.services.node.associations": (logging.WARNING, logging.INFO, logging.DEBUG),
    "dicomwire.ul": (logging.WARNING, logging.WARNING, logging.DEBUG),
    "dicomwire.dimse": (logging.WARNING, logging.WARNING, logging.DEBUG),
}


def configure_logging(args: argparse.Namespace) -> None:
    """``-v``: association events (INFO); ``-d``: every PDU decoded (DEBUG); to stderr.

    A subcommand may set ``log_levels`` (:data:`LogLevels`) for loggers that differ.
    """
    verbosity = 0
    if getattr(args, "verbose", False):
        verbosity = 1
    if getattr(args, "debug", False):
        verbosity = 2
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("dicomwire").setLevel(
        (logging.WARNING, logging.INFO, logging.DEBUG)[verbosity]
    )
    levels: LogLevels = getattr(args, "log_levels", None) or {}
    for name, by_verbosity in levels.items():
        logging.getLogger(name).setLevel(by_verbosity[verbosity])


def timeouts(args: argparse.Namespace, dimse: float | None) -> Timeouts:
    """The timeouts the common flags give, with ``dimse`` for each response."""
    from ...ul.association import Timeouts

    return Timeouts(
        artim=args.artim_timeout,
        acse=args.acse_timeout or None,
        dimse=dimse,
        network_idle=args.idle_timeout or None,
        connect=getattr(args, "connect_timeout", 15.0),
    )


class PeerOptions(TypedDict):
    """The keyword arguments of an SCU call that an SCU command's flags give."""

    called_ae: str
    calling_ae: str
    timeouts: Timeouts
    tls: TLSConfig | None


def peer_options(args: argparse.Namespace) -> PeerOptions:
    """``-aec``/``-aet``, the timeouts and TLS of an SCU command, as keyword arguments."""
    return PeerOptions(
        called_ae=args.aec,
        calling_ae=args.aet,
        timeouts=timeouts(args, args.dimse_timeout or None),
        tls=tls_config_from_arguments(args),
    )


def connect_from_arguments(
    args: argparse.Namespace, services: Iterable[str], *, relational: bool = False
) -> Opening[Client]:
    """:func:`~dicomwire.services.client.connect` to the peer an SCU command's flags name:
    host and port, ``-aec``/``-aet``, ``-pdu``, the timeouts and TLS."""
    from ..client import connect

    return connect(
        args.host,
        args.port,
        services=services,
        max_pdu_length=args.max_pdu,
        relational=relational,
        **peer_options(args),
    )
