"""Hypothesis strategies and fixed samples for the PDU codec of PS3.8 §9.3.

Two families:

- ``*_objects`` / ``*_items``: PDU and item objects built from *valid* application values
  (well-formed UIDs, AE titles without insignificant spaces), for ``decode(obj.encode()) == obj``;
- ``wire_*``: raw PDU bytes built here with ``struct``, independently of the codec, with
  every reserved field random, AE titles padded in unusual ways, UIDs with trailing
  padding and unknown user-information sub-items, for ``decode(x).encode() == x``.

``example_pdus()`` gives a fixed set of valid PDUs of every type (including an
A-ASSOCIATE-RQ with 128 presentation contexts) for the error and framer tests.
"""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from dicomwire.ul.pdu import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AbstractSyntaxItem,
    ApplicationContextItem,
    AReleaseRP,
    AReleaseRQ,
    AsynchronousOperationsWindowItem,
    ImplementationClassUIDItem,
    ImplementationVersionNameItem,
    MaximumLengthItem,
    PDataTF,
    PresentationContextACItem,
    PresentationContextRQItem,
    PresentationDataValue,
    RoleSelectionItem,
    SOPClassCommonExtendedNegotiationItem,
    SOPClassExtendedNegotiationItem,
    TransferSyntaxItem,
    UnknownItem,
    UserIdentityACItem,
    UserIdentityRQItem,
    UserInformationItem,
)

# --------------------------------------------------------------------------- constants

DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
#: A UID of exactly 64 characters (the maximum of PS3.5 §9.1).
UID_64 = "1.2.826.0.1.3680043.8.498.12345678901234567890123456789012345678"
assert len(UID_64) == 64

KNOWN_USER_INFO_TYPES = frozenset(range(0x51, 0x5A))

_AE_ALPHABET = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "\\")

byte = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
context_ids = st.integers(0, 127).map(lambda n: 2 * n + 1)  # odd, 1..255 (PS3.8 §9.3.2.2)

# --------------------------------------------------------------------------- valid values

#: Components without leading zeros; at most 8 components of at most 7 digits: <= 63 chars.
_uid_component = st.integers(0, 9_999_999).map(str)
generated_uids = st.lists(_uid_component, min_size=1, max_size=8).map(".".join)
uids = st.one_of(
    st.sampled_from(
        [
            VERIFICATION,
            CT_IMAGE_STORAGE,
            IMPLICIT_VR_LE,
            EXPLICIT_VR_LE,
            EXPLICIT_VR_BE,
            DICOM_APPLICATION_CONTEXT,
            UID_64,
            "0",
            "2.25.0",
        ]
    ),
    generated_uids,
)

#: Valid AE titles as an application gives them: no leading/trailing (insignificant) spaces.
ae_titles = st.text(alphabet=_AE_ALPHABET, min_size=1, max_size=16).map(str.strip).filter(bool)
#: Implementation version names: 1..16 default-repertoire characters without backslash.
version_names = st.text(alphabet=_AE_ALPHABET, min_size=1, max_size=16)


# --------------------------------------------------------------------------- item objects


def application_context_items() -> st.SearchStrategy[ApplicationContextItem]:
    return st.builds(ApplicationContextItem, uids)


def abstract_syntax_items() -> st.SearchStrategy[AbstractSyntaxItem]:
    return st.builds(AbstractSyntaxItem, uids)


def transfer_syntax_items(allow_empty: bool = False) -> st.SearchStrategy[TransferSyntaxItem]:
    names = st.one_of(uids, st.just("")) if allow_empty else uids
    return st.builds(TransferSyntaxItem, names)


@st.composite
def presentation_context_rq_items(draw: st.DrawFn) -> PresentationContextRQItem:
    transfer = draw(st.lists(uids, min_size=1, max_size=4))
    return PresentationContextRQItem.create(draw(context_ids), draw(uids), transfer)


@st.composite
def presentation_context_ac_items(draw: st.DrawFn) -> PresentationContextACItem:
    result = draw(st.integers(0, 4))
    if result == 0:
        return PresentationContextACItem.create(draw(context_ids), result, draw(uids))
    # Rejected contexts: the transfer syntax is not significant, often sent empty.
    transfer = draw(st.one_of(st.none(), uids))
    return PresentationContextACItem.create(draw(context_ids), result, transfer)


