"""Malformed PDUs raise PDUError with the offset at fault; invalid application values raise
ValidationError on encode (PS3.8 §9.3, PS3.5 §6.2 and §9.1)."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dicomwire
from dicomwire import ValidationError
from dicomwire.ul import pdu as pdu_module
from dicomwire.ul.framer import PDUFramer
from dicomwire.ul.identifiers import WireStr
from dicomwire.ul.pdu import (
    AAssociateRQ,
    AbortReason,
    AbstractSyntaxItem,
    ApplicationContextItem,
    AsynchronousOperationsWindowItem,
    ImplementationClassUIDItem,
    ImplementationVersionNameItem,
    MaximumLengthItem,
    PDUError,
    PresentationContextRQItem,
    RoleSelectionItem,
    SOPClassCommonExtendedNegotiationItem,
    SOPClassExtendedNegotiationItem,
    TransferSyntaxItem,
    decode,
)

from . import strategies as s
from .strategies import raw_item, raw_pdu

EXAMPLES = s.example_pdus()
SMALL_EXAMPLES = {k: v for k, v in EXAMPLES.items() if k != "A-ASSOCIATE-RQ-128"}
ITEMS_START = 6 + 68  # first variable item of an A-ASSOCIATE PDU

_FIXED = struct.pack(">HH16s16s32s", 1, 0, b"CALLED".ljust(16), b"CALLING".ljust(16), bytes(32))


def associate(pdu_type: int, *items: bytes) -> bytes:
    return raw_pdu(pdu_type, 0, _FIXED + b"".join(items))


def rq(*items: bytes) -> bytes:
    return associate(1, *items)


def ac(*items: bytes) -> bytes:
    return associate(2, *items)


def user_info(*subs: bytes) -> bytes:
    return raw_item(0x50, 0, b"".join(subs))


def pdv(data: bytes, context_id: int = 1, control: int = 3) -> bytes:
    return struct.pack(">LBB", len(data) + 2, context_id, control) + data


APP = raw_item(0x10, 0, b"1.2.840.10008.3.1.1.1")
ABSTRACT = raw_item(0x30, 0, b"1.2.840.10008.1.1")
TRANSFER = raw_item(0x40, 0, b"1.2.840.10008.1.2")
PC_RQ = raw_item(0x20, 0, b"\x01\x00\x00\x00" + ABSTRACT + TRANSFER)
PC_AC = raw_item(0x21, 0, b"\x01\x00\x00\x00" + TRANSFER)


def assert_pdu_error(raw: bytes, offset: int, abort_reason: int | None = None) -> PDUError:
    """decode(raw) raises PDUError at ``offset`` (and with the A-ABORT reason, if given)."""
    with pytest.raises(PDUError) as info:
        decode(raw)
    assert info.value.offset == offset, str(info.value)
    assert f"(at byte {offset})" in str(info.value)
    if abort_reason is not None:
        assert info.value.abort_reason == abort_reason, str(info.value)
    return info.value


def assert_only_pdu_error_or_faithful(data: bytes) -> None:
    """decode(data) raises PDUError (with an offset) or re-encodes to ``data`` exactly."""
    try:
        pdu = decode(data)
    except PDUError as exc:
        assert exc.offset is not None
        assert 0 <= exc.offset <= len(data)
    else:
        assert pdu.encode() == data


# --------------------------------------------------------------------------- sanity


def test_examples_are_valid() -> None:
    for raw in EXAMPLES.values():
        assert decode(raw).encode() == raw
    assert len(decode(EXAMPLES["A-ASSOCIATE-RQ-128"]).presentation_contexts) == 128  # type: ignore[union-attr]


# --------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_strict_prefix_raises_pdu_error(name: str) -> None:
    raw = EXAMPLES[name]
    for cut in range(len(raw)):
        with pytest.raises(PDUError) as info:
            decode(raw[:cut])
        assert info.value.offset == cut


@pytest.mark.parametrize("name", list(SMALL_EXAMPLES))
def test_truncated_body_with_consistent_length_never_escapes(name: str) -> None:
    """Cut the body and fix the header's length: nothing but PDUError, and what still decodes
    (a cut at an item boundary) re-encodes to the same bytes."""
    raw = SMALL_EXAMPLES[name]
    errors = 0
    for cut in range(6, len(raw)):
        truncated = raw_pdu(raw[0], raw[1], raw[6:cut])
        try:
            pdu = decode(truncated)
        except PDUError as exc:
            errors += 1
            assert exc.offset is not None
            assert 0 <= exc.offset <= len(truncated)
        else:
            assert pdu.encode() == truncated
    assert errors > 0


# --------------------------------------------------------------------------- random damage

_mutation = st.tuples(
    st.sampled_from(["replace", "insert", "delete"]),
    st.floats(0, 1, exclude_max=True),
    st.integers(0, 255),
)
_bases = st.one_of(st.sampled_from(list(EXAMPLES.values())), s.wire_pdus)


def _mutate(raw: bytes, mutations: list[tuple[str, float, int]]) -> bytes:
    data = bytearray(raw)
    for kind, where, value in mutations:
        pos = int(where * (len(data) + (kind == "insert")))
        if kind == "replace" and data:
            data[pos] = value
        elif kind == "insert":
            data.insert(pos, value)
        elif kind == "delete" and data:
            del data[pos]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bases, st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_pdus_raise_only_pdu_error(
    raw: bytes, mutations: list[tuple[str, float, int]]
) -> None:
    damaged = _mutate(raw, mutations)
    assert_only_pdu_error_or_faithful(damaged)
    # The framer sees the same bytes as a stream: it too raises nothing but PDUError.
    with contextlib.suppress(PDUError):
        PDUFramer().feed(damaged)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_pdu_error(data: bytes) -> None:
    assert_only_pdu_error_or_faithful(data)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([1, 2, 3, 4, 5, 6, 7]), st.binary(max_size=120))
def test_random_bodies_behind_a_valid_header_raise_only_pdu_error(
    pdu_type: int, body: bytes
) -> None:
    assert_only_pdu_error_or_faithful(raw_pdu(pdu_type, 0, body))


# --------------------------------------------------------------------------- specific cases


@pytest.mark.parametrize("pdu_type", [0x08, 0x00, 0xFF, 0x10, 0x50])
def test_unknown_pdu_type(pdu_type: int) -> None:
    error = assert_pdu_error(raw_pdu(pdu_type, 0, bytes(4)), 0, AbortReason.UNRECOGNIZED_PDU)
    assert f"0x{pdu_type:02X}" in str(error)


@pytest.mark.parametrize("pdu_type", [0x08, 0x00, 0xFF])
def test_unknown_pdu_type_is_rejected_by_the_framer_from_the_header(pdu_type: int) -> None:
    framer = PDUFramer()
    assert framer.feed(bytes([pdu_type, 0, 0, 0, 0])) == []
    with pytest.raises(PDUError) as info:
        framer.feed(b"\x04")
    assert info.value.offset == 0
    assert info.value.abort_reason == AbortReason.UNRECOGNIZED_PDU


def test_trailing_bytes_after_a_pdu() -> None:
    for raw in SMALL_EXAMPLES.values():
        assert_pdu_error(raw + b"\x00", len(raw))
        assert_pdu_error(raw + EXAMPLES["A-RELEASE-RQ"], len(raw))


@pytest.mark.parametrize("pdu_type", [0x03, 0x05, 0x06, 0x07])
@pytest.mark.parametrize("length", [0, 3, 5, 8])
def test_four_byte_pdus_with_another_length(pdu_type: int, length: int) -> None:
    error = assert_pdu_error(raw_pdu(pdu_type, 0, bytes(length)), 2)
    assert "expected 4" in str(error)


@pytest.mark.parametrize("pdu_type", [0x01, 0x02])
@pytest.mark.parametrize("length", [0, 1, 67])
def test_associate_shorter_than_68_bytes(pdu_type: int, length: int) -> None:
    assert_pdu_error(raw_pdu(pdu_type, 0, _FIXED[:length]), 2)


def test_associate_of_exactly_68_bytes_is_valid() -> None:
    pdu = decode(raw_pdu(1, 0, _FIXED))
    assert isinstance(pdu, AAssociateRQ)
    assert pdu.variable_items == []


def test_empty_p_data_tf() -> None:
    assert_pdu_error(raw_pdu(0x04, 0, b""), 6)


@pytest.mark.parametrize("length", [0, 1])
def test_pdv_length_below_2(length: int) -> None:
    body = struct.pack(">LBB", length, 1, 3)
    assert_pdu_error(raw_pdu(0x04, 0, body), 6, AbortReason.INVALID_PDU_PARAMETER_VALUE)
    # the same as the second PDV: the offset points at that PDV
    first = pdv(b"abc")
    assert_pdu_error(raw_pdu(0x04, 0, first + body), 6 + len(first))


def test_pdv_overrunning_the_p_data_tf() -> None:
    body = struct.pack(">LBB", 13, 1, 3) + b"0123456789"  # one byte missing
    assert_pdu_error(raw_pdu(0x04, 0, body), 6)
    first = pdv(b"")
    assert_pdu_error(raw_pdu(0x04, 0, first + body), 6 + len(first))
    huge = struct.pack(">LBB", 0xFFFFFFFF, 1, 3) + b"x"
    assert_pdu_error(raw_pdu(0x04, 0, huge), 6)


@pytest.mark.parametrize("tail", [b"\x00", b"\x00\x00\x00", b"\x00\x00\x00\x05\x01"])
def test_truncated_pdv_header(tail: bytes) -> None:
    first = pdv(b"data")
    assert_pdu_error(raw_pdu(0x04, 0, first + tail), 6 + len(first))


def test_pdu_level_item_overrunning_the_pdu() -> None:
    overrun = struct.pack(">BBH", 0x10, 0, 22) + b"1.2.840.10008.3.1.1.1"  # 21 bytes
    assert_pdu_error(rq(overrun), ITEMS_START)
    assert_pdu_error(rq(APP, PC_RQ, overrun), ITEMS_START + len(APP) + len(PC_RQ))
    assert_pdu_error(ac(APP, overrun), ITEMS_START + len(APP))


def test_truncated_item_header_at_pdu_level() -> None:
    assert_pdu_error(rq(APP, b"\x50\x00\x00"), ITEMS_START + len(APP))


def test_sub_item_overrunning_its_presentation_context() -> None:
    # the context says 4 + len(ABSTRACT) + 4 bytes but its transfer sub-item claims more
    bad_transfer = struct.pack(">BBH", 0x40, 0, 17) + b"1.2.840.10008.1.2"[:16]
    context = raw_item(0x20, 0, b"\x01\x00\x00\x00" + ABSTRACT + bad_transfer)
    offset = ITEMS_START + len(APP) + 4 + 4 + len(ABSTRACT)
    assert_pdu_error(rq(APP, context), offset)


def test_sub_item_overrunning_the_user_information_item() -> None:
    max_length = raw_item(0x51, 0, b"\x00\x00\x40\x00")
    bad = struct.pack(">BBH", 0x52, 0, 10) + b"1.2.3"
    assert_pdu_error(rq(APP, user_info(max_length, bad)), ITEMS_START + len(APP) + 4 + 8)


def test_presentation_context_shorter_than_4_bytes() -> None:
    for body in (b"", b"\x01", b"\x01\x00\x00"):
        assert_pdu_error(rq(APP, raw_item(0x20, 0, body)), ITEMS_START + len(APP))
        assert_pdu_error(ac(APP, raw_item(0x21, 0, body)), ITEMS_START + len(APP))


@pytest.mark.parametrize(
    ("builder", "item"),
    [
        (rq, PC_AC),  # 21H in an RQ
        (ac, PC_RQ),  # 20H in an AC
        (rq, ABSTRACT),  # 30H at PDU level
        (ac, TRANSFER),  # 40H at PDU level
        (rq, raw_item(0x51, 0, b"\x00\x00\x40\x00")),  # 51H at PDU level
    ],
    ids=["21H-in-RQ", "20H-in-AC", "30H-in-RQ", "40H-in-AC", "51H-in-RQ"],
)
def test_item_types_not_allowed_at_pdu_level(builder: object, item: bytes) -> None:
    raw = builder(APP, item)  # type: ignore[operator]
    # a known item in the wrong place is an unexpected PDU parameter (reason 5)
    error = assert_pdu_error(raw, ITEMS_START + len(APP), 5)
    assert f"0x{item[0]:02X}" in str(error)


@pytest.mark.parametrize(
    ("builder", "item"),
    [(rq, raw_item(0x00, 0, b"")), (ac, raw_item(0xFF, 0, b"xyz")), (rq, raw_item(0x99, 7, b"ab"))],
    ids=["00H-in-RQ", "FFH-in-AC", "99H-in-RQ"],
)
def test_items_of_unknown_type_are_skipped_and_kept(builder: object, item: bytes) -> None:
    """PS3.8 §9.3.1: items of unrecognized types are ignored; the codec keeps their bytes."""
    raw = builder(APP, item)  # type: ignore[operator]
    decoded = decode(raw)
    unknown = [i for i in decoded.variable_items if isinstance(i, pdu_module.UnknownItem)]  # type: ignore[union-attr]
    assert [(u.item_type, u.reserved, u.value) for u in unknown] == [(item[0], item[1], item[4:])]
    assert decoded.encode() == raw


@pytest.mark.parametrize(
    "sub",
    [
        raw_item(0x51, 0, b"\x00\x00\x40\x00"),
        raw_item(0x10, 0, b"1.2.840.10008.3.1.1.1"),
        raw_item(0x20, 0, b"\x01\x00\x00\x00"),
        raw_item(0x50, 0, b""),
    ],
    ids=["51H", "10H", "20H", "50H"],
)
def test_item_types_not_allowed_in_a_presentation_context_rq(sub: bytes) -> None:
    context = raw_item(0x20, 0, b"\x01\x00\x00\x00" + ABSTRACT + sub)
    offset = ITEMS_START + len(APP) + 8 + len(ABSTRACT)
    assert_pdu_error(rq(APP, context), offset, AbortReason.UNEXPECTED_PDU_PARAMETER)


@pytest.mark.parametrize(
    "sub", [ABSTRACT, raw_item(0x51, 0, b"\x00\x00\x40\x00")], ids=["30H", "51H"]
)
def test_item_types_not_allowed_in_a_presentation_context_ac(sub: bytes) -> None:
    context = raw_item(0x21, 0, b"\x01\x00\x00\x00" + TRANSFER + sub)
    offset = ITEMS_START + len(APP) + 8 + len(TRANSFER)
    assert_pdu_error(ac(APP, context), offset, AbortReason.UNEXPECTED_PDU_PARAMETER)


@pytest.mark.parametrize(
    "sub",
    [
        raw_item(0x51, 0, b"\x00\x40\x00"),  # 51H length 3
        raw_item(0x51, 0, b"\x00\x00\x40\x00\x00"),  # 51H length 5
        raw_item(0x51, 0, b""),
        raw_item(0x53, 0, b"\x00\x01\x00\x01\x00"),  # 53H length 5
        raw_item(0x53, 0, b"\x00\x01\x00"),  # 53H length 3
        raw_item(0x54, 0, b"\x00\x031.2\x01\x01\x00"),  # 54H: one byte too many
        raw_item(0x54, 0, b"\x00\x031.2\x01"),  # 54H: SCP role missing
        raw_item(0x58, 0, b"\x01\x00\x00\x01"),  # 58H shorter than 6
        raw_item(0x58, 0, b"\x01\x00\x00\x01a\x00\x00\xff"),  # 58H: a byte after secondary
        raw_item(0x59, 0, b"\x00\x01ab"),  # 59H: a byte after the response
        raw_item(0x57, 0, b"\x00\x011\x00\x012\x00\x00\xff"),  # 57H: a byte after the list
    ],
    ids=[
        "51H-len3",
        "51H-len5",
        "51H-len0",
        "53H-len5",
        "53H-len3",
        "54H-long",
        "54H-short",
        "58H-short",
        "58H-long",
        "59H-long",
        "57H-long",
    ],
)
def test_user_information_sub_items_with_the_wrong_length(sub: bytes) -> None:
    max_length = raw_item(0x51, 0, b"\x00\x00\x40\x00")
    subs = [max_length, sub] if sub[0] != 0x51 else [sub]
    offset = ITEMS_START + len(APP) + 4 + (len(max_length) if sub[0] != 0x51 else 0)
    error = assert_pdu_error(
        rq(APP, user_info(*subs)), offset, AbortReason.INVALID_PDU_PARAMETER_VALUE
    )
    assert "length" in str(error)


@pytest.mark.parametrize(
    ("value", "field_offset"),
    [
        (b"\x00\x09" + b"1.2", 0),  # 54H UID length overruns the sub-item
        (b"\x00", 0),  # 54H length field truncated
    ],
)
def test_role_selection_uid_length_errors(value: bytes, field_offset: int) -> None:
    offset = ITEMS_START + len(APP) + 4 + 4 + field_offset
    assert_pdu_error(rq(APP, user_info(raw_item(0x54, 0, value))), offset)


def test_common_extended_negotiation_internal_length_errors() -> None:
    base = ITEMS_START + len(APP) + 4 + 4  # first byte of the 57H value
    # the service class UID length overruns
    assert_pdu_error(rq(APP, user_info(raw_item(0x57, 0, b"\x00\x011\x00\x092"))), base + 3)
    # the related general SOP class list length overruns
    related_overrun = b"\x00\x011\x00\x012\x00\x05\x00\x013"
    assert_pdu_error(rq(APP, user_info(raw_item(0x57, 0, related_overrun))), base + 6)
    # a UID inside the related list overruns the list
    inner_overrun = b"\x00\x011\x00\x012\x00\x03\x00\x023"
    assert_pdu_error(rq(APP, user_info(raw_item(0x57, 0, inner_overrun))), base + 8)


def test_user_identity_field_overruns() -> None:
    base = ITEMS_START + len(APP) + 4 + 4
    primary_overrun = b"\x02\x01\x00\x09abc\x00\x00"
    assert_pdu_error(rq(APP, user_info(raw_item(0x58, 0, primary_overrun))), base + 2)
    secondary_overrun = b"\x02\x01\x00\x01a\x00\x09xy"
    assert_pdu_error(rq(APP, user_info(raw_item(0x58, 0, secondary_overrun))), base + 5)
    assert_pdu_error(rq(APP, user_info(raw_item(0x59, 0, b"\x00\x05ab"))), base)


def test_extended_negotiation_uid_overrun() -> None:
    base = ITEMS_START + len(APP) + 4 + 4
    assert_pdu_error(rq(APP, user_info(raw_item(0x56, 0, b"\x00\x101.2"))), base)


def test_pdu_error_is_a_dicomwire_error() -> None:
    with pytest.raises(dicomwire.DicomWireError):
        decode(b"\x09\x00\x00\x00\x00\x00")
    error = PDUError("message")
    assert error.offset is None
    assert str(error) == "message"
    assert error.detail == "message"
    assert error.abort_reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    # The structured reason is the standard's A-ABORT reason (errors module convention).
    assert error.reason == error.abort_reason
    assert isinstance(error, dicomwire.errors.RemoteProtocolError)


# --------------------------------------------------------------------------- encode validation

BAD_AE_TITLES = ["", "    ", " " * 20, "A" * 17, "BAD\\AE", "CTRL\x07", "NEW\nLINE", "TAB\t", "É"]
BAD_UIDS = [
    "",
    "1.02.3",
    "01.2",
    "1..2",
    ".1.2",
    "1.2.",
    "1.2.a",
    "1.2.840.10008.1.2.x",
    "1.2 ",
    "1.2\x00",
    "1." + "1" * 63,  # 65 characters
    "1.2.-3",
]


@pytest.mark.parametrize("title", BAD_AE_TITLES)
@pytest.mark.parametrize("which", ["called", "calling"])
def test_invalid_ae_titles_raise_validation_error(title: str, which: str) -> None:
    titles = {"called": "GOOD", "calling": "GOOD", which: title}
    pdu = AAssociateRQ(titles["called"], titles["calling"], [ApplicationContextItem()])
    with pytest.raises(dicomwire.ValidationError):
        pdu.encode()


def _uid_users(uid: str) -> list[object]:
    return [
        ApplicationContextItem(uid),
        AbstractSyntaxItem(uid),
        TransferSyntaxItem(uid) if uid else TransferSyntaxItem("1.02"),
        ImplementationClassUIDItem(uid),
        RoleSelectionItem(uid, 1, 0),
        SOPClassExtendedNegotiationItem(uid, b""),
        SOPClassCommonExtendedNegotiationItem(uid, "1.2.3"),
        SOPClassCommonExtendedNegotiationItem("1.2.3", uid),
        SOPClassCommonExtendedNegotiationItem("1.2.3", "1.2.3", ["1.2", uid]),
        PresentationContextRQItem.create(1, uid, ["1.2.840.10008.1.2"]),
        AAssociateRQ("A", "B", [ApplicationContextItem(uid)]),
    ]


@pytest.mark.parametrize("uid", BAD_UIDS)
def test_invalid_uids_raise_validation_error(uid: str) -> None:
    for user in _uid_users(uid):
        with pytest.raises(dicomwire.ValidationError):
            user.encode()  # type: ignore[attr-defined]


def test_the_same_items_encode_with_a_valid_uid() -> None:
    for user in _uid_users("1.2.840.10008.1.1"):
        assert user.encode()  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["", "A" * 17, "BACK\\SLASH", "CTRL\x01", "É"])
def test_invalid_implementation_version_name(name: str) -> None:
    with pytest.raises(dicomwire.ValidationError):
        ImplementationVersionNameItem(name).encode()


@pytest.mark.parametrize(
    "item",
    [
        MaximumLengthItem(-1),
        MaximumLengthItem(1 << 32),
        AsynchronousOperationsWindowItem(1 << 16, 0),
        AsynchronousOperationsWindowItem(0, -1),
    ],
)
def test_out_of_range_numbers_raise_validation_error(item: object) -> None:
    with pytest.raises(dicomwire.ValidationError):
        item.encode()  # type: ignore[attr-defined]
    assert issubclass(dicomwire.ValidationError, ValueError)


def test_wrong_reserved_42_size_raises_validation_error() -> None:
    with pytest.raises(dicomwire.ValidationError):
        AAssociateRQ("A", "B", [], reserved_42=bytes(31)).encode()


def test_wire_str_escape_hatch_lets_invalid_values_through() -> None:
    bad_uid = WireStr.from_wire(b"1.02.3")
    bad_ae = WireStr.from_wire(b"BAD\\AE\x07")
    bad_name = WireStr.from_wire(b"X" * 20)
    with pytest.raises(dicomwire.ValidationError):
        AbstractSyntaxItem("1.02.3").encode()
    assert AbstractSyntaxItem(bad_uid).encode() == b"\x30\x00\x00\x061.02.3"
    assert ImplementationClassUIDItem(bad_uid).encode() == b"\x52\x00\x00\x061.02.3"
    assert ImplementationVersionNameItem(bad_name).encode() == b"\x55\x00\x00\x14" + b"X" * 20
    raw = AAssociateRQ(
        bad_ae, WireStr.from_wire(b" " * 16), [ApplicationContextItem(bad_uid)]
    ).encode()
    assert raw[10:42] == b"BAD\\AE\x07".ljust(16) + b" " * 16
    assert raw[74:] == b"\x10\x00\x00\x061.02.3"


def test_wire_str_ae_title_longer_than_16_bytes_is_refused() -> None:
    with pytest.raises(dicomwire.ValidationError):
        AAssociateRQ(WireStr.from_wire(b"X" * 17), "B", []).encode()


# --------------------------------------------------------------------------- encode ranges


@pytest.mark.parametrize(
    "build",
    [
        lambda: pdu_module.PresentationContextRQItem.create(257, "1.2.3", ["1.2.840.10008.1.2"]),
        lambda: pdu_module.AAbort(258, 1),
        lambda: pdu_module.AAssociateRJ(1, 1, 300),
        lambda: pdu_module.RoleSelectionItem("1.2.3", 2, 256),
        lambda: pdu_module.PDataTF([pdu_module.PresentationDataValue(256, 3, b"\x00\x00")]),
        lambda: pdu_module.PDataTF([]),
        lambda: pdu_module.AReleaseRQ(reserved_6=1 << 32),
        lambda: pdu_module.UserIdentityRQItem(1, 0, b"x" * 70000),
        lambda: pdu_module.AAssociateRQ("A", "B", [], protocol_version=1 << 16),
    ],
    ids=[
        "context-id-257",
        "abort-source-258",
        "reject-reason-300",
        "role-256",
        "pdv-context-256",
        "empty-p-data",
        "release-reserved-2**32",
        "identity-70000-bytes",
        "protocol-version-2**16",
    ],
)
def test_values_that_do_not_fit_raise_validation_error(build: Callable[[], object]) -> None:
    with pytest.raises(ValidationError):
        build().encode()  # type: ignore[attr-defined]
