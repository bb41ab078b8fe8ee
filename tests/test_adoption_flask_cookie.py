"""Switching a Flask app from its own signed-cookie session to wsgisession logs nobody out."""

from __future__ import annotations

import datetime
from typing import Any, Optional

import pytest
from webtest import TestApp

from wsgisession.stores.cookie import CookieStore
from wsgisession.stores.memory import MemoryStore
from wsgisession.testing import FakeClock

from .support import browser

flask = pytest.importorskip("flask")
pytest.importorskip("flask_login")
from flask.sessions import SecureCookieSessionInterface  # noqa: E402

from wsgisession.contrib.flask import WsgiSession  # noqa: E402

from .legacy_flask import add_login_routes, is_removal, set_cookies  # noqa: E402

LIFETIME = datetime.timedelta(hours=1)
SECRET = "the app's secret key, long enough for any store"


def flask_app(secret_key: str = SECRET, **config: Any) -> Any:
    app = flask.Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY=secret_key, PERMANENT_SESSION_LIFETIME=LIFETIME, **config)
    return app


def switched_app(
    clock: FakeClock, store: Any, *, interface: Optional[SecureCookieSessionInterface] = None, **config: Any
) -> Any:
    """The same app after the switch: wsgisession, adopting Flask's cookies."""
    options = {key: config.pop(key) for key in ("cookie_name", "adopt_flask_cookie") if key in config}
    config.setdefault("WSGISESSION_ADOPT_FLASK_COOKIE", True)
    app = flask_app(**config)
    if interface is not None:
        app.session_interface = interface
    WsgiSession(app, store=store, clock=clock, **options)
    return add_login_routes(app)


def logged_in_on_flask(permanent: bool = True, **config: Any) -> TestApp:
    """A browser that logged in while the app ran on Flask's own session."""
    client = browser(add_login_routes(flask_app(**config)))
    client.post(f"/login?permanent={int(permanent)}")
    assert "." in client.cookies["session"]  # Flask's signed cookie
    return client


@pytest.mark.parametrize("permanent", [True, False])
@pytest.mark.parametrize("kind", ["memory", "cookie"])
def test_a_user_logged_in_on_flasks_session_is_still_logged_in_after_the_switch(
    clock: FakeClock, permanent: bool, kind: str
) -> None:
    client = logged_in_on_flask(permanent)
    flask_cookie = client.cookies["session"]
    # The cookie store signs with the same secret key: a Flask cookie still
    # never passes for one of its sessions.
    store: Any = MemoryStore(clock=clock) if kind == "memory" else CookieStore(SECRET)
    client.app = switched_app(clock, store)

    response = client.get("/me")
    assert response.json == {"user": "ann", "permanent": permanent}
    # One header for the name both use: our cookie replaces Flask's.
    [(name, header)] = set_cookies(response)
    assert name == "session" and not is_removal(header)
    assert ("Max-Age=" in header) is permanent
    ours = client.cookies["session"]
    assert ours != flask_cookie
    if kind == "memory":
        assert len(store) == 1 and "." not in ours

    assert client.get("/me").json == {"user": "ann", "permanent": permanent}  # from wsgisession now
    assert client.get("/cart").json == {"cart": ["tea", 2]}
    assert client.get("/messages").json == {"messages": [["info", "welcome back"]]}
    assert client.get("/messages").json == {"messages": []}  # shown once
    assert client.get("/me").json["user"] == "ann"
    if kind == "memory":
        assert len(store) == 1


def test_with_another_cookie_name_the_flask_cookie_is_removed_and_ours_wins_when_both_come(clock: FakeClock) -> None:
    client = logged_in_on_flask()
    flask_cookie = client.cookies["session"]
    store = MemoryStore(clock=clock)
    client.app = switched_app(clock, store, cookie_name="sid")

    response = client.get("/me")
    assert response.json["user"] == "ann"
    cookies = dict(set_cookies(response))
    assert sorted(cookies) == ["session", "sid"]
    assert is_removal(cookies["session"]) and not is_removal(cookies["sid"])
    assert set(client.cookies) == {"sid"}

    # A browser that brings both (a copy of the old cookie came back): ours is
    # used, nothing is adopted again, and the old cookie goes again.
    ours = client.cookies["sid"]
    client.set_cookie("session", flask_cookie)
    response = client.get("/me")
    assert response.json["user"] == "ann"
    [(name, header)] = set_cookies(response)
    assert name == "session" and is_removal(header)
    assert dict(client.cookies) == {"sid": ours} and len(store) == 1


def test_the_old_cookie_is_removed_beside_our_session_only_while_the_browser_brings_it(clock: FakeClock) -> None:
    client = logged_in_on_flask()
    flask_cookie = client.cookies["session"]
    client.app = switched_app(clock, MemoryStore(clock=clock), cookie_name="sid")
    client.get("/me")
    client.set_cookie("session", flask_cookie)
    assert [name for name, _ in set_cookies(client.get("/me"))] == ["session"]
    assert set_cookies(client.get("/me")) == []


