"""RedisStore: sessions in Redis, shared by every app server, expired by Redis itself.

Each session is one Redis hash, named by the SHA-256 digest of its id under a
prefix: ``<prefix>{<digest>}``.  The braces are a cluster hash tag, so the hash
and its request lock (``<prefix>{<digest>}:lock``) always live in one slot.
Fields of the hash:

* ``d:<key>``: the JSON of one ordinary session value;
* ``f:<key>``: the JSON of one flash value;
* ``m:created``, ``m:refreshed``, ``m:expires``: the record's times;
* ``m:gen``: how many times the session was cleared (absent: never);
* ``m:persistent``: ``1`` or ``0``, the session's persistence flag.

A value per field is what lets a request write only the keys it changed: each
commit runs one Lua script that applies the request's changes to the current
hash, or does nothing when the hash is gone or was cleared since the request
loaded it (a logout won), and deletes a hash left without data.  The hash's Redis
TTL follows the record's expiry plus a small grace.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import time
from typing import Callable, Dict, Iterator, List, Optional, Union

try:
    import redis
    from redis.cluster import RedisCluster
    from redis.commands.core import Script
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "wsgisession.stores.redis needs redis-py; install it with: pip install 'wsgisession[redis]'"
    ) from exc

from ..errors import SessionLockTimeout, SessionStoreError
from ..serialization import dumps, loads
from ..store import ChangeOutcome, SessionChanges, SessionLock, SessionRecord, Store, WSGIEnviron, storage_key

__all__ = ["RedisStore"]

log = logging.getLogger("wsgisession")

#: A redis-py client: a plain, Sentinel-managed or cluster one.
RedisClient = Union["redis.Redis", "RedisCluster"]

_DATA = "d:"
_FLASH = "f:"
_CREATED = "m:created"
_REFRESHED = "m:refreshed"
_EXPIRES = "m:expires"
_GENERATION = "m:gen"
_PERSISTENT = "m:persistent"

# Shared by the scripts.  unpack() is bounded by Lua's stack, so long argument
# lists go to HSET / HDEL in chunks; an even chunk size keeps HSET's pairs whole.
_LUA_HELPERS = """
local function in_chunks(command, key, items, first, last)
  for start = first, last, 1000 do
    redis.call(command, key, unpack(items, start, math.min(start + 999, last)))
  end
end
local function set_ttl(key, milliseconds)
  if milliseconds == '' then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIRE', key, milliseconds)
  end
