"""Modality Worklist against DCMTK, both ways, and our SCP beside ``wlmscpfs``.

- ``findscu -W`` (DCMTK's worklist SCU) → our Worklist SCP: matching keys, FF01, A900,
  Specific Character Set, ``--cancel``;
- our SCU (``query_worklist`` and ``dicomwire worklist``) → ``wlmscpfs`` serving ``.wl``
  files from ``DIR/<AE>/`` (with its ``lockfile``);
- differential: our SCP watching the very folder ``wlmscpfs`` serves answers the same
  entries for the same queries.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from dicomwire.services.worklist import (
    SQLiteWorklistStore,
    WorklistConfig,
    query_worklist,
    worklist_identifier,
)

from ..conftest import run_bounded
from ..services.test_worklist_data import (
    LOCALHOST,
    SCP_AE,
    accessions,
    entries,
    many_entries,
    worklist_node,
    write_wl_files,
)
from ._dcmtk import PROCESS_TIMEOUT, background, dcmtk, dicomwire_argv, free_tcp_port, run

pytestmark = pytest.mark.interop

WLM_AE = "WLMSCP"


def findscu(port: int, keys: list[str], out: Path, *extra: str) -> tuple[int, str, list[Dataset]]:
    """Run ``findscu -W`` with ``-k`` keys; (exit status, output, responses extracted)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rsp*.dcm"):
        old.unlink()
    argv = [dcmtk("findscu"), "-W", "-v", "-aet", "MODALITY", "-aec", SCP_AE, "-X", "-od", str(out)]
    for key in keys:
        argv += ["-k", key]
    # output as bytes: findscu echoes keys in their own character set
    result = subprocess.run(
        [*argv, *extra, LOCALHOST, str(port)], capture_output=True, timeout=PROCESS_TIMEOUT
    )
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    responses = [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]
    return result.returncode, output, responses


STEP = "(0040,0100)[0]."
#: Return keys findscu asks for (with -k KEY, no value).
RETURN_KEYS = [
    "AccessionNumber",
    "PatientName",
    "PatientID",
    "RequestedProcedureID",
    "StudyInstanceUID",
    f"{STEP}Modality",
    f"{STEP}ScheduledStationAETitle",
    f"{STEP}ScheduledProcedureStepStartDate",
    f"{STEP}ScheduledProcedureStepStartTime",
    f"{STEP}ScheduledStationName",
]


def keys(*matching: str) -> list[str]:
    """The return keys, with the matching ``KEY=VALUE``s given replacing theirs."""
    named = {spec.partition("=")[0] for spec in matching}
    return [k for k in RETURN_KEYS if k not in named] + list(matching)


@pytest.fixture
def store() -> SQLiteWorklistStore:
    store = SQLiteWorklistStore(":memory:")
    for dataset in entries():
        store.add(dataset)
    return store


FINDSCU_CASES = [
    ([], ["", "A1", "A2", "A3", "A4"]),
    (["AccessionNumber=A2"], ["A2"]),
    (["PatientName=DOE*"], ["A1", "A2"]),
    (["PatientID=P2001"], ["A3"]),
    (["RequestedProcedureID=RP4"], ["A4"]),
    ([f"{STEP}Modality=CT"], ["A1", "A3", "A4"]),
    ([f"{STEP}ScheduledStationAETitle=CT2\\MR1"], ["A2", "A3"]),
    ([f"{STEP}ScheduledStationAETitle=CT*"], ["A1", "A3", "A4"]),
    ([f"{STEP}ScheduledProcedureStepStartDate=20261130-20261201"], ["A3", "A4"]),
    ([f"{STEP}ScheduledProcedureStepStartTime=0800-1030"], ["A1", "A3", "A4"]),
    ([f"{STEP}ScheduledStationName=MRROOM"], ["A2"]),
]


def test_findscu_worklist_to_our_scp(store: SQLiteWorklistStore, tmp_path: Path) -> None:
    with worklist_node(store) as node:
        for matching, expected in FINDSCU_CASES:
            status, output, responses = findscu(node.port, keys(*matching), tmp_path / "rsp")
            assert status == 0, output
            assert accessions(responses) == expected, (matching, output)
        # every requested key answered, empty when the entry has none (entry 5: no accession)
        _, _, (answer,) = findscu(node.port, keys("PatientID=P4001"), tmp_path / "rsp")
        assert "AccessionNumber" in answer and not answer.AccessionNumber
        assert answer.SpecificCharacterSet == "ISO_IR 192"
        assert str(answer.PatientName) == "山田^太郎"


def test_findscu_sees_ff01_and_a900(store: SQLiteWorklistStore, tmp_path: Path) -> None:
    with worklist_node(store) as node:
        status, output, responses = findscu(node.port, keys("PatientSex=M"), tmp_path / "a", "-d")
        assert status == 0 and len(responses) == 5
        assert output.lower().count("0xff01") >= 5, output  # -d prints each response's status
        status, output, responses = findscu(
            node.port, keys(f"{STEP}ScheduledProcedureStepStartDate=2026"), tmp_path / "b", "-d"
        )
        assert not responses
        assert "0xa900" in output.lower(), output
        assert "ScheduledProcedureStepStartDate" in output  # the Error Comment says why


