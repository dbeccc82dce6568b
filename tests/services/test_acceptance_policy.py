"""Association acceptance and negotiation, both sides (PS3.8 §9.3.2-9.3.4, PS3.7 Annex D).

Unit tests of :func:`dicomwire.ul.negotiation.accept_or_reject` on hand-built
A-ASSOCIATE-RQ objects: every rejection with its (result, source, reason) of PS3.8
Table 9-21, presentation context results of Table 9-18, transfer syntax preference, the
asynchronous operations window (PS3.7 D.3.3.3), role selection (D.3.3.4), user identity
(D.3.3.7) and extended negotiation (D.3.3.5); then the requestor side
(:func:`build_request`, :func:`read_accept`); last, the same rejections as a live node
sends them on the wire, byte for byte.
"""

from __future__ import annotations

import contextlib

import pytest

from dicomwire import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, ValidationError
from dicomwire.services.node import Node
from dicomwire.services.verification import VERIFICATION_SOP_CLASS
from dicomwire.ul.identifiers import WireStr
from dicomwire.ul.machine import default_provider_check
from dicomwire.ul.negotiation import (
    DEFAULT_MAX_PDU_LENGTH,
    DEFAULT_TRANSFER_SYNTAXES,
    AcceptorPolicy,
    KnownNode,
    NegotiatedAssociation,
    PresentationContext,
    RequestorConfig,
    accept_or_reject,
    build_request,
    read_accept,
)
from dicomwire.ul.pdu import (
    DICOM_APPLICATION_CONTEXT,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AbstractSyntaxItem,
    ApplicationContextItem,
    AsynchronousOperationsWindowItem,
    ImplementationClassUIDItem,
    ImplementationVersionNameItem,
    MaximumLengthItem,
    PresentationContextACItem,
    PresentationContextRQItem,
    RoleSelectionItem,
    SOPClassExtendedNegotiationItem,
    TransferSyntaxItem,
    UserIdentityACItem,
    UserIdentityRQItem,
    UserInformationItem,
    UserInformationSubItem,
    decode,
)

from ._support import (
    CT_IMAGE_STORAGE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    a_associate_rj,
    node_config,
    raw_connect,
    read_pdu,
    running_node,
    verification_rq,
)

VERIFICATION = VERIFICATION_SOP_CLASS
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
#: No node service serves it (Q/R, worklist... are default services now).
UNSERVED_SOP_CLASS = "1.2.826.0.1.3680043.9.7433.99.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
REQUESTOR_UID = "1.2.826.0.1.3680043.9.7433.2"


def make_rq(
    *,
    called: str = "DICOMWIRE",
    calling: str = "MODALITY",
    contexts: list[PresentationContextRQItem] | None = None,
    sub_items: list[UserInformationSubItem] | None = None,
    application_context: str = DICOM_APPLICATION_CONTEXT,
    max_length: int = 32768,
) -> AAssociateRQ:
    """An RQ built from PDU items; ``sub_items`` follow the max length and class UID."""
    user_info = UserInformationItem.create(max_length, REQUESTOR_UID, "REQ_1")
    user_info.sub_items.extend(sub_items or [])
    items = [
        ApplicationContextItem(application_context),
        *(contexts or [PresentationContextRQItem.create(1, VERIFICATION, [IMPLICIT_VR_LE])]),
        user_info,
    ]
    return AAssociateRQ(called, calling, items)  # type: ignore[arg-type]


def policy(**kwargs: object) -> AcceptorPolicy:
    """Verification and two storage classes, our default transfer syntax order."""
    kwargs.setdefault(
        "abstract_syntaxes",
        {
            VERIFICATION: DEFAULT_TRANSFER_SYNTAXES,
            CT_IMAGE_STORAGE: DEFAULT_TRANSFER_SYNTAXES,
            MR_IMAGE_STORAGE: DEFAULT_TRANSFER_SYNTAXES,
        },
    )
    return AcceptorPolicy(**kwargs)  # type: ignore[arg-type]


def rejected(answer: object) -> tuple[int, int, int]:
    assert isinstance(answer, AAssociateRJ), f"expected A-ASSOCIATE-RJ, got {answer!r}"
    return answer.result, answer.source, answer.reason


def accepted(answer: object) -> tuple[AAssociateAC, NegotiatedAssociation]:
    assert isinstance(answer, tuple), f"expected acceptance, got {answer!r}"
    accept, negotiated = answer
    assert isinstance(accept, AAssociateAC)
    # Whatever we answer must be a well-formed PDU that survives the wire.
    assert decode(accept.encode()).encode() == accept.encode()
    return accept, negotiated


def ac_results(accept: AAssociateAC) -> dict[int, tuple[int, str | None]]:
    return {i.context_id: (i.result, i.transfer_syntax) for i in accept.presentation_contexts}


def user_items(accept: AAssociateAC) -> list[UserInformationSubItem]:
    assert accept.user_information is not None
    return accept.user_information.sub_items


def of_type(accept: AAssociateAC, kind: type) -> list[UserInformationSubItem]:
    return [i for i in user_items(accept) if isinstance(i, kind)]


# --------------------------------------------------------------------------- rejections


