"""RedisStore: sessions in Redis, shared by every app server, expired by Redis itself.

Each session is one Redis hash, named by the SHA-256 digest of its id under a
prefix: ``<prefix>{<digest>}``.  The braces are a cluster hash tag, so the hash
and the keys of its request lock (``<prefix>{<digest>}:lock...``) always live in
one slot.  Fields of the hash:

* ``d:<key>``: the JSON of one ordinary session value;
* ``f:<key>``: the JSON of one flash value;
* ``m:created``, ``m:refreshed``, ``m:expires``: the record's times;
* ``m:gen``: how many times the session was cleared (absent: never);
* ``m:persistent``: ``1`` or ``0``, the session's persistence flag;
* ``m:record``: the whole record, as the JSON of a ``SessionRecord``,
  written by every change.

A value per field is what lets a request write only the keys it changed: each
commit runs one Lua script that applies the request's changes to the current
hash, or does nothing when the hash is gone or was cleared since the request
loaded it (a logout won), deletes a hash left without data, and writes
``m:record`` again.  ``m:record`` is what a load reads: one ``HGET``, parsed by
one JSON parse into the record itself.  Hashes written before it existed
(0.1.0) have none; a second call then builds the record from their fields.
The hash's Redis TTL follows the record's expiry plus a small grace.

The other modules of this package: :mod:`.clients` (clients built from URLs,
with bounded waits), :mod:`.lock` (the request lock, a queue),
:mod:`.lua` (running scripts by their SHA).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable, List, Optional, Union, cast

try:
    import redis  # noqa: F401 - imported first for the message below
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "wsgisession.stores.redis needs redis-py; install it with: pip install 'wsgisession[redis]'"
    ) from exc

from ...errors import SessionStoreError
from ...serialization import dumps, loads
from ...store import ChangeOutcome, SessionChanges, SessionLock, SessionRecord, Store, WSGIEnviron, storage_key
from .clients import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_SOCKET_TIMEOUT,
    REDIS_ERRORS,
    SCHEMES,
    RedisClient,
    client_from_url,
    wait_limits,
)
from .lock import LONGEST_WAIT, RequestLocks
from .lua import LuaScript

__all__ = ["RedisStore", "RedisClient", "SCHEMES", "DEFAULT_SOCKET_TIMEOUT", "DEFAULT_CONNECT_TIMEOUT"]

log = logging.getLogger("wsgisession")

_DATA = "d:"
_FLASH = "f:"
_CREATED = "m:created"
_REFRESHED = "m:refreshed"
_EXPIRES = "m:expires"
_GENERATION = "m:gen"
_PERSISTENT = "m:persistent"
_RECORD = "m:record"

# Shared by the scripts.  A script reads a hash once (HGETALL) into a Lua
# table, works on the table, and writes what changed in one HDEL and one
# HSET: each call from Lua into Redis costs the server more than the work
# around it.  unpack() is bounded by Lua's stack, so long argument lists go to
# HSET / HDEL in chunks; an even chunk size keeps HSET's pairs whole.
#
# record_text(hash) answers the record as the JSON text of a SessionRecord
# ({"data": {...}, "flash": [...], "created": ..., ...}: one JSON parse gives
# the record get_session returns; a missing time is null), and as a second
# value whether the hash holds any session value.  Field values are JSON
# texts already; a key is quoted here, through cjson only when it holds a
# quote, a backslash or a control character.
_HELPERS = r"""
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
local function read_hash(key)
  local fields = redis.call('HGETALL', key)
  if #fields == 0 then
    return nil
  end
  local hash = {}
  for index = 1, #fields, 2 do
    hash[fields[index]] = fields[index + 1]
  end
  return hash
end
local function number_or_null(text)
  if text == nil or text == '' then
    return 'null'
  end
  return text
