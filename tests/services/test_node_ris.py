"""The node as a RIS serves it (issue 16): limits, called AE title, MPPS updating the worklist.

- the asynchronous operations window (PS3.7 D.3.3.3) the node offers comes from
  ``max_operations_invoked``/``max_operations_performed``: a requestor proposing 1024 gets
  1024 and has 1024 C-ECHOs outstanding at once (the handler holds every one of them
  until the 1024th has arrived, so a smaller window would never finish), and 1024 MPPS
  N-CREATEs outstanding on one association are all created;
- 128 simultaneous associations with ``max_associations = 128``, the 129th rejected
  transient with "local limit exceeded" (PS3.8 Table 9-21);
- a wrong called AE title is rejected (1, 1, 7) unless the node is promiscuous;
- the default services: an MPPS step IN PROGRESS, COMPLETED or DISCONTINUED sets the
  Scheduled Procedure Step Status of the worklist entry it performs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset

from dicomwire import connect
from dicomwire.dimse.commands import CommandField
from dicomwire.dimse.session import Request
from dicomwire.errors import AssociationRejected, ConfigError
from dicomwire.services.mpps import MPPS, MPPS_SOP_CLASS
from dicomwire.services.node import (
    Node,
    NodeConfig,
    load_config,
    validate_config,
    worklist_follows_mpps,
)
from dicomwire.services.service import CustomService, Service
from dicomwire.services.storage import StorageConfig
from dicomwire.services.verification import VERIFICATION_SOP_CLASS, Verification
from dicomwire.services.worklist import (
    SQLiteWorklistStore,
    Worklist,
    query_worklist,
    worklist_identifier,
)
from tests.conftest import run_bounded
from tests.interop._mpps_peer import completed, new_step
from tests.services._support import NODE_TIMEOUTS
from tests.services.test_worklist_data import entry

LOCALHOST = "127.0.0.1"
NODE_AE = "RIS"


def ris_config(tmp_path: Path, **kwargs: Any) -> NodeConfig:
    """A node called RIS storing under ``tmp_path`` (its database there too)."""
    return NodeConfig(
        ae_titles=[NODE_AE],
        host=LOCALHOST,
        port=0,
        storage=StorageConfig(root=tmp_path / "storage"),
        timeouts=NODE_TIMEOUTS,
        shutdown_grace=1.0,
        **kwargs,
    )


@contextlib.asynccontextmanager
async def running(config: NodeConfig, services: list[Service] | None = None) -> AsyncIterator[Node]:
    async with Node(config, services) as node:
        yield node


def test_window_settings_are_validated_and_read_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("max_operations_invoked = 1024\nmax_operations_performed = 0\n")
    config = load_config(path)
    assert (config.max_operations_invoked, config.max_operations_performed) == (1024, 0)
    policy = Node(ris_config(tmp_path, max_operations_invoked=1024)).policy
    assert (policy.maximum_invoked, policy.maximum_performed) == (1024, 16)
    for bad in (-1, 65536, True, "16"):
        with pytest.raises(ConfigError) as caught:
            validate_config(ris_config(tmp_path, max_operations_invoked=bad))
        assert caught.value.key == "max_operations_invoked"


def test_1024_c_echos_outstanding_on_one_association(tmp_path: Path) -> None:
    arrived = 0
    all_arrived = asyncio.Event()

    async def held_echo(request: Request) -> int:
        nonlocal arrived
        arrived += 1
        if arrived == 1024:
            all_arrived.set()
        await all_arrived.wait()  # answered only once 1024 are outstanding together
        return 0x0000

    echo = CustomService({VERIFICATION_SOP_CLASS: {CommandField.C_ECHO_RQ: held_echo}})

    async def main() -> tuple[int, int, list[int]]:
        config = ris_config(tmp_path, max_operations_invoked=1024)
        async with running(config, [echo]) as node:
            async with connect(LOCALHOST, node.port, called_ae=NODE_AE, window=4096) as client:
                window = client.negotiated.maximum_invoked
                statuses = await asyncio.gather(*(client.echo() for _ in range(1024)))
            return window, arrived, [int(s) for s in statuses]

    window, count, statuses = run_bounded(main(), 60)
    assert window == 1024  # the lower of what was proposed and what the node offers
    assert count == 1024 and statuses == [0] * 1024


def test_default_window_is_16(tmp_path: Path) -> None:
    async def main() -> int:
        async with (
            running(ris_config(tmp_path)) as node,
            connect(LOCALHOST, node.port, called_ae=NODE_AE, window=1024) as client,
        ):
            return client.negotiated.maximum_invoked

    assert run_bounded(main(), 30) == 16


def test_1024_mpps_n_creates_outstanding_on_one_association(tmp_path: Path) -> None:
    async def main() -> tuple[int, list[int], int]:
        config = ris_config(tmp_path, max_operations_invoked=1024, max_pdu_length=256 * 1024)
        async with running(config) as node:
            async with connect(
                LOCALHOST, node.port, called_ae=NODE_AE, services=["mpps"], window=1024
            ) as client:
                window = client.negotiated.maximum_invoked
                results = await asyncio.gather(
                    *(
                        client.n_create(
                            MPPS_SOP_CLASS, new_step(), f"1.2.826.0.1.3680043.9.7433.98.{n}"
                        )
                        for n in range(1, 1025)
                    )
                )
            mpps = node.service("mpps")
            stored = len(mpps.steps())  # type: ignore[attr-defined]
        return window, [int(r.status) for r in results], stored

    window, statuses, stored = run_bounded(main(), 120)
    assert window == 1024
    assert statuses == [0] * 1024 and stored == 1024


def test_128_simultaneous_associations_then_local_limit(tmp_path: Path) -> None:
    async def main() -> tuple[list[int], AssociationRejected | None]:
        async with running(ris_config(tmp_path, max_associations=128)) as node:
            async with contextlib.AsyncExitStack() as stack:
                clients = await asyncio.gather(
                    *(
                        stack.enter_async_context(
                            connect(LOCALHOST, node.port, called_ae=NODE_AE, calling_ae=f"CT{n}")
                        )
                        for n in range(128)
                    )
                )
                statuses = await asyncio.gather(*(c.echo() for c in clients))
                refused = None
                try:
                    async with connect(LOCALHOST, node.port, called_ae=NODE_AE):
                        pass
                except AssociationRejected as exc:
                    refused = exc
            return [int(s) for s in statuses], refused

    statuses, refused = run_bounded(main(), 60)
    assert statuses == [0] * 128
    assert refused is not None, "the 129th association was accepted"
    assert (refused.result, refused.source, refused.reason) == (2, 3, 2)


@pytest.mark.parametrize("promiscuous", [False, True])
def test_wrong_called_ae_title(tmp_path: Path, promiscuous: bool) -> None:
    async def main() -> int | AssociationRejected:
        async with running(ris_config(tmp_path, promiscuous=promiscuous)) as node:
            try:
                async with connect(LOCALHOST, node.port, called_ae="NOT-THE-RIS") as client:
                    return int(await client.echo())
            except AssociationRejected as exc:
                return exc

    answer = run_bounded(main(), 30)
    if promiscuous:
        assert answer == 0
    else:
        assert isinstance(answer, AssociationRejected)
        assert (answer.result, answer.source, answer.reason) == (1, 1, 7)


STUDY_DONE = "1.2.826.0.1.3680043.9.7433.97.1"
STUDY_STOPPED = "1.2.826.0.1.3680043.9.7433.97.2"
STUDY_OTHER = "1.2.826.0.1.3680043.9.7433.97.3"


def _entry(study: str, accession: str) -> Dataset:
    return entry(
        study=study,
        name="DOE^JANE",
        patient_id="PAT1",
        accession=accession,
        procedure_id="RP1",
        modality="CT",
        station_ae="CT1",
        date="20261129",
        time="090000",
        station_name="CTROOM",
        step_id="SPS1",
    )


def _statuses(worklist: Worklist) -> dict[str, str]:
    return {
        str(e.dataset.AccessionNumber): str(
            e.dataset.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus
        )
        for e in worklist.store.entries()
    }


def test_mpps_sets_the_worklist_step_status(tmp_path: Path) -> None:
    """IN PROGRESS makes the entry STARTED; COMPLETED and DISCONTINUED are copied."""

    async def wait_for(worklist: Worklist, wanted: dict[str, str]) -> dict[str, str]:
        for _ in range(200):
            seen = await asyncio.to_thread(_statuses, worklist)
            if seen == wanted:
                break
            await asyncio.sleep(0.05)
        return seen

    async def main() -> list[dict[str, str]]:
        seen = []
        async with running(ris_config(tmp_path)) as node:
            worklist = node.service("worklist")
            assert isinstance(worklist, Worklist)
            for study, accession in (
                (STUDY_DONE, "ACC-DONE"),
                (STUDY_STOPPED, "ACC-STOP"),
                (STUDY_OTHER, "ACC-OTHER"),
            ):
                worklist.store.add(_entry(study, accession))
            async with connect(
                LOCALHOST, node.port, called_ae=NODE_AE, services=["mpps"]
            ) as client:
                done = await client.n_create(MPPS_SOP_CLASS, new_step(STUDY_DONE))
                stopped = await client.n_create(MPPS_SOP_CLASS, new_step(STUDY_STOPPED))
                done_uid, stopped_uid = (
                    done.affected_sop_instance_uid,
                    stopped.affected_sop_instance_uid,
                )
                assert (
                    done_uid
                    and stopped_uid
                    and done.status.is_success
                    and stopped.status.is_success
                )
                started = {"ACC-DONE": "STARTED", "ACC-STOP": "STARTED", "ACC-OTHER": "SCHEDULED"}
                seen.append(await wait_for(worklist, started))
                assert (await client.n_set(MPPS_SOP_CLASS, done_uid, completed())).status.is_success
                stop = completed("DISCONTINUED")
                assert (await client.n_set(MPPS_SOP_CLASS, stopped_uid, stop)).status.is_success
                final = {
                    "ACC-DONE": "COMPLETED",
                    "ACC-STOP": "DISCONTINUED",
                    "ACC-OTHER": "SCHEDULED",
                }
                seen.append(await wait_for(worklist, final))
            # what a modality's C-FIND answers now: the steps' statuses as the MPPS left them
            query = worklist_identifier(step_return_keys=["ScheduledProcedureStepStatus"])
            answers = await query_worklist(LOCALHOST, node.port, query, called_ae=NODE_AE)
            seen.append(
                {
                    str(a.AccessionNumber): str(
                        a.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus
                    )
                    for a in answers
                }
            )
        return seen

    started, final, queried = run_bounded(main(), 60)
    assert started == {"ACC-DONE": "STARTED", "ACC-STOP": "STARTED", "ACC-OTHER": "SCHEDULED"}
    assert final == {"ACC-DONE": "COMPLETED", "ACC-STOP": "DISCONTINUED", "ACC-OTHER": "SCHEDULED"}
    assert queried == final


class SlowStartStore(SQLiteWorklistStore):
    """Writes STARTED slowly: a hook that does not keep order would let it land last."""

    def set_step_status(self, study_instance_uid: str, step_id: str | None, status: str) -> int:
        if status == "STARTED":
            time.sleep(0.2)
        return super().set_step_status(study_instance_uid, step_id, status)


def test_steps_ended_at_once_leave_their_entries_completed(tmp_path: Path) -> None:
    """N-CREATE then N-SET COMPLETED back to back: STARTED never lands after COMPLETED."""
    studies = [f"1.2.826.0.1.3680043.9.7433.97.10.{n}" for n in range(1, 6)]
    store = SlowStartStore(tmp_path / "node.sqlite")
    for n, study in enumerate(studies):
        store.add(_entry(study, f"ACC{n}"))
    worklist = Worklist(store)
    mpps = MPPS()
    mpps.hooks.append(worklist_follows_mpps(store, mpps.step))
    config = ris_config(tmp_path, database=tmp_path / "node.sqlite")

    async def main() -> None:
        async with (
            running(config, [Verification(), worklist, mpps]) as node,
            connect(LOCALHOST, node.port, called_ae=NODE_AE, services=["mpps"]) as client,
        ):
            for study in studies:
                uid = f"{study}.1"
                await client.n_create(MPPS_SOP_CLASS, new_step(study), uid)
                await client.n_set(MPPS_SOP_CLASS, uid, completed())

    run_bounded(main(), 60)  # the node stopped: its hooks are done
    assert _statuses(worklist) == {f"ACC{n}": "COMPLETED" for n in range(5)}
