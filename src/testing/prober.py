"""The conformance prober: wire scenarios run against any SCP, judged by PS3.8 and PS3.7.

Each :class:`Scenario` drives a :class:`~dicomwire.testing.rawpeer.RawPeer` against the
SCP, compares what the SCP does with what the standard requires, and yields a
:class:`Finding` (pass, fail or skip, with the observation in words). After every scenario
a fresh association with a C-ECHO must still succeed: the SCP survived. The suite covers

- PS3.8 Table 9-10 in Sta2 (before the A-ASSOCIATE-RQ: AA-1, AA-2) and Sta6 (established:
  AA-8, AA-3), invalid PDUs (Evt19, A-ABORT reasons of Table 9-26), PDU lengths above the
  negotiated maximum (PS3.8 Annex D.1) and near 2^32 (§9.3.1);
- association negotiation (§9.3.2-9.3.4): protocol version, application context, called
  and calling AE titles (A-ASSOCIATE-RJ result, source and reason of Table 9-21), abstract
  and transfer syntax results (Table 9-18), AC content, and the user information answers
  of PS3.7 Annex D.3.3 (role selection, user identity, asynchronous operations window);
- P-DATA (§9.3.5, Annex E): PDVs split at many boundaries, TCP writes of single bytes,
  command and data set PDVs in one PDU, PDVs on an invalid or rejected context ID;
- release (§7.2; Sta8), ARTIM expiry (Evt18), truncated PDUs and resets (Evt17), A-ABORT
  from the requestor (Evt16).

:func:`run_suite` runs the scenarios and returns a :class:`SuiteReport`;
:func:`write_report` prints it (the only output this module writes, to the stream given)
and :meth:`SuiteReport.to_json` is the machine-readable form for CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TextIO

from .. import IMPLEMENTATION_CLASS_UID, __version__
from ..dimse.commands import (
    CommandError,
    CommandField,
    CommandSet,
    Tag,
    encode_command,
    validate_command,
)
from ..dimse.messages import DimseProtocolError
from ..errors import DicomWireError
from ..ul.identifiers import WireStr, normalize_ae_title
from ..ul.negotiation import RequestorConfig, build_request
from ..ul.pdu import (
    DICOM_APPLICATION_CONTEXT,
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    ApplicationContextItem,
    AReleaseRP,
    AReleaseRQ,
    AssociateItem,
    PDataTF,
    PDUError,
    PresentationContextACItem,
    PresentationContextRQItem,
    PresentationDataValue,
    SOPClassCommonExtendedNegotiationItem,
    UnknownItem,
    UserIdentityRQItem,
    UserInformationItem,
)
from ..ul.tls import TLSConfig
from .rawpeer import (
    IMPLICIT_VR_LE,
    SECONDARY_CAPTURE,
    VERIFICATION,
    ContextSpec,
    Message,
    PeerClosedError,
    RawPeer,
    RawPeerError,
    RawPeerTimeout,
    c_echo_rq,
    c_store_rq,
    describe,
    fragments,
    new_uid,
    small_dataset,
)

__all__ = [
    "SCENARIOS",
    "Finding",
    "Observation",
    "Probe",
    "ProbeTarget",
    "Scenario",
    "ScenarioResult",
    "SuiteReport",
    "Verdict",
    "format_result",
    "run_suite",
    "scenario_table",
    "select_scenarios",
    "write_footer",
    "write_header",
    "write_report",
    "write_result",
]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: UIDs under the 2.25 root that no SCP supports (an abstract and a transfer syntax).
UNKNOWN_ABSTRACT_SYNTAX = "2.25.295310457301935316532196366423364123000"
UNKNOWN_TRANSFER_SYNTAX = "2.25.295310457301935316532196366423364123001"
UNKNOWN_APPLICATION_CONTEXT = "2.25.295310457301935316532196366423364123002"


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


Run = Callable[["Probe"], Awaitable[Finding]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One conformance check: what it sends, what the standard requires, how to judge."""

    name: str
    group: str
    title: str
    reference: str
    requirement: str
    run: Run
    #: Waits for the SCP's ARTIM timer (up to ``artim_wait``).
    slow: bool = False


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


# --------------------------------------------------------------------------- the probe


class ScenarioAborted(DicomWireError):
    """A scenario could not get the SCP to the state it needs (e.g. no association)."""


class Probe:
    """What a scenario works with: the target, fresh connections, and observations."""

    def __init__(self, target: ProbeTarget) -> None:
        self.target = target
        self.baseline: AAssociateAC | None = None
        self._peers: list[RawPeer] = []

    # -- connections -------------------------------------------------------------------------

    async def connect(self) -> RawPeer:
        """A new connection (the scenario's peers are closed after it)."""
        peer = await RawPeer.connect(
            self.target.host, self.target.port, tls=self.target.tls, timeout=self.target.timeout
        )
        self._peers.append(peer)
        return peer

    async def close_all(self) -> None:
        peers, self._peers = self._peers, []
        for peer in peers:
            await peer.close(timeout=1.0)

    def config(
        self,
        contexts: Sequence[ContextSpec] = ((VERIFICATION, (IMPLICIT_VR_LE,)),),
        **changes: Any,
    ) -> RequestorConfig:
        settings: dict[str, Any] = {
            "calling_ae_title": self.target.calling_ae_title,
            "called_ae_title": self.target.called_ae_title,
            "contexts": list(contexts),
            "max_pdu_length": self.target.max_pdu_length,
        }
        settings.update(changes)
        return RequestorConfig(**settings)

    def request(
        self,
        contexts: Sequence[ContextSpec] = ((VERIFICATION, (IMPLICIT_VR_LE,)),),
        **changes: Any,
    ) -> AAssociateRQ:
        """An A-ASSOCIATE-RQ from the target's AE titles (``changes``: RequestorConfig)."""
        request, _ = build_request(self.config(contexts, **changes))
        return request

    async def associate(
        self,
        peer: RawPeer,
        contexts: Sequence[ContextSpec] = ((VERIFICATION, (IMPLICIT_VR_LE,)),),
        **kwargs: Any,
    ) -> AAssociateAC | AAssociateRJ:
        return await peer.associate(
            self.target.calling_ae_title,
            self.target.called_ae_title,
            contexts,
            max_pdu_length=self.target.max_pdu_length,
            **kwargs,
        )

    async def established(
        self, contexts: Sequence[ContextSpec] = ((VERIFICATION, (IMPLICIT_VR_LE,)),)
    ) -> RawPeer:
        """A connection in Sta6 with Verification accepted, or :class:`ScenarioAborted`."""
        peer = await self.connect()
        answer = await self.associate(peer, contexts)
        if not isinstance(answer, AAssociateAC):
            raise ScenarioAborted(f"could not associate: {describe(answer)}")
        if peer.accepted_context(VERIFICATION) is None:
            raise ScenarioAborted("the SCP did not accept the Verification context")
        return peer

    # -- stimuli and observations --------------------------------------------------------------

    async def send(self, peer: RawPeer, *items: PDU | bytes) -> bool:
        """Send; False (not an error) when the SCP already closed the connection."""
        try:
            await peer.send(*items)
        except PeerClosedError:
            return False
        return True

    async def observe(
        self, peer: RawPeer, timeout: float | None = None, *, write_failed: bool = False
    ) -> Observation:
        """Wait for the SCP's first reaction: a PDU, a close, garbage or silence."""
        limit = self.target.timeout if timeout is None else timeout
        start = time.monotonic()
        try:
            pdu = await peer.receive(limit)
        except RawPeerTimeout:
            return Observation("silence", limit, write_failed=write_failed)
        except PDUError as exc:
            return Observation(
                "garbage", time.monotonic() - start, detail=str(exc), write_failed=write_failed
            )
        elapsed = time.monotonic() - start
        if pdu is None:
            return Observation("closed", elapsed, write_failed=write_failed, reset=peer.reset)
        return Observation("pdu", elapsed, pdu, write_failed=write_failed)

    async def stimulate_in_two(self, peer: RawPeer, head: bytes, rest: bytes) -> Observation:
        """Send ``head`` (a PDU header) and watch briefly; only then send ``rest``.

        A receiver that judges a PDU by its header answers before the body is written, so
        it never closes with unread bytes (a TCP reset that could swallow its A-ABORT).
        """
        sent = await self.send(peer, head)
        first = await self.observe(peer, min(self.target.timeout, 0.25), write_failed=not sent)
        if first.kind != "silence":
            return first
        sent = await self.send(peer, rest)
        return await self.observe(peer, write_failed=not sent)

    async def stimulate_pdu(self, peer: RawPeer, pdu: PDU | bytes) -> Observation:
        """Send one PDU, header first (see :meth:`stimulate_in_two`), and observe."""
        data = pdu if isinstance(pdu, bytes) else pdu.encode()
        return await self.stimulate_in_two(peer, data[:6], data[6:])

    async def stimulate(
        self, peer: RawPeer, *items: PDU | bytes, timeout: float | None = None
    ) -> Observation:
        sent = await self.send(peer, *items)
        return await self.observe(peer, timeout, write_failed=not sent)

    # -- survival ------------------------------------------------------------------------------

    async def survives(self) -> tuple[bool, str]:
        """A fresh association with one C-ECHO and a release; (worked, what happened)."""
        try:
            async with RawPeer.connect(
                self.target.host,
                self.target.port,
                tls=self.target.tls,
                timeout=self.target.timeout,
            ) as peer:
                answer = await self.associate(peer)
                if not isinstance(answer, AAssociateAC):
                    return False, f"a fresh association was answered {describe(answer)}"
                status = await peer.echo()
                if status != 0:
                    return False, f"a fresh C-ECHO answered status 0x{status:04X}"
                await peer.release()
        except (DicomWireError, OSError) as exc:
            return False, f"a fresh association failed: {exc}"
        return True, "a fresh association and C-ECHO succeeded"


