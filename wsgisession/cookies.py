"""The session cookie: its attributes in one object, read and written with werkzeug."""

from __future__ import annotations

import logging
from typing import Any, List, Mapping, Optional, Tuple, Union

from werkzeug.http import dump_cookie
from werkzeug.sansio.http import parse_cookie as parse_cookie_pairs

from .errors import SessionCookieTooLarge

log = logging.getLogger("wsgisession")

#: Browsers keep cookies up to 4096 bytes, name, value and attributes together.
BROWSER_COOKIE_LIMIT = 4096

_SAMESITE = {"strict": "Strict", "lax": "Lax", "none": "None"}


class CookieOptions:
    """The attributes of the session cookie.

    ``secure`` may be ``"auto"``: the cookie is then Secure exactly when the
    request came over https (``wsgi.url_scheme``; behind a TLS proxy use
    werkzeug's ``ProxyFix`` so that scheme is right).
    """

    __slots__ = ("name", "path", "domain", "secure", "httponly", "samesite", "partitioned")

    def __init__(
        self,
        name: str = "session",
        *,
        path: str = "/",
        domain: Optional[str] = None,
        secure: Union[bool, str] = False,
        httponly: bool = True,
        samesite: Optional[str] = "Lax",
        partitioned: bool = False,
    ) -> None:
        if not name or any(char in name for char in ' =;,"\t\r\n'):
            raise ValueError(f"invalid cookie name {name!r}")
        if secure not in (True, False, "auto"):
            raise ValueError(f'secure must be True, False or "auto", not {secure!r}')
        if samesite is not None:
            if samesite.lower() not in _SAMESITE:
                raise ValueError(f'samesite must be "Strict", "Lax", "None" or None, not {samesite!r}')
            samesite = _SAMESITE[samesite.lower()]
            if samesite == "None" and secure is False:
                raise ValueError('samesite="None" needs secure=True (browsers drop it otherwise)')
        if partitioned and secure is False:
            raise ValueError("partitioned cookies need secure=True")
        self.name = name
        self.path = path
        self.domain = domain
        self.secure = secure
        self.httponly = httponly
        self.samesite = samesite
        self.partitioned = partitioned

    @classmethod
    def from_mapping(cls, name: str, options: Optional[Mapping[str, Any]]) -> CookieOptions:
        """Build from the middleware's ``cookie_options`` dict; unknown keys are an error."""
        options = dict(options or {})
        known = {"path", "domain", "secure", "httponly", "samesite", "partitioned"}
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"unknown cookie options: {', '.join(sorted(unknown))}")
        return cls(name, **options)

    def read(self, environ: Mapping[str, Any]) -> Optional[str]:
        """The session cookie's value from the request, or None.

        Only a cookie whose name is exactly ours is read; no other cookie,
        however malformed, changes the outcome.  Browsers send the most
        specific of several same-named cookies first, so the first one wins.
        """
        header = environ.get("HTTP_COOKIE")
        # Most requests without our cookie are answered by this substring test.
        if not header or self.name not in header:
            return None
        if ";" not in header:
            pairs = [header]  # one cookie, the common case
        else:
            pairs = header.split(";")
        for pair in pairs:
            if pair.partition("=")[0].strip() == self.name:
                return _value(pair)
        return None

    def is_secure(self, environ: Mapping[str, Any]) -> bool:
        """Whether the cookie gets the Secure attribute for this request."""
        if self.secure == "auto":
            return environ.get("wsgi.url_scheme") == "https"
        return bool(self.secure)

    def set_header(self, value: str, max_age: Optional[int], environ: Mapping[str, Any]) -> str:
        """The Set-Cookie header value that stores ``value`` in the browser.

        Raises ``SessionCookieTooLarge`` when browsers would drop the cookie.
        """
        header = dump_cookie(
            self.name,
            value,
            max_age=max_age,
            path=self.path,
            domain=self.domain,
            secure=self.is_secure(environ),
            httponly=self.httponly,
            samesite=self.samesite,
            partitioned=self.partitioned,
            # Max-Age alone: every browser in use honours it, and formatting
            # the matching Expires date would triple the cost of this call.
            sync_expires=False,
            max_size=0,  # the size check below raises instead of werkzeug's warning
        )
        if len(header) > BROWSER_COOKIE_LIMIT:
            raise SessionCookieTooLarge(len(header), BROWSER_COOKIE_LIMIT)
        return header

    def expire_header(self, environ: Mapping[str, Any]) -> str:
        """The Set-Cookie header value that removes the cookie, with the same Path and Domain."""
        return self.expire_other(self.name, self.path, self.domain, environ)

    def expire_other(self, name: str, path: str, domain: Optional[str], environ: Mapping[str, Any]) -> str:
        """The Set-Cookie header value that removes the cookie ``name`` set with this ``path`` and ``domain``."""
        return dump_cookie(
            name,
            "",
            max_age=0,
            expires=0,
            path=path,
            domain=domain,
            secure=self.is_secure(environ),
            httponly=self.httponly,
            samesite=self.samesite,
            partitioned=self.partitioned,
        )


def count_cookies(environ: Mapping[str, Any], name: str) -> int:
    """How many cookies named ``name`` the request carries (a browser sends one per path and domain)."""
    header = environ.get("HTTP_COOKIE")
    if not header or name not in header:
        return 0
    return sum(1 for pair in header.split(";") if pair.partition("=")[0].strip() == name)


def _value(pair: str) -> Optional[str]:
    # One "name=value" pair.  A plain value is its own text; a quoted one is
    # unquoted by werkzeug's parser.
    if pair.isascii():
        value = pair.partition("=")[2].strip()
        if '"' not in value:
            return value
    else:
        try:
            # WSGI gives the header as latin-1 text; cookies are UTF-8 bytes.
            pair = pair.encode("latin-1").decode("utf-8")
        except UnicodeError:
            log.debug("rejected a session cookie that is not valid UTF-8")
            return None
    # cls=list keeps werkzeug's (name, value) pairs without building a MultiDict.
    pairs: List[Tuple[str, str]] = parse_cookie_pairs(pair, cls=list)  # type: ignore[arg-type,assignment]
    return pairs[0][1] if pairs else None
