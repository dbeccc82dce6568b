"""The prober's report: text blocks per scenario and a score line, or JSON for CI.

Each block names the standard clause (PS3.8, PS3.7) and the requirement next to what the
SCP did. These functions write only to the stream they are given.
"""

from __future__ import annotations

import json
from typing import TextIO

from .model import ProbeTarget, ScenarioResult, SuiteReport, Verdict
from .scenarios import SCENARIOS

__all__ = [
    "format_result",
    "scenario_table",
    "write_footer",
    "write_header",
    "write_report",
    "write_result",
]

_MARK = {
    Verdict.PASS: "PASS",
    Verdict.FAIL: "FAIL",
    Verdict.SKIP: "SKIP",
    Verdict.ERROR: "ERROR",
}


def format_result(result: ScenarioResult, *, verbose: bool = True) -> str:
    """A scenario's lines of the text report."""
    lines = [f"[{_MARK[result.verdict]:>5}] {result.name}: {result.title}"]
    if verbose or result.verdict is not Verdict.PASS:
        lines.append(f"        standard: {result.reference}")
        lines.append(f"        requires: {result.requirement}")
    lines.append(f"        observed: {result.observed}")
    if result.survived is False:
        lines.append("        the SCP did not survive the scenario")
    return "\n".join(lines)


def write_header(target: ProbeTarget, stream: TextIO) -> None:
    """The report's first line: what is probed."""
    stream.write(
        f"dicomwire probe of {target.host}:{target.port} (called {target.called_ae_title}, "
        f"calling {target.calling_ae_title}{', TLS' if target.tls is not None else ''})\n\n"
    )


def write_result(result: ScenarioResult, stream: TextIO, *, verbose: bool = True) -> None:
    """One scenario's block (as soon as it is known, for progress output)."""
    stream.write(format_result(result, verbose=verbose) + "\n")
    stream.flush()


def write_footer(report: SuiteReport, stream: TextIO) -> None:
    """What the SCP said about itself, and the score line."""
    stream.write("\n")
    if report.implementation_class_uid is not None:
        stream.write(
            f"peer: implementation class UID {report.implementation_class_uid}, version "
            f"{report.implementation_version_name}, max PDU {report.max_pdu_length}\n"
        )
    stream.write(report.score_line() + "\n")


def write_report(
    report: SuiteReport, stream: TextIO, *, as_json: bool = False, verbose: bool = True
) -> None:
    """Write the report to ``stream``: text (one block per scenario, a score line) or JSON."""
    if as_json:
        json.dump(report.to_json(), stream, indent=2, ensure_ascii=False)
        stream.write("\n")
        return
    write_header(report.target, stream)
    for result in report.results:
        write_result(result, stream, verbose=verbose)
    write_footer(report, stream)


def scenario_table() -> list[tuple[str, str, str, str]]:
    """(name, title, reference, requirement) of every scenario, for docs and ``--list``."""
    return [(s.name, s.title, s.reference, s.requirement) for s in SCENARIOS]
