"""The conformance table: every scenario as a row of name, group, title, standard clause,
requirement, stimulus and expectation.

The rows cover PS3.8 Table 9-10 in Sta2 and Sta6 (unexpected and unknown PDUs, A-ABORT,
lengths above the negotiated maximum, Annex D.1, and near 2^32, §9.3.1), association
negotiation (§9.3.2-9.3.4, Tables 9-18 and 9-21; PS3.7 Annex D.3.3), P-DATA (§9.3.5,
Annex E), release (§7.2) and the transport (ARTIM, Evt17). A row's stimulus comes from
:mod:`.stimuli` and its judge from :mod:`.judges`; the few scenarios of several dependent
steps (baseline, AC content, fragmented exchanges, truncations) have a run function here.
Order matters: it is the order of the report.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from ...dimse.commands import CommandField, encode_command
from ...dimse.primitives import CEchoRQ
from ...ul.identifiers import WireStr, normalize_ae_title
from ...ul.pdu import (
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
    PresentationContextRQItem,
    PresentationDataValue,
    SOPClassCommonExtendedNegotiationItem,
    UnknownItem,
    UserIdentityRQItem,
    UserInformationItem,
)
from ..rawpeer import (
    IMPLICIT_VR_LE,
    SECONDARY_CAPTURE,
    VERIFICATION,
    ContextSpec,
    RawPeer,
    c_echo_rq,
    describe,
    fragments,
)
from .judges import (
    aa1,
    aa8,
    aborted_not_answered,
    aborted_or_closed,
    accepted,
    accepted_or_rejected,
    asynchronous_window_within,
    closes,
    contexts_answered,
    echo_answered,
    every_context_answered,
    identity_answered,
    message_text,
    negotiated,
    rejected,
    rejected_or_aborted,
    release_collision_answered,
    released,
    roles_granted,
    rq_fields_echoed,
    store_answered,
)
from .model import Finding, Scenario, ScenarioSkipped
from .probe import Probe
from .stimuli import (
    CT_IMAGE_STORAGE,
    IN_STA6,
    UNKNOWN_ABSTRACT_SYNTAX,
    UNKNOWN_APPLICATION_CONTEXT,
    UNKNOWN_PDU,
    UNKNOWN_TRANSFER_SYNTAX,
    Build,
    accept_pdu,
    associate,
    echo_in_fragments,
    echo_pdu,
    in_sta6,
    send,
    stay_silent,
    store_in_layout,
)

__all__ = ["SCENARIOS"]

# -- scenarios of several dependent steps --------------------------------------------------------


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


async def _reserved_sta6(probe: Probe) -> Finding:
    peer = await probe.established()
    context_id = peer.accepted_context(VERIFICATION) or 1
    message_id = peer.next_message_id()
    pdu = PDataTF([PresentationDataValue(context_id, 0xFF, c_echo_rq(message_id))], reserved=0xFF)
    sent = await probe.send(peer, pdu)
    message, obs = await probe.response(peer)
    if message is None:
        assert obs is not None
        obs.write_failed = not sent
        return Finding.failed(f"{obs}; expected a C-ECHO-RSP")
    if message.command_field != CommandField.C_ECHO_RSP or message.status != 0:
        return Finding.failed(f"{message_text(message)}; expected C-ECHO-RSP status 0000")
    release = await probe.stimulate(peer, AReleaseRQ(reserved=0xFF, reserved_6=0xFFFFFFFF))
    if not isinstance(release.pdu, AReleaseRP):
        return Finding.failed(f"C-ECHO-RSP 0000, then {release}; expected A-RELEASE-RP")
    return Finding.passed(f"C-ECHO-RSP 0000, then {release}")


async def _small_max(probe: Probe) -> Finding:
    peer = await probe.connect()
    answer = await peer.associate(
        probe.target.calling_ae_title, probe.target.called_ae_title, max_pdu_length=128
    )
    if isinstance(answer, AAssociateRJ):
        return Finding.passed(f"{describe(answer)}: refuses a Maximum Length of 128")
    if peer.accepted_context(VERIFICATION) is None:
        return Finding.failed(f"{describe(answer)}; expected Verification accepted")
    await probe.send(peer, echo_pdu(peer.accepted_context(VERIFICATION) or 1, 1))
    message, obs = await probe.response(peer)
    if message is None:
        return Finding.failed(f"{obs}; expected a C-ECHO-RSP")
    lengths = [len(p.encode()) - 6 for p in peer.received if isinstance(p, PDataTF)]
    text = f"{message_text(message)} in P-DATA-TF of {lengths} bytes"
    await probe.send(peer, AReleaseRQ())
    if max(lengths) > 128:
        return Finding.failed(f"{text}; the limit was 128")
    return Finding.passed(text)


async def _tcp_split(probe: Probe) -> Finding:
    peer = await probe.connect()
    await peer.send_split(probe.request(), [7], delay=0.01)
    answer = await probe.observe(peer)
    if not isinstance(answer.pdu, AAssociateAC):
        return Finding.failed(f"{answer}; expected an AC")
    await peer.send_split(echo_pdu(1, 1), [1])
    message, obs = await probe.response(peer)
    if message is None:
        return Finding.failed(f"{obs}; expected a C-ECHO-RSP")
    if message.command_field != CommandField.C_ECHO_RSP or message.status != 0:
        return Finding.failed(f"{message_text(message)}; expected C-ECHO-RSP status 0000")
    await peer.send_split(AReleaseRQ(), [1])
    release = await probe.observe(peer)
    if not isinstance(release.pdu, AReleaseRP):
        return Finding.failed(f"{release}; expected A-RELEASE-RP")
    return Finding.passed("A-ASSOCIATE-AC, C-ECHO-RSP 0000, A-RELEASE-RP")


async def _truncated_sta2(probe: Probe) -> Finding:
    peer = await probe.connect()
    await probe.send(peer, probe.request().encode()[:40])
    await peer.close()
    return Finding.passed("sent 40 of the RQ's bytes and closed")


async def _truncated_sta6(probe: Probe) -> Finding:
    peer = await probe.established()
    await probe.send(peer, echo_pdu().encode()[:30])
    await peer.close()
    return Finding.passed("sent 30 bytes of a P-DATA-TF and closed")


async def _reset_sta6(probe: Probe) -> Finding:
    peer = await probe.established()
    peer.abort_transport()
    return Finding.passed("reset the connection")


# -- what the rows send --------------------------------------------------------------------------


def _request(edit: Callable[[AAssociateRQ], PDU | bytes] | None = None, **changes: Any) -> Build:
    """The target's A-ASSOCIATE-RQ (``changes``: :meth:`Probe.request`), then ``edit``."""

    def build(probe: Probe, peer: RawPeer) -> PDU | bytes:
        request = probe.request(**changes)
        return request if edit is None else edit(request)

    return build


