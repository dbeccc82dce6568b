"""The dicomwire exception family, in one module.

Every error the library raises on purpose derives from :class:`DicomWireError`, so an
application can catch one type. Below it the family splits by whose fault it is (as h11
splits ``LocalProtocolError`` from ``RemoteProtocolError``):

- :class:`LocalProtocolError` — this side asked for something the standard or the API does
  not allow (an invalid value, a primitive the state table forbids, a SOP class the peer
  accepted no context for, a file that is not DICOM, a bad configuration). Nothing went on
  the wire; fixing the call fixes it.
- :class:`RemoteProtocolError` — the peer broke PS3.8 or PS3.7 (a malformed PDU, DIMSE
  encapsulation rules); the standard's answer (A-ABORT, a failure status) is sent.
- the peer's lawful answers and the transport's fate: :class:`AssociationRejected`
  (A-ASSOCIATE-RJ, PS3.8 Table 9-21), :class:`AssociationAborted` (A-ABORT / A-P-ABORT,
  Table 9-26), :class:`DimseStatusError` (a DIMSE failure status, PS3.7 Annex C),
  :class:`DicomTimeoutError`, :class:`TransportError`, :class:`TLSError`.

Code decides on the structured fields, never on the message text:

- ``permanent`` — trying the same thing again, with the same peer, will not help;
- ``status`` — the DIMSE status code (PS3.7 Annex C) that describes the error, if any;
- ``reason`` — the standard's reason code where one exists (A-ASSOCIATE-RJ or A-ABORT
  reason, an int), else a short stable text code such as ``"no-accepted-context"``.
"""

from __future__ import annotations

from typing import Protocol

from .dimse.status import Status

__all__ = [
    "AssociationAborted",
    "AssociationRejected",
    "AssociationStateError",
    "CommandError",
    "ConfigError",
    "DataSetError",
    "DicomTimeoutError",
    "DicomWireError",
    "DimseProtocolError",
    "DimseStatusError",
    "IndexUnavailableError",
    "InvalidQueryError",
    "LaunchError",
    "LocalProtocolError",
    "NoAcceptedContextError",
    "PDUError",
    "Part10Error",
    "RemoteProtocolError",
    "TLSError",
    "TransportError",
    "UnknownAEError",
    "ValidationError",
]


class DicomWireError(Exception):
    """Root of every error raised by dicomwire (see the module docstring for the fields)."""

    permanent: bool = False
    status: int | None = None
    reason: int | str | None = None


class LocalProtocolError(DicomWireError):
    """This side asked for something the standard or the API does not allow."""

    permanent = True


class RemoteProtocolError(DicomWireError):
    """The peer broke the protocol; the standard's answer to it is (or was) sent."""


# --------------------------------------------------------------------------- local


class ValidationError(LocalProtocolError, ValueError):
    """A value given by the application breaks the standard's rules (AE title, UID, ...).

    It is also a :class:`ValueError`, so code that validates user input can catch either.
    """

    reason = "invalid-value"


class AssociationStateError(LocalProtocolError):
    """The application asked for a primitive that PS3.8 Table 9-10 does not allow now."""

    reason = "state"


class NoAcceptedContextError(LocalProtocolError):
    """The peer accepted no presentation context for what is to be sent (PS3.8 §9.3.3.2).

    Permanent for this association and peer configuration: proposing the same contexts
    again gets the same answer.
    """

    reason = "no-accepted-context"

    def __init__(
        self, message: str, abstract_syntax: str = "", transfer_syntax: str | None = None
    ) -> None:
        self.abstract_syntax = abstract_syntax
        self.transfer_syntax = transfer_syntax
        super().__init__(message)


class Part10Error(LocalProtocolError):
    """A file is not a DICOM Part 10 file, or its file meta is unusable (PS3.10 §7.1).

    ``reason`` says which: ``"not-dicom"`` (no DICM prefix), ``"unreadable"`` (the file
    cannot be read), ``"bad-meta"`` (the file meta is malformed or incomplete),
    ``"bad-dataset"`` (the data set is cut short, has an odd length or lacks its SOP UIDs).
    """

    def __init__(self, message: str, reason: str = "bad-meta") -> None:
        self.reason = reason
        super().__init__(message)


class ConfigError(LocalProtocolError):
    """The node configuration is invalid; names the file, the key and what was expected."""

    reason = "config"

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        super().__init__(message)


# --------------------------------------------------------------------------- remote


class PDUError(RemoteProtocolError):
    """A PDU is malformed; :attr:`offset` is the byte (from the PDU's start) at fault.

    :attr:`abort_reason` (also :attr:`reason`) is the A-ABORT reason (PS3.8 Table 9-26) a
    receiver answers with: 1 unrecognized PDU, 4 unrecognized PDU parameter, 5 unexpected
    PDU parameter, 6 invalid PDU parameter value (the default).
    """

    def __init__(self, message: str, offset: int | None = None, abort_reason: int = 6) -> None:
        self.offset = offset
        self.detail = message
        self.abort_reason = abort_reason
        self.reason = abort_reason
        super().__init__(message if offset is None else f"{message} (at byte {offset})")


