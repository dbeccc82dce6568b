"""The ``dicomwire`` command line: one subcommand per tool, DCMTK-like flags.

Subcommands arrive with the service issues; ``dicomwire --version`` works from the start.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, __version__


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
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
