"""``dicomwire conformance-statement``: the node's DICOM conformance statement (PS3.2).

Generated from the services, configuration and constants of the node ``--config``
describes (the default node without it), as Markdown or HTML
(:mod:`dicomwire.services.conformance`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]

log = logging.getLogger("dicomwire.services.cli.conformance")


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``conformance-statement`` to ``subparsers``; its ``run`` is :func:`run`."""
    parser = subparsers.add_parser(
        "conformance-statement",
        help="write the node's DICOM conformance statement (PS3.2), Markdown or HTML",
        description=(
            "Write the DICOM conformance statement (PS3.2 form) of the node --config "
            "describes (the default node without it): AEs, SOP classes, association "
            "policies, presentation contexts, statuses sent, rejections and aborts, TLS "
            "profiles, configuration defaults, all read from the code and configuration."
        ),
    )
    parser.add_argument(
        "--config", "-c", type=Path, help="node configuration file (TOML), as serve reads"
    )
    parser.add_argument(
        "--format",
        "-f",
        choices=("markdown", "html"),
        default=None,
        help="output format (default: html when -o ends in .html, else markdown)",
    )
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="write to FILE (default: stdout)"
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``dicomwire conformance-statement``; 0, or 2 for a bad configuration file."""
    from ...errors import DicomWireError
    from ..conformance import conformance_statement
    from ..node import load_config

    output: Path | None = args.output
    chosen = args.format
    if chosen is None:
        html = output is not None and output.suffix.lower() in (".html", ".htm")
        chosen = "html" if html else "markdown"
    try:
        config = load_config(args.config) if args.config is not None else None
        text = conformance_statement(config, chosen)
    except DicomWireError as exc:
        log.error("%s", exc)
        return 2
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        log.error("cannot write %s: %s", output, exc)
        return 1
    return 0
