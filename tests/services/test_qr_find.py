"""C-FIND SCP (PS3.4 C.4.1, C.6): a real node with QueryRetrieve over a populated index,
queried by dicomwire's own SCU over TCP on 127.0.0.1.

The corpus mixes synthetic patients (Latin-1 and UTF-8 names, sequences, absent values)
with pydicom's real-world CT and MR test files. Every status of C.4.1.1.4 is provoked:
FF00 per match, 0000, FE00 on C-CANCEL, A700 past the limit, A900 for each way an
identifier can fail the model, C001 when the index is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

import dicomwire
from dicomwire.dimse.primitives import CFindRQ
from dicomwire.dimse.session import DimseSession
from dicomwire.errors import DimseStatusError
from dicomwire.services.client import Client
from dicomwire.services.index import SQLiteIndex
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.qr import QueryRetrieve, QueryRetrieveConfig
from dicomwire.services.qr.models import QUERY_MODELS
from dicomwire.services.storage import Storage, StorageConfig
from dicomwire.services.verification import Verification
from dicomwire.ul.association import Timeouts
from dicomwire.ul.association import connect as associate
from dicomwire.ul.negotiation import RequestorConfig
from tests.conftest import run_bounded
from tests.services._support import LOCALHOST, NodeThread

NODE_AE = "QRSCP"
TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0)
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
STUDY_FIND = QUERY_MODELS[("study", "find")]
PATIENT_FIND = QUERY_MODELS[("patient", "find")]
PATIENT_STUDY_FIND = QUERY_MODELS[("patient-study", "find")]

# --------------------------------------------------------------------------- the corpus

#: (patient id, name, character set, sex, birth date)
PATIENTS = [
    ("P1", "Doe^John", None, "M", "19700101"),
    ("P2", "DOE^Jane", None, "F", None),
    ("P3", "Müller^Jürgen", "ISO_IR 100", None, "19800515"),
    ("P4", "Wang^XiaoDong=王^小東", "ISO_IR 192", "M", "19901231"),
]
#: (patient id, study number, study date, description, procedure code or None)
STUDIES = [
    ("P1", 1, "20250110", "HEAD", "CTHEAD"),
    ("P1", 2, "20260301", "CHEST", None),
    ("P2", 1, "20251231", None, "MRKNEE"),
    ("P3", 1, "20240615", "Kopf", "CTHEAD"),
    ("P4", 1, "20261129", "頭部", None),
]


def study_uid(patient: str, number: int) -> str:
    return f"1.2.826.0.1.3680043.9.7433.9.{patient[1:]}.{number}"


def synthetic() -> list[Dataset]:
    """Two series of two instances per study (CT then MR)."""
    names = {p[0]: p for p in PATIENTS}
    found = []
    for patient, number, date, description, code in STUDIES:
        _, name, charset, sex, birth = names[patient]
        for series in (1, 2):
            for instance in (1, 2):
                ds = Dataset()
                if charset:
                    ds.SpecificCharacterSet = charset
                ds.PatientName = name
                ds.PatientID = patient
                if sex:
                    ds.PatientSex = sex
                if birth:
                    ds.PatientBirthDate = birth
                ds.StudyInstanceUID = study_uid(patient, number)
                ds.StudyDate = date
                ds.StudyTime = "101500"
                ds.AccessionNumber = f"A{patient}{number}"
                if description:
                    ds.StudyDescription = description
                if code:
                    item = Dataset()
                    item.CodeValue = code
                    item.CodingSchemeDesignator = "LOCAL"
                    item.CodeMeaning = code.title()
                    ds.ProcedureCodeSequence = [item]
                ds.SeriesInstanceUID = f"{ds.StudyInstanceUID}.{series}"
                ds.Modality = "CT" if series == 1 else "MR"
                ds.SeriesNumber = series
                ds.SOPClassUID = CT if series == 1 else MR
                ds.SOPInstanceUID = f"{ds.SeriesInstanceUID}.{instance}"
                ds.InstanceNumber = instance
                found.append(ds)
    return found


REAL_FILES = ("CT_small.dcm", "MR_small.dcm")


def populated_index(path: str | Path = ":memory:", extra: int = 0) -> SQLiteIndex:
    """The synthetic corpus, pydicom's CT and MR, and ``extra`` one-instance studies."""
    index = SQLiteIndex(path)
    for ds in synthetic():
        index.add(ds, Path(f"/store/{ds.SOPInstanceUID}.dcm"), ExplicitVRLittleEndian, 1000)
    for name in REAL_FILES:
        file = get_testdata_file(name)
        assert file is not None
        header = dcmread(file, stop_before_pixels=True)
        syntax = str(header.file_meta.TransferSyntaxUID)
        index.add(header, Path(file), syntax, Path(file).stat().st_size)
    for number in range(extra):
        ds = Dataset()
        ds.PatientName = f"Bulk^{number:04d}"
        ds.PatientID = "BULK"
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.9.7433.8.{number}"
        ds.StudyDate = "20200101"
        ds.SeriesInstanceUID = f"{ds.StudyInstanceUID}.1"
        ds.Modality = "OT"
        ds.SOPClassUID = CT
        ds.SOPInstanceUID = f"{ds.SeriesInstanceUID}.1"
        index.add(ds, Path(f"/store/bulk{number}.dcm"), ExplicitVRLittleEndian, 10)
    return index