# --------------------------------------------------------------------------- judging helpers


def _rj(pdu: PDU | None) -> AAssociateRJ | None:
    return pdu if isinstance(pdu, AAssociateRJ) else None


def _judge_rj(obs: Observation, source: int, reason: int) -> tuple[bool, str]:
    """An A-ASSOCIATE-RJ with a valid result (1 or 2) and this source and reason."""
    rj = _rj(obs.pdu)
    if rj is None:
        return False, str(obs)
    ok = rj.result in (1, 2) and rj.source == source and rj.reason == reason
    return ok, str(obs)


def _judge_aa1(obs: Observation, reason: int) -> Finding:
    """AA-1: an A-ABORT; with the provider source it must carry ``reason`` (Table 9-26)."""
    abort = obs.abort
    if abort is None:
        return Finding.failed(f"{obs}; AA-1 sends an A-ABORT")
    if abort.source == 0 or (abort.source == 2 and abort.reason == reason):
        return Finding.passed(str(obs))
    return Finding.failed(f"{obs}; expected source 0 (any reason) or source 2 with reason {reason}")


def _judge_aa8(obs: Observation, reason: int | None) -> Finding:
    """AA-8: an A-ABORT with the service-provider source (2) and ``reason`` (None: any)."""
    abort = obs.abort
    if abort is None:
        return Finding.failed(f"{obs}; AA-8 sends an A-ABORT (source 2)")
    if abort.source == 2 and (reason is None or abort.reason == reason):
        return Finding.passed(str(obs))
    wanted = f"source 2, reason {reason}" if reason is not None else "source 2"
    return Finding.failed(f"{obs}; expected {wanted}")


def _judge_close(obs: Observation, rule: str) -> Finding:
    if obs.kind == "closed":
        return Finding.passed(str(obs))
    return Finding.failed(f"{obs}; {rule}")


def _echo_pdu(context_id: int = 1, message_id: int = 1) -> PDataTF:
    return PDataTF([PresentationDataValue(context_id, 0x03, c_echo_rq(message_id))])


def _accept_pdu(probe: Probe) -> AAssociateAC:
    """A well-formed A-ASSOCIATE-AC, to be sent where it does not belong."""
    items: list[AssociateItem] = [
        ApplicationContextItem(DICOM_APPLICATION_CONTEXT),
        PresentationContextACItem.create(1, 0, IMPLICIT_VR_LE),
        UserInformationItem.create(probe.target.max_pdu_length, IMPLEMENTATION_CLASS_UID),
    ]
    return AAssociateAC(probe.target.called_ae_title, probe.target.calling_ae_title, items)


#: A PDU of type 09H, unknown to PS3.8 Table 9-11, with a 4-byte body.
UNKNOWN_PDU = b"\x09\x00\x00\x00\x00\x04\x00\x00\x00\x00"


def _message_text(message: Message) -> str:
    field_value = message.command_field
    try:
        name = CommandField(field_value).name.replace("_", "-")
    except ValueError:
        name = f"command 0x{field_value:04X}"
    status = message.status
    return name + (f" status 0x{status:04X}" if status is not None else "")


async def _response(probe: Probe, peer: RawPeer) -> tuple[Message | None, Observation | None]:
    """The next DIMSE message, or the observation of whatever came instead."""
    try:
        return await peer.receive_message(probe.target.timeout), None
    except (DimseProtocolError, CommandError) as exc:
        return None, Observation("garbage", 0.0, detail=f"bad DIMSE message: {exc}")
    except RawPeerTimeout:
        return None, Observation("silence", probe.target.timeout)
    except PDUError as exc:
        return None, Observation("garbage", 0.0, detail=str(exc))
    except RawPeerError as exc:
        received = getattr(exc, "received", None)
        if received is None:
            return None, Observation("closed", 0.0)
        return None, Observation("pdu", 0.0, received)


# --------------------------------------------------------------------------- the scenarios

SCENARIOS: list[Scenario] = []


def scenario(
    name: str, group: str, title: str, reference: str, requirement: str, *, slow: bool = False
) -> Callable[[Run], Run]:
    """Register a scenario function in :data:`SCENARIOS` (in definition order)."""

    def register(run: Run) -> Run:
        SCENARIOS.append(Scenario(name, group, title, reference, requirement, run, slow))
        return run

    return register


@scenario(
    "baseline",
    "association",
    "A-ASSOCIATE-RQ for Verification, C-ECHO, A-RELEASE",
    "PS3.8 §9.3.2-9.3.3, §9.3.6-9.3.7; PS3.7 §9.3.5",
    "An A-ASSOCIATE-AC accepting Verification (Implicit VR Little Endian), a C-ECHO-RSP "
    "with status 0000, an A-RELEASE-RP.",
)
async def _baseline(probe: Probe) -> Finding:
    peer = await probe.connect()
    answer = await probe.associate(peer)
    if not isinstance(answer, AAssociateAC):
        return Finding.failed(describe(answer))
    probe.baseline = answer
    context_id = peer.accepted_context(VERIFICATION)
    if context_id is None:
        return Finding.failed(f"{describe(answer)}: Verification not accepted")
    status = await peer.echo(context_id)
    if status != 0:
        return Finding.failed(f"C-ECHO-RSP status 0x{status:04X}")
    await peer.release()
    return Finding.passed("A-ASSOCIATE-AC, C-ECHO-RSP 0000, A-RELEASE-RP")


