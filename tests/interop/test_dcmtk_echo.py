"""C-ECHO between dicomwire and DCMTK, both directions, and every rejection as DCMTK sees it.

- ``echoscu`` (DCMTK) -> ``dicomwire serve`` (subprocess): plain, small PDUs, repeated
  associations, 128 contexts x 38 transfer syntaxes, abort instead of release;
- ``dicomwire echo`` -> ``storescp`` (DCMTK): plain, small PDUs both ways, repeated
  C-ECHO on one association, a refusing peer;
- A-ASSOCIATE-RJ (PS3.8 Table 9-21) as ``echoscu``/``findscu`` report it: called AE not
  recognized (1, 1, 7), calling AE not recognized (1, 1, 3) through a known-nodes table,
  local limit exceeded (2, 3, 2), no acceptable presentation context (1, 1, 1); the two
  DCMTK cannot provoke, application context (1, 1, 2) and protocol version (1, 2, 2), with a
  raw A-ASSOCIATE-RQ and the RJ PDU checked byte for byte.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomwire.ul.pdu import AAssociateAC, decode

from ..services._support import (
    A_RELEASE_RP,
    A_RELEASE_RQ,
    a_associate_rj,
    raw_connect,
    read_pdu,
    verification_rq,
)
from ._dcmtk import (
    LOCALHOST,
    background,
    dcmtk,
    dicomwire_argv,
    free_tcp_port,
    rejection,
    run,
)

pytestmark = pytest.mark.interop

ECHO_SUCCESS = "Received Echo Response (Success)"
CALLED_AE_NOT_RECOGNIZED = ("Rejected Permanent", "Service User", "Called AE Title Not Recognized")
CALLING_AE_NOT_RECOGNIZED = (
    "Rejected Permanent",
    "Service User",
    "Calling AE Title Not Recognized",
)


class Served:
    """A ``dicomwire serve`` subprocess: its port and log file."""

    def __init__(self, port: int, log: Path, process: subprocess.Popen[bytes]) -> None:
        self.port, self.log, self.process = port, log, process

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serve(directory: Path, *options: str, config: str | None = None) -> Iterator[Served]:
    """``dicomwire serve`` on 127.0.0.1 with ``options``; ``config`` is TOML text."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_tcp_port()
    argv = [*dicomwire_argv(), "serve", "--host", LOCALHOST, "--port", str(port)]
    argv += ["--storage", str(directory / "data"), "--discard", "-v", *options]
    if config is not None:
        path = directory / "node.toml"
        path.write_text(config)
        argv += ["--config", str(path)]
    log = directory / f"serve-{port}.log"
    with background(argv, port, log, cwd=directory) as process:
        yield Served(port, log, process)
        assert process.poll() is None, f"dicomwire serve died:\n{log.read_text()}"
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One default ``dicomwire serve`` (AE title DICOMWIRE) shared by this module."""
    with serve(tmp_path_factory.mktemp("serve")) as served:
        yield served


def echoscu(port: int, *options: str) -> subprocess.CompletedProcess[str]:
    return run([dcmtk("echoscu"), "-d", *options, LOCALHOST, str(port)])


def output(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


# --------------------------------------------------------------------------- echoscu -> us


class TestEchoscuToDicomwire:
    def test_echo(self, node: Served) -> None:
        done = echoscu(node.port, "-aec", "DICOMWIRE")
        text = output(done)
        assert done.returncode == 0, text
        assert text.count(ECHO_SUCCESS) == 1
        assert "Their Implementation Class UID:    2.25." in text
        assert "Their Implementation Version Name: DICOMWIRE" in text
        assert "Their Max PDU Receive Size:  65536" in text

    def test_small_pdu(self, node: Served) -> None:
        done = echoscu(node.port, "-aec", "DICOMWIRE", "-pdu", "4096")
        text = output(done)
        assert done.returncode == 0, text
        assert "Our Max PDU Receive Size:    4096" in text
        assert text.count(ECHO_SUCCESS) == 1

    def test_largest_pdu(self, node: Served) -> None:
        done = echoscu(node.port, "-aec", "DICOMWIRE", "-pdu", "131072")
        assert done.returncode == 0, output(done)

    def test_repeat_five_echoes(self, node: Served) -> None:
        done = echoscu(node.port, "-aec", "DICOMWIRE", "--repeat", "5")
        text = output(done)
        assert done.returncode == 0, text
        assert text.count(ECHO_SUCCESS) == 5
        assert text.count("Association Accepted") == 1  # echoscu repeats on one association

    def test_repeated_associations(self, node: Served) -> None:
        for _ in range(5):
            done = echoscu(node.port, "-aec", "DICOMWIRE", "-pdu", "4096")
            assert done.returncode == 0, output(done)

    def test_128_contexts_with_38_transfer_syntaxes(self, node: Served) -> None:
        done = echoscu(node.port, "-aec", "DICOMWIRE", "-ppc", "128", "-pts", "38")
        text = output(done)
        assert done.returncode == 0, text
        assert text.count("(Accepted)") == 128
        # Our preference order (Explicit VR Little Endian first) decides, not DCMTK's.
        assert text.count("Accepted Transfer Syntax: =LittleEndianExplicit") == 128

    def test_abort_instead_of_release(self, node: Served) -> None:
        done = echoscu(node.port, "-aec", "DICOMWIRE", "--abort")
        text = output(done)
        assert done.returncode == 0, text
        assert ECHO_SUCCESS in text
        assert "Aborting Association" in text
        # The node is unharmed.
        again = echoscu(node.port, "-aec", "DICOMWIRE")
        assert again.returncode == 0, output(again)


# --------------------------------------------------------------------------- us -> storescp


@contextlib.contextmanager
def storescp(directory: Path, *options: str) -> Iterator[tuple[int, Path]]:
    port = free_tcp_port()
    log = directory / f"storescp-{port}.log"
    argv = [dcmtk("storescp"), "-d", "--output-directory", str(directory), *options, str(port)]
    with background(argv, port, log, cwd=directory):
        yield port, log


def dicomwire_echo(port: int, *options: str) -> subprocess.CompletedProcess[str]:
    return run([*dicomwire_argv(), "echo", LOCALHOST, str(port), *options])


class TestDicomwireToStorescp:
    @pytest.mark.parametrize(
        ("our_options", "their_options", "echoes"),
        [
            ((), (), 1),
            (("--max-pdu", "4096"), (), 1),
            ((), ("--max-pdu", "4096"), 1),
            (("--max-pdu", "4096", "-r", "5"), ("--max-pdu", "4096"), 5),
            (("--repeat", "5", "--aet", "WIRE-SCU", "--aec", "STORESCP"), (), 5),
        ],
        ids=["plain", "our-pdu-4096", "their-pdu-4096", "both-4096-repeat-5", "repeat-aets"],
    )
    def test_echo(
        self,
        tmp_path: Path,
        our_options: tuple[str, ...],
        their_options: tuple[str, ...],
        echoes: int,
    ) -> None:
        with storescp(tmp_path, *their_options) as (port, log):
            done = dicomwire_echo(port, *our_options)
        assert done.returncode == 0, output(done)
        assert "success (0x0000)" in done.stdout
        assert "Traceback" not in done.stderr
        seen = log.read_text(errors="replace")
        assert seen.count("Received Echo Request") == echoes
        assert seen.count("Association Acknowledged") == 1  # all echoes on one association
        assert "Association Release" in seen
        if "--max-pdu" in our_options:
            assert "Their Max PDU Receive Size:  4096" in seen
        else:
            assert "Their Max PDU Receive Size:  65536" in seen
        if "--aec" in our_options:
            assert "Called Application Name:     STORESCP" in seen
            assert "Calling Application Name:    WIRE-SCU" in seen

    def test_refused_association(self, tmp_path: Path) -> None:
        with storescp(tmp_path, "--refuse") as (port, _):
            done = dicomwire_echo(port)
        assert done.returncode == 1, output(done)
        assert "echo failed: association rejected" in done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""


# --------------------------------------------------------------------------- rejections


class TestRejectionsSeenByDcmtk:
    def test_called_ae_title_not_recognized(self, node: Served) -> None:
        done = echoscu(node.port, "-aec", "WRONG")
        assert done.returncode != 0
        assert rejection(output(done)) == CALLED_AE_NOT_RECOGNIZED

    def test_calling_ae_title_not_in_known_nodes(self, tmp_path: Path) -> None:
        config = '[[known_nodes]]\nae_title = "OTHER"\n'
        with serve(tmp_path, config=config) as served:
            done = echoscu(served.port, "-aec", "DICOMWIRE")  # calling AE: ECHOSCU
            assert done.returncode != 0
            assert rejection(output(done)) == CALLING_AE_NOT_RECOGNIZED
            allowed = echoscu(served.port, "-aec", "DICOMWIRE", "-aet", "OTHER")
            assert allowed.returncode == 0, output(allowed)
            assert rejection(output(allowed)) is None

    @pytest.mark.parametrize(("host", "accepted"), [("127.0.0.0/8", True), ("10.0.0.0/8", False)])
    def test_known_node_address(self, tmp_path: Path, host: str, accepted: bool) -> None:
        config = f'[[known_nodes]]\nae_title = "ECHOSCU"\nhost = "{host}"\n'
        with serve(tmp_path, config=config) as served:
            done = echoscu(served.port, "-aec", "DICOMWIRE")
        if accepted:
            assert done.returncode == 0, output(done)
        else:
            assert rejection(output(done)) == CALLING_AE_NOT_RECOGNIZED

    def test_local_limit_exceeded(self, tmp_path: Path) -> None:
        with serve(tmp_path, "--max-associations", "1") as served:
            with raw_connect(served.port) as held:
                held.sendall(verification_rq().encode())
                assert isinstance(decode(read_pdu(held)), AAssociateAC)
                done = echoscu(served.port, "-aec", "DICOMWIRE")
                assert done.returncode != 0
                assert rejection(output(done)) == (
                    "Rejected Transient",
                    "Service Provider (Presentation Related)",
                    "Local Limit Exceeded",
                )
                held.sendall(A_RELEASE_RQ)
                assert read_pdu(held) == A_RELEASE_RP
            # The released association no longer counts against the limit.
            after = echoscu(served.port, "-aec", "DICOMWIRE")
            assert after.returncode == 0, output(after)

    def test_no_acceptable_presentation_context(self, node: Served) -> None:
        # termscu proposes only DCMTK's private Shutdown SOP class, which no service
        # serves (findscu no longer shows this: Query/Retrieve is a default service).
        done = run([dcmtk("termscu"), "-d", "-aec", "DICOMWIRE", LOCALHOST, str(node.port)])
        assert done.returncode != 0
        assert rejection(output(done)) == ("Rejected Permanent", "Service User", "No Reason")

    @pytest.mark.parametrize(
        ("request_kwargs", "expected"),
        [
            ({"application_context": "1.2.3.4"}, (1, 1, 2)),
            ({"protocol_version": 2}, (1, 2, 2)),
        ],
        ids=["application-context", "protocol-version"],
    )
    def test_rejections_dcmtk_cannot_provoke(
        self, node: Served, request_kwargs: dict[str, object], expected: tuple[int, int, int]
    ) -> None:
        with raw_connect(node.port) as sock:
            sock.sendall(verification_rq(**request_kwargs).encode())  # type: ignore[arg-type]
            assert read_pdu(sock) == a_associate_rj(*expected)
