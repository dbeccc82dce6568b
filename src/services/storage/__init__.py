"""The Storage service class (PS3.4 Annex B): C-STORE SCP and SCU.

- :mod:`.scp` — the SCP: each received data set streamed into a Part 10 file, checked,
  placed by the layout and made durable before success is answered;
- :mod:`.scu` — the SCU core, shared by every sender: file listing, presentation context
  planning and batching, context choice, sending on an open session, ``store_files``;
- :mod:`.header` — reading a received data set's header (the UIDs checked and filed by);
- :mod:`.sop_classes` — the storage SOP classes and transfer syntaxes.

Every public name is importable from here. The SCP's names (and ``Storage``) are imported
on first use: a sender (``dicomwire store``) needs only the SCU core, and the SCP brings
the index and pydicom with it (docs/performance.md, start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import lazy_attributes
from .scu import (
    MAX_CONTEXTS,
    FileOutcome,
    StoreSummary,
    batch_by_contexts,
    choose_context,
    collect_files,
    inspect_file,
    plan_contexts,
    send_file,
    send_files,
    store_dataset,
    store_file,
    store_files,
)
from .sop_classes import (
    COMPRESSED_TRANSFER_SYNTAXES,
    STORAGE_TRANSFER_SYNTAXES,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    storage_sop_classes,
)

if TYPE_CHECKING:
    from .scp import (
        CANNOT_UNDERSTAND,
        DATASET_MISMATCH,
        DEFAULT_LAYOUT,
        DUPLICATE_SOP_INSTANCE,
        LAYOUT_FIELDS,
        OUT_OF_RESOURCES,
        Duplicates,
        StorageConfig,
        StorageSCP,
        StoreResult,
        validate_layout,
    )
    from .service import Storage

#: The names imported on first use, and the module of each.
_LAZY = {
    "CANNOT_UNDERSTAND": ".scp",
    "DATASET_MISMATCH": ".scp",
    "DEFAULT_LAYOUT": ".scp",
    "DUPLICATE_SOP_INSTANCE": ".scp",
    "LAYOUT_FIELDS": ".scp",
    "OUT_OF_RESOURCES": ".scp",
    "Duplicates": ".scp",
    "StorageConfig": ".scp",
    "StorageSCP": ".scp",
    "StoreResult": ".scp",
    "validate_layout": ".scp",
    "Storage": ".service",
}


__getattr__ = lazy_attributes(globals(), _LAZY)


__all__ = [
    "CANNOT_UNDERSTAND",
    "COMPRESSED_TRANSFER_SYNTAXES",
    "DATASET_MISMATCH",
    "DEFAULT_LAYOUT",
    "DUPLICATE_SOP_INSTANCE",
    "LAYOUT_FIELDS",
    "MAX_CONTEXTS",
    "OUT_OF_RESOURCES",
    "STORAGE_TRANSFER_SYNTAXES",
    "UNCOMPRESSED_TRANSFER_SYNTAXES",
    "Duplicates",
    "Storage",
    "FileOutcome",
    "StorageConfig",
    "StorageSCP",
    "StoreResult",
    "StoreSummary",
    "batch_by_contexts",
    "choose_context",
    "collect_files",
    "inspect_file",
    "plan_contexts",
    "send_file",
    "send_files",
    "store_dataset",
    "store_file",
    "store_files",
    "storage_sop_classes",
    "validate_layout",
]