@scenario(
    "assoc-accept-content",
    "association",
    "the A-ASSOCIATE-AC's fields and items",
    "PS3.8 §9.3.3, Annex D.1; PS3.7 Annex D.3.3.2",
    "Protocol version bit 0 set; the called and calling AE titles of the RQ echoed; the "
    "DICOM application context; one answer per proposed presentation context, an accepted "
    "one naming one proposed transfer syntax; a Maximum Length sub-item and an "
    "Implementation Class UID sub-item.",
)
async def _accept_content(probe: Probe) -> Finding:
    peer = await probe.connect()
    contexts: list[ContextSpec] = [
        (VERIFICATION, (IMPLICIT_VR_LE,)),
        (VERIFICATION, ("1.2.840.10008.1.2.1", IMPLICIT_VR_LE)),
    ]
    answer = await probe.associate(peer, contexts)
    if not isinstance(answer, AAssociateAC):
        return Finding.failed(describe(answer))
    problems: list[str] = []
    if not answer.protocol_version & 1:
        problems.append(f"protocol version 0x{answer.protocol_version:04X}")
    rq_called = normalize_ae_title(probe.target.called_ae_title)
    rq_calling = normalize_ae_title(probe.target.calling_ae_title)
    if (str(answer.called_ae_title), str(answer.calling_ae_title)) != (rq_called, rq_calling):
        problems.append(
            f"AE titles {answer.called_ae_title!r}/{answer.calling_ae_title!r} "
            f"instead of {rq_called!r}/{rq_calling!r}"
        )
    if answer.application_context_name != DICOM_APPLICATION_CONTEXT:
        problems.append(f"application context {answer.application_context_name!r}")
    proposed = {1: [IMPLICIT_VR_LE], 3: ["1.2.840.10008.1.2.1", IMPLICIT_VR_LE]}
    ids = [c.context_id for c in answer.presentation_contexts]
    if sorted(ids) != [1, 3]:
        problems.append(f"answers for context IDs {ids} instead of [1, 3]")
    for item in answer.presentation_contexts:
        if item.result == 0 and (
            len(item.sub_items) != 1
            or item.transfer_syntax not in proposed.get(item.context_id, [])
        ):
            problems.append(f"context {item.context_id} accepted with {item.transfer_syntax!r}")
    info = answer.user_information
    if info is None or info.maximum_length is None:
        problems.append("no Maximum Length sub-item")
    if info is None or not info.implementation_class_uid:
        problems.append("no Implementation Class UID sub-item")
    await peer.release()
    if problems:
        return Finding.failed("; ".join(problems))
    return Finding.passed(
        f"{describe(answer)}, max length {info.maximum_length if info else None}, "
        f"implementation {info.implementation_class_uid if info else None}"
    )


# -- Sta2: before the A-ASSOCIATE-RQ ---------------------------------------------------------

_STA2_UNEXPECTED: list[tuple[str, str, str, Callable[[Probe], PDU]]] = [
    ("ac", "A-ASSOCIATE-AC", "Evt3", _accept_pdu),
    ("rj", "A-ASSOCIATE-RJ", "Evt4", lambda probe: AAssociateRJ(1, 1, 1)),
    ("p-data", "P-DATA-TF", "Evt10", lambda probe: _echo_pdu()),
    ("release-rq", "A-RELEASE-RQ", "Evt12", lambda probe: AReleaseRQ()),
    ("release-rp", "A-RELEASE-RP", "Evt13", lambda probe: AReleaseRP()),
]


def _sta2_unexpected(make: Callable[[Probe], PDU]) -> Run:
    async def run(probe: Probe) -> Finding:
        peer = await probe.connect()
        return _judge_aa1(await probe.stimulate_pdu(peer, make(probe)), reason=2)

    return run


for _key, _name, _event, _make in _STA2_UNEXPECTED:
    scenario(
        f"sta2-unexpected-{_key}",
        "Sta2",
        f"{_name} instead of an A-ASSOCIATE-RQ",
        f"PS3.8 Table 9-10 (Sta2, {_event}: AA-1), Table 9-9, Table 9-26",
        "AA-1: an A-ABORT, then ARTIM. Table 9-9 names the service-user source (0, reason "
        "not significant); with the service-provider source (2) the reason must be 2 "
        "(unexpected PDU).",
    )(_sta2_unexpected(_make))


@scenario(
    "sta2-unknown-pdu-type",
    "Sta2",
    "a PDU of unknown type 09H as the first PDU",
    "PS3.8 Table 9-10 (Sta2, Evt19: AA-1), Table 9-26",
    "AA-1: an A-ABORT; with the service-provider source (2) the reason must be 1 "
    "(unrecognized PDU).",
)
async def _sta2_unknown(probe: Probe) -> Finding:
    peer = await probe.connect()
    return _judge_aa1(await probe.stimulate_pdu(peer, UNKNOWN_PDU), reason=1)


@scenario(
    "sta2-a-abort",
    "Sta2",
    "A-ABORT as the first PDU",
    "PS3.8 Table 9-10 (Sta2, Evt16: AA-2)",
    "AA-2: close the transport connection, sending nothing.",
)
async def _sta2_abort(probe: Probe) -> Finding:
    peer = await probe.connect()
    obs = await probe.stimulate(peer, AAbort(0, 0))
    return _judge_close(obs, "AA-2 closes the connection without a PDU")


@scenario(
    "sta2-length-near-2^32",
    "Sta2",
    "an A-ASSOCIATE-RQ header announcing 4294967295 bytes, then 68 bytes",
    "PS3.8 §9.3.1 (32-bit PDU length), Table 9-10 (Sta2: Evt19 AA-1, Evt18 AA-2)",
    "No Maximum Length is negotiated yet; the SCP may refuse the length (A-ABORT) or wait "
    "(ARTIM then closes), but must stay bounded in memory and keep serving others "
    "(judged by the fresh association afterwards).",
)
async def _sta2_huge(probe: Probe) -> Finding:
    peer = await probe.connect()
    fixed = probe.request().encode()[6 : 6 + 68]
    obs = await probe.stimulate_in_two(peer, b"\x01\x00\xff\xff\xff\xff", fixed)
    if obs.kind == "pdu" and obs.abort is None:
        return Finding.failed(f"{obs}; only an A-ABORT or a close fit here")
    if obs.kind == "garbage":
        return Finding.failed(str(obs))
    return Finding.passed(str(obs))


# -- association negotiation ---------------------------------------------------------------


@scenario(
    "assoc-protocol-version",
    "negotiation",
    "A-ASSOCIATE-RQ with protocol version 0002H (bit 0 clear)",
    "PS3.8 §9.3.2 (protocol-version), Table 9-21",
    "A-ASSOCIATE-RJ: result 1 or 2, source 2 (service-provider, ACSE), reason 2 "
    "(protocol version not supported).",
)
async def _protocol_version(probe: Probe) -> Finding:
    peer = await probe.connect()
    base = probe.request()
    rq = AAssociateRQ(
        base.called_ae_title, base.calling_ae_title, base.variable_items, protocol_version=2
    )
    ok, text = _judge_rj(await probe.stimulate(peer, rq), source=2, reason=2)
    return Finding.passed(text) if ok else Finding.failed(f"{text}; expected RJ (1|2, 2, 2)")


@scenario(
    "assoc-protocol-version-bits",
    "negotiation",
    "A-ASSOCIATE-RQ with protocol version 0003H (bit 0 and a future bit)",
    "PS3.8 §9.3.2 (protocol-version)",
    "A receiver implementing version 1 shall only test that bit 0 is set: A-ASSOCIATE-AC.",
)
async def _protocol_bits(probe: Probe) -> Finding:
    peer = await probe.connect()
    base = probe.request()
    rq = AAssociateRQ(
        base.called_ae_title, base.calling_ae_title, base.variable_items, protocol_version=3
    )
    obs = await probe.stimulate(peer, rq)
    if isinstance(obs.pdu, AAssociateAC):
        await probe.send(peer, AReleaseRQ())
        return Finding.passed(str(obs))
    return Finding.failed(f"{obs}; expected A-ASSOCIATE-AC")


@scenario(
    "assoc-application-context",
    "negotiation",
    "A-ASSOCIATE-RQ with an unknown application context name",
    "PS3.8 §9.3.2.1, §7.1.1.2, Table 9-21",
    "A-ASSOCIATE-RJ: result 1 or 2, source 1 (service-user), reason 2 (application "
    "context name not supported).",
)
async def _application_context(probe: Probe) -> Finding:
    peer = await probe.connect()
    base = probe.request()
    items: list[AssociateItem] = [
        ApplicationContextItem(UNKNOWN_APPLICATION_CONTEXT)
        if isinstance(item, ApplicationContextItem)
        else item
        for item in base.variable_items
    ]
    rq = AAssociateRQ(base.called_ae_title, base.calling_ae_title, items)
    ok, text = _judge_rj(await probe.stimulate(peer, rq), source=1, reason=2)
    return Finding.passed(text) if ok else Finding.failed(f"{text}; expected RJ (1|2, 1, 2)")


