"""The Modality Worklist SCP, store and SCU (PS3.4 Annex K) over real associations.

Our SCU (``dicomwire.connect(...).find(model="worklist")`` and the typed C-FIND request for
statuses) against our SCP on a node thread: every supported matching key of the RIS
statement's Table 3.2 (single value, wildcard, range, list of AE titles), FF01 for other
matching keys, A900 for a malformed identifier, FE00 on C-CANCEL, A700 past the response
limit, C001 when the store fails, Specific Character Set both ways, return keys answered
empty, sequence matching with one item, the calling-AE restriction, and the watched
directory followed while the node runs.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset

from dicomwire.dimse.primitives import CFindRQ
from dicomwire.services.client import connect
from dicomwire.services.worklist import (
    SQLiteWorklistStore,
    WorklistConfig,
    read_entries,
    worklist_identifier,
)
from dicomwire.services.worklist.service import MODALITY_WORKLIST_FIND

from ..conftest import run_bounded
from .test_worklist_data import (
    LOCALHOST,
    SCP_AE,
    accessions,
    entries,
    many_entries,
    worklist_node,
    write_wl,
    write_wl_files,
)


@pytest.fixture
def store() -> SQLiteWorklistStore:
    store = SQLiteWorklistStore(":memory:")
    for dataset in entries():
        store.add(dataset)
    return store


async def _find(
    port: int,
    identifier: Dataset,
    *,
    calling: str = "MODALITY",
    called: str = SCP_AE,
    cancel_after: int | None = None,
) -> tuple[list[int], list[Dataset], Any]:
    """(pending statuses, matches, final response) of one C-FIND on the worklist model."""
    async with connect(
        LOCALHOST, port, called_ae=called, calling_ae=calling, services=["worklist"]
    ) as client:
        from dicomwire.dimse.datasets import encode_dataset

        context = client.session.find_context(MODALITY_WORKLIST_FIND)
        data = encode_dataset(identifier, context.transfer_syntax or "1.2.840.10008.1.2")
        operation = await client.session.send(
            CFindRQ(MODALITY_WORKLIST_FIND, dataset=data), context.context_id
        )
        statuses: list[int] = []
        matches: list[Dataset] = []
        async for response in operation:
            if response.status.is_pending:
                statuses.append(int(response.status))
                decoded = response.decode()
                assert decoded is not None
                matches.append(decoded)
                if cancel_after is not None and len(matches) == cancel_after:
                    await operation.cancel()
        return statuses, matches, operation.final


def find(port: int, identifier: Dataset, **options: Any) -> tuple[list[int], list[Dataset], Any]:
    return run_bounded(_find(port, identifier, **options), 60)


def step_query(**step: str) -> Dataset:
    identifier = worklist_identifier()
    for keyword, value in step.items():
        setattr(identifier.ScheduledProcedureStepSequence[0], keyword, value)
    return identifier


def top_query(**keys: str) -> Dataset:
    identifier = worklist_identifier()
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    return identifier


# --------------------------------------------------------------------------- matching keys

TABLE_3_2_CASES = [
    ("everything", top_query(), ["", "A1", "A2", "A3", "A4"]),
    ("accession single", top_query(AccessionNumber="A3"), ["A3"]),
    ("patient name single", top_query(PatientName="DOE^JOHN"), ["A1"]),
    ("patient name case", top_query(PatientName="doe^jane"), ["A2"]),
    ("patient name wildcard", top_query(PatientName="DOE*"), ["A1", "A2"]),
    ("patient name ?", top_query(PatientName="?OE^*"), ["A1", "A2", "A3"]),
    ("patient id single", top_query(PatientID="P2001"), ["A3"]),
    ("patient id wildcard", top_query(PatientID="P100*"), ["A1", "A2"]),
    ("requested procedure id", top_query(RequestedProcedureID="RP4"), ["A4"]),
    ("modality single", step_query(Modality="CT"), ["A1", "A3", "A4"]),
    ("modality wildcard", step_query(Modality="M*"), ["A2"]),
    ("station AE single", step_query(ScheduledStationAETitle="CT1"), ["A1", "A4"]),
    ("station AE multiple", step_query(ScheduledStationAETitle="CT2\\MR1"), ["A2", "A3"]),
    ("station AE wildcard", step_query(ScheduledStationAETitle="CT*"), ["A1", "A3", "A4"]),
    ("date single", step_query(ScheduledProcedureStepStartDate="20261129"), ["", "A1", "A2"]),
    (
        "date range",
        step_query(ScheduledProcedureStepStartDate="20261130-20261201"),
        ["A3", "A4"],
    ),
    ("date open range", step_query(ScheduledProcedureStepStartDate="20261130-"), ["A3", "A4"]),
    ("time single", step_query(ScheduledProcedureStepStartTime="1400"), ["A2"]),
    ("time range", step_query(ScheduledProcedureStepStartTime="0800-1030"), ["A1", "A3", "A4"]),
    ("station name", step_query(ScheduledStationName="CTROOM1"), ["A1", "A4"]),
    ("station name wildcard", step_query(ScheduledStationName="*ROOM"), ["", "A2"]),
    ("physician", step_query(ScheduledPerformingPhysicianName="JONES^BOB"), ["A2"]),
    (
        "date and modality on one item",
        step_query(ScheduledProcedureStepStartDate="20261129", Modality="CT"),
        ["A1"],
    ),
    ("no match", top_query(PatientID="NOBODY"), []),
]


def test_every_table_3_2_key(store: SQLiteWorklistStore) -> None:
    with worklist_node(store) as node:
        for name, identifier, expected in TABLE_3_2_CASES:
            statuses, matches, final = find(node.port, identifier)
            assert accessions(matches) == expected, name
            assert set(statuses) <= {0xFF00}, name
            assert int(final.status) == 0x0000, name


def test_unsupported_matching_key_answers_ff01_and_is_not_matched(
    store: SQLiteWorklistStore,
) -> None:
    with worklist_node(store) as node:
        statuses, matches, final = find(node.port, top_query(PatientSex="M"))
        assert accessions(matches) == ["", "A1", "A2", "A3", "A4"]  # not used for matching
        assert statuses == [0xFF01] * 5
        assert int(final.status) == 0
        # inside the step: Scheduled Procedure Step Location is not a supported key
        statuses, matches, _ = find(
            node.port, step_query(Modality="CT", ScheduledProcedureStepLocation="X")
        )
        assert accessions(matches) == ["A1", "A3", "A4"] and set(statuses) == {0xFF01}
        # a return key alone (no value) is no matching key: FF00
        statuses, _, _ = find(node.port, top_query(PatientSex=""))
        assert set(statuses) == {0xFF00}


@pytest.mark.parametrize(
    ("identifier", "comment"),
    [
        (step_query(ScheduledProcedureStepStartDate="2026-11-29"), "not a valid DA"),
        (top_query(PatientID="A\\B"), "several values"),
    ],
)
def test_malformed_identifier_answers_a900(
    store: SQLiteWorklistStore, identifier: Dataset, comment: str
) -> None:
    with worklist_node(store) as node:
        statuses, matches, final = find(node.port, identifier)
        assert not matches and not statuses
        assert int(final.status) == 0xA900
        assert comment in final.command[0x00000902]


def test_sequence_key_with_two_items_answers_a900(store: SQLiteWorklistStore) -> None:
    identifier = worklist_identifier()
    identifier.ScheduledProcedureStepSequence.append(Dataset())
    identifier.ScheduledProcedureStepSequence[1].Modality = "CT"
    with worklist_node(store) as node:
        _, matches, final = find(node.port, identifier)
        assert not matches and int(final.status) == 0xA900
        assert "one item" in final.command[0x00000902]


def test_cancel_answers_fe00(monkeypatch: pytest.MonkeyPatch) -> None:
    import dicomwire.services.worklist.service as service

    answer_for = service.answer_for

    def slow_answer(*args: Any, **kwargs: Any) -> Any:  # the cancel must win the race
        time.sleep(0.005)
        return answer_for(*args, **kwargs)

    monkeypatch.setattr(service, "answer_for", slow_answer)
    store = many_entries(600, "1.2.826.0.1.3680043.9.7433.91")
    with worklist_node(store) as node:
        _, matches, final = find(node.port, top_query(), cancel_after=1)
        assert int(final.status) == 0xFE00
        assert 1 <= len(matches) < 600, len(matches)


def test_response_limit_answers_a700(store: SQLiteWorklistStore) -> None:
    with worklist_node(store, WorklistConfig(max_responses=2)) as node:
        _, matches, final = find(node.port, top_query())
        assert len(matches) == 2 and int(final.status) == 0xA700


def test_store_failure_answers_c001_and_logs(
    store: SQLiteWorklistStore, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with worklist_node(store) as node:
        store.close()  # it reopens on use: make what it reopens not a database
        store.path = tmp_path / "broken.sqlite"
        store.path.write_bytes(b"not a database" * 512)
        _, matches, final = find(node.port, top_query())
        assert not matches and int(final.status) == 0xC001
    assert "worklist store failed" in caplog.text


def test_return_keys_present_and_empty_when_the_entry_lacks_them(
    store: SQLiteWorklistStore,
) -> None:
    identifier = top_query(PatientID="P4001", PatientWeight="")
    identifier.ScheduledProcedureStepSequence[0].ScheduledProcedureStepLocation = ""
    referenced = Dataset()
    referenced.ReferencedSOPInstanceUID = ""
    identifier.ReferencedStudySequence = [referenced]
    with worklist_node(store) as node:
        statuses, (match,), _ = find(node.port, identifier)
    assert statuses == [0xFF00]  # return keys only: nothing unsupported
    assert "ReferencedStudySequence" in match and len(match.ReferencedStudySequence) == 0
    assert "AccessionNumber" in match and match.AccessionNumber in ("", None)
    assert "PatientWeight" in match and match.PatientWeight in ("", None)
    (step,) = match.ScheduledProcedureStepSequence
    assert "ScheduledProcedureStepLocation" in step and not step.ScheduledProcedureStepLocation
    assert step.Modality == "US"
    assert set(match.dir()) >= {"PatientName", "StudyInstanceUID", "RequestedProcedureID"}


def test_sequence_matching_answers_the_matching_items_only() -> None:
    store = SQLiteWorklistStore(":memory:")
    two_steps = entries()[0]
    second = Dataset()
    second.Modality = "MR"
    second.ScheduledStationAETitle = "MR1"
    second.ScheduledProcedureStepID = "S2"
    two_steps.ScheduledProcedureStepSequence.append(second)
    store.add(two_steps)
    with worklist_node(store) as node:
        _, (match,), _ = find(node.port, step_query(Modality="MR"))
        assert [s.Modality for s in match.ScheduledProcedureStepSequence] == ["MR"]
        empty = worklist_identifier()
        empty.ScheduledProcedureStepSequence = []  # asked for empty: answered whole
        _, (match,), _ = find(node.port, empty)
        assert [s.Modality for s in match.ScheduledProcedureStepSequence] == ["CT", "MR"]


@pytest.mark.parametrize(
    ("charset", "keys", "expected", "answer_charset"),
    [
        ("ISO_IR 100", {"PatientName": "MÜLLER*"}, ["A4"], "ISO_IR 100"),
        ("ISO_IR 192", {"PatientName": "müller^jürgen"}, ["A4"], "ISO_IR 192"),
        ("ISO_IR 192", {"PatientName": "山田*"}, [""], "ISO_IR 192"),
        # the name does not fit Latin-1: answered in the entry's own character set
        ("ISO_IR 100", {"PatientID": "P4001"}, [""], "ISO_IR 192"),
    ],
)
def test_specific_character_set_both_ways(
    store: SQLiteWorklistStore,
    charset: str,
    keys: dict[str, str],
    expected: list[str],
    answer_charset: str,
) -> None:
    identifier = top_query(**keys)
    identifier.SpecificCharacterSet = charset
    with worklist_node(store) as node:
        _, matches, _ = find(node.port, identifier)
    assert accessions(matches) == expected
    (match,) = matches
    assert match.SpecificCharacterSet == answer_charset
    assert str(match.PatientName) in ("MÜLLER^JÜRGEN", "山田^太郎")


def test_restrict_to_calling_ae(store: SQLiteWorklistStore) -> None:
    with worklist_node(store, WorklistConfig(restrict_to_calling_ae=True)) as node:
        _, matches, _ = find(node.port, top_query(), calling="CT1")
        assert accessions(matches) == ["A1", "A4"]
        _, matches, _ = find(node.port, step_query(Modality="MR"), calling="CT1")
        assert matches == []


# --------------------------------------------------------------------------- watched directory


def test_watched_directory_followed_while_running(tmp_path: Path) -> None:
    folder = tmp_path / "worklists"
    files = write_wl_files(folder, entries()[:2])
    (folder / "notes.txt").write_text("not a worklist")
    per_ae = folder / "OTHERAE"
    write_wl(entries()[2], per_ae / "other.wl")
    store = SQLiteWorklistStore(tmp_path / "node.sqlite")
    config = WorklistConfig(directory=folder, poll_interval=0)
    with worklist_node(store, config, ae_titles=[SCP_AE, "OTHERAE"]) as node:
        assert accessions(find(node.port, top_query())[1]) == ["A1", "A2"]
        # a per-AE folder is served to queries addressed to that AE title only
        assert accessions(find(node.port, top_query(), called="OTHERAE")[1]) == ["A1", "A2", "A3"]
        # added
        write_wl(entries()[3], folder / "added.wl")
        assert accessions(find(node.port, top_query())[1]) == ["A1", "A2", "A4"]
        # removed
        files[0].unlink()
        assert accessions(find(node.port, top_query())[1]) == ["A2", "A4"]
        # changed (the modification time moves on even within one clock tick)
        changed = entries()[1]
        changed.AccessionNumber = "A2-CHANGED"
        write_wl(changed, files[1])
        stat = files[1].stat()
        os.utime(files[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert accessions(find(node.port, top_query())[1]) == ["A2-CHANGED", "A4"]
        # an unreadable file is left out, the others still served
        (folder / "broken.wl").write_bytes(b"not DICOM at all")
        assert accessions(find(node.port, top_query())[1]) == ["A2-CHANGED", "A4"]
        # implicit VR Part 10 and a bare data set (no file meta) are read too
        implicit = entries()[4]
        implicit.file_meta = FileMetaDataset()
        implicit.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
        implicit.save_as(folder / "implicit.dcm", implicit_vr=True, little_endian=True)
        bare = entries()[0]
        bare.AccessionNumber = "BARE"
        bare.save_as(folder / "bare.wl", implicit_vr=False, little_endian=True)
        _, matches, _ = find(node.port, top_query())
        assert accessions(matches) == ["", "A2-CHANGED", "A4", "BARE"]
        (japanese,) = [m for m in matches if m.PatientID == "P4001"]
        assert str(japanese.PatientName) == "山田^太郎"
        (folder / "implicit.dcm").unlink()
        (folder / "bare.wl").unlink()
        assert accessions(find(node.port, top_query())[1]) == ["A2-CHANGED", "A4"]
    # the directory's entries live in the database beside the added ones
    assert {e.source for e in SQLiteWorklistStore(tmp_path / "node.sqlite").entries()} == {
        str(folder / "added.wl"),
        str(files[1]),
        str(per_ae / "other.wl"),
    }


# --------------------------------------------------------------------------- store


def test_store_add_replace_remove_and_step_status(tmp_path: Path) -> None:
    store = SQLiteWorklistStore(tmp_path / "db.sqlite")
    first = entries()[0]
    key = store.add(first)
    assert key == f"{first.StudyInstanceUID}/S1"
    first.AccessionNumber = "A1-NEW"
    assert store.add(first) == key
    assert [str(e.dataset.AccessionNumber) for e in store.entries()] == ["A1-NEW"]
    assert store.set_step_status(str(first.StudyInstanceUID), "S1", "COMPLETED") == 1
    (stored,) = store.entries()
    assert stored.dataset.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == (
        "COMPLETED"
    )
    assert store.remove(str(first.StudyInstanceUID)) == 1
    assert store.entries() == [] and store.remove(key) == 0


def test_store_refuses_an_entry_without_study_uid_or_step() -> None:
    from dicomwire.errors import DataSetError

    store = SQLiteWorklistStore(":memory:")
    bare = Dataset()
    bare.PatientID = "X"
    with pytest.raises(DataSetError, match="Study Instance UID"):
        store.add(bare)
    bare.StudyInstanceUID = "1.2.3"
    with pytest.raises(DataSetError, match="Scheduled Procedure Step"):
        store.add(bare)


def test_sql_narrows_before_the_matcher(store: SQLiteWorklistStore) -> None:
    """White box: a query on indexed keys reads only the rows SQL lets by."""
    from dicomwire.services.matching import compile_query
    from dicomwire.services.worklist.service import LIST_KEYS

    read: list[str] = []
    store._db.set_trace_callback(read.append)
    query = compile_query(
        step_query(Modality="CT", ScheduledStationAETitle="CT1"), list_keys=LIST_KEYS
    )
    assert accessions(store.find([query])) == ["A1", "A4"]
    (select,) = [s for s in read if s.startswith("SELECT e.data ")]
    assert "worklist_steps" in select and "modality" in select and "station_ae" in select


def test_read_entries_json_list(tmp_path: Path) -> None:
    import json

    path = tmp_path / "two.json"
    path.write_text(json.dumps([e.to_json_dict() for e in entries()[:2]]))
    assert accessions(read_entries(path)) == ["A1", "A2"]


# --------------------------------------------------------------------------- CLI


def test_cli_add_list_remove_and_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from dicomwire.services.cli import main

    database = tmp_path / "node.sqlite"
    source = tmp_path / "entry.json"
    source.write_text(json.dumps(entries()[0].to_json_dict()))
    wl = write_wl(entries()[3], tmp_path / "entry.wl")
    assert main(["worklist", "add", str(source), str(wl), "--database", str(database)]) == 0
    assert (
        main(["worklist", "add", str(tmp_path / "missing.json"), "--database", str(database)]) == 1
    )
    capsys.readouterr()
    assert main(["worklist", "list", "--database", str(database)]) == 0
    listed = capsys.readouterr().out
    assert "DOE^JOHN" in listed and "MÜLLER^JÜRGEN" in listed and "2 entries" in listed

    store = SQLiteWorklistStore(database)
    with worklist_node(store) as node:
        argv = ["worklist", LOCALHOST, str(node.port), "-aec", SCP_AE, "--modality", "CT"]
        assert main([*argv, "--date", "20261129-20261231"]) == 0
        table = capsys.readouterr().out
        assert "DOE^JOHN" in table and "MÜLLER^JÜRGEN" in table and "2 matches" in table
        assert main([*argv, "-k", "PatientID=P3001", "--json"]) == 0
        (only,) = json.loads(capsys.readouterr().out)
        assert Dataset.from_json(only).AccessionNumber == "A4"
        assert main([*argv, "--date", "2026-11-29"]) == 2  # usage: not a date
        assert (
            main(
                [
                    "worklist",
                    "query",
                    LOCALHOST,
                    str(node.port),
                    "-aec",
                    SCP_AE,
                    "-k",
                    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=bad",
                ]
            )
            == 1
        )

    key = f"{entries()[0].StudyInstanceUID}/S1"
    assert main(["worklist", "remove", key, "--database", str(database)]) == 0
    assert main(["worklist", "remove", key, "--database", str(database)]) == 1
    capsys.readouterr()
    assert main(["worklist", "list", "--json", "--database", str(database)]) == 0
    assert [e["key"] for e in json.loads(capsys.readouterr().out)] == [
        f"{entries()[3].StudyInstanceUID}/S1"
    ]


def test_identifier_dates() -> None:
    import datetime

    from dicomwire.errors import ValidationError
    from dicomwire.services.worklist import date_range

    assert date_range("today", datetime.date(2026, 11, 29)) == "20261129"
    assert date_range("20261129-") == "20261129-"
    for bad in ("2026", "-", "2026-11-29", ""):
        with pytest.raises(ValidationError):
            date_range(bad)
    assert asyncio.iscoroutinefunction(
        __import__("dicomwire.services.worklist").services.worklist.query_worklist
    )


# --------------------------------------------------------------------------- configuration


def test_worklist_section_and_node_database(tmp_path: Path) -> None:
    from dicomwire.errors import ConfigError
    from dicomwire.services.node import SERVICE_TYPES, database_path, load_config
    from dicomwire.services.worklist import Worklist

    toml = tmp_path / "node.toml"
    toml.write_text(
        f'ae_titles = ["RIS"]\n[storage]\nroot = "{tmp_path / "data"}"\n'
        f'[worklist]\ndirectory = "{tmp_path / "wl"}"\npoll_interval = 0\nmax_responses = 5\n'
    )
    config = load_config(toml, {**SERVICE_TYPES, "worklist": Worklist})
    section = config.sections["worklist"]
    assert section == WorklistConfig(directory=tmp_path / "wl", poll_interval=0, max_responses=5)
    service = Worklist.for_node(config)
    service.store.add(entries()[0])
    assert database_path(config).exists()  # the node's database, beside the Q/R index
    assert service.directory is not None and service.directory.root == tmp_path / "wl"
    with pytest.raises(ConfigError, match="max_responses"):
        Worklist(service.store, WorklistConfig(max_responses=-1))
    toml.write_text('[worklist]\npoll_interval = "soon"\n')
    with pytest.raises(ConfigError, match="poll_interval"):
        load_config(toml, {**SERVICE_TYPES, "worklist": Worklist})


def test_undecodable_identifier_answers_a900(store: SQLiteWorklistStore) -> None:
    async def send_garbage(port: int) -> Any:
        async with connect(
            LOCALHOST, port, called_ae=SCP_AE, calling_ae="MODALITY", services=["worklist"]
        ) as client:
            context = client.session.find_context(MODALITY_WORKLIST_FIND)
            # Patient's Name, then an element of undefined length that never ends
            garbage = b"\x10\x00\x10\x00PN\x00\x00\x10\x00\x20\x00UN\x00\x00\xff\xff\xff\xff"
            operation = await client.session.send(
                CFindRQ(MODALITY_WORKLIST_FIND, dataset=garbage), context.context_id
            )
            return await operation.wait()

    with worklist_node(store) as node:
        final = run_bounded(send_garbage(node.port), 30)
    assert int(final.status) == 0xA900
    assert final.command.get(0x00000902)


def test_unreadable_directory_keeps_its_entries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder that cannot be listed for a while (a mount gone) forgets nothing."""
    from dicomwire.services.worklist import WatchedDirectory

    folder = tmp_path / "worklists"
    write_wl_files(folder / "CT", entries()[:2])
    write_wl_files(folder, entries()[2:3])
    store = SQLiteWorklistStore(tmp_path / "db.sqlite")
    watched = WatchedDirectory(store, folder, poll_interval=0)
    assert watched.refresh() == (3, 0)
    moved = tmp_path / "elsewhere"
    folder.rename(moved)
    assert watched.refresh() == (0, 0) and watched.refresh() == (0, 0)
    assert len(store.entries()) == 3
    assert caplog.text.count("cannot read the worklist directory") == 1  # logged once
    moved.rename(folder)
    (folder / "CT").chmod(0o000)
    try:
        watched.refresh()  # root reads it anyway; anyone else cannot: kept either way
        assert len(store.entries()) == 3
    finally:
        (folder / "CT").chmod(0o755)


