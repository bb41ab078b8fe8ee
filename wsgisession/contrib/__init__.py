"""Framework integrations, and the pieces they share.

``wsgisession.contrib.flask``, ``.bottle`` and ``.pyramid`` each import their
framework; ``.paste`` builds the middleware for PasteDeploy ini files.  This
module imports no framework.  It holds what more than one integration needs:

* :func:`store_from_url` and :func:`middleware_options`, which turn settings
  (ini strings, Pyramid settings, Flask config) into a store and the keyword
  arguments of :class:`~wsgisession.SessionMiddleware`;
* :class:`SessionProxy`, the mapping the Flask and Pyramid session objects
  wrap a :class:`~wsgisession.Session` with.

An integration that opens a session itself (Flask's test helpers, Pyramid
without the middleware) begins it with ``middleware.lifecycle.begin(environ)``
and follows :mod:`wsgisession.lifecycle`, like the middleware does.
"""

from __future__ import annotations

import datetime
import importlib
import time
from collections.abc import ItemsView, KeysView, MutableMapping, ValuesView
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

from ..session import Session
from ..store import Store

__all__ = [
    "REGISTRY_KEY",
    "store_from_url",
    "middleware_options",
    "SessionProxy",
]

#: The key under which an integration that opens sessions itself (Pyramid's
#: ``includeme``) keeps its settings, a :class:`~wsgisession.SessionMiddleware`, in the
#: framework's registry; ``wsgisession.testing`` looks for it there.
REGISTRY_KEY = "wsgisession.middleware"

_MISSING: Any = object()

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"", "none", "never"}

# Store constructor options that may be given as settings, with their types.
# Anything more needs a Store object or a "module:factory" store setting.
_STORE_OPTIONS: Dict[str, Callable[[str], Any]] = {
    "table_name": str,
    "prefix": str,
    "salt": str,
    "sweep_every": int,
}


def store_from_url(
    url: str, *, secret_key: Any = None, clock: Callable[[], float] = time.time, **options: Any
) -> Store:
    """The store a URL names; ``options`` go to the store's constructor.

    ``memory``, ``cookie`` (needs ``secret_key``), ``redis://``, ``rediss://``,
    ``unix://``, ``redis+sentinel://`` or ``redis+cluster://`` URLs (see
    :doc:`/stores/redis`), any SQLAlchemy URL (``sqlite:///sessions.sqlite3``,
    ``postgresql+psycopg://...``), or ``package.module:name`` naming a Store,
    or a callable that returns one.  Raises ``ValueError`` for anything else.
    """
    url = url.strip()
    lowered = url.lower()
    if lowered in ("memory", "memory://"):
        from ..stores.memory import MemoryStore

        return MemoryStore(clock=clock, **options)
    if lowered in ("cookie", "cookie://"):
        if not secret_key:
            raise ValueError("the cookie store needs a secret key (the secret_key setting)")
        from ..stores.cookie import CookieStore

        return CookieStore(secret_key, **options)
    scheme, separator, _ = lowered.partition("://")
    # redis://, rediss://, unix:// and the redis+<kind>:// forms (sentinel,
    # cluster) are Redis's; RedisStore knows the kinds.
    if separator and (scheme.partition("+")[0] in ("redis", "rediss") or scheme == "unix"):
        from ..stores.redis import RedisStore

        return RedisStore(url, clock=clock, **options)
    if separator:
        from ..stores.sqlalchemy import SQLAlchemyStore

        return SQLAlchemyStore(url, clock=clock, **options)
    module_name, colon, attribute = url.partition(":")
    if colon and module_name and attribute:
        found = getattr(importlib.import_module(module_name), attribute)
        if isinstance(found, Store):
            if options:
                raise ValueError(f"{url} is a store object already; it takes no store options")
            return found
        store = found(**options)
        if not isinstance(store, Store):
            raise ValueError(f"{url} gave {store!r}, not a wsgisession Store")
        return store
    raise ValueError(
        f"unknown session store {url!r}: use memory, cookie, a redis:// (or redis+sentinel://, redis+cluster://) or SQLAlchemy URL, or module:name"
    )


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, not {value!r}")


