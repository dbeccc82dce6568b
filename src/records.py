"""The base of the protocol's data classes: ``__repr__``, ``__eq__`` and ``__hash__`` once.

The PDUs and items of PS3.8 §9.3, the DIMSE primitives of PS3.7 §9-10 and the Upper
Layer machine's effects are ``@dataclass`` classes. For each class, ``dataclasses``
writes the source of ``__init__``, ``__repr__``, ``__eq__`` (and for a frozen class
``__setattr__``, ``__delattr__``, ``__hash__``) and compiles it with ``exec`` when the
module is imported: about 0.4 ms a class, a third of ``dicomwire echo``'s start-up
(docs/performance.md, issue 18). Declared ``@dataclass(slots=True, repr=False,
eq=False)`` on :class:`Record`, a class has only its ``__init__`` generated; the other
methods are these, written once over the same fields, with the same results as the
generated ones: ``Name(field=value, ...)`` for the fields with ``repr=True``, equal when
the classes are the same and the ``compare=True`` fields are equal (a tuple comparison),
unhashable unless frozen (:class:`FrozenRecord`: the hash of those fields).
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

__all__ = ["FrozenRecord", "Record"]

#: Per class: the names its ``__repr__`` shows and the names its ``__eq__`` compares.
_SHOWN: dict[type, tuple[str, ...]] = {}
_COMPARED: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    """Fill both tables for ``cls`` from its dataclass fields (none for a plain class)."""
    own = fields(cls) if is_dataclass(cls) else ()
    _SHOWN[cls] = tuple(f.name for f in own if f.repr)
    _COMPARED[cls] = compared = tuple(f.name for f in own if f.compare)
    return compared


def _compared(record: Record) -> tuple[Any, ...]:
    names = _COMPARED.get(type(record))
    if names is None:
        names = _names(type(record))
    return tuple([getattr(record, name) for name in names])


class Record:
    """A data class's ``__repr__`` and ``__eq__``, generic over its fields."""

    __slots__ = ()

    def __repr__(self) -> str:
        cls = type(self)
        if cls not in _SHOWN:
            _names(cls)
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _SHOWN[cls])
        return f"{cls.__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _compared(self) == _compared(other)


class FrozenRecord(Record):
    """A frozen data class's: hashable, by the fields it compares."""

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(_compared(self))
