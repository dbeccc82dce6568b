"""``dicomwire find``, ``move`` and ``get``: the Query/Retrieve SCU (PS3.4 C.4.1-C.4.3, K.4).

Like DCMTK's findscu, movescu and getscu: ``-P``/``-S``/``-O`` pick the Patient Root, Study
Root or Patient/Study Only model (``-W`` Modality Worklist for find), ``-k`` builds the
identifier (:mod:`.keys`, DCMTK's syntax). Without a ``QueryRetrieveLevel`` key the level
is the model's top one (PATIENT or STUDY).

- ``find`` prints the matches as a table whose columns are the requested keys (values
  decoded with each response's Specific Character Set), or ``--json`` (an array of DICOM
  JSON objects, PS3.18 F.2) or ``--csv``; ``--cancel N`` sends C-CANCEL after N matches;
  ``-X`` writes each response as ``rspNNNN.dcm`` like findscu.
- ``move`` prints each pending response's counts and the final counts, status and Failed
  SOP Instance UID List; ``--port P`` receives the instances itself (a storage SCP on P
  for the duration, files under ``-od``).
- ``get`` stores what arrives into ``-od DIR``. It proposes only the storage contexts the
  query needs: the ``--sop-class`` hints, else the SOP classes a preliminary hierarchical
  C-FIND down to the IMAGE level reports (:func:`..client.storage_classes_for`), else the
  common ones; more than 128 contexts (PS3.8 §9.3.2.2) is an error that says how to split.

Exit codes: 0 success; 1 a failure status (printed with its Error Comment), a failed
sub-operation, a rejected or aborted association; 2 bad usage (a malformed ``-k`` names
the key).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import DicomWireError, DimseStatusError, ValidationError
from .flags import (
    add_peer,
    add_scu_flags,
    ae_title,
    connect_from_arguments,
    port_number,
    positive,
    timeouts,
    tls_config_from_arguments,
)

if TYPE_CHECKING:
    from pydicom import Dataset

    from ..client import RetrieveResult

__all__ = ["add_parsers", "run_find", "run_get", "run_move"]

#: Top level of each model, for a query without QueryRetrieveLevel.
_TOP_LEVEL = {"patient": "PATIENT", "study": "STUDY", "patient-study": "PATIENT"}
#: Exit status of a usage error (argparse's own).
USAGE = 2


def add_parsers(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``find``, ``move`` and ``get`` to ``subparsers``."""
    find = subparsers.add_parser(
        "find",
        help="Query/Retrieve and Worklist SCU: send C-FIND (like findscu)",
        description=(
            "Send a C-FIND built from -k keys and print the matches: a table of the "
            "requested keys, --json or --csv. Exit 0 on success (or cancel), 1 on a "
            "failure status, 2 on bad usage."
        ),
    )
    _add_shared(find, worklist=True)
    output = find.add_mutually_exclusive_group()
    output.add_argument(
        "--json", action="store_true", help="print a JSON array of DICOM JSON objects"
    )
    output.add_argument("--csv", action="store_true", help="print CSV: the keys, then a row each")
    find.add_argument(
        "--cancel",
        type=positive,
        metavar="N",
        help="send C-CANCEL after N matches (like findscu --cancel)",
    )
    find.add_argument(
        "--extract",
        "-X",
        action="store_true",
        help="write each response as rspNNNN.dcm (Part 10) into --output-directory",
    )
    _add_output_directory(find, "where -X writes its files (the current directory)")
    add_scu_flags(find, "C-FIND-RSP")
    find.set_defaults(run=run_find)

    move = subparsers.add_parser(
        "move",
        help="Query/Retrieve SCU: send C-MOVE (like movescu)",
        description=(
            "Ask the peer to send the instances the -k keys select to another AE (C-MOVE). "
            "Exit 0 when every sub-operation completed, 1 otherwise."
        ),
    )
    _add_shared(move, worklist=False)
    move.add_argument(
        "--dest",
        "-aem",
        type=ae_title,
        metavar="AE",
        help="move destination AE title (default: our own, --aet, as movescu does)",
    )
    move.add_argument(
        "--port",
        dest="receive_port",
        type=port_number,
        metavar="P",
        help="receive the instances ourselves: run a storage SCP on port P meanwhile",
    )
    _add_output_directory(move, "where --port stores what it receives (the current directory)")
    add_scu_flags(move, "C-MOVE-RSP")
    move.set_defaults(run=run_move)

    get = subparsers.add_parser(
        "get",
        help="Query/Retrieve SCU: send C-GET and store what arrives (like getscu)",
        description=(
            "Retrieve the instances the -k keys select on the same association (C-GET) "
            "and store them under -od. The storage contexts proposed are the --sop-class "
            "hints, else the SOP classes a preliminary C-FIND down to the IMAGE level "
            "reports, else the common ones. Exit 0 when every sub-operation completed."
        ),
    )
    _add_shared(get, worklist=False)
    _add_output_directory(
        get, "where to store the instances (DIR/Study/Series/Instance.dcm; default .)"
    )
    get.add_argument(
        "--sop-class",
        "-x",
        action="append",
        default=[],
        metavar="UID",
        help=(
            "a storage SOP class to receive (UID or keyword such as CTImageStorage; "
            "repeatable; 'all' for every storage class, which overflows 128 contexts)"
        ),
    )
    get.add_argument(
        "--no-discover",
        action="store_true",
        help="do not ask the peer by C-FIND which SOP classes the query retrieves",
    )
    add_scu_flags(get, "C-GET-RSP")
    get.set_defaults(run=run_get)


