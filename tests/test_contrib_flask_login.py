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


def test_the_owner_recipe_lists_and_ends_flask_login_sessions(clock: FakeClock) -> None:
    # The recipe of docs/owners.rst, as written there.
    from flask import session
    from flask_login import user_logged_in, user_logged_out

    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="a test secret key")
    store = MemoryStore(clock=clock)
    WsgiSession(app, store=store, clock=clock)
    flask_login.LoginManager(app).user_loader(User)

    @user_logged_in.connect_via(app)
    def remember_owner(app: Any, user: Any, **extra: Any) -> None:
        session.owner = user.get_id()

    @user_logged_out.connect_via(app)
    def forget_owner(app: Any, user: Any, **extra: Any) -> None:
        session.owner = None

    @app.post("/login/<name>")
    def login(name: str) -> Any:
        flask_login.login_user(User(name))
        return "in"

    @app.post("/logout")
    def logout() -> Any:
        flask_login.logout_user()
        return "out"

    @app.post("/sign-out-everywhere-else")
    def sign_out_everywhere_else() -> Any:
        return {"ended": store.end_sessions(flask_login.current_user.get_id(), keep=session)}

    @app.get("/me")
    def me() -> Any:
        return {"user": flask_login.current_user.get_id()}

    laptop, phone, tablet = app.test_client(), app.test_client(), app.test_client()
    for client in (laptop, phone, tablet):
        client.post("/login/ann")
    assert len(store.sessions_of("ann")) == 3
    tablet.post("/logout")
    assert len(store.sessions_of("ann")) == 2  # signing out took the owner away
    assert laptop.post("/sign-out-everywhere-else").json == {"ended": 1}
    assert phone.get("/me").json == {"user": None}
    assert laptop.get("/me").json == {"user": "ann"}
    assert [info.current for info in store.sessions_of("ann")] == [False]