end
"""

# KEYS[1] the hash; ARGV[1] TTL in ms ('' for none); ARGV[2] '1' to require
# that the hash exists; ARGV[3..] field, value pairs of the whole record.
_WRITE_RECORD = (
    _LUA_HELPERS
    + """
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('DEL', KEYS[1])
in_chunks('HSET', KEYS[1], ARGV, 3, #ARGV)
set_ttl(KEYS[1], ARGV[1])
return 1
"""
)

# KEYS[1] the hash.  ARGV[1] TTL in ms ('' for none); ARGV[2] '1' when the
# request cleared the session; ARGV[3] the generation the request loaded;
# ARGV[4] and ARGV[5] the new refresh time and expiry, written only when not
# older than the stored ones; ARGV[6] the persistence flag ('' unchanged);
# ARGV[7] how many fields to delete, then those fields; then how many flash
# values to give back, then key, value pairs of them; then field, value pairs
# to set.  Answers 0 (gone or another generation), 1 (applied) or 2 (no data
# left: the hash was deleted).
_APPLY_CHANGES = (
    _LUA_HELPERS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local generation = redis.call('HGET', KEYS[1], 'm:gen') or '0'
if generation ~= ARGV[3] then
  return 0
end
if ARGV[2] == '1' then
  local data = {}
  for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(field, 1, 2) ~= 'm:' then
      data[#data + 1] = field
    end
  end
  in_chunks('HDEL', KEYS[1], data, 1, #data)
  redis.call('HSET', KEYS[1], 'm:gen', tostring(tonumber(generation) + 1))
end
local deleted = tonumber(ARGV[7])
in_chunks('HDEL', KEYS[1], ARGV, 8, 7 + deleted)
local at = 8 + deleted
local restored = tonumber(ARGV[at])
for index = at + 1, at + 2 * restored, 2 do
  local key = ARGV[index]
  if redis.call('HEXISTS', KEYS[1], 'd:' .. key) == 0 and redis.call('HEXISTS', KEYS[1], 'f:' .. key) == 0 then
    redis.call('HSET', KEYS[1], 'f:' .. key, ARGV[index + 1])
  end
end
in_chunks('HSET', KEYS[1], ARGV, at + 1 + 2 * restored, #ARGV)
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'm:persistent', ARGV[6])
end
if tonumber(ARGV[4]) >= tonumber(redis.call('HGET', KEYS[1], 'm:refreshed') or '0') then
  redis.call('HSET', KEYS[1], 'm:refreshed', ARGV[4], 'm:expires', ARGV[5])
  set_ttl(KEYS[1], ARGV[1])
end
local meta = 0
for _, field in ipairs({'m:created', 'm:refreshed', 'm:expires', 'm:gen', 'm:persistent'}) do
  meta = meta + redis.call('HEXISTS', KEYS[1], field)
end
if redis.call('HLEN', KEYS[1]) <= meta then
  redis.call('DEL', KEYS[1])
  return 2
end
return 1
"""
)

# KEYS[1] the lock; ARGV[1] this holder's token; ARGV[2] expiry in ms.  Taking
# a lock this holder already has succeeds, so a client retry after a lost
# reply does not wait for its own lock to expire.
_ACQUIRE_LOCK = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] the lock; ARGV[1] this holder's token.  Only the holder deletes it:
# a lock that expired and was taken by another request stays theirs.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_OUTCOMES = {0: ChangeOutcome.GONE, 1: ChangeOutcome.APPLIED, 2: ChangeOutcome.EMPTIED}

# The lock is polled with pauses doubling from the first to the longest.
_FIRST_POLL_PAUSE = 0.001
_LONGEST_POLL_PAUSE = 0.05


def _text(value: Union[bytes, str]) -> str:
    # Clients made with decode_responses=True answer str, others bytes.
    return value.decode("utf-8") if isinstance(value, bytes) else value


