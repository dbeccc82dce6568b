"""The storing receiver's per-instance work, piece by piece, in one process (no network).

usage: python bench/store_pieces.py CORPUS PIECE COUNT

Runs one piece COUNT times on the corpus's first file, as the C-STORE SCP does for each
received instance (docs/performance.md, issue 18 round four):

- ``entry``: its index entry from the walk that checked it (:func:`entry_from_walk`);
- ``meta``: its file meta (:func:`build_file_meta`);
- ``place``: the SCP's store step (``StorageSCP._place``: path from the layout, index
  entry, the index's prepare, the rename, its commit, the observers) on a file written
  first, with a SQLite index, no fsync;
- ``files``: writing that file alone (subtract it from ``place``).

Count the instructions of two COUNTs under valgrind and take the difference, so start-up
cancels out::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/store_pieces.py bench/.cache/corpus/small place 2000
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

from dicomwire.dimse.commands import Tag
from dicomwire.services import index
from dicomwire.services.part10 import build_file_meta, read_file_info
from dicomwire.services.storage import scp


def main(corpus: Path, piece: str, count: int) -> None:
    source = sorted(corpus.glob("*.dcm"))[0]
    info = read_file_info(source)
    raw = source.read_bytes()
    ts = info.transfer_syntax
    loop = asyncio.new_event_loop()
    received = scp._ReceivedDataSet(None, b"", ts, True, scp._STORED_TAGS)
    received.write(memoryview(raw[info.dataset_offset :]))
    stored = loop.run_until_complete(received.close())
    assert stored.walk is not None
    if piece == "entry":
        for _ in range(count):
            index.entry_from_walk(stored.head, stored.walk, ts)
    elif piece == "meta":
        uid = stored.header[0x00080018]
        for _ in range(count):
            build_file_meta(stored.header[0x00080016], uid, ts, "STORESCU")
    elif piece in ("place", "files"):
        root = Path(tempfile.mkdtemp())
        try:
            _place(loop, root, stored, raw, ts, piece == "place", count)
        finally:
            shutil.rmtree(root)
    else:
        raise SystemExit(f"unknown piece {piece!r}")


def _place(
    loop: asyncio.AbstractEventLoop,
    root: Path,
    stored: scp.StoreResult,
    raw: bytes,
    ts: str,
    place: bool,
    count: int,
) -> None:
    config = scp.StorageConfig(root=root, fsync=False)
    scp.prepare_root(config)
    sqlite = index.SQLiteIndex(root / "index.sqlite")
    storage = scp.StorageSCP(config, sqlite)
    storage.observe(lambda instance, request: None)
    header = stored.header
    context = types.SimpleNamespace(
        abstract_syntax=header[0x00080016], transfer_syntax=ts, context_id=1
    )
    request: object = types.SimpleNamespace(
        command={
            Tag.AffectedSOPClassUID: header[0x00080016],
            Tag.AffectedSOPInstanceUID: header[0x00080018],
        },
        context=context,
        negotiated=types.SimpleNamespace(remote_ae_title="STORESCU"),
        session=None,
    )
    for number in range(count):
        staged = root / ".incoming" / f"{number}.part"
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT, 0o666)
        os.write(fd, raw)
        os.close(fd)
        if place:
            stored.path = staged
            loop.run_until_complete(storage._place(request, staged, stored))  # type: ignore[arg-type]
        else:
            os.unlink(staged)
    sqlite.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
