"""Requests run eagerly: handlers that never wait finish inside the read loop, the others
go on in a task from where they stopped (dicomwire.dimse.session._resume)."""

from __future__ import annotations

import asyncio

import pytest

from dicomwire.dimse.session import _resume


def test_resume_continues_a_started_coroutine_through_several_waits() -> None:
    seen: list[object] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()

        async def handler() -> None:
            seen.append(await first)
            await asyncio.sleep(0)  # a bare yield to the loop is passed up too
            seen.append(await second)

        coroutine = handler()
        yielded = coroutine.send(None)
        assert yielded is first
        task = loop.create_task(_resume(coroutine, yielded))
        loop.call_soon(first.set_result, "one")
        loop.call_later(0.01, second.set_result, "two")
        await task

    asyncio.run(scenario())
    assert seen == ["one", "two"]


def test_resume_passes_exceptions_and_cancellation_down() -> None:
    outcome: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        failing, hanging = loop.create_future(), loop.create_future()

        async def handler(waited: asyncio.Future[None]) -> None:
            try:
                await waited
            except ValueError:
                outcome.append("ValueError seen")
                raise
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise

        one = handler(failing)
        task_one = loop.create_task(_resume(one, one.send(None)))
        failing.set_exception(ValueError("bad"))
        with pytest.raises(ValueError):
            await task_one

        two = handler(hanging)
        task_two = loop.create_task(_resume(two, two.send(None)))
        await asyncio.sleep(0)
        task_two.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task_two

    asyncio.run(scenario())
    assert outcome == ["ValueError seen", "cancelled"]
