"""The storage SCP indexes what it stores, in the step that makes each file visible.

A stored instance has a row and a row has its file, whatever happens (issue 15): real
crashes (the node's process ends by ``os._exit`` at each step of a store, fault injected
by wrapping what the SCP calls) followed by the start-up reconcile; a failing database
(the writer connection raising at the statement) answered A700 with no file kept;
duplicates under every policy; DCMTK ``storescu`` and the CLI as real peers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread

from dicomwire.services.index import SQLiteIndex, entry_from_file
from dicomwire.services.node import (
    SERVICE_TYPES,
    Node,
    NodeConfig,
    database_path,
    load_config,
    prepare_node,
)
from dicomwire.services.qr import QueryRetrieve, QueryRetrieveConfig
from dicomwire.services.storage import StorageConfig, store_files
from dicomwire.testing.corpus import write_corpus
from dicomwire.ul.association import Timeouts

from ..conftest import find_dcmtk_tool, run_bounded
from ._support import (
    CLI,
    LOCALHOST,
    NODE_AE,
    NODE_TIMEOUTS,
    accepted_over_associations,
    serve_processes,
)
from ._wire_spy import WireSpy

SCU_TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0)


def node_config(root: Path, **storage: Any) -> NodeConfig:
    return NodeConfig(
        ae_titles=[NODE_AE],
        host=LOCALHOST,
        port=0,
        storage=StorageConfig(root=root, **storage),
        timeouts=NODE_TIMEOUTS,
        shutdown_grace=1.0,
    )


async def send(config: NodeConfig, paths: list[Path], calling: str = "INDEXSCU") -> list[int]:
    async with Node(config) as node:
        summary = await store_files(
            LOCALHOST,
            node.port,
            paths,
            calling_ae_title=calling,
            called_ae_title=NODE_AE,
            retries=0,
            timeouts=SCU_TIMEOUTS,
        )
    return [int(o.status) if o.status is not None else -1 for o in summary.outcomes]


def stored(root: Path) -> list[Path]:
    """The visible stored files (not ``.incoming``, not the database)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not {".incoming", ".dicomwire"} & set(p.relative_to(root).parts)
    )


def rows(config: NodeConfig) -> dict[str, Path]:
    index = SQLiteIndex(database_path(config))
    try:
        return dict(index.paths())
    finally:
        index.close()


def indexed_name(config: NodeConfig, uid: str) -> str:
    """The Patient's Name the index answers for instance ``uid``."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.SOPInstanceUID = uid
    identifier.PatientName = ""
    index = SQLiteIndex(database_path(config))
    try:
        (answer,) = index.find("IMAGE", identifier)
    finally:
        index.close()
    return str(answer.PatientName)


def assert_consistent(config: NodeConfig) -> dict[str, Path]:
    """Every visible file has its row and every row its file, describing that file."""
    root = config.storage.root
    files = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in stored(root)}
    found = rows(config)
    assert found == files
    for uid, path in files.items():
        assert indexed_name(config, uid) == str(dcmread(path).PatientName)
    return files


def versions(directory: Path, count: int = 1) -> tuple[list[Path], list[Path]]:
    """``count`` small CTs, and a second version of each: same UIDs, another name."""
    first = write_corpus(directory / "a", count, "ct", rows=16, columns=16)
    second = []
    for path in first:
        ds = dcmread(path)
        ds.PatientName = "Second^Version"
        target = directory / "b" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)
        second.append(target)
    return first, second


# --------------------------------------------------------------------------- crashes

#: The node, in a process of its own, stores FIRST (unless "-"), then dies at POINT while
#: storing SECOND: os._exit, no finally blocks, no clean-up, as a crash or a kill -9.
CRASHING_NODE = r"""
import asyncio, os, stat, sys
from pathlib import Path
from dicomwire.services import index as index_module
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig, store_files
from dicomwire.ul.association import Timeouts

root, first, second, point = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
armed = False

def after(owner, name, reached=lambda *a: True):
    real = getattr(owner, name)
    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        if armed and reached(*args):
            os._exit(77)
        return result
    setattr(owner, name, wrapper)

def kind_is(kind):
    return lambda fd: stat.S_ISDIR(os.fstat(fd).st_mode) == (kind == "directory")

def before(owner, name):
    real = getattr(owner, name)
    def wrapper(*args, **kwargs):
        if armed:
            os._exit(77)
        return real(*args, **kwargs)
    setattr(owner, name, wrapper)

