"""C-FIND SCP against real SCUs: DCMTK ``findscu``, pynetdicom's ``findscu`` and Orthanc.

Each test starts a dicomwire node with QueryRetrieve over a populated index on a thread
(127.0.0.1, free port) and lets the peer query it: Study Root, Patient Root and
Patient/Study Only; wild cards, ranges, Latin-1 and UTF-8 names, C-CANCEL, A900;
pynetdicom's relational queries; Orthanc's ``/modalities/{id}/query``. Responses written
by the peers (``-X``, ``-w``) are read back with pydicom, raw bytes included.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from dicomwire.services.index import SQLiteIndex
from dicomwire.services.qr import QueryRetrieveConfig
from tests.orthanc_peer import orthanc
from tests.services.test_qr_find import (
    NODE_AE,
    PATIENTS,
    STUDIES,
    populated_index,
    qr_node_thread,
    study_uid,
)

from ._dcmtk import PROCESS_TIMEOUT, dcmtk

LOCALHOST = "127.0.0.1"


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    # Enough BULK studies that findscu's C-CANCEL (after 2) lands long before the last
    # match is sent: streaming 1500 takes the node a second or more.
    index: SQLiteIndex = populated_index(extra=1500)
    with qr_node_thread(index, QueryRetrieveConfig(max_find_responses=0)) as node_port:
        yield node_port


def findscu(port: int, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dcmtk("findscu"), "-v", "-aec", NODE_AE, LOCALHOST, str(port), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
    )


def responses(directory: Path, pattern: str = "rsp*.dcm") -> list:  # type: ignore[type-arg]
    return [dcmread(path) for path in sorted(directory.glob(pattern))]


# --------------------------------------------------------------------------- DCMTK


def test_dcmtk_findscu_study_root_wildcard_and_range(port: int, tmp_path: Path) -> None:
    result = findscu(
        port,
        tmp_path,
        "-S",
        "-X",
        "-k", "QueryRetrieveLevel=STUDY",
        "-k", "PatientName=doe*",
        "-k", "StudyDate=20250601-",
        "-k", "StudyInstanceUID",
        "-k", "StudyDescription",
        "-k", "RetrieveAETitle",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Final Find Response (Success)" in result.stdout + result.stderr
    found = responses(tmp_path)
    assert sorted(ds.StudyInstanceUID for ds in found) == [
        study_uid("P1", 2),
        study_uid("P2", 1),
    ]
    for ds in found:
        assert ds.RetrieveAETitle == NODE_AE
        assert "StudyDescription" in ds  # present, zero length for P2's study
    (p2,) = [ds for ds in found if ds.StudyInstanceUID == study_uid("P2", 1)]
    assert p2["StudyDescription"].is_empty


def test_dcmtk_findscu_patient_root_hierarchical_series(port: int, tmp_path: Path) -> None:
    result = findscu(
        port,
        tmp_path,
        "-P",
        "-X",
        "-k", "QueryRetrieveLevel=SERIES",
        "-k", "PatientID=P1",
        "-k", f"StudyInstanceUID={study_uid('P1', 1)}",
        "-k", "SeriesInstanceUID",
        "-k", "Modality",
        "-k", "NumberOfSeriesRelatedInstances",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = responses(tmp_path)
    assert sorted(ds.Modality for ds in found) == ["CT", "MR"]
    assert all(int(ds.NumberOfSeriesRelatedInstances) == 2 for ds in found)


def test_dcmtk_findscu_patient_study_only(port: int, tmp_path: Path) -> None:
    result = findscu(
        port, tmp_path, "-O", "-X",
        "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID", "-k", "PatientName=M*",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (found,) = responses(tmp_path)
    assert found.PatientID == "P3"
    assert found.SpecificCharacterSet == "ISO_IR 100"
    assert str(found.PatientName) == "Müller^Jürgen"


@pytest.mark.parametrize(
    ("charset", "query", "patient", "raw"),
    [
        ("ISO_IR 100", "MÜLLER^J*", "P3", "Müller".encode("latin-1")),
        ("ISO_IR 192", "wang*", "P4", "王^小東".encode()),
    ],
)
def test_dcmtk_findscu_non_ascii_names(
    port: int, tmp_path: Path, charset: str, query: str, patient: str, raw: bytes
) -> None:
    # findscu sends the -k value's bytes as given: encode the argument in the charset.
    encoding = "latin-1" if charset == "ISO_IR 100" else "utf-8"
    argv = [
        dcmtk("findscu"), "-S", "-X", "-aec", NODE_AE, LOCALHOST, str(port),
        "-k", f"SpecificCharacterSet={charset}",
        "-k", "QueryRetrieveLevel=STUDY",
        "-k", f"PatientName={query}",
        "-k", "PatientID",
        "-k", "StudyInstanceUID",
        "-k", "StudyDescription",
    ]  # fmt: skip
    result = subprocess.run(
        [a.encode(encoding) for a in argv], cwd=tmp_path, capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    (file,) = sorted(tmp_path.glob("rsp*.dcm"))
    found = dcmread(file)
    assert found.PatientID == patient
    assert raw in file.read_bytes()  # encoded in the instance's character set
    assert found.SpecificCharacterSet == dict((p[0], p[2]) for p in PATIENTS)[patient]


def test_dcmtk_findscu_cancel(port: int, tmp_path: Path) -> None:
    result = findscu(
        port, tmp_path, "-S", "--cancel", "2",
        "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=BULK", "-k", "StudyInstanceUID",
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Received Final Find Response (Cancel" in output
    assert output.count("(Pending)") < 1500


def test_dcmtk_findscu_identifier_not_matching_the_model(port: int, tmp_path: Path) -> None:
    result = findscu(
        port, tmp_path, "-S", "-d", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID",
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert "0xa900: Error: Data Set does not match SOP Class" in output
    assert "is not one of the study root" in output  # the Error Comment


# --------------------------------------------------------------------------- pynetdicom


def pynetdicom_findscu(port: int, cwd: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pynetdicom", "findscu", LOCALHOST, str(port), "-aec", NODE_AE,
         "-v", *args],
        cwd=cwd, capture_output=True, text=True, timeout=PROCESS_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_pynetdicom_findscu_study_root(port: int, tmp_path: Path) -> None:
    output = pynetdicom_findscu(
        port, tmp_path, "-S", "-w",
        "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=DOE*", "-k", "StudyInstanceUID=",
        "-k", "ProcedureCodeSequence[0].CodeValue=CTHEAD",
    )  # fmt: skip
    assert "0x0000 (Success)" in output
    (found,) = responses(tmp_path, "rsp*")
    assert found.StudyInstanceUID == study_uid("P1", 1)
    assert found.ProcedureCodeSequence[0].CodeValue == "CTHEAD"


def test_pynetdicom_findscu_relational_and_hierarchical(port: int, tmp_path: Path) -> None:
    query = ["-k", "QueryRetrieveLevel=SERIES", "-k", "Modality=MR", "-k", "SeriesInstanceUID="]
    relational = pynetdicom_findscu(port, tmp_path, "-S", "--relational-query", *query)
    assert "0x0000 (Success)" in relational
    assert relational.count("Pending") == len(STUDIES) + 1  # MR series, and MR_small
    hierarchical = pynetdicom_findscu(port, tmp_path, "-S", *query)
    assert "0xA900" in hierarchical


# --------------------------------------------------------------------------- Orthanc


def test_orthanc_queries_dicomwire(port: int, tmp_path: Path) -> None:
    with orthanc(tmp_path, modalities={"DW": (NODE_AE, LOCALHOST, port)}) as peer:
        started = peer.rest(
            "POST",
            "/modalities/DW/query",
            {"Level": "Study", "Query": {"PatientName": "doe*", "StudyDate": "-20251231"}},
        )
        answers = peer.rest("GET", f"/queries/{started['ID']}/answers")
        contents = [
            peer.rest("GET", f"/queries/{started['ID']}/answers/{a}/content?simplify")
            for a in answers
        ]
        assert sorted(c["StudyInstanceUID"] for c in contents) == [
            study_uid("P1", 1),
            study_uid("P2", 1),
        ]
        # Patient level (Orthanc uses Patient Root there), a Latin-1 name back.
        started = peer.rest(
            "POST",
            "/modalities/DW/query",
            {"Level": "Patient", "Query": {"PatientID": "P3", "PatientName": ""}},
        )
        (answer,) = peer.rest("GET", f"/queries/{started['ID']}/answers")
        content = peer.rest("GET", f"/queries/{started['ID']}/answers/{answer}/content?simplify")
        assert content["PatientName"] == "Müller^Jürgen"
