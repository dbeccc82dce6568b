"""C-MOVE throughput of the Q/R SCP next to ``dicomwire store`` of the same files.

A study of N instances (pydicom's CT_small.dcm, 39 KB, copied with new UIDs) is written
once under ``bench/.cache/qr_move/``, indexed, and served by a dicomwire node running in
a child process (Verification, Storage, QueryRetrieve over that index). One DCMTK
storescp (``--ignore``: received and answered, not written, so the disk is not what is
measured; ``--write`` writes) is the destination of every row:

- ``C-MOVE``: a dicomwire client in this process asks the node to move the study to
  storescp; seconds from sending the C-MOVE-RQ to its final response;
- ``store (core)``: :func:`~dicomwire.services.storage.scu.store_files`, what
  ``dicomwire store`` runs, in this process: seconds of the call;
- ``dicomwire store``: the command line, wall time of the process (start-up included);
- with ``--peers``, the same C-MOVE (same client, same destination) served by DCMTK
  dcmqrscp over the same files (indexed in place by dcmqridx) and by pynetdicom's qrscp
  (needs sqlalchemy; filled by C-STORE of the same files before the timed runs).

The rows of one run are interleaved, so a machine whose load changes treats them alike.
Run: ``python bench/qr_move.py [--count 1000] [--runs 3] [--write] [--peers]`` (about
20 s; with ``--peers`` about 5 min, nearly all of it pynetdicom); it prints one line per
row (median of the runs) and the C-MOVE / store (core) ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import free_port  # noqa: E402

CACHE = HERE / ".cache" / "qr_move"
LOCALHOST = "127.0.0.1"
NODE_AE, DEST_AE = "DICOMWIRE", "STORESCP"


def make_study(directory: Path, count: int) -> tuple[str, list[Path]]:
    """``count`` CT_small copies in one study (reused when already there)."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    marker = directory.parent / f"study-{count}.uid"
    if marker.exists():
        paths = sorted(directory.glob("ct*.dcm"))
        if len(paths) == count:
            return marker.read_text().strip(), paths
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    source = dcmread(get_testdata_file("CT_small.dcm"))
    study, series = generate_uid(), generate_uid()
    paths = []
    for number in range(count):
        source.StudyInstanceUID, source.SeriesInstanceUID = study, series
        source.SOPInstanceUID = source.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        source.InstanceNumber = number + 1
        path = directory / f"ct{number:05d}.dcm"
        source.save_as(path, enforce_file_format=True)
        paths.append(path)
    marker.write_text(study)
    return study, paths