class TestRejections:
    def test_accepts_a_plain_verification_request(self) -> None:
        accept, negotiated = accepted(accept_or_reject(policy(), make_rq()))
        assert ac_results(accept) == {1: (0, IMPLICIT_VR_LE)}
        assert negotiated.local_ae_title == "DICOMWIRE"
        assert negotiated.remote_ae_title == "MODALITY"
        assert negotiated.requestor is False
        assert negotiated.remote_max_pdu_length == 32768
        assert negotiated.local_max_pdu_length == DEFAULT_MAX_PDU_LENGTH
        assert negotiated.remote_implementation_class_uid == REQUESTOR_UID
        assert negotiated.remote_implementation_version_name == "REQ_1"

    def test_local_limit_exceeded_is_transient_presentation_2_3_2(self) -> None:
        answer = accept_or_reject(policy(max_associations=3), make_rq(), None, 3)
        assert rejected(answer) == (2, 3, 2)
        accepted(accept_or_reject(policy(max_associations=3), make_rq(), None, 2))

    def test_max_associations_zero_means_unlimited(self) -> None:
        accepted(accept_or_reject(policy(max_associations=0), make_rq(), None, 10**6))

    def test_node_config_max_associations_reaches_the_policy(self) -> None:
        node_policy = Node(node_config(max_associations=1)).policy
        assert rejected(accept_or_reject(node_policy, make_rq(), None, 1)) == (2, 3, 2)
        assert rejected(accept_or_reject(node_policy, make_rq(), None, 5)) == (2, 3, 2)

    def test_application_context_not_supported_1_1_2(self) -> None:
        answer = accept_or_reject(policy(), make_rq(application_context="1.2.3.4"))
        assert rejected(answer) == (1, 1, 2)

    def test_called_ae_title_not_recognized_1_1_7(self) -> None:
        assert rejected(accept_or_reject(policy(), make_rq(called="WRONG"))) == (1, 1, 7)

    def test_called_ae_title_is_case_sensitive_and_space_insensitive(self) -> None:
        assert rejected(accept_or_reject(policy(), make_rq(called="dicomwire"))) == (1, 1, 7)
        padded = WireStr.from_wire(b"  DICOMWIRE     ", "DICOMWIRE")
        accepted(accept_or_reject(policy(), make_rq(called=padded)))

    def test_any_of_several_ae_titles_is_ours(self) -> None:
        many = policy(ae_titles=("FIRST", "SECOND"))
        accepted(accept_or_reject(many, make_rq(called="SECOND")))
        assert rejected(accept_or_reject(many, make_rq(called="DICOMWIRE"))) == (1, 1, 7)

    def test_promiscuous_accepts_any_called_ae_title(self) -> None:
        accept, negotiated = accepted(
            accept_or_reject(policy(promiscuous=True), make_rq(called="WHATEVER"))
        )
        assert negotiated.local_ae_title == "WHATEVER"
        assert accept.called_ae_title == "WHATEVER"

    def test_calling_ae_title_all_spaces_1_1_3(self) -> None:
        blank = WireStr.from_wire(b" " * 16)
        assert rejected(accept_or_reject(policy(), make_rq(calling=blank))) == (1, 1, 3)
        # The same from the wire: a 16-space field decodes to an empty title.
        wire = decode(make_rq(calling=blank).encode())
        assert isinstance(wire, AAssociateRQ)
        assert rejected(accept_or_reject(policy(promiscuous=True), wire)) == (1, 1, 3)

    def test_calling_ae_not_among_known_nodes_1_1_3(self) -> None:
        known = policy(known_nodes=(KnownNode("OTHER"),))
        assert rejected(accept_or_reject(known, make_rq(calling="MODALITY"))) == (1, 1, 3)
        accepted(accept_or_reject(known, make_rq(calling="OTHER")))
        accepted(accept_or_reject(known, make_rq(calling="  OTHER")))

    def test_no_acceptable_presentation_context_1_1_1(self) -> None:
        request = make_rq(
            contexts=[
                PresentationContextRQItem.create(1, "1.2.3.4.5", [IMPLICIT_VR_LE]),
                PresentationContextRQItem.create(3, VERIFICATION, [JPEG_BASELINE]),
            ]
        )
        assert rejected(accept_or_reject(policy(), request)) == (1, 1, 1)

    def test_rejected_user_identity_1_1_1(self) -> None:
        def refuse(identity: UserIdentityRQItem, calling: str, host: str | None) -> tuple:
            return False, None

        identity = UserIdentityRQItem(2, 0, b"alice", b"wrong")
        answer = accept_or_reject(policy(identity_check=refuse), make_rq(sub_items=[identity]))
        assert rejected(answer) == (1, 1, 1)

    @pytest.mark.parametrize(
        ("kwargs", "active", "expected"),
        [
            # The local limit comes first, whatever else is wrong.
            ({"application_context": "1.2.3"}, 100, (2, 3, 2)),
            # Then the application context, before the AE titles.
            ({"application_context": "1.2.3", "called": "WRONG"}, 0, (1, 1, 2)),
            # Calling AE blank before called AE unknown.
            ({"calling": WireStr.from_wire(b" " * 16), "called": "WRONG"}, 0, (1, 1, 3)),
            # Called AE unknown before the known-nodes table.
            ({"called": "WRONG", "calling": "STRANGER"}, 0, (1, 1, 7)),
        ],
    )
    def test_order_of_checks(
        self, kwargs: dict[str, str], active: int, expected: tuple[int, int, int]
    ) -> None:
        strict = policy(known_nodes=(KnownNode("OTHER"),))
        assert rejected(accept_or_reject(strict, make_rq(**kwargs), None, active)) == expected

    def test_provider_rejects_protocol_version_without_bit_0_1_2_2(self) -> None:
        request = make_rq()
        request.protocol_version = 2
        assert rejected(default_provider_check(request)) == (1, 2, 2)
        request.protocol_version = 3  # bit 0 set: version 1 supported
        assert default_provider_check(request) is None

    def test_provider_rejects_missing_application_context_1_2_1(self) -> None:
        request = make_rq()
        request.variable_items = request.variable_items[1:]
        assert rejected(default_provider_check(request)) == (1, 2, 1)


