"""What a TLS requestor is told when the secure connection fails (PS3.15 Annex B).

Each refusal is provoked for real: a dicomwire node (in process, 127.0.0.1, port 0) or a
Python TLS server that is configured to fail in one way. The assertions are what the user
sees, the one line ``dicomwire echo ... --tls`` prints on stderr, and the ``reason`` of the
:class:`~dicomwire.errors.TLSError` the API raises; the node's log line is checked as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dicomwire.errors import AssociationAborted, TLSError
from dicomwire.services.certs import make_test_pki
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig
from dicomwire.services.verification import echo
from dicomwire.ul import association as association_module
from dicomwire.ul.association import Timeouts
from dicomwire.ul.tls import TLSConfig, client_context

from ..conftest import LOCALHOST

T = TypeVar("T")
TIMEOUTS = Timeouts(connect=10, artim=10, acse=10, dimse=10, network_idle=10)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    async def limited() -> T:
        return await asyncio.wait_for(coroutine, 60)

    return asyncio.run(limited())


@dataclass
class PKI:
    directory: Path
    #: A second test PKI: its CA is not the node's, nor the client's.
    other: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    def config(self, *, certificate: bool = True, other: bool = False, **options: Any) -> TLSConfig:
        directory = self.other if other else self.directory
        options.setdefault("ca_file", self.ca)
        if not certificate:
            return TLSConfig(**options)
        return TLSConfig(
            certificate=directory / "localhost-rsa.pem",
            key=directory / "localhost-rsa-key.pem",
            **options,
        )

    def cli(
        self, *, certificate: bool = True, other: bool = False, ca: Path | None = None
    ) -> list[str]:
        directory = self.other if other else self.directory
        flags = ["--tls", "--ca", str(ca or self.ca)]
        if certificate:
            flags += ["--cert", str(directory / "localhost-rsa.pem")]
            flags += ["--key", str(directory / "localhost-rsa-key.pem")]
        return flags


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    other = tmp_path_factory.mktemp("other-pki")
    make_test_pki(directory, ("localhost",))
    make_test_pki(other, ("localhost",))
    return PKI(directory, other)


@pytest.fixture(autouse=True)
def _capture_dicomwire_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dicomwire")


@dataclass
class Ports:
    plain: int
    tls: int


@contextlib.asynccontextmanager
async def tls_node(pki: PKI) -> AsyncIterator[Ports]:
    """A node requiring client certificates, with a plain and a TLS port."""
    config = NodeConfig(
        host=LOCALHOST,
        port=0,
        tls=pki.config(),
        tls_port=0,
        promiscuous=True,
        storage=StorageConfig(root=Path("unused"), discard=True),
        timeouts=TIMEOUTS,
        shutdown_grace=1.0,
    )
    node = Node(config)
    await node.start()
    try:
        plain, secure = (int(s.getsockname()[1]) for s in node.server.sockets[:2])
        yield Ports(plain, secure)
    finally:
        await node.shutdown()


@contextlib.asynccontextmanager
async def python_tls_server(
    pki: PKI, *, setup: Any = None, close_after_handshake: bool = False
) -> AsyncIterator[int]:
    """A bare TLS server that never speaks DICOM; ``setup`` adjusts its context.

    Blocking sockets in a thread, so that OpenSSL sends its alert before the close.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(
        pki.directory / "localhost-rsa.pem", pki.directory / "localhost-rsa-key.pem"
    )
    if setup is not None:
        setup(context)
    listener = socket.create_server((LOCALHOST, 0))
    listener.settimeout(0.1)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(10)
            with connection, contextlib.suppress(OSError):
                secure = context.wrap_socket(connection, server_side=True)
                if not close_after_handshake:
                    while secure.recv(1 << 16):
                        pass
                secure.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stopping.set()
        await asyncio.to_thread(thread.join, 15)
        listener.close()


async def cli_echo(port: int, flags: list[str]) -> tuple[int, list[str]]:
    """``dicomwire echo`` as a user runs it: its exit status and stderr lines."""
    script = Path(sys.executable).with_name("dicomwire")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "dicomwire.services.cli"]
    argv += ["echo", LOCALHOST, str(port), "--aec", "DICOMWIRE", *flags]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stderr.decode().splitlines()


async def api_echo(port: int, tls: TLSConfig | None) -> BaseException:
    with pytest.raises((TLSError, AssociationAborted)) as caught:
        await echo(LOCALHOST, port, called_ae_title="DICOMWIRE", timeouts=TIMEOUTS, tls=tls)
    return caught.value


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------- client certificate


