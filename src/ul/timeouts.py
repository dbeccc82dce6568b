"""The timeouts of an association (PS3.8 §9.1.5 ARTIM, and the local ones around it).

ARTIM is the standard's timer; the others bound how long this side waits for the peer:
the A-ASSOCIATE and A-RELEASE answers (ACSE), DIMSE responses, any received byte, the TCP
connect, and a peer that stops reading what we send.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..records import Record

__all__ = ["Timeouts"]


@dataclass(slots=True, repr=False, eq=False)
class Timeouts(Record):
    """Timeouts in seconds; None disables one (defaults as PS3.8 users expect them).

    ``network_idle`` also ends a peer that trickles bytes without completing PDUs;
    ``send_stall`` ends a peer that stops reading what we send (our write buffer full).
    """

    artim: float = 30.0
    acse: float | None = 30.0
    dimse: float | None = 60.0
    network_idle: float | None = 60.0
    connect: float | None = 15.0
    send_stall: float | None = 60.0
