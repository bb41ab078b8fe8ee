"""SQLAlchemyStore on SQLite (file and memory), PostgreSQL and MariaDB: the store suite and its own promises."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import StaticPool
from webtest import TestApp

from wsgisession import SessionLockTimeout, SessionStoreError
from wsgisession.serialization import loads
from wsgisession.store import ChangeOutcome, SessionChanges, storage_key
from wsgisession.stores.sqlalchemy import RowVersion, SQLAlchemyStore, session_table
from wsgisession.testing import FakeClock

from .servers import Address, Browser, gunicorn
from .store_suite import DAY, ServerSideSuite, clone, cookie_of, interrupted
from .support import MYSQL_URL, POSTGRES_URL, RUN_ID, counter_app, require_service

BACKENDS = ["sqlite-file", "sqlite-memory", "postgresql", "mariadb"]
SERVERS = ["postgresql", "mariadb"]

_table_numbers = itertools.count()

StoreFactory = Callable[..., SQLAlchemyStore]


def _url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite-file":
        return f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    if backend == "sqlite-memory":
        return "sqlite://"
    if backend == "postgresql":
        return require_service("PostgreSQL", POSTGRES_URL)
    return require_service("MariaDB", MYSQL_URL)


@contextmanager
def stores_made(tmp_path: Path, clock: FakeClock) -> Iterator[StoreFactory]:
    """``make(backend, **options)``: a store on a new table, on the fake clock; dropped when the block ends.

    With ``given_engine=True`` the store gets an Engine built with SQLAlchemy's
    defaults (transactional, no pragmas) instead of a URL.
    """
    stores: List[SQLAlchemyStore] = []
    engines: List[sa.Engine] = []

    def make(backend: str, *, given_engine: bool = False, **options: Any) -> SQLAlchemyStore:
        options.setdefault("clock", clock)
        url: Any = _url(backend, tmp_path)
        if given_engine:
            url = sa.create_engine(url)
            engines.append(url)
        store = SQLAlchemyStore(url, f"sessions_{RUN_ID}_{next(_table_numbers)}", **options)
        stores.append(store)
        return store

    try:
        yield make
    finally:
        for store in stores:
            try:
                store.table.drop(store.engine, checkfirst=True)
            finally:
                store.close()
        for engine in engines:
            engine.dispose()


@pytest.fixture
def new_store(tmp_path: Path, clock: FakeClock) -> Iterator[StoreFactory]:
    """``new_store(backend, **options)``: see :func:`stores_made`."""
    with stores_made(tmp_path, clock) as make:
        yield make


class TestEveryBackend(ServerSideSuite):
    rounds = 10

    @pytest.fixture
    def store(self, backend: str, new_store: StoreFactory) -> SQLAlchemyStore:
        return new_store(backend)


class TestGivenEngine(ServerSideSuite):
    """An Engine passed in is used as it is: transactional, without the store's pragmas."""

    @pytest.fixture(params=["sqlite-file", "postgresql", "mariadb"])
    def store(self, request: pytest.FixtureRequest, new_store: StoreFactory) -> SQLAlchemyStore:
        return new_store(str(request.param), given_engine=True)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def rows(store: SQLAlchemyStore) -> List[Dict[str, Any]]:
    """Every row of the store's table, as dicts."""
    with store.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(store.table))]


def row_of(store: SQLAlchemyStore, cookie: str) -> Dict[str, Any]:
    (row,) = [row for row in rows(store) if row["id"] == storage_key(cookie)]
    return row


