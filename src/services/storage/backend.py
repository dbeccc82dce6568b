"""Where stored instances live: the storage behind an interface (PS3.4 §B.2.3, docs/storage.md).

The storage SCP answers success only once an instance is stored (PS3.4 §B.2.3: the SCP
"shall store" what it accepts), and Storage Commitment (PS3.4 Annex J) and C-MOVE/C-GET
(PS3.4 Annex C) read what it stored, possibly from another node sharing the storage
(docs/scale-out.md). What they ask of the storage is small, and :class:`StorageBackend`
names it: make a received file visible atomically under its final key, say whether a key
holds a file and which one (its identity: a reconcile or a commitment check must tell "the
file I wrote" from "another copy"), open it (or give a local path to it) for reading,
remove it.

:class:`FileSystemStorage` is the one implementation: a local or shared (NFS) filesystem.
A received file is written under a temporary name in the same filesystem (the SCP's
``.incoming``), fsync'd, renamed over its key (atomic on POSIX, NFS included: another
node sees the whole file or none) and the directory fsync'd, so the name survives a crash.
An object store would implement the same calls (a multipart upload completed under the
key, the object's ETag or version as its identity, a local cache for ``local_path``); the
key is then the path relative to the storage root.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = ["FileIdentity", "FileSystemStorage", "LOCAL_STORAGE", "StorageBackend"]

#: What tells one stored file from another at the same key: (device, inode, size) on a
#: filesystem. A rename keeps it, so it names the file across its move into place.
FileIdentity = tuple[int, int, int]


class StorageBackend(Protocol):
    """What the storage, index, retrieve and commitment services ask of stored files."""

    def place(self, staged: Path, key: Path, *, durable: bool) -> None:
        """Make the complete file ``staged`` visible at ``key`` in one step, replacing
        what was there; ``durable``: on stable storage, name included, when this returns.
        OSError when it cannot: then nothing new is visible at ``key``."""

    def identity(self, key: Path | str) -> FileIdentity | None:
        """The identity of the file at ``key`` (None when there is none)."""

    def exists(self, key: Path | str) -> bool:
        """Whether ``key`` holds a file."""

    def open(self, key: Path | str) -> BinaryIO:
        """The file at ``key``, open for reading (OSError when it cannot be)."""

    def local_path(self, key: Path | str) -> Path:
        """A path on this host holding the file at ``key``, for the Part 10 readers
        (C-MOVE/C-GET and the commitment check read files by path)."""

    def remove(self, key: Path | str) -> bool:
        """Remove the file at ``key``; False when there was none."""


class FileSystemStorage:
    """Stored files on a local or shared filesystem; a key is the file's path."""

    def place(self, staged: Path, key: Path, *, durable: bool) -> None:
        if durable:
            _fsync(staged)
        try:
            os.replace(staged, key)  # atomic: readers see the old file or the new one
        except FileNotFoundError:  # the first file of its folder (a new series)
            key.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, key)
        if durable:
            try:
                _fsync(key.parent)
            except OSError:
                # Its name may not survive a crash and the caller answers a failure: a
                # retry must not find a file that looks stored (a duplicate to keep).
                with contextlib.suppress(OSError):
                    key.unlink()
                raise

    def identity(self, key: Path | str) -> FileIdentity | None:
        try:
            status = os.stat(key)
        except OSError:
            return None
        return status.st_dev, status.st_ino, status.st_size

    def exists(self, key: Path | str) -> bool:
        return os.path.isfile(key)

    def open(self, key: Path | str) -> BinaryIO:
        return open(key, "rb")

    def local_path(self, key: Path | str) -> Path:
        return Path(key)  # the key is the path: nothing to fetch

    def remove(self, key: Path | str) -> bool:
        try:
            os.unlink(key)
        except FileNotFoundError:
            return False
        return True


def _fsync(path: Path) -> None:
    """Flush a file's (or a directory's: its names) data to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: The filesystem storage every service uses unless given another.
LOCAL_STORAGE: StorageBackend = FileSystemStorage()
