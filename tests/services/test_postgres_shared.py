"""Several writers sharing one PostgreSQL database (docs/scale-out.md), on a real server.

What only a shared database has to get right: an instance stored through two indexes
(processes, nodes) at once is one row; an intent of a live writer is not settled by
another node's reconcile, a dead writer's is; a job is claimed by one runner of two
claiming at once; a C-FIND on one node sees what the other stored. The behaviour both
backends share is tested by test_index.py and test_jobs.py, parametrised over both.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian

import dicomwire
from dicomwire.services.database import open_index, open_job_queue
from dicomwire.services.index import entry_from_dataset
from dicomwire.services.node import Node, NodeConfig, database_path, load_config, prepare_node
from dicomwire.services.storage import StorageConfig, store_files
from dicomwire.testing.corpus import write_corpus
from dicomwire.ul.association import Timeouts
from tests.conftest import run_bounded
from tests.pg_peer import fresh_database, postgres  # noqa: F401 (the session's server)
from tests.services._support import (
    LOCALHOST,
    NODE_AE,
    NODE_TIMEOUTS,
    accepted_over_associations,
)

pytest.importorskip("psycopg")  # the fixture fails in CI when it is missing
from dicomwire.services.postgres import PostgresIndex, PostgresJobQueue

SCU_TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0)
FORK = multiprocessing.get_context("fork")


@pytest.fixture
def url(postgres: Any) -> Iterator[str]:  # noqa: F811 (the imported fixture)
    with fresh_database(postgres) as found:
        yield found


def instances(count: int, studies: int = 3) -> list[Dataset]:
    found = []
    for n in range(count):
        ds = Dataset()
        ds.PatientName = f"Shared^{n % studies}"
        ds.PatientID = f"S{n % studies}"
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1.{n % studies}"
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.1.{n % studies}.1"
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1.{n % studies}.1.{n}"
        ds.Modality = "OT"
        found.append(ds)
    return found


def _add_all(url: str, seed: int, rounds: int) -> None:  # runs in a child process
    index = PostgresIndex(url)
    data = instances(30)
    try:
        for _ in range(rounds):
            random.Random(seed).shuffle(data)
            for ds in data:
                index.add(ds, Path(f"/shared/{ds.SOPInstanceUID}.dcm"), ExplicitVRLittleEndian, 1)
            seed += 1
    finally:
        index.close()
    os._exit(0)


def test_two_processes_adding_the_same_instances_make_one_row_each(url: str) -> None:
    children = [FORK.Process(target=_add_all, args=(url, seed, 3)) for seed in (1, 2)]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
        assert child.exitcode == 0
    index = PostgresIndex(url)
    try:
        assert index.stats() == {
            "patients": 3,
            "studies": 3,
            "series": 3,
            "instances": 30,
            "pending": 0,
        }
        uids = [uid for uid, _ in index.paths()]
        assert sorted(uids) == sorted(str(ds.SOPInstanceUID) for ds in instances(30))
    finally:
        index.close()


def test_two_writers_placing_the_same_files_leave_one_row_per_file(
    url: str, tmp_path: Path
) -> None:
    """prepare, rename, commit through two indexes at once, onto the same paths: the row
    describes the file that won the rename, and no intent is left."""
    data = instances(20)
    root = tmp_path / "store"
    root.mkdir()
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        index = PostgresIndex(url)
        try:
            for ds in data:
                uid = str(ds.SOPInstanceUID)
                staged = tmp_path / f"{name}-{uid}.part"
                staged.write_bytes(name.encode() * 10)
                target = root / f"{uid}.dcm"
                token = index.prepare_add(
                    entry_from_dataset(ds),
                    target,
                    ExplicitVRLittleEndian,
                    20,
                    staged=staged,
                    durable=False,
                )
                os.replace(staged, target)
                index.commit_add(token)
        except BaseException as exc:
            errors.append(exc)
        finally:
            index.close()

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    index = PostgresIndex(url)
    try:
        rows = dict(index.paths())
        assert sorted(rows) == sorted(str(ds.SOPInstanceUID) for ds in data)
        assert all(path.exists() for path in rows.values())
        assert index.stats()["pending"] == 0
    finally:
        index.close()


def _prepare_and_die(url: str, target: str, place: bool) -> None:  # a child process
    index = PostgresIndex(url)
    staged = Path(target + ".part")
    staged.write_bytes(b"x" * 100)
    (ds,) = instances(1)
    ds.SOPInstanceUID = Path(target).stem
    index.prepare_add(
        entry_from_dataset(ds), Path(target), ExplicitVRLittleEndian, 100, staged=staged
    )
    if place:
        os.replace(staged, target)
    os._exit(0)  # a crash: the intent stays, the owner's lock goes with its connection


def test_reconcile_settles_dead_writers_intents_and_leaves_live_ones(
    url: str, tmp_path: Path
) -> None:
    placed, lost = str(tmp_path / "1.2.3.1.dcm"), str(tmp_path / "1.2.3.2.dcm")
    for target, place in ((placed, True), (lost, False)):
        child = FORK.Process(target=_prepare_and_die, args=(url, target, place))
        child.start()
        child.join(60)
        assert child.exitcode == 0
    live = PostgresIndex(url)
    other = PostgresIndex(url)
    try:
        (ds,) = instances(1)
        staged = tmp_path / "live.part"
        staged.write_bytes(b"y" * 10)
        target = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        token = live.prepare_add(
            entry_from_dataset(ds), target, ExplicitVRLittleEndian, 10, staged=staged
        )
        settled = other.reconcile()  # another node starting while "live" is mid-store
        assert (settled.completed, settled.dropped) == (1, 1)
        assert other.locate("1.2.3.1") == Path(placed)
        assert other.locate("1.2.3.2") is None
        assert other.stats()["pending"] == 1  # the live writer's intent is untouched
        os.replace(staged, target)
        assert live.commit_add(token)
        assert other.locate(str(ds.SOPInstanceUID)) == target
        assert other.stats()["pending"] == 0
    finally:
        live.close()
        other.close()


def _claim_all(url: str, owner: str, out: str) -> None:  # a child process
    queue = PostgresJobQueue(url)
    claimed = []
    while (job := queue.claim(["relay"], owner, lease=600)) is not None:
        claimed.append(job.id)
        queue.done(job.id)
    Path(out).write_text(" ".join(map(str, claimed)))
    queue.close()
    os._exit(0)


def test_two_runners_claiming_at_once_take_each_job_once(url: str, tmp_path: Path) -> None:
    queue = PostgresJobQueue(url)
    try:
        ids = {queue.put("relay", {"n": n}) for n in range(300)}
        outputs = [tmp_path / f"{owner}.txt" for owner in ("a", "b")]
        children = [
            FORK.Process(target=_claim_all, args=(url, out.stem, str(out))) for out in outputs
        ]
        for child in children:
            child.start()
        for child in children:
            child.join(120)
            assert child.exitcode == 0
        claims = [[int(i) for i in out.read_text().split()] for out in outputs]
        assert all(claims), "both runners took jobs"
        assert len(claims[0]) + len(claims[1]) == len(ids)
        assert set(claims[0]) | set(claims[1]) == ids
        assert {j.state for j in queue.jobs("relay")} == {"done"}
    finally:
        queue.close()


def test_the_factories_pick_the_backend_from_the_configuration(url: str, tmp_path: Path) -> None:
    shared = NodeConfig(storage=StorageConfig(root=tmp_path), database=url)
    index, jobs = open_index(shared), open_job_queue(shared)
    assert isinstance(index, PostgresIndex) and isinstance(jobs, PostgresJobQueue)
    assert "postgresql://" in str(index.path)
    jobs.close()
    local = open_index(NodeConfig(storage=StorageConfig(root=tmp_path)))
    assert type(local).__name__ == "SQLiteIndex"
    toml = tmp_path / "node.toml"
    toml.write_text(f'database = "{url}"\n[storage]\nroot = "{tmp_path}"\n')
    loaded = load_config(toml)
    assert loaded.database == url  # kept as written, not mangled into a path
    assert database_path(loaded) == tmp_path / ".dicomwire" / "node.sqlite"


def node_config(root: Path, url: str) -> NodeConfig:
    return NodeConfig(
        ae_titles=[NODE_AE],
        host=LOCALHOST,
        port=0,
        storage=StorageConfig(root=root, fsync=False),
        timeouts=NODE_TIMEOUTS,
        shutdown_grace=1.0,
        database=url,
    )


def test_two_nodes_share_one_index(url: str, tmp_path: Path) -> None:
    """Node A stores, node B answers the C-FIND; the same instances stored again through
    B stay one row each, whose file is where the row says."""
    sources = write_corpus(tmp_path / "in", 8, "small")
    configs = [node_config(tmp_path / name, url) for name in ("a", "b")]
    for config in configs:
        prepare_node(config)

    async def scenario() -> list[Dataset]:
        async with Node(configs[0]) as a, Node(configs[1]) as b:
            for node in (a, b):
                summary = await store_files(
                    LOCALHOST,
                    node.port,
                    sources,
                    called_ae_title=NODE_AE,
                    timeouts=SCU_TIMEOUTS,
                    retries=0,
                )
                assert [o.status for o in summary.outcomes] == [0] * len(sources)
                if node is b:
                    break
                async with dicomwire.connect(
                    LOCALHOST, b.port, called_ae=NODE_AE, services=["find"], timeouts=SCU_TIMEOUTS
                ) as client:
                    query = {
                        "QueryRetrieveLevel": "STUDY",
                        "StudyInstanceUID": "",
                        "NumberOfStudyRelatedInstances": "",
                    }
                    found = [match async for match in client.find(query)]
                    await asyncio.sleep(0)
            return found

    found = run_bounded(scenario(), 60)
    assert sum(int(s.NumberOfStudyRelatedInstances) for s in found) == len(sources)
    index = PostgresIndex(url)
    try:
        rows = dict(index.paths())
        assert index.stats()["instances"] == len(sources) and index.stats()["pending"] == 0
    finally:
        index.close()
    expected = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in sources}
    assert set(rows) == expected
    files = [
        p for c in configs for p in c.storage.root.rglob("*.dcm") if ".incoming" not in p.parts
    ]
    assert sorted(map(str, files)) == sorted(map(str, rows.values()))  # one file per row


def _step_dataset(status: str) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PatientName = "Step^Patient"
    return ds


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_mpps_steps_behave_alike_and_are_shared(backend: str, tmp_path: Path, request: Any) -> None:
    """The same step store behaviour on both backends; with PostgreSQL, two nodes' stores
    see one step: created through one, updated through the other, created twice refused."""
    from dicomwire.services.mpps.store import StepStore

    if backend == "sqlite":
        path = tmp_path / "node.sqlite"
        first, second = StepStore(path), StepStore(path)
    else:
        from dicomwire.services.postgres.mpps import PostgresStepStore

        shared = request.getfixturevalue("url")
        first, second = PostgresStepStore(shared), PostgresStepStore(shared)
    try:
        assert first.insert("1.2.3", "IN PROGRESS", _step_dataset("IN PROGRESS"), "MODALITY")
        assert not second.insert("1.2.3", "IN PROGRESS", _step_dataset("IN PROGRESS"), "OTHER")
        assert second.exists("1.2.3") and not second.exists("9.9")
        second.update("1.2.3", "COMPLETED", _step_dataset("COMPLETED"))
        step = first.get("1.2.3")
        assert step is not None and step.finished and step.calling_ae == "MODALITY"
        assert str(step.dataset.PatientName) == "Step^Patient"
        assert step.updated >= step.created
        assert first.insert("1.2.4", "IN PROGRESS", _step_dataset("IN PROGRESS"), "MODALITY")
        assert [s.uid for s in second.steps()] == ["1.2.3", "1.2.4"]
        assert [s.uid for s in second.steps("IN PROGRESS")] == ["1.2.4"]
        assert first.get("9.9") is None
    finally:
        first.close()
        second.close()


WORKLIST_QUERIES: list[tuple[dict[str, str], dict[str, str]]] = [
    ({}, {"Modality": "CT", "ScheduledStationAETitle": "CT1"}),
    ({"PatientName": "doe*"}, {}),
    ({"PatientName": "MÜLLER^JÜRGEN"}, {}),
    ({}, {"ScheduledProcedureStepStartDate": "20261129-20261130"}),
    ({}, {"ScheduledStationAETitle": "CT2\\MR1"}),
    ({"AccessionNumber": "A?"}, {"ScheduledStationName": "CTROOM*"}),
    ({"PatientID": "P2001"}, {}),
]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_worklist_stores_answer_alike_and_are_shared(
    backend: str, tmp_path: Path, request: Any
) -> None:
    """Every query answers what the matcher alone answers, on both backends; with
    PostgreSQL, an entry added or changed through one node's store is seen by another's."""
    from dicomwire.services.matching import compile_query
    from dicomwire.services.worklist import SQLiteWorklistStore
    from dicomwire.services.worklist.service import LIST_KEYS
    from tests.services.test_worklist import step_query
    from tests.services.test_worklist_data import accessions, entries

    if backend == "sqlite":
        path = tmp_path / "node.sqlite"
        first: Any = SQLiteWorklistStore(path)
        second: Any = SQLiteWorklistStore(path)
    else:
        from dicomwire.services.postgres.worklist import PostgresWorklistStore

        shared = request.getfixturevalue("url")
        first, second = PostgresWorklistStore(shared), PostgresWorklistStore(shared)
    try:
        for dataset in entries():
            first.add(dataset)
        for top, step in WORKLIST_QUERIES:
            identifier = step_query(**step)
            for keyword, value in top.items():
                setattr(identifier, keyword, value)
            query = compile_query(identifier, list_keys=LIST_KEYS)
            expected = accessions([e for e in entries() if query.matches(e)])
            assert accessions(second.find([query])) == expected, (top, step)
        changed = entries()[0]
        changed.AccessionNumber = "A1-NEW"
        key = second.add(changed)  # replaces the entry with its key
        assert len(first.entries()) == 5
        assert "A1-NEW" in [str(e.dataset.get("AccessionNumber", "")) for e in first.entries()]
        assert first.set_step_status(str(changed.StudyInstanceUID), "S1", "COMPLETED") == 1
        (done,) = [e for e in second.entries() if e.key == key]
        assert done.dataset.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == (
            "COMPLETED"
        )
        assert second.remove(key) == 1 and len(first.entries()) == 4
    finally:
        first.close()
        second.close()


def test_serve_workers_share_the_postgresql_index(url: str, tmp_path: Path) -> None:
    """``dicomwire serve --config`` with ``database = "postgresql://..."`` and two worker
    processes (each opens its own pool after the fork): every instance sent over several
    associations is one row, its file where the row says; the banner hides no password
    because there is none, and names the URL."""
    from tests.conftest import get_free_tcp_port
    from tests.services._support import serve_processes

    sources = write_corpus(tmp_path / "in", 12, "small")
    root = tmp_path / "store"
    port = get_free_tcp_port()
    config = tmp_path / "node.toml"
    config.write_text(
        f'ae_titles = ["{NODE_AE}"]\nhost = "{LOCALHOST}"\nport = {port}\nworkers = 2\n'
        f'database = "{url}"\n[storage]\nroot = "{root}"\nfsync = false\n'
    )
    with serve_processes(tmp_path) as serve:
        node = serve("--config", config)
        assert url in node.output()

        assert accepted_over_associations(port, sources, SCU_TIMEOUTS) == len(sources)
        node.process.terminate()
        node.process.wait(timeout=15)
    index = PostgresIndex(url)
    try:
        rows = dict(index.paths())
        assert index.stats()["pending"] == 0
    finally:
        index.close()
    assert len(rows) == len(sources) and all(path.exists() for path in rows.values())
    assert all(path.is_relative_to(root) for path in rows.values())


def test_a_database_restart_fails_no_request(postgres: Any, url: str) -> None:  # noqa: F811
    """Pooled connections the restart closed are replaced before any work is sent."""
    index, queue = PostgresIndex(url), PostgresJobQueue(url)
    try:
        first, second = instances(2)
        index.add(first, Path("/shared/1.dcm"), ExplicitVRLittleEndian, 1)
        queue.put("relay", {})
        postgres.restart()
        index.add(second, Path("/shared/2.dcm"), ExplicitVRLittleEndian, 1)
        assert index.locate(str(first.SOPInstanceUID)) == Path("/shared/1.dcm")
        assert queue.claim(["relay"], "a", 60) is not None
    finally:
        index.close()
        queue.close()


def test_dcmtk_stores_through_one_serve_and_finds_through_another(url: str, tmp_path: Path) -> None:
    """Real peers on both sides: DCMTK ``storescu`` into node A, ``findscu`` on node B
    (two ``dicomwire serve`` processes, one PostgreSQL); the same files sent again through
    B are still one row and one file each."""
    import subprocess

    from tests.conftest import find_dcmtk_tool
    from tests.services._support import serve_processes

    storescu, findscu = find_dcmtk_tool("storescu"), find_dcmtk_tool("findscu")
    sources = write_corpus(tmp_path / "in", 3, "ct", rows=32, columns=32)
    sources += write_corpus(tmp_path / "in", 4, "small")
    roots = [tmp_path / "a", tmp_path / "b"]
    configs = []
    for root in roots:
        config = tmp_path / f"{root.name}.toml"
        config.write_text(
            f'ae_titles = ["{NODE_AE}"]\nhost = "{LOCALHOST}"\nport = 0\n'
            f'database = "{url}"\n[storage]\nroot = "{root}"\nfsync = false\n'
        )
        configs.append(config)

    def store(port: int) -> None:
        sent = subprocess.run(
            [storescu, "-aec", NODE_AE, LOCALHOST, str(port), *map(str, sources)],
            capture_output=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr.decode(errors="replace")

    with serve_processes(tmp_path) as serve:
        a, b = serve("--config", configs[0]), serve("--config", configs[1])
        store(a.port)
        answers = tmp_path / "answers"
        answers.mkdir()
        keys = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "NumberOfStudyRelatedInstances"]
        found = subprocess.run(
            [findscu, "-S", "-aec", NODE_AE, "-X", "-od", str(answers)]
            + [arg for key in keys for arg in ("-k", key)]
            + [LOCALHOST, str(b.port)],
            capture_output=True,
            timeout=60,
        )
        assert found.returncode == 0, found.stderr.decode(errors="replace")
        studies = [dcmread(p) for p in sorted(answers.iterdir())]
        assert sum(int(s.NumberOfStudyRelatedInstances) for s in studies) == len(sources)
        store(b.port)
    index = PostgresIndex(url)
    try:
        rows = dict(index.paths())
    finally:
        index.close()
    files = [p for root in roots for p in root.rglob("*.dcm") if ".incoming" not in p.parts]
    assert len(rows) == len(sources)
    assert sorted(map(str, files)) == sorted(map(str, rows.values()))


def test_commit_add_flushes_synchronously_only_for_durable_additions(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row written after the rename commits with ``synchronous_commit = off`` when the
    addition is not durable (as its intent, and SQLite's ``synchronous=NORMAL``): one WAL
    flush less per instance; a durable addition keeps its synchronous commit. Either way
    the row is visible to another connection as soon as ``commit_add`` returns."""
    from dicomwire.services.postgres import index as postgres_index

    settings: list[str] = []
    complete = postgres_index._complete

    def spying(conn: Any, token: int, staged: Any, storage: Any) -> str:
        settings.append(conn.execute("SHOW synchronous_commit").fetchone()[0])
        return complete(conn, token, staged, storage)

    monkeypatch.setattr(postgres_index, "_complete", spying)
    writer, reader = PostgresIndex(url), PostgresIndex(url)
    try:
        for ds, durable in zip(instances(2), (False, True), strict=True):
            staged = tmp_path / f"{ds.SOPInstanceUID}.part"
            staged.write_bytes(b"x" * 20)
            target = tmp_path / f"{ds.SOPInstanceUID}.dcm"
            token = writer.prepare_add(
                entry_from_dataset(ds),
                target,
                ExplicitVRLittleEndian,
                20,
                staged=staged,
                durable=durable,
            )
            os.replace(staged, target)
            assert writer.commit_add(token)
            assert reader.locate(str(ds.SOPInstanceUID)) == target
    finally:
        writer.close()
        reader.close()
    assert settings == ["off", "on"]


