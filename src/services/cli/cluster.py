"""``dicomwire cluster``: several nodes behind HAProxy, sharing a throwaway PostgreSQL.

A try-out of the scale-out deployment on one machine (docs/scale-out.md): ``initdb`` and
``pg_ctl`` start PostgreSQL in a temporary directory (as the ``postgres`` user when run as
root), ``--nodes`` ``dicomwire serve`` processes with one AE title, one storage root and
the database URL, and HAProxy in TCP mode with the DICOM health check
(:mod:`dicomwire.services.cluster`), all on free ports of 127.0.0.1. Prints how to send to
it, then runs until SIGINT/SIGTERM and stops everything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...errors import DicomWireError
from .flags import ae_title, int_in, port_number

__all__ = ["add_parser", "run"]


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``cluster`` to ``subparsers``; its ``run`` is :func:`run`."""
    cluster = subparsers.add_parser(
        "cluster",
        help="try several nodes behind HAProxy sharing a throwaway PostgreSQL",
        description=(
            "Start a throwaway PostgreSQL, N 'dicomwire serve' nodes with the same AE title, "
            "one storage directory and that database, and HAProxy in TCP mode in front of "
            "them with a DICOM health check, on free ports of 127.0.0.1; print how to send "
            "to it; stop them all on Ctrl-C or SIGTERM. Needs the postgresql and haproxy "
            "packages and the postgres extra (pip install 'dicomwire[postgres]')."
        ),
    )
    cluster.add_argument(
        "--nodes",
        "-n",
        type=int_in(1, 16, "--nodes"),
        default=3,
        metavar="N",
        help="number of nodes (3)",
    )
    cluster.add_argument(
        "--port", "-p", type=port_number, default=0, help="HAProxy's port (a free one)"
    )
    cluster.add_argument(
        "--aet", "-aet", type=ae_title, default="DICOMWIRE", help="the nodes' AE title (DICOMWIRE)"
    )
    cluster.add_argument(
        "--directory",
        type=Path,
        metavar="DIR",
        help="keep configurations, logs and storage in DIR (default: a temporary directory, "
        "removed at the end)",
    )
    cluster.set_defaults(run=run)
    return cluster


def run(args: argparse.Namespace) -> int:
    """Run ``dicomwire cluster`` until interrupted; the exit status."""
    from ..cluster import run_cluster

    try:
        return run_cluster(args.nodes, args.port, args.aet, args.directory)
    except DicomWireError as exc:
        print(f"cluster failed: {exc}", file=sys.stderr)
        return 1
