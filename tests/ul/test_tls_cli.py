"""TLS settings as operators give them: ``dicomwire`` flags and the node's TOML ``[tls]`` table.

The command line contract (``dicomwire.services.cli``): a failure prints one clear line on
stderr, never a traceback; bad configuration exits 2, a DICOM or network failure 1.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from dicomwire.services.certs import make_test_pki
from dicomwire.services.cli import main
from dicomwire.services.node import Node, load_config
from dicomwire.services.verification import echo
from dicomwire.testing.corpus import write_corpus
from dicomwire.ul.association import Timeouts
from dicomwire.ul.tls import TLSConfig, TLSProfile

LOCALHOST = "127.0.0.1"
TIMEOUT = 30


def dicomwire_argv() -> list[str]:
    script = Path(sys.executable).with_name("dicomwire")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dicomwire.services.cli"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    make_test_pki(directory, ("localhost",))
    (directory / "password.txt").write_text("dicomwire\n")
    (directory / "wrong.txt").write_text("not the password\n")
    return directory


# --------------------------------------------------------------------------- echo / store flags


@pytest.mark.parametrize("command", ["echo", "store"])
def test_client_without_trust_store(
    pki: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    argv = [command, LOCALHOST, "9"]
    if command == "store":
        argv += map(str, write_corpus(pki / "corpus", 1, "small"))
    argv += ["--tls", "--cert", str(pki / "localhost-rsa.pem")]
    argv += ["--key", str(pki / "localhost-rsa-key.pem"), "--connect-timeout", "2"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "trust store" in err
    assert "Traceback" not in err


def test_echo_pkcs12_with_wrong_password(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["echo", LOCALHOST, "9", "--tls", "--pkcs12", str(pki / "localhost-rsa.p12")]
    argv += ["--password-file", str(pki / "wrong.txt"), "--ca", str(pki / "ca.pem")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "PKCS#12" in err
    assert err.count("\n") == 1  # one line


@pytest.mark.parametrize("command", ["echo", "store", "serve"])
def test_tls_flags_are_offered(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    flags = ["--tls-port", "--no-peer-cert"] if command == "serve" else ["--tls"]
    for flag in (*flags, "--cert", "--key", "--pkcs12", "--password-file", "--ca"):
        assert flag in text
    for profile in TLSProfile:
        assert profile.value in text


# --------------------------------------------------------------------------- serve


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ca", "{pki}/ca.pem"], "needs a certificate"),
        (
            ["--cert", "{pki}/localhost-rsa.pem", "--key", "{pki}/localhost-rsa-key.pem"],
            "trust store",
        ),
        (
            [
                "--pkcs12",
                "{pki}/localhost-rsa.p12",
                "--password-file",
                "{pki}/wrong.txt",
                "--ca",
                "{pki}/ca.pem",
            ],
            "PKCS#12",
        ),
    ],
    ids=["no-certificate", "no-trust-store", "wrong-pkcs12-password"],
)
def test_serve_with_bad_tls_settings(
    pki: Path, tmp_path: Path, flags: list[str], message: str
) -> None:
    argv = [*dicomwire_argv(), "serve", "--host", LOCALHOST, "--port", "0", "--tls-port", "0"]
    argv += ["--discard", "--storage", str(tmp_path)]
    argv += [flag.format(pki=pki) for flag in flags]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert message in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (1, 2)  # 2 would match the other configuration errors


# --------------------------------------------------------------------------- TOML


def test_node_tls_from_toml(pki: Path, tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        f"""
ae_titles = ["SECURE"]
host = "{LOCALHOST}"
port = 0
tls_port = 0

[storage]
root = "{tmp_path / "data"}"
discard = true

[tls]
pkcs12 = "{pki / "localhost-ecdsa.p12"}"
password = "dicomwire"
ca_file = "{pki / "ca.pem"}"
profile = "bcp195-ex"
handshake_timeout = 5.0
"""
    )
    config = load_config(path)
    assert config.tls == TLSConfig(
        pkcs12=pki / "localhost-ecdsa.p12",
        password=b"dicomwire",
        ca_file=pki / "ca.pem",
        profile=TLSProfile.EXTENDED_BCP195,
        handshake_timeout=5.0,
    )
    assert config.tls_port == 0
    config.shutdown_grace = 1.0

    async def scenario() -> int:
        async with Node(config) as node:
            tls_port = node.server.sockets[1].getsockname()[1]
            client = TLSConfig(
                certificate=pki / "localhost-rsa.pem",
                key=pki / "localhost-rsa-key.pem",
                ca_file=pki / "ca.pem",
            )
            status = await echo(
                LOCALHOST,
                tls_port,
                called_ae_title="SECURE",
                tls=client,
                timeouts=Timeouts(artim=5, acse=5, dimse=5, network_idle=5, connect=5),
            )
            return int(status)

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == 0
