"""Test support: WebTest apps around SessionMiddleware, and the services tests use.

Tests that need PostgreSQL, MariaDB or Redis read the server's URL from an
environment variable (defaults: the local servers) and are skipped when it is
unreachable, unless WSGISESSION_REQUIRE_SERVICES=1, when they fail instead.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from typing import Any, Callable, Iterable
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