def qr_config(port: int = 0, root: Path | None = None) -> NodeConfig:
    return NodeConfig(
        ae_titles=[NODE_AE],
        host=LOCALHOST,
        port=port,
        storage=StorageConfig(root=root or Path("/tmp/dicomwire-qr-unused"), discard=True),
        timeouts=TIMEOUTS,
        shutdown_grace=1.0,
    )


def qr_node(index: Any, config: QueryRetrieveConfig | None = None) -> Node:
    """The node of the task: Verification, Storage and QueryRetrieve over ``index``."""
    node_config = qr_config()
    return Node(
        node_config,
        [Verification(), Storage(node_config.storage), QueryRetrieve(index, config)],
    )


class QRNodeThread(NodeThread):
    """A Q/R node on its own thread and loop, for blocking peers (DCMTK, pynetdicom)."""

    def __init__(self, index: Any, config: QueryRetrieveConfig | None = None) -> None:
        super().__init__(qr_config())
        self._index = index
        self._qr_config = config

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        node = qr_node(self._index, self._qr_config)
        await node.start()
        self.node = node
        self.port = node.port
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await node.shutdown()


@contextlib.contextmanager
def qr_node_thread(index: Any, config: QueryRetrieveConfig | None = None) -> Iterator[int]:
    """A running Q/R node on a thread; yields its port."""
    node = QRNodeThread(index, config)
    node.start()
    try:
        yield node.port
    finally:
        node.stop()


@contextlib.asynccontextmanager
async def serving(index: Any, config: QueryRetrieveConfig | None = None) -> AsyncIterator[Node]:
    async with qr_node(index, config) as node:
        yield node


def connect(node: Node, **kwargs: Any) -> Any:
    return dicomwire.connect(
        LOCALHOST,
        node.port,
        called_ae=NODE_AE,
        services=["verification", "find", PATIENT_STUDY_FIND],
        timeouts=TIMEOUTS,
        **kwargs,
    )


@contextlib.asynccontextmanager
async def relational_client(node: Node, *sop_classes: str) -> AsyncIterator[Client]:
    """An association proposing relational queries (PS3.4 C.5.1.1) for ``sop_classes``."""
    config = RequestorConfig(
        "RELSCU",
        NODE_AE,
        [(uid, [ExplicitVRLittleEndian]) for uid in (STUDY_FIND, PATIENT_FIND)],
        extended_negotiation={uid: b"\x01" for uid in sop_classes},
    )
    association = await associate(LOCALHOST, node.port, config, timeouts=TIMEOUTS)
    session = DimseSession(association, timeouts=TIMEOUTS)
    session.start()
    client = Client(session)
    try:
        yield client
    finally:
        await client.release()


