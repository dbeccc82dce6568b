#!/usr/bin/env python3
"""CI's short atheris run (``make fuzz-ci``, which ``make test`` runs): a few targets for a
few seconds each, from the seeds of :func:`targets.seeds` (codec and DCMTK recordings).

The corpus grows in a scratch directory (the tree stays clean). Every crash, timeout or
out-of-memory input libFuzzer writes is copied to ``tests/fuzz_regressions/<target>/``
(named by its SHA-1; commit it with the fix: ``test_regression_inputs`` replays it) and the
run fails. Usage::

    python fuzz/run_ci.py --seconds 30 acceptor dimse
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import targets  # noqa: E402
from seed_corpus import write  # noqa: E402

REGRESSIONS = HERE.parent / "tests" / "fuzz_regressions"


def fuzz(name: str, seconds: int, scratch: Path) -> list[Path]:
    """Run one target; the regression inputs kept from its findings."""
    corpus = scratch / "corpus" / name
    write(corpus, targets.seeds(name))
    artifacts = scratch / "artifacts" / name
    artifacts.mkdir(parents=True)
    command = [
        sys.executable,
        str(HERE / f"fuzz_{name}.py"),
        str(corpus),
        f"-max_total_time={seconds}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
    ]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    stats = [line for line in result.stderr.splitlines() if line.startswith("stat::")]
    runs = next(
        (line.split(":")[-1].strip() for line in stats if "number_of_executed" in line), "?"
    )
    print(f"== atheris {name}: {took:.0f} s, {runs} inputs, exit status {result.returncode}")
    kept = []
    for artifact in sorted(artifacts.iterdir()):
        data = artifact.read_bytes()
        path = REGRESSIONS / name / hashlib.sha1(data).hexdigest()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        kept.append(path)
    if result.returncode != 0:
        print(result.stderr[-4000:], file=sys.stderr)
        if not kept:  # a failure without an input (the harness itself broke)
            raise SystemExit(f"atheris {name} failed with status {result.returncode}")
    return kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30, help="per target")
    parser.add_argument("targets", nargs="+", choices=sorted(targets.TARGETS))
    args = parser.parse_args()
    found: list[Path] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.targets:
            found += fuzz(name, args.seconds, Path(scratch))
    for path in found:
        print(f"finding kept as {path.relative_to(HERE.parent)}: commit it with the fix")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
