"""The demo: the original package's /testsession counters and its flash example.

Run it (the embedded default keeps sessions in a SQLite file, so a restart
keeps them)::

    python examples/counter.py                      # SQLite file sessions.sqlite3
    python examples/counter.py --store memory
    python examples/counter.py --store cookie       # needs WSGISESSION_SECRET_KEY
    python examples/counter.py --store redis --url redis://127.0.0.1:6379/0
    python examples/counter.py --store redis --url redis+sentinel://127.0.0.1:26379/mymaster
    python examples/counter.py --store redis --url redis+cluster://127.0.0.1:7000,127.0.0.1:7001
    python examples/counter.py --store sqlalchemy --url postgresql+psycopg://postgres@127.0.0.1/test

then open http://127.0.0.1:8000/testsession (xx counts 2, 5, 8 ...; yy 1, 2, 3 ...),
http://127.0.0.1:8000/flash?message=hi and http://127.0.0.1:8000/message.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Callable, Dict, Iterable, List, Optional
from urllib.parse import parse_qs

from wsgisession import SessionMiddleware, get_session
from wsgisession.store import Store

STORES = ("sqlite", "memory", "cookie", "redis", "sqlalchemy")


def counter_app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The plain WSGI app: no session code but ``get_session``."""
    session = get_session(environ)
    path = environ.get("PATH_INFO", "/")
    if path == "/testsession":
        session["xx"] = session.get("xx", -1) + 3
        session["yy"] = session.get("yy", 0) + 1
        result: Any = {"xx": session["xx"], "yy": session["yy"]}
    elif path == "/flash":
        message = parse_qs(environ.get("QUERY_STRING", "")).get("message", ["hello"])[0]
        session.flash("message", message)
        result = {"flashed": message}
    elif path == "/message":
        result = {"message": session.get("message")}  # shown once, then gone
    elif path == "/logout":
        session.delete()
        result = {"logged_out": True}
    else:
        body = b"Try /testsession, /flash?message=hi, /message and /logout\n"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    body = json.dumps(result).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def make_store(name: str = "sqlite", url: Optional[str] = None) -> Store:
    """The store the demo runs on; ``sqlite`` (a file next to the working directory) by default."""
    if name == "memory":
        from wsgisession.stores.memory import MemoryStore

        return MemoryStore()
    if name == "cookie":
        from wsgisession.stores.cookie import CookieStore

        secret = os.environ.get("WSGISESSION_SECRET_KEY")
        if not secret:
            raise SystemExit("--store cookie needs WSGISESSION_SECRET_KEY (at least 32 characters)")
        return CookieStore(secret)
    if name == "redis":
        from wsgisession.stores.redis import RedisStore

        return RedisStore(url or "redis://127.0.0.1:6379/0")
    from wsgisession.stores.sqlalchemy import SQLAlchemyStore

    if name == "sqlite":
        return SQLAlchemyStore(url or "sqlite:///sessions.sqlite3")
    if name == "sqlalchemy" and url:
        return SQLAlchemyStore(url)
    raise SystemExit(f"unknown store {name!r} (or --url missing); choose from {', '.join(STORES)}")


def create_app(store: Optional[Store] = None) -> SessionMiddleware:
    """The demo app wrapped in SessionMiddleware (on the embedded SQLite store by default)."""
    return SessionMiddleware(counter_app, store if store is not None else make_store())


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="wsgisession demo: counters and flash messages")
    parser.add_argument("--store", choices=STORES, default="sqlite")
    parser.add_argument(
        "--url", help="database or Redis URL for the chosen store (redis://, redis+sentinel://, redis+cluster://)"
    )
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    from werkzeug.serving import run_simple

    print(f"serving the demo on http://127.0.0.1:{args.port}/testsession ({args.store} store)")
    run_simple("127.0.0.1", args.port, create_app(make_store(args.store, args.url)), threaded=True)


if __name__ == "__main__":
    main()