async def find_all(client: Any, query: dict[str, Any], model: str = "study") -> list[Dataset]:
    return [match async for match in client.find(query, model=model)]


def query_node(index: Any, query: dict[str, Any], model: str = "study", **config: Any) -> Any:
    """The matches of one query, or the DimseStatusError it ended with."""

    async def run() -> Any:
        async with serving(index, QueryRetrieveConfig(**config)) as node, connect(node) as client:
            try:
                return await find_all(client, query, model)
            except DimseStatusError as exc:
                return exc

    return run_bounded(run(), 30)


@pytest.fixture(scope="module")
def index() -> SQLiteIndex:
    return populated_index()


def studies(query: dict[str, Any], index: SQLiteIndex, model: str = "study") -> list[str]:
    base = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""}
    matches = query_node(index, {**base, **query}, model)
    assert isinstance(matches, list), matches
    return sorted(str(m.StudyInstanceUID) for m in matches)


# --------------------------------------------------------------------------- matching


def test_study_level_by_patient_id_answers_every_requested_key(index: SQLiteIndex) -> None:
    query = {
        "QueryRetrieveLevel": "STUDY",
        "PatientID": "P1",
        "StudyInstanceUID": "",
        "StudyDate": "",
        "StudyDescription": "",
        "ReferringPhysicianName": "",  # never stored: answered with zero length
        "ModalitiesInStudy": "",
        "NumberOfStudyRelatedInstances": "",
        "RetrieveAETitle": "",
        "InstanceAvailability": "",
    }
    matches = query_node(index, query)
    assert sorted(m.StudyInstanceUID for m in matches) == [study_uid("P1", 1), study_uid("P1", 2)]
    for match in matches:
        for keyword in query:
            assert keyword in match, keyword
        assert match.QueryRetrieveLevel == "STUDY"
        assert match.PatientID == "P1"
        assert match["ReferringPhysicianName"].is_empty
        assert match.RetrieveAETitle == NODE_AE
        assert match.InstanceAvailability == "ONLINE"
        assert list(match.ModalitiesInStudy) == ["CT", "MR"]
        assert int(match.NumberOfStudyRelatedInstances) == 4
    dates = {m.StudyInstanceUID: m.StudyDate for m in matches}
    assert dates[study_uid("P1", 2)] == "20260301"


def test_wildcard_names_match_case_insensitively(index: SQLiteIndex) -> None:
    assert studies({"PatientName": "doe*"}, index) == [
        study_uid("P1", 1),
        study_uid("P1", 2),
        study_uid("P2", 1),
    ]
    assert studies({"PatientName": "D?E^JA*"}, index) == [study_uid("P2", 1)]
    assert studies({"PatientName": "doe^john"}, index) == [study_uid("P1", 1), study_uid("P1", 2)]


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        ("20251231-", [("P1", 2), ("P2", 1), ("P4", 1)]),
        ("-20250110", [("P1", 1), ("P3", 1)]),
        ("20250101-20251231", [("P1", 1), ("P2", 1)]),
        ("20261129", [("P4", 1)]),
    ],
)
def test_date_ranges_with_open_ends(
    index: SQLiteIndex, dates: str, expected: list[tuple[str, int]]
) -> None:
    assert studies({"StudyDate": dates, "PatientID": "P*"}, index) == sorted(
        study_uid(*e) for e in expected
    )


def test_uid_list_matching(index: SQLiteIndex) -> None:
    wanted = [study_uid("P2", 1), study_uid("P4", 1), "1.2.3.404"]
    assert studies({"StudyInstanceUID": "\\".join(wanted)}, index) == wanted[:2]


