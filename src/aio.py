"""Small asyncio helpers shared by the layers (no DICOM in here).

:class:`Opening` lets one call be used both ways an asyncio user expects::

    association = await connect(...)            # then release it yourself
    async with connect(...) as association:     # released (or aborted) at the end
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, Generic, TypeVar

__all__ = ["Opening"]

_T = TypeVar("_T")


class Opening(Generic[_T]):
    """An opening coroutine that is also an async context manager closing what it opened.

    ``close(value, exc)`` is awaited when the ``async with`` block ends; ``exc`` is the
    exception that ended it, or None.
    """

    __slots__ = ("_close", "_coroutine", "_value")

    def __init__(
        self,
        coroutine: Coroutine[Any, Any, _T],
        close: Callable[[_T, BaseException | None], Awaitable[None]],
    ) -> None:
        self._coroutine = coroutine
        self._close = close
        self._value: _T | None = None

    def __await__(self) -> Generator[Any, None, _T]:
        return self._coroutine.__await__()

    async def __aenter__(self) -> _T:
        self._value = await self._coroutine
        return self._value

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        value, self._value = self._value, None
        if value is not None:
            await self._close(value, exc)
