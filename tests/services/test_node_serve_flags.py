"""``dicomwire serve``'s flags for the services: what they write into the node's configuration.

``--worklist-dir/-dfp`` (wlmscpfs), ``--relay-to`` (MPPS), ``--printer``, ``--max-operations``
override the TOML file's tables (or make them); bad values are usage errors (exit 2), and
a relay destination missing from the AE directory stops the node at start (exit 2).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

from dicomwire.services.cli import build_parser
from dicomwire.services.cli.serve import node_config
from dicomwire.services.mpps import MPPSConfig
from dicomwire.services.node import Node, default_services
from dicomwire.services.print import PrintConfig
from dicomwire.services.worklist import WorklistConfig
from tests.interop._dcmtk import PROCESS_TIMEOUT, dicomwire_argv, free_tcp_port


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_service_flags_fill_the_tables(tmp_path: Path) -> None:
    args = parse(
        "--storage", str(tmp_path / "store"), "-dfp", str(tmp_path / "wl"),
        "--relay-to", "PACS", "--relay-to", "ARCHIVE", "--node", "PACS@127.0.0.1:104",
        "--node", "ARCHIVE@127.0.0.1:105", "--printer", "--max-operations", "1024",
    )  # fmt: skip
    config = node_config(args)
    worklist = config.sections["worklist"]
    assert isinstance(worklist, WorklistConfig) and worklist.directory == tmp_path / "wl"
    mpps = config.sections["mpps"]
    assert isinstance(mpps, MPPSConfig) and mpps.relay_to == ["PACS", "ARCHIVE"]
    assert isinstance(config.sections["print"], PrintConfig)
    assert (config.max_operations_invoked, config.max_operations_performed) == (1024, 1024)
    names = [service.name for service in default_services(config)]
    assert names == [
        "verification",
        "storage",
        "query-retrieve",
        "storage-commitment",
        "worklist",
        "mpps",
        "print",
        "audit",  # the local rotating file, by default
    ]
    policy = Node(config).policy
    assert (policy.maximum_invoked, policy.maximum_performed) == (1024, 1024)


def test_flags_override_the_file_and_keep_its_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        'max_operations_invoked = 8\n[worklist]\ndirectory = "old"\npoll_interval = 7.5\n'
        '[mpps]\nrelay_to = ["OLD"]\ncheck_type2 = true\n'
    )
    untouched = node_config(parse("--config", str(path)))
    assert untouched.max_operations_invoked == 8 and "print" not in untouched.sections
    config = node_config(parse("--config", str(path), "--worklist-dir", "new", "--relay-to", "NEW"))
    assert config.sections["worklist"].directory == Path("new")
    assert config.sections["worklist"].poll_interval == 7.5
    assert config.sections["mpps"].relay_to == ["NEW"]
    assert config.sections["mpps"].check_type2 is True


@pytest.mark.parametrize(
    "flags",
    [
        ("--max-operations", "-1"),
        ("--max-operations", "65536"),
        ("--max-operations", "many"),
        ("--relay-to", "A" * 17),
    ],
)
def test_bad_values_are_usage_errors(flags: tuple[str, ...]) -> None:
    done = subprocess.run(
        [*dicomwire_argv(), "serve", *flags],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert flags[0] in done.stderr


def test_relay_to_an_unknown_ae_stops_the_node_at_start(tmp_path: Path) -> None:
    port = free_tcp_port()
    argv = [*dicomwire_argv(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--storage", str(tmp_path), "--relay-to", "NOWHERE"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "relay_to" in done.stderr and "NOWHERE" in done.stderr


def test_help_names_the_service_flags() -> None:
    done = subprocess.run(
        [*dicomwire_argv(), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
    )
    for flag in ("--worklist-dir", "-dfp", "--relay-to", "--printer", "--max-operations"):
        assert flag in done.stdout


def test_discarding_node_says_which_tables_it_does_not_serve(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = parse("--storage", str(tmp_path), "--discard", "-dfp", str(tmp_path / "wl"))
    with caplog.at_level("WARNING", logger="dicomwire.services.node"):
        names = [service.name for service in default_services(node_config(args))]
    assert names == ["verification", "storage", "query-retrieve"]
    assert "[worklist] configured but not served" in caplog.text
