"""The event loop the command-line tools and worker processes run on (PS3.8 §9 TCP/IP mapping).

uvloop when installed (a faster loop for the socket work of every association), else
asyncio's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_event_loop"]

_T = TypeVar("_T")


def run_event_loop(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
