"""The ``dicomwire`` command line: one subcommand per tool, DCMTK-like flags.

- ``dicomwire echo HOST PORT`` — Verification SCU (like DCMTK's echoscu);
- ``dicomwire store HOST PORT PATH...`` — Storage SCU (like DCMTK's storescu);
- ``dicomwire serve`` — the node: Verification and Storage SCP, plain TCP and TLS;
- ``dicomwire certs DIR`` — a test CA and certificates for trying TLS;
- ``dicomwire probe HOST PORT`` — the PS3.8/PS3.7 conformance prober.

Exit codes: 0 success; 1 a DICOM failure (non-success status, rejection, abort, timeout);
2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, __version__
from ..errors import DicomWireError
from ..testing.probe_cli import add_probe_parser, run_probe
from ..ul.association import Timeouts, run_event_loop
from ..ul.identifiers import validate_ae_title
from ..ul.negotiation import DEFAULT_MAX_PDU_LENGTH, KnownNode
from ..ul.tlsargs import add_tls_arguments, port_number, tls_config_from_arguments
from ..ul.trace import start_trace

if TYPE_CHECKING:
    from .node import NodeConfig

log = logging.getLogger("dicomwire.cli")


def _ae_title(value: str) -> str:
    try:
        return validate_ae_title(value)
    except DicomWireError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int_in(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{what} must be from {low} to {high}")
        return number

    return parse


_peer_port = _int_in(1, 65535, "port")
#: The port DICOM registered for TLS (PS3.15 Annex B, PS3.8 Annex G): "dicom-tls".
DEFAULT_TLS_PORT = 2762


def _known_node(value: str) -> KnownNode:
    """``AE``, ``AE@HOST`` or ``AE@HOST:PORT`` (HOST may be an address or a network)."""
    title, _, where = value.partition("@")
    host, port = where, None
    if where.count(":") == 1:  # an IPv6 address or network has several colons
        host, _, port_text = where.partition(":")
        port = _peer_port(port_text)
    return KnownNode(_ae_title(title), host or None, port)


_positive = _int_in(1, 1 << 30, "value")
_window = _int_in(0, 0xFFFF, "window (0 = unlimited)")
_retries = _int_in(0, 100, "retries")


def _pdu_length(value: str) -> int:
    number = int(value)
    if number != 0 and not 4096 <= number <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError("max PDU must be 0 (unlimited) or 4096..4294967295")
    return number


def _add_common(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """Flags every tool has; ``defaults=False`` leaves them None so a config file wins."""

    def default(value: float) -> float | None:
        return value if defaults else None

    parser.add_argument("-v", "--verbose", action="store_true", help="log association events")
    parser.add_argument("-d", "--debug", action="store_true", help="log every PDU decoded")
    parser.add_argument(
        "--trace",
        type=Path,
        metavar="FILE",
        help="write every PDU sent and received to FILE as JSON lines (exact bytes, base64)",
    )
    parser.add_argument(
        "--max-pdu",
        "-pdu",
        type=_pdu_length,
        default=DEFAULT_MAX_PDU_LENGTH if defaults else None,
        metavar="N",
        help=f"maximum PDU length we receive (0 = unlimited; default {DEFAULT_MAX_PDU_LENGTH})",
    )
    parser.add_argument(
        "--acse-timeout",
        type=float,
        default=default(30.0),
        metavar="S",
        help="seconds to wait for A-ASSOCIATE-AC/RJ and A-RELEASE-RP (30)",
    )
    parser.add_argument(
        "--artim-timeout",
        type=float,
        default=default(30.0),
        metavar="S",
        help="ARTIM timer in seconds (30)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=default(60.0),
        metavar="S",
        help="abort after this many seconds without data (60; 0 = never)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicomwire",
        description="DICOM networking tools and node (asyncio, PS3.8/PS3.7/PS3.4).",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=(
            f"dicomwire {__version__} (implementation class UID {IMPLEMENTATION_CLASS_UID}, "
            f"version name {IMPLEMENTATION_VERSION_NAME})"
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    echo = commands.add_parser(
        "echo",
        help="Verification SCU: send C-ECHO (like echoscu)",
        description="Open an association, send C-ECHO-RQ, release. Exit 0 only on status 0000.",
    )
    echo.add_argument("host", help="peer host name or address")
    echo.add_argument("port", type=_peer_port, help="peer TCP port")
    echo.add_argument(
        "--aet",
        "-aet",
        type=_ae_title,
        default="DICOMWIRE",
        help="our (calling) AE title (DICOMWIRE)",
    )
    echo.add_argument(
        "--aec",
        "-aec",
        type=_ae_title,
        default="ANY-SCP",
        help="the peer's (called) AE title (ANY-SCP)",
    )
    echo.add_argument(
        "--repeat",
        "-r",
        type=_positive,
        default=1,
        metavar="N",
        help="send N C-ECHO requests on the association (1)",
    )
    echo.add_argument(
        "--dimse-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for each C-ECHO-RSP (60)",
    )
    echo.add_argument(
        "--connect-timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="seconds to wait for the TCP connection (15)",
    )
    _add_common(echo)
    add_tls_arguments(echo)

    serve = commands.add_parser(
        "serve",
        help="run the node: Verification and Storage SCP",
        description=(
            "Accept associations; answer C-ECHO; store every instance received as a Part 10 "
            "file. Settings come from --config (TOML) and are overridden by flags. Stops "
            "gracefully on SIGINT/SIGTERM."
        ),
    )
    serve.add_argument("--config", "-c", type=Path, help="node configuration file (TOML)")
    serve.add_argument("--port", "-p", type=port_number, help="TCP port (11112)")
    serve.add_argument(
        "--host", help="address to listen on (default: every address, IPv4 and IPv6)"
    )
    serve.add_argument(
        "--aet",
        "-aet",
        type=_ae_title,
        action="append",
        help="our AE title; repeat for several (DICOMWIRE)",
    )
    serve.add_argument("--storage", "-od", type=Path, help="storage directory (./data)")
    serve.add_argument(
        "--layout",
        help="path of each file under the storage directory "
        "({StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm)",
    )
    serve.add_argument(
        "--discard",
        action="store_true",
        default=None,
        help="receive and answer success without writing (like storescp --ignore)",
    )
    serve.add_argument(
        "--no-fsync",
        dest="fsync",
        action="store_false",
        default=None,
        help="do not fsync files before answering success (faster, less durable)",
    )
    serve.add_argument(
        "--duplicates",
        choices=("overwrite", "keep", "reject"),
        help="what to do when an instance is already stored (overwrite)",
    )
    serve.add_argument(
        "--promiscuous",
        action="store_true",
        default=None,
        help="accept any called AE title and any abstract syntax",
    )
    serve.add_argument(
        "--transfer-syntaxes",
        type=lambda text: [t.strip() for t in text.split(",") if t.strip()],
        metavar="UID,UID,...",
        help="storage transfer syntaxes in preference order (uncompressed, then compressed)",
    )
    serve.add_argument(
        "--dimse-timeout",
        type=float,
        metavar="S",
        help="seconds to wait for a DIMSE message the node expects (0 = none, the default)",
    )
    serve.add_argument(
        "--known-node",
        action="append",
        type=_known_node,
        metavar="AE[@HOST[:PORT]]",
        help="a remote AE allowed to associate (HOST may be a network like 10.0.0.0/24); "
        "repeatable; when given, only these callers are accepted",
    )
    serve.add_argument(
        "--shutdown-grace",
        type=float,
        metavar="S",
        help="on SIGINT/SIGTERM, let running associations finish for S seconds (10)",
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="N processes share the ports (SO_REUSEPORT), e.g. one per core (1)",
    )
    serve.add_argument(
        "--max-associations",
        type=_positive,
        metavar="N",
        help="simultaneous associations before rejecting (100)",
    )
    _add_common(serve, defaults=False)
    add_tls_arguments(serve, server=True)

    store = commands.add_parser(
        "store",
        help="Storage SCU: send DICOM files and directories (like storescu)",
        description=(
            "Send Part 10 files (directories recursively) with C-STORE. Exit 0 only when "
            "every instance was stored (warnings count as stored)."
        ),
    )
    store.add_argument("host", help="peer host name or address")
    store.add_argument("port", type=_peer_port, help="peer TCP port")
    store.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or directories")
    store.add_argument(
        "--aet",
        "-aet",
        type=_ae_title,
        default="DICOMWIRE",
        help="our (calling) AE title (DICOMWIRE)",
    )
    store.add_argument(
        "--aec",
        "-aec",
        type=_ae_title,
        default="ANY-SCP",
        help="the peer's (called) AE title (ANY-SCP)",
    )
    store.add_argument(
        "--window",
        type=_window,
        default=1,
        metavar="N",
        help="asynchronous operations window: up to N C-STORE outstanding (1)",
    )
    store.add_argument(
        "--associations",
        type=_positive,
        default=1,
        metavar="N",
        help="send over N associations in parallel (1)",
    )
    store.add_argument(
        "--retries",
        type=_retries,
        default=2,
        metavar="N",
        help="retries for transient failures: A7xx status, lost connection (2)",
    )
    store.add_argument(
        "--dimse-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for each C-STORE-RSP (60)",
    )
    store.add_argument(
        "--connect-timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="seconds to wait for the TCP connection (15)",
    )
    store.add_argument(
        "--no-progress", action="store_true", help="no progress line even on a terminal"
    )
    _add_common(store)
    add_tls_arguments(store)

    certs = commands.add_parser(
        "certs",
        help="create a test CA and node certificates for trying TLS locally",
        description=(
            "Write ca.pem and, for each name, NAME-rsa.pem / NAME-ecdsa.pem with their keys "
            "and PKCS#12 bundles (password 'dicomwire' unless --password is given). For "
            "tests only: the CA key is written too."
        ),
    )
    certs.add_argument("directory", type=Path, help="where to write the files")
    certs.add_argument(
        "--name",
        action="append",
        dest="names",
        metavar="NAME",
        help="host name a certificate is for; repeatable (localhost)",
    )
    certs.add_argument("--password", default="dicomwire", help="PKCS#12 password (dicomwire)")
    certs.add_argument("--days", type=_positive, default=365, help="validity in days (365)")
    add_probe_parser(commands)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING
    if getattr(args, "verbose", False):
        level = logging.INFO
    if getattr(args, "debug", False):
        level = logging.DEBUG
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("dicomwire").setLevel(level)


def _timeouts(args: argparse.Namespace, dimse: float | None) -> Timeouts:
    return Timeouts(
        artim=args.artim_timeout,
        acse=args.acse_timeout or None,
        dimse=dimse,
        network_idle=args.idle_timeout or None,
        connect=getattr(args, "connect_timeout", 15.0),
    )


def _run(coroutine: Coroutine[Any, Any, int]) -> int:
    return run_event_loop(coroutine)


async def _echo(args: argparse.Namespace) -> int:
    from ..services.verification import echo

    try:
        status = await echo(
            args.host,
            args.port,
            calling_ae_title=args.aet,
            called_ae_title=args.aec,
            max_pdu_length=args.max_pdu,
            repeat=args.repeat,
            timeouts=_timeouts(args, args.dimse_timeout or None),
            tls=tls_config_from_arguments(args),
        )
    except DicomWireError as exc:
        print(f"echo failed: {exc}", file=sys.stderr)
        return 1
    if not status.is_success:
        print(f"C-ECHO status {status}", file=sys.stderr)
        return 1
    print(f"C-ECHO to {args.aec} at {args.host}:{args.port}: success (0x0000)")
    return 0


def _node_config(args: argparse.Namespace) -> NodeConfig:
    """The TOML file's settings (or defaults), overridden by the flags given."""
    from .node import NodeConfig, load_config

    config = load_config(args.config) if args.config else NodeConfig()
    overrides: dict[str, Any] = {
        "ae_titles": args.aet,
        "host": args.host,
        "port": args.port,
        "promiscuous": args.promiscuous,
        "max_associations": args.max_associations,
        "max_pdu_length": args.max_pdu,
        "workers": args.workers,
        "known_nodes": args.known_node,
        "shutdown_grace": args.shutdown_grace,
    }
    for name, value in overrides.items():
        if value is not None:
            setattr(config, name, value)
    storage = {
        "root": args.storage,
        "layout": args.layout,
        "discard": args.discard,
        "fsync": args.fsync,
        "duplicates": args.duplicates,
        "transfer_syntaxes": args.transfer_syntaxes,
    }
    for name, value in storage.items():
        if value is not None:
            setattr(config.storage, name, value)
    timeouts = {
        "artim": args.artim_timeout,
        "acse": args.acse_timeout,
        "network_idle": args.idle_timeout,
        "dimse": args.dimse_timeout,
    }
    for name, value in timeouts.items():
        if value is not None:
            setattr(config.timeouts, name, value or None)
    tls = tls_config_from_arguments(args)
    if tls is not None:
        config.tls = tls
        config.tls_port = (
            args.tls_port
            if args.tls_port is not None
            else (config.tls_port if config.tls_port is not None else DEFAULT_TLS_PORT)
        )
    return config


