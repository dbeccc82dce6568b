"""The TLS flags every dicomwire tool shares (PS3.15 Annex B), and the TLSConfig they mean.

DCMTK's ``+tls``, ``+cf``, ``+py`` spelled out: ``--tls``, ``--cert``, ``--key``,
``--pkcs12``, ``--password-file``, ``--ca``, ``--tls-profile`` (and ``--tls-port``,
``--no-peer-cert`` for a node).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .tls import TLSConfig, TLSProfile

__all__ = ["add_tls_arguments", "port_number", "tls_config_from_arguments"]


def port_number(value: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("port must be a whole number") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError("port must be from 0 to 65535")
    return number


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
        password = args.password_file.read_bytes().rstrip(b"\r\n")
    ca = args.ca
    return TLSConfig(
        certificate=args.cert,
        key=args.key,
        password=password,
        pkcs12=args.pkcs12,
        ca_file=ca if ca is not None and not ca.is_dir() else None,
        ca_dir=ca if ca is not None and ca.is_dir() else None,
        profile=TLSProfile(args.tls_profile),
        require_peer_certificate=getattr(args, "require_peer_cert", True),
    )
