"""The WSGI flow: a lazy session in ``environ``, saved just before the response can reach the client.

The rules (what is saved, which cookie, ``Vary``) live in
:mod:`wsgisession.lifecycle`; this module finds the moment to apply them.
PEP 3333 servers send nothing before the first non-empty body chunk or
``write()`` call, so the session is saved right before that one (or when an
empty body ends, or when an application returns a finished list).  That makes
the rule simple: a request that raises before any byte could reach the
client persists nothing, and a response the client can see is saved already.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

from .adoption import Adopter
from .cookies import CookieOptions
from .errors import SessionError
from .expiry import DEFAULT_EXPIRE_AFTER, Duration, ExpiryPolicy
from .lifecycle import Headers, Lifecycle
from .session import Session
from .store import Store, WSGIEnviron

__all__ = ["SessionMiddleware", "get_session", "DEFAULT_ENVIRON_KEY"]

#: Where the session is put in ``environ`` unless configured otherwise.
DEFAULT_ENVIRON_KEY = "wsgisession.session"

StartResponse = Callable[..., Callable[[bytes], Any]]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]


class SessionMiddleware:
    """WSGI middleware that gives every request a session in ``environ``.

    ``store`` defaults to a new :class:`~wsgisession.stores.memory.MemoryStore`.
    ``expire_after`` is the sliding idle timeout (seconds or a timedelta; None
    for none), ``max_lifetime`` the absolute lifetime that sliding never
    extends, ``refresh_interval`` how often an unchanged session's expiry is
    written (default a tenth of ``expire_after``).  ``persistent`` is the
    default of :attr:`Session.persistent`: True gives cookies a Max-Age, False
    browser-session cookies.  ``cookie_options`` takes ``path``, ``domain``,
    ``secure`` (True, False or "auto"), ``httponly``, ``samesite`` and
    ``partitioned``.  With ``lock=True`` requests of one session that touch it
    run one at a time, waiting at most ``lock_timeout`` seconds.  An
    ``adopter`` carries the sessions of a system being replaced over, on a
    browser's first visit (:mod:`wsgisession.adoption`).  ``clock`` returns
    Unix seconds; tests inject their own.
    """

    def __init__(
        self,
        app: WSGIApp,
        store: Optional[Store] = None,
        *,
        cookie_name: str = "session",
        expire_after: Optional[Duration] = DEFAULT_EXPIRE_AFTER,
        max_lifetime: Optional[Duration] = None,
        refresh_interval: Optional[Duration] = None,
        persistent: bool = True,
        cookie_options: Optional[Mapping[str, Any]] = None,
        environ_key: str = DEFAULT_ENVIRON_KEY,
        lock: bool = False,
        lock_timeout: float = 10.0,
        adopter: Optional[Adopter] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if store is None:
            from .stores.memory import MemoryStore

            store = MemoryStore(clock=clock)
        if lock:
            if not store.can_lock:
                reason = (
                    "keeps data in the cookie"
                    if store.client_side
                    else "has no request lock (a store implements lock_session() and sets can_lock = True)"
                )
                raise ValueError(f"lock=True needs a store with a request lock; {type(store).__name__} {reason}")
            if not lock_timeout > 0:
                raise ValueError("lock_timeout must be a positive number of seconds")
        self.app = app
        #: The settings every request's session follows.
        self.lifecycle = Lifecycle(
            store,
            ExpiryPolicy(expire_after, max_lifetime, refresh_interval, clock),
            CookieOptions.from_mapping(cookie_name, cookie_options),
            lock_timeout=lock_timeout if lock else None,
            persistent=bool(persistent),
            adopter=adopter,
        )
        self.environ_key = environ_key

    @property
    def store(self) -> Store:
        """The store sessions are kept in."""
        return self.lifecycle.store

    @property
    def policy(self) -> ExpiryPolicy:
        """The expiry rules."""
        return self.lifecycle.policy

    @property
    def cookie(self) -> CookieOptions:
        """The cookie's name and attributes."""
        return self.lifecycle.cookie

    @property
    def lock_timeout(self) -> Optional[float]:
        """Seconds a request waits for its session's lock; None without ``lock=True``."""
        return self.lifecycle.lock_timeout

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        lifecycle = self.lifecycle
        session = Session(lifecycle, environ)
        environ[self.environ_key] = session
        response = _Response(session, start_response)
        try:
            body = self.app(environ, response.start_response)
        except BaseException:
            response.end(failed=True)
            raise
        if type(body) is list:
            # A finished body: the application can no longer change the
            # session, so the response starts now, without a wrapper.
            if session.accessed:
                try:
                    response.begin()
                finally:
                    response.end()
            return body
        response.body = body
        response.failed = False
        return response


