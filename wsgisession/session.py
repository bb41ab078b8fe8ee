"""The session object applications touch, and its record of what the request did.

A :class:`Session` is a thread-safe ``MutableMapping``.  It asks its request
(:class:`wsgisession.lifecycle.RequestLifecycle`) to load it on first use, and
records what this request did to it: keys set, keys deleted, ``clear()``,
nested mutation of values it handed out, ``delete()`` and ``regenerate()``.
It knows nothing of stores, cookies or headers: the request's lifecycle reads
that record when it saves.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import uuid
from _thread import RLock  # threading.RLock's C type, without the Python-level factory call
from collections.abc import ItemsView, KeysView, MutableMapping, ValuesView
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Iterator, Optional, Set, Tuple

from .errors import SessionStoreError
from .serialization import decode_value, dumps, encode_value
from .store import _NO_VALUES, MAX_DETAILS_BYTES, OwnerChange, SessionChanges, SessionRecord

if TYPE_CHECKING:
    from .lifecycle import Lifecycle, RequestLifecycle  # noqa: F401
    from .store import WSGIEnviron

__all__ = ["Session"]

_MISSING: Any = object()

# Values of these types can not change without a new assignment, so reading
# them needs no check for nested mutation at commit.
_IMMUTABLE = frozenset(
    {str, int, float, bool, type(None), bytes, datetime.datetime, datetime.date, decimal.Decimal, uuid.UUID}
)

# Values that need no check when set (a float may be NaN, which JSON lacks),
# and are their own encoded form.
_ALWAYS_STORABLE = frozenset({str, int, bool, type(None)})

# What the request did to a key since the session was loaded or last saved.
_SET = 1  # set it: its value is written
_DELETED = 2  # removed it: it is deleted from the store
_READ = 3  # was handed its (mutable) value: written if changed in place

_NO_KEYS: FrozenSet[str] = frozenset()


class _UnstorableValue(TypeError):
    """A session value that has no JSON form; raised naming its key."""


class Session(MutableMapping[str, Any]):
    """The session of one request: a thread-safe mapping of JSON-storable values.

    Nothing is read from the store until the application first touches the
    session.  Besides the mapping methods it offers the original package's API
    (``get``, ``set``, ``flash``, ``delete``) and ``regenerate()``.  Flash values
    are read once: the first ``get(key)`` or ``session[key]`` returns and removes
    them, in this request or a later one.
    """

    __slots__ = (
        "_lifecycle", "_environ", "_request", "_mutex", "accessed", "_values", "_flash", "_stored", "_stored_flash",
        "_touched", "_cleared", "_modified", "_persistent", "_persistent_changed", "_owner", "_details",
        "_owner_changed",
    )  # fmt: skip

    _values: Dict[str, Any]
    _flash: Set[str]
    _stored: Dict[str, Any]
    _stored_flash: Set[str]
    _touched: Dict[str, int]
    _cleared: bool
    _modified: bool
    _persistent: bool
    _persistent_changed: bool
    _owner: Optional[str]
    _details: Dict[str, Any]
    _owner_changed: bool

    def __init__(self, lifecycle: Lifecycle, environ: WSGIEnviron) -> None:
        # Only what an untouched request needs: the request's lifecycle is
        # made on first use.
        self._lifecycle = lifecycle
        self._environ = environ
        self._mutex = RLock()
        self._request: Optional[RequestLifecycle] = None
        #: True once the application touched the session in this request (a
        #: plain attribute: it is read on every request).
        self.accessed = False

    def _mark_modified(self, value: bool) -> None:
        """Set what :attr:`modified` reads (integrations for frameworks that set it); saving is not affected."""
        with self._mutex:
            self._ensure_loaded()
            self._modified = value

    def _lifecycle_request(self) -> RequestLifecycle:
        """This request's lifecycle (:mod:`wsgisession.lifecycle`), made when first asked for."""
        request = self._request
        if request is None:
            with self._mutex:
                request = self._request or self._new_request()
        return request

    def _new_request(self) -> RequestLifecycle:
        # The caller holds self._mutex.
        settings = self._lifecycle
        request = self._request = lifecycle.RequestLifecycle(self, settings, self._environ, settings.lock_timeout)
        return request

    def _loaded(self) -> RequestLifecycle:
        # The lifecycle of a session that was touched (and so loaded).
        request = self._request
        assert request is not None, "the session is not loaded"
        return request

    # -- loading ---------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        # The caller holds self._mutex.
        if not self.accessed:
            self._load()
            self.accessed = True

    def _load(self) -> None:
        request = self._request or self._new_request()
        (
            self._values,
            self._stored,
            self._stored_flash,
            self._persistent,
            self._owner,
            self._details,
        ) = request.load()
        self._flash = set(self._stored_flash)
        self._persistent_changed = False
        self._owner_changed = False
        self._modified = False
        self._reset_changes()

    def _reset_changes(self) -> None:
        self._touched = {}
        self._cleared = False

    # -- reading ---------------------------------------------------------------

    def _decoded(self, key: str, value: Any) -> Any:
        # Values are decoded on first use: a request that reads one key pays
        # for that key only.  A container is still in its stored (encoded)
        # form while it is the very object the store handed over.
        kind = type(value)
        if (kind is list or kind is dict) and value is self._stored.get(key):
            try:
                value = decode_value(value)
            except (ValueError, TypeError, RecursionError) as exc:
                raise SessionStoreError(f"the stored value of session key {key!r} is malformed: {exc}") from exc
            self._values[key] = value
        return value

    def _decode_all(self) -> None:
        for key, value in list(self._values.items()):
            self._decoded(key, value)

    def _read(self, key: str, default: Any) -> Any:
        with self._mutex:
            self._ensure_loaded()
            value = self._values.get(key, _MISSING)
            if value is _MISSING:
                return default
            value = self._decoded(key, value)
            if key in self._flash:
                if key in self._stored_flash and self._touched.get(key) is not _SET:
                    # Loaded from the store: it is taken there at once, so two
                    # concurrent requests can not both show it.
                    self._stored_flash.discard(key)
                    stored = dict(self._stored)  # the stored record is never changed in place
                    encoded = stored.pop(key)
                    self._stored = stored
                    if not self._loaded().claim_flash(key, encoded):
                        value = default
                self._remove(key)
            elif type(value) not in _IMMUTABLE and key not in self._touched:
                self._touched[key] = _READ
            return value

    def get(self, key: str, default: Any = None) -> Any:
        """The value for ``key``, or ``default`` (None) when missing; reading a flash value removes it."""
        return self._read(key, default)

    def __getitem__(self, key: str) -> Any:
        value = self._read(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        with self._mutex:
            self._ensure_loaded()
            return key in self._values

    def __len__(self) -> int:
        with self._mutex:
            self._ensure_loaded()
            return len(self._values)

    def __iter__(self) -> Iterator[str]:
        with self._mutex:
            self._ensure_loaded()
            return iter(list(self._values))

    def _snapshot(self) -> Dict[str, Any]:
        # A copy of the data that reads (but does not consume) flash values.
        with self._mutex:
            self._ensure_loaded()
            self._decode_all()
            touched = self._touched
            for key, value in self._values.items():
                if type(value) not in _IMMUTABLE and key not in touched:
                    touched[key] = _READ
            return dict(self._values)

    def keys(self) -> KeysView[str]:
        """A snapshot of the keys."""
        return self._snapshot().keys()

    def items(self) -> ItemsView[str, Any]:
        """A snapshot of the items; flash values are listed, not consumed."""
        return self._snapshot().items()

    def values(self) -> ValuesView[Any]:
        """A snapshot of the values; flash values are listed, not consumed."""
        return self._snapshot().values()

    def to_dict(self) -> Dict[str, Any]:
        """A deep copy of the data as a plain dict (flash values included, not consumed)."""
        with self._mutex:
            self._ensure_loaded()
            self._decode_all()
            return copy.deepcopy(self._values)

    # -- writing ---------------------------------------------------------------

    def _put(self, key: str, value: Any, flash: bool) -> None:
        if type(key) is not str:
            raise TypeError(f"session keys must be str, not {type(key).__name__}")
        if type(value) not in _ALWAYS_STORABLE:
            _encode(key, value)  # fail at set time, naming the key
        with self._mutex:
            self._ensure_loaded()
            self._values[key] = value
            self._touched[key] = _SET
            if flash:
                self._flash.add(key)
            else:
                self._flash.discard(key)
            self._modified = True

    def __setitem__(self, key: str, value: Any) -> None:
        self._put(key, value, flash=False)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``; raises ``TypeError`` naming the key when it can't be stored."""
        self._put(key, value, flash=False)

    def flash(self, key: str, value: Any) -> None:
        """Store a value that the first ``get(key)`` or ``session[key]`` returns and removes."""
        self._put(key, value, flash=True)

    def _remove(self, key: str) -> None:
        # The caller holds self._mutex.
        del self._values[key]
        self._flash.discard(key)
        if key in self._stored:
            self._touched[key] = _DELETED
        else:
            self._touched.pop(key, None)
        self._modified = True

    def __delitem__(self, key: str) -> None:
        with self._mutex:
            self._ensure_loaded()
            if key not in self._values:
                raise KeyError(key)
            self._remove(key)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value (or ``default``; KeyError without one)."""
        with self._mutex:
            value = self._read(key, _MISSING)
            if value is _MISSING:
                if default is _MISSING:
                    raise KeyError(key)
                return default
            if key in self._values:
                self._remove(key)
            return value

    def popitem(self) -> Tuple[str, Any]:
        """Remove some key and return it with its value; KeyError when empty."""
        with self._mutex:
            self._ensure_loaded()
            for key in list(self._values):
                value = self.pop(key, _MISSING)
                if value is not _MISSING:  # a flash value another request consumed is skipped
                    return key, value
            raise KeyError("popitem(): the session is empty")

    def setdefault(self, key: str, default: Any = None) -> Any:
        """``session[key]`` if present, else set it to ``default`` and return that."""
        with self._mutex:
            self._ensure_loaded()
            if key in self._values:
                return self._read(key, default)
            self._put(key, default, flash=False)
            return default

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Set several keys at once, like ``dict.update``; all or nothing on a bad value."""
        items = dict(*args, **kwargs)
        for key, value in items.items():
            if type(key) is not str:
                raise TypeError(f"session keys must be str, not {type(key).__name__}")
            _encode(key, value)
        with self._mutex:
            for key, value in items.items():
                self._put(key, value, flash=False)

    def clear(self) -> None:
        """Remove every key and start a new generation of the session (the id stays).

        Changes that concurrent requests computed from the session as it was
        before are dropped, as after ``delete()``, so a ``clear()`` logout is
        never undone by a slow request.  A session left empty has its record
        removed and its cookie expired.
        """
        with self._mutex:
            self._ensure_loaded()
            self._values.clear()
            self._flash.clear()
            self._reset_changes()
            self._cleared = True
            self._modified = True
            self._set_persistent(self._loaded().persistent_default)
            self._set_owner(None, {})

    def delete(self) -> None:
        """Destroy the session: its record is removed and the cookie expired in this response.

        Values set afterwards start a new session with a new id.
        """
        with self._mutex:
            self._ensure_loaded()
            self._loaded().replace_id(keep_created=False)
            self._values = {}
            self._flash = set()
            self._forget_stored()
            self._persistent = self._loaded().persistent_default
            self._persistent_changed = False
            self._owner, self._details, self._owner_changed = None, {}, False
            self._modified = True

    def regenerate(self) -> None:
        """Give the session a new id, keeping its data; the old record is deleted.

        Call it when privileges change (at login) to defeat session fixation.
        """
        with self._mutex:
            self._ensure_loaded()
            self._loaded().replace_id(keep_created=True)
            self._decode_all()  # nothing is stored under the new id to decode from
            self._forget_stored()
            self._touched = dict.fromkeys(self._values, _SET)
            self._modified = True

    def _forget_stored(self) -> None:
        # The session has a new id that nothing is stored under yet.
        self._stored = {}
        self._stored_flash = set()
        self._reset_changes()

    # -- facts -------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The session id as the cookie carries it.  Treat it as a secret."""
        with self._mutex:
            self._ensure_loaded()
            return self._loaded().id

    @property
    def new(self) -> bool:
        """True until the session has been stored."""
        with self._mutex:
            self._ensure_loaded()
            return self._loaded().new

    @property
    def modified(self) -> bool:
        """True once this request changed the session (nested mutation included), to the end of the request."""
        with self._mutex:
            if not self.accessed:
                return False
            return self._modified or bool(self._mutated_reads())

    @property
    def persistent(self) -> bool:
        """Whether the cookie outlives the browser (Max-Age) or is a browser-session cookie.

        The server-side expiry applies either way.  Setting it is a change
        that is saved with the session.
        """
        with self._mutex:
            self._ensure_loaded()
            return self._persistent

    @persistent.setter
    def persistent(self, value: bool) -> None:
        with self._mutex:
            self._ensure_loaded()
            if bool(value) != self._persistent:
                self._set_persistent(bool(value))
                self._modified = True

    def _set_persistent(self, value: bool) -> None:
        self._persistent_changed = self._persistent_changed or value != self._persistent
        self._persistent = value

    @property
    def owner(self) -> Optional[str]:
        """Who the session belongs to: the application's id for the signed-in user, or None.

        Set it at login; the store then lists the session among the owner's
        (``store.sessions_of(owner)``) and can end it from another session.
        ``clear()`` and ``delete()`` remove it, ``regenerate()`` keeps it.  A
        session whose only content is its owner is not empty.  Setting a new
        owner resets :attr:`owner_details`.
        """
        with self._mutex:
            self._ensure_loaded()
            return self._owner

    @owner.setter
    def owner(self, value: Optional[str]) -> None:
        if value is not None and type(value) is not str:
            raise TypeError(f"a session's owner is a str or None, not {type(value).__name__}")
        with self._mutex:
            self._ensure_loaded()
            if value != self._owner:
                self._set_owner(value, {})
                self._modified = True

    @property
    def owner_details(self) -> Dict[str, Any]:
        """What the application records about this session for its owner (a copy).

        A dict of JSON-storable values of at most ``MAX_DETAILS_BYTES`` as
        JSON, such as the browser's user agent and the time of login, for a
        "your sessions" page.  It needs an owner.
        """
        with self._mutex:
            self._ensure_loaded()
            return copy.deepcopy(self._details)

    @owner_details.setter
    def owner_details(self, details: Dict[str, Any]) -> None:
        if type(details) is not dict:
            raise TypeError(f"owner_details is a dict, not {type(details).__name__}")
        encoded = _encode("owner_details", details)
        size = len(dumps(encoded).encode("utf-8"))
        if size > MAX_DETAILS_BYTES:
            raise ValueError(f"owner_details take {size} bytes as JSON, more than the {MAX_DETAILS_BYTES} allowed")
        with self._mutex:
            self._ensure_loaded()
            if self._owner is None:
                raise ValueError("owner_details need an owner: set session.owner first")
            self._set_owner(self._owner, copy.deepcopy(details))
            self._modified = True

    def _set_owner(self, owner: Optional[str], details: Dict[str, Any]) -> None:
        changed = owner != self._owner or details != self._details
        self._owner_changed = self._owner_changed or changed
        self._owner = owner
        self._details = details

    @property
    def created_at(self) -> datetime.datetime:
        """When the session was created (UTC)."""
        with self._mutex:
            self._ensure_loaded()
            return datetime.datetime.fromtimestamp(self._loaded().created, datetime.timezone.utc)

    @property
    def expires_at(self) -> Optional[datetime.datetime]:
        """When the session dies if not used again (UTC), or None for never."""
        with self._mutex:
            self._ensure_loaded()
            deadline = self._loaded().expires()
            if deadline is None:
                return None
            return datetime.datetime.fromtimestamp(deadline, datetime.timezone.utc)

    def __repr__(self) -> str:
        if not self.accessed:
            return "<Session (not loaded)>"
        return f"<Session new={self._loaded().new} keys={sorted(self._values)!r}>"

    # -- the record of changes, read by the request's lifecycle ---------------------

    def _mutated_reads(self) -> Dict[str, Any]:
        # Values handed out by a read and changed in place since (s["cart"].append(x)).
        mutated = {}
        values = self._values
        for key, done in self._touched.items():
            if done is _READ and key in values:
                encoded = _encode(key, values[key])
                if self._stored.get(key, _MISSING) != encoded:
                    mutated[key] = encoded
        return mutated

    def _is_empty(self) -> bool:
        return not self._values and self._owner is None

    def _has_pending(self) -> bool:
        """False when nothing can have changed since the session was loaded or saved (cheap)."""
        return bool(self._touched or self._cleared or self._persistent_changed or self._owner_changed)

    def _changes(
        self, refreshed: float, expires: Optional[float], claimed: FrozenSet[str], base: Optional[SessionRecord]
    ) -> Optional[SessionChanges]:
        """The changes not saved yet, for a store, or None when the data did not change.

        The caller holds the mutex and says what the lifecycle adds: the new
        expiry, the flash keys the request took, the record it loaded.
        """
        values = self._values
        stored = self._stored
        flash = self._flash
        to_set: Dict[str, Any] = {}
        deleted: FrozenSet[str] = _NO_KEYS
        new_flash: FrozenSet[str] = _NO_KEYS
        for key, done in self._touched.items():
            if done is _DELETED:
                deleted = deleted | {key}
                continue
            if key not in values:
                continue
            value = values[key]
            encoded = value if type(value) in _ALWAYS_STORABLE else _encode(key, value)
            is_flash = key in flash
            if done is _READ:
                if stored.get(key, _MISSING) == encoded:
                    continue  # read, not changed in place
            elif not self._cleared and stored.get(key, _MISSING) == encoded and (key in self._stored_flash) == is_flash:
                continue  # set to the value it had
            to_set[key] = encoded
            if is_flash:
                new_flash = new_flash | {key}
        persistent = self._persistent if self._persistent_changed else None
        owner = OwnerChange(self._owner, _encode("owner_details", self._details)) if self._owner_changed else None
        if not to_set and not deleted and not self._cleared and persistent is None and owner is None:
            return None
        if to_set:
            self._modified = True  # nested mutation counts, to the end of the request
        # Positional: one is built per write, and keywords cost more to bind.
        return SessionChanges(
            to_set, deleted, new_flash, self._cleared, refreshed, expires, _NO_VALUES, claimed, persistent, owner, base
        )

    def _encoded(self) -> Tuple[Dict[str, Any], FrozenSet[str]]:
        """Every value, encoded, with the flash keys: the content of a new record."""
        stored = self._stored
        encoded = {
            key: value if value is stored.get(key, _MISSING) else _encode(key, value)
            for key, value in self._values.items()
        }
        return encoded, frozenset(self._flash)

    def _saved_record(self, data: Dict[str, Any], flash: FrozenSet[str]) -> None:
        """The store now holds the whole session as ``data`` (encoded) with these flash keys."""
        self._stored = data
        self._stored_flash = set(flash)
        self._persistent_changed = False
        self._owner_changed = False
        self._reset_changes()

    def _saved(self, changes: SessionChanges) -> None:
        """The store now holds these changes."""
        # A new dict: the one the store handed over is never changed in place.
        stored = {} if changes.cleared else dict(self._stored)
        stored_flash = self._stored_flash
        if changes.cleared:
            stored_flash = self._stored_flash = set()
        for key in changes.deleted:
            stored.pop(key, None)
            stored_flash.discard(key)
        stored.update(changes.set)
        self._stored = stored
        if stored_flash or changes.flash:
            for key in changes.set:
                if key in changes.flash:
                    stored_flash.add(key)
                else:
                    stored_flash.discard(key)
        self._persistent_changed = False
        self._owner_changed = False
        self._reset_changes()

    def _emptied(self) -> None:
        """The store removed the session, left without data; it starts afresh."""
        self._forget_stored()
        self._persistent_changed = False
        self._owner_changed = False


def _encode(key: str, value: Any) -> Any:
    try:
        return encode_value(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _UnstorableValue(f"session key {key!r} can not be stored: {exc}") from None


# At the end: the lifecycle module imports this one, and is used only when a
# session is first touched, by then fully imported whichever came first.
from . import lifecycle  # noqa: E402