if point == "received":
    before(index_module.SQLiteIndex, "prepare_add")
elif point == "intent recorded":
    after(index_module.SQLiteIndex, "prepare_add")
elif point == "file fsynced":
    after(os, "fsync", kind_is("file"))
elif point == "renamed":
    after(os, "replace")
elif point == "directory fsynced":
    after(os, "fsync", kind_is("directory"))
elif point == "row committed":
    after(index_module.SQLiteIndex, "commit_add")

async def main():
    global armed
    config = NodeConfig(ae_titles=["DICOMWIRE"], host="127.0.0.1", port=0,
                        storage=StorageConfig(root=root), shutdown_grace=1.0)
    timeouts = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0)
    async with Node(config) as node:
        async def store(path):
            return await store_files("127.0.0.1", node.port, [path], called_ae_title="DICOMWIRE",
                                     retries=0, timeouts=timeouts)
        if first != "-":
            assert (await store(first)).outcomes[0].status == 0
        armed = True
        await store(second)

asyncio.run(main())
sys.exit(3)  # the kill point was never reached
"""

KILL_POINTS = [
    "received",
    "intent recorded",
    "file fsynced",
    "renamed",
    "directory fsynced",
    "row committed",
]
#: From the rename on, the second version is the stored one.
PLACED = {"renamed", "directory fsynced", "row committed"}


@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_crash_at_any_step_leaves_file_and_row_together(
    tmp_path: Path, point: str, overwrite: bool
) -> None:
    (first,), (second,) = versions(tmp_path / "in")
    root = tmp_path / "store"
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_NODE, str(root), str(first) if overwrite else "-",
         str(second), point],
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    assert crashed.returncode == 77, crashed.stderr.decode(errors="replace")

    config = node_config(root)
    prepare_node(config)  # the restart: stale .part files removed, the index reconciled

    assert list((root / ".incoming").iterdir()) == []
    files = assert_consistent(config)
    index = SQLiteIndex(database_path(config))
    assert index.stats()["pending"] == 0
    index.close()
    if point in PLACED:
        (path,) = files.values()
        assert str(dcmread(path).PatientName) == "Second^Version"
    elif overwrite:
        (path,) = files.values()
        assert str(dcmread(path).PatientName) == str(dcmread(first).PatientName)
    else:
        assert files == {}


def test_reconcile_completes_placed_intents_and_drops_the_others(tmp_path: Path) -> None:
    sources = write_corpus(tmp_path / "in", 3, "ct", rows=16, columns=16)
    index = SQLiteIndex(tmp_path / "db" / "index.sqlite")
    placed, unplaced, elsewhere = (tmp_path / "store" / f"{n}.dcm" for n in "abc")
    placed.parent.mkdir(parents=True)
    old = tmp_path / "store" / "old.dcm"
    old.write_bytes(sources[2].read_bytes())
    index.add_entry(entry_from_file(old), old, "1.2.840.10008.1.2.1", old.stat().st_size)
    tokens = []
    for source, target in zip(sources, (placed, unplaced, elsewhere), strict=True):
        staged = tmp_path / f"{target.name}.part"
        staged.write_bytes(source.read_bytes())
        tokens.append(
            index.prepare_add(
                entry_from_file(staged),
                target,
                "1.2.840.10008.1.2.1",
                staged.stat().st_size,
                staged=staged,
                replaces=old if target == elsewhere else None,
            )
        )
    os.replace(tmp_path / "a.dcm.part", placed)  # renamed; b never was
    os.replace(tmp_path / "c.dcm.part", elsewhere)  # an overwrite under a new path
    index.close()  # the crash: a new process reconciles

    again = SQLiteIndex(tmp_path / "db" / "index.sqlite")
    outcome = again.reconcile()
    assert (outcome.completed, outcome.dropped) == (2, 1)
    assert set(again.paths()) == {
        (str(dcmread(placed).SOPInstanceUID), placed),
        (str(dcmread(elsewhere).SOPInstanceUID), elsewhere),
    }
    assert not old.exists()  # the overwritten copy went with its row
    assert again.stats()["pending"] == 0
    assert again.reconcile().completed == 0  # settled once
    again.close()


def test_an_intent_whose_file_was_replaced_by_another_copy_is_not_committed(
    tmp_path: Path,
) -> None:
    (source,) = write_corpus(tmp_path / "in", 1, "ct", rows=16, columns=16)
    index = SQLiteIndex(":memory:")
    target = tmp_path / "x.dcm"
    ours, theirs = tmp_path / "ours.part", tmp_path / "theirs.part"
    for staged in (ours, theirs):
        staged.write_bytes(source.read_bytes())
    entry = entry_from_file(ours)
    mine = index.prepare_add(entry, target, "1.2.840.10008.1.2.1", 1, staged=ours)
    other = index.prepare_add(entry, target, "1.2.840.10008.1.2.1", 2, staged=theirs)
    os.replace(ours, target)
    os.replace(theirs, target)  # a second copy renamed over the first before it committed
    assert not index.commit_add(mine)
    assert index.commit_add(other)
    ((_, path),) = index.paths()
    assert path == target and index.count() == 1


def test_the_copy_renamed_last_is_the_row_whichever_prepared_last(tmp_path: Path) -> None:
    """Two copies of one instance (two associations): the row is written when each is
    prepared, so the one prepared first but renamed last must rewrite it at its commit."""
    first, second = versions(tmp_path / "in")
    index = SQLiteIndex(tmp_path / "index.sqlite")
    target = tmp_path / "x.dcm"
    early, late = tmp_path / "early.part", tmp_path / "late.part"
    early.write_bytes(second[0].read_bytes())
    late.write_bytes(first[0].read_bytes())
    ts = "1.2.840.10008.1.2.1"
    renamed_last = index.prepare_add(entry_from_file(early), target, ts, 1, staged=early)
    renamed_first = index.prepare_add(entry_from_file(late), target, ts, 2, staged=late)
    os.replace(late, target)
    os.replace(early, target)
    assert not index.commit_add(renamed_first)
    assert index.commit_add(renamed_last)
    assert index.stats()["pending"] == 0
    index.close()
    config = node_config(tmp_path)
    config.database = tmp_path / "index.sqlite"
    assert indexed_name(config, str(dcmread(target).SOPInstanceUID)) == "Second^Version"


def test_known_parent_rows_are_forgotten_when_another_connection_writes(tmp_path: Path) -> None:
    """The writer skips the patient/study/series lookups for a burst of one series; a
    second process deleting that series meanwhile must not leave it pointing nowhere."""
    sources = write_corpus(tmp_path / "in", 3, "small")  # one series
    database = tmp_path / "index.sqlite"
    ours, theirs = SQLiteIndex(database), SQLiteIndex(database)

    def add(index: SQLiteIndex, source: Path) -> None:
        staged = tmp_path / "staged.part"
        staged.write_bytes(source.read_bytes())
        target = tmp_path / "store" / source.name
        target.parent.mkdir(exist_ok=True)
        token = index.prepare_add(
            entry_from_file(staged), target, "1.2.840.10008.1.2.1", 1, staged=staged
        )
        os.replace(staged, target)
        assert index.commit_add(token)

    add(ours, sources[0])
    add(ours, sources[1])  # the parents known from here on
    uids = [uid for uid, _ in ours.paths()]
    for uid in uids:
        assert theirs.remove(uid)  # the series, study and patient go with the last one
    assert theirs.stats()["series"] == 0
    add(ours, sources[2])
    assert ours.stats() == {"patients": 1, "studies": 1, "series": 1, "instances": 1, "pending": 0}
    ours.close()
    theirs.close()


def test_an_index_of_the_previous_version_opens_and_settles_its_intents(tmp_path: Path) -> None:
    """Rows without the file identity columns, intents carrying headers and no row yet
    (the two-transaction version's crash between rename and row): settled from the file."""
    import sqlite3

    (source,) = write_corpus(tmp_path / "in", 1, "small")
    database = tmp_path / "index.sqlite"
    SQLiteIndex(database).open()
    placed = tmp_path / "store" / "placed.dcm"
    placed.parent.mkdir()
    placed.write_bytes(source.read_bytes())
    status = placed.stat()
    db = sqlite3.connect(database, isolation_level=None)
    for column in ("device", "inode", "file_size"):
        db.execute(f"ALTER TABLE instance DROP COLUMN {column}")
    db.execute("DROP TABLE pending")
    db.execute(
        "CREATE TABLE pending (pk INTEGER PRIMARY KEY, sop_instance_uid TEXT NOT NULL, "
        "path TEXT NOT NULL, replaces TEXT, device INTEGER, inode INTEGER, file_size INTEGER, "
        "transfer_syntax TEXT, size INTEGER, header BLOB, header_implicit INTEGER)"
    )
    uid = str(dcmread(source).SOPInstanceUID)
    db.execute(
        "INSERT INTO pending (sop_instance_uid, path, device, inode, file_size, header) "
        "VALUES (?, ?, ?, ?, ?, x'00')",
        (uid, str(placed), status.st_dev, status.st_ino, status.st_size),
    )
    db.close()

    index = SQLiteIndex(database)
    outcome = index.reconcile()
    assert (outcome.completed, outcome.dropped) == (1, 0)
    assert dict(index.paths()) == {uid: placed}
    assert index.stats()["pending"] == 0
    index.close()


# --------------------------------------------------------------------------- failures


class FailingConnection:
    """The writer connection, failing as a full disk would at one kind of statement."""

    def __init__(self, real: Any, failing: str) -> None:
        self._real = real
        self._failing = failing

    def execute(self, sql: str, *args: Any) -> Any:
        import sqlite3

        if sql.startswith(self._failing):
            raise sqlite3.OperationalError("database or disk is full")
        return self._real.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.mark.parametrize("fsync", [True, False], ids=["fsync", "no-fsync"])
@pytest.mark.parametrize(
    "failing", ["INSERT INTO pending", "INSERT INTO instance"], ids=["intent", "row"]
)
def test_a_failing_index_write_is_a700_and_keeps_no_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failing: str,
    fsync: bool,
) -> None:
    sources = write_corpus(tmp_path / "in", 1, "ct", rows=16, columns=16)
    config = node_config(tmp_path / "store", fsync=fsync)
    real_connect = SQLiteIndex._connect

    def connect(self: SQLiteIndex) -> Any:
        db = real_connect(self)
        if not isinstance(db, FailingConnection):
            self._writer = FailingConnection(db, failing)  # type: ignore[assignment]
        return self._writer

    monkeypatch.setattr(SQLiteIndex, "_connect", connect)
    events: list[tuple[Any, ...]] = []
    wire = WireSpy(events).install(monkeypatch)
    with caplog.at_level(logging.ERROR, logger="dicomwire"):
        statuses = run_bounded(send(config, sources))
    monkeypatch.undo()

    assert statuses == [0xA700]
    (response,) = wire.responses
    assert response.error_comment == b"index write failed"  # the log says why
    assert stored(config.storage.root) == []
    assert rows(config) == {}
    assert "database or disk is full" in caplog.text and "no file kept" in caplog.text


