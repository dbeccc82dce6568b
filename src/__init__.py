"""dicomwire: the DICOM network protocol for asyncio.

Layers, one direction of dependency (``services -> dimse -> ul``):

- :mod:`dicomwire.ul` — the Upper Layer of PS3.8 (PDUs, association state machine);
- :mod:`dicomwire.dimse` — DIMSE messages of PS3.7;
- :mod:`dicomwire.services` — the service classes of PS3.4, the node and the CLI.

The names most programs need are here (see docs/quickstart.md)::

    async with dicomwire.connect("pacs", 104, called_ae="PACS") as assoc:
        await assoc.echo()

They are imported on first use, so ``import dicomwire`` stays cheap for the tools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import DicomWireError, ValidationError
from .lazy import lazy_attributes

__version__ = "0.1.0"

#: dicomwire's implementation class UID (PS3.7 Annex D.3.3.2), sent in every A-ASSOCIATE.
#: A UUID-derived UID (PS3.5 §B.2, root 2.25) fixed for the 0.x series: no registration needed.
IMPLEMENTATION_CLASS_UID = "2.25.668790844997978913503397512529915765"
#: dicomwire's implementation version name (at most 16 characters).
IMPLEMENTATION_VERSION_NAME = "DICOMWIRE_010"

#: Public name -> module that defines it (imported when the name is first used).
_LAZY: dict[str, str] = {
    "connect": "dicomwire.services.client",
    "Client": "dicomwire.services.client",
    "RetrieveResult": "dicomwire.services.client",
    "NResult": "dicomwire.services.client",
    "FindResponses": "dicomwire.services.client",
    "storage_classes_for": "dicomwire.services.client",
    "Node": "dicomwire.services.node",
    "NodeConfig": "dicomwire.services.node",
    "load_config": "dicomwire.services.node",
    "Service": "dicomwire.services.service",
    "Binding": "dicomwire.services.service",
    "CustomService": "dicomwire.services.service",
    "Verification": "dicomwire.services.verification",
    "Storage": "dicomwire.services.storage",
    "StorageConfig": "dicomwire.services.storage",
    "StorageCommitment": "dicomwire.services.commitment",
    "CommitmentReport": "dicomwire.services.commitment",
    "Worklist": "dicomwire.services.worklist",
    "WorklistConfig": "dicomwire.services.worklist",
    "query_worklist": "dicomwire.services.worklist",
    "AEDirectory": "dicomwire.services.directory",
    "RemoteAE": "dicomwire.services.directory",
    "Request": "dicomwire.dimse.session",
    "Response": "dicomwire.dimse.session",
    "Status": "dicomwire.dimse.status",
    "CommandField": "dicomwire.dimse.commands",
    "Timeouts": "dicomwire.ul.association",
    "TLSConfig": "dicomwire.ul.tls",
    "Print": "dicomwire.services.print",
    "PrintConfig": "dicomwire.services.print",
    "PrintOptions": "dicomwire.services.print",
    "print_images": "dicomwire.services.print",
}

if TYPE_CHECKING:
    from .dimse.commands import CommandField
    from .dimse.session import Request, Response
    from .dimse.status import Status
    from .services.client import (
        Client,
        FindResponses,
        NResult,
        RetrieveResult,
        connect,
        storage_classes_for,
    )
    from .services.commitment import CommitmentReport, StorageCommitment
    from .services.directory import AEDirectory, RemoteAE
    from .services.node import Node, NodeConfig, load_config
    from .services.print import Print, PrintConfig, PrintOptions, print_images
    from .services.service import Binding, CustomService, Service
    from .services.storage import Storage, StorageConfig
    from .services.verification import Verification
    from .services.worklist import Worklist, WorklistConfig, query_worklist
    from .ul.association import Timeouts
    from .ul.tls import TLSConfig


__getattr__ = lazy_attributes(globals(), _LAZY)


__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "AEDirectory",
    "Binding",
    "Client",
    "CommandField",
    "CommitmentReport",
    "CustomService",
    "DicomWireError",
    "FindResponses",
    "NResult",
    "Node",
    "NodeConfig",
    "Print",
    "PrintConfig",
    "PrintOptions",
    "RemoteAE",
    "Request",
    "Response",
    "RetrieveResult",
    "Service",
    "Status",
    "Storage",
    "StorageCommitment",
    "StorageConfig",
    "TLSConfig",
    "Timeouts",
    "ValidationError",
    "Verification",
    "Worklist",
    "WorklistConfig",
    "__version__",
    "connect",
    "load_config",
    "print_images",
    "storage_classes_for",
    "query_worklist",
]
