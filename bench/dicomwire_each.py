"""One association per file, one after the other, in one dicomwire process.

``python bench/dicomwire_each.py HOST PORT PATH... [--max-pdu N] [--aec AE]``

The "1000 associations x 1 object" scenario of bench/compare.py: ``dicomwire store`` run
1000 times would measure 1000 interpreter start-ups, not association set-up, so this
driver calls :func:`dicomwire.services.storage.store_files` once per file in one event
loop (uvloop when available, as the CLI does). Prints ``stored N of M``; exits 0 only when
every instance was stored.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from dicomwire.services.storage import store_files

MAX_REPORTED = 5  # failures printed; the count says the rest


def files_under(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return found


async def run(args: argparse.Namespace, files: list[Path]) -> int:
    stored = failed = 0
    for path in files:
        summary = await store_files(
            args.host,
            args.port,
            [path],
            called_ae_title=args.aec,
            max_pdu_length=args.max_pdu,
            retries=0,
        )
        if summary.failures == 0 and summary.sent == 1:
            stored += 1
        else:
            failed += 1
            if failed <= MAX_REPORTED:
                reasons = [o.error or str(o.status) for o in summary.outcomes] or ["no outcome"]
                print(f"failed: {path}: {'; '.join(reasons)}", file=sys.stderr)
    return stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--max-pdu", type=int, default=131072, help="0 = unlimited")
    parser.add_argument("--aec", default="ANY-SCP")
    args = parser.parse_args()
    files = files_under(args.paths)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        stored = asyncio.run(run(args, files))
    else:
        stored = uvloop.run(run(args, files))
    print(f"stored {stored} of {len(files)}", flush=True)
    return 0 if files and stored == len(files) else 1


if __name__ == "__main__":
    sys.exit(main())