def build_index(database: Path, paths: list[Path]) -> None:
    from pydicom import dcmread

    from dicomwire.services.index import SQLiteIndex

    database.unlink(missing_ok=True)
    index = SQLiteIndex(database)
    for path in paths:
        header = dcmread(path, stop_before_pixels=True)
        index.add(header, path, str(header.file_meta.TransferSyntaxUID), path.stat().st_size)
    index.close()


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((LOCALHOST, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {port}") from None
            time.sleep(0.05)


async def serve(database: Path, port: int, dest_port: int) -> None:
    """The node under test (child process): until killed."""
    from dicomwire.services.directory import RemoteAE
    from dicomwire.services.index import SQLiteIndex
    from dicomwire.services.node import Node, NodeConfig
    from dicomwire.services.qr import QueryRetrieve
    from dicomwire.services.storage import Storage, StorageConfig
    from dicomwire.services.verification import Verification

    config = NodeConfig(
        ae_titles=[NODE_AE],
        host=LOCALHOST,
        port=port,
        storage=StorageConfig(root=CACHE / "unused", discard=True),
        nodes=[RemoteAE(DEST_AE, LOCALHOST, dest_port)],
    )
    services = [Verification(), Storage(config.storage), QueryRetrieve(SQLiteIndex(database))]
    async with Node(config, services):
        await asyncio.Event().wait()


async def timed_move(port: int, study: str, called_ae: str = NODE_AE) -> tuple[float, int]:
    """Seconds from the C-MOVE-RQ to its final response (our client, whichever SCP)."""
    import dicomwire

    async with dicomwire.connect(LOCALHOST, port, called_ae=called_ae, services=["move"]) as client:
        started = time.perf_counter()
        result = await client.move(
            {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}, DEST_AE
        )
        seconds = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"C-MOVE ended {result.status}: {result.failed} failed")
    return seconds, result.completed


async def timed_store(
    dest_port: int, directory: Path, called_ae: str = DEST_AE
) -> tuple[float, int]:
    from dicomwire.services.storage.scu import store_files

    started = time.perf_counter()
    summary = await store_files(LOCALHOST, dest_port, [directory], called_ae_title=called_ae)
    seconds = time.perf_counter() - started
    if summary.failures:
        raise RuntimeError(f"store: {summary.failures} failures")
    return seconds, summary.sent


def timed_cli_store(dest_port: int, directory: Path) -> float:
    script = Path(sys.executable).with_name("dicomwire")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "dicomwire.services.cli"]
    started = time.perf_counter()
    subprocess.run(
        [
            *argv,
            "store",
            "--no-progress",
            "-aec",
            DEST_AE,
            LOCALHOST,
            str(dest_port),
            str(directory),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def dcmqrscp_server(paths: list[Path], port: int, dest_port: int) -> list[str] | None:
    """DCMTK dcmqrscp over the same files (indexed in place with dcmqridx); its argv."""
    dcmqrscp, dcmqridx = shutil.which("dcmqrscp"), shutil.which("dcmqridx")
    if dcmqrscp is None or dcmqridx is None:
        return None
    database = CACHE / "dcmqrscp"
    shutil.rmtree(database, ignore_errors=True)
    database.mkdir(parents=True)
    subprocess.run([dcmqridx, str(database), *map(str, paths)], check=True)
    config = CACHE / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 65536\nMaxAssociations = 16\n"
        f"HostTable BEGIN\nstorescp = ({DEST_AE}, {LOCALHOST}, {dest_port})\nHostTable END\n"
        "VendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\nDCMQRSCP {database} RW (1000, 4096mb) ANY\nAETable END\n"
    )
    return [dcmqrscp, "-c", str(config), str(port)]


def qrscp_server(port: int, dest_port: int) -> list[str] | None:
    """pynetdicom's qrscp (needs sqlalchemy), filled by C-STORE before the timed runs."""
    try:
        import pynetdicom  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:
        return None
    folder = CACHE / "qrscp"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = folder / "qrscp.ini"
    config.write_text(
        f"[DEFAULT]\nae_title: QRSCP\nport: {port}\nmax_pdu: 65536\nacse_timeout: 30\n"
        "dimse_timeout: 60\nnetwork_timeout: 60\nbind_address: 127.0.0.1\n"
        f"instance_location: {folder / 'instances'}\n"
        f"database_location: {folder / 'instances.sqlite'}\nlog_identifier: False\n"
        f"[{DEST_AE}]\naddress: {LOCALHOST}\nport: {dest_port}\n"
    )
    return [sys.executable, "-m", "pynetdicom", "qrscp", "-c", str(config)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="instances in the study (1000)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per row (3)")
    parser.add_argument("--write", action="store_true", help="storescp writes what it gets")
    parser.add_argument(
        "--peers", action="store_true", help="also C-MOVE from dcmqrscp and pynetdicom qrscp"
    )
    parser.add_argument(
        "--serve", nargs=3, metavar=("DB", "PORT", "DEST_PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        database, port, dest_port = args.serve
        asyncio.run(serve(Path(database), int(port), int(dest_port)))
        return 0

    storescp = shutil.which("storescp")
    if storescp is None:
        print("storescp (DCMTK) not found", file=sys.stderr)
        return 2
    study, paths = make_study(CACHE / "study", args.count)
    database = CACHE / "index.sqlite"
    build_index(database, paths)
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    dest_port = free_port()
    received = CACHE / "received"
    shutil.rmtree(received, ignore_errors=True)
    received.mkdir()
    sink = ["-od", str(received)] if args.write else ["--ignore"]
    env = {**os.environ, "TCP_NODELAY": "1"}
    # (row, argv, port, called AE, fill by C-STORE first)
    servers: list[tuple[str, list[str], int, str, bool]] = []
    node_port = free_port()
    node = [sys.executable, __file__, "--serve", str(database), str(node_port), str(dest_port)]
    servers.append(("C-MOVE dicomwire", node, node_port, NODE_AE, False))
    if args.peers:
        port = free_port()
        argv = dcmqrscp_server(paths, port, dest_port)
        if argv is not None:
            servers.append(("C-MOVE dcmqrscp", argv, port, "DCMQRSCP", False))
        port = free_port()
        argv = qrscp_server(port, dest_port)
        if argv is not None:
            servers.append(("C-MOVE pynetdicom", argv, port, "QRSCP", True))
    rows: dict[str, list[float]] = {name: [] for name, *_ in servers}
    rows |= {"store (core)": [], "dicomwire store": []}
    logs = [(CACHE / "storescp.log").open("wb")]
    processes = [
        subprocess.Popen(
            [storescp, "-aet", DEST_AE, *sink, str(dest_port)],
            stdout=logs[0],
            stderr=subprocess.STDOUT,
            env=env,
        )
    ]
    try:
        wait_for_port(dest_port)
        for name, argv, port, called, fill in servers:
            logs.append((CACHE / f"{name.split()[-1]}.log").open("wb"))
            processes.append(
                subprocess.Popen(
                    argv, stdout=logs[-1], stderr=subprocess.STDOUT, env=env, cwd=CACHE
                )
            )
            wait_for_port(port, 30)
            if fill:
                asyncio.run(timed_store(port, CACHE / "study", called))
            asyncio.run(timed_move(port, study, called))  # warm-up: first association
        for _ in range(args.runs):
            for name, _argv, port, called, _fill in servers:
                seconds, count = asyncio.run(timed_move(port, study, called))
                assert count == len(paths), (name, count)
                rows[name].append(seconds)
            seconds, count = asyncio.run(timed_store(dest_port, CACHE / "study"))
            assert count == len(paths)
            rows["store (core)"].append(seconds)
            rows["dicomwire store"].append(timed_cli_store(dest_port, CACHE / "study"))
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        for log in logs:
            log.close()
    mode = "-od" if args.write else "--ignore"
    print(f"{len(paths)} instances, {megabytes:.1f} MB, to DCMTK storescp ({mode})")
    medians = {name: statistics.median(values) for name, values in rows.items()}
    for name, median in medians.items():
        print(
            f"  {name:18s} {median:7.3f} s  {len(paths) / median:8.0f} inst/s  "
            f"{megabytes / median:7.1f} MB/s  (runs: {', '.join(f'{v:.3f}' for v in rows[name])})"
        )
    ratio = medians["C-MOVE dicomwire"] / medians["store (core)"]
    print(f"  C-MOVE dicomwire / store (core): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
