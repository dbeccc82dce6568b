"""Modality Worklist (PS3.4 Annex K): the store, the SCP service and the SCU.

- :mod:`.store` — :class:`WorklistStore` and its SQLite default (entries added by API or
  CLI, and a watched ``.wl``/``.dcm`` directory);
- :mod:`.service` — :class:`Worklist`, the Modality Worklist Information Model - FIND SCP,
  and its ``[worklist]`` configuration (:class:`WorklistConfig`);
- :mod:`.scu` — :func:`worklist_identifier` and :func:`query_worklist`.
"""

from __future__ import annotations

from .scu import date_range, query_worklist, worklist_identifier
from .service import (
    MODALITY_WORKLIST_FIND,
    SUPPORTED_KEYS,
    SUPPORTED_STEP_KEYS,
    Worklist,
    WorklistConfig,
)
from .store import (
    SQLiteWorklistStore,
    WatchedDirectory,
    WorklistEntry,
    WorklistStore,
    read_entries,
)

__all__ = [
    "MODALITY_WORKLIST_FIND",
    "SUPPORTED_KEYS",
    "SUPPORTED_STEP_KEYS",
    "SQLiteWorklistStore",
    "WatchedDirectory",
    "Worklist",
    "WorklistConfig",
    "WorklistEntry",
    "WorklistStore",
    "date_range",
    "query_worklist",
    "read_entries",
    "worklist_identifier",
]
