"""``dicomwire commit`` and ``dicomwire store --commit`` against a dicomwire node (subprocesses)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from dicomwire.services.commitment import StorageCommitmentConfig
from dicomwire.services.directory import RemoteAE
from tests.conftest import LOCALHOST, get_free_tcp_port, run_bounded
from tests.services._support import dicomwire_argv
from tests.services.test_commitment import commitment_node, make_files, store, uids


async def dicomwire(*argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *dicomwire_argv(),
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_store_then_commit_and_commit_with_a_failure(tmp_path: Path) -> None:
    files = make_files(tmp_path / "in", 2)
    never_sent = make_files(tmp_path / "other", 1)

    async def main() -> tuple[tuple[int, str, str], tuple[int, str, str]]:
        async with commitment_node(tmp_path / "node") as (node, _):
            port = str(node.port)
            stored = await dicomwire("store", LOCALHOST, port, str(tmp_path / "in"), "--commit")
            failed = await dicomwire(
                "commit", LOCALHOST, port, *map(str, files + never_sent), "--timeout", "20"
            )
            return stored, failed

    stored, failed = run_bounded(main(), 120)
    assert stored[0] == 0, stored
    committed = [line for line in stored[1].splitlines() if line.startswith("committed: ")]
    assert sorted(line.split()[1] for line in committed) == sorted(uids(f)[1] for f in files)
    assert failed[0] == 1, failed
    lines = failed[1].splitlines()
    assert sum(line.startswith("committed: ") for line in lines) == 2
    unknown = uids(never_sent[0])[1]
    assert f"failed: {unknown} " in failed[1] and "0112 (no such object instance)" in failed[1]
    assert "2 of 3 instances committed" in failed[2]


def test_commit_with_its_own_listener_as_json(tmp_path: Path) -> None:
    files = make_files(tmp_path / "in", 2)
    listen = get_free_tcp_port()
    entry = RemoteAE("MODALITY", LOCALHOST, listen)
    config = StorageCommitmentConfig(same_association=False)

    async def main() -> tuple[int, str, str]:
        async with commitment_node(tmp_path / "node", nodes=[entry], config=config) as (node, _):
            await store(node.port, files)
            return await dicomwire(
                "commit",
                LOCALHOST,
                str(node.port),
                *map(str, files),
                "-aet",
                "MODALITY",
                "--listen-port",
                str(listen),
                "--json",
            )

    code, out, err = run_bounded(main(), 120)
    assert code == 0, err
    answer = json.loads(out)
    assert answer["all_committed"] and not answer["same_association"]
    assert answer["reporter"] == "DICOMWIRE"
    assert sorted(item["path"] for item in answer["committed"]) == sorted(map(str, files))


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    async def main() -> list[int]:
        codes = []
        for argv in (
            ("commit", LOCALHOST),
            ("commit", LOCALHOST, "104", "x.dcm", "--timeout", "-1"),
            ("store", LOCALHOST, "104", "x.dcm", "--listen-port", "4000"),
        ):
            codes.append((await dicomwire(*argv))[0])
        return codes

    assert run_bounded(main(), 60) == [2, 2, 2]


def test_a_listen_port_in_use_is_a_failure_not_a_traceback(tmp_path: Path) -> None:
    files = make_files(tmp_path / "in", 1)

    async def main() -> tuple[int, str, str]:
        async with commitment_node(tmp_path / "node") as (node, _):
            busy = await asyncio.start_server(lambda r, w: None, LOCALHOST, 0)
            try:
                port = busy.sockets[0].getsockname()[1]
                return await dicomwire(
                    "commit",
                    LOCALHOST,
                    str(node.port),
                    str(files[0]),
                    "--listen-host",
                    LOCALHOST,
                    "--listen-port",
                    str(port),
                )
            finally:
                busy.close()

    code, _, err = run_bounded(main(), 60)
    assert code == 1 and "cannot listen for the report on port" in err, err
    assert "Traceback" not in err