# --------------------------------------------------------------------------- duplicates


@pytest.mark.parametrize(
    ("policy", "status", "kept"),
    [("overwrite", 0, "Second^Version"), ("keep", 0, None), ("reject", 0x0111, None)],
)
def test_duplicates_keep_file_and_row_consistent(
    tmp_path: Path, policy: str, status: int, kept: str | None
) -> None:
    first, second = versions(tmp_path / "in", 2)
    config = node_config(tmp_path / "store", fsync=False, duplicates=policy)
    assert run_bounded(send(config, first)) == [0, 0]
    assert run_bounded(send(config, second)) == [status, status]
    files = assert_consistent(config)
    assert len(files) == 2
    expected = kept or str(dcmread(first[0]).PatientName)
    assert {str(dcmread(p).PatientName) for p in files.values()} == {expected}


def test_an_overwrite_under_another_path_removes_the_earlier_copy(tmp_path: Path) -> None:
    (first,), (second,) = versions(tmp_path / "in")
    config = node_config(
        tmp_path / "store", fsync=False, layout="{CallingAETitle}/{SOPInstanceUID}.dcm"
    )
    assert run_bounded(send(config, [first], calling="FIRSTAE")) == [0]
    assert run_bounded(send(config, [second], calling="SECONDAE")) == [0]
    files = assert_consistent(config)
    (path,) = files.values()
    assert path.parent.name == "SECONDAE"


