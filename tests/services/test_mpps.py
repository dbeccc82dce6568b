"""The MPPS service (PS3.4 F.7) with dicomwire on both sides: the SCU API and the CLI
against the node's MPPS SCP, steps across restarts, hooks, the [mpps] table, the
attribute rules of Table F.7.2-1, and a relay whose destination never answers."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

import dicomwire
from dicomwire.errors import ConfigError, DimseStatusError
from dicomwire.services.mpps import (
    COMPLETED,
    DISCONTINUED,
    IN_PROGRESS,
    MPPS,
    NOT_UPDATABLE_COMMENT,
    RELAY_KIND,
    MPPSConfig,
    Step,
    completion,
    create_step,
    series_from_files,
    set_step,
    step_from_worklist,
)
from dicomwire.services.mpps.attributes import check_create, check_final, check_set
from dicomwire.services.node import SERVICE_TYPES, Node, load_config
from tests.conftest import get_free_tcp_port, run_bounded
from tests.interop._mpps_peer import completed, new_step
from tests.services._mpps_support import NODE_AE, PEER_AE, mpps_node, node_config, wait_until

# --------------------------------------------------------------------------- Table F.7.2-1


def test_attribute_rules_of_table_f_7_2_1() -> None:
    assert check_create(new_step()) == []
    assert {p.path for p in check_create(None)} >= {
        "ScheduledStepAttributesSequence",
        "PerformedProcedureStepID",
        "PerformedStationAETitle",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "PerformedProcedureStepStatus",
        "Modality",
    }
    step = new_step(PatientSex=None)
    step.ScheduledStepAttributesSequence[0].StudyInstanceUID = ""
    assert [str(p) for p in check_create(step)] == [
        "empty: ScheduledStepAttributesSequence>StudyInstanceUID"
    ]
    assert [str(p) for p in check_create(step, check_type2=True)] == [
        "empty: ScheduledStepAttributesSequence>StudyInstanceUID",
        "missing: PatientSex",
    ]
    series = completed()
    del series.PerformedSeriesSequence[0].SeriesInstanceUID
    series.Modality = "MR"
    assert [str(p) for p in check_set(series)] == [
        "not-allowed: Modality",
        "missing: PerformedSeriesSequence>SeriesInstanceUID",
    ]
    assert check_set(completed()) == []
    ended = completed(series=0)
    assert [str(p) for p in check_final(ended, COMPLETED)] == ["empty: PerformedSeriesSequence"]
    assert check_final(ended, DISCONTINUED) == []


# --------------------------------------------------------------------------- API <-> node


def test_api_against_the_node_with_hooks(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    seen: list[tuple[str, str]] = []
    seen_async: list[str] = []

    def hook(step: Step) -> None:
        seen.append((step.uid, step.status))

    async def async_hook(step: Step) -> None:
        await asyncio.sleep(0)
        seen_async.append(step.status)

    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(str(get_testdata_file("CT_small.dcm")), images / "ct.dcm")

    async def main() -> tuple[str, Step | None]:
        async with mpps_node(tmp_path, hook=hook) as (node, service):
            service.hooks.append(async_hook)
            async with dicomwire.connect(
                "127.0.0.1", node.port, called_ae=NODE_AE, calling_ae="CT1", services=["mpps"]
            ) as client:
                uid = await create_step(client, step_from_worklist(station_ae="CT1", PatientID="7"))
                series = series_from_files([images], retrieve_ae=NODE_AE)
                status = await set_step(client, uid, completion(COMPLETED, series=series))
                assert status == 0
            await wait_until(lambda: len(seen_async) == 2)
            return uid, service.step(uid)

    uid, step = run_bounded(main(), 60)
    assert uid.startswith("2.25.")  # assigned by the node, returned in the N-CREATE-RSP
    assert seen == [(uid, IN_PROGRESS), (uid, COMPLETED)]
    assert seen_async == [IN_PROGRESS, COMPLETED]
    assert step is not None and step.status == COMPLETED and step.calling_ae == "CT1"
    assert step.dataset.PatientID == "7"
    item = step.dataset.PerformedSeriesSequence[0]
    assert item.RetrieveAETitle == NODE_AE and len(item.ReferencedImageSequence) == 1


def test_steps_survive_a_restart(tmp_path: Path) -> None:
    uid = "1.2.826.0.1.3680043.9.7433.99.200"

    async def session(*actions: str) -> list[Any]:
        outcomes: list[Any] = []
        async with (
            mpps_node(tmp_path) as (node, _),
            dicomwire.connect(
                "127.0.0.1", node.port, called_ae=NODE_AE, services=["mpps"]
            ) as client,
        ):
            for action in actions:
                try:
                    if action == "create":
                        outcomes.append(await create_step(client, new_step(), uid))
                    else:
                        outcomes.append(await set_step(client, uid, completed()))
                except DimseStatusError as exc:
                    outcomes.append((int(exc.status), exc.comment))
        return outcomes

    assert run_bounded(session("create"), 60) == [uid]
    assert run_bounded(session("create", "set"), 60) == [(0x0111, "SOP Instance exists already"), 0]
    assert run_bounded(session("set"), 60) == [(0x0110, NOT_UPDATABLE_COMMENT)]


def test_type2_attributes_checked_when_configured(tmp_path: Path) -> None:
    async def main() -> DimseStatusError:
        async with (
            mpps_node(tmp_path, check_type2=True) as (node, _),
            dicomwire.connect(
                "127.0.0.1", node.port, called_ae=NODE_AE, services=["mpps"]
            ) as client,
        ):
            assert await create_step(client, new_step(), "1.2.3.4")  # complete: accepted
            with pytest.raises(DimseStatusError) as refused:
                await create_step(client, new_step(PatientSex=None), "1.2.3.5")
            return refused.value

    refused = run_bounded(main(), 60)
    assert refused.status == 0x0120 and "PatientSex" in refused.comment


def admit_known_accessions(attributes: Any, caller: str) -> None:
    """An ``admit`` check: the scheduled accession must be known (as a RIS can require)."""
    accession = attributes.ScheduledStepAttributesSequence[0].AccessionNumber
    if accession != "ACC1":
        raise DimseStatusError(0x0112, f"no scheduled procedure with accession {accession}")


def test_admit_refuses_a_step_for_an_unknown_accession(tmp_path: Path) -> None:
    async def main() -> DimseStatusError:
        async with (
            mpps_node(tmp_path, admit="tests.services.test_mpps:admit_known_accessions") as (
                node,
                _,
            ),
            dicomwire.connect(
                "127.0.0.1", node.port, called_ae=NODE_AE, services=["mpps"]
            ) as client,
        ):
            assert await create_step(client, new_step(), "1.2.3.6")
            unknown = new_step()
            unknown.ScheduledStepAttributesSequence[0].AccessionNumber = "NOPE"
            with pytest.raises(DimseStatusError) as refused:
                await create_step(client, unknown, "1.2.3.7")
            return refused.value

    refused = run_bounded(main(), 60)
    assert refused.status == 0x0112 and "NOPE" in refused.comment


# --------------------------------------------------------------------------- configuration


def hook_for_config(step: Step) -> None:
    """An ``on_status`` named in a config file (``tests.services.test_mpps:...``)."""


def test_mpps_table_in_the_node_config(tmp_path: Path) -> None:
    config_file = tmp_path / "node.toml"
    config_file.write_text(
        'ae_titles = ["RIS"]\n'
        "[mpps]\n"
        'relay_to = ["PACS"]\n'
        "relay_attempts = 3\n"
        'on_status = "tests.services.test_mpps:hook_for_config"\n'
        "[[nodes]]\n"
        'ae_title = "PACS"\nhost = "127.0.0.1"\nport = 11113\n'
    )
    types = {**SERVICE_TYPES, "mpps": MPPS}
    config = load_config(config_file, types)
    settings = config.sections["mpps"]
    assert isinstance(settings, MPPSConfig)
    assert settings.relay_to == ["PACS"] and settings.retry_policy.max_attempts == 3
    assert MPPS(settings).hooks == [hook_for_config]
    config_file.write_text("[mpps]\nrelay_too = []\n")
    with pytest.raises(ConfigError, match="relay_too"):
        load_config(config_file, types)
    with pytest.raises(ConfigError, match="on_status"):
        MPPS(MPPSConfig(on_status="no.such.module:hook"))
    with pytest.raises(ConfigError, match="relay_attempts"):
        MPPS(MPPSConfig(relay_attempts=0))


def test_relay_to_an_ae_not_in_the_directory_stops_the_start(tmp_path: Path) -> None:
    async def main() -> None:
        node = Node(node_config(tmp_path), services=[MPPS(MPPSConfig(relay_to=["NOWHERE"]))])
        try:
            await node.start()
        finally:
            await node.shutdown()

    with pytest.raises(ConfigError, match="NOWHERE"):
        run_bounded(main(), 30)


# --------------------------------------------------------------------------- relay failure


def test_a_relay_that_fails_is_logged_and_never_changes_the_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uid = "1.2.826.0.1.3680043.9.7433.99.300"
    nobody = get_free_tcp_port()  # nothing listens there

    async def main() -> list[Any]:
        async with mpps_node(
            tmp_path, relay_port=nobody, relay_attempts=2, relay_first_delay=0.05
        ) as (node, service):
            async with dicomwire.connect(
                "127.0.0.1", node.port, called_ae=NODE_AE, services=["mpps"]
            ) as client:
                answers = [
                    await create_step(client, new_step(), uid),
                    await set_step(client, uid, completed()),
                ]
            relay, queue = service.relay, service.queue
            assert relay is not None and queue is not None
            await wait_until(lambda: relay.counts["failed"] == 2)
            return [*answers, [(j.payload["operation"], j.state) for j in queue.jobs(RELAY_KIND)]]

    with caplog.at_level(logging.INFO, logger="dicomwire.services.mpps.relay"):
        answers = run_bounded(main(), 60)
    assert answers == [uid, 0, [("N-CREATE", "failed"), ("N-SET", "failed")]]
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("mpps.relay")]
    assert any(f"relay N-CREATE {uid} from DICOMWIRE to {PEER_AE}" in line for line in lines)
    assert sum("FAILED, given up after attempt 2" in line for line in lines) == 2
    assert any("retrying in" in line for line in lines)


# --------------------------------------------------------------------------- CLI <-> node


async def _cli(*args: str | Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dicomwire.services.cli",
        "mpps",
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_cli_against_the_node(tmp_path: Path) -> None:
    from pydicom import Dataset

    worklist_item = Dataset()
    worklist_item.PatientName = "Doe^John"
    worklist_item.PatientID = "WL1"
    worklist_item.AccessionNumber = "A77"
    worklist_item.StudyInstanceUID = "1.2.826.0.1.3680043.9.7433.99.400"
    worklist_item.RequestedProcedureID = "RP77"
    sps = Dataset()
    sps.Modality = "MR"
    sps.ScheduledStationAETitle = "MR1"
    sps.ScheduledProcedureStepID = "SPS77"
    worklist_item.ScheduledProcedureStepSequence = [sps]
    item_file = tmp_path / "item.json"
    item_file.write_text(json.dumps([worklist_item.to_json_dict()]))  # a --json listing
    modification = tmp_path / "set.json"
    modification.write_text(json.dumps({"CommentsOnThePerformedProcedureStep": "patient moved"}))

    async def main() -> tuple[list[tuple[int, str, str]], Step | None]:
        async with mpps_node(tmp_path) as (node, service):
            port = str(node.port)
            peer = ("127.0.0.1", port, "-aec", NODE_AE)
            created = await _cli(*peer, "create", "--from-worklist", item_file, "-aet", "MR1")
            uid = created[1].strip()
            runs = [
                created,
                await _cli(*peer, "set", uid, modification, "--status", "DISCONTINUED"),
                await _cli(*peer, "set", uid, "-k", "PerformedProcedureStepStatus=COMPLETED"),
                await _cli(*peer, "create"),
                await _cli(*peer, "set", uid),
                await _cli(*peer, "create", tmp_path / "missing.json"),
                await _cli("127.0.0.1", port, "create", "--patient-id", "X", "-aec", NODE_AE),
            ]
            return runs, service.step(uid)

    runs, step = run_bounded(main(), 120)
    codes = [code for code, _, _ in runs]
    assert codes == [0, 0, 1, 2, 2, 2, 0], runs
    assert "DISCONTINUED" in runs[1][1]
    assert "0x0110" in runs[2][2]
    assert step is not None and step.status == DISCONTINUED and step.calling_ae == "MR1"
    assert step.dataset.Modality == "MR" and step.dataset.PerformedStationAETitle == "MR1"
    assert step.dataset.CommentsOnThePerformedProcedureStep == "patient moved"
    assert step.scheduled[0]["AccessionNumber"] == "A77"
    assert step.scheduled[0]["ScheduledProcedureStepID"] == "SPS77"
