"""Sessions written by wsgisession 0.1.0 keep loading: nobody is logged out by upgrading.

The cookies, the row and the hash below were written by 0.1.0 itself (a
session with ``user``, ``cart`` holding a tuple, and the flash value
``notice``, at Unix time 1790000000).  Each is read through a real request,
then changed, cleared and emptied with the current code.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import pytest
import redis
import sqlalchemy as sa
from webtest import TestApp

from wsgisession import SessionMiddleware, get_session
from wsgisession.store import Store, storage_key
from wsgisession.stores.cookie import CookieStore
from wsgisession.stores.redis import RedisStore
from wsgisession.stores.sqlalchemy import SQLAlchemyStore
from wsgisession.testing import FakeClock

from .support import MYSQL_URL, POSTGRES_URL, REDIS_URL, RUN_ID, browser, require_service

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


@pytest.fixture(params=["sqlite-file", "postgresql", "mariadb"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[SQLAlchemyStore]:
    if request.param == "sqlite-file":
        url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    elif request.param == "postgresql":
        url = require_service("PostgreSQL", POSTGRES_URL)
    else:
        url = require_service("MariaDB", MYSQL_URL)
    store = SQLAlchemyStore(url, f"upgrade_{RUN_ID}_{next(_numbers)}", clock=clock)
    try:
        yield store
    finally:
        store.table.drop(store.engine, checkfirst=True)
        store.close()


def test_sql_rows_written_by_0_1_0_keep_loading(sql_store: SQLAlchemyStore, clock: FakeClock) -> None:
    sql_store.table.create(sql_store.engine, checkfirst=True)
    with sql_store.engine.begin() as connection:
        connection.execute(sa.insert(sql_store.table).values(SQL_ROW))
    assert storage_key(SQL_SESSION_ID) == SQL_ROW["id"]
    check_upgrade(app_on(sql_store, clock), SQL_SESSION_ID)
    with sql_store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(sql_store.table)).scalar() == 0


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
