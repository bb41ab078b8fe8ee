"""The counter app on a SQLite-file SQLAlchemyStore, for the gunicorn test to serve.

The database file is ``WSGISESSION_TEST_SQLITE_PATH``.  Routes: ``/`` counts
like the original package's /testsession (and names the worker's pid),
``/key/<name>`` sets one key, ``/keys`` lists the keys, ``/pid`` names the
worker without touching the session.
"""

from __future__ import annotations

import os
from typing import Any

from wsgisession import SessionMiddleware
from wsgisession.stores.sqlalchemy import SQLAlchemyStore

from .support import counter_app, json_app


def handler(session: Any, environ: dict) -> Any:
    path = environ["PATH_INFO"]
    if path.startswith("/key/"):
        key = path[len("/key/") :]
        session[key] = key
        return key
    if path == "/keys":
        return sorted(session.keys())
    if path == "/pid":
        return os.getpid()  # the session is not touched
    return {**counter_app(session, environ), "pid": os.getpid()}


app = SessionMiddleware(json_app(handler), SQLAlchemyStore("sqlite:///" + os.environ["WSGISESSION_TEST_SQLITE_PATH"]))
