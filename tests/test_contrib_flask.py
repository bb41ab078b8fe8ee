"""The Flask integration, through real requests: flask.session, flash(), config keys, login and logout."""

from __future__ import annotations

import datetime
from typing import Any, Callable

import pytest
from webtest import TestApp

from wsgisession import Session, SessionMiddleware
from wsgisession.stores.memory import MemoryStore
from wsgisession.testing import FakeClock, session_of

from .store_suite import cookie_of
from .support import browser

flask = pytest.importorskip("flask")
from wsgisession.contrib.flask import FlaskSession, WsgiSession, WsgiSessionInterface  # noqa: E402


def make_flask_app(clock: FakeClock, store: Any = None, **config: Any) -> Any:
    app = flask.Flask(__name__)
    app.config.update(TESTING=True, **config)
    WsgiSession(app, store=store, clock=clock)
    session = flask.session

    @app.get("/set")
    def set_values() -> Any:
        session.update(flask.request.args.to_dict())
        return "ok"

    @app.get("/get")
    def get_values() -> Any:
        return dict(session.items())

    @app.get("/nothing")
    def nothing() -> Any:
        return "untouched"

    @app.get("/flash")
    def add_flash() -> Any:
        flask.flash(flask.request.args["message"], flask.request.args.get("category", "message"))
        return "flashed"

    @app.get("/messages")
    def messages() -> Any:
        shown = flask.get_flashed_messages(with_categories=True)
        return {"messages": shown, "types": [type(item).__name__ for item in shown]}

    @app.get("/cart")
    def add_to_cart() -> Any:
        before = session.modified
        session.setdefault("cart", [])
        session["cart"].append(flask.request.args["item"])  # in place
        if "mark" in flask.request.args:
            session.modified = True
        return {"modified_before": before, "modified_after": session.modified}

    @app.get("/login")
    def login() -> Any:
        session.regenerate()
        session["user"] = "ann"
        return "welcome"

    @app.get("/logout")
    def logout() -> Any:
        session.delete()
        return "bye"

    @app.get("/fail")
    def fail() -> Any:
        session["lost"] = True
        flask.abort(500)

    @app.get("/stream")
    def stream() -> Any:
        @flask.stream_with_context
        def body() -> Any:
            yield "start "
            session["written_while_streaming"] = True
            yield "end"

        return flask.Response(body())

    @app.get("/forget")
    def forget() -> Any:
        session.permanent = False
        return "forgotten"

    @app.get("/remember")
    def remember() -> Any:
        session.permanent = True
        return "remembered"

    @app.get("/facts")
    def facts() -> Any:
        return {
            "type": type(session._get_current_object()).__name__,  # type: ignore[attr-defined]
            "wrapped": type(session.wrapped).__name__,
            "permanent": session.permanent,
            "new": session.new,
        }

    return app


@pytest.fixture
def make_app(clock: FakeClock) -> Callable[..., TestApp]:
    def make(store: Any = None, **config: Any) -> TestApp:
        return browser(make_flask_app(clock, store, **config))

    return make


def test_session_values_round_trip(make_app: Callable[..., TestApp]) -> None:
    app = make_app()
    response = app.get("/set?user=ann&theme=dark")
    assert "session=" in response.headers["Set-Cookie"]
    assert app.get("/get").json == {"user": "ann", "theme": "dark"}


def test_flask_session_is_a_wsgisession_session(make_app: Callable[..., TestApp]) -> None:
    facts = make_app().get("/facts").json
    assert facts == {"type": "FlaskSession", "wrapped": "Session", "permanent": False, "new": True}


def test_untouched_request_sets_no_cookie_and_no_vary(make_app: Callable[..., TestApp]) -> None:
    app = make_app()
    app.get("/set?a=1")
    response = app.get("/nothing")
    assert "Set-Cookie" not in response.headers
    assert "Vary" not in response.headers


def test_flash_messages_are_shown_once_with_categories(make_app: Callable[..., TestApp]) -> None:
    app = make_app()
    app.get("/flash?message=saved&category=info")
    app.get("/flash?message=careful&category=warning")
    first = app.get("/messages").json
    assert first == {"messages": [["info", "saved"], ["warning", "careful"]], "types": ["tuple", "tuple"]}
    assert app.get("/messages").json == {"messages": [], "types": []}


def test_in_place_changes_are_saved_with_or_without_modified(make_app: Callable[..., TestApp]) -> None:
    app = make_app()
    assert app.get("/cart?item=apple").json == {"modified_before": False, "modified_after": True}
    assert app.get("/cart?item=pear&mark=1").json == {"modified_before": False, "modified_after": True}
    assert app.get("/get").json == {"cart": ["apple", "pear"]}


