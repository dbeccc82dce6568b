"""Storage commitment (PS3.4 J.3) between dicomwire nodes, and with pynetdicom scripts.

Each test runs a real node (Storage + StorageCommitment, its index filled by the storage
hook) on 127.0.0.1 and a free port; peers are dicomwire's own SCU (``commit``) and
pynetdicom's AE (the same-association requester, the requester that is down when its
report is due, raw N-ACTIONs whose statuses are read off the wire).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dicomwire.dimse.commands import Tag
from dicomwire.dimse.datasets import encode_dataset
from dicomwire.dimse.primitives import NActionRQ
from dicomwire.dimse.session import Request
from dicomwire.errors import DimseStatusError
from dicomwire.services.client import connect
from dicomwire.services.commitment import (
    REPORT_JOB,
    STORAGE_COMMITMENT_INSTANCE,
    STORAGE_COMMITMENT_SOP_CLASS,
    StorageCommitment,
    StorageCommitmentConfig,
    commit,
)
from dicomwire.services.directory import RemoteAE
from dicomwire.services.index import SQLiteIndex
from dicomwire.services.jobs import SQLiteJobQueue
from dicomwire.services.node import Node, NodeConfig, prepare_node
from dicomwire.services.storage import Storage, StorageConfig
from dicomwire.services.verification import Verification
from tests.conftest import LOCALHOST, get_free_tcp_port, run_bounded

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


# --------------------------------------------------------------------------- helpers


def make_files(directory: Path, count: int, source: str = "CT_small.dcm") -> list[Path]:
    """``count`` copies of a pydicom test file, each its own SOP instance."""
    directory.mkdir(parents=True, exist_ok=True)
    template = dcmread(get_testdata_file(source))
    files = []
    for number in range(count):
        uid = generate_uid()
        template.SOPInstanceUID = uid
        template.file_meta.MediaStorageSOPInstanceUID = uid
        path = directory / f"{source.split('.')[0]}-{number}.dcm"
        template.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def uids(path: Path) -> tuple[str, str]:
    """(SOP Class UID, SOP Instance UID) of a file."""
    dataset = dcmread(path, stop_before_pixels=True)
    return str(dataset.SOPClassUID), str(dataset.SOPInstanceUID)


def indexing_storage(root: Path, index: SQLiteIndex) -> StorageConfig:
    """Storage whose every stored instance is added to ``index`` (as the node will do)."""

    def on_stored(path: Path, request: Request) -> None:
        header = dcmread(path, stop_before_pixels=True)
        syntax = str(header.file_meta.TransferSyntaxUID)
        index.add(header, path, syntax, path.stat().st_size)

    return StorageConfig(root=root, fsync=False, on_stored=on_stored)


@contextlib.asynccontextmanager
async def commitment_node(
    directory: Path,
    *,
    nodes: Sequence[RemoteAE] = (),
    config: StorageCommitmentConfig | None = None,
    ae_title: str = "DICOMWIRE",
    port: int = 0,
) -> AsyncIterator[tuple[Node, StorageCommitment]]:
    """A node storing under ``directory`` with an index and storage commitment."""
    database = directory / "node.sqlite"
    directory.mkdir(parents=True, exist_ok=True)
    index = SQLiteIndex(database)
    storage = indexing_storage(directory / "store", index)
    node_config = NodeConfig(
        ae_titles=[ae_title],
        host=LOCALHOST,
        port=port,
        storage=storage,
        nodes=list(nodes),
        database=database,
        shutdown_grace=1.0,
    )
    prepare_node(node_config)
    service = StorageCommitment(
        config or StorageCommitmentConfig(retry_first_delay=0.2, retry_max_delay=0.5),
        index=index,
    )
    node = Node(node_config, services=[Verification(), Storage(storage), service])
    await node.start()
    try:
        yield node, service
    finally:
        await node.shutdown()
        index.close()


async def store(port: int, files: Sequence[Path], called_ae: str = "DICOMWIRE") -> None:
    async with connect(LOCALHOST, port, called_ae=called_ae, sending=files) as client:
        for path in files:
            assert (await client.store(path)).is_success


def pynetdicom_ae(ae_title: str = "PYSCU") -> Any:
    from pynetdicom import AE

    ae = AE(ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae


def action_dataset(transaction: str, pairs: Sequence[tuple[str, str]]) -> Dataset:
    dataset = Dataset()
    dataset.TransactionUID = transaction
    items = []
    for sop_class, sop_instance in pairs:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    dataset.ReferencedSOPSequence = items
    return dataset


class ReportCatcher:
    """A pynetdicom EVT_N_EVENT_REPORT handler keeping each report (calling AE included)."""

    def __init__(self, status: int = 0x0000) -> None:
        self.reports: list[tuple[str, int, Dataset]] = []
        self.arrived = threading.Event()
        self.status = status

    def __call__(self, event: Any) -> tuple[int, None]:
        information = event.event_information
        calling = event.assoc.requestor.ae_title
        calling = calling.decode() if isinstance(calling, bytes) else calling
        self.reports.append((calling.strip(), int(event.event_type), information))
        self.arrived.set()
        return self.status, None

    def wait(self, timeout: float = 20.0) -> tuple[str, int, Dataset]:
        assert self.arrived.wait(timeout), "no N-EVENT-REPORT arrived"
        return self.reports[-1]


def pynetdicom_listener(port: int, catcher: ReportCatcher, ae_title: str = "PYSCU") -> Any:
    """A pynetdicom server accepting the SCP role for storage commitment (reports)."""
    from pynetdicom import evt
    from pynetdicom.sop_class import StorageCommitmentPushModel

    ae = pynetdicom_ae(ae_title)
    ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    return ae.start_server(
        (LOCALHOST, port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, catcher)]
    )


def pynetdicom_action(
    port: int,
    dataset: Dataset | None,
    *,
    instance: str = STORAGE_COMMITMENT_INSTANCE,
    action_type: int = 1,
    catcher: ReportCatcher | None = None,
    ae_title: str = "PYSCU",
) -> tuple[Dataset, tuple[str, int, Dataset] | None]:
    """N-ACTION from pynetdicom; (status data set, the report if ``catcher`` waits on it).

    With ``catcher`` the association stays open until the report arrives on it.
    """
    from pynetdicom import evt
    from pynetdicom.sop_class import StorageCommitmentPushModel

    ae = pynetdicom_ae(ae_title)
    ae.add_requested_context(StorageCommitmentPushModel)
    handlers = [(evt.EVT_N_EVENT_REPORT, catcher)] if catcher is not None else []
    assoc = ae.associate(LOCALHOST, port, ae_title="DICOMWIRE", evt_handlers=handlers)
    assert assoc.is_established
    try:
        status, _ = assoc.send_n_action(dataset, action_type, StorageCommitmentPushModel, instance)
        report = catcher.wait() if catcher is not None and status.Status == 0 else None
        return status, report
    finally:
        assoc.release()


def failures(information: Dataset) -> dict[str, int]:
    return {
        str(item.ReferencedSOPInstanceUID): int(item.FailureReason)
        for item in information.get("FailedSOPSequence", [])
    }


def successes(information: Dataset) -> set[str]:
    return {str(i.ReferencedSOPInstanceUID) for i in information.get("ReferencedSOPSequence", [])}


# --------------------------------------------------------------------------- dicomwire SCU


def test_all_committed_on_the_same_association(tmp_path: Path) -> None:
    files = make_files(tmp_path / "in", 3)

    async def main() -> Any:
        async with commitment_node(tmp_path / "node") as (node, _):
            await store(node.port, files)
            return await commit((LOCALHOST, node.port), files, called_ae="DICOMWIRE", timeout=20)

    report = run_bounded(main(), 60)
    assert report.all_committed and report.event_type == 1 and report.same_association
    assert sorted(report.committed) == sorted((i, c) for c, i in map(uids, files))
    assert report.failed == [] and report.reporter == "DICOMWIRE"


def test_failure_reasons_on_a_new_association(tmp_path: Path) -> None:
    """0112 unknown, 0119 class conflict, 0110 file deleted, 0122 class not supported."""
    files = make_files(tmp_path / "in", 3)
    listen = get_free_tcp_port()
    entry = RemoteAE("MODALITY", LOCALHOST, listen)

    async def main() -> Any:
        config = StorageCommitmentConfig(same_association=False)
        async with commitment_node(tmp_path / "node", nodes=[entry], config=config) as (node, _):
            await store(node.port, files)
            stored = sorted((tmp_path / "node" / "store").rglob("*.dcm"))
            deleted_uid = uids(files[2])[1]
            next(p for p in stored if uids(p)[1] == deleted_uid).unlink()
            pairs = [uids(files[0]), (MR, uids(files[1])[1]), uids(files[2])]
            pairs += [(CT, "1.2.3.4.5.6.7.8.9"), ("1.2.3.999", "1.2.3.4.5.6.7.8.10")]
            return await commit(
                (LOCALHOST, node.port),
                pairs,
                called_ae="DICOMWIRE",
                calling_ae="MODALITY",
                listen_port=listen,
                timeout=20,
            )

    report = run_bounded(main(), 60)
    assert report.event_type == 2 and not report.all_committed
    assert not report.same_association and report.reporter == "DICOMWIRE"
    assert report.committed == [(uids(files[0])[1], CT)]
    assert {uid: reason for uid, _, reason in report.failed} == {
        uids(files[1])[1]: 0x0119,
        uids(files[2])[1]: 0x0110,
        "1.2.3.4.5.6.7.8.9": 0x0112,
        "1.2.3.4.5.6.7.8.10": 0x0122,
    }


def test_duplicate_transaction_uid_fails_every_instance_with_0131(tmp_path: Path) -> None:
    files = make_files(tmp_path / "in", 2)

    async def main() -> tuple[Any, Any, list[Any]]:
        async with commitment_node(tmp_path / "node") as (node, service):
            await store(node.port, files)
            first = await commit(
                (LOCALHOST, node.port), files, called_ae="DICOMWIRE", transaction_uid="1.2.3.77"
            )
            second = await commit(
                (LOCALHOST, node.port), files, called_ae="DICOMWIRE", transaction_uid="1.2.3.77"
            )
            assert service.jobs is not None
            return first, second, service.jobs.find(REPORT_JOB, "1.2.3.77")

    first, second, jobs = run_bounded(main(), 60)
    assert first.all_committed
    assert second.event_type == 2 and second.committed == []
    assert sorted(r for _, _, r in second.failed) == [0x0131, 0x0131]
    assert [job.state for job in jobs] == ["done", "done"]


def test_both_roles_in_one_node_and_an_unknown_transaction(tmp_path: Path) -> None:
    """Node A asks node B; B reports on a new association to A, which matches it to the
    transaction A started. A report nobody waits for is answered 0110 and logged."""
    files = make_files(tmp_path / "in", 2)
    port_a = get_free_tcp_port()

    async def main() -> tuple[Any, int]:
        entry = RemoteAE("NODE_A", LOCALHOST, port_a)
        config = StorageCommitmentConfig(same_association=False)
        async with (
            commitment_node(tmp_path / "a", ae_title="NODE_A", port=port_a) as (node_a, _),
            commitment_node(tmp_path / "b", ae_title="NODE_B", nodes=[entry], config=config) as (
                node_b,
                _,
            ),
        ):
            await store(node_b.port, files, called_ae="NODE_B")
            report = await commit(
                (LOCALHOST, node_b.port),
                files,
                called_ae="NODE_B",
                calling_ae="NODE_A",
                node=node_a,
                timeout=20,
            )

            def unknown() -> int:
                from pynetdicom.sop_class import StorageCommitmentPushModel

                ae = pynetdicom_ae("STRANGER")
                ae.add_requested_context(StorageCommitmentPushModel)
                assoc = ae.associate(LOCALHOST, port_a, ae_title="NODE_A")
                try:
                    info = action_dataset("1.2.3.4.999", [uids(files[0])])
                    status, _ = assoc.send_n_event_report(
                        info, 1, StorageCommitmentPushModel, STORAGE_COMMITMENT_INSTANCE
                    )
                    return int(status.Status)
                finally:
                    assoc.release()

            return report, await asyncio.to_thread(unknown)

    report, status = run_bounded(main(), 60)
    assert report.all_committed and not report.same_association and report.reporter == "NODE_B"
    assert status == 0x0110


def test_a_refused_n_action_raises_with_the_status(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            commitment_node(tmp_path / "node") as (node, _),
            connect(
                LOCALHOST, node.port, called_ae="DICOMWIRE", services=["storage-commitment"]
            ) as client,
        ):
            result = await client.n_action(
                STORAGE_COMMITMENT_SOP_CLASS, STORAGE_COMMITMENT_INSTANCE, 1, {}
            )
            assert result.status == 0x0120
            with pytest.raises(DimseStatusError) as caught:
                await commit(client, [(CT, "1.2.3")], transaction_uid="not a uid!")
            assert caught.value.status == 0x0115

    run_bounded(main(), 60)


# --------------------------------------------------------------------------- pynetdicom


def test_pynetdicom_gets_its_report_on_the_same_association(tmp_path: Path) -> None:
    files = make_files(tmp_path / "in", 2)

    async def main() -> tuple[Dataset, Any]:
        async with commitment_node(tmp_path / "node") as (node, _):
            await store(node.port, files)
            pairs = [uids(f) for f in files] + [(CT, "1.2.3.4.5.404")]
            catcher = ReportCatcher()
            return await asyncio.to_thread(
                pynetdicom_action, node.port, action_dataset("1.2.3.55", pairs), catcher=catcher
            )

    status, report = run_bounded(main(), 60)
    assert status.Status == 0 and report is not None
    _, event_type, information = report
    assert event_type == 2 and str(information.TransactionUID) == "1.2.3.55"
    assert successes(information) == {uids(f)[1] for f in files}
    assert failures(information) == {"1.2.3.4.5.404": 0x0112}


@pytest.mark.parametrize(
    ("dataset", "instance", "action_type", "status", "attributes"),
    [
        ("ok", "1.2.840.10008.1.20.1.2", 1, 0x0117, None),
        ("ok", STORAGE_COMMITMENT_INSTANCE, 2, 0x0123, None),
        ("no-transaction", STORAGE_COMMITMENT_INSTANCE, 1, 0x0120, [0x00081195]),
        ("empty-transaction", STORAGE_COMMITMENT_INSTANCE, 1, 0x0121, [0x00081195]),
        ("no-sequence", STORAGE_COMMITMENT_INSTANCE, 1, 0x0120, [0x00081199]),
        ("empty-sequence", STORAGE_COMMITMENT_INSTANCE, 1, 0x0121, [0x00081199]),
        ("item-without-instance", STORAGE_COMMITMENT_INSTANCE, 1, 0x0120, [0x00081155]),
    ],
)
def test_bad_n_actions_get_their_status_on_the_wire(
    tmp_path: Path,
    dataset: str,
    instance: str,
    action_type: int,
    status: int,
    attributes: list[int] | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    information = action_dataset("1.2.3.66", [(CT, "1.2.3.4")])
    if dataset == "no-transaction":
        del information.TransactionUID
    elif dataset == "empty-transaction":
        information.TransactionUID = ""
    elif dataset == "no-sequence":
        del information.ReferencedSOPSequence
    elif dataset == "empty-sequence":
        information.ReferencedSOPSequence = []
    elif dataset == "item-without-instance":
        del information.ReferencedSOPSequence[0].ReferencedSOPInstanceUID

    async def main() -> tuple[Dataset, list[Any], Any]:
        async with commitment_node(tmp_path / "node") as (node, service):
            answer, _ = await asyncio.to_thread(
                pynetdicom_action,
                node.port,
                information,
                instance=instance,
                action_type=action_type,
            )
            # pynetdicom keeps no Attribute Identifier List: read the command set ourselves
            async with connect(
                LOCALHOST, node.port, called_ae="DICOMWIRE", services=["storage-commitment"]
            ) as client:
                context = client.session.find_context(STORAGE_COMMITMENT_SOP_CLASS)
                request = NActionRQ(
                    STORAGE_COMMITMENT_SOP_CLASS,
                    instance,
                    action_type,
                    dataset=encode_dataset(information, context.transfer_syntax or ""),
                )
                operation = await client.session.send(request, context.context_id)
                command = (await operation.wait()).command
            assert service.jobs is not None
            return answer, service.jobs.jobs(REPORT_JOB), command

    with caplog.at_level(logging.WARNING, logger="dicomwire.services.commitment"):
        answer, jobs, command = run_bounded(main(), 60)
    assert answer.Status == status and command[Tag.Status] == status
    if attributes is not None:
        assert command[Tag.AttributeIdentifierList] == attributes
    assert jobs == []  # nothing owed for a refused request
    assert f"refused ({status:04X})" in caplog.text


def test_requester_down_then_back_and_a_node_restart(tmp_path: Path) -> None:
    """The requester's listener is down when the report is due: retried with backoff.
    The node is then restarted (same database) and the requester comes back: the report
    arrives, from the AE the N-ACTION was addressed to."""
    files = make_files(tmp_path / "in", 2)
    listen = get_free_tcp_port()
    entry = RemoteAE("PYSCU", LOCALHOST, listen)
    config = StorageCommitmentConfig(same_association=False, retry_first_delay=0.2)
    catcher = ReportCatcher()
    database = tmp_path / "node" / "node.sqlite"

    async def first_run() -> int:
        async with commitment_node(tmp_path / "node", nodes=[entry], config=config) as (node, _):
            await store(node.port, files)
            pairs = [uids(f) for f in files]
            answer, _ = await asyncio.to_thread(
                pynetdicom_action, node.port, action_dataset("1.2.3.88", pairs)
            )
            assert answer.Status == 0
            queue = SQLiteJobQueue(database)
            try:
                for _ in range(200):  # at least one attempt failed: the requester is down
                    jobs = queue.find(REPORT_JOB, "1.2.3.88")
                    if jobs and jobs[0].attempts >= 1:
                        return jobs[0].attempts
                    await asyncio.sleep(0.05)
            finally:
                queue.close()
            raise AssertionError("the report was never attempted")

    async def second_run() -> None:
        async with commitment_node(tmp_path / "node", nodes=[entry], config=config):
            await asyncio.to_thread(catcher.wait, 20)

    attempts = run_bounded(first_run(), 60)
    assert attempts >= 1 and not catcher.arrived.is_set()
    server = pynetdicom_listener(listen, catcher)
    try:
        run_bounded(second_run(), 60)
    finally:
        server.shutdown()
    calling, event_type, information = catcher.wait()
    assert calling == "DICOMWIRE" and event_type == 1
    assert successes(information) == {uids(f)[1] for f in files}
    queue = SQLiteJobQueue(database)
    try:
        assert [job.state for job in queue.find(REPORT_JOB, "1.2.3.88")] == ["done"]
    finally:
        queue.close()


def test_unreachable_requester_fails_after_the_attempts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entry = RemoteAE("PYSCU", LOCALHOST, get_free_tcp_port())
    config = StorageCommitmentConfig(
        same_association=False, retry_first_delay=0.05, retry_max_delay=0.05, max_attempts=2
    )

    async def main() -> Any:
        async with commitment_node(tmp_path / "node", nodes=[entry], config=config) as (
            node,
            service,
        ):
            answer, _ = await asyncio.to_thread(
                pynetdicom_action, node.port, action_dataset("1.2.3.99", [(CT, "1.2.3.4")])
            )
            assert answer.Status == 0
            assert service.jobs is not None
            for _ in range(200):
                jobs = service.jobs.find(REPORT_JOB, "1.2.3.99")
                if jobs and jobs[0].state == "failed":
                    return jobs[0]
                await asyncio.sleep(0.05)
            raise AssertionError("the job never failed")

    with caplog.at_level(logging.WARNING, logger="dicomwire.services"):
        job = run_bounded(main(), 60)
    assert job.attempts == 2 and job.error
    assert "failed after 2 attempts" in caplog.text
    assert "storage commitment 1.2.3.99: no report delivered to PYSCU" in caplog.text


def test_report_to_an_ae_missing_from_the_directory_fails_at_once(tmp_path: Path) -> None:
    config = StorageCommitmentConfig(same_association=False)

    async def main() -> Any:
        async with commitment_node(tmp_path / "node", config=config) as (node, service):
            answer, _ = await asyncio.to_thread(
                pynetdicom_action, node.port, action_dataset("1.2.3.98", [(CT, "1.2.3.4")])
            )
            assert answer.Status == 0
            assert service.jobs is not None
            for _ in range(200):
                jobs = service.jobs.find(REPORT_JOB, "1.2.3.98")
                if jobs and jobs[0].state == "failed":
                    return jobs[0]
                await asyncio.sleep(0.05)
            raise AssertionError("the job never failed")

    job = run_bounded(main(), 60)
    assert job.attempts == 1 and "not in the AE directory" in (job.error or "")


def test_files_are_checked_as_stored(tmp_path: Path) -> None:
    """A stored file cut short afterwards is not committed (0110)."""
    files = make_files(tmp_path / "in", 1)

    async def main() -> Any:
        async with commitment_node(tmp_path / "node") as (node, _):
            await store(node.port, files)
            stored = next((tmp_path / "node" / "store").rglob("*.dcm"))
            data = stored.read_bytes()
            stored.write_bytes(data[: len(data) - 100])
            return await commit((LOCALHOST, node.port), files, called_ae="DICOMWIRE", timeout=20)

    report = run_bounded(main(), 60)
    assert [reason for _, _, reason in report.failed] == [0x0110]


def test_the_storage_commitment_table_is_read_and_checked(tmp_path: Path) -> None:
    from dicomwire.errors import ConfigError
    from dicomwire.services.node import SERVICE_TYPES, load_config

    types = {**SERVICE_TYPES, "storage_commitment": StorageCommitment}
    path = tmp_path / "node.toml"
    path.write_text(
        '[storage]\nroot = "data"\n'
        "[storage_commitment]\nsame_association = false\nmax_attempts = 3\n"
    )
    config = load_config(path, types).sections["storage_commitment"]
    assert config == StorageCommitmentConfig(same_association=False, max_attempts=3)
    path.write_text("[storage_commitment]\nsame_asociation = false\n")
    with pytest.raises(ConfigError, match="same_asociation"):
        load_config(path, types)
    with pytest.raises(ConfigError, match="max_attempts"):
        StorageCommitment(StorageCommitmentConfig(max_attempts=0))


_NODE_SCRIPT = """
import asyncio, sys
from pathlib import Path
from dicomwire.services.commitment import StorageCommitmentConfig
from dicomwire.services.directory import RemoteAE
from tests.services.test_commitment import commitment_node

