"""The generated conformance statement: checked-in copy, HTML, CLI, and its sources.

Every status the statement lists must be one the code sends: each declaration's status
is a named constant (or, for success, the literal 0) that the handler's own module uses
outside the declarations. Every rejection and abort is an enumeration member the Upper
Layer code uses. test_conformance_statement_driven.py drives most of them on a node.
"""

from __future__ import annotations

import ast
import functools
import inspect
import ssl
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import pytest

import dicomwire.dimse.session as dimse_session
from dicomwire.errors import PDUError
from dicomwire.services.cli import main
from dicomwire.services.conformance import (
    ABORTS,
    REJECTIONS,
    SESSION_STATUSES,
    build_statement,
    conformance_statement,
    render_markdown,
)
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.print import Print
from dicomwire.services.service import Service
from dicomwire.services.storage import StorageConfig
from dicomwire.ul.pdu import AbortSource
from tests.services.test_conformance_statement_driven import DRIVEN_STATUSES

REPO = Path(__file__).resolve().parents[2]
CHECKED_IN = REPO / "docs" / "conformance-statement.md"
UL_SOURCES = [REPO / "src" / "ul" / name for name in ("negotiation.py", "machine.py", "session.py")]


def test_checked_in_statement_is_the_generated_one() -> None:
    assert CHECKED_IN.read_text(encoding="utf-8") == conformance_statement(), (
        "docs/conformance-statement.md is stale: regenerate with "
        "`dicomwire conformance-statement -o docs/conformance-statement.md`"
    )


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables = 0
        self.rows = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tables += tag == "table"
        self.rows += tag == "tr"


def test_html_holds_the_same_tables_as_markdown() -> None:
    document = build_statement(Node(NodeConfig()))
    parser = _Tables()
    parser.feed(conformance_statement(format="html"))
    tables = document.tables()
    assert parser.tables == len(tables)
    assert parser.rows == sum(len(t.rows) + 1 for t in tables)
    assert render_markdown(document) == conformance_statement()


