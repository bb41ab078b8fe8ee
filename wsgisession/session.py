"""The session object applications touch, and its change tracking.

A :class:`Session` is a thread-safe ``MutableMapping`` that loads itself from
the store on first use and records what this request did to it: keys set, keys
deleted, ``clear()``, flash values read, ``delete()`` and ``regenerate()``.
The middleware asks it to :meth:`Session.commit` when the response starts (and
again when the body is closed); the session then tells the store exactly those
changes and answers what the cookie should become.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import logging
import threading
import uuid
from collections.abc import ItemsView, KeysView, MutableMapping, ValuesView
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from .cookies import CookieOptions
from .errors import SessionError, SessionStoreError
from .expiry import ExpiryPolicy
from .serialization import decode_value, encode_value
from .store import SessionChanges, SessionLock, SessionRecord, Store, WSGIEnviron, generate_session_id

__all__ = ["Session", "CookieUpdate", "EXPIRE_COOKIE"]

log = logging.getLogger("wsgisession")

_MISSING: Any = object()

# Values of these types can not change without a new assignment, so reading
# them needs no check for nested mutation at commit.
_IMMUTABLE = frozenset(
    {str, int, float, bool, type(None), bytes, datetime.datetime, datetime.date, decimal.Decimal, uuid.UUID}
)

_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})
# Values that need no check when set (a float may be NaN, which JSON lacks).
_ALWAYS_STORABLE = frozenset({str, int, bool, type(None)})

#: What :meth:`Session.commit` answers: the cookie value to set with its
#: Max-Age, ``EXPIRE_COOKIE`` to remove the cookie, or None to leave it alone.
CookieUpdate = Tuple[str, Optional[int]]
EXPIRE_COOKIE: CookieUpdate = ("", 0)


class _UnstorableValue(TypeError):
    """A session value that has no JSON form; raised naming its key."""


def _store_failure(store: Store, action: str, exc: Exception) -> SessionStoreError:
    return SessionStoreError(f"{type(store).__name__} could not {action}: {type(exc).__name__}: {exc}")


class Session(MutableMapping[str, Any]):
    """The session of one request: a thread-safe mapping of JSON-storable values.

    Nothing is read from the store until the application first touches the
    session.  Besides the mapping methods it offers the original package's API
    (``get``, ``set``, ``flash``, ``delete``) and ``regenerate()``.  Flash values
    are read once: the first ``get(key)`` or ``session[key]`` returns and removes
    them, in this request or a later one.
    """

    __slots__ = (
        "_store", "_policy", "_environ", "_cookie", "_cookie_value", "_lock_timeout", "_mutex", "accessed",
        "_id", "_new", "_created", "_refreshed", "_values", "_flash", "_stored", "_stored_flash",
        "_set_keys", "_deleted_keys", "_cleared", "_read_keys", "_dirty", "_flash_consumed", "_ids_to_delete",
        "_lock", "_gone",
    )  # fmt: skip

    _id: str
    _new: bool
    _created: float
    _refreshed: float
    _values: Dict[str, Any]
    _flash: Set[str]
    _stored: Dict[str, Any]
    _stored_flash: Set[str]
    _set_keys: Set[str]
    _deleted_keys: Set[str]
    _cleared: bool
    _read_keys: Set[str]
    _dirty: bool
    _flash_consumed: bool
    _ids_to_delete: List[str]
    _gone: bool

    def __init__(
        self,
        store: Store,
        policy: ExpiryPolicy,
        cookie: CookieOptions,
        environ: WSGIEnviron,
        lock_timeout: Optional[float] = None,
    ) -> None:
        # Only what an untouched request needs; the rest is set by _load().
        self._store = store
        self._policy = policy
        self._cookie = cookie
        self._environ = environ
        self._lock_timeout = lock_timeout
        self._mutex = threading.RLock()
        #: True once the application touched the session in this request (a
        #: plain attribute: the middleware reads it on every request).
        self.accessed = False
        self._lock: Optional[SessionLock] = None

    # -- loading ---------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        # The caller holds self._mutex.
        if not self.accessed:
            self._load()
            self.accessed = True

    def _load(self) -> None:
        store = self._store
        now = self._policy.clock()
        self._ids_to_delete = []
        self._gone = False
        cookie = self._cookie_value = self._cookie.read(self._environ)
        loaded = None
        if cookie is not None:
            if self._lock_timeout is not None and store.is_valid_id(cookie):
                try:
                    self._lock = store.lock_session(cookie, self._lock_timeout, self._environ)
                except SessionError:
                    raise
                except Exception as exc:
                    raise _store_failure(store, "lock the session", exc) from exc
            try:
                loaded = store.load_session(cookie, self._environ)
                if loaded is not None:
                    self._adopt(*loaded, now)
                    return
            except SessionError:
                self._release_lock()
                raise
            except Exception as exc:
                self._release_lock()
                raise _store_failure(store, "load the session", exc) from exc
            self._release_lock()  # nothing to lock for a fresh id
        self._start_fresh(now)

    def _adopt(self, session_id: str, record: SessionRecord, now: float) -> None:
        try:
            stored = record["data"]  # the store hands over a record the session may keep
            if type(stored) is not dict:
                raise TypeError(f"data is a {type(stored).__name__}, not a dict")
            # JSON scalars are their own decoded form: only containers need decoding.
            values = {
                key: value if type(value) in _JSON_SCALARS else decode_value(value) for key, value in stored.items()
            }
            stored_flash = set(record["flash"])
            created = float(record["created"])
            refreshed = float(record["refreshed"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SessionStoreError(
                f"{type(self._store).__name__} returned a malformed session record: {exc!r}"
            ) from exc
        if self._policy.is_expired(created, refreshed, now):
            log.debug("session expired; starting a fresh one")
            self._release_lock()
            if not self._store.client_side:
                self._ids_to_delete.append(session_id)
            self._start_fresh(now)
            return
        self._id = session_id
        self._new = False
        self._created = created
        self._refreshed = refreshed
        self._values = values
        self._flash = stored_flash & values.keys() if stored_flash else set()
        self._stored = stored
        self._stored_flash = set(self._flash)
        self._reset_changes()
        self._read_keys = set()

    def _start_fresh(self, now: float) -> None:
        self._id = generate_session_id()
        self._new = True
        self._created = now
        self._refreshed = now
        self._values = {}
        self._flash = set()
        self._stored = {}
        self._stored_flash = set()
        self._reset_changes()
        self._read_keys = set()

    def _reset_changes(self) -> None:
        self._set_keys = set()
        self._deleted_keys = set()
        self._cleared = False
        self._dirty = False
        self._flash_consumed = False

    # -- reading ---------------------------------------------------------------

    def _read(self, key: str, default: Any) -> Any:
        with self._mutex:
            self._ensure_loaded()
            value = self._values.get(key, _MISSING)
            if value is _MISSING:
                return default
            if key in self._flash:
                if key in self._stored_flash and key not in self._set_keys:
                    # Loaded from the store: take it there atomically, so two
                    # concurrent requests can not both show it.
                    if not self._consume_stored_flash(key):
                        value = default
                    self._flash_consumed = True  # a cookie store must re-issue the cookie without it
                    self._stored.pop(key, None)
                    self._stored_flash.discard(key)
                self._remove(key)
            elif type(value) not in _IMMUTABLE:
                self._read_keys.add(key)
            return value

    def _consume_stored_flash(self, key: str) -> bool:
        try:
            return self._store.consume_flash(self._id, key, self._environ)
        except SessionError:
            raise
        except Exception as exc:
            raise _store_failure(self._store, "consume a flash value", exc) from exc

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
            for key, value in self._values.items():
                if type(value) not in _IMMUTABLE:
                    self._read_keys.add(key)
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
            return copy.deepcopy(self._values)

    # -- writing ---------------------------------------------------------------

    def _put(self, key: str, value: Any, flash: bool) -> None:
        if type(key) is not str:
            raise TypeError(f"session keys must be str, not {type(key).__name__}")
        if type(value) not in _ALWAYS_STORABLE:
            self._encode(key, value)  # fail at set time, naming the key
        with self._mutex:
            self._ensure_loaded()
            self._values[key] = value
            self._set_keys.add(key)
            self._deleted_keys.discard(key)
            if flash:
                self._flash.add(key)
            else:
                self._flash.discard(key)
            self._dirty = True

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
        self._set_keys.discard(key)
        self._read_keys.discard(key)
        if key in self._stored:
            self._deleted_keys.add(key)
        self._dirty = True

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
            self._encode(key, value)
        with self._mutex:
            for key, value in items.items():
                self._put(key, value, flash=False)

    def clear(self) -> None:
        """Remove every key (the session itself and its id stay; see ``delete()``)."""
        with self._mutex:
            self._ensure_loaded()
            self._values.clear()
            self._flash.clear()
            self._set_keys.clear()
            self._deleted_keys.clear()
            self._read_keys.clear()
            self._cleared = True
            self._dirty = True

    def delete(self) -> None:
        """Destroy the session: its record is removed and the cookie expired in this response.

        Values set afterwards start a new session with a new id.
        """
        with self._mutex:
            self._ensure_loaded()
            if not self._new:
                self._ids_to_delete.append(self._id)
            self._start_fresh(self._policy.clock())

    def regenerate(self) -> None:
        """Give the session a new id, keeping its data; the old record is deleted.

        Call it when privileges change (at login) to defeat session fixation.
        """
        with self._mutex:
            self._ensure_loaded()
            if not self._new:
                self._ids_to_delete.append(self._id)
            self._id = generate_session_id()
            self._new = True
            self._stored = {}
            self._stored_flash = set()
            self._reset_changes()
            self._set_keys = set(self._values)
            self._dirty = True

    # -- facts -------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The session id as the cookie carries it.  Treat it as a secret."""
        with self._mutex:
            self._ensure_loaded()
            return self._id

    @property
    def new(self) -> bool:
        """True until the session has been stored."""
        with self._mutex:
            self._ensure_loaded()
            return self._new

    @property
    def modified(self) -> bool:
        """True when this request changed the session (nested mutation included)."""
        with self._mutex:
            if not self.accessed:
                return False
            return self._dirty or bool(self._ids_to_delete) or bool(self._mutated_reads())

    @property
    def created_at(self) -> datetime.datetime:
        """When the session was created (UTC)."""
        with self._mutex:
            self._ensure_loaded()
            return datetime.datetime.fromtimestamp(self._created, datetime.timezone.utc)

    @property
    def expires_at(self) -> Optional[datetime.datetime]:
        """When the session dies if not used again (UTC), or None for never."""
        with self._mutex:
            self._ensure_loaded()
            deadline = self._policy.expires_at(self._created, self._refreshed)
            if deadline is None:
                return None
            return datetime.datetime.fromtimestamp(deadline, datetime.timezone.utc)

    def __repr__(self) -> str:
        if not self.accessed:
            return "<Session (not loaded)>"
        return f"<Session new={self._new} keys={sorted(self._values)!r}>"

    # -- committing (called by the middleware) -------------------------------------

    def _encode(self, key: str, value: Any) -> Any:
        try:
            return encode_value(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise _UnstorableValue(f"session key {key!r} can not be stored: {exc}") from None

    def _mutated_reads(self) -> Dict[str, Any]:
        # Values handed out by a read and changed in place since (s["cart"].append(x)).
        mutated = {}
        for key in self._read_keys:
            if key in self._set_keys or key not in self._values:
                continue
            encoded = self._encode(key, self._values[key])
            if self._stored.get(key, _MISSING) != encoded:
                mutated[key] = encoded
        return mutated

    def _collect_changes(self) -> Optional[Tuple[Dict[str, Any], Set[str]]]:
        # The keys to write (encoded) and which of them are flash values, or
        # None when nothing in the data changed.
        to_set = self._mutated_reads() if self._read_keys else {}
        flash = {key for key in to_set if key in self._flash} if self._flash else set()
        for key in self._set_keys:
            encoded = self._encode(key, self._values[key])
            is_flash = key in self._flash
            unchanged = (
                not self._cleared
                and self._stored.get(key, _MISSING) == encoded
                and (key in self._stored_flash) == is_flash
            )
            if not unchanged:
                to_set[key] = encoded
                if is_flash:
                    flash.add(key)
        if not to_set and not self._deleted_keys and not self._cleared:
            return None
        return to_set, flash

    def _full_record(self, now: float) -> SessionRecord:
        return {
            "data": {key: self._encode(key, value) for key, value in self._values.items()},
            "flash": sorted(self._flash),
            "created": self._created,
            "refreshed": now,
            "expires": self._policy.expires_at(self._created, now),
        }

    def _saved_whole(self, record: SessionRecord) -> None:
        self._new = False
        self._refreshed = record["refreshed"]
        self._stored = dict(record["data"])
        self._stored_flash = set(record["flash"])
        self._reset_changes()

    def _saved_changes(self, to_set: Dict[str, Any], flash: Set[str], refreshed: float) -> None:
        if self._cleared:
            self._stored = {}
            self._stored_flash = set()
        for key in self._deleted_keys:
            self._stored.pop(key, None)
            self._stored_flash.discard(key)
        for key, encoded in to_set.items():
            self._stored[key] = encoded
            if key in flash:
                self._stored_flash.add(key)
            else:
                self._stored_flash.discard(key)
        self._refreshed = refreshed
        self._reset_changes()

    def _has_unsaved_work(self) -> bool:
        # False for the common read-only request (a due expiry refresh aside).
        return bool(self._dirty or self._read_keys or self._new or self._ids_to_delete or self._gone)

    def commit(self, *, headers_open: bool) -> Optional[CookieUpdate]:
        """Save what this request changed; answer what the cookie should become.

        ``headers_open`` is False once the response has started: changes are
        still saved to server-side stores, but no cookie can be set any more.
        Raises ``SessionStoreError`` when the store fails.
        """
        with self._mutex:
            if not self.accessed:
                return None
            if not self._has_unsaved_work() and not (
                headers_open and self._policy.refresh_due(self._refreshed, self._policy.clock())
            ):
                return None  # the common read-only request: nothing to save
            try:
                update = self._save(headers_open)
                if self._ids_to_delete:
                    self._delete_old_records()
            except (SessionError, _UnstorableValue):
                raise
            except Exception as exc:
                raise _store_failure(self._store, "save the session", exc) from exc
            if update is None and headers_open and self._new and not self._values and self._cookie_value is not None:
                update = EXPIRE_COOKIE  # delete(), expiry or a rejected cookie
            return update

    def _save(self, headers_open: bool) -> Optional[CookieUpdate]:
        store = self._store
        policy = self._policy
        now = policy.clock()
        if self._gone:
            return None
        if self._new:
            if not self._values:
                return None  # no record for a session without data
            if not headers_open:
                log.warning("session data set after the response started was dropped: a new session needs its cookie")
                return None
            record = self._full_record(now)
            store.create_session(record, self._id, self._environ)
            self._saved_whole(record)
            return store.cookie_value(self._id, record), policy.cookie_max_age(self._created, now, now)

        changes = self._collect_changes()
        refresh = headers_open and policy.refresh_due(self._refreshed, now)
        if store.client_side:
            if changes is None and not refresh and not self._flash_consumed:
                self._dirty = False  # e.g. a key set to the value it had: the cookie stays as it is
                return None
            if not headers_open:
                log.warning(
                    "session changes made after the response started were dropped: %s keeps data in the cookie",
                    type(store).__name__,
                )
                return None
            record = self._full_record(now)
            value = store.cookie_value(self._id, record)
            self._saved_whole(record)
            return value, policy.cookie_max_age(self._created, now, now)

        if changes is None and not refresh:
            self._dirty = False
            return None
        to_set, flash = changes if changes is not None else ({}, set())
        refreshed = now if refresh else self._refreshed
        applied = store.apply_changes(
            self._id,
            SessionChanges(
                set=to_set,
                deleted=frozenset(self._deleted_keys),
                flash=frozenset(flash),
                cleared=self._cleared,
                refreshed=refreshed,
                expires=policy.expires_at(self._created, refreshed),
            ),
            self._environ,
        )
        if not applied:
            self._gone = True
            log.info("session was deleted or regenerated by another request; this request's changes were dropped")
            return None
        self._saved_changes(to_set, flash, refreshed)
        if refresh:
            return store.cookie_value(self._id, self._full_record(now)), policy.cookie_max_age(self._created, now, now)
        return None

    def _delete_old_records(self) -> None:
        while self._ids_to_delete:
            old_id = self._ids_to_delete.pop()
            if not self._store.client_side:
                self._store.delete_session(old_id, self._environ)

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def finish(self, *, persist: bool) -> None:
        """End the request: save late changes when ``persist``, then release the request lock."""
        if not self.accessed:
            return  # never touched: nothing to save and no lock taken
        with self._mutex:
            try:
                if persist and self._has_unsaved_work():
                    self.commit(headers_open=False)
            finally:
                if self._lock is not None:
                    self._release_lock()