def _policy_finding(obs: Observation, reason: int, what: str) -> Finding:
    if isinstance(obs.pdu, AAssociateAC):
        return Finding.passed(f"{obs}: the SCP accepts any {what}")
    ok, text = _judge_rj(obs, source=1, reason=reason)
    if ok:
        return Finding.passed(text)
    return Finding.failed(f"{text}; expected an AC or RJ (1|2, 1, {reason})")


@scenario(
    "assoc-called-ae-title",
    "negotiation",
    "A-ASSOCIATE-RQ to a called AE title the SCP is not",
    "PS3.8 §9.3.2 (called-AE-title), §7.1.1.4, Table 9-21",
    "Policy: accept, or A-ASSOCIATE-RJ with result 1 or 2, source 1, reason 7 (called AE "
    "title not recognized).",
)
async def _called_ae(probe: Probe) -> Finding:
    peer = await probe.connect()
    rq = probe.request(called_ae_title="NOT-THIS-SCP")
    return _policy_finding(await probe.stimulate(peer, rq), 7, "called AE title")


@scenario(
    "assoc-calling-ae-title",
    "negotiation",
    "A-ASSOCIATE-RQ from a calling AE title the SCP does not know",
    "PS3.8 §9.3.2 (calling-AE-title), §7.1.1.3, Table 9-21",
    "Policy: accept, or A-ASSOCIATE-RJ with result 1 or 2, source 1, reason 3 (calling AE "
    "title not recognized).",
)
async def _calling_ae(probe: Probe) -> Finding:
    peer = await probe.connect()
    rq = probe.request(calling_ae_title="UNKNOWN-CALLER")
    return _policy_finding(await probe.stimulate(peer, rq), 3, "calling AE title")


@scenario(
    "assoc-calling-ae-title-blank",
    "negotiation",
    "A-ASSOCIATE-RQ whose calling AE title is 16 spaces",
    "PS3.8 §9.3.2 (calling-AE-title), Table 9-21",
    "Sixteen spaces ('no application name') shall not be used: A-ASSOCIATE-RJ with result "
    "1 or 2, source 1, reason 3, or an A-ABORT; not an AC.",
)
async def _calling_blank(probe: Probe) -> Finding:
    peer = await probe.connect()
    base = probe.request()
    rq = AAssociateRQ(base.called_ae_title, WireStr.from_wire(b" " * 16, ""), base.variable_items)
    obs = await probe.stimulate(peer, rq)
    if obs.abort is not None:
        return Finding.passed(str(obs))
    ok, text = _judge_rj(obs, source=1, reason=3)
    if ok:
        return Finding.passed(text)
    return Finding.failed(f"{text}; expected RJ (1|2, 1, 3) or an A-ABORT")


async def _context_results(
    probe: Probe, contexts: list[ContextSpec]
) -> tuple[dict[int, int] | None, Observation, RawPeer]:
    peer = await probe.connect()
    request, _ = build_request(probe.config(contexts))
    obs = await probe.stimulate(peer, request)
    if not isinstance(obs.pdu, AAssociateAC):
        return None, obs, peer
    results = {c.context_id: c.result for c in obs.pdu.presentation_contexts}
    return results, obs, peer


@scenario(
    "assoc-abstract-syntax-rejected",
    "negotiation",
    "a presentation context with an abstract syntax no SCP supports",
    "PS3.8 §9.3.3.2, Table 9-18",
    "A-ASSOCIATE-AC answering every context; the unknown abstract syntax's context with "
    "result 3 (abstract syntax not supported), Verification's with 0 (acceptance).",
)
async def _abstract_rejected(probe: Probe) -> Finding:
    contexts: list[ContextSpec] = [
        (VERIFICATION, (IMPLICIT_VR_LE,)),
        (UNKNOWN_ABSTRACT_SYNTAX, (IMPLICIT_VR_LE,)),
    ]
    results, obs, peer = await _context_results(probe, contexts)
    if results is None:
        return Finding.failed(f"{obs}; expected an AC")
    await probe.send(peer, AReleaseRQ())
    if results == {1: 0, 3: 3}:
        return Finding.passed(str(obs))
    return Finding.failed(f"{obs}; expected results 1:0, 3:3")


@scenario(
    "assoc-transfer-syntax-rejected",
    "negotiation",
    "a Verification context proposing only an unknown transfer syntax",
    "PS3.8 §9.3.3.2, Table 9-18",
    "A-ASSOCIATE-AC; that context with result 4 (transfer syntaxes not supported), the "
    "other Verification context with 0.",
)
async def _transfer_rejected(probe: Probe) -> Finding:
    contexts: list[ContextSpec] = [
        (VERIFICATION, (IMPLICIT_VR_LE,)),
        (VERIFICATION, (UNKNOWN_TRANSFER_SYNTAX,)),
    ]
    results, obs, peer = await _context_results(probe, contexts)
    if results is None:
        return Finding.failed(f"{obs}; expected an AC")
    await probe.send(peer, AReleaseRQ())
    if results == {1: 0, 3: 4}:
        return Finding.passed(str(obs))
    return Finding.failed(f"{obs}; expected results 1:0, 3:4")


@scenario(
    "assoc-role-selection",
    "negotiation",
    "SCP/SCU role selection: CT (SCU+SCP) and Secondary Capture (SCP only)",
    "PS3.7 Annex D.3.3.4",
    "A role selection reply, when present, names a proposed SOP class and grants no role "
    "that was not proposed; without a reply the default roles apply.",
)
async def _roles(probe: Probe) -> Finding:
    peer = await probe.connect()
    proposed = {CT_IMAGE_STORAGE: (True, True), SECONDARY_CAPTURE: (False, True)}
    contexts: list[ContextSpec] = [
        (VERIFICATION, (IMPLICIT_VR_LE,)),
        (CT_IMAGE_STORAGE, (IMPLICIT_VR_LE,)),
        (SECONDARY_CAPTURE, (IMPLICIT_VR_LE,)),
    ]
    answer = await probe.associate(peer, contexts, roles=proposed)
    if not isinstance(answer, AAssociateAC):
        return Finding.failed(f"{describe(answer)}; expected an AC")
    info = answer.user_information or UserInformationItem()
    replies = info.role_selections
    problems = []
    for reply in replies:
        wanted = proposed.get(str(reply.sop_class_uid))
        if wanted is None:
            problems.append(f"a reply for {reply.sop_class_uid}, never proposed")
            continue
        if (reply.scu_role and not wanted[0]) or (reply.scp_role and not wanted[1]):
            problems.append(
                f"{reply.sop_class_uid}: granted SCU={reply.scu_role} SCP={reply.scp_role} "
                f"for a proposal of SCU={int(wanted[0])} SCP={int(wanted[1])}"
            )
        if reply.scu_role not in (0, 1) or reply.scp_role not in (0, 1):
            problems.append(f"{reply.sop_class_uid}: role values must be 0 or 1")
    await probe.send(peer, AReleaseRQ())
    text = ", ".join(f"{r.sop_class_uid}: SCU={r.scu_role} SCP={r.scp_role}" for r in replies)
    observed = f"{describe(answer)}; role replies: {text or 'none'}"
    if problems:
        return Finding.failed(f"{observed}; " + "; ".join(problems))
    return Finding.passed(observed)


async def _identity(probe: Probe, item: UserIdentityRQItem) -> tuple[Observation, RawPeer]:
    peer = await probe.connect()
    request, _ = build_request(probe.config(user_identity=item))
    return await probe.stimulate(peer, request), peer


