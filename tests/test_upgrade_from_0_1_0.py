"""Sessions written by wsgisession 0.1.0 keep loading: nobody is logged out by upgrading.

The cookies, the row and the hash below were written by 0.1.0 itself (a
session with ``user``, ``cart`` holding a tuple, and the flash value
``notice``, at Unix time 1790000000).  Each is read through a real request,
then changed, cleared and emptied with the current code.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Set, Tuple

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from webtest import TestApp

from wsgisession import SessionMiddleware, SessionStoreError, get_session
from wsgisession.store import Store, storage_key
from wsgisession.stores.cookie import CookieStore
from wsgisession.stores.redis import RedisStore
from wsgisession.stores.sqlalchemy import SQLAlchemyStore
from wsgisession.testing import FakeClock

from .support import MYSQL_URL, POSTGRES_URL, REDIS_URL, RUN_ID, browser, json_app, require_service

WRITTEN_AT = 1_790_000_000.0
SECRET = "a 0.1.0 secret key of at least thirty-two bytes"
AES_KEY = bytes(range(32))

SIGNED_COOKIE = (
    "jWyJ1QUlBeWxSMHBaYVN2eXB1V1NNMmxXMzFpd3dPSjlYX1hpV0tUeTFlQlNBIiwxNzkwMDAwMDAwLjAsMTc5MDAwMDAwMC4wLHsidXNlciI6"
    "ImFubiIsImNhcnQiOlsidGVhIix7IiR0IjoidHVwbGUiLCIkdiI6WyJtdWciLDJdfV0sIm5vdGljZSI6IndlbGNvbWUgYmFjayJ9LFsibm90aWNl"
    "Il1d.Wsn9EXDxJCSr6WV_fnVjCosxJknl0ApSvnuZvfhr2_8"
)
ENCRYPTED_COOKIE = (
    "eFwwb5sz9nbl-jKCPbM_9ygO9SGmtG5_zi1HDmEX9BzKmUp-Lgcdy74ThUOYbU5OdOAq9b2BfezLgKhH3rhxy3hRFH28ENs0SjEO7EUrbO9xRhpO"
    "V4dIiFypcOlZr9GtU9EDTPB6kCdgeu18P-jmQ-PdoRISnXw86_pgXX7FnRidIyRfOzl8bz5k6hb0o2L30G6fLCmnspNiUUIuLt9S2mA7T0NTB6HR"
    "D1YTlPk9A8C6Ni0U9KxrTv9fzofHp9gltMB9Bx2s.qednF_X7XzHcCQWY1SpIHvN11B4HxhtvHtPjNtKreVg"
)

SQL_SESSION_ID = "4mdgJgHa7ietG_lhQYEYj68xsMEonGrE79ERS4OApEU"
SQL_ROW = {
    "id": "38e74e9599d01710819e093b6d60c688eb98955507a2ae93e35547e51c663b87",
    "data": '{"data":{"user":"ann","cart":["tea",{"$t":"tuple","$v":["mug",2]}],"notice":"welcome back"},"flash":["notice"]}',
    "created_at": 1790000000.0,
    "refreshed_at": 1790000000.0,
    "expires_at": 1791209600.0,
    "updated_at": 1790000000.0,
    "version": 1,
    "lock_token": None,
    "lock_expires": None,
}

REDIS_SESSION_ID = "kBN2YrbmGarBnmvtzIZU2uMBGB_DkcnByQenLwlA85Q"
REDIS_HASH = {
    "m:created": "1790000000.0",
    "m:refreshed": "1790000000.0",
    "m:expires": "1791209600.0",
    "d:user": '"ann"',
    "d:cart": '["tea",{"$t":"tuple","$v":["mug",2]}]',
    "f:notice": '"welcome back"',
}

_numbers = itertools.count()


def app_on(store: Store, clock: FakeClock) -> TestApp:
    """An app whose paths read, change, clear and empty the session."""

    def handler(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
        session = get_session(environ)
        path = environ["PATH_INFO"]
        if path == "/add":
            session["cart"] = [*session["cart"], "spoon"]
        elif path == "/clear":
            session.clear()
            session["user"] = "bob"
        elif path == "/empty":
            session.pop("user")
        body = repr({key: session[key] if key != "notice" else session.get("notice") for key in list(session)})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body.encode()]

    return browser(SessionMiddleware(handler, store, clock=clock))


def check_upgrade(app: TestApp, cookie: str) -> None:
    app.set_cookie("session", cookie)
    first = app.get("/")
    assert first.text == repr({"user": "ann", "cart": ["tea", ("mug", 2)], "notice": "welcome back"})
    assert app.get("/").text == repr({"user": "ann", "cart": ["tea", ("mug", 2)]})  # the flash value showed once
    assert app.get("/add").text == repr({"user": "ann", "cart": ["tea", ("mug", 2), "spoon"]})
    assert app.get("/clear").text == repr({"user": "bob"})
    response = app.get("/empty")
    assert response.text == "{}"
    assert "Max-Age=0" in response.headers["Set-Cookie"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(WRITTEN_AT + 3600)


@pytest.mark.parametrize("cookie, encryption_key", [(SIGNED_COOKIE, None), (ENCRYPTED_COOKIE, AES_KEY)])
def test_cookies_written_by_0_1_0_keep_loading(cookie: str, encryption_key: Any, clock: FakeClock) -> None:
    pytest.importorskip("cryptography")
    store = CookieStore(SECRET, encryption_key=encryption_key)
    check_upgrade(app_on(store, clock), cookie)


def table_of_0_1_0(metadata: sa.MetaData, name: str) -> sa.Table:
    """The sessions table as 0.1.0 created it: no owner column."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("data", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("refreshed_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=True, index=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("lock_token", sa.String(32), nullable=True),
        sa.Column("lock_expires", sa.Double(), nullable=True),
    )


