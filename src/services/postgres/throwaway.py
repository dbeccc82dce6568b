"""A throwaway PostgreSQL server: ``initdb`` into a temporary directory, ``pg_ctl start``.

For trying several nodes on one machine (``dicomwire cluster``, docs/scale-out.md) and for
the tests (tests/pg_peer.py): nothing to configure, gone when stopped. It listens on
127.0.0.1 and a free port only, its Unix socket in its own directory, with trust
authentication (nothing else can reach it) and ``fsync`` off (a crash loses it anyway).
``initdb`` refuses to run as root, so as root it runs as the ``postgres`` user (Debian's
package creates it). The server binaries are Debian's ``/usr/lib/postgresql/<v>/bin``
(the newest version installed) unless given.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...errors import LaunchError

__all__ = ["ThrowawayPostgres", "free_port", "postgres_bin_dir", "start_throwaway_postgres"]

#: initdb: trust (only 127.0.0.1 and the private socket), no fsync, byte-order collation.
INITDB = ("-A", "trust", "--no-sync", "--locale=C", "-E", "UTF8")
#: pg_ctl start: wait until it accepts connections, at most 60 s.
START = ("-w", "-t", "60", "start")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_bin_dir() -> Path | None:
    """The newest installed server's ``bin`` directory (``initdb``, ``pg_ctl``), or None."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: [int(n) for n in p.parent.parent.name.split(".") if n.isdigit()],
    )
    return found[-1].parent if found else None


def _run(argv: list[str], timeout: float) -> None:
    """Run a PostgreSQL tool; its output in the error when it fails."""
    done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")
        raise LaunchError(f"{' '.join(argv)} exited {done.returncode}: {output}")


@dataclass
class ThrowawayPostgres:
    """A running throwaway server; :meth:`stop` ends it and removes its directory."""

    directory: Path
    port: int
    run_as: list[str]
    bin: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self) -> list[str]:
        data, log = str(self.directory / "data"), str(self.directory / "log")
        # -l: else the server inherits our pipes and whoever reads them waits for it to end
        return [*self.run_as, str(self.bin / "pg_ctl"), "-D", data, "-l", log]

    def create_database(self, name: str) -> str:
        """Create database ``name`` (``createdb``, no driver needed); its URL."""
        host = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        _run([str(self.bin / "createdb"), *host, name], 60)
        return self.url(name)

    def restart(self) -> None:
        """Restart the server (fast shutdown: every connection is closed)."""
        _run([*self._pg_ctl(), "-m", "fast", "-w", "restart"], 90)

    def stop(self) -> None:
        """Stop at once (``-m immediate``: nothing here is worth a checkpoint), remove it."""
        subprocess.run(
            [*self._pg_ctl(), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


def start_throwaway_postgres(
    bin_dir: Path | None = None, max_connections: int = 200
) -> ThrowawayPostgres:
    """initdb and start a server; stop it with :meth:`ThrowawayPostgres.stop`.

    Raises :class:`LaunchError` (``missing=True`` when PostgreSQL is not installed, or
    when run as root without a ``postgres`` user to run it as).
    """
    bin_dir = bin_dir or postgres_bin_dir()
    if bin_dir is None:
        raise LaunchError("PostgreSQL is not installed (apt-get install postgresql)", missing=True)
    directory = Path(tempfile.mkdtemp(prefix="dicomwire-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(directory, ignore_errors=True)
            raise LaunchError(
                "running as root and there is no postgres user to run PostgreSQL", missing=True
            ) from None
        os.chown(directory, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = directory / "data"
    log = directory / "log"
    try:
        _run(
            [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", *INITDB],
            120,
        )
        port = free_port()
        options = (
            f"-F -p {port} -k {directory} -c listen_addresses=127.0.0.1 "
            f"-c max_connections={max_connections}"
        )
        pg_ctl = [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data)]
        _run([*pg_ctl, "-o", options, "-l", str(log), *START], 90)
    except BaseException as exc:
        reason = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(directory, ignore_errors=True)
        if isinstance(exc, LaunchError) and reason:
            raise LaunchError(f"{exc}\n{reason}") from exc  # the server's own reason
        raise
    return ThrowawayPostgres(directory, port, run_as, bin_dir)
