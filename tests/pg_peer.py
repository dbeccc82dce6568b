"""A throwaway PostgreSQL cluster for the tests: ``initdb`` in a temp dir, ``pg_ctl start``.

One server per test session (started by the first test that asks, stopped when the last
user's session fixture ends, ``atexit`` as a safety net); each test gets a database of
its own (:func:`fresh_database`). Listens on 127.0.0.1 and a free port, its socket in the
cluster's directory; run as the ``postgres`` user when the tests run as root (initdb
refuses root), trust authentication (nothing else can reach it). A missing PostgreSQL is
a skip, a failure in CI (``CI=true``).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import get_free_tcp_port, import_or_fail, skip_or_fail


@dataclass
class PostgresServer:
    directory: Path
    port: int
    run_as: list[str]
    bin: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def restart(self) -> None:
        """Restart the server (fast shutdown: every connection is closed)."""
        data, log = str(self.directory / "data"), str(self.directory / "log")
        # -l: else the server inherits our pipes and the run waits for it to end
        pg_ctl = [*self.run_as, str(self.bin / "pg_ctl"), "-D", data, "-l", log]
        _run([*pg_ctl, "-m", "fast", "-w", "restart"], 90)

    def stop(self) -> None:
        subprocess.run(
            [
                *self.run_as,
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.directory / "data"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


#: initdb: trust (only 127.0.0.1 and the private socket), no fsync, byte-order collation.
INITDB = ("-A", "trust", "--no-sync", "--locale=C", "-E", "UTF8")
#: pg_ctl start: wait until it accepts connections, at most 60 s.
START = ("-w", "-t", "60", "start")


def _run(argv: list[str], timeout: float) -> None:
    """Run a PostgreSQL tool; its output in the error when it fails."""
    done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {output}")


def _bin_dir() -> Path:
    base = Path("/usr/lib/postgresql")
    found = sorted(
        base.glob("*/bin/initdb"),
        key=lambda p: [int(n) for n in p.parent.parent.name.split(".") if n.isdigit()],
    )
    if not found:
        skip_or_fail("PostgreSQL is not installed (apt-get install postgresql)")
    return found[-1].parent


def start_server() -> PostgresServer:
    """initdb and start a cluster; stop it with :meth:`PostgresServer.stop`."""
    import_or_fail("psycopg")
    bin_dir = _bin_dir()
    directory = Path(tempfile.mkdtemp(prefix="dicomwire-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            skip_or_fail("running as root and there is no postgres user to run PostgreSQL")
        os.chown(directory, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = directory / "data"
    log = str(directory / "log")
    try:
        _run(
            [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", *INITDB],
            120,
        )
        port = get_free_tcp_port()
        options = (
            f"-F -p {port} -k {directory} -c listen_addresses=127.0.0.1 -c max_connections=200"
        )
        _run(
            [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", log, *START],
            90,
        )
    except BaseException:
        if Path(log).exists():
            print(Path(log).read_text(errors="replace"))  # the server's reason, in the report
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return PostgresServer(directory, port, run_as, bin_dir)


_lock = threading.Lock()
_server: PostgresServer | None = None
_users = 0
_names = itertools.count()


def _acquire() -> PostgresServer:
    global _server, _users
    with _lock:
        if _server is None:
            _server = start_server()
            atexit.register(_server.stop)
        _users += 1
        return _server


def _release() -> None:
    global _server, _users
    with _lock:
        _users -= 1
        if _users == 0 and _server is not None:
            _server.stop()
            _server = None


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (shared by every module that imports this)."""
    server = _acquire()
    try:
        yield server
    finally:
        _release()


@contextlib.contextmanager
def fresh_database(server: PostgresServer) -> Iterator[str]:
    """A new, empty database on ``server``: its URL; dropped afterwards."""
    import psycopg

    name = f"t{os.getpid()}_{next(_names)}"
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield server.url(name)
    finally:
        with psycopg.connect(server.url(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of an empty database of this test's own."""
    with fresh_database(postgres) as url:
        yield url