@pytest.mark.parametrize(
    "tamper",
    [
        lambda value: value[:-2] + ("AA" if value[-2:] != "AA" else "BB"),  # the signature
        lambda value: "e" + value,  # the payload
        lambda value: value.split(".")[0],  # no signature at all
        lambda value: "not a flask cookie",
    ],
)
def test_a_tampered_flask_cookie_is_ignored_like_any_bad_cookie(clock: FakeClock, tamper: Any) -> None:
    client = logged_in_on_flask()
    tampered = tamper(client.cookies["session"])
    store = MemoryStore(clock=clock)
    client.app = switched_app(clock, store)
    client.set_cookie("session", tampered)
    response = client.get("/me")
    assert response.status_int == 200 and response.json["user"] is None
    assert len(store) == 0
    [(name, header)] = set_cookies(response)  # the bad cookie goes, as one of ours would
    assert name == "session" and is_removal(header)


def test_a_cookie_signed_with_another_key_is_ignored_and_fallback_keys_verify(clock: FakeClock) -> None:
    client = logged_in_on_flask(secret_key="the old secret")
    flask_cookie = client.cookies["session"]
    client.app = switched_app(clock, MemoryStore(clock=clock))
    assert client.get("/me").json["user"] is None

    client.set_cookie("session", flask_cookie)
    client.app = switched_app(clock, MemoryStore(clock=clock), SECRET_KEY_FALLBACKS=["the old secret"])
    assert client.get("/me").json["user"] == "ann"


@pytest.mark.parametrize("permanent", [True, False])
def test_a_cookie_older_than_the_session_lifetime_is_ignored(clock: FakeClock, permanent: bool) -> None:
    # Flask puts the signing time in every cookie, permanent or not, and
    # refuses it after PERMANENT_SESSION_LIFETIME.
    client = logged_in_on_flask(permanent)
    flask_cookie = client.cookies["session"]
    client.app = switched_app(clock, MemoryStore(clock=clock))
    clock.advance(LIFETIME.total_seconds() - 100)
    assert client.get("/me").json["user"] == "ann"

    client.set_cookie("session", flask_cookie)
    client.app = switched_app(clock, MemoryStore(clock=clock))
    clock.advance(200)
    assert client.get("/me").json["user"] is None


def test_the_adoption_window_can_be_shorter_than_the_session_lifetime(clock: FakeClock) -> None:
    client = logged_in_on_flask()
    flask_cookie = client.cookies["session"]
    client.app = switched_app(clock, MemoryStore(clock=clock), WSGISESSION_ADOPT_FLASK_COOKIE_MAX_AGE=600)
    clock.advance(500)
    assert client.get("/me").json["user"] == "ann"

    client.set_cookie("session", flask_cookie)
    client.app = switched_app(clock, MemoryStore(clock=clock), WSGISESSION_ADOPT_FLASK_COOKIE_MAX_AGE=600)
    clock.advance(200)
    assert client.get("/me").json["user"] is None


class SaltedInterface(SecureCookieSessionInterface):
    salt = "our own salt"


def test_the_cookie_is_read_with_the_interface_init_app_replaces(clock: FakeClock) -> None:
    old = flask_app()
    old.session_interface = SaltedInterface()
    client = browser(add_login_routes(old))
    client.post("/login")
    flask_cookie = client.cookies["session"]

    client.app = switched_app(clock, MemoryStore(clock=clock))  # Flask's default salt: no match
    assert client.get("/me").json["user"] is None
    client.set_cookie("session", flask_cookie)
    client.app = switched_app(clock, MemoryStore(clock=clock), interface=SaltedInterface())
    assert client.get("/me").json["user"] == "ann"


def test_adoption_is_off_unless_asked_for(clock: FakeClock) -> None:
    client = logged_in_on_flask()
    client.app = switched_app(clock, MemoryStore(clock=clock), WSGISESSION_ADOPT_FLASK_COOKIE=False)
    assert client.get("/me").json["user"] is None
    client = logged_in_on_flask()
    client.app = switched_app(
        clock, MemoryStore(clock=clock), WSGISESSION_ADOPT_FLASK_COOKIE=False, adopt_flask_cookie=True
    )
    assert client.get("/me").json["user"] == "ann"


def test_settings_that_can_not_work_fail_when_the_app_is_set_up(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="SECRET_KEY"):
        switched_app(clock, MemoryStore(clock=clock), secret_key="")
    with pytest.raises(ValueError, match="not both"):
        switched_app(clock, MemoryStore(clock=clock), WSGISESSION_ADOPT_FLASK_SESSION=True)

    class ServerSide(flask.sessions.SessionInterface):  # type: ignore[misc]
        pass

    app = flask_app(WSGISESSION_ADOPT_FLASK_COOKIE=True)
    app.session_interface = ServerSide()
    with pytest.raises(ValueError, match="ServerSide"):
        WsgiSession(app, store=MemoryStore(clock=clock), clock=clock)
