"""Bottle integration: a plugin that hands the session to routes that ask for it.

::

    import bottle
    from wsgisession import SessionMiddleware
    from wsgisession.contrib.bottle import SessionPlugin

    app = bottle.Bottle()
    app.install(SessionPlugin())

    @app.route("/")
    def index(session):
        session["visits"] = session.get("visits", 0) + 1
        return {"visits": session["visits"]}

    application = SessionMiddleware(app, store=...)   # serve this one

The plugin does not install the middleware: wrapping the Bottle app is how
Bottle adds WSGI middleware, and the wrapped object is what a server
(``bottle.run(app=application)``, gunicorn) must be given.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import bottle

from ..middleware import DEFAULT_ENVIRON_KEY, get_session

__all__ = ["SessionPlugin"]


class SessionPlugin:
    """Passes the request's Session to every route callback with a ``keyword`` parameter.

    Routes without that parameter are left untouched and cost nothing; the
    session comes from the SessionMiddleware that wraps the app (a route that
    asks for it without one raises ``SessionError``).
    """

    name = "wsgisession"
    api = 2

    def __init__(self, keyword: str = "session", environ_key: str = DEFAULT_ENVIRON_KEY) -> None:
        self.keyword = keyword
        self.environ_key = environ_key

    def setup(self, app: bottle.Bottle) -> None:
        """Refuse a second plugin that would fill the same keyword."""
        for other in app.plugins:
            if isinstance(other, SessionPlugin) and other.keyword == self.keyword:
                raise bottle.PluginError(f"a SessionPlugin for the keyword {self.keyword!r} is already installed")

    def apply(self, callback: Callable[..., Any], route: bottle.Route) -> Callable[..., Any]:
        """Wrap ``callback`` when it takes the keyword; Bottle calls this once per route."""
        parameters = inspect.signature(route.get_undecorated_callback()).parameters
        if self.keyword not in parameters:
            return callback
        keyword = self.keyword
        environ_key = self.environ_key

        @functools.wraps(callback)
        def with_session(*args: Any, **kwargs: Any) -> Any:
            kwargs[keyword] = get_session(bottle.request.environ, environ_key)
            return callback(*args, **kwargs)

        return with_session
