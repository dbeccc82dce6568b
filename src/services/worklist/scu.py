"""The Modality Worklist SCU: PS3.4 K.4.1 C-FIND on the Modality Worklist Information Model.

:func:`worklist_identifier` builds the identifier a modality sends (the usual return keys
of PS3.4 Table K.6-1, plus the matching keys given: modality, date or date range, station
AE title, patient); :func:`query_worklist` opens an association, sends it with
:meth:`~dicomwire.services.client.Client.find` (``model="worklist"``) and returns the
matches as pydicom Datasets.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ...dimse.status import Category
from ...errors import ValidationError
from ...ul.negotiation import DEFAULT_MAX_PDU_LENGTH
from ..client import FIND_REACTIONS
from ..qr.models import QUERY_MODELS
from ..service import ScuActivity, StatusReaction

if TYPE_CHECKING:
    from pydicom import Dataset

    from ...ul.association import Timeouts
    from ...ul.tls import TLSConfig

__all__ = [
    "WORKLIST_ACTIVITY",
    "RETURN_KEYS",
    "STEP_RETURN_KEYS",
    "date_range",
    "query_worklist",
    "worklist_identifier",
]

#: Worklist queries go through Client.find, with its reactions (conformance statement),
#: except a failure: query_worklist returns the matches only when the query completed.
WORKLIST_ACTIVITY = ScuActivity(
    "Query a worklist",
    "dicomwire worklist query; query_worklist",
    (QUERY_MODELS[("worklist", "find")],),
    "C-FIND",
    (
        *(row for row in FIND_REACTIONS if row.category is not Category.FAILURE),
        StatusReaction(
            Category.FAILURE,
            "query_worklist raises DimseStatusError (status, Error Comment); the matches "
            "received are not returned; worklist query prints the status and exits 1",
        ),
    ),
)

#: Return keys asked for by default outside the step sequence (PS3.4 Table K.6-1).
RETURN_KEYS = (
    "AccessionNumber",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "RequestedProcedureDescription",
    "RequestedProcedureID",
)
#: Return keys asked for by default inside the Scheduled Procedure Step Sequence.
STEP_RETURN_KEYS = (
    "Modality",
    "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID",
    "ScheduledStationName",
    "ScheduledProcedureStepStatus",
)


def date_range(text: str, today: datetime.date | None = None) -> str:
    """``today``, ``YYYYMMDD`` or ``YYYYMMDD-YYYYMMDD`` (either end open) as a DA key value."""
    text = text.strip()
    if text.lower() == "today":
        return (today or datetime.date.today()).strftime("%Y%m%d")
    low, dash, high = text.partition("-")
    for bound in (low, high):
        if bound and not (len(bound) == 8 and bound.isdigit()):
            raise ValidationError(f"date {text!r}: use today, YYYYMMDD or YYYYMMDD-YYYYMMDD")
    if dash and not (low or high):
        raise ValidationError(f"date {text!r}: a range needs at least one date")
    if not low and not dash:
        raise ValidationError("date: empty")
    return text


def worklist_identifier(
    *,
    modality: str | None = None,
    date: str | None = None,
    station_ae: str | None = None,
    station_name: str | None = None,
    patient_id: str | None = None,
    patient_name: str | None = None,
    accession_number: str | None = None,
    return_keys: Iterable[str] = RETURN_KEYS,
    step_return_keys: Iterable[str] = STEP_RETURN_KEYS,
) -> Dataset:
    """A worklist C-FIND identifier: the usual return keys and the matching keys given.

    ``date`` is ``today``, ``YYYYMMDD`` or a range ``YYYYMMDD-YYYYMMDD`` (Scheduled
    Procedure Step Start Date); values may hold wildcards where PS3.4 C.2.2.2.4 allows.
    """
    from pydicom import Dataset

    identifier = Dataset()
    for keyword in return_keys:
        setattr(identifier, keyword, "")
    step = Dataset()
    for keyword in step_return_keys:
        setattr(step, keyword, "")
    for keyword, value in (
        ("PatientID", patient_id),
        ("PatientName", patient_name),
        ("AccessionNumber", accession_number),
    ):
        if value is not None:
            setattr(identifier, keyword, value)
    for keyword, value in (
        ("Modality", modality),
        ("ScheduledStationAETitle", station_ae),
        ("ScheduledStationName", station_name),
        ("ScheduledProcedureStepStartDate", date_range(date) if date is not None else None),
    ):
        if value is not None:
            setattr(step, keyword, value)
    identifier.ScheduledProcedureStepSequence = [step]
    given = (patient_id, patient_name, accession_number, station_name)
    if any(value is not None and not value.isascii() for value in given):
        identifier.SpecificCharacterSet = "ISO_IR 192"  # text beyond ASCII goes as UTF-8
    return identifier


async def query_worklist(
    host: str,
    port: int,
    identifier: Dataset | None = None,
    *,
    called_ae: str = "ANY-SCP",
    calling_ae: str = "DICOMWIRE",
    timeouts: Timeouts | None = None,
    tls: TLSConfig | None = None,
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH,
) -> list[Dataset]:
    """Query a worklist SCP; the matches (``identifier`` defaults to every entry)."""
    from ..client import connect

    query = identifier if identifier is not None else worklist_identifier()
    async with connect(
        host,
        port,
        called_ae=called_ae,
        calling_ae=calling_ae,
        services=["worklist"],
        timeouts=timeouts,
        tls=tls,
        max_pdu_length=max_pdu_length,
    ) as client:
        return [match async for match in client.find(query, model="worklist")]
