"""End-to-end C-STORE comparison: dicomwire, DCMTK and pynetdicom in the same run (issue 7).

    python bench/compare.py [--quick] [--runs 3] [--scenarios ct,small] [--json out.json]

Generates a deterministic corpus once (bench/.cache/), then for each scenario of
bench/scenarios.py runs every available sender -> receiver pair as real processes on
127.0.0.1, each receiver on a free port, and prints one table: wall seconds of the
sender (median of the runs), MB/s, instances/s, CPU seconds per GB (sender + receiver,
user + sys), the receiver's peak RSS, and the ratio to DCMTK -> DCMTK in that scenario.

A run counts only when every instance was delivered (exit statuses, the sender's own
count, the files written in disk scenarios, the receiver still alive); otherwise the row
shows FAIL and the reason, never a time. ``--quick`` skips the pynetdicom rows (tens of
seconds each). See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import (
    BENCH,
    LOCALHOST,
    Receiver,
    SenderRun,
    Tools,
    free_port,
    run_sender,
    startup_seconds,
)
from scenarios import (
    BY_NAME,
    CALLED_AE,
    SCENARIOS,
    Pair,
    Scenario,
    Unsupported,
    pdu_text,
    receiver_argv,
    sender_waves,
)

CACHE = BENCH / ".cache"
#: Bump to regenerate every cached corpus.
CORPUS_VERSION = 1
CORPORA = {
    "ct": {"kind": "ct", "count": 1000},
    "small": {"kind": "small", "count": 1000},
    # 2048 frames of 512x512x16 bits: 1 GiB of pixel data in one instance
    "gib": {"kind": "ct", "count": 1, "frames": 2048},
}
SETTLE = 0.05  # seconds for the receiver to finish (forked children exit) before measuring


# --------------------------------------------------------------------------- corpus


@dataclass
class Corpus:
    name: str
    directory: Path
    files: list[Path]
    bytes: int


def _generator_digest() -> str:
    import dicomwire.testing.corpus as module

    source = Path(module.__file__).read_bytes()
    return hashlib.sha256(source + str(CORPUS_VERSION).encode()).hexdigest()[:16]


def corpus(name: str) -> Corpus:
    """The cached corpus ``name``, generated (deterministically) when missing or stale."""
    spec = CORPORA[name]
    directory = CACHE / "corpus" / name
    manifest = directory.with_name(name + ".json")  # beside, not in: storescu +sd sends all
    wanted = {**spec, "generator": _generator_digest()}
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        files = sorted(directory.iterdir()) if directory.is_dir() else []
        if (
            saved.get("spec") == wanted
            and len(files) == spec["count"]
            and sum(f.stat().st_size for f in files) == saved.get("bytes")
        ):
            return Corpus(name, directory, files, saved["bytes"])
    from dicomwire.testing.corpus import make_ct, write_corpus, write_part10

    log(f"generating corpus {name!r} under {directory} ...")
    started = time.perf_counter()
    manifest.unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)
    partial = directory.with_name(name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if "frames" in spec:
        write_part10(make_ct(0, frames=spec["frames"]), partial / "ct00000.dcm")
    else:
        write_corpus(partial, spec["count"], spec["kind"])
    files = sorted(partial.glob("*.dcm"))
    total = sum(f.stat().st_size for f in files)
    partial.rename(directory)
    manifest.write_text(json.dumps({"spec": wanted, "bytes": total}))
    log(f"  {len(files)} files, {total / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
    return Corpus(name, directory, sorted(directory.glob("*.dcm")), total)


# --------------------------------------------------------------------------- running


@dataclass
class Row:
    scenario: str
    label: str
    sender: str
    receiver: str
    status: str = "ok"  # ok | FAIL | n/a | skipped
    reason: str = ""
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    #: The receiver's own user + system CPU seconds per run (its process tree).
    receiver_cpu: list[float] = field(default_factory=list)
    peak_rss: int | None = None
    instances: int = 0
    bytes: int = 0
    reference: bool = False
    target: float | None = None
    workers: int | None = None
    ratio: float | None = None
    retried: bool = False

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds and self.status == "ok" else None

    @property
    def cpu_per_gb(self) -> float | None:
        if not self.cpu or self.status != "ok" or not self.bytes:
            return None
        return statistics.median(self.cpu) / (self.bytes / 1e9)

    @property
    def receiver_cpu_per_1000(self) -> float | None:
        """The receiver's CPU seconds per 1000 instances: what sizes a gateway's cores."""
        if not self.receiver_cpu or self.status != "ok" or not self.instances:
            return None
        return statistics.median(self.receiver_cpu) / (self.instances / 1000)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_SENT = re.compile(r"sent (\d+) of (\d+) instances \((\d+) warnings, (\d+) failures\)")
_STORED = re.compile(r"stored (\d+) of (\d+)")
_RECEIVED = re.compile(r"received (\d+)")


def files_written(directory: Path) -> int:
    count = 0
    for _root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d not in (".incoming", ".dicomwire")]  # node's own state
        count += len(files)
    return count


def empty(directory: Path) -> None:
    """Remove what a receiver wrote, keeping the directory (storescp -od needs it)."""
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def check_run(
    run: SenderRun,
    pair: Pair,
    scenario: Scenario,
    expected: int,
    processes: int,
    receiver: Receiver,
    directory: Path,
) -> str | None:
    """Why this run does not count, or None when every instance was delivered."""
    tail = run.output.strip().splitlines()[-1:] or [""]
    if not receiver.alive:
        assert receiver.process is not None
        return f"{RECEIVER_EXITED} (status {receiver.process.returncode}) during the run"
    if run.timed_out:
        return "timed out"
    if len(run.returncodes) != processes:
        return f"{len(run.returncodes)} of {processes} sender processes ran"
    if any(run.returncodes):
        bad = sorted({code for code in run.returncodes if code})
        return f"sender exit status {bad}: {tail[0][:80]}"
    if pair.sender == "dicomwire" and scenario.layout != "each":
        found = _SENT.search(run.output)
        if not found or not int(found[1]) == int(found[2]) == expected or int(found[4]):
            return f"dicomwire store: {found[0] if found else tail[0][:80]}"
    elif pair.sender in ("dicomwire", "pynetdicom"):
        counts = [int(m[1]) for m in _STORED.finditer(run.output)]
        if sum(counts) != expected:
            return f"stored {sum(counts)} of {expected}"
    elif re.search(r"^[EF]: ", run.output, re.MULTILINE):
        line = next(x for x in run.output.splitlines() if x.startswith(("E: ", "F: ")))
        return f"storescu: {line[:80]}"
    if scenario.disk:
        written = files_written(directory)
        if written != expected:
            return f"receiver wrote {written} of {expected} files"
    return None


def warmup_waves(tools: Tools, port: int, path: Path) -> list[list[list[str]]]:
    """One small instance sent with storescu (or dicomwire store when DCMTK is missing)."""
    target = [LOCALHOST, str(port), str(path)]
    if tools.storescu is not None:
        return [[[tools.storescu, "-aec", CALLED_AE, *target]]]
    return [[[*tools.dicomwire, "store", "--aec", CALLED_AE, "--no-progress", *target]]]


RECEIVER_EXITED = "receiver exited"


@dataclass
class Plan:
    """How one row runs: the receiver's and the senders' command lines and limits."""

    receiver: list[str]
    waves: list[list[list[str]]]
    port: int
    runs: int
    timeout: float
    directory: Path
    logs: Path

    @property
    def processes(self) -> int:
        return sum(len(wave) for wave in self.waves)


def plan_for(
    tools: Tools, scenario: Scenario, pair: Pair, data: Corpus, row: Row, args: argparse.Namespace
) -> Plan:
    """A fresh port and command lines (raises Unsupported when a peer cannot do it)."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{scenario.name} {row.label}".lower()).strip("-")
    directory = CACHE / "received" / slug
    port = free_port()
    slow = scenario.slow(pair)
    return Plan(
        receiver_argv(tools, scenario, pair, port, directory),
        sender_waves(tools, scenario, pair, port, data.directory, data.files),
        port,
        args.slow_runs if slow else args.runs,
        args.slow_timeout if slow else args.timeout,
        directory,
        CACHE / "logs" / slug,
    )


