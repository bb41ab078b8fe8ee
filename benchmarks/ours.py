"""wsgisession's stores as the benchmark builds them, one factory per store.

A store whose module is missing (or fails to import) is reported as not
available instead of stopping the run, so stores appear here as they land.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Tuple

from wsgisession.store import Store

from .workspace import Unavailable, Workspace

#: The signing key of the benchmark's cookie stores and cookie peers (a
#: throwaway: nothing outside one run ever sees these cookies).
BENCH_SECRET = "wsgisession-benchmark-secret-key-0123456789abcdef"


def store_class(module: str, class_name: str) -> Any:
    """``wsgisession.stores.<module>.<class_name>``, or :class:`Unavailable` saying why not."""
    try:
        found = importlib.import_module(f"wsgisession.stores.{module}")
    except Exception as exc:  # a store being written may fail in any way
        raise Unavailable(f"wsgisession.stores.{module} can not be imported ({type(exc).__name__}: {exc})") from exc
    try:
        return getattr(found, class_name)
    except AttributeError:
        raise Unavailable(f"wsgisession.stores.{module} has no {class_name}") from None


@dataclass(frozen=True)
class OurStore:
    """One of our stores: its short name, what it needs, and how to build one for a run."""

    name: str
    description: str
    #: ``build(workspace, label)``: a new store whose table or key prefix is named after ``label``.
    build: Callable[[Workspace, str], Store]


def _memory(workspace: Workspace, label: str) -> Store:
    return store_class("memory", "MemoryStore")()  # type: ignore[no-any-return]


def _cookie(workspace: Workspace, label: str) -> Store:
    return store_class("cookie", "CookieStore")(BENCH_SECRET)  # type: ignore[no-any-return]


def _sqlalchemy(workspace: Workspace, label: str, url: str, **options: Any) -> Store:
    store_type = store_class("sqlalchemy", "SQLAlchemyStore")
    try:
        store: Store = store_type(url, table_name=workspace.table_name(label), **options)
    except TypeError as exc:
        raise Unavailable(f"SQLAlchemyStore does not take {sorted(options)}: {exc}") from exc
    workspace.on_close(store.close)
    return store


def _sqlite(workspace: Workspace, label: str) -> Store:
    return _sqlalchemy(workspace, label, workspace.sqlite_url(label))


def _sqlite_full(workspace: Workspace, label: str) -> Store:
    # The store's default (WAL, synchronous=NORMAL) survives a crash of the
    # process; FULL also survives power loss, like SQLite's own default that
    # Beaker runs with.  Measured so the comparison at equal durability is known.
    return _sqlalchemy(workspace, label, workspace.sqlite_url(label), sqlite_synchronous="FULL")


def _postgres(workspace: Workspace, label: str) -> Store:
    return _sqlalchemy(workspace, label, workspace.require_postgres())


def _redis(workspace: Workspace, label: str) -> Store:
    url = workspace.require_redis()
    store: Store = store_class("redis", "RedisStore")(url, prefix=workspace.redis_prefix(label))
    workspace.on_close(store.close)
    return store


OUR_STORES: Tuple[OurStore, ...] = (
    OurStore("memory", "MemoryStore", _memory),
    OurStore("cookie", "CookieStore (signed)", _cookie),
    OurStore("sqlite", "SQLAlchemyStore on an SQLite file (WAL, synchronous=NORMAL)", _sqlite),
    OurStore("sqlite-full", "SQLAlchemyStore on an SQLite file (WAL, synchronous=FULL)", _sqlite_full),
    OurStore("postgres", "SQLAlchemyStore on PostgreSQL", _postgres),
    OurStore("redis", "RedisStore", _redis),
)


def supports_lock(store: Store) -> bool:
    """True when the store implements per-session request locks (``lock=True``)."""
    return store.can_lock