def test_client_without_certificate(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    """TLS 1.3: the server's certificate_required alert comes after the client's handshake."""

    async def scenario() -> tuple[int, tuple[int, list[str]], BaseException]:
        async with tls_node(pki) as ports:
            shown = await cli_echo(ports.tls, pki.cli(certificate=False))
            error = await api_echo(ports.tls, pki.config(certificate=False))
            return ports.tls, shown, error

    port, (status, lines), error = run(scenario())
    expected = (
        f"TLS handshake with {LOCALHOST}:{port} failed: the server requires a client "
        "certificate (alert certificate_required)"
    )
    assert status == 1
    assert lines == [f"echo failed: {expected}"]  # one line: no A-P-ABORT, no traceback
    assert isinstance(error, TLSError)
    assert str(error) == expected
    assert error.reason == "certificate-required"
    assert error.permanent
    refusals = [m for m in warnings_of(caplog) if "the peer sent no certificate" in m]
    assert len(refusals) == 2  # the CLI's attempt and the API's
    assert not any("A-P-ABORT" in m for m in warnings_of(caplog))


def test_client_without_certificate_tls12(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS 1.2 answers a missing client certificate with handshake_failure (ambiguous)."""

    def tls12_context(config: TLSConfig, host: str) -> ssl.SSLContext:
        context = client_context(config, host)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        return context

    monkeypatch.setattr(association_module, "client_context", tls12_context)

    async def scenario() -> BaseException:
        async with tls_node(pki) as ports:
            return await api_echo(ports.tls, pki.config(certificate=False))

    error = run(scenario())
    assert isinstance(error, TLSError)
    assert error.reason == "handshake-failure"
    assert str(error).endswith(
        "the server requires a client certificate, or shares no cipher suite "
        "(alert handshake_failure)"
    )


def test_client_certificate_not_trusted_by_server(pki: PKI) -> None:
    async def scenario() -> tuple[int, tuple[int, list[str]], BaseException]:
        async with tls_node(pki) as ports:
            shown = await cli_echo(ports.tls, pki.cli(other=True))
            return ports.tls, shown, await api_echo(ports.tls, pki.config(other=True))

    port, (status, lines), error = run(scenario())
    expected = (
        f"TLS handshake with {LOCALHOST}:{port} failed: the server does not trust our "
        "certificate (alert unknown_ca)"
    )
    assert status == 1
    assert lines == [f"echo failed: {expected}"]
    assert isinstance(error, TLSError)
    assert error.reason == "certificate-refused"


def test_server_certificate_not_trusted(pki: PKI) -> None:
    async def scenario() -> tuple[int, tuple[int, list[str]], BaseException]:
        async with tls_node(pki) as ports:
            other_ca = pki.other / "ca.pem"
            shown = await cli_echo(ports.tls, pki.cli(ca=other_ca))
            return ports.tls, shown, await api_echo(ports.tls, pki.config(ca_file=other_ca))

    port, (status, lines), error = run(scenario())
    assert status == 1
    (line,) = lines
    prefix = f"echo failed: TLS handshake with {LOCALHOST}:{port} failed: "
    prefix += "certificate verification failed: "
    assert line.startswith(prefix), line
    assert isinstance(error, TLSError)
    assert error.reason == "untrusted-certificate"
    assert str(error) == line.removeprefix("echo failed: ")


# --------------------------------------------------------------------------- not TLS


def test_tls_client_on_plain_port(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[int, tuple[int, list[str]], BaseException]:
        async with tls_node(pki) as ports:
            shown = await cli_echo(ports.plain, pki.cli())
            return ports.plain, shown, await api_echo(ports.plain, pki.config())

    port, (status, lines), error = run(scenario())
    expected = (
        f"the server at {LOCALHOST}:{port} does not speak TLS (it answered with a DICOM A-ABORT)"
    )
    assert status == 1
    assert lines == [f"echo failed: {expected}"]
    assert isinstance(error, TLSError)
    assert error.reason == "not-tls"
    assert error.permanent
    node = [m for m in warnings_of(caplog) if "a TLS client on the plain port?" in m]
    assert len(node) == 2, warnings_of(caplog)  # the CLI's attempt and the API's


def test_plain_client_on_tls_port(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[int, tuple[int, list[str]], BaseException]:
        async with tls_node(pki) as ports:
            shown = await cli_echo(ports.tls, [])
            return ports.tls, shown, await api_echo(ports.tls, None)

    port, (status, lines), error = run(scenario())
    expected = (
        f"the server at {LOCALHOST}:{port} closed the connection without answering the "
        "A-ASSOCIATE-RQ (is it a TLS port?)"
    )
    assert status == 1
    assert lines[-1].startswith("echo failed: ") and lines[-1].endswith(expected), lines
    assert isinstance(error, AssociationAborted)
    assert str(error).endswith(expected)
    node = [
        m for m in warnings_of(caplog) if "the client sent a DICOM A-ASSOCIATE-RQ in plaintext" in m
    ]
    assert len(node) == 2, warnings_of(caplog)


# --------------------------------------------------------------------------- other servers


def _tls12_only(cipher: str) -> Any:
    def setup(context: ssl.SSLContext) -> None:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(cipher)

    return setup


def _tls11_only(context: ssl.SSLContext) -> None:
    context.set_ciphers("DEFAULT@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1


@pytest.mark.parametrize(
    ("setup", "reason", "text"),
    [
        (
            _tls12_only("AES128-SHA256"),  # RSA key exchange: in no profile
            "no-shared-cipher",
            "no shared cipher suite or protocol version (alert handshake_failure)",
        ),
        (
            _tls11_only,
            "protocol-version",
            "protocol version refused (TLS 1.2 or 1.3 only) (alert protocol_version)",
        ),
    ],
    ids=["cipher", "version"],
)
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_nothing_in_common_with_server(pki: PKI, setup: Any, reason: str, text: str) -> None:
    async def scenario() -> tuple[int, tuple[int, list[str]], BaseException]:
        async with python_tls_server(pki, setup=setup) as port:
            shown = await cli_echo(port, pki.cli())
            return port, shown, await api_echo(port, pki.config())

    port, (status, lines), error = run(scenario())
    expected = f"TLS handshake with {LOCALHOST}:{port} failed: {text}"
    assert status == 1
    assert lines == [f"echo failed: {expected}"]
    assert isinstance(error, TLSError)
    assert error.reason == reason
    assert str(error) == expected


@pytest.mark.parametrize("certificate", [True, False], ids=["with-cert", "without-cert"])
def test_server_closes_right_after_handshake(pki: PKI, certificate: bool) -> None:
    """As DCMTK's storescp does when it refuses the client certificate on TLS 1.3."""

    async def scenario() -> tuple[int, tuple[int, list[str]], BaseException]:
        async with python_tls_server(pki, close_after_handshake=True) as port:
            shown = await cli_echo(port, pki.cli(certificate=certificate))
            return port, shown, await api_echo(port, pki.config(certificate=certificate))

    port, (status, lines), error = run(scenario())
    guess = (
        "it may not trust our certificate"
        if certificate
        else "it may require a client certificate (we have none)"
    )
    expected = (
        f"TLS handshake with {LOCALHOST}:{port} failed: the server closed the connection right "
        f"after the handshake, before answering the A-ASSOCIATE-RQ: {guess}"
    )
    assert status == 1
    assert lines == [f"echo failed: {expected}"]
    assert isinstance(error, TLSError)
    assert error.reason == "closed-after-handshake"


def test_handshake_timeout_reason(pki: PKI) -> None:
    async def scenario() -> BaseException:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                await reader.read()
            writer.close()

        server = await asyncio.start_server(silent, LOCALHOST, 0)
        try:
            port = int(server.sockets[0].getsockname()[1])
            return await api_echo(port, pki.config(handshake_timeout=0.3))
        finally:
            server.close()
            await server.wait_closed()

    error = run(scenario())
    assert isinstance(error, TLSError)
    assert error.reason == "handshake-timeout"
    assert not error.permanent
    assert str(error).endswith("failed: handshake timed out")


def test_server_closes_during_handshake(pki: PKI) -> None:
    """A server that drops the ClientHello without a TLS alert or a DICOM PDU."""

    async def scenario() -> tuple[int, BaseException]:
        async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.close()

        server = await asyncio.start_server(drop, LOCALHOST, 0)
        try:
            port = int(server.sockets[0].getsockname()[1])
            return port, await api_echo(port, pki.config())
        finally:
            server.close()
            await server.wait_closed()

    port, error = run(scenario())
    assert isinstance(error, TLSError)
    assert error.reason == "closed-during-handshake"
    assert str(error).startswith(
        f"TLS handshake with {LOCALHOST}:{port} failed: the server closed the connection "
        "during the handshake without a TLS alert"
    )


def test_client_without_certificate_on_uvloop(pki: PKI) -> None:
    """The same alert-after-handshake path on uvloop (the node lingers with write_eof)."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> BaseException:
        async with tls_node(pki) as ports:
            return await api_echo(ports.tls, pki.config(certificate=False))

    error = uvloop.run(asyncio.wait_for(scenario(), 60))
    assert isinstance(error, TLSError)
    assert error.reason == "certificate-required"
