"""The demo: the original package's /testsession counters and its flash example.

Run it (the embedded default keeps sessions in a SQLite file, so a restart
keeps them)::

    python examples/counter.py                      # SQLite file sessions.sqlite3
    python examples/counter.py --store memory
    python examples/counter.py --store cookie       # signed with WSGISESSION_SECRET_KEY
    python examples/counter.py --store redis --url redis://127.0.0.1:6379/0
    python examples/counter.py --store redis --url redis+sentinel://127.0.0.1:26379/mymaster
    python examples/counter.py --store redis --url redis+cluster://127.0.0.1:7000,127.0.0.1:7001
    python examples/counter.py --store sqlalchemy --url postgresql+psycopg://postgres@127.0.0.1/test

then open http://127.0.0.1:8000/, which links the pages: /testsession (xx
counts 2, 5, 8 ...; yy 1, 2, 3 ...), /flash?message=hi, /message and /logout.
Any other path is 404.  Without ``WSGISESSION_SECRET_KEY`` the cookie store
signs with a public development secret and says so in the log (see
``examples/settings.py``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable, Dict, Iterable, List, Optional
from urllib.parse import parse_qs

from wsgisession import SessionMiddleware, get_session
from wsgisession.store import Store

if __package__:
    from . import settings
else:  # run as a script (python examples/counter.py): this folder is on sys.path
    import settings  # type: ignore[no-redef]

STORES = ("sqlite", "memory", "cookie", "redis", "sqlalchemy")

#: The pages that use the session; ``/`` links them, anything else is 404.
PAGES = ("/testsession", "/flash", "/message", "/logout")

INDEX = b"""<!doctype html>
<title>wsgisession demo</title>
<h1>wsgisession demo</h1>
<ul>
  <li><a href="/testsession">/testsession</a>: two counters in the session (xx counts 2, 5, 8 ...; yy 1, 2, 3 ...)</li>
  <li><a href="/flash?message=hi">/flash?message=hi</a>: keep a message for the next request</li>
  <li><a href="/message">/message</a>: show the message once</li>
  <li><a href="/logout">/logout</a>: delete the session</li>
</ul>
"""

NOT_FOUND = b"""<!doctype html>
<title>Not found</title>
<p>There is no such page. <a href="/">The demo's pages</a>.</p>
"""


def counter_app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The plain WSGI app: no session code but ``get_session``."""
    path = environ.get("PATH_INFO", "/")
    if path not in PAGES:
        status, body = ("200 OK", INDEX) if path == "/" else ("404 Not Found", NOT_FOUND)
        start_response(status, [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]
    session = get_session(environ)
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
    else:
        session.delete()
        result = {"logged_out": True}
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

        return CookieStore(settings.secret_key())
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