class _Response:
    """One request's response: the wrapped ``start_response`` and ``write``, then the body passed through.

    When the session was accessed by the time the application calls
    ``start_response``, the server's ``start_response`` is called at the
    commit point (:meth:`begin`) with the session's headers added.
    ``close()`` ends the request's lifecycle.
    """

    __slots__ = ("_session", "_start_response", "_status", "_headers", "_exc_info", "_write", "body", "failed")

    _headers: Headers
    _exc_info: Any

    body: Iterable[bytes]
    failed: bool

    def __init__(self, session: Session, start_response: StartResponse) -> None:
        # _headers and _exc_info are set when the server's start_response
        # waits; body and failed when the body is wrapped (__call__).
        self._session = session
        self._start_response = start_response
        self._status: Optional[str] = None
        self._write: Optional[Callable[[bytes], Any]] = None

    def start_response(self, status: str, headers: Headers, exc_info: Any = None) -> Callable[[bytes], Any]:
        if self._write is not None:
            # The response has begun: the server raises exc_info if it has
            # sent the headers, or takes the new ones.
            return self._start_response(status, headers, exc_info)
        self._status = status
        if not self._session.accessed:
            # Nothing to decide: the server gets the response now.  A session
            # first touched later can still save changes, but set no cookie.
            self._write = self._start_response(status, headers, exc_info)
            return self._write
        self._headers, self._exc_info = headers, exc_info
        return self.write

    def begin(self) -> None:
        """The commit point: save the session and hand the server the headers with its cookie."""
        if self._write is None and self._status is not None:
            request = self._session._request  # made when the session was touched, before start_response
            assert request is not None
            headers = request.response_headers(self._status, self._headers)
            self._write = self._start_response(self._status, headers, self._exc_info)
            self._exc_info = None

    def write(self, data: bytes) -> Any:
        if self._write is None:
            if not data:
                return None  # nothing reaches the client yet
            self.begin()
        assert self._write is not None, "write() called before start_response()"
        return self._write(data)

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self.body)
        try:
            if self._write is None:
                for chunk in chunks:
                    if chunk:
                        self.begin()
                        yield chunk
                        break
                else:
                    self.begin()  # an empty body (HEAD, 204, 304): the response starts as it ends
                    return
            yield from chunks
        except BaseException:
            self.failed = True
            raise

    def end(self, *, failed: bool = False) -> None:
        """End the session's lifecycle, if the application touched the session at all."""
        request = self._session._request
        if request is None:
            return  # the session was never touched
        if self._write is not None and not request.responded and not failed:
            # First touched after the server got its start_response call.
            assert self._status is not None
            request.response_started(self._status)
        request.end(failed=failed)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.end(failed=self.failed)


def get_session(environ: Mapping[str, Any], key: str = DEFAULT_ENVIRON_KEY) -> Session:
    """The request's session; raises ``SessionError`` when no SessionMiddleware put one there."""
    try:
        return environ[key]  # type: ignore[no-any-return]
    except KeyError:
        raise SessionError(
            f"no session in environ[{key!r}]: wrap the WSGI app in wsgisession.SessionMiddleware"
        ) from None
