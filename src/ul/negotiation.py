"""Association negotiation, both sides, without I/O: PS3.8 §9.3.2-9.3.4, Annex D; PS3.7 Annex D.

- the requestor builds its A-ASSOCIATE-RQ from a :class:`RequestorConfig` and reads the
  peer's A-ASSOCIATE-AC into a :class:`NegotiatedAssociation`;
- the acceptor answers an A-ASSOCIATE-RQ from an :class:`AcceptorPolicy`: AE titles, known
  nodes, application context, limits, user identity, presentation contexts with transfer
  syntax preference, SCP/SCU roles, asynchronous operations window, extended negotiation.

Rejection answers follow PS3.8 Table 9-21 (result, source, reason) and context results
follow Table 9-18.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from ..errors import ValidationError
from ..records import Record
from ..uids import EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN
from .identifiers import normalize_ae_title, validate_ae_title, validate_uid
from .pdu import (
    DICOM_APPLICATION_CONTEXT,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    ApplicationContextItem,
    AssociateItem,
    AsynchronousOperationsWindowItem,
    PresentationContextACItem,
    PresentationContextResult,
    PresentationContextRQItem,
    PresentationRejectReason,
    RejectResult,
    RejectSource,
    RoleSelectionItem,
    ServiceUserRejectReason,
    SOPClassCommonExtendedNegotiationItem,
    SOPClassExtendedNegotiationItem,
    UserIdentityACItem,
    UserIdentityRQItem,
    UserInformationItem,
    UserInformationSubItem,
)

__all__ = [
    "DEFAULT_MAX_PDU_LENGTH",
    "DEFAULT_TRANSFER_SYNTAXES",
    "AcceptorPolicy",
    "KnownNode",
    "NegotiatedAssociation",
    "PresentationContext",
    "RequestorConfig",
    "accept_or_reject",
    "build_request",
    "read_accept",
]

#: Our default Maximum Length Received (PS3.8 D.1); 0 would mean unlimited.
DEFAULT_MAX_PDU_LENGTH = 1 << 16
#: Below this a requestor's Maximum Length leaves no room for any fragment: a PDV item
#: header is 6 bytes and fragments are even (PS3.8 E.1). Such requests are refused.
MINIMUM_USABLE_PDU_LENGTH = 8


#: Uncompressed transfer syntaxes in the acceptor's default preference order.
DEFAULT_TRANSFER_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
)


def combine_window(ours: int, theirs: int) -> int:
    """Combine two operations-window values where 0 means unlimited (PS3.7 D.3.3.3)."""
    if ours == 0:
        return theirs
    if theirs == 0:
        return ours
    return min(ours, theirs)


@dataclass(slots=True, repr=False, eq=False)
class PresentationContext(Record):
    """One presentation context as proposed and as negotiated.

    ``result`` is None until negotiated (see :class:`PresentationContextResult`);
    ``transfer_syntax`` is the accepted one. ``scu_role``/``scp_role`` say what the
    *requestor* may be for this context once roles are negotiated.
    """

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: list[str]
    result: int | None = None
    transfer_syntax: str | None = None
    scu_role: bool = True
    scp_role: bool = False

    @property
    def accepted(self) -> bool:
        return self.result == PresentationContextResult.ACCEPTANCE


@dataclass(slots=True, repr=False, eq=False)
class KnownNode(Record):
    """A remote AE the node knows: acceptance policy, C-MOVE destinations, relays.

    ``host`` is an IP address, a network in CIDR form, or a host name compared literally;
    None accepts the AE title from any address. ``port`` is where the node listens.
    """

    ae_title: str
    host: str | None = None
    port: int | None = None

    def matches(self, ae_title: str, address: str | None) -> bool:
        if normalize_ae_title(ae_title) != normalize_ae_title(self.ae_title):
            return False
        if self.host is None or address is None:
            return self.host is None
        try:
            peer = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return self.host == address
        try:
            return peer in ipaddress.ip_network(self.host, strict=False)
        except ValueError:
            return self.host == address


@dataclass(slots=True, repr=False, eq=False)
class NegotiatedAssociation(Record):
    """What both sides agreed on; the same object on the requestor and the acceptor."""

    local_ae_title: str
    remote_ae_title: str
    requestor: bool
    contexts: dict[int, PresentationContext]
    remote_max_pdu_length: int
    local_max_pdu_length: int
    maximum_invoked: int = 1
    maximum_performed: int = 1
    remote_implementation_class_uid: str | None = None
    remote_implementation_version_name: str | None = None
    user_identity: UserIdentityRQItem | None = None
    user_identity_response: bytes | None = None
    extended_negotiation: dict[str, bytes] = field(default_factory=dict)
    common_extended_negotiation: list[SOPClassCommonExtendedNegotiationItem] = field(
        default_factory=list
    )
    peer_address: tuple[str, int] | None = None

    @property
    def accepted_contexts(self) -> list[PresentationContext]:
        return [c for c in self.contexts.values() if c.accepted]

    def find_context(
        self, abstract_syntax: str, transfer_syntax: str | None = None
    ) -> PresentationContext | None:
        """The first accepted context for an abstract syntax (and transfer syntax)."""
        for context in self.contexts.values():
            if (
                context.accepted
                and context.abstract_syntax == abstract_syntax
                and (transfer_syntax is None or context.transfer_syntax == transfer_syntax)
            ):
                return context
        return None


# --------------------------------------------------------------------------- requestor


@dataclass(slots=True, repr=False, eq=False)
class RequestorConfig(Record):
    """What an association requestor proposes.

    ``contexts`` lists (abstract syntax, transfer syntaxes); IDs 1, 3, 5, ... are assigned
    in order unless given as :class:`PresentationContext` objects. ``roles`` maps a SOP
    class to the (SCU, SCP) roles the requestor proposes for itself.
    """

    calling_ae_title: str
    called_ae_title: str
    contexts: Sequence[PresentationContext | tuple[str, Sequence[str]]]
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH
    maximum_invoked: int | None = None
    maximum_performed: int | None = None
    roles: Mapping[str, tuple[bool, bool]] = field(default_factory=dict)
    user_identity: UserIdentityRQItem | None = None
    extended_negotiation: Mapping[str, bytes] = field(default_factory=dict)
    common_extended_negotiation: Sequence[SOPClassCommonExtendedNegotiationItem] = ()
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str | None = IMPLEMENTATION_VERSION_NAME

    def presentation_contexts(self) -> list[PresentationContext]:
        """The proposed contexts with IDs checked (odd, 1-255, unique)."""
        result: list[PresentationContext] = []
        next_id = 1
        for entry in self.contexts:
            if isinstance(entry, PresentationContext):
                context = PresentationContext(
                    entry.context_id, entry.abstract_syntax, list(entry.transfer_syntaxes)
                )
            else:
                abstract, syntaxes = entry
                context = PresentationContext(next_id, abstract, list(syntaxes))
            next_id = context.context_id + 2
            result.append(context)
        seen: set[int] = set()
        for context in result:
            cid = context.context_id
            if not (1 <= cid <= 255 and cid % 2 == 1):
                raise ValidationError(f"presentation context ID {cid} is not odd in 1-255")
            if cid in seen:
                raise ValidationError(f"presentation context ID {cid} is proposed twice")
            seen.add(cid)
            validate_uid(context.abstract_syntax, "abstract syntax")
            if not context.transfer_syntaxes:
                raise ValidationError(
                    f"presentation context {cid} ({context.abstract_syntax}) proposes no "
                    "transfer syntax"
                )
            for syntax in context.transfer_syntaxes:
                validate_uid(syntax, "transfer syntax")
        if not result:
            raise ValidationError("an association needs at least one presentation context")
        if len(result) > 128:
            raise ValidationError(f"{len(result)} presentation contexts; at most 128 fit")
        return result


def build_request(config: RequestorConfig) -> tuple[AAssociateRQ, list[PresentationContext]]:
    """The A-ASSOCIATE-RQ for ``config`` and the contexts it proposes."""
    contexts = config.presentation_contexts()
    window = None
    if config.maximum_invoked is not None or config.maximum_performed is not None:
        window = (  # 0 means unlimited (PS3.7 D.3.3.3); an unset side stays at 1
            1 if config.maximum_invoked is None else config.maximum_invoked,
            1 if config.maximum_performed is None else config.maximum_performed,
        )
    user_info = UserInformationItem.create(
        config.max_pdu_length,
        config.implementation_class_uid,
        config.implementation_version_name,
        asynchronous_operations_window=window,
        role_selections=[
            RoleSelectionItem(uid, int(scu), int(scp)) for uid, (scu, scp) in config.roles.items()
        ],
        extended_negotiation=[
            SOPClassExtendedNegotiationItem(uid, info)
            for uid, info in config.extended_negotiation.items()
        ],
        common_extended_negotiation=list(config.common_extended_negotiation),
        user_identity=config.user_identity,
    )
    items: list[AssociateItem] = [ApplicationContextItem(DICOM_APPLICATION_CONTEXT)]
    items.extend(
        PresentationContextRQItem.create(c.context_id, c.abstract_syntax, c.transfer_syntaxes)
        for c in contexts
    )
    items.append(user_info)
    request = AAssociateRQ(
        validate_ae_title(config.called_ae_title),
        validate_ae_title(config.calling_ae_title),
        items,
    )
    return request, contexts


def read_accept(
    config: RequestorConfig, proposed: list[PresentationContext], accept: AAssociateAC
) -> NegotiatedAssociation:
    """Interpret the peer's A-ASSOCIATE-AC against what was proposed."""
    by_id = {c.context_id: c for c in proposed}
    for item in accept.presentation_contexts:
        context = by_id.get(item.context_id)
        if context is None:
            continue  # an answer to nothing we proposed: not significant
        context.result = item.result
        syntax = item.transfer_syntax
        if item.result == PresentationContextResult.ACCEPTANCE:
            if syntax not in context.transfer_syntaxes:
                # Accepting a transfer syntax we never offered makes the context unusable.
                context.result = PresentationContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED
            else:
                context.transfer_syntax = syntax
    for context in proposed:
        if context.result is None:  # no answer: PS3.8 treats it as not accepted
            context.result = PresentationContextResult.NO_REASON
    user_info = accept.user_information or UserInformationItem()
    replies = {r.sop_class_uid: r for r in user_info.role_selections}
    for context in proposed:
        proposed_roles = config.roles.get(context.abstract_syntax)
        reply = replies.get(context.abstract_syntax)
        if proposed_roles is not None and reply is not None:
            context.scu_role = bool(proposed_roles[0] and reply.scu_role)
            context.scp_role = bool(proposed_roles[1] and reply.scp_role)
    window = user_info.asynchronous_operations_window
    response = user_info.user_identity_response
    return NegotiatedAssociation(
        local_ae_title=normalize_ae_title(config.calling_ae_title),
        remote_ae_title=normalize_ae_title(config.called_ae_title),
        requestor=True,
        contexts=by_id,
        remote_max_pdu_length=user_info.maximum_length or 0,
        local_max_pdu_length=config.max_pdu_length,
        maximum_invoked=window.maximum_invoked if window else 1,
        maximum_performed=window.maximum_performed if window else 1,
        remote_implementation_class_uid=user_info.implementation_class_uid,
        remote_implementation_version_name=user_info.implementation_version_name,
        user_identity=config.user_identity,
        user_identity_response=response.server_response if response else None,
        extended_negotiation={
            i.sop_class_uid: bytes(i.service_class_application_information)
            for i in user_info.extended_negotiation
        },
    )


