"""The Q/R index (PS3.4 C.6.1/C.6.2): SQL narrows, the reference matcher decides.

Every query is checked against a brute-force answer computed from the same data sets with
:mod:`dicomwire.services.matching` alone, so the SQL can only be shown to lose matches,
never to agree with itself.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicomwire.errors import DataSetError
from dicomwire.services.index import LEVELS, Index, SQLiteIndex, rebuild
from dicomwire.services.matching import compile_query
from tests.pg_peer import fresh_database, postgres  # noqa: F401 (the session's server)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
NAMES = ["Doe^John", "DOE^Jane", "Müller^Jürgen"]
UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID"}


def corpus() -> list[Dataset]:
    """3 patients x 2 studies x 2 series x 2 instances, varied where queries look."""
    found = []
    for p, s, se, i in itertools.product(range(3), range(2), range(2), range(2)):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = NAMES[p]
        ds.PatientID = f"P{p}"
        ds.PatientBirthDate = f"19{70 + p}0101"
        ds.PatientSex = "MF"[p % 2]
        ds.StudyInstanceUID = f"1.2.3.{p}.{s}"
        ds.StudyDate = f"2026110{p + s + 1}"
        ds.StudyTime = f"{10 + s}3000"
        ds.AccessionNumber = f"ACC{p}{s}"
        ds.StudyDescription = "HEAD" if s == 0 else "CHEST"
        ds.SeriesInstanceUID = f"1.2.3.{p}.{s}.{se}"
        ds.Modality = "CT" if se == 0 else "MR"
        ds.SeriesNumber = se + 1
        ds.SOPClassUID = CT if se == 0 else MR
        ds.SOPInstanceUID = f"1.2.3.{p}.{s}.{se}.{i}"
        ds.InstanceNumber = i + 1
        found.append(ds)
    return found


#: Every test runs against each backend: the embedded default and the shared PostgreSQL.
BACKENDS = ["sqlite", "postgres"]


@contextlib.contextmanager
def backend(
    request: pytest.FixtureRequest, kind: str, folder: Path
) -> Iterator[Callable[[], Index]]:
    """A maker of indexes over one empty store of ``kind`` (each call: the same store)."""
    opened: list[Index] = []
    if kind == "sqlite":
        store: str | Path = folder / "index.sqlite"
        with_database: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    else:
        from dicomwire.services.postgres import PostgresIndex

        with_database = fresh_database(request.getfixturevalue("postgres"))
    with with_database as url:

        def make() -> Index:
            built: Index = SQLiteIndex(store) if kind == "sqlite" else PostgresIndex(url)
            opened.append(built)
            return built

        try:
            yield make
        finally:
            for built in opened:
                built.close()


@pytest.fixture(params=BACKENDS)
def new_index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Index]]:
    with backend(request, request.param, tmp_path) as make:
        yield make


@pytest.fixture(scope="module", params=BACKENDS)
def index(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Index]:
    with backend(request, request.param, tmp_path_factory.mktemp("index")) as make:
        built = make()
        for ds in corpus():
            built.add(ds, Path(f"/store/{ds.SOPInstanceUID}.dcm"), ExplicitVRLittleEndian, 1000)
        yield built


def brute_force(level: str, identifier: Dataset) -> list[str]:
    """The unique keys of the matching entities, from the data sets alone."""
    query = compile_query(identifier)
    entities: dict[str, Dataset] = {}
    for ds in corpus():
        key = str(ds.get(UNIQUE.get(level, "SOPInstanceUID")))
        entities.setdefault(key, ds)
    return sorted(key for key, ds in entities.items() if query.matches(ds))


def query(level: str, **keys: Any) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    unique = UNIQUE.get(level, "SOPInstanceUID")
    setattr(identifier, unique, keys.pop(unique, ""))
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    return identifier


QUERIES = [
    ("PATIENT", {}),
    ("PATIENT", {"PatientName": "doe*"}),
    ("PATIENT", {"PatientName": "MÜLLER^JÜRGEN"}),
    ("PATIENT", {"PatientSex": "F"}),
    ("PATIENT", {"PatientBirthDate": "19710101-"}),
    ("STUDY", {"StudyDate": "20261102-20261103"}),
    ("STUDY", {"StudyDate": "-20261101"}),
    ("STUDY", {"StudyTime": "11"}),
    ("STUDY", {"StudyTime": "1000-1059"}),
    ("STUDY", {"PatientID": "P1", "StudyDescription": "C*"}),
    ("STUDY", {"StudyInstanceUID": ["1.2.3.0.1", "1.2.3.2.0", "9.9"]}),
    ("STUDY", {"AccessionNumber": "ACC?1"}),
    ("STUDY", {"AccessionNumber": '""'}),
    ("SERIES", {"Modality": "MR", "StudyInstanceUID": "1.2.3.1.0"}),
    ("SERIES", {"SeriesNumber": "2"}),
    ("IMAGE", {"SOPClassUID": MR, "SeriesInstanceUID": "1.2.3.2.1.1"}),
    ("IMAGE", {"InstanceNumber": "2", "PatientName": "*jane*"}),
]


@pytest.mark.parametrize(("level", "keys"), QUERIES)
def test_find_agrees_with_the_reference_matcher(
    index: Index, level: str, keys: dict[str, Any]
) -> None:
    identifier = query(level, **keys)
    unique = UNIQUE.get(level, "SOPInstanceUID")
    answers = list(index.find(level, identifier))
    assert sorted(str(a.get(unique)) for a in answers) == brute_force(level, identifier)
    for answer in answers:
        assert answer.QueryRetrieveLevel == level
        assert {e.keyword for e in answer} >= {k for k in keys} | {unique}


def test_every_requested_key_is_answered_zero_length_when_absent(index: Index) -> None:
    identifier = query("STUDY", PatientID="P0", StudyDate="", ReferringPhysicianName="")
    (first, *_) = index.find("STUDY", identifier)
    assert first.StudyDate.startswith("2026")
    assert "ReferringPhysicianName" in first and first.ReferringPhysicianName in ("", None)
    assert first.SpecificCharacterSet == "ISO_IR 100"


def test_derived_keys_are_counted(index: Index) -> None:
    study = query(
        "STUDY",
        StudyInstanceUID="1.2.3.1.0",
        NumberOfStudyRelatedSeries="",
        NumberOfStudyRelatedInstances="",
        ModalitiesInStudy="",
    )
    (answer,) = index.find("STUDY", study)
    assert (int(answer.NumberOfStudyRelatedSeries), int(answer.NumberOfStudyRelatedInstances)) == (
        2,
        4,
    )
    assert list(answer.ModalitiesInStudy) == ["CT", "MR"]
    # a derived key is matched too: only studies with an MR series
    with_mr = list(index.find("STUDY", query("STUDY", ModalitiesInStudy="MR")))
    assert len(with_mr) == 6
    patient = query("PATIENT", PatientID="P2", NumberOfPatientRelatedInstances="")
    (answer,) = index.find("PATIENT", patient)
    assert int(answer.NumberOfPatientRelatedInstances) == 8


def test_instances_below_the_matches_for_retrieve(index: Index) -> None:
    found = list(index.instances("SERIES", query("SERIES", SeriesInstanceUID="1.2.3.0.1.1")))
    assert [i.sop_instance_uid for i in found] == ["1.2.3.0.1.1.0", "1.2.3.0.1.1.1"]
    assert {i.sop_class_uid for i in found} == {MR}
    assert found[0].path == Path("/store/1.2.3.0.1.1.0.dcm")
    assert len(list(index.instances("PATIENT", query("PATIENT", PatientID="P1")))) == 8


def test_results_are_streamed(index: Index) -> None:
    results = index.find("IMAGE", query("IMAGE"))
    assert iter(results) is results  # a generator, not a list
    assert sum(1 for _ in results) == 24


def test_adding_again_replaces_and_removing_prunes_empty_parents(
    tmp_path: Path, new_index: Callable[[], Index]
) -> None:
    built = new_index()
    data = corpus()[:2]  # two instances of one series
    for ds in data:
        built.add(ds, tmp_path / "a.dcm", ExplicitVRLittleEndian, 10)
    built.add(data[0], tmp_path / "b.dcm", ExplicitVRLittleEndian, 20)
    assert built.count() == 2
    paths = {i.path.name for i in built.instances("IMAGE", query("IMAGE"))}
    assert paths == {"a.dcm", "b.dcm"}
    assert built.remove(str(data[0].SOPInstanceUID))
    assert len(list(built.find("STUDY", query("STUDY")))) == 1
    assert built.remove(str(data[1].SOPInstanceUID))
    for level in LEVELS:
        assert list(built.find(level, query(level))) == []
    assert not built.remove("9.9.9")


def test_an_instance_without_its_uids_is_refused(new_index: Callable[[], Index]) -> None:
    ds = corpus()[0]
    del ds.SeriesInstanceUID
    with pytest.raises(DataSetError, match="series_instance_uid"):
        new_index().add(ds, Path("x.dcm"), ExplicitVRLittleEndian, 1)


def test_multi_valued_names_are_not_lost_by_the_sql(
    tmp_path: Path, new_index: Callable[[], Index]
) -> None:
    built = new_index()
    ds = corpus()[0]
    ds.PatientName = ["Doe^John", "Smith^J"]
    built.add(ds, tmp_path / "x.dcm", ExplicitVRLittleEndian, 1)
    assert len(list(built.find("PATIENT", query("PATIENT", PatientName="smith^j")))) == 1


def test_rebuild_from_files_equals_adding(tmp_path: Path, new_index: Callable[[], Index]) -> None:
    root = tmp_path / "store"
    for ds in corpus()[:6]:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = root / str(ds.StudyInstanceUID) / f"{ds.SOPInstanceUID}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    (root / ".incoming").mkdir()
    (root / ".incoming" / "half.dcm").write_bytes(b"partial")
    (root / "broken.dcm").write_bytes(b"not dicom at all")
    built = new_index()
    added, failures = rebuild(built, root)
    assert added == 6 and built.count() == 6
    assert [path.name for path, _ in failures] == ["broken.dcm"]
    studies = list(built.find("STUDY", query("STUDY", NumberOfStudyRelatedInstances="")))
    assert [int(s.NumberOfStudyRelatedInstances) for s in studies] == [4, 2]


@pytest.mark.parametrize(
    ("level", "keys", "rows"),
    [
        ("STUDY", {"StudyInstanceUID": "1.2.3.1.0"}, 1),
        ("PATIENT", {"PatientName": "doe*"}, 2),
        ("STUDY", {"StudyDate": "20261103-"}, 3),
        ("STUDY", {"StudyTime": "11"}, 3),
        ("SERIES", {"Modality": "CT", "PatientID": "P0"}, 2),
        ("IMAGE", {"SOPInstanceUID": ["1.2.3.0.0.0.0", "1.2.3.2.1.1.1"]}, 2),
    ],
)
def test_the_sql_narrows_before_the_matcher(
    index: Index, level: str, keys: dict[str, Any], rows: int
) -> None:
    """White box: the indexed keys are filtered in SQL, not only by the matcher."""
    candidates = list(index._candidates(level, compile_query(query(level, **keys))))  # type: ignore[attr-defined]
    assert len(candidates) == rows


@pytest.mark.parametrize("where", ["memory", "file"])
def test_a_streamed_answer_never_sees_a_later_write(tmp_path: Path, where: str) -> None:
    """The in-memory index has one connection: its reads are fetched whole under the
    writer's lock; a file's reader has its own snapshot. Either way a query begun before
    a write answers as of its start, past the first batch of rows too."""
    built = SQLiteIndex(":memory:" if where == "memory" else tmp_path / "index.sqlite")
    (template, *_) = corpus()
    uids = [f"{template.SOPInstanceUID}.{n}" for n in range(300)]
    for uid in uids:
        template.SOPInstanceUID = uid
        built.add(template, Path(f"/store/{uid}.dcm"), ExplicitVRLittleEndian, 1)
    answers = built.find("IMAGE", query("IMAGE", SeriesInstanceUID=template.SeriesInstanceUID))
    paths = built.paths()
    assert next(answers).SOPInstanceUID == uids[0]
    assert next(paths)[0] == uids[0]
    for uid in uids[100:]:
        built.remove(uid)
    template.SOPInstanceUID = "1.2.3.999"
    built.add(template, Path("/store/new.dcm"), ExplicitVRLittleEndian, 1)
    assert [a.SOPInstanceUID for a in answers] == uids[1:]
    assert [uid for uid, _ in paths] == uids[1:]
    assert built.count() == 101
    built.close()