def test_sequence_matching_returns_matching_items_with_requested_keys(
    index: SQLiteIndex,
) -> None:
    query = {
        "QueryRetrieveLevel": "STUDY",
        "StudyInstanceUID": "",
        "ProcedureCodeSequence": [{"CodeValue": "CTHEAD", "CodeMeaning": ""}],
    }
    matches = query_node(index, query)
    assert sorted(m.StudyInstanceUID for m in matches) == [
        study_uid("P1", 1),
        study_uid("P3", 1),
    ]
    for match in matches:
        (item,) = match.ProcedureCodeSequence
        assert item.CodeValue == "CTHEAD"
        assert item.CodeMeaning == "Cthead"
        assert "CodingSchemeDesignator" not in item  # not requested: left out


def test_empty_value_matching(index: SQLiteIndex) -> None:
    expected = [study_uid("P2", 1), *_real_studies_without("StudyDescription")]
    assert studies({"StudyDescription": '""'}, index) == sorted(expected)


def _real_studies_without(keyword: str) -> list[str]:
    found = []
    for name in REAL_FILES:
        file = get_testdata_file(name)
        assert file is not None
        ds = dcmread(file, stop_before_pixels=True)
        if not str(ds.get(keyword, "") or "").strip():
            found.append(str(ds.StudyInstanceUID))
    return found


def test_real_files_found_by_instance_in_patient_root(index: SQLiteIndex) -> None:
    file = get_testdata_file("CT_small.dcm")
    assert file is not None
    ct = dcmread(file, stop_before_pixels=True)
    query = {
        "QueryRetrieveLevel": "IMAGE",
        "PatientID": ct.PatientID,
        "StudyInstanceUID": ct.StudyInstanceUID,
        "SeriesInstanceUID": ct.SeriesInstanceUID,
        "SOPInstanceUID": "",
        "SOPClassUID": "",
        "InstanceNumber": "",
    }
    (match,) = query_node(index, query, model="patient")
    assert match.SOPInstanceUID == ct.SOPInstanceUID
    assert match.SOPClassUID == ct.SOPClassUID
    assert match.InstanceNumber == ct.InstanceNumber


def test_patient_level_and_patient_study_only_model(index: SQLiteIndex) -> None:
    query = {"QueryRetrieveLevel": "PATIENT", "PatientID": "", "PatientName": "",
             "PatientSex": '""', "NumberOfPatientRelatedStudies": ""}  # fmt: skip
    for model in ("patient", "patient-study"):
        matches = query_node(index, query, model=model)
        assert [m.PatientID for m in matches] == ["P3"], model
        assert int(matches[0].NumberOfPatientRelatedStudies) == 1


# --------------------------------------------------------------------------- charsets


def test_latin1_and_utf8_names_both_ways(index: SQLiteIndex) -> None:
    async def run() -> tuple[list[Dataset], list[Dataset], list[Dataset]]:
        async with serving(index) as node, connect(node) as client:
            latin = Dataset()
            latin.SpecificCharacterSet = "ISO_IR 100"
            latin.QueryRetrieveLevel = "STUDY"
            latin.PatientName = "MÜLLER*"
            latin.StudyInstanceUID = ""
            latin.StudyDescription = ""
            utf8 = Dataset()
            utf8.SpecificCharacterSet = "ISO_IR 192"
            utf8.QueryRetrieveLevel = "STUDY"
            utf8.PatientName = "Wang^XiaoDong=王^小東"
            utf8.StudyInstanceUID = ""
            utf8.StudyDescription = ""
            # A UTF-8 query for the Latin-1 patient: decoded, then compared as text.
            mixed = Dataset()
            mixed.SpecificCharacterSet = "ISO_IR 192"
            mixed.QueryRetrieveLevel = "STUDY"
            mixed.PatientName = "müller^jürgen"
            mixed.StudyInstanceUID = ""
            return (
                await find_all(client, latin),  # type: ignore[arg-type]
                await find_all(client, utf8),  # type: ignore[arg-type]
                await find_all(client, mixed),  # type: ignore[arg-type]
            )

    latin, utf8, mixed = run_bounded(run(), 30)
    (match,) = latin
    assert match.SpecificCharacterSet == "ISO_IR 100"  # the instance's, not the query's
    assert str(match.PatientName) == "Müller^Jürgen"
    assert match.StudyDescription == "Kopf"
    (match,) = utf8
    assert match.SpecificCharacterSet == "ISO_IR 192"
    assert str(match.PatientName) == "Wang^XiaoDong=王^小東"
    assert match.StudyDescription == "頭部"
    (match,) = mixed
    assert match.SpecificCharacterSet == "ISO_IR 100"
    assert str(match.PatientName) == "Müller^Jürgen"