# --------------------------------------------------------------------------- acceptor

#: ``(identity, calling AE, peer address) -> (accepted, server response or None)``.
IdentityCheck = Callable[[UserIdentityRQItem, str, str | None], tuple[bool, bytes | None]]
#: ``(peer certificate or None, calling AE) -> allowed``: e.g. a subject only for some AEs.
CertificateCheck = Callable[[Mapping[str, Any] | None, str], bool]
#: ``(SOP class UID, requestor's application information) -> reply, or None for none``.
ExtendedNegotiationHandler = Callable[[str, bytes], bytes | None]


@dataclass(slots=True, repr=False, eq=False)
class AcceptorPolicy(Record):
    """How an acceptor answers association requests (defaults as the issue states them).

    - ``ae_titles``: our AE titles; a called AE title not among them is rejected (1, 1, 7)
      unless ``promiscuous``.
    - ``known_nodes``: when non-empty only these callers may associate (1, 1, 3).
    - ``abstract_syntaxes``: the supported abstract syntaxes, each with its transfer
      syntaxes in preference order; ``accept_any_abstract_syntax`` (promiscuous storage)
      accepts every abstract syntax with ``transfer_syntaxes``.
    - ``prefer_requestor_order``: choose the transfer syntax by the requestor's order
      instead of ours.
    - ``scp_role_for``: SOP classes for which the requestor may act as SCP (C-GET).
    - ``reject_without_contexts``: reject (1, 1, 1) when no context is acceptable, else
      accept with every context rejected.
    - ``certificate_check``: on TLS, decide from the peer's certificate and calling AE
      title (1, 1, 3 when refused).
    """

    ae_titles: Sequence[str] = ("DICOMWIRE",)
    promiscuous: bool = False
    known_nodes: Sequence[KnownNode] = ()
    abstract_syntaxes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    transfer_syntaxes: Sequence[str] = DEFAULT_TRANSFER_SYNTAXES
    accept_any_abstract_syntax: bool = False
    prefer_requestor_order: bool = False
    scp_role_for: Iterable[str] = ()
    reject_without_contexts: bool = True
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH
    maximum_invoked: int = 16
    maximum_performed: int = 16
    max_associations: int = 100
    identity_check: IdentityCheck | None = None
    certificate_check: CertificateCheck | None = None
    extended_negotiation: ExtendedNegotiationHandler | None = None
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str | None = IMPLEMENTATION_VERSION_NAME