# --------------------------------------------------------------------------- known nodes


class TestKnownNodes:
    @pytest.mark.parametrize(
        ("host", "address", "matches"),
        [
            (None, "192.0.2.7", True),
            (None, None, True),
            ("192.0.2.7", "192.0.2.7", True),
            ("192.0.2.7", "192.0.2.8", False),
            ("192.0.2.0/24", "192.0.2.200", True),
            ("192.0.2.0/24", "192.0.3.1", False),
            ("10.1.2.3/8", "10.200.0.1", True),  # host bits set: network taken non-strictly
            ("2001:db8::/32", "2001:db8:1::5", True),
            ("2001:db8::/32", "2001:db9::5", False),
            ("::1", "::1", True),
            ("fe80::/10", "fe80::1%eth0", True),  # scope ID of a link-local peer ignored
            ("192.0.2.0/24", "2001:db8::1", False),  # families never mix
            ("pacs.example.org", "pacs.example.org", True),  # host names compared literally
            ("pacs.example.org", "192.0.2.7", False),
            ("192.0.2.7", None, False),  # an address is required when a host is configured
        ],
    )
    def test_host_matching(self, host: str | None, address: str | None, matches: bool) -> None:
        assert KnownNode("MODALITY", host).matches("MODALITY", address) is matches

    def test_ae_title_must_match_ignoring_insignificant_spaces(self) -> None:
        node = KnownNode("MODALITY ", "192.0.2.0/24")
        assert node.matches(" MODALITY", "192.0.2.1")
        assert not node.matches("MODALITY2", "192.0.2.1")
        assert not node.matches("modality", "192.0.2.1")

    def test_policy_uses_the_peer_address(self) -> None:
        known = policy(known_nodes=(KnownNode("MODALITY", "10.0.0.0/8"),))
        accepted(accept_or_reject(known, make_rq(), ("10.9.8.7", 40000)))
        assert rejected(accept_or_reject(known, make_rq(), ("192.0.2.1", 40000))) == (1, 1, 3)
        assert rejected(accept_or_reject(known, make_rq(), None)) == (1, 1, 3)

    def test_any_matching_entry_is_enough(self) -> None:
        known = policy(
            known_nodes=(
                KnownNode("MODALITY", "192.0.2.1"),
                KnownNode("MODALITY", "2001:db8::/32"),
            )
        )
        accepted(accept_or_reject(known, make_rq(), ("2001:db8::77", 104)))
        accepted(accept_or_reject(known, make_rq(), ("192.0.2.1", 104)))
        assert rejected(accept_or_reject(known, make_rq(), ("192.0.2.2", 104))) == (1, 1, 3)


# --------------------------------------------------------------------------- contexts


