"""The prober's hands: connections to the SCP, stimuli written to it, observations of it.

A :class:`Probe` opens raw connections (:class:`~dicomwire.testing.rawpeer.RawPeer`),
brings them to Sta2 (connected, PS3.8 Table 9-10) or Sta6 (association established),
sends PDUs or bytes and records the SCP's first reaction as an
:class:`~.model.Observation`. An :class:`Exchange` carries what a stimulus did to a judge.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...dimse.commands import CommandError
from ...dimse.messages import DimseProtocolError
from ...errors import DicomWireError
from ...ul.negotiation import RequestorConfig, build_request
from ...ul.pdu import PDU, AAssociateAC, AAssociateRJ, AAssociateRQ, AReleaseRQ, PDUError
from ..rawpeer import (
    IMPLICIT_VR_LE,
    VERIFICATION,
    ContextSpec,
    Message,
    PeerClosedError,
    RawPeer,
    RawPeerError,
    RawPeerTimeout,
    describe,
)
from .model import Observation, ProbeTarget, ScenarioAborted

__all__ = ["VERIFICATION_ONLY", "Exchange", "Probe"]

#: The presentation contexts proposed unless a scenario says otherwise.
VERIFICATION_ONLY: Sequence[ContextSpec] = ((VERIFICATION, (IMPLICIT_VR_LE,)),)


class Probe:
    """What a scenario works with: the target, fresh connections, and observations."""

    def __init__(self, target: ProbeTarget) -> None:
        self.target = target
        self.baseline: AAssociateAC | None = None
        self._peers: list[RawPeer] = []

    # -- connections -------------------------------------------------------------------------

    async def connect(self) -> RawPeer:
        """A new connection (the scenario's peers are closed after it)."""
        peer = await RawPeer.connect(
            self.target.host, self.target.port, tls=self.target.tls, timeout=self.target.timeout
        )
        self._peers.append(peer)
        return peer

    async def close_all(self) -> None:
        peers, self._peers = self._peers, []
        for peer in peers:
            await peer.close(timeout=1.0)

    def config(
        self, contexts: Sequence[ContextSpec] = VERIFICATION_ONLY, **changes: Any
    ) -> RequestorConfig:
        settings: dict[str, Any] = {
            "calling_ae_title": self.target.calling_ae_title,
            "called_ae_title": self.target.called_ae_title,
            "contexts": list(contexts),
            "max_pdu_length": self.target.max_pdu_length,
        }
        settings.update(changes)
        return RequestorConfig(**settings)

    def request(
        self, contexts: Sequence[ContextSpec] = VERIFICATION_ONLY, **changes: Any
    ) -> AAssociateRQ:
        """An A-ASSOCIATE-RQ from the target's AE titles (``changes``: RequestorConfig)."""
        request, _ = build_request(self.config(contexts, **changes))
        return request

    async def associate(
        self, peer: RawPeer, contexts: Sequence[ContextSpec] = VERIFICATION_ONLY, **kwargs: Any
    ) -> AAssociateAC | AAssociateRJ:
        return await peer.associate(
            self.target.calling_ae_title,
            self.target.called_ae_title,
            contexts,
            max_pdu_length=self.target.max_pdu_length,
            **kwargs,
        )

    async def established(self, contexts: Sequence[ContextSpec] = VERIFICATION_ONLY) -> RawPeer:
        """A connection in Sta6 with Verification accepted, or :class:`ScenarioAborted`."""
        peer = await self.connect()
        answer = await self.associate(peer, contexts)
        if not isinstance(answer, AAssociateAC):
            raise ScenarioAborted(f"could not associate: {describe(answer)}")
        if peer.accepted_context(VERIFICATION) is None:
            raise ScenarioAborted("the SCP did not accept the Verification context")
        return peer

    # -- stimuli and observations --------------------------------------------------------------

    async def send(self, peer: RawPeer, *items: PDU | bytes) -> bool:
        """Send; False (not an error) when the SCP already closed the connection."""
        try:
            await peer.send(*items)
        except PeerClosedError:
            return False
        return True

    async def observe(
        self, peer: RawPeer, timeout: float | None = None, *, write_failed: bool = False
    ) -> Observation:
        """Wait for the SCP's first reaction: a PDU, a close, garbage or silence."""
        limit = self.target.timeout if timeout is None else timeout
        start = time.monotonic()
        try:
            pdu = await peer.receive(limit)
        except RawPeerTimeout:
            return Observation("silence", limit, write_failed=write_failed)
        except PDUError as exc:
            return Observation(
                "garbage", time.monotonic() - start, detail=str(exc), write_failed=write_failed
            )
        elapsed = time.monotonic() - start
        if pdu is None:
            return Observation("closed", elapsed, write_failed=write_failed, reset=peer.reset)
        return Observation("pdu", elapsed, pdu, write_failed=write_failed)

    async def stimulate_in_two(self, peer: RawPeer, head: bytes, rest: bytes) -> Observation:
        """Send ``head`` (a PDU header) and watch briefly; only then send ``rest``.

        A receiver that judges a PDU by its header answers before the body is written, so
        it never closes with unread bytes (a TCP reset that could swallow its A-ABORT).
        """
        sent = await self.send(peer, head)
        first = await self.observe(peer, min(self.target.timeout, 0.25), write_failed=not sent)
        if first.kind != "silence":
            return first
        sent = await self.send(peer, rest)
        return await self.observe(peer, write_failed=not sent)

    async def stimulate_pdu(self, peer: RawPeer, pdu: PDU | bytes) -> Observation:
        """Send one PDU, header first (see :meth:`stimulate_in_two`), and observe."""
        data = pdu if isinstance(pdu, bytes) else pdu.encode()
        return await self.stimulate_in_two(peer, data[:6], data[6:])

    async def stimulate(
        self, peer: RawPeer, *items: PDU | bytes, timeout: float | None = None
    ) -> Observation:
        sent = await self.send(peer, *items)
        return await self.observe(peer, timeout, write_failed=not sent)

    async def response(self, peer: RawPeer) -> tuple[Message | None, Observation | None]:
        """The next DIMSE message, or the observation of whatever came instead."""
        try:
            return await peer.receive_message(self.target.timeout), None
        except (DimseProtocolError, CommandError) as exc:
            return None, Observation("garbage", 0.0, detail=f"bad DIMSE message: {exc}")
        except RawPeerTimeout:
            return None, Observation("silence", self.target.timeout)
        except PDUError as exc:
            return None, Observation("garbage", 0.0, detail=str(exc))
        except RawPeerError as exc:
            received = getattr(exc, "received", None)
            if received is None:
                return None, Observation("closed", 0.0)
            return None, Observation("pdu", 0.0, received)

    # -- survival ------------------------------------------------------------------------------

    async def survives(self) -> tuple[bool, str]:
        """A fresh association with one C-ECHO and a release; (worked, what happened)."""
        try:
            async with RawPeer.connect(
                self.target.host,
                self.target.port,
                tls=self.target.tls,
                timeout=self.target.timeout,
            ) as peer:
                answer = await self.associate(peer)
                if not isinstance(answer, AAssociateAC):
                    return False, f"a fresh association was answered {describe(answer)}"
                status = await peer.echo()
                if status != 0:
                    return False, f"a fresh C-ECHO answered status 0x{status:04X}"
                await peer.release()
        except (DicomWireError, OSError) as exc:
            return False, f"a fresh association failed: {exc}"
        return True, "a fresh association and C-ECHO succeeded"


@dataclass(slots=True)
class Exchange:
    """What a stimulus sent and what the SCP answered first, handed to a judge.

    ``observation`` is the SCP's first reaction to a PDU; ``answer`` the reply to a full
    A-ASSOCIATE-RQ exchange (:meth:`Probe.associate`); ``message`` a DIMSE response (then
    ``observation`` is set only when none came).
    """

    probe: Probe
    peer: RawPeer
    sent: PDU | bytes | None = None
    observation: Observation | None = None
    answer: AAssociateAC | AAssociateRJ | None = None
    message: Message | None = None
    #: The Message ID of the request sent, which the response must name.
    message_id: int = 0

    @property
    def observed(self) -> Observation:
        """The observation (stimuli that observe always set it)."""
        assert self.observation is not None, "this stimulus records no observation"
        return self.observation

    async def release(self) -> None:
        """Send an A-RELEASE-RQ, without waiting, to leave an accepted association politely."""
        await self.probe.send(self.peer, AReleaseRQ())
