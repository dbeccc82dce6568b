"""The statement's "Statuses received (SCU)" tables, each row driven against a peer.

Every :class:`~dicomwire.services.service.ScuActivity` row of
:data:`~dicomwire.services.conformance.SCU_ACTIVITIES` says what the tools and the API do
when a peer answers a status. The peer here is a dicomwire node on 127.0.0.1 whose
handler for the request is replaced by one answering the status under test (the real
print SCP's answers are rewritten where the print flow needs them); the tools run
in-process (``dicomwire.services.cli.main``) and the test checks the reaction the row
claims (exit status, output, attempts, what the API returns or raises). ``DRIVEN`` is
what each test drove; the last test proves every row of every activity was.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file

import dicomwire
from dicomwire.dimse.commands import CommandField
from dicomwire.dimse.session import Request
from dicomwire.errors import DimseStatusError
from dicomwire.services.cli import main
from dicomwire.services.conformance import SCU_ACTIVITIES, conformance_statement
from dicomwire.services.directory import RemoteAE
from dicomwire.services.mpps import MPPSConfig
from dicomwire.services.node import NodeConfig
from dicomwire.services.print import PrintConfig
from dicomwire.services.storage import StorageConfig

from ._support import LOCALHOST, NodeThread, running_node

CT = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
WORKLIST = "1.2.840.10008.5.1.4.31"
MPPS = "1.2.840.10008.3.1.2.3.3"
COMMITMENT = "1.2.840.10008.1.20.1"
FILM_SESSION, FILM_BOX, GRAYSCALE_IMAGE_BOX = (
    "1.2.840.10008.5.1.1.1",
    "1.2.840.10008.5.1.1.2",
    "1.2.840.10008.5.1.1.4",
)

#: (activity name, status) pairs the tests below drove and checked.
DRIVEN: set[tuple[str, int]] = set()


def drove(activity: str, *statuses: int) -> None:
    DRIVEN.update((activity, status) for status in statuses)


@contextlib.contextmanager
def peer(tmp_path: Path, ae_title: str = "DICOMWIRE", **sections: Any) -> Iterator[NodeThread]:
    config = NodeConfig(
        ae_titles=[ae_title], storage=StorageConfig(root=tmp_path / "peer", fsync=False)
    )
    config.sections.update(sections)
    with running_node(config) as node:
        yield node


def script(
    node: NodeThread, key: tuple[str, int], handler: Callable[[Request], Awaitable[Any]]
) -> None:
    """Make ``node`` answer ``key`` with ``handler`` (new associations use it)."""

    def install() -> None:
        assert node.node is not None
        node.node.handlers[key] = handler

    node.call(install)


def answering(status: int, calls: list[int] | None = None, **fields: Any) -> Any:
    async def handler(request: Request) -> Any:
        if calls is not None:
            calls.append(status)
        return request.primitive.response(status, None, **fields)

    return handler


def tool(*argv: str) -> int:
    return main(list(argv))


# --------------------------------------------------------------------------- echo, store


def test_echo_and_store_reactions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with peer(tmp_path) as node:
        address = [LOCALHOST, str(node.port)]
        for status, exit_status in ((0x0000, 0), (0x0107, 1), (0x0110, 1)):
            script(node, (VERIFICATION, CommandField.C_ECHO_RQ), answering(status))
            assert tool("echo", *address) == exit_status
            if exit_status:
                assert f"{status:04X}" in capsys.readouterr().err.upper()
            drove("Verify a peer", status)

        for status, attempts, exit_status, line in (
            (0x0000, 1, 0, "sent 1 of 1"),
            (0xB000, 1, 0, "warning:"),  # stored with a warning: not sent again
            (0xA700, 3, 1, "failed:"),  # out of resources: --retries 2 → 3 attempts
            (0xC000, 1, 1, "failed:"),  # refused: once
        ):
            calls: list[int] = []
            script(node, (CT_IMAGE, CommandField.C_STORE_RQ), answering(status, calls))
            assert tool("store", *address, str(CT), "--retries", "2") == exit_status
            output = capsys.readouterr()
            assert line in output.out + output.err
            assert len(calls) == attempts, (status, calls)
            drove("Send instances", status)

        async def store() -> int:  # the API returns a refusal, it does not raise
            async with dicomwire.connect(
                LOCALHOST, node.port, called_ae="DICOMWIRE", sending=[CT]
            ) as client:
                return int(await client.store(CT))

        assert asyncio.run(store()) == 0xC000


# --------------------------------------------------------------------------- find, worklist


def _matches(count: int, final: int, **fields: Any) -> Any:
    async def handler(request: Request) -> Any:
        for number in range(count):
            match = Dataset()
            match.PatientID = f"P{number}"
            match.QueryRetrieveLevel = "STUDY"
            await request.send_pending(match, 0xFF00 if number == 0 else 0xFF01)
        return request.primitive.response(final, None, **fields)

    return handler


@pytest.mark.parametrize(
    ("activity", "sop_class", "command", "keys"),
    [
        ("Query a peer", STUDY_FIND, ("find",), ("-S", "-k", "PatientID=")),
        ("Query a worklist", WORKLIST, ("worklist", "query"), ()),
    ],
)
def test_find_reactions(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    activity: str,
    sop_class: str,
    command: tuple[str, ...],
    keys: tuple[str, ...],
) -> None:
    with peer(tmp_path) as node:
        address = [LOCALHOST, str(node.port)]
        for final, exit_status in ((0x0000, 0), (0x0001, 0), (0xFE00, 0), (0xC000, 1)):
            script(node, (sop_class, CommandField.C_FIND_RQ), _matches(2, final))
            assert tool(*command, *address, *keys) == exit_status, hex(final)
            output = capsys.readouterr()
            printed = output.out.count("P0") + output.out.count("P1")
            # the matches are kept, but query_worklist returns none after a failure
            assert printed == (0 if exit_status and activity == "Query a worklist" else 2)
            if exit_status:
                assert "C000" in output.err.upper()
            drove(activity, 0xFF00, 0xFF01, final)


# --------------------------------------------------------------------------- move, get


def test_retrieve_reactions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failed_uid = "1.2.826.0.1.3680043.9.7433.3.99"

    def retrieve(final: int, completed: int | None, failed: int | None) -> Any:
        async def handler(request: Request) -> Any:
            await request.send_pending(None, remaining=1, completed=0, failed=0, warning=0)
            identifier = None
            if failed:
                identifier = Dataset()
                identifier.FailedSOPInstanceUIDList = failed_uid
            counts = {} if completed is None else {"completed": completed, "failed": failed}
            return request.primitive.response(final, identifier, remaining=0, **counts)

        return handler

    with peer(tmp_path) as node:
        address = [LOCALHOST, str(node.port)]
        keys = ["-S", "-k", "StudyInstanceUID=1.2.3"]
        for final, completed, failed, exit_status in (
            (0x0000, 1, 0, 0),
            (0xB000, 0, 1, 1),  # done with failures: counts and the failed UID printed
            (0xFE00, 0, 0, 1),
            (0xA702, 0, 1, 1),  # failed after sub-operations: counts returned
            (0xA801, None, None, 1),  # refused outright: DimseStatusError
        ):
            script(node, (STUDY_MOVE, CommandField.C_MOVE_RQ), retrieve(final, completed, failed))
            assert tool("move", *address, *keys) == exit_status, hex(final)
            output = capsys.readouterr()
            if failed:
                assert f"failed: {failed_uid}" in output.out
            if completed is None:
                assert "A801" in output.err.upper()
            drove("Retrieve from a peer", final)

        # pending: the counts reach the API's progress callback
        script(node, (STUDY_MOVE, CommandField.C_MOVE_RQ), retrieve(0x0000, 1, 0))
        seen: list[int] = []

        async def move() -> None:
            async with dicomwire.connect(
                LOCALHOST, node.port, called_ae="DICOMWIRE", services=["move"]
            ) as client:
                result = await client.move(
                    {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.3"},
                    "DICOMWIRE",
                    progress=lambda r: seen.append(r.remaining),
                )
                assert result.status == 0 and result.completed == 1

        asyncio.run(move())
        assert seen == [1]
        drove("Retrieve from a peer", 0xFF00)

        # refused outright, through the API: DimseStatusError
        script(node, (STUDY_MOVE, CommandField.C_MOVE_RQ), retrieve(0xA801, None, None))

        async def refused() -> None:
            async with dicomwire.connect(
                LOCALHOST, node.port, called_ae="DICOMWIRE", services=["move"]
            ) as client:
                with pytest.raises(DimseStatusError) as raised:
                    await client.move({"QueryRetrieveLevel": "STUDY"}, "NOWHERE")
                assert raised.value.status == 0xA801

        asyncio.run(refused())


# --------------------------------------------------------------------------- mpps


def test_mpps_tool_reactions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uid = "1.2.826.0.1.3680043.9.7433.3.7"
    with peer(tmp_path) as node:
        address = [LOCALHOST, str(node.port)]
        create = ["create", "--patient-id", "P1", "--uid", uid]
        for status, exit_status in ((0x0000, 0), (0x0110, 1)):
            script(
                node,
                (MPPS, CommandField.N_CREATE_RQ),
                answering(status, affected_sop_instance_uid=uid),
            )
            assert tool("mpps", *address, *create) == exit_status
            output = capsys.readouterr()
            assert (uid in output.out) if not exit_status else ("0110" in output.err)
            drove("Report a procedure step", status)
        script(node, (MPPS, CommandField.N_SET_RQ), answering(0x0116))  # warning: done
        assert tool("mpps", *address, "set", uid, "-k", "PerformedStationName=CT9") == 0
        assert "0x0116" in capsys.readouterr().out.lower()
        drove("Report a procedure step", 0x0116)


def test_mpps_relay_reactions(tmp_path: Path) -> None:
    """A node relaying its MPPS to a destination that answers each status of the table."""
    with peer(tmp_path / "b", "DEST") as destination:
        answers: list[int] = []
        statuses: list[int] = []

        async def scripted(request: Request) -> Any:
            status = statuses.pop(0) if statuses else 0x0000
            answers.append(status)
            return request.primitive.response(status, None)

        for command in (CommandField.N_CREATE_RQ, CommandField.N_SET_RQ):
            script(destination, (MPPS, command), scripted)
        config = NodeConfig(
            storage=StorageConfig(root=tmp_path / "a", fsync=False),
            nodes=[RemoteAE("DEST", LOCALHOST, destination.port)],
        )
        config.sections["mpps"] = MPPSConfig(
            relay_to=["DEST"], relay_first_delay=0.05, relay_backoff=1.0, relay_attempts=3
        )
        with running_node(config) as relay:
            address = [LOCALHOST, str(relay.port)]

            def counts() -> dict[str, int]:
                assert relay.node is not None
                return dict(relay.node.service("mpps").relay.counts)  # type: ignore[attr-defined]

            def relayed(wanted: dict[str, int]) -> None:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    now = relay.call(counts)
                    if all(now.get(k, 0) >= v for k, v in wanted.items()):
                        return
                    time.sleep(0.05)
                raise AssertionError(f"relay counts {relay.call(counts)}, wanted {wanted}")

            def step(number: int) -> str:
                uid = f"1.2.826.0.1.3680043.9.7433.3.{100 + number}"
                create = ["create", "--patient-id", f"R{number}", "--uid", uid]
                assert main(["mpps", *address, *create]) == 0
                return uid

            statuses[:] = [0x0000]
            step(1)
            relayed({"delivered": 1})
            drove("Relay procedure steps", 0x0000)
            statuses[:] = [0x0107]  # a warning: delivered
            step(2)
            relayed({"delivered": 2})
            drove("Relay procedure steps", 0x0107)
            statuses[:] = [0x0111]  # to an N-CREATE: already there
            step(3)
            relayed({"delivered": 3})
            drove("Relay procedure steps", 0x0111)
            statuses[:] = [0xA700, 0x0000]  # out of resources: tried again, then delivered
            step(4)
            relayed({"delivered": 4, "retried": 1})
            drove("Relay procedure steps", 0xA700)
            statuses[:] = [0xC000]  # refused: given up at once, no retry
            step(5)
            relayed({"failed": 1})
            assert relay.call(counts).get("retried") == 1

            def failed_jobs() -> list[Any]:
                assert relay.node is not None
                relay_service = relay.node.service("mpps").relay  # type: ignore[attr-defined]
                return list(relay_service.queue.jobs(state="failed"))

            (kept,) = relay.call(failed_jobs)  # kept in the queue for the operator
            assert kept.attempts == 1 and "C000" in (kept.error or "").upper()
            drove("Relay procedure steps", 0xC000)
        assert answers == [0x0000, 0x0107, 0x0111, 0xA700, 0x0000, 0xC000]


# --------------------------------------------------------------------------- commitment


def test_commitment_reactions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with peer(tmp_path) as node:
        address = [LOCALHOST, str(node.port)]
        for status in (0x0000, 0x0001, 0x0110):
            script(node, (COMMITMENT, CommandField.N_ACTION_RQ), answering(status))
            assert tool("commit", *address, str(CT), "--timeout", "0.5") == 1
            error = capsys.readouterr().err
            if status == 0:  # taken: the report was awaited (and none came)
                assert "no storage commitment report" in error
            else:  # refused: no wait
                assert f"{status:04X}" in error.upper() and "report" not in error
            drove("Ask for commitment", status)


# --------------------------------------------------------------------------- print


def _rewrite(handler: Any, status: int, when: Callable[[Request], bool] = lambda r: True) -> Any:
    """The real print SCP's ``handler``, its answer's status replaced by ``status``."""

    async def rewritten(request: Request) -> Any:
        response = await handler(request)
        if when(request):
            response.status = status  # same data set, another status
        return response

    return rewritten


def test_print_reactions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with peer(tmp_path, print=PrintConfig()) as node:
        address = [LOCALHOST, str(node.port)]
        assert node.node is not None
        handlers = dict(node.node.handlers)
        action = (FILM_BOX, CommandField.N_ACTION_RQ)
        image_box = (GRAYSCALE_IMAGE_BOX, CommandField.N_SET_RQ)
        session = (FILM_SESSION, CommandField.N_CREATE_RQ)

        assert tool("print", *address, str(CT)) == 0
        assert "printed (0x0000)" in capsys.readouterr().out
        drove("Print films", 0x0000)

        for warning in (0xB603, 0xB604, 0xB609, 0xB60A):  # on the print N-ACTION: printed
            script(node, action, _rewrite(handlers[action], warning))
            assert tool("print", *address, str(CT)) == 0
            assert f"warning: film box N-ACTION print: 0x{warning:04X}" in capsys.readouterr().out
            drove("Print films", warning)
        script(node, action, handlers[action])

        # the same warning to another request: not accepted
        script(node, image_box, _rewrite(handlers[image_box], 0xB603))
        assert tool("print", *address, str(CT)) == 1
        assert "warning not accepted" in capsys.readouterr().out
        for accepted in (0xB605, 0x0116):
            script(node, image_box, _rewrite(handlers[image_box], accepted))
            assert tool("print", *address, str(CT)) == 1  # an error...
            assert "warning not accepted" in capsys.readouterr().out
            assert tool("print", *address, str(CT), "--accept-warnings") == 0  # ...unless accepted
            assert f"0x{accepted:04X}" in capsys.readouterr().out
            drove("Print films", accepted)
        script(node, image_box, handlers[image_box])

        script(node, session, answering(0xC000))
        assert tool("print", *address, str(CT)) == 1
        output = capsys.readouterr()
        assert "not printed" in output.out or "failed" in output.out + output.err
        drove("Print films", 0xC000)


# --------------------------------------------------------------------------- the walk


def test_every_reaction_row_is_driven() -> None:
    """Each row of each SCU activity's table was driven by one of the tests above.

    (Run with them: a row no driven status exercises fails here.)
    """
    if not DRIVEN:
        pytest.skip("run with the driving tests of this module")
    missing = []
    for activity in SCU_ACTIVITIES:
        rows = {activity.reaction(status) for name, status in DRIVEN if name == activity.name}
        missing += [
            f"{activity.name}: {row.reaction}" for row in activity.received if row not in rows
        ]
    assert not missing, "rows no test drove:\n" + "\n".join(missing)


def test_statement_shows_every_declared_reaction() -> None:
    text = conformance_statement()
    for activity in SCU_ACTIVITIES:
        assert f"{activity.name} ({activity.commands}):" in text
        for row in activity.received:
            assert row.reaction.replace("|", "\\|") in text
