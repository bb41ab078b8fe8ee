"""Helpers for testing applications that use wsgisession.

:class:`FakeClock` moves time without sleeping.  :func:`session_of` and
:func:`session_transaction` read and set the session of a WebTest ``TestApp``
for any store: they send a small request of their own through the app's
SessionMiddleware (its store, expiry and cookie settings), with the TestApp's
cookies, and keep the cookie it answers in the TestApp's cookie jar.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Set, TypeVar

from .contrib import REGISTRY_KEY
from .errors import SessionError
from .middleware import SessionMiddleware, StartResponse, get_session
from .serialization import dumps, encode_value
from .session import Session
from .store import WSGIEnviron

__all__ = ["FakeClock", "find_middleware", "session_of", "session_transaction"]

_T = TypeVar("_T")

# The attributes under which WSGI wrappers and frameworks keep the app they
# wrap: werkzeug's ProxyFix and our middleware (app), Flask (wsgi_app),
# WebTest's TestApp (app).
_WRAPPED_APP_ATTRIBUTES = ("app", "wsgi_app", "application")


class FakeClock:
    """A clock for ``SessionMiddleware(clock=...)`` and stores that moves only when told.

    Starts at the real current time (or ``start``) so records stay plausible to
    a database or Redis; ``advance(seconds)`` moves it forward.  Thread-safe.
    """

    def __init__(self, start: Optional[float] = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        with self._lock:
            self._now += seconds


def find_middleware(app: Any) -> SessionMiddleware:
    """The SessionMiddleware inside ``app``: a TestApp, a Flask app, a middleware or a wrapper of one.

    Follows the attributes wrappers keep their app under, and looks in a
    Pyramid registry set up by ``wsgisession.contrib.pyramid``.  Raises
    ``SessionError`` when there is none; pass ``middleware=`` to the helpers then.
    """
    pending = [app]
    seen: Set[int] = set()
    while pending and len(seen) < 50:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, SessionMiddleware):
            return current
        registry = getattr(current, "registry", None)
        if isinstance(registry, Mapping) and isinstance(registry.get(REGISTRY_KEY), SessionMiddleware):
            return registry[REGISTRY_KEY]  # type: ignore[no-any-return]
        for name in _WRAPPED_APP_ATTRIBUTES:
            inner = getattr(current, name, None)
            if inner is not None:
                pending.append(inner)
    raise SessionError(f"no SessionMiddleware found in {app!r}; pass middleware=... explicitly")


def _probe(test_app: Any, middleware: SessionMiddleware, handler: Callable[[Session], _T]) -> _T:
    # One request through a copy of the app's middleware whose app only runs
    # handler(session): the store, expiry and cookie rules are the app's, and
    # WebTest itself sends the jar's cookies and stores the answer's.
    from webtest import TestApp  # a test extra, needed only when a helper runs

    results: List[_T] = []
    probe = copy.copy(middleware)

    def probe_app(environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        results.append(handler(get_session(environ, probe.environ_key)))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return []

    probe.app = probe_app
    client = TestApp(probe, extra_environ=dict(test_app.extra_environ), cookiejar=test_app.cookiejar)
    client.get(middleware.cookie.path or "/")
    return results[0]


def session_of(test_app: Any, *, middleware: Optional[SessionMiddleware] = None) -> Dict[str, Any]:
    """A copy of the session the TestApp's cookie opens now, as a dict (``{}`` for none).

    Flash values are listed and not consumed.  Like any request that reads the
    session, it may refresh the sliding expiry.
    """
    found = middleware or find_middleware(test_app)
    return _probe(test_app, found, lambda session: session.to_dict())


def _differs(value: Any, old: Any) -> bool:
    # Compared as stored, so that 1 and True, or a tuple and a list, differ.
    try:
        return dumps(encode_value(value)) != dumps(encode_value(old))
    except TypeError:
        return True  # not storable: the session refuses it, naming the key


@contextmanager
def session_transaction(test_app: Any, *, middleware: Optional[SessionMiddleware] = None) -> Iterator[Dict[str, Any]]:
    """Change the TestApp's session before a request: ``with session_transaction(app) as session:``.

    ``session`` is a dict of the current values; what the block sets or
    deletes is saved when it ends (not when it raises), a new session and its
    cookie being made when there was none.  Values set in the block are plain
    values, not flash values.
    """
    found = middleware or find_middleware(test_app)
    before = session_of(test_app, middleware=found)
    draft = copy.deepcopy(before)
    yield draft
    removed = [key for key in before if key not in draft]
    changed = {key: value for key, value in draft.items() if key not in before or _differs(value, before[key])}
    if not removed and not changed:
        return

    def apply(session: Session) -> None:
        for key in removed:
            session.pop(key, None)
        session.update(changed)

    _probe(test_app, found, apply)