def _reject(result: int, source: int, reason: int) -> AAssociateRJ:
    return AAssociateRJ(result, source, reason)


def _user_reject(reason: int) -> AAssociateRJ:
    return _reject(RejectResult.REJECTED_PERMANENT, RejectSource.SERVICE_USER, reason)


def _choose_transfer_syntax(
    policy: AcceptorPolicy, ours: Sequence[str], proposed: Sequence[str]
) -> str | None:
    if policy.prefer_requestor_order:
        return next((ts for ts in proposed if ts in ours), None)
    return next((ts for ts in ours if ts in proposed), None)


def _negotiate_context(
    policy: AcceptorPolicy,
    item: PresentationContextRQItem,
    seen: set[int],
    roles: Mapping[str, RoleSelectionItem],
    scp_role_for: frozenset[str],
) -> tuple[PresentationContext, RoleSelectionItem | None]:
    abstract = item.abstract_syntax or ""
    context = PresentationContext(item.context_id, abstract, item.transfer_syntaxes)
    cid = item.context_id
    if cid % 2 == 0 or cid in seen or len([i for i in item.sub_items if i.item_type == 0x30]) != 1:
        context.result = PresentationContextResult.NO_REASON  # invalid item: provider refusal
        return context, None
    seen.add(cid)
    ours = policy.abstract_syntaxes.get(abstract)
    if ours is None and policy.accept_any_abstract_syntax and abstract:
        ours = policy.transfer_syntaxes
    if ours is None:
        context.result = PresentationContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
        return context, None
    chosen = _choose_transfer_syntax(policy, ours, context.transfer_syntaxes)
    if chosen is None:
        context.result = PresentationContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED
        return context, None
    reply: RoleSelectionItem | None = None
    proposal = roles.get(abstract)
    if proposal is not None:
        scu = bool(proposal.scu_role)
        scp = bool(proposal.scp_role) and abstract in scp_role_for
        reply = RoleSelectionItem(abstract, int(scu), int(scp))
        if not (scu or scp):
            context.result = PresentationContextResult.USER_REJECTION
            return context, reply
        context.scu_role, context.scp_role = scu, scp
    context.result = PresentationContextResult.ACCEPTANCE
    context.transfer_syntax = chosen
    return context, reply