async def _serve(args: argparse.Namespace) -> int:
    from .node import run_node, validate_config

    try:
        config = validate_config(_node_config(args))
    except DicomWireError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    try:
        await run_node(config)
    except DicomWireError as exc:  # e.g. TLS certificates or keys that do not load
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cannot listen on port {config.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


class _Progress:
    """One status line on a terminal: instances sent and rate."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int, sent_bytes: int) -> None:
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        sys.stderr.write(
            f"\r{done}/{total} instances  {sent_bytes / 1e6:9.1f} MB  "
            f"{sent_bytes / 1e6 / elapsed:7.1f} MB/s  {done / elapsed:7.1f}/s"
        )
        sys.stderr.flush()
        if done == total:
            sys.stderr.write("\n")


async def _store(args: argparse.Namespace) -> int:
    from .storage import store_files  # each tool imports only what it runs: start-up time

    progress = _Progress(sys.stderr.isatty() and not args.no_progress)
    try:
        summary = await store_files(
            args.host,
            args.port,
            args.paths,
            calling_ae_title=args.aet,
            called_ae_title=args.aec,
            max_pdu_length=args.max_pdu,
            window=args.window,
            associations=args.associations,
            retries=args.retries,
            timeouts=_timeouts(args, args.dimse_timeout or None),
            progress=progress,
            tls=tls_config_from_arguments(args),
        )
    except DicomWireError as exc:
        print(f"store failed: {exc}", file=sys.stderr)
        return 1
    for outcome in summary.outcomes:
        if outcome.status is None or outcome.status.is_failure:
            reason = outcome.error or f"status {outcome.status}"
            print(f"failed: {outcome.path}: {reason}", file=sys.stderr)
        elif not outcome.status.is_success:
            print(f"warning: {outcome.path}: status {outcome.status}", file=sys.stderr)
    print(
        f"sent {summary.sent} of {len(summary.outcomes)} instances "
        f"({summary.warnings} warnings, {summary.failures} failures), "
        f"{summary.bytes_sent / 1e6:.1f} MB in {summary.seconds:.2f} s "
        f"({summary.megabytes_per_second:.1f} MB/s)"
    )
    return 0 if summary.failures == 0 and summary.outcomes else 1


def _certs(args: argparse.Namespace) -> int:
    from .certs import make_test_pki

    ca, issued = make_test_pki(
        args.directory,
        args.names or ["localhost"],
        password=args.password.encode(),
        days=args.days,
    )
    print(f"CA: {ca}")
    for item in issued:
        print(f"{item.name} ({item.kind}): {item.certificate} {item.key} {item.pkcs12}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _configure_logging(args)
    if getattr(args, "trace", None) is not None:
        start_trace(args.trace)
    if args.command == "echo":
        return _run(_echo(args))
    if args.command == "store":
        return _run(_store(args))
    if args.command == "serve" and (args.workers or 1) > 1:
        from .node import run_workers, validate_config

        try:
            return run_workers(validate_config(_node_config(args)))
        except DicomWireError as exc:
            print(f"serve: {exc}", file=sys.stderr)
            return 2
    if args.command == "certs":
        return _certs(args)
    if args.command == "probe":
        return _run(run_probe(args))
    return _run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
