"""Worklist query latency against wlmscpfs, and 1024 outstanding MPPS operations (issue 16).

Usage: python bench/worklist_mpps.py [--entries N] [--repeat R] [--no-database] [--rebuild]

Worklist (PS3.4 K.4.1): N (10,000) scheduled steps spread over 20 station AE titles and
five days (today -2 .. today +2), written once as ``.wl`` files (Explicit VR Little
Endian, as wlmscpfs reads them) into ``bench/.cache/worklist-N/wl/WLMSCP/`` (wlmscpfs's
``DIR/<called AE>/`` layout, with its ``lockfile``), served by

- DCMTK ``wlmscpfs -dfp DIR PORT``;
- ``dicomwire serve --worklist-dir DIR`` (the same folder; its first scan is waited for);
- ``dicomwire serve --database DB`` with the same entries added by ``dicomwire worklist
  add`` (``--no-database`` leaves it out).

Two queries, each from our client (``dicomwire.connect(...).find(model="worklist")``, one
association per query, in one process) and from DCMTK ``findscu -W`` (one process per
query, start-up included): a modality asking for today's steps on its AE title, and one
Patient ID. Median and p90 of ``--repeat`` runs (15), and the match counts (which must
agree across servers and clients; a warning says when not).

MPPS (PS3.4 F.7): ``dicomwire serve --max-operations 1024`` and one association proposing
a window of 1024: 1024 N-CREATEs outstanding at once, then 1024 N-SET COMPLETED; seconds
and operations/s for each half, the window agreed, and every status.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))  # tests.interop._mpps_peer: the MPPS attribute lists of the tests

from peers import Receiver, child_env, free_port  # noqa: E402

CACHE = REPO / "bench" / ".cache"
AE = "WLMSCP"
STATIONS, DAYS = 20, 5
ROOT = "1.2.826.0.1.3680043.9.7433.60"
MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
WORKLIST_FIND = "1.2.840.10008.5.1.4.31"


def station(i: int) -> str:
    return f"STATION{i % STATIONS:02d}"


def step_date(i: int, today: datetime.date) -> str:
    return (today + datetime.timedelta(days=(i // STATIONS) % DAYS - 2)).strftime("%Y%m%d")


def entry(i: int, today: datetime.date) -> Any:
    """Worklist entry ``i``: one requested procedure with one scheduled step."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.AccessionNumber = f"ACC{i:06d}"
    ds.ReferringPhysicianName = "Referring^Doctor"
    ds.PatientName = f"NAME{i:05d}^GIVEN{i % 7}"
    ds.PatientID = f"PAT{i:05d}"
    ds.PatientBirthDate = f"19{50 + i % 50:02d}0101"
    ds.PatientSex = "MF"[i % 2]
    ds.StudyInstanceUID = f"{ROOT}.{i}"
    ds.RequestedProcedureDescription = ("CT HEAD", "MR KNEE", "CR CHEST")[i % 3]
    ds.RequestedProcedureID = f"RP{i:06d}"
    step = Dataset()
    step.Modality = ("CT", "MR", "CR")[i % 3]
    step.ScheduledStationAETitle = station(i)
    step.ScheduledProcedureStepStartDate = step_date(i, today)
    step.ScheduledProcedureStepStartTime = f"{8 + i % 10:02d}{i % 60:02d}00"
    step.ScheduledPerformingPhysicianName = "Tech^One"
    step.ScheduledProcedureStepDescription = ds.RequestedProcedureDescription
    step.ScheduledProcedureStepID = f"SPS{i:06d}"
    step.ScheduledStationName = f"ROOM{i % STATIONS:02d}"
    step.ScheduledProcedureStepStatus = "SCHEDULED"
    ds.ScheduledProcedureStepSequence = [step]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = WORKLIST_FIND
    ds.file_meta.MediaStorageSOPInstanceUID = f"{ROOT}.{i}.1"
    return ds


def build(entries: int, rebuild: bool) -> Path:
    """The cached folder for ``entries`` (rewritten when the date changed): wl/, stamp."""
    today = datetime.date.today()
    folder = CACHE / f"worklist-{entries}"
    stamp = folder / "stamp"
    if not rebuild and stamp.exists() and stamp.read_text() == today.isoformat():
        return folder
    print(f"writing {entries} worklist files...", file=sys.stderr)
    shutil.rmtree(folder, ignore_errors=True)
    files = folder / "wl" / AE
    files.mkdir(parents=True)
    (files / "lockfile").touch()
    for i in range(entries):
        entry(i, today).save_as(files / f"{i:06d}.wl", enforce_file_format=True)
    stamp.write_text(today.isoformat())
    return folder


