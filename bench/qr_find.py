"""C-FIND SCP latency over a 100,000-instance index (PS3.4 C.4.1; issue 15's benchmark).

Usage: python bench/qr_find.py [--runs N] [--rebuild] [--patients P]

Builds (once; cached in bench/.cache/qr-find-index.sqlite) a synthetic index of P
patients (1000) x 10 studies x 10 series x 1 instance with ``SQLiteIndex.add``, serves it
from a dicomwire node in a child process (Verification, Storage, QueryRetrieve) and times,
from one ``dicomwire.connect`` association, study-level Study Root C-FINDs:

- by Patient ID (10 matches), by wild-card Patient's Name (100), by a one-month date
  range (~80), and a wild card matching 100 patients (``NAME00*``: 1000 studies);

each run ``--runs`` times (7), reporting the median and the best wall time from the
C-FIND-RQ to the final response. Then C-ECHO round trips on a second association while
the 1000-match query runs, against idle ones: the node's event loop is not blocked by a
scan (scans run in worker threads).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
INDEX = CACHE / "qr-find-index.sqlite"
AE = "QRBENCH"
CT = "1.2.840.10008.5.1.4.1.1.2"
ROOT = "1.2.826.0.1.3680043.9.7433.50"
STUDIES, SERIES = 10, 10


def study_date(patient: int, study: int) -> str:
    day = datetime.date(2016, 1, 1) + datetime.timedelta((patient * STUDIES + study) * 37 % 3650)
    return day.strftime("%Y%m%d")


def build(path: Path, patients: int) -> None:
    """The synthetic index; SQLite's synchronous=OFF while building (a cache, not data)."""
    from pydicom import Dataset

    from dicomwire.services.index import SQLiteIndex

    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    index = SQLiteIndex(path)
    index._db.execute("PRAGMA synchronous=OFF")  # bench cache only: rebuilt when in doubt
    started = time.perf_counter()
    for p in range(patients):
        for s in range(STUDIES):
            for se in range(SERIES):
                ds = Dataset()
                ds.SpecificCharacterSet = "ISO_IR 100"
                ds.PatientName = f"NAME{p:04d}^GIVEN{p % 7}"
                ds.PatientID = f"PAT{p:05d}"
                ds.PatientBirthDate = f"19{50 + p % 50:02d}0101"
                ds.PatientSex = "MF"[p % 2]
                ds.StudyInstanceUID = f"{ROOT}.{p}.{s}"
                ds.StudyDate = study_date(p, s)
                ds.StudyTime = f"{8 + s:02d}1500"
                ds.AccessionNumber = f"ACC{p:05d}{s}"
                ds.StudyDescription = ("HEAD", "CHEST", "ABDOMEN", "KNEE")[s % 4]
                ds.SeriesInstanceUID = f"{ds.StudyInstanceUID}.{se}"
                ds.Modality = ("CT", "MR", "SR")[se % 3]
                ds.SeriesNumber = se + 1
                ds.SOPClassUID = CT
                ds.SOPInstanceUID = f"{ds.SeriesInstanceUID}.1"
                ds.InstanceNumber = 1
                index.add(ds, Path(f"/data/{ds.SOPInstanceUID}.dcm"), "1.2.840.10008.1.2.1", 1)
        if p % 100 == 99:
            print(f"  indexed {(p + 1) * STUDIES * SERIES} instances", file=sys.stderr)
    print(f"built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    index.close()


def serve(path: Path) -> None:
    """Child process: the node, its port on stdout, until stdin closes."""
    from dicomwire.services.index import SQLiteIndex
    from dicomwire.services.node import Node, NodeConfig
    from dicomwire.services.qr import QueryRetrieve
    from dicomwire.services.storage import Storage, StorageConfig
    from dicomwire.services.verification import Verification

    async def main() -> None:
        config = NodeConfig(
            ae_titles=[AE],
            host="127.0.0.1",
            port=0,
            storage=StorageConfig(root=CACHE / "qr-unused", discard=True),
        )
        index = SQLiteIndex(path)
        services = [Verification(), Storage(config.storage), QueryRetrieve(index)]
        async with Node(config, services) as node:
            print(node.port, flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


QUERIES = {
    "by PatientID": {"PatientID": "PAT00500"},
    "by wildcard PatientName": {"PatientName": "name050*"},
    "by date range (1 month)": {"StudyDate": "20200301-20200331"},
    "wildcard scan (1000 studies)": {"PatientName": "NAME00*"},
}


async def measure(port: int, runs: int) -> None:
    import dicomwire

    async with dicomwire.connect("127.0.0.1", port, called_ae=AE, services=["find"]) as assoc:
        print(f"{'query':32} {'matches':>8} {'median ms':>10} {'best ms':>9}")
        for name, keys in QUERIES.items():
            times, count = [], 0
            for _ in range(runs):
                started = time.perf_counter()
                count = sum([1 async for _ in assoc.find(identifier(keys))])
                times.append(time.perf_counter() - started)
            print(
                f"{name:32} {count:8d} {statistics.median(times) * 1e3:10.1f} "
                f"{min(times) * 1e3:9.1f}"
            )

    # The load comes from another process, so the round trips measure the node alone.
    async with dicomwire.connect("127.0.0.1", port, called_ae=AE) as echo_assoc:

        async def echoes(until: asyncio.Future[object]) -> list[float]:
            found = []
            while not until.done():
                started = time.perf_counter()
                await echo_assoc.echo()
                found.append(time.perf_counter() - started)
                await asyncio.sleep(0.005)
            return found

        idle = await echoes(asyncio.ensure_future(asyncio.sleep(1.0)))
        load = await asyncio.create_subprocess_exec(sys.executable, __file__, "--load", str(port))
        busy = await echoes(asyncio.ensure_future(load.wait()))
    for label, rtts in (("idle", idle), ("during 1000-match C-FINDs", busy)):
        print(
            f"C-ECHO round trip {label:28} median {statistics.median(rtts) * 1e3:6.2f} ms, "
            f"max {max(rtts) * 1e3:6.2f} ms ({len(rtts)} echoes)"
        )


def identifier(keys: dict[str, str]) -> dict[str, str]:
    return {
        "QueryRetrieveLevel": "STUDY",
        "StudyInstanceUID": "",
        "PatientName": "",
        "PatientID": "",
        "StudyDate": "",
        "StudyDescription": "",
        "AccessionNumber": "",
        **keys,
    }


async def load(port: int) -> None:
    """Child process: the 1000-match query three times on one association."""
    import dicomwire

    async with dicomwire.connect("127.0.0.1", port, called_ae=AE, services=["find"]) as assoc:
        for _ in range(3):
            _ = [m async for m in assoc.find(identifier(QUERIES["wildcard scan (1000 studies)"]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    if args.load is not None:
        asyncio.run(load(args.load))
        return
    expected = args.patients * STUDIES * SERIES
    if args.rebuild or not INDEX.exists() or _count(INDEX) != expected:
        print(f"building the index ({expected} instances)...", file=sys.stderr)
        build(INDEX, args.patients)
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(INDEX)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        print(f"dicomwire C-FIND SCP, {expected} instances, {args.runs} runs each")
        asyncio.run(measure(port, args.runs))
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _count(path: Path) -> int:
    from dicomwire.services.index import SQLiteIndex

    index = SQLiteIndex(path)
    try:
        return index.count()
    finally:
        index.close()


if __name__ == "__main__":
    main()