def measure(
    row: Row, tools: Tools, scenario: Scenario, pair: Pair, plan: Plan, data: Corpus, warmup: Path
) -> str:
    """Start the receiver, warm it up, time the runs into ``row``; the receiver's output."""
    empty(plan.directory)
    logs = plan.logs
    receiver = Receiver(plan.receiver, plan.port, logs / "receiver.log", cwd=plan.directory)
    try:
        receiver.start()
        # Warm-up, untimed: one small instance, so lazy imports and first-association
        # costs of a Python receiver are not in the first run.
        run_sender(warmup_waves(tools, plan.port, warmup), logs / "warmup.log", plan.timeout)
        for number in range(plan.runs):
            if scenario.disk:
                empty(plan.directory)
                # Write back what earlier runs left dirty now, not during this run: every
                # row then starts from the same clean page cache.
                os.sync()
            before = receiver.cpu_seconds()
            run = run_sender(plan.waves, logs / f"run{number}.log", plan.timeout)
            time.sleep(SETTLE)
            receiver_cpu = receiver.cpu_seconds() - before
            problem = check_run(
                run, pair, scenario, len(data.files), plan.processes, receiver, plan.directory
            )
            log(
                f"  {scenario.name:<10} {row.label:<44} run {number + 1}/{plan.runs}: "
                + (f"FAIL ({problem})" if problem else f"{run.seconds:7.3f} s")
            )
            if problem:
                row.status, row.reason = "FAIL", problem
                break
            row.seconds.append(run.seconds)
            row.cpu.append(run.cpu + receiver_cpu)
            row.receiver_cpu.append(receiver_cpu)
        row.peak_rss = receiver.peak_rss() if receiver.alive else None
    except (OSError, RuntimeError, TimeoutError) as exc:
        row.status, row.reason = "FAIL", f"receiver: {exc}"
    finally:
        output = receiver.stop()
    if scenario.disk:
        empty(plan.directory)
    return output


