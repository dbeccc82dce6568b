"""``dicomwire find/move/get`` and the client API under them, against in-process SCPs.

The SCPs here are a user's handlers (``CustomService``) where a test needs an answer no
packaged peer gives on demand: a C-CANCEL honoured, a failure status with an Error
Comment, B000 with a Failed SOP Instance UID List, a worklist sequence. The commands run
in-process (``main(argv)`` on a thread, the node on the test's loop); the real peers are
in tests/interop/test_qr_scu.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence

import pytest
from pydicom import Dataset

import dicomwire
from dicomwire.dimse.commands import CommandField
from dicomwire.dimse.session import Request, Response
from dicomwire.errors import LocalProtocolError
from dicomwire.services.cli import main
from dicomwire.services.client import propose_contexts
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.service import CustomService
from dicomwire.services.storage.sop_classes import storage_sop_classes

from ..conftest import LOCALHOST, run_bounded

STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
WORKLIST = "1.2.840.10008.5.1.4.31"

Handler = Callable[[Request], object]


def run_cli(
    handlers: dict[str, dict[int, Handler]], argv: Sequence[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run ``dicomwire argv HOST PORT`` against a node made of ``handlers``."""

    async def scenario() -> int:
        service = CustomService(handlers)  # type: ignore[arg-type]
        config = NodeConfig(host=LOCALHOST, port=0, shutdown_grace=1.0)
        async with Node(config, services=[service]) as node:
            command, *rest = argv
            args = [command, LOCALHOST, str(node.port), *rest]
            return await asyncio.to_thread(main, args)

    status = run_bounded(scenario())
    out, err = capsys.readouterr()
    return status, out, err


def study(number: int, name: str = "DOE^JOHN") -> Dataset:
    match = Dataset()
    match.SpecificCharacterSet = "ISO_IR 192"
    match.QueryRetrieveLevel = "STUDY"
    match.PatientName = name
    match.StudyInstanceUID = f"1.2.3.{number}"
    return match


def dataset(**keywords: object) -> Dataset:
    made = Dataset()
    for keyword, value in keywords.items():
        setattr(made, keyword, value)
    return made


