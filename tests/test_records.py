"""records.Record: the protocol classes' ``__repr__``/``__eq__``/``__hash__``, written once.

They must give what ``@dataclass`` would have generated (the classes were plain
dataclasses before, issue 18's start-up work): each is checked against a twin declared
with the standard decorator, and on the real PDUs, primitives and machine effects.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from dicomwire.dimse.primitives import CEchoRQ, CEchoRSP
from dicomwire.records import FrozenRecord, Record
from dicomwire.ul.machine import ARTIMStart, ARTIMStop, ReleaseIndication, SendPDU
from dicomwire.ul.pdu import AAbort, AReleaseRP, AReleaseRQ, TransferSyntaxItem


@dataclass(slots=True)
class Generated:
    kind: ClassVar[int] = 7
    name: str
    items: list[int] = field(default_factory=list)
    hidden: int = field(default=0, repr=False, compare=False)


@dataclass(slots=True, repr=False, eq=False)
class Written(Record):
    kind: ClassVar[int] = 7
    name: str
    items: list[int] = field(default_factory=list)
    hidden: int = field(default=0, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class GeneratedFrozen:
    name: str
    number: int = 0


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class WrittenFrozen(FrozenRecord):
    name: str
    number: int = 0


def test_repr_is_the_dataclass_one() -> None:
    assert repr(Written("a", [1], hidden=3)) == repr(Generated("a", [1], hidden=3)).replace(
        "Generated", "Written"
    )
    assert repr(WrittenFrozen("b", 2)) == "WrittenFrozen(name='b', number=2)"
    assert repr(SendPDU(AAbort(2, 1))) == (
        "SendPDU(pdu=AAbort(source=2, reason=1, reserved=0, reserved_6=0, reserved_7=0))"
    )
    assert repr(ARTIMStart()) == "ARTIMStart()"


def test_equality_is_by_class_and_compared_fields() -> None:
    assert Written("a", [1]) == Written("a", [1], hidden=9)  # hidden: compare=False
    assert Written("a", [1]) != Written("a", [2])
    assert Written("a") != Generated("a")  # another class: never equal
    assert AReleaseRQ() == AReleaseRQ()
    assert AReleaseRQ() != AReleaseRP()  # same fields, another PDU
    assert CEchoRQ(message_id=3) == CEchoRQ(message_id=3)
    assert CEchoRQ(message_id=3) != CEchoRQ(message_id=4)
    assert CEchoRSP(message_id=3) != CEchoRQ(message_id=3)
    assert TransferSyntaxItem("1.2") == TransferSyntaxItem("1.2")
    assert ARTIMStart() == ARTIMStart()
    assert ARTIMStart() != ARTIMStop()


def test_hash_as_the_dataclass_decides() -> None:
    with pytest.raises(TypeError):
        hash(Written("a"))  # eq without frozen: unhashable, as dataclasses make it
    with pytest.raises(TypeError):
        hash(AAbort())
    assert hash(WrittenFrozen("b", 2)) == hash(GeneratedFrozen("b", 2))
    assert {ARTIMStart(), ARTIMStart(), ReleaseIndication(), ReleaseIndication(True)} == {
        ARTIMStart(),
        ReleaseIndication(False),
        ReleaseIndication(True),
    }


def test_frozen_stays_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ReleaseIndication().collision = True  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ARTIMStart().anything = 1  # type: ignore[attr-defined]