def run_pair(
    tools: Tools,
    scenario: Scenario,
    pair: Pair,
    data: Corpus,
    warmup: Path,
    args: argparse.Namespace,
) -> Row:
    row = Row(
        scenario.name,
        pair.label(scenario),
        pair.sender,
        pair.receiver,
        instances=len(data.files),
        bytes=data.bytes,
        reference=pair.reference,
        target=pair.target,
        workers=pair.workers,
    )
    if pair.pynetdicom and args.quick:
        row.status, row.reason = "skipped", "--quick"
        return row
    missing = [tool for tool in (pair.sender, pair.receiver) if not tools.has(tool)]
    if missing:
        row.status, row.reason = "n/a", f"{', '.join(missing)} not installed"
        return row
    for attempt in range(2):
        try:
            plan = plan_for(tools, scenario, pair, data, row, args)
        except Unsupported as exc:
            row.status, row.reason = "n/a", str(exc)
            return row
        row.status, row.reason, row.seconds, row.cpu = "ok", "", [], []
        output = measure(row, tools, scenario, pair, plan, data, warmup)
        if attempt or not (row.status == "FAIL" and row.reason.startswith(RECEIVER_EXITED)):
            row.reason += " (second time)" if attempt and row.status == "FAIL" else ""
            break
        # On a shared machine something else may signal our receiver (it then shuts down
        # and exits 0): run the whole row again once, and say so in the table.
        log(f"  {scenario.name:<10} {row.label:<44} receiver stopped from outside: again")
        row.retried = True
    if row.status == "ok" and pair.receiver == "pynetdicom":
        counts = [int(m[1]) for m in _RECEIVED.finditer(output)]
        wanted = plan.runs * len(data.files)
        if not counts or counts[-1] < wanted:
            row.status, row.reason = "FAIL", f"pynetdicom SCP received {counts} < {wanted}"
    return row


# --------------------------------------------------------------------------- report


