"""What the short-lived tools import: start-up is most of a one-shot echo's time (issue 18).

Each subcommand's runner imports what it runs only when it runs (module docstring of
:mod:`dicomwire.services.cli`), so ``dicomwire echo`` — a whole association against a
real node — loads neither pydicom nor the storage, index, database or node code, and
``dicomwire --version`` not even the event loop. A fresh interpreter runs the command
through :func:`~dicomwire.services.cli.main` and reports what it imported; the time it
takes is bench/startup.py's to measure, not a test's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dicomwire.services.node import NodeConfig
from dicomwire.services.storage import StorageConfig

from ._support import LOCALHOST, NodeThread, running_node

#: Modules a plain-TCP echo has no use for, each with what it would cost at start-up.
NOT_FOR_ECHO = {
    "pydicom": "data sets: ~65 ms with its pixel handlers",
    "PIL": "pulled in by pydicom's pixel handlers",
    "numpy": "pulled in by pydicom's pixel handlers",
    "sqlite3": "the node's databases",
    "csv": "find --csv output",
    "tempfile": "TLS key files (with shutil, bz2, lzma)",
    "dicomwire.services.node": "the node",
    "dicomwire.services.storage": "the Storage service",
    "dicomwire.services.index": "the Q/R index",
    "dicomwire.services.database": "the database choice",
    "dicomwire.services.qr": "Query/Retrieve",
    "dicomwire.services.worklist": "the worklist",
    "dicomwire.services.audit": "the audit trail (only with --audit)",
}


def modules_after(*args: str) -> tuple[int, set[str]]:
    """Run ``dicomwire ARGS`` in a fresh interpreter; its exit status and ``sys.modules``."""
    script = (
        "import json, sys\n"
        "from dicomwire.services.cli import main\n"
        "try:\n"
        f"    status = main({list(args)!r})\n"
        "except SystemExit as exit:\n"
        "    status = exit.code\n"
        "print(json.dumps([status, sorted(sys.modules)]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    status, modules = json.loads(done.stdout.splitlines()[-1])
    return status, set(modules)


def test_echo_imports_only_the_association_and_the_verification_service() -> None:
    node: NodeThread
    with running_node() as node:
        status, modules = modules_after("echo", LOCALHOST, str(node.port), "--aec", "DICOMWIRE")
    assert status == 0
    assert "dicomwire.services.verification" in modules  # it did run the echo
    loaded = {name: why for name, why in NOT_FOR_ECHO.items() if name in modules}
    assert loaded == {}


def test_version_does_not_start_the_event_loop_machinery() -> None:
    status, modules = modules_after("--version")
    assert status == 0
    assert {
        "asyncio",
        "pydicom",
        "dicomwire.ul.association",
        "dicomwire.dimse.session",
    } & modules == set()


#: What a sender of Part 10 files has no use for: the storage SCP's side of the package.
NOT_FOR_STORE = {
    "pydicom": "a Part 10 file is sent from its bytes: ~65 ms with its pixel handlers",
    "sqlite3": "the node's databases",
    "dicomwire.services.storage.scp": "the storage SCP (index, matching, pydicom)",
    "dicomwire.services.index": "the Q/R index",
    "dicomwire.services.node": "the node",
    "dicomwire.services.audit": "the audit trail (only with --audit): ~20 ms",
}


def test_store_of_a_part10_file_imports_no_scp_side(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    source = get_testdata_file("CT_small.dcm")
    assert source is not None
    received = tmp_path / "received"
    config = NodeConfig(storage=StorageConfig(root=received, fsync=False))
    with running_node(config) as node:
        status, modules = modules_after(
            "store", LOCALHOST, str(node.port), "--aec", "DICOMWIRE", str(source)
        )
        assert status == 0
        assert len(list(received.rglob("*.dcm"))) == 1  # it did send the file
    assert "dicomwire.services.storage.scu" in modules
    loaded = {name: why for name, why in NOT_FOR_STORE.items() if name in modules}
    assert loaded == {}
