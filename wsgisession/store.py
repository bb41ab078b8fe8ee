"""The Store contract: what a session store must do, and what it may do better.

A store needs only four methods, the ones of the original elysia-session
package with the request's ``environ`` in place of its context::

    get_session(id, environ) -> SessionRecord | None
    create_session(data, id, environ) -> None
    persist_session(data, id, environ) -> None
    delete_session(id, environ) -> None

``data`` is a :class:`SessionRecord`: a JSON-serializable dict.  Everything
else here has a working default built on those four, which a store overrides
when its medium can do better (atomic change sets, atomic flash reads, request
locks, cleanup of expired records).

A request never writes the snapshot it loaded back: it sends the store a
:class:`SessionChanges`, the keys it set and deleted relative to the record it
loaded (``changes.base``).  What a store needs between the load and the save
(a version for compare-and-swap, a generation) travels in that record.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import logging
import re
import secrets
from types import MappingProxyType
from typing import Any, Dict, FrozenSet, List, Mapping, NamedTuple, Optional, Protocol, Tuple, TypedDict

from .errors import SessionError
from .serialization import decode_value

__all__ = [
    "Store",
    "SessionRecord",
    "SessionChanges",
    "ChangeOutcome",
    "OwnerChange",
    "SessionInfo",
    "MAX_DETAILS_BYTES",
    "SessionLock",
    "is_empty",
    "session_handle",
    "session_info",
    "SupportsId",
    "generate_session_id",
    "storage_key",
]

log = logging.getLogger("wsgisession")

WSGIEnviron = Dict[str, Any]


class _RequiredRecordFields(TypedDict):
    data: Dict[str, Any]
    flash: List[str]
    created: float
    refreshed: float
    expires: Optional[float]


class SessionRecord(_RequiredRecordFields, total=False):
    """One stored session, as JSON-compatible data.

    ``data`` maps keys to encoded values (see ``wsgisession.serialization``);
    ``flash`` lists the keys of ``data`` that are flash values; ``created`` and
    ``refreshed`` are Unix times; ``expires`` is when the record dies unless
    refreshed (None for never), for stores that expire records natively.

    Optional fields (records written by 0.1.0 lack them): ``generation``
    counts the ``clear()`` calls the session went through (missing means 0);
    ``persistent`` is False for a session whose cookie lasts until the browser
    closes (missing means the middleware's default); ``owner`` is who the
    session belongs to (the application's user id; missing or None for
    nobody) and ``details`` what the application recorded about it for a
    "your sessions" page; ``version`` is the store's own token for
    compare-and-swap, which the store puts in the record it loads and finds
    again in ``changes.base``.
    """

    generation: int
    persistent: bool
    owner: Optional[str]
    details: Dict[str, Any]
    version: Any


#: The most a session's owner details take, as JSON.
MAX_DETAILS_BYTES = 1024


class OwnerChange(NamedTuple):
    """A session's new owner (None for nobody) and the details recorded with it."""

    owner: Optional[str]
    details: Mapping[str, Any]


def is_empty(record: SessionRecord) -> bool:
    """True for a record with no data and no owner: a store removes it rather than keep it."""
    return not record["data"] and record.get("owner") is None


def session_handle(key: str) -> str:
    """The public handle of the session stored under ``key`` (its :func:`storage_key`).

    A one-way function of the key, and so of the id: a handle names a session
    on a page, and can not be turned into the key, the id or a cookie.
    """
    return hashlib.sha256(b"wsgisession.handle\0" + key.encode("ascii")).hexdigest()[:32]


class SessionInfo(NamedTuple):
    """One of an owner's sessions, as :meth:`Store.sessions_of` lists them."""

    #: A public reference for :meth:`Store.end_session` (not the id).
    handle: str
    #: When the session was created, and last written (UTC); the last use
    #: is written at most once per refresh interval.
    created_at: datetime.datetime
    last_seen: datetime.datetime
    #: True for the session of the request that asked.
    current: bool
    #: What the application recorded with the owner (see ``Session.owner_details``).
    details: Mapping[str, Any]


class SupportsId(Protocol):
    """Anything with a session ``id``: a :class:`~wsgisession.Session`, as the owner methods take it."""

    @property
    def id(self) -> str:
        """The session id."""


def session_info(key: str, record: SessionRecord, current: bool) -> SessionInfo:
    """The :class:`SessionInfo` of the record stored under ``key`` (its :func:`storage_key`)."""

    def moment(seconds: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)

    details = record.get("details") or {}
    return SessionInfo(
        session_handle(key),
        moment(record["created"]),
        moment(record["refreshed"]),
        current,
        decode_value(details) if details else {},
    )


# The defaults of SessionChanges: nothing, shared and read-only.
_NO_VALUES: Mapping[str, Any] = MappingProxyType({})
_NO_KEYS: FrozenSet[str] = frozenset()


class ChangeOutcome(enum.Enum):
    """What :meth:`Store.apply_changes` did with a request's changes."""

    #: The changes were applied to the stored record.
    APPLIED = "applied"
    #: The changes left the session without data, so its record was removed.
    EMPTIED = "emptied"
    #: The record is gone (deleted, regenerated, expired) or was cleared since
    #: the request loaded it: nothing was written.
    GONE = "gone"


class SessionChanges:
    """What one request changed in a session, to apply to the current record.

    Applying changes instead of the whole snapshot a request loaded is what keeps
    concurrent requests from erasing each other's keys.  Stores read it and
    never modify it, except the ``version`` in :attr:`base`.  (A plain class
    with slots: one is built per write, and that is cheaper than a dataclass.)
    """

    __slots__ = (
        "set",
        "deleted",
        "flash",
        "cleared",
        "refreshed",
        "expires",
        "restore",
        "claimed",
        "persistent",
        "owner",
        "base",
    )

    #: Keys set by this request, with their encoded values.
    set: Mapping[str, Any]
    #: Keys deleted by this request.
    deleted: FrozenSet[str]
    #: Keys of ``set`` that are flash values.
    flash: FrozenSet[str]
    #: True when the request called ``clear()``: every key not in ``set``
    #: goes, and the session starts a new generation.
    cleared: bool
    #: The new refresh time and expiry of the record.  An older refresh time
    #: than the stored one never replaces it.
    refreshed: float
    expires: Optional[float]
    #: Flash values a failed request gives back (encoded): each is put back,
    #: as a flash value, where the record has no value under its key.
    restore: Mapping[str, Any]
    #: Flash keys this request took with :meth:`Store.consume_flash`.  A store
    #: whose ``consume_flash`` removed them has nothing more to do; the cookie
    #: store leaves them out of the cookie.
    claimed: FrozenSet[str]
    #: The session's new persistence flag, or None when it did not change.
    persistent: Optional[bool]
    #: The session's new owner and details, or None when they did not change.
    owner: Optional[OwnerChange]
    #: The record as this request loaded it (or last saved it), for stores
    #: that compare versions or build the whole record from it.  It is the
    #: request's own copy: a store that keeps a ``version`` in it may update
    #: that key after a successful write, so that the request's next write
    #: starts from the version it wrote.
    base: Optional[SessionRecord]

    def __init__(
        self,
        set: Mapping[str, Any] = _NO_VALUES,
        deleted: FrozenSet[str] = _NO_KEYS,
        flash: FrozenSet[str] = _NO_KEYS,
        cleared: bool = False,
        refreshed: float = 0.0,
        expires: Optional[float] = None,
        restore: Mapping[str, Any] = _NO_VALUES,
        claimed: FrozenSet[str] = _NO_KEYS,
        persistent: Optional[bool] = None,
        owner: Optional[OwnerChange] = None,
        base: Optional[SessionRecord] = None,
    ) -> None:
        self.set = set
        self.deleted = deleted
        self.flash = flash
        self.cleared = cleared
        self.refreshed = refreshed
        self.expires = expires
        self.restore = restore
        self.claimed = claimed
        self.persistent = persistent
        self.owner = owner
        self.base = base

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__ if name != "base")
        return f"SessionChanges({fields})"

    @property
    def generation(self) -> int:
        """The generation of the record this request loaded; the store applies nothing to another one."""
        base = self.base
        return base.get("generation", 0) if base is not None else 0

    @property
    def changes_data(self) -> bool:
        """False when only the expiry is refreshed (the claimed keys are already gone)."""
        return bool(
            self.set
            or self.deleted
            or self.cleared
            or self.restore
            or self.persistent is not None
            or self.owner is not None
        )

    def apply_to(self, record: SessionRecord) -> SessionRecord:
        """Return a new record: ``record`` with these changes applied.

        Containers the changes leave as they were (the flash list) are shared
        with ``record``, which is never changed.  It does not check the
        generation: a store compares ``record.get("generation", 0)`` with
        :attr:`generation` first.
        """
        updated = record.copy()
        if self.cleared:
            data: Dict[str, Any] = {}
            flash: List[str] = []
            updated["generation"] = record.get("generation", 0) + 1
        else:
            data = dict(record["data"])
            flash = record["flash"]
        for key in self.deleted:
            data.pop(key, None)
        data.update(self.set)
        restored: List[str] = []
        if self.restore:
            restored = [key for key in self.restore if key not in data]
            for key in restored:
                data[key] = self.restore[key]
        if flash or self.flash or restored:  # most sessions have no flash value: skip the set work
            kept = set(flash).difference(self.deleted, self.set)
            kept.update(self.flash.intersection(self.set), restored)
            flash = sorted(kept.intersection(data))
        updated["data"] = data
        updated["flash"] = flash
        if self.refreshed >= record["refreshed"]:
            updated["refreshed"] = self.refreshed
            updated["expires"] = self.expires
        if self.persistent is not None:
            updated["persistent"] = self.persistent
        if self.owner is not None:
            updated["owner"] = self.owner.owner
            updated["details"] = dict(self.owner.details)
        return updated


