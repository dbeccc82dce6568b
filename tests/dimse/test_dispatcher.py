"""The sans-I/O DIMSE dispatcher driven with PDUs alone (PS3.7 §7.5, Annex D.3.3.3, §9.3).

Two dispatchers face each other with no socket and no event loop: what one returns to
send is fed to the other. Message IDs, both windows, response matching, C-CANCEL routing,
duplicate invocations and command set violations are checked deterministically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from dicomwire.dimse.commands import Tag, decode_command, encode_command
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
from dicomwire.dimse.primitives import (
    CCancelRQ,
    CEchoRQ,
    CEchoRSP,
    CFindRQ,
    CFindRSP,
    CStoreRQ,
    CStoreRSP,
)
from dicomwire.dimse.status import DUPLICATE_INVOCATION, PENDING, SUCCESS
from dicomwire.dimse.streams import DataSetSink, DiscardSink
from dicomwire.errors import CommandError, DimseProtocolError, LocalProtocolError
from dicomwire.ul.negotiation import NegotiatedAssociation, PresentationContext
from dicomwire.ul.pdu import PDataTF, PresentationDataValue, decode

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT = "1.2.840.10008.1.2"
DISCARD = "1.2.999.1"  # the instance UID whose data set goes to a DiscardSink


def _negotiated(requestor: bool, invoked: int = 1, performed: int = 1) -> NegotiatedAssociation:
    contexts = {
        1: PresentationContext(1, VERIFICATION, [IMPLICIT], 0, IMPLICIT),
        3: PresentationContext(3, CT_IMAGE, [IMPLICIT], 0, IMPLICIT),
        5: PresentationContext(5, FIND, [IMPLICIT], 0, IMPLICIT),
        7: PresentationContext(7, FIND, [IMPLICIT], 3, None),  # not accepted
    }
    return NegotiatedAssociation(
        "LOCAL",
        "REMOTE",
        requestor,
        contexts,
        remote_max_pdu_length=1024,
        local_max_pdu_length=1024,
        maximum_invoked=invoked,
        maximum_performed=performed,
    )


@dataclass
class Side:
    """One dispatcher and what it handed to its shell."""

    dispatcher: DimseDispatcher[str, ReceivedMessage]
    routed: list[object] = field(default_factory=list)
    sinks: list[DataSetSink] = field(default_factory=list)


def _side(requestor: bool, invoked: int = 1, performed: int = 1) -> Side:
    side: Side

    def sink_for(message: ReceivedMessage, context: PresentationContext) -> DataSetSink | None:
        if message.command_field == 0x0001 and message.sop_instance_uid == DISCARD:
            sink = DiscardSink()
            side.sinks.append(sink)
            return sink
        return None

    side = Side(
        DimseDispatcher(_negotiated(requestor, invoked, performed), _make_request, sink_for)
    )
    return side


def _make_request(message: ReceivedMessage, context: PresentationContext) -> ReceivedMessage:
    return message


def _reencode(pdus: list[PDataTF]) -> list[PDataTF]:
    """PDUs as they would arrive: encoded, then decoded from bytes."""
    result = []
    for pdu in pdus:
        decoded = decode(pdu.encode())
        assert isinstance(decoded, PDataTF)
        result.append(decoded)
    return result


def _feed(side: Side, pdus: list[PDataTF]) -> list[object]:
    routed: list[object] = []
    for pdu in _reencode(pdus):
        for event in side.dispatcher.receive(pdu):
            if isinstance(event, DataSetChunk):
                event.sink.write(event.data)
                continue
            assert isinstance(event, MessageReceived)
            if event.sink is not None:
                closer = event.sink.close()
                try:
                    closer.send(None)
                except StopIteration as done:  # the sinks here never really await
                    event.message.dataset = done.value
            result = side.dispatcher.route(event.message)
            if result is not None:
                routed.append(result)
    side.routed += routed
    return routed


def _echo(side: Side, token: str = "op") -> tuple[int, list[PDataTF]]:
    message_id, _, pdus = side.dispatcher.invoke(1, CEchoRQ().to_command(), token)
    return message_id, pdus


def _answer(performer: Side, request: ReceivedMessage, status: int = 0) -> list[PDataTF]:
    command, dataset = performer.dispatcher.response_command(request, Response(status))
    assert dataset is None
    return performer.dispatcher.message_pdus(request.context_id, command, None)


def test_a_request_and_its_response_cross_between_two_dispatchers() -> None:
    scu, scp = _side(True), _side(False)
    message_id, pdus = _echo(scu)
    assert message_id == 1 and scu.dispatcher.outstanding == {1: "op"}
    (routed,) = _feed(scp, pdus)
    assert isinstance(routed, RequestReceived)
    request = routed.request
    assert request.primitive == CEchoRQ(message_id=1)
    (answer,) = _feed(scu, _answer(scp, request))
    assert isinstance(answer, ResponseReceived)
    assert answer.operation == "op" and answer.final and answer.message.status == SUCCESS
    assert scu.dispatcher.outstanding == {}


def test_the_invoked_window_fills_and_frees() -> None:
    scu, scp = _side(True, invoked=2, performed=2), _side(False, invoked=2, performed=2)
    first, second = _echo(scu, "a"), _echo(scu, "b")
    assert scu.dispatcher.window_full
    with pytest.raises(LocalProtocolError, match="window"):
        _echo(scu, "c")
    requests = [r.request for r in _feed(scp, first[1] + second[1])]  # type: ignore[attr-defined]
    _feed(scu, _answer(scp, requests[1]))
    assert not scu.dispatcher.window_full and list(scu.dispatcher.outstanding) == [1]
    assert _echo(scu, "c")[0] == 3


def test_an_unlimited_window_is_bounded() -> None:
    scu = _side(True, invoked=0, performed=0)
    assert (scu.dispatcher.invoke_window, scu.dispatcher.perform_window) == (1024, 64)


def test_the_acceptor_reads_the_windows_from_the_other_side() -> None:
    scp = _side(False, invoked=8, performed=2)
    assert (scp.dispatcher.invoke_window, scp.dispatcher.perform_window) == (2, 8)


def test_message_ids_wrap_past_65535_and_skip_outstanding_ones() -> None:
    scu = _side(True, invoked=10)
    dispatcher = scu.dispatcher
    dispatcher._next_id = 65534
    ids = [_echo(scu, f"op{n}")[0] for n in range(3)]
    assert ids == [65534, 65535, 1]  # never 0
    dispatcher.forget(65535)
    # 2 and 3 next; then 65534 and 1 are still outstanding and skipped
    assert [_echo(scu)[0], _echo(scu)[0]] == [2, 3]
    dispatcher._next_id = 65534
    assert _echo(scu)[0] == 65535
    assert _echo(scu)[0] == 4


def test_pending_responses_keep_the_operation_open() -> None:
    scu, scp = _side(True), _side(False)
    _, _, pdus = scu.dispatcher.invoke(
        5, CFindRQ(FIND).to_command(), "find", b"\x10\x00\x20\x00\x00\x00\x00\x00"
    )
    (routed,) = _feed(scp, pdus)
    request = routed.request  # type: ignore[attr-defined]
    assert request.dataset == b"\x10\x00\x20\x00\x00\x00\x00\x00"
    match = request.primitive.response(PENDING, b"\x10\x00\x20\x00\x02\x00\x00\x00X ")
    command, dataset = scp.dispatcher.response_command(request, match)
    events = _feed(scu, scp.dispatcher.message_pdus(5, command, dataset))  # type: ignore[arg-type]
    assert [(e.final, e.message.dataset) for e in events] == [  # type: ignore[attr-defined]
        (False, b"\x10\x00\x20\x00\x02\x00\x00\x00X ")
    ]
    assert scu.dispatcher.outstanding == {1: "find"}
    final = _feed(scu, _answer(scp, request))
    assert isinstance(final[0], ResponseReceived) and final[0].final
    assert isinstance(final[0].message.primitive, CFindRSP)
    assert scu.dispatcher.outstanding == {}


def test_a_response_to_nothing_outstanding_is_logged_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scu = _side(True)
    stray = CStoreRSP(SUCCESS, CT_IMAGE, "1.2.3", message_id=42).to_command()
    with caplog.at_level(logging.WARNING, "dicomwire.dimse"):
        assert _feed(scu, scu.dispatcher.message_pdus(3, stray, None)) == []
    assert "message 42, which is not outstanding" in caplog.text
    # the dispatcher goes on: a real exchange still works
    assert _echo(scu)[0] == 1


def test_cancel_is_routed_to_the_running_operation() -> None:
    scu, scp = _side(True, invoked=2, performed=2), _side(False, invoked=2, performed=2)
    _, _, find = scu.dispatcher.invoke(5, CFindRQ(FIND).to_command(), "find", b"")
    _, echo = _echo(scu)
    first, _ = _feed(scp, find + echo)
    request = first.request  # type: ignore[attr-defined]
    assert scp.dispatcher.begin(request.message_id, request)
    (cancel,) = _feed(scp, scu.dispatcher.cancel(5, 1))
    assert isinstance(cancel, CancelRequested) and cancel.request is request
    # a cancel for an operation that is not outstanding sends nothing
    assert scu.dispatcher.cancel(5, 99) == []
    # a cancel naming nothing running is ignored
    stray = CCancelRQ(message_id=77).to_command()
    assert _feed(scp, scp.dispatcher.message_pdus(5, stray, None)) == []


def test_requests_beyond_the_performed_window_wait_their_turn() -> None:
    scu, scp = _side(True, invoked=5, performed=1), _side(False, invoked=1, performed=5)
    pdus = [pdu for _ in range(3) for pdu in _echo(scu)[1]]
    routed = _feed(scp, pdus)
    assert len(routed) == 1 and scp.dispatcher.performing == 1  # two wait
    # a cancel reaches a waiting request too
    (cancel,) = _feed(scp, scu.dispatcher.cancel(1, 3))
    assert isinstance(cancel, CancelRequested) and cancel.request.message_id == 3
    second = scp.dispatcher.finish()
    assert second is not None and second.message_id == 2
    third = scp.dispatcher.finish()
    assert third is not None and third.message_id == 3
    assert scp.dispatcher.finish() is None and scp.dispatcher.performing == 0


def test_a_peer_far_beyond_its_window_is_a_protocol_violation() -> None:
    scp = _side(False, invoked=1, performed=1)
    scu = _side(True, invoked=1000, performed=1)
    limit = scp.dispatcher.perform_limit
    assert limit == 68
    with pytest.raises(DimseProtocolError, match="far beyond the negotiated window"):
        for _ in range(limit + 1):
            _feed(scp, _echo(scu)[1])


def test_a_duplicate_message_id_is_answered_0210() -> None:
    scu, scp = _side(True, invoked=2, performed=2), _side(False, invoked=2, performed=2)
    _, pdus = _echo(scu)
    (first,) = _feed(scp, pdus)
    assert scp.dispatcher.begin(1, first.request)  # type: ignore[attr-defined]
    (again,) = _feed(scp, pdus)  # the same Message ID while its handler runs
    duplicate = again.request  # type: ignore[attr-defined]
    assert not scp.dispatcher.begin(1, duplicate)
    command, _ = scp.dispatcher.response_command(duplicate, Response(DUPLICATE_INVOCATION))
    assert command[Tag.Status] == 0x0210 and command[Tag.MessageIDBeingRespondedTo] == 1
    # once the first handler returned, the ID may be used again
    scp.dispatcher.end(1, first.request)  # type: ignore[attr-defined]
    assert scp.dispatcher.begin(1, duplicate)


def test_data_sets_go_to_the_sink_chosen_for_the_request() -> None:
    scu, scp = _side(True), _side(False)
    payload = bytes(range(256)) * 10  # several fragments of a 1 KiB PDU
    store = CStoreRQ(CT_IMAGE, DISCARD, dataset=payload)
    _, _, pdus = scu.dispatcher.invoke(3, store.to_command(), "store", payload)
    assert len(pdus) > 2
    (routed,) = _feed(scp, pdus)
    assert routed.request.dataset == len(payload)  # type: ignore[attr-defined]
    assert scp.sinks and scp.sinks[0].length == len(payload)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("command", "match"),
    [
        ({Tag.CommandField: 0x0030, Tag.MessageID: 1, Tag.CommandDataSetType: 0x0101}, "lacks"),
        ({Tag.CommandField: 0x0042, Tag.MessageID: 1, Tag.CommandDataSetType: 0x0101}, "unknown"),
        (
            {
                Tag.CommandField: 0x0030,
                Tag.MessageID: 1,
                Tag.CommandDataSetType: 0x0000,
                Tag.AffectedSOPClassUID: VERIFICATION,
            },
            "carries no data set",
        ),
    ],
)
def test_invalid_received_commands_are_protocol_errors(
    command: dict[int, object], match: str
) -> None:
    scp = _side(False)
    pdu = PDataTF([PresentationDataValue(1, 0x03, encode_command(command))])  # type: ignore[arg-type]
    with pytest.raises(DimseProtocolError, match=match):
        _feed(scp, [pdu])


def test_a_message_on_a_context_not_accepted_is_a_protocol_error() -> None:
    scp = _side(False)
    pdu = PDataTF(
        [PresentationDataValue(7, 0x03, encode_command(CEchoRQ(message_id=1).to_command()))]
    )
    with pytest.raises(DimseProtocolError, match="not accepted"):
        _feed(scp, [pdu])


def test_undecodable_and_interleaved_messages_are_protocol_errors() -> None:
    scp = _side(False)
    with pytest.raises(DimseProtocolError, match="undecodable"):
        _feed(scp, [PDataTF([PresentationDataValue(1, 0x03, b"\x00\x00\x00")])])
    scp = _side(False)
    with pytest.raises(DimseProtocolError, match="no command before it"):
        _feed(scp, [PDataTF([PresentationDataValue(3, 0x02, b"\x00\x00")])])


def test_invalid_local_commands_are_refused_before_sending() -> None:
    scu = _side(True)
    with pytest.raises(CommandError):
        scu.dispatcher.invoke(1, {Tag.CommandField: 0x0030}, "echo")  # no SOP class
    assert scu.dispatcher.outstanding == {}


def test_fail_all_returns_every_outstanding_operation() -> None:
    scu = _side(True, invoked=3)
    for name in "abc":
        _echo(scu, name)
    assert sorted(scu.dispatcher.fail_all()) == ["a", "b", "c"]
    assert scu.dispatcher.outstanding == {}


def test_the_wire_command_of_a_response_primitive_uses_the_request_message_id() -> None:
    scp = _side(False)
    request = ReceivedMessage(
        1, IMPLICIT, decode_command(encode_command(CEchoRQ(message_id=9).to_command()))
    )
    command, _ = scp.dispatcher.response_command(request, request.primitive.response())  # type: ignore[attr-defined]
    assert command[Tag.MessageIDBeingRespondedTo] == 9
    command, _ = scp.dispatcher.response_command(request, CEchoRSP(SUCCESS))
    assert command[Tag.MessageIDBeingRespondedTo] == 9
