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
- :func:`dimse` — the production sans-I/O
  :class:`~dicomwire.dimse.dispatcher.DimseDispatcher` of an acceptor (PS3.7 §7.5,
  Annex D.3.3.3) fed the P-DATA-TF PDUs the bytes frame to, driven by :class:`DimseShell`
  (what ``DimseSession`` does, without asyncio): only ``DimseProtocolError`` (and the
  framer's ``PDUError``); invariants: neither window is ever exceeded, every response
  answers its request's Message ID, local Message IDs are unique and never 0, and every
  request is answered or failed at the end.
- :func:`acceptor` — the whole acceptor: the production
  :class:`~dicomwire.ul.session.AssociationSession` (the class the asyncio adapter drives)
  with an :class:`~dicomwire.ul.negotiation.AcceptorPolicy`, fed the bytes in chunks; it
  answers the A-ASSOCIATE-RQ, release collisions and Sta12 itself; what the association
  delivers goes into a :class:`DimseShell` over the negotiated association, whose
  responses go back through the session (an abort on a DIMSE violation, as the node
  does); the peer's release is answered once every request is: never an exception, and
  it ends in Sta1 after the transport closes.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from pathlib import Path

from dicomwire import IMPLEMENTATION_CLASS_UID
from dicomwire.dimse.commands import (
    CommandError,
    Tag,
    decode_command,
    encode_command,
    validate_command,
)
from dicomwire.dimse.dispatcher import (
    CancelRequested,
    DataSetChunk,
    DimseDispatcher,
    MessageReceived,
    ReceivedMessage,
    RequestReceived,
    Response,
    ResponseReceived,
)
from dicomwire.dimse.messages import DimseProtocolError
from dicomwire.dimse.primitives import CCancelRQ, CEchoRQ, CStoreRQ
from dicomwire.dimse.status import DUPLICATE_INVOCATION
from dicomwire.dimse.streams import DataSetSink
from dicomwire.errors import DicomWireError, LocalProtocolError
from dicomwire.ul.framer import PDUFramer
from dicomwire.ul.fsm import State
from dicomwire.ul.machine import PDataIndication, SendPDU
from dicomwire.ul.negotiation import (
    DEFAULT_TRANSFER_SYNTAXES,
    AcceptorPolicy,
    NegotiatedAssociation,
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
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"  # what the recorded storescu sends
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
        SECONDARY_CAPTURE_STORAGE: DEFAULT_TRANSFER_SYNTAXES,
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


class DimseShell:
    """What :class:`~dicomwire.dimse.session.DimseSession` does with the dispatcher, without
    asyncio: data set chunks to their sinks, whole messages routed, requests begun and
    answered (at once, or held as a slow handler would and answered later), C-CANCEL
    answered, local C-ECHO operations invoked. Every step checks the dispatcher's promises.
    """

    def __init__(self, negotiated: NegotiatedAssociation, *, answer_late: bool) -> None:
        self.dispatcher: DimseDispatcher[int, ReceivedMessage] = DimseDispatcher(
            negotiated, lambda message, context: message
        )
        self.answer_late = answer_late
        self.held: list[ReceivedMessage] = []  # requests whose handler "runs"
        self.outbox: list[PDataTF] = []  # P-DATA-TF PDUs to send, in order
        self.invoked: set[int] = set()  # Message IDs of our operations not yet answered
        echo = next(
            (c for c in negotiated.accepted_contexts if c.abstract_syntax == VERIFICATION),
            None,
        )
        self._echo_context = echo.context_id if echo is not None else None

    def invoke_echoes(self, count: int) -> None:
        """Invoke up to ``count`` C-ECHO operations; a full window refuses the rest."""
        dispatcher = self.dispatcher
        if self._echo_context is None:
            return
        for _ in range(count):
            full = dispatcher.window_full
            try:
                message_id, _, pdus = dispatcher.invoke(
                    self._echo_context, CEchoRQ().to_command(), 0
                )
            except LocalProtocolError:
                assert full, "invoke refused with the window not full"
                return
            assert not full, "invoke accepted beyond the window"
            assert 1 <= message_id <= 0xFFFF and message_id not in self.invoked
            dispatcher.outstanding[message_id] = message_id  # the operation is its ID
            self.invoked.add(message_id)
            self.outbox.extend(pdus)
        self._check()

    def receive(self, pdu: PDataTF) -> None:
        """One received P-DATA-TF; ``DimseProtocolError`` escapes (the shell aborts)."""
        for event in self.dispatcher.receive(pdu):
            if isinstance(event, DataSetChunk):
                assert event.sink.write(event.data) is None
                continue
            assert isinstance(event, MessageReceived)
            if event.sink is not None:
                event.message.dataset = _close(event.sink)
            self._route(event.message)
        self._check()

    def _route(self, message: ReceivedMessage) -> None:
        dispatcher = self.dispatcher
        was_outstanding = message.message_id in dispatcher.outstanding
        routed = dispatcher.route(message)
        if isinstance(routed, ResponseReceived):
            assert was_outstanding and routed.operation == message.message_id
            if routed.final:
                assert message.message_id not in dispatcher.outstanding
                self.invoked.discard(message.message_id)
        elif message.command_field & 0x8000:
            assert routed is None and not was_outstanding  # a response to nothing: ignored
        elif isinstance(routed, RequestReceived):
            self._start(routed.request)
        elif isinstance(routed, CancelRequested):
            request = routed.request
            assert request.message_id == message.message_id
            if request in self.held:  # the handler stops: it answers now
                self.held.remove(request)
                self._answer(request)

    def _start(self, request: ReceivedMessage) -> None:
        dispatcher = self.dispatcher
        assert dispatcher.performing <= dispatcher.perform_window
        if not dispatcher.begin(request.message_id, request):
            self._respond(request, Response(DUPLICATE_INVOCATION))
            self._finished()
        elif self.answer_late:
            self.held.append(request)
        else:
            self._answer(request)

    def _answer(self, request: ReceivedMessage) -> None:
        self.dispatcher.end(request.message_id, request)
        assert request.message_id not in self.dispatcher.running
        self._respond(request, Response(0))
        self._finished()

    def _respond(self, request: ReceivedMessage, response: Response) -> None:
        dispatcher = self.dispatcher
        command, dataset = dispatcher.response_command(request, response)
        assert dataset is None  # the shell's handlers answer with a status only
        assert command[Tag.MessageIDBeingRespondedTo] == request.message_id
        assert command[Tag.CommandField] == request.command_field | 0x8000
        pdus = dispatcher.message_pdus(request.context_id, command, None)
        limit = dispatcher.negotiated.remote_max_pdu_length
        for pdu in pdus:
            assert not limit or len(pdu.encode()) - 6 <= limit
        self.outbox.extend(pdus)

    def _finished(self) -> None:
        following = self.dispatcher.finish()
        if following is not None:
            self._start(following)

    def answer_all(self) -> None:
        """Every running handler returns (before the release response is sent)."""
        while self.held:
            self._answer(self.held.pop(0))
        self._check()

    def end(self) -> None:
        """The association ended: what is outstanding fails, nothing is left behind."""
        failed = self.dispatcher.fail_all()
        assert set(failed) == self.invoked, (failed, self.invoked)
        assert not self.dispatcher.outstanding and not self.dispatcher.running
        self.held.clear()

    def _check(self) -> None:
        dispatcher = self.dispatcher
        assert len(dispatcher.outstanding) <= dispatcher.invoke_window
        assert set(dispatcher.outstanding) == self.invoked
        assert 0 <= dispatcher.performing <= dispatcher.perform_window
        assert len(self.held) <= dispatcher.performing
        assert sorted(dispatcher.running) == sorted(r.message_id for r in self.held)


def _close(sink: DataSetSink) -> object:
    """Run a sink's close() coroutine: the in-memory sinks used here never suspend."""
    closer = sink.close()
    try:
        closer.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("an in-memory sink suspended")


def _negotiated_for(maximum_invoked: int, maximum_performed: int) -> NegotiatedAssociation:
    config = RequestorConfig(
        "FUZZ-SCU",
        "FUZZ-SCP",
        [(VERIFICATION, [IMPLICIT_VR_LE]), (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE, IMPLICIT_VR_LE])],
        maximum_invoked=maximum_invoked,
        maximum_performed=maximum_performed,
        max_pdu_length=1024,
    )
    answer = accept_or_reject(POLICY, build_request(config)[0])
    assert isinstance(answer, tuple)
    return answer[1]


#: The acceptor's negotiated associations the DIMSE target picks from: windows 1/1, 2/3,
#: 4/4 and unlimited (0/0, bounded by the dispatcher).
NEGOTIATED = [_negotiated_for(*window) for window in ((1, 1), (2, 3), (4, 4), (0, 0))]


def dimse(data: bytes) -> None:
    """The acceptor's DimseDispatcher fed P-DATA-TF PDUs (see the module docstring).

    The first byte chooses: bits 0-1 the negotiated windows, bits 2-4 how many C-ECHO
    operations we invoke first, bit 5 whether handlers answer late (after the next PDU).
    """
    if not data:
        return
    flags, stream = data[0], data[1:]
    shell = DimseShell(NEGOTIATED[flags & 0x03], answer_late=bool(flags & 0x20))
    shell.invoke_echoes((flags >> 2) & 0x07)
    try:
        pdus = PDUFramer(MAX_PDU_LENGTH, MAX_CONTROL_PDU_LENGTH).feed(stream)
    except PDUError:
        pdus = []
    try:
        for pdu in pdus:
            if isinstance(pdu, PDataTF):
                shell.receive(pdu)
                if not shell.answer_late:
                    shell.answer_all()
        shell.answer_all()
    except DimseProtocolError:
        pass  # the DIMSE session aborts the association
    for pdu in shell.outbox:
        assert isinstance(decode(pdu.encode()), PDataTF)
    shell.end()


def acceptor(data: bytes) -> None:
    """The acceptor's sans-I/O session, with the node's kind of policy, fed the bytes.

    What it delivers goes into a :class:`DimseShell`; bit 6 of the first byte expires
    ARTIM in Sta13, bit 5 has handlers answer late (only at the peer's release).
    """
    sizes, stream = _split(data)
    session = AssociationSession(
        requestor=False, policy=POLICY, max_control_pdu_length=MAX_CONTROL_PDU_LENGTH
    )
    expire_artim = bool(sizes) and bool(sizes[0] & 0x40)
    driver = _AcceptorDriver(session, answer_late=bool(sizes) and bool(sizes[0] & 0x20))
    pending = list(session.transport_connected(("127.0.0.1", 104)))
    chunks = list(_chunks(stream, sizes))
    while True:
        while pending:
            pending.extend(driver.carry_out(pending.pop(0)))
        if expire_artim and session.artim_running and session.state is State.STA13:
            pending.extend(session.artim_expired())
            continue
        if not chunks or session.state is State.STA1:
            break
        pending.extend(session.receive_data(chunks.pop(0)))
    for event in session.transport_closed():
        driver.carry_out(event)
    assert session.state is State.STA1, session.state
    if driver.shell is not None:
        driver.shell.end()


class _AcceptorDriver:
    """What the asyncio adapter and the DIMSE session do with the session's events."""

    def __init__(self, session: AssociationSession, *, answer_late: bool) -> None:
        self.session = session
        self.answer_late = answer_late
        self.shell: DimseShell | None = None

    def carry_out(self, event: SessionEvent) -> list[SessionEvent]:
        """Act on one event; the events of the answer."""
        session = self.session
        if isinstance(event, SendPDU):
            encoded = event.pdu.encode()
            assert decode(encoded) is not None
            return []
        if isinstance(event, PDataIndication):
            shell = self.shell
            if shell is None or session.error is not None:
                return []  # after an abort receive() raises: nothing more reaches DIMSE
            try:
                shell.receive(event.pdu)
                if not self.answer_late:
                    shell.answer_all()
            except DimseProtocolError:
                return session.abort()  # the DIMSE session's answer to a violation: A-ABORT
            return self._flush()
        if isinstance(event, ReleaseRequested):
            assert session.release_requested
            events: list[SessionEvent] = []
            if self.shell is not None:  # running handlers finish, then the release answer
                self.shell.answer_all()
                events = self._flush()
            return events + session.release_response()
        if isinstance(event, Established):
            assert session.negotiated is event.negotiated
            self.shell = DimseShell(event.negotiated, answer_late=self.answer_late)
        elif isinstance(event, Rejected):
            assert event.local and session.error is None  # we rejected: nothing went wrong
        elif isinstance(event, Aborted):
            assert session.error is event.error
        return []

    def _flush(self) -> list[SessionEvent]:
        """Send the shell's P-DATA-TF PDUs while the session may (Sta6; Sta8 is AR-7)."""
        assert self.shell is not None
        events: list[SessionEvent] = []
        outbox, self.shell.outbox = self.shell.outbox, []
        for pdu in outbox:
            if self.session.state not in (State.STA6, State.STA8):
                break  # the adapter refuses to send once the association is gone
            events.extend(self.session.send_data(pdu))
        return events


TARGETS = {
    "pdu": pdu_decode,
    "framer": framer,
    "command": command_decode,
    "negotiation": negotiation,
    "dimse": dimse,
    "acceptor": acceptor,
}


# --------------------------------------------------------------------------- seeds


def seed_commands() -> list[bytes]:
    """Command sets of the messages the node handles, built from the typed primitives."""
    echo = CEchoRQ(VERIFICATION, message_id=1)
    store = CStoreRQ(CT_IMAGE_STORAGE, "1.2.3.4.5.6.7", message_id=7, dataset=b"")
    response = echo.response(0)
    return [encode_command(message.to_command()) for message in (echo, store, response)]


def seed_dimse() -> list[bytes]:
    """P-DATA-TF streams for the DIMSE target: requests, a data set, responses, C-CANCEL."""
    echo, store, response = seed_commands()
    cancel = encode_command(CCancelRQ(message_id=7).to_command())
    echo_pdu = PDataTF([PresentationDataValue(1, 0x03, echo)]).encode()
    store_pdus = PDataTF(
        [
            PresentationDataValue(3, 0x01, store[:20]),
            PresentationDataValue(3, 0x03, store[20:]),
            PresentationDataValue(3, 0x02, b"\x08\x00\x60\x00\x02\x00\x00\x00OT"),
        ]
    ).encode()
    cancel_pdu = PDataTF([PresentationDataValue(3, 0x03, cancel)]).encode()
    response_pdu = PDataTF([PresentationDataValue(1, 0x03, response)]).encode()
    return [
        b"\x00" + echo_pdu,
        b"\x01" + echo_pdu + echo_pdu,  # a duplicate invocation
        b"\x21" + store_pdus + cancel_pdu + echo_pdu,  # answered late: cancel finds it
        b"\x04" + response_pdu,  # one C-ECHO invoked, its response
        b"\x2c" + echo_pdu * 3 + response_pdu + store_pdus,
    ]


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


def acceptor_inputs(stream: bytes) -> list[bytes]:
    """Inputs of the acceptor target for a requestor's stream, in three chunkings.

    In one piece every PDU after the A-ASSOCIATE-RQ is read in Sta3 (as when a peer
    pipelines them); in pieces of 61 or 96 bytes the session answers first and the rest
    reaches DIMSE (61: handlers answer at once; 96 = 0x60 sets both flag bits: ARTIM is
    expired in Sta13 and handlers answer late).
    """
    return [b"\x00" + stream, b"\x01\x3d" + stream, b"\x01\x60" + stream]


#: DCMTK sessions recorded by ``seed_corpus.py --record`` (echoscu, storescu to storescp).
RECORDED = Path(__file__).resolve().parent / "recorded"


def recorded_sessions() -> list[tuple[bytes, bytes]]:
    """The kept DCMTK sessions: (requestor's bytes, acceptor's bytes) each."""
    return [
        (
            client.read_bytes(),
            client.with_name(client.name.replace("client", "server")).read_bytes(),
        )
        for client in sorted(RECORDED.glob("*-client.bin"))
    ]


def split_pdus(stream: bytes) -> list[bytes]:
    """Exact PDU slices of a stream, by their headers only."""
    pdus, position = [], 0
    while position + 6 <= len(stream):
        (length,) = struct.unpack_from(">L", stream, position + 2)
        pdus.append(stream[position : position + 6 + length])
        position += 6 + length
    return pdus


def commands_of(pdus: list[bytes]) -> list[bytes]:
    """Command sets reassembled from the command PDVs of P-DATA-TF PDUs."""
    found, current = [], bytearray()
    for pdu in pdus:
        if pdu[0] != 0x04:
            continue
        position = 6
        while position + 6 <= len(pdu):
            length, _, control = struct.unpack_from(">LBB", pdu, position)
            value = pdu[position + 6 : position + 4 + length]
            position += 4 + length
            if control & 0x01:
                current += value
                if control & 0x02:
                    found.append(bytes(current))
                    current = bytearray()
    return found


def recorded_seeds(target: str) -> list[bytes]:
    """Seeds for a target cut from the DCMTK recordings (PS3.8 §9.3.1 headers, Annex E)."""
    sessions = recorded_sessions()
    pdus = [pdu for client, server in sessions for pdu in split_pdus(client) + split_pdus(server)]
    if target in ("pdu", "negotiation"):
        return pdus
    if target == "command":
        return commands_of(pdus)
    if target == "framer":
        return [b"\x00" + stream for session in sessions for stream in session]
    if target == "acceptor":
        return [x for client, _ in sessions for x in acceptor_inputs(client)]
    if target == "dimse":  # the requestor's P-DATA-TF PDUs, on an acceptor's dispatcher
        streams = [
            b"".join(p for p in split_pdus(client) if p[0] == 0x04) for client, _ in sessions
        ]
        return [flags + stream for stream in streams if stream for flags in (b"\x00", b"\x24")]
    raise KeyError(target)


def seeds(target: str) -> list[bytes]:
    """Seeds for a target: derived from the codec, then cut from the DCMTK recordings."""
    return codec_seeds(target) + recorded_seeds(target)


def codec_seeds(target: str) -> list[bytes]:
    """Codec-derived seeds for a target."""
    if target == "command":
        return seed_commands()
    if target == "dimse":
        return seed_dimse()
    if target == "acceptor":
        return [x for stream in seed_streams() for x in acceptor_inputs(stream)] + [
            b"\x00" + p for p in seed_pdus()
        ]
    if target == "framer":
        return [b"\x00" + stream for stream in seed_streams()] + [b"\x00" + p for p in seed_pdus()]
    return seed_pdus()


__all__ = ["TARGETS", "DicomWireError", "recorded_sessions", "seeds"]