class SessionLock:
    """A held per-session request lock; ``release()`` gives it up (idempotent)."""

    def release(self) -> None:
        """Give the lock up.  Calling it again does nothing."""


_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


def generate_session_id() -> str:
    """A new session id: 256 random bits from ``secrets``, URL-safe, 43 characters."""
    return secrets.token_urlsafe(32)


def storage_key(session_id: str) -> str:
    """The key a session is stored under: the SHA-256 hex digest of its id.

    The id in the browser's cookie is then never what sits in the table, so a
    leaked table or backup can not be replayed as cookies.
    """
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


class Store:
    """Base class for session stores.

    Subclasses implement the four basic methods.  Every other method has a
    default built on them, correct but not atomic against concurrent requests
    (the last writer of a key wins); override them to do better.  What a
    store can do is said by its class attributes, :attr:`client_side` and
    :attr:`can_lock`.
    """

    #: True for stores that keep the whole session in the cookie itself (the
    #: cookie value carries the data, see :meth:`cookie_value`).
    client_side: bool = False

    #: True for stores that implement :meth:`lock_session`, so that
    #: ``SessionMiddleware(lock=True)`` can use them.
    can_lock: bool = False

    # -- the four basic methods ------------------------------------------------

    def get_session(self, id: str, environ: WSGIEnviron) -> Optional[SessionRecord]:
        """Return the record stored for ``id``, or None when there is none.

        The request keeps the record and never changes it, so a store may
        hand out a record of its own as long as it never changes that record
        in place afterwards (it replaces it instead); otherwise return a copy.
        """
        raise NotImplementedError

    def create_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        """Store a new record for ``id``."""
        raise NotImplementedError

    def persist_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        """Replace the record stored for ``id``."""
        raise NotImplementedError

    def delete_session(self, id: str, environ: WSGIEnviron) -> None:
        """Remove the record for ``id``; removing a missing one is not an error."""
        raise NotImplementedError

    # -- optional, with defaults built on the four --------------------------------

    def load_session(self, cookie_value: str, environ: WSGIEnviron) -> Optional[Tuple[str, SessionRecord]]:
        """Return ``(id, record)`` for a cookie value, or None for a fresh session.

        The default accepts only values shaped like the ids this package makes,
        so a client-chosen string never reaches the store.
        """
        if not self.is_valid_id(cookie_value):
            log.debug("rejected a session cookie that is not a session id")
            return None
        record = self.get_session(cookie_value, environ)
        if record is None:
            log.debug("no stored session for the cookie's id")
            return None
        return cookie_value, record

    def is_valid_id(self, value: str) -> bool:
        """True when ``value`` has the shape of a session id (not that it exists)."""
        return _SESSION_ID.fullmatch(value) is not None

    def cookie_value(self, id: str, changes: SessionChanges) -> str:
        """The cookie value of the session ``changes`` leave behind: its id, for server-side stores.

        A store that keeps the session in the cookie builds the value from
        ``changes.apply_to(changes.base)``.
        """
        return id

    def apply_changes(self, id: str, changes: SessionChanges, environ: WSGIEnviron) -> ChangeOutcome:
        """Apply one request's changes to the stored record and say what happened.

        ``GONE`` (the session was deleted, regenerated or cleared since the
        request loaded it) drops the changes: a logged-out session is never
        brought back.  ``EMPTIED``: no data was left, so the record was
        removed.  The default reads, merges and persists, which is not atomic;
        override it to make concurrent requests on one session keep each
        other's keys.
        """
        record = self.get_session(id, environ)
        if record is None or record.get("generation", 0) != changes.generation:
            return ChangeOutcome.GONE
        updated = changes.apply_to(record)
        if is_empty(updated):
            self.delete_session(id, environ)
            return ChangeOutcome.EMPTIED
        self.persist_session(updated, id, environ)
        return ChangeOutcome.APPLIED

    def consume_flash(self, id: str, key: str, environ: WSGIEnviron) -> bool:
        """Remove flash value ``key`` from the stored record; True if this call removed it.

        False means another request consumed it first, so the caller must not
        show it.  The default reads and persists, which is not atomic.
        """
        record = self.get_session(id, environ)
        if record is None or key not in record["flash"]:
            return False
        record["data"].pop(key, None)
        record["flash"] = [flash_key for flash_key in record["flash"] if flash_key != key]
        self.persist_session(record, id, environ)
        return True

    def lock_session(self, id: str, timeout: float, environ: WSGIEnviron) -> SessionLock:
        """Hold the per-session request lock for ``id`` until ``release()``.

        Raises ``SessionLockTimeout`` after ``timeout`` seconds.  The base class
        has no lock; stores that set :attr:`can_lock` override this.
        """
        raise SessionError(f"{type(self).__name__} does not support per-session locks (lock=True)")

    # -- the sessions of an owner (stores that index them override these) ----------

    def sessions_of(self, owner: str, current: Optional[SupportsId] = None) -> List[SessionInfo]:
        """The live sessions of ``owner``, oldest first; ``current`` (a request's session) is marked.

        The base class keeps no index of owners: raises ``SessionError``.
        """
        raise SessionError(f"{type(self).__name__} does not keep an index of its sessions' owners")

    def end_session(self, owner: str, handle: str) -> bool:
        """End the session of ``owner`` that ``handle`` names, as ``delete()`` would; False when there is none."""
        raise SessionError(f"{type(self).__name__} does not keep an index of its sessions' owners")

    def end_sessions(self, owner: str, keep: Optional[SupportsId] = None) -> int:
        """End every session of ``owner`` but ``keep`` (a request's session), as ``delete()`` would; return how many."""
        raise SessionError(f"{type(self).__name__} does not keep an index of its sessions' owners")

    def cleanup(self) -> int:
        """Delete expired records and return how many; stores that expire natively return 0."""
        return 0

    def close(self) -> None:
        """Release connections or other resources the store holds."""