@scenario(
    "assoc-user-identity",
    "negotiation",
    "user identity (username and passcode) with a positive response requested",
    "PS3.7 Annex D.3.3.7",
    "A-ASSOCIATE-AC, with or without a User Identity server response (59H); or, when the "
    "identity is refused, A-ASSOCIATE-RJ with result 1 or 2, source 1, reason 1.",
)
async def _identity_requested(probe: Probe) -> Finding:
    item = UserIdentityRQItem(2, 1, b"probe", b"probe")
    obs, peer = await _identity(probe, item)
    if isinstance(obs.pdu, AAssociateAC):
        info = obs.pdu.user_information or UserInformationItem()
        response = info.user_identity_response
        await probe.send(peer, AReleaseRQ())
        extra = "no server response" if response is None else "a server response (59H)"
        return Finding.passed(f"{obs} with {extra}")
    ok, text = _judge_rj(obs, source=1, reason=1)
    if ok:
        return Finding.passed(text)
    return Finding.failed(f"{text}; expected an AC or RJ (1|2, 1, 1)")


@scenario(
    "assoc-user-identity-no-response",
    "negotiation",
    "user identity (username) without a positive response requested",
    "PS3.7 Annex D.3.3.7.2",
    "A-ASSOCIATE-AC without a User Identity server response sub-item (59H), which is sent "
    "only when requested; or A-ASSOCIATE-RJ with result 1 or 2, source 1, reason 1.",
)
async def _identity_not_requested(probe: Probe) -> Finding:
    item = UserIdentityRQItem(1, 0, b"probe")
    obs, peer = await _identity(probe, item)
    if isinstance(obs.pdu, AAssociateAC):
        info = obs.pdu.user_information or UserInformationItem()
        await probe.send(peer, AReleaseRQ())
        if info.user_identity_response is not None:
            return Finding.failed(f"{obs} with a server response (59H) nobody asked for")
        return Finding.passed(f"{obs} without a server response")
    ok, text = _judge_rj(obs, source=1, reason=1)
    if ok:
        return Finding.passed(text)
    return Finding.failed(f"{text}; expected an AC or RJ (1|2, 1, 1)")


@scenario(
    "assoc-async-window",
    "negotiation",
    "asynchronous operations window: 5 invoked, 3 performed",
    "PS3.7 Annex D.3.3.3",
    "No reply (the default window of 1 and 1 applies), or a reply whose values are at most "
    "the proposed ones and not 0 (0 would mean unlimited).",
)
async def _window(probe: Probe) -> Finding:
    peer = await probe.connect()
    answer = await probe.associate(peer, window=(5, 3))
    if not isinstance(answer, AAssociateAC):
        return Finding.failed(f"{describe(answer)}; expected an AC")
    info = answer.user_information or UserInformationItem()
    window = info.asynchronous_operations_window
    await probe.send(peer, AReleaseRQ())
    if window is None:
        return Finding.passed(f"{describe(answer)} without a window reply (1, 1)")
    text = f"{describe(answer)} with window ({window.maximum_invoked}, {window.maximum_performed})"
    if 1 <= window.maximum_invoked <= 5 and 1 <= window.maximum_performed <= 3:
        return Finding.passed(text)
    return Finding.failed(f"{text}; expected 1..5 invoked and 1..3 performed")


def _dirty(request: AAssociateRQ) -> AAssociateRQ:
    """``request`` with every reserved field of PS3.8 §9.3.2 and Annex D set non-zero."""
    request.reserved = 0xFF
    request.reserved_8 = 0xFFFF
    request.reserved_42 = bytes(range(0xA0, 0xC0))
    for item in request.variable_items:
        item.reserved = 0xFF
        if isinstance(item, PresentationContextRQItem):
            item.reserved_5 = item.reserved_6 = item.reserved_7 = 0xFF
            for sub_item in item.sub_items:
                sub_item.reserved = 0xFF
        elif isinstance(item, UserInformationItem):
            for user_item in item.sub_items:
                if not isinstance(user_item, SOPClassCommonExtendedNegotiationItem):
                    user_item.reserved = 0xFF
    return request


@scenario(
    "assoc-reserved-fields-not-tested",
    "negotiation",
    "A-ASSOCIATE-RQ with every reserved field non-zero",
    "PS3.8 §9.3.2, Tables 9-11 to 9-16; PS3.7 Annex D.3.3",
    "Reserved fields are sent as zero but not tested when received: A-ASSOCIATE-AC.",
)
async def _reserved_rq(probe: Probe) -> Finding:
    peer = await probe.connect()
    obs = await probe.stimulate(peer, _dirty(probe.request()))
    if isinstance(obs.pdu, AAssociateAC):
        await probe.send(peer, AReleaseRQ())
        return Finding.passed(str(obs))
    return Finding.failed(f"{obs}; expected A-ASSOCIATE-AC")


@scenario(
    "assoc-ac-echoes-rq-fields",
    "negotiation",
    "A-ASSOCIATE-RQ with bytes 43-74 (reserved) set to A0H..BFH",
    "PS3.8 §9.3.3, Table 9-17 (bytes 11-26, 27-42, 43-74)",
    "The AC's bytes 11-74 are sent with the values received in the same fields of the RQ: "
    "the called and calling AE title fields and the 32 reserved bytes, byte for byte.",
)
async def _ac_echo(probe: Probe) -> Finding:
    peer = await probe.connect()
    request = probe.request()
    request.reserved_42 = bytes(range(0xA0, 0xC0))
    obs = await probe.stimulate(peer, request)
    if not isinstance(obs.pdu, AAssociateAC):
        return Finding.failed(f"{obs}; expected A-ASSOCIATE-AC")
    await probe.send(peer, AReleaseRQ())
    sent = request.encode()[10:74]
    received = obs.pdu.encode()[10:74]
    if sent == received:
        return Finding.passed(f"{obs}; bytes 11-74 echoed")
    differing = [i + 11 for i in range(64) if sent[i] != received[i]]
    return Finding.failed(
        f"{obs}; bytes {differing[0]}-{differing[-1]} differ from the RQ's "
        f"(sent {sent[32:].hex()}, got {received[32:].hex()} in bytes 43-74)"
    )


@scenario(
    "assoc-unknown-user-info-item",
    "negotiation",
    "A-ASSOCIATE-RQ with a user information sub-item of unknown type F0H",
    "PS3.8 Annex D.2 (note 2)",
    "Acceptors ignore user information sub-items they do not recognize and do not reject "
    "the association because of them: A-ASSOCIATE-AC.",
)
async def _unknown_user_item(probe: Probe) -> Finding:
    peer = await probe.connect()
    request = probe.request()
    info = request.user_information
    if info is not None:
        info.sub_items.append(UnknownItem(0xF0, b"\x00\x01\x02\x03"))
    obs = await probe.stimulate(peer, request)
    if isinstance(obs.pdu, AAssociateAC):
        await probe.send(peer, AReleaseRQ())
        return Finding.passed(str(obs))
    return Finding.failed(f"{obs}; expected A-ASSOCIATE-AC")


@scenario(
    "assoc-unknown-item-ignored",
    "negotiation",
    "A-ASSOCIATE-RQ with an extra variable item of unknown type 99H after the user info",
    "PS3.8 §9.3 (items of unrecognized types shall be ignored and skipped)",
    "The unknown item is ignored and skipped: A-ASSOCIATE-AC.",
)
async def _unknown_item(probe: Probe) -> Finding:
    peer = await probe.connect()
    encoded = bytearray(probe.request().encode())
    encoded += b"\x99\x00\x00\x04\x00\x01\x02\x03"
    struct.pack_into(">L", encoded, 2, len(encoded) - 6)
    obs = await probe.stimulate(peer, bytes(encoded))
    if isinstance(obs.pdu, AAssociateAC):
        await probe.send(peer, AReleaseRQ())
        return Finding.passed(str(obs))
    return Finding.failed(f"{obs}; expected A-ASSOCIATE-AC")


