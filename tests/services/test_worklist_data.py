"""Worklist entries and a node serving them, shared by the worklist tests (no tests here).

:data:`ENTRIES` covers every supported matching key of the RIS statement's Table 3.2 with
values that single, wildcard, range and list matching tell apart, two character sets
(ISO_IR 100 and ISO_IR 192) and an entry without an Accession Number (a return key then
answered empty). :func:`write_wl_files` writes them as ``.wl`` files (Part 10, explicit VR
little endian) that ``wlmscpfs``, Orthanc and our watched directory all read.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset

from dicomwire.services.node import Node
from dicomwire.services.worklist import SQLiteWorklistStore, Worklist, WorklistConfig

from ._support import NODE_TIMEOUTS

LOCALHOST = "127.0.0.1"
SCP_AE = "WORKLIST"


def entry(
    *,
    study: str,
    name: str,
    patient_id: str,
    accession: str | None,
    procedure_id: str,
    modality: str,
    station_ae: str,
    date: str,
    time: str,
    station_name: str,
    physician: str = "SMITH^ANNA",
    step_id: str = "S1",
    charset: str | None = None,
) -> Dataset:
    """One worklist item (PS3.4 Table K.6-1's usual attributes)."""
    dataset = Dataset()
    if charset:
        dataset.SpecificCharacterSet = charset
    if accession is not None:
        dataset.AccessionNumber = accession
    dataset.ReferringPhysicianName = "REF^ERIC"
    dataset.PatientName = name
    dataset.PatientID = patient_id
    dataset.PatientBirthDate = "19700101"
    dataset.PatientSex = "O"
    dataset.StudyInstanceUID = study
    dataset.RequestedProcedureDescription = f"{modality} exam"
    dataset.RequestedProcedureID = procedure_id
    step = Dataset()
    step.Modality = modality
    step.ScheduledStationAETitle = station_ae
    step.ScheduledProcedureStepStartDate = date
    step.ScheduledProcedureStepStartTime = time
    step.ScheduledPerformingPhysicianName = physician
    step.ScheduledProcedureStepDescription = f"{modality} step"
    step.ScheduledProcedureStepID = step_id
    step.ScheduledStationName = station_name
    step.ScheduledProcedureStepStatus = "SCHEDULED"
    dataset.ScheduledProcedureStepSequence = [step]
    return dataset


def entries() -> list[Dataset]:
    """Five entries; their Accession Numbers (A1..A4, none for the fifth) name them."""
    return [
        entry(
            study="1.2.826.0.1.3680043.9.7433.90.1",
            name="DOE^JOHN",
            patient_id="P1001",
            accession="A1",
            procedure_id="RP1",
            modality="CT",
            station_ae="CT1",
            date="20261129",
            time="090000",
            station_name="CTROOM1",
        ),
        entry(
            study="1.2.826.0.1.3680043.9.7433.90.2",
            name="DOE^JANE",
            patient_id="P1002",
            accession="A2",
            procedure_id="RP2",
            modality="MR",
            station_ae="MR1",
            date="20261129",
            time="140000",
            station_name="MRROOM",
            physician="JONES^BOB",
        ),
        entry(
            study="1.2.826.0.1.3680043.9.7433.90.3",
            name="ROE^RICHARD",
            patient_id="P2001",
            accession="A3",
            procedure_id="RP3",
            modality="CT",
            station_ae="CT2",
            date="20261130",
            time="103000",
            station_name="CTROOM2",
        ),
        entry(
            study="1.2.826.0.1.3680043.9.7433.90.4",
            name="MÜLLER^JÜRGEN",
            patient_id="P3001",
            accession="A4",
            procedure_id="RP4",
            modality="CT",
            station_ae="CT1",
            date="20261201",
            time="080000",
            station_name="CTROOM1",
            charset="ISO_IR 100",
        ),
        entry(
            study="1.2.826.0.1.3680043.9.7433.90.5",
            name="山田^太郎",
            patient_id="P4001",
            accession=None,
            procedure_id="RP5",
            modality="US",
            station_ae="US1",
            date="20261129",
            time="160000",
            station_name="USROOM",
            charset="ISO_IR 192",
        ),
    ]


def many_entries(count: int, study_root: str) -> SQLiteWorklistStore:
    """An in-memory store of ``count`` CT entries for station CT1 on 2026-11-29 (studies
    ``study_root.N``): enough answers for a C-CANCEL to arrive while they are sent."""
    store = SQLiteWorklistStore(":memory:")
    for number in range(count):
        store.add(
            entry(
                study=f"{study_root}.{number}",
                name=f"PATIENT^{number}",
                patient_id=f"ID{number}",
                accession=f"X{number}",
                procedure_id="RP",
                modality="CT",
                station_ae="CT1",
                date="20261129",
                time="080000",
                station_name="CTROOM1",
            )
        )
    return store


def write_wl(dataset: Dataset, path: Path) -> Path:
    """``dataset`` as a Part 10 ``.wl`` file (explicit VR little endian)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.31"
    meta.MediaStorageSOPInstanceUID = str(dataset.StudyInstanceUID) + ".1"
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    dataset = Dataset(dataset)
    dataset.file_meta = meta
    dataset.save_as(path, enforce_file_format=True)
    return path


def write_wl_files(folder: Path, datasets: list[Dataset] | None = None) -> list[Path]:
    """Every entry as ``entryN.wl`` in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_wl(dataset, folder / f"entry{number}.wl")
        for number, dataset in enumerate(datasets or entries(), 1)
    ]


def accessions(matches: list[Dataset]) -> list[str]:
    """The Accession Numbers of ``matches``, sorted ("" for one without)."""
    return sorted(str(m.get("AccessionNumber", "") or "") for m in matches)


@contextlib.contextmanager
def worklist_node(
    store: SQLiteWorklistStore, config: WorklistConfig | None = None, **node: Any
) -> Iterator[Node]:
    """A node serving only the Worklist service, on its own thread; yields it listening."""
    from dicomwire.services.node import NodeConfig
    from dicomwire.services.storage import StorageConfig

    settings: dict[str, Any] = {
        "ae_titles": [SCP_AE],
        "host": LOCALHOST,
        "port": 0,
        "timeouts": NODE_TIMEOUTS,
        "shutdown_grace": 1.0,
        "storage": StorageConfig(root=Path("unused"), discard=True),
    }
    settings.update(node)
    service = Worklist(store, config)
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        state["loop"], state["stop"] = asyncio.get_running_loop(), stop
        async with Node(NodeConfig(**settings), services=[service]) as running:
            state["node"] = running
            ready.set()
            await stop.wait()

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            state["error"] = exc
            ready.set()

    thread = threading.Thread(target=main, name="worklist-node", daemon=True)
    thread.start()
    assert ready.wait(15), "the worklist node did not start"
    if "error" in state:
        raise state["error"]
    try:
        yield state["node"]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(15)
