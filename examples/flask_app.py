"""Flask: sign in and out with ``flask.session`` and ``flash()`` on wsgisession.

Run it and open http://127.0.0.1:8000/ (user ``ann``, password
``correct horse battery staple``)::

    python examples/flask_app.py

or under gunicorn with two workers (see ``examples/gunicorn.conf.py``)::

    gunicorn -c examples/gunicorn.conf.py examples.flask_app:app

The store is the URL in the ``WSGISESSION_STORE`` environment variable
(default ``memory``; use ``sqlite:///sessions.sqlite3`` or ``redis://...`` with
several worker processes).  A real app also protects its forms against CSRF,
for example with Flask-WTF.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, flash, redirect, render_template_string, request, session, url_for
from werkzeug.security import check_password_hash, generate_password_hash

from wsgisession.contrib.flask import WsgiSession

#: The demo's one user.  Real apps keep password hashes in their database.
USERS = {"ann": generate_password_hash("correct horse battery staple")}

# Checked when the user is unknown, so that a wrong user name takes as long
# to refuse as a wrong password.
_NO_SUCH_USER = generate_password_hash("no such user")

PAGE = """<!doctype html>
<title>wsgisession with Flask</title>
{% for category, message in get_flashed_messages(with_categories=true) %}
  <p class="{{ category }}">{{ message }}</p>
{% endfor %}
{% if user %}
  <p>Signed in as {{ user }}; this is visit {{ visits }} since you signed in.</p>
  <form method="post" action="{{ url_for('logout') }}"><button>Sign out</button></form>
{% else %}
  <form method="post" action="{{ url_for('login') }}">
    <input name="username" placeholder="user"> <input name="password" type="password" placeholder="password">
    <button>Sign in</button>
  </form>
{% endif %}
"""


def create_app(**session_options: Any) -> Flask:
    """The app; ``session_options`` go to ``WsgiSession`` (``store=``, ``clock=`` ...)."""
    app = Flask(__name__)
    app.config["WSGISESSION_STORE"] = os.environ.get("WSGISESSION_STORE", "memory")
    app.config["PERMANENT_SESSION_LIFETIME"] = 8 * 60 * 60  # idle timeout, seconds
    app.config["SESSION_COOKIE_SECURE"] = "auto"  # Secure whenever the request came over https
    WsgiSession(app, **session_options)

    @app.get("/")
    def index() -> str:
        user = session.get("user")
        if user is not None:
            session["visits"] = session.get("visits", 0) + 1
        return render_template_string(PAGE, user=user, visits=session.get("visits"))

    @app.post("/login")
    def login() -> Any:
        username = request.form.get("username", "")
        password_hash = USERS.get(username, _NO_SUCH_USER)
        if not check_password_hash(password_hash, request.form.get("password", "")) or username not in USERS:
            flash("Wrong user name or password.", "error")
            return redirect(url_for("index"))
        session.regenerate()  # a new id when privileges change defeats session fixation
        session["user"] = username
        session["visits"] = 0
        flash(f"Welcome, {username}.", "info")
        return redirect(url_for("index"))

    @app.post("/logout")
    def logout() -> Any:
        session.delete()  # the record goes and the cookie is expired
        flash("Signed out.", "info")  # starts a new, anonymous session for the message
        return redirect(url_for("index"))

    return app


app = create_app()

if __name__ == "__main__":
    from werkzeug.serving import run_simple

    run_simple("127.0.0.1", int(os.environ.get("PORT", "8000")), app, threaded=True)