def test_commit_and_reconcile_check_files_through_the_index_backend(
    url: str, tmp_path: Path
) -> None:
    """The PostgreSQL index asks its storage backend, not the local filesystem, whether a
    placed file is there (docs/scale-out.md, storage behind an interface): an addition whose
    file the backend does not vouch for is dropped at commit, and so is a dead writer's
    intent at reconcile, though the bytes are on the local disk."""
    from dicomwire.services.storage.backend import FileSystemStorage

    asked: list[str] = []

    class Elsewhere(FileSystemStorage):
        """A store that takes the staged files but holds no placed object under the
        local paths (say, an object store that lost them)."""

        def identity(self, key: Path | str) -> Any:
            if str(key).endswith(".part"):
                return super().identity(key)
            asked.append(str(key))
            return None

        def exists(self, key: Path | str) -> bool:
            asked.append(str(key))
            return False

    first, second = instances(2)
    root = tmp_path / "store"
    root.mkdir()

    def placed(index: PostgresIndex, ds: Dataset) -> tuple[int, Path]:
        staged, target = tmp_path / f"{ds.SOPInstanceUID}.part", root / f"{ds.SOPInstanceUID}.dcm"
        staged.write_bytes(b"x" * 20)
        token = index.prepare_add(
            entry_from_dataset(ds), target, ExplicitVRLittleEndian, 20, staged=staged
        )
        os.replace(staged, target)
        return token, target

    index = PostgresIndex(url)
    index.backend = Elsewhere()
    dead = PostgresIndex(url)
    try:
        token, target = placed(index, first)
        assert target.exists() and not index.commit_add(token)
        assert str(target) in asked
        _, orphan = placed(dead, second)  # its writer dies before committing
        dead.close()
        asked.clear()
        index.reconcile()
        assert str(orphan) in asked
        assert dict(index.paths()) == {}
        assert index.stats()["pending"] == 0
    finally:
        index.close()