def _duration(name: str, value: Any) -> Any:
    # A timedelta or a number passes through (SessionMiddleware checks it);
    # text is seconds, or none/never for no limit.
    if value is None or isinstance(value, (int, float, datetime.timedelta)):
        return value
    text = str(value).strip().lower()
    if text in _NONE:
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number of seconds or none, not {value!r}") from None


def _secure(name: str, value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    return _boolean(name, value)


def _samesite(name: str, value: Any) -> Optional[str]:
    # "none" is SameSite=None; an empty value leaves the attribute out.
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _secret_keys(value: Any) -> Any:
    # Several keys separated by whitespace, oldest first: the newest signs.
    if isinstance(value, str):
        keys = value.split()
        return keys[0] if len(keys) == 1 else keys
    return value


_COOKIE_SETTINGS: Dict[str, Callable[[str, Any], Any]] = {
    "path": lambda name, value: str(value),
    "domain": lambda name, value: str(value).strip() or None,
    "secure": _secure,
    "httponly": _boolean,
    "samesite": _samesite,
    "partitioned": _boolean,
}


def middleware_options(
    settings: Mapping[str, Any], prefix: str = "", *, clock: Optional[Callable[[], float]] = None
) -> Dict[str, Any]:
    """Keyword arguments for ``SessionMiddleware`` (``store`` included) from settings.

    Reads the keys that start with ``prefix``: ``store`` (a Store or a URL for
    :func:`store_from_url`), ``secret_key``, ``store.<option>``,
    ``cookie_name``, ``cookie_<attribute>``, ``expire_after``,
    ``max_lifetime``, ``refresh_interval`` (seconds or ``none``),
    ``persistent``, ``lock``, ``lock_timeout`` and ``environ_key``; values may be text, as in an ini
    file.  An unknown key is a ``ValueError``, so a typo is not ignored.
    """
    options: Dict[str, Any] = {}
    cookie_options: Dict[str, Any] = {}
    store_options: Dict[str, Any] = {}
    store: Any = None
    secret_key: Any = None
    for full_name, value in settings.items():
        if not full_name.startswith(prefix):
            continue
        name = full_name[len(prefix) :]
        if name == "store":
            store = value
        elif name == "secret_key":
            secret_key = _secret_keys(value)
        elif name.startswith("store."):
            option = name[len("store.") :]
            if option not in _STORE_OPTIONS:
                raise ValueError(f"unknown store setting {full_name!r}; known: {', '.join(sorted(_STORE_OPTIONS))}")
            store_options[option] = _STORE_OPTIONS[option](value)
        elif name.startswith("cookie_") and name[len("cookie_") :] in _COOKIE_SETTINGS:
            attribute = name[len("cookie_") :]
            cookie_options[attribute] = _COOKIE_SETTINGS[attribute](full_name, value)
        elif name in ("cookie_name", "environ_key"):
            options[name] = str(value).strip()
        elif name in ("expire_after", "max_lifetime", "refresh_interval"):
            options[name] = _duration(full_name, value)
        elif name in ("lock", "persistent"):
            options[name] = _boolean(full_name, value)
        elif name == "lock_timeout":
            options["lock_timeout"] = _duration(full_name, value)
        else:
            raise ValueError(f"unknown session setting {full_name!r}")
    if clock is not None:
        options["clock"] = clock
    if secret_key is not None and not (isinstance(store, str) and store.strip().lower() in ("cookie", "cookie://")):
        raise ValueError("secret_key is the cookie store's setting: set store = cookie with it")
    if isinstance(store, str):
        store = store_from_url(store, secret_key=secret_key, clock=clock or time.time, **store_options)
    elif store_options:
        raise ValueError("store.<option> settings need the store setting to be a URL")
    options["store"] = store
    if cookie_options:
        options["cookie_options"] = cookie_options
    return options


class SessionProxy(MutableMapping[str, Any]):
    """A mapping that hands every operation to a wsgisession :class:`~wsgisession.Session`.

    The Flask and Pyramid session objects build on it.  It keeps the
    Session's rules: reading a flash value removes it, values are JSON-storable,
    and in-place changes to values read from it are saved.
    """

    __slots__ = ("wrapped",)

    def __init__(self, session: Session) -> None:
        #: The wsgisession Session behind this object.
        self.wrapped = session

    def __getitem__(self, key: str) -> Any:
        return self.wrapped[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.wrapped[key] = value

    def __delitem__(self, key: str) -> None:
        del self.wrapped[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.wrapped)

    def __len__(self) -> int:
        return len(self.wrapped)

    def __contains__(self, key: object) -> bool:
        return key in self.wrapped

    def get(self, key: str, default: Any = None) -> Any:
        """The value for ``key``, or ``default``; reading a flash value removes it."""
        return self.wrapped.get(key, default)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value (or ``default``; KeyError without one)."""
        if default is _MISSING:
            return self.wrapped.pop(key)
        return self.wrapped.pop(key, default)

    def popitem(self) -> Tuple[str, Any]:
        """Remove some key and return it with its value; KeyError when empty."""
        return self.wrapped.popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        """``self[key]`` if present, else set it to ``default`` and return that."""
        return self.wrapped.setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Set several keys at once, like ``dict.update``; all or nothing on a bad value."""
        self.wrapped.update(*args, **kwargs)

    def clear(self) -> None:
        """Remove every key and start a new generation of the session (see :meth:`wsgisession.Session.clear`)."""
        self.wrapped.clear()

    def keys(self) -> KeysView[str]:
        """A snapshot of the keys."""
        return self.wrapped.keys()

    def items(self) -> ItemsView[str, Any]:
        """A snapshot of the items; flash values are listed, not consumed."""
        return self.wrapped.items()

    def values(self) -> ValuesView[Any]:
        """A snapshot of the values; flash values are listed, not consumed."""
        return self.wrapped.values()

    def to_dict(self) -> Dict[str, Any]:
        """A deep copy of the data as a plain dict."""
        return self.wrapped.to_dict()

    def regenerate(self) -> None:
        """Give the session a new id, keeping its data; call it at login."""
        self.wrapped.regenerate()

    def delete(self) -> None:
        """Destroy the session: the record goes and the cookie is expired."""
        self.wrapped.delete()

    @property
    def persistent(self) -> bool:
        """Whether the cookie outlives the browser (see :attr:`wsgisession.Session.persistent`)."""
        return self.wrapped.persistent

    @persistent.setter
    def persistent(self, value: bool) -> None:
        self.wrapped.persistent = value

    @property
    def owner(self) -> Optional[str]:
        """Who the session belongs to (see :attr:`wsgisession.Session.owner`)."""
        return self.wrapped.owner

    @owner.setter
    def owner(self, value: Optional[str]) -> None:
        self.wrapped.owner = value

    @property
    def owner_details(self) -> Dict[str, Any]:
        """What the application records for the owner's "your sessions" page (see :attr:`wsgisession.Session.owner_details`)."""
        return self.wrapped.owner_details

    @owner_details.setter
    def owner_details(self, details: Dict[str, Any]) -> None:
        self.wrapped.owner_details = details

    @property
    def id(self) -> str:
        """The session id the cookie carries (a secret)."""
        return self.wrapped.id

    @property
    def new(self) -> bool:
        """True until the session has been stored."""
        return self.wrapped.new

    @property
    def created_at(self) -> datetime.datetime:
        """When the session was created (UTC)."""
        return self.wrapped.created_at

    @property
    def expires_at(self) -> Optional[datetime.datetime]:
        """When the session dies if not used again (UTC), or None."""
        return self.wrapped.expires_at

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.wrapped!r}>"
