#!/usr/bin/env python3
"""Seed the fuzz corpora: PDUs recorded from DCMTK, plus PDUs derived from the codec.

DCMTK's ``echoscu`` and ``storescu`` talk to ``storescp --inetd`` (one process per
association, on one end of a 127.0.0.1 connection: DCMTK 3.6 cannot bind one interface)
through a recording proxy listening on 127.0.0.1. Each direction's bytes are cut into PDUs
by their 6-byte headers (PS3.8 §9.3.1):

- ``corpus/pdu`` and ``corpus/negotiation``: every PDU, each in a file;
- ``corpus/command``: every command set, reassembled from its PDVs (PS3.8 Annex E);
- ``corpus/framer`` and ``corpus/acceptor``: each whole stream (requestor to SCP for the
  acceptor), prefixed with the chunking byte the targets read (0: no chunking).

The recorded sessions are kept as ``recorded/<n>-client.bin`` and ``<n>-server.bin``
(committed: the CI fuzz tests of tests/conformance/test_fuzz.py start from them too, see
:func:`targets.seeds`); ``--record`` records them again from the DCMTK installed. Without
``--record`` the kept recordings are used. Usage::

    python fuzz/seed_corpus.py [--record] [--out fuzz/corpus]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import targets

LOCALHOST = "127.0.0.1"
TIMEOUT = 30.0


def _pair() -> tuple[socket.socket, socket.socket]:
    with socket.socket() as listener:
        listener.bind((LOCALHOST, 0))
        listener.listen(1)
        ours = socket.create_connection(listener.getsockname(), timeout=10)
        theirs, _ = listener.accept()
    ours.settimeout(None)
    return ours, theirs


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: bytearray) -> None:
    try:
        while data := await reader.read(65536):
            log += data
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def _record(argv_for_port: list[str], workdir: Path) -> tuple[bytes, bytes]:
    """Run one DCMTK client through the proxy to a fresh storescp; (client, server) bytes."""
    storescp = shutil.which("storescp")
    assert storescp is not None
    ours, theirs = _pair()
    output = Path(tempfile.mkdtemp(dir=workdir))
    process = subprocess.Popen(
        [storescp, "--inetd", "-aet", "FUZZ-SCP", "-od", str(output)],
        stdin=theirs,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    theirs.close()
    client_log, server_log = bytearray(), bytearray()
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(sock=ours)
        try:
            await asyncio.gather(
                _pump(reader, up_writer, client_log), _pump(up_reader, writer, server_log)
            )
        finally:
            writer.close()
            up_writer.close()
            done.set()

    server = await asyncio.start_server(handle, LOCALHOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        argv = [a.replace("{port}", str(port)) for a in argv_for_port]
        await asyncio.to_thread(subprocess.run, argv, capture_output=True, timeout=TIMEOUT)
        await asyncio.wait_for(done.wait(), TIMEOUT)
    finally:
        server.close()
        await server.wait_closed()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return bytes(client_log), bytes(server_log)


def _dicom_file(directory: Path) -> Path:
    from dicomwire.testing.corpus import make_small, write_part10

    return write_part10(make_small(1, size=2000), directory / "small.dcm")


async def record_dcmtk(workdir: Path) -> list[tuple[bytes, bytes]]:
    echoscu, storescu = shutil.which("echoscu"), shutil.which("storescu")
    if echoscu is None or storescu is None or shutil.which("storescp") is None:
        print("DCMTK not found: codec-derived seeds only", file=sys.stderr)
        return []
    path = _dicom_file(workdir)
    sessions = [
        [echoscu, "-aet", "FUZZ-SCU", "-aec", "FUZZ-SCP", LOCALHOST, "{port}"],
        [echoscu, "-aet", "FUZZ-SCU", "-aec", "FUZZ-SCP", "-pdu", "4096", LOCALHOST, "{port}"],
        [storescu, "-aet", "FUZZ-SCU", "-aec", "FUZZ-SCP", LOCALHOST, "{port}", str(path)],
        [storescu, "-xi", "-pdu", "4096", "-aec", "FUZZ-SCP", LOCALHOST, "{port}", str(path)],
    ]
    return [await _record(argv, workdir) for argv in sessions]


def write(directory: Path, items: list[bytes]) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for item in items:
        name = hashlib.sha1(item).hexdigest()
        (directory / name).write_bytes(item)
    return len(items)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "corpus", help="corpus root"
    )
    parser.add_argument(
        "--record", action="store_true", help=f"record DCMTK sessions into {targets.RECORDED}"
    )
    args = parser.parse_args()
    if args.record:
        with tempfile.TemporaryDirectory() as scratch:
            recordings = asyncio.run(record_dcmtk(Path(scratch)))
        if recordings:
            for old in targets.RECORDED.glob("*.bin"):
                old.unlink()
            for number, (client, server) in enumerate(recordings):
                (targets.RECORDED / f"{number}-client.bin").write_bytes(client)
                (targets.RECORDED / f"{number}-server.bin").write_bytes(server)
    counts = {name: write(args.out / name, targets.seeds(name)) for name in targets.TARGETS}
    print(
        f"{len(targets.recorded_sessions())} DCMTK sessions; seeds written under {args.out}: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
