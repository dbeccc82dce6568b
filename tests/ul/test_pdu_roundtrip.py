"""Round-trip properties of the PDU codec (PS3.8 §9.3, Annex D; PS3.7 Annex D.3.3).

(a) ``decode(obj.encode()) == obj`` for objects built from valid application values;
(b) ``decode(x).encode() == x`` for wire bytes built independently of the codec, with every
    reserved field random, unusual AE title padding, padded UIDs and unknown sub-items.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomwire.ul.identifiers import WireStr
from dicomwire.ul.pdu import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AbstractSyntaxItem,
    ApplicationContextItem,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PresentationContextACItem,
    PresentationContextRQItem,
    PresentationDataValue,
    SOPClassCommonExtendedNegotiationItem,
    TransferSyntaxItem,
    UnknownItem,
    UserInformationItem,
    decode,
)

from . import strategies as s

BOUNDED = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rq_with(*items: object) -> AAssociateRQ:
    return AAssociateRQ("CALLED", "CALLING", list(items))  # type: ignore[arg-type]


def _ac_with(*items: object) -> AAssociateAC:
    return AAssociateAC("CALLED", "CALLING", list(items))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- (a) whole PDUs


@pytest.mark.parametrize("name", list(s.PDU_OBJECTS))
def test_decode_of_encode_is_identity_for_every_pdu(name: str) -> None:
    @BOUNDED
    @given(s.PDU_OBJECTS[name])
    def check(pdu: object) -> None:
        raw = pdu.encode()  # type: ignore[attr-defined]
        decoded = decode(raw)
        assert type(decoded) is type(pdu)
        assert decoded == pdu
        assert decoded.encode() == raw

    check()


@BOUNDED
@given(s.pdu_objects)
def test_decode_accepts_bytearray_and_memoryview(pdu: object) -> None:
    raw = pdu.encode()  # type: ignore[attr-defined]
    assert decode(bytearray(raw)) == pdu
    assert decode(memoryview(raw)) == pdu


def test_header_fields_of_encoded_pdus() -> None:
    """The encoder writes PS3.8 §9.3.1's header: type, reserved 0, 32-bit length."""
    for raw in s.example_pdus().values():
        pdu_type, reserved, length = struct.unpack_from(">BBL", raw)
        assert pdu_type in range(1, 8)
        assert reserved == 0
        assert length == len(raw) - 6


@BOUNDED
@given(s.a_associate_rq_objects())
def test_associate_rq_layout_and_accessors(rq: AAssociateRQ) -> None:
    raw = rq.encode()
    assert raw[0] == 0x01
    version, reserved, called, calling, reserved_42 = struct.unpack_from(">HH16s16s32s", raw, 6)
    assert (version, reserved, reserved_42) == (1, 0, bytes(32))
    assert called == rq.called_ae_title.encode().ljust(16, b" ")
    assert calling == rq.calling_ae_title.encode().ljust(16, b" ")
    decoded = decode(raw)
    assert isinstance(decoded, AAssociateRQ)
    assert decoded.application_context_name == rq.application_context_name
    assert decoded.presentation_contexts == rq.presentation_contexts
    assert [pc.abstract_syntax for pc in decoded.presentation_contexts] == [
        pc.abstract_syntax for pc in rq.presentation_contexts
    ]
    assert decoded.user_information == rq.user_information


def test_associate_ae_titles_are_wire_str_without_insignificant_spaces() -> None:
    raw = AAssociateRQ("  SCP ", "A B", [ApplicationContextItem()]).encode()
    assert raw[10:42] == b"SCP".ljust(16) + b"A B".ljust(16)
    decoded = decode(raw)
    assert isinstance(decoded.called_ae_title, WireStr)  # type: ignore[union-attr]
    assert decoded.called_ae_title == "SCP"  # type: ignore[union-attr]
    assert decoded.calling_ae_title == "A B"  # type: ignore[union-attr]
    assert decoded.called_ae_title.wire == b"SCP".ljust(16)  # type: ignore[union-attr]


