"""Adopting Flask's default session: the data it keeps in a signed cookie.

The cookie is checked exactly as the app's own session interface checks it
(its ``get_signing_serializer``: the secret key and ``SECRET_KEY_FALLBACKS``,
the interface's salt, key derivation, digest and serializer), and is no older
than ``PERMANENT_SESSION_LIFETIME``.  A cookie that fails any of this is
ignored like any bad cookie.

Flask keeps no record of its sessions on the server, so nothing can mark an
adopted cookie as used: a copy of it can be adopted again until it is older
than the maximum age (see ``docs/migrating.rst``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Optional

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadData
from werkzeug.http import parse_cookie

from ..adoption import Adoption, LegacyCookie
from ..expiry import Duration, to_seconds

__all__ = ["FlaskCookieAdopter"]

log = logging.getLogger("wsgisession")


class FlaskCookieAdopter:
    """``adopter(environ)`` for the sessions of ``app`` kept by Flask's signed-cookie interface.

    ``interface`` is the session interface that signed the cookies: Flask's
    :class:`~flask.sessions.SecureCookieSessionInterface` or a subclass
    (default: ``app.session_interface``, so build the adopter before anything
    replaces it).  Cookies signed more than ``max_age`` ago (at most, and by
    default, ``PERMANENT_SESSION_LIFETIME``) are ignored, by ``clock``.  The
    adopted session keeps Flask's ``_permanent`` as its persistence; the
    other keys, ``_flashes`` included, become its data.
    """

    def __init__(
        self,
        app: Flask,
        interface: Optional[SecureCookieSessionInterface] = None,
        *,
        max_age: Optional[Duration] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interface is None:
            interface = app.session_interface  # type: ignore[assignment]
        if not isinstance(interface, SecureCookieSessionInterface):
            raise ValueError(
                f"Flask's cookie sessions can only be adopted with the interface that signed them, "
                f"a SecureCookieSessionInterface; the app's session interface is {type(interface).__name__}"
            )
        serializer = interface.get_signing_serializer(app)
        if serializer is None:
            raise ValueError("adopting Flask's cookie sessions needs the secret key that signed them: set SECRET_KEY")
        self.serializer = serializer
        # Flask's own limit, which its open_session passes to loads(); a
        # shorter one closes the window for copied cookies sooner.
        lifetime = app.permanent_session_lifetime.total_seconds()
        shorter = to_seconds(max_age, "max_age")
        #: Seconds since signing after which a cookie is no longer adopted.
        self.max_age = lifetime if shorter is None else min(lifetime, shorter)
        self.clock = clock
        name = interface.get_cookie_name(app)
        self.cookie = LegacyCookie(name, interface.get_cookie_path(app), interface.get_cookie_domain(app))
        #: The cookie removed from browsers that bring a wsgisession session beside it.
        self.legacy_cookies = (self.cookie,)

    def __call__(self, environ: Dict[str, Any]) -> Optional[Adoption]:
        """The Flask session the request's cookie holds, or None for no cookie or one that does not verify."""
        value = parse_cookie(environ).get(self.cookie.name)
        if not value:
            return None
        try:
            data, signed_at = self.serializer.loads(value, return_timestamp=True)
        except BadData:
            log.debug("a Flask session cookie did not verify; it was not adopted")
            return None
        if self.clock() - signed_at.timestamp() > self.max_age:
            log.debug("a Flask session cookie was older than its maximum age; it was not adopted")
            return None
        if not isinstance(data, dict):
            return None
        values = dict(data)
        persistent = bool(values.pop("_permanent", False))
        return Adoption(data=values, expire=[self.cookie], persistent=persistent)

    def __repr__(self) -> str:
        return f"<FlaskCookieAdopter cookie={self.cookie.name!r}>"
