"""``dicomwire index``: the node's Query/Retrieve index (PS3.4 C.6) from the command line.

- ``dicomwire index rebuild DIR`` indexes every Part 10 file under DIR (``.incoming`` left
  out) and removes the rows of files that are gone, so the index equals the files again:
  after files were copied in or removed by hand, or a power loss with ``--no-fsync``.
  Each file that cannot be indexed is named with the reason; exit 1 if any.
- ``dicomwire index stats [DIR]`` prints how many patients, studies, series and instances
  are indexed, and the additions a crash left pending.

The database is ``--database PATH``, else that of ``--config`` (TOML, as ``serve`` reads
it), else ``DIR/.dicomwire/node.sqlite`` — where ``dicomwire serve --storage DIR`` keeps it.
Run ``rebuild`` while the node is stopped: it first settles what a crash left pending, as
the node does when it starts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import DicomWireError
from .flags import add_audit

if TYPE_CHECKING:
    from ..index import Index
    from ..node import NodeConfig

__all__ = ["add_parser", "run"]


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``index`` (with ``rebuild`` and ``stats``) to ``subparsers``."""
    parser = subparsers.add_parser(
        "index",
        help="the node's Q/R index: rebuild it from the stored files, or count it",
        description=(
            "Work on the node's Query/Retrieve index. The database is --database, else the "
            "one --config names, else DIR/.dicomwire/node.sqlite (dicomwire serve's)."
        ),
    )
    actions = parser.add_subparsers(
        dest="action", metavar="ACTION", required=True, help="rebuild or stats"
    )
    rebuild = actions.add_parser(
        "rebuild",
        help="index every file under DIR; forget the rows of files that are gone",
        description=(
            "Index every Part 10 file under DIR (.incoming left out) and remove the rows of "
            "files that no longer exist. Prints the counts and each file that failed; exit "
            "status 1 if any did. Run it while the node is stopped."
        ),
    )
    rebuild.add_argument("directory", type=Path, nargs="?", metavar="DIR", help="storage root")
    stats = actions.add_parser(
        "stats",
        help="count the indexed patients, studies, series and instances",
        description="Print the rows per level and the additions a crash left pending.",
    )
    stats.add_argument("directory", type=Path, nargs="?", metavar="DIR", help="storage root")
    for action in (rebuild, stats):
        action.add_argument(
            "--database",
            metavar="PATH|URL",
            help="the index database: an SQLite file or a postgresql:// URL",
        )
        action.add_argument(
            "--config", "-c", type=Path, help="node configuration file (TOML) to take it from"
        )
        action.add_argument(
            "-v", "--verbose", action="store_true", help="name each file as it is indexed"
        )
        action.add_argument("-d", "--debug", action="store_true", help="log everything")
        action.set_defaults(run=run)
    add_audit(rebuild)  # DICOM Instances Accessed (delete) for the rows it removes
    return parser


def _locate(args: argparse.Namespace) -> tuple[Path | None, str | Path, NodeConfig | None]:
    """(storage root, database, the node configuration if given) from the arguments;
    DicomWireError when neither root nor database is known."""
    from ..database import database_location
    from ..node import NodeConfig, load_config
    from ..storage import StorageConfig

    config = load_config(args.config) if args.config else None
    root = args.directory or (config.storage.root if config is not None else None)
    if args.database is not None:
        return root, args.database, config
    if config is not None:
        if args.directory is not None:
            config.storage.root = args.directory
        return root, database_location(config), config
    if root is None:
        raise DicomWireError("give the storage directory DIR, --database or --config")
    return root, database_location(NodeConfig(storage=StorageConfig(root=root))), None


def _print_spool(config: NodeConfig | None, root: Path) -> Path | None:
    """The node's print spool (hardcopy images, not archive content), left out of a rebuild."""
    from ..print.scp import PrintConfig
    from ..print.service import spool_directory

    section = config.sections.get("print") if config is not None else None
    return spool_directory(section if isinstance(section, PrintConfig) else PrintConfig(), root)


def run(args: argparse.Namespace) -> int:
    """Run ``dicomwire index ACTION``; the exit status."""
    from ..database import index_at
    from ..postgres.connection import is_postgres_url

    try:
        root, database, config = _locate(args)
    except DicomWireError as exc:
        print(f"index: {exc}", file=sys.stderr)
        return 2
    if args.action == "rebuild":
        if root is None or not root.is_dir():
            print(f"index rebuild: {root} is not a directory", file=sys.stderr)
            return 2
    elif not is_postgres_url(str(database)) and not Path(database).exists():
        print(f"index stats: no index at {database}", file=sys.stderr)
        return 2
    index = index_at(database)
    try:
        if args.action == "stats":
            counts = index.stats()
            print(f"index {index.path}: " + ", ".join(f"{n} {name}" for name, n in counts.items()))
            return 0
        assert root is not None
        from ..audit.tool import audit_of, record_removals

        recorded = record_removals(index, audit_of(args))
        try:
            spool = _print_spool(config, root)
            return _rebuild(
                index, root, exclude=[spool] if spool else [], verbose=args.verbose or args.debug
            )
        finally:
            recorded()
    except DicomWireError as exc:
        print(f"index: {exc}", file=sys.stderr)
        return 1
    finally:
        index.close()


def _rebuild(index: Index, root: Path, *, exclude: list[Path], verbose: bool) -> int:
    from ..index import rebuild

    started = time.monotonic()
    index.reconcile()
    before = index.count()
    added, failures = rebuild(index, root, on_indexed=_echo if verbose else None, exclude=exclude)
    after = index.count()
    for path, reason in failures:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    print(
        f"indexed {added} files under {root} into {index.path} in "
        f"{time.monotonic() - started:.1f} s: {after} instances (was {before}), "
        f"{len(failures)} failed"
    )
    return 1 if failures else 0


def _echo(path: Path) -> None:
    print(f"indexed {path}")
