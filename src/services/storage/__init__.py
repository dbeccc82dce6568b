"""The Storage service class (PS3.4 Annex B): C-STORE SCP and SCU.

- :mod:`.scp` — the SCP: each received data set streamed into a Part 10 file, checked,
  placed by the layout and made durable before success is answered;
- :mod:`.scu` — the SCU core, shared by every sender: file listing, presentation context
  planning and batching, context choice, sending on an open session, ``store_files``;
- :mod:`.header` — reading a received data set's header (the UIDs checked and filed by);
- :mod:`.sop_classes` — the storage SOP classes and transfer syntaxes.

Every public name is importable from here.
"""

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
from .service import Storage
from .sop_classes import (
    COMPRESSED_TRANSFER_SYNTAXES,
    STORAGE_TRANSFER_SYNTAXES,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    storage_sop_classes,
)

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
