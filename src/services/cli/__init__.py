"""The ``dicomwire`` command line: one subcommand per tool, DCMTK-like flags.

- ``dicomwire echo HOST PORT`` — Verification SCU (like DCMTK's echoscu), :mod:`.echo`;
- ``dicomwire store HOST PORT PATH...`` — Storage SCU (like DCMTK's storescu), :mod:`.store`;
- ``dicomwire commit HOST PORT PATH...`` — Storage Commitment SCU, :mod:`.commit`;
- ``dicomwire serve`` — the node: Verification and Storage SCP, plain TCP and TLS,
  :mod:`.serve`;
- ``dicomwire print HOST PORT IMAGE...`` — Print SCU, and ``dicomwire printer`` — the
  virtual film printer (PNG per film), :mod:`.print`;
- ``dicomwire find|move|get HOST PORT -k KEY=VALUE...`` — Query/Retrieve SCU (like
  findscu, movescu, getscu), :mod:`.query`;
- ``dicomwire mpps HOST PORT create|set`` — MPPS SCU (PS3.4 F.7), :mod:`.mpps`;
- ``dicomwire worklist [query] HOST PORT`` / ``worklist add|list|remove`` — Modality
  Worklist SCU and the node's worklist entries, :mod:`.worklist`;
- ``dicomwire index rebuild|stats`` — the node's Q/R index, :mod:`.index`;
- ``dicomwire conformance-statement [-o FILE]`` — the node's DICOM conformance
  statement (PS3.2), Markdown or HTML, :mod:`.conformance`;
- ``dicomwire certs DIR`` — a test CA and certificates for trying TLS, :mod:`.certs`;
- ``dicomwire probe HOST PORT`` — the PS3.8/PS3.7 conformance prober,
  :mod:`dicomwire.testing.probe_cli`;
- ``dicomwire cluster`` — nodes behind HAProxy sharing a throwaway PostgreSQL, :mod:`.cluster`.

Each subcommand module adds its parser (``add_parser``) and sets its runner (``run``: a
function, or a coroutine function that :func:`main` runs on the event loop); the flags
they share are in :mod:`.flags`. A runner imports what it runs only when it runs, so the
command starts fast (``--version`` and ``echo`` import neither pydicom nor storage).

Exit codes: 0 success; 1 a DICOM failure (non-success status, rejection, abort, timeout);
2 bad usage.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ... import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, __version__
from . import certs, commit, conformance, echo, index, mpps, query, serve, store, worklist
from . import cluster as cluster_command
from . import print as print_command
from .flags import configure_logging

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``dicomwire`` parser with every subcommand."""
    from ...testing.probe_cli import add_probe_parser, run_probe

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
    echo.add_parser(commands)
    serve.add_parser(commands)
    store.add_parser(commands)
    commit.add_parser(commands)
    certs.add_parser(commands)
    print_command.add_parser(commands)
    print_command.add_printer_parser(commands)
    query.add_parsers(commands)
    mpps.add_parser(commands)
    worklist.add_parser(commands)
    index.add_parser(commands)
    conformance.add_parser(commands)
    add_probe_parser(commands).set_defaults(run=run_probe)
    cluster_command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dicomwire`` with ``argv`` (default: the process's); the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    configure_logging(args)
    if getattr(args, "trace", None) is not None:
        from ...ul.trace import start_trace

        start_trace(args.trace)
    run: Callable[[argparse.Namespace], int | Coroutine[Any, Any, int]] = args.run
    if getattr(args, "audit", None):  # --audit: one trail for the run, start to stop
        from ..audit.tool import audited

        run = audited(run)  # type: ignore[assignment]
    status = run(args)
    if isinstance(status, int):
        return status
    from ...ul.association import run_event_loop  # an async runner: run it on the loop

    return run_event_loop(status)