class RedisStore(Store):
    """A store in Redis: one hash per session, changes applied atomically by Lua scripts.

    ``client_or_url`` is a redis-py client (plain, Sentinel master, cluster) or
    a URL for ``redis.Redis.from_url``.  Records expire through Redis TTLs set
    to their expiry (by ``clock``, which must match the middleware's) plus
    ``grace`` seconds; request locks expire after ``lock_expire_after`` seconds.
    """

    can_lock = True

    def __init__(
        self,
        client_or_url: Union[str, RedisClient],
        *,
        prefix: str = "wsgisession:",
        clock: Callable[[], float] = time.time,
        grace: float = 10.0,
        lock_expire_after: float = 30.0,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("prefix must not contain braces: they would replace the per-session hash tag")
        if not grace >= 0:
            raise ValueError("grace must be zero or a positive number of seconds")
        if not lock_expire_after > 0:
            raise ValueError("lock_expire_after must be a positive number of seconds")
        client: RedisClient
        if isinstance(client_or_url, str):
            client = redis.Redis.from_url(client_or_url)
        else:
            client = client_or_url
        self._owns_client = isinstance(client_or_url, str)
        self.client = client
        self.prefix = prefix
        self.grace = float(grace)
        self.lock_expire_after = float(lock_expire_after)
        self._clock = clock
        # register_script only computes the SHA; redis-py's Script runs EVALSHA
        # and loads the script itself when the server does not know it yet.
        self._write_record_script: Script = client.register_script(_WRITE_RECORD)
        self._apply_changes_script: Script = client.register_script(_APPLY_CHANGES)
        self._acquire_lock_script: Script = client.register_script(_ACQUIRE_LOCK)
        self._release_lock_script: Script = client.register_script(_RELEASE_LOCK)

    # -- names and encodings ---------------------------------------------------

    def hash_key(self, id: str) -> str:
        """The Redis key of the session's hash; the raw id never reaches Redis."""
        return f"{self.prefix}{{{storage_key(id)}}}"

    def lock_key(self, id: str) -> str:
        """The Redis key of the session's request lock, in the same cluster slot as its hash."""
        return self.hash_key(id) + ":lock"

    def _ttl_milliseconds(self, expires: Optional[float]) -> str:
        # A duration, not an absolute time: the record's expiry is on the
        # store's clock (which a test may fake), Redis counts in real time.
        if expires is None:
            return ""
        remaining = max(0.0, expires - self._clock()) + self.grace
        return str(max(1, math.ceil(remaining * 1000)))

    @staticmethod
    def _meta(refreshed: float, expires: Optional[float]) -> List[str]:
        return [_REFRESHED, repr(float(refreshed)), _EXPIRES, "" if expires is None else repr(float(expires))]

    def _record_fields(self, record: SessionRecord) -> List[str]:
        flash = set(record["flash"])
        fields = [_CREATED, repr(float(record["created"]))]
        fields += self._meta(record["refreshed"], record["expires"])
        if record.get("generation"):
            fields += [_GENERATION, str(record["generation"])]
        if "persistent" in record:
            fields += [_PERSISTENT, "1" if record["persistent"] else "0"]
        for key, value in record["data"].items():
            fields += [(_FLASH if key in flash else _DATA) + key, dumps(value)]
        return fields

    @contextlib.contextmanager
    def _talking(self, action: str) -> Iterator[None]:
        try:
            yield
        except RedisError as exc:
            raise SessionStoreError(f"RedisStore could not {action}: {type(exc).__name__}: {exc}") from exc

    # -- the four basic methods ------------------------------------------------

    def get_session(self, id: str, environ: WSGIEnviron) -> Optional[SessionRecord]:
        """Read the session's hash in one ``HGETALL``; None when Redis has no such hash."""
        with self._talking("load the session"):
            fields = self.client.hgetall(self.hash_key(id))
        # A record past its expiry but inside the grace is still returned: the
        # middleware sees it is dead and deletes it.
        return _parse_record(fields) if fields else None

    def create_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        """Write the whole record and its TTL in one script, so no half-written hash is ever seen."""
        args = [self._ttl_milliseconds(data["expires"]), "0", *self._record_fields(data)]
        with self._talking("create the session"):
            self._write_record_script(keys=[self.hash_key(id)], args=args)

    def persist_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        """Replace the record, but only while it exists: a deleted session stays deleted."""
        args = [self._ttl_milliseconds(data["expires"]), "1", *self._record_fields(data)]
        with self._talking("save the session"):
            self._write_record_script(keys=[self.hash_key(id)], args=args)

    def delete_session(self, id: str, environ: WSGIEnviron) -> None:
        """Delete the session's hash and its lock key; a missing one is not an error."""
        with self._talking("delete the session"):
            self.client.delete(self.hash_key(id), self.lock_key(id))

    # -- atomic versions of the optional methods -----------------------------------

    def apply_changes(self, id: str, changes: SessionChanges, environ: WSGIEnviron) -> ChangeOutcome:
        """Apply one request's changes to the current hash in one script."""
        to_delete: List[str] = []
        to_set: List[str] = []
        for key in changes.deleted:
            to_delete += [_DATA + key, _FLASH + key]
        for key, value in changes.set.items():
            is_flash = key in changes.flash
            # A key is stored under one prefix only: drop the other one.
            to_delete.append((_DATA if is_flash else _FLASH) + key)
            to_set += [(_FLASH if is_flash else _DATA) + key, dumps(value)]
        restore: List[str] = []
        for key, value in changes.restore.items():
            restore += [key, dumps(value)]
        persistent = changes.persistent
        args = [
            self._ttl_milliseconds(changes.expires),
            "1" if changes.cleared else "0",
            str(changes.generation),
            repr(float(changes.refreshed)),
            "" if changes.expires is None else repr(float(changes.expires)),
            "" if persistent is None else ("1" if persistent else "0"),
            str(len(to_delete)),
            *to_delete,
            str(len(restore) // 2),
            *restore,
            *to_set,
        ]
        with self._talking("save the session"):
            applied = int(self._apply_changes_script(keys=[self.hash_key(id)], args=args))
        return _OUTCOMES[applied]

    def consume_flash(self, id: str, key: str, environ: WSGIEnviron) -> bool:
        """Delete flash value ``key``; HDEL answers 1 to exactly one of concurrent callers."""
        with self._talking("consume a flash value"):
            removed = self.client.hdel(self.hash_key(id), _FLASH + key)
        return int(removed) == 1

    def lock_session(self, id: str, timeout: float, environ: WSGIEnviron) -> SessionLock:
        """Take the session's lock key, polling until ``timeout``; it expires after ``lock_expire_after``.

        Raises ``SessionLockTimeout`` when another request holds it all along.
        """
        key = self.lock_key(id)
        token = secrets.token_hex(16)
        args = [token, str(max(1, math.ceil(self.lock_expire_after * 1000)))]
        deadline = time.monotonic() + timeout
        pause = _FIRST_POLL_PAUSE
        while True:
            with self._talking("lock the session"):
                if int(self._acquire_lock_script(keys=[key], args=args)) == 1:
                    return _RedisLock(self, key, token)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SessionLockTimeout(f"RedisStore: the session's request lock was not free within {timeout} s")
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _LONGEST_POLL_PAUSE)

    def cleanup(self) -> int:
        """Return 0: Redis deletes expired sessions and locks itself, through their TTLs."""
        return 0

    def close(self) -> None:
        """Close the client if this store built it from a URL; a client passed in stays open."""
        if self._owns_client:
            self.client.close()


def _parse_record(fields: Dict[Union[bytes, str], Union[bytes, str]]) -> SessionRecord:
    data = {}
    flash = []
    meta = {}
    try:
        for raw_field, raw_value in fields.items():
            field, value = _text(raw_field), _text(raw_value)
            kind, key = field[:2], field[2:]
            if kind == _DATA:
                data[key] = loads(value)
            elif kind == _FLASH:
                data[key] = loads(value)
                flash.append(key)
            else:
                meta[field] = value
        expires = meta[_EXPIRES]
        record: SessionRecord = {
            "data": data,
            "flash": sorted(flash),
            "created": float(meta[_CREATED]),
            "refreshed": float(meta[_REFRESHED]),
            "expires": float(expires) if expires else None,
        }
        if _GENERATION in meta:
            record["generation"] = int(meta[_GENERATION])
        if _PERSISTENT in meta:
            record["persistent"] = meta[_PERSISTENT] == "1"
        return record
    except (KeyError, ValueError) as exc:  # a missing meta field, bad JSON or UTF-8
        raise SessionStoreError(f"RedisStore found a malformed session hash: {exc!r}") from exc


class _RedisLock(SessionLock):
    """A held lock key; releasing deletes it only while it still holds this token."""

    __slots__ = ("_store", "_key", "_token")

    def __init__(self, store: RedisStore, key: str, token: str) -> None:
        self._store = store
        self._key: Optional[str] = key
        self._token = token

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None:
            return
        try:
            self._store._release_lock_script(keys=[key], args=[self._token])
        except RedisError as exc:
            # The response is already on its way; the key expires by itself.
            log.warning("RedisStore could not release a session lock (it will expire): %s: %s", type(exc).__name__, exc)
