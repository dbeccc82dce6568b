"""Walk the top-level data elements of an encoded data set (PS3.5 §7.1).

One scanner for every place that reads elements without pydicom: the Part 10 file meta
(:mod:`.part10`), the header the storage SCP checks each received data set by
(:mod:`.storage.header`), and indexes of stored files. It reads each element's tag, VR and
value length and skips the value by its length, so a walk costs the number of elements,
not the size of the data set, and nothing is decoded or copied.

Little endian only, Explicit VR (§7.1.2: a 2-byte length after the VR, or for OB, SQ, UN
and the other long VRs two reserved bytes and a 4-byte length) or Implicit VR (§7.1.3: a
4-byte length, no VR). Item and delimitation tags (group FFFE) have no VR in either
(§7.5). A value of undefined length (FFFFFFFFH: a sequence or an encapsulated value) ends
by a delimiter, not by a length; a walk that meets one yields it and stops.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from ..errors import DataSetError

__all__ = ["LONG_VRS", "UNDEFINED_LENGTH", "Element", "iter_elements"]

#: The VRs whose Explicit VR element header has a 4-byte length (PS3.5 Table 7.1-1).
LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
#: The value length of a sequence or an encapsulated value that ends by a delimiter.
UNDEFINED_LENGTH = 0xFFFFFFFF

#: (tag, VR or None, offset of the value in the data, value length).
Element = tuple[int, bytes | None, int, int]

_IMPLICIT_HEADER = struct.Struct("<HHL")  # group, element, 32-bit length
_EXPLICIT_HEADER = struct.Struct("<HH2sH")  # group, element, VR, 16-bit length
_UINT32 = struct.Struct("<L")


def iter_elements(
    data: bytes,
    *,
    implicit: bool,
    stop_after_tag: int | None = None,
    partial: bool = False,
) -> Iterator[Element]:
    """Yield ``(tag, vr, value_start, length)`` for each top-level element of ``data``.

    ``tag`` is ``group << 16 | element``; ``vr`` is the two VR bytes, or None in Implicit
    VR and for item and delimitation tags; the value is ``data[value_start:value_start +
    length]``. The walk ends at the end of ``data``, before the first element whose tag is
    greater than ``stop_after_tag``, or after an element of :data:`UNDEFINED_LENGTH`.

    ``data`` holds whole elements unless ``partial`` is set: an element whose header or
    value runs past the end raises :class:`~dicomwire.errors.DataSetError`. With
    ``partial`` (``data`` is the first bytes of a longer data set), a header cut short ends
    the walk quietly and an element whose value is cut short is yielded last, so the caller
    can tell a value it lacks from one that is cut (``value_start + length > len(data)``).

    ``data`` must be bytes (a VR sliced from it is then bytes, hashed at C speed). The SCP
    walks every received data set's header with it: one ``unpack_from`` per element.
    """
    position, end = 0, len(data)
    stop = 0xFFFFFFFF if stop_after_tag is None else stop_after_tag
    vr: bytes | None = None
    while position + 8 <= end:
        start = position + 8
        if implicit:
            group, number, length = _IMPLICIT_HEADER.unpack_from(data, position)
            tag = group << 16 | number
            if tag > stop:
                return
        else:
            group, number, vr, length = _EXPLICIT_HEADER.unpack_from(data, position)
            tag = group << 16 | number
            if tag > stop:
                return
            if group == 0xFFFE:  # an item or delimiter: a 4-byte length, no VR (§7.5)
                vr = None
                (length,) = _UINT32.unpack_from(data, position + 4)
            elif vr in LONG_VRS:
                start += 4
                if start > end:
                    break
                (length,) = _UINT32.unpack_from(data, position + 8)
        if length == UNDEFINED_LENGTH:
            yield tag, vr, start, length
            return
        following = start + length
        if following > end:
            if not partial:
                raise DataSetError(
                    f"element ({group:04X},{number:04X}) at byte {position}: its value of "
                    f"{length} bytes runs past the end of the data"
                )
            yield tag, vr, start, length
            return
        position = following
        yield tag, vr, start, length
    if position < end and not partial:
        raise DataSetError(f"element header at byte {position} is cut short")