class TestPresentationContexts:
    def test_results_0_to_4(self) -> None:
        request = make_rq(
            contexts=[
                PresentationContextRQItem.create(1, VERIFICATION, [IMPLICIT_VR_LE]),
                PresentationContextRQItem.create(3, "1.2.3.4.5.6", [IMPLICIT_VR_LE]),
                PresentationContextRQItem.create(5, CT_IMAGE_STORAGE, [JPEG_BASELINE]),
                PresentationContextRQItem.create(6, CT_IMAGE_STORAGE, [IMPLICIT_VR_LE]),
                PresentationContextRQItem.create(7, MR_IMAGE_STORAGE, [EXPLICIT_VR_BE]),
            ],
            sub_items=[RoleSelectionItem(MR_IMAGE_STORAGE, 0, 1)],
        )
        accept, negotiated = accepted(accept_or_reject(policy(), request))
        results = {cid: result for cid, (result, _) in ac_results(accept).items()}
        assert results == {1: 0, 3: 3, 5: 4, 6: 2, 7: 1}
        # One AC item per RQ item, in the RQ's order.
        assert [i.context_id for i in accept.presentation_contexts] == [1, 3, 5, 6, 7]
        assert [c.context_id for c in negotiated.accepted_contexts] == [1]
        assert negotiated.find_context(VERIFICATION) is negotiated.contexts[1]
        assert negotiated.find_context(CT_IMAGE_STORAGE) is None

    def test_duplicate_context_id_gets_result_2(self) -> None:
        request = make_rq(
            contexts=[
                PresentationContextRQItem.create(1, VERIFICATION, [IMPLICIT_VR_LE]),
                PresentationContextRQItem.create(1, CT_IMAGE_STORAGE, [IMPLICIT_VR_LE]),
            ]
        )
        accept, negotiated = accepted(accept_or_reject(policy(), request))
        assert [(i.context_id, i.result) for i in accept.presentation_contexts] == [(1, 0), (1, 2)]
        assert negotiated.contexts[1].abstract_syntax == VERIFICATION
        assert negotiated.contexts[1].accepted

    @pytest.mark.parametrize(
        "sub_items",
        [
            [TransferSyntaxItem(IMPLICIT_VR_LE)],  # no abstract syntax
            [  # two abstract syntaxes
                AbstractSyntaxItem(VERIFICATION),
                AbstractSyntaxItem(VERIFICATION),
                TransferSyntaxItem(IMPLICIT_VR_LE),
            ],
        ],
    )
    def test_malformed_context_item_gets_result_2(self, sub_items: list) -> None:
        request = make_rq(
            contexts=[
                PresentationContextRQItem(1, sub_items),
                PresentationContextRQItem.create(3, VERIFICATION, [IMPLICIT_VR_LE]),
            ]
        )
        accept, _ = accepted(accept_or_reject(policy(), request))
        assert {c: r for c, (r, _) in ac_results(accept).items()} == {1: 2, 3: 0}

    def test_transfer_syntax_acceptor_order_by_default(self) -> None:
        request = make_rq(
            contexts=[
                PresentationContextRQItem.create(
                    1, VERIFICATION, [IMPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE]
                )
            ]
        )
        accept, negotiated = accepted(accept_or_reject(policy(), request))
        assert ac_results(accept) == {1: (0, EXPLICIT_VR_LE)}
        assert negotiated.contexts[1].transfer_syntax == EXPLICIT_VR_LE

    def test_transfer_syntax_requestor_order_when_asked(self) -> None:
        request = make_rq(
            contexts=[
                PresentationContextRQItem.create(
                    1, VERIFICATION, [JPEG_BASELINE, EXPLICIT_VR_BE, IMPLICIT_VR_LE]
                )
            ]
        )
        accept, _ = accepted(accept_or_reject(policy(prefer_requestor_order=True), request))
        assert ac_results(accept) == {1: (0, EXPLICIT_VR_BE)}

    def test_transfer_syntax_padding_from_the_wire_is_not_significant(self) -> None:
        wire_ts = TransferSyntaxItem(WireStr.from_wire(b"1.2.840.10008.1.2\x00", IMPLICIT_VR_LE))
        request = make_rq(
            contexts=[
                PresentationContextRQItem(1, [AbstractSyntaxItem(VERIFICATION), wire_ts]),
            ]
        )
        accept, _ = accepted(accept_or_reject(policy(), request))
        assert ac_results(accept) == {1: (0, IMPLICIT_VR_LE)}

    def test_without_reject_without_contexts_the_ac_rejects_every_context(self) -> None:
        request = make_rq(
            contexts=[
                PresentationContextRQItem.create(1, "1.2.3.4.5", [IMPLICIT_VR_LE]),
                PresentationContextRQItem.create(3, VERIFICATION, [JPEG_BASELINE]),
            ]
        )
        accept, negotiated = accepted(
            accept_or_reject(policy(reject_without_contexts=False), request)
        )
        assert {c: r for c, (r, _) in ac_results(accept).items()} == {1: 3, 3: 4}
        assert negotiated.accepted_contexts == []

    def test_accept_any_abstract_syntax(self) -> None:
        promiscuous = policy(
            abstract_syntaxes={},
            accept_any_abstract_syntax=True,
            transfer_syntaxes=[IMPLICIT_VR_LE],
        )
        request = make_rq(
            contexts=[
                PresentationContextRQItem.create(1, "1.2.3.4.5", [EXPLICIT_VR_LE, IMPLICIT_VR_LE]),
                PresentationContextRQItem.create(3, "1.2.3.4.6", [EXPLICIT_VR_LE]),
            ]
        )
        accept, _ = accepted(accept_or_reject(promiscuous, request))
        assert ac_results(accept)[1] == (0, IMPLICIT_VR_LE)
        assert ac_results(accept)[3][0] == 4


# --------------------------------------------------------------------------- window


class TestAsynchronousOperationsWindow:
    def test_no_item_when_not_proposed(self) -> None:
        accept, negotiated = accepted(accept_or_reject(policy(), make_rq()))
        assert of_type(accept, AsynchronousOperationsWindowItem) == []
        assert (negotiated.maximum_invoked, negotiated.maximum_performed) == (1, 1)

    @pytest.mark.parametrize(
        ("ours", "theirs", "agreed"),
        [
            ((16, 16), (5, 3), (5, 3)),
            ((2, 4), (5, 3), (2, 3)),
            ((16, 16), (0, 0), (16, 16)),  # 0 = unlimited: our limit applies
            ((0, 0), (7, 9), (7, 9)),
            ((0, 0), (0, 0), (0, 0)),
            ((0, 4), (7, 0), (7, 4)),
        ],
    )
    def test_minimum_with_zero_as_unlimited(
        self, ours: tuple[int, int], theirs: tuple[int, int], agreed: tuple[int, int]
    ) -> None:
        request = make_rq(sub_items=[AsynchronousOperationsWindowItem(*theirs)])
        answer = accept_or_reject(
            policy(maximum_invoked=ours[0], maximum_performed=ours[1]), request
        )
        accept, negotiated = accepted(answer)
        (item,) = of_type(accept, AsynchronousOperationsWindowItem)
        assert isinstance(item, AsynchronousOperationsWindowItem)
        assert (item.maximum_invoked, item.maximum_performed) == agreed
        assert (negotiated.maximum_invoked, negotiated.maximum_performed) == agreed


# --------------------------------------------------------------------------- roles