@scenario(
    "assoc-128-contexts",
    "negotiation",
    "A-ASSOCIATE-RQ with 128 presentation contexts (IDs 1 to 255)",
    "PS3.8 §9.3.2.2, §9.3.3.2, §7.1.1.13",
    "Up to 128 presentation contexts (odd IDs 1-255) may be proposed: an AC answering "
    "every one of them exactly once.",
)
async def _many_contexts(probe: Probe) -> Finding:
    peer = await probe.connect()
    contexts: list[ContextSpec] = [(VERIFICATION, (IMPLICIT_VR_LE,))] * 128
    answer = await probe.associate(peer, contexts)
    if not isinstance(answer, AAssociateAC):
        return Finding.failed(f"{describe(answer)}; expected an AC")
    await probe.send(peer, AReleaseRQ())
    ids = sorted(c.context_id for c in answer.presentation_contexts)
    accepted = sum(1 for c in answer.presentation_contexts if c.result == 0)
    text = f"A-ASSOCIATE-AC with {len(ids)} context answers, {accepted} accepted"
    if ids == list(range(1, 256, 2)):
        return Finding.passed(text)
    return Finding.failed(f"{text}; expected one answer for each of the 128 IDs")


# -- Sta6: association established -------------------------------------------------------------

_STA6_UNEXPECTED: list[tuple[str, str, str, Callable[[Probe], PDU]]] = [
    ("ac", "A-ASSOCIATE-AC", "Evt3", _accept_pdu),
    ("rj", "A-ASSOCIATE-RJ", "Evt4", lambda probe: AAssociateRJ(1, 1, 1)),
    ("rq", "A-ASSOCIATE-RQ", "Evt6", lambda probe: probe.request()),
    ("release-rp", "A-RELEASE-RP", "Evt13", lambda probe: AReleaseRP()),
]


def _sta6_unexpected(make: Callable[[Probe], PDU]) -> Run:
    async def run(probe: Probe) -> Finding:
        peer = await probe.established()
        return _judge_aa8(await probe.stimulate_pdu(peer, make(probe)), reason=2)

    return run


for _key, _name, _event, _make in _STA6_UNEXPECTED:
    scenario(
        f"sta6-unexpected-{_key}",
        "Sta6",
        f"{_name} on an established association",
        f"PS3.8 Table 9-10 (Sta6, {_event}: AA-8), Table 9-26",
        "AA-8: an A-ABORT with source 2 (service-provider) and reason 2 (unexpected PDU).",
    )(_sta6_unexpected(_make))


@scenario(
    "sta6-unknown-pdu-type",
    "Sta6",
    "a PDU of unknown type 09H on an established association",
    "PS3.8 Table 9-10 (Sta6, Evt19: AA-8), Table 9-26",
    "AA-8: an A-ABORT with source 2 and reason 1 (unrecognized PDU).",
)
async def _sta6_unknown(probe: Probe) -> Finding:
    peer = await probe.established()
    return _judge_aa8(await probe.stimulate_pdu(peer, UNKNOWN_PDU), reason=1)


@scenario(
    "sta6-a-abort",
    "Sta6",
    "A-ABORT from the requestor on an established association",
    "PS3.8 Table 9-10 (Sta6, Evt16: AA-3)",
    "AA-3: issue the A-ABORT indication and close the transport connection, sending nothing.",
)
async def _sta6_abort(probe: Probe) -> Finding:
    peer = await probe.established()
    obs = await probe.stimulate(peer, AAbort(0, 0))
    return _judge_close(obs, "AA-3 closes the connection without a PDU")


def _padded_echo(length: int) -> bytes:
    """A C-ECHO-RQ command set of exactly ``length`` bytes (a retired (0000,4000) pads it)."""
    base: CommandSet = {
        Tag.AffectedSOPClassUID: VERIFICATION,
        Tag.CommandField: CommandField.C_ECHO_RQ,
        Tag.MessageID: 1,
        Tag.CommandDataSetType: 0x0101,
    }
    plain = len(encode_command(dict(base)))
    padding = length - plain - 8
    if padding < 0:
        raise ValueError(f"a C-ECHO-RQ needs more than {length} bytes")
    return encode_command({**base, 0x00004000: b"A" * padding})


@scenario(
    "sta6-pdu-above-maximum",
    "Sta6",
    "a P-DATA-TF 6 bytes longer than the Maximum Length the SCP announced",
    "PS3.8 Annex D.1, §9.3.5, Table 9-10 (Sta6, Evt19: AA-8)",
    "The requestor may not send P-DATA-TF longer than the SCP's Maximum Length; such a "
    "PDU is invalid: AA-8, an A-ABORT with source 2 (any reason).",
)
async def _above_maximum(probe: Probe) -> Finding:
    peer = await probe.established()
    limit = peer.peer_max_pdu_length
    if limit == 0:
        return Finding.skipped("the SCP announced no limit (Maximum Length 0)")
    if limit < 128 or limit % 2:
        return Finding.skipped(f"cannot build a C-ECHO-RQ of exactly {limit} bytes")
    encoded = PDataTF([PresentationDataValue(1, 0x03, _padded_echo(limit))]).encode()
    obs = await probe.stimulate_in_two(peer, encoded[:6], encoded[6:])
    if obs.kind == "pdu" and isinstance(obs.pdu, PDataTF):
        return Finding.failed(f"{obs}: the over-long PDU was processed; expected an A-ABORT")
    return _judge_aa8(obs, reason=None)


@scenario(
    "sta6-length-near-2^32",
    "Sta6",
    "a P-DATA-TF header announcing 4294967294 bytes, then a PDV header and 64 bytes",
    "PS3.8 §9.3.1, Annex D.1, Table 9-10 (Sta6, Evt19: AA-8)",
    "The length exceeds the SCP's Maximum Length (when it announced one): AA-8, an A-ABORT "
    "with source 2, without waiting for 4 GiB.",
)
async def _sta6_huge(probe: Probe) -> Finding:
    peer = await probe.established()
    if peer.peer_max_pdu_length == 0:
        return Finding.skipped("the SCP announced no limit: a 4 GiB P-DATA-TF is allowed")
    rest = struct.pack(">LBB", 0xFFFFFFFA, 1, 0x01) + bytes(64)
    obs = await probe.stimulate_in_two(peer, b"\x04\x00\xff\xff\xff\xfe", rest)
    return _judge_aa8(obs, reason=None)


@scenario(
    "sta6-reserved-fields-not-tested",
    "Sta6",
    "P-DATA-TF and A-RELEASE-RQ with reserved fields and message control header bits 2-7 set",
    "PS3.8 §9.3.5, §9.3.6, Annex E.2",
    "Reserved fields and the reserved bits of the message control header are not tested "
    "when received: C-ECHO-RSP status 0000, then A-RELEASE-RP.",
)
async def _reserved_sta6(probe: Probe) -> Finding:
    peer = await probe.established()
    context_id = peer.accepted_context(VERIFICATION) or 1
    message_id = peer.next_message_id()
    pdu = PDataTF([PresentationDataValue(context_id, 0xFF, c_echo_rq(message_id))], reserved=0xFF)
    sent = await probe.send(peer, pdu)
    message, obs = await _response(probe, peer)
    if message is None:
        assert obs is not None
        obs.write_failed = not sent
        return Finding.failed(f"{obs}; expected a C-ECHO-RSP")
    if message.command_field != CommandField.C_ECHO_RSP or message.status != 0:
        return Finding.failed(f"{_message_text(message)}; expected C-ECHO-RSP status 0000")
    release = await probe.stimulate(peer, AReleaseRQ(reserved=0xFF, reserved_6=0xFFFFFFFF))
    if not isinstance(release.pdu, AReleaseRP):
        return Finding.failed(f"C-ECHO-RSP 0000, then {release}; expected A-RELEASE-RP")
    return Finding.passed(f"C-ECHO-RSP 0000, then {release}")


# -- P-DATA: presentation data values ---------------------------------------------------------


async def _echo_split(
    probe: Probe,
    sizes: Sequence[int],
    pdvs_per_pdu: int,
    what: str,
    *,
    tolerate_abort: bool = False,
) -> Finding:
    peer = await probe.established()
    context_id = peer.accepted_context(VERIFICATION) or 1
    message_id = peer.next_message_id()
    sent = True
    try:
        await peer.send_message(
            context_id, c_echo_rq(message_id), sizes=sizes, pdvs_per_pdu=pdvs_per_pdu
        )
    except PeerClosedError:
        sent = False
    message, obs = await _response(probe, peer)
    if message is None:
        assert obs is not None
        obs.write_failed = not sent
        if tolerate_abort and obs.abort is not None:
            return Finding.passed(f"{obs}: refused")
        return Finding.failed(f"{obs}; expected a C-ECHO-RSP")
    text = f"{_message_text(message)} for a C-ECHO-RQ {what}"
    try:
        validate_command(message.command)
    except CommandError as exc:
        return Finding.failed(f"{text}: invalid command set: {exc}")
    if (
        message.command_field == CommandField.C_ECHO_RSP
        and message.message_id_being_responded_to == message_id
        and message.status == 0
    ):
        await probe.send(peer, AReleaseRQ())
        return Finding.passed(text)
    return Finding.failed(f"{text}; expected C-ECHO-RSP status 0000")