def test_discarding_indexes_nothing(tmp_path: Path) -> None:
    sources = write_corpus(tmp_path / "in", 2, "small")
    config = node_config(tmp_path / "store", discard=True)
    config.database = tmp_path / "db.sqlite"
    assert run_bounded(send(config, sources)) == [0, 0]
    assert rows(config) == {}
    assert not (tmp_path / "store").exists()


# --------------------------------------------------------------------------- the node


def test_the_default_node_serves_query_retrieve_and_creates_nothing_before_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    node = Node(NodeConfig(host=LOCALHOST, port=0, shutdown_grace=1.0))
    assert [s.name for s in node.services] == [
        "verification",
        "storage",
        "query-retrieve",
        "storage-commitment",
        "worklist",
        "mpps",
        "audit",
    ]
    qr = node.service("query-retrieve")
    assert isinstance(qr, QueryRetrieve)
    assert qr.index is node.service("storage").index  # type: ignore[attr-defined]
    assert node.service("storage-commitment").index is qr.index  # type: ignore[attr-defined]
    assert list(tmp_path.iterdir()) == []

    async def started() -> None:
        async with node:
            pass

    run_bounded(started())
    assert (tmp_path / "data" / ".dicomwire" / "node.sqlite").is_file()


def test_query_retrieve_table_is_read_from_toml(tmp_path: Path) -> None:
    assert SERVICE_TYPES["query_retrieve"] is QueryRetrieve
    toml = tmp_path / "node.toml"
    toml.write_text(
        f'database = "{tmp_path / "q.sqlite"}"\n[query_retrieve]\nmax_find_responses = 7\n'
    )
    config = load_config(toml)
    assert config.sections["query_retrieve"] == QueryRetrieveConfig(max_find_responses=7)
    qr = Node(config).service("query-retrieve")
    assert isinstance(qr, QueryRetrieve) and qr.config.max_find_responses == 7
    assert database_path(config) == tmp_path / "q.sqlite"


