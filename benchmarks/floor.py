"""The floor: the least a lazy session middleware can do, to see how far above it wsgisession is.

Not a product, and not safe to use: no expiry, no change tracking beyond one
flag, no concurrency guarantees, no cookie attributes, no id validation.  It
reads its cookie, looks the session up in a dict under a lock on first use,
and sets a cookie only for a session it changed.  It serves the same app as
every other subject (``get_session(environ)`` finds it under the same key).
"""

from __future__ import annotations

import secrets
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from wsgisession.middleware import DEFAULT_ENVIRON_KEY

from .scenarios import StartResponse, WSGIApp, WSGIEnviron

_COOKIE_NAME = "session"


class FloorSession:
    """A dict loaded on first use; ``flash`` is a plain set."""

    __slots__ = ("_middleware", "_environ", "_data", "id", "changed")

    def __init__(self, middleware: FloorMiddleware, environ: WSGIEnviron) -> None:
        self._middleware = middleware
        self._environ = environ
        self._data: Optional[Dict[str, Any]] = None
        self.id: Optional[str] = None
        self.changed = False

    def _loaded(self) -> Dict[str, Any]:
        if self._data is None:
            self.id, self._data = self._middleware.load(self._environ.get("HTTP_COOKIE"))
        return self._data

    def get(self, key: str, default: Any = None) -> Any:
        return self._loaded().get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._loaded()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._loaded()[key] = value
        self.changed = True

    flash = __setitem__

    def update(self, values: Dict[str, Any]) -> None:
        self._loaded().update(values)
        self.changed = True

    def __iter__(self) -> Any:
        return iter(list(self._loaded()))


class FloorMiddleware:
    """Sessions in a dict of this process: see the module docstring."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.sessions: Dict[str, Dict[str, Any]] = {}
        self.lock = threading.Lock()

    def load(self, cookie_header: Optional[str]) -> Tuple[Optional[str], Dict[str, Any]]:
        """The id and data the cookie names, or a new empty session."""
        if cookie_header:
            for pair in cookie_header.split(";"):
                name, _, value = pair.strip().partition("=")
                if name == _COOKIE_NAME:
                    with self.lock:
                        data = self.sessions.get(value)
                    if data is not None:
                        return value, data
        return None, {}

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        session = FloorSession(self, environ)
        environ[DEFAULT_ENVIRON_KEY] = session

        def saving_start_response(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
            if session.changed:
                if session.id is None:
                    session.id = secrets.token_urlsafe(32)
                    headers = [*headers, ("Set-Cookie", f"{_COOKIE_NAME}={session.id}; Path=/")]
                with self.lock:
                    self.sessions[session.id] = session._loaded()
            return start_response(status, headers, exc_info)

        return self.app(environ, saving_start_response)


def floor(app: WSGIApp) -> Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]:
    """``app`` wrapped in the floor middleware."""
    return FloorMiddleware(app)
