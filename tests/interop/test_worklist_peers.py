"""Modality Worklist against Orthanc's worklists plugin and pynetdicom's findscu.

- our SCU (``query_worklist`` and ``dicomwire worklist --json``) → Orthanc serving a
  folder of ``.wl`` files with ``libModalityWorklists.so``;
- ``python -m pynetdicom findscu -W -w`` → our Worklist SCP (responses written as files);
- Orthanc as SCU (``POST /modalities/{id}/find-worklist``) → our Worklist SCP.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from dicomwire.services.worklist import SQLiteWorklistStore, query_worklist, worklist_identifier

from ..conftest import import_or_fail, run_bounded
from ..orthanc_peer import orthanc
from ..services.test_worklist_data import (
    LOCALHOST,
    SCP_AE,
    accessions,
    entries,
    worklist_node,
    write_wl_files,
)
from ._dcmtk import PROCESS_TIMEOUT, dicomwire_argv, run

pytestmark = pytest.mark.interop


def _step(**keys: str) -> Dataset:
    identifier = worklist_identifier()
    for keyword, value in keys.items():
        setattr(identifier.ScheduledProcedureStepSequence[0], keyword, value)
    return identifier


def test_our_scu_to_orthanc_worklists(tmp_path: Path) -> None:
    folder = tmp_path / "worklists"
    write_wl_files(folder)
    # Orthanc answers worklist queries only from the AE titles it knows
    known = {"DW": ("DICOMWIRE", LOCALHOST, 104)}
    with orthanc(tmp_path, worklists=folder, modalities=known) as peer:
        port = peer.dicom_port
        everything = run_bounded(query_worklist(LOCALHOST, port, called_ae=peer.aet))
        assert accessions(everything) == ["", "A1", "A2", "A3", "A4"]
        ct = run_bounded(query_worklist(LOCALHOST, port, _step(Modality="CT"), called_ae=peer.aet))
        assert accessions(ct) == ["A1", "A3", "A4"]
        day = run_bounded(
            query_worklist(
                LOCALHOST,
                port,
                _step(ScheduledProcedureStepStartDate="20261130-20261201"),
                called_ae=peer.aet,
            )
        )
        assert accessions(day) == ["A3", "A4"]
        cli = run(
            [
                *dicomwire_argv(),
                "worklist",
                LOCALHOST,
                str(port),
                "-aec",
                peer.aet,
                "--station-ae",
                "MR1",
                "--json",
            ]
        )
        assert cli.returncode == 0, cli.stderr
        (only,) = json.loads(cli.stdout)
        assert Dataset.from_json(only).AccessionNumber == "A2"


def test_pynetdicom_findscu_to_our_scp(tmp_path: Path) -> None:
    import_or_fail("pynetdicom")
    store = SQLiteWorklistStore(":memory:")
    for dataset in entries():
        store.add(dataset)
    with worklist_node(store) as node:
        for keys, expected in (
            (["ScheduledProcedureStepSequence[0].Modality=CT"], ["A1", "A3", "A4"]),
            (["PatientName=DOE*"], ["A1", "A2"]),
            (
                ["ScheduledProcedureStepSequence[0].ScheduledStationAETitle=CT2\\MR1"],
                ["A2", "A3"],
            ),
        ):
            out = tmp_path / "_".join(k.partition("=")[2] for k in keys).replace("\\", "-")
            out.mkdir()
            argv = [sys.executable, "-m", "pynetdicom", "findscu", "-W", "-w", "-aec", SCP_AE]
            argv += [
                "-k",
                "AccessionNumber=",
                "-k",
                "PatientName=" if "PatientName" not in keys[0] else "PatientID=",
            ]
            for key in keys:
                argv += ["-k", key]
            result = subprocess.run(
                [*argv, LOCALHOST, str(node.port)],
                capture_output=True,
                text=True,
                timeout=PROCESS_TIMEOUT,
                cwd=out,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            responses = [dcmread(p) for p in sorted(out.glob("rsp*"))]
            assert accessions(responses) == expected, (keys, result.stderr)


def test_orthanc_as_scu_to_our_scp(tmp_path: Path) -> None:
    """Orthanc's ``/modalities/{id}/find-worklist`` (a C-FIND SCU) against our SCP."""
    store = SQLiteWorklistStore(":memory:")
    for dataset in entries():
        store.add(dataset)
    with worklist_node(store) as node:
        modalities = {"DW": (SCP_AE, LOCALHOST, node.port)}
        with orthanc(tmp_path, modalities=modalities) as peer:
            query = {
                "AccessionNumber": "",
                "PatientName": "DOE*",
                "ScheduledProcedureStepSequence": [{"Modality": "", "ScheduledStationAETitle": ""}],
            }
            answers = peer.rest("POST", "/modalities/DW/find-worklist", query)
            assert sorted(a["AccessionNumber"] for a in answers) == ["A1", "A2"]
            steps = {a["AccessionNumber"]: a["ScheduledProcedureStepSequence"] for a in answers}
            assert steps["A1"] == [{"Modality": "CT", "ScheduledStationAETitle": "CT1"}]
            # Orthanc asks in ISO_IR 100: a Latin-1 name comes back in it
            query = {"PatientID": "P3001", "PatientName": "", "AccessionNumber": ""}
            (answer,) = peer.rest("POST", "/modalities/DW/find-worklist", query)
            assert answer["PatientName"] == "MÜLLER^JÜRGEN"
            assert answer["SpecificCharacterSet"] == "ISO_IR 100"
            # the entry without an Accession Number: the key answered empty. (Its Japanese
            # name is answered in ISO_IR 192, which Orthanc 1.10 turns into its own Latin-1:
            # see test_worklist.py for that answer checked byte for byte.)
            query = {"PatientID": "P4001", "AccessionNumber": ""}
            (answer,) = peer.rest("POST", "/modalities/DW/find-worklist", query)
            assert answer["AccessionNumber"] == "" and answer["PatientID"] == "P4001"
