"""The node's database, by configuration: embedded SQLite (default) or shared PostgreSQL.

``database`` in the node configuration (:class:`~dicomwire.services.node.NodeConfig`) is
either the SQLite file (a path; empty: ``<storage root>/.dicomwire/node.sqlite``) or a
libpq URL ``postgresql://user@host:port/dbname``, which several nodes share
(docs/scale-out.md). These factories are the one place that choice is made: services
get an :class:`~dicomwire.services.index.Index` or a
:class:`~dicomwire.services.jobs.JobQueue` and never see the backend (PS3.4 C.6 for the
index; the queues carry PS3.4 J.3.3 reports and the PS3.4 F.7 relay).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .index import Index, SQLiteIndex
from .jobs import JobQueue, SQLiteJobQueue
from .mpps.store import StepStore
from .postgres.connection import is_postgres_url
from .worklist.store import SQLiteWorklistStore, WorklistStore

if TYPE_CHECKING:
    from .node import NodeConfig

__all__ = [
    "database_location",
    "database_url",
    "index_at",
    "is_postgres_url",
    "job_queue_at",
    "open_index",
    "open_job_queue",
    "open_step_store",
    "open_worklist_store",
    "step_store_at",
    "worklist_store_at",
]


def database_url(config: NodeConfig) -> str | None:
    """The PostgreSQL URL the node shares its state in, or None (embedded SQLite)."""
    database = config.database
    return str(database) if is_postgres_url(database) else None


def open_index(config: NodeConfig) -> Index:
    """The node's Q/R index, not yet opened (nothing is created or connected before use).

    PostgreSQL when ``database`` is a URL; else SQLite at the node's database file, or in
    memory (and empty) for a node that discards what it receives and names no database.
    """
    if config.storage.discard and config.database is None:
        return SQLiteIndex(":memory:")
    return index_at(database_location(config))


def index_at(location: str | Path) -> Index:
    """The Q/R index in the database at ``location`` (a PostgreSQL URL or a SQLite file):
    what ``dicomwire index`` opens from ``--database``."""
    if is_postgres_url(str(location)):
        from .postgres.index import PostgresIndex

        return PostgresIndex(str(location))
    return SQLiteIndex(location)


def open_job_queue(config: NodeConfig) -> JobQueue:
    """The node's durable job queue: in PostgreSQL when ``database`` is a URL (shared by
    every node, claims with ``SKIP LOCKED``), else in the node's SQLite file."""
    return job_queue_at(database_location(config))


def job_queue_at(location: str | Path) -> JobQueue:
    """The job queue in the database at ``location``: a PostgreSQL URL or a SQLite file
    (what a service given its own database, outside a node, opens)."""
    if is_postgres_url(str(location)):
        from .postgres.jobs import PostgresJobQueue

        return PostgresJobQueue(str(location))
    return SQLiteJobQueue(location)


def open_step_store(config: NodeConfig) -> StepStore:
    """The node's MPPS steps (PS3.4 F.7.2): shared in PostgreSQL when ``database`` is a
    URL (an N-SET through any node finds the step an N-CREATE made through another)."""
    return step_store_at(database_location(config))


def step_store_at(location: str | Path) -> StepStore:
    """The MPPS step store in the database at ``location`` (URL or SQLite file)."""
    if is_postgres_url(str(location)):
        from .postgres.mpps import PostgresStepStore

        return PostgresStepStore(str(location))
    return StepStore(location)


def database_location(config: NodeConfig) -> str | Path:
    """The node's database: its PostgreSQL URL, else its SQLite file."""
    from .node import database_path

    return database_url(config) or database_path(config)


def open_worklist_store(config: NodeConfig) -> WorklistStore:
    """The node's worklist entries (PS3.4 K.6.1): shared in PostgreSQL when ``database``
    is a URL (an entry added through one node is answered by all), else its SQLite file."""
    return worklist_store_at(database_location(config))


def worklist_store_at(location: str | Path) -> WorklistStore:
    """The worklist store in the database at ``location`` (URL or SQLite file): what
    ``dicomwire worklist add|list|remove`` opens."""
    if is_postgres_url(str(location)):
        from .postgres.worklist import PostgresWorklistStore

        return PostgresWorklistStore(str(location))
    return SQLiteWorklistStore(location)
