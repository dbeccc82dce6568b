"""The prober's vocabulary: targets, scenarios, findings, observations and reports.

A :class:`Scenario` is a row of the conformance table (:mod:`.scenarios`): the standard
clause it checks (PS3.8, PS3.7), the requirement in words, and either a stimulus and an
expectation (a judge of PS3.8 Table 9-10's actions, :mod:`.judges`) or, for the few
multi-step checks, a run function of its own.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from ... import __version__
from ...errors import DicomWireError
from ...ul.pdu import PDU, AAbort
from ...ul.tls import TLSConfig
from ..rawpeer import describe

if TYPE_CHECKING:
    from .probe import Exchange, Probe

__all__ = [
    "Finding",
    "Judge",
    "Observation",
    "ProbeTarget",
    "Run",
    "Scenario",
    "ScenarioAborted",
    "ScenarioResult",
    "ScenarioSkipped",
    "Stimulus",
    "SuiteReport",
    "Verdict",
]


class Verdict(Enum):
    """The outcome of a scenario."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"  # the prober itself failed: a bug to report, counted as a failure


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """The SCP under test and how patient to be with it.

    ``timeout`` bounds each wait for an answer; ``artim_wait`` is how long the ARTIM
    scenario waits for the SCP to close an idle connection (its ARTIM timer, unknown to
    us). ``max_pdu_length`` is the Maximum Length the prober announces.
    """

    host: str
    port: int
    called_ae_title: str = "ANY-SCP"
    calling_ae_title: str = "DICOMWIRE-PROBE"
    tls: TLSConfig | ssl.SSLContext | None = None
    timeout: float = 5.0
    artim_wait: float = 40.0
    max_pdu_length: int = 1 << 16


@dataclass(slots=True)
class Finding:
    """What a scenario concluded: its verdict and what the SCP did, in words."""

    verdict: Verdict
    observed: str

    @classmethod
    def passed(cls, observed: str) -> Finding:
        return cls(Verdict.PASS, observed)

    @classmethod
    def failed(cls, observed: str) -> Finding:
        return cls(Verdict.FAIL, observed)

    @classmethod
    def skipped(cls, observed: str) -> Finding:
        return cls(Verdict.SKIP, observed)


class ScenarioAborted(DicomWireError):
    """A scenario could not get the SCP to the state it needs (e.g. no association)."""


class ScenarioSkipped(DicomWireError):
    """The SCP's answers so far make the scenario meaningless (e.g. no Maximum Length)."""


@dataclass(slots=True)
class Observation:
    """The first thing the SCP did after a stimulus.

    ``kind`` is ``"pdu"`` (``pdu`` set), ``"closed"`` (closed without a PDU),
    ``"silence"`` (nothing for ``seconds``, connection open) or ``"garbage"`` (bytes that
    are not a PDU).
    """

    kind: str
    seconds: float
    pdu: PDU | None = None
    detail: str = ""
    write_failed: bool = False
    reset: bool = False

    @property
    def abort(self) -> AAbort | None:
        return self.pdu if isinstance(self.pdu, AAbort) else None

    def __str__(self) -> str:
        if self.kind == "pdu":
            text = f"{describe(self.pdu)} after {self.seconds:.2f} s"
        elif self.kind == "closed":
            text = f"closed the connection after {self.seconds:.2f} s without a PDU"
        elif self.kind == "silence":
            text = f"nothing within {self.seconds:.1f} s (connection still open)"
        else:
            text = f"sent bytes that are not a PDU ({self.detail})"
        if self.reset:
            text += " (by a TCP reset: a PDU sent just before may have been lost)"
        if self.write_failed:
            text += "; it closed the connection before reading all we sent"
        return text


#: A scenario with logic of its own: drives the probe and concludes.
Run = Callable[["Probe"], Awaitable[Finding]]
#: Brings the SCP to a state, sends something, and records what came back.
Stimulus = Callable[["Probe"], Awaitable["Exchange"]]
#: Compares an exchange with what the standard requires (may finish it, e.g. release).
Judge = Callable[["Exchange"], Awaitable[Finding]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One conformance check: what it sends, what the standard requires, how to judge.

    Most scenarios are a ``stimulus`` and an ``expect`` judge; a scenario of several
    steps gives ``run`` instead.
    """

    name: str
    group: str
    title: str
    reference: str
    requirement: str
    run: Run | None = None
    #: Waits for the SCP's ARTIM timer (up to ``artim_wait``).
    slow: bool = False
    stimulus: Stimulus | None = None
    expect: Judge | None = None

    def __post_init__(self) -> None:
        row = self.stimulus is not None and self.expect is not None
        bare = self.stimulus is None and self.expect is None
        if not (row if self.run is None else bare):
            raise ValueError(f"scenario {self.name}: give run, or stimulus and expect")

    async def execute(self, probe: Probe) -> Finding:
        """Run the scenario once against ``probe``'s target."""
        if self.run is not None:
            return await self.run(probe)
        assert self.stimulus is not None and self.expect is not None
        return await self.expect(await self.stimulus(probe))


@dataclass(slots=True)
class ScenarioResult:
    """A scenario's outcome, including whether a fresh association still worked after it."""

    name: str
    group: str
    title: str
    reference: str
    requirement: str
    verdict: Verdict
    observed: str
    survived: bool | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "title": self.title,
            "reference": self.reference,
            "requirement": self.requirement,
            "verdict": self.verdict.value,
            "observed": self.observed,
            "survived": self.survived,
            "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True)
class SuiteReport:
    """Every scenario's result, the target, and what the SCP said about itself."""

    target: ProbeTarget
    results: list[ScenarioResult] = field(default_factory=list)
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    max_pdu_length: int | None = None
    seconds: float = 0.0

    def count(self, verdict: Verdict) -> int:
        return sum(1 for r in self.results if r.verdict is verdict)

    @property
    def passed(self) -> int:
        return self.count(Verdict.PASS)

    @property
    def failed(self) -> int:
        return self.count(Verdict.FAIL) + self.count(Verdict.ERROR)

    @property
    def skipped(self) -> int:
        return self.count(Verdict.SKIP)

    @property
    def ok(self) -> bool:
        """True when no scenario failed (skips allowed) and at least one ran."""
        return self.failed == 0 and self.passed > 0

    def result(self, name: str) -> ScenarioResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)

    def score_line(self) -> str:
        judged = self.passed + self.failed
        return (
            f"score: {self.passed}/{judged} passed, {self.failed} failed, "
            f"{self.skipped} skipped ({self.seconds:.1f} s)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "prober": f"dicomwire {__version__}",
            "target": {
                "host": self.target.host,
                "port": self.target.port,
                "called_ae_title": self.target.called_ae_title,
                "calling_ae_title": self.target.calling_ae_title,
                "tls": self.target.tls is not None,
            },
            "peer": {
                "implementation_class_uid": self.implementation_class_uid,
                "implementation_version_name": self.implementation_version_name,
                "max_pdu_length": self.max_pdu_length,
            },
            "score": {
                "passed": self.passed,
                "failed": self.failed,
                "skipped": self.skipped,
                "total": len(self.results),
            },
            "seconds": round(self.seconds, 3),
            "scenarios": [r.to_json() for r in self.results],
        }
