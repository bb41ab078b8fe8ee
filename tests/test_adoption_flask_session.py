"""Switching a Flask app from Flask-Session (SQLAlchemy on SQLite, Redis) to wsgisession logs nobody out."""

from __future__ import annotations

import datetime
import json
import logging
import pickle
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
from webtest import TestApp

from wsgisession import SessionMiddleware, SessionStoreError, get_session
from wsgisession.stores.memory import MemoryStore
from wsgisession.testing import FakeClock

from .support import REDIS_URL, RUN_ID, browser, json_app, require_service

flask = pytest.importorskip("flask")
pytest.importorskip("flask_login")
flask_session = pytest.importorskip("flask_session")
flask_sqlalchemy = pytest.importorskip("flask_sqlalchemy")
sa = pytest.importorskip("sqlalchemy")
redis = pytest.importorskip("redis")

from wsgisession.adopters.flask_session import FlaskSessionRedisAdopter, FlaskSessionSQLAlchemyAdopter  # noqa: E402
from wsgisession.contrib.flask import WsgiSession  # noqa: E402
from wsgisession.stores.sqlalchemy import SQLAlchemyStore  # noqa: E402

from .legacy_flask import add_login_routes, is_removal, set_cookies  # noqa: E402

LIFETIME = datetime.timedelta(hours=1)
SECRET = "the app's secret"


class Backend:
    """Where Flask-Session kept the sessions, and the config keys that say so."""

    def config(self) -> Dict[str, Any]:
        raise NotImplementedError

    def prepare(self, app: Any) -> None:
        """Set up what the app needs before Flask-Session or wsgisession."""

    def keys(self) -> List[str]:
        """The keys of the stored Flask-Session records."""
        raise NotImplementedError

    def read(self, key: str) -> bytes:
        raise NotImplementedError

    def write(self, key: str, payload: bytes) -> None:
        """Replace a record's payload, keeping its expiry."""
        raise NotImplementedError


class SQLiteBackend(Backend):
    def __init__(self, path: Path) -> None:
        self.url = f"sqlite:///{path}"
        self.engine = sa.create_engine(self.url)
        self.table = sa.Table(
            "sessions", sa.MetaData(), sa.Column("session_id", sa.String(255)), sa.Column("data", sa.LargeBinary)
        )

    def config(self) -> Dict[str, Any]:
        return {"SESSION_TYPE": "sqlalchemy", "SQLALCHEMY_DATABASE_URI": self.url}

    def prepare(self, app: Any) -> None:
        database = flask_sqlalchemy.SQLAlchemy()
        app.config["SESSION_SQLALCHEMY"] = database
        database.init_app(app)

    def keys(self) -> List[str]:
        with self.engine.connect() as connection:
            return [row[0] for row in connection.execute(sa.select(self.table.c.session_id))]

    def read(self, key: str) -> bytes:
        with self.engine.connect() as connection:
            return bytes(
                connection.execute(sa.select(self.table.c.data).where(self.table.c.session_id == key)).scalar()
            )

    def write(self, key: str, payload: bytes) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.update(self.table).where(self.table.c.session_id == key).values(data=payload))


class RedisBackend(Backend):
    def __init__(self) -> None:
        self.client = redis.Redis.from_url(require_service("Redis", REDIS_URL))
        self.prefix = f"flask-session-{RUN_ID}-{uuid.uuid4().hex[:8]}:"

    def config(self) -> Dict[str, Any]:
        return {"SESSION_TYPE": "redis", "SESSION_REDIS": self.client, "SESSION_KEY_PREFIX": self.prefix}

    def keys(self) -> List[str]:
        return [key.decode() for key in self.client.scan_iter(match=self.prefix + "*")]

    def read(self, key: str) -> bytes:
        return bytes(self.client.get(key))

    def write(self, key: str, payload: bytes) -> None:
        self.client.set(key, payload, keepttl=True)

    def clean_up(self) -> None:
        for key in self.keys():
            self.client.delete(key)
        self.client.close()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: Any, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        sqlite = SQLiteBackend(tmp_path / "app.sqlite3")
        yield sqlite
        sqlite.engine.dispose()
    else:
        on_redis = RedisBackend()
        try:
            yield on_redis
        finally:
            on_redis.clean_up()


def flask_app(backend: Backend, **config: Any) -> Any:
    app = flask.Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY=SECRET, PERMANENT_SESSION_LIFETIME=LIFETIME, **backend.config())
    app.config.update(config)
    backend.prepare(app)
    return app


