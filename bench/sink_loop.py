"""The storage SCP's sink per data set, in process: the completeness walk and its result.

Usage: python bench/sink_loop.py CORPUS_DIR [FILES] [MODE]
MODE ``time`` (default) prints the best of 7 runs in µs per file; ``discard`` and
``indexed`` run the sink once per file (as ``serve --discard`` does, or as an indexing
node does: the index columns captured, the header's layout noted) for counting under
valgrind; ``none`` only reads the files (subtract its count). Each data set is fed as
the receiver gets it: one fragment per P-DATA-TF of a 128 KiB PDU.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from dicomwire.services.storage import scp
from dicomwire.services.storage.header import HEADER_TAGS
from dicomwire.services.storage.scu import inspect_file

_FRAGMENT = 131072 - 12  # a 128 KiB PDU less its PDU and PDV headers


def _sink_once(fragments: list[memoryview], transfer_syntax: str, indexed: bool) -> object:
    capture = scp._STORED_TAGS if indexed else frozenset(HEADER_TAGS)
    sink = scp._ReceivedDataSet(None, b"", transfer_syntax, indexed, capture)
    for fragment in fragments:
        sink.write(fragment)
    closing = sink.close()
    try:
        closing.send(None)
    except StopIteration as done:  # close() never waits when nothing is written
        return done.value
    raise RuntimeError("close() waited")


def main(corpus: str, count: int, mode: str) -> None:
    items = []
    for path in sorted(Path(corpus).glob("*.dcm"))[:count]:
        info = inspect_file(path)
        data = memoryview(path.read_bytes()[info.dataset_offset :])
        fragments = [data[i : i + _FRAGMENT] for i in range(0, len(data), _FRAGMENT)]
        items.append((fragments, info.transfer_syntax))
    if mode == "none":
        return
    if mode in ("discard", "indexed"):
        for fragments, syntax in items:
            _sink_once(fragments, syntax, mode == "indexed")
        return
    best = float("inf")
    for _ in range(7):
        started = time.perf_counter()
        for fragments, syntax in items:
            _sink_once(fragments, syntax, False)
        best = min(best, time.perf_counter() - started)
    print(f"{best / len(items) * 1e6:.2f} µs per file")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(
        sys.argv[1],
        int(sys.argv[2]) if len(sys.argv) > 2 else 200,
        sys.argv[3] if len(sys.argv) > 3 else "time",
    )
