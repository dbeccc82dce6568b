"""The MPPS SCU: report a performed procedure step (PS3.4 F.7.2.1 N-CREATE, F.7.2.2 N-SET).

A modality tells the RIS it started a step (:func:`create_step`, status IN PROGRESS) and
later that it ended it (:func:`set_step`, COMPLETED or DISCONTINUED), over any
:class:`~dicomwire.services.client.Client` whose association proposed ``"mpps"``.
:func:`step_from_worklist` builds the N-CREATE attribute list from a Modality Worklist
item (PS3.4 Annex K; the mapping of IHE Scheduled Workflow), :func:`completion` the N-SET
that ends a step, with the Performed Series Sequence :func:`series_from_files` reads from
the stored images.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ...dimse.status import Category, Status
from ...errors import DimseStatusError, ValidationError
from ..service import ScuActivity, StatusReaction
from .attributes import COMPLETED, DISCONTINUED, IN_PROGRESS
from .service import MPPS_SOP_CLASS

if TYPE_CHECKING:
    from pydicom import Dataset

    from ..client import Client

__all__ = [
    "MPPS_ACTIVITY",
    "completion",
    "create_step",
    "series_from_files",
    "set_step",
    "step_from_worklist",
]

#: What create_step / set_step (and ``dicomwire mpps``) do with the status received.
MPPS_ACTIVITY = ScuActivity(
    "Report a procedure step",
    "dicomwire mpps create / set; create_step, set_step",
    (MPPS_SOP_CLASS,),
    "N-CREATE, N-SET",
    (
        StatusReaction(Category.SUCCESS, "the step is created or set; mpps exits 0"),
        StatusReaction(
            Category.WARNING, "accepted as done (set_step returns the status); mpps exits 0"
        ),
        StatusReaction(
            Category.FAILURE,
            "DimseStatusError with the status and Error Comment; mpps prints it, exits 1",
        ),
    ),
)

#: Copied from a worklist item into each Scheduled Step Attributes Sequence item.
_FROM_REQUESTED = (
    "StudyInstanceUID",
    "AccessionNumber",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
)
_FROM_SCHEDULED = ("ScheduledProcedureStepID", "ScheduledProcedureStepDescription")
_PATIENT = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")


async def create_step(
    client: Client, attributes: Dataset | Mapping[str, object], uid: str | None = None
) -> str:
    """N-CREATE a step; its SOP Instance UID (the SCP's when it assigned one).

    A failure status raises :class:`~dicomwire.errors.DimseStatusError` (its ``status``
    and Error Comment).
    """
    result = await client.n_create(MPPS_SOP_CLASS, attributes, uid)
    if result.status.is_failure:
        raise DimseStatusError(result.status, result.error_comment or "N-CREATE refused")
    created = result.affected_sop_instance_uid or uid
    if not created:
        raise DimseStatusError(result.status, "the SCP returned no SOP Instance UID")
    return str(created).strip("\0 ")


async def set_step(
    client: Client, uid: str, modification: Dataset | Mapping[str, object]
) -> Status:
    """N-SET a step; the status (success or warning), a failure raising DimseStatusError."""
    result = await client.n_set(MPPS_SOP_CLASS, uid, modification)
    if result.status.is_failure:
        raise DimseStatusError(result.status, result.error_comment or "N-SET refused")
    return result.status


def _now(when: datetime.datetime | None) -> tuple[str, str]:
    moment = when or datetime.datetime.now()
    return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S")


def step_from_worklist(
    item: Dataset | None = None,
    *,
    station_ae: str,
    modality: str | None = None,
    step_id: str | None = None,
    started: datetime.datetime | None = None,
    **attributes: object,
) -> Dataset:
    """The N-CREATE attribute list for a step performed from worklist ``item``.

    Without ``item`` (an unscheduled step) the patient and study come from ``attributes``
    (keywords: ``PatientID="123"``, ``StudyInstanceUID=...``; a Study Instance UID is
    made when none is given). Every Type 1 and Type 2 attribute of PS3.4 Table F.7.2-1 is
    present; the status is IN PROGRESS, started now unless ``started`` says when.
    """
    from pydicom import Dataset

    source = item if item is not None else Dataset()
    scheduled = list(source.get("ScheduledProcedureStepSequence", None) or [Dataset()])
    first = scheduled[0]
    step = Dataset()
    step.SpecificCharacterSet = source.get("SpecificCharacterSet", "ISO_IR 100")
    items = []
    for sps in scheduled:
        entry = Dataset()
        for keyword in _FROM_REQUESTED:
            setattr(entry, keyword, source.get(keyword, ""))
        entry.ReferencedStudySequence = list(source.get("ReferencedStudySequence", None) or [])
        for keyword in _FROM_SCHEDULED:
            setattr(entry, keyword, sps.get(keyword, ""))
        entry.ScheduledProtocolCodeSequence = list(
            sps.get("ScheduledProtocolCodeSequence", None) or []
        )
        items.append(entry)
    step.ScheduledStepAttributesSequence = items
    for keyword in _PATIENT:
        setattr(step, keyword, source.get(keyword, ""))
    step.ReferencedPatientSequence = []
    date, time = _now(started)
    step.PerformedProcedureStepID = step_id or f"PPS{date[2:]}{time}"
    step.PerformedStationAETitle = station_ae
    step.PerformedStationName = first.get("ScheduledStationName", "")
    step.PerformedLocation = first.get("ScheduledProcedureStepLocation", "")
    step.PerformedProcedureStepStartDate = date
    step.PerformedProcedureStepStartTime = time
    step.PerformedProcedureStepStatus = IN_PROGRESS
    step.PerformedProcedureStepDescription = first.get("ScheduledProcedureStepDescription", "")
    step.PerformedProcedureTypeDescription = ""
    step.ProcedureCodeSequence = list(source.get("RequestedProcedureCodeSequence", None) or [])
    step.PerformedProcedureStepEndDate = ""
    step.PerformedProcedureStepEndTime = ""
    step.Modality = modality or first.get("Modality", "") or "OT"
    step.StudyID = ""
    step.PerformedProtocolCodeSequence = []
    step.PerformedSeriesSequence = []
    for keyword, value in attributes.items():
        if keyword in _PATIENT or keyword in ("StudyInstanceUID", "AccessionNumber"):
            target = items[0] if keyword not in _PATIENT else step
        else:
            target = step
        try:
            setattr(target, keyword, value)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"{keyword}: invalid value {value!r}: {exc}") from None
    if not items[0].StudyInstanceUID:
        import uuid

        items[0].StudyInstanceUID = f"2.25.{uuid.uuid4().int}"
    return step


def completion(
    status: str = COMPLETED,
    *,
    series: Iterable[Dataset] = (),
    ended: datetime.datetime | None = None,
) -> Dataset:
    """The N-SET modification list that ends a step: status, end date and time, series."""
    from pydicom import Dataset

    if status not in (COMPLETED, DISCONTINUED):
        raise ValidationError(f"a step ends COMPLETED or DISCONTINUED, not {status!r}")
    modification = Dataset()
    modification.PerformedProcedureStepStatus = status
    modification.PerformedProcedureStepEndDate, modification.PerformedProcedureStepEndTime = _now(
        ended
    )
    modification.PerformedSeriesSequence = list(series)
    return modification


def series_from_files(paths: Iterable[str | Path], *, retrieve_ae: str = "") -> list[Dataset]:
    """Performed Series Sequence items (PS3.4 Table F.7.2-1) for the Part 10 files found.

    Directories are searched recursively; files that are not DICOM are skipped. Images go
    to Referenced Image Sequence, other objects (SR, presentation states...) to
    Referenced Non-Image Composite SOP Instance Sequence.
    """
    from pydicom import Dataset, dcmread
    from pydicom.errors import InvalidDicomError

    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    by_series: dict[str, Dataset] = {}
    for file in files:
        try:
            header = dcmread(file, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError):
            continue
        series_uid = str(header.get("SeriesInstanceUID", ""))
        if not series_uid or "SOPInstanceUID" not in header:
            continue
        entry = by_series.get(series_uid)
        if entry is None:
            entry = Dataset()
            entry.PerformingPhysicianName = header.get("PerformingPhysicianName", "")
            entry.ProtocolName = (
                header.get("ProtocolName", "") or header.get("SeriesDescription", "") or "UNKNOWN"
            )
            entry.OperatorsName = header.get("OperatorsName", "")
            entry.SeriesInstanceUID = series_uid
            entry.SeriesDescription = header.get("SeriesDescription", "")
            entry.RetrieveAETitle = retrieve_ae
            entry.ReferencedImageSequence = []
            entry.ReferencedNonImageCompositeSOPInstanceSequence = []
            by_series[series_uid] = entry
        reference = Dataset()
        reference.ReferencedSOPClassUID = header.SOPClassUID
        reference.ReferencedSOPInstanceUID = header.SOPInstanceUID
        is_image = "Rows" in header or "PixelData" in header
        if is_image:
            entry.ReferencedImageSequence.append(reference)
        else:
            entry.ReferencedNonImageCompositeSOPInstanceSequence.append(reference)
    return list(by_series.values())