@pytest.mark.parametrize(
    ("charset", "encoding", "name", "accession", "answered_in"),
    [
        ("ISO_IR 100", "latin-1", "MÜLLER*", "A4", "ISO_IR 100"),
        ("ISO_IR 192", "utf-8", "müller*", "A4", "ISO_IR 192"),  # names match in any case
        ("ISO_IR 192", "utf-8", "山田*", None, "ISO_IR 192"),
    ],
)
def test_findscu_specific_character_set(
    store: SQLiteWorklistStore,
    tmp_path: Path,
    charset: str,
    encoding: str,
    name: str,
    accession: str | None,
    answered_in: str,
) -> None:
    with worklist_node(store) as node:
        # findscu sends the bytes it is given: the name spelt in the query's encoding
        spelt = os.fsdecode(f"PatientName={name}".encode(encoding))
        query = keys(f"SpecificCharacterSet={charset}", spelt)
        status, output, responses = findscu(node.port, query, tmp_path / "rsp")
    assert status == 0, output
    (answer,) = responses
    assert answer.SpecificCharacterSet == answered_in
    assert (answer.AccessionNumber or None) == accession
    assert str(answer.PatientName) in ("MÜLLER^JÜRGEN", "山田^太郎")


def test_findscu_cancel(tmp_path: Path) -> None:
    store = many_entries(600, "1.2.826.0.1.3680043.9.7433.92")
    with worklist_node(store) as node:
        status, output, responses = findscu(node.port, keys(), tmp_path / "rsp", "--cancel", "1")
    assert status == 0, output
    assert 1 <= len(responses) < 600
    assert "Cancel" in output, output


# --------------------------------------------------------------------------- wlmscpfs


@contextlib.contextmanager
def wlmscpfs(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """``wlmscpfs`` serving our entries from ``DIR/WLMSCP/*.wl``: (port, DIR)."""
    root = tmp_path / "wlm"
    folder = root / WLM_AE
    write_wl_files(folder)
    (folder / "lockfile").write_text("")
    port = free_tcp_port()
    argv = [dcmtk("wlmscpfs"), "-dfp", str(root), "-csk", "--single-process", str(port)]
    # --single-process keeps one process to stop; it serves associations one at a time
    with background(argv, port, tmp_path / "wlmscpfs.log"):
        yield port, root


QUERIES: list[tuple[str, dict[str, str], dict[str, str]]] = [
    ("all", {}, {}),
    ("accession", {"AccessionNumber": "A3"}, {}),
    ("patient name wildcard", {"PatientName": "DOE*"}, {}),
    ("patient id", {"PatientID": "P1002"}, {}),
    ("requested procedure", {"RequestedProcedureID": "RP1"}, {}),
    ("modality", {}, {"Modality": "CT"}),
    ("station AE", {}, {"ScheduledStationAETitle": "CT1"}),
    ("date", {}, {"ScheduledProcedureStepStartDate": "20261129"}),
    ("date range", {}, {"ScheduledProcedureStepStartDate": "20261130-20261231"}),
    ("time range", {}, {"ScheduledProcedureStepStartTime": "0800-1000"}),
    ("modality and date", {}, {"Modality": "CT", "ScheduledProcedureStepStartDate": "20261129"}),
    ("no match", {"PatientID": "NOBODY"}, {}),
    ("patient name single", {"PatientName": "ROE^RICHARD"}, {}),
    ("physician", {}, {"ScheduledPerformingPhysicianName": "JONES^BOB"}),
    ("date open range", {}, {"ScheduledProcedureStepStartDate": "-20261129"}),
    (
        "date and time",
        {},
        {"ScheduledProcedureStepStartDate": "20261129", "ScheduledProcedureStepStartTime": "1200-"},
    ),
]


def _identifier(top: dict[str, str], step: dict[str, str]) -> Dataset:
    identifier = worklist_identifier()
    for keyword, value in top.items():
        setattr(identifier, keyword, value)
    for keyword, value in step.items():
        setattr(identifier.ScheduledProcedureStepSequence[0], keyword, value)
    return identifier


def test_our_scu_to_wlmscpfs(tmp_path: Path) -> None:
    with wlmscpfs(tmp_path) as (port, _):
        matches = run_bounded(
            query_worklist(LOCALHOST, port, _identifier({}, {"Modality": "CT"}), called_ae=WLM_AE)
        )
        assert accessions(matches) == ["A1", "A3", "A4"]
        (muller,) = [m for m in matches if m.AccessionNumber == "A4"]
        assert str(muller.PatientName) == "MÜLLER^JÜRGEN"
        assert muller.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "CT1"
        cli = run(
            [
                *dicomwire_argv(),
                "worklist",
                LOCALHOST,
                str(port),
                "-aec",
                WLM_AE,
                "--modality",
                "CT",
                "--date",
                "20261129",
            ]
        )
        assert cli.returncode == 0, cli.stderr
        assert "DOE^JOHN" in cli.stdout and "1 match" in cli.stdout


def test_same_answers_as_wlmscpfs_from_the_same_files(tmp_path: Path) -> None:
    """Differential: our SCP watching wlmscpfs's folder matches what wlmscpfs matches."""
    with wlmscpfs(tmp_path) as (port, root):
        store = SQLiteWorklistStore(tmp_path / "ours.sqlite")
        config = WorklistConfig(directory=root, poll_interval=0)
        with worklist_node(store, config, ae_titles=[WLM_AE]) as node:
            for name, top, step in QUERIES:
                theirs = run_bounded(
                    query_worklist(LOCALHOST, port, _identifier(top, step), called_ae=WLM_AE)
                )
                ours = run_bounded(
                    query_worklist(LOCALHOST, node.port, _identifier(top, step), called_ae=WLM_AE)
                )
                assert accessions(ours) == accessions(theirs), name
                assert sorted(str(m.StudyInstanceUID) for m in ours) == sorted(
                    str(m.StudyInstanceUID) for m in theirs
                ), name
