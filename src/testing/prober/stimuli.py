"""Stimuli: how a scenario brings the SCP to a state and what it sends there.

A :data:`~.model.Stimulus` opens a connection in Sta2 (connected, before the
A-ASSOCIATE-RQ) or Sta6 (established) of PS3.8 Table 9-10, sends PDUs or raw bytes (or a
whole DIMSE message cut into PDVs, PS3.8 Annex E) and returns an
:class:`~.probe.Exchange` with what came back. The PDUs built here are those the
scenarios send where they do not belong, or with fields the standard leaves reserved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ... import IMPLEMENTATION_CLASS_UID
from ...ul.pdu import (
    DICOM_APPLICATION_CONTEXT,
    PDU,
    AAssociateAC,
    ApplicationContextItem,
    AReleaseRQ,
    AssociateItem,
    PDataTF,
    PresentationContextACItem,
    PresentationDataValue,
    UserInformationItem,
)
from ..rawpeer import (
    IMPLICIT_VR_LE,
    SECONDARY_CAPTURE,
    VERIFICATION,
    ContextSpec,
    PeerClosedError,
    RawPeer,
    c_echo_rq,
    c_store_rq,
    new_uid,
    small_dataset,
)
from .model import ScenarioSkipped, Stimulus
from .probe import VERIFICATION_ONLY, Exchange, Probe

__all__ = [
    "CT_IMAGE_STORAGE",
    "IN_STA2",
    "IN_STA6",
    "UNKNOWN_ABSTRACT_SYNTAX",
    "UNKNOWN_APPLICATION_CONTEXT",
    "UNKNOWN_PDU",
    "UNKNOWN_TRANSFER_SYNTAX",
    "Build",
    "Layout",
    "Opening",
    "accept_pdu",
    "associate",
    "echo_in_fragments",
    "echo_pdu",
    "in_sta6",
    "send",
    "stay_silent",
    "store_in_layout",
]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: UIDs under the 2.25 root that no SCP supports (an abstract and a transfer syntax).
UNKNOWN_ABSTRACT_SYNTAX = "2.25.295310457301935316532196366423364123000"
UNKNOWN_TRANSFER_SYNTAX = "2.25.295310457301935316532196366423364123001"
UNKNOWN_APPLICATION_CONTEXT = "2.25.295310457301935316532196366423364123002"

#: A PDU of type 09H, unknown to PS3.8 Table 9-11, with a 4-byte body.
UNKNOWN_PDU = b"\x09\x00\x00\x00\x00\x04\x00\x00\x00\x00"

# -- PDUs -----------------------------------------------------------------------------------------


def echo_pdu(context_id: int = 1, message_id: int = 1) -> PDataTF:
    """A C-ECHO-RQ command set in one PDV of one P-DATA-TF."""
    return PDataTF([PresentationDataValue(context_id, 0x03, c_echo_rq(message_id))])


def accept_pdu(probe: Probe, peer: RawPeer | None = None) -> AAssociateAC:
    """A well-formed A-ASSOCIATE-AC, to be sent where it does not belong."""
    items: list[AssociateItem] = [
        ApplicationContextItem(DICOM_APPLICATION_CONTEXT),
        PresentationContextACItem.create(1, 0, IMPLICIT_VR_LE),
        UserInformationItem.create(probe.target.max_pdu_length, IMPLEMENTATION_CLASS_UID),
    ]
    return AAssociateAC(probe.target.called_ae_title, probe.target.calling_ae_title, items)


# -- states ---------------------------------------------------------------------------------------

#: Brings a new connection to a state of PS3.8 Table 9-10.
Opening = Callable[[Probe], Awaitable[RawPeer]]


def in_sta6(contexts: Sequence[ContextSpec] = VERIFICATION_ONLY) -> Opening:
    """Sta6: an association established with ``contexts`` (Verification accepted)."""

    async def opening(probe: Probe) -> RawPeer:
        return await probe.established(contexts)

    return opening


#: Sta2: connected, nothing sent yet.
IN_STA2: Opening = Probe.connect
#: Sta6 with Verification accepted.
IN_STA6: Opening = in_sta6()

# -- stimuli --------------------------------------------------------------------------------------

#: What to send: a PDU or bytes, or a function of the probe and the open connection that
#: builds it (raising :class:`~.model.ScenarioSkipped` when the SCP makes it meaningless).
Build = PDU | bytes | Callable[[Probe, RawPeer], PDU | bytes]


def send(*builds: Build, state: Opening = IN_STA2, header_first: bool = False) -> Stimulus:
    """In ``state``, send ``builds`` in one write and observe the first reaction.

    ``header_first`` (one PDU only) writes the 6-byte PDU header alone first (see
    :meth:`~.probe.Probe.stimulate_in_two`).
    """
    if header_first and len(builds) != 1:
        raise ValueError("header_first sends exactly one PDU")

    async def stimulus(probe: Probe) -> Exchange:
        peer = await state(probe)
        items = [build(probe, peer) if callable(build) else build for build in builds]
        if header_first:
            observation = await probe.stimulate_pdu(peer, items[0])
        else:
            observation = await probe.stimulate(peer, *items)
        return Exchange(probe, peer, sent=items[0], observation=observation)

    return stimulus


def associate(contexts: Sequence[ContextSpec] = VERIFICATION_ONLY, **kwargs: Any) -> Stimulus:
    """A whole A-ASSOCIATE-RQ/AC or RJ exchange (``kwargs``: :meth:`RawPeer.associate`)."""

    async def stimulus(probe: Probe) -> Exchange:
        peer = await probe.connect()
        answer = await probe.associate(peer, contexts, **kwargs)
        return Exchange(probe, peer, answer=answer)

    return stimulus


def stay_silent() -> Stimulus:
    """Connect, send nothing, and wait up to ``artim_wait`` for the SCP's ARTIM."""

    async def stimulus(probe: Probe) -> Exchange:
        peer = await probe.connect()
        return Exchange(probe, peer, observation=await probe.observe(peer, probe.target.artim_wait))

    return stimulus


