"""MemoryStore: sessions in this process's memory, behind one lock.

For development, tests and single-process servers.  Every worker process has
its own memory, so under several gunicorn workers each sees different sessions:
use the SQLAlchemy or Redis store there.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Set

from ..errors import SessionLockTimeout
from ..serialization import copy_data
from ..store import (
    ChangeOutcome,
    SessionChanges,
    SessionInfo,
    SessionLock,
    SessionRecord,
    Store,
    SupportsId,
    WSGIEnviron,
    is_empty,
    session_handle,
    session_info,
    storage_key,
)

__all__ = ["MemoryStore"]

# Enum members are looked up once: on CPython 3.11 that lookup costs more
# than the comparison it serves.
_APPLIED, _EMPTIED, _GONE = ChangeOutcome.APPLIED, ChangeOutcome.EMPTIED, ChangeOutcome.GONE

# Expired records looked at per write; the sweep is amortized over writes
# instead of running in a background thread.
_SWEEP_PER_WRITE = 8


class MemoryStore(Store):
    """An in-process store: one lock, data copied in and out, bounded in size.

    At most ``max_entries`` sessions are kept; past that the least recently
    used is evicted, so a flood of new visitors can not exhaust memory.
    """

    can_lock = True

    def __init__(self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._records: OrderedDict[str, SessionRecord] = OrderedDict()
        # Owner -> the ids of their sessions; kept in step with _records.
        self._owned: Dict[str, Set[str]] = {}
        self._mutex = threading.Lock()
        self._request_locks: Dict[str, _RequestLock] = {}

    def __len__(self) -> int:
        with self._mutex:
            return len(self._records)

    def _live(self, id: str) -> Optional[SessionRecord]:
        # The caller holds self._mutex.
        record = self._records.get(id)
        if record is None:
            return None
        expires = record["expires"]
        if expires is not None and self._clock() >= expires:
            self._remove(id)
            return None
        self._records.move_to_end(id)
        return record

    def _put(self, id: str, record: SessionRecord) -> None:
        # The caller holds self._mutex.
        self._replace(id, record)
        self._records.move_to_end(id)
        self._sweep()
        while len(self._records) > self.max_entries:
            self._remove(next(iter(self._records)))

    def _replace(self, id: str, record: SessionRecord) -> None:
        # Store ``record`` under ``id``, keeping the owners' index in step.
        previous = self._records.get(id)
        old_owner = previous.get("owner") if previous is not None else None
        owner = record.get("owner")
        self._records[id] = record
        if owner != old_owner:
            if old_owner is not None:
                self._unindex(old_owner, id)
            if owner is not None:
                self._owned.setdefault(owner, set()).add(id)

    def _remove(self, id: str) -> None:
        record = self._records.pop(id, None)
        if record is not None and record.get("owner") is not None:
            self._unindex(record["owner"], id)  # type: ignore[arg-type]

    def _unindex(self, owner: str, id: str) -> None:
        ids = self._owned.get(owner)
        if ids is not None:
            ids.discard(id)
            if not ids:
                del self._owned[owner]

    def _sweep(self) -> None:
        now = self._clock()
        for _ in range(_SWEEP_PER_WRITE):
            oldest_id = next(iter(self._records), None)
            if oldest_id is None:
                return
            expires = self._records[oldest_id]["expires"]
            if expires is None or now < expires:
                return
            self._remove(oldest_id)

    def get_session(self, id: str, environ: WSGIEnviron) -> Optional[SessionRecord]:
        with self._mutex:
            record = self._live(id)
            if record is None:
                return None
            # Records are copied on the way in and never changed in place
            # afterwards (a change replaces the record), so the request may
            # have the stored one: it never changes it, and decodes values
            # into new objects before a handler sees them.
            return record

    def create_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        copied = copy_data(data)
        with self._mutex:
            self._put(id, copied)

    def persist_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        copied = copy_data(data)
        with self._mutex:
            self._put(id, copied)

    def delete_session(self, id: str, environ: WSGIEnviron) -> None:
        with self._mutex:
            self._remove(id)

    def apply_changes(self, id: str, changes: SessionChanges, environ: WSGIEnviron) -> ChangeOutcome:
        # Applied under the store's lock to the current record: concurrent
        # requests keep each other's keys, and a deleted or cleared session
        # stays so.  The encoded values in ``changes`` were made by the
        # session for this write and nothing writes into them, so they are
        # kept without a copy.
        with self._mutex:
            record = self._live(id)
            if record is None or record.get("generation", 0) != changes.generation:
                return _GONE
            updated = changes.apply_to(record)
            if is_empty(updated):
                self._remove(id)
                return _EMPTIED
            if changes.owner is None:
                self._records[id] = updated  # the owner did not change: no index work
            else:
                self._replace(id, updated)
            return _APPLIED

    def consume_flash(self, id: str, key: str, environ: WSGIEnviron) -> bool:
        with self._mutex:
            record = self._live(id)
            if record is None or key not in record["flash"]:
                return False
            updated = record.copy()
            updated["data"] = {name: value for name, value in record["data"].items() if name != key}
            updated["flash"] = [name for name in record["flash"] if name != key]
            self._records[id] = updated
            return True

    def lock_session(self, id: str, timeout: float, environ: WSGIEnviron) -> SessionLock:
        with self._mutex:
            lock = self._request_locks.get(id)
            if lock is None:
                lock = self._request_locks[id] = _RequestLock(self, id)
            lock.waiters += 1
        if not lock.mutex.acquire(timeout=timeout):
            self._forget_waiter(lock)
            raise SessionLockTimeout(f"MemoryStore: the session's request lock was not free within {timeout} s")
        return _HeldLock(lock)

    def _forget_waiter(self, lock: _RequestLock) -> None:
        with self._mutex:
            lock.waiters -= 1
            if lock.waiters == 0:
                del self._request_locks[lock.id]

    def cleanup(self) -> int:
        """Delete every expired record now and return how many."""
        now = self._clock()
        with self._mutex:
            expired = [
                id for id, record in self._records.items() if record["expires"] is not None and now >= record["expires"]
            ]
            for id in expired:
                self._remove(id)
        return len(expired)

    # -- the sessions of an owner ------------------------------------------------------

    def sessions_of(self, owner: str, current: Optional[SupportsId] = None) -> List[SessionInfo]:
        """The live sessions of ``owner``, oldest first, from the index this store keeps."""
        current_id = current.id if current is not None else None  # before the lock: it may load the session
        with self._mutex:
            found = [(id, self._live(id)) for id in sorted(self._owned.get(owner, ()))]
        infos = [session_info(storage_key(id), record, id == current_id) for id, record in found if record is not None]
        return sorted(infos, key=lambda info: info.created_at)

    def end_session(self, owner: str, handle: str) -> bool:
        """End ``owner``'s session named by ``handle``, as ``delete()`` would; False when there is none."""
        with self._mutex:
            for id in list(self._owned.get(owner, ())):
                if session_handle(storage_key(id)) == handle:
                    self._remove(id)
                    return True
        return False

    def end_sessions(self, owner: str, keep: Optional[SupportsId] = None) -> int:
        """End every session of ``owner`` but ``keep``, as ``delete()`` would; return how many."""
        keep_id = keep.id if keep is not None else None
        with self._mutex:
            ended = [id for id in self._owned.get(owner, ()) if id != keep_id and self._live(id) is not None]
            for id in ended:
                self._remove(id)
        return len(ended)


class _RequestLock:
    """One session's request lock and how many requests hold or wait for it."""

    __slots__ = ("store", "id", "mutex", "waiters")

    def __init__(self, store: MemoryStore, id: str) -> None:
        self.store = store
        self.id = id
        self.mutex = threading.Lock()
        self.waiters = 0


class _HeldLock(SessionLock):
    __slots__ = ("_lock",)

    def __init__(self, lock: _RequestLock) -> None:
        self._lock: Optional[_RequestLock] = lock

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.mutex.release()
            lock.store._forget_waiter(lock)