# --------------------------------------------------------------------------- A900


@pytest.mark.parametrize(
    ("model", "query", "why"),
    [
        ("study", {"QueryRetrieveLevel": "PATIENT", "PatientID": ""}, "not one of"),
        ("patient-study", {"QueryRetrieveLevel": "SERIES", "PatientID": "P1"}, "not one of"),
        ("study", {"QueryRetrieveLevel": "FOO"}, "not one of"),
        ("study", {"PatientID": "P1", "StudyInstanceUID": ""}, "missing"),
        ("study", {"QueryRetrieveLevel": "STUDY", "SeriesInstanceUID": ""}, "below"),
        ("patient", {"QueryRetrieveLevel": "PATIENT", "StudyDate": ""}, "below"),
        ("study", {"QueryRetrieveLevel": "SERIES", "Modality": "CT"}, "must be given"),
        (
            "patient",
            {"QueryRetrieveLevel": "STUDY", "PatientID": "P*", "StudyInstanceUID": ""},
            "single value",
        ),
        (
            "study",
            {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2\\1.3", "Modality": ""},
            "single value",
        ),
        ("study", {"QueryRetrieveLevel": "STUDY", "StudyDate": "2026-01-01x"}, "not a valid"),
        ("study", {"QueryRetrieveLevel": "STUDY", "StudyTime": "10h"}, "not a valid"),
        ("study", {"QueryRetrieveLevel": "STUDY", "PatientName": "A\\B"}, "several values"),
        (
            "study",
            {"QueryRetrieveLevel": "STUDY", "ProcedureCodeSequence": [{}, {}]},
            "one item",
        ),
    ],
)
def test_identifiers_that_do_not_fit_the_model_get_a900(
    index: SQLiteIndex, model: str, query: dict[str, Any], why: str
) -> None:
    outcome = query_node(index, query, model)
    assert isinstance(outcome, DimseStatusError), outcome
    assert outcome.status == 0xA900
    assert why in outcome.comment


def test_relational_queries_when_negotiated(index: SQLiteIndex) -> None:
    series_query = {"QueryRetrieveLevel": "SERIES", "Modality": "MR", "SeriesInstanceUID": ""}

    async def run() -> tuple[list[Dataset], Any]:
        async with serving(index) as node:
            async with relational_client(node, STUDY_FIND) as client:
                relational = await find_all(client, series_query)
                try:  # Patient Root was not negotiated relational: hierarchical rules
                    await find_all(client, series_query, model="patient")
                    refused: Any = None
                except DimseStatusError as exc:
                    refused = exc
            return relational, refused

    relational, refused = run_bounded(run(), 30)
    assert len(relational) == len(STUDIES) + 1  # one MR series per study, and MR_small
    assert {m.Modality for m in relational} == {"MR"}
    assert isinstance(refused, DimseStatusError) and refused.status == 0xA900


def test_relational_refused_by_configuration(index: SQLiteIndex) -> None:
    async def run() -> Any:
        config = QueryRetrieveConfig(relational=False)
        async with serving(index, config) as node, relational_client(node, STUDY_FIND) as client:
            try:
                await find_all(client, {"QueryRetrieveLevel": "SERIES", "Modality": "MR"})
            except DimseStatusError as exc:
                return exc
        return None

    refused = run_bounded(run(), 30)
    assert isinstance(refused, DimseStatusError) and refused.status == 0xA900


# --------------------------------------------------------------------------- limits, cancel


def test_limit_answers_a700_after_the_allowed_matches() -> None:
    bulk = populated_index(extra=30)
    query = {"QueryRetrieveLevel": "STUDY", "PatientID": "BULK", "StudyInstanceUID": ""}

    async def run() -> tuple[list[Dataset], Any]:
        seen: list[Dataset] = []
        config = QueryRetrieveConfig(max_find_responses=10)
        async with serving(bulk, config) as node, connect(node) as client:
            try:
                async for match in client.find(query):
                    seen.append(match)
            except DimseStatusError as exc:
                return seen, exc
        return seen, None

    seen, error = run_bounded(run(), 30)
    assert len(seen) == 10
    assert isinstance(error, DimseStatusError) and error.status == 0xA700
    assert "more than 10 matches" in error.comment
    # Exactly at the limit is a success.
    assert len(query_node(bulk, {**query, "StudyInstanceUID": ""}, max_find_responses=30)) == 30


class GatedIndex(SQLiteIndex):
    """An index whose scans stop after the first match until ``gate`` opens: a scan that
    is still running when the C-CANCEL arrives. ``pulled`` counts matches taken."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.pulled = 0

    def find(self, level: str, identifier: Dataset) -> Iterator[Dataset]:
        for number, match in enumerate(super().find(level, identifier)):
            if number == 1:
                self.gate.wait(20)
            self.pulled += 1
            yield match


def test_cancel_stops_at_once_even_in_the_middle_of_a_scan(tmp_path: Path) -> None:
    gated = GatedIndex(str(tmp_path / "index.sqlite"))
    for ds in synthetic():
        gated.add(ds, Path("/x.dcm"), ExplicitVRLittleEndian, 1)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.PatientID = "P1"
    identifier.StudyInstanceUID = study_uid("P1", 1)
    identifier.SeriesInstanceUID = f"{study_uid('P1', 1)}.1"
    identifier.SOPInstanceUID = ""
    identifier.StudyDate = ""

    async def run() -> tuple[list[int], int]:
        async with serving(gated) as node, connect(node) as client:
            from dicomwire.dimse.datasets import encode_dataset

            context = client.session.find_context(PATIENT_FIND)
            request = CFindRQ(
                PATIENT_FIND, dataset=encode_dataset(identifier, context.transfer_syntax or "")
            )
            operation = await client.session.send(request, context.context_id)
            statuses = []
            async for response in operation:
                statuses.append(int(response.status))
                if len(statuses) == 1:
                    await operation.cancel()
            gated.gate.set()  # the scan may go on: it ends at its next match
            # The association still works after a cancelled query.
            again = await find_all(
                client, {"QueryRetrieveLevel": "STUDY", "PatientID": "P2", "StudyInstanceUID": ""}
            )
            return statuses, len(again)

    try:
        statuses, again = run_bounded(run(), 30)
    finally:
        gated.gate.set()
    assert statuses == [0xFF00, 0xFE00]
    assert again == 1


def test_matches_are_read_lazily() -> None:
    """A limit of 3 over 500 matches reads a batch or two, never the whole result."""
    from dicomwire.services.qr.find import QUEUE_SIZE

    bulk = CountingIndex(":memory:")
    for number in range(500):
        ds = Dataset()
        ds.PatientID = "BULK"
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.9.7433.7.{number}"
        ds.SeriesInstanceUID = f"{ds.StudyInstanceUID}.1"
        ds.SOPInstanceUID = f"{ds.SeriesInstanceUID}.1"
        ds.SOPClassUID = CT
        bulk.add(ds, Path("/x.dcm"), ExplicitVRLittleEndian, 1)
    outcome = query_node(
        bulk,
        {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""},
        max_find_responses=3,
    )
    assert isinstance(outcome, DimseStatusError) and outcome.status == 0xA700
    assert bulk.pulled <= QUEUE_SIZE + 5


class CountingIndex(SQLiteIndex):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.pulled = 0

    def find(self, level: str, identifier: Dataset) -> Iterator[Dataset]:
        for match in super().find(level, identifier):
            self.pulled += 1
            yield match


# --------------------------------------------------------------------------- concurrency


def test_simultaneous_queries_on_one_association_and_across_associations(
    index: SQLiteIndex,
) -> None:
    queries = [
        {"QueryRetrieveLevel": "STUDY", "PatientID": patient, "StudyInstanceUID": ""}
        for patient, *_ in PATIENTS
    ]
    expected = [sum(1 for s in STUDIES if s[0] == p) for p, *_ in PATIENTS]

    async def run() -> tuple[list[int], list[list[int]]]:
        async with serving(index) as node:
            async with connect(node, window=4) as client:
                window = await asyncio.gather(*(find_all(client, q) for q in queries))

            async def one_association() -> list[int]:
                async with connect(node) as client:
                    return [len(await find_all(client, q)) for q in queries]

            across = await asyncio.gather(*(one_association() for _ in range(4)))
        return [len(w) for w in window], list(across)

    window, across = run_bounded(run(), 60)
    assert window == expected
    assert across == [expected] * 4


# --------------------------------------------------------------------------- index failure


def test_index_unavailable_answers_c001_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "index.sqlite"
    broken = populated_index(path)
    broken.close()  # it reopens on use: make what it reopens not a database
    for stale in tmp_path.glob("index.sqlite*"):
        stale.unlink()
    path.write_bytes(b"not a database" * 512)
    caplog.set_level(logging.ERROR, logger="dicomwire.services.qr.find")
    outcome = query_node(broken, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""})
    assert isinstance(outcome, DimseStatusError), outcome
    assert outcome.status == 0xC001
    assert "index unavailable" in outcome.comment
    assert any("the index failed" in r.getMessage() for r in caplog.records)


def test_an_identifier_that_cannot_be_decoded_gets_a900(index: SQLiteIndex) -> None:
    # Explicit VR Little Endian (the only syntax proposed): a VR that does not exist.
    garbage = b"\x08\x00\x52\x00ZZ\x06\x00STUDY "

    async def run() -> tuple[int, str]:
        async with serving(index) as node, relational_client(node) as client:
            context = client.session.find_context(STUDY_FIND)
            assert context.transfer_syntax == ExplicitVRLittleEndian
            request = CFindRQ(STUDY_FIND, dataset=garbage)
            operation = await client.session.send(request, context.context_id)
            final = await operation.wait()
            comment = getattr(final.primitive, "error_comment", None) or ""
            return int(final.status), comment

    status, comment = run_bounded(run(), 30)
    assert status == 0xA900
    assert "Unknown Value Representation 'ZZ'" in comment


def test_a_stuck_scan_blocks_neither_the_node_nor_other_queries(tmp_path: Path) -> None:
    """One query's scan waits in its worker thread; another association queries and
    echoes meanwhile; the first query then finishes with every match."""
    gated = GatedIndex(str(tmp_path / "index.sqlite"))
    for ds in synthetic():
        gated.add(ds, Path("/x.dcm"), ExplicitVRLittleEndian, 1)
    everything = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""}
    one = {**everything, "PatientID": "P2"}

    async def run() -> tuple[int, int, list[str]]:
        async with serving(gated) as node, connect(node) as first, connect(node) as second:
            stuck = asyncio.ensure_future(find_all(first, everything))
            while gated.pulled < 1:  # the first match is out, the scan now waits
                await asyncio.sleep(0.01)
            other = await find_all(second, one)
            echo = await second.echo()
            gated.gate.set()
            matches = await stuck
            return len(other), int(echo), sorted(str(m.StudyInstanceUID) for m in matches)

    try:
        other, echo, matches = run_bounded(run(), 30)
    finally:
        gated.gate.set()
    assert (other, echo) == (1, 0)
    assert matches == sorted(study_uid(p, n) for p, n, *_ in STUDIES)
