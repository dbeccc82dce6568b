"""The stored file's File Meta Information, byte for byte against PS3.10 §7.1 built here.

pydicom reads both a NUL and a space as padding, so a file read back through it cannot show
a UID padded with the wrong byte. Here the expected prefix is built from the standard alone
and compared with the file's bytes:

- a 128-byte preamble of zeros and "DICM" (PS3.10 §7.1);
- Explicit VR Little Endian elements of group 0002 in ascending tag order (PS3.5 §7.1.2:
  2-byte length after the VR, or 2 reserved bytes and a 4-byte length for OB);
- (0002,0000) UL File Meta Information Group Length = the bytes of the elements after it;
- (0002,0001) OB 00 01; (0002,0002)/(0002,0003) the SOP Class/Instance UID of the C-STORE,
  (0002,0010) the transfer syntax the data set came in; UI values padded to even length
  with one NUL (PS3.5 §6.2 / §9.1);
- (0002,0012) UI / (0002,0013) SH: the Implementation Class UID and Version Name the node
  sent in its A-ASSOCIATE-AC (read off the wire, PS3.7 Annex D.3.3.2); SH padded with a
  space;
- (0002,0016) AE: the Source AE Title, the calling AE of the sender, space padded.

Then the data set: exactly the bytes that followed the meta group in the sent file.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig, StoreSummary, store_files
from dicomwire.testing.corpus import make_ct, write_part10
from dicomwire.ul.association import Timeouts

from ._wire_spy import AssociateAccept, WireSpy

LOCALHOST = "127.0.0.1"
NODE_AE = "DICOMWIRE"
IMPLICIT_VR_LE = b"1.2.840.10008.1.2"
EXPLICIT_VR_LE = b"1.2.840.10008.1.2.1"
CT_IMAGE_STORAGE = b"1.2.840.10008.5.1.4.1.1.2"
TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0)
T = TypeVar("T")


# --------------------------------------------------------------------------- PS3.10 §7.1


def pad_ui(value: bytes) -> bytes:
    """UI: padded to even length with a single trailing NUL (PS3.5 §9.1)."""
    return value + b"\x00" if len(value) % 2 else value


def pad_text(value: bytes) -> bytes:
    """SH, AE: padded to even length with a trailing space (PS3.5 §6.2)."""
    return value + b" " if len(value) % 2 else value


def meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    assert len(value) % 2 == 0, "every value has even length"
    if vr == b"OB":
        return struct.pack("<HH2s2xL", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def expected_file_meta(
    *,
    sop_class: bytes,
    sop_instance: bytes,
    transfer_syntax: bytes,
    implementation_class_uid: bytes,
    implementation_version_name: bytes | None,
    source_ae_title: bytes | None,
) -> bytes:
    """Preamble, "DICM" and group 0002 exactly as PS3.10 §7.1 lays them out."""
    elements = [
        meta_element(0x0001, b"OB", b"\x00\x01"),
        meta_element(0x0002, b"UI", pad_ui(sop_class)),
        meta_element(0x0003, b"UI", pad_ui(sop_instance)),
        meta_element(0x0010, b"UI", pad_ui(transfer_syntax)),
        meta_element(0x0012, b"UI", pad_ui(implementation_class_uid)),
    ]
    if implementation_version_name:
        elements.append(meta_element(0x0013, b"SH", pad_text(implementation_version_name)))
    if source_ae_title:
        elements.append(meta_element(0x0016, b"AE", pad_text(source_ae_title)))
    rest = b"".join(elements)
    group_length = meta_element(0x0000, b"UL", struct.pack("<L", len(rest)))
    return bytes(128) + b"DICM" + group_length + rest


def implementation_of(accept: AssociateAccept) -> tuple[bytes, bytes | None]:
    """The node's implementation class UID and version name as sent, without padding."""
    name = accept.implementation_version_name
    return accept.implementation_class_uid.rstrip(b"\x00"), name.rstrip(b" ") if name else name


def data_set_bytes(path: Path) -> bytes:
    """What follows the file meta group of a Part 10 file (read with struct only)."""
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM"
    (group_length,) = struct.unpack_from("<L", raw, 140)
    return raw[144 + group_length :]