def test_login_regenerates_the_id_and_logout_deletes_the_session(make_app: Callable[..., TestApp]) -> None:
    app = make_app()
    app.get("/set?cart=apple")
    anonymous = cookie_of(app)
    app.get("/login")
    signed_in = cookie_of(app)
    assert signed_in and signed_in != anonymous
    assert app.get("/get").json == {"cart": "apple", "user": "ann"}
    stale = browser(app.app)
    stale.set_cookie("session", anonymous)
    assert stale.get("/get").json == {}
    response = app.get("/logout")
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    replay = browser(app.app)
    replay.set_cookie("session", signed_in)
    assert replay.get("/get").json == {}


def test_server_error_persists_nothing(make_app: Callable[..., TestApp]) -> None:
    app = make_app()
    app.get("/set?kept=yes")
    app.get("/fail", status=500)
    assert app.get("/get").json == {"kept": "yes"}


def test_changes_made_while_streaming_are_saved(make_app: Callable[..., TestApp]) -> None:
    app = make_app()
    app.get("/set?a=1")
    assert app.get("/stream").text == "start end"
    assert app.get("/get").json == {"a": "1", "written_while_streaming": True}


def test_permanent_decides_between_a_persistent_and_a_browser_session_cookie(
    make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    app = make_app(PERMANENT_SESSION_LIFETIME=datetime.timedelta(hours=1))
    browser_session = app.get("/set?a=1").headers["Set-Cookie"]
    assert "Max-Age" not in browser_session and "Expires" not in browser_session
    assert app.get("/facts").json["permanent"] is False
    made_permanent = app.get("/remember").headers["Set-Cookie"]  # the same id, re-issued with a Max-Age
    assert "Max-Age=3600" in made_permanent
    assert app.get("/facts").json["permanent"] is True
    forgotten = app.get("/forget").headers["Set-Cookie"]
    assert "Max-Age" not in forgotten and "Expires" not in forgotten
    assert app.get("/get").json == {"a": "1"}
    clock.advance(3601)  # the idle timeout applies on the server to a browser-session cookie too
    assert app.get("/get").json == {}


def test_session_permanent_config_sets_the_default(make_app: Callable[..., TestApp]) -> None:
    app = make_app(SESSION_PERMANENT=True, PERMANENT_SESSION_LIFETIME=600)
    assert "Max-Age=600" in app.get("/set?a=1").headers["Set-Cookie"]
    assert app.get("/facts").json["permanent"] is True
    forgotten = app.get("/forget").headers["Set-Cookie"]
    assert "Max-Age" not in forgotten


def test_flask_cookie_config_keys(make_app: Callable[..., TestApp]) -> None:
    app = make_app(
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_DOMAIN="localhost",
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_PERMANENT=True,
        PERMANENT_SESSION_LIFETIME=datetime.timedelta(hours=2),
    )
    set_cookie = app.get("/set?a=1").headers["Set-Cookie"]
    assert set_cookie.startswith("sid=")
    assert "Max-Age=7200" in set_cookie
    assert "SameSite=Strict" in set_cookie and "Domain=localhost" in set_cookie
    assert "HttpOnly" not in set_cookie and "Secure" not in set_cookie


def test_secure_auto_follows_the_scheme(make_app: Callable[..., TestApp]) -> None:
    app = make_app(SESSION_COOKIE_SECURE="auto")
    assert "Secure" not in app.get("/set?a=1").headers["Set-Cookie"]
    https = TestApp(app.app, extra_environ={"HTTP_HOST": "localhost", "wsgi.url_scheme": "https"})
    assert "Secure" in https.get("/set?a=1").headers["Set-Cookie"]


def test_wsgisession_cookie_options_override_flask_keys(make_app: Callable[..., TestApp]) -> None:
    app = make_app(SESSION_COOKIE_SAMESITE="Strict", WSGISESSION_COOKIE_OPTIONS={"samesite": None, "path": "/app"})
    set_cookie = app.get("/set?a=1").headers["Set-Cookie"]
    assert "Path=/app" in set_cookie
    assert "SameSite" not in set_cookie


def test_lifetime_is_the_idle_timeout(make_app: Callable[..., TestApp], clock: FakeClock) -> None:
    app = make_app(PERMANENT_SESSION_LIFETIME=60)
    app.get("/set?a=1")
    clock.advance(50)
    assert app.get("/get").json == {"a": "1"}
    clock.advance(61)
    assert app.get("/get").json == {}


def test_own_config_keys(make_app: Callable[..., TestApp], clock: FakeClock) -> None:
    app = make_app(WSGISESSION_EXPIRE_AFTER=None, WSGISESSION_MAX_LIFETIME=100, SESSION_PERMANENT=True)
    assert "Max-Age=100;" in app.get("/set?a=1").headers["Set-Cookie"]
    clock.advance(99)
    assert app.get("/get").json == {"a": "1"}
    clock.advance(2)
    assert app.get("/get").json == {}


def test_store_from_config_url_and_explicit_store(clock: FakeClock) -> None:
    from_url = make_flask_app(clock, WSGISESSION_STORE="memory")
    assert isinstance(from_url.wsgi_app.store, MemoryStore)
    store = MemoryStore(clock=clock)
    explicit = make_flask_app(clock, store, WSGISESSION_STORE="not a url at all")
    assert explicit.wsgi_app.store is store
    browser(explicit).get("/set?a=1")
    assert len(store) == 1


def test_cookie_store_uses_secret_key_and_fallbacks(clock: FakeClock) -> None:
    pytest.importorskip("wsgisession.stores.cookie")
    old, new = "o" * 32, "n" * 32
    before = browser(make_flask_app(clock, WSGISESSION_STORE="cookie", SECRET_KEY=old))
    before.get("/set?user=ann")
    rotated = browser(make_flask_app(clock, WSGISESSION_STORE="cookie", SECRET_KEY=new, SECRET_KEY_FALLBACKS=[old]))
    rotated.set_cookie("session", cookie_of(before))
    assert rotated.get("/get").json == {"user": "ann"}
    dropped = browser(make_flask_app(clock, WSGISESSION_STORE="cookie", SECRET_KEY=new))
    dropped.set_cookie("session", cookie_of(before))
    assert dropped.get("/get").json == {}


@pytest.mark.parametrize(
    ("config", "message"),
    [({"SESSION_TYPE": "redis"}, "WSGISESSION_STORE"), ({"WSGISESSION_STORE": "cookie"}, "SECRET_KEY")],
)
def test_flask_session_settings_that_can_not_be_honoured(clock: FakeClock, config: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_flask_app(clock, **config)


def test_init_app_later_and_only_once(clock: FakeClock) -> None:
    extension = WsgiSession(clock=clock)
    app = flask.Flask(__name__)
    middleware = extension.init_app(app)
    assert isinstance(middleware, SessionMiddleware) and app.wsgi_app is middleware
    assert isinstance(app.session_interface, WsgiSessionInterface)
    with pytest.raises(RuntimeError, match="already"):
        extension.init_app(app)


def test_flask_test_client_session_transaction(clock: FakeClock) -> None:
    app = make_flask_app(clock)
    client = app.test_client()
    with client.session_transaction() as session:
        assert isinstance(session, FlaskSession)
        session["user"] = "ann"
    assert client.get("/get").json == {"user": "ann"}
    with client.session_transaction() as session:
        assert session["user"] == "ann"
        del session["user"]
    assert client.get("/get").json == {}


def test_test_request_context_gets_a_working_session(clock: FakeClock) -> None:
    app = make_flask_app(clock)
    with app.test_request_context("/"):
        flask.session["a"] = 1
        assert isinstance(flask.session.wrapped, Session)
        assert flask.session["a"] == 1


def test_helpers_read_the_flask_session(make_app: Callable[..., TestApp]) -> None:
    app = make_app()
    app.get("/set?user=ann")
    app.get("/flash?message=hello")
    assert session_of(app) == {"user": "ann", "_flashes": [("message", "hello")]}


def test_sessions_opened_outside_the_middleware_never_hold_the_lock(clock: FakeClock) -> None:
    app = make_flask_app(clock, WSGISESSION_LOCK=True, WSGISESSION_LOCK_TIMEOUT=1)
    client = browser(app)
    client.get("/set?user=ann")
    cookie = f"session={cookie_of(client)}"
    with app.test_request_context("/", headers={"Cookie": cookie}):
        assert flask.session["user"] == "ann"  # Flask never calls save_session here
    assert client.get("/get").json == {"user": "ann"}  # not waiting for a lock nobody releases


def test_secure_auto_behind_proxy_fix(clock: FakeClock) -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    app = make_flask_app(clock, SESSION_COOKIE_SECURE="auto")
    app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1)  # outside the session middleware
    client = browser(app)
    proxied = client.get("/set?a=1", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in proxied.headers["Set-Cookie"]
    assert "Secure" not in browser(app).get("/set?a=1").headers["Set-Cookie"]


def test_a_flask_clear_logout_is_never_undone_by_a_slow_request(clock: FakeClock) -> None:
    import threading

    from .store_suite import clone, interrupted

    loaded = threading.Event()
    logged_out = threading.Event()
    app = flask.Flask(__name__)
    app.config.update(TESTING=True)
    WsgiSession(app, store=MemoryStore(clock=clock), clock=clock)

    @app.get("/login")
    def login() -> Any:
        flask.session["user"] = {"name": "ann", "hits": 0}
        return "in"

    @app.get("/slow")
    def slow() -> Any:
        user = flask.session["user"]
        loaded.set()
        assert logged_out.wait(10)
        user["hits"] += 1  # an in-place change computed from the session before the logout
        return "slow"

    @app.get("/logout")
    def logout() -> Any:
        flask.session.clear()
        return "out"

    @app.get("/get")
    def get() -> Any:
        return dict(flask.session)

    client = browser(app)
    client.get("/login")
    cookie = cookie_of(client)
    response = interrupted(clone(client, cookie), loaded, clone(client, cookie), logged_out, "/slow", "/logout")
    assert response.text == "slow"
    assert clone(client, cookie).get("/get").json == {}
