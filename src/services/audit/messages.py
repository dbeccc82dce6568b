"""DICOM audit messages (PS3.15 A.5.1 schema, A.5.3 events, PS3.16 DCM codes).

An :class:`AuditMessage` is the XML document of PS3.15 A.5.1: one EventIdentification
(EventID and EventTypeCode as coded values ``csd-code``/``codeSystemName``/``originalText``),
the ActiveParticipants with their RoleIDCodes, one AuditSourceIdentification and the
ParticipantObjectIdentifications (patient, study, SOP class of a query). The builders
below make the messages of the events of A.5.3 that a DICOM node emits. Serialized with
:mod:`xml.etree.ElementTree` on one line (a newline inside a value becomes ``&#10;``), so
a local log holds one message per line.
"""

from __future__ import annotations

import base64
import datetime
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "AuditMessage",
    "Code",
    "Participant",
    "ParticipantObject",
    "Source",
    "application_activity",
    "begin_transferring",
    "data_export",
    "instances_accessed",
    "instances_transferred",
    "patient_object",
    "query",
    "security_alert",
    "study_object",
    "user_authentication",
    "order_or_procedure_record",
]


@dataclass(frozen=True, slots=True)
class Code:
    """A coded value (PS3.15 A.5.1 CodedValueType)."""

    code: str
    system: str
    text: str


def _dcm(code: str, text: str) -> Code:
    return Code(code, "DCM", text)


# Event IDs (PS3.16 CID 400) and event type codes (CID 401, 402, 403).
APPLICATION_ACTIVITY = _dcm("110100", "Application Activity")
APPLICATION_START = _dcm("110120", "Application Start")
APPLICATION_STOP = _dcm("110121", "Application Stop")
BEGIN_TRANSFERRING = _dcm("110102", "Begin Transferring DICOM Instances")
INSTANCES_ACCESSED = _dcm("110103", "DICOM Instances Accessed")
INSTANCES_TRANSFERRED = _dcm("110104", "DICOM Instances Transferred")
EXPORT = _dcm("110106", "Export")
ORDER_RECORD = _dcm("110109", "Order Record")
PROCEDURE_RECORD = _dcm("110111", "Procedure Record")
QUERY = _dcm("110112", "Query")
SECURITY_ALERT = _dcm("110113", "Security Alert")
USER_AUTHENTICATION = _dcm("110114", "User Authentication")
LOGIN = _dcm("110122", "Login")
LOGOUT = _dcm("110123", "Logout")
NODE_AUTHENTICATION = _dcm("110126", "Node Authentication")
SOFTWARE_CONFIGURATION = _dcm("110131", "Software Configuration")
# Roles (PS3.16 CID 402).
APPLICATION = _dcm("110150", "Application")
APPLICATION_LAUNCHER = _dcm("110151", "Application Launcher")
DESTINATION = _dcm("110152", "Destination Role ID")
SOURCE = _dcm("110153", "Source Role ID")
DESTINATION_MEDIA = _dcm("110154", "Destination Media")
# Media types (PS3.16 CID 405).
FILM = _dcm("110010", "Film")
URI_MEDIA = _dcm("110037", "URI")
# Participant object ID types (RFC 3881 and PS3.16 CID 404).
PATIENT_NUMBER = Code("2", "RFC-3881", "Patient Number")
URI = Code("12", "RFC-3881", "URI")
STUDY_INSTANCE_UID = _dcm("110180", "Study Instance UID")
SOP_CLASS_UID = _dcm("110181", "SOP Class UID")
NODE_ID = _dcm("110182", "Node ID")
#: AuditSourceTypeCode 4: application server process tier in a multi-tier system.
APPLICATION_SERVER = _dcm("4", "Application Server Process Tier in a Multi-tier System")

#: EventOutcomeIndicator values (PS3.15 A.5.1).
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = 0, 4, 8, 12


