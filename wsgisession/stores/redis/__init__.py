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
* ``m:owner`` and ``m:details``: the JSON of the session's owner and of the
  details recorded with it (absent: nobody, or no details);
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

The sessions of an owner are found through an index of sorted sets, one per
owner (see ``owners``); on one server the commit scripts keep it in step.

The other modules of this package: ``clients`` (clients built from URLs,
with bounded waits), ``lock`` (the request lock, a queue),
``owners`` (the index of owners), ``lua`` (running scripts by their SHA).
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

from redis.cluster import RedisCluster

from ...errors import SessionStoreError
from ...serialization import dumps, loads
from ...store import (
    ChangeOutcome,
    SessionChanges,
    SessionInfo,
    SessionLock,
    SessionRecord,
    Store,
    SupportsId,
    WSGIEnviron,
    storage_key,
)
from .clients import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_SOCKET_TIMEOUT,
    REDIS_ERRORS,
    SCHEMES,
    ConnectionPerThread,
    RedisClient,
    client_from_url,
    wait_limits,
)
from .lock import LONGEST_WAIT, RequestLocks
from .lua import LuaScript
from .owners import INDEX_LUA, OwnerIndex

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
_OWNER = "m:owner"
_DETAILS = "m:details"

# Shared by the scripts.  A script reads a hash once (HGETALL) into a Lua
# table, works on the table, and writes what changed in one HDEL and one
# HSET: each call from Lua into Redis costs the server more than the work
# around it.  unpack() is bounded by Lua's stack, so long argument lists go to
# HSET / HDEL in chunks; an even chunk size keeps HSET's pairs whole.
#
# record_text(hash) answers the record as the JSON text of a SessionRecord
# ({"data": {...}, "flash": [...], "created": ..., ...}: one JSON parse gives
# the record get_session returns; a missing time is null), and as a second
# value whether the hash holds any session value or an owner.  Field values are JSON
# texts already; a key is quoted here, through cjson only when it holds a
# quote, a backslash or a control character.
_HELPERS = (
    r"""
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
  if hash['m:owner'] then
    text = text .. ',"owner":' .. hash['m:owner']
    if hash['m:details'] then
      text = text .. ',"details":' .. hash['m:details']
    end
  end
  return text .. '}', count > 0 or hash['m:owner'] ~= nil
end
"""
    + INDEX_LUA
)

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

# KEYS[1] the hash, KEYS[2] (on one server, for a record with an owner) the
# owner's set; ARGV[1] TTL in ms ('' for none); ARGV[2] '1' to require that
# the hash exists; ARGV[3] the time to add the session to the owner's set at;
# ARGV[4..] field, value pairs of the whole record.  Answers 0 (no hash to
# replace) or 1, or with an owner's set {1, index_add's answer}.
_WRITE_RECORD = LuaScript(
    _HELPERS
    + r"""
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local hash = {}
for index = 4, #ARGV, 2 do
  hash[ARGV[index]] = ARGV[index + 1]
end
ARGV[#ARGV + 1] = 'm:record'
ARGV[#ARGV + 1] = (record_text(hash))
redis.call('DEL', KEYS[1])
in_chunks('HSET', KEYS[1], ARGV, 4, #ARGV)
set_ttl(KEYS[1], ARGV[1])
if KEYS[2] then
  return {1, index_add(KEYS[2], member_of(KEYS[1]), ARGV[3])}
end
return 1
"""
)