class TestRoleSelection:
    def contexts(self) -> list[PresentationContextRQItem]:
        return [
            PresentationContextRQItem.create(1, CT_IMAGE_STORAGE, [IMPLICIT_VR_LE]),
            PresentationContextRQItem.create(3, MR_IMAGE_STORAGE, [IMPLICIT_VR_LE]),
        ]

    def negotiate(
        self, roles: list[RoleSelectionItem], scp_role_for: tuple[str, ...] = ()
    ) -> tuple[AAssociateAC, NegotiatedAssociation]:
        request = make_rq(contexts=self.contexts(), sub_items=list(roles))
        return accepted(accept_or_reject(policy(scp_role_for=scp_role_for), request))

    def replies(self, accept: AAssociateAC) -> dict[str, tuple[int, int]]:
        return {
            i.sop_class_uid: (i.scu_role, i.scp_role)
            for i in of_type(accept, RoleSelectionItem)
            if isinstance(i, RoleSelectionItem)
        }

    def test_default_roles_without_proposal(self) -> None:
        accept, negotiated = self.negotiate([])
        assert self.replies(accept) == {}
        assert (negotiated.contexts[1].scu_role, negotiated.contexts[1].scp_role) == (True, False)

    def test_scp_role_granted_only_for_configured_classes(self) -> None:
        accept, negotiated = self.negotiate(
            [RoleSelectionItem(CT_IMAGE_STORAGE, 1, 1), RoleSelectionItem(MR_IMAGE_STORAGE, 1, 1)],
            scp_role_for=(CT_IMAGE_STORAGE,),
        )
        assert self.replies(accept) == {CT_IMAGE_STORAGE: (1, 1), MR_IMAGE_STORAGE: (1, 0)}
        ct, mr = negotiated.contexts[1], negotiated.contexts[3]
        assert (ct.accepted, ct.scu_role, ct.scp_role) == (True, True, True)
        assert (mr.accepted, mr.scu_role, mr.scp_role) == (True, True, False)

    def test_scp_only_proposal_granted(self) -> None:
        accept, negotiated = self.negotiate(
            [RoleSelectionItem(CT_IMAGE_STORAGE, 0, 1)], scp_role_for=(CT_IMAGE_STORAGE,)
        )
        assert self.replies(accept) == {CT_IMAGE_STORAGE: (0, 1)}
        ct = negotiated.contexts[1]
        assert (ct.accepted, ct.scu_role, ct.scp_role) == (True, False, True)

    def test_context_with_no_role_left_gets_result_1(self) -> None:
        accept, negotiated = self.negotiate([RoleSelectionItem(CT_IMAGE_STORAGE, 0, 1)])
        assert ac_results(accept)[1][0] == 1
        assert ac_results(accept)[3][0] == 0
        assert self.replies(accept) == {CT_IMAGE_STORAGE: (0, 0)}
        assert not negotiated.contexts[1].accepted

    def test_no_reply_for_a_class_not_proposed_in_any_context(self) -> None:
        accept, _ = self.negotiate([RoleSelectionItem(PATIENT_ROOT_GET, 1, 1)])
        assert self.replies(accept) == {}

    def test_one_reply_per_class_proposed_in_several_contexts(self) -> None:
        request = make_rq(
            contexts=[
                PresentationContextRQItem.create(1, CT_IMAGE_STORAGE, [IMPLICIT_VR_LE]),
                PresentationContextRQItem.create(3, CT_IMAGE_STORAGE, [EXPLICIT_VR_LE]),
            ],
            sub_items=[RoleSelectionItem(CT_IMAGE_STORAGE, 1, 1)],
        )
        accept, _ = accepted(accept_or_reject(policy(scp_role_for=[CT_IMAGE_STORAGE]), request))
        assert len(of_type(accept, RoleSelectionItem)) == 1


# --------------------------------------------------------------------------- identity


class TestUserIdentity:
    def test_callback_sees_identity_calling_ae_and_host(self) -> None:
        seen: list[tuple[UserIdentityRQItem, str, str | None]] = []

        def check(identity: UserIdentityRQItem, calling: str, host: str | None) -> tuple:
            seen.append((identity, calling, host))
            return True, None

        identity = UserIdentityRQItem(2, 0, b"alice", b"secret")
        accept, negotiated = accepted(
            accept_or_reject(
                policy(identity_check=check), make_rq(sub_items=[identity]), ("192.0.2.5", 1)
            )
        )
        assert len(seen) == 1
        assert seen[0][0].primary_field == b"alice"
        assert seen[0][0].secondary_field == b"secret"
        assert seen[0][1:] == ("MODALITY", "192.0.2.5")
        assert negotiated.user_identity is not None
        assert negotiated.user_identity.primary_field == b"alice"
        assert of_type(accept, UserIdentityACItem) == []  # no response was requested

    def test_positive_response_requested_adds_59h_item(self) -> None:
        def check(identity: UserIdentityRQItem, calling: str, host: str | None) -> tuple:
            return True, b"session-token"

        identity = UserIdentityRQItem(5, 1, b"eyJhbGciOi.jwt", b"")
        accept, negotiated = accepted(
            accept_or_reject(policy(identity_check=check), make_rq(sub_items=[identity]))
        )
        (item,) = of_type(accept, UserIdentityACItem)
        assert isinstance(item, UserIdentityACItem)
        assert item.server_response == b"session-token"
        assert negotiated.user_identity_response == b"session-token"
        assert user_items(accept)[-1] is item  # 59H comes last (PS3.7 D.3.3.7)

    def test_without_a_check_the_identity_is_not_verified_nor_answered(self) -> None:
        identity = UserIdentityRQItem(1, 1, b"bob")
        accept, negotiated = accepted(accept_or_reject(policy(), make_rq(sub_items=[identity])))
        assert of_type(accept, UserIdentityACItem) == []
        assert negotiated.user_identity_response is None


# --------------------------------------------------------------------------- extended


