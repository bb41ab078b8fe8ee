"""The per-session request lock (``SessionMiddleware(lock=True)``), across threads and processes.

Between processes the lock is a token in the session's row: taking it is
``UPDATE ... SET lock_token = <mine> WHERE lock_token IS NULL OR lock_expires
<= now``, releasing it clears the token if it is still the holder's, and a
lock whose holder died lapses after ``lock_expire_after`` seconds.

Within a process, the requests waiting for one session form a queue, first
come first served, and only the first of them asks the database, every
:data:`POLL_INTERVAL` seconds, whether the lock is free; the others wait on
an event, without a connection, until their turn.  So requests of one
process never overtake each other, and a waiting process has the same
chance as any other each time the lock is released: with N requests
queued on a session for S seconds each, a request waits about N x S.
Waiting never holds a connection, so no number of waiting requests can
drain the connection pool.  (A polling lock whose waiters each back off on
their own lets new requests overtake old ones, which then time out.)
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
import time
from typing import Callable, Deque, Dict, Optional

from ...errors import SessionLockTimeout, SessionStoreError
from ...store import SessionLock
from .database import Database
from .statements import Statements

__all__ = ["RequestLocks", "POLL_INTERVAL"]

log = logging.getLogger("wsgisession")

#: How often the first waiting request of a process asks whether the lock is free.
POLL_INTERVAL = 0.005


class RequestLocks:
    """Takes and releases the request locks of one table's sessions."""

    def __init__(
        self, database: Database, statements: Statements, clock: Callable[[], float], lock_expire_after: float
    ) -> None:
        self._database = database
        self._statements = statements
        self._clock = clock
        self._lock_expire_after = lock_expire_after
        self._queues: Dict[str, Deque[threading.Event]] = {}
        self._queues_mutex = threading.Lock()

    def acquire(self, key: str, timeout: float) -> SessionLock:
        """Hold the lock of the session stored under ``key``; ``SessionLockTimeout`` after ``timeout`` seconds.

        A session without a row has nothing to protect: the lock returned
        then holds nothing.
        """
        deadline = time.monotonic() + timeout
        turn = self._join(key)
        try:
            if not turn.wait(timeout):
                raise self._timeout(timeout)
            token = secrets.token_hex(16)
            if self._take(key, token):
                return _RowLock(self, key, token)
            while True:
                state = self._database.fetch_one(
                    "lock a session", self._statements.lock_state, {"key": key}, retry=True
                )
                if state is None:
                    return SessionLock()  # nothing stored: the session starts fresh
                holder, lapses = state
                if (holder is None or lapses <= self._clock()) and self._take(key, token):
                    return _RowLock(self, key, token)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timeout(timeout)
                time.sleep(min(POLL_INTERVAL, remaining))
        finally:
            self._leave(key, turn)

    def release(self, key: str, token: str) -> None:
        """Give up the lock, if ``token`` still holds it."""
        self._database.change(
            "release a session's request lock", self._statements.unlock, {"key": key, "token": token}, retry=True
        )

    def _take(self, key: str, token: str) -> bool:
        now = float(self._clock())
        values = {"key": key, "now": now, "token": token, "lock_expires": now + self._lock_expire_after}
        return self._database.change("lock a session", self._statements.lock, values, retry=True) == 1

    def _timeout(self, timeout: float) -> SessionLockTimeout:
        return SessionLockTimeout(
            f"SQLAlchemyStore: the session's request lock was not free within {timeout:g} s "
            f"(table {self._database.table.name!r})"
        )

    # -- the queue of this process -------------------------------------------------------

    def _join(self, key: str) -> threading.Event:
        # The event is set when the request is first in line for the session.
        turn = threading.Event()
        with self._queues_mutex:
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = collections.deque()
            queue.append(turn)
            if queue[0] is turn:
                turn.set()
        return turn

    def _leave(self, key: str, turn: threading.Event) -> None:
        with self._queues_mutex:
            queue = self._queues[key]
            first = queue[0] is turn
            queue.remove(turn)
            if not queue:
                del self._queues[key]
            elif first:
                queue[0].set()


class _RowLock(SessionLock):
    """A held request lock: the token written into the session's row."""

    __slots__ = ("_locks", "_key", "_token")

    def __init__(self, locks: RequestLocks, key: str, token: str) -> None:
        self._locks: Optional[RequestLocks] = locks
        self._key = key
        self._token = token

    def release(self) -> None:
        locks, self._locks = self._locks, None
        if locks is None:
            return
        try:
            locks.release(self._key, self._token)
        except SessionStoreError as exc:
            # Release runs while a request ends, often while another error is
            # being handled; the lock lapses by itself after lock_expire_after.
            log.warning("%s; the lock lapses after %s s", exc, locks._lock_expire_after)
