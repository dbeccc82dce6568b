"""Data sets as bytes on the wire, and pydicom only where the application asks for one.

PS3.5 §10 transfer syntaxes: a data set travels in its presentation context's transfer
syntax. Storing or forwarding never decodes it; :func:`decode_dataset` and
:func:`encode_dataset` are for handlers that want a :class:`pydicom.Dataset`.
:func:`build_dataset` and :func:`encode_identifier` build an identifier (PS3.4 C.4.1.1.3)
or any other data set from ``{keyword: value}`` in one call.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from io import BytesIO
from typing import TYPE_CHECKING

from ..errors import DataSetError, ValidationError
from ..uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)

if TYPE_CHECKING:  # pydicom is imported when a data set is first decoded or encoded
    from pydicom import Dataset

__all__ = [
    "DataSetError",
    "build_dataset",
    "decode_dataset",
    "encode_dataset",
    "encode_identifier",
]


def _encoding(transfer_syntax: str) -> tuple[bool, bool]:
    """(implicit VR, little endian) of a transfer syntax; compressed ones are explicit LE."""
    return (
        transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN,
        transfer_syntax != EXPLICIT_VR_BIG_ENDIAN,
    )


def decode_dataset(data: bytes | bytearray | memoryview, transfer_syntax: str) -> Dataset:
    """Decode a data set received in ``transfer_syntax``."""
    from pydicom.filereader import read_dataset

    raw = bytes(data)
    try:
        if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            raw = zlib.decompress(raw, -zlib.MAX_WBITS)
        implicit, little = _encoding(transfer_syntax)
        dataset = read_dataset(BytesIO(raw), implicit, little)
    except Exception as exc:  # pydicom raises many types on bad input
        raise DataSetError(f"cannot decode data set ({transfer_syntax}): {exc}") from exc
    return dataset


def encode_dataset(dataset: Dataset, transfer_syntax: str) -> bytes:
    """Encode ``dataset`` for a presentation context with ``transfer_syntax``."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    implicit, little = _encoding(transfer_syntax)
    buffer = DicomBytesIO()
    buffer.is_implicit_VR = implicit
    buffer.is_little_endian = little
    try:
        write_dataset(buffer, dataset)
    except Exception as exc:
        raise DataSetError(f"cannot encode data set ({transfer_syntax}): {exc}") from exc
    raw = buffer.getvalue()
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        raw = compressor.compress(raw) + compressor.flush()
    return raw


def build_dataset(source: Dataset | Mapping[str, object]) -> Dataset:
    """A pydicom Dataset from ``{keyword: value}`` (a Dataset is returned as it is).

    Values are what pydicom accepts for the keyword's VR; ``""`` or None asks for the
    attribute with no value (a universal match in a query). A sequence is a list of
    mappings (or Datasets). An unknown keyword raises :class:`ValidationError` naming it.
    """
    from pydicom import Dataset
    from pydicom.datadict import tag_for_keyword

    if isinstance(source, Dataset):
        return source
    dataset = Dataset()
    for keyword, value in source.items():
        if tag_for_keyword(keyword) is None:
            raise ValidationError(f"{keyword!r} is not a DICOM attribute keyword")
        if isinstance(value, (list, tuple)) and any(isinstance(v, Mapping) for v in value):
            value = [build_dataset(item) for item in value]
        try:
            setattr(dataset, keyword, value)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"{keyword}: invalid value {value!r}: {exc}") from exc
    return dataset


def encode_identifier(source: Dataset | Mapping[str, object], transfer_syntax: str) -> bytes:
    """:func:`build_dataset` then :func:`encode_dataset`: an identifier ready to send."""
    return encode_dataset(build_dataset(source), transfer_syntax)
