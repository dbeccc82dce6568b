"""Whether an encoded data set ends where its last element ends (PS3.5 §7.1, §7.5).

A data set sent over an association (PS3.7 §6.3.1) is a series of whole data elements. One
cut short - a truncated file sent as is, a writer that died - ends inside an element: its
last element's value (or header) runs past the end, or a sequence of undefined length is
never closed by its delimiter. The storage SCP must not store such a data set and answer
success (PS3.4 §B.2.3), and it receives it in fragments, so :class:`CompletenessCheck`
follows the element boundaries as the fragments stream in, without decoding anything and
without keeping the data: it reads each top-level element header and skips the value by
its length, so a pixel data value of any size costs one subtraction per fragment. A value
of undefined length (FFFFFFFFH) is followed through its items and delimiters (PS3.5 §7.5:
items of defined length are skipped; an item of undefined length is a nested data set,
walked the same way, up to its Item Delimitation Item). Deflated data sets (PS3.5 §A.5)
are inflated as they stream, and the deflate stream itself must end. The same walk keeps
the values of the few top-level elements asked for (``capture``), where the header ends
(the offset of Pixel Data, :attr:`CompletenessCheck.header_end`) and where its large
top-level values are (``layout``): the SCP's header check and its index entry cost no
second walk.

The element layout is that of :mod:`.elements` (Implicit VR: 4-byte length; Explicit VR:
2-byte length, or 4 after two reserved bytes for the long VRs; group FFFE tags: a 4-byte
length, no VR), here in both byte orders, and with a Value Representation of UN of
undefined length read as Implicit VR Little Endian (PS3.5 §6.2.2).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any, Literal

from ..uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)
from .elements import LONG_VRS, UNDEFINED_LENGTH

__all__ = ["BULK_LIMIT", "CompletenessCheck", "ascii_text", "incompleteness"]

_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD

# A frame is (kind, encoding, tag): inside a value of undefined length (kind _SEQUENCE:
# items and a Sequence Delimitation Item expected) or inside an item of undefined length
# (kind _ITEM: elements and an Item Delimitation Item expected).
_SEQUENCE, _ITEM_DATASET = 0, 1

# Encodings, and how each lays out an element header: whether the VR is explicit; the
# header's unpacker (Implicit VR: tag and 32-bit length; Explicit VR: tag, the VR as a
# 16-bit code, a 16-bit length), compiled once; the unpacker of a 32-bit length; the codes
# of the VRs whose length is 32 bits after two reserved bytes; the code of UN; the byte
# order (to turn a code back into the VR's two letters). An integer code, unlike the VR's
# bytes, needs no object made and hashed per element.
_IMPLICIT_LE, _EXPLICIT_LE, _EXPLICIT_BE = 0, 1, 2
_Unpack = Callable[[bytes | bytearray | memoryview, int], tuple[Any, ...]]
_ByteOrder = Literal["little", "big"]


def _layout(
    implicit: bool, byteorder: _ByteOrder
) -> tuple[bool, _Unpack, _Unpack, frozenset[int], int, _ByteOrder]:
    order = "<" if byteorder == "little" else ">"
    header = struct.Struct(order + ("HHL" if implicit else "HHHH"))
    long_vrs = frozenset(int.from_bytes(vr, byteorder) for vr in LONG_VRS)
    un = int.from_bytes(b"UN", byteorder)
    return (
        not implicit,
        header.unpack_from,
        struct.Struct(order + "L").unpack_from,
        long_vrs,
        un,
        byteorder,
    )


_LAYOUTS = (_layout(True, "little"), _layout(False, "little"), _layout(False, "big"))

#: A captured value longer than this is kept as "" (a UI value has at most 64 bytes).
_CAPTURE_LIMIT = 1024
#: Top-level values longer than this are listed in :attr:`CompletenessCheck.bulk`.
BULK_LIMIT = 1024
#: Where a data set's header ends: Pixel Data (7FE0,0010) or any later top-level tag.
_PIXEL_DATA = 0x7FE00010
#: A deflated data set is inflated this much at a time (memory bound, not a size limit).
_INFLATE_STEP = 1 << 20


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class CompletenessCheck:
    """Follow a data set's element boundaries fragment by fragment (:meth:`feed`).

    :meth:`problem` then says why the data set is not whole (None if it is): it ends
    inside an element's value or header, inside a sequence of undefined length, or its
    structure is broken (an item outside a sequence, a delimiter out of place). Once a
    problem is found, further fragments are ignored.
    """

    __slots__ = (
        "_capture",
        "_carry",
        "_encoding",
        "_error",
        "_frames",
        "_inflater",
        "_offset",
        "_skip",
        "_tag",
        "bulk",
        "header_end",
        "raw",
    )

    def __init__(
        self, transfer_syntax: str, capture: frozenset[int] = frozenset(), layout: bool = False
    ) -> None:
        if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
            self._encoding = _IMPLICIT_LE
        elif transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
            self._encoding = _EXPLICIT_BE
        else:  # every other transfer syntax is Explicit VR Little Endian (PS3.5 Annex A)
            self._encoding = _EXPLICIT_LE
        self._inflater = (
            zlib.decompressobj(-zlib.MAX_WBITS)
            if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
            else None
        )
        #: Bytes of the current element's value still to come.
        self._skip = 0
        #: The start of an element header cut by the end of the last fragment.
        self._carry = b""
        self._frames: list[tuple[int, int, int]] = []
        #: Offset in the (inflated) data set of the first byte of the next fragment.
        self._offset = 0
        #: The tag of the last element header read (the one whose value is being skipped).
        self._tag = 0
        self._error: str | None = None
        #: Top-level elements whose values to keep (as text), e.g. the UIDs the SCP checks.
        self._capture = capture
        #: The values of the ``capture`` elements met so far, by tag, as encoded.
        self.raw: dict[int, bytes] = {}
        #: With ``layout``: the offset of the first top-level element at or after Pixel Data
        #: (None: not met).
        self.header_end: int | None = None
        #: With ``layout``: (start, end, tag, VR or None) of each top-level element of
        #: defined length over :data:`BULK_LIMIT` bytes (not captured), in order.
        self.bulk: list[tuple[int, int, int, bytes | None]] | None = [] if layout else None

    @property
    def values(self) -> dict[int, str]:
        """The captured values as text (padding stripped): UIDs, codes."""
        return {tag: ascii_text(raw) for tag, raw in self.raw.items()}

    @property
    def length(self) -> int:
        """How many bytes of the (inflated) data set were fed."""
        return self._offset

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next fragment of the data set."""
        if self._inflater is not None:
            self._inflate(data)
            return
        size = len(data)
        if self._skip >= size and not self._carry:  # inside a long value: the usual case
            self._skip -= size
            self._offset += size
            return
        if self._error is None:
            self._walk(data)

    def problem(self) -> str | None:
        """Why the data set fed so far is not a whole data set; None if it is."""
        if self._error is not None:
            return self._error
        if self._inflater is not None and not self._inflater.eof:
            return "deflated data set ends before its deflate stream does"
        if self._skip:
            return f"data set ends inside element {_tag_text(self._tag)}"
        if self._carry:
            start = self._offset - len(self._carry)
            return f"data set ends inside an element header at byte {start}"
        if self._frames:
            return f"data set ends inside sequence {_tag_text(self._frames[-1][2])}"
        return None

    def _inflate(self, data: bytes | bytearray | memoryview) -> None:
        inflater = self._inflater
        assert inflater is not None
        if self._error is not None or inflater.eof:
            # Bytes after the end of the deflate stream (a pad byte, a gzip trailer) are not
            # part of the data set: readers ignore them, and so does this check.
            return
        try:
            pending: bytes | bytearray | memoryview = data
            while pending and not inflater.eof:
                out = inflater.decompress(pending, _INFLATE_STEP)
                pending = inflater.unconsumed_tail
                self._walk_inflated(out)
        except zlib.error as exc:
            self._error = f"deflated data set is corrupt: {exc}"

    def _walk_inflated(self, data: bytes) -> None:
        size = len(data)
        if self._skip >= size and not self._carry:
            self._skip -= size
            self._offset += size
        elif self._error is None:
            self._walk(data)

    def _walk(self, fragment: bytes | bytearray | memoryview) -> None:
        data = self._carry + fragment if self._carry else fragment
        base = self._offset - len(self._carry)  # the data set offset of data[0]
        self._carry = b""
        end = len(data)
        position = self._skip
        frames = self._frames
        encoding = frames[-1][1] if frames else self._encoding
        explicit, unpack_header, unpack_length, long_vrs, un, byteorder = _LAYOUTS[encoding]
        capture, raw, bulk = self._capture, self.raw, self.bulk  # bulk: None without layout
        top = not frames  # a top-level element: its value may be kept, its place noted
        last_tag = self._tag  # the element whose value is being skipped
        vr = 0
        while position + 8 <= end:
            if explicit:
                group, number, vr, length = unpack_header(data, position)
            else:
                group, number, length = unpack_header(data, position)
            if group == 0xFFFE:  # item and delimiters: a 4-byte length, no VR (§7.5)
                tag = group << 16 | number
                if explicit:
                    (length,) = unpack_length(data, position + 4)
                kind = frames[-1][0] if frames else None
                if tag == _ITEM and kind == _SEQUENCE:
                    if length == UNDEFINED_LENGTH:  # a nested data set, ended by E00D
                        frames.append((_ITEM_DATASET, encoding, tag))
                        position += 8
                    else:  # an item of defined length: skipped whole
                        last_tag = tag
                        position += 8 + length
                    continue
                if (tag == _ITEM_DELIMITER and kind == _ITEM_DATASET) or (
                    tag == _SEQUENCE_DELIMITER and kind == _SEQUENCE
                ):
                    frames.pop()
                    top = not frames
                    outer = frames[-1][1] if frames else self._encoding
                    if outer != encoding:
                        encoding = outer
                        explicit, unpack_header, unpack_length, long_vrs, un, byteorder = _LAYOUTS[
                            encoding
                        ]
                    position += 8 + (0 if length == UNDEFINED_LENGTH else length)
                    continue
                self._error = (
                    f"misplaced item or delimiter {_tag_text(tag)} at byte {base + position}"
                )
                return
            tag = group << 16 | number
            if top:
                if bulk is not None and tag >= _PIXEL_DATA and self.header_end is None:
                    self.header_end = base + position
            elif frames[-1][0] == _SEQUENCE:
                self._error = (
                    f"element {_tag_text(tag)} where an item was expected, at byte "
                    f"{base + position}"
                )
                return
            header = 8
            if explicit and vr in long_vrs:
                if position + 12 > end:
                    break
                (length,) = unpack_length(data, position + 8)
                header = 12
                opens = length == UNDEFINED_LENGTH  # a sequence, or an encapsulated value
            else:  # a 16-bit length is never undefined
                opens = not explicit and length == UNDEFINED_LENGTH
            if top and not opens:
                if tag in capture:  # a value to keep: short text
                    following = position + header + length
                    if length > _CAPTURE_LIMIT:
                        raw[tag] = b""
                    elif following > end:
                        break  # cut by the fragment's end: take it whole next time
                    else:
                        raw[tag] = bytes(data[position + header : following])
                elif bulk is not None and length > BULK_LIMIT:
                    start = base + position
                    explicit_vr = vr.to_bytes(2, byteorder) if explicit else None
                    bulk.append((start, start + header + length, tag, explicit_vr))
            last_tag = tag
            if opens:
                # UN of undefined length: Implicit VR Little Endian inside (PS3.5 §6.2.2)
                inner = _IMPLICIT_LE if explicit and vr == un else encoding
                frames.append((_SEQUENCE, inner, tag))
                top = False
                if inner != encoding:
                    encoding = inner
                    explicit, unpack_header, unpack_length, long_vrs, un, byteorder = _LAYOUTS[
                        encoding
                    ]
                position += header
            else:
                position += header + length
        self._tag = last_tag
        if position >= end:
            self._skip = position - end
        else:
            self._skip = 0
            self._carry = bytes(data[position:end])
        self._offset = base + end


def ascii_text(raw: bytes) -> str:
    """A captured UID or code string's value as text, its padding stripped."""
    return raw.decode("ascii", "replace").rstrip("\x00 ")


def incompleteness(data: bytes | bytearray | memoryview, transfer_syntax: str) -> str | None:
    """Why the encoded data set ``data`` is not whole (see :class:`CompletenessCheck`)."""
    check = CompletenessCheck(transfer_syntax)
    check.feed(data)
    return check.problem()