async def main() -> None:
    config = StorageCommitmentConfig(same_association=False, retry_first_delay=0.2, lease=2)
    entry = RemoteAE("PYSCU", "127.0.0.1", int(sys.argv[2]))
    async with commitment_node(Path(sys.argv[1]), nodes=[entry], config=config) as (node, _):
        print(node.port, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def test_a_killed_node_still_reports_after_its_restart(tmp_path: Path) -> None:
    """SIGKILL after the N-ACTION was answered: the job was durable before the 0000."""
    import subprocess
    import sys
    import time

    files = make_files(tmp_path / "in", 2)
    listen = get_free_tcp_port()
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-c", _NODE_SCRIPT, str(tmp_path / "node"), str(listen)],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        run_bounded(store(port, files), 30)
        answer, _ = pynetdicom_action(port, action_dataset("1.2.3.111", [uids(f) for f in files]))
        assert answer.Status == 0
        queue = SQLiteJobQueue(tmp_path / "node" / "node.sqlite")
        try:
            deadline = time.monotonic() + 20
            while not any(j.attempts for j in queue.find(REPORT_JOB, "1.2.3.111")):
                assert time.monotonic() < deadline, "the report was never attempted"
                time.sleep(0.05)
        finally:
            queue.close()
    finally:
        process.kill()
        process.wait(10)
    catcher = ReportCatcher()
    server = pynetdicom_listener(listen, catcher)
    config = StorageCommitmentConfig(same_association=False, retry_first_delay=0.2)
    entry = RemoteAE("PYSCU", LOCALHOST, listen)

    async def restarted() -> None:
        async with commitment_node(tmp_path / "node", nodes=[entry], config=config):
            await asyncio.to_thread(catcher.wait, 20)

    try:
        run_bounded(restarted(), 60)
    finally:
        server.shutdown()
    calling, event_type, information = catcher.wait()
    assert (calling, event_type, str(information.TransactionUID)) == ("DICOMWIRE", 1, "1.2.3.111")
    assert successes(information) == {uids(f)[1] for f in files}


def test_same_association_off_reports_on_a_new_one_while_the_first_is_open(
    tmp_path: Path,
) -> None:
    files = make_files(tmp_path / "in", 1)
    listen = get_free_tcp_port()
    config = StorageCommitmentConfig(same_association=False)
    entry = RemoteAE("MODALITY", LOCALHOST, listen)

    async def main() -> Any:
        async with commitment_node(tmp_path / "node", nodes=[entry], config=config) as (node, _):
            await store(node.port, files)
            return await commit(
                (LOCALHOST, node.port),
                files,
                called_ae="DICOMWIRE",
                calling_ae="MODALITY",
                listen_port=listen,
                same_association=True,  # held open, and not used
                timeout=20,
            )

    report = run_bounded(main(), 60)
    assert report.all_committed and not report.same_association


def test_instances_beyond_the_limit_fail_with_0213(tmp_path: Path) -> None:
    files = make_files(tmp_path / "in", 3)

    async def main() -> Any:
        config = StorageCommitmentConfig(max_instances=2)
        async with commitment_node(tmp_path / "node", config=config) as (node, _):
            await store(node.port, files)
            return await commit((LOCALHOST, node.port), files, called_ae="DICOMWIRE", timeout=20)

    report = run_bounded(main(), 60)
    assert len(report.committed) == 2
    assert report.failed == [(uids(files[2])[1], CT, 0x0213)]


@pytest.mark.parametrize(
    ("instance", "event_type", "information", "status"),
    [
        ("1.2.840.10008.1.20.1.2", 1, "ok", 0x0117),
        (STORAGE_COMMITMENT_INSTANCE, 3, "ok", 0x0113),
        (STORAGE_COMMITMENT_INSTANCE, 1, "none", 0x0120),
        (STORAGE_COMMITMENT_INSTANCE, 1, "no-transaction", 0x0115),
        (STORAGE_COMMITMENT_INSTANCE, 1, "ok", 0x0110),  # nobody waits for 1.2.3.4.999
    ],
)
def test_bad_reports_get_their_status(
    tmp_path: Path, instance: str, event_type: int, information: str, status: int
) -> None:
    dataset: Dataset | None = action_dataset("1.2.3.4.999", [(CT, "1.2.3.4")])
    if information == "none":
        dataset = None
    elif information == "no-transaction":
        assert dataset is not None
        del dataset.TransactionUID

    def report(port: int) -> int:
        from pynetdicom.sop_class import StorageCommitmentPushModel

        ae = pynetdicom_ae("REPORTER")
        ae.add_requested_context(StorageCommitmentPushModel)
        assoc = ae.associate(LOCALHOST, port, ae_title="DICOMWIRE")
        try:
            answer, _ = assoc.send_n_event_report(
                dataset, event_type, StorageCommitmentPushModel, instance
            )
            return int(answer.Status)
        finally:
            assoc.release()

    async def main() -> int:
        async with commitment_node(tmp_path / "node") as (node, _):
            return await asyncio.to_thread(report, node.port)

    assert run_bounded(main(), 60) == status


def test_no_answer_on_the_same_association_falls_back_to_a_new_one(tmp_path: Path) -> None:
    """The requester keeps its association but does not answer the report in time: the
    report goes again on a new association to its directory entry."""
    files = make_files(tmp_path / "in", 1)
    listen = get_free_tcp_port()
    entry = RemoteAE("PYSCU", LOCALHOST, listen)
    config = StorageCommitmentConfig(report_timeout=0.5)
    listener_catcher = ReportCatcher()

    class SlowCatcher(ReportCatcher):
        def __call__(self, event: Any) -> tuple[int, None]:
            listener_catcher.arrived.wait(10)  # answer only once the other report came
            return super().__call__(event)

    async def main() -> None:
        async with commitment_node(tmp_path / "node", nodes=[entry], config=config) as (node, _):
            await store(node.port, files)
            await asyncio.to_thread(
                pynetdicom_action,
                node.port,
                action_dataset("1.2.3.121", [uids(files[0])]),
                catcher=SlowCatcher(),
            )

    server = pynetdicom_listener(listen, listener_catcher)
    try:
        run_bounded(main(), 60)
    finally:
        server.shutdown()
    calling, event_type, information = listener_catcher.wait()
    assert (calling, event_type, str(information.TransactionUID)) == ("DICOMWIRE", 1, "1.2.3.121")


async def _relay_until_release(
    client: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    node_port: int,
    cut: asyncio.Event,
) -> None:
    """Forward one association to the node, PDU by PDU; at the requester's A-RELEASE-RQ
    (PDU type 05) close both sides, as a node that dies after answering would."""
    upstream, upstream_writer = await asyncio.open_connection(LOCALHOST, node_port)

    async def answers() -> None:
        with contextlib.suppress(ConnectionError):
            while data := await upstream.read(65536):
                client_writer.write(data)
                await client_writer.drain()

    answering = asyncio.create_task(answers())
    try:
        while True:
            header = await client.readexactly(6)
            body = await client.readexactly(int.from_bytes(header[2:], "big"))
            if header[0] == 0x05:
                cut.set()
                break
            upstream_writer.write(header + body)
            await upstream_writer.drain()
    except asyncio.IncompleteReadError:
        pass
    finally:
        answering.cancel()
        for writer in (client_writer, upstream_writer):
            writer.transport.abort()


def test_a_request_accepted_before_its_association_is_lost_still_gets_its_report(
    tmp_path: Path,
) -> None:
    """The SCP accepts the N-ACTION, then the connection is lost while the requester
    releases (the node's host dies, a proxy cuts it): the request stands, so ``commit``
    logs the failed release and still takes the report, which comes on a new association."""
    files = make_files(tmp_path / "in", 2)
    listen = get_free_tcp_port()
    entry = RemoteAE("MODALITY", LOCALHOST, listen)

    async def main() -> Any:
        config = StorageCommitmentConfig(same_association=False, report_delay=0.5)
        async with commitment_node(tmp_path / "node", nodes=[entry], config=config) as (node, _):
            await store(node.port, files)
            cut = asyncio.Event()
            relay = await asyncio.start_server(
                lambda r, w: _relay_until_release(r, w, node.port, cut), LOCALHOST, 0
            )
            async with relay:
                report = await commit(
                    (LOCALHOST, relay.sockets[0].getsockname()[1]),
                    [uids(path) for path in files],
                    called_ae="DICOMWIRE",
                    calling_ae="MODALITY",
                    listen_port=listen,
                    timeout=20,
                )
            return report, cut.is_set()

    report, cut = run_bounded(main(), 60)
    assert cut, "the relay never saw the A-RELEASE-RQ"
    assert report.all_committed and not report.same_association
    assert sorted(report.committed) == sorted((uid, cls) for cls, uid in map(uids, files))
