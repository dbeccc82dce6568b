"""DimseSession end to end on loopback: requests, responses, windows, cancel, streaming."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from dicomwire.dimse.commands import CommandField, CommandSet, Tag
from dicomwire.dimse.session import DimseStatusError, Request, Response
from dicomwire.dimse.streams import FileSink, FileSource

from ._support import CT_IMAGE, PATIENT_ROOT_FIND, VERIFICATION, dimse_pair


async def _echo(request: Request) -> int:
    return 0


def _store_command(instance: str) -> CommandSet:
    return {
        Tag.CommandField: CommandField.C_STORE_RQ,
        Tag.AffectedSOPClassUID: CT_IMAGE,
        Tag.AffectedSOPInstanceUID: instance,
        Tag.Priority: 0,
    }


@pytest.mark.parametrize("max_pdu", [4096, 16384, 1 << 20, 0])
@pytest.mark.parametrize("size", [0, 1, 2, 4095, 4096, 16381, 100_001, 3 << 20])
def test_store_bytes_arrive_identical(max_pdu: int, size: int) -> None:
    received: dict[str, bytes] = {}

    async def store(request: Request) -> int:
        assert isinstance(request.message.dataset, bytes)
        received[str(request.message.sop_instance_uid)] = request.message.dataset
        return 0

    payload = os.urandom(size)

    async def run() -> int:
        async with dimse_pair(
            {CommandField.C_STORE_RQ: store},
            max_pdu_length=max_pdu,
            server_max_pdu_length=max_pdu,
        ) as session:
            context = session.find_context(CT_IMAGE)
            operation = await session.request(
                context.context_id, _store_command("1.2.3.4"), payload
            )
            return int((await operation.wait()).status)

    assert asyncio.run(run()) == 0
    assert received["1.2.3.4"] == payload


def test_window_keeps_64_echoes_outstanding() -> None:
    in_flight = 0
    most = 0

    async def slow_echo(request: Request) -> int:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return 0

    async def run() -> list[int]:
        async with dimse_pair({CommandField.C_ECHO_RQ: slow_echo}, window=(64, 64)) as session:
            # the acceptor grants at most 16 by default
            assert session.invoke_window == 16
            context = session.find_context(VERIFICATION)
            command = {
                Tag.CommandField: CommandField.C_ECHO_RQ,
                Tag.AffectedSOPClassUID: VERIFICATION,
            }
            operations = [await session.request(context.context_id, command) for _ in range(64)]
            return [int((await op.wait()).status) for op in operations]

    assert asyncio.run(run()) == [0] * 64
    assert most == 16


def test_handler_exception_becomes_failure_status_and_association_lives() -> None:
    async def broken(request: Request) -> int:
        raise RuntimeError("boom")

    async def refusing(request: Request) -> int:
        raise DimseStatusError(0xA700, "disk full")

    async def run() -> tuple[int, int, str, int]:
        async with dimse_pair(
            {CommandField.C_ECHO_RQ: broken, CommandField.C_STORE_RQ: refusing}
        ) as session:
            echo_context = session.find_context(VERIFICATION).context_id
            command = {
                Tag.CommandField: CommandField.C_ECHO_RQ,
                Tag.AffectedSOPClassUID: VERIFICATION,
            }
            first = await (await session.request(echo_context, command)).wait()
            store = await (
                await session.request(
                    session.find_context(CT_IMAGE).context_id, _store_command("1.2.3"), b"\0\0"
                )
            ).wait()
            again = await (await session.request(echo_context, command)).wait()
            return (
                int(first.status),
                int(store.status),
                str(store.command[Tag.ErrorComment]),
                int(again.status),
            )

    first, store, comment, again = asyncio.run(run())
    assert first == 0x0110
    assert store == 0xA700 and comment == "disk full"
    assert again == 0x0110  # still answering on the same association


def test_cancel_long_find_midstream() -> None:
    sent = 0

    async def find(request: Request) -> Response:
        nonlocal sent
        for index in range(10_000):
            if request.cancelled.is_set():
                return Response(0xFE00)
            await request.send_pending(b"\x10\x00\x10\x00\x04\x00\x00\x00ABCD")
            sent = index + 1
            await asyncio.sleep(0.001)
        return Response(0)

    async def run() -> tuple[int, list[int]]:
        statuses = []
        async with dimse_pair({CommandField.C_FIND_RQ: find}) as session:
            context = session.find_context(PATIENT_ROOT_FIND)
            operation = await session.request(
                context.context_id,
                {
                    Tag.CommandField: CommandField.C_FIND_RQ,
                    Tag.AffectedSOPClassUID: PATIENT_ROOT_FIND,
                    Tag.Priority: 0,
                },
                b"\x10\x00\x10\x00\x00\x00\x00\x00",
            )
            async for response in operation:
                statuses.append(int(response.status))
                if len(statuses) == 5:
                    await operation.cancel()
            return int(operation.final.status if operation.final else -1), statuses

    final, statuses = asyncio.run(run())
    assert final == 0xFE00
    assert statuses[-1] == 0xFE00
    assert all(status == 0xFF00 for status in statuses[:-1])
    assert 5 <= sent < 10_000


def test_n_event_report_reaches_the_scu_handler() -> None:
    events: list[int] = []

    async def report(request: Request) -> int:
        events.append(int(request.command[Tag.EventTypeID]))
        return 0

    async def action(request: Request) -> Response:
        # the SCP answers, then reports an event on the same association
        async def later() -> None:
            operation = await request.session.request(
                request.message.context_id,
                {
                    Tag.CommandField: CommandField.N_EVENT_REPORT_RQ,
                    Tag.AffectedSOPClassUID: "1.2.840.10008.1.20.1",
                    Tag.AffectedSOPInstanceUID: "1.2.840.10008.1.20.1.1",
                    Tag.EventTypeID: 1,
                },
                b"\x08\x00\x50\x00\x00\x00\x00\x00",
            )
            await operation.wait()

        asyncio.get_running_loop().create_task(later())
        return Response(0)

    async def run() -> int:
        async with dimse_pair(
            {CommandField.N_ACTION_RQ: action},
            client_handlers={CommandField.N_EVENT_REPORT_RQ: report},
        ) as session:
            context = session.find_context("1.2.840.10008.1.20.1")
            operation = await session.request(
                context.context_id,
                {
                    Tag.CommandField: CommandField.N_ACTION_RQ,
                    Tag.RequestedSOPClassUID: "1.2.840.10008.1.20.1",
                    Tag.RequestedSOPInstanceUID: "1.2.840.10008.1.20.1.1",
                    Tag.ActionTypeID: 1,
                },
                b"\x08\x00\x50\x00\x00\x00\x00\x00",
            )
            status = int((await operation.wait()).status)
            for _ in range(100):
                if events:
                    break
                await asyncio.sleep(0.01)
            return status

    assert asyncio.run(run()) == 0
    assert events == [1]


def test_stream_file_to_file_sink(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    with open(source, "wb") as file:
        for _ in range(16):
            file.write(os.urandom(1 << 20))
    target = tmp_path / "target.bin"

    async def store(request: Request) -> int:
        assert request.message.dataset == target
        return 0

    async def run() -> int:
        async with dimse_pair(
            {CommandField.C_STORE_RQ: store},
            server_sinks={CommandField.C_STORE_RQ: lambda command, context: FileSink(target)},
            max_pdu_length=16384,
            server_max_pdu_length=16384,
        ) as session:
            context = session.find_context(CT_IMAGE)
            operation = await session.request(
                context.context_id, _store_command("1.2.3"), FileSource(source, chunk_size=50_000)
            )
            return int((await operation.wait()).status)

    assert asyncio.run(run()) == 0
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest


class _SlowSink:
    """A sink whose every write makes the reader wait (backpressure), then checks order."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.waiting = 0
        self.most_waiting = 0

    def write(self, data: memoryview) -> asyncio.Future[None]:
        assert self.waiting == 0, "a fragment was written while the previous one waited"
        self.data += data
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        future = asyncio.get_running_loop().create_future()

        def done() -> None:
            self.waiting -= 1
            future.set_result(None)

        asyncio.get_running_loop().call_later(0.0005, done)
        return future

    async def close(self) -> bytes:
        return bytes(self.data)

    async def abort(self) -> None:
        return None