def build_database(folder: Path) -> Path:
    """The same entries in a node database, by ``dicomwire worklist add`` (cached)."""
    database = folder / "node.sqlite"
    done = folder / "database-done"
    if done.exists() and database.exists():
        return database
    for leftover in folder.glob("node.sqlite*"):
        leftover.unlink()
    paths = sorted(str(p) for p in (folder / "wl" / AE).glob("*.wl"))
    started = time.perf_counter()
    for start in range(0, len(paths), 2000):
        batch = paths[start : start + 2000]
        subprocess.run(
            [dicomwire_cli(), "worklist", "add", "--database", str(database), *batch],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    print(
        f"dicomwire worklist add: {len(paths)} entries in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    done.touch()
    return database


def dicomwire_cli() -> str:
    local = Path(sys.executable).parent / "dicomwire"
    return str(local) if local.exists() else "dicomwire"


# --------------------------------------------------------------------------- worklist


def queries(entries: int) -> dict[str, Any]:
    from dicomwire.services.worklist import worklist_identifier

    today = datetime.date.today().strftime("%Y%m%d")
    return {
        "today, STATION03": worklist_identifier(station_ae=station(3), date=today),
        "one Patient ID": worklist_identifier(patient_id=f"PAT{entries // 2:05d}"),
    }


def expected(entries: int) -> dict[str, int]:
    today = datetime.date.today()
    on_day = today.strftime("%Y%m%d")
    return {
        "today, STATION03": sum(
            1 for i in range(entries) if i % STATIONS == 3 and step_date(i, today) == on_day
        ),
        "one Patient ID": 1,
    }


async def our_query(port: int, identifier: Any) -> int:
    import dicomwire

    async with dicomwire.connect(
        "127.0.0.1", port, called_ae=AE, calling_ae=station(3), services=["worklist"]
    ) as client:
        return sum([1 async for _ in client.find(identifier, model="worklist")])


def time_ours(port: int, identifier: Any, repeat: int) -> tuple[list[float], set[int]]:
    async def runs() -> tuple[list[float], set[int]]:
        times, counts = [], set()
        for _ in range(repeat):
            started = time.perf_counter()
            counts.add(await our_query(port, identifier))
            times.append(time.perf_counter() - started)
        return times, counts

    return asyncio.run(runs())


def time_findscu(
    findscu: str, port: int, query_file: Path, repeat: int
) -> tuple[list[float], set[int]]:
    argv = [findscu, "-v", "-W", "-aet", station(3), "-aec", AE, "127.0.0.1", str(port)]
    times, counts = [], set()
    for _ in range(repeat):
        started = time.perf_counter()
        result = subprocess.run(
            [*argv, str(query_file)], capture_output=True, text=True, timeout=300, env=child_env()
        )
        times.append(time.perf_counter() - started)
        output = result.stdout + result.stderr
        counts.add(output.count("(Pending)") if result.returncode == 0 else -1)
    return times, counts


def wait_until_answering(port: int, identifier: Any, want: int, timeout: float = 600) -> float:
    """Seconds until the server answers ``want`` matches (its first directory scan)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            if asyncio.run(our_query(port, identifier)) == want:
                return time.perf_counter() - started
        except Exception:  # not answering yet: retry until the deadline
            pass
        time.sleep(0.2)
    raise SystemExit(f"port {port}: never answered {want} matches in {timeout} s")


def p90(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def bench_worklist(entries: int, repeat: int, rebuild: bool, database: bool) -> bool:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    findscu, wlmscpfs = shutil.which("findscu"), shutil.which("wlmscpfs")
    if not (findscu and wlmscpfs):
        raise SystemExit("DCMTK's findscu and wlmscpfs are needed (apt-get install dcmtk)")
    folder = build(entries, rebuild)
    wl = folder / "wl"
    asked = queries(entries)
    want = expected(entries)
    query_files = {}
    for n, (name, identifier) in enumerate(asked.items()):
        identifier.file_meta = FileMetaDataset()
        identifier.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        identifier.file_meta.MediaStorageSOPClassUID = WORKLIST_FIND
        identifier.file_meta.MediaStorageSOPInstanceUID = f"{ROOT}.0.{n}"
        query_files[name] = folder / f"query{n}.dcm"
        identifier.save_as(query_files[name], enforce_file_format=True)
    scratch = Path(tempfile.mkdtemp(prefix="wlbench-", dir=CACHE))
    servers: list[tuple[str, list[str]]] = [
        ("wlmscpfs -dfp", [wlmscpfs, "-dfp", str(wl), "{port}"]),
        (
            "dicomwire --worklist-dir",
            [*serve_argv(scratch / "dir"), "--port", "{port}", "--worklist-dir", str(wl)],
        ),
    ]
    if database:
        db = build_database(folder)
        argv = [*serve_argv(scratch / "db"), "--port", "{port}", "--database", str(db)]
        servers.append(("dicomwire --database", argv))
    print(
        f"\nModality Worklist C-FIND, {entries} scheduled steps ({STATIONS} stations x "
        f"{DAYS} days), {repeat} runs each; ms per query, association included"
    )
    header = f"{'server':26} {'client':20} {'query':18} {'matches':>8} {'median':>8} {'p90':>8}"
    print(header)
    print("-" * len(header))
    agree = True
    seen: dict[str, set[int]] = {name: set() for name in asked}
    try:
        for label, argv in servers:
            port = free_port()
            log = scratch / f"{label.split()[-1].lstrip('-')}.log"
            server = Receiver([a.format(port=port) for a in argv], port, log, cwd=scratch)
            server.start()
            try:
                ready = wait_until_answering(port, asked["one Patient ID"], 1)
                if label.startswith("dicomwire"):
                    print(f"  ({label}: first answer after {ready:.1f} s)", file=sys.stderr)
                for name, identifier in asked.items():
                    for client, (times, counts) in (
                        ("dicomwire client", time_ours(port, identifier, repeat)),
                        ("findscu -W", time_findscu(findscu, port, query_files[name], repeat)),
                    ):
                        seen[name] |= counts
                        shown = "/".join(str(c) for c in sorted(counts))
                        print(
                            f"{label:26} {client:20} {name:18} {shown:>8} "
                            f"{statistics.median(times) * 1e3:8.1f} {p90(times) * 1e3:8.1f}"
                        )
            finally:
                server.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for name, counts in seen.items():
        if counts != {want[name]}:
            agree = False
            print(f"WARNING: {name}: match counts {sorted(counts)}, expected {want[name]}")
    return agree


def serve_argv(storage: Path) -> list[str]:
    return [
        dicomwire_cli(),
        "serve",
        "--host",
        "127.0.0.1",
        "--aet",
        AE,
        "--storage",
        str(storage),
        "--no-fsync",
    ]


# --------------------------------------------------------------------------- MPPS


def mpps_step(n: int) -> Any:
    """An N-CREATE attribute list (PS3.4 Table F.7.2-1: every Type 1 and 2 attribute)."""
    from tests.interop._mpps_peer import new_step

    return new_step(f"{ROOT}.9.{n}", PerformedProcedureStepID=f"PPS{n}")


async def mpps_run(server: Receiver, operations: int) -> tuple[int, list[Half]]:
    """(window agreed, [N-CREATE half, N-SET half]) on one association."""
    import dicomwire
    from tests.interop._mpps_peer import completed

    steps = [mpps_step(n) for n in range(operations)]
    done = completed()
    halves: list[Half] = []
    async with dicomwire.connect(
        "127.0.0.1",
        server.port,
        called_ae=AE,
        calling_ae="CT1",
        services=["mpps"],
        window=operations,
        max_pdu_length=256 * 1024,
    ) as client:
        window = client.negotiated.maximum_invoked
        for label, requests in (
            (
                "N-CREATE IN PROGRESS",
                [
                    client.n_create(MPPS_SOP_CLASS, step, f"{ROOT}.8.{n}")
                    for n, step in enumerate(steps)
                ],
            ),
            (
                "N-SET COMPLETED",
                [client.n_set(MPPS_SOP_CLASS, f"{ROOT}.8.{n}", done) for n in range(operations)],
            ),
        ):
            server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
            started = time.perf_counter()
            results = await asyncio.gather(*requests)
            seconds = time.perf_counter() - started
            halves.append(
                Half(
                    label,
                    seconds,
                    server.cpu_seconds() - server_cpu,
                    time.process_time() - client_cpu,
                    [int(r.status) for r in results],
                )
            )
    return window, halves


@dataclass
class Half:
    label: str
    seconds: float
    server_cpu: float
    client_cpu: float
    statuses: list[int]


def bench_mpps(operations: int) -> bool:
    scratch = Path(tempfile.mkdtemp(prefix="wlbench-mpps-", dir=CACHE))
    port = free_port()
    argv = [*serve_argv(scratch / "data"), "--port", str(port)]
    argv += ["--max-operations", str(operations), "--max-pdu", str(256 * 1024)]
    server = Receiver(argv, port, scratch / "serve.log", cwd=scratch)
    server.start()
    try:
        window, halves = asyncio.run(mpps_run(server, operations))
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"\nMPPS, one association, {operations} operations outstanding at once "
        f"(window proposed {operations}, agreed {window}); CPU in seconds"
    )
    header = f"{'operation':22} {'count':>6} {'failed':>6} {'seconds':>8} {'ops/s':>7}"
    header += f" {'SCP CPU':>8} {'SCU CPU':>8}"
    print(header)
    print("-" * len(header))
    failed = 0
    for half in halves:
        bad = sum(1 for status in half.statuses if status != 0)
        failed += bad
        print(
            f"{half.label:22} {len(half.statuses):6d} {bad:6d} {half.seconds:8.2f} "
            f"{len(half.statuses) / half.seconds:7.0f} {half.server_cpu:8.2f} "
            f"{half.client_cpu:8.2f}"
        )
    if failed or window != operations:
        print(f"WARNING: {failed} operations not successful; window agreed {window}")
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000, help="worklist entries (10000)")
    parser.add_argument("--repeat", type=int, default=15, help="runs per query (15)")
    parser.add_argument("--operations", type=int, default=1024, help="MPPS window (1024)")
    parser.add_argument(
        "--no-database", action="store_true", help="leave out the database-backed server"
    )
    parser.add_argument("--no-mpps", action="store_true", help="worklist only")
    parser.add_argument("--rebuild", action="store_true", help="rewrite the cached files")
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    ok = bench_worklist(args.entries, args.repeat, args.rebuild, not args.no_database)
    if not args.no_mpps:
        ok = bench_mpps(args.operations) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
