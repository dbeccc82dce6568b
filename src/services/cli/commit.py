"""``dicomwire commit HOST PORT PATH...``: Storage Commitment Push Model SCU (PS3.4 J.3).

Sends the N-ACTION for the instances in the given files (directories recursively) and
waits for the SCP's N-EVENT-REPORT: on the same association (the default without
``--listen-port``, or with ``--same-association``) or on a listener of its own accepting
the SCP's new association with the SCP role (``--listen-port``; the SCP must know our AE
title at that port). One line per instance (``committed``, ``failed`` with the Failure
Reason, ``missing`` when the report left it out), or the report as JSON with ``--json``.
Exit 0 only when every instance is committed; 1 otherwise (refused N-ACTION, no report
within ``--timeout``, a failure); 2 for bad usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import DicomWireError
from .flags import (
    add_peer,
    add_scu_flags,
    peer_options,
    port_number,
    seconds,
)

if TYPE_CHECKING:
    from ..commitment import CommitmentReport
    from ..part10 import FileInfo

__all__ = ["add_commit_arguments", "add_parser", "request_commitment", "run"]


def add_commit_arguments(parser: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """Where and how long to wait for the report (``dicomwire store --commit`` shares them)."""
    parser.add_argument(
        "--listen-port",
        type=port_number,
        metavar="P",
        help="receive the report on a new association at port P (our AE title, -aet)",
    )
    parser.add_argument(
        "--listen-host",
        metavar="HOST",
        help="address to listen on for the report (every address)",
    )
    parser.add_argument(
        "--same-association",
        action="store_true",
        help="keep the association open for the report (the default without --listen-port)",
    )
    parser.add_argument(
        f"--{prefix}timeout",
        type=seconds,
        default=60.0,
        metavar="S",
        help="seconds to wait for the report (60)",
    )


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``commit`` to ``subparsers``; its ``run`` is :func:`run`."""
    command = subparsers.add_parser(
        "commit",
        help="Storage Commitment SCU: ask a peer to commit to stored instances",
        description=(
            "Send a Storage Commitment N-ACTION for the instances in the given files and "
            "wait for the N-EVENT-REPORT (same association, or a new one on --listen-port). "
            "Exit 0 only when every instance is committed."
        ),
    )
    add_peer(command)
    command.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="DICOM files or directories"
    )
    add_commit_arguments(command)
    command.add_argument("--json", action="store_true", help="print the report as JSON")
    add_scu_flags(command, "N-ACTION-RSP")
    command.set_defaults(run=run)
    return command


def print_report(
    report: CommitmentReport, paths: dict[str, Path], *, as_json: bool = False
) -> None:
    """One line per instance (or JSON): committed, failed with the reason, missing."""
    import json

    from ..commitment import describe_status

    if as_json:
        answer: dict[str, Any] = report.as_dict()
        for section in ("committed", "failed", "missing"):
            for item in answer[section]:
                path = paths.get(item["sop_instance_uid"])
                item["path"] = str(path) if path is not None else None
        print(json.dumps(answer, indent=2))
        return

    def where(uid: str) -> str:
        path = paths.get(uid)
        return f" {path}" if path is not None else ""

    for uid, sop_class in report.committed:
        print(f"committed: {uid} ({sop_class}){where(uid)}")
    for uid, sop_class, reason in report.failed:
        print(f"failed: {uid} ({sop_class}){where(uid)}: {describe_status(reason)}")
    for uid, sop_class in report.missing:
        print(f"missing: {uid} ({sop_class}){where(uid)}: not in the report")


async def request_commitment(
    args: argparse.Namespace, infos: list[FileInfo], timeout: float
) -> int:
    """Ask for commitment of ``infos`` as the flags say, print the report; the exit status."""
    from ..commitment import commit

    paths = {info.sop_instance_uid: info.path for info in infos}
    pairs = [(info.sop_class_uid, info.sop_instance_uid) for info in infos]
    if not pairs:
        print("nothing to commit: no DICOM file given", file=sys.stderr)
        return 1
    try:
        report = await commit(
            (args.host, args.port),
            pairs,
            listen_port=args.listen_port,
            listen_host=args.listen_host,
            same_association=True if args.same_association else None,
            timeout=timeout,
            max_pdu_length=args.max_pdu,
            **peer_options(args),
        )
    except DicomWireError as exc:
        print(f"commit failed: {exc}", file=sys.stderr)
        return 1
    print_report(report, paths, as_json=getattr(args, "json", False))
    from ..audit.tool import URI_MEDIA, audit_of  # Data Export (PS3.15 A.5.3.4)

    audit_of(args).exported(paths.values(), media=URI_MEDIA, outcome=4 * (not report.all_committed))
    if not report.all_committed:
        print(
            f"storage commitment {report.transaction_uid}: {len(report.committed)} of "
            f"{len(pairs)} instances committed",
            file=sys.stderr,
        )
        return 1
    return 0


async def run(args: argparse.Namespace) -> int:
    """Run ``dicomwire commit``; the exit status."""
    from ..storage.scu import collect_files

    infos, problems = collect_files(args.paths)
    for problem in problems:
        if not problem.skipped:
            print(f"failed: {problem.path}: {problem.error}", file=sys.stderr)
    status = await request_commitment(args, infos, args.timeout)
    return status or int(any(not p.skipped for p in problems))
