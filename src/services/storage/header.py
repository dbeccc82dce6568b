"""The header of a received data set: the UIDs the storage SCP checks and files by.

PS3.4 §B.2.3 has the SCP check that the data set is the instance the command names (SOP
Class UID (0008,0016), SOP Instance UID (0008,0018)); the Study and Series Instance UIDs
(0020,000D), (0020,000E) place the file: :data:`HEADER_TAGS`. The SCP reads them while
the data set streams in, in the same walk that checks it is whole
(:class:`~dicomwire.services.completeness.CompletenessCheck` with ``capture``). The
readers below take them from bytes already at hand - the first bytes of a data set
(:func:`header_from_head`, with the shared element scanner of :mod:`..elements`, PS3.5
§7.1) or a stored file (:func:`read_header`, with pydicom) - for tools that read stored
files rather than a stream.
"""

from __future__ import annotations

import zlib
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from ...errors import DataSetError
from ...uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)
from ..elements import UNDEFINED_LENGTH, iter_elements

__all__ = [
    "HEADER_TAGS",
    "HEAD_BYTES",
    "header_from_head",
    "parse_header",
    "read_header",
    "scan_header",
]

#: SOP Class UID, SOP Instance UID, Study Instance UID, Series Instance UID.
HEADER_TAGS = (0x00080016, 0x00080018, 0x0020000D, 0x0020000E)
#: How much of each received data set is kept in memory to read its header from.
HEAD_BYTES = 64 << 10
#: A deflated data set is inflated at most this far to find its header.
_DEFLATED_HEADER_LIMIT = 16 << 20

_ALL_HEADER_TAGS = frozenset(HEADER_TAGS)
_LAST_HEADER_TAG = max(HEADER_TAGS)


def header_from_head(head: bytes, length: int, transfer_syntax: str) -> dict[int, str] | None:
    """The header read from ``head`` (the first bytes of a data set of ``length`` bytes).

    None when they do not suffice: they suffice when the whole data set fits, or when
    every header element was found. A deflated data set is always read from the file.
    """
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN or not head:
        return None
    whole = length <= len(head)
    try:
        header = scan_header(head, transfer_syntax)
        if header is None:  # something the scanner leaves to pydicom
            header = parse_header(BytesIO(head), transfer_syntax)
    except DataSetError:
        if whole:
            raise
        return None  # the cut at 64 KiB fell inside an element: read from the file
    if whole or header.keys() >= _ALL_HEADER_TAGS:
        return header
    return None


def scan_header(data: bytes | bytearray, transfer_syntax: str) -> dict[int, str] | None:
    """:func:`parse_header` without pydicom for the plain case (PS3.5 §7.1).

    Walks the top-level elements of a little endian data set up to (0020,000E), skipping
    each value by its length. Returns None for what it leaves to pydicom: big endian, an
    undefined length (a sequence or encapsulated value before the header elements), an
    item tag at the top level. A header element whose value runs past ``data`` raises
    DataSetError, as pydicom's reader does.
    """
    if transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
        return None
    implicit = transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN  # else explicit, as pydicom reads it
    data = bytes(data)  # no copy when it already is bytes
    values: dict[int, str] = {}
    for tag, _vr, start, length in iter_elements(
        data, implicit=implicit, stop_after_tag=_LAST_HEADER_TAG, partial=True
    ):
        if length == UNDEFINED_LENGTH:  # (an item tag, group FFFE, is past the last one)
            return None
        if tag in _ALL_HEADER_TAGS:
            end = start + length
            if end > len(data):
                raise DataSetError(
                    f"cannot read the data set header: ({tag >> 16:04X},{tag & 0xFFFF:04X}) "
                    "is cut short"
                )
            values[tag] = data[start:end].decode("ascii", "replace").rstrip("\x00 ")
    return values


def parse_header(source: BinaryIO, transfer_syntax: str) -> dict[int, str]:
    """SOP Class/Instance, Study and Series UIDs from a data set stream; DataSetError.

    Reads elements up to (0020,000E) only, skipping large values (pixel data, big private
    elements), however far into the data set they are.
    """
    from pydicom.filereader import read_dataset

    try:
        dataset = read_dataset(
            source,
            transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN,
            transfer_syntax != EXPLICIT_VR_BIG_ENDIAN,
            stop_when=lambda tag, vr, length: tag > _LAST_HEADER_TAG,
            defer_size=1024,
        )
        values: dict[int, str] = {}
        for tag in HEADER_TAGS:
            if tag in dataset:
                value = dataset[tag].value
                values[tag] = str(value).rstrip("\x00 ") if value is not None else ""
        return values
    except Exception as exc:
        raise DataSetError(f"cannot read the data set header: {exc}") from exc


def read_header(path: Path, offset: int, transfer_syntax: str) -> dict[int, str]:
    """The header of the data set stored in ``path`` at ``offset``; DataSetError."""
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
                inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                head = inflater.decompress(
                    file.read(_DEFLATED_HEADER_LIMIT), _DEFLATED_HEADER_LIMIT
                )
                return parse_header(BytesIO(head), transfer_syntax)
            return parse_header(file, transfer_syntax)
    except OSError as exc:
        raise DataSetError(f"cannot read the data set header: {exc}") from exc