# KEYS[1] the hash.  ARGV[1] is the request's header, eleven words: the TTL
# in ms ('-' for none); '1' when the request cleared the session; the
# generation it loaded; the new refresh time and expiry ('-' for none),
# written only when they change and are not older than the stored ones; the
# persistence flag ('-' unchanged); how many keys to delete; how many flash
# values to give back; the owner ('-' unchanged, '0' nobody, '1' the one in
# ARGV[2], with the details' JSON in ARGV[3], '' for none); the owners' sets
# to change ('-' none, 'a' add the session to KEYS[2], 'r' remove it from
# KEYS[2], 'ar' add it to KEYS[2] and remove it from KEYS[3]); the time to
# add it at.  Then come the keys to delete, the key, value pairs of the flash
# values to give back, and the field, value pairs to set.  (One header
# instead of many arguments: each argument costs the client and the server
# more than its bytes.)  Answers 0 (gone, another generation, or not a
# session's hash), 1 (applied) or 2 (nothing left: the hash was deleted); with
# an owners' set changed, {that answer, index_add's answer}.
_APPLY_CHANGES = LuaScript(
    _HELPERS
    + r"""
local ttl, cleared, generation, refreshed, expires, persistent, deleted, restored, owner, index, score =
  string.match(ARGV[1], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%d+) (%d+) (%S+) (%S+) (%S+)$')
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
local first = owner == '1' and 4 or 2
local at = first + tonumber(deleted)
for index = first, at - 1 do
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
if owner == '1' then
  write('m:owner', ARGV[2])
  if ARGV[3] == '' then
    remove('m:details')
  else
    write('m:details', ARGV[3])
  end
elseif owner == '0' then
  remove('m:owner')
  remove('m:details')
end
local function update_index(outcome)
  if index == '-' then
    return outcome
  end
  local member, added = member_of(KEYS[1]), 0
  if string.find(index, 'a', 1, true) then
    added = index_add(KEYS[2], member, score)
  end
  if string.find(index, 'r', 1, true) then
    redis.call('ZREM', KEYS[#KEYS], member)
  end
  return {outcome, added}
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
  return update_index(2)
end
write('m:record', text)
in_chunks('HDEL', KEYS[1], removed, 1, #removed)
in_chunks('HSET', KEYS[1], written, 1, #written)
return update_index(1)
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
    :doc:`/stores/redis`), whose client waits a bounded
    time for every reply, or a redis-py client (plain, Sentinel master,
    cluster) used with its own settings.  Records expire through Redis TTLs
    set to their expiry (by ``clock``, which must match the middleware's)
    plus ``grace`` seconds; request locks expire after ``lock_expire_after``
    seconds.  Sessions with an owner are indexed by owner (see
    the "sessions of a user" section of the Redis store's page).
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
        # A client built here from a URL of one server gives each thread a
        # connection of its own for the request path's commands; a client
        # passed in is used as it is, since its pool may be sized for
        # connections that go back after each command.
        self._per_thread: Optional[ConnectionPerThread] = None
        if self._owns_client and isinstance(client, redis.Redis) and ConnectionPerThread.suits(client):
            self._per_thread = ConnectionPerThread(client)
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
        # On one server the commit scripts change the owners' sets too; a
        # Cluster keeps them in other slots than the sessions.
        self._owners = OwnerIndex(
            client,
            prefix=prefix,
            clock=clock,
            parse_record=_parse_record,
            owner_json=dumps,
            in_commit=not isinstance(client, RedisCluster),
        )

    def _client_of_thread(self) -> RedisClient:
        # The client of the request path's commands (see __init__).
        per_thread = self._per_thread
        return self.client if per_thread is None else per_thread.client()

    # -- names and encodings ---------------------------------------------------

    def hash_key(self, id: str) -> str:
        """The Redis key of the session's hash; the raw id never reaches Redis."""
        return f"{self.prefix}{{{storage_key(id)}}}"

    def lock_key(self, id: str) -> str:
        """The Redis key of the session's request lock, in the same cluster slot as its hash."""
        return self.hash_key(id) + ":lock"

    def owner_key(self, owner: str) -> str:
        """The Redis key of the index of ``owner``'s sessions: a digest of the owner, never the owner."""
        return self._owners.key(owner)

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
        owner = record.get("owner")
        if owner is not None:
            fields += [_OWNER, dumps(owner)]
            details = record.get("details")
            if details:
                fields += [_DETAILS, dumps(details)]
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
            client = self._client_of_thread()
            text = client.execute_command("HGET", key, _RECORD)  # type: ignore[no-untyped-call]
            if text is None:
                text = _BUILD_RECORD(client, [key])
        except REDIS_ERRORS as exc:
            raise self._failure("load the session", exc) from exc
        # A record past its expiry but inside the grace is still returned: the
        # middleware sees it is dead and deletes it.
        return None if text is None else _parse_record(text)

    def create_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        """Write the whole record and its TTL in one script, so no half-written hash is ever seen.

        A session with an owner joins the owner's index in that script (on a
        Cluster, in one command before it).
        """
        try:
            self._write_record(data, id, must_exist=False)
        except REDIS_ERRORS as exc:
            raise self._failure("create the session", exc) from exc

    def persist_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        """Replace the record, but only while it exists: a deleted session stays deleted."""
        try:
            self._write_record(data, id, must_exist=True)
        except REDIS_ERRORS as exc:
            raise self._failure("save the session", exc) from exc

    def _write_record(self, data: SessionRecord, id: str, *, must_exist: bool) -> None:
        owner = data.get("owner")
        keys = [self.hash_key(id)]
        now = self._clock()
        added = 0
        if owner is not None:
            if self._owners.in_commit:
                keys.append(self._owners.key(owner))
            else:  # before the write: the index never misses a session
                added = self._owners.add(owner, storage_key(id), now)
        args = [self._ttl_milliseconds(data["expires"]), "1" if must_exist else "0", repr(now)]
        reply = _WRITE_RECORD(self._client_of_thread(), keys, [*args, *self._record_fields(data)])
        if type(reply) is list:
            added = int(reply[1])
        if added:
            self._after_owner_write(id, owner, added, None, now)

    def delete_session(self, id: str, environ: WSGIEnviron) -> None:
        """Delete the session's hash and its lock key; a missing one is not an error."""
        try:
            self._client_of_thread().delete(self.hash_key(id), self.lock_key(id))
        except REDIS_ERRORS as exc:
            raise self._failure("delete the session", exc) from exc

    # -- atomic versions of the optional methods -----------------------------------

    def apply_changes(self, id: str, changes: SessionChanges, environ: WSGIEnviron) -> ChangeOutcome:
        """Apply one request's changes to the current hash in one script.

        A new owner moves the session between the owners' indexes in that
        script; on a Cluster, with one command before it (joining the new
        owner's index) and one after it (leaving the old owner's).
        """
        to_set: List[str] = []
        flash = changes.flash
        for key, value in changes.set.items():
            to_set += [(_FLASH if key in flash else _DATA) + key, dumps(value)]
        restore: List[str] = []
        for key, value in changes.restore.items():
            restore += [key, dumps(value)]
        persistent = changes.persistent
        expires = changes.expires
        keys = [self.hash_key(id)]
        owner_word = index_word = score = "-"
        owner_args: List[str] = []
        new_owner = old_owner = None
        now = 0.0
        owner_change = changes.owner
        if owner_change is not None:
            new_owner = owner_change.owner
            base = changes.base
            old_owner = base.get("owner") if base is not None else None
            if old_owner == new_owner:
                old_owner = None  # only the details changed: no index to leave
            if new_owner is None:
                owner_word = "0"
            else:
                details = owner_change.details
                owner_word = "1"
                owner_args = [dumps(new_owner), dumps(dict(details)) if details else ""]
            now = self._clock()
            score = repr(now)
            if self._owners.in_commit:
                index_word = ("a" if new_owner is not None else "") + ("r" if old_owner is not None else "") or "-"
                keys += [self._owners.key(owner) for owner in (new_owner, old_owner) if owner is not None]
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
                owner_word,
                index_word,
                score,
            )
        )
        args = [header, *owner_args, *changes.deleted, *restore, *to_set]
        added = 0
        try:
            if new_owner is not None and not self._owners.in_commit:  # before the write: never a missing member
                added = self._owners.add(new_owner, storage_key(id), now)
            reply = _APPLY_CHANGES(self._client_of_thread(), keys, args)
        except REDIS_ERRORS as exc:
            raise self._failure("save the session", exc) from exc
        if type(reply) is list:
            reply, added = reply
        outcome = _OUTCOMES[int(reply)]
        if owner_change is not None:
            leaving = old_owner if outcome is not ChangeOutcome.GONE and not self._owners.in_commit else None
            self._after_owner_write(id, new_owner, int(added), leaving, now)
        return outcome

    def _after_owner_write(self, id: str, owner: Optional[str], added: int, left: Optional[str], now: float) -> None:
        # Index work after a write that stands: a session that left ``left``'s
        # index on a Cluster is taken out of it; an index that grew may be
        # due for pruning.  A failure here leaves a member too many, which
        # pruning removes later, so the request does not fail for it.
        try:
            if left is not None:
                self._owners.remove(left, storage_key(id), now)
            if added and owner is not None:
                self._owners.added(owner, added)
        except REDIS_ERRORS as exc:
            log.warning("RedisStore could not tidy the index of the sessions' owners: %s: %s", type(exc).__name__, exc)

    def consume_flash(self, id: str, key: str, environ: WSGIEnviron) -> bool:
        """Delete flash value ``key``; True for exactly one of concurrent callers."""
        try:
            removed = _CONSUME_FLASH(self._client_of_thread(), [self.hash_key(id)], [_FLASH + key])
        except REDIS_ERRORS as exc:
            raise self._failure("consume a flash value", exc) from exc
        return int(removed) == 1

    def lock_session(self, id: str, timeout: float, environ: WSGIEnviron) -> SessionLock:
        """Wait in line for the session's request lock, at most ``timeout`` seconds (see ``wsgisession.stores.redis.lock``).

        Raises ``SessionLockTimeout`` when the requests before this one hold it
        all along; a held lock expires after ``lock_expire_after``.
        """
        try:
            return self._locks.take(self.lock_key(id), timeout)
        except REDIS_ERRORS as exc:
            raise self._failure("lock the session", exc) from exc

    # -- the sessions of an owner ------------------------------------------------------

    def sessions_of(self, owner: str, current: Optional[SupportsId] = None) -> List[SessionInfo]:
        """The live sessions of ``owner``, oldest first, from the owner's index.

        Two round trips (the index, then the records in one pipeline), and a
        third when entries of sessions gone or moved to another owner are
        pruned from the index.
        """
        current_key = storage_key(current.id) if current is not None else None
        try:
            return self._owners.sessions_of(owner, current_key)
        except REDIS_ERRORS as exc:
            raise self._failure("list the sessions of an owner", exc) from exc

    def end_session(self, owner: str, handle: str) -> bool:
        """End ``owner``'s session named by ``handle``, as ``delete()`` would; False when there is none."""
        try:
            return self._owners.end_session(owner, handle)
        except REDIS_ERRORS as exc:
            raise self._failure("end a session", exc) from exc

    def end_sessions(self, owner: str, keep: Optional[SupportsId] = None) -> int:
        """End every session of ``owner`` but ``keep``, as ``delete()`` would; return how many.

        Each session's hash is deleted by a script that first checks that it
        still belongs to ``owner`` (one pipeline for all of them): a request
        in flight on one of them then finds it gone and writes nothing.
        """
        keep_key = storage_key(keep.id) if keep is not None else None
        try:
            return self._owners.end_sessions(owner, keep_key)
        except REDIS_ERRORS as exc:
            raise self._failure("end the sessions of an owner", exc) from exc

    def cleanup(self) -> int:
        """Prune the owners' indexes, and return 0: Redis deletes expired sessions itself, through their TTLs.

        Every owner's index is read (``SCAN``, a batch of sets at a time) and
        loses the entries of sessions that are gone; run it now and then (from
        cron) so that the index of an owner who never comes back does not
        keep them.
        """
        try:
            removed = self._owners.sweep()
        except REDIS_ERRORS as exc:
            raise self._failure("prune the index of the sessions' owners", exc) from exc
        log.info("RedisStore.cleanup removed %d entries of gone sessions from the owners' indexes", removed)
        return 0

    def close(self) -> None:
        """Close the client if this store built it from a URL; a client passed in stays open."""
        if self._per_thread is not None:
            self._per_thread.close()
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
