"""Test support: WebTest apps around SessionMiddleware, and the services tests use.

Tests that need PostgreSQL, MariaDB or Redis read the server's URL from an
environment variable (defaults: the local servers) and are skipped when it is
unreachable, unless WSGISESSION_REQUIRE_SERVICES=1, when they fail instead.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, List
from urllib.parse import urlsplit

import pytest
from webtest import TestApp

from wsgisession import get_session

POSTGRES_URL = os.environ.get("WSGISESSION_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("WSGISESSION_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("WSGISESSION_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("WSGISESSION_REQUIRE_SERVICES") == "1"

#: Unique per test run, for table names and key prefixes.
RUN_ID = uuid.uuid4().hex[:10]


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, url: str) -> str:
    """Return ``url`` when its server answers; skip (or fail when services are required) otherwise."""
    if not _reachable(url):
        message = f"{name} is not reachable at {urlsplit(url).hostname}:{urlsplit(url).port}"
        if REQUIRE_SERVICES:
            pytest.fail(message + " and WSGISESSION_REQUIRE_SERVICES=1")
        pytest.skip(message)
    return url


def browser(app: Any) -> TestApp:
    """A WebTest client for a WSGI app whose cookie jar behaves like a browser's.

    With an explicit Host, cookies placed by ``set_cookie`` and cookies set by
    responses share one domain, so a new cookie replaces the old one.
    """
    return TestApp(app, extra_environ={"HTTP_HOST": "localhost"})


def json_app(handler: Callable[[Any, dict], Any]) -> Callable[[dict, Callable[..., Any]], Iterable[bytes]]:
    """A WSGI app that calls ``handler(session, environ)`` and answers its result as JSON."""

    def app(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        result = handler(get_session(environ), environ)
        body = json.dumps(result, default=str).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def counter_app(session: Any, environ: dict) -> Any:
    """The original package's /testsession handler: xx counts 2, 5, 8 ...; yy 1, 2, 3 ..."""
    session["xx"] = session.get("xx", -1) + 3
    session["yy"] = session.get("yy", 0) + 1
    return {"xx": session["xx"], "yy": session["yy"]}


def count_in_threads(app: Any, threads: int, requests: int, *, at_once: bool) -> List[int]:
    """Threads counting with :func:`counter_app`, each a browser of its own; the last count of each.

    ``at_once``: all threads run together; otherwise one after another.
    """
    last: List[int] = [0] * threads

    def browse(index: int) -> None:
        client = browser(app)
        for _ in range(requests):
            last[index] = client.get("/").json["yy"]

    workers = [threading.Thread(target=browse, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
        if not at_once:
            worker.join()
    for worker in workers:
        worker.join()
    return last


#: The repository's root, where a child Python finds ``tests`` and ``wsgisession``.
ROOT = Path(__file__).resolve().parent.parent


def run_python(script: str, *arguments: str) -> List[str]:
    """Run ``script`` in a new Python from the repository's root; the words it printed (it must succeed)."""
    finished = subprocess.run(
        [sys.executable, "-c", script, *arguments], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stderr
    return finished.stdout.split()


#: Monkey patching of the two green-thread libraries, by name: for ``pytest.mark.parametrize``.
GREEN_PATCHES = [
    ("gevent", "from gevent import monkey; monkey.patch_all()"),
    ("eventlet", "import eventlet; eventlet.monkey_patch()"),
]

# Under monkey patching (put in for {patch}): whether a store's per-thread
# connection is declined, and whether three green threads count right on
# the store of the URL in argv[1], built with the options in argv[2] (JSON).
_GREEN_THREADS = r"""
import json, sys, threading
{patch}
from webtest import TestApp
from wsgisession import SessionMiddleware
from wsgisession.contrib import store_from_url
from wsgisession.stores.per_thread import PerThread
from tests.support import counter_app, json_app

store = store_from_url(sys.argv[1], **json.loads(sys.argv[2]))
app = SessionMiddleware(json_app(counter_app), store)
found = [PerThread(object, lambda held: None).get() is None]

def browse():
    client = TestApp(app)
    found.append([client.get("/").json["yy"] for _ in range(3)] == [1, 2, 3])

workers = [threading.Thread(target=browse) for _ in range(3)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
store.close()
print(all(found), len(found))
"""


def count_under_green_threads(patch: str, url: str, **options: Any) -> List[str]:
    """Run three green threads counting on a store of ``url`` under ``patch``; what the run printed."""
    return run_python(_GREEN_THREADS.format(patch=patch), url, json.dumps(options))