async def _answer(probe: Probe, peer: RawPeer, message_id: int, sent: bool) -> Exchange:
    """Wait for the DIMSE response to request ``message_id``."""
    message, observation = await probe.response(peer)
    if observation is not None:
        observation.write_failed = not sent
    return Exchange(probe, peer, observation=observation, message=message, message_id=message_id)


def echo_in_fragments(sizes: Sequence[int], pdvs_per_pdu: int) -> Stimulus:
    """In Sta6, a C-ECHO-RQ command set in PDVs of ``sizes`` bytes (the last repeated),
    ``pdvs_per_pdu`` to a P-DATA-TF (0: all in one); then its response."""

    async def stimulus(probe: Probe) -> Exchange:
        peer = await probe.established()
        context_id = peer.accepted_context(VERIFICATION) or 1
        message_id = peer.next_message_id()
        sent = True
        try:
            await peer.send_message(
                context_id, c_echo_rq(message_id), sizes=sizes, pdvs_per_pdu=pdvs_per_pdu
            )
        except PeerClosedError:
            sent = False
        return await _answer(probe, peer, message_id, sent)

    return stimulus


#: Cuts a C-STORE-RQ (context ID, command set, data set) into P-DATA-TF PDUs.
Layout = Callable[[int, bytes, bytes], list[PDataTF]]

_STORAGE_CONTEXTS: list[ContextSpec] = [
    (VERIFICATION, (IMPLICIT_VR_LE,)),
    (SECONDARY_CAPTURE, (IMPLICIT_VR_LE,)),
]


def store_in_layout(layout: Layout) -> Stimulus:
    """In Sta6, a C-STORE of a small Secondary Capture instance cut by ``layout``; then
    its response. Skipped when the SCP does not accept Secondary Capture."""

    async def stimulus(probe: Probe) -> Exchange:
        peer = await probe.established(_STORAGE_CONTEXTS)
        context_id = peer.accepted_context(SECONDARY_CAPTURE)
        if context_id is None:
            await probe.send(peer, AReleaseRQ())
            raise ScenarioSkipped("the SCP does not accept Secondary Capture Image Storage")
        uid = new_uid()
        message_id = peer.next_message_id()
        command = c_store_rq(SECONDARY_CAPTURE, uid, message_id)
        dataset = small_dataset(SECONDARY_CAPTURE, uid)
        sent = await probe.send(peer, *layout(context_id, command, dataset))
        return await _answer(probe, peer, message_id, sent)

    return stimulus
