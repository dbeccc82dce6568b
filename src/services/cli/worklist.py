"""``dicomwire worklist``: Modality Worklist SCU (PS3.4 K.4.1) and the local worklist store.

- ``dicomwire worklist [query] HOST PORT [--modality CT] [--date today|YYYYMMDD[-YYYYMMDD]]
  [--station-ae AE] [-k KEY=VALUE ...] [--json]`` — C-FIND on the Modality Worklist
  Information Model (like ``findscu -W``); a table of the matches, or DICOM JSON;
- ``dicomwire worklist add FILE.json|FILE.dcm|FILE.wl ...`` — keep entries in the node's
  database (DICOM JSON, one object or a list, or DICOM files);
- ``dicomwire worklist list [--json]`` and ``dicomwire worklist remove KEY`` — show and
  forget them (KEY: ``STUDY-UID/STEP-ID`` as ``list`` shows, or a Study Instance UID).

The database is ``--database PATH``, else the one of ``--config node.toml``, else the
default node's (``data/.dicomwire/node.sqlite``). ``query`` may be left out.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError, DicomWireError
from .flags import (
    add_audit,
    add_peer,
    add_scu_flags,
    ae_title,
    peer_options,
)

if TYPE_CHECKING:
    from pydicom import Dataset

    from ..worklist.store import WorklistStore

__all__ = ["add_parser"]

_ACTIONS = ("query", "add", "list", "remove")


class _WorklistParser(argparse.ArgumentParser):
    """``dicomwire worklist HOST PORT ...`` means ``dicomwire worklist query HOST PORT ...``."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        if words and words[0] not in (*_ACTIONS, "-h", "--help"):
            words.insert(0, "query")
        return super().parse_known_args(words, namespace)


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``worklist`` and its subcommands to ``subparsers``."""
    # argparse makes every subcommand's parser with one class: ours only for this one, so
    # that "dicomwire worklist HOST PORT" reads as "dicomwire worklist query HOST PORT"
    previous = subparsers._parser_class
    subparsers._parser_class = _WorklistParser
    try:
        worklist = subparsers.add_parser(
            "worklist",
            help="Modality Worklist SCU, and the node's worklist entries (add/list/remove)",
            description=(
                "Query a worklist SCP (query, the default), or manage the worklist entries "
                "kept in a node's database (add, list, remove)."
            ),
        )
    finally:
        subparsers._parser_class = previous
    actions = worklist.add_subparsers(
        dest="worklist_action",
        metavar="ACTION",
        required=True,
        help="query (the default: HOST PORT may follow worklist directly), add, list, remove",
        parser_class=argparse.ArgumentParser,
    )

    query = actions.add_parser(
        "query",
        help="C-FIND on the Modality Worklist Information Model (like findscu -W)",
        description=(
            "Ask a worklist SCP for scheduled procedure steps; print a table (or DICOM JSON "
            "with --json). Exit 0 when the query completed (even with no match), 1 on a "
            "DICOM failure, 2 on bad usage."
        ),
    )
    add_peer(query)
    match = query.add_argument_group("matching keys")
    match.add_argument("--modality", "-m", metavar="CS", help="Modality, e.g. CT (wildcards ok)")
    match.add_argument(
        "--date",
        metavar="DATE",
        help="Scheduled Procedure Step Start Date: today, YYYYMMDD or YYYYMMDD-YYYYMMDD",
    )
    match.add_argument(
        "--station-ae", type=ae_title, metavar="AE", help="Scheduled Station AE Title"
    )
    match.add_argument("--station-name", metavar="SH", help="Scheduled Station Name")
    match.add_argument("--patient-id", metavar="LO", help="Patient ID")
    match.add_argument("--patient-name", metavar="PN", help="Patient's Name (wildcards ok)")
    match.add_argument("--accession", metavar="SH", help="Accession Number")
    match.add_argument(
        "-k",
        dest="keys",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help=(
            "any key, DCMTK style: PatientName=DOE*, 0010,0020=ID, "
            "ScheduledProcedureStepSequence[0].Modality=CT (repeatable)"
        ),
    )
    query.add_argument("--json", action="store_true", help="print the matches as DICOM JSON")
    add_scu_flags(query, "C-FIND-RSP")
    query.set_defaults(run=run_query)

    add = actions.add_parser(
        "add",
        help="keep worklist entries (DICOM JSON or DICOM files) in the node's database",
        description=(
            "Add worklist entries to the node's database. An entry needs a Study Instance UID "
            "and a Scheduled Procedure Step Sequence item; one with the Study Instance UID and "
            "Scheduled Procedure Step ID of a stored entry replaces it."
        ),
    )
    add.add_argument("files", nargs="+", type=Path, metavar="FILE", help=".json, .dcm or .wl")
    _add_database(add)
    add_audit(add)
    add.set_defaults(run=run_add)

    listing = actions.add_parser("list", help="list the worklist entries of the database")
    listing.add_argument("--json", action="store_true", help="print the entries as DICOM JSON")
    _add_database(listing)
    listing.set_defaults(run=run_list)

    remove = actions.add_parser("remove", help="remove added worklist entries")
    remove.add_argument(
        "keys", nargs="+", metavar="KEY", help="STUDY-UID/STEP-ID as list shows, or a study UID"
    )
    _add_database(remove)
    add_audit(remove)
    remove.set_defaults(run=run_remove)
    return worklist


def _add_database(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--database",
        metavar="PATH|URL",
        help="the node's database: an SQLite file or a postgresql:// URL",
    )
    where.add_argument(
        "--config", "-c", type=Path, metavar="TOML", help="the node's configuration (its database)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is done")
    parser.add_argument("-d", "--debug", action="store_true", help="log everything")


def _open_store(args: argparse.Namespace, *, create: bool) -> WorklistStore:
    """The store of ``--database``, ``--config``'s node or the default node.

    :class:`~dicomwire.errors.ConfigError` for a bad configuration, :class:`OSError`
    when the database cannot be opened (or does not exist and ``create`` is false).
    """
    import sqlite3

    from ..database import database_location, is_postgres_url, worklist_store_at
    from ..node import SERVICE_TYPES, NodeConfig, load_config
    from ..worklist import Worklist

    location: str | Path
    if args.database is not None:
        location = args.database if is_postgres_url(args.database) else Path(args.database)
    elif args.config is not None:
        location = database_location(
            load_config(args.config, {**SERVICE_TYPES, "worklist": Worklist})
        )
    else:
        location = database_location(NodeConfig())
    if isinstance(location, Path) and not create and not location.exists():
        raise FileNotFoundError(f"no database at {location}")
    try:
        return worklist_store_at(location)
    except sqlite3.Error as exc:
        raise OSError(f"cannot open the database {location}: {exc}") from exc


def _store_or_status(
    args: argparse.Namespace, *, create: bool, audited: bool = False
) -> WorklistStore | int:
    """The store, or the exit status after saying why there is none (2 usage, 1 else).

    ``audited``: its additions and removals record Order Records (PS3.15 A.5.3.13).
    """
    try:
        store = _open_store(args, create=create)
    except ConfigError as exc:
        print(f"worklist: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"worklist: {exc}", file=sys.stderr)
        return 1
    if not audited:
        return store
    from ..audit.tool import audit_of

    return audit_of(args).worklist_store(store)


# --------------------------------------------------------------------------- query


def _identifier(args: argparse.Namespace) -> Dataset:
    from ..worklist import worklist_identifier
    from .keys import parse_keys

    base = worklist_identifier(
        modality=args.modality,
        date=args.date,
        station_ae=args.station_ae,
        station_name=args.station_name,
        patient_id=args.patient_id,
        patient_name=args.patient_name,
        accession_number=args.accession,
    )
    return parse_keys(args.keys, base)


async def run_query(args: argparse.Namespace) -> int:
    """Run ``dicomwire worklist query``; the exit status."""
    import json

    from ..worklist import query_worklist

    try:
        identifier = _identifier(args)
    except DicomWireError as exc:
        print(f"worklist: {exc}", file=sys.stderr)
        return 2
    try:
        matches = await query_worklist(
            args.host,
            args.port,
            identifier,
            max_pdu_length=args.max_pdu,
            **peer_options(args),
        )
    except DicomWireError as exc:
        print(f"worklist query failed: {exc}", file=sys.stderr)
        _audit_query(args, identifier, 8)
        return 1
    _audit_query(args, identifier, 0)
    if args.json:
        print(json.dumps([m.to_json_dict() for m in matches], indent=2, ensure_ascii=False))
    else:
        print(format_table(matches))
    return 0


def _audit_query(args: argparse.Namespace, identifier: Dataset, outcome: int) -> None:
    """Query (PS3.15 A.5.3.10) of this Modality Worklist C-FIND."""
    from ..audit.tool import audit_of

    audit_of(args).query("1.2.840.10008.5.1.4.31", identifier, outcome)


#: Table columns: heading, then where the value is (top level, or in the first step).
_COLUMNS = (
    ("Date", "ScheduledProcedureStepStartDate", True),
    ("Time", "ScheduledProcedureStepStartTime", True),
    ("Mod", "Modality", True),
    ("Station AE", "ScheduledStationAETitle", True),
    ("Patient ID", "PatientID", False),
    ("Patient name", "PatientName", False),
    ("Accession", "AccessionNumber", False),
    ("Step", "ScheduledProcedureStepDescription", True),
)


def format_table(matches: Sequence[Dataset]) -> str:
    """The matches as a text table, one line per entry, and a count."""
    rows = [[heading for heading, _, _ in _COLUMNS]]
    for match in matches:
        steps = match.get(0x00400100)  # the element (a keyword would give its value)
        step = steps.value[0] if steps is not None and steps.VR == "SQ" and steps.value else None
        row = []
        for _, keyword, in_step in _COLUMNS:
            source = step if in_step else match
            value: Any = source.get(keyword) if source is not None else None
            row.append("" if value is None else str(value))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.append(f"{len(matches)} match{'es' if len(matches) != 1 else ''}")
    return "\n".join(line.rstrip() for line in lines)


# --------------------------------------------------------------------------- local store


def run_add(args: argparse.Namespace) -> int:
    """Run ``dicomwire worklist add``; the exit status."""
    import sqlite3

    from ..worklist import read_entries

    store = _store_or_status(args, create=True, audited=True)
    if isinstance(store, int):
        return store
    failed = 0
    try:
        for path in args.files:
            try:
                for dataset in read_entries(path):
                    print(f"added {store.add(dataset)} from {path}")
            except (DicomWireError, sqlite3.Error) as exc:
                print(f"worklist add: {path}: {exc}", file=sys.stderr)
                failed += 1
    finally:
        store.close()
    return 1 if failed else 0


def run_list(args: argparse.Namespace) -> int:
    """Run ``dicomwire worklist list``; the exit status."""
    import json
    import sqlite3

    store = _store_or_status(args, create=False)
    if isinstance(store, int):
        return store
    try:
        found = store.entries()
    except (DicomWireError, sqlite3.Error) as exc:
        print(f"worklist list: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.json:
        listed = [
            {
                "key": e.key,
                "source": e.source,
                "called_ae": e.called_ae,
                "dataset": e.dataset.to_json_dict(),
            }
            for e in found
        ]
        print(json.dumps(listed, indent=2, ensure_ascii=False))
        return 0
    for item in found:
        where = item.source if item.called_ae is None else f"{item.source} (AE {item.called_ae})"
        name = item.dataset.get("PatientName", "")
        print(f"{item.key}  {name}  {where}")
    print(f"{len(found)} entr{'ies' if len(found) != 1 else 'y'}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """Run ``dicomwire worklist remove``; exit 1 when a key matched nothing."""
    import sqlite3

    store = _store_or_status(args, create=False, audited=True)
    if isinstance(store, int):
        return store
    missing = 0
    try:
        for key in args.keys:
            try:
                count = store.remove(key)
            except (DicomWireError, sqlite3.Error) as exc:
                print(f"worklist remove: {key}: {exc}", file=sys.stderr)
                return 1
            if count:
                print(f"removed {count} entr{'ies' if count != 1 else 'y'} for {key}")
            else:
                print(f"worklist remove: no added entry {key}", file=sys.stderr)
                missing += 1
    finally:
        store.close()
    return 1 if missing else 0