def _add_output_directory(parser: argparse.ArgumentParser, what: str) -> None:
    """``--output-directory``/``-od DIR`` (default: the current directory)."""
    parser.add_argument(
        "--output-directory", "-od", type=Path, default=Path(), metavar="DIR", help=what
    )


def _add_shared(parser: argparse.ArgumentParser, *, worklist: bool) -> None:
    add_peer(parser)
    models = parser.add_mutually_exclusive_group()
    models.add_argument(
        "--patient",
        "-P",
        dest="model",
        action="store_const",
        const="patient",
        help="Patient Root information model",
    )
    models.add_argument(
        "--study",
        "-S",
        dest="model",
        action="store_const",
        const="study",
        help="Study Root information model (the default)",
    )
    models.add_argument(
        "--patient-study",
        "-O",
        dest="model",
        action="store_const",
        const="patient-study",
        help="Patient/Study Only information model (retired; old SCPs)",
    )
    if worklist:
        models.add_argument(
            "--worklist",
            "-W",
            dest="model",
            action="store_const",
            const="worklist",
            help="Modality Worklist information model (PS3.4 K.6)",
        )
    parser.set_defaults(model="study")
    parser.add_argument(
        "-k",
        "--query-key",
        dest="key",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help=(
            "a query key: keyword, gggg,eeee or (gggg,eeee), sequence paths like "
            "(0040,0100)[0].Modality=CT; without =VALUE a return key"
        ),
    )
    parser.add_argument(
        "--relational",
        action="store_true",
        help="propose relational queries/retrieves (extended negotiation, PS3.4 C.5.1.1)",
    )


# --------------------------------------------------------------------------- identifier


def _identifier(args: argparse.Namespace) -> Dataset:
    """The identifier of ``-k`` (ValidationError names the malformed key)."""
    from .keys import parse_keys

    identifier = parse_keys(args.key)
    if "SpecificCharacterSet" not in identifier and any(not k.isascii() for k in args.key):
        identifier.SpecificCharacterSet = "ISO_IR 192"  # UTF-8 (PS3.5 6.1.2.3)
    level = _TOP_LEVEL.get(args.model)
    if level is not None and "QueryRetrieveLevel" not in identifier:
        identifier.QueryRetrieveLevel = level
    return identifier


