"""``dicomwire serve`` as an operator runs it: start-up errors that name the right thing,
what its log shows by default and with ``-v``, clean-up after a crash, and the defaults
that let ``dicomwire echo`` reach it without flags.

Every node here is a real ``dicomwire serve`` process on 127.0.0.1; what is asserted is
what the user sees: its exit status, its stderr, and the files under its storage root.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from dicomwire.services.storage import store_files
from dicomwire.testing.corpus import write_corpus
from dicomwire.ul.association import Timeouts

from ..conftest import part10_data_set
from ..conftest import run_bounded as run
from ._support import CLI, Served, serve_processes

LOCALHOST = "127.0.0.1"
TIMEOUT = 30.0


def dicomwire(*args: str | Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """``serve(*args)``: ``dicomwire serve --host 127.0.0.1 --port 0 ARGS`` once it logs that it
    listens (log in a file); killed at teardown."""
    with serve_processes(tmp_path) as start:
        yield lambda *args: start("--host", LOCALHOST, "--port", "0", *args)


def stop(served: Served) -> str:
    """SIGTERM, wait, and the whole log."""
    served.process.send_signal(signal.SIGTERM)
    served.process.wait(timeout=15)
    return served.output()


# --------------------------------------------------------------------------- start-up errors


def serve_fails(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = dicomwire("serve", "--host", LOCALHOST, "--port", "0", *args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    return done


def test_a_file_as_storage_is_named_not_blamed_on_the_port(tmp_path: Path) -> None:
    file = tmp_path / "a-file"
    file.write_text("not a directory")
    done = serve_fails("--storage", file)
    assert done.stderr.strip() == f"serve: storage directory {file} is not a directory"


def test_a_storage_path_under_a_file_is_named(tmp_path: Path) -> None:
    file = tmp_path / "a-file"
    file.write_text("not a directory")
    done = serve_fails("--storage", file / "sub")
    assert done.stderr.strip() == (
        f"serve: cannot create storage directory {file / 'sub' / '.incoming'}: Not a directory"
    )


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[object]:
    """``read_only_mount(prepare)``: a tmpfs, ``prepare(point)`` run on it, then remounted
    read-only; unmounted at teardown. Needs root (a failure under CI=true)."""
    points: list[Path] = []

    def unavailable(message: str) -> None:
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)

    def mount(prepare: object) -> Path:
        if os.geteuid() != 0:
            unavailable("mounting a tmpfs needs root")
        point = tmp_path / f"ro-{len(points)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], capture_output=True
        )
        if done.returncode != 0:
            unavailable(f"mount -t tmpfs failed: {done.stderr!r}")
        points.append(point)
        prepare(point)  # type: ignore[operator]
        subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True, timeout=10)
        return point

    try:
        yield mount
    finally:
        for point in points:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=10)


def test_a_read_only_storage_directory_is_refused_at_start(read_only_mount: object) -> None:
    point = read_only_mount(lambda p: None)  # type: ignore[operator]
    done = serve_fails("--storage", point)
    assert done.stderr.strip() == (
        f"serve: cannot create storage directory {point / '.incoming'}: Read-only file system"
    )


def test_an_unwritable_incoming_directory_is_found_by_the_probe_file(
    read_only_mount: object,
) -> None:
    point = read_only_mount(lambda p: (p / ".incoming").mkdir())  # type: ignore[operator]
    done = serve_fails("--storage", point)
    assert done.stderr.strip() == (
        f"serve: storage directory {point} is not writable: Read-only file system"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[storage]\nroot = 5\n", "[storage] root: expected text, got 5"),
        ("ae_titles = 5\n", "ae_titles: expected a list of text, got 5"),
        ("[[nodes]]\nae_title = 'A'\nhost = 5\nport = 1\n", "[[nodes]] host: expected text, got 5"),
    ],
)
def test_a_wrongly_typed_toml_value_names_its_key(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "node.toml"
    config.write_text(text)
    done = serve_fails("--config", config)
    assert done.stderr.strip() == f"serve: {config}: {message}"


def test_a_missing_certificate_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing-cert.pem"
    done = serve_fails("--storage", tmp_path / "s", "--cert", missing, "--key", missing)
    assert done.stderr.strip() == f"serve: TLS certificate {missing} does not exist"


@pytest.mark.parametrize("command", ["echo", "store"])
@pytest.mark.parametrize("flag", ["--cert", "--ca"])
def test_a_client_names_its_missing_certificate_or_ca_file(
    tmp_path: Path, command: str, flag: str
) -> None:
    missing = tmp_path / "missing.pem"
    paths = [tmp_path] if command == "store" else []
    done = dicomwire(command, LOCALHOST, "104", *paths, "--tls", flag, missing)
    assert done.returncode == 1
    what = "certificate" if flag == "--cert" else "CA file"
    assert done.stderr.strip() == f"{command} failed: TLS {what} {missing} does not exist"


def test_a_missing_password_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pw"
    done = serve_fails(
        "--storage", tmp_path / "s", "--pkcs12", tmp_path / "x.p12", "--password-file", missing
    )
    assert done.stderr.strip() == (
        f"serve: cannot read password file {missing}: No such file or directory"
    )


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [
        ("echo", "--connect-timeout", "-1"),
        ("echo", "--connect-timeout", "0"),
        ("echo", "--acse-timeout", "-5"),
        ("store", "--connect-timeout", "-1"),
        ("store", "--dimse-timeout", "nan"),
        ("serve", "--shutdown-grace", "-1"),
        ("serve", "--idle-timeout", "-1"),
    ],
)
def test_negative_or_zero_timeouts_are_usage_errors(command: str, flag: str, value: str) -> None:
    args = ["serve"] if command == "serve" else [command, LOCALHOST, "104"]
    if command == "store":
        args.append("nothing.dcm")
    done = dicomwire(*args, f"{flag}={value}")
    assert done.returncode == 2
    assert f"argument {flag}: '{value}': must be a positive number of seconds" in done.stderr


# --------------------------------------------------------------------------- log and defaults


def test_bare_echo_reaches_a_default_node_and_the_log_shows_start_and_refusals(
    tmp_path: Path, serve: object
) -> None:
    node = serve("--storage", tmp_path / "store")  # type: ignore[operator]
    echoed = dicomwire("echo", LOCALHOST, str(node.port))
    assert echoed.returncode == 0, echoed.stderr
    assert "C-ECHO to DICOMWIRE" in echoed.stdout
    refused = dicomwire("echo", LOCALHOST, str(node.port), "-aec", "NOT-THE-NODE")
    assert refused.returncode == 1
    log = stop(node)
    banner = log.splitlines()[0]
    assert " INFO dicomwire.services.node: dicomwire node DICOMWIRE listening on port " in banner
    assert f"(127.0.0.1), no TLS; storing under {tmp_path / 'store'}; 0 known nodes, " in banner
    assert "0 directory entries, any caller accepted" in banner
    rejections = [line for line in log.splitlines() if "rejected association" in line]
    assert len(rejections) == 1
    assert (
        " WARNING dicomwire.ul: rejected association from DICOMWIRE to NOT-THE-NODE at "
        in (rejections[0])
    )
    assert "called AE title not recognized" in rejections[0]
    assert "association from" not in log.replace("rejected association from", "")  # not -v


def test_verbose_gives_one_summary_line_per_association_and_no_per_instance_line(
    tmp_path: Path, serve: object
) -> None:
    files = write_corpus(tmp_path / "corpus", 3, "small")
    node = serve("--storage", tmp_path / "store", "--no-fsync", "-v")  # type: ignore[operator]
    sent = dicomwire("store", LOCALHOST, str(node.port), "-aet", "MODALITY", *files)
    assert sent.returncode == 0, sent.stderr
    log = stop(node)
    summaries = [line for line in log.splitlines() if "services.node.associations" in line]
    assert len(summaries) == 1, log
    assert re.search(
        r"association from MODALITY at 127\.0\.0\.1:\d+: 3 stored, 0 refused, \d+ bytes in "
        r"[\d.]+ s \(released\)",
        summaries[0],
    ), summaries[0]
    assert "stored " + str(tmp_path) not in log
    assert "dicomwire.ul" not in log and "dicomwire.dimse" not in log


def test_partial_files_left_by_a_crash_are_removed_at_start(tmp_path: Path, serve: object) -> None:
    incoming = tmp_path / "store" / ".incoming"
    incoming.mkdir(parents=True)
    for name in ("a.part", "b.part"):
        (incoming / name).write_bytes(b"half a data set")
    node = serve("--storage", tmp_path / "store")  # type: ignore[operator]
    assert list(incoming.iterdir()) == []
    log = stop(node)
    assert f"removed 2 partial files left in {incoming} by an earlier run" in log


# --------------------------------------------------------------------------- crash


def test_sigkill_during_a_1000_file_store_loses_nothing_confirmed(
    tmp_path: Path, serve: object
) -> None:
    """SIGKILL the node while it receives 1000 files, restart it: only whole files are
    under the root, nothing is left in .incoming, and every file the SCU saw confirmed
    with 0000 is there, byte for byte the data set that was sent."""
    sources = write_corpus(tmp_path / "corpus", 1000, "small")
    root = tmp_path / "store"
    node = serve("--storage", root)  # type: ignore[operator]
    kill_after = 300

    def progress(done: int, total: int, sent: int) -> None:
        if done == kill_after:
            node.process.send_signal(signal.SIGKILL)

    summary = run(
        store_files(
            LOCALHOST,
            node.port,
            [tmp_path / "corpus"],
            called_ae_title="DICOMWIRE",
            retries=0,
            timeouts=Timeouts(artim=5.0, acse=5.0, dimse=5.0, network_idle=5.0, connect=2.0),
            progress=progress,
        )
    )
    node.process.wait(timeout=10)
    assert node.process.returncode == -signal.SIGKILL
    confirmed = {o.path for o in summary.outcomes if o.status is not None and o.status.is_success}
    assert kill_after - 1 <= len(confirmed) < len(sources)

    restarted = serve("--storage", root)  # type: ignore[operator]
    assert list((root / ".incoming").iterdir()) == []
    stored = [p for p in root.rglob("*") if p.is_file() and ".dicomwire" not in p.parts]
    assert all(p.suffix == ".dcm" and ".incoming" not in p.parts for p in stored), stored
    by_instance: dict[str, Path] = {}
    for path in stored:
        by_instance[str(dcmread(path).SOPInstanceUID)] = path
    for source in sources:
        instance = str(dcmread(source, stop_before_pixels=True).SOPInstanceUID)
        path = by_instance.pop(instance, None)
        if source in confirmed:
            assert path is not None, f"{source.name} was confirmed but is not stored"
        if path is not None:
            assert part10_data_set(path) == part10_data_set(source), source.name
    assert by_instance == {}
    stop(restarted)
