"""``dicomwire print HOST PORT IMAGE...``: the Print Management SCU (PS3.4 Annex H), and
``dicomwire printer``: the virtual film printer that renders what it receives as PNGs.

``print`` runs the modality's sequence (:func:`..print.print_images`): printer N-GET,
film session N-CREATE, as many film boxes as the images need, image box N-SETs, N-ACTION
print, film session N-DELETE; one line per film says what happened. Exit 0 only when every
film was printed (print warnings reported), 1 on a DICOM failure, 2 on bad usage or an
image that cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...errors import DicomWireError, LocalProtocolError
from .flags import (
    add_common,
    add_peer,
    add_scu_flags,
    ae_title,
    int_in,
    peer_options,
    port_number,
)

__all__ = ["add_parser", "add_printer_parser", "run", "run_printer"]

_copies = int_in(1, 99, "copies")
_density = int_in(0, 1000, "density (hundredths of OD)")


def _display_format(value: str) -> str:
    from ..print.model import parse_display_format

    try:
        return parse_display_format(value).text
    except DicomWireError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _resolution(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 < number <= 600:
        raise argparse.ArgumentTypeError(f"{value!r}: must be above 0 and at most 600")
    return number


def _status_code(value: str) -> int:
    try:
        code = int(value, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a hex status code") from None
    if not 0 <= code <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"{value!r} is not a 16-bit status code")
    return code


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``print`` to ``subparsers``; its ``run`` is :func:`run`."""
    parser = subparsers.add_parser(
        "print",
        help="Print SCU: print images on a DICOM printer (like dcmprscu)",
        description=(
            "Print images with the Basic Grayscale (or --color) Print Management Meta SOP "
            "Class: printer status, film session, film boxes, image boxes, print, delete. "
            "Exit 0 only when every film was printed."
        ),
    )
    add_peer(parser)
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="DICOM images")
    film = parser.add_argument_group("film (PS3.3 C.13.1, C.13.3)")
    film.add_argument(
        "--format",
        dest="display_format",
        type=_display_format,
        default="STANDARD\\1,1",
        metavar="FORMAT",
        help="image display format: STANDARD\\C,R, ROW\\a,b..., COL\\a,b... (STANDARD\\1,1)",
    )
    film.add_argument(
        "--film-size", default="14INX17IN", metavar="ID", help="film size ID (14INX17IN)"
    )
    film.add_argument(
        "--orientation",
        choices=["PORTRAIT", "LANDSCAPE"],
        default="PORTRAIT",
        type=str.upper,
        help="film orientation (PORTRAIT)",
    )
    film.add_argument("--copies", type=_copies, default=1, metavar="N", help="copies (1)")
    film.add_argument(
        "--priority", choices=["HIGH", "MED", "LOW"], type=str.upper, help="print priority"
    )
    film.add_argument("--medium", metavar="TYPE", help="medium type, e.g. 'BLUE FILM'")
    film.add_argument("--destination", metavar="DEST", help="film destination, e.g. MAGAZINE")
    film.add_argument("--label", metavar="TEXT", help="film session label")
    film.add_argument(
        "--magnification",
        choices=["REPLICATE", "BILINEAR", "CUBIC", "NONE"],
        type=str.upper,
        help="magnification type (the printer's default)",
    )
    film.add_argument("--smoothing", metavar="TYPE", help="smoothing type")
    film.add_argument("--border-density", metavar="D", help="BLACK, WHITE or hundredths of OD")
    film.add_argument("--empty-density", metavar="D", help="BLACK, WHITE or hundredths of OD")
    film.add_argument("--min-density", type=_density, metavar="N", help="hundredths of OD")
    film.add_argument("--max-density", type=_density, metavar="N", help="hundredths of OD")
    film.add_argument("--trim", choices=["YES", "NO"], type=str.upper, help="trim boxes")
    film.add_argument("--configuration", metavar="TEXT", help="configuration information")
    film.add_argument(
        "--polarity", choices=["NORMAL", "REVERSE"], type=str.upper, help="image box polarity"
    )
    film.add_argument(
        "--color", action="store_true", help="Basic Color Print Management (RGB image boxes)"
    )
    film.add_argument(
        "--bits", type=int, choices=[8, 12], default=8, help="grayscale bits stored (8)"
    )
    film.add_argument(
        "--accept-warnings",
        action="store_true",
        help="go on after the warnings 0001, 0107, 0116, B605 to a create or set",
    )
    film.add_argument(
        "--accept-warning",
        action="append",
        type=_status_code,
        default=[],
        metavar="HEX",
        help="go on after this warning status too (repeatable)",
    )
    add_scu_flags(parser, "print response")
    parser.set_defaults(run=run)
    return parser


