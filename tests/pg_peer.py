"""A throwaway PostgreSQL cluster for the tests: ``initdb`` in a temp dir, ``pg_ctl start``
(:mod:`dicomwire.services.postgres.throwaway`, which ``dicomwire cluster`` uses too).

One server per test session (started by the first test that asks, stopped when the last
user's session fixture ends, ``atexit`` as a safety net); each test gets a database of
its own (:func:`fresh_database`). Listens on 127.0.0.1 and a free port, its socket in the
cluster's directory; run as the ``postgres`` user when the tests run as root (initdb
refuses root), trust authentication (nothing else can reach it). A missing PostgreSQL is
a skip, a failure in CI (``CI=true``).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import threading
from collections.abc import Iterator

import pytest

from dicomwire.errors import LaunchError
from dicomwire.services.postgres.throwaway import ThrowawayPostgres, start_throwaway_postgres
from tests.conftest import import_or_fail, skip_or_fail

#: The server class lives in src (``dicomwire cluster`` starts one too): one place.
PostgresServer = ThrowawayPostgres


def start_server() -> PostgresServer:
    """initdb and start a cluster (a skip, or a failure in CI, when it cannot be had)."""
    import_or_fail("psycopg")
    try:
        return start_throwaway_postgres()
    except LaunchError as exc:
        if exc.missing:
            skip_or_fail(str(exc))
        raise


_lock = threading.Lock()
_server: PostgresServer | None = None
_users = 0
_names = itertools.count()


def _acquire() -> PostgresServer:
    global _server, _users
    with _lock:
        if _server is None:
            _server = start_server()
            atexit.register(_server.stop)
        _users += 1
        return _server


def _release() -> None:
    global _server, _users
    with _lock:
        _users -= 1
        if _users == 0 and _server is not None:
            _server.stop()
            _server = None


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (shared by every module that imports this)."""
    server = _acquire()
    try:
        yield server
    finally:
        _release()


@contextlib.contextmanager
def fresh_database(server: PostgresServer) -> Iterator[str]:
    """A new, empty database on ``server``: its URL; dropped afterwards."""
    import psycopg

    name = f"t{os.getpid()}_{next(_names)}"
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield server.url(name)
    finally:
        with psycopg.connect(server.url(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of an empty database of this test's own."""
    with fresh_database(postgres) as url:
        yield url