# --------------------------------------------------------------------------- the node


def run(coroutine: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, 60)

    return asyncio.run(bounded())


async def store_to_node(root: Path, source: Path, calling: str) -> StoreSummary:
    node = Node(
        NodeConfig(
            ae_titles=[NODE_AE],
            host=LOCALHOST,
            port=0,
            storage=StorageConfig(root=root, fsync=False),
            timeouts=Timeouts(artim=5.0, acse=10.0, dimse=None, network_idle=10.0),
            shutdown_grace=1.0,
        )
    )
    await node.start()
    try:
        return await store_files(
            LOCALHOST,
            node.port,
            [source],
            calling_ae_title=calling,
            called_ae_title=NODE_AE,
            retries=0,
            timeouts=TIMEOUTS,
        )
    finally:
        await node.shutdown()


def stored_file(root: Path) -> Path:
    (path,) = [p for p in root.rglob("*.dcm") if ".incoming" not in p.parts]
    return path


@pytest.mark.parametrize(
    ("transfer_syntax", "instance", "calling"),
    [
        (EXPLICIT_VR_LE, b"1.2.826.0.1.3680043.9.7.1", "FMETASCU"),  # odd UID, even AE
        (IMPLICIT_VR_LE, b"1.2.826.0.1.3680043.9.7.12", "ODDSCU1"),  # even UID, odd AE
    ],
    ids=["explicit-odd-uid", "implicit-even-uid"],
)
def test_stored_file_meta_byte_for_byte(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    transfer_syntax: bytes,
    instance: bytes,
    calling: str,
) -> None:
    ds = make_ct(1, rows=16, columns=16)
    ds.SOPInstanceUID = instance.decode()
    source = write_part10(ds, tmp_path / "in" / "ct.dcm", transfer_syntax.decode())
    root = tmp_path / "store"
    wire = WireSpy().install(monkeypatch)

    summary = run(store_to_node(root, source, calling))
    monkeypatch.undo()

    assert [o.status for o in summary.outcomes] == [0]
    (accept,) = wire.accepts
    class_uid, version_name = implementation_of(accept)
    assert class_uid, "the A-ASSOCIATE-AC carried no Implementation Class UID"
    expected = expected_file_meta(
        sop_class=CT_IMAGE_STORAGE,
        sop_instance=instance,
        transfer_syntax=transfer_syntax,
        implementation_class_uid=class_uid,
        implementation_version_name=version_name,
        source_ae_title=calling.encode(),
    )
    raw = stored_file(root).read_bytes()
    assert raw[: len(expected)] == expected
    assert raw[len(expected) :] == data_set_bytes(source)


def test_expected_meta_builder_agrees_with_the_standard_example() -> None:
    """The builder itself, on values whose padding and lengths are counted by hand."""
    meta = expected_file_meta(
        sop_class=b"1.2.3",  # 5 -> 6 with a NUL
        sop_instance=b"1.2.34",  # 6, no padding
        transfer_syntax=b"1.2.840.10008.1.2.1",  # 19 -> 20
        implementation_class_uid=b"1.2",  # 3 -> 4
        implementation_version_name=b"V1",
        source_ae_title=b"AE1",  # 3 -> "AE1 "
    )
    assert meta[:132] == bytes(128) + b"DICM"
    assert meta[132:144] == b"\x02\x00\x00\x00UL\x04\x00" + struct.pack("<L", len(meta) - 144)
    body = meta[144:]
    assert body.startswith(b"\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01")
    assert b"\x02\x00\x02\x00UI\x06\x001.2.3\x00" in body
    assert b"\x02\x00\x03\x00UI\x06\x001.2.34\x02\x00" in body
    assert b"\x02\x00\x10\x00UI\x14\x001.2.840.10008.1.2.1\x00" in body
    assert b"\x02\x00\x12\x00UI\x04\x001.2\x00" in body
    assert b"\x02\x00\x13\x00SH\x02\x00V1" in body
    assert body.endswith(b"\x02\x00\x16\x00AE\x04\x00AE1 ")
