"""Flask-Login on wsgisession sessions: strong session protection works as on Flask's own session."""

from __future__ import annotations

from typing import Any

import pytest

from wsgisession.stores.memory import MemoryStore
from wsgisession.testing import FakeClock

flask = pytest.importorskip("flask")
flask_login = pytest.importorskip("flask_login")
from wsgisession.contrib.flask import WsgiSession  # noqa: E402


class User(flask_login.UserMixin):  # type: ignore[misc]
    def __init__(self, id: str) -> None:
        self.id = id


def make_client(clock: FakeClock, *, permanent: bool) -> Any:
    app = flask.Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="a test secret key", SESSION_PROTECTION="strong")
    WsgiSession(app, store=MemoryStore(clock=clock), clock=clock)
    manager = flask_login.LoginManager(app)
    manager.user_loader(User)

    @app.post("/login")
    def login() -> Any:
        flask.session.permanent = permanent
        flask_login.login_user(User("ann"))
        return "in"

    @app.get("/me")
    def me() -> Any:
        user = flask_login.current_user
        return {"user": user.get_id(), "fresh": flask_login.login_fresh()}

    return app.test_client()


def test_strong_protection_logs_out_a_stolen_cookie_used_from_another_browser(clock: FakeClock) -> None:
    client = make_client(clock, permanent=False)
    client.post("/login", headers={"User-Agent": "ann's browser"})
    assert client.get("/me", headers={"User-Agent": "ann's browser"}).json == {"user": "ann", "fresh": True}
    assert client.get("/me", headers={"User-Agent": "a thief's browser"}).json == {"user": None, "fresh": False}
    # The session lost its login keys for good: the owner signs in again too.
    assert client.get("/me", headers={"User-Agent": "ann's browser"}).json["user"] is None


def test_a_permanent_session_is_only_marked_not_fresh_as_flask_login_documents(clock: FakeClock) -> None:
    client = make_client(clock, permanent=True)
    client.post("/login", headers={"User-Agent": "ann's browser"})
    assert client.get("/me", headers={"User-Agent": "another browser"}).json == {"user": "ann", "fresh": False}
