"""``dicomwire store HOST PORT PATH...``: the Storage SCU (PS3.4 Annex B), like storescu.

Sends Part 10 files and directories with :func:`..storage.store_files`; exit 0 only when
every instance was stored (warnings count as stored). Every file gets an outcome line:
``sent`` (at -v), ``warning``, ``failed`` (refused by the peer with its status and Error
Comment, or not sent and why) or ``skipped`` (not DICOM, found in a directory).
``--commit`` then asks the peer for storage commitment of what was stored
(:mod:`.commit`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ...errors import DicomWireError
from .commit import add_commit_arguments, request_commitment
from .flags import (
    add_audit,
    add_common,
    add_peer,
    add_scu_timeouts,
    add_tls_arguments,
    int_in,
    positive,
    timeouts,
    tls_config_from_arguments,
)

__all__ = ["add_parser", "run"]

_window = int_in(0, 0xFFFF, "window (0 = unlimited)")
_retries = int_in(0, 100, "retries")


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``store`` to ``subparsers``; its ``run`` is :func:`run`."""
    store = subparsers.add_parser(
        "store",
        help="Storage SCU: send DICOM files and directories (like storescu)",
        description=(
            "Send Part 10 files (directories recursively) with C-STORE. Exit 0 only when "
            "every instance was stored (warnings count as stored)."
        ),
    )
    add_peer(store)
    store.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or directories")
    store.add_argument(
        "--window",
        type=_window,
        default=1,
        metavar="N",
        help="asynchronous operations window: up to N C-STORE outstanding (1)",
    )
    store.add_argument(
        "--associations",
        type=positive,
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
        "--no-header",
        "-nh",
        action="store_true",
        help=(
            "also send files without preamble and file meta as bare data sets, their "
            "transfer syntax guessed from the first element (as storescu reads them)"
        ),
    )
    add_scu_timeouts(store, "C-STORE-RSP")
    store.add_argument(
        "--commit",
        action="store_true",
        help=(
            "then ask the peer for storage commitment of what was stored (as a modality "
            "does); exit 0 only when every instance is committed"
        ),
    )
    add_commit_arguments(store, prefix="commit-")
    store.add_argument(
        "--no-progress", action="store_true", help="no progress line even on a terminal"
    )
    add_common(store)
    add_tls_arguments(store)
    add_audit(store)
    store.set_defaults(run=run)
    return store


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


async def run(args: argparse.Namespace) -> int:
    """Run ``dicomwire store``; the exit status."""
    from ..storage import store_files  # each tool imports only what it runs: start-up time

    if not args.commit and (args.listen_port is not None or args.same_association):
        print("store: --listen-port and --same-association go with --commit", file=sys.stderr)
        return 2
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
            timeouts=timeouts(args, args.dimse_timeout or None),
            progress=progress,
            tls=tls_config_from_arguments(args),
            without_meta=args.no_header,
        )
    except DicomWireError as exc:
        print(f"store failed: {exc}", file=sys.stderr)
        return 1
    for outcome in summary.outcomes:  # one line per file: sent ones at -v (or with a note)
        line = f"{outcome.kind}: {outcome.path}: {outcome.describe()}"
        if outcome.kind != "sent":
            print(line, file=sys.stderr)
        elif args.verbose or outcome.note:
            print(line)
    if len(summary.outcomes) == summary.skipped:
        where = ", ".join(map(str, args.paths))
        if summary.outcomes:
            print(f"nothing to send: no DICOM file in {where}", file=sys.stderr)
        else:
            print(f"nothing to send: no file in {where}", file=sys.stderr)
    print(
        f"sent {summary.sent} of {len(summary.outcomes) - summary.skipped} instances "
        f"({summary.warnings} warnings, {summary.failures} failures), "
        f"{summary.bytes_sent / 1e6:.1f} MB in {summary.seconds:.2f} s "
        f"({summary.megabytes_per_second:.1f} MB/s)"
        + (f", {summary.skipped} skipped (not DICOM)" if summary.skipped else "")
    )
    stored = summary.failures == 0 and summary.sent
    if args.audit:  # the audit package only when asked for: ~20 ms of start-up otherwise
        from ..audit.tool import audit_of  # Instances Transferred, export (PS3.15 A.5.3.7)

        delivered = [o.path for o in summary.outcomes if o.delivered]
        audit_of(args).transferred(delivered, exported=True, outcome=0 if stored else 4)
    if stored and args.commit:
        from ..storage.scu import collect_files

        infos, _ = collect_files([o.path for o in summary.outcomes if o.delivered])
        return await request_commitment(args, infos, args.commit_timeout)
    return 0 if stored else 1
