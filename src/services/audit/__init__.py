"""Audit trail (PS3.15 A.5 messages, A.6 SYSLOG-TLS/SYSLOG-UDP transmission, local file).

:mod:`.messages` builds the DICOM audit message XML, :mod:`.trail` formats RFC 5424
syslog messages and sends them without blocking, :mod:`.service` is the node's
``[audit]`` service that records what the node does. See docs/audit.md.
"""

from .messages import AuditMessage, Code, Participant, ParticipantObject, Source
from .service import Audit
from .trail import (
    MSGID,
    AuditConfig,
    AuditTrail,
    FileSink,
    Sink,
    TLSSink,
    UDPSink,
    format_syslog,
    make_sink,
)

__all__ = [
    "MSGID",
    "Audit",
    "AuditConfig",
    "AuditMessage",
    "AuditTrail",
    "Code",
    "FileSink",
    "Participant",
    "ParticipantObject",
    "Sink",
    "Source",
    "TLSSink",
    "UDPSink",
    "format_syslog",
    "make_sink",
]