def test_an_entry_with_a_value_that_cannot_be_decoded(caplog: pytest.LogCaptureFixture) -> None:
    """Stored bytes go out as stored; a value that must be re-encoded and cannot: C001."""
    store = SQLiteWorklistStore(":memory:")
    store.add(entries()[0])
    # Rows (0028,0010) US stored with 3 bytes: no value pydicom can decode
    (stored,) = store._db.execute("SELECT data FROM worklist_entries").fetchone()
    store._db.execute(
        "UPDATE worklist_entries SET data = ?", (stored + b"\x28\x00\x10\x00US\x03\x00abc",)
    )
    identifier = top_query()
    identifier.Rows = None
    with worklist_node(store) as node:
        _, matches, final = find(node.port, identifier)  # same character set: bytes as stored
        assert len(matches) == 1 and int(final.status) == 0
        assert matches[0].get_item(0x00280010).value == b"abc"
        identifier.SpecificCharacterSet = "ISO_IR 192"  # answered in UTF-8: re-encoded
        _, matches, final = find(node.port, identifier)
    assert not matches and int(final.status) == 0xC001
    assert "cannot be answered" in caplog.text


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
def test_answers_from_stored_bytes_equal_answers_from_the_entries(syntax: str) -> None:
    """The stored-bytes fast path answers exactly what encoding the entry itself gives."""
    from dicomwire.dimse.datasets import decode_dataset, encode_dataset
    from dicomwire.services.matching import compile_query
    from dicomwire.services.worklist.service import LIST_KEYS, answer_for, supported_query
    from dicomwire.services.worklist.store import _encode_entry, decode_entry

    whole = worklist_identifier()
    whole.ScheduledProcedureStepSequence = []
    identifiers = [top_query(), step_query(Modality="CT"), whole, top_query(PatientWeight="")]
    for original in entries():
        for identifier in identifiers:
            query, _ = supported_query(compile_query(identifier, list_keys=LIST_KEYS))
            stored = decode_entry(_encode_entry(original))
            fast = encode_dataset(answer_for(stored, identifier, query), syntax)
            slow = encode_dataset(answer_for(original, identifier, query), syntax)
            assert decode_dataset(fast, syntax) == decode_dataset(slow, syntax)