def logged_in_on_flask_session(backend: Backend, permanent: bool = True, **config: Any) -> TestApp:
    app = flask_app(backend, **config)
    flask_session.Session(app)
    client = browser(add_login_routes(app))
    keys = set(backend.keys())
    client.post(f"/login?permanent={int(permanent)}")
    assert len(set(backend.keys()) - keys) == 1
    return client


def switched_app(backend: Backend, clock: FakeClock, store: Any = None, **config: Any) -> Any:
    config.setdefault("WSGISESSION_ADOPT_FLASK_SESSION", True)
    config.setdefault("WSGISESSION_STORE", store if store is not None else MemoryStore(clock=clock))
    app = flask_app(backend, **config)
    WsgiSession(app, clock=clock)
    return add_login_routes(app)


@pytest.mark.parametrize("permanent", [True, False])
def test_a_user_logged_in_on_flask_session_is_still_logged_in_after_the_switch(
    backend: Backend, clock: FakeClock, permanent: bool
) -> None:
    client = logged_in_on_flask_session(backend, permanent)
    old_id = client.cookies["session"]
    store = MemoryStore(clock=clock)
    client.app = switched_app(backend, clock, store)

    response = client.get("/me")
    assert response.json == {"user": "ann", "permanent": permanent}
    [(name, header)] = set_cookies(response)  # ours replaces the cookie of the same name
    assert name == "session" and not is_removal(header) and ("Max-Age=" in header) is permanent
    assert client.cookies["session"] != old_id
    assert backend.keys() == []  # the old record is gone: adopted once
    assert len(store) == 1

    assert client.get("/me").json["user"] == "ann"
    assert client.get("/cart").json == {"cart": ["tea", 2]}
    assert client.get("/messages").json == {"messages": [["info", "welcome back"]]}
    assert client.get("/messages").json == {"messages": []}


def test_signed_ids_are_verified(backend: Backend, clock: FakeClock) -> None:
    with pytest.warns(DeprecationWarning):
        client = logged_in_on_flask_session(backend, SESSION_USE_SIGNER=True)
    signed = client.cookies["session"]
    client.app = switched_app(backend, clock, SESSION_USE_SIGNER=True)
    client.set_cookie("session", signed[:-2] + ("AA" if signed[-2:] != "AA" else "BB"))
    assert client.get("/me").json["user"] is None
    assert len(backend.keys()) == 1
    client.set_cookie("session", signed)
    assert client.get("/me").json["user"] == "ann"
    assert backend.keys() == []


def test_a_cookie_naming_no_record_is_ignored(backend: Backend, clock: FakeClock) -> None:
    client = logged_in_on_flask_session(backend)
    client.app = switched_app(backend, clock)
    for value in ["an-id-never-stored", "not/an id", "x" * 300]:
        client.set_cookie("session", value)
        response = client.get("/me")
        assert response.status_int == 200 and response.json["user"] is None
    assert len(backend.keys()) == 1


