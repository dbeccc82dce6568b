"""Store a corpus directory N times in one process (for instruction counting).

Usage: python bench/store_loop.py CORPUS_DIR WINDOW RUNS [PORT]
Sends to a `dicomwire serve --discard` on 127.0.0.1:PORT (11199) and checks every
instance was stored; bench/count_instructions.sh runs it under callgrind.
"""

from __future__ import annotations

import sys

import uvloop

from dicomwire.services.storage import store_files


async def main(corpus: str, window: int, runs: int, port: int) -> None:
    for _ in range(runs):
        summary = await store_files(
            "127.0.0.1",
            port,
            [corpus],
            called_ae_title="DICOMWIRE",
            max_pdu_length=131072,
            window=window,
        )
        if summary.failures:
            raise SystemExit(f"{summary.failures} instances failed")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    port = int(sys.argv[4]) if len(sys.argv) > 4 else 11199
    uvloop.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), port))
