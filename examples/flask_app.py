"""Flask: sign in with Flask-Login, notes and ``flash()`` in the session, and a "Your sessions" page.

Run it and open http://127.0.0.1:8000/ (any user name signs in: this example
is about sessions, not passwords)::

    python examples/flask_app.py
    WSGISESSION_STORE=cookie python examples/flask_app.py
    WSGISESSION_STORE=sqlite:///sessions.sqlite3 python examples/flask_app.py

or under gunicorn with two workers (see ``examples/gunicorn.conf.py``)::

    gunicorn -c examples/gunicorn.conf.py examples.flask_app:app

The store is the URL in ``WSGISESSION_STORE`` (default ``memory``) and the
cookie store's secret is ``WSGISESSION_SECRET_KEY`` (see
``examples/settings.py``).  Signing in sets ``session.owner`` in a Flask-Login
``user_logged_in`` handler, so "Your sessions" can list the user's sessions
(``store.sessions_of``), end one (``store.end_session``) and end all the
others (``store.end_sessions``), as after a password change.  A real app
also checks a password and protects its forms against CSRF (Flask-WTF).
"""

from __future__ import annotations

import datetime
import html
import logging
import os
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional

from flask import Flask, flash, redirect, render_template_string, request, session, url_for
from flask_login import (
    LoginManager,
    UserMixin,
    current_user,
    login_required,
    login_user,
    logout_user,
    user_logged_in,
    user_logged_out,
)

from wsgisession import SessionCookieTooLarge, SessionMiddleware
from wsgisession.contrib.flask import EXTENSION_NAME, WsgiSession
from wsgisession.store import SessionInfo

if __package__:
    from . import settings
else:  # run as a script (python examples/flask_app.py): this folder is on sys.path
    import settings  # type: ignore[no-redef]

log = logging.getLogger("examples.flask_app")

LAYOUT = """<!doctype html>
<title>wsgisession with Flask</title>
<nav><a href="{{ url_for('index') }}">Home</a>
{% if current_user.is_authenticated %} | <a href="{{ url_for('your_sessions') }}">Your sessions</a>{% endif %}</nav>
{% for category, message in get_flashed_messages(with_categories=true) %}
  <p class="{{ category }}">{{ message }}</p>
{% endfor %}
"""

INDEX = (
    LAYOUT
    + """
{% if current_user.is_authenticated %}
  <p>Signed in as {{ current_user.id }}; this is visit {{ visits }} since you signed in.</p>
  <ul>{% for note in notes %}<li>{{ note }}</li>{% endfor %}</ul>
  <form method="post" action="{{ url_for('add_note') }}"><input name="text"> <button>Add a note</button></form>
  {% if not can_lock %}<p class="warning">{{ lost_changes_notice }}</p>{% endif %}
  <form method="post" action="{{ url_for('logout') }}"><button>Sign out</button></form>
{% else %}
  <form method="post" action="{{ url_for('login') }}">
    <input name="username" placeholder="any user name"> <button>Sign in</button>
  </form>
{% endif %}
"""
)

SESSIONS = (
    LAYOUT
    + """
<h1>Your sessions</h1>
{% if sessions is none %}
  <p>This app keeps sessions in signed cookies, which live in the browsers only:
  the server has no list of them, so they can not be listed or ended from here.</p>
  <p>The alternative: keep a sign-in generation number per user in your user table,
  copy it into the session at sign-in, and compare the two on each request.
  "Sign out everywhere" then adds one to the user's number, and every session
  signed in before is refused.</p>
{% else %}
  <table>
    <tr><th>Signed in</th><th>Last seen</th><th>Browser</th><th></th></tr>
    {% for info in sessions %}
    <tr>
      <td>{{ info.details.get("signed_in", info.created_at.isoformat(timespec="seconds")) }}</td>
      <td>{{ info.last_seen.isoformat(timespec="seconds") }}</td>
      <td>{{ info.details.get("user_agent") or "unknown" }}</td>
      <td>{% if info.current %}this session{% else %}
        <form method="post" action="{{ url_for('end_session') }}">
          <input type="hidden" name="handle" value="{{ info.handle }}"> <button>End</button>
        </form>{% endif %}</td>
    </tr>
    {% endfor %}
  </table>
  <form method="post" action="{{ url_for('end_other_sessions') }}">
    <button>Sign out everywhere else</button> (do this after you change your password)
  </form>
{% endif %}
"""
)

OVERSIZED_PAGE = """<!doctype html>
<title>The session is too large for a cookie</title>
<h1>The session is too large for a cookie</h1>
<p>{message}</p>
<p>Browsers drop cookies over 4096 bytes, which would have signed you out.
Keep less in the session, or choose a server-side store (WSGISESSION_STORE=sqlite:///sessions.sqlite3).</p>
"""


class User(UserMixin):  # type: ignore[misc]
    """A user of the example: anyone, by name."""

    def __init__(self, name: str) -> None:
        self.id = name