def test_a_slow_sink_gets_every_fragment_in_order_one_at_a_time() -> None:
    """Fragments reach the sink in order, each waiting for its backpressure."""
    payload = os.urandom(2 << 20)
    sinks: list[_SlowSink] = []

    def make_sink(command: CommandSet, context: object) -> _SlowSink:
        sinks.append(_SlowSink())
        return sinks[-1]

    async def store(request: Request) -> int:
        return 0 if request.message.dataset == payload else 0xA900

    async def run() -> int:
        async with dimse_pair(
            {CommandField.C_STORE_RQ: store},
            server_sinks={CommandField.C_STORE_RQ: make_sink},
            max_pdu_length=16384,
            server_max_pdu_length=16384,
        ) as session:
            context = session.find_context(CT_IMAGE)
            operation = await session.request(context.context_id, _store_command("1.2"), payload)
            return int((await operation.wait()).status)

    assert asyncio.run(run()) == 0
    assert sinks[0].most_waiting == 1


class _FailingSink:
    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: memoryview) -> None:
        self.writes += 1
        if self.writes == 3:
            raise OSError("disk full")

    async def close(self) -> None:
        return None

    async def abort(self) -> None:
        return None


def test_a_sink_that_raises_ends_the_association_instead_of_hanging() -> None:
    async def store(request: Request) -> int:
        return 0

    async def run() -> str:
        async with dimse_pair(
            {CommandField.C_STORE_RQ: store},
            server_sinks={CommandField.C_STORE_RQ: lambda command, context: _FailingSink()},
            max_pdu_length=16384,
            server_max_pdu_length=16384,
        ) as session:
            context = session.find_context(CT_IMAGE)
            operation = await session.request(
                context.context_id, _store_command("1.3"), os.urandom(1 << 20)
            )
            try:
                await asyncio.wait_for(operation.wait(), 10)
            except Exception as exc:  # the association ends: the operation fails with it
                return type(exc).__name__
            return "answered"

    assert asyncio.run(run()) != "answered"