@scenario(
    "pdata-command-2-byte-pdus",
    "P-DATA",
    "a C-ECHO-RQ command set in 2-byte PDVs, one P-DATA-TF each",
    "PS3.8 §9.3.5, Annex E.1-E.2",
    "Fragments of any even length split elements anywhere (E.1 note 2); the command is "
    "reassembled and answered with C-ECHO-RSP status 0000.",
)
async def _two_byte_pdus(probe: Probe) -> Finding:
    return await _echo_split(probe, [2], 1, "in 2-byte PDVs, one per PDU")


@scenario(
    "pdata-command-2-byte-pdvs-one-pdu",
    "P-DATA",
    "a C-ECHO-RQ command set in 2-byte PDVs, all in one P-DATA-TF",
    "PS3.8 §9.3.5.1, Annex E.1",
    "A P-DATA-TF may hold many PDVs of one message: C-ECHO-RSP status 0000.",
)
async def _two_byte_pdvs(probe: Probe) -> Finding:
    return await _echo_split(probe, [2], 0, "in 2-byte PDVs in one PDU")


@scenario(
    "pdata-command-many-boundaries",
    "P-DATA",
    "a C-ECHO-RQ command set in PDVs of 2, 4, 6, 10, 14 and 22 bytes, two per P-DATA-TF",
    "PS3.8 §9.3.5.1, Annex E.1",
    "Even fragments cut through tags, lengths and values: C-ECHO-RSP status 0000.",
)
async def _many_boundaries(probe: Probe) -> Finding:
    return await _echo_split(probe, [2, 4, 6, 10, 14, 22], 2, "split at many boundaries")


@scenario(
    "pdata-odd-fragments",
    "P-DATA",
    "a C-ECHO-RQ command set in PDVs of 1, 3 and 5 bytes (odd: a requestor error)",
    "PS3.8 Annex E.1 (each fragment shall consist of an even number of bytes)",
    "The requestor breaks E.1; the standard does not say how the receiver reacts. Either "
    "answer is accepted: an A-ABORT, or tolerance (C-ECHO-RSP status 0000).",
)
async def _odd_fragments(probe: Probe) -> Finding:
    return await _echo_split(probe, [1, 3, 5], 2, "in odd-sized PDVs", tolerate_abort=True)


@scenario(
    "pdata-small-max-length",
    "P-DATA",
    "the requestor announces a Maximum Length of 128 bytes",
    "PS3.8 Annex D.1, §9.3.5",
    "Every P-DATA-TF the SCP sends is at most 128 bytes long (PDU-length field), so the "
    "C-ECHO-RSP may arrive fragmented; an SCP that cannot work with so small a limit may "
    "reject the association instead (A-ASSOCIATE-RJ).",
)
async def _small_max(probe: Probe) -> Finding:
    peer = await probe.connect()
    answer = await peer.associate(
        probe.target.calling_ae_title, probe.target.called_ae_title, max_pdu_length=128
    )
    if isinstance(answer, AAssociateRJ):
        return Finding.passed(f"{describe(answer)}: refuses a Maximum Length of 128")
    if peer.accepted_context(VERIFICATION) is None:
        return Finding.failed(f"{describe(answer)}; expected Verification accepted")
    await probe.send(peer, _echo_pdu(peer.accepted_context(VERIFICATION) or 1, 1))
    message, obs = await _response(probe, peer)
    if message is None:
        return Finding.failed(f"{obs}; expected a C-ECHO-RSP")
    lengths = [len(p.encode()) - 6 for p in peer.received if isinstance(p, PDataTF)]
    text = f"{_message_text(message)} in P-DATA-TF of {lengths} bytes"
    await probe.send(peer, AReleaseRQ())
    if max(lengths) > 128:
        return Finding.failed(f"{text}; the limit was 128")
    return Finding.passed(text)


@scenario(
    "tcp-split-every-byte",
    "P-DATA",
    "every PDU written in 1-byte TCP segments (the RQ slowly, 10 ms apart per 7 bytes)",
    "PS3.8 §9.3.1 and §10 (TCP is a byte stream)",
    "PDUs are framed by their length fields, however they are segmented: AC, C-ECHO-RSP "
    "status 0000, A-RELEASE-RP.",
)
async def _tcp_split(probe: Probe) -> Finding:
    peer = await probe.connect()
    await peer.send_split(probe.request(), [7], delay=0.01)
    answer = await probe.observe(peer)
    if not isinstance(answer.pdu, AAssociateAC):
        return Finding.failed(f"{answer}; expected an AC")
    await peer.send_split(_echo_pdu(1, 1), [1])
    message, obs = await _response(probe, peer)
    if message is None:
        return Finding.failed(f"{obs}; expected a C-ECHO-RSP")
    if message.command_field != CommandField.C_ECHO_RSP or message.status != 0:
        return Finding.failed(f"{_message_text(message)}; expected C-ECHO-RSP status 0000")
    await peer.send_split(AReleaseRQ(), [1])
    release = await probe.observe(peer)
    if not isinstance(release.pdu, AReleaseRP):
        return Finding.failed(f"{release}; expected A-RELEASE-RP")
    return Finding.passed("A-ASSOCIATE-AC, C-ECHO-RSP 0000, A-RELEASE-RP")


Layout = Callable[[int, bytes, bytes], list[PDataTF]]


async def _store(probe: Probe, layout: Layout, what: str) -> Finding:
    """A C-STORE of a small Secondary Capture instance, its PDUs cut by ``layout``."""
    contexts: list[ContextSpec] = [
        (VERIFICATION, (IMPLICIT_VR_LE,)),
        (SECONDARY_CAPTURE, (IMPLICIT_VR_LE,)),
    ]
    peer = await probe.established(contexts)
    context_id = peer.accepted_context(SECONDARY_CAPTURE)
    if context_id is None:
        await probe.send(peer, AReleaseRQ())
        return Finding.skipped("the SCP does not accept Secondary Capture Image Storage")
    uid = new_uid()
    message_id = peer.next_message_id()
    command = c_store_rq(SECONDARY_CAPTURE, uid, message_id)
    dataset = small_dataset(SECONDARY_CAPTURE, uid)
    sent = await probe.send(peer, *layout(context_id, command, dataset))
    message, obs = await _response(probe, peer)
    if message is None:
        assert obs is not None
        obs.write_failed = not sent
        return Finding.failed(f"{obs}; expected a C-STORE-RSP")
    text = f"{_message_text(message)} for a C-STORE-RQ {what}"
    status = message.status
    if (
        message.command_field == CommandField.C_STORE_RSP
        and message.message_id_being_responded_to == message_id
        and status is not None
        and (status == 0 or 0xB000 <= status <= 0xBFFF)
    ):
        await probe.send(peer, AReleaseRQ())
        return Finding.passed(text)
    return Finding.failed(f"{text}; expected C-STORE-RSP success or warning")


@scenario(
    "pdata-command-and-dataset-one-pdu",
    "P-DATA",
    "a C-STORE-RQ whose command PDV and data set PDV share one P-DATA-TF",
    "PS3.8 §9.3.5.1, Annex E.1; PS3.7 §9.3.1",
    "The PDVs of one P-DATA-TF may carry command and data set fragments of the same "
    "message: C-STORE-RSP with success (0000) or a warning (Bxxx).",
)
async def _store_one_pdu(probe: Probe) -> Finding:
    def layout(context_id: int, command: bytes, dataset: bytes) -> list[PDataTF]:
        return [
            PDataTF(
                fragments(context_id, command, command=True)
                + fragments(context_id, dataset, command=False)
            )
        ]

    return await _store(probe, layout, "with command and data set in one PDU")


