"""Several storescu at once into one storing `dicomwire serve`: the index's group commit.

usage: python bench/parallel_store.py [--senders 4] [--count 250] [--runs 3]
       [--no-fsync] [--pythonpath DIR ...]

Each run starts `dicomwire serve` (index and audit on, its defaults) on a fresh storage,
sends ``senders`` x ``count`` distinct small instances (bench/.cache/corpus/small) from
that many storescu processes at once, and prints the wall seconds (first spawn to last
exit) and the receiver's CPU seconds (user + system, its process tree) per 1000
instances. With several ``--pythonpath`` (a directory holding another checkout's package
as ``dicomwire``; ``-`` for this checkout) the versions alternate run by run, so the
machine's noise falls on each alike; the medians are printed per version.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import BENCH, Receiver, _dcmtk_tool, free_port, run_sender, stop_all_receivers

CORPUS = BENCH / ".cache" / "corpus" / "small"


def one_run(pythonpath: str, senders: int, count: int, fsync: bool) -> tuple[float, float]:
    """(wall seconds, receiver CPU seconds) of one run."""
    files = sorted(CORPUS.glob("*.dcm"))
    if len(files) < senders * count:
        raise SystemExit(f"{CORPUS} has {len(files)} files, {senders * count} needed")
    storescu = _dcmtk_tool("storescu")
    if storescu is None:
        raise SystemExit("storescu (DCMTK) not found")
    with tempfile.TemporaryDirectory() as work:
        port = free_port()
        argv = [str(BENCH.parent / ".venv" / "bin" / "dicomwire"), "serve", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--storage", f"{work}/store"]
        if not fsync:
            argv.append("--no-fsync")
        saved = os.environ.get("PYTHONPATH")
        if pythonpath != "-":
            os.environ["PYTHONPATH"] = pythonpath
        try:
            receiver = Receiver(argv, port, Path(work) / "serve.log", cwd=Path(work))
            receiver.start()
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
        try:
            before = receiver.cpu_seconds()
            wave = [
                [storescu, "-aec", "DICOMWIRE", "127.0.0.1", str(port)]
                + [str(path) for path in files[n * count : (n + 1) * count]]
                for n in range(senders)
            ]
            sent = run_sender([wave], Path(work) / "senders.log", timeout=600)
            cpu = receiver.cpu_seconds() - before
            if not sent.ok:
                raise SystemExit(f"a sender failed: {sent.output[-2000:]}")
        finally:
            receiver.stop()
    return sent.seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--count", type=int, default=250, help="instances per sender")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-fsync", action="store_true", help="serve --no-fsync")
    parser.add_argument("--pythonpath", action="append", help="a version to run ('-': this)")
    args = parser.parse_args()
    versions = args.pythonpath or ["-"]
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in versions}
    per_k = 1000 / (args.senders * args.count)
    try:
        for run in range(args.runs):
            for version in versions:
                wall, cpu = one_run(version, args.senders, args.count, not args.no_fsync)
                results[version].append((wall, cpu))
                print(
                    f"run {run + 1} {version}: {wall * per_k:.2f} s/1k wall, "
                    f"{cpu * per_k:.2f} s/1k receiver CPU",
                    flush=True,
                )
    finally:
        stop_all_receivers()
    for version, found in results.items():
        wall = statistics.median(w for w, _ in found) * per_k
        cpu = statistics.median(c for _, c in found) * per_k
        print(f"median {version}: {wall:.2f} s/1k wall, {cpu:.2f} s/1k receiver CPU")


if __name__ == "__main__":
    main()