# --------------------------------------------------------------------------- (a) items


def _single_item(pdu: AAssociateRQ | AAssociateAC) -> object:
    decoded = decode(pdu.encode())
    assert isinstance(decoded, type(pdu))
    assert len(decoded.variable_items) == 1
    return decoded.variable_items[0]


@BOUNDED
@given(s.application_context_items())
def test_application_context_item_10h(item: ApplicationContextItem) -> None:
    raw = item.encode()
    assert raw[0] == 0x10
    assert raw[4:] == item.name.encode()
    assert _single_item(_rq_with(item)) == item
    assert _single_item(_ac_with(item)) == item


@BOUNDED
@given(s.presentation_context_rq_items())
def test_presentation_context_rq_item_20h(item: PresentationContextRQItem) -> None:
    raw = item.encode()
    assert raw[0] == 0x20
    assert raw[4] == item.context_id
    assert raw[8] == 0x30  # the abstract syntax sub-item comes first
    decoded = _single_item(_rq_with(item))
    assert decoded == item
    assert isinstance(decoded, PresentationContextRQItem)
    assert decoded.abstract_syntax == item.abstract_syntax
    assert decoded.transfer_syntaxes == item.transfer_syntaxes


@BOUNDED
@given(s.presentation_context_ac_items())
def test_presentation_context_ac_item_21h(item: PresentationContextACItem) -> None:
    raw = item.encode()
    assert raw[0] == 0x21
    assert (raw[4], raw[6]) == (item.context_id, item.result)
    decoded = _single_item(_ac_with(item))
    assert decoded == item
    assert isinstance(decoded, PresentationContextACItem)
    assert decoded.transfer_syntax == item.transfer_syntax


@BOUNDED
@given(s.abstract_syntax_items(), st.lists(s.transfer_syntax_items(), min_size=1, max_size=3))
def test_abstract_30h_and_transfer_40h_sub_items(
    abstract: AbstractSyntaxItem, transfer: list[TransferSyntaxItem]
) -> None:
    assert abstract.encode() == b"\x30\x00" + struct.pack(">H", len(abstract.name)) + (
        abstract.name.encode()
    )
    for ts in transfer:
        assert ts.encode()[:1] == b"\x40"
    context = PresentationContextRQItem(1, [abstract, *transfer])
    decoded = _single_item(_rq_with(context))
    assert isinstance(decoded, PresentationContextRQItem)
    assert decoded.sub_items == [abstract, *transfer]


def test_empty_transfer_syntax_of_a_rejected_context_round_trips() -> None:
    item = PresentationContextACItem.create(5, 3, None)
    assert item.encode() == b"\x21\x00\x00\x08\x05\x00\x03\x00\x40\x00\x00\x00"
    decoded = _single_item(_ac_with(item))
    assert decoded == item


@pytest.mark.parametrize("kind", list(s.USER_INFO_SUB_ITEMS))
def test_every_user_information_sub_item(kind: str) -> None:
    @BOUNDED
    @given(s.USER_INFO_SUB_ITEMS[kind])
    def check(sub: object) -> None:
        raw_sub = sub.encode()  # type: ignore[attr-defined]
        assert raw_sub[0] == sub.item_type  # type: ignore[attr-defined]
        assert struct.unpack_from(">H", raw_sub, 2)[0] == len(raw_sub) - 4
        for build in (_rq_with, _ac_with):
            pdu = build(UserInformationItem([sub]))  # type: ignore[list-item]
            raw = pdu.encode()
            assert raw.endswith(raw_sub)
            decoded = _single_item(pdu)
            assert isinstance(decoded, UserInformationItem)
            assert decoded.sub_items == [sub]
            assert type(decoded.sub_items[0]) is type(sub)

    check()