def test_a_pickled_record_is_refused_unless_the_app_opts_in(
    backend: Backend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # What Flask-Session before 0.7 stored.
    client = logged_in_on_flask_session(backend)
    old_id = client.cookies["session"]
    [key] = backend.keys()
    backend.write(key, pickle.dumps({"_user_id": "ann", "_fresh": True, "_permanent": True}))
    client.app = switched_app(backend, clock)
    with caplog.at_level(logging.WARNING, logger="wsgisession"):
        assert client.get("/me").json["user"] is None
    assert any("allow_pickle" in record.getMessage() for record in caplog.records)
    assert backend.keys() == [key]  # left for an app that opts in

    # (The refused cookie was removed as any unreadable one of ours: a browser
    # that kept it, or comes back after the app opted in, is adopted.)
    client.set_cookie("session", old_id)
    client.app = switched_app(backend, clock, WSGISESSION_ADOPT_PICKLE=True)
    assert client.get("/me").json == {"user": "ann", "permanent": True}
    assert backend.keys() == []


def test_a_json_record_is_read(backend: Backend, clock: FakeClock) -> None:
    client = logged_in_on_flask_session(backend, SESSION_SERIALIZATION_FORMAT="json")
    [key] = backend.keys()
    assert json.loads(backend.read(key))["_user_id"] == "ann"
    client.app = switched_app(backend, clock)
    assert client.get("/me").json["user"] == "ann"


def test_two_parallel_first_requests_adopt_the_record_once(backend: Backend, clock: FakeClock) -> None:
    old_id = logged_in_on_flask_session(backend).cookies["session"]
    store = MemoryStore(clock=clock)
    app = switched_app(backend, clock, store)
    both_read_it = threading.Barrier(2, timeout=30)

    @app.get("/together")
    def together() -> Any:
        user = flask.session.get("_user_id")  # both requests adopt the record here
        both_read_it.wait()
        return {"user": user}

    responses: List[Any] = []

    def first_request() -> None:
        responses.append(browser(app).get("/together", headers={"Cookie": f"session={old_id}"}))

    threads = [threading.Thread(target=first_request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [response.json["user"] for response in responses] == ["ann", "ann"]
    cookies = sorted((set_cookies(response) for response in responses), key=len)
    assert cookies[0] == []  # the request that lost the race saves no session
    [(name, header)] = cookies[1]
    assert name == "session" and not is_removal(header)
    assert len(store) == 1 and backend.keys() == []


def test_a_plain_wsgi_app_adopts_flask_session_records(backend: Backend, clock: FakeClock) -> None:
    client = logged_in_on_flask_session(backend)
    if isinstance(backend, RedisBackend):
        adopter: Any = FlaskSessionRedisAdopter(backend.client, key_prefix=backend.prefix)
    else:
        assert isinstance(backend, SQLiteBackend)
        adopter = FlaskSessionSQLAlchemyAdopter(backend.engine, clock=clock)

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        body = json.dumps({"user": get_session(environ).get("_user_id")}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    client.app = SessionMiddleware(app, MemoryStore(clock=clock), adopter=adopter, clock=clock)
    assert client.get("/").json == {"user": "ann"}
    assert backend.keys() == []


def test_an_expired_sql_record_is_not_adopted(tmp_path: Path, clock: FakeClock) -> None:
    backend = SQLiteBackend(tmp_path / "app.sqlite3")
    client = logged_in_on_flask_session(backend)
    client.app = switched_app(backend, clock)
    clock.advance(LIFETIME.total_seconds() - 100)
    assert client.get("/me").json["user"] == "ann"

    client = logged_in_on_flask_session(backend)
    flask_cookie = client.cookies["session"]
    client.app = switched_app(backend, clock)
    clock.advance(200)
    client.set_cookie("session", flask_cookie)
    assert client.get("/me").json["user"] is None


def test_wsgisession_may_not_share_flask_sessions_table(tmp_path: Path, clock: FakeClock) -> None:
    backend = SQLiteBackend(tmp_path / "app.sqlite3")
    client = logged_in_on_flask_session(backend)
    logged_in_on_flask_session(backend)  # another user, who has not come back yet
    store = SQLAlchemyStore(backend.url, clock=clock)  # the default table name: "sessions" too
    with pytest.raises(ValueError, match="table of its own"):
        switched_app(backend, clock, store)
    store.engine.dispose()

    # With a table of its own in the same database, both live side by side.
    ours = SQLAlchemyStore(backend.url, table_name="wsgisession_sessions", clock=clock)
    client.app = switched_app(backend, clock, ours)
    assert client.get("/me").json["user"] == "ann"
    assert client.get("/cart").json == {"cart": ["tea", 2]}
    assert len(backend.keys()) == 1  # the other user's session waits

    # Pointed at wsgisession's table by hand, the adopter says what it found.
    adopter = FlaskSessionSQLAlchemyAdopter(backend.engine, "wsgisession_sessions", clock=clock)
    with pytest.raises(SessionStoreError, match="not Flask-Session's.*wsgisession's own table"):
        adopter.check_table()
    client = browser(SessionMiddleware(json_app(lambda session, environ: session.get("x")), ours, adopter=adopter))
    client.set_cookie("session", "some-id")
    with pytest.raises(SessionStoreError, match="not Flask-Session's"):
        client.get("/")
    ours.engine.dispose()


@pytest.mark.parametrize(
    "config, error",
    [
        ({"SESSION_TYPE": "filesystem"}, "redis and sqlalchemy backends"),
        ({"SESSION_TYPE": "redis"}, "needs SESSION_REDIS"),
        ({"SESSION_TYPE": "sqlalchemy"}, "needs SESSION_SQLALCHEMY"),
        (
            {"SESSION_TYPE": "redis", "SESSION_REDIS": object(), "SESSION_USE_SIGNER": True, "SECRET_KEY": None},
            "secret",
        ),
    ],
)
def test_settings_that_can_not_work_fail_when_the_app_is_set_up(
    clock: FakeClock, config: Dict[str, Any], error: str
) -> None:
    app = flask.Flask(__name__)
    app.config.update(
        SECRET_KEY=SECRET, WSGISESSION_STORE=MemoryStore(clock=clock), WSGISESSION_ADOPT_FLASK_SESSION=True
    )
    app.config.update(config)
    with pytest.raises(ValueError, match=error):
        WsgiSession(app, clock=clock)
