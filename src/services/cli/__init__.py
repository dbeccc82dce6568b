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
command starts fast (``--version`` and ``echo`` import neither pydicom nor storage), and
:func:`main` imports and builds only the parser of the subcommand it runs (``dicomwire
--help`` and a mistyped command build them all, for the list).

Exit codes: 0 success; 1 a DICOM failure (non-success status, rejection, abort, timeout);
2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ... import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, __version__

__all__ = ["build_parser", "main"]

#: Each subcommand, in ``dicomwire --help``'s order -> the module (relative to this
#: package) and its function that adds the subcommand's parser (``find``, ``move`` and
#: ``get`` come together). Imported only when that parser is built.
_ADDERS: dict[str, tuple[str, str]] = {
    "echo": (".echo", "add_parser"),
    "serve": (".serve", "add_parser"),
    "store": (".store", "add_parser"),
    "commit": (".commit", "add_parser"),
    "certs": (".certs", "add_parser"),
    "print": (".print", "add_parser"),
    "printer": (".print", "add_printer_parser"),
    "find": (".query", "add_parsers"),
    "move": (".query", "add_parsers"),
    "get": (".query", "add_parsers"),
    "mpps": (".mpps", "add_parser"),
    "worklist": (".worklist", "add_parser"),
    "index": (".index", "add_parser"),
    "conformance-statement": (".conformance", "add_parser"),
    "probe": ("...testing.probe_cli", "add_probe_parser"),
    "cluster": (".cluster", "add_parser"),
}


def _add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], names: Sequence[str]
) -> None:
    """Add the parsers of the subcommands ``names`` to ``commands``, each adder once."""
    for module_name, function in dict.fromkeys(_ADDERS[name] for name in names):
        module = importlib.import_module(module_name, __name__)
        parser = getattr(module, function)(commands)
        if function == "add_probe_parser":  # the prober's adder leaves its runner to us
            parser.set_defaults(run=module.run_probe)


def _needed(argv: Sequence[str]) -> Sequence[str]:
    """The subcommands whose parsers ``argv`` needs: the one it names first, none for
    ``--version`` alone, else all (``--help``, no command, a mistyped one: the list)."""
    if argv and argv[0] in _ADDERS:
        return argv[:1]
    if list(argv) == ["--version"]:
        return ()
    return list(_ADDERS)


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``dicomwire`` parser with the subcommands ``commands`` (default: every one)."""
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
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_parsers(subparsers, list(_ADDERS) if commands is None else commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dicomwire`` with ``argv`` (default: the process's); the exit status."""
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(_needed(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from .flags import configure_logging

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
