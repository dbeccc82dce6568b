"""PDU traces: every PDU sent and received, as JSON lines (``--trace FILE``).

Each line holds the time, the direction, the peer, the PDU type and its exact bytes
(base64), so a session can be studied, diffed, or replayed with the raw peer
(:mod:`dicomwire.testing.rawpeer`). PS3.8 §9.3 PDUs are re-encoded from what was decoded,
which is byte-exact (the codec keeps every field as received).
"""

from __future__ import annotations

import base64
import itertools
import time
from pathlib import Path
from typing import IO

from .pdu import PDU, PDUType

__all__ = ["PDUTrace", "active_trace", "start_trace", "stop_trace"]

_names = {int(t): t.name.replace("_", "-") for t in PDUType}


class PDUTrace:
    """A JSON-lines file of PDUs; one per process, shared by every association."""

    def __init__(self, path: str | Path) -> None:
        import json  # here, not at import: only a traced process pays for it (start-up)

        self._dumps = json.dumps
        self.path = Path(path)
        self._file: IO[str] = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._ids = itertools.count(1)

    def new_association_id(self) -> int:
        return next(self._ids)

    def record(
        self, direction: str, association: int, peer: tuple[str, int] | None, pdu: PDU
    ) -> None:
        raw = pdu.encode()
        line = {
            "time": round(time.time(), 6),
            "direction": direction,
            "association": association,
            "peer": f"{peer[0]}:{peer[1]}" if peer else None,
            "type": _names.get(pdu.pdu_type, str(pdu.pdu_type)),
            "length": len(raw),
            "pdu": base64.b64encode(raw).decode("ascii"),
        }
        self._file.write(self._dumps(line) + "\n")

    def close(self) -> None:
        self._file.close()


_active: PDUTrace | None = None


def start_trace(path: str | Path) -> PDUTrace:
    """Trace every association of this process into ``path`` (appending)."""
    global _active
    stop_trace()
    _active = PDUTrace(path)
    return _active


def stop_trace() -> None:
    global _active
    if _active is not None:
        _active.close()
        _active = None


def active_trace() -> PDUTrace | None:
    return _active
