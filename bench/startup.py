"""Start-up to the first byte on the wire: ``dicomwire echo``/``store`` next to DCMTK (issue 18).

    python bench/startup.py [--runs 21] [--json out.json]

Listens on a free 127.0.0.1 port and launches each command ``--runs`` times against it,
the commands interleaved round by round so drift on a shared machine hits all of them
alike. A run's time is from just before the process is spawned to the first byte of its
A-ASSOCIATE-RQ (PS3.8 §9.3.2) arriving on the accepted socket: interpreter, imports,
argument parsing, reading the file (store), event loop and connect, everything a user
waits for before the peer hears anything. The socket is then closed, so the command
exits with its own "connection closed" failure (not timed). Also times ``--version``
(start and exit, no network). Prints the median and the spread (min, max) per command.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import BENCH, LOCALHOST, Tools, child_env

#: The small object ``store`` sends (bench/.cache/corpus, written by compare.py).
SMALL_FILE = BENCH / ".cache" / "corpus" / "small" / "small00000.dcm"


Command = tuple[list[str], dict[str, str]]  # argv, environment


def first_byte_seconds(listener: socket.socket, command: Command) -> float:
    """Seconds from spawning ``command`` to the first byte it sends to ``listener``."""
    argv, env = command
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        connection, _ = listener.accept()
        with connection:
            if not connection.recv(1):
                raise RuntimeError(f"{argv[0]} connected but sent nothing")
            elapsed = time.perf_counter() - started
    finally:
        refuse_until_exit(listener, process)
    return elapsed


def refuse_until_exit(listener: socket.socket, process: subprocess.Popen[bytes]) -> None:
    """Close any further connection ``process`` opens (a retry) until it exits (20 s)."""
    listener.settimeout(0.01)
    deadline = time.monotonic() + 20
    try:
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                listener.accept()[0].close()
        if process.poll() is None:
            process.kill()
        process.wait()
    finally:
        listener.settimeout(30)


def wall_seconds(command: Command) -> float:
    """Seconds from spawning ``command`` to its exit (``--version``: start-up alone)."""
    argv, env = command
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, env=env, check=True)
    return time.perf_counter() - started


def commands(tools: Tools, port: int, others: list[Path]) -> dict[str, Command]:
    """Each command to time, by label; DCMTK's when it is installed.

    Each directory of ``others`` holds another checkout's package as ``dicomwire`` (put
    first on PYTHONPATH): its rows, labelled with the directory, run in the same rounds.
    """
    peer = [LOCALHOST, str(port)]
    env = child_env()
    store = ["store", "--retries", "0", *peer, str(SMALL_FILE)]
    found: dict[str, Command] = {}
    for other in [None, *others]:
        suffix, other_env = (
            ("", env) if other is None else (f" [{other}]", {**env, "PYTHONPATH": str(other)})
        )
        found[f"dicomwire echo{suffix}"] = ([*tools.dicomwire, "echo", *peer], other_env)
        found[f"dicomwire store FILE{suffix}"] = ([*tools.dicomwire, *store], other_env)
        found[f"dicomwire --version{suffix}"] = ([*tools.dicomwire, "--version"], other_env)
    if tools.echoscu:
        found["echoscu"] = ([tools.echoscu, *peer], env)
    if tools.storescu:
        found["storescu FILE"] = ([tools.storescu, *peer, str(SMALL_FILE)], env)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="runs per command (21)")
    parser.add_argument("--json", type=Path, help="write every run's seconds here")
    parser.add_argument(
        "--other",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="also time the dicomwire package in DIR/dicomwire (another checkout's src)",
    )
    args = parser.parse_args()
    if not SMALL_FILE.exists():
        print(f"{SMALL_FILE} is missing: run bench/compare.py once to write the corpus")
        return 1
    tools = Tools.discover()  # also compiles this checkout's bytecode
    for other in args.other:
        compileall.compile_dir(other / "dicomwire", quiet=1)
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOCALHOST, 0))
        listener.listen(8)
        listener.settimeout(30)
        runs = commands(tools, listener.getsockname()[1], args.other)
        times: dict[str, list[float]] = {label: [] for label in runs}
        for _ in range(args.runs + 1):  # the first round untimed: page cache, .pyc files
            for label, command in runs.items():
                if label.startswith("dicomwire --version"):
                    times[label].append(wall_seconds(command))
                else:
                    times[label].append(first_byte_seconds(listener, command))
    times = {label: seconds[1:] for label, seconds in times.items()}
    python = sys.version.split()[0]
    print(f"start-up, {args.runs} runs each, python {python}, cpus {os.cpu_count()}")
    print(f"{'command':<40}{'median ms':>10}{'min':>8}{'max':>8}   measured to")
    for label, seconds in times.items():
        until = "exit" if "--version" in label else "first byte"
        print(
            f"{label:<40}{statistics.median(seconds) * 1000:>10.1f}"
            f"{min(seconds) * 1000:>8.1f}{max(seconds) * 1000:>8.1f}   {until}"
        )
    if args.json:
        args.json.write_text(json.dumps(times, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
