"""Three ``dicomwire serve`` nodes behind HAProxy sharing one PostgreSQL (docs/scale-out.md).

Real components only, on 127.0.0.1: the session's throwaway PostgreSQL (tests/pg_peer.py),
HAProxy with the DICOM health check and three nodes started by
:class:`dicomwire.services.cluster.Cluster`, DCMTK ``storescu`` senders and a DCMTK
``storescp`` as the C-MOVE destination. One cluster for the module; the tests run in
order (the second kills a node and starts it again, the third kills another for good).
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dicomwire.services.client import connect
from dicomwire.services.cluster import (
    HEALTH_CHECK_AE_TITLE,
    Cluster,
    haproxy_config,
    haproxy_server_states,
    health_check_release,
    health_check_request,
)
from dicomwire.ul.pdu import AAssociateRQ, decode
from tests.conftest import (
    LOCALHOST,
    find_dcmtk_tool,
    find_tool,
    get_free_tcp_port,
    run_bounded,
    stop_process,
    wait_for_port,
)
from tests.pg_peer import fresh_database, postgres  # noqa: F401 (the session's server)

NODE_AE = "DICOMWIRE"
MOVE_DESTINATION = "MOVEDEST"
REQUESTER = "COMMITTER"
#: A report is owed this long after the N-ACTION: time to kill the node that accepted it.
REPORT_DELAY = 3.0
#: DCMTK leaves Nagle's algorithm on unless told: 40 ms per C-STORE otherwise.
SENDER_ENV = {**os.environ, "TCP_NODELAY": "1"}
CONFIRMED = re.compile(r"Sending file: (\S+)\n(?:.*\n)*?.*Received Store Response \(Success\)")


@dataclass
class Run:
    """One sender's files: one study; each file's SOP Instance UID."""

    study: str
    uids: dict[Path, str]

    @property
    def files(self) -> list[Path]:
        return list(self.uids)


def make_runs(directory: Path, runs: int, per_run: int) -> list[Run]:
    """``runs`` studies of ``per_run`` distinct instances (pydicom's MR_small, new UIDs)."""
    source = dcmread(get_testdata_file("MR_small.dcm"))  # type: ignore[arg-type]
    studies = []
    for run in range(runs):
        study, series = generate_uid(), generate_uid()
        files: dict[Path, str] = {}
        for number in range(per_run):
            instance = copy.deepcopy(source)
            instance.StudyInstanceUID, instance.SeriesInstanceUID = study, series
            instance.SOPInstanceUID = generate_uid()
            instance.file_meta.MediaStorageSOPInstanceUID = instance.SOPInstanceUID
            instance.InstanceNumber = number + 1
            path = directory / f"run{run:02d}" / f"{number:03d}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            instance.save_as(path)
            files[path] = str(instance.SOPInstanceUID)
        studies.append(Run(study, files))
    return studies


def storescu(port: int, files: list[Path], sender: str) -> tuple[int, set[Path]]:
    """One DCMTK ``storescu`` run: its exit status and the files it saw confirmed."""
    command = [find_dcmtk_tool("storescu"), "-v", "-aet", sender, "-aec", NODE_AE]
    done = subprocess.run(
        [*command, LOCALHOST, str(port), *map(str, files)],
        env=SENDER_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    return done.returncode, {Path(name) for name in CONFIRMED.findall(output)}


def send_with_retries(port: int, files: list[Path], sender: str) -> tuple[int, set[Path]]:
    """Send until a run succeeds (the whole run again: duplicates are one row each);
    the number of failed runs and every file any run saw confirmed."""
    confirmed: set[Path] = set()
    for failures in range(5):
        status, seen = storescu(port, files, sender)
        confirmed |= seen
        if status == 0 and seen == set(files):
            return failures, confirmed
    raise AssertionError(f"{sender}: storescu failed 5 times")


def index_rows(url: str) -> list[tuple[str, Path]]:
    from dicomwire.services.postgres import PostgresIndex

    index = PostgresIndex(url)
    try:
        return list(index.paths())
    finally:
        index.close()


def pending_intents(url: str) -> int:
    from dicomwire.services.postgres import PostgresIndex

    index = PostgresIndex(url)
    try:
        return index.stats()["pending"]
    finally:
        index.close()


def stored_files(root: Path) -> set[Path]:
    hidden = {".incoming", ".dicomwire"}
    return {p for p in root.rglob("*.dcm") if not hidden.intersection(p.relative_to(root).parts)}


def studies_found(port: int) -> dict[str, int]:
    """C-FIND at STUDY level: each study's number of instances."""

    async def query() -> dict[str, int]:
        async with connect(LOCALHOST, port, called_ae=NODE_AE, services=["find"]) as client:
            keys = {
                "QueryRetrieveLevel": "STUDY",
                "StudyInstanceUID": "",
                "NumberOfStudyRelatedInstances": "",
            }
            return {
                str(match.StudyInstanceUID): int(match.NumberOfStudyRelatedInstances)
                async for match in client.find(keys)
            }

    return run_bounded(query(), 30)


@pytest.fixture(scope="module")
def move_destination(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """DCMTK ``storescp`` as the C-MOVE destination: its port and output folder."""
    folder = tmp_path_factory.mktemp("moved")
    port = get_free_tcp_port()
    process = subprocess.Popen(
        [find_dcmtk_tool("storescp"), "-aet", MOVE_DESTINATION, "-od", str(folder), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield port, folder
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def cluster(
    postgres: Any,  # noqa: F811 (the imported fixture)
    move_destination: tuple[int, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Cluster, str, int]]:
    """Three nodes and HAProxy on one database; its URL and the requester's report port."""
    find_tool("haproxy", "apt-get install haproxy")
    report_port = get_free_tcp_port()
    tables = (
        f"[storage_commitment]\nreport_delay = {REPORT_DELAY}\nsame_association = false\n"
        "retry_first_delay = 0.5\n"
        f'[[nodes]]\nae_title = "{MOVE_DESTINATION}"\nhost = "{LOCALHOST}"\n'
        f'port = {move_destination[0]}\nservices = ["move-destination"]\n'
        f'[[nodes]]\nae_title = "{REQUESTER}"\nhost = "{LOCALHOST}"\n'
        f'port = {report_port}\nservices = ["storage-commitment"]\n'
    )
    with fresh_database(postgres) as url:
        directory = tmp_path_factory.mktemp("cluster")
        with Cluster(
            directory,
            nodes=3,
            database_url=url,
            check_interval=0.5,
            fsync=False,
            node_tables=tables,
        ) as running:
            yield running, url, report_port


def test_the_health_check_is_an_association_our_codec_builds() -> None:
    """The check's bytes decode as an A-ASSOCIATE-RQ from HAPROXY-CHECK proposing
    Verification, and the configuration sends them in hex, then the A-RELEASE-RQ."""
    request = decode(health_check_request(NODE_AE))
    assert isinstance(request, AAssociateRQ)
    assert request.calling_ae_title.strip() == HEALTH_CHECK_AE_TITLE
    assert request.called_ae_title.strip() == NODE_AE
    assert [c.abstract_syntax for c in request.presentation_contexts] == ["1.2.840.10008.1.1"]
    config = haproxy_config([(LOCALHOST, 104)], listen=(LOCALHOST, 11112), ae_title=NODE_AE)
    assert f"send-binary {health_check_request(NODE_AE).hex()}" in config
    assert f"send-binary {health_check_release().hex()}" in config
    assert "expect min-recv 1 rbinary ^02" in config
    assert "expect min-recv 1 rbinary ^06" in config
    checked = subprocess.run(
        [find_tool("haproxy", "apt-get install haproxy"), "-c", "-f", "/dev/stdin"],
        input=config.encode(),
        capture_output=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr.decode(errors="replace")


def test_ten_senders_through_haproxy_store_each_instance_once(
    cluster: tuple[Cluster, str, int], move_destination: tuple[int, Path], tmp_path: Path
) -> None:
    """10 parallel storescu runs of 100 files through HAProxy to 3 nodes: 1000 rows, one
    file each; C-FIND through every node and through HAProxy finds the 10 studies whole;
    a C-MOVE through HAProxy sends a study to storescp (from whichever node served it).
    The health checks (every 0.5 s on each node) leave no line in the nodes' ``-v`` log
    and no record in their audit trails."""
    running, url, _ = cluster
    runs = make_runs(tmp_path, 10, 100)
    with ThreadPoolExecutor(len(runs)) as senders:
        results = list(
            senders.map(
                lambda n: storescu(running.port, runs[n].files, f"SENDER{n}"), range(len(runs))
            )
        )
    assert [status for status, _ in results] == [0] * len(runs)
    assert all(
        confirmed == set(run.uids) for (_, confirmed), run in zip(results, runs, strict=True)
    )

    rows = index_rows(url)
    uids = {uid for run in runs for uid in run.uids.values()}
    assert len(rows) == len(uids) == 1000 and {uid for uid, _ in rows} == uids
    assert stored_files(running.storage_root) == {path for _, path in rows}
    expected = {run.study: 100 for run in runs}
    for port in [running.port, *(node.port for node in running.members)]:
        assert studies_found(port) == expected

    _, moved = move_destination
    study = runs[0].study

    async def move() -> Any:
        async with connect(LOCALHOST, running.port, called_ae=NODE_AE, services=["move"]) as c:
            return await c.move(
                {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}, MOVE_DESTINATION
            )

    result = run_bounded(move(), 60)
    assert result.ok and result.completed == 100 and result.failed == 0
    received = {dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in moved.iterdir()}
    assert received == set(runs[0].uids.values())
    audits = [running.directory / f"{node.name}-audit.log" for node in running.members]
    for node, audit in zip(running.members, audits, strict=True):
        assert HEALTH_CHECK_AE_TITLE not in node.log.read_text(errors="replace")
        assert HEALTH_CHECK_AE_TITLE not in audit.read_text(errors="replace")
        assert f"{NODE_AE}-{node.name}" in audit.read_text()  # its own trail, naming itself
    assert any("SENDER0" in audit.read_text() for audit in audits)


def test_the_dicom_check_takes_out_nodes_that_still_accept_tcp(
    cluster: tuple[Cluster, str, int], tmp_path: Path
) -> None:
    """What a plain TCP check would miss (docs/scale-out.md): a node whose AE title is not
    the one asked for rejects the check (A-ASSOCIATE-RJ), and a stopped node (SIGSTOP:
    the kernel still completes TCP handshakes) never answers; HAProxy takes both out and
    brings the stopped one back after SIGCONT. Real HAProxy processes, fast checks."""
    running, _, _ = cluster
    good, stuck = running.members[0], running.members[1]
    servers = [(LOCALHOST, good.port), (LOCALHOST, stuck.port)]
    haproxy = find_tool("haproxy", "apt-get install haproxy")
    fast = {"check_interval": 0.2, "check_timeout": 0.5}
    started = []
    for name, ae_title in (("right", NODE_AE), ("wrong", "NOT-THE-NODE")):
        config = tmp_path / f"{name}.cfg"
        socket_path = tmp_path / f"{name}.sock"
        listen = (LOCALHOST, get_free_tcp_port())
        config.write_text(
            haproxy_config(
                servers, listen=listen, ae_title=ae_title, stats_socket=socket_path, **fast
            )
        )
        process = subprocess.Popen(
            [haproxy, "-db", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append((process, socket_path))

    def states(socket_path: Path, wanted: dict[str, str]) -> dict[str, str]:
        found: dict[str, str] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                found = haproxy_server_states(socket_path)
            if found == wanted:
                break
            time.sleep(0.05)
        return found

    assert stuck.process is not None
    try:
        (_, right_socket), (_, wrong_socket) = started
        assert states(right_socket, {"node1": "UP", "node2": "UP"}) == {
            "node1": "UP",
            "node2": "UP",
        }
        os.kill(stuck.pid, signal.SIGSTOP)
        assert states(right_socket, {"node1": "UP", "node2": "DOWN"})["node2"] == "DOWN"
        with socket.create_connection((LOCALHOST, stuck.port), timeout=2):
            pass  # ...while the stopped node still accepts TCP connections
        os.kill(stuck.pid, signal.SIGCONT)
        assert states(right_socket, {"node1": "UP", "node2": "UP"})["node2"] == "UP"
        assert states(wrong_socket, {"node1": "DOWN", "node2": "DOWN"}) == {
            "node1": "DOWN",
            "node2": "DOWN",
        }
    finally:
        os.kill(stuck.pid, signal.SIGCONT)
        for process, _ in started:
            stop_process(process)
    running.wait_for_servers(up=3)  # the cluster's own HAProxy saw the stop too


def test_a_node_killed_under_the_senders_loses_nothing_confirmed(
    cluster: tuple[Cluster, str, int], tmp_path: Path
) -> None:
    """SIGKILL a node while 10 senders store through HAProxy: the failed runs are sent
    again (landing on the others: HAProxy's check takes the dead node out, a refused
    connection is redispatched), everything any storescu saw confirmed is indexed, and
    once the killed node is started again (its start-up reconcile settles the intents it
    left), every row's file exists and every file has its row."""
    running, url, _ = cluster
    before = {uid for uid, _ in index_rows(url)}
    runs = make_runs(tmp_path, 10, 100)
    victim = running.members[1]
    stored_enough = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(index_rows(url)) < len(before) + 150:
            time.sleep(0.05)
        running.kill(victim)
        stored_enough.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    with ThreadPoolExecutor(len(runs)) as senders:
        results = list(
            senders.map(
                lambda n: send_with_retries(running.port, runs[n].files, f"RETRY{n}"),
                range(len(runs)),
            )
        )
    watcher.join()
    assert stored_enough.is_set() and victim.process is not None
    assert victim.process.returncode == -9
    confirmed = set().union(*(seen for _, seen in results))
    assert confirmed == {path for run in runs for path in run.uids}

    running.start_node(victim)  # reconcile on start-up settles the dead process's intents
    running.wait_for_servers(up=3)
    rows = index_rows(url)
    assert pending_intents(url) == 0
    sent = {run.uids[path] for run in runs for path in run.uids if path in confirmed}
    assert sent <= {uid for uid, _ in rows}
    assert len(rows) == len(before) + len(sent)  # one row each, retries or not
    assert all(path.exists() for _, path in rows)
    assert stored_files(running.storage_root) == {path for _, path in rows}
    # the kill came while every sender was busy: some association was on the victim
    assert sum(failures for failures, _ in results) >= 1


def test_a_commitment_accepted_by_one_node_is_reported_by_another(
    cluster: tuple[Cluster, str, int], tmp_path: Path
) -> None:
    """``dicomwire commit`` asks node A (directly) for commitment; once the report job is
    in the shared queue A is SIGKILLed, and the report — owed REPORT_DELAY s later — comes
    from a surviving node whose job runner claimed it, on a new association to the
    requester's [[nodes]] entry."""
    import psycopg

    running, url, report_port = cluster
    first = make_runs(tmp_path, 1, 5)[0].files
    status, confirmed = storescu(running.port, first, "COMMITSTORE")
    assert status == 0 and confirmed == set(first)
    node_a = running.members[0]
    command = [sys.executable, "-m", "dicomwire.services.cli", "commit", "-aet", REQUESTER]
    command += ["-aec", NODE_AE, "--listen-port", str(report_port), "--timeout", "60", "-v"]
    requester = subprocess.Popen(
        [*command, LOCALHOST, str(node_a.port), *map(str, first)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with psycopg.connect(url, autocommit=True) as db:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                owed = db.execute(
                    "SELECT state FROM jobs WHERE kind = 'storage-commitment-report'"
                ).fetchall()
                if owed:
                    break
                time.sleep(0.02)
            assert owed == [("pending",)]
            # the job is committed before A answers the N-ACTION: kill A only once the
            # requester has its answer (its INFO line), else the request itself fails
            assert requester.stderr is not None
            told = []
            for line in requester.stderr:
                told.append(line)
                if "instances accepted by" in line:
                    break
            running.kill(node_a)
            output, errors = requester.communicate(timeout=90)
            errors = "".join(told) + errors
            assert requester.returncode == 0, output + errors
            assert output.count("committed:") == len(first)
            state = db.execute(
                "SELECT state FROM jobs WHERE kind = 'storage-commitment-report'"
            ).fetchall()
        assert state == [("done",)]
        assert node_a.process is not None and node_a.process.returncode == -9
    finally:
        if requester.poll() is None:
            requester.kill()
            requester.wait(timeout=10)


def test_dicomwire_cluster_starts_everything_and_stops_on_sigterm(tmp_path: Path) -> None:
    """``dicomwire cluster --nodes 2`` (its own throwaway PostgreSQL) prints how to send to
    it; echoscu through HAProxy succeeds; SIGTERM stops every process it started."""
    shutil.which("haproxy") or find_tool("haproxy", "apt-get install haproxy")
    command = [sys.executable, "-m", "dicomwire.services.cli", "cluster", "--nodes", "2"]
    process = subprocess.Popen(
        [*command, "--directory", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        text = "".join(lines)
        echo = re.search(r"echoscu -v -aec (\S+) (\S+) (\d+)", text)
        assert echo is not None, text + (process.stderr.read() if process.stderr else "")
        pids = [int(pid) for pid in re.findall(r"pid (\d+)", text)]
        assert len(pids) == 2
        done = subprocess.run(
            [find_dcmtk_tool("echoscu"), "-aec", echo[1], echo[2], echo[3]],
            capture_output=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        process.terminate()
        assert process.wait(timeout=60) == 0
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"
