"""End-to-end C-STORE over TLS beside plain TCP, dicomwire beside DCMTK, in one run.

Not run in CI. Usage::

    .venv/bin/python bench/tls_compare.py [--count 1000] [--pdu 65536] [--repeat 1]

Sends ``--count`` CT images (512x512, 16 bits, ~0.5 MB each; ``write_corpus(dir, n, "ct")``)
over ONE association per run and prints seconds, MB/s and ratios for:

1. ``dicomwire store`` -> ``dicomwire serve --discard``, plain TCP;
2. the same over TLS (Non-Downgrading BCP 195, RSA certificates, mutual authentication);
3. the same over TLS through the relay described below (to show what the relay costs);
4. DCMTK ``storescu +tls ... +py`` -> ``storescp --ignore +tls ... +py``;
5. DCMTK ``storescu`` -> ``storescp --ignore``, plain TCP.

DCMTK 3.6.7's storescp cannot listen on 127.0.0.1 only, and nothing here listens on other
interfaces: storescp runs in inetd mode on one end of a 127.0.0.1 connection, and a relay
(two threads, 1 MiB buffers) accepts storescu on 127.0.0.1 and copies bytes to it. Runs 4
and 5 therefore include one relay hop; run 3 measures that hop for dicomwire.

Both receivers get the same maximum PDU (``--pdu``). "wall s" is the client process from
start to exit (Python start-up included for dicomwire); "transfer s" is what ``dicomwire
store`` reports for the transfer itself. DCMTK tools run with TCP_NODELAY=1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dicomwire.services.certs import make_test_pki
from dicomwire.testing.corpus import write_corpus

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import free_port

LOCALHOST = "127.0.0.1"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
TIMEOUT = 1800.0


@dataclass
class Result:
    name: str
    wall: float
    transfer: float | None
    megabytes: float

    @property
    def seconds(self) -> float:
        return self.transfer if self.transfer is not None else self.wall


def dicomwire_argv() -> list[str]:
    script = Path(sys.executable).with_name("dicomwire")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dicomwire.services.cli"]


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def run_client(argv: Sequence[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=TIMEOUT, env=DCMTK_ENV, check=False
    )
    wall = time.perf_counter() - started
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited with {done.returncode}:\n{output[-2000:]}")
    return wall, output


# --------------------------------------------------------------------------- relay


class Relay:
    """Accept one connection on 127.0.0.1 and copy bytes to and from ``upstream``."""

    def __init__(self, upstream: socket.socket) -> None:
        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.bind((LOCALHOST, 0))
        self.listener.listen(1)
        self.port = int(self.listener.getsockname()[1])
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        try:
            while n := source.recv_into(buffer):
                target.sendall(view[:n])
        except OSError:
            pass
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def _serve(self) -> None:
        self.listener.settimeout(TIMEOUT)
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        finally:
            self.listener.close()
        for sock in (client, self.upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = client
        self._threads = [
            threading.Thread(target=self._pump, args=(client, self.upstream), daemon=True),
            threading.Thread(target=self._pump, args=(self.upstream, client), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()
        for thread in self._threads:
            thread.join(5)
        for sock in (getattr(self, "_client", None), self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


def connected_pair() -> tuple[socket.socket, socket.socket]:
    with socket.socket() as listener:
        listener.bind((LOCALHOST, 0))
        listener.listen(1)
        ours = socket.create_connection(listener.getsockname(), timeout=10)
        theirs, _ = listener.accept()
    ours.settimeout(None)
    return ours, theirs


@contextlib.contextmanager
def storescp_inetd(argv: Sequence[str], log: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """storescp serving one association, reachable at the yielded 127.0.0.1 port."""
    ours, theirs = connected_pair()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            list(argv), stdin=theirs, stdout=out, stderr=subprocess.STDOUT, env=DCMTK_ENV
        )
    theirs.close()
    relay = Relay(ours)
    try:
        yield relay.port, process
        if process.wait(timeout=60) != 0:
            raise RuntimeError(f"storescp exited with {process.returncode}; see {log}")
    finally:
        stop(process)
        relay.close()


@contextlib.contextmanager
def relay_to(port: int) -> Iterator[int]:
    upstream = socket.create_connection((LOCALHOST, port), timeout=10)
    upstream.settimeout(None)
    relay = Relay(upstream)
    try:
        yield relay.port
    finally:
        relay.close()


# --------------------------------------------------------------------------- runs

_REPORTED = re.compile(r"([\d.]+) MB in ([\d.]+) s")
_SENT = re.compile(r"sent (\d+) of (\d+) instances")


def dicomwire_store(name: str, port: int, corpus: Path, tls: list[str], mb: float) -> Result:
    argv = [*dicomwire_argv(), "store", LOCALHOST, str(port), str(corpus), "--aec", "DICOMWIRE"]
    wall, output = run_client([*argv, "--no-progress", *tls])
    sent = _SENT.search(output)
    if sent is None or sent.group(1) != sent.group(2):
        raise RuntimeError(f"not every instance was stored:\n{output[-2000:]}")
    match = _REPORTED.search(output)
    return Result(name, wall, float(match.group(2)) if match else None, mb)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="CT images to send (1000)")
    parser.add_argument("--pdu", type=int, default=65536, help="receivers' max PDU (65536)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best counts")
    parser.add_argument("--workdir", type=Path, help="keep corpus and logs here")
    parser.add_argument("--no-dcmtk", action="store_true", help="skip the DCMTK runs")
    args = parser.parse_args(argv)

    temporary = None
    if args.workdir is None:
        temporary = tempfile.TemporaryDirectory(prefix="dicomwire-tls-bench-")
        work = Path(temporary.name)
    else:
        work = args.workdir
        work.mkdir(parents=True, exist_ok=True)
    try:
        return _compare(args, work)
    finally:
        if temporary is not None:
            temporary.cleanup()


def _compare(args: argparse.Namespace, work: Path) -> int:
    corpus = work / f"corpus-{args.count}"
    files = sorted(corpus.glob("*.dcm"))
    if len(files) != args.count:
        print(f"writing {args.count} CT images to {corpus} ...", file=sys.stderr)
        files = write_corpus(corpus, args.count, "ct")
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    pki = work / "pki"
    ca, _ = make_test_pki(pki, ("localhost",))
    cert, key = pki / "localhost-rsa.pem", pki / "localhost-rsa-key.pem"
    client_cert, client_key = pki / "localhost-ecdsa.pem", pki / "localhost-ecdsa-key.pem"
    wire_tls = ["--tls", "--cert", str(client_cert), "--key", str(client_key), "--ca", str(ca)]
    results: dict[str, Result] = {}

    def keep(result: Result) -> None:
        best = results.get(result.name)
        if best is None or result.wall < best.wall:
            results[result.name] = result
        print(f"  {result.name}: {result.wall:.2f} s", file=sys.stderr)

    plain_port, tls_port = free_port(), free_port()
    log = work / "serve.log"
    serve_argv = [
        *dicomwire_argv(),
        "serve",
        "--host",
        LOCALHOST,
        "--port",
        str(plain_port),
        "--tls-port",
        str(tls_port),
        "--cert",
        str(cert),
        "--key",
        str(key),
        "--ca",
        str(ca),
        "--discard",
        "--max-pdu",
        str(args.pdu),
        "--storage",
        str(work / "unused"),
    ]
    with open(log, "wb") as out:
        serve = subprocess.Popen(serve_argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "listening on port" not in log.read_text(errors="replace"):
            if serve.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dicomwire serve did not start; see {log}")
            time.sleep(0.05)
        for _ in range(args.repeat):
            keep(dicomwire_store("dicomwire plain", plain_port, corpus, [], megabytes))
            keep(dicomwire_store("dicomwire TLS", tls_port, corpus, wire_tls, megabytes))
            with relay_to(tls_port) as port:
                keep(dicomwire_store("dicomwire TLS + relay", port, corpus, wire_tls, megabytes))
    finally:
        stop(serve)

    storescu, storescp = shutil.which("storescu"), shutil.which("storescp")
    if args.no_dcmtk or storescu is None or storescp is None:
        print("DCMTK runs skipped (storescu/storescp not found or --no-dcmtk)", file=sys.stderr)
    else:
        dcmtk_tls = ["+tls", str(key), str(cert), "+cf", str(ca), "+py"]
        client_tls = ["+tls", str(client_key), str(client_cert), "+cf", str(ca), "+py"]
        for _ in range(args.repeat):
            for name, scp_tls, scu_tls in (
                ("DCMTK TLS + relay", [*dcmtk_tls, "-pw"], client_tls),
                ("DCMTK plain + relay", [], []),
            ):
                scp_argv = [storescp, "--inetd", "--ignore", "-pdu", str(args.pdu), *scp_tls]
                with storescp_inetd(scp_argv, work / "storescp.log") as (port, _):
                    scu_argv = [storescu, *scu_tls, "-aec", "ANY-SCP", LOCALHOST, str(port)]
                    wall, _ = run_client([*scu_argv, *map(str, files)])
                keep(Result(name, wall, None, megabytes))

    print_table(results, args.count, megabytes)
    return 0


def print_table(results: dict[str, Result], count: int, megabytes: float) -> None:
    reference = results.get("DCMTK TLS + relay")
    tls = results.get("dicomwire TLS")
    print(f"\n{count} CT images, {megabytes:.1f} MB, one association each run\n")
    header = (
        f"{'run':<24} {'wall s':>8} {'transfer s':>11} {'MB/s':>8} "
        f"{'vs dicomwire TLS':>17} {'vs DCMTK TLS':>13}"
    )
    print(header)
    print("-" * len(header))
    for result in results.values():
        transfer = f"{result.transfer:.2f}" if result.transfer is not None else "-"
        rate = result.megabytes / result.seconds
        versus_tls = f"{tls.seconds / result.seconds:.2f}x" if tls else "-"
        versus_dcmtk = f"{reference.seconds / result.seconds:.2f}x" if reference else "-"
        print(
            f"{result.name:<24} {result.wall:>8.2f} {transfer:>11} {rate:>8.1f} "
            f"{versus_tls:>17} {versus_dcmtk:>13}"
        )
    print(
        "\nMB/s uses 'transfer s' where dicomwire reports it, else 'wall s'. The ratio "
        "columns are speed relative to that row (>1 = faster)."
    )


if __name__ == "__main__":
    sys.exit(main())