class DimseProtocolError(RemoteProtocolError):
    """The peer broke the DIMSE encapsulation rules of PS3.7 §6.3 / PS3.8 Annex E.

    The session answers it with A-ABORT.
    """


class InvalidQueryError(RemoteProtocolError):
    """A C-FIND identifier the matching rules of PS3.4 C.2.2.2 cannot apply (answered A900).

    E.g. a range on a VR without ranges, a malformed date, a sequence key with two items.
    """

    status = 0xA900
    permanent = True


class CommandError(DicomWireError):
    """A command set breaks PS3.7 §9.3/§10.3 (missing element, wrong value or encoding).

    Raised by the command codec for either side: a received one becomes a
    :class:`DimseProtocolError` in the session, an outgoing one reaches the caller.
    """

    status = 0xC000


class DataSetError(DicomWireError):
    """A data set cannot be decoded or encoded in its transfer syntax (answered C000)."""

    status = 0xC000
    permanent = True


# --------------------------------------------------------------------------- outcomes

_REJECT_TEXT = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


class AssociationRejected(DicomWireError):
    """The peer answered A-ASSOCIATE-RJ (PS3.8 Table 9-21): ``result``, ``source``, ``reason``.

    ``permanent`` follows the result: 1 rejected-permanent, 2 rejected-transient.
    """

    def __init__(self, result: int, source: int, reason: int) -> None:
        self.result, self.source, self.reason = result, source, reason
        self.permanent = result == 1
        kind = "permanent" if self.permanent else "transient"
        text = _REJECT_TEXT.get((source, reason), "unknown reason")
        super().__init__(
            f"association rejected ({kind}): {text} (result {result}, source {source}, "
            f"reason {reason})"
        )


class AbortInfo(Protocol):
    """What an A-ABORT or A-P-ABORT indication carries (see ``ul.machine.AbortIndication``)."""

    @property
    def source(self) -> int: ...
    @property
    def reason(self) -> int: ...
    @property
    def provider(self) -> bool: ...
    @property
    def local(self) -> bool: ...
    @property
    def detail(self) -> str: ...


class AssociationAborted(DicomWireError):
    """The association ended by A-ABORT or A-P-ABORT (PS3.8 Table 9-26).

    ``indication`` is the abort indication; ``source`` and ``reason`` are its fields.
    """

    def __init__(self, indication: AbortInfo) -> None:
        self.indication = indication
        self.source = indication.source
        self.reason = indication.reason
        who = "A-P-ABORT" if indication.provider else "A-ABORT"
        where = "by this side" if indication.local else "by the peer"
        detail = f": {indication.detail}" if indication.detail else ""
        super().__init__(
            f"{who} {where} (source {indication.source}, reason {indication.reason}){detail}"
        )


class DicomTimeoutError(DicomWireError, TimeoutError):
    """A configured timeout ran out (connect, ACSE, DIMSE, network idle, send stall)."""

    reason = "timeout"


class TransportError(DicomWireError):
    """The transport connection could not be made or was lost outside the protocol."""

    reason = "transport"


class TLSError(DicomWireError):
    """TLS could not be set up (bad certificate or key, handshake failure...)."""

    reason = "tls"


class UnknownAEError(DicomWireError):
    """An AE title the AE directory has no callable entry for (a C-MOVE answers A801)."""

    reason = "unknown-ae"
    permanent = True
    status = 0xA801


class IndexUnavailableError(DicomWireError):
    """The instance index (its database) could not be read or written.

    The storage SCP answers A700 (out of resources) and keeps no file; a query answers a
    C000-class failure. The message says what the database reported.
    """

    reason = "index-unavailable"
    status = 0xA700


class DimseStatusError(DicomWireError):
    """A DIMSE failure status: raise it from a handler to answer with ``status``.

    The SCU side raises it too where a call has no result but success (e.g. ``echo``).
    ``comment`` is the Error Comment (0000,0902), at most 64 characters on the wire.
    """

    status: Status

    def __init__(self, status: int, comment: str = "") -> None:
        self.status = Status(status)
        self.comment = comment
        self.permanent = not 0xA700 <= status <= 0xA7FF  # out of resources may pass
        super().__init__(f"{self.status}{': ' + comment if comment else ''}")


class LaunchError(DicomWireError):
    """A program a local try-out needs (PostgreSQL, HAProxy, a node) is missing or did not
    start; the message carries its output. ``missing`` tells an absent program apart."""

    reason = "launch-failed"

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing
        self.permanent = missing
