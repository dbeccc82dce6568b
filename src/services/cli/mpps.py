"""``dicomwire mpps HOST PORT create|set ...``: the MPPS SCU (PS3.4 F.7), as a modality uses it.

- ``create FILE`` sends N-CREATE with the attribute list in FILE (DICOM JSON, PS3.18
  F.2, or ``{"Keyword": value}``, or a Part 10 / bare data set file) and prints the
  step's SOP Instance UID (the SCP's when it assigned one); ``create --from-worklist
  ITEM`` builds the attribute list from a Modality Worklist item (what ``dicomwire
  worklist --json`` prints, or a ``.wl``/``.dcm`` file), ``create --patient-id ...`` one
  for an unscheduled step;
- ``set UID [FILE] --status COMPLETED|DISCONTINUED [--series DIR]`` sends N-SET: the
  modification list in FILE, and/or the end of the step (status, end date and time, the
  Performed Series Sequence read from the files under DIR).

``-k KEY=VALUE`` (DCMTK's syntax, :mod:`.keys`) sets or overrides attributes in either.
Exit 0 on success (or a warning status), 1 when the SCP refuses (its status and Error
Comment on stderr) or cannot be reached, 2 for bad usage or an unreadable file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import DicomWireError, ValidationError
from .flags import (
    add_peer,
    add_scu_flags,
    ae_title,
    connect_from_arguments,
)

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = ["add_parser", "run"]

_STATUSES = ("COMPLETED", "DISCONTINUED")


def _options(parser: argparse.ArgumentParser, *, titles: bool = False) -> None:
    """The flags every action takes: (AE titles,) keys, timeouts, logging, TLS."""
    if titles:  # add_peer gives them to the mpps parser itself
        parser.add_argument("--aet", "-aet", type=ae_title, help="our (calling) AE title")
        parser.add_argument("--aec", "-aec", type=ae_title, help="the SCP's (called) AE title")
    parser.add_argument(
        "-k",
        dest="keys",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set an attribute (keyword, gggg,eeee or a sequence path; repeatable)",
    )
    add_scu_flags(parser, "N-CREATE/N-SET response")


def _anywhere(parser: argparse.ArgumentParser) -> None:
    """The flags again after the action, without defaults (so they do not undo earlier ones)."""
    known = set(map(id, parser._actions))
    _options(parser, titles=True)
    for action in parser._actions:
        if id(action) not in known:
            action.default = argparse.SUPPRESS


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``mpps`` to ``subparsers``; its ``run`` is :func:`run`."""
    mpps = subparsers.add_parser(
        "mpps",
        help="MPPS SCU: report a performed procedure step (N-CREATE, N-SET)",
        description=(
            "Modality Performed Procedure Step SCU (PS3.4 F.7). 'create' starts a step "
            "(N-CREATE, status IN PROGRESS) and prints its SOP Instance UID; 'set' changes "
            "it (N-SET), usually to end it COMPLETED or DISCONTINUED. Flags may come before "
            "or after the action. Exit 0 on success, 1 when refused or unreachable, 2 for "
            "bad usage."
        ),
    )
    add_peer(mpps)
    _options(mpps)
    actions = mpps.add_subparsers(
        dest="action", metavar="ACTION", required=True, help="create or set (see ACTION --help)"
    )

    create = actions.add_parser(
        "create",
        help="N-CREATE a step (IN PROGRESS); prints its SOP Instance UID",
        description="Send N-CREATE; print the step's SOP Instance UID.",
    )
    create.add_argument(
        "file",
        nargs="?",
        type=Path,
        help="the attribute list: DICOM JSON, {keyword: value} JSON, or a DICOM file",
    )
    create.add_argument(
        "--from-worklist",
        type=Path,
        metavar="ITEM",
        help="build the attribute list from this worklist item (JSON or DICOM file)",
    )
    create.add_argument("--patient-id", help="an unscheduled step: the Patient ID")
    create.add_argument("--patient-name", help="an unscheduled step: the Patient's Name")
    create.add_argument("--study-uid", help="the Study Instance UID (made when none is given)")
    create.add_argument("--modality", help="Modality (from the worklist item, else OT)")
    create.add_argument(
        "--station-ae", type=ae_title, help="Performed Station AE Title (default: --aet)"
    )
    create.add_argument("--uid", help="the SOP Instance UID to create (default: the SCP's)")
    _anywhere(create)

    set_ = actions.add_parser(
        "set",
        help="N-SET a step: change it, or end it with --status",
        description="Send N-SET for the step UID.",
    )
    set_.add_argument("uid", help="the step's SOP Instance UID")
    set_.add_argument(
        "file", nargs="?", type=Path, help="the modification list (JSON or DICOM file)"
    )
    set_.add_argument(
        "--status",
        choices=_STATUSES,
        help="end the step: status, end date and time now, Performed Series Sequence",
    )
    set_.add_argument(
        "--series",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="DICOM files (or directories) the step produced, for the Performed Series Sequence",
    )
    _anywhere(set_)
    mpps.set_defaults(run=run)
    return mpps


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def read_dataset(path: Path) -> Dataset:
    """A data set from DICOM JSON, ``{keyword: value}`` JSON or a DICOM file."""
    import json

    from pydicom import Dataset, dcmread
    from pydicom.errors import InvalidDicomError

    from ...dimse.datasets import build_dataset

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw.lstrip()[:1] in (b"{", b"["):
        try:
            data: Any = json.loads(raw)
            if isinstance(data, list) and len(data) == 1:
                data = data[0]  # one answer of a --json listing
            if not isinstance(data, dict):
                raise ValidationError(f"{path}: expected a JSON object")
            tagged = all(len(k) == 8 and _is_hex(k) for k in data)
            return Dataset.from_json(data) if tagged and data else build_dataset(data)
        except (ValueError, TypeError, DicomWireError) as exc:
            raise ValidationError(f"{path}: not a DICOM JSON data set: {exc}") from None
    try:
        return dcmread(path, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise ValidationError(f"{path}: not a DICOM file: {exc}") from None


def _attributes(args: argparse.Namespace) -> Dataset:
    from ..mpps import step_from_worklist
    from .keys import parse_keys

    if args.file is not None and args.from_worklist is not None:
        raise ValidationError("give FILE or --from-worklist, not both")
    if args.file is not None:
        dataset = read_dataset(args.file)
    else:
        unscheduled = {
            keyword: value
            for keyword, value in (
                ("PatientID", args.patient_id),
                ("PatientName", args.patient_name),
                ("StudyInstanceUID", args.study_uid),
            )
            if value is not None
        }
        if args.from_worklist is None and not unscheduled:
            raise ValidationError("create needs FILE, --from-worklist ITEM or --patient-id")
        item = read_dataset(args.from_worklist) if args.from_worklist is not None else None
        dataset = step_from_worklist(
            item,
            station_ae=args.station_ae or args.aet,
            modality=args.modality,
            **unscheduled,
        )
    return parse_keys(args.keys, dataset)


def _modification(args: argparse.Namespace) -> Dataset:
    from pydicom import Dataset

    from ..mpps import completion, series_from_files
    from .keys import parse_keys

    modification = read_dataset(args.file) if args.file is not None else Dataset()
    if args.status is not None:
        series = series_from_files(args.series, retrieve_ae="") if args.series else []
        if args.series and not series:
            where = ", ".join(map(str, args.series))
            raise ValidationError(f"no DICOM file with a Series Instance UID under {where}")
        for element in completion(args.status, series=series):
            if element.tag not in modification:
                modification.add(element)
    elif args.series:
        raise ValidationError("--series goes with --status")
    modification = parse_keys(args.keys, modification)
    if len(modification) == 0:
        raise ValidationError("set needs FILE, --status or -k")
    return modification


async def run(args: argparse.Namespace) -> int:
    """Run ``dicomwire mpps``; the exit status."""
    from ..mpps import create_step, set_step

    try:
        data = _attributes(args) if args.action == "create" else _modification(args)
    except DicomWireError as exc:
        print(f"mpps: {exc}", file=sys.stderr)
        return 2
    try:
        async with connect_from_arguments(args, ["mpps"]) as client:
            if args.action == "create":
                uid = await create_step(client, data, args.uid)
                print(uid)
            else:
                status = await set_step(client, args.uid, data)
                state = data.get("PerformedProcedureStepStatus", "") or "updated"
                print(f"N-SET {args.uid}: {state} ({status})")
    except DicomWireError as exc:
        print(f"mpps {args.action} failed: {exc}", file=sys.stderr)
        _audit(args, data, failed=True)
        return 1
    _audit(args, data, failed=False)
    return 0


def _audit(args: argparse.Namespace, data: Dataset, *, failed: bool) -> None:
    """Procedure Record (PS3.15 A.5.3.15) of this request."""
    from ..audit.tool import audit_of

    audit_of(args).procedure(data, create=args.action == "create", outcome=8 * failed)
