"""The rules of a request's session, in one place.

Every integration runs a request's session through this module: the WSGI
middleware, Flask, Pyramid and Bottle (which use the middleware), and the
framework paths that open a session themselves (Flask's test helpers,
Pyramid without the middleware).  The flow, top to bottom:

1. **Open** (:meth:`RequestLifecycle.load`, on the application's first touch
   of the session): read the cookie, take the request lock, load the record,
   apply expiry.  A missing, rejected, unknown or expired cookie gives a fresh
   session with a new id; an id the browser offers is never adopted.  A fresh
   session starts with the data of the replaced system's session when the
   adopter finds one (:mod:`wsgisession.adoption`).
2. **Respond** (:meth:`RequestLifecycle.response_headers`, once, just before
   any byte of the response can reach the client): add ``Vary: Cookie`` to an
   accessed session's response, merged into any ``Vary`` already there.  For
   a 5xx response nothing is saved.  Otherwise the request's changes are
   saved and the Set-Cookie is decided:

   * a new session with data is created and gets its cookie; an adopted
     one first retires the old session (``on_commit``), is not saved when a
     concurrent request retired it first, and removes the old cookies
     (except the one its own cookie replaces); the old cookies a browser
     brings beside an opened session are removed too;
   * a session the request left empty has its record removed and its cookie
     expired (so does a rejected cookie whose session stayed empty);
   * an existing session's changes are applied to the stored record; the
     cookie is set again when its value changes (the cookie store), when a
     due refresh moves a persistent cookie's Max-Age, or when the session's
     persistence changed;
   * the records of ``delete()``, ``regenerate()`` and expired sessions are
     deleted after the new state is saved.

3. **End** (:meth:`RequestLifecycle.end`, when the response is finished):
   changes made after the response started are saved (server-side stores
   only: no cookie can be set any more); a request that failed before it
   responded (an exception, a 5xx) saves nothing and gives back the flash
   values it took, unless the session was deleted or cleared meanwhile; the
   request lock is released.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

from .adoption import Adopter, Adoption, LegacyCookie
from .cookies import CookieOptions, count_cookies
from .errors import SessionError, SessionStoreError
from .expiry import ExpiryPolicy
from .serialization import decode_value, encode_value
from .session import Session, _UnstorableValue
from .store import (
    ChangeOutcome,
    OwnerChange,
    SessionChanges,
    SessionLock,
    SessionRecord,
    Store,
    WSGIEnviron,
    generate_session_id,
)

__all__ = ["Lifecycle", "RequestLifecycle", "LoadedSession", "Headers", "with_vary_cookie"]

log = logging.getLogger("wsgisession")

#: A response's headers as WSGI passes them: ``(name, value)`` pairs.
Headers = List[Tuple[str, str]]

# Enum members are looked up once: on CPython 3.11 that lookup costs more
# than the comparison it serves.
_APPLIED, _EMPTIED, _GONE = ChangeOutcome.APPLIED, ChangeOutcome.EMPTIED, ChangeOutcome.GONE

_NOTHING: FrozenSet[str] = frozenset()
_NO_OWNER = OwnerChange(None, {})


#: What a session starts a request with: the decoded values, the encoded
#: values as stored (the session compares against them), the stored keys that
#: are flash values, whether the cookie outlives the browser, the owner and
#: the owner's details.
LoadedSession = Tuple[Dict[str, Any], Dict[str, Any], Set[str], bool, Optional[str], Dict[str, Any]]


class Lifecycle:
    """The session settings of an application, and the start of each request's lifecycle.

    ``store`` holds the sessions, ``policy`` decides expiry, ``cookie`` holds
    the cookie's name and attributes.  With a ``lock_timeout`` every request
    that touches its session takes the session's request lock, waiting at
    most that many seconds.  ``persistent`` is the default of
    :attr:`wsgisession.Session.persistent` for new sessions.  An ``adopter`` carries
    sessions of a system being replaced over (:mod:`wsgisession.adoption`);
    the old cookies it names in ``legacy_cookies`` are removed from browsers
    that bring them beside a session of ours.
    """

    __slots__ = ("store", "policy", "cookie", "lock_timeout", "persistent", "adopter", "legacy_cookies")

    def __init__(
        self,
        store: Store,
        policy: ExpiryPolicy,
        cookie: CookieOptions,
        *,
        lock_timeout: Optional[float] = None,
        persistent: bool = True,
        adopter: Optional[Adopter] = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.cookie = cookie
        self.lock_timeout = lock_timeout
        self.persistent = persistent
        self.adopter = adopter
        self.legacy_cookies: Tuple[LegacyCookie, ...] = tuple(getattr(adopter, "legacy_cookies", ()))

    def begin(self, environ: WSGIEnviron, *, lock: bool = True) -> RequestLifecycle:
        """The lifecycle of one request, with its (not yet loaded) session.

        ``lock=False`` never takes the request lock: for sessions that may
        never be ended (Flask's ``test_request_context``).
        """
        request = Session(self, environ)._lifecycle_request()
        if not lock:
            request.lock_timeout = None
        return request


class RequestLifecycle:
    """One request's session from its first touch to the end of the response.

    ``session`` is the :class:`~wsgisession.Session` the application uses.  Whoever begins
    it calls :meth:`response_headers` when the response starts and
    :meth:`end` when it is finished.
    """

    __slots__ = (
        "session", "mutex", "environ", "settings", "store", "policy", "cookie", "lock_timeout", "persistent_default",
        "id", "new", "created", "refreshed", "base", "incoming", "retired", "claims", "claimed_in",
        "lock", "gone", "responded", "failed", "adoption", "stale_cookies",
    )  # fmt: skip

    id: str
    new: bool
    created: float
    refreshed: float
    base: Optional[SessionRecord]
    incoming: Optional[str]
    #: Ids this request replaced or found expired, each with the record it
    #: loaded under it (None when that record is simply to be deleted).
    retired: List[Tuple[str, Optional[SessionRecord]]]
    claims: Dict[str, Any]
    claimed_in: Optional[Tuple[str, SessionRecord]]
    gone: bool
    adoption: Optional[Adoption]
    stale_cookies: Sequence[LegacyCookie]

    def __init__(
        self, session: Session, settings: Lifecycle, environ: WSGIEnviron, lock_timeout: Optional[float]
    ) -> None:
        # The session makes its lifecycle when it is first touched (or when an
        # integration begins one); load() sets the rest.
        self.session = session
        self.mutex = session._mutex
        self.environ = environ
        self.settings = settings
        self.lock_timeout = lock_timeout
        self.lock: Optional[SessionLock] = None
        self.responded = False
        self.failed = False

    # -- open ----------------------------------------------------------------------

    def load(self) -> LoadedSession:
        """Read the cookie, take the lock, load the record and apply expiry (the session calls this)."""
        settings = self.settings
        store = self.store = settings.store
        self.policy = settings.policy
        self.cookie = settings.cookie
        self.persistent_default = settings.persistent
        now = self.policy.clock()
        self.retired = []
        self.claims = {}
        self.claimed_in = None
        self.gone = False
        self.adoption = None
        self.stale_cookies = ()
        value = self.incoming = self.cookie.read(self.environ)
        if value is not None:
            if self.lock_timeout is not None and store.is_valid_id(value):
                self._take_lock(value)
            try:
                found = store.load_session(value, self.environ)
                if found is not None:
                    loaded = self._open(*found, now)
                    if loaded is not None:
                        if settings.legacy_cookies:
                            self.stale_cookies = self._carried_legacy_cookies(settings.legacy_cookies)
                        return loaded
            except BaseException as exc:
                self._release_lock()
                if isinstance(exc, Exception) and not isinstance(exc, SessionError):
                    raise _store_failure(store, "load the session", exc) from exc
                raise
            self._release_lock()  # nothing to lock for a fresh session
        self._start_fresh(now)
        if settings.adopter is not None:
            adopted = self._adopt(settings.adopter)
            if adopted is not None:
                return adopted
        return {}, {}, set(), self.persistent_default, None, {}

    def _adopt(self, adopter: Adopter) -> Optional[LoadedSession]:
        # A fresh session starts with what the adopter found of the system
        # being replaced, if anything.
        try:
            adoption = adopter(self.environ)
        except SessionError:
            raise
        except Exception as exc:
            raise SessionStoreError(
                f"the adopter {adopter!r} could not read the old session: {type(exc).__name__}: {exc}"
            ) from exc
        if adoption is None:
            return None
        values = dict(adoption.data)
        for key, value in values.items():
            try:
                if type(key) is not str:
                    raise TypeError(f"the key {key!r} is not a str")
                encode_value(value)
            except (TypeError, ValueError, RecursionError) as exc:
                log.warning("an old session was not adopted: its value %r can not be stored (%s)", key, exc)
                return None
        self.adoption = adoption
        persistent = self.persistent_default if adoption.persistent is None else bool(adoption.persistent)
        return values, {}, set(), persistent, None, {}

    def _carried_legacy_cookies(self, legacy_cookies: Tuple[LegacyCookie, ...]) -> List[LegacyCookie]:
        # A browser that brings a session of ours keeps it; the old system's
        # cookies it still carries go.  A cookie of the same name as ours
        # counts only beside ours (the browser sends both), and the very
        # cookie of ours (same name, path and domain) is never one of them.
        cookie = self.cookie
        carried = []
        for legacy in legacy_cookies:
            if (legacy.name, legacy.path, legacy.domain) == (cookie.name, cookie.path, cookie.domain):
                continue
            if count_cookies(self.environ, legacy.name) > (1 if legacy.name == cookie.name else 0):
                carried.append(legacy)
        return carried

    def _take_lock(self, id: str) -> None:
        assert self.lock_timeout is not None
        try:
            self.lock = self.store.lock_session(id, self.lock_timeout, self.environ)
        except SessionError:
            raise
        except Exception as exc:
            raise _store_failure(self.store, "lock the session", exc) from exc

    def _open(self, id: str, record: SessionRecord, now: float) -> Optional[LoadedSession]:
        try:
            stored = record["data"]  # the store hands over a record the session may keep
            if type(stored) is not dict:
                raise TypeError(f"data is a {type(stored).__name__}, not a dict")
            values = dict(stored)  # containers are decoded on first use (Session._decoded)
            flash = record["flash"]
            stored_flash = set(flash).intersection(values) if flash else set()
            created = float(record["created"])
            refreshed = float(record["refreshed"])
            persistent = record.get("persistent")
            persistent = self.persistent_default if persistent is None else bool(persistent)
            owner = record.get("owner")
            if owner is not None and type(owner) is not str:
                raise TypeError(f"owner is a {type(owner).__name__}, not a str")
            details = record.get("details") or {}
            if type(details) is not dict:
                raise TypeError(f"details is a {type(details).__name__}, not a dict")
            details = decode_value(details) if details else {}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SessionStoreError(
                f"{type(self.store).__name__} returned a malformed session record: {exc!r}"
            ) from exc
        if self.policy.is_expired(created, refreshed, now):
            log.debug("session expired; starting a fresh one")
            self._release_lock()
            self.retired.append((id, None))
            return None
        self.id = id
        self.new = False
        self.created = created
        self.refreshed = refreshed
        self.base = record
        return values, stored, stored_flash, persistent, owner, details

    def _start_fresh(self, now: float) -> None:
        self.id = generate_session_id()
        self.new = True
        self.created = now
        self.refreshed = now
        self.base = None

    def replace_id(self, *, keep_created: bool) -> None:
        """Give the session a new id; the record under the old one is deleted when the response starts."""
        if not self.new:
            self.retired.append((self.id, self.base))
        created = self.created
        self._start_fresh(self.policy.clock())
        if keep_created:
            self.created = created

    def claim_flash(self, key: str, encoded: Any) -> bool:
        """Take stored flash value ``key`` for this request; False when another request took it first."""
        try:
            taken = self.store.consume_flash(self.id, key, self.environ)
        except SessionError:
            raise
        except Exception as exc:
            raise _store_failure(self.store, "consume a flash value", exc) from exc
        if taken:
            assert self.base is not None
            self.claims[key] = encoded
            if self.claimed_in is None:
                self.claimed_in = (self.id, self.base)
        return taken

    def expires(self) -> Optional[float]:
        """When the session dies unless it is used again."""
        return self.policy.expires_at(self.created, self.refreshed)

    # -- respond -------------------------------------------------------------------

    def response_headers(self, status: str, headers: Headers) -> Headers:
        """Save the session as the response starts; return ``headers`` with Vary and Set-Cookie added.

        ``status`` is the status line (``"200 OK"``).  Nothing is saved for a
        5xx status.  Raises ``SessionStoreError`` when the store fails, and
        ``SessionCookieTooLarge`` when the cookie would not fit a browser.
        """
        self.response_started(status)
        if not self.session.accessed:
            return headers
        with self.mutex:
            headers = with_vary_cookie(headers)
            if self.failed:
                return headers
            try:
                set_cookie = self._save(headers_open=True)
            except BaseException:
                self.failed = True  # the client gets an error: nothing is saved at the end either
                raise
            if set_cookie is not None:
                headers.append(("Set-Cookie", set_cookie))
            if self.adoption is not None:
                legacy_cookies, self.adoption = self.adoption.expire, None  # a later save does not send them again
                headers.extend(self._legacy_expiries(legacy_cookies, set_cookie is not None))
            elif self.stale_cookies:
                legacy_cookies, self.stale_cookies = self.stale_cookies, ()
                headers.extend(self._legacy_expiries(legacy_cookies, set_cookie is not None))
            return headers

    def _legacy_expiries(self, legacy_cookies: Sequence[LegacyCookie], cookie_set: bool) -> Headers:
        # The old system's cookies go; one that is the very cookie this
        # response sets (the same name, path and domain) is replaced by it.
        cookie = self.cookie
        return [
            ("Set-Cookie", cookie.expire_other(legacy.name, legacy.path, legacy.domain, self.environ))
            for legacy in legacy_cookies
            if not (
                cookie_set and (legacy.name, legacy.path, legacy.domain) == (cookie.name, cookie.path, cookie.domain)
            )
        ]

    def response_started(self, status: str) -> None:
        """The response started with ``status``: later changes follow its success or failure.

        :meth:`response_headers` calls it; a server integration calls it alone
        for a session first touched after its response started.
        """
        self.responded = True
        if status[:1] == "5":
            self.failed = True  # nothing is saved for a server error, not even later

    def _save(self, *, headers_open: bool) -> Optional[str]:
        # Saves what the request changed; returns the Set-Cookie value, if any.
        session = self.session
        if self.gone:
            return None
        if not (self.new or self.retired or self.claims or session._has_pending()):
            policy = self.policy
            if not (headers_open and policy.refresh_due(self.refreshed, policy.clock())):
                return None  # the common read-only request: nothing to save
        try:
            if self.new and self.retired and headers_open and not session._is_empty() and not self._retire_loaded():
                self.gone = True
                log.info("session was deleted, ended or cleared by another request; it was not regenerated")
                return None
            if self.new:
                set_cookie = self._save_new(headers_open)
            else:
                set_cookie = self._save_changes(headers_open)
            if self.new and not session._is_empty():
                return set_cookie  # a regenerated id that could not reach the browser: keep the old record
            while self.retired:
                self.store.delete_session(self.retired.pop()[0], self.environ)
        except (SessionError, _UnstorableValue):
            raise
        except Exception as exc:
            raise _store_failure(self.store, "save the session", exc) from exc
        return set_cookie

    def _retire_loaded(self) -> bool:
        # Before a regenerated session is written under its new id, the
        # record it replaces goes, on the condition that it is still the one
        # this request loaded (the store checks the generation, as for any
        # change): a session deleted, ended or cleared meanwhile is not
        # carried over to a new id.  Removing first means a failure between
        # the two writes loses the session rather than resurrecting it.
        if self.store.client_side:
            return True
        kept: List[Tuple[str, Optional[SessionRecord]]] = []
        for id, base in self.retired:
            if base is None:
                kept.append((id, base))
                continue
            changes = SessionChanges(
                cleared=True, refreshed=base["refreshed"], expires=base["expires"], owner=_NO_OWNER, base=base
            )
            outcome = _outcome(self.store.apply_changes(id, changes, self.environ))
            if outcome is _GONE:
                return False
            if outcome is _APPLIED:  # a store that keeps empty records: remove it outright
                kept.append((id, None))
        self.retired = kept
        return True

    def _save_new(self, headers_open: bool) -> Optional[str]:
        session = self.session
        adoption = self.adoption
        if adoption is not None and headers_open and adoption.on_commit is not None and not adoption.on_commit():
            # Another request adopted the old session first: its response
            # carries the new session; this one sets none.
            log.info("an old session was adopted by a concurrent request; this request's session was not saved")
            self.adoption = None
            self.gone = True
            return None
        if session._is_empty():
            # delete(), an expired or rejected cookie, or nothing set: no record.
            if headers_open and self.incoming is not None:
                return self.cookie.expire_header(self.environ)
            return None
        if not headers_open:
            log.warning("session data set after the response started was dropped: a new session needs its cookie")
            return None
        now = self.policy.clock()
        data, flash = session._encoded()
        expires = self.policy.expires_at(self.created, now)
        record: SessionRecord = {
            "data": data,
            "flash": sorted(flash),
            "created": self.created,
            "refreshed": now,
            "expires": expires,
            "persistent": session._persistent,
        }
        if session._owner is not None:
            record["owner"] = session._owner
            record["details"] = encode_value(session._details)
        self.store.create_session(record, self.id, self.environ)
        self.new = False
        self.refreshed = now
        self.base = record
        session._saved_record(data, flash)
        value = self.store.cookie_value(self.id, SessionChanges(refreshed=now, expires=expires, base=record))
        return self._set_cookie(value, session._persistent, now)

    def _save_changes(self, headers_open: bool) -> Optional[str]:
        session = self.session
        policy = self.policy
        now = policy.clock()
        refresh = headers_open and policy.refresh_due(self.refreshed, now)
        refreshed = now if refresh else self.refreshed
        expires = policy.expires_at(self.created, refreshed)
        claimed = frozenset(self.claims) if headers_open and self.claims else _NOTHING
        changes = session._changes(refreshed, expires, claimed, self.base)
        changed = changes is not None  # the data or the persistence flag
        if changes is None:
            if not refresh and not claimed:
                return None  # the common read-only request: nothing to save
            changes = SessionChanges(refreshed=refreshed, expires=expires, claimed=claimed, base=self.base)
        # The store is asked when there is something to write, and also when
        # the request leaves the session empty, so that it can remove the record.
        if changed or refresh or session._is_empty():
            outcome = self.store.apply_changes(self.id, changes, self.environ)
            if outcome is not _APPLIED:
                outcome = _outcome(outcome)
            if outcome is _GONE:
                self.gone = True
                log.info(
                    "session was deleted, regenerated or cleared by another request; this request's changes were dropped"
                )
                return None
            if outcome is _EMPTIED:
                session._emptied()
                self._start_fresh(now)
                return self.cookie.expire_header(self.environ) if headers_open else None
        value = self.store.cookie_value(self.id, changes)
        if changed or refresh:
            # The store holds the changes now: later writes of this request start from them.
            self.refreshed = refreshed
            if changed:
                if changes.cleared or changes.persistent is not None or changes.owner is not None:
                    self.base = _next_base(self.base, changes)
                session._saved(changes)
        persistent = session._persistent
        if not headers_open:
            if value != self.incoming:
                log.warning(
                    "session changes made after the response started were dropped: %s keeps data in the cookie",
                    type(self.store).__name__,
                )
            return None
        if value != self.incoming or (refresh and persistent) or changes.persistent is not None:
            return self._set_cookie(value, persistent, now)
        return None

    def _set_cookie(self, value: str, persistent: bool, now: float) -> str:
        max_age = self.policy.cookie_max_age(self.created, now, now) if persistent else None
        return self.cookie.set_header(value, max_age, self.environ)

    # -- end -------------------------------------------------------------------------

    def end(self, *, failed: bool = False) -> None:
        """Finish the request: save late changes, or give back taken flash values after a failure; release the lock.

        ``failed`` says the response failed after it started (its body
        raised): its late changes are dropped.  A request that never reached
        :meth:`response_headers`, or answered 5xx, failed before it started.
        """
        session = self.session
        if not session.accessed:
            return  # never touched: nothing to save and no lock taken
        if self.lock is None and self.responded and not self.failed and not self.retired and not session._has_pending():
            return  # the common request: saved as its response started, and nothing since
        with self.mutex:
            try:
                if not self.responded or self.failed:
                    self._give_back_flash()
                elif not failed and (self.retired or session._has_pending()):
                    self._save(headers_open=False)
            finally:
                self._release_lock()

    def _give_back_flash(self) -> None:
        # The one write of a failed request: the flash values it took go
        # back, unless the session was deleted or cleared meanwhile (the
        # store checks the generation the request loaded).
        if not self.claims or self.claimed_in is None:
            return
        id, base = self.claimed_in
        changes = SessionChanges(
            restore=dict(self.claims), refreshed=base["refreshed"], expires=base["expires"], base=base
        )
        self.claims = {}
        try:
            self.store.apply_changes(id, changes, self.environ)
        except Exception as exc:  # the request is failing already; its own error is the one to see
            log.warning(
                "%s could not give back the flash values of a failed request: %s", type(self.store).__name__, exc
            )

    def _release_lock(self) -> None:
        lock, self.lock = self.lock, None
        if lock is not None:
            lock.release()


def _next_base(base: Optional[SessionRecord], changes: SessionChanges) -> SessionRecord:
    # The record as this request saved it, for a later write of the request:
    # a clear() started the next generation; the persistence flag changed.
    assert base is not None
    updated = base.copy()
    if changes.cleared:
        updated["generation"] = base.get("generation", 0) + 1
    if changes.persistent is not None:
        updated["persistent"] = changes.persistent
    if changes.owner is not None:
        updated["owner"] = changes.owner.owner
        updated["details"] = dict(changes.owner.details)
    return updated


def _outcome(result: Any) -> ChangeOutcome:
    # Stores written for 0.1.0 answer True (applied) or False (gone).
    if isinstance(result, ChangeOutcome):
        return result
    return _APPLIED if result else _GONE


def _store_failure(store: Store, action: str, exc: BaseException) -> SessionStoreError:
    return SessionStoreError(f"{type(store).__name__} could not {action}: {type(exc).__name__}: {exc}")


def with_vary_cookie(headers: Headers) -> Headers:
    """``headers`` with ``Cookie`` in one ``Vary`` header, merged into any value already there."""
    for name, _ in headers:
        if name.lower() == "vary":
            break
    else:
        return [*headers, ("Vary", "Cookie")]  # most responses have none
    tokens: List[str] = []
    others: Headers = []
    position = -1
    for name, value in headers:
        if name.lower() == "vary":
            if position < 0:
                position = len(others)
            tokens.extend(token.strip() for token in value.split(",") if token.strip())
        else:
            others.append((name, value))
    if position < 0:
        others.append(("Vary", "Cookie"))
        return others
    lowered = {token.lower() for token in tokens}
    if "cookie" not in lowered and "*" not in lowered:
        tokens.append("Cookie")
    merged: List[str] = []
    for token in tokens:
        if token.lower() not in {seen.lower() for seen in merged}:
            merged.append(token)
    others.insert(position, ("Vary", ", ".join(merged)))
    return others
