"""The ``dicomwire`` command line: one subcommand per tool, DCMTK-like flags.

- ``dicomwire echo HOST PORT`` — Verification SCU (like DCMTK's echoscu);
- ``dicomwire serve`` — the node (Verification SCP today; storage etc. with later issues).

Exit codes: 0 success; 1 a DICOM failure (non-success status, rejection, abort, timeout);
2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from .. import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, __version__
from ..errors import DicomWireError
from ..ul.association import Timeouts
from ..ul.identifiers import validate_ae_title
from ..ul.negotiation import DEFAULT_MAX_PDU_LENGTH

log = logging.getLogger("dicomwire.cli")


def _ae_title(value: str) -> str:
    try:
        return validate_ae_title(value)
    except DicomWireError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _pdu_length(value: str) -> int:
    number = int(value)
    if number != 0 and not 4096 <= number <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError("max PDU must be 0 (unlimited) or 4096..4294967295")
    return number


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="log association events")
    parser.add_argument("-d", "--debug", action="store_true", help="log every PDU decoded")
    parser.add_argument(
        "--max-pdu",
        "-pdu",
        type=_pdu_length,
        default=DEFAULT_MAX_PDU_LENGTH,
        metavar="N",
        help=f"maximum PDU length we receive (0 = unlimited; default {DEFAULT_MAX_PDU_LENGTH})",
    )
    parser.add_argument(
        "--acse-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for A-ASSOCIATE-AC/RJ and A-RELEASE-RP (30)",
    )
    parser.add_argument(
        "--artim-timeout", type=float, default=30.0, metavar="S", help="ARTIM timer in seconds (30)"
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="abort after this many seconds without data (60; 0 = never)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicomwire",
        description="DICOM networking tools and node (asyncio, PS3.8/PS3.7/PS3.4).",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=(
            f"dicomwire {__version__} (implementation class UID {IMPLEMENTATION_CLASS_UID}, "
            f"version name {IMPLEMENTATION_VERSION_NAME})"
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    echo = commands.add_parser(
        "echo",
        help="Verification SCU: send C-ECHO (like echoscu)",
        description="Open an association, send C-ECHO-RQ, release. Exit 0 only on status 0000.",
    )
    echo.add_argument("host", help="peer host name or address")
    echo.add_argument("port", type=int, help="peer TCP port")
    echo.add_argument(
        "--aet",
        "-aet",
        type=_ae_title,
        default="DICOMWIRE",
        help="our (calling) AE title (DICOMWIRE)",
    )
    echo.add_argument(
        "--aec",
        "-aec",
        type=_ae_title,
        default="ANY-SCP",
        help="the peer's (called) AE title (ANY-SCP)",
    )
    echo.add_argument(
        "--repeat",
        "-r",
        type=int,
        default=1,
        metavar="N",
        help="send N C-ECHO requests on the association (1)",
    )
    echo.add_argument(
        "--dimse-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for each C-ECHO-RSP (60)",
    )
    echo.add_argument(
        "--connect-timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="seconds to wait for the TCP connection (15)",
    )
    _add_common(echo)

    serve = commands.add_parser(
        "serve",
        help="run the node (Verification SCP; storage with later issues)",
        description="Accept associations and answer DIMSE requests until SIGINT/SIGTERM.",
    )
    serve.add_argument("--port", "-p", type=int, default=11112, help="TCP port (11112)")
    serve.add_argument(
        "--host", default=None, help="address to listen on (default: every address, IPv4 and IPv6)"
    )
    serve.add_argument(
        "--aet",
        "-aet",
        type=_ae_title,
        action="append",
        default=None,
        help="our AE title; repeat for several (DICOMWIRE)",
    )
    serve.add_argument(
        "--storage", type=Path, default=Path("data"), help="storage directory (./data)"
    )
    serve.add_argument("--promiscuous", action="store_true", help="accept any called AE title")
    serve.add_argument(
        "--max-associations",
        type=int,
        default=100,
        metavar="N",
        help="simultaneous associations before rejecting (100)",
    )
    _add_common(serve)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING
    if getattr(args, "verbose", False):
        level = logging.INFO
    if getattr(args, "debug", False):
        level = logging.DEBUG
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("dicomwire").setLevel(level)


def _timeouts(args: argparse.Namespace, dimse: float | None) -> Timeouts:
    return Timeouts(
        artim=args.artim_timeout,
        acse=args.acse_timeout or None,
        dimse=dimse,
        network_idle=args.idle_timeout or None,
        connect=getattr(args, "connect_timeout", 15.0),
    )


def _run(coroutine: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def _echo(args: argparse.Namespace) -> int:
    from ..services.verification import echo

    try:
        status = await echo(
            args.host,
            args.port,
            calling_ae_title=args.aet,
            called_ae_title=args.aec,
            max_pdu_length=args.max_pdu,
            repeat=args.repeat,
            timeouts=_timeouts(args, args.dimse_timeout or None),
        )
    except DicomWireError as exc:
        print(f"echo failed: {exc}", file=sys.stderr)
        return 1
    if not status.is_success:
        print(f"C-ECHO status {status}", file=sys.stderr)
        return 1
    print(f"C-ECHO to {args.aec} at {args.host}:{args.port}: success (0x0000)")
    return 0


async def _serve(args: argparse.Namespace) -> int:
    from .node import NodeConfig, run_node

    config = NodeConfig(
        ae_titles=args.aet or ["DICOMWIRE"],
        host=args.host,
        port=args.port,
        storage=args.storage,
        promiscuous=args.promiscuous,
        max_associations=args.max_associations,
        max_pdu_length=args.max_pdu,
        timeouts=_timeouts(args, None),
    )
    config.storage.mkdir(parents=True, exist_ok=True)
    try:
        await run_node(config)
    except OSError as exc:
        print(f"cannot listen on port {args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _configure_logging(args)
    if args.command == "echo":
        return _run(_echo(args))
    return _run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