def maximum_length_items() -> st.SearchStrategy[MaximumLengthItem]:
    return st.builds(MaximumLengthItem, u32)


def implementation_class_uid_items() -> st.SearchStrategy[ImplementationClassUIDItem]:
    return st.builds(ImplementationClassUIDItem, uids)


def implementation_version_name_items() -> st.SearchStrategy[ImplementationVersionNameItem]:
    return st.builds(ImplementationVersionNameItem, version_names)


def asynchronous_operations_window_items() -> st.SearchStrategy[AsynchronousOperationsWindowItem]:
    return st.builds(AsynchronousOperationsWindowItem, u16, u16)


def role_selection_items() -> st.SearchStrategy[RoleSelectionItem]:
    return st.builds(RoleSelectionItem, uids, st.integers(0, 1), st.integers(0, 1))


def sop_class_extended_negotiation_items() -> st.SearchStrategy[SOPClassExtendedNegotiationItem]:
    return st.builds(SOPClassExtendedNegotiationItem, uids, st.binary(max_size=32))


def sop_class_common_extended_negotiation_items() -> st.SearchStrategy[
    SOPClassCommonExtendedNegotiationItem
]:
    return st.builds(SOPClassCommonExtendedNegotiationItem, uids, uids, st.lists(uids, max_size=4))


def user_identity_rq_items() -> st.SearchStrategy[UserIdentityRQItem]:
    return st.builds(
        UserIdentityRQItem,
        st.integers(1, 5),
        st.integers(0, 1),
        st.binary(max_size=64),
        st.binary(max_size=32),
    )


def user_identity_ac_items() -> st.SearchStrategy[UserIdentityACItem]:
    return st.builds(UserIdentityACItem, st.binary(max_size=64))


def unknown_user_information_items() -> st.SearchStrategy[UnknownItem]:
    types = byte.filter(lambda t: t not in KNOWN_USER_INFO_TYPES)
    return st.builds(UnknownItem, types, st.binary(max_size=32))


#: Every user-information sub-item kind, by name (for parametrised per-kind tests).
USER_INFO_SUB_ITEMS: dict[str, st.SearchStrategy[object]] = {
    "51H maximum length": maximum_length_items(),
    "52H implementation class UID": implementation_class_uid_items(),
    "53H asynchronous operations window": asynchronous_operations_window_items(),
    "54H role selection": role_selection_items(),
    "55H implementation version name": implementation_version_name_items(),
    "56H SOP class extended negotiation": sop_class_extended_negotiation_items(),
    "57H SOP class common extended negotiation": sop_class_common_extended_negotiation_items(),
    "58H user identity RQ": user_identity_rq_items(),
    "59H user identity AC": user_identity_ac_items(),
    "unknown sub-item": unknown_user_information_items(),
}

user_info_sub_items = st.one_of(*USER_INFO_SUB_ITEMS.values())


@st.composite
def user_information_items(draw: st.DrawFn) -> UserInformationItem:
    """A user information item: usually the mandatory 51H/52H first, then anything."""
    head = []
    if draw(st.booleans()):
        head = [draw(maximum_length_items()), draw(implementation_class_uid_items())]
    tail = draw(st.lists(user_info_sub_items, max_size=6))
    return UserInformationItem([*head, *tail])


# --------------------------------------------------------------------------- PDU objects


@st.composite
def a_associate_rq_objects(draw: st.DrawFn) -> AAssociateRQ:
    items: list[object] = [draw(application_context_items())]
    items += draw(st.lists(presentation_context_rq_items(), min_size=1, max_size=4))
    items.append(draw(user_information_items()))
    return AAssociateRQ(draw(ae_titles), draw(ae_titles), items)  # type: ignore[arg-type]


@st.composite
def a_associate_ac_objects(draw: st.DrawFn) -> AAssociateAC:
    items: list[object] = [draw(application_context_items())]
    items += draw(st.lists(presentation_context_ac_items(), min_size=0, max_size=4))
    items.append(draw(user_information_items()))
    return AAssociateAC(draw(ae_titles), draw(ae_titles), items)  # type: ignore[arg-type]


def a_associate_rj_objects() -> st.SearchStrategy[AAssociateRJ]:
    return st.builds(AAssociateRJ, st.integers(1, 2), st.integers(1, 3), st.integers(0, 7))


