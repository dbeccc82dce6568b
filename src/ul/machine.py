"""The sans-I/O Upper Layer protocol machine: PS3.8 §9.2 and Table 9-10, carried out.

:class:`UpperLayer` is fed received bytes, transport events and the local service
primitives (A-ASSOCIATE, P-DATA, A-RELEASE, A-ABORT requests and responses). Each call
returns the effects the standard's action demands, in order: PDUs to send, indications
and confirmations for the application, ARTIM timer starts and stops, transport connect and
close requests. It never touches sockets, asyncio or clocks, so every rule can be driven
with bytes alone (tests, fuzzers, the conformance prober) by the same code production runs.

The transitions come from :data:`dicomwire.ul.fsm.TRANSITIONS`; this module only says what
each action does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import AssociationStateError
from ..records import FrozenRecord
from .framer import DEFAULT_MAX_CONTROL_PDU_LENGTH, PDUFramer
from .fsm import NEXT_STATE, TRANSITIONS, Action, Event, State
from .pdu import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AbortReason,
    AbortSource,
    ACSERejectReason,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PDUError,
    RejectResult,
    RejectSource,
)

__all__ = [
    "ARTIMStart",
    "ARTIMStop",
    "AbortIndication",
    "AssociateAccepted",
    "AssociateIndication",
    "AssociateRejected",
    "AssociationStateError",
    "CloseTransport",
    "ConnectTransport",
    "Effect",
    "PDataIndication",
    "ReleaseConfirmation",
    "ReleaseIndication",
    "SendPDU",
    "UpperLayer",
    "default_provider_check",
]


# --------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class SendPDU(FrozenRecord):
    """Write this PDU to the transport."""

    pdu: PDU


class ConnectTransport(FrozenRecord):
    """AE-1: open the transport connection, then call :meth:`UpperLayer.transport_connected`."""

    __slots__ = ()


class CloseTransport(FrozenRecord):
    """Close the transport connection (after writing what was sent before)."""

    __slots__ = ()


class ARTIMStart(FrozenRecord):
    """Start, or restart, the ARTIM timer; call :meth:`UpperLayer.artim_expired` on expiry."""

    __slots__ = ()


class ARTIMStop(FrozenRecord):
    """Stop the ARTIM timer."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class AssociateIndication(FrozenRecord):
    """A-ASSOCIATE indication (acceptor, Sta3): answer with accept() or reject()."""

    request: AAssociateRQ


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class AssociateAccepted(FrozenRecord):
    """A-ASSOCIATE confirmation, accept (requestor, Sta6)."""

    accept: AAssociateAC


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class AssociateRejected(FrozenRecord):
    """A-ASSOCIATE confirmation, reject (requestor): the peer's A-ASSOCIATE-RJ."""

    reject: AAssociateRJ


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class PDataIndication(FrozenRecord):
    """P-DATA indication: a received P-DATA-TF."""

    pdu: PDataTF


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class ReleaseIndication(FrozenRecord):
    """A-RELEASE indication: answer with release_response(); ``collision`` per AR-8."""

    collision: bool = False


