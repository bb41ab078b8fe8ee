"""The WSGI flow: put a lazy session in environ, commit it when the response starts."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional, Tuple

from .cookies import CookieOptions
from .errors import SessionError
from .expiry import DEFAULT_EXPIRE_AFTER, Duration, ExpiryPolicy
from .session import EXPIRE_COOKIE, Session
from .store import Store, WSGIEnviron

__all__ = ["SessionMiddleware", "get_session", "DEFAULT_ENVIRON_KEY"]

#: Where the session is put in ``environ`` unless configured otherwise.
DEFAULT_ENVIRON_KEY = "wsgisession.session"

StartResponse = Callable[..., Callable[[bytes], Any]]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]
Headers = List[Tuple[str, str]]


class SessionMiddleware:
    """WSGI middleware that gives every request a session in ``environ``.

    ``store`` defaults to a new :class:`~wsgisession.stores.memory.MemoryStore`.
    ``expire_after`` is the sliding idle timeout (seconds or a timedelta; None
    for none), ``max_lifetime`` the absolute lifetime that sliding never
    extends, ``refresh_interval`` how often an unchanged session's expiry is
    written (default a tenth of ``expire_after``).  ``cookie_options`` takes
    ``path``, ``domain``, ``secure`` (True, False or "auto"), ``httponly``,
    ``samesite`` and ``partitioned``.  With ``lock=True`` requests of one
    session that touch it run one at a time, waiting at most ``lock_timeout``
    seconds.  ``clock`` returns Unix seconds; tests inject their own.
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
        cookie_options: Optional[Mapping[str, Any]] = None,
        environ_key: str = DEFAULT_ENVIRON_KEY,
        lock: bool = False,
        lock_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if store is None:
            from .stores.memory import MemoryStore

            store = MemoryStore(clock=clock)
        if lock:
            if store.client_side:
                raise ValueError(
                    f"lock=True needs a server-side store; {type(store).__name__} keeps data in the cookie"
                )
            if type(store).lock_session is Store.lock_session:
                raise ValueError(f"{type(store).__name__} does not implement lock_session(), so lock=True can not work")
            if not lock_timeout > 0:
                raise ValueError("lock_timeout must be a positive number of seconds")
        self.app = app
        self.store = store
        self.policy = ExpiryPolicy(expire_after, max_lifetime, refresh_interval, clock)
        self.cookie = CookieOptions.from_mapping(cookie_name, cookie_options)
        self.environ_key = environ_key
        self.lock_timeout = lock_timeout if lock else None

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        session = Session(self.store, self.policy, self.cookie, environ, self.lock_timeout)
        environ[self.environ_key] = session
        response = _Response(self, session, environ, start_response)
        try:
            body = self.app(environ, response.start_response)
        except BaseException:
            session.finish(persist=False)
            raise
        if type(body) is list:
            # A list body is finished: the app can no longer touch the session,
            # so it is ended now, without wrapping the body.
            if session.accessed:
                session.finish(persist=not response.failed)
            return body
        response.body = body
        return response

    def _session_headers(self, session: Session, headers: Headers, environ: WSGIEnviron, *, commit: bool) -> Headers:
        # ``headers`` plus what the session adds when the response starts:
        # Vary, and (when ``commit``) the Set-Cookie of the saved session.
        headers = list(headers)
        if not _varies_on_cookie(headers):
            headers.append(("Vary", "Cookie"))
        if commit:
            set_cookie = self.commit_session(session, environ)
            if set_cookie is not None:
                headers.append(("Set-Cookie", set_cookie))
        return headers

    def commit_session(self, session: Session, environ: WSGIEnviron) -> Optional[str]:
        """Save the session's changes; return the Set-Cookie value the response needs, or None.

        Integrations that set headers on their framework's response object
        call it when the response starts (and skip it for server errors).
        """
        update = session.commit(headers_open=True)
        if update is None:
            return None
        if update is EXPIRE_COOKIE:
            return self.cookie.expire_header(environ)
        value, max_age = update
        return self.cookie.set_header(value, max_age, environ)


def _varies_on_cookie(headers: Headers) -> bool:
    for name, value in headers:
        if name.lower() == "vary":
            varies = {part.strip().lower() for part in value.split(",")}
            if "cookie" in varies or "*" in varies:
                return True
    return False


class _Response:
    """One request's response: the wrapped ``start_response``, then the body passed through.

    On ``close()`` the session saves changes made while the body streamed
    (unless the response failed) and releases its request lock.
    """

    __slots__ = ("_middleware", "_session", "_environ", "_start_response", "body", "failed")

    def __init__(
        self, middleware: SessionMiddleware, session: Session, environ: WSGIEnviron, start_response: StartResponse
    ) -> None:
        self._middleware = middleware
        self._session = session
        self._environ = environ
        self._start_response = start_response
        self.body: Iterable[bytes] = ()
        self.failed = False

    def start_response(self, status: str, headers: Headers, exc_info: Any = None) -> Callable[[bytes], Any]:
        if self._session.accessed:
            if status[:1] == "5":
                self.failed = True  # nothing is persisted for a server error
            headers = self._middleware._session_headers(self._session, headers, self._environ, commit=not self.failed)
        return self._start_response(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.body
        except BaseException:
            self.failed = True
            raise

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self._session.finish(persist=not self.failed)


def get_session(environ: Mapping[str, Any], key: str = DEFAULT_ENVIRON_KEY) -> Session:
    """The request's session; raises ``SessionError`` when no SessionMiddleware put one there."""
    try:
        return environ[key]  # type: ignore[no-any-return]
    except KeyError:
        raise SessionError(
            f"no session in environ[{key!r}]: wrap the WSGI app in wsgisession.SessionMiddleware"
        ) from None