def test_list_of_values_matching() -> None:
    """The matcher's additive list-of-values kind (Scheduled Station AE Title)."""
    from dicomwire.errors import InvalidQueryError
    from dicomwire.services.matching import MatchKind, compile_query
    from dicomwire.services.worklist.service import LIST_KEYS

    query = compile_query(step_query(ScheduledStationAETitle="CT2\\MR1"), list_keys=LIST_KEYS)
    (step,) = [k for k in query.keys if k.kind is MatchKind.SEQUENCE]
    (station,) = [c for c in step.items if c.tag == 0x00400001]
    assert station.kind is MatchKind.VALUE_LIST and station.values == ("CT2", "MR1")
    assert accessions([e for e in entries() if query.matches(e)]) == ["A2", "A3"]
    with pytest.raises(InvalidQueryError, match="several values"):
        compile_query(step_query(ScheduledStationAETitle="CT2\\MR1"))  # not a list key there
    with pytest.raises(InvalidQueryError, match="no wildcard"):
        compile_query(step_query(ScheduledStationAETitle="CT*\\MR1"), list_keys=LIST_KEYS)


def test_cli_store_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dicomwire.services.cli import main

    missing = tmp_path / "none.sqlite"
    assert main(["worklist", "list", "--database", str(missing)]) == 1
    assert "no database" in capsys.readouterr().err and not missing.exists()
    assert main(["worklist", "remove", "1.2.3", "--database", str(missing)]) == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("[worklist]\nmax_responses = -1\nunknown = 1\n")
    assert main(["worklist", "list", "--config", str(bad)]) == 2
    assert "worklist" in capsys.readouterr().err
    not_a_database = tmp_path / "text.sqlite"
    not_a_database.write_text("plain text, not SQLite")
    assert main(["worklist", "list", "--database", str(not_a_database)]) == 1
    assert "database" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["worklist", "query", LOCALHOST, "104", "--station-ae", "WAY-TOO-LONG-AE-TITLE"])
    assert usage.value.code == 2
