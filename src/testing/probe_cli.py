"""``dicomwire probe HOST PORT``: the conformance prober on the command line.

Runs the scenarios of :mod:`dicomwire.testing.prober` (PS3.8 §9 and Table 9-10, PS3.8
Annexes D and E, PS3.7 Annex D.3.3) against any SCP and prints, per scenario, what the
standard requires, what the SCP did and pass or fail, then a score line; ``--json``
prints the same as JSON for CI. Exit status: 0 when no scenario failed, 1 when one did
(or the SCP could not be reached), 2 for bad usage.

The CLI module wires it in with :func:`add_probe_parser` and :func:`run_probe`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, TextIO

from ..errors import DicomWireError
from ..services.cli.flags import add_tls_arguments, ae_title, tls_config_from_arguments

if TYPE_CHECKING:  # the prober is imported when a probe runs: the CLI starts fast
    from .prober import ScenarioResult

__all__ = ["add_probe_parser", "run_probe"]


def _seconds(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return number


def add_probe_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``probe`` subcommand to ``subparsers`` and return its parser."""
    probe = subparsers.add_parser(
        "probe",
        help="run the PS3.8/PS3.7 conformance suite against an SCP",
        description=(
            "Probe a DICOM SCP with valid, malformed, out-of-order and split PDUs and judge "
            "each answer by PS3.8 and PS3.7. After every scenario a fresh association must "
            "still succeed. Exit 0 only when no scenario failed."
        ),
    )
    probe.add_argument("host", nargs="?", help="SCP host name or address")
    probe.add_argument("port", nargs="?", type=int, help="SCP TCP port")
    probe.add_argument(
        "--aet",
        "-aet",
        type=ae_title,
        default="DICOMWIRE-PROBE",
        help="our (calling) AE title (DICOMWIRE-PROBE)",
    )
    probe.add_argument(
        "--aec",
        "-aec",
        type=ae_title,
        default="ANY-SCP",
        help="the SCP's (called) AE title (ANY-SCP)",
    )
    probe.add_argument(
        "--timeout",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="seconds to wait for each answer (5)",
    )
    probe.add_argument(
        "--artim-wait",
        type=_seconds,
        default=40.0,
        metavar="S",
        help="seconds to wait for the SCP's ARTIM timer to close an idle connection (40)",
    )
    probe.add_argument(
        "--max-pdu",
        type=int,
        default=1 << 16,
        metavar="N",
        help="Maximum Length the prober announces (65536)",
    )
    probe.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only scenarios whose name or group matches (shell pattern; repeatable)",
    )
    probe.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave out scenarios whose name or group matches (repeatable)",
    )
    probe.add_argument(
        "--no-slow", action="store_true", help="leave out the scenarios that wait for ARTIM"
    )
    probe.add_argument("--list", action="store_true", help="list the scenarios and exit")
    probe.add_argument("--json", action="store_true", help="print the report as JSON")
    probe.add_argument(
        "--quiet", "-q", action="store_true", help="text report: details only for failures"
    )
    probe.add_argument("-v", "--verbose", action="store_true", help="log association events")
    probe.add_argument("-d", "--debug", action="store_true", help="log every PDU decoded")
    add_tls_arguments(probe)
    return probe


def _list(stream: TextIO) -> None:
    from .prober import SCENARIOS

    for item in SCENARIOS:
        slow = " (waits for ARTIM)" if item.slow else ""
        stream.write(f"{item.name:40} {item.group:12} {item.title}{slow}\n")


async def run_probe(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Run ``dicomwire probe`` as parsed by :func:`add_probe_parser`; the exit status."""
    from .prober import (
        ProbeTarget,
        run_suite,
        select_scenarios,
        write_footer,
        write_header,
        write_report,
        write_result,
    )

    out = sys.stdout if stream is None else stream
    if args.list:
        _list(out)
        return 0
    if args.host is None or args.port is None:
        sys.stderr.write("probe: HOST and PORT are required (or --list)\n")
        return 2
    scenarios = select_scenarios(args.only, args.skip, include_slow=not args.no_slow)
    try:
        target = ProbeTarget(
            args.host,
            args.port,
            called_ae_title=args.aec,
            calling_ae_title=args.aet,
            tls=tls_config_from_arguments(args),
            timeout=args.timeout,
            artim_wait=args.artim_wait,
            max_pdu_length=args.max_pdu,
        )
    except DicomWireError as exc:
        sys.stderr.write(f"probe: {exc}\n")
        return 2
    verbose = not args.quiet

    def progress(result: ScenarioResult) -> None:
        if not args.json:
            write_result(result, out, verbose=verbose)

    if not args.json:
        write_header(target, out)
    report = await run_suite(target, scenarios, on_result=progress)
    if args.json:
        write_report(report, out, as_json=True)
    else:
        write_footer(report, out)
    return 0 if report.ok else 1
