"""``dicomwire serve``: the node — Verification, Storage, Query/Retrieve, Storage
Commitment, Modality Worklist, MPPS (and Print) SCP — on TCP and TLS.

Every stored instance is indexed (PS3.4 C.6) in the node's database (``--database``,
default ``<storage>/.dicomwire/node.sqlite``), which C-FIND, C-MOVE and C-GET answer from
and Storage Commitment (PS3.4 J) checks; worklist entries (PS3.4 K) and performed steps
(PS3.4 F.7) live there too. ``--worklist-dir`` serves a folder of ``.wl`` files as
``wlmscpfs -dfp`` does, ``--relay-to`` forwards every MPPS message, ``--printer`` adds
the virtual film printer (PS3.4 H).

Settings come from ``--config`` (TOML, :mod:`..node`) and are overridden by the flags
given; SIGINT/SIGTERM stop it gracefully. ``--workers N`` runs N processes sharing the
ports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import DicomWireError
from .flags import (
    NODE_LOG_LEVELS,
    add_common,
    add_tls_arguments,
    ae_title,
    int_in,
    known_node,
    port_number,
    positive,
    remote_ae,
    seconds_or_zero,
    tls_config_from_arguments,
)

if TYPE_CHECKING:
    from ..node import NodeConfig

__all__ = ["DEFAULT_TLS_PORT", "add_parser", "run"]

#: The port DICOM registered for TLS (PS3.15 Annex B, PS3.8 Annex G): "dicom-tls".
DEFAULT_TLS_PORT = 2762


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``serve`` to ``subparsers``; its ``run`` is :func:`run`."""
    serve = subparsers.add_parser(
        "serve",
        help="run the node: Verification, Storage, Q/R, Commitment, Worklist, MPPS SCP",
        description=(
            "Accept associations; answer C-ECHO; store every instance received as a Part 10 "
            "file and index it in the node's database; answer C-FIND, C-MOVE and C-GET "
            "from that index; commit to stored instances (Storage Commitment); serve the "
            "Modality Worklist (entries added with 'dicomwire worklist add' and the "
            "--worklist-dir folder); accept MPPS steps, relay them (--relay-to) and set "
            "the worklist entries they perform to STARTED, COMPLETED or DISCONTINUED; "
            "print to PNG films with --printer. Settings come from --config (TOML) and "
            "are overridden by flags. Stops gracefully on SIGINT/SIGTERM."
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
        type=ae_title,
        action="append",
        help="our AE title; repeat for several (DICOMWIRE)",
    )
    serve.add_argument("--storage", "-od", type=Path, help="storage directory (./data)")
    serve.add_argument(
        "--database",
        type=str,
        metavar="PATH|URL",
        help="the node's database: the Q/R index, worklist, MPPS steps and job queues — an "
        "SQLite file (<storage>/.dicomwire/node.sqlite; in memory with --discard) or "
        "postgresql://... shared by several nodes (docs/scale-out.md)",
    )
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
        type=seconds_or_zero,
        metavar="S",
        help="seconds to wait for a DIMSE message the node expects (0 = none, the default)",
    )
    serve.add_argument(
        "--known-node",
        action="append",
        type=known_node,
        metavar="AE[@HOST[:PORT]]",
        help="a remote AE allowed to associate (HOST may be a network like 10.0.0.0/24); "
        "repeatable; when given, only these callers are accepted",
    )
    serve.add_argument(
        "--node",
        action="append",
        type=remote_ae,
        metavar="AE@HOST:PORT[+tls]",
        help="an entry of the AE directory ([[nodes]]): a remote AE the node may call "
        "(C-MOVE destination, report or relay target); repeatable",
    )
    serve.add_argument(
        "--restrict-callers",
        action="store_true",
        default=None,
        help="accept associations only from the AEs of the directory (--node, [[nodes]])",
    )
    serve.add_argument(
        "--shutdown-grace",
        type=seconds_or_zero,
        metavar="S",
        help="on SIGINT/SIGTERM, let running associations finish for S seconds (10)",
    )
    serve.add_argument(
        "--workers",
        type=positive,
        metavar="N",
        help="N processes share the ports (SO_REUSEPORT), e.g. one per core (1)",
    )
    serve.add_argument(
        "--max-associations",
        type=positive,
        metavar="N",
        help="simultaneous associations before rejecting (100)",
    )
    serve.add_argument(
        "--max-operations",
        type=int_in(0, 0xFFFF, "--max-operations"),
        metavar="N",
        help="asynchronous operations window: outstanding operations per association "
        "(invoked and performed; 0 = unlimited; 16)",
    )
    services = serve.add_argument_group("services")
    services.add_argument(
        "--worklist-dir",
        "-dfp",
        type=Path,
        metavar="DIR",
        help="serve the .wl/.dcm worklist files of DIR (DIR/<AE>/ for one called AE "
        "title, like wlmscpfs -dfp) beside the entries in the database ([worklist] directory)",
    )
    services.add_argument(
        "--relay-to",
        action="append",
        type=ae_title,
        metavar="AE",
        help="relay every accepted MPPS N-CREATE/N-SET to AE, an entry of the AE "
        "directory (--node, [[nodes]]); repeatable ([mpps] relay_to)",
    )
    services.add_argument(
        "--printer",
        action="store_true",
        default=None,
        help="also serve the virtual film printer (Basic Grayscale/Color Print "
        "Management), films as PNG under <storage>/print ([print] table)",
    )
    add_common(serve, defaults=False)
    add_tls_arguments(serve, server=True)
    serve.set_defaults(run=run, log_levels=NODE_LOG_LEVELS)
    return serve


def run(args: argparse.Namespace) -> int | Coroutine[Any, Any, int]:
    """Run ``dicomwire serve`` until stopped.

    With ``--workers`` above 1: the processes' exit status; else the coroutine that serves
    in this process, which :func:`dicomwire.services.cli.main` runs on the event loop.
    """
    if (args.workers or 1) > 1:
        from ..node import run_workers, validate_config

        try:
            return run_workers(validate_config(node_config(args)))
        except DicomWireError as exc:
            print(f"serve: {exc}", file=sys.stderr)
            return 2
    return _serve(args)


def node_config(args: argparse.Namespace) -> NodeConfig:
    """The TOML file's settings (or defaults), overridden by the flags given."""
    from ..node import NodeConfig, load_config

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
        "nodes": args.node,
        "restrict_callers": args.restrict_callers,
        "shutdown_grace": args.shutdown_grace,
        "database": args.database,
        "max_operations_invoked": args.max_operations,
        "max_operations_performed": args.max_operations,
    }
    for name, value in overrides.items():
        if value is not None:
            setattr(config, name, value)
    _service_overrides(config, args)
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


def _service_overrides(config: NodeConfig, args: argparse.Namespace) -> None:
    """The services' flags written into their tables (made when the file had none)."""
    from ..mpps import MPPSConfig
    from ..print import PrintConfig
    from ..worklist import WorklistConfig

    sections = config.sections
    if args.worklist_dir is not None:
        sections.setdefault("worklist", WorklistConfig()).directory = args.worklist_dir
    if args.relay_to:
        sections.setdefault("mpps", MPPSConfig()).relay_to = list(args.relay_to)
    if args.printer:
        sections.setdefault("print", PrintConfig())


async def _serve(args: argparse.Namespace) -> int:
    from ..node import run_node, validate_config

    try:
        config = validate_config(node_config(args))
    except DicomWireError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    try:
        await run_node(config)
    except DicomWireError as exc:  # storage not writable, TLS files missing or unloadable
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # prepare_node checked the files: this is the listening socket
        print(f"cannot listen on port {config.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
