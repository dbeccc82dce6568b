"""DCMTK's ``-k`` key syntax (findscu, movescu, getscu): query keys into an identifier.

``-k PatientName=DOE*`` and ``-k 0010,0010=DOE*`` and ``-k (0010,0010)=DOE*`` set a key;
without ``=`` the key is asked for with an empty value (a return key, PS3.4 C.2.2.1.1).
A path reaches into sequences: ``-k (0040,0100)[0].Modality=CT`` or
``-k ScheduledProcedureStepSequence[0].ScheduledStationAETitle=CT1`` (item 0 when no index
is given). A bare sequence key asks for the sequence empty (universal sequence matching).
Values of numeric VRs are converted; ``\\`` separates multiple values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ...errors import ValidationError

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = ["parse_key", "parse_keys"]

_STEP = re.compile(
    r"""^(?:\(?(?P<group>[0-9A-Fa-f]{4}),(?P<element>[0-9A-Fa-f]{4})\)?|(?P<keyword>[A-Za-z][A-Za-z0-9]*))
        (?:\[(?P<item>\d+)\])?$""",
    re.VERBOSE,
)
_INTEGER_VRS = frozenset(("US", "SS", "UL", "SL", "UV", "SV", "AT"))
_FLOAT_VRS = frozenset(("FL", "FD"))


def parse_keys(specs: Iterable[str], base: Dataset | None = None) -> Dataset:
    """An identifier from ``-k`` specs, applied in order on ``base`` (a new Dataset)."""
    from pydicom import Dataset

    identifier = base if base is not None else Dataset()
    for spec in specs:
        parse_key(spec, identifier)
    return identifier


def parse_key(spec: str, identifier: Dataset) -> None:
    """Apply one ``-k`` spec to ``identifier`` (:class:`ValidationError` when malformed)."""
    from pydicom import Dataset
    from pydicom.dataelem import DataElement
    from pydicom.sequence import Sequence

    path, has_value, value = spec.partition("=")
    path = path.strip()
    if not path:
        raise ValidationError(f"-k {spec!r}: no key before '='")
    steps = path.split(".")
    target = identifier
    for position, step in enumerate(steps):
        tag, vr, item = _step(step, spec)
        last = position == len(steps) - 1
        if not last:
            if vr != "SQ":
                raise ValidationError(f"-k {spec!r}: {step} is not a sequence")
            if tag not in target or target[tag].VR != "SQ":
                target[tag] = DataElement(tag, "SQ", Sequence())
            items = target[tag].value
            while len(items) <= (item or 0):
                items.append(Dataset())
            target = items[item or 0]
            continue
        if vr == "SQ":
            if has_value and value:
                raise ValidationError(f"-k {spec!r}: a sequence takes no value")
            count = 0 if item is None else item + 1  # [n]: n + 1 empty items
            target[tag] = DataElement(tag, "SQ", Sequence([Dataset() for _ in range(count)]))
            continue
        target[tag] = DataElement(tag, vr, _convert(value if has_value else "", vr, spec))


def _step(step: str, spec: str) -> tuple[int, str, int | None]:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    match = _STEP.match(step.strip())
    if match is None:
        raise ValidationError(
            f"-k {spec!r}: {step!r} is neither a keyword nor (gggg,eeee) with an optional [n]"
        )
    if match["keyword"]:
        found = tag_for_keyword(match["keyword"])
        if found is None:
            raise ValidationError(f"-k {spec!r}: unknown keyword {match['keyword']!r}")
        tag = int(found)
    else:
        tag = int(match["group"] + match["element"], 16)
    try:
        vr = str(dictionary_VR(tag))
    except KeyError:
        raise ValidationError(
            f"-k {spec!r}: ({tag >> 16:04X},{tag & 0xFFFF:04X}) is not in the data dictionary"
        ) from None
    if " or " in vr:  # e.g. "US or SS": the first is what a query means
        vr = vr.split(" or ")[0]
    item = int(match["item"]) if match["item"] is not None else None
    return tag, vr, item


def _convert(text: str, vr: str, spec: str) -> Any:
    if text == "":
        return None
    values = text.split("\\")
    try:
        if vr in _INTEGER_VRS:
            converted: list[Any] = [int(v, 0) for v in values]
        elif vr in _FLOAT_VRS:
            converted = [float(v) for v in values]
        else:
            return text
    except ValueError:
        raise ValidationError(f"-k {spec!r}: {text!r} is not a number ({vr})") from None
    return converted[0] if len(converted) == 1 else converted
