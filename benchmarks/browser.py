"""A browser-like client that calls a WSGI app in-process and times only the app.

It builds the environ dict, calls the app with a ``start_response`` that
captures the headers, iterates and closes the body, and keeps cookies as a
browser does: a ``Set-Cookie`` response header's ``name=value`` is sent back
verbatim in the next request's ``Cookie`` header (RFC 6265), and
``Max-Age=0`` removes it.  No WebTest: its own cost would swamp the numbers.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from .scenarios import WSGIApp

Headers = List[Tuple[str, str]]


class Response(NamedTuple):
    """What the app answered."""

    status: str
    headers: Headers
    body: bytes


_ENVIRON_TEMPLATE: Dict[str, Any] = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "SERVER_NAME": "localhost",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_HOST": "localhost",
    "HTTP_USER_AGENT": "wsgisession-benchmark",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def cookie_expires(attributes: List[str]) -> bool:
    """True when a Set-Cookie's attributes remove the cookie (``Max-Age`` zero or less)."""
    for attribute in attributes:
        name, _, value = attribute.partition("=")
        if name.strip().lower() == "max-age":
            try:
                return int(value.strip()) <= 0
            except ValueError:
                return False
    return False


class Browser:
    """One visitor of one WSGI app: its cookie jar and its requests.

    Thread-safe for the probe: concurrent requests read the jar as it was when
    they started, and responses update it in the order they complete.
    """

    def __init__(self, app: WSGIApp, cookies: Optional[Dict[str, str]] = None) -> None:
        self.app = app
        self.cookies: Dict[str, str] = dict(cookies or {})
        self._jar_lock = threading.Lock()

    def environ(self, path: str, query: str = "", *, send_cookies: bool = True) -> Dict[str, Any]:
        """A fresh environ for a GET of ``path``, with the jar's cookies when ``send_cookies``."""
        environ = dict(_ENVIRON_TEMPLATE)
        environ["PATH_INFO"] = path
        environ["QUERY_STRING"] = query
        environ["wsgi.input"] = io.BytesIO(b"")
        if send_cookies and self.cookies:
            with self._jar_lock:
                environ["HTTP_COOKIE"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        return environ

    def call(self, environ: Dict[str, Any]) -> Tuple[Response, int]:
        """Run one request through the app: ``(response, nanoseconds spent in the app)``."""
        captured: List[Any] = []
        written: List[bytes] = []

        def start_response(status: str, headers: Headers, exc_info: Any = None) -> Any:
            captured[:] = [status, headers]
            return written.append

        started = time.perf_counter_ns()
        body = self.app(environ, start_response)
        try:
            chunks = list(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        elapsed = time.perf_counter_ns() - started
        return Response(captured[0], captured[1], b"".join(written + chunks)), elapsed

    def keep_cookies(self, headers: Headers) -> None:
        """Store or remove the cookies the response's ``Set-Cookie`` headers carry."""
        for name, value in headers:
            if name.lower() != "set-cookie":
                continue
            pair, *attributes = value.split(";")
            cookie_name, _, cookie_value = pair.partition("=")
            cookie_name = cookie_name.strip()
            with self._jar_lock:
                if cookie_expires(attributes):
                    self.cookies.pop(cookie_name, None)
                else:
                    self.cookies[cookie_name] = cookie_value.strip()

    def get(self, path: str, query: str = "", *, send_cookies: bool = True) -> Response:
        """A whole request: environ, app call, cookies kept.  Raises on a non-200 answer."""
        response, _ = self.call(self.environ(path, query, send_cookies=send_cookies))
        self.keep_cookies(response.headers)
        if not response.status.startswith("200"):
            raise RuntimeError(f"GET {path} answered {response.status}: {response.body[:300]!r}")
        return response