def _protocol_version(version: int) -> Callable[[AAssociateRQ], PDU]:
    def edit(base: AAssociateRQ) -> PDU:
        return AAssociateRQ(
            base.called_ae_title,
            base.calling_ae_title,
            base.variable_items,
            protocol_version=version,
        )

    return edit


def _unknown_application_context(base: AAssociateRQ) -> PDU:
    items: list[AssociateItem] = [
        ApplicationContextItem(UNKNOWN_APPLICATION_CONTEXT)
        if isinstance(item, ApplicationContextItem)
        else item
        for item in base.variable_items
    ]
    return AAssociateRQ(base.called_ae_title, base.calling_ae_title, items)


def _blank_calling_ae_title(base: AAssociateRQ) -> PDU:
    return AAssociateRQ(base.called_ae_title, WireStr.from_wire(b" " * 16, ""), base.variable_items)


def _reserved_bytes_43_74(request: AAssociateRQ) -> PDU:
    request.reserved_42 = bytes(range(0xA0, 0xC0))
    return request


def _unknown_user_information_item(request: AAssociateRQ) -> PDU:
    info = request.user_information
    if info is not None:
        info.sub_items.append(UnknownItem(0xF0, b"\x00\x01\x02\x03"))
    return request


def _unknown_variable_item(request: AAssociateRQ) -> bytes:
    encoded = bytearray(request.encode())
    encoded += b"\x99\x00\x00\x04\x00\x01\x02\x03"
    struct.pack_into(">L", encoded, 2, len(encoded) - 6)
    return bytes(encoded)


def _every_reserved_field_set(request: AAssociateRQ) -> AAssociateRQ:
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


def _padded_echo(length: int) -> bytes:
    """A C-ECHO-RQ command set of exactly ``length`` bytes (a retired (0000,4000) pads it)."""
    plain = len(encode_command(CEchoRQ(VERIFICATION, message_id=1).to_command()))
    padding = length - plain - 8
    if padding < 0:
        raise ValueError(f"a C-ECHO-RQ needs more than {length} bytes")
    padded = CEchoRQ(VERIFICATION, message_id=1, extra={0x00004000: b"A" * padding})
    return encode_command(padded.to_command())


def _huge_rq_header(probe: Probe, peer: RawPeer) -> bytes:
    return b"\x01\x00\xff\xff\xff\xff" + probe.request().encode()[6 : 6 + 68]