def test_worklist_cli_manages_a_cluster_nodes_shared_entries(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dicomwire worklist add|list|remove`` with ``--config`` of a node whose database is
    a PostgreSQL URL (or ``--database URL``) works on the entries every node serves, not
    on a SQLite file beside the storage root."""
    import json

    from dicomwire.services.cli import main
    from dicomwire.services.postgres.worklist import PostgresWorklistStore
    from tests.services.test_worklist_data import entries

    config = tmp_path / "node.toml"
    config.write_text(f'database = "{url}"\n\n[storage]\nroot = "{tmp_path / "store"}"\n')
    source = tmp_path / "entry.json"
    source.write_text(json.dumps(entries()[0].to_json_dict()))
    assert main(["worklist", "add", str(source), "--config", str(config)]) == 0
    shared = PostgresWorklistStore(url)
    try:
        (entry,) = shared.entries()
        assert str(entry.dataset.PatientName) == "DOE^JOHN"
        assert not (tmp_path / "store" / ".dicomwire" / "node.sqlite").exists()
        capsys.readouterr()
        assert main(["worklist", "list", "--database", url]) == 0
        assert "DOE^JOHN" in capsys.readouterr().out
        assert main(["worklist", "remove", entry.key, "--database", url]) == 0
        assert shared.entries() == []
    finally:
        shared.close()