def _columns(specs: Sequence[str]) -> list[tuple[str, list[tuple[int, int | None]]]]:
    """Column name and tag path of each requested key, in ``-k`` order, once each."""
    from pydicom import Dataset
    from pydicom.datadict import keyword_for_tag

    from .keys import parse_key

    columns: list[tuple[str, list[tuple[int, int | None]]]] = []
    seen: set[str] = set()
    for spec in specs:
        probe = Dataset()
        parse_key(spec, probe)
        path: list[tuple[int, int | None]] = []
        names: list[str] = []
        node = probe
        while True:
            element = next(iter(node))
            tag = int(element.tag)
            name = keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
            if element.VR == "SQ" and len(element.value) and len(node[tag].value[-1]):
                index = len(element.value) - 1
                path.append((tag, index))
                names.append(f"{name}[{index}]")
                node = element.value[index]
                continue
            path.append((tag, None))
            names.append(name)
            break
        column = ".".join(names)
        if column not in seen and column not in ("QueryRetrieveLevel", "SpecificCharacterSet"):
            seen.add(column)
            columns.append((column, path))
    return columns


def _value(match: Dataset, path: list[tuple[int, int | None]]) -> str:
    """The text of one column in one match ("" when absent or empty)."""
    node: Any = match
    for tag, index in path:
        if node is None or tag not in node:
            return ""
        element = node[tag]
        if index is not None:
            items = element.value or []
            node = items[index] if index < len(items) else None
            continue
        if element.VR == "SQ":
            count = len(element.value or [])
            return f"<{count} item{'s' if count != 1 else ''}>"
        value = element.value
        if value is None or value == "":
            return ""
        if isinstance(value, bytes):
            return f"<{len(value)} bytes>"
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            return "\\".join(str(v) for v in value)
        return str(value)
    return ""


# --------------------------------------------------------------------------- find


async def run_find(args: argparse.Namespace) -> int:
    """Run ``dicomwire find``; the exit status."""

    try:
        identifier = _identifier(args)
        columns = _columns(args.key)
    except ValidationError as exc:
        print(f"dicomwire find: error: {exc}", file=sys.stderr)
        return USAGE
    output = _Output(args, columns)
    responses = None
    try:
        async with connect_from_arguments(
            args, [_find_class(args.model)], relational=args.relational
        ) as client:
            responses = client.find(identifier, model=args.model, cancel_after=args.cancel)
            async for match in responses:
                output.add(match)
                if args.extract:
                    _extract(match, responses.count, args)
    except DimseStatusError as exc:
        output.finish()
        _audit_find(args, identifier, 8)
        print(f"C-FIND failed: status {exc.status}", file=sys.stderr)
        if exc.comment:
            print(f"Error Comment: {exc.comment}", file=sys.stderr)
        return 1
    except DicomWireError as exc:
        output.finish()
        print(f"find failed: {exc}", file=sys.stderr)
        return 1
    output.finish()
    _audit_find(args, identifier, 0)
    status = responses.status if responses is not None else None
    count = responses.count if responses is not None else 0
    note = " (C-CANCEL sent)" if responses is not None and responses.cancelled else ""
    print(
        f"{count} match{'es' if count != 1 else ''}, status {status}{note}",
        file=sys.stderr,
    )
    return 0


def _audit_find(args: argparse.Namespace, identifier: Dataset, outcome: int) -> None:
    """Query (PS3.15 A.5.3.10) of this C-FIND."""
    from ..audit.tool import audit_of

    audit_of(args).query(_find_class(args.model), identifier, outcome)


def _find_class(model: str) -> str:
    from ..client import QUERY_MODELS

    return QUERY_MODELS[(model, "find")]


def _extract(match: Dataset, number: int, args: argparse.Namespace) -> None:
    """Write one response as ``rspNNNN.dcm`` (Part 10, Explicit VR Little Endian)."""
    from pydicom.uid import generate_uid

    from ...dimse.datasets import encode_dataset
    from ...uids import EXPLICIT_VR_LITTLE_ENDIAN
    from ..part10 import build_file_meta

    directory: Path = args.output_directory
    directory.mkdir(parents=True, exist_ok=True)
    meta = build_file_meta(_find_class(args.model), generate_uid(), EXPLICIT_VR_LITTLE_ENDIAN)
    body = encode_dataset(match, EXPLICIT_VR_LITTLE_ENDIAN)
    (directory / f"rsp{number:04d}.dcm").write_bytes(meta + body)