@contextmanager
def statements_run(engine: sa.Engine) -> Iterator[List[str]]:
    """The SQL of every statement run on ``engine`` in the block, as SQLAlchemy's cursor event sees it."""
    seen: List[str] = []

    def record(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def verbs(statements: List[str]) -> List[str]:
    """The first word of each statement: ``["SELECT", "UPDATE"]``."""
    return [statement.split(" ", 1)[0].upper() for statement in statements]


def reader_of(make_app: Callable[..., TestApp], store: SQLAlchemyStore, cookie: str, **options: Any) -> TestApp:
    """A browser holding ``cookie`` whose requests answer [session.new, the session's items]."""
    reader = make_app(lambda session, environ: [session.new, dict(session.items())], store, **options)
    reader.set_cookie("session", cookie)
    return reader


# -- what is stored ------------------------------------------------------------------


def test_rows_are_stored_under_digests_as_json(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(backend)
    app = make_app(lambda session, environ: session.update(user="ann", cart=["tea"]), store)
    app.get("/")
    cookie = cookie_of(app)
    (row,) = rows(store)
    assert row["id"] == storage_key(cookie)
    assert all(cookie not in str(value) for value in row.values())
    assert loads(row["data"]) == {"data": {"user": "ann", "cart": ["tea"]}, "flash": [], "persistent": True}
    assert row["version"] == 1 and row["lock_token"] is None


def test_expired_rows_are_filtered_out_by_the_query(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    store = new_store(backend)
    writer = make_app(counter_app, store, expire_after=60)
    writer.get("/")
    clock.advance(61)
    # This middleware never expires sessions itself: only the store's query
    # can hide the row, which is still in the table.
    assert reader_of(make_app, store, cookie_of(writer), expire_after=None).get("/").json == [True, {}]
    assert len(rows(store)) == 1


def test_a_refresh_writes_only_the_expiry(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    store = new_store(backend)
    writer = make_app(counter_app, store, expire_after=DAY)
    writer.get("/")
    before = row_of(store, cookie_of(writer))
    clock.advance(DAY / 2)
    response = reader_of(make_app, store, cookie_of(writer), expire_after=DAY).get("/")
    assert response.json == [False, {"xx": 2, "yy": 1}]
    assert "Max-Age=86400" in response.headers["Set-Cookie"]
    after = row_of(store, cookie_of(writer))
    unchanged = ("data", "version", "created_at", "updated_at")
    assert {name: after[name] for name in unchanged} == {name: before[name] for name in unchanged}
    assert after["refreshed_at"] == pytest.approx(before["refreshed_at"] + DAY / 2)
    assert after["expires_at"] == pytest.approx(before["expires_at"] + DAY / 2)


def test_a_write_loaded_before_a_refresh_keeps_the_newer_expiry(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    store = new_store(backend)
    app = make_app(counter_app, store, expire_after=DAY)
    app.get("/")
    cookie = cookie_of(app)
    environ: Dict[str, Any] = {}
    loaded = store.get_session(cookie, environ)  # a request that loads ...
    assert loaded is not None
    clock.advance(DAY / 2)
    assert "Set-Cookie" in reader_of(make_app, store, cookie, expire_after=DAY).get("/").headers  # ... a refresh ...
    refreshed = row_of(store, cookie)
    # ... and the first request saves a late change, with the expiry it loaded.
    changes = SessionChanges(set={"late": 1}, refreshed=loaded["refreshed"], expires=loaded["expires"], base=loaded)
    assert store.apply_changes(cookie, changes, environ) is ChangeOutcome.APPLIED
    after = row_of(store, cookie)
    assert (after["refreshed_at"], after["expires_at"]) == (refreshed["refreshed_at"], refreshed["expires_at"])
    assert loads(after["data"])["data"]["late"] == 1


def test_the_version_travels_in_the_record_and_nothing_in_environ(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(backend)
    app = make_app(counter_app, store)
    app.get("/")
    cookie = cookie_of(app)
    environ: Dict[str, Any] = {}
    record = store.get_session(cookie, environ)
    assert record is not None
    assert record["version"] == RowVersion(1, row_of(store, cookie)["data"])
    first = SessionChanges(set={"xx": 10}, refreshed=record["refreshed"], expires=record["expires"], base=record)
    with statements_run(store.engine) as run:
        assert store.apply_changes(cookie, first, environ) is ChangeOutcome.APPLIED
    assert verbs(run) == ["UPDATE"]  # the compare-and-swap against the version loaded, and nothing else
    assert record["version"] == RowVersion(2, row_of(store, cookie)["data"])  # the request's copy moved on
    # The request's next write starts from the version it wrote: one statement again.
    second = SessionChanges(set={"late": 1}, refreshed=record["refreshed"], expires=record["expires"], base=record)
    with statements_run(store.engine) as run:
        assert store.apply_changes(cookie, second, environ) is ChangeOutcome.APPLIED
    assert verbs(run) == ["UPDATE"]
    assert environ == {}
    assert loads(row_of(store, cookie)["data"])["data"] == {"xx": 10, "yy": 1, "late": 1}


def test_a_stale_version_costs_a_locked_read_and_loses_nothing(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(backend)
    app = make_app(counter_app, store)
    app.get("/")
    cookie = cookie_of(app)
    record = store.get_session(cookie, {})
    assert record is not None
    app.get("/")  # another request writes: the version loaded above is stale
    changes = SessionChanges(set={"late": 1}, refreshed=record["refreshed"], expires=record["expires"], base=record)
    with statements_run(store.engine) as run:
        assert store.apply_changes(cookie, changes, {}) is ChangeOutcome.APPLIED
    expected = ["UPDATE", "SELECT", "UPDATE"]  # the swap that lost, then the row read under a lock and written
    if store.engine.dialect.name == "sqlite":
        assert verbs(run) == ["UPDATE", "BEGIN", "SELECT", "UPDATE", "COMMIT"]
    else:
        assert [verb for verb in verbs(run) if verb not in ("BEGIN", "START", "COMMIT")] == expected
        assert run[1].split(" ", 1)[0] in ("BEGIN", "START") and run[-1] == "COMMIT"
        assert "FOR UPDATE" in run[2]
    assert loads(row_of(store, cookie)["data"])["data"] == {"xx": 5, "yy": 2, "late": 1}
    assert record["version"] == RowVersion(3, row_of(store, cookie)["data"])


@pytest.mark.parametrize("url", ["mssql+pyodbc://user:secret@dsn", "oracle+oracledb://user:secret@db.internal/service"])
def test_a_database_other_than_the_three_is_refused_at_construction(url: str) -> None:
    import sqlite3

    with pytest.raises(ValueError, match="supports SQLite, PostgreSQL and MariaDB/MySQL, not '(mssql|oracle)'"):
        SQLAlchemyStore(url)
    if url.startswith("mssql"):
        # An Engine is checked the same way (sqlite3 stands in for the driver: nothing connects).
        engine = sa.create_engine(url, module=sqlite3)
        with pytest.raises(ValueError, match="supports SQLite, PostgreSQL and MariaDB/MySQL, not 'mssql'"):
            SQLAlchemyStore(engine)


def test_an_update_never_recreates_a_deleted_row(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(backend)
    app = make_app(counter_app, store)
    app.get("/")
    cookie = cookie_of(app)
    record = store.get_session(cookie, {})
    assert record is not None
    logout = make_app(lambda session, environ: session.delete(), store)
    logout.set_cookie("session", cookie)
    logout.get("/")
    assert rows(store) == []
    store.persist_session(record, cookie, {})
    changes = SessionChanges(set={"late": 1}, refreshed=record["refreshed"], expires=record["expires"])
    assert store.apply_changes(cookie, changes, {}) is ChangeOutcome.GONE
    assert rows(store) == []


def test_a_write_that_lost_the_race_is_reapplied_to_the_current_row(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(backend)
    loaded = threading.Event()
    other_wrote = threading.Event()

    def slow(session: Any, environ: dict) -> Any:
        session.get("owner")  # loads version 1
        loaded.set()
        assert other_wrote.wait(10)
        session["slow"] = "kept"
        return "slow"

    owner = make_app(lambda session, environ: session.setdefault("owner", "ann"), store)
    owner.get("/")
    cookie = cookie_of(owner)
    slow_app = clone(make_app(slow, store), cookie)
    fast_app = clone(make_app(lambda session, environ: session.update(fast="kept"), store), cookie)
    assert interrupted(slow_app, loaded, fast_app, other_wrote).json == "slow"
    assert reader_of(make_app, store, cookie).get("/").json == [False, {"owner": "ann", "fast": "kept", "slow": "kept"}]
    assert row_of(store, cookie)["version"] == 3


def test_concurrent_writes_of_one_key_leave_one_whole_value(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(backend)
    owner = make_app(lambda session, environ: session.setdefault("owner", "ann"), store)
    owner.get("/")
    cookie = cookie_of(owner)

    def write(session: Any, environ: dict) -> Any:
        number = int(environ["PATH_INFO"].strip("/"))
        session["shared"] = {"writer": number, "items": [number] * 50}
        return number

    writer = make_app(write, store)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda number: clone(writer, cookie).get(f"/{number}"), range(16)))
    new, data = reader_of(make_app, store, cookie).get("/").json
    number = data["shared"]["writer"]
    assert data == {"owner": "ann", "shared": {"writer": number, "items": [number] * 50}}


def test_a_malformed_row_fails_loudly_and_is_not_overwritten(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(backend)
    app = make_app(counter_app, store)
    app.get("/")
    with store.engine.begin() as connection:
        connection.execute(sa.update(store.table).values(data="{not json"))
    with pytest.raises(SessionStoreError, match="malformed session row"):
        app.get("/")
    assert [row["data"] for row in rows(store)] == ["{not json"]


# -- cleanup and the sweep ---------------------------------------------------------------


def test_cleanup_deletes_expired_rows_in_batches(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    store = new_store(backend, cleanup_batch_size=3)
    for _ in range(7):
        make_app(counter_app, store, expire_after=60).get("/")
    for expire_after in (None, DAY):
        make_app(counter_app, store, expire_after=expire_after).get("/")
    clock.advance(61)
    deletes: List[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *args: deletes.append(args[2]))
    assert store.cleanup() == 7
    assert len([statement for statement in deletes if statement.lstrip().upper().startswith("DELETE")]) == 3
    assert sorted(row["expires_at"] is None for row in rows(store)) == [False, True]
    assert store.cleanup() == 0


def test_sweep_deletes_expired_rows_every_n_writes(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    store = new_store(backend, sweep_every=4)
    for _ in range(2):
        make_app(counter_app, store, expire_after=60).get("/")  # writes 1 and 2
    clock.advance(61)
    live = make_app(counter_app, store, expire_after=60)
    live.get("/")  # write 3: no sweep yet
    assert len(rows(store)) == 3
    live.get("/")  # write 4: sweeps
    assert [row["id"] for row in rows(store)] == [storage_key(cookie_of(live))]


# -- the request lock ----------------------------------------------------------------------


def test_a_lock_whose_holder_died_lapses(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    store = new_store(backend, lock_expire_after=30)
    app = make_app(counter_app, store, lock=True, lock_timeout=0.3)
    app.get("/")
    store.lock_session(cookie_of(app), 1.0, {})  # a request that took the lock and died
    with pytest.raises(SessionLockTimeout):
        app.get("/")
    clock.advance(31)
    assert app.get("/").json == {"xx": 5, "yy": 2}
    assert row_of(store, cookie_of(app))["lock_token"] is None


def test_locking_a_session_without_a_row_does_not_wait(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(backend)
    app = make_app(counter_app, store, lock=True, lock_timeout=5)
    app.set_cookie("session", "A" * 43)  # well formed, never stored
    started = time.monotonic()
    assert app.get("/").json == {"xx": 2, "yy": 1}
    assert time.monotonic() - started < 2


# -- failures --------------------------------------------------------------------------------


CLOSED_PORTS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:1/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:1/test",
}


@pytest.mark.parametrize("url", sorted(CLOSED_PORTS.values()))
def test_an_unreachable_database_raises_session_store_error(url: str, make_app: Callable[..., TestApp]) -> None:
    store = SQLAlchemyStore(url, f"sessions_{RUN_ID}")
    try:
        app = make_app(counter_app, store)
        # WebTest hands the exception to the test; a real server answers 500.
        with pytest.raises(SessionStoreError, match=r"could not create a session .*127\.0\.0\.1:1.*refused"):
            app.get("/")
        app.set_cookie("session", "A" * 43)
        with pytest.raises(SessionStoreError, match="could not load a session"):
            app.get("/")
    finally:
        store.close()


def test_an_unopenable_sqlite_file_raises_session_store_error(tmp_path: Path, make_app: Callable[..., TestApp]) -> None:
    store = SQLAlchemyStore(f"sqlite:///{tmp_path / 'missing-directory' / 'sessions.sqlite3'}")
    app = make_app(counter_app, store)
    with pytest.raises(SessionStoreError, match="unable to open database file"):
        app.get("/")
    store.close()


# -- engines and tables ----------------------------------------------------------------------


def test_an_in_memory_engine_with_a_database_per_thread_is_refused() -> None:
    with pytest.raises(ValueError, match="every thread its own"):
        SQLAlchemyStore(sa.create_engine("sqlite://"))


def test_a_given_engine_and_metadata_are_used(make_app: Callable[..., TestApp]) -> None:
    engine = sa.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    metadata = sa.MetaData()
    store = SQLAlchemyStore(engine, "app_sessions", metadata=metadata)
    assert metadata.tables["app_sessions"] is store.table is session_table(metadata, "app_sessions")
    make_app(counter_app, store).get("/")
    assert sa.inspect(engine).has_table("app_sessions")
    store.close()  # not the store's engine: still usable
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(store.table)).scalar_one() == 1


def test_the_table_is_created_only_when_asked(tmp_path: Path, make_app: Callable[..., TestApp]) -> None:
    store = SQLAlchemyStore(f"sqlite:///{tmp_path / 'sessions.sqlite3'}", create_table=False)
    with pytest.raises(SessionStoreError, match="no such table"):
        make_app(counter_app, store).get("/")
    assert not sa.inspect(store.engine).has_table("sessions")
    store.close()


def test_sqlite_files_use_wal_and_wait_for_other_writers(tmp_path: Path, make_app: Callable[..., TestApp]) -> None:
    store = SQLAlchemyStore(f"sqlite:///{tmp_path / 'sessions.sqlite3'}")
    make_app(counter_app, store).get("/")
    with store.engine.connect() as connection:
        pragma = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout")
        }
    assert pragma == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 2000}  # 1 is NORMAL; the timeout
    store.close()


def test_postgresql_commits_without_waiting_for_the_disk_when_asked(
    new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    # The README's line for PostgreSQL: the setting reaches the store's connections.
    store = new_store("postgresql", engine_options={"connect_args": {"options": "-c synchronous_commit=off"}})
    app = make_app(counter_app, store)
    app.get("/")
    assert app.get("/").json == {"xx": 5, "yy": 2}
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"


# -- several processes: gunicorn ----------------------------------------------------------------


@pytest.fixture
def gunicorn_sqlite(tmp_path: Path) -> Iterator[Address]:
    """tests/served_app.py under gunicorn, 2 sync workers on 127.0.0.1, sharing one SQLite file."""
    environment = {"WSGISESSION_SERVED_STORE": f"sqlite:///{tmp_path / 'sessions.sqlite3'}"}
    with gunicorn(
        "tests.served_app:application", "--workers", "2", "--worker-class", "sync", env=environment, startup_timeout=20
    ) as address:
        yield address


class _Blocker:
    """A connection that sent half a request: the sync worker that accepted it waits on it.

    While it waits, every other request goes to the other worker; ``finish()``
    sends the rest and returns the pid of the worker that held it.
    """

    def __init__(self, address: Address) -> None:
        self.socket = socket.create_connection(address, timeout=20)
        self.socket.sendall(b"GET /pid HTTP/1.0\r\nHost: 127.0.0.1\r\n")

    def finish(self) -> int:
        self.socket.sendall(b"\r\n")
        response = b""
        while chunk := self.socket.recv(65536):
            response += chunk
        self.socket.close()
        return int(json.loads(response.split(b"\r\n\r\n", 1)[1]))


def test_gunicorn_workers_share_sessions_in_one_sqlite_file(gunicorn_sqlite: Address) -> None:
    # Sync workers close every connection: each request is a new one, accepted by whichever worker is free.
    browser = Browser(gunicorn_sqlite, timeout=20)
    served_by = []
    held = _Blocker(gunicorn_sqlite)
    for number in range(1, 101):
        answer = browser.get_json("/counter")
        assert (answer["xx"], answer["yy"]) == (3 * number - 1, number)
        served_by.append(answer["pid"])
        # The worker that just answered takes the next half request; the one
        # released now serves the next request: the workers take turns.
        next_held = _Blocker(gunicorn_sqlite)
        assert held.finish() != answer["pid"]
        held = next_held
    held.finish()
    assert len(set(served_by)) == 2
    # Concurrent requests on one session, from both processes.
    keys = [f"k{index}" for index in range(48)]

    def set_key(key: str) -> None:
        other = Browser(gunicorn_sqlite, browser.cookies, timeout=20)
        other.get_json("/set/" + key)
        other.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(set_key, keys))
    assert set(browser.get_json("/read")) == {"xx", "yy", *keys}
    browser.close()
