"""The conformance prober against our own node: every scenario passes (PS3.8, PS3.7).

One run of the whole suite against a :class:`~dicomwire.services.node.Node` on 127.0.0.1
(ARTIM 0.5 s) feeds one test per scenario; every one must pass. Then: the report's text
and JSON forms, ``dicomwire probe`` through
:func:`~dicomwire.testing.probe_cli.run_probe`, and the raw peer API itself (splitting,
slow writes, timeouts, resets, TLS). Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import socket
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dicomwire.services.certs import make_test_pki
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig
from dicomwire.testing.probe_cli import add_probe_parser, run_probe
from dicomwire.testing.prober import (
    SCENARIOS,
    ProbeTarget,
    SuiteReport,
    Verdict,
    format_result,
    run_suite,
    select_scenarios,
    write_report,
)
from dicomwire.testing.rawpeer import (
    IMPLICIT_VR_LE,
    SECONDARY_CAPTURE,
    VERIFICATION,
    ExpectationError,
    Message,
    RawPeer,
    RawPeerError,
    RawPeerTimeout,
    c_echo_rq,
    c_store_rq,
    fragments,
    new_uid,
    small_dataset,
)
from dicomwire.ul.association import Timeouts
from dicomwire.ul.pdu import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PDUType,
)
from dicomwire.ul.tls import TLSConfig

LOCALHOST = "127.0.0.1"
ARTIM = 0.5
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


def node_config(root: Path, **changes: Any) -> NodeConfig:
    settings: dict[str, Any] = {
        "host": LOCALHOST,
        "port": 0,
        "storage": StorageConfig(root=root, fsync=False),
        "timeouts": Timeouts(artim=ARTIM, acse=5.0, dimse=None, network_idle=None),
        "shutdown_grace": 1.0,
    }
    settings.update(changes)
    return NodeConfig(**settings)


@contextlib.asynccontextmanager
async def serving(root: Path, **changes: Any) -> AsyncIterator[Node]:
    async with Node(node_config(root, **changes)) as node:
        yield node


def target(port: int, **changes: Any) -> ProbeTarget:
    settings: dict[str, Any] = {
        "called_ae_title": "DICOMWIRE",
        "timeout": 3.0,
        "artim_wait": ARTIM + 2.5,
    }
    settings.update(changes)
    return ProbeTarget(LOCALHOST, port, **settings)


# --------------------------------------------------------------------------- the suite


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> SuiteReport:
    root = tmp_path_factory.mktemp("stored")

    async def probe() -> SuiteReport:
        async with serving(root) as node:
            return await run_suite(target(node.port))

    return run(probe())


def _scenario_params() -> list[Any]:
    return [pytest.param(item.name, id=item.name) for item in SCENARIOS]


@pytest.mark.parametrize("name", _scenario_params())
def test_scenario_passes_against_our_node(report: SuiteReport, name: str) -> None:
    result = report.result(name)
    assert result.verdict is Verdict.PASS, format_result(result)
    assert result.survived


def test_the_suite_covers_the_issue(report: SuiteReport) -> None:
    names = {r.name for r in report.results}
    assert len(names) == len(SCENARIOS) >= 50
    for required in (
        "sta2-unexpected-ac",
        "sta2-unexpected-rj",
        "sta2-unexpected-p-data",
        "sta2-unexpected-release-rq",
        "sta2-unexpected-release-rp",
        "sta6-unexpected-ac",
        "sta6-unexpected-rj",
        "sta6-unexpected-rq",
        "sta6-unexpected-release-rp",
        "sta2-unknown-pdu-type",
        "sta6-unknown-pdu-type",
        "sta6-pdu-above-maximum",
        "sta6-length-near-2^32",
        "assoc-protocol-version",
        "assoc-application-context",
        "assoc-called-ae-title",
        "assoc-calling-ae-title",
        "assoc-abstract-syntax-rejected",
        "assoc-transfer-syntax-rejected",
        "assoc-role-selection",
        "assoc-user-identity",
        "assoc-async-window",
        "pdata-command-2-byte-pdus",
        "pdata-command-and-dataset-one-pdu",
        "pdata-invalid-context-id",
        "artim-idle-connection",
        "sta6-truncated-pdu-then-close",
        "sta6-a-abort",
        "release-collision",
    ):
        assert required in names
    assert all(r.survived for r in report.results)
    assert report.seconds < 30


def test_text_and_json_reports(report: SuiteReport) -> None:
    text = io.StringIO()
    write_report(report, text)
    lines = text.getvalue()
    assert lines.startswith(f"dicomwire probe of {LOCALHOST}:")
    assert report.score_line() in lines
    assert all(f"] {r.name}: " in lines for r in report.results)
    assert "requires: AA-8: an A-ABORT with source 2" in lines

    as_json = io.StringIO()
    write_report(report, as_json, as_json=True)
    data = json.loads(as_json.getvalue())
    assert data["score"]["total"] == len(SCENARIOS)
    assert data["score"]["passed"] == report.passed
    assert data["peer"]["implementation_version_name"] == "DICOMWIRE_010"
    first = data["scenarios"][0]
    assert first["name"] == "baseline" and first["verdict"] == "pass"
    assert set(first) >= {"requirement", "observed", "reference", "survived", "seconds"}


# --------------------------------------------------------------------------- the CLI


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dicomwire")
    add_probe_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["probe", *argv])


def test_cli_json_run_against_our_node(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, str]:
        async with serving(tmp_path) as node:
            out = io.StringIO()
            args = parse(
                LOCALHOST,
                str(node.port),
                "--aec",
                "DICOMWIRE",
                "--timeout",
                "3",
                "--only",
                "Sta6",
                "--only",
                "release*",
                "--json",
            )
            return await run_probe(args, out), out.getvalue()

    status, output = run(scenario())
    data = json.loads(output)
    names = [s["name"] for s in data["scenarios"]]
    assert names[0] == "baseline" and "sta6-unexpected-rq" in names and "release" in names
    assert not any(n.startswith("assoc-") for n in names)
    assert status == 0, output


def test_cli_text_run_and_exit_status_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        port = sock.getsockname()[1]  # closed again: connections are refused

    out = io.StringIO()
    status = run(run_probe(parse(LOCALHOST, str(port), "--only", "sta6-a-abort", "-q"), out))
    assert status == 1
    text = out.getvalue()
    assert "[ FAIL] baseline" in text
    assert "[ SKIP] sta6-a-abort" in text and "baseline association failed" in text
    assert "score: 0/1 passed, 1 failed, 1 skipped" in text


def test_cli_list_and_usage() -> None:
    out = io.StringIO()
    assert run(run_probe(parse("--list"), out)) == 0
    assert len(out.getvalue().splitlines()) == len(SCENARIOS)
    assert run(run_probe(parse(), io.StringIO())) == 2
    with pytest.raises(SystemExit):
        parse(LOCALHOST, "104", "--aet", "A" * 17)


def test_select_scenarios() -> None:
    assert [s.name for s in select_scenarios(["sta2-a-abort"])] == ["baseline", "sta2-a-abort"]
    assert [s.name for s in select_scenarios(["release"])] == [
        "baseline",
        "release",
        "release-collision",
    ]
    groups = {s.group for s in select_scenarios(["Sta2"])} - {"association"}
    assert groups == {"Sta2"}
    assert not any(s.slow for s in select_scenarios(include_slow=False))
    assert "release-collision" not in [s.name for s in select_scenarios(skip=["release-*"])]


# --------------------------------------------------------------------------- the raw peer


def test_raw_peer_split_slow_and_expectations(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as node, RawPeer.connect(LOCALHOST, node.port) as peer:
            contexts = [(VERIFICATION, [IMPLICIT_VR_LE]), (SECONDARY_CAPTURE, [IMPLICIT_VR_LE])]
            await peer.send_split(b"", [1])  # nothing to send is not an error
            answer = await peer.associate("RAWPEER", "DICOMWIRE", contexts)
            assert isinstance(answer, AAssociateAC)
            assert peer.peer_max_pdu_length == node.config.max_pdu_length
            assert peer.negotiated is not None and peer.accepted_context(SECONDARY_CAPTURE) == 3
            await peer.send_slowly(PDataTF(fragments(1, c_echo_rq(9), command=True)), 0.001, 13)
            message = await peer.receive_message()
            assert isinstance(message, Message) and message.status == 0
            assert message.message_id_being_responded_to == 9
            uid = new_uid()
            await peer.send_message(
                3,
                c_store_rq(SECONDARY_CAPTURE, uid),
                small_dataset(sop_instance_uid=uid),
                sizes=[2, 6],
                pdvs_per_pdu=5,
            )
            stored = await peer.receive_message()
            assert stored.command_field == 0x8001 and stored.status == 0
            assert await peer.echo() == 0
            with pytest.raises(RawPeerTimeout):
                await peer.receive(0.05)
            await peer.expect_silence(0.05)
            await peer.send(AAssociateAC("DICOMWIRE", "RAWPEER", []))
            with pytest.raises(ExpectationError) as caught:
                await peer.expect(AReleaseRP)
            assert isinstance(caught.value, AssertionError)
            assert isinstance(caught.value.received, AAbort)
            waited = await peer.expect_close(ARTIM + 2.0)
            assert waited >= ARTIM - 0.2  # our node waits for ARTIM in Sta13
            assert peer.closed and not peer.reset
            assert [type(p) for p in peer.received][-1] is AAbort

    run(scenario())


def test_raw_peer_rejection_release_and_reset(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as node:
            async with RawPeer.connect(LOCALHOST, node.port) as peer:
                answer = await peer.associate("RAWPEER", "SOMEONE-ELSE")
                assert isinstance(answer, AAssociateRJ)
                assert (answer.result, answer.source, answer.reason) == (1, 1, 7)
            async with RawPeer.connect(LOCALHOST, node.port, timeout=2.0) as peer:
                await peer.associate("RAWPEER", "DICOMWIRE")
                await peer.release()
                assert isinstance(peer.received[-1], AReleaseRP)
            peer = await RawPeer.connect(LOCALHOST, node.port)
            await peer.associate("RAWPEER", "DICOMWIRE")
            peer.abort_transport()  # the node sees Evt17 in Sta6 and carries on
            async with RawPeer.connect(LOCALHOST, node.port) as again:
                await again.associate("RAWPEER", "DICOMWIRE")
                assert await again.echo() == 0
                await again.send(AReleaseRQ())
                assert isinstance(await again.expect(PDUType.A_RELEASE_RP), AReleaseRP)
                await again.send(AAbort(0, 0))
                assert await again.expect_close(1.0) < ARTIM

    run(scenario())


def test_raw_peer_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        port = sock.getsockname()[1]
    with pytest.raises(RawPeerError, match="cannot connect"):
        run(RawPeer.connect(LOCALHOST, port, timeout=2.0).__aenter__())


def test_raw_peer_and_prober_over_tls(tmp_path: Path) -> None:
    ca, issued = make_test_pki(tmp_path / "pki", ["localhost"])
    rsa = next(i for i in issued if i.kind == "rsa")
    server_tls = TLSConfig(
        certificate=rsa.certificate, key=rsa.key, ca_file=ca, require_peer_certificate=False
    )
    client_tls = TLSConfig(ca_file=ca)

    async def scenario() -> SuiteReport:
        async with serving(tmp_path / "stored", tls=server_tls, tls_port=0) as node:
            tls_port = int(node.server.sockets[1].getsockname()[1])
            async with RawPeer.connect(LOCALHOST, tls_port, tls=client_tls) as peer:
                assert isinstance(await peer.associate("RAWPEER", "DICOMWIRE"), AAssociateAC)
                assert await peer.echo() == 0
                await peer.release()
            chosen = select_scenarios(["sta6-unexpected-rq", "pdata-command-2-byte-pdus"])
            return await run_suite(target(tls_port, tls=client_tls), chosen)

    report = run(scenario())
    assert report.ok and report.passed == 3, [format_result(r) for r in report.results]


def test_docs_describe_every_scenario() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "conformance.md").read_text()
    missing = [s.name for s in SCENARIOS if f"| `{s.name}` |" not in text]
    assert not missing, f"docs/conformance.md lacks {missing}"
