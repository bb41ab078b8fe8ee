"""A Flask app with Flask-Login, run first on the session system being replaced, then on wsgisession."""

from __future__ import annotations

from typing import Any, List, Tuple

import flask
import flask_login


class User(flask_login.UserMixin):  # type: ignore[misc]
    def __init__(self, id: str) -> None:
        self.id = id


def add_login_routes(app: Any) -> Any:
    """Give ``app`` a login manager and the routes the tests call; returns ``app``."""
    manager = flask_login.LoginManager(app)
    manager.user_loader(User)

    @app.post("/login")
    def login() -> Any:
        flask.session.permanent = flask.request.args.get("permanent") == "1"
        flask_login.login_user(User("ann"))
        flask.flash("welcome back", "info")
        flask.session["cart"] = ("tea", 2)
        return "in"

    @app.get("/me")
    def me() -> Any:
        return {"user": flask_login.current_user.get_id(), "permanent": flask.session.permanent}

    @app.get("/messages")
    def messages() -> Any:
        return {"messages": flask.get_flashed_messages(with_categories=True)}

    @app.get("/cart")
    def cart() -> Any:
        return {"cart": list(flask.session.get("cart", ()))}

    @app.get("/logout")
    def logout() -> Any:
        flask_login.logout_user()
        flask.session.clear()
        return "out"

    return app


def set_cookies(response: Any) -> List[Tuple[str, str]]:
    """The response's Set-Cookie headers as (name, whole header) pairs."""
    return [(header.split("=", 1)[0], header) for header in response.headers.getall("Set-Cookie")]


def is_removal(header: str) -> bool:
    """Whether a Set-Cookie header removes its cookie."""
    return "Max-Age=0" in header