def add_ratios(rows: list[Row]) -> None:
    """Each row's median divided by its scenario's DCMTK -> DCMTK median."""
    reference = {row.scenario: row.median for row in rows if row.reference}
    for row in rows:
        ref = reference.get(row.scenario)
        if row.median is not None and ref:
            row.ratio = row.median / ref


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def verdicts(row: Row, scenario: Scenario) -> str:
    """Issue 7's targets for this row: ratio to DCMTK, receiver peak RSS."""
    parts = []
    if row.target is not None and row.ratio is not None:
        mark = "ok" if row.ratio <= row.target else "MISS"
        parts.append(f"<={row.target:.1f}x {mark}")
    if scenario.rss_limit and row.receiver == "dicomwire" and row.peak_rss is not None:
        mark = "ok" if row.peak_rss < scenario.rss_limit else "MISS"
        parts.append(f"RSS<{scenario.rss_limit / 1e6:.0f}MB {mark}")
    return ", ".join(parts)


HEADER = (
    "scenario",
    "sender -> receiver",
    "runs",
    "seconds",
    "spread",
    "MB/s",
    "inst/s",
    "CPU s/GB",
    "rcv CPU s/1k",
    "RSS MB",
    "x DCMTK",
    "target",
)
RIGHT = {2, 3, 4, 5, 6, 7, 8, 9, 10}