@scenario(
    "pdata-command-and-dataset-pdvs-one-pdu",
    "P-DATA",
    "a C-STORE-RQ in one P-DATA-TF: the command PDV, then the data set in two PDVs",
    "PS3.8 §9.3.5.1, Annex E.1",
    "A P-DATA-TF may hold several PDVs of one message, command and data set alike: "
    "C-STORE-RSP with success or a warning.",
)
async def _store_three_pdvs(probe: Probe) -> Finding:
    def layout(context_id: int, command: bytes, dataset: bytes) -> list[PDataTF]:
        half = len(dataset) // 4 * 2
        return [
            PDataTF(
                fragments(context_id, command, command=True)
                + fragments(context_id, dataset, [half], command=False)
            )
        ]

    return await _store(probe, layout, "with 1 command and 2 data set PDVs in one PDU")


@scenario(
    "pdata-dataset-many-boundaries",
    "P-DATA",
    "a C-STORE-RQ cut into PDVs of 2, 4, 8, 16 and 34 bytes: the command's one per "
    "P-DATA-TF, the data set's three per P-DATA-TF",
    "PS3.8 §9.3.5.1, Annex E.1",
    "Even fragments split elements anywhere: C-STORE-RSP with success or a warning.",
)
async def _store_split(probe: Probe) -> Finding:
    sizes = [2, 4, 8, 16, 34]

    def layout(context_id: int, command: bytes, dataset: bytes) -> list[PDataTF]:
        pdus = [PDataTF([pdv]) for pdv in fragments(context_id, command, sizes, command=True)]
        data = fragments(context_id, dataset, sizes, command=False)
        pdus += [PDataTF(data[i : i + 3]) for i in range(0, len(data), 3)]
        return pdus

    return await _store(probe, layout, "split at many boundaries")


async def _wrong_context(probe: Probe, context_id: int) -> Finding:
    contexts: list[ContextSpec] = [
        (VERIFICATION, (IMPLICIT_VR_LE,)),
        (UNKNOWN_ABSTRACT_SYNTAX, (IMPLICIT_VR_LE,)),
    ]
    peer = await probe.established(contexts)
    obs = await probe.stimulate(peer, _echo_pdu(context_id, 1))
    if obs.abort is not None:
        return Finding.passed(str(obs))
    if isinstance(obs.pdu, PDataTF):
        return Finding.failed(f"{obs}: answered as if the context were valid; expected A-ABORT")
    return Finding.failed(f"{obs}; expected an A-ABORT")


@scenario(
    "pdata-invalid-context-id",
    "P-DATA",
    "a C-ECHO-RQ on presentation context ID 2 (even: never a valid ID)",
    "PS3.8 §9.3.2.2 (odd IDs 1-255), §9.3.5.1, §7.3",
    "A PDV must name an accepted presentation context; this one cannot be interpreted: "
    "the association is aborted (A-ABORT, source 0 or 2), not answered.",
)
async def _invalid_context(probe: Probe) -> Finding:
    return await _wrong_context(probe, 2)


@scenario(
    "pdata-rejected-context-id",
    "P-DATA",
    "a C-ECHO-RQ on a presentation context the SCP rejected",
    "PS3.8 §9.3.3.2, §9.3.5.1, §7.3",
    "Only accepted presentation contexts carry data: A-ABORT (source 0 or 2), not an answer.",
)
async def _rejected_context(probe: Probe) -> Finding:
    return await _wrong_context(probe, 3)


# -- release ------------------------------------------------------------------------------------


@scenario(
    "release",
    "release",
    "A-RELEASE-RQ on an established association",
    "PS3.8 Table 9-10 (Sta6, Evt12: AR-2; Sta8, Evt14: AR-4)",
    "AR-2 then AR-4: an A-RELEASE-RP.",
)
async def _release(probe: Probe) -> Finding:
    peer = await probe.established()
    obs = await probe.stimulate(peer, AReleaseRQ())
    if isinstance(obs.pdu, AReleaseRP):
        return Finding.passed(str(obs))
    return Finding.failed(f"{obs}; expected A-RELEASE-RP")


@scenario(
    "release-collision",
    "release",
    "two A-RELEASE-RQ in one write, as a colliding release reaches an SCP",
    "PS3.8 §7.2, Table 9-10 (Sta8, Evt12: AA-8; Sta13, Evt12: AA-6)",
    "An SCP never requests release, so Sta9-Sta12 cannot be reached from a requestor; the "
    "second RQ meets the SCP in Sta8 (before its response: AA-8, A-ABORT source 2 reason "
    "2) or in Sta13 (after its A-RELEASE-RP: AA-6, ignored). Nothing else may follow.",
)
async def _release_collision(probe: Probe) -> Finding:
    peer = await probe.established()
    obs = await probe.stimulate(peer, AReleaseRQ(), AReleaseRQ())
    if obs.abort is not None:
        return _judge_aa8(obs, reason=2)
    if not isinstance(obs.pdu, AReleaseRP):
        return Finding.failed(f"{obs}; expected A-RELEASE-RP or A-ABORT (2, 2)")
    after = await probe.observe(peer, min(probe.target.timeout, 1.0))
    if after.kind == "pdu":
        return Finding.failed(f"{obs}, then {after}; Sta13 ignores the second RQ (AA-6)")
    return Finding.passed(f"{obs}, then {after}")


# -- timers and the transport ------------------------------------------------------------------


@scenario(
    "artim-idle-connection",
    "transport",
    "a connection on which nothing is sent",
    "PS3.8 §9.1.5 (ARTIM), Table 9-10 (Sta2, Evt18: AA-2)",
    "AE-5 starts ARTIM; when it expires the SCP closes the connection without a PDU.",
    slow=True,
)
async def _artim(probe: Probe) -> Finding:
    peer = await probe.connect()
    obs = await probe.observe(peer, probe.target.artim_wait)
    return _judge_close(obs, "ARTIM expiry (Evt18) closes the connection (AA-2)")


@scenario(
    "sta2-truncated-pdu-then-close",
    "transport",
    "the first 40 bytes of an A-ASSOCIATE-RQ, then our close",
    "PS3.8 Table 9-10 (Sta2, Evt17: AA-5)",
    "AA-5: the SCP stops ARTIM and drops the connection, and keeps serving others.",
)
async def _truncated_sta2(probe: Probe) -> Finding:
    peer = await probe.connect()
    await probe.send(peer, probe.request().encode()[:40])
    await peer.close()
    return Finding.passed("sent 40 of the RQ's bytes and closed")


@scenario(
    "sta6-truncated-pdu-then-close",
    "transport",
    "half a P-DATA-TF on an established association, then our close",
    "PS3.8 Table 9-10 (Sta6, Evt17: AA-4)",
    "AA-4: an A-P-ABORT indication; the SCP keeps serving others.",
)
async def _truncated_sta6(probe: Probe) -> Finding:
    peer = await probe.established()
    await probe.send(peer, _echo_pdu().encode()[:30])
    await peer.close()
    return Finding.passed("sent 30 bytes of a P-DATA-TF and closed")


@scenario(
    "sta6-transport-reset",
    "transport",
    "a TCP reset on an established association",
    "PS3.8 Table 9-10 (Sta6, Evt17: AA-4)",
    "AA-4: an A-P-ABORT indication; the SCP keeps serving others.",
)
async def _reset_sta6(probe: Probe) -> Finding:
    peer = await probe.established()
    peer.abort_transport()
    return Finding.passed("reset the connection")


# --------------------------------------------------------------------------- running


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
        finding = await asyncio.wait_for(item.run(probe), budget)
    except TimeoutError:
        finding = Finding.failed(f"the scenario did not finish within {budget:.0f} s")
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


# --------------------------------------------------------------------------- reporting

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


with contextlib.suppress(NameError):  # keep the module namespace free of loop variables
    del _key, _name, _event, _make
