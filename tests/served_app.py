"""The WSGI app that process-level tests serve with gunicorn.

Configured from the environment: ``WSGISESSION_SERVED_STORE`` is a store URL
(``sqlite:///...``, ``postgresql+psycopg://...``, ``redis://...``),
``WSGISESSION_SERVED_TABLE`` the table or key prefix, ``WSGISESSION_SERVED_LOCK=1``
turns on the per-session request lock.
"""

from __future__ import annotations

import os
from typing import Any

from wsgisession import SessionMiddleware
from wsgisession.store import Store

from .support import counter_app, json_app


def make_store() -> Store:
    url = os.environ["WSGISESSION_SERVED_STORE"]
    name = os.environ.get("WSGISESSION_SERVED_TABLE", "sessions")
    if url.startswith("redis"):
        from wsgisession.stores.redis import RedisStore

        return RedisStore(url, prefix=name)
    from wsgisession.stores.sqlalchemy import SQLAlchemyStore

    return SQLAlchemyStore(url, name)


def handler(session: Any, environ: dict) -> Any:
    """``/seed``, ``/set/<key>``, ``/increment``, ``/counter``, ``/pid``; any other path reads the session."""
    path = environ["PATH_INFO"]
    if path == "/seed":
        session["owner"] = "ann"
        return "seeded"
    if path.startswith("/set/"):
        key = path[len("/set/") :]
        session[key] = key
        return key
    if path == "/increment":
        session["count"] = session.get("count", 0) + 1
        return session["count"]
    if path == "/counter":  # the original package's /testsession, naming the worker that served it
        return {**counter_app(session, environ), "pid": os.getpid()}
    if path == "/pid":
        return os.getpid()  # the session is not touched
    return session.to_dict()


application = SessionMiddleware(json_app(handler), make_store(), lock=os.environ.get("WSGISESSION_SERVED_LOCK") == "1")
