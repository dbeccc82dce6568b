"""Processes for bench/compare.py: finding the peers, running receivers and senders, measuring.

- :class:`Tools` finds dicomwire (this venv's console script), DCMTK (storescu/storescp on
  PATH, never the pynetdicom apps of the same name in the venv) and pynetdicom;
- :class:`Receiver` runs a server in its own session (process group) and always stops it;
  it reports the CPU seconds and peak RSS (VmHWM) of its process tree from /proc;
- :func:`run_sender` runs one or more sender processes (waves of concurrent processes,
  one wave after the other) with a deadline, and returns wall seconds, CPU seconds
  (``os.wait4`` rusage of each child) and every exit status and output.

Linux only (/proc). Every process started here is stopped by its own id or group id.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOCALHOST = "127.0.0.1"
BENCH = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
#: DCMTK's tools take -pdu 4096..131072 only.
DCMTK_PDU_RANGE = (4096, 131072)


def child_env() -> dict[str, str]:
    """The environment of every peer: TCP_NODELAY=1 (DCMTK's Nagle switch), no colour."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    env.pop("PYTHONDEVMODE", None)
    return env


# --------------------------------------------------------------------------- tools


def _dcmtk_tool(name: str) -> str | None:
    """DCMTK's ``name`` on PATH, skipping this venv's bin (pynetdicom installs a storescu)."""
    venv_bin = Path(sys.executable).parent.resolve()
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry or Path(entry).resolve() == venv_bin:
            continue
        found = shutil.which(name, path=entry)
        if found is None:
            continue
        try:
            out = subprocess.run(
                [found, "--version"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "dcmtk" in (out.stdout + out.stderr).lower():
            return found
    return None


def compile_bytecode() -> None:
    """Compile dicomwire's bytecode once, as ``pip install`` does for an installed package.

    An editable install under ``PYTHONDONTWRITEBYTECODE=1`` (set on some CI machines)
    would otherwise compile every module from source at every start (about 0.1 s).
    """
    import compileall

    import dicomwire

    for directory in dicomwire.__path__:
        compileall.compile_dir(directory, quiet=1)


@dataclass
class Tools:
    """What this machine can run; a missing peer turns its rows into n/a."""

    python: str = sys.executable
    dicomwire: list[str] = field(default_factory=list)
    storescu: str | None = None
    storescp: str | None = None
    echoscu: str | None = None
    dcmtk_version: str = ""
    pynetdicom: bool = False
    pynetdicom_version: str = ""
    serve_workers: bool = False

    @classmethod
    def discover(cls) -> Tools:
        tools = cls()
        compile_bytecode()
        script = Path(sys.executable).with_name("dicomwire")
        tools.dicomwire = (
            [str(script)] if script.exists() else [sys.executable, "-m", "dicomwire.services.cli"]
        )
        tools.storescu = _dcmtk_tool("storescu")
        tools.storescp = _dcmtk_tool("storescp")
        tools.echoscu = _dcmtk_tool("echoscu")
        if tools.storescu:
            out = subprocess.run(
                [tools.storescu, "--version"], capture_output=True, text=True, check=False
            )
            tools.dcmtk_version = next(
                (line.strip("$ ").split(" ", 1)[1] for line in out.stdout.splitlines() if line),
                "",
            )
        if importlib.util.find_spec("pynetdicom") is not None:
            import pynetdicom

            tools.pynetdicom = True
            tools.pynetdicom_version = pynetdicom.__version__
        helptext = subprocess.run(
            [*tools.dicomwire, "serve", "--help"], capture_output=True, text=True, check=False
        ).stdout
        tools.serve_workers = "--workers" in helptext
        return tools

    def has(self, tool: str) -> bool:
        if tool == "dcmtk":
            return self.storescu is not None and self.storescp is not None
        if tool == "pynetdicom":
            return self.pynetdicom
        return bool(self.dicomwire)

    def script(self, name: str) -> list[str]:
        """A helper script of bench/ run by this interpreter."""
        return [self.python, str(BENCH / name)]


# --------------------------------------------------------------------------- /proc


def free_port() -> int:
    """A TCP port free on every interface (DCMTK's storescp binds them all)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        port: int = sock.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(child) for child in f.read().split())
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (live and not yet reaped)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


def _cpu_of(pid: int) -> float:
    """utime + stime of ``pid`` and of its reaped children, in seconds (0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14..17.
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def tree_cpu(pid: int) -> float:
    return sum(_cpu_of(p) for p in process_tree(pid))


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_peak_rss(pid: int) -> int:
    """Sum of VmHWM (peak resident set) over the live process tree, in bytes."""
    return sum(_status_kib(p, "VmHWM") for p in process_tree(pid)) * 1024


# --------------------------------------------------------------------------- receivers

_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _group_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


def _stop_group(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the receiver's process group (it leads its own session), then SIGKILL."""
    descendants = process_tree(process.pid)[1:] if process.poll() is None else []
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=grace)
    # Children (storescp --fork, serve --workers) that outlived their parent: only those
    # still in the receiver's process group, so a recycled pid is never touched.
    for pid in descendants:
        if _group_of(pid) == process.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _LIVE.pop(process.pid, None)


def stop_all_receivers() -> None:
    for process in list(_LIVE.values()):
        _stop_group(process)


atexit.register(stop_all_receivers)


class Receiver:
    """A server process on ``port``: started, waited for, measured and always stopped."""

    def __init__(
        self,
        argv: Sequence[str],
        port: int,
        log: Path,
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.log = log
        self.cwd = cwd
        #: The process's environment: :func:`child_env` unless given.
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=self.env if self.env is not None else child_env(),
                start_new_session=True,
            )
        _LIVE[self.process.pid] = self.process
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"receiver exited with status {self.process.returncode}")
            try:
                with socket.create_connection((LOCALHOST, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nothing listens on port {self.port}") from None
                time.sleep(0.05)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        return tree_cpu(self.pid)

    def peak_rss(self) -> int:
        return tree_peak_rss(self.pid)

    def stop(self) -> str:
        """Stop it; return what it logged (the pynetdicom SCP prints its count)."""
        if self.process is not None:
            _stop_group(self.process)
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- senders


@dataclass
class SenderRun:
    """One timed run of a sender: wall seconds, CPU seconds, exit statuses, output."""

    seconds: float
    cpu: float
    returncodes: list[int]
    output: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return not self.timed_out and bool(self.returncodes) and not any(self.returncodes)


def _reap(process: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Block until ``process`` exits; its exit code and CPU seconds (user + sys)."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime


def run_sender(waves: Sequence[Sequence[Sequence[str]]], log: Path, timeout: float) -> SenderRun:
    """Run each wave's processes at once, waves one after the other, all within ``timeout``.

    Wall time runs from the first spawn to the last exit. ``os.wait4`` blocks (no polling
    delay) and gives each child's own rusage; a timer kills whatever still runs at the
    deadline.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    env = child_env()
    codes: list[int] = []
    cpu = 0.0
    running: list[subprocess.Popen[bytes]] = []
    lock = threading.Lock()
    expired = threading.Event()

    def kill_running() -> None:
        expired.set()
        with lock:
            for process in running:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()

    timer = threading.Timer(timeout, kill_running)
    timer.daemon = True
    with open(log, "wb") as out:
        timer.start()
        started = time.perf_counter()
        try:
            for wave in waves:
                if expired.is_set():
                    break
                with lock:
                    running = [
                        subprocess.Popen(
                            list(argv),
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            env=env,
                        )
                        for argv in wave
                    ]
                for process in running:
                    code, seconds = _reap(process)
                    codes.append(code)
                    cpu += seconds
        finally:
            elapsed = time.perf_counter() - started
            timer.cancel()
            for process in running:  # only after an exception
                if process.returncode is None:
                    process.kill()
                    _reap(process)
    output = log.read_text(errors="replace")
    return SenderRun(elapsed, cpu, codes, output, timed_out=expired.is_set())


def startup_seconds(argv: Sequence[str], runs: int = 3) -> float | None:
    """Median wall seconds of a command that only starts and exits (no network)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        try:
            subprocess.run(
                list(argv), capture_output=True, timeout=60, env=child_env(), check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        times.append(time.perf_counter() - started)
    times.sort()
    return times[len(times) // 2]