class ReleaseConfirmation(FrozenRecord):
    """A-RELEASE confirmation: the peer answered our A-RELEASE-RQ."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class AbortIndication(FrozenRecord):
    """A-ABORT (peer's service-user) or A-P-ABORT (a provider) indication.

    ``provider`` is True for A-P-ABORT; ``local`` is True when this side's provider
    aborted (AA-8, AA-4) rather than the peer; ``detail`` says why in words.
    """

    source: int
    reason: int
    provider: bool
    local: bool = False
    detail: str = ""


Effect = (
    SendPDU
    | ConnectTransport
    | CloseTransport
    | ARTIMStart
    | ARTIMStop
    | AssociateIndication
    | AssociateAccepted
    | AssociateRejected
    | PDataIndication
    | ReleaseIndication
    | ReleaseConfirmation
    | AbortIndication
)

_EVENT_OF_PDU: dict[type, Event] = {
    AAssociateAC: Event.EVT3,
    AAssociateRJ: Event.EVT4,
    AAssociateRQ: Event.EVT6,
    PDataTF: Event.EVT10,
    AReleaseRQ: Event.EVT12,
    AReleaseRP: Event.EVT13,
    AAbort: Event.EVT16,
}

# Events that come from the transport rather than from the local user.
_NETWORK_EVENTS = frozenset((*_EVENT_OF_PDU.values(), Event.EVT17, Event.EVT18, Event.EVT19))


def default_provider_check(request: AAssociateRQ) -> AAssociateRJ | None:
    """The service provider's acceptability test of AE-6 (PS3.8 §9.2, §9.3.2).

    Protocol version without bit 0 gives RJ (1, 2, 2); an RQ without exactly one
    application context item or with more than one user information item gives RJ (1, 2, 1).
    Everything about AE titles and presentation contexts is the service-user's decision.
    """
    if not request.protocol_version & 0x0001:
        return AAssociateRJ(
            RejectResult.REJECTED_PERMANENT,
            RejectSource.SERVICE_PROVIDER_ACSE,
            ACSERejectReason.PROTOCOL_VERSION_NOT_SUPPORTED,
        )
    kinds = [type(item).__name__ for item in request.variable_items]
    if kinds.count("ApplicationContextItem") != 1 or kinds.count("UserInformationItem") > 1:
        return AAssociateRJ(
            RejectResult.REJECTED_PERMANENT,
            RejectSource.SERVICE_PROVIDER_ACSE,
            ACSERejectReason.NO_REASON_GIVEN,
        )
    return None


# --------------------------------------------------------------------------- the machine


class UpperLayer:
    """One association's Upper Layer protocol machine (one transport connection).

    ``requestor`` says which side this is (AR-8 needs it). ``max_pdu_length`` is the
    Maximum Length this side announces (0 = unlimited): received P-DATA-TF PDUs above it
    are invalid. ``provider_check`` is AE-6's acceptability test.
    """

    __slots__ = (
        "_framer",
        "_pending_abort",
        "_pending_pdu",
        "_request",
        "artim_running",
        "last_action",
        "on_pdu",
        "provider_check",
        "requestor",
        "state",
    )

    def __init__(
        self,
        *,
        requestor: bool,
        max_pdu_length: int = 0,
        max_control_pdu_length: int = DEFAULT_MAX_CONTROL_PDU_LENGTH,
        provider_check: Callable[[AAssociateRQ], AAssociateRJ | None] = default_provider_check,
    ) -> None:
        self.requestor = requestor
        self.state = State.STA1
        self.artim_running = False
        self.last_action: Action | None = None
        self.provider_check = provider_check
        #: Called with every PDU received, before it is acted on (``-d`` logging, traces).
        self.on_pdu: Callable[[PDU], None] | None = None
        self._framer = PDUFramer(max_pdu_length, max_control_pdu_length)
        self._pending_pdu: PDU | None = None
        self._request: AAssociateRQ | None = None
        self._pending_abort: tuple[int, int] = (AbortSource.SERVICE_USER, 0)

    # -- framing limits -----------------------------------------------------------------

    @property
    def max_pdu_length(self) -> int:
        return self._framer.max_pdu_length

    @max_pdu_length.setter
    def max_pdu_length(self, value: int) -> None:
        self._framer.max_pdu_length = value

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete received PDU (non-zero at close means truncation)."""
        return self._framer.buffered

    @property
    def framer(self) -> PDUFramer:
        """The framer received bytes go through (read-only: the machine feeds it)."""
        return self._framer

    # -- local primitives -----------------------------------------------------------------

    def request_association(self, request: AAssociateRQ) -> list[Effect]:
        """A-ASSOCIATE request (Evt1); the RQ is sent once the transport is connected."""
        self._request = request
        return self._run(Event.EVT1)

    def transport_connected(self) -> list[Effect]:
        """Transport connection confirm (Evt2, requestor) or indication (Evt5, acceptor)."""
        return self._run(Event.EVT2 if self.requestor else Event.EVT5)

    def accept(self, accept: AAssociateAC) -> list[Effect]:
        """A-ASSOCIATE response, accept (Evt7)."""
        self._pending_pdu = accept
        return self._run(Event.EVT7)

    def reject(self, reject: AAssociateRJ) -> list[Effect]:
        """A-ASSOCIATE response, reject (Evt8)."""
        self._pending_pdu = reject
        return self._run(Event.EVT8)

    def send_data(self, pdu: PDataTF) -> list[Effect]:
        """P-DATA request (Evt9)."""
        self._pending_pdu = pdu
        return self._run(Event.EVT9)

    def request_release(self) -> list[Effect]:
        """A-RELEASE request (Evt11)."""
        return self._run(Event.EVT11)

    def release_response(self) -> list[Effect]:
        """A-RELEASE response (Evt14)."""
        return self._run(Event.EVT14)

    def abort(self, source: int = AbortSource.SERVICE_USER, reason: int = 0) -> list[Effect]:
        """A-ABORT request (Evt15); a no-op once the association is already gone."""
        if self.state in (State.STA1, State.STA13):
            return []
        self._pending_abort = (source, reason)
        return self._run(Event.EVT15)

    # -- transport --------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Effect]:
        """Bytes from the transport: PDU events (Evt3, 4, 6, 10, 12, 13, 16, 19)."""
        try:
            pdus = self._framer.feed(data)
        except PDUError as exc:
            return self._invalid_pdu(exc)
        return self._received(pdus)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Zero-copy receive (asyncio.BufferedProtocol): a buffer to fill."""
        return self._framer.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> list[Effect]:
        """Zero-copy receive: ``nbytes`` were written into the last get_buffer()."""
        try:
            pdus = self._framer.buffer_updated(nbytes)
        except PDUError as exc:
            return self._invalid_pdu(exc)
        if not pdus and self._framer.deferred_error is None:
            return []  # the middle of a PDU: most reads of a large one
        return self._received(pdus)

    def transport_closed(self) -> list[Effect]:
        """Transport connection closed indication (Evt17)."""
        if self.state is State.STA1:
            return []
        return self._run(Event.EVT17)

    def artim_expired(self) -> list[Effect]:
        """ARTIM timer expired (Evt18); ignored when the timer is no longer running."""
        if not self.artim_running or (self.state, Event.EVT18) not in TRANSITIONS:
            return []
        return self._run(Event.EVT18)

    # -- dispatch ---------------------------------------------------------------------------

    def handle_pdu(self, pdu: PDU) -> list[Effect]:
        """Feed one already-decoded PDU, as if it had been received."""
        return self._received([pdu])

    def _received(self, pdus: list[PDU]) -> list[Effect]:
        if self.on_pdu is not None:
            for pdu in pdus:
                self.on_pdu(pdu)
        framer = self._framer
        if len(pdus) == 1 and framer.deferred_error is None:  # the common case: P-DATA
            pdu = pdus[0]
            self._pending_pdu = pdu
            return self._run(_EVENT_OF_PDU[type(pdu)])
        effects: list[Effect] = []
        for pdu in pdus:
            if self.state is State.STA1:
                return effects  # the connection is gone: nothing more is received
            self._pending_pdu = pdu
            effects.extend(self._run(_EVENT_OF_PDU[type(pdu)]))
        error = framer.deferred_error
        if error is not None:  # bad bytes after the PDUs above, in the same read
            framer.deferred_error = None
            if self.state is not State.STA1:
                effects.extend(self._invalid_pdu(error))
        return effects

    def _invalid_pdu(self, error: PDUError) -> list[Effect]:
        self._pending_abort = (AbortSource.SERVICE_PROVIDER, error.abort_reason)
        return self._run(Event.EVT19, detail=str(error))

    def _run(self, event: Event, detail: str = "") -> list[Effect]:
        step = _STEPS.get((self.state, event))
        if step is None:
            if event in _NETWORK_EVENTS:
                raise AssociationStateError(
                    f"{event.value} cannot occur in {self.state.value}: no transport connection"
                )
            raise AssociationStateError(
                f"{_PRIMITIVE_NAMES.get(event, event.value)} is not allowed in "
                f"{self.state.value} ({_STATE_NAMES[self.state]})"
            )
        action, perform, next_state = step
        self.last_action = action
        effects = perform(self, event, detail)
        if next_state is not None:
            self.state = next_state
        self._pending_pdu = None
        return effects

    # -- actions (PS3.8 Tables 9-6 to 9-9) -------------------------------------------------

    def _start_artim(self) -> ARTIMStart:
        self.artim_running = True
        return ARTIMStart()

    def _stop_artim(self) -> list[Effect]:
        if self.artim_running:
            self.artim_running = False
            return [ARTIMStop()]
        return []

    def _ae1(self, event: Event, detail: str) -> list[Effect]:
        return [ConnectTransport()]

    def _ae2(self, event: Event, detail: str) -> list[Effect]:
        assert self._request is not None  # kept from Evt1 for this moment
        return [SendPDU(self._request)]

    def _ae3(self, event: Event, detail: str) -> list[Effect]:
        assert isinstance(self._pending_pdu, AAssociateAC)
        return [AssociateAccepted(self._pending_pdu)]

    def _ae4(self, event: Event, detail: str) -> list[Effect]:
        assert isinstance(self._pending_pdu, AAssociateRJ)
        return [AssociateRejected(self._pending_pdu), CloseTransport()]

    def _ae5(self, event: Event, detail: str) -> list[Effect]:
        return [self._start_artim()]

    def _ae6(self, event: Event, detail: str) -> list[Effect]:
        request = self._pending_pdu
        assert isinstance(request, AAssociateRQ)
        effects = self._stop_artim()
        refusal = self.provider_check(request)
        if refusal is None:
            self.state = State.STA3
            effects.append(AssociateIndication(request))
        else:
            self.state = State.STA13
            effects.append(SendPDU(refusal))
            effects.append(self._start_artim())
        return effects

    def _ae7(self, event: Event, detail: str) -> list[Effect]:
        assert self._pending_pdu is not None
        return [SendPDU(self._pending_pdu)]

    def _ae8(self, event: Event, detail: str) -> list[Effect]:
        assert self._pending_pdu is not None
        return [SendPDU(self._pending_pdu), self._start_artim()]

    def _dt1(self, event: Event, detail: str) -> list[Effect]:
        assert self._pending_pdu is not None
        return [SendPDU(self._pending_pdu)]

    def _dt2(self, event: Event, detail: str) -> list[Effect]:
        assert isinstance(self._pending_pdu, PDataTF)
        return [PDataIndication(self._pending_pdu)]

    def _ar1(self, event: Event, detail: str) -> list[Effect]:
        return [SendPDU(AReleaseRQ())]

    def _ar2(self, event: Event, detail: str) -> list[Effect]:
        return [ReleaseIndication()]

    def _ar3(self, event: Event, detail: str) -> list[Effect]:
        return [ReleaseConfirmation(), CloseTransport()]

    def _ar4(self, event: Event, detail: str) -> list[Effect]:
        return [SendPDU(AReleaseRP()), self._start_artim()]

    def _ar5(self, event: Event, detail: str) -> list[Effect]:
        return self._stop_artim()

    # AR-6 and AR-7 are DT-2 and DT-1 in the release states. Methods, not class-level
    # aliases (``_ar6 = _dt2``), which mypyc cannot compile (a native class's attribute).
    def _ar6(self, event: Event, detail: str) -> list[Effect]:
        return self._dt2(event, detail)  # P-DATA indication while awaiting A-RELEASE-RP

    def _ar7(self, event: Event, detail: str) -> list[Effect]:
        return self._dt1(event, detail)  # P-DATA-TF sent while awaiting our A-RELEASE-RP

    def _ar8(self, event: Event, detail: str) -> list[Effect]:
        self.state = State.STA9 if self.requestor else State.STA10
        return [ReleaseIndication(collision=True)]

    def _ar9(self, event: Event, detail: str) -> list[Effect]:
        return [SendPDU(AReleaseRP())]

    def _ar10(self, event: Event, detail: str) -> list[Effect]:
        return [ReleaseConfirmation()]

    def _aa1(self, event: Event, detail: str) -> list[Effect]:
        # Table 9-9: "Send A-ABORT PDU (service-user source)". For a PDU received in Sta2
        # (before any association exists) that is source 0, whose reason "shall not be
        # significant" and is sent as 00H (§9.3.8); a local A-ABORT request passes its own.
        if event is Event.EVT15:
            source, reason = self._pending_abort
        else:
            source, reason = AbortSource.SERVICE_USER, 0
        return [SendPDU(AAbort(source, reason)), self._start_artim()]

    def _aa2(self, event: Event, detail: str) -> list[Effect]:
        return [*self._stop_artim(), CloseTransport()]

    def _aa3(self, event: Event, detail: str) -> list[Effect]:
        abort = self._pending_pdu
        assert isinstance(abort, AAbort)
        provider = abort.source != AbortSource.SERVICE_USER
        return [
            *self._stop_artim(),
            AbortIndication(abort.source, abort.reason, provider=provider, detail=detail),
            CloseTransport(),
        ]

    def _aa4(self, event: Event, detail: str) -> list[Effect]:
        return [
            *self._stop_artim(),
            AbortIndication(
                AbortSource.SERVICE_PROVIDER,
                AbortReason.NOT_SPECIFIED,
                provider=True,
                local=True,
                detail=detail or "transport connection closed",
            ),
        ]

    def _aa5(self, event: Event, detail: str) -> list[Effect]:
        return self._stop_artim()

    def _aa6(self, event: Event, detail: str) -> list[Effect]:
        return []

    def _aa7(self, event: Event, detail: str) -> list[Effect]:
        if event is Event.EVT19:
            source, reason = self._pending_abort
        else:
            source, reason = AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU
        return [SendPDU(AAbort(source, reason))]

    def _aa8(self, event: Event, detail: str) -> list[Effect]:
        if event is Event.EVT19:
            _, reason = self._pending_abort
        else:
            reason = AbortReason.UNEXPECTED_PDU
            pdu = self._pending_pdu
            detail = detail or f"unexpected {type(pdu).__name__} in {self.state.value}"
        return [
            SendPDU(AAbort(AbortSource.SERVICE_PROVIDER, reason)),
            AbortIndication(
                AbortSource.SERVICE_PROVIDER, reason, provider=True, local=True, detail=detail
            ),
            self._start_artim(),
        ]


_ACTIONS: dict[Action, Callable[[UpperLayer, Event, str], list[Effect]]] = {
    action: getattr(UpperLayer, "_" + action.name.lower()) for action in Action
}
#: Table 9-10 joined with each action's method and next state: one lookup per event (every
#: PDU of a data transfer is one).
_STEPS: dict[
    tuple[State, Event],
    tuple[Action, Callable[[UpperLayer, Event, str], list[Effect]], State | None],
] = {cell: (action, _ACTIONS[action], NEXT_STATE[action]) for cell, action in TRANSITIONS.items()}

_STATE_NAMES = {
    State.STA1: "idle",
    State.STA2: "transport open, awaiting A-ASSOCIATE-RQ",
    State.STA3: "awaiting local A-ASSOCIATE response",
    State.STA4: "awaiting transport connection",
    State.STA5: "awaiting A-ASSOCIATE-AC or -RJ",
    State.STA6: "association established",
    State.STA7: "awaiting A-RELEASE-RP",
    State.STA8: "awaiting local A-RELEASE response",
    State.STA9: "release collision, requestor, awaiting local A-RELEASE response",
    State.STA10: "release collision, acceptor, awaiting A-RELEASE-RP",
    State.STA11: "release collision, requestor, awaiting A-RELEASE-RP",
    State.STA12: "release collision, acceptor, awaiting local A-RELEASE response",
    State.STA13: "awaiting transport close",
}

_PRIMITIVE_NAMES = {
    Event.EVT1: "A-ASSOCIATE request",
    Event.EVT2: "transport connection confirm",
    Event.EVT5: "transport connection indication",
    Event.EVT7: "A-ASSOCIATE response (accept)",
    Event.EVT8: "A-ASSOCIATE response (reject)",
    Event.EVT9: "P-DATA request",
    Event.EVT11: "A-RELEASE request",
    Event.EVT14: "A-RELEASE response",
    Event.EVT15: "A-ABORT request",
}
