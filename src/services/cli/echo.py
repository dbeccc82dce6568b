"""``dicomwire echo HOST PORT``: the Verification SCU (PS3.4 Annex A), like DCMTK's echoscu.

Associate, send C-ECHO-RQ (PS3.7 §9.1.5) ``--repeat`` times, release; exit 0 only when
every response is 0000.
"""

from __future__ import annotations

import argparse
import sys

from ...errors import DicomWireError
from .flags import (
    add_peer,
    add_scu_flags,
    positive,
    timeouts,
    tls_config_from_arguments,
)

__all__ = ["add_parser", "run"]


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``echo`` to ``subparsers``; its ``run`` is :func:`run`."""
    echo = subparsers.add_parser(
        "echo",
        help="Verification SCU: send C-ECHO (like echoscu)",
        description="Open an association, send C-ECHO-RQ, release. Exit 0 only on status 0000.",
    )
    add_peer(echo)
    echo.add_argument(
        "--repeat",
        "-r",
        type=positive,
        default=1,
        metavar="N",
        help="send N C-ECHO requests on the association (1)",
    )
    add_scu_flags(echo, "C-ECHO-RSP")
    echo.set_defaults(run=run)
    return echo


async def run(args: argparse.Namespace) -> int:
    """Run ``dicomwire echo``; the exit status."""
    from ..verification import echo

    try:
        status = await echo(
            args.host,
            args.port,
            calling_ae_title=args.aet,
            called_ae_title=args.aec,
            max_pdu_length=args.max_pdu,
            repeat=args.repeat,
            timeouts=timeouts(args, args.dimse_timeout or None),
            tls=tls_config_from_arguments(args),
        )
    except DicomWireError as exc:
        print(f"echo failed: {exc}", file=sys.stderr)
        return 1
    if not status.is_success:
        print(f"C-ECHO status {status}", file=sys.stderr)
        return 1
    print(f"C-ECHO to {args.aec} at {args.host}:{args.port}: success (0x0000)")
    return 0
