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
from typing import Any

CACHE = Path(__file__).resolve().parent / ".cache"
INDEX = CACHE / "qr-find-index.sqlite"
AE = "QRBENCH"
CT = "1.2.840.10008.5.1.4.1.1.2"
ROOT = "1.2.826.0.1.3680043.9.7433.50"
STUDIES, SERIES = 10, 10


def study_date(patient: int, study: int) -> str:
    day = datetime.date(2016, 1, 1) + datetime.timedelta((patient * STUDIES + study) * 37 % 3650)
    return day.strftime("%Y%m%d")


def instance(p: int, s: int, se: int) -> Any:
    """Instance ``se`` of study ``s`` of patient ``p`` (one instance per series)."""
    from pydicom import Dataset

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
    return ds


def build(path: Path, patients: int) -> None:
    """The synthetic index; SQLite's synchronous=OFF while building (a cache, not data)."""
    from dicomwire.services.index import SQLiteIndex

    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    index = SQLiteIndex(path)
    index.open()
    assert index._writer is not None
    index._writer.execute("PRAGMA synchronous=OFF")  # bench cache only: rebuilt when in doubt
    started = time.perf_counter()
    for p in range(patients):
        for s in range(STUDIES):
            for se in range(SERIES):
                ds = instance(p, s, se)
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


# --------------------------------------------------------------------------- dcmqrscp


def compare_dcmqrscp(patients: int, runs: int) -> None:
    """The same queries from DCMTK findscu to dcmqrscp and to dicomwire, same data.

    dcmqrscp's flat index.dat holds about 8 KB per instance and cannot pass 32 MiB
    (dcmqridx aborts near 4,000 instances): the comparison uses ``patients`` (30) x 100.
    """
    import shutil
    import socket

    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    findscu, dcmqrscp, dcmqridx = (shutil.which(t) for t in ("findscu", "dcmqrscp", "dcmqridx"))
    if not (findscu and dcmqrscp and dcmqridx):
        raise SystemExit(
            "DCMTK's findscu, dcmqrscp and dcmqridx are needed (apt-get install dcmtk)"
        )
    folder = CACHE / f"qr-compare-{patients}"
    files, db, index_path = folder / "files", folder / "db", folder / "index.sqlite"
    expected = patients * STUDIES * SERIES
    if not (db / "index.dat").exists() or _count(index_path) != expected:
        print(f"writing and indexing {expected} files...", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
        files.mkdir(parents=True)
        db.mkdir()
        for p in range(patients):
            for s in range(STUDIES):
                for se in range(SERIES):
                    ds = instance(p, s, se)
                    ds.file_meta = FileMetaDataset()
                    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
                    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
                    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                    ds.save_as(files / f"{p}_{s}_{se}.dcm", enforce_file_format=True)
        paths = sorted(str(f) for f in files.glob("*.dcm"))
        for start in range(0, len(paths), 500):
            subprocess.run([dcmqridx, str(db), *paths[start : start + 500]], check=True)
        build(index_path, patients)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dcmqrscp_port = probe.getsockname()[1]
    config = folder / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {dcmqrscp_port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
        "HostTable BEGIN\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\nDCMQRSCP {db} R (1000, 1024mb) ANY\nAETable END\n"
    )
    theirs = subprocess.Popen(
        [dcmqrscp, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ours = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(index_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert ours.stdout is not None
        our_port = int(ours.stdout.readline())
        time.sleep(0.5)  # dcmqrscp listening
        queries = {  # dcmqrscp matches names case-sensitively: upper case for both
            "by PatientID": {"PatientID": f"PAT{patients // 2:05d}"},
            "by wildcard PatientName": {"PatientName": "NAME001*"},
            "by date range (1 year)": {"StudyDate": "20200101-20201231"},
            f"every study ({patients * STUDIES})": {"PatientName": "NAME*"},
        }
        print(f"findscu -S against each SCP, {expected} instances, median of {runs} runs (ms)")
        print(f"{'query':28} {'matches':>8} {'dicomwire':>10} {'dcmqrscp':>10}")
        for name, keys in queries.items():
            row = []
            counts = set()
            for ae, port in ((AE, our_port), ("DCMQRSCP", dcmqrscp_port)):
                argv = [findscu, "-v", "-S", "-aec", ae, "127.0.0.1", str(port)]
                for keyword, value in identifier(keys).items():
                    argv += ["-k", f"{keyword}={value}" if value else keyword]
                times = []
                for _ in range(runs):
                    started = time.perf_counter()
                    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
                    times.append(time.perf_counter() - started)
                    output = result.stdout + result.stderr
                    counts.add(output.count("(Pending)"))
                row.append(statistics.median(times) * 1e3)
            shown = "/".join(str(c) for c in sorted(counts))
            print(f"{name:28} {shown:>8} {row[0]:10.1f} {row[1]:10.1f}")
    finally:
        theirs.terminate()
        theirs.wait(timeout=15)
        if ours.stdin is not None:
            ours.stdin.close()
        ours.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument(
        "--dcmqrscp",
        type=int,
        metavar="PATIENTS",
        help="compare with DCMTK dcmqrscp over PATIENTS x 100 instances (30 fits its index)",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    if args.load is not None:
        asyncio.run(load(args.load))
        return
    if args.dcmqrscp is not None:
        compare_dcmqrscp(args.dcmqrscp, args.runs)
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

    if not path.exists():
        return -1
    index = SQLiteIndex(path)
    try:
        return index.count()
    finally:
        index.close()


if __name__ == "__main__":
    main()
