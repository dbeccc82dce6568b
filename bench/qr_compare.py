"""Study-level C-FIND latency against Q/R SCPs over the same synthetic data (issue 15).

Not run in CI. Usage::

    .venv/bin/python bench/qr_compare.py                       # 20x5x2 = 200 instances
    .venv/bin/python bench/qr_compare.py --large               # 1,000 x 10 x 10 = 100,000
    .venv/bin/python bench/qr_compare.py --patients 100 --studies 10 --series 5 --repeat 50
    .venv/bin/python bench/qr_compare.py --targets dcmqrscp

A synthetic data set (``--patients`` x ``--studies`` per patient x ``--series`` per study,
``--instances`` per series; small 8x8 CT images) is written once under
``bench/.cache/qr/<shape>/files`` and loaded into each target: DCMTK ``dcmqrscp`` (indexed
with ``dcmqridx``, quota raised to the data set) and pynetdicom ``qrscp`` (its SQLite
database filled through its own ``db`` module, as its C-STORE handler would). Then, on one
association per target and query kind, ``--repeat`` study-level C-FINDs (Study Root) with
dicomwire's client, each with a random patient or date:

- ``patient-id``: ``PatientID=PIDnnnnn``;
- ``name-wildcard``: ``PatientName=PATnnnnn*`` (a prefix wildcard);
- ``date-range``: ``StudyDate=YYYYMMDD-YYYYMMDD`` (one week).

Printed: median and 90th percentile milliseconds per query (request sent to final
response, all matches received) and the mean number of matches (pynetdicom's qrscp answers
a study once per instance below it, so its count is higher for the same studies).

A target is one entry of :data:`TARGETS`: a name and a context manager that serves the
data set and yields (port, AE title); ``dicomwire`` is ``dicomwire serve`` over the data
set's folder, indexed once with ``dicomwire index rebuild``.

``--move N`` (50 by default; the issue's run is 1000) adds one study of N CT images
(512x512, ``dicomwire.testing.corpus``) and times a C-MOVE of it from each target to a
``dicomwire serve --discard`` receiver (seconds, instances/s, MB/s of the files).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from peers import LOCALHOST, child_env, free_port  # noqa: E402

CACHE = BENCH / ".cache" / "qr"
UID_ROOT = "1.2.826.0.1.3680043.10.1515"
FIRST_DAY = 737425  # 2020-01-01 as a proleptic ordinal
DAYS = 6 * 365
#: dcmqrscp's hard limit of studies per storage area (DCMTK dcmqrdbi.h).
DCMQRSCP_MAX_STUDIES = 500


@dataclass(frozen=True)
class Shape:
    patients: int
    studies: int
    series: int
    instances: int
    move: int = 0  # CT images (512x512) of one more study, for the C-MOVE measurement

    @property
    def total(self) -> int:
        return self.patients * self.studies * self.series * self.instances + self.move

    @property
    def study_count(self) -> int:
        return self.patients * self.studies + (1 if self.move else 0)

    @property
    def key(self) -> str:
        return f"{self.patients}x{self.studies}x{self.series}x{self.instances}m{self.move}"


#: The study the C-MOVE measurement retrieves (dicomwire.testing.corpus numbering).
MOVE_STUDY = 900001


def study_date(patient: int, study: int) -> str:
    from datetime import date

    day = (patient * 7919 + study * 104729) % DAYS
    return date.fromordinal(FIRST_DAY + day).strftime("%Y%m%d")


def write_data_set(shape: Shape) -> list[Path]:
    """The data set's files (written once per shape; ``.done`` marks a complete set)."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    root = CACHE / shape.key / "files"
    done = root / ".done"
    if done.exists():
        return sorted(root.rglob("*.dcm"))
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    started = time.perf_counter()
    template = Dataset()
    template.SpecificCharacterSet = "ISO_IR 100"
    template.SOPClassUID = CTImageStorage
    template.Modality = "CT"
    template.Rows = template.Columns = 8
    template.BitsAllocated = template.BitsStored = 16
    template.HighBit = 15
    template.PixelRepresentation = 0
    template.SamplesPerPixel = 1
    template.PhotometricInterpretation = "MONOCHROME2"
    template.PixelData = bytes(128)
    files = []
    for p in range(shape.patients):
        folder = root / f"{p:05d}"
        folder.mkdir()
        for s in range(shape.studies):
            for r in range(shape.series):
                for i in range(shape.instances):
                    ds = template.copy()
                    ds.PatientID = f"PID{p:05d}"
                    ds.PatientName = f"PAT{p:05d}^TEST"
                    ds.PatientBirthDate = "19700101"
                    ds.PatientSex = "O"
                    ds.StudyInstanceUID = f"{UID_ROOT}.{p}.{s}"
                    ds.StudyDate = study_date(p, s)
                    ds.StudyTime = "120000"
                    ds.StudyID = str(s)
                    ds.AccessionNumber = f"A{p:05d}{s:02d}"
                    ds.SeriesInstanceUID = f"{UID_ROOT}.{p}.{s}.{r}"
                    ds.SeriesNumber = r + 1
                    ds.SOPInstanceUID = f"{UID_ROOT}.{p}.{s}.{r}.{i}"
                    ds.InstanceNumber = i + 1
                    meta = FileMetaDataset()
                    meta.MediaStorageSOPClassUID = CTImageStorage
                    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                    meta.TransferSyntaxUID = ExplicitVRLittleEndian
                    ds.file_meta = meta
                    path = folder / f"{s}-{r}-{i}.dcm"
                    ds.save_as(path, enforce_file_format=True)
                    files.append(path)
    if shape.move:
        from dicomwire.testing.corpus import write_corpus

        files += write_corpus(root / "move", shape.move, "ct", study=MOVE_STUDY)
    done.touch()
    print(f"wrote {len(files)} files in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return files


def wait_for(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError):
            socket.create_connection((LOCALHOST, port), timeout=0.5).close()
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {port}")
        time.sleep(0.1)


@contextlib.contextmanager
def running(argv: list[str], port: int, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=child_env())
    try:
        wait_for(port, process)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------- targets


@contextlib.contextmanager
def serve_dcmqrscp(
    shape: Shape, files: list[Path], destinations: dict[str, int]
) -> Iterator[tuple[int, str]]:
    """DCMTK dcmqrscp: index.dat built by dcmqridx (once per shape), quota raised.

    Its index holds at most 500 studies per storage area (``DB_UpperMaxStudies`` in
    DCMTK's dcmqrdbi.h; beyond that it drops the oldest studies, and dcmqridx 3.6.7
    crashed): a larger data set is refused rather than silently truncated.
    """
    studies = shape.study_count
    if studies > DCMQRSCP_MAX_STUDIES:
        raise RuntimeError(
            f"dcmqrscp holds at most {DCMQRSCP_MAX_STUDIES} studies per storage area "
            f"(DB_UpperMaxStudies); this data set has {studies}"
        )
    work = CACHE / shape.key / "dcmqrscp"
    database = work / "db"
    if not (work / ".done").exists():
        shutil.rmtree(work, ignore_errors=True)
        database.mkdir(parents=True)
        started = time.perf_counter()
        for start in range(0, len(files), 2000):
            chunk = [str(f) for f in files[start : start + 2000]]
            with (work / "dcmqridx.log").open("ab") as log:
                subprocess.run(["dcmqridx", str(database), *chunk], check=True, stderr=log)
        (work / ".done").touch()
        print(f"dcmqridx: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    port = free_port()
    config = work / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 131072\nMaxAssociations = 16\n"
        "HostTable BEGIN\n"
        + "".join(
            f"{ae.lower()} = ({ae}, {LOCALHOST}, {dest})\n" for ae, dest in destinations.items()
        )
        + "HostTable END\nVendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\nQRSCP {database} RW ({DCMQRSCP_MAX_STUDIES}, 1024mb) ANY\n"
        "AETable END\n"
    )
    with running(["dcmqrscp", "-c", str(config), str(port)], port, work / "dcmqrscp.log"):
        yield port, "QRSCP"


@contextlib.contextmanager
def serve_pynetdicom(
    shape: Shape, files: list[Path], destinations: dict[str, int]
) -> Iterator[tuple[int, str]]:
    """pynetdicom qrscp: its SQLite database filled with its own model (once per shape)."""
    work = CACHE / shape.key / "qrscp"
    database = work / "instances.sqlite"
    if not (work / ".done").exists():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        started = time.perf_counter()
        fill_pynetdicom_database(database, files)
        (work / ".done").touch()
        print(f"qrscp database: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    port = free_port()
    config = work / "qrscp.ini"
    config.write_text(
        f"[DEFAULT]\nae_title: QRSCP\nport: {port}\nmax_pdu: 131072\nacse_timeout: 30\n"
        f"dimse_timeout: 300\nnetwork_timeout: 300\nbind_address: {LOCALHOST}\n"
        f"instance_location: {work / 'instances'}\ndatabase_location: {database}\n"
        "log_identifier: False\n"
        + "".join(
            f"[{ae}]\naddress: {LOCALHOST}\nport: {dest}\n" for ae, dest in destinations.items()
        )
    )
    argv = [sys.executable, "-m", "pynetdicom", "qrscp", "-c", str(config)]
    with running(argv, port, work / "qrscp.log"):
        yield port, "QRSCP"


def fill_pynetdicom_database(database: Path, files: list[Path]) -> None:
    """Rows as qrscp's ``db.add_instance`` writes them, in one transaction."""
    from pydicom import dcmread
    from pynetdicom.apps.qrscp import db
    from sqlalchemy.orm import sessionmaker

    engine = db.create(f"sqlite:///{database}")
    session = sessionmaker(bind=engine)()
    columns = [
        ("patient_id", "PatientID"),
        ("patient_name", "PatientName"),
        ("study_instance_uid", "StudyInstanceUID"),
        ("study_date", "StudyDate"),
        ("study_time", "StudyTime"),
        ("accession_number", "AccessionNumber"),
        ("study_id", "StudyID"),
        ("series_instance_uid", "SeriesInstanceUID"),
        ("modality", "Modality"),
        ("series_number", "SeriesNumber"),
        ("sop_instance_uid", "SOPInstanceUID"),
        ("instance_number", "InstanceNumber"),
    ]
    for path in files:
        ds = dcmread(path, stop_before_pixels=True)
        instance = db.Instance()
        for attribute, keyword in columns:
            value = ds.get(keyword)
            setattr(instance, attribute, str(value) if keyword == "PatientName" else value)
        instance.filename = str(path)
        instance.transfer_syntax_uid = str(ds.file_meta.TransferSyntaxUID)
        instance.sop_class_uid = str(ds.SOPClassUID)
        session.add(instance)
    session.commit()
    session.close()


@contextlib.contextmanager
def serve_dicomwire(
    shape: Shape, files: list[Path], destinations: dict[str, int]
) -> Iterator[tuple[int, str]]:
    """``dicomwire serve`` over the data set's own folder, indexed by ``dicomwire index rebuild``.

    The index (``--database``, once per shape) lists the files where they are, so nothing
    is copied; the node serves every default service, as deployed.
    """
    root = CACHE / shape.key / "files"
    work = CACHE / shape.key / "dicomwire"
    database = work / "node.sqlite"
    script = str(Path(sys.executable).with_name("dicomwire"))
    if not (work / ".done").exists():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        started = time.perf_counter()
        argv = [script, "index", "rebuild", str(root), "--database", str(database)]
        with (work / "rebuild.log").open("wb") as log:
            subprocess.run(argv, check=True, stdout=log, stderr=subprocess.STDOUT)
        (work / ".done").touch()
        print(f"dicomwire index rebuild: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    port = free_port()
    argv = [script, "serve", "--aet", "QRSCP", "--host", LOCALHOST, "--port", str(port)]
    argv += ["--storage", str(root), "--database", str(database), "--max-pdu", "131072"]
    argv += ["--idle-timeout", str(MOVE_TIMEOUT)]
    for ae, dest in destinations.items():
        argv += ["--node", f"{ae}@{LOCALHOST}:{dest}"]
    with running(argv, port, work / "serve.log"):
        yield port, "QRSCP"


#: (shape, its files, C-MOVE destinations AE -> port) -> serving, yields (port, AE title)
Target = Callable[[Shape, list[Path], dict[str, int]], AbstractContextManager[tuple[int, str]]]

#: name -> how to serve the data set.
TARGETS: dict[str, Target] = {
    "dicomwire": serve_dicomwire,
    "dcmqrscp": serve_dcmqrscp,
    "pynetdicom-qrscp": serve_pynetdicom,
}


# --------------------------------------------------------------------------- queries


def queries(kind: str, shape: Shape, rng: random.Random) -> dict[str, object]:
    from datetime import date, timedelta

    patient = rng.randrange(shape.patients)
    query: dict[str, object] = {
        "QueryRetrieveLevel": "STUDY",
        "StudyInstanceUID": "",
        "StudyDate": "",
        "PatientName": "",
        "PatientID": "",
    }
    if kind == "patient-id":
        query["PatientID"] = f"PID{patient:05d}"
    elif kind == "name-wildcard":
        query["PatientName"] = f"PAT{patient:05d}*"
    else:
        start = date.fromordinal(FIRST_DAY + rng.randrange(DAYS - 7))
        end = start + timedelta(days=6)
        query["StudyDate"] = f"{start:%Y%m%d}-{end:%Y%m%d}"
    return query


KINDS = ("patient-id", "name-wildcard", "date-range")


async def measure(
    port: int, aet: str, kind: str, shape: Shape, repeat: int, seed: int
) -> tuple[list[float], list[int]]:
    import dicomwire

    rng = random.Random(seed)
    seconds: list[float] = []
    counts: list[int] = []
    async with dicomwire.connect(
        LOCALHOST, port, called_ae=aet, calling_ae="BENCH", services=["find"]
    ) as assoc:
        for _ in range(repeat):
            query = queries(kind, shape, rng)
            started = time.perf_counter()
            count = 0
            async for _match in assoc.find(query):
                count += 1
            seconds.append(time.perf_counter() - started)
            counts.append(count)
    return seconds, counts


async def measure_move(port: int, aet: str, study: str, runs: int) -> list[tuple[float, int, int]]:
    """(seconds, completed, failed) of each C-MOVE of ``study`` to the receiver."""
    import dicomwire

    query = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}
    results = []
    patient = dicomwire.Timeouts(dimse=MOVE_TIMEOUT, network_idle=MOVE_TIMEOUT)  # a slow SCP
    async with dicomwire.connect(
        LOCALHOST, port, called_ae=aet, calling_ae="BENCH", services=["move"], timeouts=patient
    ) as assoc:
        for _ in range(runs):
            started = time.perf_counter()
            result = await assoc.move(query, RECEIVER_AE)
            results.append((time.perf_counter() - started, result.completed, result.failed))
    return results


RECEIVER_AE = "BENCHRCV"
#: Seconds a C-MOVE may go without a response (and the receiver without data).
MOVE_TIMEOUT = 600.0


@contextlib.contextmanager
def receiver() -> Iterator[int]:
    """``dicomwire serve --discard``: the C-MOVE destination, answering without writing."""
    port = free_port()
    script = Path(sys.executable).with_name("dicomwire")
    argv = [str(script), "serve", "--discard", "--aet", RECEIVER_AE, "--port", str(port)]
    argv += ["--host", LOCALHOST, "--idle-timeout", str(MOVE_TIMEOUT)]
    CACHE.mkdir(parents=True, exist_ok=True)
    with running(argv, port, CACHE / "receiver.log"):
        yield port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--studies", type=int, default=5, help="studies per patient")
    parser.add_argument("--series", type=int, default=2, help="series per study")
    parser.add_argument("--instances", type=int, default=1, help="instances per series")
    parser.add_argument(
        "--large", action="store_true", help="the issue's 1,000 x 10 x 10 = 100,000 instances"
    )
    parser.add_argument("--repeat", type=int, default=20, help="queries per kind (20)")
    parser.add_argument(
        "--move",
        type=int,
        default=50,
        metavar="N",
        help="C-MOVE a study of N CT images (512x512, ~0.5 MB each) too (50; 0 = none; "
        "the issue's run: 1000)",
    )
    parser.add_argument("--move-runs", type=int, default=3, help="C-MOVEs per target (3)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help="comma-separated: " + ", ".join(TARGETS)
    )
    args = parser.parse_args(argv)
    if args.large:
        args.patients, args.studies, args.series, args.instances = 1000, 10, 10, 1
    shape = Shape(args.patients, args.studies, args.series, args.instances, args.move)
    files = write_data_set(shape)
    print(
        f"data set {shape.key}: {shape.total} instances, "
        f"{shape.study_count} studies; {args.repeat} queries per kind"
    )
    moved = [f for f in files if f.parent.name == "move"]
    moved_bytes = sum(f.stat().st_size for f in moved)
    if moved:
        from pydicom import dcmread

        move_study = str(dcmread(moved[0], stop_before_pixels=True).StudyInstanceUID)
    print(f"{'target':<18} {'query':<14} {'median ms':>10} {'p90 ms':>9} {'matches':>8}")
    failed = False
    moves: list[str] = []
    stack = contextlib.ExitStack()
    destinations = {RECEIVER_AE: stack.enter_context(receiver())} if shape.move else {}
    for name in args.targets.split(","):
        serve = TARGETS[name]
        try:
            with serve(shape, files, destinations) as (port, aet):
                for kind in KINDS:
                    seconds, counts = asyncio.run(
                        measure(port, aet, kind, shape, args.repeat, args.seed)
                    )
                    p90 = statistics.quantiles(seconds, n=10)[-1] if len(seconds) > 1 else 0
                    print(
                        f"{name:<18} {kind:<14} {statistics.median(seconds) * 1e3:>10.2f} "
                        f"{p90 * 1e3:>9.2f} {statistics.mean(counts):>8.1f}",
                        flush=True,
                    )
                if shape.move:
                    runs = asyncio.run(measure_move(port, aet, move_study, args.move_runs))
                    seconds = statistics.median(r[0] for r in runs)
                    completed, failures = runs[-1][1], runs[-1][2]
                    moves.append(
                        f"{name:<18} {seconds:>8.2f} {shape.move / seconds:>8.1f} "
                        f"{moved_bytes / 1e6 / seconds:>7.1f} {completed:>9} {failures:>6}"
                    )
                    failed = failed or failures > 0 or completed != shape.move
        except Exception as exc:  # one target failing does not hide the others
            print(f"{name:<18} failed: {str(exc)[:300]}", flush=True)
            failed = True
    stack.close()
    if moves:
        print(
            f"\nC-MOVE of one study of {shape.move} CT images ({moved_bytes / 1e6:.0f} MB) "
            f"to dicomwire serve --discard, median of {args.move_runs}:"
        )
        print(
            f"{'target':<18} {'seconds':>8} {'inst/s':>8} {'MB/s':>7} {'completed':>9} "
            f"{'failed':>6}"
        )
        print("\n".join(moves))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