end
local D, F, COLON = string.byte('d'), string.byte('f'), string.byte(':')
local function record_text(hash)
  local data, flash, count, flashes = {}, {}, 0, 0
  for field, value in pairs(hash) do
    local kind, colon = string.byte(field, 1, 2)
    if colon == COLON and (kind == D or kind == F) then
      local name = string.sub(field, 3)
      if string.find(name, '[%c"\\]') then
        name = cjson.encode(name)
      else
        name = '"' .. name .. '"'
      end
      count = count + 1
      data[count] = name .. ':' .. value
      if kind == F then
        flashes = flashes + 1
        flash[flashes] = name
      end
    end
  end
  local text = '{"data":{' .. table.concat(data, ',') .. '},"flash":[' .. table.concat(flash, ',')
    .. '],"created":' .. number_or_null(hash['m:created'])
    .. ',"refreshed":' .. number_or_null(hash['m:refreshed'])
    .. ',"expires":' .. number_or_null(hash['m:expires'])
  if hash['m:gen'] then
    text = text .. ',"generation":' .. hash['m:gen']
  end
  if hash['m:persistent'] then
    text = text .. ',"persistent":' .. (hash['m:persistent'] == '1' and 'true' or 'false')
  end
  return text .. '}', count > 0
end
"""

# KEYS[1] the hash.  Answers the record's text built from the fields of a
# hash written without it (by 0.1.0), or nil when there is no hash.
_BUILD_RECORD = LuaScript(
    _HELPERS
    + r"""
local hash = read_hash(KEYS[1])
if not hash then
  return false
end
return (record_text(hash))
"""
)

# KEYS[1] the hash; ARGV[1] TTL in ms ('' for none); ARGV[2] '1' to require
# that the hash exists; ARGV[3..] field, value pairs of the whole record.
_WRITE_RECORD = LuaScript(
    _HELPERS
    + r"""
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local hash = {}
for index = 3, #ARGV, 2 do
  hash[ARGV[index]] = ARGV[index + 1]
