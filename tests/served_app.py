"""The WSGI app that process-level tests serve with gunicorn.

Configured from the environment: ``WSGISESSION_SERVED_STORE`` is a store URL
(``sqlite:///...``, ``postgresql+psycopg://...``, ``redis://...``),
``WSGISESSION_SERVED_TABLE`` the table or key prefix, ``WSGISESSION_SERVED_LOCK=1``
turns on the per-session request lock.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Iterable

from wsgisession import SessionMiddleware, get_session
from wsgisession.store import Store


def make_store() -> Store:
    url = os.environ["WSGISESSION_SERVED_STORE"]
    name = os.environ.get("WSGISESSION_SERVED_TABLE", "sessions")
    if url.startswith("redis"):
        from wsgisession.stores.redis import RedisStore

        return RedisStore(url, prefix=name)
    from wsgisession.stores.sqlalchemy import SQLAlchemyStore

    return SQLAlchemyStore(url, name)


def session_app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``/seed``, ``/set/<key>``, ``/increment`` and ``/read``, answering JSON."""
    session = get_session(environ)
    path = environ.get("PATH_INFO", "/")
    if path == "/seed":
        session["owner"] = "ann"
        result: Any = "seeded"
    elif path.startswith("/set/"):
        key = path[len("/set/") :]
        session[key] = key
        result = key
    elif path == "/increment":
        session["count"] = session.get("count", 0) + 1
        result = session["count"]
    else:
        result = session.to_dict()
    body = json.dumps(result).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


application = SessionMiddleware(session_app, make_store(), lock=os.environ.get("WSGISESSION_SERVED_LOCK") == "1")