# --------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("PatientNme=DOE", "PatientNme"),
        ("(0028,0010)=wide", "(0028,0010)=wide"),
        ("=DOE", "no key"),
        ("ScheduledProcedureStepSequence=CT", "a sequence takes no value"),
        ("PatientName.Modality=CT", "not a sequence"),
    ],
)
def test_a_malformed_key_is_a_usage_error_naming_it(
    key: str, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("find", "move", "get"):
        assert main([command, LOCALHOST, "9", "-k", key]) == 2
        err = capsys.readouterr().err
        assert named in err and f"dicomwire {command}: error" in err


def test_an_unknown_sop_class_hint_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", LOCALHOST, "9", "-x", "CTImageStorag", "-k", "StudyInstanceUID=1"]) == 2
    assert "CTImageStorag" in capsys.readouterr().err


def test_get_of_more_than_128_contexts_explains_the_limit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Nothing is sent: the A-ASSOCIATE-RQ could not carry the contexts (PS3.8 9.3.2.2)."""
    status = main(["get", LOCALHOST, "9", "--sop-class", "all", "-k", "StudyInstanceUID=1"])
    err = capsys.readouterr().err
    assert status == 1
    assert "at most 128" in err and "PS3.8" in err
    assert "storage SOP classes to receive by C-GET" in err and "narrow the query" in err


def test_propose_contexts_overflow_message_for_python_users() -> None:
    with pytest.raises(LocalProtocolError, match="at most 128") as caught:
        propose_contexts(["get"], receive=sorted(storage_sop_classes()))
    assert "C-GET" in str(caught.value)


# --------------------------------------------------------------------------- find


def test_find_cancel_after_n_ends_with_the_peers_fe00(capsys: pytest.CaptureFixture[str]) -> None:
    async def on_find(request: Request) -> int:
        for number in range(500):
            if request.cancelled.is_set():
                return 0xFE00
            await request.send_pending(study(number))
            await asyncio.sleep(0.005)
        return 0

    status, out, err = run_cli(
        {STUDY_FIND: {CommandField.C_FIND_RQ: on_find}},
        ["find", "-k", "StudyInstanceUID", "--cancel", "2", "--csv"],
        capsys,
    )
    assert status == 0, err
    rows = out.splitlines()[1:]
    assert 2 <= len(rows) < 500
    assert "status 0xFE00" in err and "C-CANCEL sent" in err


def test_find_failure_prints_status_and_error_comment(capsys: pytest.CaptureFixture[str]) -> None:
    async def on_find(request: Request) -> Response:
        return request.primitive.response(0xA900, error_comment="SERIES level needs a study")

    status, _, err = run_cli(
        {STUDY_FIND: {CommandField.C_FIND_RQ: on_find}},
        ["find", "-k", "QueryRetrieveLevel=SERIES"],
        capsys,
    )
    assert status == 1
    assert "C-FIND failed: status 0xA900" in err
    assert "Error Comment: SERIES level needs a study" in err


def test_find_sends_non_ascii_keys_as_utf8_and_decodes_the_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    received: list[Dataset] = []

    async def on_find(request: Request) -> int:
        query = request.decode()
        assert query is not None
        received.append(query)
        await request.send_pending(study(1, "Grüße^Ωmega"))
        return 0

    status, out, err = run_cli(
        {STUDY_FIND: {CommandField.C_FIND_RQ: on_find}},
        ["find", "-k", "PatientName=Grü*", "-k", "StudyInstanceUID", "--json"],
        capsys,
    )
    assert status == 0, err
    assert received[0].SpecificCharacterSet == "ISO_IR 192"
    assert str(received[0].PatientName) == "Grü*"
    assert received[0].QueryRetrieveLevel == "STUDY"  # the model's top level by default
    [match] = json.loads(out)
    assert match["00100010"]["Value"] == [{"Alphabetic": "Grüße^Ωmega"}]


def test_worklist_find_shows_sequence_paths_as_columns(capsys: pytest.CaptureFixture[str]) -> None:
    async def on_find(request: Request) -> int:
        query = request.decode()
        assert query is not None and "QueryRetrieveLevel" not in query
        step = Dataset()
        step.Modality = "CT"
        step.ScheduledStationAETitle = "CT1"
        entry = Dataset()
        entry.PatientName = "DOE^JANE"
        entry.ScheduledProcedureStepSequence = [step]
        await request.send_pending(entry)
        return 0

    status, out, err = run_cli(
        {WORKLIST: {CommandField.C_FIND_RQ: on_find}},
        [
            "find",
            "-W",
            "-k",
            "PatientName",
            "-k",
            "(0040,0100)[0].Modality=CT",
            "-k",
            "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
        ],
        capsys,
    )
    assert status == 0, err
    header, _, row = out.splitlines()
    assert header.split() == [
        "PatientName",
        "ScheduledProcedureStepSequence[0].Modality",
        "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
    ]
    assert row.split() == ["DOE^JANE", "CT", "CT1"]


# --------------------------------------------------------------------------- move


def test_move_prints_pending_counts_and_the_failed_uid_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def on_move(request: Request) -> Response:
        assert request.primitive.move_destination == "ARCHIVE"
        await request.send_pending(remaining=2, completed=1, failed=0, warning=0)
        await request.send_pending(remaining=1, completed=1, failed=1, warning=0)
        failed = Dataset()
        failed.FailedSOPInstanceUIDList = ["1.2.3.9", "1.2.3.10"]
        return request.primitive.response(0xB000, failed, completed=1, failed=2, warning=0)

    status, out, err = run_cli(
        {STUDY_MOVE: {CommandField.C_MOVE_RQ: on_move}},
        ["move", "--dest", "ARCHIVE", "-k", "StudyInstanceUID=1.2.3"],
        capsys,
    )
    assert status == 1
    assert "C-MOVE pending: remaining 2, completed 1, failed 0" in err
    assert "C-MOVE pending: remaining 1, completed 1, failed 1" in err
    assert "completed 1, failed 2" in out
    assert "failed: 1.2.3.9\nfailed: 1.2.3.10" in out


def test_python_find_responses_keep_the_final_status() -> None:
    async def on_find(request: Request) -> int:
        await request.send_pending(study(1))
        return 0

    async def scenario() -> tuple[list[str], int | None, int]:
        service = CustomService({STUDY_FIND: {CommandField.C_FIND_RQ: on_find}})
        config = NodeConfig(host=LOCALHOST, port=0, shutdown_grace=1.0)
        async with (
            Node(config, services=[service]) as node,
            dicomwire.connect(
                LOCALHOST, node.port, called_ae="DICOMWIRE", services=["find"], relational=True
            ) as assoc,
        ):
            responses = assoc.find({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""})
            uids = [str(m.StudyInstanceUID) async for m in responses]
            assert not assoc.relational()  # a CustomService does not agree to it
            return uids, responses.status, responses.count

    assert run_bounded(scenario()) == (["1.2.3.1"], 0, 1)


def test_sop_classes_walks_down_to_the_image_level() -> None:
    """The walk Client.sop_classes does: one C-FIND per entity, single-valued keys above."""
    seen: list[tuple[str, str]] = []
    tree = {"1.9": {"1.9.1": ["CT"], "1.9.2": ["MR", "CT"]}}
    classes = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}

    async def on_find(request: Request) -> int:
        query = request.decode()
        assert query is not None
        level = str(query.QueryRetrieveLevel)
        seen.append((level, str(query.get("SeriesInstanceUID", "") or "")))
        if level == "STUDY":
            for uid in tree:
                await request.send_pending(dataset(StudyInstanceUID=uid))
        elif level == "SERIES":
            for uid in tree[str(query.StudyInstanceUID)]:
                await request.send_pending(dataset(SeriesInstanceUID=uid))
        else:
            series = tree[str(query.StudyInstanceUID)][str(query.SeriesInstanceUID)]
            for number, kind in enumerate(series):
                await request.send_pending(
                    dataset(SOPInstanceUID=f"9.{number}", SOPClassUID=classes[kind])
                )
        return 0

    async def scenario() -> set[str]:
        service = CustomService({STUDY_FIND: {CommandField.C_FIND_RQ: on_find}})
        config = NodeConfig(host=LOCALHOST, port=0, shutdown_grace=1.0)
        async with (
            Node(config, services=[service]) as node,
            dicomwire.connect(LOCALHOST, node.port, called_ae="DICOMWIRE", services=["find"]) as a,
        ):
            return await a.sop_classes({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.9"})

    assert run_bounded(scenario()) == set(classes.values())
    assert sorted(seen) == [("IMAGE", "1.9.1"), ("IMAGE", "1.9.2"), ("SERIES", ""), ("STUDY", "")]