def presentation_data_values(
    control_headers: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[PresentationDataValue]:
    return st.builds(
        PresentationDataValue,
        context_ids,
        control_headers if control_headers is not None else st.integers(0, 3),
        st.binary(max_size=64),
    )


def p_data_tf_objects() -> st.SearchStrategy[PDataTF]:
    return st.builds(PDataTF, st.lists(presentation_data_values(), min_size=1, max_size=5))


def a_release_rq_objects() -> st.SearchStrategy[AReleaseRQ]:
    return st.just(AReleaseRQ())


def a_release_rp_objects() -> st.SearchStrategy[AReleaseRP]:
    return st.just(AReleaseRP())


def a_abort_objects() -> st.SearchStrategy[AAbort]:
    return st.builds(AAbort, st.sampled_from([0, 2]), st.integers(0, 6))


PDU_OBJECTS: dict[str, st.SearchStrategy[object]] = {
    "A-ASSOCIATE-RQ": a_associate_rq_objects(),
    "A-ASSOCIATE-AC": a_associate_ac_objects(),
    "A-ASSOCIATE-RJ": a_associate_rj_objects(),
    "P-DATA-TF": p_data_tf_objects(),
    "A-RELEASE-RQ": a_release_rq_objects(),
    "A-RELEASE-RP": a_release_rp_objects(),
    "A-ABORT": a_abort_objects(),
}

pdu_objects = st.one_of(*PDU_OBJECTS.values())


# --------------------------------------------------------------------------- raw wire bytes
# Built with struct, independently of the codec under test (PS3.8 Tables 9-11 .. 9-26).


def raw_item(item_type: int, reserved: int, value: bytes) -> bytes:
    """An item: type, reserved byte, 16-bit big-endian length, value."""
    return struct.pack(">BBH", item_type, reserved, len(value)) + value


def raw_pdu(pdu_type: int, reserved: int, body: bytes) -> bytes:
    """A PDU: type, reserved byte, 32-bit big-endian length, body."""
    return struct.pack(">BBL", pdu_type, reserved, len(body)) + body


def u16_prefixed(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


_PADDINGS = st.sampled_from([b"", b"\x00", b"\x00\x00", b" ", b"\x00 \x00"])


@st.composite
def wire_uids(draw: st.DrawFn) -> bytes:
    """UID bytes as peers send them: valid, NUL/space padded, or not a UID at all."""
    kind = draw(st.sampled_from(["valid", "padded", "garbage"]))
    if kind == "valid":
        return draw(uids).encode()
    if kind == "padded":
        return draw(uids).encode() + draw(_PADDINGS.filter(bool))
    return draw(st.binary(max_size=70))


wire_transfer_syntax_values = st.one_of(st.just(b""), wire_uids())


@st.composite
def wire_ae_titles(draw: st.DrawFn) -> bytes:
    """A 16-byte AE title field: standard, leading spaces, NUL padded, all spaces, anything."""
    title = draw(ae_titles).encode()
    kind = draw(st.sampled_from(["standard", "leading", "nul", "nul-then-spaces", "any"]))
    if kind == "standard":
        return title.ljust(16, b" ")
    if kind == "leading":
        spaces = draw(st.integers(1, 16 - len(title))) if len(title) < 16 else 0
        return (b" " * spaces + title).ljust(16, b" ")
    if kind == "nul":
        return title.ljust(16, b"\x00")
    if kind == "nul-then-spaces":
        return (title + b"\x00").ljust(16, b" ")[:16]
    return draw(st.binary(min_size=16, max_size=16))


@st.composite
def wire_syntax_sub_items(draw: st.DrawFn) -> bytes:
    """30H or 40H sub-item with a random reserved byte."""
    if draw(st.booleans()):
        return raw_item(0x30, draw(byte), draw(wire_uids()))
    return raw_item(0x40, draw(byte), draw(wire_transfer_syntax_values))


@st.composite
def wire_presentation_context_rq(draw: st.DrawFn) -> bytes:
    fixed = bytes((draw(byte), draw(byte), draw(byte), draw(byte)))
    subs = b"".join(draw(st.lists(wire_syntax_sub_items(), max_size=4)))
    return raw_item(0x20, draw(byte), fixed + subs)


@st.composite
def wire_presentation_context_ac(draw: st.DrawFn) -> bytes:
    fixed = bytes((draw(byte), draw(byte), draw(byte), draw(byte)))
    subs = b"".join(
        raw_item(0x40, draw(byte), draw(wire_transfer_syntax_values))
        for _ in range(draw(st.integers(0, 2)))
    )
    return raw_item(0x21, draw(byte), fixed + subs)


@st.composite
def wire_user_info_sub_items(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from([0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, None]))
    reserved = draw(byte)
    if kind == 0x51:
        return raw_item(0x51, reserved, struct.pack(">L", draw(u32)))
    if kind == 0x52:
        return raw_item(0x52, reserved, draw(wire_uids()))
    if kind == 0x53:
        return raw_item(0x53, reserved, struct.pack(">HH", draw(u16), draw(u16)))
    if kind == 0x54:
        value = u16_prefixed(draw(wire_uids())) + bytes((draw(byte), draw(byte)))
        return raw_item(0x54, reserved, value)
    if kind == 0x55:
        return raw_item(0x55, reserved, draw(st.binary(max_size=20)))
    if kind == 0x56:
        value = u16_prefixed(draw(wire_uids())) + draw(st.binary(max_size=16))
        return raw_item(0x56, reserved, value)
    if kind == 0x57:
        related = b"".join(u16_prefixed(u) for u in draw(st.lists(wire_uids(), max_size=3)))
        value = (
            u16_prefixed(draw(wire_uids()))
            + u16_prefixed(draw(wire_uids()))
            + u16_prefixed(related)
        )
        return raw_item(0x57, reserved, value)  # byte 1 is the sub-item version
    if kind == 0x58:
        value = (
            bytes((draw(byte), draw(byte)))
            + u16_prefixed(draw(st.binary(max_size=40)))
            + u16_prefixed(draw(st.binary(max_size=20)))
        )
        return raw_item(0x58, reserved, value)
    if kind == 0x59:
        return raw_item(0x59, reserved, u16_prefixed(draw(st.binary(max_size=40))))
    unknown = draw(byte.filter(lambda t: t not in KNOWN_USER_INFO_TYPES))
    return raw_item(unknown, reserved, draw(st.binary(max_size=24)))


@st.composite
def wire_user_information(draw: st.DrawFn) -> bytes:
    subs = b"".join(draw(st.lists(wire_user_info_sub_items(), max_size=8)))
    return raw_item(0x50, draw(byte), subs)


@st.composite
def wire_associate(draw: st.DrawFn, pdu_type: int) -> bytes:
    fixed = struct.pack(
        ">HH16s16s32s",
        draw(u16),  # protocol version (any value round-trips)
        draw(u16),  # reserved (bytes 9-10)
        draw(wire_ae_titles()),
        draw(wire_ae_titles()),
        draw(st.binary(min_size=32, max_size=32)),  # reserved (bytes 43-74)
    )
    context = wire_presentation_context_rq() if pdu_type == 1 else wire_presentation_context_ac()
    app_context = st.builds(raw_item, st.just(0x10), byte, wire_uids())
    items = draw(st.lists(st.one_of(app_context, context, wire_user_information()), max_size=6))
    return raw_pdu(pdu_type, draw(byte), fixed + b"".join(items))


def wire_associate_rq() -> st.SearchStrategy[bytes]:
    return wire_associate(1)


def wire_associate_ac() -> st.SearchStrategy[bytes]:
    return wire_associate(2)


@st.composite
def wire_four_byte_pdu(draw: st.DrawFn, pdu_type: int) -> bytes:
    """A-ASSOCIATE-RJ, A-RELEASE-RQ/RP, A-ABORT: 4 bytes after the header, all random."""
    return raw_pdu(pdu_type, draw(byte), draw(st.binary(min_size=4, max_size=4)))


@st.composite
def wire_pdvs(draw: st.DrawFn, control_headers: st.SearchStrategy[int] = byte) -> bytes:
    data = draw(st.binary(max_size=64))
    return struct.pack(">LBB", len(data) + 2, draw(byte), draw(control_headers)) + data


@st.composite
def wire_p_data_tf(draw: st.DrawFn) -> bytes:
    pdvs = draw(st.lists(wire_pdvs(), min_size=1, max_size=5))
    return raw_pdu(4, draw(byte), b"".join(pdvs))


WIRE_PDUS: dict[str, st.SearchStrategy[bytes]] = {
    "A-ASSOCIATE-RQ": wire_associate_rq(),
    "A-ASSOCIATE-AC": wire_associate_ac(),
    "A-ASSOCIATE-RJ": wire_four_byte_pdu(3),
    "P-DATA-TF": wire_p_data_tf(),
    "A-RELEASE-RQ": wire_four_byte_pdu(5),
    "A-RELEASE-RP": wire_four_byte_pdu(6),
    "A-ABORT": wire_four_byte_pdu(7),
}

wire_pdus = st.one_of(*WIRE_PDUS.values())


# --------------------------------------------------------------------------- fixed samples


def big_associate_rq(contexts: int = 128) -> AAssociateRQ:
    """An A-ASSOCIATE-RQ with ``contexts`` presentation contexts of 3 transfer syntaxes."""
    items: list[object] = [ApplicationContextItem(DICOM_APPLICATION_CONTEXT)]
    for n in range(contexts):
        items.append(
            PresentationContextRQItem.create(
                2 * n + 1,
                f"1.2.840.10008.5.1.4.1.1.{n + 1}",
                [EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE],
            )
        )
    items.append(
        UserInformationItem.create(
            16384,
            "2.25.668790844997978913503397512529915765",
            "DICOMWIRE_010",
            asynchronous_operations_window=(8, 8),
            role_selections=[RoleSelectionItem(CT_IMAGE_STORAGE, 1, 1)],
            user_identity=UserIdentityRQItem(2, 1, b"alice", b"secret"),
        )
    )
    return AAssociateRQ("STORE-SCP", "DICOMWIRE", items)  # type: ignore[arg-type]


def example_pdus() -> dict[str, bytes]:
    """Valid PDUs of every type, encoded, by name."""
    user_info = UserInformationItem.create(
        16384,
        "2.25.668790844997978913503397512529915765",
        "DICOMWIRE_010",
        asynchronous_operations_window=(0, 1),
        role_selections=[RoleSelectionItem(CT_IMAGE_STORAGE, 0, 1)],
        extended_negotiation=[SOPClassExtendedNegotiationItem(CT_IMAGE_STORAGE, b"\x01\x00")],
        common_extended_negotiation=[
            SOPClassCommonExtendedNegotiationItem(
                CT_IMAGE_STORAGE, "1.2.840.10008.4.2", ["1.2.840.10008.5.1.4.1.1.2.1"]
            )
        ],
        user_identity=UserIdentityRQItem(1, 0, b"bob"),
    )
    rq = AAssociateRQ(
        "ANY-SCP",
        "DICOMWIRE",
        [
            ApplicationContextItem(),
            PresentationContextRQItem.create(1, VERIFICATION, [IMPLICIT_VR_LE]),
            PresentationContextRQItem.create(3, CT_IMAGE_STORAGE, [EXPLICIT_VR_LE, IMPLICIT_VR_LE]),
            user_info,
        ],
    )
    ac = AAssociateAC(
        "ANY-SCP",
        "DICOMWIRE",
        [
            ApplicationContextItem(),
            PresentationContextACItem.create(1, 0, IMPLICIT_VR_LE),
            PresentationContextACItem.create(3, 3, None),
            UserInformationItem(
                [
                    MaximumLengthItem(32768),
                    ImplementationClassUIDItem("1.2.3.4"),
                    ImplementationVersionNameItem("PEER_1"),
                    UserIdentityACItem(b"token"),
                    UnknownItem(0x7F, b"\x01\x02"),
                ]
            ),
        ],
    )
    p_data = PDataTF(
        [
            PresentationDataValue(1, 0x03, bytes(range(40))),
            PresentationDataValue(3, 0x00, b"\xaa" * 100),
            PresentationDataValue(3, 0x02, b""),
        ]
    )
    return {
        "A-ASSOCIATE-RQ": rq.encode(),
        "A-ASSOCIATE-RQ-128": big_associate_rq().encode(),
        "A-ASSOCIATE-AC": ac.encode(),
        "A-ASSOCIATE-RJ": AAssociateRJ(1, 1, 7).encode(),
        "P-DATA-TF": p_data.encode(),
        "A-RELEASE-RQ": AReleaseRQ().encode(),
        "A-RELEASE-RP": AReleaseRP().encode(),
        "A-ABORT": AAbort(2, 6).encode(),
    }