class _Output:
    """The matches on stdout: a table (at the end), CSV (streamed) or JSON (at the end)."""

    def __init__(
        self, args: argparse.Namespace, columns: list[tuple[str, list[tuple[int, int | None]]]]
    ) -> None:
        self.kind = "json" if args.json else "csv" if args.csv else "table"
        self.columns = columns
        self.rows: list[list[str]] = []
        self.json: list[dict[str, Any]] = []
        self.writer: Any = None
        if self.kind == "csv":
            import csv

            self.writer = csv.writer(sys.stdout, lineterminator="\n")
            self.writer.writerow([name for name, _ in columns])

    def add(self, match: Dataset) -> None:
        if self.kind == "json":
            self.json.append(match.to_json_dict())
        elif self.kind == "csv":
            self.writer.writerow([_value(match, path) for _, path in self.columns])
            sys.stdout.flush()
        else:
            self.rows.append([_value(match, path) for _, path in self.columns])

    def finish(self) -> None:
        if self.kind == "json":
            import json

            json.dump(self.json, sys.stdout, ensure_ascii=False, indent=1)
            sys.stdout.write("\n")
        elif self.kind == "table" and self.rows and self.columns:
            header = [name for name, _ in self.columns]
            widths = [max(len(row[i]) for row in [header, *self.rows]) for i in range(len(header))]
            for row in [header, ["-" * w for w in widths], *self.rows]:
                print(
                    "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                )
        sys.stdout.flush()


# --------------------------------------------------------------------------- move, get


def _progress(what: str) -> Any:
    def report(counts: RetrieveResult) -> None:
        print(
            f"{what} pending: remaining {counts.remaining}, completed {counts.completed}, "
            f"failed {counts.failed}, warning {counts.warning}",
            file=sys.stderr,
        )

    return report


def _report(what: str, result: RetrieveResult) -> int:
    print(
        f"{what} status {result.status}: completed {result.completed}, "
        f"failed {result.failed}, warning {result.warning}"
    )
    if result.error_comment:
        print(f"Error Comment: {result.error_comment}")
    for uid in result.failed_instances:
        print(f"failed: {uid}")
    return 0 if result.status.is_success and not result.failed else 1


async def run_move(args: argparse.Namespace) -> int:
    """Run ``dicomwire move``; the exit status."""

    try:
        identifier = _identifier(args)
    except ValidationError as exc:
        print(f"dicomwire move: error: {exc}", file=sys.stderr)
        return USAGE
    destination = args.dest or args.aet
    if args.receive_port is not None and destination != args.aet:
        print(
            f"note: the peer sends to {destination}, not to us ({args.aet}) on port "
            f"{args.receive_port}: nothing may arrive there",
            file=sys.stderr,
        )
    before = _received(args)
    try:
        async with (
            _receiver(args) as _listening,
            connect_from_arguments(
                args, [_retrieve_class(args.model, "move")], relational=args.relational
            ) as client,
        ):
            result = await client.move(
                identifier, destination, model=args.model, progress=_progress("C-MOVE")
            )
    except DimseStatusError as exc:
        print(f"C-MOVE failed: status {exc.status}", file=sys.stderr)
        if exc.comment:
            print(f"Error Comment: {exc.comment}", file=sys.stderr)
        return 1
    except (DicomWireError, OSError) as exc:
        print(f"move failed: {exc}", file=sys.stderr)
        return 1
    if args.receive_port is not None:
        _audit_received(args, before, result)
    return _report("C-MOVE", result)


def _received(args: argparse.Namespace) -> set[Path]:
    """The files in the output directory (what a C-GET/C-MOVE adds is audited)."""
    if not getattr(args, "audit", None):
        return set()
    root = Path(args.output_directory)
    return {p for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()


def _audit_received(args: argparse.Namespace, before: set[Path], result: RetrieveResult) -> None:
    """DICOM Instances Transferred, import (PS3.15 A.5.3.7): the files that arrived."""
    from ..audit.tool import audit_of

    if not getattr(args, "audit", None):
        return
    arrived = sorted(_received(args) - before)
    ok = result.status.is_success and not result.failed
    audit_of(args).transferred(
        arrived,
        exported=False,
        outcome=0 if ok else 4,
        description=f"completed {result.completed}, failed {result.failed}",
    )


def _retrieve_class(model: str, operation: str) -> str:
    from ..client import QUERY_MODELS

    return QUERY_MODELS[(model, operation)]


def _receiver(args: argparse.Namespace) -> Any:
    """A storage SCP on ``--port`` for the duration of the move (or nothing)."""
    import contextlib

    if args.receive_port is None:
        return contextlib.nullcontext()
    from ..node import Node, NodeConfig
    from ..storage import Storage, StorageConfig
    from ..verification import Verification

    config = NodeConfig(ae_titles=[args.aet], host=None, port=args.receive_port)
    config.storage = StorageConfig(root=args.output_directory)
    config.shutdown_grace = 5.0
    return Node(config, services=[Verification(), Storage(config.storage)])


def _storage_class(text: str) -> list[str]:
    """A ``--sop-class`` value as UIDs ('all': every storage class pydicom knows)."""
    from pydicom.uid import UID

    from ..storage.sop_classes import storage_sop_classes

    if text == "all":
        return sorted(storage_sop_classes())
    if text[:1].isdigit():
        return [text]
    for uid, name in storage_sop_classes().items():
        if UID(uid).keyword == text or name == text:
            return [uid]
    raise ValidationError(f"--sop-class {text!r}: not a storage SOP class UID or keyword")


async def run_get(args: argparse.Namespace) -> int:
    """Run ``dicomwire get``; the exit status."""
    from ..client import COMMON_STORAGE_SOP_CLASSES, connect, storage_classes_for

    try:
        identifier = _identifier(args)
        hinted = [uid for text in args.sop_class for uid in _storage_class(text)]
    except ValidationError as exc:
        print(f"dicomwire get: error: {exc}", file=sys.stderr)
        return USAGE
    tls = tls_config_from_arguments(args)
    limits = timeouts(args, args.dimse_timeout or None)
    receive: list[str] = list(dict.fromkeys(hinted))
    source = "--sop-class"
    if not receive and not args.no_discover:
        found = await storage_classes_for(
            args.host,
            args.port,
            identifier,
            model=args.model,
            called_ae=args.aec,
            calling_ae=args.aet,
            timeouts=limits,
            tls=tls,
        )
        if found:
            receive, source = sorted(found), "a C-FIND down to the IMAGE level"
        else:
            source = "the common storage classes (the peer's C-FIND reported none)"
    if not receive:
        receive = list(COMMON_STORAGE_SOP_CLASSES)
        source = source if source.startswith("the common") else "the common storage classes"
    print(f"receiving {len(receive)} SOP class(es), from {source}", file=sys.stderr)
    before = _received(args)
    try:
        async with connect(
            args.host,
            args.port,
            called_ae=args.aec,
            calling_ae=args.aet,
            services=[_retrieve_class(args.model, "get")],
            receive=receive,
            max_pdu_length=args.max_pdu,
            timeouts=limits,
            tls=tls,
            relational=args.relational,
        ) as client:
            result = await client.get(
                identifier, args.output_directory, model=args.model, progress=_progress("C-GET")
            )
    except DimseStatusError as exc:
        print(f"C-GET failed: status {exc.status}", file=sys.stderr)
        if exc.comment:
            print(f"Error Comment: {exc.comment}", file=sys.stderr)
        return 1
    except DicomWireError as exc:
        print(f"get failed: {exc}", file=sys.stderr)
        return 1
    _audit_received(args, before, result)
    return _report("C-GET", result)
