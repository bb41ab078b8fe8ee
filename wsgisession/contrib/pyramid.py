"""Pyramid integration: ``request.session`` as a wsgisession session implementing ``ISession``.

::

    config = Configurator(settings={"wsgisession.store": "sqlite:///sessions.sqlite3"})
    config.include("wsgisession.contrib.pyramid")

``includeme`` reads the ``wsgisession.*`` settings (see
:func:`wsgisession.contrib.middleware_options`) and sets a
:class:`SessionFactory`.  When the app is also wrapped in
:class:`~wsgisession.SessionMiddleware`, ``request.session`` wraps the
middleware's session and the middleware commits; otherwise the factory opens
the session itself, saves it in a response callback (setting the cookie on
Pyramid's response) and ends it in a finished callback, by the rules of
:mod:`wsgisession.lifecycle`.  Only the middleware saves changes made while
the response body is being sent.

Pyramid's flash queues (``flash``/``peek_flash``/``pop_flash``) are lists kept
in the session under ``_f_<queue>``, as in Pyramid.  They are not wsgisession's
read-once flash values, which stay available as ``request.session.wrapped.flash``.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any, List, Mapping, Optional

from pyramid.config import Configurator
from pyramid.interfaces import ISession, ISessionFactory
from pyramid.request import Request
from pyramid.response import Response
from zope.interface import implementer

from ..lifecycle import RequestLifecycle
from ..middleware import SessionMiddleware
from ..session import Session
from ..store import Store
from . import REGISTRY_KEY, SessionProxy, middleware_options

__all__ = ["PyramidSession", "SessionFactory", "session_factory_from_settings", "includeme"]

#: The session key of the CSRF token, the one Pyramid's own sessions use.
CSRF_TOKEN_KEY = "_csrft_"

#: Flash queue ``name`` is stored under ``FLASH_PREFIX + name``, as in Pyramid.
FLASH_PREFIX = "_f_"


@implementer(ISession)
class PyramidSession(SessionProxy):
    """``request.session``: Pyramid's ``ISession`` over a wsgisession :class:`~wsgisession.Session`.

    Values must be JSON-storable (Pyramid 2 asks the same).  ``changed()`` is
    accepted and not needed: in-place changes to values read from the session
    are saved anyway.
    """

    @property
    def created(self) -> int:
        """When the session was created, in whole Unix seconds."""
        return int(self.wrapped.created_at.timestamp())

    def changed(self) -> None:
        """Accepted for ``ISession``; in-place changes are detected without it."""

    def invalidate(self) -> None:
        """Drop the session: its record goes and the cookie is expired; later writes start a new one."""
        self.wrapped.delete()

    def flash(self, msg: Any, queue: str = "", allow_duplicate: bool = True) -> None:
        """Append ``msg`` to flash queue ``queue``; with ``allow_duplicate=False`` a message already there is not added."""
        key = FLASH_PREFIX + queue
        messages = list(self.wrapped.get(key) or [])
        if not allow_duplicate and msg in messages:
            return
        messages.append(msg)
        self.wrapped[key] = messages

    def pop_flash(self, queue: str = "") -> List[Any]:
        """Return flash queue ``queue`` and remove it from the session."""
        return list(self.wrapped.pop(FLASH_PREFIX + queue, None) or [])

    def peek_flash(self, queue: str = "") -> List[Any]:
        """Return flash queue ``queue``, leaving it in the session."""
        return list(self.wrapped.get(FLASH_PREFIX + queue) or [])

    def new_csrf_token(self) -> str:
        """Store and return a new CSRF token: 32 random bytes as hex."""
        token = secrets.token_hex(32)
        self.wrapped[CSRF_TOKEN_KEY] = token
        return token

    def get_csrf_token(self) -> str:
        """The session's CSRF token, made with :meth:`new_csrf_token` when there is none."""
        token = self.wrapped.get(CSRF_TOKEN_KEY)
        if isinstance(token, str) and token:
            return token
        return self.new_csrf_token()

    def check_csrf_token(self, supplied: Any) -> bool:
        """True when ``supplied`` equals the session's token (compared in constant time)."""
        expected = self.wrapped.get(CSRF_TOKEN_KEY)
        if not isinstance(expected, str) or not expected or not isinstance(supplied, str):
            return False
        return hmac.compare_digest(expected.encode("utf-8"), supplied.encode("utf-8", "surrogateescape"))


@implementer(ISessionFactory)
class SessionFactory:
    """Pyramid's session factory: ``SessionFactory(store=None, **options)``, options as for SessionMiddleware.

    Calling it with a request gives the request's :class:`PyramidSession`,
    from the SessionMiddleware around the app when there is one, else opened
    and committed by the factory with these options.
    """

    def __init__(self, store: Optional[Store] = None, **options: Any) -> None:
        #: The settings, held by a SessionMiddleware that is never called itself.
        self.middleware = SessionMiddleware(_no_app, store, **options)

    def __call__(self, request: Request) -> PyramidSession:
        environ = request.environ
        session = environ.get(self.middleware.environ_key)
        if isinstance(session, Session):
            return PyramidSession(session)
        # Finished callbacks always run, so this session's lock is always released.
        lifecycle = self.middleware.lifecycle.begin(environ)
        request.add_response_callback(_Respond(lifecycle))
        request.add_finished_callback(lambda request: lifecycle.end())
        return PyramidSession(lifecycle.session)


class _Respond:
    """The response callback of a session the factory opened: save it, and set Vary and the cookie."""

    __slots__ = ("lifecycle",)

    def __init__(self, lifecycle: RequestLifecycle) -> None:
        self.lifecycle = lifecycle

    def __call__(self, request: Request, response: Response) -> None:
        response.headerlist = self.lifecycle.response_headers(response.status, list(response.headerlist))


def _no_app(environ: Any, start_response: Any) -> Any:
    raise RuntimeError("SessionFactory.middleware holds settings; wrap an app with SessionMiddleware instead")


def session_factory_from_settings(settings: Mapping[str, Any], prefix: str = "wsgisession.") -> SessionFactory:
    """A :class:`SessionFactory` from Pyramid settings (``wsgisession.store``, ``wsgisession.expire_after`` ...)."""
    return SessionFactory(**middleware_options(settings, prefix))


def includeme(config: Configurator) -> None:
    """``config.include("wsgisession.contrib.pyramid")``: set the session factory from the settings."""
    factory = session_factory_from_settings(config.get_settings())
    config.set_session_factory(factory)
    config.registry[REGISTRY_KEY] = factory.middleware
