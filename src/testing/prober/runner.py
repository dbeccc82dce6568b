"""Running the conformance table: selection, one scenario at a time, and survival.

After every scenario a fresh association with a C-ECHO must still succeed (PS3.8 §9.3.2,
PS3.7 §9.3.5): the SCP survived what it was sent.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Callable, Iterable, Sequence

from ...errors import DicomWireError
from .model import (
    Finding,
    ProbeTarget,
    Scenario,
    ScenarioAborted,
    ScenarioResult,
    ScenarioSkipped,
    SuiteReport,
    Verdict,
)
from .probe import Probe
from .scenarios import SCENARIOS

__all__ = ["run_suite", "select_scenarios"]


def select_scenarios(
    only: Iterable[str] = (), skip: Iterable[str] = (), *, include_slow: bool = True
) -> list[Scenario]:
    """Scenarios whose name or group matches a pattern of ``only`` (all when empty) and
    none of ``skip`` (shell-style patterns); ``include_slow=False`` leaves out ARTIM waits.
    """
    only, skip = list(only), list(skip)

    def matches(item: Scenario, patterns: list[str]) -> bool:
        return any(
            fnmatch.fnmatchcase(item.name, p) or fnmatch.fnmatchcase(item.group, p)
            for p in patterns
        )

    chosen = []
    for item in SCENARIOS:
        if only and not matches(item, only) and item.name != "baseline":
            continue
        if matches(item, skip) or (item.slow and not include_slow):
            continue
        chosen.append(item)
    return chosen


async def _run_one(probe: Probe, item: Scenario) -> tuple[Finding, bool | None]:
    target = probe.target
    budget = target.timeout * 6 + 10.0 + (target.artim_wait if item.slow else 0.0)
    try:
        finding = await asyncio.wait_for(item.execute(probe), budget)
    except TimeoutError:
        finding = Finding.failed(f"the scenario did not finish within {budget:.0f} s")
    except ScenarioSkipped as exc:
        finding = Finding.skipped(str(exc))
    except ScenarioAborted as exc:
        finding = Finding.failed(str(exc))
    except (DicomWireError, OSError) as exc:
        finding = Finding.failed(f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug in the prober: reported, never hidden
        finding = Finding(Verdict.ERROR, f"prober error: {type(exc).__name__}: {exc}")
    finally:
        await probe.close_all()
    survived, how = await probe.survives()
    if not survived:
        finding = Finding.failed(f"{finding.observed}; then {how}")
    return finding, survived


async def run_suite(
    target: ProbeTarget,
    scenarios: Sequence[Scenario] | None = None,
    *,
    on_result: Callable[[ScenarioResult], None] | None = None,
) -> SuiteReport:
    """Run ``scenarios`` (default: all) one after the other against ``target``.

    The baseline scenario runs first; when it fails nothing else is meaningful and the
    remaining scenarios are reported as skipped. ``on_result`` sees each result as soon
    as it is known (progress output).
    """
    chosen = list(SCENARIOS if scenarios is None else scenarios)
    chosen.sort(key=lambda s: s.name != "baseline")
    report = SuiteReport(target)
    probe = Probe(target)
    started = time.monotonic()
    baseline_failed = False
    for item in chosen:
        begin = time.monotonic()
        survived: bool | None
        if baseline_failed:
            finding = Finding.skipped("not run: the baseline association failed")
            survived = None
        else:
            finding, survived = await _run_one(probe, item)
        result = ScenarioResult(
            item.name,
            item.group,
            item.title,
            item.reference,
            item.requirement,
            finding.verdict,
            finding.observed,
            survived,
            time.monotonic() - begin,
        )
        report.results.append(result)
        if on_result is not None:
            on_result(result)
        if item.name == "baseline" and finding.verdict is not Verdict.PASS:
            baseline_failed = True
    if probe.baseline is not None and probe.baseline.user_information is not None:
        info = probe.baseline.user_information
        report.implementation_class_uid = info.implementation_class_uid
        report.implementation_version_name = info.implementation_version_name
        report.max_pdu_length = info.maximum_length
    report.seconds = time.monotonic() - started
    return report
