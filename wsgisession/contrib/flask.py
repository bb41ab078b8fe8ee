"""Flask integration: ``flask.session`` and ``flash()`` backed by a wsgisession store.

::

    from flask import Flask
    from wsgisession.contrib.flask import WsgiSession

    app = Flask(__name__)
    app.config["WSGISESSION_STORE"] = "sqlite:///sessions.sqlite3"
    WsgiSession(app)

``init_app`` wraps ``app.wsgi_app`` in :class:`~wsgisession.SessionMiddleware`
and installs :class:`WsgiSessionInterface`, whose ``open_session`` only wraps
the session the middleware put in ``environ``.  The middleware, not Flask's
``save_session``, saves: just before the response's first byte can leave
(after every ``after_request`` function), so a 5xx response or an exception
persists nothing, changes made while a streamed body is sent are still saved,
and the request lock is held until the body is closed.  Those guarantees are
the same as for any other WSGI app.  Configuration is read once, by
``init_app``.

``WSGISESSION_ADOPT_FLASK_COOKIE = True`` carries the sessions of Flask's own
signed-cookie interface over (read with the interface ``init_app`` replaces),
``WSGISESSION_ADOPT_FLASK_SESSION = True`` those Flask-Session kept in SQL or
Redis (read with Flask-Session's settings): see :mod:`wsgisession.adopters`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSessionInterface, SessionInterface, SessionMixin
from werkzeug.datastructures import Headers

from ..adoption import Adopter
from ..lifecycle import RequestLifecycle
from ..middleware import SessionMiddleware
from ..session import Session
from ..store import Store
from . import SessionProxy, store_from_url

__all__ = ["WsgiSession", "WsgiSessionInterface", "FlaskSession", "options_from_config", "adopter_from_config"]

#: Where ``init_app`` records the app's middleware, in ``app.extensions``.
EXTENSION_NAME = "wsgisession"

# Optional config keys of our own, and the middleware option each sets.
_OWN_OPTIONS = {
    "WSGISESSION_EXPIRE_AFTER": "expire_after",
    "WSGISESSION_MAX_LIFETIME": "max_lifetime",
    "WSGISESSION_REFRESH_INTERVAL": "refresh_interval",
    "WSGISESSION_LOCK": "lock",
    "WSGISESSION_LOCK_TIMEOUT": "lock_timeout",
    "WSGISESSION_ENVIRON_KEY": "environ_key",
}


class FlaskSession(SessionProxy, SessionMixin):  # type: ignore[override]  # read-only ``new``
    """``flask.session``: a wsgisession :class:`~wsgisession.Session` under Flask's session API.

    ``permanent`` is the session's persistence flag (:attr:`wsgisession.Session.persistent`):
    False, as in Flask, unless ``SESSION_PERMANENT`` says otherwise; a
    permanent session's cookie carries a Max-Age, the others last until the
    browser closes, and the idle timeout applies on the server either way.
    ``modified`` is True once the request changed the session, in-place
    changes included.
    """

    def __init__(self, session: Session, opened_for: Optional[RequestLifecycle] = None) -> None:
        super().__init__(session)
        # The lifecycle of a request that did not pass through the middleware
        # (test_request_context, session_transaction): save_session ends it.
        self.opened_for = opened_for
        self._accessed = False

    @property
    def permanent(self) -> bool:
        """Whether the cookie outlives the browser; the server-side idle timeout applies either way."""
        return self.wrapped.persistent

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self.wrapped.persistent = bool(value)

    @property
    def accessed(self) -> bool:
        """True once the session was used in this request (Flask also sets it when ``flask.session`` is used)."""
        return self._accessed or self.wrapped.accessed

    @accessed.setter
    def accessed(self, value: bool) -> None:
        self._accessed = bool(value)

    @property
    def modified(self) -> bool:
        """True once this request changed the session, to the end of the request."""
        return self.wrapped.modified

    @modified.setter
    def modified(self, value: bool) -> None:
        # Flask code sets this after changing a value in place.  Changes are
        # saved whether or not it is set (in-place ones included), so only
        # what it reads back changes.
        self.wrapped._mark_modified(bool(value))


class WsgiSessionInterface(SessionInterface):
    """Flask's session interface over a :class:`~wsgisession.SessionMiddleware`.

    ``open_session`` wraps the session the middleware opened for the request.
    Requests that did not pass through it (``app.test_request_context()``, the
    test client's ``session_transaction()``) get a session begun here with the
    middleware's settings, which ``save_session`` then ends, by the same
    rules (:mod:`wsgisession.lifecycle`).
    """

    def __init__(self, middleware: SessionMiddleware) -> None:
        self.middleware = middleware

    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        """The request's session as a :class:`FlaskSession`; never a null session."""
        environ = request.environ
        session = environ.get(self.middleware.environ_key)
        if isinstance(session, Session):
            return FlaskSession(session)
        # Flask calls save_session for the test client's session_transaction()
        # but not for test_request_context(): such a session is never locked.
        lifecycle = self.middleware.lifecycle.begin(environ, lock=False)
        return FlaskSession(lifecycle.session, opened_for=lifecycle)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """End a session begun by :meth:`open_session`; the middleware saves every other one."""
        if not isinstance(session, FlaskSession) or session.opened_for is None:
            return  # the middleware saves when the response starts
        lifecycle = session.opened_for
        try:
            response.headers = Headers(lifecycle.response_headers(response.status, response.headers.to_wsgi_list()))
        finally:
            lifecycle.end()


def options_from_config(
    app: Flask, *, store: Optional[Store] = None, clock: Callable[[], float] = time.time
) -> Dict[str, Any]:
    """``SessionMiddleware`` keyword arguments from the app's config.

    Reads Flask's keys (``PERMANENT_SESSION_LIFETIME``, ``SESSION_COOKIE_*``,
    and for a cookie store ``app.secret_key`` with ``SECRET_KEY_FALLBACKS``),
    Flask-Session's ``SESSION_PERMANENT`` (the default of ``session.permanent``,
    False when unset, as in Flask) and ours (``WSGISESSION_STORE``, a Store or
    a URL, used unless ``store`` is given, and ``WSGISESSION_*``).  Raises
    ``ValueError`` for settings it can not honour rather than ignoring them.
    """
    config = app.config
    if config.get("SESSION_TYPE") and "WSGISESSION_STORE" not in config:
        raise ValueError(
            "SESSION_TYPE is a Flask-Session setting; set WSGISESSION_STORE to a store or a URL "
            "(memory, cookie, redis://..., sqlite:///...) instead"
        )
    cookie_options: Dict[str, Any] = {
        "path": config.get("SESSION_COOKIE_PATH") or config.get("APPLICATION_ROOT") or "/",
        "domain": config.get("SESSION_COOKIE_DOMAIN") or None,
        "secure": config.get("SESSION_COOKIE_SECURE", False),
        "httponly": config.get("SESSION_COOKIE_HTTPONLY", True),
        "partitioned": config.get("SESSION_COOKIE_PARTITIONED", False),
    }
    if config.get("SESSION_COOKIE_SAMESITE"):
        cookie_options["samesite"] = config["SESSION_COOKIE_SAMESITE"]
    # Flask's default None keeps wsgisession's Lax; WSGISESSION_COOKIE_OPTIONS
    # = {"samesite": None} leaves the attribute out.
    cookie_options.update(config.get("WSGISESSION_COOKIE_OPTIONS") or {})
    options: Dict[str, Any] = {
        "cookie_name": config.get("SESSION_COOKIE_NAME") or "session",
        "expire_after": app.permanent_session_lifetime,
        "persistent": bool(config.get("SESSION_PERMANENT", False)),
        "cookie_options": cookie_options,
        "clock": clock,
    }
    for key, option in _OWN_OPTIONS.items():
        if key in config:
            options[option] = config[key]
    if store is None:
        store = config.get("WSGISESSION_STORE", "memory")
    if isinstance(store, str):
        # app.secret_key, as Flask's own session reads it: the SECRET_KEY
        # setting, or a secret_key attribute set on the app or its class.
        secret_keys = _secret_keys(app)
        if store.strip().lower() in ("cookie", "cookie://") and not app.secret_key:
            raise ValueError(
                "the cookie store signs sessions with the app's secret key: set SECRET_KEY (app.secret_key)"
            )
        store = store_from_url(store, secret_key=secret_keys, clock=clock)
    options["store"] = store
    return options


def _secret_keys(app: Flask) -> List[Any]:
    # The keys Flask itself signs and verifies with: the fallbacks, then the current one.
    return [key for key in [*(app.config.get("SECRET_KEY_FALLBACKS") or []), app.secret_key] if key]


def adopter_from_config(
    app: Flask,
    original_interface: SessionInterface,
    *,
    store: Store,
    adopt_flask_cookie: Optional[bool] = None,
    adopt_flask_session: Optional[bool] = None,
    clock: Callable[[], float] = time.time,
) -> Optional[Adopter]:
    """The adopter the app's config asks for, or None.

    ``WSGISESSION_ADOPT_FLASK_COOKIE`` (or ``adopt_flask_cookie``) adopts the
    cookies ``original_interface``, Flask's signed-cookie interface, signed;
    ``WSGISESSION_ADOPT_FLASK_COOKIE_MAX_AGE`` shortens the age up to which
    they are adopted (``PERMANENT_SESSION_LIFETIME``).
    ``WSGISESSION_ADOPT_FLASK_SESSION`` (or ``adopt_flask_session``) adopts
    Flask-Session's records, found with its keys (``SESSION_TYPE`` "redis"
    with ``SESSION_REDIS``, or "sqlalchemy" with ``SESSION_SQLALCHEMY``, the
    Flask-SQLAlchemy object or an Engine,
    ``SESSION_SQLALCHEMY_TABLE``, ``SESSION_SQLALCHEMY_SCHEMA``,
    ``SESSION_SQLALCHEMY_BIND_KEY``; ``SESSION_KEY_PREFIX``,
    ``SESSION_USE_SIGNER``); ``WSGISESSION_ADOPT_PICKLE = True`` reads the
    pickled records of Flask-Session before 0.7.  Raises ``ValueError`` for
    settings it can not honour, and when ``store`` would share
    Flask-Session's table.
    """
    config = app.config
    if adopt_flask_cookie is None:
        adopt_flask_cookie = bool(config.get("WSGISESSION_ADOPT_FLASK_COOKIE", False))
    if adopt_flask_session is None:
        adopt_flask_session = bool(config.get("WSGISESSION_ADOPT_FLASK_SESSION", False))
    if adopt_flask_cookie and adopt_flask_session:
        raise ValueError("adopt Flask's cookie sessions or Flask-Session's, not both: an app used one of them")
    if adopt_flask_cookie:
        from ..adopters.flask_cookie import FlaskCookieAdopter

        if not isinstance(original_interface, SecureCookieSessionInterface):
            raise ValueError(
                "WSGISESSION_ADOPT_FLASK_COOKIE adopts the sessions of Flask's signed-cookie interface, "
                f"but the app's session interface is {type(original_interface).__name__}"
            )
        return FlaskCookieAdopter(
            app, original_interface, max_age=config.get("WSGISESSION_ADOPT_FLASK_COOKIE_MAX_AGE"), clock=clock
        )
    if adopt_flask_session:
        return _flask_session_adopter(app, store, clock)
    return None


def _flask_session_adopter(app: Flask, store: Store, clock: Callable[[], float]) -> Adopter:
    from ..adopters.flask_session import FlaskSessionRedisAdopter, FlaskSessionSQLAlchemyAdopter

    config = app.config
    # Flask-Session's cookie is Flask's: the same settings name and place it.
    cookie = SessionInterface()
    options: Dict[str, Any] = {
        "key_prefix": config.get("SESSION_KEY_PREFIX", "session:"),
        "use_signer": bool(config.get("SESSION_USE_SIGNER", False)),
        "secret_key": _secret_keys(app),
        "cookie_name": cookie.get_cookie_name(app),
        "cookie_path": cookie.get_cookie_path(app),
        "cookie_domain": cookie.get_cookie_domain(app),
        "allow_pickle": bool(config.get("WSGISESSION_ADOPT_PICKLE", False)),
    }
    kind = str(config.get("SESSION_TYPE") or "").lower()
    if kind == "redis":
        client = config.get("SESSION_REDIS")
        if client is None:
            raise ValueError("WSGISESSION_ADOPT_FLASK_SESSION needs SESSION_REDIS, the Redis client Flask-Session used")
        return FlaskSessionRedisAdopter(client, **options)
    if kind == "sqlalchemy":
        adopter = FlaskSessionSQLAlchemyAdopter(
            _flask_session_engine(app),
            config.get("SESSION_SQLALCHEMY_TABLE") or "sessions",
            schema=config.get("SESSION_SQLALCHEMY_SCHEMA"),
            clock=clock,
            **options,
        )
        if adopter.shares_table_with(store):
            raise ValueError(
                f"wsgisession's SQLAlchemyStore and Flask-Session both use the table {adopter.table.fullname!r} "
                "of one database: give the store a table of its own, "
                'SQLAlchemyStore(url, table_name="wsgisession_sessions")'
            )
        return adopter
    raise ValueError(
        "WSGISESSION_ADOPT_FLASK_SESSION adopts the sessions of Flask-Session's redis and sqlalchemy backends; "
        f"SESSION_TYPE is {config.get('SESSION_TYPE')!r}"
    )


def _flask_session_engine(app: Flask) -> Any:
    # SESSION_SQLALCHEMY is the Flask-SQLAlchemy object Flask-Session used
    # (its engine is the app's, found in an app context); an Engine or a URL
    # also serves.  Flask-Session's own fallback, a new Flask-SQLAlchemy
    # object, is not repeated: it may resolve a relative SQLite path elsewhere.
    import sqlalchemy as sa

    config = app.config
    database = config.get("SESSION_SQLALCHEMY")
    if database is None:
        raise ValueError(
            "WSGISESSION_ADOPT_FLASK_SESSION needs SESSION_SQLALCHEMY: the Flask-SQLAlchemy object "
            "(or an Engine or URL) of the database Flask-Session used"
        )
    if isinstance(database, (str, sa.URL, sa.Engine)):
        return database
    with app.app_context():
        return database.engines[config.get("SESSION_SQLALCHEMY_BIND_KEY")]


class WsgiSession:
    """The Flask extension: ``WsgiSession(app)``, or ``WsgiSession()`` then ``init_app(app)``.

    Keyword arguments are ``SessionMiddleware`` options and win over the app's
    config; ``store`` may be given here or as ``WSGISESSION_STORE``.
    ``adopt_flask_cookie`` and ``adopt_flask_session``, when not None, win
    over ``WSGISESSION_ADOPT_FLASK_COOKIE`` and
    ``WSGISESSION_ADOPT_FLASK_SESSION`` (see :func:`adopter_from_config`).
    """

    def __init__(
        self,
        app: Optional[Flask] = None,
        store: Optional[Store] = None,
        *,
        adopt_flask_cookie: Optional[bool] = None,
        adopt_flask_session: Optional[bool] = None,
        **options: Any,
    ) -> None:
        self.store = store
        self.adopt_flask_cookie = adopt_flask_cookie
        self.adopt_flask_session = adopt_flask_session
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> SessionMiddleware:
        """Wrap ``app.wsgi_app`` in the middleware and install the session interface; returns the middleware."""
        if EXTENSION_NAME in app.extensions:
            raise RuntimeError("wsgisession is already set up on this app")
        clock = self.options.get("clock", time.time)
        options = options_from_config(app, store=self.store, clock=clock)
        explicit = dict(self.options)
        options["cookie_options"] = {**options["cookie_options"], **(explicit.pop("cookie_options", None) or {})}
        options.update(explicit)
        # The interface about to be replaced is the one that signed the
        # sessions of Flask's own cookie.
        adopter = adopter_from_config(
            app,
            app.session_interface,
            store=options["store"],
            adopt_flask_cookie=self.adopt_flask_cookie,
            adopt_flask_session=self.adopt_flask_session,
            clock=clock,
        )
        if adopter is not None:
            if options.get("adopter") is not None:
                raise ValueError("an adopter was given, and the config asks for another: give one")
            options["adopter"] = adopter
        middleware = SessionMiddleware(app.wsgi_app, **options)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.session_interface = WsgiSessionInterface(middleware)
        app.extensions[EXTENSION_NAME] = middleware
        return middleware
