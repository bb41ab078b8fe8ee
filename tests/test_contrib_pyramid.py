"""The Pyramid integration, through real requests: ISession, flash queues, CSRF, settings, includeme."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import pytest
from webtest import TestApp

from wsgisession import SessionMiddleware
from wsgisession.stores.memory import MemoryStore
from wsgisession.testing import FakeClock

from .store_suite import cookie_of
from .support import browser

pytest.importorskip("pyramid")
from pyramid.config import Configurator  # noqa: E402
from pyramid.interfaces import ISession  # noqa: E402
from pyramid.request import Request  # noqa: E402
from pyramid.response import Response  # noqa: E402
from zope.interface.verify import verifyObject  # noqa: E402

from wsgisession.contrib.pyramid import PyramidSession, SessionFactory, session_factory_from_settings  # noqa: E402


def views(config: Configurator) -> None:
    def add(name: str, view: Callable[[Request], Any], **options: Any) -> None:
        config.add_route(name, "/" + name)
        config.add_view(view, route_name=name, renderer="json", **options)

    add("set", lambda request: request.session.update(request.GET.mixed()) or "ok")
    add("get", lambda request: dict(request.session.items()))
    add("flash", lambda request: request.session.flash(request.GET["message"], **_flash_options(request)) or "ok")
    add("peek", lambda request: request.session.peek_flash(request.GET.get("queue", "")))
    add("pop", lambda request: request.session.pop_flash(request.GET.get("queue", "")))
    add("token", lambda request: request.session.get_csrf_token())
    add("new_token", lambda request: request.session.new_csrf_token())
    add("check", lambda request: request.session.check_csrf_token(request.GET.get("token")))
    add("protected", lambda request: "accepted", request_method="POST", require_csrf=True)
    add("invalidate", lambda request: request.session.invalidate() or "gone")
    add("login", lambda request: (request.session.regenerate(), request.session.__setitem__("user", "ann"))[0])
    add(
        "facts",
        lambda request: {
            "new": request.session.new,
            "created": request.session.created,
            "provides": verifyObject(ISession, request.session),
            "type": type(request.session).__name__,
        },
    )
    add("nested", lambda request: (request.session.setdefault("cart", []).append("x"), request.session.changed())[0])
    add("nothing", lambda request: "untouched")
    add("popitem", lambda request: list(request.session.popitem()))
    add("read_once", lambda request: request.session.wrapped.flash("notice", "once"))
    add("show_once", lambda request: request.session.get("notice"))
    add("clear", lambda request: request.session.clear() or "cleared")

    def varied(request: Request) -> Response:
        request.session["seen"] = True
        response = Response("varied")
        response.vary = ("Accept-Encoding",)
        return response

    config.add_route("varied", "/varied")
    config.add_view(varied, route_name="varied")

    def show_and_fail(request: Request) -> Response:
        return Response(str(request.session.get("notice")), status=500)

    config.add_route("show_and_fail", "/show_and_fail")
    config.add_view(show_and_fail, route_name="show_and_fail")

    def fail(request: Request) -> Response:
        request.session["lost"] = True
        return Response("failed", status=500)

    config.add_route("fail", "/fail")
    config.add_view(fail, route_name="fail")

    def explode(request: Request) -> Response:
        request.session["lost"] = True
        raise RuntimeError("boom")

    config.add_route("explode", "/explode")
    config.add_view(explode, route_name="explode")


def _flash_options(request: Request) -> Dict[str, Any]:
    options: Dict[str, Any] = {"queue": request.GET.get("queue", "")}
    if "unique" in request.GET:
        options["allow_duplicate"] = False
    return options


def make_pyramid_app(settings: Optional[Dict[str, Any]] = None, factory: Optional[SessionFactory] = None) -> Any:
    with Configurator(settings=settings or {}) as config:
        if factory is None:
            config.include("wsgisession.contrib.pyramid")
        else:
            config.set_session_factory(factory)
        views(config)
        return config.make_wsgi_app()


@pytest.fixture
def app(clock: FakeClock) -> TestApp:
    return browser(make_pyramid_app(factory=SessionFactory(MemoryStore(clock=clock), clock=clock)))


def test_values_round_trip(app: TestApp) -> None:
    assert "session=" in app.get("/set?user=ann").headers["Set-Cookie"]
    assert app.get("/get").json == {"user": "ann"}


def test_the_session_implements_isession(app: TestApp) -> None:
    facts = app.get("/facts").json
    assert facts["provides"] is True and facts["type"] == "PyramidSession"
    assert facts["new"] is True and isinstance(facts["created"], int)
    app.get("/set?a=1")
    assert app.get("/facts").json["new"] is False


def test_untouched_request_sets_no_cookie_and_no_vary(app: TestApp) -> None:
    app.get("/set?a=1")
    response = app.get("/nothing")
    assert "Set-Cookie" not in response.headers and "Vary" not in response.headers
    assert app.get("/get").headers["Vary"] == "Cookie"


def test_flash_queues(app: TestApp) -> None:
    app.get("/flash?message=one")
    app.get("/flash?message=one")
    app.get("/flash?message=one&unique=1")
    app.get("/flash?message=bad&queue=error")
    assert app.get("/peek").json == ["one", "one"]
    assert app.get("/peek").json == ["one", "one"]  # peeking leaves the queue
    assert app.get("/pop?queue=error").json == ["bad"]
    assert app.get("/pop").json == ["one", "one"]
    assert app.get("/pop").json == []
    assert app.get("/get").json == {}


def test_popitem_takes_read_once_values_too(app: TestApp) -> None:
    app.get("/read_once")
    assert app.get("/popitem").json == ["notice", "once"]
    with pytest.raises(KeyError):
        app.get("/popitem")


def test_csrf_token_is_stable_until_renewed(app: TestApp) -> None:
    token = app.get("/token").json
    assert len(token) == 64 and int(token, 16) >= 0
    assert app.get("/token").json == token
    assert app.get("/check", {"token": token}).json is True
    assert app.get("/check", {"token": token[:-1] + "x"}).json is False
    assert app.get("/check").json is False
    renewed = app.get("/new_token").json
    assert renewed != token
    assert app.get("/check", {"token": token}).json is False
    assert app.get("/check", {"token": renewed}).json is True


def test_pyramid_checks_posted_csrf_tokens_against_the_session(app: TestApp) -> None:
    token = app.get("/token").json
    app.post("/protected", {"text": "x"}, status=400)
    app.post("/protected", {"csrf_token": "wrong"}, status=400)
    assert app.post("/protected", {"csrf_token": token}).json == "accepted"
    assert app.post("/protected", headers={"X-CSRF-Token": token}).json == "accepted"
    other = browser(app.app)
    other.get("/token")
    other.post("/protected", {"csrf_token": token}, status=400)  # another session's token


def test_invalidate_drops_the_session(app: TestApp) -> None:
    app.get("/set?user=ann")
    old_cookie = cookie_of(app)
    response = app.get("/invalidate")
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    replay = browser(app.app)
    replay.set_cookie("session", old_cookie)
    assert replay.get("/get").json == {}


def test_login_regenerates_the_id(app: TestApp) -> None:
    app.get("/set?cart=apple")
    anonymous = cookie_of(app)
    app.get("/login")
    assert cookie_of(app) not in ("", anonymous)
    assert app.get("/get").json == {"cart": "apple", "user": "ann"}
    replay = browser(app.app)
    replay.set_cookie("session", anonymous)
    assert replay.get("/get").json == {}


def test_in_place_changes_are_saved(app: TestApp) -> None:
    app.get("/nested")
    app.get("/nested")
    assert app.get("/get").json == {"cart": ["x", "x"]}


def test_server_errors_persist_nothing(app: TestApp) -> None:
    app.get("/set?kept=yes")
    app.get("/fail", status=500)
    with pytest.raises(RuntimeError, match="boom"):
        app.get("/explode")
    assert app.get("/get").json == {"kept": "yes"}


def test_expiry_with_the_factory_options(clock: FakeClock) -> None:
    app = browser(make_pyramid_app(factory=SessionFactory(MemoryStore(clock=clock), clock=clock, expire_after=60)))
    assert "Max-Age=60" in app.get("/set?a=1").headers["Set-Cookie"]
    clock.advance(61)
    assert app.get("/get").json == {}


def test_lock_is_released_at_the_end_of_each_request(clock: FakeClock) -> None:
    factory = SessionFactory(MemoryStore(clock=clock), clock=clock, lock=True, lock_timeout=1)
    app = browser(make_pyramid_app(factory=factory))
    for number in range(3):
        app.get(f"/set?n={number}")
    with pytest.raises(RuntimeError):
        app.get("/explode")
    assert app.get("/get").json == {"n": "2"}


def test_includeme_reads_the_settings() -> None:
    app = browser(
        make_pyramid_app(
            {
                "wsgisession.store": "memory",
                "wsgisession.cookie_name": "sid",
                "wsgisession.expire_after": "120",
                "wsgisession.cookie_samesite": "Strict",
                "wsgisession.cookie_httponly": "false",
                "other.setting": "ignored",
            }
        )
    )
    set_cookie = app.get("/set?a=1").headers["Set-Cookie"]
    assert set_cookie.startswith("sid=") and "Max-Age=120" in set_cookie
    assert "SameSite=Strict" in set_cookie and "HttpOnly" not in set_cookie
    assert app.get("/get").json == {"a": "1"}


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="wsgisession.expires"):
        session_factory_from_settings({"wsgisession.expires": "10"})


def test_with_the_middleware_around_the_app_its_session_is_used(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    factory = SessionFactory(MemoryStore(clock=clock))  # never used: the middleware's session is
    app = browser(SessionMiddleware(make_pyramid_app(factory=factory), store, cookie_name="wrapped", clock=clock))
    assert app.get("/set?a=1").headers["Set-Cookie"].startswith("wrapped=")
    assert app.get("/get").json == {"a": "1"}
    assert len(store) == 1 and len(factory.middleware.store) == 0  # type: ignore[arg-type]


def test_pyramid_session_wraps_a_wsgisession_session(app: TestApp) -> None:
    seen: Dict[str, Any] = {}

    def capture(request: Request) -> Response:
        seen["session"] = request.session
        request.session.wrapped.flash("notice", "read once")
        return Response("ok")

    with Configurator() as config:
        config.set_session_factory(SessionFactory())
        config.add_route("capture", "/capture")
        config.add_view(capture, route_name="capture")
        config.add_route("read", "/read")
        config.add_view(lambda request: [request.session.get("notice")], route_name="read", renderer="json")
        client = browser(config.make_wsgi_app())
    client.get("/capture")
    assert isinstance(seen["session"], PyramidSession)
    assert client.get("/read").json == ["read once"]
    assert client.get("/read").json == [None]


def test_the_factory_merges_cookie_into_the_apps_vary_header(app: TestApp) -> None:
    response = app.get("/varied")
    assert response.headers.getall("Vary") == ["Accept-Encoding, Cookie"]


def test_a_clear_logout_removes_the_session_and_its_cookie(app: TestApp) -> None:
    app.get("/set?user=ann")
    cookie = cookie_of(app)
    response = app.get("/clear")
    assert response.headers["Set-Cookie"].startswith("session=;") and "Max-Age=0" in response.headers["Set-Cookie"]
    replay = browser(app.app)
    replay.set_cookie("session", cookie)
    assert replay.get("/get").json == {}


def test_a_flash_value_shown_by_a_failing_response_is_still_there(app: TestApp) -> None:
    app.get("/set?user=ann")
    app.get("/read_once")
    assert app.get("/show_and_fail", status=500).text == "once"
    assert app.get("/show_once").json == "once"
    assert app.get("/show_once").json is None


def test_browser_session_cookies_from_the_settings(clock: FakeClock) -> None:
    app = browser(make_pyramid_app({"wsgisession.store": "memory", "wsgisession.persistent": "false"}))
    set_cookie = app.get("/set?a=1").headers["Set-Cookie"]
    assert "Max-Age" not in set_cookie and "Expires" not in set_cookie