@BOUNDED
@given(s.user_information_items())
def test_user_information_item_50h_keeps_wire_order(item: UserInformationItem) -> None:
    decoded = _single_item(_rq_with(item))
    assert isinstance(decoded, UserInformationItem)
    assert decoded == item
    assert [type(x) for x in decoded.sub_items] == [type(x) for x in item.sub_items]
    assert decoded.maximum_length == item.maximum_length
    assert decoded.implementation_class_uid == item.implementation_class_uid
    assert decoded.implementation_version_name == item.implementation_version_name
    assert decoded.role_selections == item.role_selections
    assert decoded.extended_negotiation == item.extended_negotiation
    assert decoded.common_extended_negotiation == item.common_extended_negotiation
    assert decoded.user_identity == item.user_identity
    assert decoded.user_identity_response == item.user_identity_response
    assert decoded.unknown_items == item.unknown_items


def test_common_extended_negotiation_57h_layout_and_related_list() -> None:
    item = SOPClassCommonExtendedNegotiationItem(
        "1.2.3", "4.5", ["6.7", "8.9.10"], sub_item_version=0
    )
    related = b"\x00\x036.7\x00\x068.9.10"
    expected = (
        b"\x57\x00"
        + struct.pack(">H", (2 + 5) + (2 + 3) + 2 + len(related))
        + b"\x00\x051.2.3\x00\x034.5"
        + struct.pack(">H", len(related))
        + related
    )
    assert item.encode() == expected
    decoded = _single_item(_rq_with(UserInformationItem([item])))
    assert isinstance(decoded, UserInformationItem)
    assert decoded.common_extended_negotiation == [item]
    assert decoded.common_extended_negotiation[0].related_general_sop_class_uids == [
        "6.7",
        "8.9.10",
    ]


def test_user_information_create_orders_sub_items_as_annex_d() -> None:
    item = s.big_associate_rq().user_information
    assert item is not None
    kinds = [sub.item_type for sub in item.sub_items]
    assert kinds == [0x51, 0x52, 0x53, 0x54, 0x55, 0x58]


# --------------------------------------------------------------------------- (a) P-DATA-TF


@pytest.mark.parametrize("control_header", [0x00, 0x01, 0x02, 0x03])
def test_p_data_tf_every_control_header_combination(control_header: int) -> None:
    pdv = PresentationDataValue(7, control_header, b"\x01\x02\x03")
    raw = PDataTF([pdv]).encode()
    assert (
        raw
        == b"\x04\x00\x00\x00\x00\x09"
        + b"\x00\x00\x00\x05\x07"
        + bytes([control_header])
        + b"\x01\x02\x03"
    )
    decoded = decode(raw)
    assert isinstance(decoded, PDataTF)
    (got,) = decoded.pdvs
    assert got == pdv
    assert got.is_command == bool(control_header & 1)
    assert got.is_last == bool(control_header & 2)


def test_p_data_tf_empty_pdv_data_is_allowed() -> None:
    raw = PDataTF([PresentationDataValue(1, 2, b"")]).encode()
    assert raw == b"\x04\x00\x00\x00\x00\x06\x00\x00\x00\x02\x01\x02"
    decoded = decode(raw)
    assert isinstance(decoded, PDataTF)
    assert bytes(decoded.pdvs[0].data) == b""


@BOUNDED
@given(s.p_data_tf_objects())
def test_p_data_tf_multiple_pdvs_are_views_into_the_pdu(pdu: PDataTF) -> None:
    raw = bytearray(pdu.encode())
    decoded = decode(raw)
    assert isinstance(decoded, PDataTF)
    assert decoded == pdu
    assert b"".join(bytes(x) for x in pdu.encode_parts()) == bytes(raw)
    for pdv in decoded.pdvs:
        assert isinstance(pdv.data, memoryview)
        assert pdv.data.obj is raw  # no copy of the payload


def test_pdv_equality_is_by_value_and_unhashable() -> None:
    a = PresentationDataValue(1, 3, b"abc")
    assert a == PresentationDataValue(1, 3, memoryview(b"abc"))
    assert a != PresentationDataValue(1, 2, b"abc")
    assert a != PresentationDataValue(3, 3, b"abc")
    assert a != PresentationDataValue(1, 3, b"abd")
    with pytest.raises(TypeError):
        hash(a)


