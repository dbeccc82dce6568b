"""``dicomwire find/move/get`` (issue 15 item 5) against real Q/R SCPs.

DCMTK ``dcmqrscp`` (indexed with ``dcmqridx``, quota raised), pynetdicom ``qrscp`` (loaded
by C-STORE) and Orthanc (loaded over REST) each serve the same small corpus: a Latin-1
named patient with a two-image CT study, and a patient whose study holds a CT and an MR
image. Every command runs as the installed ``dicomwire`` console script, its exit status,
stdout and the files it wrote checked.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.orthanc_peer import OrthancPeer, orthanc

from ..conftest import find_dcmtk_tool, import_or_fail
from ._dcmtk import LOCALHOST, background, dicomwire_argv, free_tcp_port, run

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
LATIN_NAME = "Müller^Jürgen"


@dataclass
class Corpus:
    """The files every peer serves, and what a test needs to know of them."""

    files: list[Path] = field(default_factory=list)
    studies: dict[str, list[str]] = field(default_factory=dict)  # study UID -> SOP instances
    latin_study: str = ""
    mixed_study: str = ""


def make_corpus(root: Path) -> Corpus:
    """P1 (Latin-1 name): one CT study of 2 images; P2: one study with a CT and an MR."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = Corpus()
    ct = dcmread(get_testdata_file("CT_small.dcm"))
    mr = dcmread(get_testdata_file("MR_small.dcm"))
    plan = [
        ("P1", LATIN_NAME, "20260101", [ct, ct]),
        ("P2", "DOE^JOHN", "20260202", [ct, mr]),
    ]
    for patient_id, name, date, sources in plan:
        study = generate_uid()
        corpus.studies[study] = []
        for number, source in enumerate(sources, 1):
            ds = source.copy()
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.PatientID, ds.PatientName, ds.StudyDate = patient_id, name, date
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.AccessionNumber, ds.StudyID, ds.InstanceNumber = f"A{patient_id}", "1", number
            path = root / f"{patient_id}-{number}.dcm"
            ds.save_as(path, enforce_file_format=True)
            corpus.files.append(path)
            corpus.studies[study].append(str(ds.SOPInstanceUID))
        if patient_id == "P1":
            corpus.latin_study = study
        else:
            corpus.mixed_study = study
    return corpus


def dicomwire(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run([*dicomwire_argv(), *args], timeout=60, cwd=cwd)


def stored_instances(directory: Path) -> set[str]:
    """SOP Instance UIDs of the Part 10 files under ``directory`` (pydicom reads them)."""
    found = set()
    for path in directory.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            found.add(str(dcmread(path).SOPInstanceUID))
    return found


# --------------------------------------------------------------------------- dcmqrscp


@dataclass
class Peer:
    port: int
    aet: str
    corpus: Corpus
    store_port: int = 0  # the storescp the peer knows as STORE (dcmqrscp)
    receive_port: int = 0  # the port it knows as DICOMWIRE (our move --port)
    received: Path = Path()


@pytest.fixture(scope="module")
def dcmqrscp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    """dcmqrscp over the corpus, STORE (a DCMTK storescp) and DICOMWIRE as destinations."""
    dcmqrscp_bin = find_dcmtk_tool("dcmqrscp")
    dcmqridx = find_dcmtk_tool("dcmqridx")
    storescp = find_dcmtk_tool("storescp")
    root = tmp_path_factory.mktemp("dcmqrscp")
    corpus = make_corpus(root / "files")
    database = root / "db"
    database.mkdir()
    subprocess.run([dcmqridx, str(database), *map(str, corpus.files)], check=True, timeout=30)
    port, store_port, receive_port = free_tcp_port(), free_tcp_port(), free_tcp_port()
    config = root / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
        "HostTable BEGIN\n"
        f"store = (STORE, {LOCALHOST}, {store_port})\n"
        f"dicomwire = (DICOMWIRE, {LOCALHOST}, {receive_port})\n"
        "HostTable END\nVendorTable BEGIN\nVendorTable END\n"
        # the quota: 500 studies (dcmqrscp's own upper limit, DB_UpperMaxStudies) of 1 GB;
        # a 100-study example value silently caps it
        f"AETable BEGIN\nQRSCP {database} RW (500, 1024mb) ANY\nAETable END\n"
    )
    received = root / "received"
    received.mkdir()
    with (
        background([dcmqrscp_bin, "-c", str(config), str(port)], port, root / "qr.log"),
        background(
            [storescp, "-aet", "STORE", "-od", str(received), str(store_port)],
            store_port,
            root / "storescp.log",
        ),
    ):
        yield Peer(port, "QRSCP", corpus, store_port, receive_port, received)


