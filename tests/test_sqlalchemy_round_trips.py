"""SQLAlchemyStore: what each request sends to the database, and what happens when a pooled connection died.

Statements are counted with SQLAlchemy's ``before_cursor_execute`` event,
which sees everything the store runs: so does a user's ``echo`` or tracing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
import sqlalchemy as sa
from webtest import TestApp

from wsgisession import SessionStoreError
from wsgisession.serialization import loads
from wsgisession.store import ChangeOutcome, SessionChanges
from wsgisession.testing import FakeClock

from .store_suite import DAY, cookie_of
from .test_sqlalchemy_store import StoreFactory, row_of, rows, statements_run, stores_made, verbs


@pytest.fixture
def new_store(tmp_path: Path, clock: FakeClock) -> Iterator[StoreFactory]:
    with stores_made(tmp_path, clock) as make:
        yield make


@pytest.fixture(params=["sqlite-file", "postgresql", "mariadb"])
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def visitor_app(make_app: Callable[..., TestApp], store: Any, owner: Optional[str] = None) -> TestApp:
    """``/login`` stores a user (and makes ``owner`` the session's owner), ``/read`` reads one key, ``/visit``
    changes one, ``/flash`` leaves a flash value that ``/notice`` reads, ``/logout`` deletes the session."""

    def handler(session: Any, environ: Dict[str, Any]) -> Any:
        path = environ["PATH_INFO"]
        if path == "/login":
            session.update(user="ann", visits=0)
            if owner is not None:
                session.owner = owner
                session.owner_details = {"agent": "laptop"}
        elif path == "/hand-over":
            session.owner = "bob"
        elif path == "/visit":
            session["visits"] += 1
        elif path == "/logout":
            session.delete()
        elif path == "/flash":
            session.flash("notice", "saved")
        elif path == "/notice":
            return session.get("notice")
        elif path == "/read":
            return session.get("user")
        return "ok"

    return make_app(handler, store, expire_after=DAY)


@pytest.mark.parametrize("owner", [None, "ann"])
def test_each_request_sends_only_the_statements_it_needs(
    database: str, owner: Optional[str], new_store: StoreFactory, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    # A session with an owner costs what one without costs: the owner is a
    # column of the row the request reads and writes anyway.
    store = new_store(database)
    store.cleanup()  # creates the table
    app = visitor_app(make_app, store, owner)
    expected = [
        ("/login", ["INSERT"]),  # a new session: one INSERT
        ("/read", ["SELECT"]),  # a returning visitor's read: one SELECT, no ping
        ("/visit", ["SELECT", "UPDATE"]),  # read and change: the compare-and-swap is the only write
        ("/untouched", []),
        ("/flash", ["SELECT", "UPDATE"]),
        ("/notice", ["SELECT", "SELECT", "UPDATE"]),  # the load, then the swap that takes the value
    ]
    for path, statements in expected:
        with statements_run(store.engine) as run:
            app.get(path)
        assert verbs(run) == statements, (path, run)
    clock.advance(DAY / 2)  # a refresh of the expiry is due: the read writes the new expiry
    with statements_run(store.engine) as run:
        app.get("/read")
    assert verbs(run) == ["SELECT", "UPDATE"]
    assert "SET refreshed_at" in run[1] and "data" not in run[1].split(" WHERE ")[0]
    with statements_run(store.engine) as run:
        app.get("/read")  # refreshed a moment ago: only the read
    assert verbs(run) == ["SELECT"]
    with statements_run(store.engine) as run:
        app.get("/logout")
    assert verbs(run) == ["SELECT", "DELETE"]
    assert rows(store) == []


def test_setting_or_changing_the_owner_rides_the_write_of_the_data(
    database: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(database)
    store.cleanup()  # creates the table
    app = visitor_app(make_app, store, owner="ann")
    with statements_run(store.engine) as run:
        app.get("/login")
    assert verbs(run) == ["INSERT"]
    assert "owner" in run[0]
    with statements_run(store.engine) as run:
        app.get("/visit")
    assert verbs(run) == ["SELECT", "UPDATE"]
    assert "owner" not in run[1].split(" WHERE ")[0]  # an unchanged owner is not written
    with statements_run(store.engine) as run:
        app.get("/hand-over")
    assert verbs(run) == ["SELECT", "UPDATE"]  # the compare-and-swap writes the new owner with the data
    assert "owner" in run[1].split(" WHERE ")[0]
    assert [row["owner"] for row in rows(store)] == ["bob"]


def test_echo_and_every_connection_event_see_the_statements(
    database: str, new_store: StoreFactory, make_app: Callable[..., TestApp], caplog: pytest.LogCaptureFixture
) -> None:
    store = new_store(database, engine_options={"echo": True})
    store.cleanup()  # creates the table
    app = visitor_app(make_app, store)
    executed: List[Any] = []
    sa.event.listen(store.engine, "before_execute", lambda connection, statement, *args: executed.append(statement))
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine.Engine"), statements_run(store.engine) as run:
        app.get("/login")
        app.get("/visit")
    assert verbs(run) == ["INSERT", "SELECT", "UPDATE"]
    assert [type(statement).__name__ for statement in executed] == ["Insert", "Select", "Update"]
    logged = [record.getMessage() for record in caplog.records if record.name == "sqlalchemy.engine.Engine"]
    for statement in run:
        assert any(" ".join(message.split()) == statement for message in logged), statement


def test_mariadb_sends_no_rollback_or_ping_between_statements(
    new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    # The server counts every command its client sends on the connection
    # ("Questions"), whether or not SQLAlchemy's events see it.
    store = new_store("mariadb", engine_options={"pool_size": 1, "max_overflow": 0})
    app = visitor_app(make_app, store)
    app.get("/login")

    def questions() -> int:
        with store.engine.connect() as connection:
            return int(connection.exec_driver_sql("SHOW SESSION STATUS LIKE 'Questions'").one()[1])

    before = questions()
    for _ in range(5):
        app.get("/read")
    app.get("/visit")
    # Five SELECTs, one SELECT and one UPDATE, and the second SHOW itself.
    assert questions() - before == 5 + 2 + 1


# -- connections found dead ------------------------------------------------------------


def _backend_id(connection: sa.Connection) -> int:
    query = "SELECT pg_backend_pid()" if connection.dialect.name == "postgresql" else "SELECT CONNECTION_ID()"
    return int(connection.exec_driver_sql(query).scalar_one())


def _pooled_backends(store: Any, count: int) -> List[int]:
    """Put ``count`` connections in the store's pool and return their server-side ids."""
    connections = [store.engine.connect() for _ in range(count)]
    try:
        return [_backend_id(connection) for connection in connections]
    finally:
        for connection in connections:
            connection.close()


def _kill(store: Any, ids: List[int]) -> None:
    """End these connections from the server side, as a restart or an idle timeout would."""
    admin = sa.create_engine(store.engine.url, poolclass=sa.pool.NullPool)
    kill = "SELECT pg_terminate_backend(:id)" if store.engine.dialect.name == "postgresql" else "KILL :id"
    with admin.begin() as connection:
        for id in ids:
            connection.execute(sa.text(kill), {"id": id})
    admin.dispose()


def test_a_read_on_a_dead_connection_runs_again_on_a_new_one(
    server: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(server, engine_options={"pool_size": 3, "max_overflow": 0})
    app = visitor_app(make_app, store)
    app.get("/login")
    dead = _pooled_backends(store, 3)
    _kill(store, dead)
    with statements_run(store.engine) as run:
        assert app.get("/read").json == "ann"
    assert verbs(run) == ["SELECT", "SELECT"]  # the read that found its connection dead, and its repetition
    for _ in range(3):
        # SQLAlchemy discarded every connection pooled before the dead one was found.
        with statements_run(store.engine) as run:
            assert app.get("/read").json == "ann"
        assert verbs(run) == ["SELECT"]
    assert not set(_pooled_backends(store, 3)) & set(dead)


def test_a_new_session_on_a_dead_connection_is_inserted_once(
    server: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(server, engine_options={"pool_size": 1, "max_overflow": 0})
    store.cleanup()  # creates the table
    app = visitor_app(make_app, store)
    _kill(store, _pooled_backends(store, 1))
    with statements_run(store.engine) as run:
        app.get("/login")
    assert verbs(run) == ["INSERT", "INSERT"]
    assert loads(row_of(store, cookie_of(app))["data"])["data"] == {"user": "ann", "visits": 0}


def test_a_swap_whose_connection_broke_is_not_repeated(
    server: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    # The database may have applied a compare-and-swap before its connection
    # broke; repeating it could apply the change twice.
    store = new_store(server, engine_options={"pool_size": 1, "max_overflow": 0})

    def handler(session: Any, environ: Dict[str, Any]) -> Any:
        if environ["PATH_INFO"] == "/break":
            session.get("visits")  # loaded on the pooled connection ...
            _kill(store, _pooled_backends(store, 1))  # ... which the server then ends
        session["visits"] = session.get("visits", 0) + 1
        return session["visits"]

    app = make_app(handler, store)
    app.get("/")
    broken = r"could not save a session .*(terminat|Lost connection|gone away)"
    with statements_run(store.engine) as run, pytest.raises(SessionStoreError, match=broken):
        app.get("/break")
    assert [verb for verb in verbs(run) if verb != "SELECT"] == ["UPDATE"]  # tried once
    assert app.get("/").json == 2  # the next request gets a new connection; the failed change was not applied


@pytest.mark.parametrize("operation", ["refresh", "delete", "lock", "unlock"])
def test_statements_safe_to_repeat_run_again_on_a_new_connection(
    server: str, operation: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(server, engine_options={"pool_size": 1, "max_overflow": 0})
    app = visitor_app(make_app, store)
    app.get("/login")
    cookie = cookie_of(app)
    record = store.get_session(cookie, {})
    assert record is not None
    held = store.lock_session(cookie, 1.0, {}) if operation == "unlock" else None
    _kill(store, _pooled_backends(store, 1))
    with statements_run(store.engine) as run:
        if operation == "refresh":
            changes = SessionChanges(refreshed=record["refreshed"] + 60, expires=record["expires"], base=record)
            assert store.apply_changes(cookie, changes, {}) is ChangeOutcome.APPLIED
        elif operation == "delete":
            store.delete_session(cookie, {})
        elif operation == "lock":
            store.lock_session(cookie, 1.0, {}).release()
        else:
            assert held is not None
            held.release()
    verb = "DELETE" if operation == "delete" else "UPDATE"
    assert verbs(run)[:2] == [verb, verb]  # the statement that found its connection dead, and its repetition
    if operation == "delete":
        assert rows(store) == []
    else:
        assert row_of(store, cookie)["lock_token"] is None