end
ARGV[#ARGV + 1] = 'm:record'
ARGV[#ARGV + 1] = (record_text(hash))
redis.call('DEL', KEYS[1])
in_chunks('HSET', KEYS[1], ARGV, 3, #ARGV)
set_ttl(KEYS[1], ARGV[1])
return 1
"""
)

# KEYS[1] the hash.  ARGV[1] is the request's header, eight words: the TTL in
# ms ('-' for none); '1' when the request cleared the session; the generation
# it loaded; the new refresh time and expiry ('-' for none), written only
# when they change and are not older than the stored ones; the persistence
# flag ('-' unchanged); how many keys to delete; how many flash values to give
# back.  Then come the keys to delete, the key, value pairs of the flash
# values to give back, and the field, value pairs to set.  (One header
# instead of eight arguments: each argument costs the client and the server
# more than its bytes.)  Answers 0 (gone, another generation, or not a
# session's hash), 1 (applied) or 2 (no data left: the hash was deleted).
_APPLY_CHANGES = LuaScript(
    _HELPERS
    + r"""
local ttl, cleared, generation, refreshed, expires, persistent, deleted, restored =
  string.match(ARGV[1], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%d+) (%d+)$')
local hash = read_hash(KEYS[1])
if not hash or not hash['m:created'] or (hash['m:gen'] or '0') ~= generation then
  return 0
end
local removed, written = {}, {}
local function remove(field)
  if hash[field] then
    hash[field] = nil
    removed[#removed + 1] = field
  end
end
local function write(field, value)
  hash[field] = value
  written[#written + 1] = field
  written[#written + 1] = value
end
if cleared == '1' then
  for field in pairs(hash) do
    if string.sub(field, 1, 2) ~= 'm:' then
      remove(field)
    end
  end
  write('m:gen', tostring(tonumber(generation) + 1))
end
local at = 2 + tonumber(deleted)
for index = 2, at - 1 do
  remove('d:' .. ARGV[index])
  remove('f:' .. ARGV[index])
end
local sets = at + 2 * tonumber(restored)
for index = at, sets - 1, 2 do
  local key = ARGV[index]
  if not hash['d:' .. key] and not hash['f:' .. key] then
    write('f:' .. key, ARGV[index + 1])
  end
end
for index = sets, #ARGV, 2 do
  -- A key is stored under one prefix only: drop the other one.
  local field = ARGV[index]
  remove((string.sub(field, 1, 2) == 'd:' and 'f:' or 'd:') .. string.sub(field, 3))
  write(field, ARGV[index + 1])
end
if persistent ~= '-' then
  write('m:persistent', persistent)
end
if expires == '-' then
  expires = ''
end
local stored = hash['m:refreshed']
if (refreshed ~= stored or expires ~= hash['m:expires']) and tonumber(refreshed) >= tonumber(stored or '0') then
  write('m:refreshed', refreshed)
  write('m:expires', expires)
  set_ttl(KEYS[1], ttl == '-' and '' or ttl)
end
local text, has_data = record_text(hash)
if not has_data then
  redis.call('DEL', KEYS[1])
  return 2
end
write('m:record', text)
in_chunks('HDEL', KEYS[1], removed, 1, #removed)
in_chunks('HSET', KEYS[1], written, 1, #written)
return 1
"""
)

# KEYS[1] the hash; ARGV[1] the flash value's field.  Answers 1 when this call
# removed it: HDEL answers 1 to exactly one of concurrent callers.
_CONSUME_FLASH = LuaScript(
    _HELPERS
    + r"""
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local hash = read_hash(KEYS[1])
if hash then
  redis.call('HSET', KEYS[1], 'm:record', (record_text(hash)))
end
return 1
"""
)

_OUTCOMES = {0: ChangeOutcome.GONE, 1: ChangeOutcome.APPLIED, 2: ChangeOutcome.EMPTIED}


class RedisStore(Store):
    """A store in Redis: one hash per session, changes applied atomically by Lua scripts.

    ``client_or_url`` is a URL (``redis://``, ``rediss://``, ``unix://``,
    ``redis+sentinel://``, ``redis+cluster://``: see
    :mod:`wsgisession.stores.redis.clients`), whose client waits a bounded
    time for every reply, or a redis-py client (plain, Sentinel master,
    cluster) used with its own settings.  Records expire through Redis TTLs
    set to their expiry (by ``clock``, which must match the middleware's)
    plus ``grace`` seconds; request locks expire after ``lock_expire_after``
    seconds.
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
            try:
                client = client_from_url(client_or_url)
            except REDIS_ERRORS as exc:  # a cluster client reads the slot map at once
                raise self._failure("connect to Redis", exc) from exc
        else:
            client = client_or_url
        self._owns_client = isinstance(client_or_url, str)
        self.client = client
        self.prefix = prefix
        self.grace = float(grace)
        self.lock_expire_after = float(lock_expire_after)
        self._clock = clock
        limits = wait_limits(client)
        if limits is not None:
            _warn_when_unbounded(*limits)
        reply_timeout = limits[0] if limits is not None else None
        # A waiter for the request lock blocks in Redis; the client must not
        # give up on the reply first.
        longest_wait = LONGEST_WAIT if reply_timeout is None else min(LONGEST_WAIT, reply_timeout / 2)
        self._locks = RequestLocks(client, hold_for=self.lock_expire_after, longest_wait=longest_wait)

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
    def _record_fields(record: SessionRecord) -> List[str]:
        flash = set(record["flash"])
        expires = record["expires"]
        fields = [
            _CREATED,
            repr(float(record["created"])),
            _REFRESHED,
            repr(float(record["refreshed"])),
            _EXPIRES,
            "" if expires is None else repr(float(expires)),
        ]
        if record.get("generation"):
            fields += [_GENERATION, str(record["generation"])]
        if "persistent" in record:
            fields += [_PERSISTENT, "1" if record["persistent"] else "0"]
        for key, value in record["data"].items():
            fields += [(_FLASH if key in flash else _DATA) + key, dumps(value)]
        return fields

    def _failure(self, action: str, exc: Exception) -> SessionStoreError:
        return SessionStoreError(f"RedisStore could not {action}: {type(exc).__name__}: {exc}")

    # -- the four basic methods ------------------------------------------------

    def get_session(self, id: str, environ: WSGIEnviron) -> Optional[SessionRecord]:
        """Read the session's record: one ``HGET`` of ``m:record``; None when Redis has no such hash.

        A missing field means no session, or a hash written by 0.1.0: a second
        call builds the record from the hash's fields, if there is one.
        """
        key = self.hash_key(id)
        try:
            text = self.client.execute_command("HGET", key, _RECORD)  # type: ignore[no-untyped-call]
            if text is None:
                text = _BUILD_RECORD(self.client, [key])
        except REDIS_ERRORS as exc:
            raise self._failure("load the session", exc) from exc
        # A record past its expiry but inside the grace is still returned: the
        # middleware sees it is dead and deletes it.
        return None if text is None else _parse_record(text)

    def create_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        """Write the whole record and its TTL in one script, so no half-written hash is ever seen."""
        args = [self._ttl_milliseconds(data["expires"]), "0", *self._record_fields(data)]
        try:
            _WRITE_RECORD(self.client, [self.hash_key(id)], args)
        except REDIS_ERRORS as exc:
            raise self._failure("create the session", exc) from exc

    def persist_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        """Replace the record, but only while it exists: a deleted session stays deleted."""
        args = [self._ttl_milliseconds(data["expires"]), "1", *self._record_fields(data)]
        try:
            _WRITE_RECORD(self.client, [self.hash_key(id)], args)
        except REDIS_ERRORS as exc:
            raise self._failure("save the session", exc) from exc

    def delete_session(self, id: str, environ: WSGIEnviron) -> None:
        """Delete the session's hash and its lock key; a missing one is not an error."""
        try:
            self.client.delete(self.hash_key(id), self.lock_key(id))
        except REDIS_ERRORS as exc:
            raise self._failure("delete the session", exc) from exc

    # -- atomic versions of the optional methods -----------------------------------

    def apply_changes(self, id: str, changes: SessionChanges, environ: WSGIEnviron) -> ChangeOutcome:
        """Apply one request's changes to the current hash in one script."""
        to_set: List[str] = []
        flash = changes.flash
        for key, value in changes.set.items():
            to_set += [(_FLASH if key in flash else _DATA) + key, dumps(value)]
        restore: List[str] = []
        for key, value in changes.restore.items():
            restore += [key, dumps(value)]
        persistent = changes.persistent
        expires = changes.expires
        header = " ".join(
            (
                self._ttl_milliseconds(expires) or "-",
                "1" if changes.cleared else "0",
                str(changes.generation),
                repr(float(changes.refreshed)),
                "-" if expires is None else repr(float(expires)),
                "-" if persistent is None else ("1" if persistent else "0"),
                str(len(changes.deleted)),
                str(len(restore) // 2),
            )
        )
        args = [header, *changes.deleted, *restore, *to_set]
        try:
            applied = _APPLY_CHANGES(self.client, [self.hash_key(id)], args)
        except REDIS_ERRORS as exc:
            raise self._failure("save the session", exc) from exc
        return _OUTCOMES[int(applied)]

    def consume_flash(self, id: str, key: str, environ: WSGIEnviron) -> bool:
        """Delete flash value ``key``; True for exactly one of concurrent callers."""
        try:
            removed = _CONSUME_FLASH(self.client, [self.hash_key(id)], [_FLASH + key])
        except REDIS_ERRORS as exc:
            raise self._failure("consume a flash value", exc) from exc
        return int(removed) == 1

    def lock_session(self, id: str, timeout: float, environ: WSGIEnviron) -> SessionLock:
        """Wait in line for the session's request lock, at most ``timeout`` seconds (see :mod:`.lock`).

        Raises ``SessionLockTimeout`` when the requests before this one hold it
        all along; a held lock expires after ``lock_expire_after``.
        """
        try:
            return self._locks.take(self.lock_key(id), timeout)
        except REDIS_ERRORS as exc:
            raise self._failure("lock the session", exc) from exc

    def cleanup(self) -> int:
        """Return 0: Redis deletes expired sessions and locks itself, through their TTLs."""
        return 0

    def close(self) -> None:
        """Close the client if this store built it from a URL; a client passed in stays open."""
        if self._owns_client:
            self.client.close()


def _warn_when_unbounded(reply_timeout: Optional[float], connect_timeout: Optional[float]) -> None:
    # A client passed in is used as it is; one that may wait forever is worth a word at startup.
    missing = [
        name
        for name, limit in (("socket_timeout", reply_timeout), ("socket_connect_timeout", connect_timeout))
        if limit is None
    ]
    if missing:
        log.warning(
            "RedisStore: the Redis client has no %s, so a Redis server that stops answering holds requests "
            "without limit; give the client both timeouts",
            " and no ".join(missing),
        )


def _parse_record(text: Union[bytes, str]) -> SessionRecord:
    # The text the scripts build (record_text) is the record itself, as JSON.
    try:
        record = loads(text)
    except ValueError as exc:  # bad JSON or UTF-8
        raise SessionStoreError(f"RedisStore found a malformed session hash: {exc!r}") from exc
    if type(record) is not dict or record.get("created") is None:
        raise SessionStoreError("RedisStore found a session hash without its times")
    return cast(SessionRecord, record)
