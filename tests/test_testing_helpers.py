"""wsgisession.testing's WebTest helpers, for every store and every way an app is wrapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from webtest import TestApp

from wsgisession import SessionError, SessionMiddleware
from wsgisession.store import Store
from wsgisession.stores.memory import MemoryStore
from wsgisession.testing import FakeClock, find_middleware, session_of, session_transaction

from .store_suite import cookie_of
from .support import RUN_ID, browser, json_app


def read_back(session: Any, environ: dict) -> Any:
    if environ["PATH_INFO"] == "/flash":
        session.flash("notice", "once")
        return None
    if environ["PATH_INFO"] == "/set":
        session["user"] = "ann"
        session["cart"] = ["apple"]
        return None
    return {key: session[key] for key in list(session)}


@pytest.fixture(params=["memory", "cookie", "sqlite"])
def store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore(clock=clock)
    elif request.param == "cookie":
        cookie = pytest.importorskip("wsgisession.stores.cookie")
        yield cookie.CookieStore("k" * 32)
    else:
        sqlalchemy = pytest.importorskip("wsgisession.stores.sqlalchemy")
        sqlite_store = sqlalchemy.SQLAlchemyStore(f"sqlite:///{tmp_path}/s.sqlite3", f"helpers_{RUN_ID}", clock=clock)
        yield sqlite_store
        sqlite_store.close()


@pytest.fixture
def make_client(store: Store, clock: FakeClock) -> Callable[..., TestApp]:
    def make(host: bool = True, **options: Any) -> TestApp:
        app = SessionMiddleware(json_app(read_back), store, clock=clock, **options)
        return browser(app) if host else TestApp(app)

    return make


@pytest.mark.parametrize("host", [True, False], ids=["with-host", "webtest-default-host"])
def test_session_of_reads_what_the_app_stored(make_client: Callable[..., TestApp], host: bool) -> None:
    client = make_client(host=host)
    assert session_of(client) == {}
    client.get("/set")
    assert session_of(client) == {"user": "ann", "cart": ["apple"]}


def test_session_of_lists_flash_values_without_consuming_them(make_client: Callable[..., TestApp]) -> None:
    client = make_client()
    client.get("/flash")
    assert session_of(client) == {"notice": "once"}
    assert session_of(client) == {"notice": "once"}
    assert client.get("/").json == {"notice": "once"}
    assert session_of(client) == {}


@pytest.mark.parametrize("host", [True, False], ids=["with-host", "webtest-default-host"])
def test_session_transaction_sets_values_before_a_request(make_client: Callable[..., TestApp], host: bool) -> None:
    client = make_client(host=host)
    with session_transaction(client) as session:
        assert session == {}
        session["user"] = "bob"
        session["roles"] = ("admin",)
    assert len(client.cookies) == 1
    assert client.get("/").json == {"user": "bob", "roles": ["admin"]}
    with session_transaction(client) as session:
        assert session == {"user": "bob", "roles": ("admin",)}
        del session["roles"]
        session["user"] = "carol"
    assert len(client.cookies) == 1  # the new cookie replaced the old one
    assert client.get("/").json == {"user": "carol"}


def test_session_transaction_changes_an_existing_session_in_place(make_client: Callable[..., TestApp]) -> None:
    client = make_client()
    client.get("/set")
    client.get("/flash")
    with session_transaction(client) as session:
        session["cart"].append("pear")
    assert client.get("/").json == {"user": "ann", "cart": ["apple", "pear"], "notice": "once"}


def test_a_transaction_that_changes_nothing_leaves_the_cookie_alone(make_client: Callable[..., TestApp]) -> None:
    client = make_client()
    client.get("/set")
    before = cookie_of(client)
    with session_transaction(client) as session:
        session["user"] = "ann"  # the same value
    assert cookie_of(client) == before


def test_a_transaction_that_raises_saves_nothing(make_client: Callable[..., TestApp]) -> None:
    client = make_client()
    client.get("/set")
    with pytest.raises(KeyError), session_transaction(client) as session:
        session["user"] = "mallory"
        raise KeyError("abandon")
    assert session_of(client)["user"] == "ann"


def test_the_helpers_follow_the_cookie_settings(make_client: Callable[..., TestApp]) -> None:
    client = make_client(cookie_name="sid", cookie_options={"path": "/app"})
    with session_transaction(client) as session:
        session["user"] = "dan"
    assert list(client.cookies) == ["sid"]
    assert client.get("/app/page").json == {"user": "dan"}
    assert session_of(client) == {"user": "dan"}


def test_the_helpers_honour_expiry(make_client: Callable[..., TestApp], clock: FakeClock) -> None:
    client = make_client(expire_after=60)
    client.get("/set")
    clock.advance(61)
    assert session_of(client) == {}


def test_find_middleware_looks_through_wrappers() -> None:
    middleware = SessionMiddleware(json_app(read_back))

    class ProxyLike:
        def __init__(self, app: Any) -> None:
            self.app = app

        def __call__(self, environ: dict, start_response: Any) -> Any:
            return self.app(environ, start_response)

    client = browser(ProxyLike(ProxyLike(middleware)))
    assert find_middleware(client) is middleware
    client.get("/set")
    assert session_of(client) == {"user": "ann", "cart": ["apple"]}


def test_without_a_middleware_pass_one_explicitly() -> None:
    middleware = SessionMiddleware(json_app(read_back))

    def opaque(environ: dict, start_response: Any) -> Any:
        return middleware(environ, start_response)

    client = browser(opaque)
    with pytest.raises(SessionError, match="middleware="):
        session_of(client)
    client.get("/set")
    assert session_of(client, middleware=middleware)["user"] == "ann"
    with session_transaction(client, middleware=middleware) as session:
        session["user"] = "eve"
    assert client.get("/").json["user"] == "eve"


def test_the_helpers_with_flask(clock: FakeClock) -> None:
    flask = pytest.importorskip("flask")
    from wsgisession.contrib.flask import WsgiSession

    app = flask.Flask(__name__)
    WsgiSession(app, clock=clock, cookie_options={"path": "/"})
    app.add_url_rule("/", "index", lambda: {"user": flask.session.get("user")})
    client = TestApp(app)
    with session_transaction(client) as session:
        session["user"] = "fay"
    assert client.get("/").json == {"user": "fay"}
    assert session_of(client) == {"user": "fay"}


def test_the_helpers_with_pyramid_includeme() -> None:
    pytest.importorskip("pyramid")
    from pyramid.config import Configurator

    with Configurator(settings={"wsgisession.cookie_name": "pyr"}) as config:
        config.include("wsgisession.contrib.pyramid")
        config.add_route("index", "/")
        config.add_view(lambda request: {"user": request.session.get("user")}, route_name="index", renderer="json")
        client = browser(config.make_wsgi_app())
    with session_transaction(client) as session:
        session["user"] = "gil"
    assert list(client.cookies) == ["pyr"]
    assert client.get("/").json == {"user": "gil"}


def test_a_value_the_session_can_not_store_is_refused_by_name(make_client: Callable[..., TestApp]) -> None:
    client = make_client()
    with pytest.raises(TypeError, match="'when'"), session_transaction(client) as session:
        session["when"] = object()