@dataclass(frozen=True, slots=True)
class Participant:
    """An ActiveParticipant: a process (AE) or person, with its role and address."""

    user_id: str
    requestor: bool
    roles: Sequence[Code] = ()
    alternative_user_id: str | None = None
    user_name: str | None = None
    address: str | None = None
    #: MediaIdentifier/MediaType of a Destination Media participant (Data Export).
    media: Code | None = None

    @classmethod
    def ae(
        cls, ae_title: str, requestor: bool, role: Code | None, address: str | None = None
    ) -> Participant:
        """A DICOM AE: UserID its AE title, AlternativeUserID ``AETITLES=`` (A.5.2.2)."""
        return cls(
            ae_title.strip() or "-",
            requestor,
            (role,) if role is not None else (),
            alternative_user_id=f"AETITLES={ae_title.strip()}",
            address=address,
        )


@dataclass(frozen=True, slots=True)
class ParticipantObject:
    """A ParticipantObjectIdentification: what the event was about."""

    object_id: str
    type_code: int  # 1 person, 2 system object
    role: int  # 1 patient, 3 report, 13 security resource, 24 query
    id_type: Code
    name: str | None = None
    query: bytes | None = None
    details: Sequence[tuple[str, bytes]] = ()
    #: SOP classes with instance counts: the DICOM ParticipantObjectDescription (A.5.1).
    sop_classes: Sequence[tuple[str, int]] = ()


@dataclass(frozen=True, slots=True)
class Source:
    """Who reports (AuditSourceIdentification)."""

    source_id: str
    enterprise_site_id: str | None = None


@dataclass(slots=True)
class AuditMessage:
    """One audit event (PS3.15 A.5.1); :meth:`to_xml` is the document."""

    event_id: Code
    outcome: int = SUCCESS
    action: str = "E"  # C, R, U, D or E
    type_codes: Sequence[Code] = ()
    participants: list[Participant] = field(default_factory=list)
    source: Source = field(default_factory=lambda: Source("dicomwire"))
    objects: list[ParticipantObject] = field(default_factory=list)
    outcome_description: str | None = None
    time: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    @property
    def failed(self) -> bool:
        return self.outcome != SUCCESS

    def to_xml(self) -> bytes:
        """The AuditMessage document, UTF-8, on one line."""
        root = ET.Element("AuditMessage")
        event = ET.SubElement(
            root,
            "EventIdentification",
            EventActionCode=self.action,
            EventDateTime=_timestamp(self.time),
            EventOutcomeIndicator=str(self.outcome),
        )
        _coded(event, "EventID", self.event_id)
        for code in self.type_codes:
            _coded(event, "EventTypeCode", code)
        if self.outcome_description:
            ET.SubElement(event, "EventOutcomeDescription").text = self.outcome_description
        for participant in self.participants:
            attributes = {"UserID": participant.user_id}
            if participant.alternative_user_id:
                attributes["AlternativeUserID"] = participant.alternative_user_id
            if participant.user_name:
                attributes["UserName"] = participant.user_name
            attributes["UserIsRequestor"] = "true" if participant.requestor else "false"
            if participant.address:
                attributes["NetworkAccessPointID"] = participant.address
                attributes["NetworkAccessPointTypeCode"] = (
                    "2" if _is_ip(participant.address) else "1"
                )
            element = ET.SubElement(root, "ActiveParticipant", attributes)
            for role in participant.roles:
                _coded(element, "RoleIDCode", role)
            if participant.media is not None:
                _coded(ET.SubElement(element, "MediaIdentifier"), "MediaType", participant.media)
        source_attributes = {"AuditSourceID": self.source.source_id}
        if self.source.enterprise_site_id:
            source_attributes["AuditEnterpriseSiteID"] = self.source.enterprise_site_id
        source = ET.SubElement(root, "AuditSourceIdentification", source_attributes)
        _coded(source, "AuditSourceTypeCode", APPLICATION_SERVER)
        for item in self.objects:
            element = ET.SubElement(
                root,
                "ParticipantObjectIdentification",
                ParticipantObjectID=item.object_id,
                ParticipantObjectTypeCode=str(item.type_code),
                ParticipantObjectTypeCodeRole=str(item.role),
            )
            _coded(element, "ParticipantObjectIDTypeCode", item.id_type)
            if item.query is not None:
                ET.SubElement(element, "ParticipantObjectQuery").text = base64.b64encode(
                    item.query
                ).decode("ascii")
            elif item.name:
                ET.SubElement(element, "ParticipantObjectName").text = item.name
            for kind, value in item.details:
                ET.SubElement(
                    element,
                    "ParticipantObjectDetail",
                    type=kind,
                    value=base64.b64encode(value).decode("ascii"),
                )
            if item.sop_classes:  # DICOMObjectDescriptionContents
                description = ET.SubElement(element, "ParticipantObjectDescription")
                for uid, count in item.sop_classes:
                    ET.SubElement(description, "SOPClass", UID=uid, NumberOfInstances=str(count))
        text = ET.tostring(root, encoding="unicode", short_empty_elements=True)
        return text.replace("\r", "&#13;").replace("\n", "&#10;").encode("utf-8")


