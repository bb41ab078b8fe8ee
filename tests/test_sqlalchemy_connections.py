"""How SQLAlchemyStore uses its connections: one per thread on its own engine, never shared across a fork."""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
import sqlalchemy as sa

from wsgisession import SessionMiddleware, SessionStoreError
from wsgisession.store import ChangeOutcome, SessionChanges
from wsgisession.stores.sqlalchemy import SQLAlchemyStore

from .support import (
    GREEN_PATCHES,
    MYSQL_URL,
    POSTGRES_URL,
    RUN_ID,
    browser,
    count_in_threads,
    count_under_green_threads,
    counter_app,
    json_app,
    require_service,
)

#: PostgreSQL's application_name of the store's connections, to count them in pg_stat_activity.
NAME = f"wsgisession-test-{RUN_ID}"

_numbers = itertools.count()


def table_name() -> str:
    return f"connections_{RUN_ID}_{next(_numbers)}"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    if request.param == "postgresql":
        return require_service("PostgreSQL", POSTGRES_URL)
    return require_service("MariaDB", MYSQL_URL)


@pytest.fixture
def make_store() -> Iterator[Callable[..., SQLAlchemyStore]]:
    """``make_store(url, **options)``: a store on a table of its own, closed and dropped afterwards."""
    made: List[SQLAlchemyStore] = []

    def make(url: str, **options: Any) -> SQLAlchemyStore:
        store = SQLAlchemyStore(url, table_name(), **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()
        engine = sa.create_engine(store.engine.url)
        store.table.drop(engine, checkfirst=True)
        engine.dispose()


@pytest.fixture
def postgres() -> Iterator[sa.Connection]:
    """A connection to the shared PostgreSQL, for looking at the store's connections."""
    engine = sa.create_engine(require_service("PostgreSQL", POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def named_postgres_store(make_store: Callable[..., SQLAlchemyStore], **engine_options: Any) -> SQLAlchemyStore:
    options: Dict[str, Any] = {"connect_args": {"application_name": NAME}, **engine_options}
    return make_store(require_service("PostgreSQL", POSTGRES_URL), engine_options=options)


def connections(postgres: sa.Connection) -> int:
    query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
    return int(postgres.execute(query, {"name": NAME}).scalar_one())


def closed_soon(postgres: sa.Connection) -> bool:
    """True once PostgreSQL has seen every connection of the store end (a backend exits a moment after)."""
    deadline = time.monotonic() + 5
    while connections(postgres) and time.monotonic() < deadline:
        time.sleep(0.01)
    return connections(postgres) == 0


def test_a_thread_keeps_one_connection_and_gives_it_back_when_it_ends(
    make_store: Callable[..., SQLAlchemyStore], postgres: sa.Connection
) -> None:
    store = named_postgres_store(make_store)
    app = SessionMiddleware(json_app(counter_app), store)
    pool = store.engine.pool
    counted = threading.Event()
    done = threading.Event()

    def browse() -> None:
        client = browser(app)
        assert [client.get("/").json["yy"] for _ in range(3)] == [1, 2, 3]
        counted.set()
        done.wait(10)

    worker = threading.Thread(target=browse)
    worker.start()
    assert counted.wait(10)
    assert pool.checkedout() == 1  # held between requests, by the thread that is still alive
    done.set()
    worker.join()
    assert pool.checkedout() == 0  # given back when the thread ended
    # Threads one after another: each takes the connection the last one gave back.
    assert count_in_threads(app, 6, 5, at_once=False) == [5] * 6
    assert connections(postgres) == 1
    # Threads at once: one connection each, more than the pool's size of 5,
    # and none of them waits for another's.
    assert count_in_threads(app, 8, 10, at_once=True) == [10] * 8
    assert pool.checkedout() == 0
    store.close()
    assert closed_soon(postgres)


def test_a_pool_sized_by_the_user_is_borrowed_from_per_statement(
    make_store: Callable[..., SQLAlchemyStore], postgres: sa.Connection
) -> None:
    # One connection for four threads: they take turns with it, none holds it.
    store = named_postgres_store(make_store, pool_size=1, max_overflow=0)
    app = SessionMiddleware(json_app(counter_app), store)
    assert count_in_threads(app, 4, 10, at_once=True) == [10] * 4
    assert connections(postgres) == 1
    store.close()


def test_a_connection_the_server_ended_is_replaced_without_failing_the_request(
    make_store: Callable[..., SQLAlchemyStore], postgres: sa.Connection
) -> None:
    store = named_postgres_store(make_store)
    client = browser(SessionMiddleware(json_app(counter_app), store))
    assert client.get("/").json == {"xx": 2, "yy": 1}
    # As a restart of the server or an idle timeout would.
    postgres.execute(
        sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"), {"name": NAME}
    )
    assert client.get("/").json == {"xx": 5, "yy": 2}
    assert client.get("/").json == {"xx": 8, "yy": 3}


def test_a_commit_that_fails_leaves_no_transaction_open_on_the_threads_connection(
    make_store: Callable[..., SQLAlchemyStore], tmp_path: Path
) -> None:
    # The connection is used again, so a transaction whose COMMIT failed
    # must not stay open: on SQLite it would keep the database's write lock,
    # and every other writer would wait out the busy timeout and fail.
    url = f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    store = make_store(url, timeout=1.0)
    other = make_store(url, timeout=1.0)
    now = time.time()
    record: Dict[str, Any] = {"data": {"n": 0}, "flash": [], "created": now, "refreshed": now, "expires": now + 3600}
    store.create_session(dict(record), "a" * 43, {})
    loaded = store.get_session("a" * 43, {})
    assert loaded is not None
    # Another request changes the session first: the store's swap loses, and
    # it writes again in a transaction (BEGIN IMMEDIATE ... COMMIT).
    first = store.get_session("a" * 43, {})
    assert first is not None
    changes = SessionChanges(set={"n": 1}, refreshed=now, expires=now + 3600, base=first)
    assert store.apply_changes("a" * 43, changes, {}) is ChangeOutcome.APPLIED

    def fail_commit(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error (the test's)")

    sa.event.listen(store.engine, "before_cursor_execute", fail_commit)
    try:
        late = SessionChanges(set={"m": 1}, refreshed=now, expires=now + 3600, base=loaded)
        with pytest.raises(SessionStoreError, match="disk I/O error"):
            store.apply_changes("a" * 43, late, {})
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", fail_commit)
    # Another connection writes at once, and the store's thread goes on.
    started = time.monotonic()
    other.create_session(dict(record), "b" * 43, {})
    assert time.monotonic() - started < 0.5
    again = SessionChanges(set={"m": 2}, refreshed=now, expires=now + 3600, base=store.get_session("a" * 43, {}))
    assert store.apply_changes("a" * 43, again, {}) is ChangeOutcome.APPLIED
    final = store.get_session("a" * 43, {})
    assert final is not None and final["data"] == {"n": 1, "m": 2}


@pytest.mark.parametrize("mode", ["held", "borrowed"])
def test_a_forked_child_never_uses_its_parents_connections(
    database_url: str, mode: str, make_store: Callable[..., SQLAlchemyStore]
) -> None:
    # Two processes on one connection read each other's replies: on MariaDB
    # each other's sessions, on PostgreSQL broken protocol.  The parent has
    # used the store when it forks, as a gunicorn master that ran a statement
    # before forking: its thread holds a connection, and its pool has another
    # one idle.  Afterwards the parent counts in a new thread, which takes a
    # connection from the pool, as the child does.  ("borrowed": a pool the
    # user sized, from which every statement borrows.)
    options = {"engine_options": {"pool_size": 5}} if mode == "borrowed" else {}
    store = make_store(database_url, **options)
    app = SessionMiddleware(json_app(counter_app), store)
    parent = browser(app)
    assert parent.get("/").json["yy"] == 1
    with store.engine.connect():
        pass  # a connection idle in the pool
    child_browser = browser(app)
    assert child_browser.get("/").json["yy"] == 1
    pid = os.fork()
    if pid == 0:  # the child: count on its own session, exit 0 when every count was right
        try:
            ok = all(child_browser.get("/").json["yy"] == count for count in range(2, 202))
        except BaseException:  # noqa: BLE001 - any failure is the child's exit status
            ok = False
        os._exit(0 if ok else 1)
    counts: List[Any] = []

    def count() -> None:
        try:
            counts.extend(parent.get("/").json["yy"] for _ in range(200))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            counts.append(exc)

    worker = threading.Thread(target=count)
    worker.start()
    worker.join()
    _, status = os.waitpid(pid, 0)
    assert counts == list(range(2, 202))
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("library, patch", GREEN_PATCHES)
def test_green_threads_borrow_from_the_pool_per_statement(library: str, patch: str, tmp_path: Path) -> None:
    # A greenlet serves one request: a connection held by it would be held
    # for the whole request, by as many greenlets as there are requests.
    pytest.importorskip(library)
    assert count_under_green_threads(patch, f"sqlite:///{tmp_path / 'green.sqlite3'}") == ["True", "4"]