def test_storescu_into_serve_rows_match_the_files(tmp_path: Path) -> None:
    storescu = find_dcmtk_tool("storescu")
    sources = write_corpus(tmp_path / "in", 4, "ct", rows=32, columns=32)
    sources += write_corpus(tmp_path / "in", 3, "small")
    root, database = tmp_path / "store", tmp_path / "db" / "node.sqlite"
    with serve_processes(tmp_path) as serve:
        node = serve("--storage", root, "--database", database, "--port", "0", "-v")
        assert f"Q/R index {database}" in node.output()
        sent = subprocess.run(
            [storescu, "-aec", NODE_AE, LOCALHOST, str(node.port), *map(str, sources)],
            capture_output=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr.decode(errors="replace")
        node.process.terminate()
        node.process.wait(timeout=15)
    config = node_config(root)
    config.database = database
    files = assert_consistent(config)
    assert len(files) == len(sources)
    index = SQLiteIndex(database)
    study = Dataset()
    study.QueryRetrieveLevel = "STUDY"
    study.StudyInstanceUID = ""
    study.NumberOfStudyRelatedInstances = ""
    answers = list(index.find("STUDY", study))
    assert sum(int(a.NumberOfStudyRelatedInstances) for a in answers) == len(sources)
    index.close()


# --------------------------------------------------------------------------- the CLI


def dicomwire(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_index_rebuild_and_stats_through_the_cli(tmp_path: Path) -> None:
    root = tmp_path / "store"
    sources = write_corpus(root / "x", 3, "small")
    (root / ".incoming").mkdir()
    (root / ".incoming" / "half.dcm").write_bytes(b"not yet")
    broken = root / "broken.dcm"
    broken.write_bytes(b"\x00" * 200)

    rebuilt = dicomwire("index", "rebuild", root)
    assert rebuilt.returncode == 1, rebuilt.stderr
    assert f"failed: {broken}: " in rebuilt.stderr
    assert "indexed 3 files" in rebuilt.stdout and "1 failed" in rebuilt.stdout
    stats = dicomwire("index", "stats", root)
    assert stats.returncode == 0, stats.stderr
    assert "3 instances, 0 pending" in stats.stdout

    broken.unlink()
    sources[0].unlink()
    database = tmp_path / "elsewhere.sqlite"
    again = dicomwire("index", "rebuild", root, "-v")
    assert again.returncode == 0, again.stderr
    assert f"indexed {sources[1]}" in again.stdout
    assert "2 instances (was 3)" in again.stdout
    assert dicomwire("index", "rebuild", root, "--database", database).returncode == 0
    assert {p.name for p in dict(SQLiteIndex(database).paths()).values()} == {
        sources[1].name,
        sources[2].name,
    }
    assert dicomwire("index", "stats", tmp_path / "nothing").returncode == 2
    assert dicomwire("index", "rebuild").returncode == 2


def test_concurrent_stores_of_many_instances_are_all_indexed(tmp_path: Path) -> None:
    sources = write_corpus(tmp_path / "in", 12, "small")
    config = node_config(tmp_path / "store")

    async def scenario() -> int:
        async with Node(config) as node:
            summary = await store_files(
                LOCALHOST,
                node.port,
                sources,
                called_ae_title=NODE_AE,
                associations=3,
                window=4,
                timeouts=SCU_TIMEOUTS,
            )
            await asyncio.sleep(0)
            return sum(1 for o in summary.outcomes if o.status == 0)

    assert run_bounded(scenario()) == len(sources)
    assert len(assert_consistent(config)) == len(sources)


# --------------------------------------------------------------------------- the header


def test_the_header_comes_from_the_stream_not_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sequences of undefined length, non-ASCII names: read from the bytes kept in memory;
    a header longer than them is read from the file."""
    from pydicom.sequence import Sequence

    from dicomwire.services.storage import scp

    read_from_file: list[Path] = []
    real = scp.entry_from_file

    def spy(path: Path) -> Any:
        read_from_file.append(path)
        return real(path)

    monkeypatch.setattr(scp, "entry_from_file", spy)
    (source,) = write_corpus(tmp_path / "in", 1, "ct", rows=16, columns=16)
    usual = dcmread(source)
    usual.SpecificCharacterSet = "ISO_IR 100"
    usual.PatientName = "Müller^Jürgen"
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator = "T-D1100", "SRT"
    usual.AnatomicRegionSequence = Sequence([item])
    long = dcmread(source)
    long.SOPInstanceUID = long.SOPInstanceUID + ".9"
    long.add_new(0x00090010, "LO", "DICOMWIRE TEST")  # a private block, then 80 KiB
    long.add_new(0x00091010, "OB", bytes(80 << 10))  # push Pixel Data beyond the bytes kept
    config = node_config(tmp_path / "store", fsync=False)
    paths = []
    for n, ds in enumerate((usual, long)):
        path = tmp_path / f"{n}.dcm"
        ds.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=True)
        paths.append(path)

    assert run_bounded(send(config, paths)) == [0, 0]
    assert len(read_from_file) == 1  # only the long header
    files = assert_consistent(config)
    assert indexed_name(config, str(usual.SOPInstanceUID)) == "Müller^Jürgen"
    assert len(files) == 2


def test_workers_share_one_index(tmp_path: Path) -> None:
    """``serve --workers 2``: the parent reconciles before the fork, each worker opens its
    own connections, and every instance sent over several associations is indexed."""
    from ..conftest import get_free_tcp_port

    sources = write_corpus(tmp_path / "in", 12, "small")
    root = tmp_path / "store"
    port = get_free_tcp_port()
    with serve_processes(tmp_path) as serve:
        node = serve("--storage", root, "--port", port, "--host", LOCALHOST, "--workers", "2")

        assert accepted_over_associations(port, sources, SCU_TIMEOUTS) == len(sources)
        node.process.terminate()
        node.process.wait(timeout=15)
    assert len(assert_consistent(node_config(root))) == len(sources)


def test_serve_refuses_to_start_when_the_index_cannot_be_opened(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    database = blocker / "node.sqlite"
    served = dicomwire(
        "serve", "--port", "0", "--storage", tmp_path / "store", "--database", database
    )
    assert served.returncode == 2
    assert f"cannot open the index {database}" in served.stderr


# --------------------------------------------------------------------------- concurrency


def test_concurrent_senders_are_each_refused_when_the_index_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several associations storing with fsync (the index written from several threads)
    into a failing index: every instance is answered A700, none hangs, no file is kept."""
    sources = write_corpus(tmp_path / "in", 12, "small")
    config = node_config(tmp_path / "store")
    real_connect = SQLiteIndex._connect

    def connect(self: SQLiteIndex) -> Any:
        db = real_connect(self)
        if not isinstance(db, FailingConnection):
            self._writer = FailingConnection(db, "INSERT INTO instance")  # type: ignore[assignment]
        return self._writer

    monkeypatch.setattr(SQLiteIndex, "_connect", connect)

    async def scenario() -> list[int]:
        async with Node(config) as node:
            summary = await store_files(
                LOCALHOST,
                node.port,
                sources,
                called_ae_title=NODE_AE,
                associations=3,
                window=4,
                retries=0,
                timeouts=SCU_TIMEOUTS,
            )
        return [int(o.status) if o.status is not None else -1 for o in summary.outcomes]

    assert run_bounded(scenario()) == [0xA700] * len(sources)
    monkeypatch.undo()
    assert stored(config.storage.root) == []
    assert rows(config) == {}
