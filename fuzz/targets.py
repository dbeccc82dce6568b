"""Fuzz targets: bytes in, only documented errors out (PS3.8 §9.3, Table 9-10; PS3.7 §6.3).

Shared by the atheris harnesses of this directory (long runs, ``make fuzz``) and by
``tests/conformance/test_fuzz.py`` (hypothesis, bounded, in CI), so both exercise exactly
the same code. Each target swallows the errors the library documents for malformed input
and lets everything else escape: an escaping exception, a failed assertion (an invariant),
a hang or a memory blow-up is a finding.

- :func:`pdu_decode` — :func:`dicomwire.ul.pdu.decode`: only ``PDUError``; whatever
  decodes re-encodes to the same bytes (the codec's fidelity promise).
- :func:`framer` — :class:`dicomwire.ul.framer.PDUFramer` fed in chunks chosen by the
  input: only ``PDUError``; the same PDUs whatever the chunking; buffering bounded by the
  configured limits.
- :func:`command_decode` — :func:`dicomwire.dimse.commands.decode_command` and
  ``validate_command``: only ``CommandError``; a decoded command set re-encodes.
- :func:`negotiation` — an A-ASSOCIATE-RQ answered by ``accept_or_reject`` (the answer
  must encode and decode), an A-ASSOCIATE-AC read by ``read_accept``: no exception at all
  once the PDU decoded.
- :func:`acceptor` — the whole acceptor: the production
  :class:`~dicomwire.ul.session.AssociationSession` (the class the asyncio adapter drives)
  with an :class:`~dicomwire.ul.negotiation.AcceptorPolicy`, fed the bytes in chunks; it
  answers the A-ASSOCIATE-RQ, release collisions and Sta12 itself; this target does only
  what the adapter and the DIMSE layer do (encode every PDU sent, reassemble and validate
  DIMSE messages and abort on a violation, answer the peer's release, expire ARTIM):
  never an exception, and it ends in Sta1 after the transport closes.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator

from dicomwire import IMPLEMENTATION_CLASS_UID
from dicomwire.dimse.commands import (
    CommandError,
    Tag,
    decode_command,
    encode_command,
    validate_command,
)
from dicomwire.dimse.messages import CommandComplete, DimseProtocolError, MessageAssembler
from dicomwire.dimse.primitives import CEchoRQ, CStoreRQ
from dicomwire.errors import DicomWireError
from dicomwire.ul.framer import PDUFramer
from dicomwire.ul.fsm import State
from dicomwire.ul.machine import PDataIndication, SendPDU
from dicomwire.ul.negotiation import (
    DEFAULT_TRANSFER_SYNTAXES,
    AcceptorPolicy,
    RequestorConfig,
    accept_or_reject,
    build_request,
    read_accept,
)
from dicomwire.ul.pdu import (
    DICOM_APPLICATION_CONTEXT,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    ApplicationContextItem,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PDUError,
    PresentationContextACItem,
    PresentationDataValue,
    UnknownItem,
    UserIdentityRQItem,
    UserInformationItem,
    decode,
)
from dicomwire.ul.session import (
    Aborted,
    AssociationSession,
    Established,
    Rejected,
    ReleaseRequested,
    SessionEvent,
)

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"

#: Limits the targets run with: small, so inputs can reach them.
MAX_PDU_LENGTH = 16384
MAX_CONTROL_PDU_LENGTH = 1 << 16

POLICY = AcceptorPolicy(
    ae_titles=("FUZZ-SCP",),
    abstract_syntaxes={
        VERIFICATION: DEFAULT_TRANSFER_SYNTAXES,
        CT_IMAGE_STORAGE: (EXPLICIT_VR_LE, IMPLICIT_VR_LE),
    },
    scp_role_for=(CT_IMAGE_STORAGE,),
    max_pdu_length=MAX_PDU_LENGTH,
    identity_check=lambda identity, calling, host: (True, b"welcome"),
    extended_negotiation=lambda uid, info: info[:4],
)
REQUESTOR = RequestorConfig(
    "FUZZ-SCU",
    "FUZZ-SCP",
    [(VERIFICATION, [IMPLICIT_VR_LE]), (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE, IMPLICIT_VR_LE])],
    roles={CT_IMAGE_STORAGE: (True, True)},
    maximum_invoked=4,
    maximum_performed=4,
)


def _chunks(data: bytes, sizes: bytes) -> Iterator[bytes]:
    """Cut ``data`` into pieces whose sizes come from ``sizes`` (cycled; 0 means 1)."""
    if not sizes:
        yield data
        return
    position, index = 0, 0
    while position < len(data):
        size = sizes[index % len(sizes)] or 1
        yield data[position : position + size]
        position += size
        index += 1


def _split(data: bytes) -> tuple[bytes, bytes]:
    """The first byte says how many of the next bytes choose chunk sizes (0-7)."""
    if not data:
        return b"", b""
    count = data[0] & 0x07
    return data[1 : 1 + count], data[1 + count :]


# --------------------------------------------------------------------------- targets


def pdu_decode(data: bytes) -> None:
    """decode(): PDUError or a PDU that re-encodes byte for byte."""
    try:
        pdu = decode(data)
    except PDUError:
        return
    encoded = pdu.encode()
    assert encoded == bytes(data), f"re-encoding {type(pdu).__name__} changed the bytes"


def framer(data: bytes) -> None:
    """PDUFramer: PDUError only; chunking never changes the PDUs; buffering bounded."""
    sizes, stream = _split(data)
    whole = PDUFramer(MAX_PDU_LENGTH, MAX_CONTROL_PDU_LENGTH)
    try:
        expected = whole.feed(stream)
        whole_error: PDUError | None = whole.deferred_error
    except PDUError as exc:
        expected, whole_error = [], exc
    pieces = PDUFramer(MAX_PDU_LENGTH, MAX_CONTROL_PDU_LENGTH)
    got = []
    error: PDUError | None = None
    use_buffer = bool(sizes) and sizes[0] & 0x80
    for chunk in _chunks(stream, sizes):
        try:
            if use_buffer:  # the asyncio.BufferedProtocol path
                position = 0
                while position < len(chunk):
                    buffer = pieces.get_buffer(-1)
                    take = min(len(buffer), len(chunk) - position)
                    buffer[:take] = chunk[position : position + take]
                    position += take
                    got.extend(pieces.buffer_updated(take))
            else:
                got.extend(pieces.feed(chunk))
        except PDUError as exc:
            error = exc
            break
        if pieces.deferred_error is not None:
            error = pieces.deferred_error
            break
        limit = max(MAX_CONTROL_PDU_LENGTH, MAX_PDU_LENGTH) + 6
        assert pieces.buffered <= limit, f"framer buffers {pieces.buffered} bytes"
    assert [p.encode() for p in got] == [p.encode() for p in expected][: len(got)]
    if whole_error is None and error is None:
        assert len(got) == len(expected)
    assert (whole_error is None) == (error is None), (whole_error, error)


def command_decode(data: bytes) -> None:
    """decode_command()/validate_command(): CommandError only; decoded sets re-encode."""
    try:
        command = decode_command(data)
    except CommandError:
        return
    with contextlib.suppress(CommandError):
        validate_command(command)
    try:
        encoded = encode_command(command)
    except CommandError:
        return
    again = decode_command(encoded)
    assert again.keys() - {Tag.CommandGroupLength} == command.keys() - {Tag.CommandGroupLength}


def negotiation(data: bytes) -> None:
    """Acceptor and requestor negotiation on whatever A-ASSOCIATE PDU the bytes decode to."""
    try:
        pdu = decode(data)
    except PDUError:
        return
    if isinstance(pdu, AAssociateRQ):
        answer = accept_or_reject(POLICY, pdu, ("127.0.0.1", 104), 0)
        if isinstance(answer, AAssociateRJ):
            decode(answer.encode())
            return
        accept, negotiated = answer
        encoded = accept.encode()
        assert isinstance(decode(encoded), AAssociateAC)
        for context in negotiated.contexts.values():
            if context.accepted:
                assert context.transfer_syntax in context.transfer_syntaxes
    elif isinstance(pdu, AAssociateAC):
        _, proposed = build_request(REQUESTOR)
        negotiated = read_accept(REQUESTOR, proposed, pdu)
        for context in negotiated.accepted_contexts:
            assert context.transfer_syntax in context.transfer_syntaxes


def acceptor(data: bytes) -> None:
    """The acceptor's sans-I/O session, with the node's kind of policy, fed the bytes."""
    sizes, stream = _split(data)
    session = AssociationSession(
        requestor=False, policy=POLICY, max_control_pdu_length=MAX_CONTROL_PDU_LENGTH
    )
    assembler = MessageAssembler()
    expire_artim = bool(sizes) and bool(sizes[0] & 0x40)
    pending = list(session.transport_connected(("127.0.0.1", 104)))
    chunks = list(_chunks(stream, sizes))
    while True:
        while pending:
            pending.extend(_carry_out(session, assembler, pending.pop(0)))
        if expire_artim and session.artim_running and session.state is State.STA13:
            pending.extend(session.artim_expired())
            continue
        if not chunks or session.state is State.STA1:
            break
        pending.extend(session.receive_data(chunks.pop(0)))
    for event in session.transport_closed():
        _carry_out(session, assembler, event)
    assert session.state is State.STA1, session.state


def _carry_out(
    session: AssociationSession, assembler: MessageAssembler, event: SessionEvent
) -> list[SessionEvent]:
    """What the adapter and the DIMSE layer do with one event; the events of their answer."""
    if isinstance(event, SendPDU):
        encoded = event.pdu.encode()
        assert decode(encoded) is not None
        return []
    if isinstance(event, PDataIndication):
        if session.state is not State.STA6:
            return []
        try:
            for message in assembler.feed(event.pdu):
                if isinstance(message, CommandComplete):
                    validate_command(message.command)
        except (DimseProtocolError, CommandError):
            return session.abort()  # the DIMSE session's answer to a violation: A-ABORT
        return []
    if isinstance(event, ReleaseRequested):
        assert session.release_requested
        return session.release_response()  # the DIMSE session has nothing more to send
    if isinstance(event, Established):
        assert session.negotiated is event.negotiated
    elif isinstance(event, Rejected):
        assert event.local and session.error is None  # we rejected: nothing went wrong
    elif isinstance(event, Aborted):
        assert session.error is event.error
    return []


TARGETS = {
    "pdu": pdu_decode,
    "framer": framer,
    "command": command_decode,
    "negotiation": negotiation,
    "acceptor": acceptor,
}


# --------------------------------------------------------------------------- seeds


def seed_commands() -> list[bytes]:
    """Command sets of the messages the node handles, built from the typed primitives."""
    echo = CEchoRQ(VERIFICATION, message_id=1)
    store = CStoreRQ(CT_IMAGE_STORAGE, "1.2.3.4.5.6.7", message_id=7, dataset=b"")
    response = echo.response(0)
    return [encode_command(message.to_command()) for message in (echo, store, response)]


def seed_pdus() -> list[bytes]:
    """One well-formed PDU of each kind (and a few variants), from the codec."""
    request, _ = build_request(REQUESTOR)
    identity_config = RequestorConfig(
        "FUZZ-SCU",
        "FUZZ-SCP",
        [(VERIFICATION, [IMPLICIT_VR_LE])],
        user_identity=UserIdentityRQItem(2, 1, b"user", b"secret"),
        extended_negotiation={CT_IMAGE_STORAGE: b"\x01\x00"},
    )
    identity_request, _ = build_request(identity_config)
    info = identity_request.user_information
    assert info is not None
    info.sub_items.append(UnknownItem(0xF0, b"\x00\x01"))
    answer = accept_or_reject(POLICY, request)
    assert isinstance(answer, tuple)
    accept = answer[0]
    minimal_accept = AAssociateAC(
        "FUZZ-SCP",
        "FUZZ-SCU",
        [
            ApplicationContextItem(DICOM_APPLICATION_CONTEXT),
            PresentationContextACItem.create(1, 0, IMPLICIT_VR_LE),
            UserInformationItem.create(MAX_PDU_LENGTH, IMPLEMENTATION_CLASS_UID),
        ],
    )
    commands = seed_commands()
    p_data = PDataTF([PresentationDataValue(1, 0x03, commands[0])])
    store = PDataTF(
        [
            PresentationDataValue(3, 0x01, commands[1][:20]),
            PresentationDataValue(3, 0x03, commands[1][20:]),
            PresentationDataValue(3, 0x02, b"\x08\x00\x60\x00\x02\x00\x00\x00OT"),
        ]
    )
    return [
        request.encode(),
        identity_request.encode(),
        accept.encode(),
        minimal_accept.encode(),
        AAssociateRJ(1, 1, 7).encode(),
        p_data.encode(),
        store.encode(),
        AReleaseRQ().encode(),
        AReleaseRP().encode(),
        AAbort(2, 6).encode(),
    ]


def seed_streams() -> list[bytes]:
    """Whole requestor streams for the acceptor: associate, C-ECHO, C-STORE, release."""
    pdus = seed_pdus()
    request, identity_request, p_data, store, release = (
        pdus[0],
        pdus[1],
        pdus[5],
        pdus[6],
        pdus[7],
    )
    return [
        request + p_data + release,
        request + store + release,
        identity_request + p_data + pdus[9],
        request + p_data + pdus[2],  # an AC where it does not belong
        struct.pack(">BBL", 9, 0, 4) + bytes(4),
    ]


def seeds(target: str) -> list[bytes]:
    """Codec-derived seeds for a target (the DCMTK recordings add to these)."""
    if target == "command":
        return seed_commands()
    if target in ("framer", "acceptor"):
        return [b"\x00" + stream for stream in seed_streams()] + [b"\x00" + p for p in seed_pdus()]
    return seed_pdus()


__all__ = ["TARGETS", "DicomWireError", "seeds"]