def _timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _coded(parent: ET.Element, tag: str, code: Code) -> ET.Element:
    return ET.SubElement(
        parent,
        tag,
        {"csd-code": code.code, "codeSystemName": code.system, "originalText": code.text},
    )


def _is_ip(address: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- objects


def patient_object(patient_id: str, name: str | None = None) -> ParticipantObject:
    """The patient participant (type 1 person, role 1 patient, ID type 2)."""
    return ParticipantObject(patient_id or "-", 1, 1, PATIENT_NUMBER, name=name or None)


def study_object(study_uid: str, sop_classes: Iterable[tuple[str, int]] = ()) -> ParticipantObject:
    """A study participant (type 2, role 3 report, ID type 110180) with its SOP classes."""
    return ParticipantObject(study_uid, 2, 3, STUDY_INSTANCE_UID, sop_classes=tuple(sop_classes))


def _process(source: Source) -> Participant:
    """This application as a participant: its AE/source ID, process ID, host name."""
    import socket

    return Participant(
        source.source_id,
        False,
        (APPLICATION,),
        alternative_user_id=str(os.getpid()),
        address=socket.gethostname(),
    )


# --------------------------------------------------------------------------- events


def application_activity(source: Source, started: bool, *, user: str | None = None) -> AuditMessage:
    """Application Activity (A.5.3.1): the application started or stopped."""
    participants = [_process(source)]
    if user:
        participants.append(Participant(user, True, (APPLICATION_LAUNCHER,)))
    return AuditMessage(
        APPLICATION_ACTIVITY,
        type_codes=(APPLICATION_START if started else APPLICATION_STOP,),
        participants=participants,
        source=source,
    )


def _transfer(
    event: Code,
    source: Source,
    sender: Participant,
    receiver: Participant,
    patients: Iterable[tuple[str, str | None]],
    studies: Iterable[ParticipantObject],
    outcome: int,
    action: str,
    requestor: Participant | None,
    description: str | None,
) -> AuditMessage:
    participants = [sender, receiver]
    if requestor is not None:
        participants.append(requestor)
    objects = [*studies, *(patient_object(pid, name) for pid, name in patients)]
    return AuditMessage(
        event,
        outcome=outcome,
        action=action,
        participants=participants,
        source=source,
        objects=objects,
        outcome_description=description,
    )


def instances_transferred(
    source: Source,
    *,
    sender: Participant,
    receiver: Participant,
    patients: Iterable[tuple[str, str | None]],
    studies: Iterable[ParticipantObject],
    outcome: int = SUCCESS,
    imported: bool = True,
    requestor: Participant | None = None,
    description: str | None = None,
) -> AuditMessage:
    """DICOM Instances Transferred (A.5.3.7): action C when received (created), R when sent."""
    return _transfer(
        INSTANCES_TRANSFERRED,
        source,
        sender,
        receiver,
        patients,
        studies,
        outcome,
        "C" if imported else "R",
        requestor,
        description,
    )


def instances_accessed(
    source: Source,
    *,
    action: str,
    accessors: Sequence[Participant],
    patient: tuple[str, str | None],
    studies: Iterable[ParticipantObject],
    outcome: int = SUCCESS,
    description: str | None = None,
) -> AuditMessage:
    """DICOM Instances Accessed (A.5.3.6): instances of one patient created (C), read (R),
    updated (U) or deleted (D) by the node itself, not by a transfer (that is A.5.3.7).

    ``accessors`` are the one or two persons or processes that manipulated the data (the
    requestor first); the studies carry their SOP classes and counts.
    """
    if action not in ("C", "R", "U", "D"):
        raise ValueError(f"EventActionCode of Instances Accessed is C, R, U or D, not {action!r}")
    return AuditMessage(
        INSTANCES_ACCESSED,
        outcome=outcome,
        action=action,
        participants=list(accessors),
        source=source,
        objects=[*studies, patient_object(*patient)],
        outcome_description=description,
    )


def data_export(
    source: Source,
    *,
    exporter: Participant,
    media: Participant,
    patients: Iterable[tuple[str, str | None]],
    studies: Iterable[ParticipantObject],
    outcome: int = SUCCESS,
    description: str | None = None,
) -> AuditMessage:
    """Data Export (A.5.3.4): instances leave on media (film, or a peer's URI); action R."""
    return _transfer(
        EXPORT, source, exporter, media, patients, studies, outcome, "R", None, description
    )


def begin_transferring(
    source: Source,
    *,
    sender: Participant,
    receiver: Participant,
    patients: Iterable[tuple[str, str | None]],
    studies: Iterable[ParticipantObject],
    requestor: Participant | None = None,
) -> AuditMessage:
    """Begin Transferring DICOM Instances (A.5.3.3): a C-MOVE/C-GET's sub-operations start."""
    return _transfer(
        BEGIN_TRANSFERRING,
        source,
        sender,
        receiver,
        patients,
        studies,
        SUCCESS,
        "E",
        requestor,
        None,
    )


def query(
    source: Source,
    *,
    requestor: Participant,
    responder: Participant,
    sop_class_uid: str,
    identifier: bytes,
    transfer_syntax: str,
    outcome: int = SUCCESS,
) -> AuditMessage:
    """Query (A.5.3.10): a C-FIND, with the identifier as received (base64) and its syntax."""
    return AuditMessage(
        QUERY,
        outcome=outcome,
        participants=[requestor, responder],
        source=source,
        objects=[
            ParticipantObject(
                sop_class_uid,
                2,
                3,
                SOP_CLASS_UID,
                query=identifier,
                details=(("TransferSyntax", transfer_syntax.encode("ascii")),),
            )
        ],
    )


def security_alert(
    source: Source,
    *,
    kind: Code,
    subject: str,
    description: str,
    performer: Participant | None = None,
    outcome: int = MINOR_FAILURE,
) -> AuditMessage:
    """Security Alert (A.5.3.11): reported by this node, about ``subject`` (a node or URI)."""
    participants = [Participant(source.source_id, True, (), address=None)]
    if performer is not None:
        participants.append(performer)
    return AuditMessage(
        SECURITY_ALERT,
        outcome=outcome,
        type_codes=(kind,),
        participants=participants,
        source=source,
        objects=[
            ParticipantObject(
                subject or "-",
                2,
                13,
                NODE_ID if kind is NODE_AUTHENTICATION else URI,
                details=(("Alert Description", description.encode("utf-8")),),
            )
        ],
        outcome_description=description,
    )


def user_authentication(
    source: Source,
    *,
    user: Participant,
    node: Participant,
    success: bool,
    login: bool = True,
    description: str | None = None,
) -> AuditMessage:
    """User Authentication (A.5.3.12): a login (user identity negotiation) or logout."""
    return AuditMessage(
        USER_AUTHENTICATION,
        outcome=SUCCESS if success else MINOR_FAILURE,
        type_codes=(LOGIN if login else LOGOUT,),
        participants=[user, node],
        source=source,
        outcome_description=description,
    )


def order_or_procedure_record(
    source: Source,
    *,
    procedure: bool,
    action: str,
    requestor: Participant,
    node: Participant,
    patient: tuple[str, str | None],
    outcome: int = SUCCESS,
    studies: Iterable[str] = (),
    description: str | None = None,
) -> AuditMessage:
    """Order Record (A.5.3.13) or Procedure Record (A.5.3.15) created/updated/deleted."""
    return AuditMessage(
        PROCEDURE_RECORD if procedure else ORDER_RECORD,
        outcome=outcome,
        action=action,
        participants=[requestor, node],
        source=source,
        objects=[*(study_object(uid) for uid in studies if uid), patient_object(*patient)],
        outcome_description=description,
    )
