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
        response = _Response(session)

        def session_start_response(status: str, headers: Headers, exc_info: Any = None) -> Callable[[bytes], Any]:
            if session.accessed:
                headers = self._session_headers(session, status, headers, environ, response)
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, session_start_response)
        except BaseException:
            session.finish(persist=False)
            raise
        if not session.accessed and type(body) is list:
            # A finished list body can no longer touch the session: nothing to do.
            return body
        return _ClosingBody(body, response)

    def _session_headers(
        self, session: Session, status: str, headers: Headers, environ: WSGIEnviron, response: _Response
    ) -> Headers:
        headers = list(headers)
        if not _varies_on_cookie(headers):
            headers.append(("Vary", "Cookie"))
        if status[:1] == "5":
            response.failed = True  # nothing is persisted for a server error
            return headers
        update = session.commit(headers_open=True)
        if update is not None:
            if update is EXPIRE_COOKIE:
                headers.append(("Set-Cookie", self.cookie.expire_header(environ)))
            else:
                value, max_age = update
                headers.append(("Set-Cookie", self.cookie.set_header(value, max_age, environ)))
        return headers


def _varies_on_cookie(headers: Headers) -> bool:
    for name, value in headers:
        if name.lower() == "vary":
            varies = {part.strip().lower() for part in value.split(",")}
            if "cookie" in varies or "*" in varies:
                return True
    return False


class _Response:
    """What the middleware learned about the response so far."""

    __slots__ = ("session", "failed")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.failed = False


class _ClosingBody:
    """The app's body, passed through; on close the session saves late changes and unlocks."""

    __slots__ = ("_body", "_response")

    def __init__(self, body: Iterable[bytes], response: _Response) -> None:
        self._body = body
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except BaseException:
            self._response.failed = True
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._response.session.finish(persist=not self._response.failed)


def get_session(environ: Mapping[str, Any], key: str = DEFAULT_ENVIRON_KEY) -> Session:
    """The request's session; raises ``SessionError`` when no SessionMiddleware put one there."""
    try:
        return environ[key]  # type: ignore[no-any-return]
    except KeyError:
        raise SessionError(
            f"no session in environ[{key!r}]: wrap the WSGI app in wsgisession.SessionMiddleware"
        ) from None