async def run(args: argparse.Namespace) -> int:
    """Run ``dicomwire print``; the exit status."""
    from ..print.scu import CONFIGURABLE_WARNINGS, PrintOptions, print_images

    accepted = set(args.accept_warning)
    if args.accept_warnings:
        accepted |= CONFIGURABLE_WARNINGS
    options = PrintOptions(
        display_format=args.display_format,
        film_size=args.film_size,
        orientation=args.orientation,
        copies=args.copies,
        priority=args.priority,
        medium=args.medium,
        destination=args.destination,
        session_label=args.label,
        magnification=args.magnification,
        smoothing=args.smoothing,
        border_density=args.border_density,
        empty_density=args.empty_density,
        min_density=args.min_density,
        max_density=args.max_density,
        trim=args.trim,
        configuration=args.configuration,
        polarity=args.polarity,
        color=args.color,
        bits=args.bits,
        accept_warnings=frozenset(accepted),
    )
    try:
        result = await print_images(
            args.host,
            args.port,
            args.images,
            options=options,
            **peer_options(args),
        )
    except LocalProtocolError as exc:
        print(f"print: {exc}", file=sys.stderr)
        return 2
    if result.printer_status is not None:
        info = f" ({result.printer_status_info})" if result.printer_status_info else ""
        print(f"printer {args.aec}: {result.printer_status}{info}")
    for event in result.events:
        print(f"printer event: {event.status}{f' ({event.info})' if event.info else ''}")
    for what, status in result.warnings:
        print(f"warning: {what}: 0x{int(status):04X} ({status.meaning_for('print')})")
    for film in result.films:
        names = ", ".join(film.images)
        if film.printed and film.status is not None:
            print(f"film {film.number}: printed (0x{int(film.status):04X}): {names}")
        elif film.error is not None:
            print(f"film {film.number}: failed: {film.error}: {names}")
        else:
            print(f"film {film.number}: not printed: {names}")
    from ..audit.tool import FILM, audit_of  # Data Export on film (PS3.15 A.5.3.4)

    audit_of(args).exported(args.images, media=FILM, outcome=0 if result.ok else 8)
    if not result.ok:
        print(f"print failed: {result.reason}", file=sys.stderr)
        return 1
    return 0


def add_printer_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``printer`` (the virtual film printer) to ``subparsers``."""
    parser = subparsers.add_parser(
        "printer",
        help="virtual film printer: a Print SCP rendering each film as a PNG",
        description=(
            "Serve Verification and Basic Grayscale/Color Print Management; each printed "
            "film is written as SPOOL/<film session>/<film box>.png with a JSON sidecar."
        ),
    )
    parser.add_argument("--port", type=port_number, default=10400, help="port (10400)")
    parser.add_argument("--host", default=None, help="address to listen on (all)")
    parser.add_argument(
        "--aet", "-aet", type=ae_title, default="DICOMWIRE", help="our AE title (DICOMWIRE)"
    )
    parser.add_argument(
        "--spool", type=Path, default=Path("data/print"), help="where films go (data/print)"
    )
    parser.add_argument(
        "--status",
        choices=["NORMAL", "WARNING", "FAILURE"],
        default="NORMAL",
        type=str.upper,
        help="printer status the N-GET answers (NORMAL)",
    )
    parser.add_argument("--status-info", default=None, help="printer status info")
    parser.add_argument("--grayscale-only", action="store_true", help="no color meta class")
    parser.add_argument(
        "--pixels-per-inch",
        type=_resolution,
        default=40.0,
        metavar="N",
        help="PNG resolution (40; up to 600)",
    )
    add_common(parser)
    parser.set_defaults(run=run_printer)
    return parser


async def run_printer(args: argparse.Namespace) -> int:
    """Run ``dicomwire printer`` until SIGINT/SIGTERM."""
    import asyncio
    import contextlib
    import logging
    import signal

    from ...ul.association import Timeouts
    from ..node import Node, NodeConfig
    from ..print import Print, PrintConfig
    from ..storage import StorageConfig
    from ..verification import Verification

    logging.getLogger("dicomwire.services.print").setLevel(logging.INFO)
    config = PrintConfig(
        spool=args.spool,
        printer_status=args.status,
        printer_status_info=args.status_info or args.status,
        color=not args.grayscale_only,
        pixels_per_inch=args.pixels_per_inch,
    )
    node_config = NodeConfig(
        ae_titles=[args.aet],
        host=args.host,
        port=args.port,
        max_pdu_length=args.max_pdu,
        storage=StorageConfig(root=args.spool, discard=True),
        timeouts=Timeouts(
            artim=args.artim_timeout,
            acse=args.acse_timeout or None,
            dimse=None,
            network_idle=args.idle_timeout or None,
        ),
    )
    try:
        args.spool.mkdir(parents=True, exist_ok=True)
        node = Node(node_config, services=[Verification(), Print(config)])
        await node.start()
    except (DicomWireError, OSError) as exc:
        print(f"printer: {exc}", file=sys.stderr)
        return 1
    print(
        f"dicomwire printer {args.aet} listening on port {node.port}, films under {args.spool}",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await node.shutdown()
    return 0
