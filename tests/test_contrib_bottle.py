"""The Bottle plugin, through real requests: routes that ask for the session get it."""

from __future__ import annotations

import functools
from typing import Any, Callable, List

import pytest
from webtest import TestApp

from wsgisession import SessionError, SessionMiddleware
from wsgisession.stores.memory import MemoryStore
from wsgisession.testing import FakeClock

from .store_suite import cookie_of
from .support import browser

bottle = pytest.importorskip("bottle")
from wsgisession.contrib.bottle import SessionPlugin  # noqa: E402


def make_bottle_app() -> Any:
    app = bottle.Bottle()
    app.install(SessionPlugin())

    @app.get("/count")
    def count(session: Any) -> Any:
        session["n"] = session.get("n", 0) + 1
        return {"n": session["n"]}

    @app.get("/hello/<name>")
    def hello(name: str, session: Any) -> Any:
        session["last"] = name
        return {"hello": name}

    @app.get("/last")
    def last(*, session: Any) -> Any:  # keyword-only works too
        return {"last": session.get("last")}

    @app.get("/static")
    def static() -> Any:
        return {"static": True}

    @app.get("/notice")
    def notice(session: Any) -> Any:
        if "set" in bottle.request.query:
            session.flash("notice", bottle.request.query["set"])
            return {}
        return {"notice": session.get("notice")}

    def logged(callback: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(callback)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return callback(*args, **kwargs)

        return wrapper

    @app.get("/decorated")
    @logged
    def decorated(session: Any) -> Any:
        return {"n": session.get("n")}

    @app.get("/login")
    def login(session: Any) -> Any:
        session.regenerate()
        session["user"] = "ann"
        return {}

    @app.get("/logout")
    def logout(session: Any) -> Any:
        session.delete()
        return {}

    return app


@pytest.fixture
def app(clock: FakeClock) -> TestApp:
    return browser(SessionMiddleware(make_bottle_app(), MemoryStore(clock=clock), clock=clock))


def test_routes_asking_for_the_session_get_it(app: TestApp) -> None:
    assert [app.get("/count").json["n"] for _ in range(3)] == [1, 2, 3]


def test_url_arguments_and_the_session_together(app: TestApp) -> None:
    assert app.get("/hello/ann").json == {"hello": "ann"}
    assert app.get("/last").json == {"last": "ann"}


def test_routes_without_the_parameter_do_not_touch_the_session(app: TestApp) -> None:
    app.get("/count")
    response = app.get("/static")
    assert response.json == {"static": True}
    assert "Vary" not in response.headers and "Set-Cookie" not in response.headers


def test_decorated_callbacks_are_inspected_through_the_decorator(app: TestApp) -> None:
    app.get("/count")
    assert app.get("/decorated").json == {"n": 1}


def test_flash_values_are_read_once(app: TestApp) -> None:
    app.get("/notice?set=saved")
    assert app.get("/notice").json == {"notice": "saved"}
    assert app.get("/notice").json == {"notice": None}


def test_login_and_logout(app: TestApp) -> None:
    app.get("/count")
    anonymous = cookie_of(app)
    app.get("/login")
    assert cookie_of(app) not in ("", anonymous)
    assert "Max-Age=0" in app.get("/logout").headers["Set-Cookie"]
    assert app.get("/count").json == {"n": 1}


def test_the_signature_is_inspected_once_per_route(monkeypatch: pytest.MonkeyPatch, app: TestApp) -> None:
    import inspect

    calls: List[Any] = []
    real_signature = inspect.signature

    def counting_signature(callback: Any) -> Any:
        calls.append(callback)
        return real_signature(callback)

    monkeypatch.setattr(inspect, "signature", counting_signature)
    for _ in range(5):
        app.get("/count")
    assert len(calls) == 1


def test_without_the_middleware_the_error_says_what_to_do() -> None:
    bare = make_bottle_app()
    bare.catchall = False
    with pytest.raises(SessionError, match="SessionMiddleware"):
        TestApp(bare).get("/count")


def test_a_custom_keyword_and_a_second_plugin_for_the_same_keyword() -> None:
    app = bottle.Bottle()
    app.install(SessionPlugin(keyword="web_session"))

    @app.get("/")
    def index(web_session: Any) -> Any:
        return {"n": web_session.setdefault("n", 7)}

    assert browser(SessionMiddleware(app)).get("/").json == {"n": 7}
    with pytest.raises(bottle.PluginError):
        app.install(SessionPlugin(keyword="web_session"))
