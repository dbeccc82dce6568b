"""AE titles (PS3.5 §6.2, PS3.8 §9.3.2) and UIDs (PS3.5 §9.1) as the Upper Layer carries them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dicomwire
from dicomwire.ul.identifiers import (
    AE_TITLE_LENGTH,
    UID_MAX_LENGTH,
    WireStr,
    decode_ae_title,
    decode_uid,
    encode_ae_title,
    encode_uid,
    is_valid_uid,
    normalize_ae_title,
    validate_ae_title,
    validate_uid,
)

from . import strategies as s

BOUNDED = settings(max_examples=100, deadline=None)


# --------------------------------------------------------------------------- AE titles


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("STORESCP", "STORESCP"),
        ("  PADDED  ", "PADDED"),
        ("A B", "A B"),
        ("X" * 16, "X" * 16),
        ("  " + "X" * 16 + "   ", "X" * 16),  # insignificant spaces do not count
        ("~!@#$%^&*()_+{}|", "~!@#$%^&*()_+{}|"),
        ("a", "a"),
    ],
)
def test_validate_ae_title_accepts_and_strips(value: str, expected: str) -> None:
    assert validate_ae_title(value) == expected
    assert normalize_ae_title(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        " " * 16,
        "X" * 17,
        "BACK\\SLASH",
        "BEL\x07",
        "TAB\tX",
        "LF\n",
        "DEL\x7f",
        "É",
        "日本",
    ],
)
def test_validate_ae_title_rejects(value: str) -> None:
    with pytest.raises(dicomwire.ValidationError) as info:
        validate_ae_title(value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, dicomwire.DicomWireError)


@pytest.mark.parametrize("value", [None, b"AE", 17])
def test_validate_ae_title_rejects_non_str(value: object) -> None:
    with pytest.raises(dicomwire.ValidationError):
        validate_ae_title(value)  # type: ignore[arg-type]


def test_ae_title_error_names_the_offending_character() -> None:
    with pytest.raises(dicomwire.ValidationError, match="position 3"):
        validate_ae_title("ABC\\D")


@BOUNDED
@given(s.ae_titles)
def test_encode_then_decode_ae_title(title: str) -> None:
    field = encode_ae_title(title)
    assert len(field) == AE_TITLE_LENGTH
    assert field == title.encode().ljust(16, b" ")
    decoded = decode_ae_title(field)
    assert isinstance(decoded, WireStr)
    assert decoded == title
    assert decoded.wire == field
    assert encode_ae_title(decoded) == field


def test_encode_ae_title_strips_insignificant_spaces() -> None:
    assert encode_ae_title("  SCP ") == b"SCP".ljust(16)


@pytest.mark.parametrize("value", ["", "   ", "X" * 17, "A\\B", "\x00"])
def test_encode_ae_title_validates_plain_str(value: str) -> None:
    with pytest.raises(dicomwire.ValidationError):
        encode_ae_title(value)


def test_decode_ae_title_keeps_odd_fields() -> None:
    leading = b"   LEAD".ljust(16)
    decoded = decode_ae_title(leading)
    assert decoded == "LEAD"
    assert decoded.wire == leading
    assert encode_ae_title(decoded) == leading
    nul = b"NUL".ljust(16, b"\x00")
    assert encode_ae_title(decode_ae_title(nul)) == nul
    spaces = b" " * 16
    assert decode_ae_title(spaces) == ""
    assert encode_ae_title(decode_ae_title(spaces)) == spaces


def test_encode_ae_title_pads_a_short_wire_str_and_refuses_a_long_one() -> None:
    assert encode_ae_title(WireStr.from_wire(b"A\\B")) == b"A\\B".ljust(16)
    with pytest.raises(dicomwire.ValidationError):
        encode_ae_title(WireStr.from_wire(b"X" * 17))


# --------------------------------------------------------------------------- UIDs


@pytest.mark.parametrize(
    "value",
    ["0", "1", "1.2", "1.2.840.10008.1.2.1", "2.25.0", "1.0.0", "10.20.30", s.UID_64],
)
def test_valid_uids(value: str) -> None:
    assert is_valid_uid(value)
    assert validate_uid(value) == value
    assert encode_uid(value) == value.encode()


@pytest.mark.parametrize(
    "value",
    [
        "",
        "01",
        "1.02",
        "1.2.00",
        "1..2",
        ".1",
        "1.",
        "1.2.a",
        "a.1",
        "1 .2",
        "1.2\x00",
        "1.2 ",
        "+1.2",
        "1.-2",
        "1.２",  # a non-ASCII digit  # noqa: RUF001
        "1\n",
        s.UID_64 + "1",
        "1." + "2" * 63,
    ],
)
def test_invalid_uids(value: str) -> None:
    assert not is_valid_uid(value)
    with pytest.raises(dicomwire.ValidationError):
        validate_uid(value)
    with pytest.raises(dicomwire.ValidationError):
        encode_uid(value)


def test_uid_error_message_names_what() -> None:
    with pytest.raises(dicomwire.ValidationError, match="abstract syntax"):
        encode_uid("1.02", "abstract syntax")
    with pytest.raises(dicomwire.ValidationError, match="at most 64"):
        validate_uid("1" * 65)


@pytest.mark.parametrize("value", [None, b"1.2", 12])
def test_validate_uid_rejects_non_str(value: object) -> None:
    with pytest.raises(dicomwire.ValidationError):
        validate_uid(value)  # type: ignore[arg-type]


@BOUNDED
@given(s.uids)
def test_generated_uids_are_valid(uid: str) -> None:
    assert len(uid) <= UID_MAX_LENGTH
    assert is_valid_uid(uid)
    assert validate_uid(uid) == uid


@BOUNDED
@given(s.uids, st.sampled_from([b"", b"\x00", b" ", b"\x00\x00", b"\x00 "]))
def test_decode_uid_strips_trailing_padding_and_keeps_bytes(uid: str, pad: bytes) -> None:
    raw = uid.encode() + pad
    decoded = decode_uid(raw)
    assert isinstance(decoded, WireStr)
    assert decoded == uid
    assert decoded.wire == raw
    assert encode_uid(decoded) == raw


def test_decode_uid_keeps_non_uid_bytes() -> None:
    decoded = decode_uid(b"\xff1.02\x00")
    assert decoded == "\xff1.02"
    assert encode_uid(decoded) == b"\xff1.02\x00"
    assert decode_uid(b"") == ""
    assert decode_uid(b"\x00").wire == b"\x00"


# --------------------------------------------------------------------------- WireStr


def test_wire_str_is_a_str_equal_to_its_text() -> None:
    value = WireStr.from_wire(b"1.2.3\x00")
    assert isinstance(value, str)
    assert value == "1.2.3\x00"
    assert value.wire == b"1.2.3\x00"
    assert hash(value) == hash("1.2.3\x00")
    text = WireStr.from_wire(b"SCP   ", "SCP")
    assert text == "SCP"
    assert text != "SCP   "
    assert text.wire == b"SCP   "
    assert {text: 1}["SCP"] == 1


def test_wire_str_from_wire_copies_its_bytes() -> None:
    raw = bytearray(b"1.2.3")
    value = WireStr.from_wire(raw)
    raw[0] = ord("9")
    assert value.wire == b"1.2.3"
    assert type(value.wire) is bytes


def test_wire_str_from_wire_decodes_latin_1() -> None:
    assert WireStr.from_wire(b"\xe9") == "é"


def test_wire_str_bypasses_validation() -> None:
    bad = WireStr.from_wire(b"1.02.3")
    with pytest.raises(dicomwire.ValidationError):
        encode_uid("1.02.3")
    assert encode_uid(bad) == b"1.02.3"
    bad_ae = WireStr.from_wire(b"   ")
    with pytest.raises(dicomwire.ValidationError):
        encode_ae_title("   ")
    assert encode_ae_title(bad_ae) == b" " * 16
