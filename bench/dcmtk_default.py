"""C-STORE with DCMTK in its default configuration: no ``TCP_NODELAY`` in its environment.

    python bench/dcmtk_default.py [--count 200] [--runs 3] [--other DIR]

Every other benchmark here starts DCMTK with ``TCP_NODELAY=1`` (bench/peers.py). Without
it, DCMTK 3.6 leaves Nagle's algorithm on and writes a PDU in two pieces; the second waits
for the first's ACK, which a delayed ACK holds ~40 ms. dicomwire acknowledges at once when
a read leaves a PDU's last bytes to come (TCP_QUICKACK, docs/performance.md "DCMTK peers
in their default configuration"); this measures it, next to DCMTK with itself, median
wall seconds of ``--runs``. ``--other DIR`` adds the dicomwire rows of another checkout's
package (``DIR/dicomwire`` on PYTHONPATH) for an A/B in one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import LOCALHOST, Receiver, Tools, free_port

from dicomwire.testing.corpus import write_corpus


def default_env(pythonpath: str | None = None) -> dict[str, str]:
    """This environment without TCP_NODELAY (DCMTK's default), PYTHONPATH as given."""
    env = {k: v for k, v in os.environ.items() if k not in ("TCP_NODELAY", "PYTHONPATH")}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def timed(argv: Sequence[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="small instances per run")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per row (median)")
    parser.add_argument("--other", metavar="DIR", help="also the dicomwire package in DIR")
    args = parser.parse_args()
    tools = Tools.discover()
    if not tools.has("dcmtk"):
        print("DCMTK's storescu/storescp not found (make dcmtk)")
        return 1
    assert tools.storescu is not None and tools.storescp is not None
    versions = [("dicomwire", None)] + (
        [(f"dicomwire {args.other}", args.other)] if args.other else []
    )
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as work:
        files = [str(p) for p in write_corpus(Path(work) / "in", args.count, "small")]
        port = free_port()
        storescp = [tools.storescp, "--ignore", "--aetitle", "DICOMWIRE", str(port)]
        log = Path(work) / "storescp.log"
        with Receiver(storescp, port, log, cwd=Path(work), env=default_env()):
            for _run in range(args.runs):
                for name, path in versions:
                    store = [*tools.dicomwire, "store", LOCALHOST, str(port), *files]
                    rows.setdefault(f"{name} store -> storescp", []).append(
                        timed(store, default_env(path))
                    )
                storescu = [tools.storescu, "-aec", "DICOMWIRE", LOCALHOST, str(port), *files]
                rows.setdefault("storescu -> storescp", []).append(timed(storescu, default_env()))
        for name, path in versions:
            port = free_port()
            serve = [*tools.dicomwire, "serve", "--host", LOCALHOST, "--port", str(port)]
            serve.append("--discard")
            log = Path(work) / f"serve-{len(rows)}.log"
            with Receiver(serve, port, log, cwd=Path(work), env=default_env(path)):
                storescu = [tools.storescu, "-aec", "DICOMWIRE", LOCALHOST, str(port), *files]
                rows[f"storescu -> {name} serve --discard"] = [
                    timed(storescu, default_env()) for _run in range(args.runs)
                ]
    print(f"{args.count} small instances, DCMTK {tools.dcmtk_version} without TCP_NODELAY")
    for label, seconds in rows.items():
        print(f"  {label:<48} {statistics.median(seconds):7.3f} s  (of {len(seconds)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
