"""Modality Performed Procedure Step (PS3.4 Annex F): SCP with durable steps and relay, SCU.

- :class:`MPPS` (:mod:`.service`) — the SCP as a node service, ``[mpps]`` table
  :class:`MPPSConfig`: N-CREATE and N-SET with the attribute rules of PS3.4 Table
  F.7.2-1 (:mod:`.attributes`), steps kept in the node's database (:mod:`.store`), every
  accepted message relayed to other AEs in order (:mod:`.relay`), an ``on_status`` hook;
- :func:`create_step`, :func:`set_step`, :func:`step_from_worklist`, :func:`completion`,
  :func:`series_from_files` (:mod:`.scu`) — the SCU over
  :class:`~dicomwire.services.client.Client`; ``dicomwire mpps`` on the command line.
"""

from __future__ import annotations

from .attributes import COMPLETED, DISCONTINUED, IN_PROGRESS
from .relay import RELAY_KIND, MPPSRelay
from .scu import completion, create_step, series_from_files, set_step, step_from_worklist
from .service import (
    MPPS,
    MPPS_SOP_CLASS,
    NOT_UPDATABLE_COMMENT,
    NOT_UPDATABLE_ERROR_ID,
    AdmitHook,
    MPPSConfig,
    StatusHook,
)
from .store import Step, StepStore

__all__ = [
    "COMPLETED",
    "AdmitHook",
    "DISCONTINUED",
    "IN_PROGRESS",
    "MPPS",
    "MPPS_SOP_CLASS",
    "NOT_UPDATABLE_COMMENT",
    "NOT_UPDATABLE_ERROR_ID",
    "RELAY_KIND",
    "MPPSConfig",
    "MPPSRelay",
    "StatusHook",
    "Step",
    "StepStore",
    "completion",
    "create_step",
    "series_from_files",
    "set_step",
    "step_from_worklist",
]
