"""What the benchmarked applications do: one small app, reachable through each session API.

Every subject serves the same paths.  ``/setup`` stores a returning visitor's
session; the timed scenarios are ``/untouched``, ``/read``, ``/write``,
``/flash`` and ``/new``; the concurrency probe uses ``/probe`` and ``/report``.
A :class:`SessionStyle` says how one stack's session is reached and saved, so
the handler logic is written once for wsgisession, Beaker and Flask.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, MutableMapping, Optional, Tuple

WSGIEnviron = Dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]

#: The session a returning visitor has before the timed requests.
SETUP_DATA: Dict[str, Any] = {"user_id": 42, "name": "Ada Lovelace", "roles": ["admin", "editor"], "visits": 0}

#: Simulated application work between reading and writing the session in the
#: probe: it holds the read-modify-write window open, as real handlers do.
PROBE_WORK_SECONDS = 0.002

#: Keys the probe's requests set start with this.
PROBE_KEY_PREFIX = "probe-"

OK_BODY = b"ok"

#: What a baseline's client sends for returning-visitor scenarios: a cookie
#: shaped like a session id, so the request is the same size as the others'.
BASELINE_COOKIES = {"session": "b" * 43}


@dataclass(frozen=True)
class Scenario:
    """One kind of request: its path and whether the browser sends its session cookie."""

    name: str
    path: str
    returning: bool
    title: str


SCENARIOS: Tuple[Scenario, ...] = (
    Scenario("untouched", "/untouched", True, "returning visitor, app never touches the session"),
    Scenario("read", "/read", True, "read one key"),
    Scenario("write", "/write", True, "change one key"),
    Scenario("flash", "/flash", True, "flash: set, then read on the next request"),
    Scenario("new", "/new", False, "new visitor, first write"),
)

SCENARIO_NAMES = tuple(scenario.name for scenario in SCENARIOS)


class SessionStyle:
    """How one stack's session is reached, saved and used for flash messages."""

    def session(self, environ: WSGIEnviron) -> MutableMapping[str, Any]:
        """The request's session mapping."""
        raise NotImplementedError

    def save(self, session: MutableMapping[str, Any]) -> None:
        """Mark the session for saving, for stacks that need to be told (Beaker)."""

    def set_flash(self, session: MutableMapping[str, Any], key: str, value: str) -> None:
        """Store a message that the next request reads once."""
        raise NotImplementedError

    def take_flash(self, session: MutableMapping[str, Any], key: str) -> Optional[str]:
        """Read and remove the flash message, or None when there is none."""
        raise NotImplementedError


class WsgisessionStyle(SessionStyle):
    """wsgisession: ``get_session(environ)``, saved automatically, native flash values."""

    def session(self, environ: WSGIEnviron) -> MutableMapping[str, Any]:
        from wsgisession import get_session

        return get_session(environ)

    def set_flash(self, session: MutableMapping[str, Any], key: str, value: str) -> None:
        session.flash(key, value)  # type: ignore[attr-defined]

    def take_flash(self, session: MutableMapping[str, Any], key: str) -> Optional[str]:
        value: Optional[str] = session.get(key)
        return value


class BeakerStyle(SessionStyle):
    """Beaker: ``environ["beaker.session"]``, saved by ``save()``; flash is a key popped by hand."""

    def session(self, environ: WSGIEnviron) -> MutableMapping[str, Any]:
        return environ["beaker.session"]  # type: ignore[no-any-return]

    def save(self, session: MutableMapping[str, Any]) -> None:
        session.save()  # type: ignore[attr-defined]

    def set_flash(self, session: MutableMapping[str, Any], key: str, value: str) -> None:
        session[key] = value
        self.save(session)

    def take_flash(self, session: MutableMapping[str, Any], key: str) -> Optional[str]:
        value: Optional[str] = session.pop(key, None)
        if value is not None:
            self.save(session)
        return value


class FlaskStyle(SessionStyle):
    """Flask and Flask-Session: ``flask.session``, ``flask.flash`` and ``get_flashed_messages``."""

    def session(self, environ: WSGIEnviron) -> MutableMapping[str, Any]:
        import flask

        return flask.session

    def set_flash(self, session: MutableMapping[str, Any], key: str, value: str) -> None:
        import flask

        flask.flash(value)

    def take_flash(self, session: MutableMapping[str, Any], key: str) -> Optional[str]:
        import flask

        messages = flask.get_flashed_messages()
        return str(messages[0]) if messages else None


def handle(path: str, query: str, style: SessionStyle, environ: WSGIEnviron) -> bytes:
    """Do what ``path`` asks of the session and return the response body."""
    if path == "/untouched":
        return OK_BODY
    session = style.session(environ)
    if path == "/read":
        session.get("user_id")
    elif path == "/write":
        session["visits"] = session.get("visits", 0) + 1
        style.save(session)
    elif path == "/flash":
        if style.take_flash(session, "notice") is None:
            style.set_flash(session, "notice", "Saved.")
    elif path == "/new":
        session["visits"] = 1
        style.save(session)
    elif path == "/setup":
        session.update(SETUP_DATA)
        style.save(session)
    elif path == "/probe":
        counter = session.get("counter", 0)
        time.sleep(PROBE_WORK_SECONDS)
        session["counter"] = counter + 1
        session[PROBE_KEY_PREFIX + query] = True
        style.save(session)
    elif path == "/report":
        keys = sorted(key for key in list(session) if key.startswith(PROBE_KEY_PREFIX))
        return json.dumps({"keys": keys, "counter": session.get("counter", 0)}).encode()
    return OK_BODY


def _respond(start_response: StartResponse, body: bytes) -> List[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def bare_app(environ: WSGIEnviron, start_response: StartResponse) -> List[bytes]:
    """The baseline: a WSGI app that answers every path without any session."""
    return _respond(start_response, OK_BODY)


def session_app(style: SessionStyle) -> WSGIApp:
    """A plain WSGI app running the scenarios through ``style`` (to wrap in a session middleware)."""

    def app(environ: WSGIEnviron, start_response: StartResponse) -> List[bytes]:
        body = handle(environ["PATH_INFO"], environ.get("QUERY_STRING", ""), style, environ)
        return _respond(start_response, body)

    return app


def flask_app(configure: Optional[Callable[[Any], None]] = None, *, use_session: bool = True) -> Any:
    """A Flask app running the scenarios through ``flask.session``.

    ``configure(app)`` sets up its session interface; with ``use_session=False``
    the app answers every path without touching the session (Flask's baseline).
    """
    import flask

    app = flask.Flask("wsgisession_benchmark")
    style = FlaskStyle()

    def scenario(name: str) -> Any:
        if not use_session:
            return OK_BODY
        request = flask.request
        return handle(request.path, request.query_string.decode(), style, request.environ)

    app.add_url_rule("/<path:name>", "scenario", scenario)
    if configure is not None:
        configure(app)
    return app
