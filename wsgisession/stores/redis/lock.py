"""RedisStore's request lock: one holder per session, waiters served in the order they came.

A lock that waiters poll for is unfair: whoever polls just after a release
wins, and a waiter that backs off between polls can lose again and again
until it times out.  This lock keeps a line instead.  The keys of one
session's lock all carry the session's hash tag, so they sit in one cluster
slot with its hash and every script runs on one node:

``<hash key>:lock``
    The token of the request holding the lock.  It expires after the store's
    ``lock_expire_after``, so a holder that dies frees the lock by itself.
``<hash key>:lock:queue``
    The tokens of the waiting requests, oldest first.
``<hash key>:lock:waiting:<token>``
    A waiter's place in line.  It lives for :data:`PLACE_LEASE` seconds, and
    the waiter renews it every time it looks at the lock (at least every
    :data:`LONGEST_WAIT` seconds); a waiter that died loses its place when it
    lapses, and the line skips it.
``<hash key>:lock:wake:<token>``
    A list the waiter blocks on (``BLPOP``), pushed to when the lock is
    handed to it.

Taking the lock (one script): a free lock with nobody in line is taken at
once.  Otherwise the request joins the end of the line (or renews its
place) and blocks on its wake-up list.  Releasing (one script) hands the
lock directly to the first live waiter: the lock key is set to that waiter's
token, for :data:`PLACE_LEASE` seconds, and its wake-up list is pushed to.
The waiter wakes at once and claims the lock for the full
``lock_expire_after``; a waiter that died before claiming it frees it after
the lease.  A request that arrives while others wait goes to the end of the
line even if the lock happens to be free, so nobody is overtaken.  A waiter
that reaches its timeout leaves the line (and passes the lock on, if it was
handed to it meanwhile) and raises ``SessionLockTimeout``.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from typing import Any, List, Optional

from ...errors import SessionLockTimeout
from ...store import SessionLock
from .clients import REDIS_ERRORS
from .lua import LuaScript

__all__ = ["RequestLocks", "PLACE_LEASE", "LONGEST_WAIT"]

log = logging.getLogger("wsgisession")

#: Seconds a waiter keeps its place without coming back, and a lock handed to
#: a waiter waits for it to claim it.
PLACE_LEASE = 2.0
#: Seconds a waiter blocks before it looks at the lock again (renewing its
#: place, and taking a lock whose holder died).
LONGEST_WAIT = 0.2

# KEYS[1] the lock, KEYS[2] the line.  Every key of the lock starts with
# KEYS[1], so all are in its cluster slot.
_LINE = r"""
local lock, line = KEYS[1], KEYS[2]
local function place(token)
  return lock .. ':waiting:' .. token
end
local function wake_up(token)
  return lock .. ':wake:' .. token
end
-- Gives the free lock to the first waiter still in line, for `lease` ms, and
-- wakes it; answers its token, or false when nobody is waiting.
local function hand_over(lease)
  while true do
    local token = redis.call('LPOP', line)
    if not token then
      return false
    end
    if redis.call('DEL', place(token)) == 1 then
      redis.call('SET', lock, token, 'PX', lease)
      redis.call('RPUSH', wake_up(token), '1')
      redis.call('PEXPIRE', wake_up(token), lease)
      return token
    end
  end
end
"""

# ARGV[1] this request's token, ARGV[2] how long a holder keeps the lock
# (ms), ARGV[3] the place lease (ms).  Answers 1 when this request holds the
# lock now, 0 when it is waiting in line.
_TAKE = LuaScript(
    _LINE
    + r"""
local token = ARGV[1]
local holder = redis.call('GET', lock)
if not holder then
  holder = hand_over(ARGV[3]) or token
end
if holder == token then
  redis.call('SET', lock, token, 'PX', ARGV[2])
  redis.call('DEL', place(token), wake_up(token))
  return 1
end
if not redis.call('SET', place(token), '1', 'PX', ARGV[3], 'XX') then
  redis.call('SET', place(token), '1', 'PX', ARGV[3])
  redis.call('RPUSH', line, token)
end
redis.call('PEXPIRE', line, ARGV[3])
return 0
"""
)

# ARGV[1] the token of a request that is done with the lock: its holder, or
# a waiter giving up its place; ARGV[2] the place lease (ms).  A holder's
# lock goes to the first live waiter; a lock that expired and was taken by
# another request stays theirs.
_LEAVE = LuaScript(
    _LINE
    + r"""
if redis.call('GET', lock) == ARGV[1] then
  redis.call('DEL', lock)
  hand_over(ARGV[2])
end
redis.call('DEL', place(ARGV[1]), wake_up(ARGV[1]))
return 1
"""
)


def _milliseconds(seconds: float) -> str:
    return str(max(1, math.ceil(seconds * 1000)))


class RequestLocks:
    """The request locks of one store: ``take(lock_key, timeout)`` waits in line for one.

    ``client`` is the store's redis-py client; a holder keeps a lock for at
    most ``hold_for`` seconds; a waiter blocks at most ``longest_wait``
    seconds at a time (less than the client's reply timeout).
    """

    def __init__(self, client: Any, *, hold_for: float, longest_wait: float = LONGEST_WAIT) -> None:
        self.client = client
        self.hold_for = hold_for
        self.longest_wait = longest_wait
        self._hold_ms = _milliseconds(hold_for)
        self._lease_ms = _milliseconds(PLACE_LEASE)

    def take(self, lock_key: str, timeout: float) -> SessionLock:
        """Wait in line for the lock at ``lock_key``, at most ``timeout`` seconds.

        Raises ``SessionLockTimeout`` when it is not this request's turn in
        time, and redis-py's errors when Redis fails.
        """
        client = self.client
        keys = [lock_key, lock_key + ":queue"]
        token = secrets.token_hex(16)
        args = [token, self._hold_ms, self._lease_ms]
        wake_up = [f"{lock_key}:wake:{token}"]
        deadline = time.monotonic() + timeout
        try:
            while True:
                if int(_TAKE(client, keys, args)) == 1:
                    return _HeldLock(self, keys, token)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # BLPOP blocks forever on 0: never ask for less than a millisecond.
                client.blpop(wake_up, max(0.001, min(self.longest_wait, remaining)))
        except BaseException:
            self._leave(keys, token)
            raise
        self._leave(keys, token)
        raise SessionLockTimeout(f"RedisStore: the session's request lock was not free within {timeout} s")

    def _leave(self, keys: List[str], token: str) -> None:
        # A holder releasing, or a waiter leaving the line.  A failure here is
        # logged, not raised: the request's own outcome is the one to report,
        # and the lock (or the place) lapses by itself.
        try:
            _LEAVE(self.client, keys, [token, self._lease_ms])
        except REDIS_ERRORS as exc:
            log.warning(
                "RedisStore could not give up a session lock (it lapses by itself): %s: %s", type(exc).__name__, exc
            )


class _HeldLock(SessionLock):
    """A held lock; releasing it hands it to the next request in line."""

    __slots__ = ("_locks", "_keys", "_token")

    def __init__(self, locks: RequestLocks, keys: List[str], token: str) -> None:
        self._locks: Optional[RequestLocks] = locks
        self._keys = keys
        self._token = token

    def release(self) -> None:
        locks, self._locks = self._locks, None
        if locks is not None:
            locks._leave(self._keys, self._token)