def _over_long_pdata(probe: Probe, peer: RawPeer) -> PDU:
    limit = peer.peer_max_pdu_length
    if limit == 0:
        raise ScenarioSkipped("the SCP announced no limit (Maximum Length 0)")
    if limit < 128 or limit % 2:
        raise ScenarioSkipped(f"cannot build a C-ECHO-RQ of exactly {limit} bytes")
    return PDataTF([PresentationDataValue(1, 0x03, _padded_echo(limit))])


def _huge_pdata_header(probe: Probe, peer: RawPeer) -> bytes:
    if peer.peer_max_pdu_length == 0:
        raise ScenarioSkipped("the SCP announced no limit: a 4 GiB P-DATA-TF is allowed")
    return b"\x04\x00\xff\xff\xff\xfe" + struct.pack(">LBB", 0xFFFFFFFA, 1, 0x01) + bytes(64)


def _command_and_dataset(context_id: int, command: bytes, dataset: bytes) -> list[PDataTF]:
    return [
        PDataTF(
            fragments(context_id, command, command=True)
            + fragments(context_id, dataset, command=False)
        )
    ]


def _command_and_dataset_halves(context_id: int, command: bytes, dataset: bytes) -> list[PDataTF]:
    half = len(dataset) // 4 * 2
    return [
        PDataTF(
            fragments(context_id, command, command=True)
            + fragments(context_id, dataset, [half], command=False)
        )
    ]


def _many_boundaries(context_id: int, command: bytes, dataset: bytes) -> list[PDataTF]:
    sizes = [2, 4, 8, 16, 34]
    pdus = [PDataTF([pdv]) for pdv in fragments(context_id, command, sizes, command=True)]
    data = fragments(context_id, dataset, sizes, command=False)
    pdus += [PDataTF(data[i : i + 3]) for i in range(0, len(data), 3)]
    return pdus


_VERIFICATION_AND_UNKNOWN: list[ContextSpec] = [
    (VERIFICATION, (IMPLICIT_VR_LE,)),
    (UNKNOWN_ABSTRACT_SYNTAX, (IMPLICIT_VR_LE,)),
]
_ROLES = {CT_IMAGE_STORAGE: (True, True), SECONDARY_CAPTURE: (False, True)}

#: (name suffix, PDU name, Table 9-10 event, PDU) sent where Sta2 or Sta6 expects another.
_STA2_UNEXPECTED: list[tuple[str, str, str, Build]] = [
    ("ac", "A-ASSOCIATE-AC", "Evt3", accept_pdu),
    ("rj", "A-ASSOCIATE-RJ", "Evt4", AAssociateRJ(1, 1, 1)),
    ("p-data", "P-DATA-TF", "Evt10", echo_pdu()),
    ("release-rq", "A-RELEASE-RQ", "Evt12", AReleaseRQ()),
    ("release-rp", "A-RELEASE-RP", "Evt13", AReleaseRP()),
]
_STA6_UNEXPECTED: list[tuple[str, str, str, Build]] = [
    ("ac", "A-ASSOCIATE-AC", "Evt3", accept_pdu),
    ("rj", "A-ASSOCIATE-RJ", "Evt4", AAssociateRJ(1, 1, 1)),
    ("rq", "A-ASSOCIATE-RQ", "Evt6", _request()),
    ("release-rp", "A-RELEASE-RP", "Evt13", AReleaseRP()),
]

# -- the table -----------------------------------------------------------------------------------

