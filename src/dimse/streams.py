"""Where data sets come from and go to, without holding them whole (PS3.7 §6.3.1 streams).

A *sink* takes a data set's fragments as they arrive: :class:`BytesSink` (memory),
:class:`FileSink` (straight to a file), :class:`DiscardSink` (count and drop), or any object
with the same three methods (e.g. one that forwards to another association). A *source*
gives a data set to send in chunks: :class:`FileSource`, or any async iterator of bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = [
    "BytesSink",
    "DataSetSink",
    "DiscardSink",
    "FileSink",
    "FileSource",
]


@runtime_checkable
class DataSetSink(Protocol):
    """Receives one data set fragment by fragment."""

    def write(self, data: memoryview) -> Awaitable[None] | None:
        """Take the next fragment; return an awaitable to slow the sender down."""

    async def close(self) -> object:
        """The data set is complete; return what the handler gets (bytes, a path...)."""

    async def abort(self) -> None:
        """The data set will never be complete (association ended): clean up."""


class BytesSink:
    """Collect the data set in memory; :meth:`close` returns the bytes."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: memoryview) -> None:
        self._buffer += data

    async def close(self) -> bytes:
        return bytes(self._buffer)

    async def abort(self) -> None:
        self._buffer = bytearray()


class DiscardSink:
    """Count the bytes and drop them (benchmarks, ``--discard``)."""

    __slots__ = ("length",)

    def __init__(self) -> None:
        self.length = 0

    def write(self, data: memoryview) -> None:
        self.length += len(data)

    async def close(self) -> int:
        return self.length

    async def abort(self) -> None:
        return None


class FileSink:
    """Write the data set to ``path`` as it arrives; :meth:`close` returns the path.

    With ``fsync`` the file is flushed to stable storage (in a worker thread) before
    :meth:`close` returns. :meth:`abort` removes the partial file.
    """

    __slots__ = ("_file", "fsync", "length", "path")

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.length = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()/abort()

    def write(self, data: memoryview) -> None:
        self._file.write(data)
        self.length += len(data)

    async def close(self) -> Path:
        try:
            self._file.flush()
            if self.fsync:
                await asyncio.to_thread(os.fsync, self._file.fileno())
        finally:
            self._file.close()
        return self.path

    async def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def pread_range(fd: int, offset: int, length: int) -> bytes:
    """``length`` bytes of ``fd`` from ``offset`` (fewer only where the file ends).

    Usually one ``pread``; a short read, rare on regular files but allowed, is completed.
    """
    data = os.pread(fd, length, offset)
    if len(data) == length:
        return data
    parts = [data]
    done = len(data)
    while done < length:
        part = os.pread(fd, length - done, offset + done)
        if not part:
            break
        parts.append(part)
        done += len(part)
    return b"".join(parts)


class FileSource:
    """Read ``length`` bytes of a file from ``offset`` in chunks (a data set to send)."""

    __slots__ = ("chunk_size", "length", "offset", "path")

    def __init__(
        self,
        path: str | os.PathLike[str],
        offset: int = 0,
        length: int | None = None,
        chunk_size: int = 1 << 20,
    ) -> None:
        self.path = path if isinstance(path, Path) else Path(path)
        self.offset = offset
        self.length = length
        self.chunk_size = chunk_size

    #: Data sets up to this size are read whole and sent in one write with their command.
    SMALL = 4 << 20

    def fits_in_memory(self) -> bool:
        length = self.length
        if length is None:
            length = os.stat(self.path).st_size - self.offset
        return length <= self.SMALL

    def read(self) -> bytes:
        """The whole range at once (for small data sets): one open, one pread, one close."""
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            length = self.length
            if length is None:
                length = max(0, os.fstat(fd).st_size - self.offset)
            return pread_range(fd, self.offset, length)
        finally:
            os.close(fd)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        with open(self.path, "rb") as file:
            file.seek(self.offset)
            remaining = self.length
            while remaining is None or remaining > 0:
                size = self.chunk_size if remaining is None else min(self.chunk_size, remaining)
                chunk = file.read(size)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