def test_cli_writes_markdown_html_and_refuses_a_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["conformance-statement", "-o", str(tmp_path / "cs.md")]) == 0
    assert (tmp_path / "cs.md").read_text(encoding="utf-8") == conformance_statement()
    assert main(["conformance-statement", "-o", str(tmp_path / "cs.html")]) == 0
    assert (tmp_path / "cs.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert main(["conformance-statement", "--format", "html"]) == 0
    assert "<table>" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("port = 'eleven'\n", encoding="utf-8")
    assert main(["conformance-statement", "--config", str(bad)]) == 2


def test_the_configuration_shows_in_the_statement(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        'ae_titles = ["ARCHIVE", "ARCHIVE2"]\nport = 4242\nmax_associations = 7\n'
        f'[storage]\nroot = "{tmp_path / "store"}"\n[print]\n',
        encoding="utf-8",
    )
    out = tmp_path / "cs.md"
    assert main(["conformance-statement", "-c", str(config), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "| ARCHIVE2 | 4242 |" in text
    assert "| Simultaneous associations accepted | 7 per worker process" in text
    assert "print (SCP)" in text and "| C600 | failure |" in text  # the printer's statuses


# --------------------------------------------------------------------------- sources


@functools.cache
def _services() -> list[Service]:
    root = Path(tempfile.gettempdir()) / "dicomwire-conformance-unused"
    services = list(Node(NodeConfig(storage=StorageConfig(root=root))).services)
    return [*services, Print(storage_root=root)]


def _handler_modules(service: Service) -> set[ModuleType]:
    """The service's module, its handlers' modules, and its package's loaded modules."""
    own = type(service).__module__
    package = own.rsplit(".", 1)[0] + "." if own.count(".") > 2 else own
    modules = {m for name, m in sys.modules.items() if name.startswith(package)}
    modules.add(inspect.getmodule(type(service)))
    for binding in service.bindings():
        modules |= {inspect.getmodule(handler) for handler in binding.handlers.values()}
    modules.add(dimse_session)  # send_pending's default status
    return {m for m in modules if m is not None}


def _uses(module: ModuleType) -> tuple[set[str], set[int]]:
    """Names the module's code reads, and int literals it answers with (declarations out)."""
    tree = ast.parse(inspect.getsource(module))
    declared: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "StatusDeclaration":
            declared |= {id(inner) for inner in ast.walk(node)}
    names = {
        n.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and id(n) not in declared
    }
    literals = {
        n.args[0].value
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and getattr(n.func, "id", getattr(n.func, "attr", "")) in ("Response", "response")
        and n.args
        and isinstance(n.args[0], ast.Constant)
        and isinstance(n.args[0].value, int)
    }
    return names, literals


def _referenced(code: int, modules: set[ModuleType]) -> bool:
    for module in modules:
        names, literals = _uses(module)
        for name in names:
            value = module.__dict__.get(name)
            if name.isupper() and isinstance(value, int) and value == code:
                return True
        if code == 0 and 0 in literals:
            return True
    return False


def test_every_declared_status_is_used_by_its_handler() -> None:
    missing = []
    for service in _services():
        modules = _handler_modules(service)
        for command, declared in service.statuses.items():
            for declaration in declared:
                if not _referenced(declaration.status, modules):
                    missing.append(f"{service.name} {command} {declaration.status:04X}")
    for declaration in SESSION_STATUSES:
        if not _referenced(declaration.status, {dimse_session}):
            missing.append(f"session {declaration.status:04X}")
    assert missing == []


def test_every_default_service_declares_its_statuses() -> None:
    for service in _services():
        if service.bindings():  # the audit trail serves no SOP class, sends no status
            assert service.statuses, f"{service.name} declares no statuses"


def test_driven_statuses_are_declared_ones() -> None:
    declared = {
        (service.name, command, int(d.status))
        for service in _services()
        for command, rows in service.statuses.items()
        for d in rows
    }
    declared |= {("session", "any", int(d.status)) for d in SESSION_STATUSES}
    assert declared >= DRIVEN_STATUSES, DRIVEN_STATUSES - declared


def _ul_attributes() -> set[str]:
    """``Enum.MEMBER`` expressions of the Upper Layer's acceptor and machine code."""
    found = set()
    for path in UL_SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                found.add(f"{node.value.id}.{node.attr}")
    return found


def test_every_rejection_is_one_the_upper_layer_sends() -> None:
    used = _ul_attributes()
    for rejection in REJECTIONS:
        for member in (rejection.result, rejection.source, rejection.reason):
            assert f"{type(member).__name__}.{member.name}" in used, rejection


def test_every_abort_is_one_the_upper_layer_sends() -> None:
    used = _ul_attributes()
    pdu_source = (REPO / "src" / "ul" / "pdu.py").read_text(encoding="utf-8")
    default_reason = inspect.signature(PDUError).parameters["abort_reason"].default
    for abort in ABORTS:
        if abort.source is AbortSource.SERVICE_USER:
            assert "AbortSource.SERVICE_USER" in used
            continue
        name = type(abort.reason).__name__ if hasattr(abort.reason, "name") else ""
        member = getattr(abort.reason, "name", "")
        assert (
            f"AbortReason.{member}" in used
            or f"AbortReason.{member}" in pdu_source
            or abort.reason == default_reason
        ), (name, abort)


# --------------------------------------------------------------------------- TLS (7.1)


def _handshake(
    server: ssl.SSLContext, client: ssl.SSLContext
) -> tuple[tuple[str, str, int] | None, str | None, object]:
    """One TLS handshake over a socket pair: (cipher, version, compression) or raises."""
    import socket
    import threading

    left, right = socket.socketpair()
    failure: list[BaseException] = []

    def accept() -> None:
        try:
            with server.wrap_socket(left, server_side=True) as secure:
                secure.recv(1)
        except (OSError, ssl.SSLError) as exc:
            failure.append(exc)

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        with client.wrap_socket(right, server_hostname="localhost") as secure:
            answer = (secure.cipher(), secure.version(), secure.compression())
            secure.sendall(b"x")
    finally:
        thread.join(10)
        left.close()
        right.close()
    return answer


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_table_is_what_the_contexts_negotiate(tmp_path: Path) -> None:
    """7.1: each profile's versions and TLS 1.2 suites as listed, each suite negotiated."""
    from dicomwire.services.certs import make_test_pki
    from dicomwire.services.conformance import tls_facts
    from dicomwire.ul.tls import (
        PROFILE_CIPHERS,
        TLSConfig,
        TLSProfile,
        client_context,
        server_context,
    )

    ca, issued = make_test_pki(tmp_path, ("localhost",))
    certificates = {item.kind: item for item in issued}
    statement = conformance_statement()
    for profile in TLSProfile:
        versions, also = tls_facts(profile)
        row = f"| {profile.value} | {', '.join(versions)} | {', '.join(PROFILE_CIPHERS[profile])} |"
        assert row in statement
        assert versions == ["TLS 1.2", "TLS 1.3"] and "no compression" in also
        servers = {
            kind: server_context(
                TLSConfig(
                    certificate=item.certificate,
                    key=item.key,
                    ca_file=ca,
                    profile=profile,
                    require_peer_certificate=False,
                )
            )
            for kind, item in certificates.items()
        }
        for suite in PROFILE_CIPHERS[profile]:
            client = client_context(TLSConfig(ca_file=ca, profile=profile), "localhost")
            client.maximum_version = ssl.TLSVersion.TLSv1_2
            client.set_ciphers(suite)
            server = servers["ecdsa" if "ECDSA" in suite else "rsa"]
            cipher, version, compression = _handshake(server, client)
            assert (cipher and cipher[0], version, compression) == (suite, "TLSv1.2", None)
        newest = client_context(TLSConfig(ca_file=ca, profile=profile), "localhost")
        assert _handshake(servers["rsa"], newest)[1] == "TLSv1.3"
        older = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        older.check_hostname, older.verify_mode = False, ssl.CERT_NONE
        older.minimum_version = older.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises(ssl.SSLError):  # below the listed versions: refused
            _handshake(servers["rsa"], older)