def accept_or_reject(
    policy: AcceptorPolicy,
    request: AAssociateRQ,
    peer_address: tuple[str, int] | None = None,
    active_associations: int = 0,
    peer_certificate: Mapping[str, Any] | None = None,
) -> AAssociateRJ | tuple[AAssociateAC, NegotiatedAssociation]:
    """Answer ``request``: an A-ASSOCIATE-RJ, or the AC and what it agreed on.

    The checks run in this order: local limit (2, 3, 2), application context (1, 1, 2),
    calling AE title (1, 1, 3), called AE title (1, 1, 7), known nodes (1, 1, 3), TLS peer
    certificate (1, 1, 3), user
    identity (1, 1, 1), presentation contexts (1, 1, 1 when none is acceptable).
    """
    if policy.max_associations and active_associations >= policy.max_associations:
        return _reject(
            RejectResult.REJECTED_TRANSIENT,
            RejectSource.SERVICE_PROVIDER_PRESENTATION,
            PresentationRejectReason.LOCAL_LIMIT_EXCEEDED,
        )
    if request.application_context_name != DICOM_APPLICATION_CONTEXT:
        return _user_reject(ServiceUserRejectReason.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED)
    calling = normalize_ae_title(request.calling_ae_title)
    called = normalize_ae_title(request.called_ae_title)
    if not calling:
        return _user_reject(ServiceUserRejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED)
    if not policy.promiscuous and called not in {normalize_ae_title(a) for a in policy.ae_titles}:
        return _user_reject(ServiceUserRejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED)
    host = peer_address[0] if peer_address else None
    if policy.known_nodes and not any(n.matches(calling, host) for n in policy.known_nodes):
        return _user_reject(ServiceUserRejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED)
    if policy.certificate_check is not None and not policy.certificate_check(
        peer_certificate, calling
    ):
        return _user_reject(ServiceUserRejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED)

    user_info = request.user_information or UserInformationItem()
    announced = user_info.maximum_length
    if announced is not None and 0 < announced < MINIMUM_USABLE_PDU_LENGTH:
        # No DIMSE message fits in P-DATA-TF that small: refuse rather than hang later.
        return _user_reject(ServiceUserRejectReason.NO_REASON_GIVEN)
    replies: list[UserInformationSubItem] = []
    identity = user_info.user_identity
    identity_response: bytes | None = None
    if identity is not None and policy.identity_check is not None:
        accepted, identity_response = policy.identity_check(identity, calling, host)
        if not accepted:
            return _user_reject(ServiceUserRejectReason.NO_REASON_GIVEN)

    roles = {r.sop_class_uid: r for r in user_info.role_selections}
    scp_role_for = frozenset(policy.scp_role_for)
    seen: set[int] = set()
    contexts: dict[int, PresentationContext] = {}
    ac_items: list[AssociateItem] = [ApplicationContextItem(DICOM_APPLICATION_CONTEXT)]
    role_replies: dict[str, RoleSelectionItem] = {}
    for item in request.presentation_contexts:
        context, reply = _negotiate_context(policy, item, seen, roles, scp_role_for)
        contexts.setdefault(context.context_id, context)
        if reply is not None:
            role_replies.setdefault(reply.sop_class_uid, reply)
        ac_items.append(
            PresentationContextACItem.create(
                context.context_id, context.result or 0, context.transfer_syntax
            )
        )
    if policy.reject_without_contexts and not any(c.accepted for c in contexts.values()):
        return _user_reject(ServiceUserRejectReason.NO_REASON_GIVEN)

    invoked, performed = 1, 1
    window = user_info.asynchronous_operations_window
    if window is not None:
        invoked = combine_window(policy.maximum_invoked, window.maximum_invoked)
        performed = combine_window(policy.maximum_performed, window.maximum_performed)
        replies.append(AsynchronousOperationsWindowItem(invoked, performed))
    replies.extend(role_replies.values())
    extended: dict[str, bytes] = {}
    for negotiation in user_info.extended_negotiation:
        info = bytes(negotiation.service_class_application_information)
        extended[negotiation.sop_class_uid] = info
        if policy.extended_negotiation is not None:
            answer = policy.extended_negotiation(negotiation.sop_class_uid, info)
            if answer is not None:
                replies.append(SOPClassExtendedNegotiationItem(negotiation.sop_class_uid, answer))
    if (
        identity is not None
        and identity.positive_response_requested
        and identity_response is not None
    ):
        replies.append(UserIdentityACItem(identity_response))

    ac_user_info = UserInformationItem.create(
        policy.max_pdu_length,
        policy.implementation_class_uid,
        policy.implementation_version_name,
    )
    # PS3.7 Annex D orders: 51H, 52H, 53H, 54H, 55H, 56H, 59H.
    head, tail = ac_user_info.sub_items[:2], ac_user_info.sub_items[2:]
    ordered = sorted(replies, key=lambda i: i.item_type)
    ac_user_info.sub_items = (
        head
        + [i for i in ordered if i.item_type < 0x55]
        + tail
        + [i for i in ordered if i.item_type > 0x55]
    )
    ac_items.append(ac_user_info)
    # Table 9-17: the AE title fields and bytes 43-74 echo the RQ's (sent as received).
    accept = AAssociateAC(
        request.called_ae_title,
        request.calling_ae_title,
        ac_items,
        reserved_42=request.reserved_42,
    )
    negotiated = NegotiatedAssociation(
        local_ae_title=called,
        remote_ae_title=calling,
        requestor=False,
        contexts=contexts,
        remote_max_pdu_length=user_info.maximum_length or 0,
        local_max_pdu_length=policy.max_pdu_length,
        maximum_invoked=invoked,
        maximum_performed=performed,
        remote_implementation_class_uid=user_info.implementation_class_uid,
        remote_implementation_version_name=user_info.implementation_version_name,
        user_identity=identity,
        user_identity_response=identity_response,
        extended_negotiation=extended,
        common_extended_negotiation=user_info.common_extended_negotiation,
        peer_address=peer_address,
    )
    return accept, negotiated
