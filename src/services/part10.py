"""DICOM Part 10 files: PS3.10 §7.1 (preamble, "DICM", File Meta Information group 0002).

Written and read without pydicom on the hot path: the node writes the file meta before a
received data set's bytes, and the SCU reads only the file meta to know where the data set
starts and in which transfer syntax it is.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .. import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from ..dimse.streams import pread_range
from ..errors import Part10Error
from ..ul.identifiers import WireStr
from .elements import LONG_VRS, iter_elements

__all__ = ["FileInfo", "Part10Error", "build_file_meta", "read_file_head", "read_file_info"]

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"

_SHORT = struct.Struct("<HH2sH")  # group, element, VR, 16-bit length
_LONG = struct.Struct("<HH2s2xL")  # group, element, VR, reserved, 32-bit length
_UINT32 = struct.Struct("<L")
#: Preamble, "DICM" and the group length element: where the file meta's elements start.
_PREFIX_LENGTH = PREAMBLE_LENGTH + 4 + 12
#: The first page: a usual file meta (about 200 bytes) and the element headers of the data
#: set before its pixel data, in the same system call.
_FIRST_READ = 4096
#: Media Storage SOP Class UID, Media Storage SOP Instance UID, Transfer Syntax UID.
_WANTED = frozenset((0x0002, 0x0003, 0x0010))


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr in LONG_VRS:
        return _LONG.pack(0x0002, element, vr, len(value)) + value
    return _SHORT.pack(0x0002, element, vr, len(value)) + value


def _ui(value: str) -> bytes:
    raw = value.wire if isinstance(value, WireStr) else value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _text(value: str) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def build_file_meta(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    source_ae_title: str | None = None,
) -> bytes:
    """Preamble, "DICM" and the File Meta Information group (Explicit VR Little Endian)."""
    before, after = _meta_around_instance(
        _ui(sop_class_uid), _ui(transfer_syntax), source_ae_title.strip() if source_ae_title else ""
    )
    instance = _element(0x0003, b"UI", _ui(sop_instance_uid))
    body_length = len(before) - _PREFIX_LENGTH + len(instance) + len(after)
    start = _PREFIX_LENGTH - 4  # the group length's value
    return b"".join(
        (before[:start], _UINT32.pack(body_length), before[_PREFIX_LENGTH:], instance, after)
    )


@functools.lru_cache(maxsize=64)
def _meta_around_instance(
    sop_class_uid: bytes, transfer_syntax: bytes, source_ae_title: str
) -> tuple[bytes, bytes]:
    """The file meta before and after its SOP Instance UID element: only that and the
    group length change between the instances of one association (a receiver writes a
    file meta per instance). ``before`` holds a zero group length."""
    before = (
        bytes(PREAMBLE_LENGTH)
        + MAGIC
        + _element(0x0000, b"UL", bytes(4))
        + _element(0x0001, b"OB", b"\x00\x01")
        + _element(0x0002, b"UI", sop_class_uid)
    )
    after = [
        _element(0x0010, b"UI", transfer_syntax),
        _element(0x0012, b"UI", _ui(IMPLEMENTATION_CLASS_UID)),
        _element(0x0013, b"SH", _text(IMPLEMENTATION_VERSION_NAME)),
    ]
    if source_ae_title:
        after.append(_element(0x0016, b"AE", _text(source_ae_title)))
    return before, b"".join(after)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What a sender needs to know of a Part 10 file."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    dataset_offset: int
    size: int
    #: What was decided about this file, for its outcome line (e.g. meta and data set
    #: disagree on a UID: the data set's is sent, as DCMTK storescu does).
    note: str | None = None
    #: A deflated data set of odd length is sent with one trailing 00H (PS3.5 §A.5).
    pad: bool = False

    @property
    def dataset_length(self) -> int:
        """Bytes of the data set as sent (with its pad byte, if any)."""
        return self.size - self.dataset_offset + self.pad


def read_file_info(path: str | Path) -> FileInfo:
    """Read only the file meta of ``path`` (PS3.10 §7.1); raise :class:`Part10Error`.

    One ``open``, usually one ``read`` and one ``fstat``: a sender reads every file's meta
    before it associates, so this runs once per file and shows in the time to first byte.
    """
    return read_file_head(path)[0]


def read_file_head(path: str | Path) -> tuple[FileInfo, bytes]:
    """The file meta of ``path`` and the data set's first bytes read with it.

    One ``open``, one ``fstat`` and usually one ``read`` of the first page: a sender
    checks a data set's element headers from those bytes before it sends the file, without
    reading its pixel data (:func:`~dicomwire.services.storage.scu.inspect_file`). The data
    set's bytes may be none (a file meta longer than the first read). Raises
    :class:`Part10Error`.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            size = os.fstat(fd).st_size
            head = os.read(fd, _FIRST_READ)
            if len(head) < _PREFIX_LENGTH or head[PREAMBLE_LENGTH:132] != MAGIC:
                raise Part10Error(f"{path}: not a DICOM Part 10 file (no DICM prefix)", "not-dicom")
            group, element, vr, length = _SHORT.unpack_from(head, 132)
            if (group, element, vr, length) != (2, 0, b"UL", 4):
                raise Part10Error(f"{path}: file meta does not start with its group length")
            (group_length,) = _UINT32.unpack_from(head, 140)
            if group_length > 1 << 20:
                raise Part10Error(f"{path}: file meta group length {group_length} is absurd")
            end = _PREFIX_LENGTH + group_length
            if len(head) < end:  # a file meta longer than the first read, or a short read
                head += pread_range(fd, len(head), end - len(head))
        finally:
            os.close(fd)
    except OSError as exc:
        raise Part10Error(f"{path}: {exc.strerror or exc}", "unreadable") from exc
    meta = head[_PREFIX_LENGTH:end]  # bytes: a VR sliced from it is bytes, hashed fast
    if len(meta) < group_length:
        raise Part10Error(f"{path}: file meta truncated")
    values: dict[int, bytes] = {}
    for tag, _vr, start, length in iter_elements(meta, implicit=False, partial=True):
        group, element = tag >> 16, tag & 0xFFFF
        if group != 2:
            raise Part10Error(f"{path}: element ({group:04X},{element:04X}) inside file meta")
        if element in _WANTED:
            values[element] = meta[start : start + length]

    def uid(element: int, name: str) -> str:
        raw = values.get(element)
        if not raw:
            raise Part10Error(f"{path}: file meta lacks {name}")
        return raw.rstrip(b"\x00 ").decode("ascii", "replace")

    info = FileInfo(
        path=path,
        sop_class_uid=uid(0x0002, "Media Storage SOP Class UID"),
        sop_instance_uid=uid(0x0003, "Media Storage SOP Instance UID"),
        transfer_syntax=uid(0x0010, "Transfer Syntax UID"),
        dataset_offset=end,
        size=size,
    )
    return info, head[end:]