def peer_args(peer: Peer) -> list[str]:
    return [LOCALHOST, str(peer.port), "-aec", peer.aet]


def test_find_prints_a_table_of_the_requested_keys_with_latin1_names(dcmqrscp: Peer) -> None:
    result = dicomwire(
        "find", *peer_args(dcmqrscp), "-S", "-k", "PatientName", "-k", "PatientID",
        "-k", "StudyInstanceUID", "-k", "StudyDate",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["PatientName", "PatientID", "StudyInstanceUID", "StudyDate"]
    rows = {line.split()[2]: line.split() for line in lines[2:]}
    assert set(rows) == set(dcmqrscp.corpus.studies)
    assert rows[dcmqrscp.corpus.latin_study][:2] == [LATIN_NAME, "P1"]
    assert "2 matches, status 0x0000" in result.stderr


def test_find_patient_study_only_model(dcmqrscp: Peer) -> None:
    result = dicomwire(
        "find", *peer_args(dcmqrscp), "-O", "-k", "PatientID=P1", "-k", "PatientName", "--csv"
    )
    assert result.returncode == 0, result.stderr
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["PatientID", "PatientName"],
        ["P1", LATIN_NAME],
    ]


def test_find_json_is_dicom_json_and_csv_has_a_row_per_match(dcmqrscp: Peer) -> None:
    keys = ["-k", "PatientName=DOE*", "-k", "StudyInstanceUID", "-k", "StudyDate"]
    as_json = dicomwire("find", *peer_args(dcmqrscp), *keys, "--json")
    assert as_json.returncode == 0, as_json.stderr
    matches = json.loads(as_json.stdout)
    assert [m["0020000D"]["Value"] for m in matches] == [[dcmqrscp.corpus.mixed_study]]
    assert matches[0]["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "DOE^JOHN"}]}
    assert matches[0]["00080020"]["Value"] == ["20260202"]

    as_csv = dicomwire(
        "find", *peer_args(dcmqrscp), "-k", "PatientName", "-k", "StudyDate=", "--csv"
    )
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0] == ["PatientName", "StudyDate"]
    assert sorted(rows[1:]) == [["DOE^JOHN", "20260202"], [LATIN_NAME, "20260101"]]


def test_find_date_range_and_wildcard_match_at_the_peer(dcmqrscp: Peer) -> None:
    result = dicomwire(
        "find", *peer_args(dcmqrscp), "-k", "StudyDate=20260201-", "-k", "PatientID=P*",
        "--csv",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["StudyDate", "PatientID"],
        ["20260202", "P2"],
    ]


def test_find_cancel_sends_c_cancel_after_n_matches(dcmqrscp: Peer) -> None:
    """dcmqrscp ignores C-CANCEL and answers every match (known): we still end cleanly."""
    result = dicomwire(
        "find", *peer_args(dcmqrscp), "-k", "StudyInstanceUID", "--cancel", "1", "--csv"
    )
    assert result.returncode == 0, result.stderr
    assert "C-CANCEL sent" in result.stderr
    assert len(result.stdout.splitlines()) - 1 >= 1