def table(rows: list[Row]) -> str:
    lines: list[tuple[str, ...]] = [HEADER]
    last = None
    for row in rows:
        scenario = BY_NAME[row.scenario]
        name = row.scenario if row.scenario != last else ""
        last = row.scenario
        label = row.label + (" *" if row.reference else "")
        if row.status != "ok":
            lines.append((name, label, "", row.status, row.reason, *[""] * (len(HEADER) - 5)))
            continue
        median = row.median
        assert median is not None
        lines.append(
            (
                name,
                label,
                f"{len(row.seconds)}{'r' if row.retried else ''}",
                f"{median:.3f}",
                f"{(max(row.seconds) - min(row.seconds)) / median:.0%}"
                if len(row.seconds) > 1
                else "",
                f"{row.bytes / 1e6 / median:.1f}",
                f"{row.instances / median:.1f}",
                _num(row.cpu_per_gb, 2),
                _num(row.receiver_cpu_per_1000, 3),
                _num(None if row.peak_rss is None else row.peak_rss / 1e6, 1),
                _num(row.ratio, 2),
                verdicts(row, scenario),
            )
        )
    measured = [line for line in lines if line[3] not in ("FAIL", "n/a", "skipped")]
    widths = [max(len(line[i]) for line in measured) for i in range(len(HEADER))]
    widths[:2] = [max(len(line[i]) for line in lines) for i in range(2)]
    out = []
    for index, line in enumerate(lines):
        if line[3] in ("FAIL", "n/a", "skipped"):
            head = f"{line[0]:<{widths[0]}}  {line[1]:<{widths[1]}}  {'':>{widths[2]}}  "
            out.append((head + f"{line[3]} {line[4]}").rstrip())
            continue
        cells = [
            f"{cell:>{widths[i]}}" if i in RIGHT else f"{cell:<{widths[i]}}"
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if index == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def workers_speedup(rows: list[Row]) -> list[str]:
    """``serve --workers 2`` against 1, for each sender measured with both."""
    lines = []
    for sender in ("dicomwire", "dcmtk"):
        one = next((r for r in rows if r.workers == 1 and r.sender == sender), None)
        two = next((r for r in rows if r.workers == 2 and r.sender == sender), None)
        if one is None or two is None or one.median is None or two.median is None:
            continue
        speedup = one.median / two.median
        verdict = "ok" if speedup >= 1.6 else "MISS"
        lines.append(
            f"serve --workers 2 vs 1, {sender} sending: {speedup:.2f}x faster "
            f"(target >= 1.6x: {verdict})."
        )
    return lines


def notes(scenarios: list[Scenario], rows: list[Row], startup: dict[str, float | None]) -> str:
    lines = [
        "* the scenario's reference (x DCMTK = seconds / its seconds). seconds: sender wall "
        "time, process start to exit, median of the runs; spread: (max - min) / median; "
        "MB = 1e6 bytes of Part 10 files; CPU s/GB: sender + receiver user+sys per 1e9 bytes; "
        "RSS: receiver peak (VmHWM). runs 'r': the row was run again because something "
        "outside stopped its receiver.",
    ]
    for scenario in scenarios:
        pdu = "" if "max PDU" in scenario.title else f"; max PDU {pdu_text(scenario.max_pdu)}"
        lines.append(f"{scenario.name}: {scenario.title}{pdu}.")
        lines.extend(f"    {note}" for note in scenario.notes)
    lines.extend(workers_speedup(rows))
    known = [f"{name} {value:.3f} s" for name, value in startup.items() if value is not None]
    if known:
        lines.append("Sender start-up alone (no network, median of 3): " + ", ".join(known) + ".")
    return "\n".join(lines)


def measure_startup(tools: Tools) -> dict[str, float | None]:
    startup: dict[str, float | None] = {
        "dicomwire": startup_seconds([*tools.dicomwire, "--version"])
    }
    if tools.storescu:
        startup["storescu"] = startup_seconds([tools.storescu, "--version"])
    if tools.pynetdicom:
        startup["pynetdicom SCU"] = startup_seconds([*tools.script("pynetdicom_scu.py"), "--help"])
    return startup


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="dicomwire vs DCMTK vs pynetdicom, C-STORE end to end (issue 7).",
        epilog="Scenarios: " + ", ".join(s.name for s in SCENARIOS),
    )
    parser.add_argument("--quick", action="store_true", help="skip the (slow) pynetdicom rows")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per row (3)")
    parser.add_argument(
        "--slow-runs",
        type=int,
        default=1,
        metavar="N",
        help="timed runs of the slow rows, 5-100 s each: a pynetdicom peer, or one storescu "
        "process per association (1)",
    )
    parser.add_argument(
        "--scenarios", help="comma-separated subset, e.g. ct,small,gib (default: all)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run (120)")
    parser.add_argument(
        "--slow-timeout",
        type=float,
        default=240.0,
        metavar="S",
        help="seconds per run of a slow row (240)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.slow_runs < 1:
        parser.error("--runs and --slow-runs must be at least 1")
    if args.scenarios:
        names = [name.strip() for name in args.scenarios.split(",") if name.strip()]
        unknown = [name for name in names if name not in BY_NAME]
        if unknown:
            parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
        args.selected = [BY_NAME[name] for name in names]
    else:
        args.selected = list(SCENARIOS)
    return args


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so atexit stops every receiver (own process groups)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    started = time.perf_counter()
    tools = Tools.discover()
    log(
        f"peers: dicomwire {' '.join(tools.dicomwire)}; DCMTK "
        f"{tools.dcmtk_version or 'missing'}; pynetdicom {tools.pynetdicom_version or 'missing'}"
        f"; serve --workers {'yes' if tools.serve_workers else 'no'}"
    )
    warmup = corpus("small").files[0]
    rows: list[Row] = []
    for scenario in args.selected:
        data = corpus(scenario.corpus)
        log(f"{scenario.name}: {scenario.title}")
        for pair in scenario.pairs:
            rows.append(run_pair(tools, scenario, pair, data, warmup, args))
    add_ratios(rows)
    startup = measure_startup(tools)
    print()
    print(table(rows))
    print()
    print(notes(args.selected, rows, startup))
    elapsed = time.perf_counter() - started
    print(f"({len(rows)} rows in {elapsed:.0f} s; {os.cpu_count()} CPUs, {platform.platform()})")
    if args.json:
        report = {
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "dcmtk": tools.dcmtk_version,
                "pynetdicom": tools.pynetdicom_version,
            },
            "runs": args.runs,
            "startup_seconds": startup,
            "rows": [
                {
                    **asdict(row),
                    "median": row.median,
                    "cpu_per_gb": row.cpu_per_gb,
                    "receiver_cpu_per_1000": row.receiver_cpu_per_1000,
                }
                for row in rows
            ],
        }
        args.json.write_text(json.dumps(report, indent=2))
    failed = [row for row in rows if row.status == "FAIL"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
