"""dicomwire: the DICOM network protocol for asyncio.

Layers, one direction of dependency (``services -> dimse -> ul``):

- :mod:`dicomwire.ul` — the Upper Layer of PS3.8 (PDUs, association state machine);
- :mod:`dicomwire.dimse` — DIMSE messages of PS3.7;
- :mod:`dicomwire.services` — the service classes of PS3.4, the node and the CLI.
"""

from __future__ import annotations

from .errors import DicomWireError, ValidationError

__version__ = "0.1.0"

#: dicomwire's implementation class UID (PS3.7 Annex D.3.3.2), sent in every A-ASSOCIATE.
#: A UUID-derived UID (PS3.5 §B.2, root 2.25) fixed for the 0.x series: no registration needed.
IMPLEMENTATION_CLASS_UID = "2.25.668790844997978913503397512529915765"
#: dicomwire's implementation version name (at most 16 characters).
IMPLEMENTATION_VERSION_NAME = "DICOMWIRE_010"

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "DicomWireError",
    "ValidationError",
    "__version__",
]
