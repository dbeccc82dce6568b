"""The Storage SCP answers success only for a file that is durable, proven by fault injection.

PS3.4 §B.2.3: success means the SCP has stored the instance; a sender may then delete its
copy. So the file and the directory entry naming it must be on stable storage (fsync of
the file, rename into place, fsync of the directory) before 0000 is sent, and a failure
at any step must be answered A700 (Refused: Out of Resources, PS3.4 Table B.2-1) with an
Error Comment, leaving no file under the storage root: neither a visible one that a
retried C-STORE would find as a duplicate, nor an orphan in ``.incoming``.

The faults are injected process-wide with monkeypatch on what any implementation must
call, not on dicomwire's modules: the file object's ``write`` (and ``os.write``) for files
opened under the root, ``os.fsync``/``os.fdatasync`` (told apart by ``os.fstat``: a
regular file or a directory), ``os.replace``/``os.rename``, and ``os.open`` of a
directory under the root. Each raises ENOSPC or EIO. No root privileges, no tmpfs.
The node is a real :class:`Node`; the sender is :func:`store_files`; the status and
comment are read off the wire (tests/services/_wire_spy.py).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import os
import stat
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydicom import dcmread

from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig, StoreSummary, store_files
from dicomwire.testing.corpus import write_corpus
from dicomwire.ul.association import Timeouts

from ._wire_spy import WireSpy

LOCALHOST = "127.0.0.1"
NODE_AE = "DICOMWIRE"
TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0)
OUT_OF_RESOURCES = 0xA700
T = TypeVar("T")

#: The steps of a commit that can fail, as the fault spies below see them.
STEPS = (
    "write meta",  # the first write of the file: its preamble and file meta
    "write data set",  # a later write: part of the data set is on disk
    "fsync file",
    "rename",
    "open directory",  # to fsync it
    "fsync directory",
)


def run(coroutine: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, 60)

    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def serving(root: Path) -> AsyncIterator[Node]:
    """A node on 127.0.0.1 (port 0) storing under ``root`` with the default fsync (on)."""
    config = NodeConfig(
        ae_titles=[NODE_AE],
        host=LOCALHOST,
        port=0,
        storage=StorageConfig(root=root),
        timeouts=Timeouts(artim=5.0, acse=10.0, dimse=None, network_idle=10.0),
        shutdown_grace=1.0,
    )
    node = Node(config)
    await node.start()
    try:
        yield node
    finally:
        await node.shutdown()


def files_under(root: Path) -> list[Path]:
    """Every regular file under ``root`` (``.incoming`` included; not the node's database
    in ``.dicomwire``, whose rows are checked against the files instead)."""
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and ".dicomwire" not in p.parts)


def under(path: Any, root: Path) -> bool:
    if not isinstance(path, str | bytes | os.PathLike):
        return False
    return Path(os.fsdecode(path)).resolve().is_relative_to(root.resolve())


def fault(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class _FailingFile:
    """A file object whose ``write`` calls fail from the ``fail_at``-th (1-based) on."""

    def __init__(self, handle: Any, spy: FaultSpy) -> None:
        self._handle = handle
        self._spy = spy

    def write(self, data: Any) -> int:
        self._spy.writes += 1
        self._spy.check_write()
        written: int = self._handle.write(data)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _FailingFile:
        self._handle.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.__exit__(*exc)


@dataclass
class FaultSpy:
    """Records fsyncs (kind, inode) into ``events``; raises ``code`` at ``step`` (if any)."""

    root: Path
    events: list[tuple[Any, ...]]
    step: str | None = None
    code: int = errno.ENOSPC
    writes: int = 0
    injected: int = 0

    def check_write(self) -> None:
        if self.step == "write meta" or (self.step == "write data set" and self.writes >= 2):
            self.injected += 1
            raise fault(self.code)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FaultSpy:
        real_open = builtins.open
        real_os_open = os.open
        real_write = os.write
        real_fsync = os.fsync
        real_fdatasync = getattr(os, "fdatasync", None)
        real_replace = os.replace
        real_rename = os.rename
        written_fds: set[int] = set()

        def spy_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_open(file, mode, *args, **kwargs)
            if under(file, self.root) and any(c in mode for c in "wax+"):
                return _FailingFile(handle, self)
            return handle

        def spy_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            directory = under(path, self.root) and Path(os.fsdecode(path)).is_dir()
            if directory and self.step == "open directory":
                self.injected += 1
                raise fault(self.code)
            fd = real_os_open(path, flags, *args, **kwargs)
            # the received file only (the node's audit trail writes under the root too)
            received = under(path, self.root) and ".incoming" in Path(os.fsdecode(path)).parts
            if received and flags & (os.O_WRONLY | os.O_RDWR):
                written_fds.add(fd)
            return fd

        def spy_write(fd: int, data: Any) -> int:
            if fd in written_fds:
                self.writes += 1
                self.check_write()
            return real_write(fd, data)

        real_close = os.close

        def spy_close(fd: int) -> None:
            written_fds.discard(fd)  # its number may be reused for another file
            real_close(fd)

        def syncing(real: Any) -> Any:
            def spy_sync(fd: int) -> None:
                status = os.fstat(fd)
                kind = "directory" if stat.S_ISDIR(status.st_mode) else "file"
                if self.step == f"fsync {kind}":
                    self.injected += 1
                    raise fault(self.code)
                real(fd)
                self.events.append((f"fsync {kind}", status.st_ino))

            return spy_sync

        def renaming(real: Any) -> Any:
            def spy_rename(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
                if self.step == "rename" and under(target, self.root):
                    self.injected += 1
                    raise fault(self.code)
                real(source, target, *args, **kwargs)

            return spy_rename

        monkeypatch.setattr(builtins, "open", spy_open)
        monkeypatch.setattr(os, "open", spy_os_open)
        monkeypatch.setattr(os, "write", spy_write)
        monkeypatch.setattr(os, "close", spy_close)
        monkeypatch.setattr(os, "fsync", syncing(real_fsync))
        if real_fdatasync is not None:
            monkeypatch.setattr(os, "fdatasync", syncing(real_fdatasync))
        monkeypatch.setattr(os, "replace", renaming(real_replace))
        monkeypatch.setattr(os, "rename", renaming(real_rename))
        return self


def send_one(tmp_path: Path, root: Path) -> StoreSummary:
    # 256 x 256 x 16 bits: the data set arrives in several fragments, each its own write
    (source,) = write_corpus(tmp_path / "in", 1, "ct", rows=256, columns=256)

    async def scenario() -> StoreSummary:
        async with serving(root) as node:
            return await store_files(
                LOCALHOST,
                node.port,
                [source],
                calling_ae_title="DURABLESCU",
                called_ae_title=NODE_AE,
                retries=0,
                timeouts=TIMEOUTS,
            )

    return run(scenario())


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
@pytest.mark.parametrize("step", STEPS)
def test_failure_at_each_commit_step_is_a700_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, code: int
) -> None:
    root = tmp_path / "store"
    events: list[tuple[Any, ...]] = []
    faults = FaultSpy(root, events, step, code).install(monkeypatch)
    wire = WireSpy(events).install(monkeypatch)

    summary = send_one(tmp_path, root)
    monkeypatch.undo()

    assert faults.injected >= 1, f"the SCP never reached the {step!r} step"
    (outcome,) = summary.outcomes
    assert outcome.status == OUT_OF_RESOURCES, (step, outcome)
    (response,) = wire.responses
    assert response.status == OUT_OF_RESOURCES
    assert response.error_comment, "A700 without an Error Comment (0000,0902)"
    assert files_under(root) == [], f"left behind after a failed {step!r}"


def test_file_and_directory_are_fsynced_before_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With fsync on (the default): fsync(file), fsync(its directory), then 0000 is sent."""
    root = tmp_path / "store"
    events: list[tuple[Any, ...]] = []
    FaultSpy(root, events).install(monkeypatch)
    WireSpy(events).install(monkeypatch)

    summary = send_one(tmp_path, root)
    monkeypatch.undo()

    (outcome,) = summary.outcomes
    assert outcome.status == 0
    (stored,) = files_under(root)
    assert str(dcmread(stored).SOPInstanceUID) == stored.stem
    names = [e[0] for e in events]
    assert names.count("C-STORE-RSP") == 1
    answered = names.index("C-STORE-RSP")
    before = events[:answered]
    # The inode that was fsync'd is the stored file's (a rename keeps it), and the
    # directory fsync'd after it is the one that now names it.
    file_syncs = [i for i, e in enumerate(before) if e == ("fsync file", stored.stat().st_ino)]
    directory_syncs = [
        i for i, e in enumerate(before) if e == ("fsync directory", stored.parent.stat().st_ino)
    ]
    assert file_syncs, f"the stored file was not fsync'd before 0000 was sent: {events}"
    assert directory_syncs, f"its directory was not fsync'd before 0000 was sent: {events}"
    assert max(directory_syncs) > min(file_syncs), events
    assert events[answered] == ("C-STORE-RSP", 0)
