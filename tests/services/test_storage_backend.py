"""The storage behind an interface, and what the SCP reads of a data set in one walk.

- :class:`FileSystemStorage` places a staged file atomically under its key (a rename keeps
  its identity, so the index can tell the file it prepared), creates missing folders,
  fsyncs file and folder when durable, and the SCP, the index, C-GET and the commitment
  check go through the backend they are given;
- the index entry built from the completeness walk (:func:`entry_from_walk`) is the one
  the separate header scan (:func:`entry_from_head`) builds, for every pydicom test file
  fed in arbitrary fragments;
- the audit trail describes an association's stored instances from what the SCP read:
  a file removed right after it was stored is still audited, with its patient's name in
  its character set.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

import dicomwire
from dicomwire.services.audit import AuditConfig
from dicomwire.services.commitment import StorageCommitment
from dicomwire.services.completeness import CompletenessCheck
from dicomwire.services.index import (
    INDEXED_TAGS,
    SQLiteIndex,
    entry_from_head,
    entry_from_walk,
)
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.qr import QueryRetrieve
from dicomwire.services.storage import Storage, StorageConfig
from dicomwire.services.storage.backend import LOCAL_STORAGE, FileSystemStorage
from dicomwire.services.storage.header import HEAD_BYTES
from dicomwire.uids import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN
from tests.audit_schema import local_messages
from tests.conftest import run_bounded
from tests.services.test_completeness import FILES, TRUNCATED


def test_filesystem_place_is_a_rename_that_keeps_the_identity(tmp_path: Path) -> None:
    storage = FileSystemStorage()
    staged = tmp_path / ".incoming" / "a.part"
    staged.parent.mkdir()
    staged.write_bytes(b"first")
    identity = storage.identity(staged)
    key = tmp_path / "study" / "series" / "1.dcm"  # its folders do not exist yet
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", spy)
        storage.place(staged, key, durable=True)
    assert len(synced) == 2  # the file, then its folder (the new name)
    assert not staged.exists() and storage.exists(key)
    assert storage.identity(key) == identity
    with storage.open(key) as file:
        assert file.read() == b"first"
    again = tmp_path / ".incoming" / "b.part"
    again.write_bytes(b"second, longer")
    storage.place(again, key, durable=False)  # over the earlier file, no fsync
    assert storage.identity(key) != identity and key.read_bytes() == b"second, longer"
    assert storage.remove(key) and not storage.remove(key) and not storage.exists(key)
    assert storage.identity(key) is None


def test_the_scp_and_its_index_use_the_backend_given(tmp_path: Path) -> None:
    placed: list[Path] = []
    read: list[Path] = []

    class Recording(FileSystemStorage):
        def place(self, staged: Path, key: Path, *, durable: bool) -> None:
            placed.append(key)
            super().place(staged, key, durable=durable)

        def local_path(self, key: Path | str) -> Path:
            read.append(Path(key))
            return super().local_path(key)

    ct = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
    index = SQLiteIndex(tmp_path / "index.sqlite")
    backend = Recording()
    stored = StorageConfig(root=tmp_path / "store", fsync=False)
    storage = Storage(stored, index=index, backend=backend)
    assert storage.scp.backend is backend and index.backend is backend
    config = NodeConfig(host="127.0.0.1", port=0, storage=stored, shutdown_grace=1.0)
    services = [storage, QueryRetrieve(index), StorageCommitment(index=index)]

    async def main() -> None:
        async with Node(config, services) as node:
            async with dicomwire.connect(
                "127.0.0.1", node.port, called_ae="DICOMWIRE", sending=[ct]
            ) as client:
                assert await client.store(ct) == 0
            async with dicomwire.connect(
                "127.0.0.1", node.port, called_ae="DICOMWIRE", services=["get"]
            ) as client:
                study = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": header.StudyInstanceUID}
                assert (await client.get(study, tmp_path / "got")).completed == 1
        assert read == placed  # C-GET read the file through the backend
        commitment = services[2]
        assert isinstance(commitment, StorageCommitment)
        assert commitment.check([(header.SOPClassUID, header.SOPInstanceUID)]) == [None]
        assert read == placed * 2  # and so did the commitment check

    header = dcmread(ct, stop_before_pixels=True)
    run_bounded(main(), 60)
    assert len(placed) == 1 and placed[0].is_file()
    assert [path for _, path in index.paths()] == placed
    assert SQLiteIndex(":memory:").backend is LOCAL_STORAGE


#: The files indexed from their bytes: truncated ones are refused, deflated and big-endian
#: ones read by pydicom instead of the walk.
WALKED = [
    f
    for f in FILES
    if f[0] not in TRUNCATED
    and f[1] not in (DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN)
]


@pytest.mark.parametrize(("name", "syntax", "data"), WALKED, ids=[f[0] for f in WALKED])
def test_entry_from_the_walk_is_the_scanned_entry(name: str, syntax: str, data: bytes) -> None:
    head = data[:HEAD_BYTES]
    try:
        scanned = entry_from_head(head, syntax, whole=len(data) <= HEAD_BYTES)
    except Exception as exc:
        scanned, problem = None, exc
    else:
        problem = None
    walk = CompletenessCheck(syntax, INDEXED_TAGS, layout=True)
    chunks, position = random.Random(name), 0
    while position < len(data):
        size = chunks.choice([1, 7, 100, 4093, 16384])
        walk.feed(memoryview(data)[position : position + size])
        position += size
    assert walk.problem() is None
    if problem is not None:
        with pytest.raises(type(problem)):
            entry_from_walk(head, walk, syntax)
        return
    walked = entry_from_walk(head, walk, syntax)
    if scanned is None:  # the scanner leaves it to pydicom: so may the walk
        return
    assert walked == scanned


def test_audit_describes_stored_instances_without_reading_them(tmp_path: Path) -> None:
    dataset = Dataset()
    dataset.SpecificCharacterSet = "ISO_IR 100"
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    dataset.SOPInstanceUID = "1.2.826.0.1.3680043.9.7433.1.1"
    dataset.StudyInstanceUID = "1.2.826.0.1.3680043.9.7433.1"
    dataset.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7433.1.2"
    dataset.PatientID = "AUD-1"
    dataset.PatientName = "Müller^Jürgen"
    dataset.file_meta = Dataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    log = tmp_path / "audit.log"
    removed: list[Path] = []

    def remove_at_once(path: Path, request: object) -> None:
        path.unlink()  # the audit can only describe it from what the SCP read
        removed.append(path)

    config = NodeConfig(
        host="127.0.0.1",
        port=0,
        storage=StorageConfig(root=tmp_path / "store", fsync=False, on_stored=remove_at_once),
        shutdown_grace=1.0,
    )
    config.sections["audit"] = AuditConfig(destinations=[f"file:{log}"])

    async def main() -> None:
        async with (
            Node(config) as node,
            dicomwire.connect(
                "127.0.0.1",
                node.port,
                called_ae="DICOMWIRE",
                calling_ae="CT1",
                sending=[dataset],
            ) as client,
        ):
            assert await client.store(dataset) == 0

    run_bounded(main(), 60)
    assert len(removed) == 1
    imported = [
        message
        for message in local_messages(log)
        if message.find("EventIdentification/EventID").get("csd-code") == "110104"  # type: ignore[union-attr]
    ]
    assert len(imported) == 1
    objects = {
        o.get("ParticipantObjectID"): o for o in imported[0].iter("ParticipantObjectIdentification")
    }
    assert objects["AUD-1"].findtext("ParticipantObjectName") == "Müller^Jürgen"
    assert dataset.StudyInstanceUID in objects
