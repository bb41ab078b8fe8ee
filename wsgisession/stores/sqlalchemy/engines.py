"""The databases the store supports, and the engines it builds from a URL.

An engine built from a URL is tuned for the store's short statements:

* ``AUTOCOMMIT``: a statement that stands alone (a load, a swap) is one round
  trip, without ``BEGIN`` and ``COMMIT``; the store opens a transaction itself
  where several statements must be one.  Nothing is left to roll back when a
  connection goes back to the pool, so neither the pool's reset nor the
  rollback of a connection's end (``skip_autocommit_rollback``) runs: on
  MariaDB each would be a round trip.
* No ``pool_pre_ping``: a connection found dead is replaced when it fails
  (see ``database.py``), so a request costs no extra round trip.
* Every wait is bounded by the store's ``timeout``: a connection from the
  pool, connecting, the reply to a statement (PyMySQL's ``read_timeout`` and
  ``write_timeout``; on PostgreSQL, whose driver has no such setting, the
  store's own deadline, see ``deadlines.py``), and SQLite's busy timeout.
* Each thread holds a connection of its own (``per_thread.py``), unless
  ``engine_options`` size the pool or leave AUTOCOMMIT: the pool then has no
  overflow limit, so that it never makes a new thread wait; it holds about
  one connection per thread that serves requests.
* A process forked from one that used the engine starts with an empty pool:
  the parent's connections are left to the parent.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import SingletonThreadPool, StaticPool

__all__ = [
    "SUPPORTED_DATABASES",
    "BuiltEngine",
    "check_database",
    "build_engine",
    "single_connection_mutex",
    "begin_statement",
]

#: Dialect names the store is tested on, and how the README names them.
SUPPORTED_DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB/MySQL", "mariadb": "MariaDB"}

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")


def check_database(dialect_name: str) -> None:
    """Raise ``ValueError`` for a database the store is not tested on."""
    if dialect_name not in SUPPORTED_DATABASES:
        raise ValueError(
            f"SQLAlchemyStore supports SQLite, PostgreSQL and MariaDB/MySQL, not {dialect_name!r}: "
            "its compare-and-swap writes, row locks and timeouts are only tested there"
        )


def is_memory_sqlite(url: URL) -> bool:
    """True for a URL of an in-memory SQLite database."""
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database == "" or ":memory:" in database or url.query.get("mode") == "memory"
    )


@dataclass(frozen=True)
class BuiltEngine:
    """An engine the store built, and how the store uses it."""

    engine: Engine
    #: Whether its connections are in AUTOCOMMIT mode.
    autocommit: bool
    #: Whether each thread holds a connection of its own.
    per_thread: bool


# Options by which the user sizes the pool or picks its kind: the store then
# borrows a connection per statement, within the user's limits.
_POOL_OPTIONS = ("poolclass", "pool", "pool_size", "max_overflow")


def build_engine(url: URL, *, timeout: float, sqlite_synchronous: str, options: Mapping[str, Any]) -> BuiltEngine:
    """The store's own engine for ``url``.

    ``options`` (the user's ``engine_options``) win over the store's defaults.
    """
    options = dict(options)
    per_thread = not is_memory_sqlite(url) and not any(name in options for name in _POOL_OPTIONS)
    options.setdefault("isolation_level", "AUTOCOMMIT")
    autocommit = options["isolation_level"] == "AUTOCOMMIT"
    # A held connection outside AUTOCOMMIT would keep a transaction open between requests.
    per_thread = per_thread and autocommit
    if per_thread:
        options["max_overflow"] = -1
    if autocommit:
        options.setdefault("pool_reset_on_return", None)
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, timeout, sqlite_synchronous, options)
        if not is_memory_sqlite(url):
            _ENGINES_TO_RENEW_IN_CHILDREN.add(engine)
        return BuiltEngine(engine, autocommit, per_thread)
    if autocommit:
        options.setdefault("skip_autocommit_rollback", True)
    options.setdefault("pool_timeout", timeout)
    connect_args: Dict[str, Any] = dict(options.get("connect_args", {}))
    driver = url.get_driver_name()
    if driver in ("psycopg", "psycopg2"):
        # libpq counts whole seconds, at least 2.
        connect_args.setdefault("connect_timeout", max(2, math.ceil(timeout)))
    elif driver == "pymysql":
        connect_args.setdefault("connect_timeout", timeout)
        connect_args.setdefault("read_timeout", timeout)
        connect_args.setdefault("write_timeout", timeout)
    options["connect_args"] = connect_args
    engine = sa.create_engine(url, **options)
    _ENGINES_TO_RENEW_IN_CHILDREN.add(engine)
    return BuiltEngine(engine, autocommit, per_thread)


# The engines built here whose pools a forked child must not share with its
# parent: two processes on one connection read each other's replies (on
# MariaDB, each other's sessions).  An in-memory SQLite database is the
# process's own memory, which the child gets a copy of, so its engine stays.
_ENGINES_TO_RENEW_IN_CHILDREN: weakref.WeakSet[Engine] = weakref.WeakSet()


def _renew_pools_in_child() -> None:
    # SQLAlchemy's advice for engines that cross a fork: a new, empty pool,
    # without closing the parent's connections (which would end them for the
    # parent too).
    for engine in list(_ENGINES_TO_RENEW_IN_CHILDREN):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_renew_pools_in_child)


def _sqlite_engine(url: URL, timeout: float, synchronous: str, options: Dict[str, Any]) -> Engine:
    if is_memory_sqlite(url):
        # One connection shared by every thread so that all of them see the
        # same in-memory database; the store uses it one thread at a time.
        options.setdefault("poolclass", StaticPool)
        options["connect_args"] = {"check_same_thread": False, **dict(options.get("connect_args", {}))}
        return sa.create_engine(url, **options)
    level = synchronous.upper()
    if level not in SYNCHRONOUS_LEVELS:
        raise ValueError(f"sqlite_synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}, not {synchronous!r}")
    engine = sa.create_engine(url, **options)
    busy_timeout_ms = max(1, round(timeout * 1000))

    def configure(dbapi_connection: Any, connection_record: Any) -> None:
        # WAL lets readers work beside one writer, across processes; the busy
        # timeout makes a second writer wait, for at most the store's timeout,
        # instead of failing.  With WAL, synchronous=NORMAL keeps every commit
        # through a crash of the process (not of the machine) and spares an
        # fsync per commit.
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {level}")
        finally:
            cursor.close()

    sa.event.listen(engine, "connect", configure)
    return engine


def single_connection_mutex(engine: Engine) -> Optional[threading.RLock]:
    """A mutex for an engine whose one connection every thread shares (StaticPool), else None.

    That connection has one transaction state, so the store uses it one
    thread at a time.  An in-memory SQLite engine that gives each thread its
    own empty database is refused.
    """
    if isinstance(engine.pool, StaticPool):
        return threading.RLock()
    if isinstance(engine.pool, SingletonThreadPool) and is_memory_sqlite(engine.url):
        raise ValueError(
            "this in-memory SQLite engine gives every thread its own empty database; "
            "pass the URL 'sqlite://' to SQLAlchemyStore, or build the engine with poolclass=StaticPool"
        )
    return None


def begin_statement(dialect_name: str, autocommit: bool) -> Optional[str]:
    """What opens a transaction whose reads lock what they read, or None when one is always open.

    SQLite takes its write lock at once (IMMEDIATE) so that a read-then-write
    transaction never has to upgrade its lock (which fails at once instead of
    waiting); pysqlite lets an explicit BEGIN through in both of its modes.
    Transactional connections of the servers are always in a transaction.
    """
    if dialect_name == "sqlite":
        return "BEGIN IMMEDIATE"
    if not autocommit:
        return None
    return "START TRANSACTION" if dialect_name in ("mysql", "mariadb") else "BEGIN"
