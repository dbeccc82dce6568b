"""The ``dicomwire`` command line as an operator meets it: run as a real subprocess.

Exit codes (module docstring of :mod:`dicomwire.services.cli`): 0 success, 1 a DICOM or
network failure, 2 bad usage. Failures print one clear line on stderr, never a traceback.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomwire import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, __version__
from dicomwire.services.cli import build_parser, main

from ._support import LOCALHOST, NodeThread, dicomwire_argv, free_tcp_port, running_node

TIMEOUT = 30


def dicomwire(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*dicomwire_argv(), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        check=False,
    )


def usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``main(args)`` in-process, expect a usage error (exit 2); return stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def subcommand_options(name: str) -> set[str]:
    parser = build_parser()
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict) and name in choices:
            return {s for a in choices[name]._actions for s in a.option_strings}
    raise AssertionError(f"no subcommand {name!r}")


@pytest.fixture
def node() -> Iterator[NodeThread]:
    with running_node() as running:
        yield running


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert "Traceback" not in done.stdout, done.stdout


# --------------------------------------------------------------------------- usage


def test_version() -> None:
    done = dicomwire("--version")
    assert done.returncode == 0
    assert " ".join(done.stdout.split()) == (  # argparse wraps to the terminal width
        f"dicomwire {__version__} (implementation class UID {IMPLEMENTATION_CLASS_UID}, "
        f"version name {IMPLEMENTATION_VERSION_NAME})"
    )


def test_no_command_prints_help_and_exits_2() -> None:
    done = dicomwire()
    assert done.returncode == 2
    assert "echo" in done.stdout and "serve" in done.stdout


ECHO_OPTIONS = {
    "--aet",
    "-aet",
    "--aec",
    "-aec",
    "--repeat",
    "-r",
    "--dimse-timeout",
    "--connect-timeout",
    "--max-pdu",
    "-pdu",
    "--acse-timeout",
    "--artim-timeout",
    "--idle-timeout",
    "-v",
    "-d",
}
SERVE_OPTIONS = {
    "--port",
    "-p",
    "--host",
    "--aet",
    "-aet",
    "--storage",
    "--promiscuous",
    "--max-associations",
    "--max-pdu",
    "-pdu",
    "--acse-timeout",
    "--artim-timeout",
    "--idle-timeout",
    "-v",
    "-d",
}


@pytest.mark.parametrize(
    ("command", "required"), [("echo", ECHO_OPTIONS), ("serve", SERVE_OPTIONS)]
)
def test_help_lists_every_option(command: str, required: set[str]) -> None:
    done = dicomwire(command, "--help")
    assert done.returncode == 0
    options = subcommand_options(command)
    assert required <= options, f"options missing from the parser: {required - options}"
    shown = set(done.stdout.replace(",", " ").replace("[", " ").replace("]", " ").split())
    assert options <= shown, f"options missing from --help: {options - shown}"


def test_every_option_has_help_text() -> None:
    parser = build_parser()
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for name, sub in choices.items():
                for option in sub._actions:
                    assert option.help, f"dicomwire {name} {option.option_strings} has no help"


@pytest.mark.parametrize(
    "args",
    [
        ("--aet", "ABCDEFGHIJKLMNOPQ"),  # 17 significant characters
        ("--aet", "    "),  # only spaces
        ("--aet", ""),
        ("--aec", "BACK\\SLASH"),
        ("-aec", "TAB\tTITLE"),
    ],
    ids=["too-long", "spaces", "empty", "backslash", "control-char"],
)
def test_invalid_ae_title_exits_2(
    capsys: pytest.CaptureFixture[str], args: tuple[str, str]
) -> None:
    err = usage_error(capsys, "echo", LOCALHOST, "104", *args)
    assert "error: argument --a" in err
    assert "AE title" in err


def test_invalid_ae_title_exits_2_from_the_console_script() -> None:
    done = dicomwire("echo", LOCALHOST, "104", "--aec", "X" * 17)
    assert done.returncode == 2
    assert "error: argument --aec/-aec: AE title" in done.stderr
    assert done.stdout == ""
    no_traceback(done)


def test_invalid_ae_title_for_serve_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "serve", "--aet", "X" * 17)
    assert "error: argument --aet/-aet" in err


@pytest.mark.parametrize("value", ["100", "4095", "4294967296", "abc"])
def test_invalid_max_pdu_exits_2(capsys: pytest.CaptureFixture[str], value: str) -> None:
    assert "--max-pdu" in usage_error(capsys, "echo", LOCALHOST, "104", "--max-pdu", value)


def test_non_numeric_port_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert "port" in usage_error(capsys, "echo", LOCALHOST, "dicom")


def test_port_out_of_range_for_echo_exits_2(node: NodeThread) -> None:
    done = dicomwire("echo", LOCALHOST, str(node.port + 65536), "--aec", "DICOMWIRE")
    assert done.returncode == 2, done.stdout + done.stderr


def serve_exit_status(tmp_path: Path, port: int, *options: str) -> int | None:
    """Start ``dicomwire serve``; its exit status, or None once it listens on ``port``."""
    argv = [*dicomwire_argv(), "serve", "--host", LOCALHOST, "--storage", str(tmp_path)]
    process = subprocess.Popen(
        [*argv, "--discard", *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return process.returncode
            try:
                with socket.create_connection((LOCALHOST, port), timeout=0.5):
                    return None  # it is serving
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("dicomwire serve neither exited nor listened")
    finally:
        stop(process)  # type: ignore[arg-type]


def test_port_out_of_range_for_serve_exits_2(tmp_path: Path) -> None:
    wrapped = free_tcp_port()
    assert serve_exit_status(tmp_path, wrapped, "--port", str(wrapped + 65536)) == 2


def test_negative_max_associations_exits_2(tmp_path: Path) -> None:
    port = free_tcp_port()
    options = ("--port", str(port), "--max-associations", "-1")
    assert serve_exit_status(tmp_path, port, *options) == 2


@pytest.mark.parametrize("count", ["0", "-3"])
def test_repeat_must_be_positive(node: NodeThread, count: str) -> None:
    done = dicomwire("echo", LOCALHOST, str(node.port), "--aec", "DICOMWIRE", "--repeat", count)
    assert done.returncode == 2, done.stdout + done.stderr


# --------------------------------------------------------------------------- echo


def test_echo_success(node: NodeThread) -> None:
    done = dicomwire("echo", LOCALHOST, str(node.port), "--aec", "DICOMWIRE", "-r", "3")
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip() == f"C-ECHO to DICOMWIRE at {LOCALHOST}:{node.port}: success (0x0000)"
    )
    assert done.stderr == ""


def test_echo_verbose_logs_the_association(node: NodeThread) -> None:
    done = dicomwire("echo", LOCALHOST, str(node.port), "--aec", "DICOMWIRE", "-d")
    assert done.returncode == 0, done.stderr
    assert "associated with DICOMWIRE" in done.stderr
    assert "AAssociateAC" in done.stderr  # -d logs every PDU


def test_echo_to_a_closed_port_exits_1() -> None:
    port = free_tcp_port()
    done = dicomwire("echo", LOCALHOST, str(port))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"echo failed: cannot connect to {LOCALHOST}:{port}: Connection refused"
    )
    assert done.stdout == ""
    no_traceback(done)


def test_echo_to_an_unknown_host_exits_1() -> None:
    done = dicomwire("echo", "no-such-host.invalid", "104", "--connect-timeout", "5")
    assert done.returncode == 1
    assert done.stderr.startswith("echo failed: cannot connect to no-such-host.invalid:104")
    no_traceback(done)


def test_echo_rejected_exits_1(node: NodeThread) -> None:
    done = dicomwire("echo", LOCALHOST, str(node.port), "--aec", "WRONG")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "echo failed: association rejected (permanent): called AE title not recognized "
        "(result 1, source 1, reason 7)"
    )
    no_traceback(done)


def test_echo_to_a_silent_peer_times_out_and_exits_1() -> None:
    with socket.socket() as listener:
        listener.bind((LOCALHOST, 0))
        listener.listen(1)  # accepts the TCP connection, never answers the RQ
        port = listener.getsockname()[1]
        started = time.monotonic()
        done = dicomwire("echo", LOCALHOST, str(port), "--acse-timeout", "1")
        elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert "echo failed: no A-ASSOCIATE-AC or -RJ within 1.0 s" in done.stderr
    assert elapsed < 10
    no_traceback(done)


# --------------------------------------------------------------------------- serve


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int | None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            return None
    return process.returncode


def wait_listening(port: int, process: subprocess.Popen[str], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "dicomwire serve exited early"
        try:
            with socket.create_connection((LOCALHOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"dicomwire serve does not listen on {port}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_gracefully_on_signal(tmp_path: Path, sig: int) -> None:
    port = free_tcp_port()
    argv = [*dicomwire_argv(), "serve", "--host", LOCALHOST, "--port", str(port)]
    process = subprocess.Popen(
        [*argv, "--storage", str(tmp_path / "data"), "--discard"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_listening(port, process)
        echo = dicomwire("echo", LOCALHOST, str(port), "--aec", "DICOMWIRE")
        assert echo.returncode == 0, echo.stderr
    finally:
        returncode = stop(process, sig)
    _, stderr = process.communicate(timeout=5)
    assert returncode == 0, stderr
    assert "shutting down" in stderr
    assert "Traceback" not in stderr


def test_serve_on_a_busy_port_exits_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind((LOCALHOST, 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = dicomwire(
            "serve", "--host", LOCALHOST, "--port", str(port), "--storage", str(tmp_path)
        )
    assert done.returncode == 1
    assert done.stderr.strip().startswith(f"cannot listen on port {port}:")
    no_traceback(done)


def test_serve_with_a_missing_config_exits_2(tmp_path: Path) -> None:
    done = dicomwire("serve", "--config", str(tmp_path / "missing.toml"))
    assert done.returncode == 2
    assert done.stderr.startswith("serve: cannot read")
    no_traceback(done)


def test_serve_with_an_unknown_config_key_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('ae_titles = ["DICOMWIRE"]\nmax_associatons = 5\n')
    done = dicomwire("serve", "--config", str(config))
    assert done.returncode == 2
    assert "max_associatons" in done.stderr
    no_traceback(done)
