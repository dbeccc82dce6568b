"""PostgreSQL backends of the node's shared state, for several nodes (docs/scale-out.md).

:class:`PostgresIndex` (the Q/R index, PS3.4 C.6) and :class:`PostgresJobQueue` (the
durable job queue) implement the interfaces of the embedded SQLite defaults; select them
with ``database = "postgresql://..."`` in the node configuration
(:mod:`dicomwire.services.database`). Needs the optional extra ``dicomwire[postgres]``
(psycopg 3 and psycopg_pool), imported only when a database is first opened.
"""

from __future__ import annotations

from .connection import is_postgres_url
from .index import PostgresIndex
from .jobs import PostgresJobQueue

__all__ = ["PostgresIndex", "PostgresJobQueue", "is_postgres_url"]