def test_find_extract_writes_each_response_as_a_part10_file(dcmqrscp: Peer, tmp_path: Path) -> None:
    result = dicomwire(
        "find", *peer_args(dcmqrscp), "-k", "PatientID", "-k", "StudyInstanceUID", "-X",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    files = sorted(tmp_path.glob("rsp*.dcm"))
    assert [f.name for f in files] == ["rsp0001.dcm", "rsp0002.dcm"]
    dcmftest = find_dcmtk_tool("dcmftest")
    for path in files:
        assert run([dcmftest, str(path)]).stdout.startswith("yes")
    assert {str(dcmread(f).StudyInstanceUID) for f in files} == set(dcmqrscp.corpus.studies)


def test_find_failure_status_is_printed_with_exit_1(dcmqrscp: Peer) -> None:
    """A hierarchical SERIES query without the study's UID: dcmqrscp refuses it."""
    result = dicomwire("find", *peer_args(dcmqrscp), "-k", "QueryRetrieveLevel=SERIES")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "C-FIND failed: status 0x" in result.stderr


def test_move_to_storescp_prints_progress_and_counts(dcmqrscp: Peer) -> None:
    study = dcmqrscp.corpus.latin_study
    result = dicomwire(
        "move", *peer_args(dcmqrscp), "--dest", "STORE", "-k", f"StudyInstanceUID={study}"
    )
    assert result.returncode == 0, result.stderr
    assert "C-MOVE pending: remaining 1, completed 1" in result.stderr
    assert "C-MOVE status 0x0000 (Success): completed 2, failed 0" in result.stdout
    assert set(dcmqrscp.corpus.studies[study]) <= stored_instances(dcmqrscp.received)


def test_move_to_an_unknown_destination_exits_1_with_a801(dcmqrscp: Peer) -> None:
    study = dcmqrscp.corpus.latin_study
    result = dicomwire(
        "move", *peer_args(dcmqrscp), "-aem", "NOWHERE", "-k", f"StudyInstanceUID={study}"
    )
    assert result.returncode == 1
    assert "C-MOVE failed: status 0xA801" in result.stderr


def test_move_with_port_receives_the_instances_itself(dcmqrscp: Peer, tmp_path: Path) -> None:
    study = dcmqrscp.corpus.mixed_study
    result = dicomwire(
        "move", *peer_args(dcmqrscp), "--port", str(dcmqrscp.receive_port),
        "-od", str(tmp_path), "-k", f"StudyInstanceUID={study}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert stored_instances(tmp_path) == set(dcmqrscp.corpus.studies[study])


def test_get_stores_into_dir_files_that_dcmftest_accepts(dcmqrscp: Peer, tmp_path: Path) -> None:
    """dcmqrscp does not answer SOP Class UID: the common storage classes are proposed."""
    study = dcmqrscp.corpus.mixed_study
    result = dicomwire(
        "get", *peer_args(dcmqrscp), "-od", str(tmp_path), "-k", f"StudyInstanceUID={study}"
    )
    assert result.returncode == 0, result.stderr
    assert "from the common storage classes" in result.stderr
    assert "completed 2, failed 0" in result.stdout
    assert stored_instances(tmp_path) == set(dcmqrscp.corpus.studies[study])
    dcmftest = find_dcmtk_tool("dcmftest")
    for path in tmp_path.rglob("*.dcm"):
        assert run([dcmftest, str(path)]).stdout.startswith("yes")


def test_get_with_a_sop_class_hint_counts_what_it_cannot_receive(
    dcmqrscp: Peer, tmp_path: Path
) -> None:
    """Only CT proposed: the MR image of the study fails at the SCP, listed and exit 1."""
    study = dcmqrscp.corpus.mixed_study
    result = dicomwire(
        "get", *peer_args(dcmqrscp), "-od", str(tmp_path), "-x", "CTImageStorage",
        "-k", f"StudyInstanceUID={study}",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "receiving 1 SOP class(es), from --sop-class" in result.stderr
    assert "completed 1, failed 1" in result.stdout
    assert len(stored_instances(tmp_path)) == 1


# --------------------------------------------------------------------------- pynetdicom


@pytest.fixture(scope="module")
def qrscp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    """pynetdicom's qrscp (SQLAlchemy), loaded with ``dicomwire store``."""
    import_or_fail("pynetdicom")
    import_or_fail("sqlalchemy")
    import sys

    root = tmp_path_factory.mktemp("qrscp")
    corpus = make_corpus(root / "files")
    port, receive_port = free_tcp_port(), free_tcp_port()
    config = root / "qrscp.ini"
    config.write_text(
        "[DEFAULT]\nae_title: QRSCP\n"
        f"port: {port}\nmax_pdu: 16382\nacse_timeout: 30\ndimse_timeout: 30\n"
        f"network_timeout: 30\nbind_address: {LOCALHOST}\n"
        f"instance_location: {root / 'instances'}\n"
        f"database_location: {root / 'instances.sqlite'}\nlog_identifier: False\n"
        f"[DICOMWIRE]\naddress: {LOCALHOST}\nport: {receive_port}\n"
    )
    argv = [sys.executable, "-m", "pynetdicom", "qrscp", "-c", str(config)]
    with background(argv, port, root / "qrscp.log"):
        stored = dicomwire("store", LOCALHOST, str(port), "-aec", "QRSCP", str(root / "files"))
        assert stored.returncode == 0, stored.stdout + stored.stderr
        yield Peer(port, "QRSCP", corpus, receive_port=receive_port)


def test_pynetdicom_find_by_wildcard_name(qrscp: Peer) -> None:
    result = dicomwire(
        "find", *peer_args(qrscp), "-S", "-k", "PatientName=DOE*", "-k", "StudyInstanceUID",
        "--csv",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header, *rows = list(csv.reader(io.StringIO(result.stdout)))
    assert header == ["PatientName", "StudyInstanceUID"]
    # qrscp answers a study once per instance (its SQL joins them): the same row each time
    assert {tuple(row) for row in rows} == {("DOE^JOHN", qrscp.corpus.mixed_study)}


def test_pynetdicom_find_patient_root_decodes_latin1(qrscp: Peer) -> None:
    result = dicomwire("find", *peer_args(qrscp), "-P", "-k", "PatientID=P1", "-k", "PatientName")
    assert result.returncode == 0, result.stderr
    assert LATIN_NAME in result.stdout


def test_pynetdicom_move_to_our_own_receiver(qrscp: Peer, tmp_path: Path) -> None:
    study = qrscp.corpus.latin_study
    result = dicomwire(
        "move", *peer_args(qrscp), "--port", str(qrscp.receive_port), "-od", str(tmp_path),
        "-k", f"StudyInstanceUID={study}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "completed 2, failed 0" in result.stdout
    assert stored_instances(tmp_path) == set(qrscp.corpus.studies[study])


def test_pynetdicom_get_with_sop_class_hints(qrscp: Peer, tmp_path: Path) -> None:
    study = qrscp.corpus.mixed_study
    result = dicomwire(
        "get", *peer_args(qrscp), "-od", str(tmp_path), "-x", CT, "-x", MR,
        "-k", f"StudyInstanceUID={study}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert stored_instances(tmp_path) == set(qrscp.corpus.studies[study])


def test_pynetdicom_cancel(qrscp: Peer) -> None:
    result = dicomwire("find", *peer_args(qrscp), "-k", "StudyInstanceUID", "--cancel", "1")
    assert result.returncode == 0, result.stderr
    assert "C-CANCEL sent" in result.stderr


# --------------------------------------------------------------------------- Orthanc


@pytest.fixture(scope="module")
def orthanc_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OrthancPeer, Peer]]:
    root = tmp_path_factory.mktemp("orthanc")
    corpus = make_corpus(root / "files")
    receive_port = free_tcp_port()
    with orthanc(root, modalities={"DICOMWIRE": ("DICOMWIRE", LOCALHOST, receive_port)}) as peer:
        for path in corpus.files:
            peer.upload(path)
        yield peer, Peer(peer.dicom_port, peer.aet, corpus, receive_port=receive_port)


def test_orthanc_find_study_level(orthanc_peer: tuple[OrthancPeer, Peer]) -> None:
    _, peer = orthanc_peer
    result = dicomwire(
        "find", *peer_args(peer), "-k", "PatientID=P*", "-k", "PatientName",
        "-k", "StudyInstanceUID", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = {
        m["0020000D"]["Value"][0]: m["00100010"]["Value"][0]["Alphabetic"]
        for m in json.loads(result.stdout)
    }
    assert names == {peer.corpus.latin_study: LATIN_NAME, peer.corpus.mixed_study: "DOE^JOHN"}


def test_orthanc_get_proposes_only_the_classes_a_c_find_reports(
    orthanc_peer: tuple[OrthancPeer, Peer], tmp_path: Path
) -> None:
    _, peer = orthanc_peer
    study = peer.corpus.mixed_study
    result = dicomwire(
        "get", *peer_args(peer), "-od", str(tmp_path), "-k", f"StudyInstanceUID={study}"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "receiving 2 SOP class(es), from a C-FIND down to the IMAGE level" in result.stderr
    assert stored_instances(tmp_path) == set(peer.corpus.studies[study])


def test_orthanc_move_to_our_receiver(
    orthanc_peer: tuple[OrthancPeer, Peer], tmp_path: Path
) -> None:
    """Orthanc sends no pending responses, only the final counts."""
    _, peer = orthanc_peer
    study = peer.corpus.latin_study
    result = dicomwire(
        "move", *peer_args(peer), "--port", str(peer.receive_port), "-od", str(tmp_path),
        "-k", f"StudyInstanceUID={study}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert stored_instances(tmp_path) == set(peer.corpus.studies[study])


def test_orthanc_unknown_destination_is_a_failure(orthanc_peer: tuple[OrthancPeer, Peer]) -> None:
    """Orthanc answers C000 where A801 is due (known): a failure status all the same."""
    _, peer = orthanc_peer
    study = peer.corpus.latin_study
    result = dicomwire(
        "move", *peer_args(peer), "--dest", "NOWHERE", "-k", f"StudyInstanceUID={study}"
    )
    assert result.returncode == 1
    assert "C-MOVE failed: status 0x" in result.stderr


def test_orthanc_get_of_a_study_of_too_many_sop_classes_explains_the_overflow(
    orthanc_peer: tuple[OrthancPeer, Peer], tmp_path: Path
) -> None:
    """130 storage SOP classes in one study: the C-FIND finds them, no A-ASSOCIATE-RQ can
    carry their contexts (PS3.8 9.3.2.2), and get says so instead of failing silently."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from dicomwire.services.storage.sop_classes import storage_sop_classes

    orthanc_process, _ = orthanc_peer
    study, series = generate_uid(), generate_uid()
    for number, sop_class in enumerate(sorted(storage_sop_classes())[:130]):
        ds = Dataset()
        ds.PatientID, ds.PatientName = "X1", "MANY^CLASSES"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
        ds.Modality, ds.InstanceNumber = "OT", number + 1
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = tmp_path / f"{number}.dcm"
        ds.save_as(path, enforce_file_format=True)
        orthanc_process.upload(path)
    result = dicomwire(
        "get", LOCALHOST, str(orthanc_process.dicom_port), "-aec", orthanc_process.aet,
        "-od", str(tmp_path / "got"), "-k", f"StudyInstanceUID={study}",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "receiving 130 SOP class(es), from a C-FIND down to the IMAGE level" in result.stderr
    assert "131 presentation contexts needed" in result.stderr
    assert "at most 128 (PS3.8 9.3.2.2" in result.stderr
    assert "130 of them are storage SOP classes to receive by C-GET" in result.stderr
    assert not (tmp_path / "got").exists()


# --------------------------------------------------------------------------- worklist


def write_worklist_entry(path: Path, name: str, accession: str, modality: str) -> None:
    """A worklist entry with every attribute wlmscpfs requires (it skips incomplete ones)."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    step = Dataset()
    step.Modality, step.RequestedContrastAgent = modality, "NONE"
    step.ScheduledStationAETitle = f"{modality}1"
    step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime = "20261129", "0830"
    step.ScheduledPerformingPhysicianName = "JOHNSON"
    step.ScheduledProcedureStepDescription, step.ScheduledProcedureStepID = "HEAD", "SPS1"
    step.ScheduledStationName, step.ScheduledProcedureStepLocation = "STATION1", "ROOM1"
    step.PreMedication, step.CommentsOnTheScheduledProcedureStep = "", ""
    entry = Dataset()
    entry.SpecificCharacterSet = "ISO_IR 100"
    entry.AccessionNumber, entry.PatientName, entry.PatientID = accession, name, accession
    entry.PatientBirthDate, entry.PatientSex = "19700101", "F"
    entry.StudyInstanceUID = generate_uid()
    entry.RequestingPhysician, entry.RequestedProcedureDescription = "SMITH", "CT HEAD"
    entry.ScheduledProcedureStepSequence = [step]
    entry.RequestedProcedureID, entry.RequestedProcedurePriority = "RP1", "LOW"
    entry.file_meta = FileMetaDataset()
    entry.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    entry.save_as(path, enforce_file_format=False, implicit_vr=False, little_endian=True)


def test_worklist_find_against_wlmscpfs_with_sequence_keys(tmp_path: Path) -> None:
    wlmscpfs = find_dcmtk_tool("wlmscpfs")
    folder = tmp_path / "worklists" / "WLMSCP"
    folder.mkdir(parents=True)
    (folder / "lockfile").touch()
    write_worklist_entry(folder / "ct.wl", LATIN_NAME, "ACC1", "CT")
    write_worklist_entry(folder / "mr.wl", "DOE^JANE", "ACC2", "MR")
    port = free_tcp_port()
    argv = [wlmscpfs, "-dfp", str(tmp_path / "worklists"), str(port)]
    with background(argv, port, tmp_path / "wlmscpfs.log"):
        result = dicomwire(
            "find", LOCALHOST, str(port), "-aec", "WLMSCP", "-W",
            "-k", "PatientName", "-k", "AccessionNumber",
            "-k", "(0040,0100)[0].Modality=CT",
            "-k", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
            "--csv",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        [
            "PatientName",
            "AccessionNumber",
            "ScheduledProcedureStepSequence[0].Modality",
            "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
        ],
        [LATIN_NAME, "ACC1", "CT", "CT1"],
    ]