def create_app(**session_options: Any) -> Flask:
    """The app; ``session_options`` go to ``WsgiSession`` (``store=``, ``clock=`` ...)."""
    app = Flask(__name__)
    store: Any = session_options.get("store") or settings.store_url()
    app.config["WSGISESSION_STORE"] = store
    if settings.is_cookie_store(store):
        app.config["SECRET_KEY"] = settings.secret_key()
    # One request of a session at a time, so that two tabs adding notes keep
    # both; the cookie store can not lock (the page then says what can be lost).
    can_lock = settings.can_lock(store)
    app.config["WSGISESSION_LOCK"] = can_lock
    app.config["PERMANENT_SESSION_LIFETIME"] = 8 * 60 * 60  # idle timeout, seconds
    app.config["SESSION_COOKIE_SECURE"] = "auto"  # Secure whenever the request came over https
    WsgiSession(app, **session_options)
    middleware: SessionMiddleware = app.extensions[EXTENSION_NAME]
    clock: Callable[[], float] = session_options.get("clock", time.time)
    if middleware.store.client_side:
        # Only a cookie can be too large.  Outside the session middleware,
        # which raises the error as the response starts.
        app.wsgi_app = ExplainOversizedSessions(app.wsgi_app)  # type: ignore[method-assign]

    login_manager = LoginManager(app)
    login_manager.login_view = "index"
    login_manager.user_loader(User)

    @user_logged_in.connect_via(app)
    def record_owner(sender: Flask, user: User, **extra: Any) -> None:
        # The owner makes the session one of the user's (store.sessions_of);
        # the details are what "Your sessions" shows about it.
        session.owner = user.get_id()
        signed_in = datetime.datetime.fromtimestamp(clock(), datetime.timezone.utc)
        session.owner_details = {
            "user_agent": request.user_agent.string[:200],
            "signed_in": signed_in.isoformat(timespec="seconds"),
        }

    @user_logged_out.connect_via(app)
    def forget_owner(sender: Flask, user: User, **extra: Any) -> None:
        session.owner = None

    @app.get("/")
    def index() -> str:
        if current_user.is_authenticated:
            session["visits"] = session.get("visits", 0) + 1
        return render_template_string(
            INDEX,
            visits=session.get("visits"),
            notes=session.get("notes", []),
            can_lock=can_lock,
            lost_changes_notice=settings.LOST_CHANGES_NOTICE,
        )

    @app.post("/login")
    def login() -> Any:
        name = request.form.get("username", "").strip()
        if not name:
            flash("Name a user to sign in.", "error")
            return redirect(url_for("index"))
        session.regenerate()  # a new id when privileges change defeats session fixation
        login_user(User(name))
        session["visits"] = 0
        flash(f"Welcome, {name}.", "info")
        return redirect(url_for("index"))

    @app.post("/logout")
    def logout() -> Any:
        logout_user()
        session.delete()  # the record goes and the cookie is expired
        flash("Signed out.", "info")  # starts a new, anonymous session for the message
        return redirect(url_for("index"))

    @app.post("/notes")
    @login_required
    def add_note() -> Any:
        text = request.form.get("text", "").strip()
        if text:
            session.setdefault("notes", []).append(text)  # changed in place: saved all the same
        else:
            flash("Write something first.", "error")
        return redirect(url_for("index"))

    @app.get("/sessions")
    @login_required
    def your_sessions() -> str:
        sessions: Optional[List[SessionInfo]] = None
        if not middleware.store.client_side:
            sessions = middleware.store.sessions_of(current_user.id, current=session)
        return render_template_string(SESSIONS, sessions=sessions)

    @app.post("/sessions/end")
    @login_required
    def end_session() -> Any:
        if middleware.store.end_session(current_user.id, request.form.get("handle", "")):
            flash("That session has ended: its browser is signed out.", "info")
        else:
            flash("That session had ended already.", "info")
        return redirect(url_for("your_sessions"))

    @app.post("/sessions/end-others")
    @login_required
    def end_other_sessions() -> Any:
        ended = middleware.store.end_sessions(current_user.id, keep=session)
        flash(f"Signed out everywhere else: {ended} other session{'' if ended == 1 else 's'} ended.", "info")
        return redirect(url_for("your_sessions"))

    return app


WSGIApp = Callable[[Dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ExplainOversizedSessions:
    """Wraps a WSGI app so that a session too large for its cookie answers a readable 500 page.

    ``SessionCookieTooLarge`` comes from the session middleware as the
    response starts, after Flask's error handlers are done, so it is caught
    out here, where the whole body is read first: fine in development; a
    production app lets its error tracker report the 500.
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body: Iterable[bytes] = []
        try:
            body = self.app(environ, start_response)
            return list(body)  # the session is saved as the first chunk is read
        except SessionCookieTooLarge as error:
            log.exception("the session outgrew its cookie")
            page = OVERSIZED_PAGE.format(message=html.escape(str(error))).encode()
            headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))]
            start_response("500 Internal Server Error", headers, sys.exc_info())
            return [page]
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()


app = create_app()

if __name__ == "__main__":
    from werkzeug.serving import run_simple

    run_simple("127.0.0.1", int(os.environ.get("PORT", "8000")), app, threaded=True)