SCENARIOS: list[Scenario] = [
    Scenario(
        "baseline",
        "association",
        "A-ASSOCIATE-RQ for Verification, C-ECHO, A-RELEASE",
        "PS3.8 §9.3.2-9.3.3, §9.3.6-9.3.7; PS3.7 §9.3.5",
        "An A-ASSOCIATE-AC accepting Verification (Implicit VR Little Endian), a C-ECHO-RSP "
        "with status 0000, an A-RELEASE-RP.",
        run=_baseline,
    ),
    Scenario(
        "assoc-accept-content",
        "association",
        "the A-ASSOCIATE-AC's fields and items",
        "PS3.8 §9.3.3, Annex D.1; PS3.7 Annex D.3.3.2",
        "Protocol version bit 0 set; the called and calling AE titles of the RQ echoed; the "
        "DICOM application context; one answer per proposed presentation context, an accepted "
        "one naming one proposed transfer syntax; a Maximum Length sub-item and an "
        "Implementation Class UID sub-item.",
        run=_accept_content,
    ),
    # -- Sta2: before the A-ASSOCIATE-RQ
    *[
        Scenario(
            f"sta2-unexpected-{key}",
            "Sta2",
            f"{name} instead of an A-ASSOCIATE-RQ",
            f"PS3.8 Table 9-10 (Sta2, {event}: AA-1), Table 9-9, Table 9-26",
            "AA-1: an A-ABORT, then ARTIM. Table 9-9 names the service-user source (0, reason "
            "not significant); with the service-provider source (2) the reason must be 2 "
            "(unexpected PDU).",
            stimulus=send(pdu, header_first=True),
            expect=aa1(reason=2),
        )
        for key, name, event, pdu in _STA2_UNEXPECTED
    ],
    Scenario(
        "sta2-unknown-pdu-type",
        "Sta2",
        "a PDU of unknown type 09H as the first PDU",
        "PS3.8 Table 9-10 (Sta2, Evt19: AA-1), Table 9-26",
        "AA-1: an A-ABORT; with the service-provider source (2) the reason must be 1 "
        "(unrecognized PDU).",
        stimulus=send(UNKNOWN_PDU, header_first=True),
        expect=aa1(reason=1),
    ),
    Scenario(
        "sta2-a-abort",
        "Sta2",
        "A-ABORT as the first PDU",
        "PS3.8 Table 9-10 (Sta2, Evt16: AA-2)",
        "AA-2: close the transport connection, sending nothing.",
        stimulus=send(AAbort(0, 0)),
        expect=closes("AA-2 closes the connection without a PDU"),
    ),
    Scenario(
        "sta2-length-near-2^32",
        "Sta2",
        "an A-ASSOCIATE-RQ header announcing 4294967295 bytes, then 68 bytes",
        "PS3.8 §9.3.1 (32-bit PDU length), Table 9-10 (Sta2: Evt19 AA-1, Evt18 AA-2)",
        "No Maximum Length is negotiated yet; the SCP may refuse the length (A-ABORT) or wait "
        "(ARTIM then closes), but must stay bounded in memory and keep serving others "
        "(judged by the fresh association afterwards).",
        stimulus=send(_huge_rq_header, header_first=True),
        expect=aborted_or_closed(),
    ),
    # -- association negotiation
    Scenario(
        "assoc-protocol-version",
        "negotiation",
        "A-ASSOCIATE-RQ with protocol version 0002H (bit 0 clear)",
        "PS3.8 §9.3.2 (protocol-version), Table 9-21",
        "A-ASSOCIATE-RJ: result 1 or 2, source 2 (service-provider, ACSE), reason 2 "
        "(protocol version not supported).",
        stimulus=send(_request(_protocol_version(2))),
        expect=rejected(source=2, reason=2),
    ),
    Scenario(
        "assoc-protocol-version-bits",
        "negotiation",
        "A-ASSOCIATE-RQ with protocol version 0003H (bit 0 and a future bit)",
        "PS3.8 §9.3.2 (protocol-version)",
        "A receiver implementing version 1 shall only test that bit 0 is set: A-ASSOCIATE-AC.",
        stimulus=send(_request(_protocol_version(3))),
        expect=accepted(),
    ),
    Scenario(
        "assoc-application-context",
        "negotiation",
        "A-ASSOCIATE-RQ with an unknown application context name",
        "PS3.8 §9.3.2.1, §7.1.1.2, Table 9-21",
        "A-ASSOCIATE-RJ: result 1 or 2, source 1 (service-user), reason 2 (application "
        "context name not supported).",
        stimulus=send(_request(_unknown_application_context)),
        expect=rejected(source=1, reason=2),
    ),
    Scenario(
        "assoc-called-ae-title",
        "negotiation",
        "A-ASSOCIATE-RQ to a called AE title the SCP is not",
        "PS3.8 §9.3.2 (called-AE-title), §7.1.1.4, Table 9-21",
        "Policy: accept, or A-ASSOCIATE-RJ with result 1 or 2, source 1, reason 7 (called AE "
        "title not recognized).",
        stimulus=send(_request(called_ae_title="NOT-THIS-SCP")),
        expect=accepted_or_rejected(7, "called AE title"),
    ),
    Scenario(
        "assoc-calling-ae-title",
        "negotiation",
        "A-ASSOCIATE-RQ from a calling AE title the SCP does not know",
        "PS3.8 §9.3.2 (calling-AE-title), §7.1.1.3, Table 9-21",
        "Policy: accept, or A-ASSOCIATE-RJ with result 1 or 2, source 1, reason 3 (calling AE "
        "title not recognized).",
        stimulus=send(_request(calling_ae_title="UNKNOWN-CALLER")),
        expect=accepted_or_rejected(3, "calling AE title"),
    ),
    Scenario(
        "assoc-calling-ae-title-blank",
        "negotiation",
        "A-ASSOCIATE-RQ whose calling AE title is 16 spaces",
        "PS3.8 §9.3.2 (calling-AE-title), Table 9-21",
        "Sixteen spaces ('no application name') shall not be used: A-ASSOCIATE-RJ with result "
        "1 or 2, source 1, reason 3, or an A-ABORT; not an AC.",
        stimulus=send(_request(_blank_calling_ae_title)),
        expect=rejected_or_aborted(source=1, reason=3),
    ),
    Scenario(
        "assoc-abstract-syntax-rejected",
        "negotiation",
        "a presentation context with an abstract syntax no SCP supports",
        "PS3.8 §9.3.3.2, Table 9-18",
        "A-ASSOCIATE-AC answering every context; the unknown abstract syntax's context with "
        "result 3 (abstract syntax not supported), Verification's with 0 (acceptance).",
        stimulus=send(_request(contexts=_VERIFICATION_AND_UNKNOWN)),
        expect=contexts_answered({1: 0, 3: 3}),
    ),
    Scenario(
        "assoc-transfer-syntax-rejected",
        "negotiation",
        "a Verification context proposing only an unknown transfer syntax",
        "PS3.8 §9.3.3.2, Table 9-18",
        "A-ASSOCIATE-AC; that context with result 4 (transfer syntaxes not supported), the "
        "other Verification context with 0.",
        stimulus=send(
            _request(
                contexts=[
                    (VERIFICATION, (IMPLICIT_VR_LE,)),
                    (VERIFICATION, (UNKNOWN_TRANSFER_SYNTAX,)),
                ]
            )
        ),
        expect=contexts_answered({1: 0, 3: 4}),
    ),
    Scenario(
        "assoc-role-selection",
        "negotiation",
        "SCP/SCU role selection: CT (SCU+SCP) and Secondary Capture (SCP only)",
        "PS3.7 Annex D.3.3.4",
        "A role selection reply, when present, names a proposed SOP class and grants no role "
        "that was not proposed; without a reply the default roles apply.",
        stimulus=associate(
            [
                (VERIFICATION, (IMPLICIT_VR_LE,)),
                (CT_IMAGE_STORAGE, (IMPLICIT_VR_LE,)),
                (SECONDARY_CAPTURE, (IMPLICIT_VR_LE,)),
            ],
            roles=_ROLES,
        ),
        expect=negotiated(roles_granted(_ROLES)),
    ),
    Scenario(
        "assoc-user-identity",
        "negotiation",
        "user identity (username and passcode) with a positive response requested",
        "PS3.7 Annex D.3.3.7",
        "A-ASSOCIATE-AC, with or without a User Identity server response (59H); or, when the "
        "identity is refused, A-ASSOCIATE-RJ with result 1 or 2, source 1, reason 1.",
        stimulus=send(_request(user_identity=UserIdentityRQItem(2, 1, b"probe", b"probe"))),
        expect=identity_answered(response_requested=True),
    ),
    Scenario(
        "assoc-user-identity-no-response",
        "negotiation",
        "user identity (username) without a positive response requested",
        "PS3.7 Annex D.3.3.7.2",
        "A-ASSOCIATE-AC without a User Identity server response sub-item (59H), which is sent "
        "only when requested; or A-ASSOCIATE-RJ with result 1 or 2, source 1, reason 1.",
        stimulus=send(_request(user_identity=UserIdentityRQItem(1, 0, b"probe"))),
        expect=identity_answered(response_requested=False),
    ),
    Scenario(
        "assoc-async-window",
        "negotiation",
        "asynchronous operations window: 5 invoked, 3 performed",
        "PS3.7 Annex D.3.3.3",
        "No reply (the default window of 1 and 1 applies), or a reply whose values are at most "
        "the proposed ones and not 0 (0 would mean unlimited).",
        stimulus=associate(window=(5, 3)),
        expect=negotiated(asynchronous_window_within(5, 3)),
    ),
    Scenario(
        "assoc-reserved-fields-not-tested",
        "negotiation",
        "A-ASSOCIATE-RQ with every reserved field non-zero",
        "PS3.8 §9.3.2, Tables 9-11 to 9-16; PS3.7 Annex D.3.3",
        "Reserved fields are sent as zero but not tested when received: A-ASSOCIATE-AC.",
        stimulus=send(_request(_every_reserved_field_set)),
        expect=accepted(),
    ),
    Scenario(
        "assoc-ac-echoes-rq-fields",
        "negotiation",
        "A-ASSOCIATE-RQ with bytes 43-74 (reserved) set to A0H..BFH",
        "PS3.8 §9.3.3, Table 9-17 (bytes 11-26, 27-42, 43-74)",
        "The AC's bytes 11-74 are sent with the values received in the same fields of the RQ: "
        "the called and calling AE title fields and the 32 reserved bytes, byte for byte.",
        stimulus=send(_request(_reserved_bytes_43_74)),
        expect=accepted(rq_fields_echoed),
    ),
    Scenario(
        "assoc-unknown-user-info-item",
        "negotiation",
        "A-ASSOCIATE-RQ with a user information sub-item of unknown type F0H",
        "PS3.8 Annex D.2 (note 2)",
        "Acceptors ignore user information sub-items they do not recognize and do not reject "
        "the association because of them: A-ASSOCIATE-AC.",
        stimulus=send(_request(_unknown_user_information_item)),
        expect=accepted(),
    ),
    Scenario(
        "assoc-unknown-item-ignored",
        "negotiation",
        "A-ASSOCIATE-RQ with an extra variable item of unknown type 99H after the user info",
        "PS3.8 §9.3 (items of unrecognized types shall be ignored and skipped)",
        "The unknown item is ignored and skipped: A-ASSOCIATE-AC.",
        stimulus=send(_request(_unknown_variable_item)),
        expect=accepted(),
    ),
    Scenario(
        "assoc-128-contexts",
        "negotiation",
        "A-ASSOCIATE-RQ with 128 presentation contexts (IDs 1 to 255)",
        "PS3.8 §9.3.2.2, §9.3.3.2, §7.1.1.13",
        "Up to 128 presentation contexts (odd IDs 1-255) may be proposed: an AC answering "
        "every one of them exactly once.",
        stimulus=associate([(VERIFICATION, (IMPLICIT_VR_LE,))] * 128),
        expect=negotiated(every_context_answered(128)),
    ),
    # -- Sta6: association established
    *[
        Scenario(
            f"sta6-unexpected-{key}",
            "Sta6",
            f"{name} on an established association",
            f"PS3.8 Table 9-10 (Sta6, {event}: AA-8), Table 9-26",
            "AA-8: an A-ABORT with source 2 (service-provider) and reason 2 (unexpected PDU).",
            stimulus=send(pdu, state=IN_STA6, header_first=True),
            expect=aa8(reason=2),
        )
        for key, name, event, pdu in _STA6_UNEXPECTED
    ],
    Scenario(
        "sta6-unknown-pdu-type",
        "Sta6",
        "a PDU of unknown type 09H on an established association",
        "PS3.8 Table 9-10 (Sta6, Evt19: AA-8), Table 9-26",
        "AA-8: an A-ABORT with source 2 and reason 1 (unrecognized PDU).",
        stimulus=send(UNKNOWN_PDU, state=IN_STA6, header_first=True),
        expect=aa8(reason=1),
    ),
    Scenario(
        "sta6-a-abort",
        "Sta6",
        "A-ABORT from the requestor on an established association",
        "PS3.8 Table 9-10 (Sta6, Evt16: AA-3)",
        "AA-3: issue the A-ABORT indication and close the transport connection, sending nothing.",
        stimulus=send(AAbort(0, 0), state=IN_STA6),
        expect=closes("AA-3 closes the connection without a PDU"),
    ),
    Scenario(
        "sta6-pdu-above-maximum",
        "Sta6",
        "a P-DATA-TF 6 bytes longer than the Maximum Length the SCP announced",
        "PS3.8 Annex D.1, §9.3.5, Table 9-10 (Sta6, Evt19: AA-8)",
        "The requestor may not send P-DATA-TF longer than the SCP's Maximum Length; such a "
        "PDU is invalid: AA-8, an A-ABORT with source 2 (any reason).",
        stimulus=send(_over_long_pdata, state=IN_STA6, header_first=True),
        expect=aa8(reason=None, if_answered="the over-long PDU was processed"),
    ),
    Scenario(
        "sta6-length-near-2^32",
        "Sta6",
        "a P-DATA-TF header announcing 4294967294 bytes, then a PDV header and 64 bytes",
        "PS3.8 §9.3.1, Annex D.1, Table 9-10 (Sta6, Evt19: AA-8)",
        "The length exceeds the SCP's Maximum Length (when it announced one): AA-8, an A-ABORT "
        "with source 2, without waiting for 4 GiB.",
        stimulus=send(_huge_pdata_header, state=IN_STA6, header_first=True),
        expect=aa8(reason=None),
    ),
    Scenario(
        "sta6-reserved-fields-not-tested",
        "Sta6",
        "P-DATA-TF and A-RELEASE-RQ with reserved fields and message control header bits 2-7 set",
        "PS3.8 §9.3.5, §9.3.6, Annex E.2",
        "Reserved fields and the reserved bits of the message control header are not tested "
        "when received: C-ECHO-RSP status 0000, then A-RELEASE-RP.",
        run=_reserved_sta6,
    ),
    # -- P-DATA: presentation data values
    Scenario(
        "pdata-command-2-byte-pdus",
        "P-DATA",
        "a C-ECHO-RQ command set in 2-byte PDVs, one P-DATA-TF each",
        "PS3.8 §9.3.5, Annex E.1-E.2",
        "Fragments of any even length split elements anywhere (E.1 note 2); the command is "
        "reassembled and answered with C-ECHO-RSP status 0000.",
        stimulus=echo_in_fragments([2], pdvs_per_pdu=1),
        expect=echo_answered("in 2-byte PDVs, one per PDU"),
    ),
    Scenario(
        "pdata-command-2-byte-pdvs-one-pdu",
        "P-DATA",
        "a C-ECHO-RQ command set in 2-byte PDVs, all in one P-DATA-TF",
        "PS3.8 §9.3.5.1, Annex E.1",
        "A P-DATA-TF may hold many PDVs of one message: C-ECHO-RSP status 0000.",
        stimulus=echo_in_fragments([2], pdvs_per_pdu=0),
        expect=echo_answered("in 2-byte PDVs in one PDU"),
    ),
    Scenario(
        "pdata-command-many-boundaries",
        "P-DATA",
        "a C-ECHO-RQ command set in PDVs of 2, 4, 6, 10, 14 and 22 bytes, two per P-DATA-TF",
        "PS3.8 §9.3.5.1, Annex E.1",
        "Even fragments cut through tags, lengths and values: C-ECHO-RSP status 0000.",
        stimulus=echo_in_fragments([2, 4, 6, 10, 14, 22], pdvs_per_pdu=2),
        expect=echo_answered("split at many boundaries"),
    ),
    Scenario(
        "pdata-odd-fragments",
        "P-DATA",
        "a C-ECHO-RQ command set in PDVs of 1, 3 and 5 bytes (odd: a requestor error)",
        "PS3.8 Annex E.1 (each fragment shall consist of an even number of bytes)",
        "The requestor breaks E.1; the standard does not say how the receiver reacts. Either "
        "answer is accepted: an A-ABORT, or tolerance (C-ECHO-RSP status 0000).",
        stimulus=echo_in_fragments([1, 3, 5], pdvs_per_pdu=2),
        expect=echo_answered("in odd-sized PDVs", tolerate_abort=True),
    ),
    Scenario(
        "pdata-small-max-length",
        "P-DATA",
        "the requestor announces a Maximum Length of 128 bytes",
        "PS3.8 Annex D.1, §9.3.5",
        "Every P-DATA-TF the SCP sends is at most 128 bytes long (PDU-length field), so the "
        "C-ECHO-RSP may arrive fragmented; an SCP that cannot work with so small a limit may "
        "reject the association instead (A-ASSOCIATE-RJ).",
        run=_small_max,
    ),
    Scenario(
        "tcp-split-every-byte",
        "P-DATA",
        "every PDU written in 1-byte TCP segments (the RQ slowly, 10 ms apart per 7 bytes)",
        "PS3.8 §9.3.1 and §10 (TCP is a byte stream)",
        "PDUs are framed by their length fields, however they are segmented: AC, C-ECHO-RSP "
        "status 0000, A-RELEASE-RP.",
        run=_tcp_split,
    ),
    Scenario(
        "pdata-command-and-dataset-one-pdu",
        "P-DATA",
        "a C-STORE-RQ whose command PDV and data set PDV share one P-DATA-TF",
        "PS3.8 §9.3.5.1, Annex E.1; PS3.7 §9.3.1",
        "The PDVs of one P-DATA-TF may carry command and data set fragments of the same "
        "message: C-STORE-RSP with success (0000) or a warning (Bxxx).",
        stimulus=store_in_layout(_command_and_dataset),
        expect=store_answered("with command and data set in one PDU"),
    ),
    Scenario(
        "pdata-command-and-dataset-pdvs-one-pdu",
        "P-DATA",
        "a C-STORE-RQ in one P-DATA-TF: the command PDV, then the data set in two PDVs",
        "PS3.8 §9.3.5.1, Annex E.1",
        "A P-DATA-TF may hold several PDVs of one message, command and data set alike: "
        "C-STORE-RSP with success or a warning.",
        stimulus=store_in_layout(_command_and_dataset_halves),
        expect=store_answered("with 1 command and 2 data set PDVs in one PDU"),
    ),
    Scenario(
        "pdata-dataset-many-boundaries",
        "P-DATA",
        "a C-STORE-RQ cut into PDVs of 2, 4, 8, 16 and 34 bytes: the command's one per "
        "P-DATA-TF, the data set's three per P-DATA-TF",
        "PS3.8 §9.3.5.1, Annex E.1",
        "Even fragments split elements anywhere: C-STORE-RSP with success or a warning.",
        stimulus=store_in_layout(_many_boundaries),
        expect=store_answered("split at many boundaries"),
    ),
    Scenario(
        "pdata-invalid-context-id",
        "P-DATA",
        "a C-ECHO-RQ on presentation context ID 2 (even: never a valid ID)",
        "PS3.8 §9.3.2.2 (odd IDs 1-255), §9.3.5.1, §7.3",
        "A PDV must name an accepted presentation context; this one cannot be interpreted: "
        "the association is aborted (A-ABORT, source 0 or 2), not answered.",
        stimulus=send(echo_pdu(2, 1), state=in_sta6(_VERIFICATION_AND_UNKNOWN)),
        expect=aborted_not_answered(),
    ),
    Scenario(
        "pdata-rejected-context-id",
        "P-DATA",
        "a C-ECHO-RQ on a presentation context the SCP rejected",
        "PS3.8 §9.3.3.2, §9.3.5.1, §7.3",
        "Only accepted presentation contexts carry data: A-ABORT (source 0 or 2), not an answer.",
        stimulus=send(echo_pdu(3, 1), state=in_sta6(_VERIFICATION_AND_UNKNOWN)),
        expect=aborted_not_answered(),
    ),
    # -- release
    Scenario(
        "release",
        "release",
        "A-RELEASE-RQ on an established association",
        "PS3.8 Table 9-10 (Sta6, Evt12: AR-2; Sta8, Evt14: AR-4)",
        "AR-2 then AR-4: an A-RELEASE-RP.",
        stimulus=send(AReleaseRQ(), state=IN_STA6),
        expect=released(),
    ),
    Scenario(
        "release-collision",
        "release",
        "two A-RELEASE-RQ in one write, as a colliding release reaches an SCP",
        "PS3.8 §7.2, Table 9-10 (Sta8, Evt12: AA-8; Sta13, Evt12: AA-6)",
        "An SCP never requests release, so Sta9-Sta12 cannot be reached from a requestor; the "
        "second RQ meets the SCP in Sta8 (before its response: AA-8, A-ABORT source 2 reason "
        "2) or in Sta13 (after its A-RELEASE-RP: AA-6, ignored). Nothing else may follow.",
        stimulus=send(AReleaseRQ(), AReleaseRQ(), state=IN_STA6),
        expect=release_collision_answered(),
    ),
    # -- timers and the transport
    Scenario(
        "artim-idle-connection",
        "transport",
        "a connection on which nothing is sent",
        "PS3.8 §9.1.5 (ARTIM), Table 9-10 (Sta2, Evt18: AA-2)",
        "AE-5 starts ARTIM; when it expires the SCP closes the connection without a PDU.",
        slow=True,
        stimulus=stay_silent(),
        expect=closes("ARTIM expiry (Evt18) closes the connection (AA-2)"),
    ),
    Scenario(
        "sta2-truncated-pdu-then-close",
        "transport",
        "the first 40 bytes of an A-ASSOCIATE-RQ, then our close",
        "PS3.8 Table 9-10 (Sta2, Evt17: AA-5)",
        "AA-5: the SCP stops ARTIM and drops the connection, and keeps serving others.",
        run=_truncated_sta2,
    ),
    Scenario(
        "sta6-truncated-pdu-then-close",
        "transport",
        "half a P-DATA-TF on an established association, then our close",
        "PS3.8 Table 9-10 (Sta6, Evt17: AA-4)",
        "AA-4: an A-P-ABORT indication; the SCP keeps serving others.",
        run=_truncated_sta6,
    ),
    Scenario(
        "sta6-transport-reset",
        "transport",
        "a TCP reset on an established association",
        "PS3.8 Table 9-10 (Sta6, Evt17: AA-4)",
        "AA-4: an A-P-ABORT indication; the SCP keeps serving others.",
        run=_reset_sta6,
    ),
]
