"""The dicomwire exception family.

Every error the library raises on purpose derives from :class:`DicomWireError`, so an
application can catch one type. Protocol errors carry what the standard answers with
(A-ASSOCIATE-RJ reasons, A-ABORT source and reason, DIMSE status codes) in later modules.
"""

from __future__ import annotations


class DicomWireError(Exception):
    """Root of every error raised by dicomwire."""


class ValidationError(DicomWireError, ValueError):
    """A value given by the application breaks the standard's rules (AE title, UID, ...).

    It is also a :class:`ValueError`, so code that validates user input can catch either.
    """