@pytest.fixture(params=["sqlite-file", "postgresql", "mariadb"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite-file":
        return f"sqlite:///{tmp_path / 'old.sqlite3'}"
    if request.param == "postgresql":
        return require_service("PostgreSQL", POSTGRES_URL)
    return require_service("MariaDB", MYSQL_URL)


@pytest.fixture
def old_table(sql_url: str) -> Iterator[str]:
    """The name of a table created by 0.1.0, holding the session it wrote; dropped afterwards."""
    name = f"upgrade_{RUN_ID}_{next(_numbers)}"
    engine = sa.create_engine(sql_url)
    table = table_of_0_1_0(sa.MetaData(), name)
    try:
        table.create(engine)
        with engine.begin() as connection:
            connection.execute(sa.insert(table).values(SQL_ROW))
        yield name
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()


def columns_and_indexes(store: SQLAlchemyStore) -> Tuple[Set[str], Set[str]]:
    inspector = sa.inspect(store.engine)
    columns = {column["name"] for column in inspector.get_columns(store.table.name)}
    indexed = {",".join(index["column_names"]) for index in inspector.get_indexes(store.table.name)}
    return columns, indexed


def test_sql_rows_written_by_0_1_0_keep_loading(sql_url: str, old_table: str, clock: FakeClock) -> None:
    store = SQLAlchemyStore(sql_url, old_table, clock=clock)
    assert storage_key(SQL_SESSION_ID) == SQL_ROW["id"]
    check_upgrade(app_on(store, clock), SQL_SESSION_ID)
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(store.table)).scalar() == 0
    store.close()


def owner_app(store: Store, clock: FakeClock) -> TestApp:
    """``/login`` makes ann the owner; every path answers the owner and the user."""

    def handler(session: Any, environ: Dict[str, Any]) -> Any:
        if environ["PATH_INFO"] == "/login":
            session.owner = "ann"
            session.owner_details = {"agent": "laptop"}
        return [session.owner, session.get("user")]

    return browser(SessionMiddleware(json_app(handler), store, clock=clock))


def test_a_table_of_0_1_0_gains_the_owner_column_and_its_index_on_first_use(
    sql_url: str, old_table: str, clock: FakeClock
) -> None:
    store = SQLAlchemyStore(sql_url, old_table, clock=clock)
    app = owner_app(store, clock)
    app.set_cookie("session", SQL_SESSION_ID)
    assert app.get("/").json == [None, "ann"]  # the session of 0.1.0 loads
    assert "owner" in columns_and_indexes(store)[0] and "owner" in columns_and_indexes(store)[1]
    assert app.get("/login").json == ["ann", "ann"]
    (info,) = store.sessions_of("ann")
    assert info.details == {"agent": "laptop"}
    assert store.end_sessions("ann") == 1
    assert app.get("/").json == [None, None]
    store.close()


@pytest.mark.parametrize("racing_statement", ["ALTER TABLE", "CREATE INDEX"])
def test_two_processes_upgrading_a_table_at_once_both_succeed(
    sql_url: str, old_table: str, clock: FakeClock, racing_statement: str
) -> None:
    # Just before one store sends its schema change, the other makes the same
    # change: the first one's statement fails, and the store goes on.
    first = SQLAlchemyStore(sql_url, old_table, clock=clock)
    second = SQLAlchemyStore(sql_url, old_table, clock=clock)
    raced: List[str] = []

    def race(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(racing_statement) and not raced:
            raced.append(statement)
            assert second.cleanup() == 0  # its first use adds what is missing

    sa.event.listen(first.engine, "before_cursor_execute", race)
    app = owner_app(first, clock)
    assert app.get("/login").json == ["ann", None]
    assert raced and raced[0].startswith(racing_statement)
    assert [len(store.sessions_of("ann")) for store in (first, second)] == [1, 1]
    columns, indexed = columns_and_indexes(first)
    assert "owner" in columns and "owner" in indexed
    first.close()
    second.close()


def test_without_create_table_a_table_of_0_1_0_serves_sessions_without_owners(
    sql_url: str, old_table: str, clock: FakeClock
) -> None:
    store = SQLAlchemyStore(sql_url, old_table, clock=clock, create_table=False)
    check_upgrade(app_on(store, clock), SQL_SESSION_ID)
    app = owner_app(store, clock)
    assert app.get("/").json == [None, None]
    with pytest.raises(SessionStoreError, match="has no 'owner' column") as refused:
        app.get("/login")
    with pytest.raises(SessionStoreError, match="has no 'owner' column"):
        store.sessions_of("ann")
    assert "owner" not in columns_and_indexes(store)[0]  # not changed without create_table
    # The statements the error names are the ones to run.
    statements = str(refused.value).split("add it with: ")[1].split("; or let the store")[0].split("; ")
    assert [statement.split()[:2] for statement in statements] == [["ALTER", "TABLE"], ["CREATE", "INDEX"]]
    with store.engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    store.close()
    upgraded = SQLAlchemyStore(sql_url, old_table, clock=clock, create_table=False)
    assert owner_app(upgraded, clock).get("/login").json == ["ann", None]
    assert len(upgraded.sessions_of("ann")) == 1
    upgraded.close()


def test_redis_hashes_written_by_0_1_0_keep_loading(clock: FakeClock) -> None:
    url = require_service("Redis", REDIS_URL)
    client = redis.Redis.from_url(url)
    store = RedisStore(client, prefix=f"wsgisession-upgrade-{RUN_ID}:", clock=clock)
    key = store.hash_key(REDIS_SESSION_ID)
    try:
        client.hset(key, mapping=REDIS_HASH)
        client.expire(key, 3600)
        check_upgrade(app_on(store, clock), REDIS_SESSION_ID)
        assert client.exists(key) == 0
    finally:
        client.delete(key)
        client.close()