def test_typed_primitives_end_to_end() -> None:
    """send() finds the context; handlers answer with primitives; pending counts are typed."""
    from dicomwire.dimse.primitives import CFindRQ, CFindRSP, CGetRQ, CGetRSP, CStoreRQ, CStoreRSP

    stored: list[tuple[str, bytes]] = []

    async def store(request: Request) -> CStoreRSP:
        primitive = request.primitive
        assert isinstance(primitive, CStoreRQ)
        assert isinstance(request.message.dataset, bytes)
        stored.append((primitive.affected_sop_instance_uid, request.message.dataset))
        return primitive.response(0xB000, error_comment="coerced")

    async def find(request: Request) -> int:
        await request.send_pending(b"\x10\x00\x20\x00\x02\x00\x00\x00X ")
        if request.primitive.dataset == b"":
            await request.send_pending(remaining=1)  # C-FIND-RSP has no such field
        return 0

    async def get(request: Request) -> CGetRSP:
        for done in range(2):
            await request.send_pending(remaining=1 - done, completed=done)
        return request.primitive.response(0, completed=2, failed=0)  # type: ignore[return-value]

    async def run() -> tuple[object, list[object], list[object], object]:
        async with dimse_pair(
            {
                CommandField.C_STORE_RQ: store,
                CommandField.C_FIND_RQ: find,
                CommandField.C_GET_RQ: get,
            }
        ) as session:
            operation = await session.send(CStoreRQ(CT_IMAGE, "1.2.3.9", dataset=b"\x01\x02"))
            answer = (await operation.wait()).primitive
            query = b"\x10\x00\x20\x00\x00\x00\x00\x00"
            find_op = await session.send(CFindRQ(PATIENT_ROOT_FIND, dataset=query))
            found = [response.primitive async for response in find_op]
            context = session.find_context(PATIENT_ROOT_FIND).context_id
            get_op = await session.send(CGetRQ(PATIENT_ROOT_FIND, dataset=query), context)
            progress = [response.primitive async for response in get_op]
            wrong = await (await session.send(CFindRQ(PATIENT_ROOT_FIND, dataset=b""))).wait()
            return answer, found, progress, wrong.primitive

    answer, found, progress, wrong = asyncio.run(run())
    assert stored == [("1.2.3.9", b"\x01\x02")]
    assert isinstance(answer, CStoreRSP)
    assert answer.status == 0xB000 and answer.error_comment == "coerced"
    assert answer.affected_sop_instance_uid == "1.2.3.9"
    assert [type(p) for p in found] == [CFindRSP, CFindRSP]
    assert [int(p.status) for p in found] == [0xFF00, 0]  # type: ignore[attr-defined]
    assert found[0].dataset == b"\x10\x00\x20\x00\x02\x00\x00\x00X "  # type: ignore[attr-defined]
    assert all(isinstance(p, CGetRSP) for p in progress)
    counts = [(p.status, p.remaining, p.completed, p.failed) for p in progress]  # type: ignore[attr-defined]
    assert counts == [(0xFF00, 1, 0, None), (0xFF00, 0, 1, None), (0, None, 2, 0)]
    # an unknown response field is the handler's TypeError: a processing failure
    assert isinstance(wrong, CFindRSP) and wrong.status == 0x0110
    assert wrong.error_comment == "TypeError"