# --------------------------------------------------------------------------- (a) short PDUs


@pytest.mark.parametrize(
    ("pdu", "raw"),
    [
        (AAssociateRJ(1, 2, 2), b"\x03\x00\x00\x00\x00\x04\x00\x01\x02\x02"),
        (AAssociateRJ(2, 3, 1), b"\x03\x00\x00\x00\x00\x04\x00\x02\x03\x01"),
        (AReleaseRQ(), b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"),
        (AReleaseRP(), b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"),
        (AAbort(0, 0), b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"),
        (AAbort(2, 6), b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x06"),
    ],
)
def test_fixed_size_pdus_match_the_standard_layout(pdu: object, raw: bytes) -> None:
    assert pdu.encode() == raw  # type: ignore[attr-defined]
    assert decode(raw) == pdu


# --------------------------------------------------------------------------- (b) wire bytes


@pytest.mark.parametrize("name", list(s.WIRE_PDUS))
def test_encode_of_decode_is_identity_for_wire_bytes(name: str) -> None:
    @BOUNDED
    @given(s.WIRE_PDUS[name])
    def check(raw: bytes) -> None:
        decoded = decode(raw)
        assert decoded.encode() == raw
        # and again, from the re-encoded bytes, the same object
        assert decode(decoded.encode()) == decoded

    check()


@BOUNDED
@given(s.wire_associate_rq())
def test_wire_associate_fields_land_in_named_reserved_fields(raw: bytes) -> None:
    decoded = decode(raw)
    assert isinstance(decoded, AAssociateRQ)
    assert decoded.reserved == raw[1]
    assert decoded.protocol_version == struct.unpack_from(">H", raw, 6)[0]
    assert decoded.reserved_8 == struct.unpack_from(">H", raw, 8)[0]
    assert decoded.reserved_42 == raw[42:74]
    assert decoded.called_ae_title.wire == raw[10:26]  # type: ignore[attr-defined]
    assert decoded.calling_ae_title.wire == raw[26:42]  # type: ignore[attr-defined]
    # the significant text: NUL padding and leading/trailing spaces removed
    assert decoded.called_ae_title == raw[10:26].rstrip(b"\x00").decode("latin-1").strip(" ")


@BOUNDED
@given(s.wire_four_byte_pdu(3))
def test_wire_associate_rj_fields(raw: bytes) -> None:
    decoded = decode(raw)
    assert isinstance(decoded, AAssociateRJ)
    assert (decoded.reserved, decoded.reserved_6) == (raw[1], raw[6])
    assert (decoded.result, decoded.source, decoded.reason) == (raw[7], raw[8], raw[9])


@BOUNDED
@given(s.wire_four_byte_pdu(7))
def test_wire_abort_fields(raw: bytes) -> None:
    decoded = decode(raw)
    assert isinstance(decoded, AAbort)
    assert (decoded.reserved, decoded.reserved_6, decoded.reserved_7) == (raw[1], raw[6], raw[7])
    assert (decoded.source, decoded.reason) == (raw[8], raw[9])


@BOUNDED
@given(st.sampled_from([5, 6]).flatmap(s.wire_four_byte_pdu))
def test_wire_release_fields(raw: bytes) -> None:
    decoded = decode(raw)
    assert isinstance(decoded, AReleaseRQ if raw[0] == 5 else AReleaseRP)
    assert decoded.reserved == raw[1]
    assert decoded.reserved_6 == struct.unpack_from(">L", raw, 6)[0]


@BOUNDED
@given(s.wire_p_data_tf())
def test_wire_p_data_tf_pdv_fields(raw: bytes) -> None:
    decoded = decode(raw)
    assert isinstance(decoded, PDataTF)
    assert decoded.reserved == raw[1]
    pos = 6
    for pdv in decoded.pdvs:
        length, context_id, control = struct.unpack_from(">LBB", raw, pos)
        assert (pdv.context_id, pdv.control_header) == (context_id, control)
        assert bytes(pdv.data) == raw[pos + 6 : pos + 4 + length]
        pos += 4 + length
    assert pos == len(raw)


@pytest.mark.parametrize(
    "field",
    [
        b"\x00" * 16,
        b" " * 16,
        b"  LEADING      ",
        b"NULPAD\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        b"\xff\xfe\\\x01" * 4,
    ],
    ids=["all-NUL", "all-spaces", "leading-spaces", "NUL-padded", "non-ascii"],
)
def test_unusual_ae_title_fields_are_kept_byte_for_byte(field: bytes) -> None:
    field = field.ljust(16, b" ")
    body = struct.pack(">HH16s16s32s", 1, 0, field, b"CALLING".ljust(16), bytes(32))
    raw = s.raw_pdu(1, 0, body)
    decoded = decode(raw)
    assert decoded.called_ae_title.wire == field  # type: ignore[union-attr]
    assert decoded.encode() == raw


def test_padded_uids_keep_their_padding_but_read_without_it() -> None:
    abstract = s.raw_item(0x30, 0, b"1.2.840.10008.1.1\x00")
    transfer = s.raw_item(0x40, 0, b"1.2.840.10008.1.2 ")
    context = s.raw_item(0x20, 0, b"\x01\x00\x00\x00" + abstract + transfer)
    app = s.raw_item(0x10, 0, b"1.2.840.10008.3.1.1.1\x00")
    body = struct.pack(">HH16s16s32s", 1, 0, b"A".ljust(16), b"B".ljust(16), bytes(32))
    raw = s.raw_pdu(1, 0, body + app + context)
    decoded = decode(raw)
    assert isinstance(decoded, AAssociateRQ)
    assert decoded.application_context_name == "1.2.840.10008.3.1.1.1"
    (pc,) = decoded.presentation_contexts
    assert pc.abstract_syntax == "1.2.840.10008.1.1"
    assert pc.transfer_syntaxes == ["1.2.840.10008.1.2"]
    assert decoded.encode() == raw


def test_unknown_user_information_sub_items_are_kept_whole() -> None:
    unknown = s.raw_item(0xA5, 0x17, b"\x00\x01 anything \xff")
    user_info = s.raw_item(0x50, 0, s.raw_item(0x51, 0, b"\x00\x00\x40\x00") + unknown)
    body = struct.pack(">HH16s16s32s", 1, 0, b"A".ljust(16), b"B".ljust(16), bytes(32))
    raw = s.raw_pdu(2, 0, body + user_info)
    decoded = decode(raw)
    assert isinstance(decoded, AAssociateAC)
    info = decoded.user_information
    assert info is not None
    assert info.maximum_length == 0x4000
    assert info.unknown_items == [UnknownItem(0xA5, b"\x00\x01 anything \xff", reserved=0x17)]
    assert decoded.encode() == raw


@pytest.mark.parametrize("value", [b"\x00", b" ", b"\x00\x00"])
def test_transfer_syntax_of_only_padding_round_trips(value: bytes) -> None:
    transfer = s.raw_item(0x40, 0, value)
    context = s.raw_item(0x21, 0, b"\x01\x00\x03\x00" + transfer)
    body = struct.pack(">HH16s16s32s", 1, 0, b"A".ljust(16), b"B".ljust(16), bytes(32))
    raw = s.raw_pdu(2, 0, body + context)
    decoded = decode(raw)
    assert decoded.encode() == raw


def test_wire_str_escape_hatch_sends_invalid_values_verbatim() -> None:
    bad_uid = WireStr.from_wire(b"1.02..x")
    bad_ae = WireStr.from_wire(b"BAD\\AE")
    pdu = AAssociateRQ(
        bad_ae,
        "CALLING",
        [ApplicationContextItem(bad_uid), PresentationContextRQItem.create(1, bad_uid, [""])],
    )
    raw = pdu.encode()
    assert raw[10:26] == b"BAD\\AE".ljust(16)
    assert b"\x10\x00\x00\x071.02..x" in raw
    assert b"\x30\x00\x00\x071.02..x" in raw
    assert decode(raw).encode() == raw
