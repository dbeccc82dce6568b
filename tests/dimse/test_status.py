"""DIMSE status codes: categories and meanings of PS3.7 Annex C and the PS3.4 service tables."""

from __future__ import annotations

import pytest

from dicomwire.dimse.status import Category, Status, category_of, meaning_of

S = Category.SUCCESS
W = Category.WARNING
F = Category.FAILURE
C = Category.CANCEL
P = Category.PENDING

#: code -> (category, meaning) as PS3.7 Annex C / PS3.4 define them.
EXPECTED = {
    0x0000: (S, "Success"),
    0x0001: (W, "Requested optional attributes are not supported"),  # N-GET (PS3.7 10.1.2)
    0x0107: (W, "Attribute list error"),  # PS3.7 C.4.2
    0x0116: (W, "Attribute value out of range"),  # PS3.7 C.4.3
    0xB000: (W, "Coercion of data elements / sub-operations complete with failures"),
    0xB007: (W, "Data set does not match SOP Class"),  # storage warning (PS3.4 B.2.3)
    0xA700: (F, "Refused: out of resources"),
    0xA701: (F, "Refused: out of resources - unable to calculate number of matches"),
    0xA900: (F, "Error: data set does not match SOP Class"),
    0xC000: (F, "Error: cannot understand"),
    0xC123: (F, "Error: cannot understand"),  # any Cxxx (PS3.4 B.2.3)
    0x0110: (F, "Processing failure"),
    0x0112: (F, "No such SOP Instance"),
    0x0211: (F, "Unrecognized operation"),
    0x0115: (F, "Invalid argument value"),
    0xFE00: (C, "Cancel"),
    0xFF00: (P, "Pending"),
    0xFF01: (P, "Pending: optional keys not supported"),
}


@pytest.mark.parametrize("code", sorted(EXPECTED), ids=lambda c: f"{c:04X}")
def test_category_and_meaning(code: int) -> None:
    category, meaning = EXPECTED[code]
    status = Status(code)
    assert status.category is category
    assert category_of(code) is category
    assert status.meaning == meaning == meaning_of(code)
    assert status.is_success == (category is S)
    assert status.is_pending == (category is P)
    assert status.is_failure == (category is F)
    assert str(status) == f"0x{code:04X} ({meaning})"
    assert repr(status) == f"Status(0x{code:04X} {category.value}: {meaning})"


@pytest.mark.parametrize("code", sorted(EXPECTED), ids=lambda c: f"{c:04X}")
def test_status_is_its_int(code: int) -> None:
    status = Status(code)
    assert status == code
    assert code == status
    assert int(status) == code
    assert isinstance(status, int)
    assert hash(status) == hash(code)
    assert {code: "x"}[status] == "x"
    assert status in {code}
    assert status != code + 1
    assert Status(status) == status


def test_ranges_fall_back_to_their_meaning() -> None:
    assert Status(0xA7FE).meaning == "Refused: out of resources"
    assert Status(0xA7FE).category is F
    assert Status(0xA9AB).meaning == "Error: data set does not match SOP Class"
    assert Status(0xCFFF).meaning == "Error: cannot understand"
    assert Status(0xB123).meaning == "Warning"
    assert Status(0xB123).category is W
    assert Status(0xAB00).meaning == "Failure"
    assert Status(0x0299).meaning == "failure status"


@pytest.mark.parametrize("bad", [-1, 0x10000, 1 << 32, -0x8000])
def test_out_of_range_values_raise(bad: int) -> None:
    with pytest.raises(ValueError, match="not a 16-bit value"):
        Status(bad)


@pytest.mark.parametrize("bad", ["0", b"\x00\x00", None, [0]])
def test_non_numbers_raise(bad: object) -> None:
    with pytest.raises(TypeError):
        Status(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0.5, 1.5, 65534.5])
def test_non_integers_raise(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        Status(bad)  # type: ignore[arg-type]