class TestExtendedNegotiation:
    def test_callback_answers_per_sop_class(self) -> None:
        calls: list[tuple[str, bytes]] = []

        def answer(uid: str, info: bytes) -> bytes | None:
            calls.append((uid, info))
            return b"\x01" if uid == CT_IMAGE_STORAGE else None

        request = make_rq(
            sub_items=[
                SOPClassExtendedNegotiationItem(CT_IMAGE_STORAGE, b"\x01\x00"),
                SOPClassExtendedNegotiationItem(MR_IMAGE_STORAGE, b"\x02"),
            ]
        )
        accept, negotiated = accepted(
            accept_or_reject(policy(extended_negotiation=answer), request)
        )
        assert calls == [(CT_IMAGE_STORAGE, b"\x01\x00"), (MR_IMAGE_STORAGE, b"\x02")]
        replies = of_type(accept, SOPClassExtendedNegotiationItem)
        assert [(i.sop_class_uid, i.service_class_application_information) for i in replies] == [
            (CT_IMAGE_STORAGE, b"\x01")
        ]
        assert negotiated.extended_negotiation == {
            CT_IMAGE_STORAGE: b"\x01\x00",
            MR_IMAGE_STORAGE: b"\x02",
        }

    def test_no_reply_without_a_handler(self) -> None:
        request = make_rq(sub_items=[SOPClassExtendedNegotiationItem(CT_IMAGE_STORAGE, b"\x01")])
        accept, _ = accepted(accept_or_reject(policy(), request))
        assert of_type(accept, SOPClassExtendedNegotiationItem) == []


# --------------------------------------------------------------------------- AC content


class TestAcceptContent:
    def test_user_information_announces_our_limits_and_implementation(self) -> None:
        accept, _ = accepted(accept_or_reject(policy(max_pdu_length=12345), make_rq()))
        items = user_items(accept)
        assert isinstance(items[0], MaximumLengthItem) and items[0].maximum_length == 12345
        assert isinstance(items[1], ImplementationClassUIDItem)
        assert items[1].uid == IMPLEMENTATION_CLASS_UID
        (version,) = of_type(accept, ImplementationVersionNameItem)
        assert isinstance(version, ImplementationVersionNameItem)
        assert version.name == IMPLEMENTATION_VERSION_NAME

    def test_ae_titles_echo_the_request_and_sub_items_are_ordered(self) -> None:
        def yes(identity: UserIdentityRQItem, calling: str, host: str | None) -> tuple:
            return True, b"ok"

        request = make_rq(
            contexts=[PresentationContextRQItem.create(1, CT_IMAGE_STORAGE, [IMPLICIT_VR_LE])],
            sub_items=[
                AsynchronousOperationsWindowItem(3, 3),
                RoleSelectionItem(CT_IMAGE_STORAGE, 1, 1),
                SOPClassExtendedNegotiationItem(CT_IMAGE_STORAGE, b"\x01"),
                UserIdentityRQItem(1, 1, b"carol"),
            ],
        )
        accept, _ = accepted(
            accept_or_reject(
                policy(identity_check=yes, extended_negotiation=lambda uid, info: info), request
            )
        )
        assert (accept.called_ae_title, accept.calling_ae_title) == ("DICOMWIRE", "MODALITY")
        assert accept.application_context_name == DICOM_APPLICATION_CONTEXT
        types = [item.item_type for item in user_items(accept)]
        assert types == [0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x59]


# --------------------------------------------------------------------------- requestor


