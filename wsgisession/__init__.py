"""wsgisession: sessions for WSGI applications, correct under concurrency.

::

    from wsgisession import SessionMiddleware, get_session

    def app(environ, start_response):
        session = get_session(environ)
        session["visits"] = session.get("visits", 0) + 1
        ...

    app = SessionMiddleware(app)
"""

from .errors import SessionCookieTooLarge, SessionError, SessionLockTimeout, SessionStoreError
from .middleware import SessionMiddleware, get_session
from .session import Session

__all__ = [
    "SessionMiddleware",
    "Session",
    "get_session",
    "SessionError",
    "SessionStoreError",
    "SessionLockTimeout",
    "SessionCookieTooLarge",
]

__version__ = "0.2.0.dev0"
