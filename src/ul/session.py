"""One association's decisions, sans-I/O: PS3.8 §9.2, Table 9-10, §9.3.2-9.3.4, Annex D.

:class:`AssociationSession` wraps the protocol machine (:class:`~dicomwire.ul.machine.UpperLayer`,
which only carries out Table 9-10) and makes every decision the standard leaves to the
service user or to the association as a whole:

- requestor: the A-ASSOCIATE-RQ built from a :class:`~dicomwire.ul.negotiation.RequestorConfig`
  (§9.3.2), the A-ASSOCIATE-AC read into a :class:`~dicomwire.ul.negotiation.NegotiatedAssociation`
  (§9.3.3, Annex D), an A-ASSOCIATE-RJ turned into :class:`~dicomwire.errors.AssociationRejected`
  (§9.3.4);
- acceptor: the A-ASSOCIATE indication answered through an
  :class:`~dicomwire.ul.negotiation.AcceptorPolicy`; a policy that raises gets the transient
  reject (2, 3, 1) "temporary congestion", and so does an acceptor without a policy;
- release: the peer's request recorded (:attr:`AssociationSession.release_requested`), a
  collision answered at once on the requestor (AR-8 to Sta9, then AR-9), the acceptor's own
  answer in Sta12 (AR-10 then AR-4);
- aborts and rejections: :attr:`AssociationSession.error` keeps the error that ended the
  association (:class:`~dicomwire.errors.AssociationAborted`,
  :class:`~dicomwire.errors.AssociationRejected` or a local
  :class:`~dicomwire.errors.DicomTimeoutError`).

Every call returns the events the adapter carries out, in order: the machine's
:class:`~dicomwire.ul.machine.SendPDU`, :class:`~dicomwire.ul.machine.CloseTransport`,
:class:`~dicomwire.ul.machine.ARTIMStart`, :class:`~dicomwire.ul.machine.ARTIMStop`,
:class:`~dicomwire.ul.machine.ConnectTransport` and
:class:`~dicomwire.ul.machine.PDataIndication` as they are, plus :class:`Established`,
:class:`Rejected`, :class:`ReleaseRequested`, :class:`Released` and :class:`Aborted`. It
never touches sockets, asyncio or clocks: tests, fuzzers and the asyncio adapter
(:mod:`dicomwire.ul.association`) drive the same object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from ..errors import (
    AssociationAborted,
    AssociationRejected,
    AssociationStateError,
    DicomWireError,
)
from .framer import DEFAULT_MAX_CONTROL_PDU_LENGTH
from .fsm import State
from .machine import (
    AbortIndication,
    ARTIMStart,
    ARTIMStop,
    AssociateAccepted,
    AssociateIndication,
    AssociateRejected,
    CloseTransport,
    ConnectTransport,
    Effect,
    PDataIndication,
    ReleaseConfirmation,
    ReleaseIndication,
    SendPDU,
    UpperLayer,
)
from .negotiation import (
    DEFAULT_MAX_PDU_LENGTH,
    AcceptorPolicy,
    NegotiatedAssociation,
    PresentationContext,
    RequestorConfig,
    accept_or_reject,
    build_request,
    read_accept,
)
from .pdu import (
    PDU,
    AAssociateRJ,
    AAssociateRQ,
    AbortSource,
    PDataTF,
    PresentationRejectReason,
    RejectResult,
    RejectSource,
)

__all__ = [
    "Aborted",
    "AssociationSession",
    "Established",
    "Rejected",
    "ReleaseRequested",
    "Released",
    "SessionEvent",
]

log = logging.getLogger("dicomwire.ul")


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Established:
    """The association is established (AC sent or received); ``negotiated`` is what was agreed."""

    negotiated: NegotiatedAssociation


@dataclass(frozen=True, slots=True)
class Rejected:
    """The A-ASSOCIATE-RQ was answered with RJ: received (requestor) or sent (``local``)."""

    error: AssociationRejected
    local: bool


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    """A-RELEASE indication: the peer asked to release; answer with ``release_response()``."""


@dataclass(frozen=True, slots=True)
class Released:
    """A-RELEASE confirmation: the release this side asked for is complete."""


@dataclass(frozen=True, slots=True)
class Aborted:
    """A-ABORT or A-P-ABORT indication; ``error`` is why the association ended.

    ``error`` is the indication's :class:`AssociationAborted` unless something else ended
    the association first (a local timeout that caused the abort stays the reason).
    """

    indication: AbortIndication
    error: DicomWireError


SessionEvent = (
    SendPDU
    | CloseTransport
    | ARTIMStart
    | ARTIMStop
    | ConnectTransport
    | PDataIndication
    | Established
    | Rejected
    | ReleaseRequested
    | Released
    | Aborted
)

#: Answered to a request when the acceptance policy failed or there is none (Table 9-21).
CONGESTION = AAssociateRJ(
    RejectResult.REJECTED_TRANSIENT,
    RejectSource.SERVICE_PROVIDER_PRESENTATION,
    PresentationRejectReason.TEMPORARY_CONGESTION,
)

#: The machine's effects the session decides on; every other one is passed on as it is.
_DECIDED = frozenset(
    (
        AssociateIndication,
        AssociateAccepted,
        AssociateRejected,
        ReleaseIndication,
        ReleaseConfirmation,
        AbortIndication,
    )
)

#: States where an A-RELEASE response primitive is expected (Table 9-10, Evt14).
_AWAITING_RELEASE_RESPONSE = frozenset((State.STA8, State.STA9, State.STA12))
_ESTABLISHED = frozenset((State.STA6, State.STA7, State.STA8))


class AssociationSession:
    """One association on either side, as decisions over the protocol machine.

    Requestor: ``AssociationSession(requestor=True)``, then :meth:`request_association`.
    Acceptor: ``AssociationSession(requestor=False, policy=...)``; ``active_associations``
    says how many associations the node has established now (the policy's limit, 2-3-2).
    ``max_pdu_length`` is the Maximum Length this side announces; by default the policy's
    (acceptor) or the config's (requestor).

    Bytes go in through :meth:`receive_data` or :meth:`get_buffer` / :meth:`buffer_updated`
    (zero-copy), local primitives through the other methods; each returns the
    :data:`SessionEvent` list to carry out.
    """

    __slots__ = (
        "_config",
        "_core",
        "_framer",
        "_proposed",
        "active_associations",
        "error",
        "get_buffer",
        "negotiated",
        "peer_address",
        "peer_certificate",
        "policy",
        "release_requested",
        "send_data",
    )

    def __init__(
        self,
        *,
        requestor: bool,
        policy: AcceptorPolicy | None = None,
        active_associations: Callable[[], int] | None = None,
        max_pdu_length: int | None = None,
        max_control_pdu_length: int = DEFAULT_MAX_CONTROL_PDU_LENGTH,
    ) -> None:
        if max_pdu_length is None:
            max_pdu_length = policy.max_pdu_length if policy is not None else DEFAULT_MAX_PDU_LENGTH
        self._core = UpperLayer(
            requestor=requestor,
            max_pdu_length=max_pdu_length,
            max_control_pdu_length=max_control_pdu_length,
        )
        #: Acceptor: how to answer the A-ASSOCIATE indication (None: reject, 2-3-1).
        self.policy = policy
        #: Acceptor: how many associations are established now, for the policy's limit.
        self.active_associations = active_associations
        self.negotiated: NegotiatedAssociation | None = None
        #: Why the association ended abnormally, if it did.
        self.error: DicomWireError | None = None
        #: The peer asked to release (A-RELEASE indication); answer with release_response().
        self.release_requested = False
        self.peer_address: tuple[str, int] | None = None
        self.peer_certificate: Mapping[str, Any] | None = None
        self._config: RequestorConfig | None = None
        self._proposed: list[PresentationContext] = []
        self._framer = self._core.framer  # for buffered: read after most small reads
        #: Zero-copy receive (asyncio.BufferedProtocol): the buffer to fill next.
        self.get_buffer: Callable[[int], memoryview] = self._framer.get_buffer
        #: P-DATA request (Evt9): its only effect is a SendPDU, so the machine answers it
        #: directly (no call in between on the send path).
        self.send_data = cast("Callable[[PDataTF], list[SessionEvent]]", self._core.send_data)

    # -- what the machine knows -------------------------------------------------------

    @property
    def requestor(self) -> bool:
        return self._core.requestor

    @property
    def state(self) -> State:
        """The Table 9-10 state (Sta1-Sta13)."""
        return self._core.state

    @property
    def is_established(self) -> bool:
        """Sta6, Sta7 or Sta8: P-DATA may flow."""
        return self._core.state in _ESTABLISHED

    @property
    def artim_running(self) -> bool:
        return self._core.artim_running

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete received PDU (non-zero at close means truncation)."""
        return self._framer.buffered

    @property
    def on_pdu(self) -> Callable[[PDU], None] | None:
        """Called with every PDU received, before it is acted on (``-d`` logging, traces)."""
        return self._core.on_pdu

    @on_pdu.setter
    def on_pdu(self, callback: Callable[[PDU], None] | None) -> None:
        self._core.on_pdu = callback

    # -- transport ----------------------------------------------------------------------

    def transport_connected(
        self,
        peer_address: tuple[str, int] | None = None,
        peer_certificate: Mapping[str, Any] | None = None,
    ) -> list[SessionEvent]:
        """The transport connection is open (Evt2 or Evt5); who the peer is, for the policy."""
        self.peer_address = peer_address
        self.peer_certificate = peer_certificate
        return self._decide(self._core.transport_connected())

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[SessionEvent]:
        """Bytes from the transport."""
        effects = self._core.receive_data(data)
        for effect in effects:
            if type(effect) is not PDataIndication:
                return self._decide(effects)
        return effects  # type: ignore[return-value]  # only P-DATA indications: passed on as is

    def buffer_updated(self, nbytes: int) -> list[SessionEvent]:
        """Zero-copy receive: ``nbytes`` were written into the last :meth:`get_buffer`.

        The hot path of a data transfer: a read that completes only P-DATA-TF PDUs (or
        none) returns the machine's effects without another call.
        """
        effects = self._core.buffer_updated(nbytes)
        for effect in effects:
            if type(effect) is not PDataIndication:
                return self._decide(effects)
        return effects  # type: ignore[return-value]  # only P-DATA indications: passed on as is

    def transport_closed(self) -> list[SessionEvent]:
        """The transport connection closed (Evt17)."""
        return self._decide(self._core.transport_closed())

    def artim_expired(self) -> list[SessionEvent]:
        """The ARTIM timer ran out (Evt18)."""
        return self._decide(self._core.artim_expired())

    # -- local primitives ---------------------------------------------------------------

    def request_association(self, config: RequestorConfig) -> list[SessionEvent]:
        """A-ASSOCIATE request (Evt1): the RQ for ``config`` goes out once connected."""
        request, self._proposed = build_request(config)
        self._config = config
        self._core.max_pdu_length = config.max_pdu_length
        return self._decide(self._core.request_association(request))

    def request_release(self) -> list[SessionEvent]:
        """A-RELEASE request (Evt11)."""
        return self._decide(self._core.request_release())

    def release_response(self) -> list[SessionEvent]:
        """A-RELEASE response (Evt14), where one is awaited (Sta8, Sta9, Sta12); else nothing."""
        if self._core.state in _AWAITING_RELEASE_RESPONSE:
            return self._decide(self._core.release_response())
        return []

    def abort(self, reason: int = 0) -> list[SessionEvent]:
        """A-ABORT request (service-user source); the error becomes a local abort if unset."""
        events = self._decide(self._core.abort(AbortSource.SERVICE_USER, reason))
        if self.error is None:
            self.error = AssociationAborted(
                AbortIndication(0, reason, provider=False, local=True, detail="aborted locally")
            )
        return events

    def force_abort(self, error: DicomWireError | None = None) -> list[SessionEvent]:
        """End the association whatever the state: A-ABORT where Table 9-10 allows it.

        ``error`` (a local timeout) becomes why it ended. In a state without A-ABORT
        (nothing to abort yet, or Sta2) nothing is returned: the adapter closes the
        transport when :attr:`state` is not Sta13.
        """
        if error is not None:
            self.fail(error)
        try:
            return self._decide(self._core.abort())
        except AssociationStateError:
            return []

    def fail(self, error: DicomWireError) -> None:
        """Record ``error`` as why the association ended (the adapter cuts the connection)."""
        self.error = error

    # -- decisions ----------------------------------------------------------------------

    def _decide(self, effects: list[Effect]) -> list[SessionEvent]:
        """Answer what the session answers; pass the rest on, in order."""
        for effect in effects:
            if type(effect) in _DECIDED:
                break
        else:  # SendPDU, ARTIM, CloseTransport, P-DATA...: the adapter's alone
            return effects  # type: ignore[return-value]  # none needs a decision
        events: list[SessionEvent] = []
        for effect in effects:
            if isinstance(effect, AssociateIndication):
                events.extend(self._answer(effect.request))
            elif isinstance(effect, AssociateAccepted):
                assert self._config is not None  # an AC is only accepted in Sta5
                negotiated = read_accept(self._config, self._proposed, effect.accept)
                negotiated.peer_address = self.peer_address
                self.negotiated = negotiated
                events.append(Established(negotiated))
            elif isinstance(effect, AssociateRejected):
                rj = effect.reject
                self.error = AssociationRejected(rj.result, rj.source, rj.reason)
                events.append(Rejected(self.error, local=False))
            elif isinstance(effect, ReleaseIndication):
                if not effect.collision:
                    self.release_requested = True
                    events.append(ReleaseRequested())
                elif self._core.requestor and self._core.state is State.STA9:
                    # AR-8 took the requestor to Sta9: answer at once (AR-9). The state is
                    # checked because PDUs read with the RQ may already have moved it on;
                    # the acceptor (Sta10) waits for the peer's A-RELEASE-RP instead.
                    events.extend(self._decide(self._core.release_response()))
            elif isinstance(effect, ReleaseConfirmation):
                if self._core.state is State.STA12:  # collision, acceptor side: AR-10
                    events.extend(self._decide(self._core.release_response()))
                events.append(Released())
            elif isinstance(effect, AbortIndication):
                events.append(self._aborted(effect))
            else:
                events.append(effect)
        return events

    def _answer(self, request: AAssociateRQ) -> list[SessionEvent]:
        """The local A-ASSOCIATE response to an indication (acceptor, Sta3)."""
        if self._core.state is not State.STA3:
            # PDUs that came in the same read as the RQ were already acted on (AA-8 in
            # Sta3): the association is gone before it could be answered.
            return []
        policy = self.policy
        if policy is None:
            return self._reject(request, CONGESTION)
        count = self.active_associations() if self.active_associations is not None else 0
        try:
            answer = accept_or_reject(
                policy, request, self.peer_address, count, self.peer_certificate
            )
        except Exception:  # a policy bug must not kill the node: answer congestion
            log.exception("acceptance policy failed")
            answer = CONGESTION
        if isinstance(answer, AAssociateRJ):
            return self._reject(request, answer)
        accept, negotiated = answer
        self.negotiated = negotiated
        events = self._decide(self._core.accept(accept))
        log.info(
            "accepted association from %s at %s: %d of %d contexts, max PDU %d / %d",
            negotiated.remote_ae_title,
            self.peer_address,
            len(negotiated.accepted_contexts),
            len(negotiated.contexts),
            negotiated.remote_max_pdu_length,
            negotiated.local_max_pdu_length,
        )
        events.append(Established(negotiated))
        return events

    def _reject(self, request: AAssociateRQ, reject: AAssociateRJ) -> list[SessionEvent]:
        error = AssociationRejected(reject.result, reject.source, reject.reason)
        log.warning(  # shown by default: an operator must see why a peer was turned away
            "rejected association from %s to %s at %s: %s",
            request.calling_ae_title,
            request.called_ae_title,
            "{}:{}".format(*self.peer_address) if self.peer_address else "an unknown address",
            error,
        )
        events = self._decide(self._core.reject(reject))
        events.append(Rejected(error, local=True))
        return events

    def _aborted(self, indication: AbortIndication) -> Aborted:
        aborted = AssociationAborted(indication)
        if self.error is None:  # a timeout that caused the abort stays the reason
            self.error = aborted
        log.log(logging.WARNING if indication.local else logging.INFO, "%s", aborted)
        return Aborted(indication, self.error)