class TestRequestorSide:
    def test_context_ids_are_1_3_5(self) -> None:
        config = RequestorConfig(
            "SCU",
            "SCP",
            [
                (VERIFICATION, [IMPLICIT_VR_LE]),
                (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE]),
                (MR_IMAGE_STORAGE, [IMPLICIT_VR_LE, EXPLICIT_VR_LE]),
            ],
        )
        request, proposed = build_request(config)
        assert [c.context_id for c in proposed] == [1, 3, 5]
        assert [i.context_id for i in request.presentation_contexts] == [1, 3, 5]
        assert request.presentation_contexts[2].transfer_syntaxes == [
            IMPLICIT_VR_LE,
            EXPLICIT_VR_LE,
        ]
        assert request.application_context_name == DICOM_APPLICATION_CONTEXT
        assert request.user_information is not None
        assert request.user_information.maximum_length == DEFAULT_MAX_PDU_LENGTH
        assert request.user_information.asynchronous_operations_window is None
        assert decode(request.encode()).encode() == request.encode()

    def test_explicit_ids_are_kept_and_numbering_continues(self) -> None:
        config = RequestorConfig(
            "SCU",
            "SCP",
            [PresentationContext(7, VERIFICATION, [IMPLICIT_VR_LE]), (CT_IMAGE_STORAGE, ["1.2"])],
        )
        _, proposed = build_request(config)
        assert [c.context_id for c in proposed] == [7, 9]

    def test_128_contexts_use_ids_up_to_255(self) -> None:
        config = RequestorConfig("SCU", "SCP", [(VERIFICATION, [IMPLICIT_VR_LE])] * 128)
        _, proposed = build_request(config)
        assert proposed[-1].context_id == 255

    @pytest.mark.parametrize(
        "contexts",
        [
            [PresentationContext(2, VERIFICATION, [IMPLICIT_VR_LE])],  # even
            [PresentationContext(0, VERIFICATION, [IMPLICIT_VR_LE])],
            [PresentationContext(257, VERIFICATION, [IMPLICIT_VR_LE])],
            [
                PresentationContext(3, VERIFICATION, [IMPLICIT_VR_LE]),
                PresentationContext(3, CT_IMAGE_STORAGE, [IMPLICIT_VR_LE]),
            ],
            [(VERIFICATION, [IMPLICIT_VR_LE])] * 129,
            [(VERIFICATION, [])],
            [("1.2.03", [IMPLICIT_VR_LE])],
            [(VERIFICATION, ["1..2"])],
            [],
        ],
        ids=[
            "even",
            "zero",
            "257",
            "duplicate",
            "129-contexts",
            "no-ts",
            "bad-abstract",
            "bad-ts",
            "none",
        ],
    )
    def test_invalid_proposals_raise_validation_error(self, contexts: list) -> None:
        with pytest.raises(ValidationError):
            build_request(RequestorConfig("SCU", "SCP", contexts))

    @pytest.mark.parametrize(("calling", "called"), [("", "SCP"), ("SCU", "A" * 17), ("A\\B", "X")])
    def test_invalid_ae_titles_raise_validation_error(self, calling: str, called: str) -> None:
        with pytest.raises(ValidationError):
            build_request(RequestorConfig(calling, called, [(VERIFICATION, [IMPLICIT_VR_LE])]))

    def test_window_of_zero_proposes_unlimited(self) -> None:
        config = RequestorConfig(
            "SCU",
            "SCP",
            [(VERIFICATION, [IMPLICIT_VR_LE])],
            maximum_invoked=0,
            maximum_performed=0,
        )
        request, _ = build_request(config)
        assert request.user_information is not None
        window = request.user_information.asynchronous_operations_window
        assert window is not None
        assert (window.maximum_invoked, window.maximum_performed) == (0, 0)

    def test_window_roles_identity_in_the_request(self) -> None:
        identity = UserIdentityRQItem(1, 1, b"dave")
        config = RequestorConfig(
            "SCU",
            "SCP",
            [(CT_IMAGE_STORAGE, [IMPLICIT_VR_LE])],
            maximum_invoked=4,
            roles={CT_IMAGE_STORAGE: (False, True)},
            user_identity=identity,
        )
        request, _ = build_request(config)
        info = request.user_information
        assert info is not None
        window = info.asynchronous_operations_window
        assert window is not None and (window.maximum_invoked, window.maximum_performed) == (4, 1)
        assert [(r.sop_class_uid, r.scu_role, r.scp_role) for r in info.role_selections] == [
            (CT_IMAGE_STORAGE, 0, 1)
        ]
        assert info.user_identity == identity

    def ac(
        self, items: list[PresentationContextACItem], sub_items: list | None = None
    ) -> AAssociateAC:
        info = UserInformationItem.create(16384, "1.2.3.4", None)
        info.sub_items.extend(sub_items or [])
        return AAssociateAC("SCP", "SCU", [ApplicationContextItem(), *items, info])

    def test_read_accept_marks_unproposed_transfer_syntax_not_accepted(self) -> None:
        config = RequestorConfig(
            "SCU",
            "SCP",
            [(VERIFICATION, [IMPLICIT_VR_LE]), (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])],
        )
        _, proposed = build_request(config)
        accept = self.ac(
            [
                PresentationContextACItem.create(1, 0, IMPLICIT_VR_LE),
                PresentationContextACItem.create(3, 0, JPEG_BASELINE),  # never proposed
                PresentationContextACItem.create(9, 0, IMPLICIT_VR_LE),  # never proposed either
            ]
        )
        negotiated = read_accept(config, proposed, accept)
        assert negotiated.contexts[1].accepted
        assert negotiated.contexts[1].transfer_syntax == IMPLICIT_VR_LE
        assert not negotiated.contexts[3].accepted
        assert negotiated.contexts[3].transfer_syntax is None
        assert 9 not in negotiated.contexts
        assert negotiated.find_context(CT_IMAGE_STORAGE) is None
        assert negotiated.remote_max_pdu_length == 16384
        assert negotiated.requestor is True
        assert (negotiated.local_ae_title, negotiated.remote_ae_title) == ("SCU", "SCP")

    def test_read_accept_unanswered_context_is_not_accepted(self) -> None:
        config = RequestorConfig(
            "SCU", "SCP", [(VERIFICATION, [IMPLICIT_VR_LE]), (CT_IMAGE_STORAGE, [IMPLICIT_VR_LE])]
        )
        _, proposed = build_request(config)
        negotiated = read_accept(
            config, proposed, self.ac([PresentationContextACItem.create(1, 0, IMPLICIT_VR_LE)])
        )
        assert negotiated.contexts[3].result == 2
        assert [c.context_id for c in negotiated.accepted_contexts] == [1]

    def test_read_accept_roles_and_window(self) -> None:
        config = RequestorConfig(
            "SCU",
            "SCP",
            [(CT_IMAGE_STORAGE, [IMPLICIT_VR_LE]), (MR_IMAGE_STORAGE, [IMPLICIT_VR_LE])],
            roles={CT_IMAGE_STORAGE: (True, True), MR_IMAGE_STORAGE: (True, True)},
            maximum_invoked=8,
            maximum_performed=8,
        )
        _, proposed = build_request(config)
        accept = self.ac(
            [
                PresentationContextACItem.create(1, 0, IMPLICIT_VR_LE),
                PresentationContextACItem.create(3, 0, IMPLICIT_VR_LE),
            ],
            [AsynchronousOperationsWindowItem(2, 5), RoleSelectionItem(CT_IMAGE_STORAGE, 1, 0)],
        )
        negotiated = read_accept(config, proposed, accept)
        assert (negotiated.contexts[1].scu_role, negotiated.contexts[1].scp_role) == (True, False)
        # No reply for MR: the default roles apply (PS3.7 D.3.3.4).
        assert (negotiated.contexts[3].scu_role, negotiated.contexts[3].scp_role) == (True, False)
        assert (negotiated.maximum_invoked, negotiated.maximum_performed) == (2, 5)

    def test_both_sides_agree(self) -> None:
        def yes(identity: UserIdentityRQItem, calling: str, host: str | None) -> tuple:
            return True, b"welcome"

        config = RequestorConfig(
            "SCU",
            "DICOMWIRE",
            [(VERIFICATION, [IMPLICIT_VR_LE, EXPLICIT_VR_LE]), (CT_IMAGE_STORAGE, [JPEG_BASELINE])],
            maximum_invoked=8,
            maximum_performed=2,
            roles={VERIFICATION: (True, True)},
            user_identity=UserIdentityRQItem(1, 1, b"erin"),
        )
        request, proposed = build_request(config)
        wire_request = decode(request.encode())
        assert isinstance(wire_request, AAssociateRQ)
        acceptor = policy(identity_check=yes, scp_role_for=[VERIFICATION], maximum_invoked=4)
        accept, theirs = accepted(accept_or_reject(acceptor, wire_request, ("127.0.0.1", 1)))
        wire_accept = decode(accept.encode())
        assert isinstance(wire_accept, AAssociateAC)
        ours = read_accept(config, proposed, wire_accept)
        for cid in (1, 3):
            assert ours.contexts[cid].result == theirs.contexts[cid].result
            assert ours.contexts[cid].transfer_syntax == theirs.contexts[cid].transfer_syntax
        assert ours.contexts[1].transfer_syntax == EXPLICIT_VR_LE
        assert (ours.contexts[1].scu_role, ours.contexts[1].scp_role) == (True, True)
        assert (theirs.contexts[1].scu_role, theirs.contexts[1].scp_role) == (True, True)
        assert (ours.maximum_invoked, ours.maximum_performed) == (4, 2)
        assert (theirs.maximum_invoked, theirs.maximum_performed) == (4, 2)
        assert ours.user_identity_response == b"welcome"
        assert ours.remote_max_pdu_length == theirs.local_max_pdu_length
        assert theirs.remote_max_pdu_length == ours.local_max_pdu_length


