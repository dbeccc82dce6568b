"""A pynetdicom MPPS SCP that records what it receives (no packaged tool speaks MPPS).

``python tests/interop/_mpps_peer.py PORT RECORD [--ae AE]`` serves the Modality
Performed Procedure Step SOP Class on 127.0.0.1:PORT and appends one JSON line per
request to RECORD: ``{"op": "N-CREATE"|"N-SET", "uid", "calling_ae", "status",
"dataset"}`` (the data set as DICOM JSON). It keeps its own instances: a second N-CREATE
of a UID is answered 0111, an N-SET of an unknown UID 0112, both recorded. It prints
``listening`` once it accepts connections. The tests also import :func:`read_record`,
:func:`new_step` (an N-CREATE attribute list built with pydicom alone) and
:func:`pynetdicom_scu`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

MPPS = "1.2.840.10008.3.1.2.3.3"


def read_record(path: Path) -> list[dict[str, Any]]:
    """The requests the peer recorded so far, in order."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def new_step(study_uid: str = "1.2.826.0.1.3680043.9.7433.99.1", **values: Any) -> Any:
    """An N-CREATE attribute list with every Type 1 and 2 attribute of PS3.4 Table F.7.2-1."""
    from pydicom import Dataset

    step = Dataset()
    step.SpecificCharacterSet = "ISO_IR 100"
    item = Dataset()
    item.StudyInstanceUID = study_uid
    item.ReferencedStudySequence = []
    item.AccessionNumber = "ACC1"
    item.RequestedProcedureID = "RP1"
    item.RequestedProcedureDescription = "CT head"
    item.ScheduledProcedureStepID = "SPS1"
    item.ScheduledProcedureStepDescription = "CT head plain"
    item.ScheduledProtocolCodeSequence = []
    step.ScheduledStepAttributesSequence = [item]
    step.PatientName = "Doe^Jane"
    step.PatientID = "PAT1"
    step.PatientBirthDate = "19700101"
    step.PatientSex = "F"
    step.ReferencedPatientSequence = []
    step.PerformedProcedureStepID = "PPS1"
    step.PerformedStationAETitle = "CT1"
    step.PerformedStationName = "CT ROOM 1"
    step.PerformedLocation = ""
    step.PerformedProcedureStepStartDate = "20260101"
    step.PerformedProcedureStepStartTime = "101500"
    step.PerformedProcedureStepStatus = "IN PROGRESS"
    step.PerformedProcedureStepDescription = "CT head plain"
    step.PerformedProcedureTypeDescription = ""
    step.ProcedureCodeSequence = []
    step.PerformedProcedureStepEndDate = ""
    step.PerformedProcedureStepEndTime = ""
    step.Modality = "CT"
    step.StudyID = "1"
    step.PerformedProtocolCodeSequence = []
    step.PerformedSeriesSequence = []
    for keyword, value in values.items():
        if value is None:
            delattr(step, keyword)
        else:
            setattr(step, keyword, value)
    return step


def completed(status: str = "COMPLETED", series: int = 1) -> Any:
    """An N-SET that ends a step, with ``series`` Performed Series Sequence items."""
    from pydicom import Dataset

    modification = Dataset()
    modification.PerformedProcedureStepStatus = status
    modification.PerformedProcedureStepEndDate = "20260101"
    modification.PerformedProcedureStepEndTime = "103000"
    items = []
    for n in range(series):
        entry = Dataset()
        entry.PerformingPhysicianName = ""
        entry.ProtocolName = "HEAD"
        entry.OperatorsName = "Tech^One"
        entry.SeriesInstanceUID = f"1.2.826.0.1.3680043.9.7433.99.2.{n + 1}"
        entry.SeriesDescription = "axial"
        entry.RetrieveAETitle = ""
        image = Dataset()
        image.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        image.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.9.7433.99.3.{n + 1}"
        entry.ReferencedImageSequence = [image]
        entry.ReferencedNonImageCompositeSOPInstanceSequence = []
        items.append(entry)
    modification.PerformedSeriesSequence = items
    return modification


def pynetdicom_scu(
    port: int,
    script: Callable[[Any], Any],
    *,
    calling_ae: str = "CT1",
    called_ae: str = "RIS",
) -> Any:
    """Associate with pynetdicom (MPPS proposed), run ``script(assoc)``, release.

    ``assoc.dimse_received`` lists the command set of every DIMSE message received, as
    pynetdicom decoded it off the wire (its N-CREATE status leaves out some elements).
    """
    from pynetdicom import AE, evt

    received: list[Any] = []

    def on_receive(event: Any) -> None:
        received.append(event.message.command_set)

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    ae.add_requested_context(MPPS)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title=called_ae, evt_handlers=[(evt.EVT_DIMSE_RECV, on_receive)]
    )
    assoc.dimse_received = received
    if not assoc.is_established:
        raise RuntimeError(f"pynetdicom could not associate with 127.0.0.1:{port}")
    try:
        return script(assoc)
    finally:
        assoc.release()


def serve(port: int, record: Path, ae_title: str) -> None:
    import logging

    from pynetdicom import AE, evt

    logging.basicConfig(level=logging.WARNING)

    instances: set[str] = set()
    lock = threading.Lock()

    def write(op: str, uid: str, event: Any, status: int, dataset: Any) -> None:
        line = {
            "op": op,
            "uid": uid,
            "calling_ae": event.assoc.requestor.ae_title.strip(),
            "status": status,
            "dataset": dataset.to_json_dict() if dataset is not None else None,
        }
        with record.open("a") as out:
            out.write(json.dumps(line) + "\n")

    def on_create(event: Any) -> tuple[int, Any]:
        uid = str(event.request.AffectedSOPInstanceUID or "")
        dataset = event.attribute_list
        if not uid:  # the SCP assigns the UID and returns it (PS3.4 F.7.2.1.3)
            from pydicom.uid import generate_uid

            uid = str(generate_uid(prefix=None))
            dataset.AffectedSOPInstanceUID = uid  # pynetdicom moves it to the response
        with lock:
            status = 0x0111 if uid in instances else 0x0000
            instances.add(uid)
            write("N-CREATE", uid, event, status, dataset)
        return status, (dataset if status == 0 else None)

    def on_set(event: Any) -> tuple[int, Any]:
        uid = str(event.request.RequestedSOPInstanceUID or "")
        dataset = event.modification_list
        with lock:
            status = 0x0000 if uid in instances else 0x0112
            write("N-SET", uid, event, status, dataset)
        return status, (dataset if status == 0 else None)

    ae = AE(ae_title=ae_title)
    ae.add_supported_context(MPPS)
    ae.require_called_aet = False
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[(evt.EVT_N_CREATE, on_create), (evt.EVT_N_SET, on_set)],
    )
    print("listening", flush=True)
    try:
        threading.Event().wait()
    finally:
        server.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("record", type=Path)
    parser.add_argument("--ae", default="PACS")
    args = parser.parse_args(argv)
    serve(args.port, args.record, args.ae)
    return 0


if __name__ == "__main__":
    sys.exit(main())