# --------------------------------------------------------------------------- on the wire


def _wire_answer(port: int, request: AAssociateRQ) -> bytes:
    with raw_connect(port) as sock:
        sock.sendall(request.encode())
        answer = read_pdu(sock)
        # After A-ASSOCIATE-RJ (AE-8, Sta13) nothing more comes: the acceptor closes, or
        # waits for us to close.
        sock.settimeout(0.2)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            assert sock.recv(1) == b""
    return answer


class TestRejectionsOnTheWire:
    """A live node answers with exactly the A-ASSOCIATE-RJ PDU of PS3.8 §9.3.4."""

    @pytest.mark.parametrize(
        ("request_kwargs", "expected"),
        [
            ({"called": "WRONG"}, (1, 1, 7)),
            ({"calling": "STRANGER"}, (1, 1, 3)),
            ({"application_context": "1.2.3.4"}, (1, 1, 2)),
            ({"protocol_version": 2}, (1, 2, 2)),
            ({"contexts": [(1, UNSERVED_SOP_CLASS, [IMPLICIT_VR_LE])]}, (1, 1, 1)),
            ({"contexts": [(1, VERIFICATION_SOP_CLASS, [JPEG_BASELINE])]}, (1, 1, 1)),
        ],
        ids=["called-ae", "calling-ae", "app-context", "protocol-version", "abstract", "ts"],
    )
    def test_rejection_pdu(self, request_kwargs: dict, expected: tuple[int, int, int]) -> None:
        config = node_config(known_nodes=[KnownNode("RAWSCU", "127.0.0.1")])
        with running_node(config) as node:
            answer = _wire_answer(node.port, verification_rq(**request_kwargs))
            assert answer == a_associate_rj(*expected)
            assert node.wait_idle()

    def test_known_node_with_another_network_is_rejected(self) -> None:
        config = node_config(known_nodes=[KnownNode("RAWSCU", "10.0.0.0/8")])
        with running_node(config) as node:
            assert _wire_answer(node.port, verification_rq()) == a_associate_rj(1, 1, 3)

    def test_local_limit_while_another_association_is_held(self) -> None:
        with running_node(node_config(max_associations=1)) as node:
            with raw_connect(node.port) as held:
                held.sendall(verification_rq().encode())
                assert read_pdu(held)[0] == 0x02  # A-ASSOCIATE-AC
                answer = _wire_answer(node.port, verification_rq(calling="SECOND"))
                assert answer == a_associate_rj(2, 3, 2)
            # Once the first association is gone, a new one is accepted again.
            assert node.wait_idle()
            with raw_connect(node.port) as again:
                again.sendall(verification_rq().encode())
                assert read_pdu(again)[0] == 0x02

    def test_a_failing_policy_answers_temporary_congestion(self) -> None:
        def broken(identity: UserIdentityRQItem, calling: str, host: str | None) -> tuple:
            raise RuntimeError("identity backend down")

        node_policy = Node(node_config()).policy
        node_policy.identity_check = broken
        user_info = UserInformationItem.create(16384, REQUESTOR_UID, None)
        user_info.sub_items.append(UserIdentityRQItem(1, 0, b"frank"))
        with running_node(policy=node_policy) as node:
            answer = _wire_answer(node.port, verification_rq(user_information=user_info))
            assert answer == a_associate_rj(2, 3, 1)
            # The server survived: a plain association is still accepted.
            with raw_connect(node.port) as sock:
                sock.sendall(verification_rq().encode())
                assert read_pdu(sock)[0] == 0x02
