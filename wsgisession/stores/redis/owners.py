"""RedisStore's index of owners: the sessions of a user, found without a scan.

Each owner has a sorted set, ``<prefix>owner:<SHA-256 hex digest of the
owner>`` (the owner itself never reaches a key name).  Its members are the
storage keys of the owner's sessions (the digest inside a session hash's
key); a member's score is when the store added it, by the store's clock.

The index holds every session of the owner, and may hold more: a session
joins its owner's set before the write that gives it that owner, and leaves
the set after the write that takes the owner away, so a failure in between
leaves a member too many, never one missing.  A member too many (a session
that expired, was deleted or has another owner now) is removed when the
owner's sessions are listed, when an addition takes the set past
:data:`INDEX_BOUND` members (and again every :data:`PRUNE_EVERY` more), and by
:meth:`OwnerIndex.sweep`, which ``RedisStore.cleanup()`` runs.  Only members
added more than :data:`INDEX_GRACE` seconds ago are removed that way: a
member added just now may belong to a write still on its way (on a
Cluster, the addition and the write are two commands).  That is why the
index is a sorted set and not a set: the score says how old a member is.

On one server (standalone or Sentinel) the index is changed inside the
session's commit script, in the same round trip.  On a Cluster the owner's
set lives in another slot than the session: adding a session to it is one
command before the commit, and removing it one command after.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from ...errors import SessionStoreError
from ...store import SessionInfo, SessionRecord, session_handle, session_info
from .lua import LuaScript

__all__ = ["OwnerIndex", "INDEX_LUA", "INDEX_BOUND", "PRUNE_EVERY", "INDEX_GRACE"]

#: An addition that takes an owner's set past this many members prunes it.
INDEX_BOUND = 32
#: ... and so does every this many more, for owners with that many live sessions.
PRUNE_EVERY = 16
#: Seconds a member is kept in the index even when its session does not (yet)
#: have that owner: the time a write may take after the addition.
INDEX_GRACE = 60.0
#: Owners' sets looked at per round of :meth:`OwnerIndex.sweep`.
SWEEP_BATCH = 100

# Lua shared with the commit scripts.  member_of(hash key) is the session's
# storage key: the digest between the braces of its hash tag.
# index_add answers the set's size when the member is new, else 0.
INDEX_LUA = r"""
local function member_of(key)
  return string.match(key, '{(%x+)}$')
end
local function index_add(index, member, score)
  if redis.call('ZADD', index, score, member) == 1 then
    return redis.call('ZCARD', index)
  end
  return 0
end
"""

# KEYS[1] an owner's set; ARGV[1] the score (now), ARGV[2] the member.
_ADD = LuaScript(INDEX_LUA + "return index_add(KEYS[1], ARGV[2], ARGV[1])\n")

# KEYS[1] an owner's set; ARGV[1] a time, ARGV[2..] members.  Removes each
# member added at that time or before; one added (again) since is kept, as it
# may belong to a write still on its way.  Answers how many went.
_REMOVE_OLDER = LuaScript(
    r"""
local removed = 0
for index = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[index])
  if score and tonumber(score) <= tonumber(ARGV[1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[index])
  end
end
return removed
"""
)

# KEYS[1] a session's hash, KEYS[2] its lock; ARGV[1] the owner's JSON,
# ARGV[2] now.  Deletes the session, as delete_session does, when it belongs
# to that owner: a commit in flight then finds no hash and writes nothing.
# Answers 0 (not this owner's session, or none), 1 (ended) or 2 (ended, but it
# had expired already).
_END = LuaScript(
    r"""
local owner, expires = unpack(redis.call('HMGET', KEYS[1], 'm:owner', 'm:expires'))
if owner ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
if expires and expires ~= '' and tonumber(expires) <= tonumber(ARGV[2]) then
  return 2
end
return 1
"""
)

# One member of a set as read: (member, score, its session's record or None).
_Entry = Tuple[str, float, Optional[SessionRecord]]
# A set as read: its key and its entries.
_Set = Tuple[str, List[_Entry]]


class OwnerIndex:
    """The owners' sets of one RedisStore: adding, listing, ending and pruning.

    ``in_commit`` is True when the store changes the sets inside its commit
    scripts (one server); on a Cluster it is False and :meth:`add` and
    :meth:`remove` are separate commands.  Redis errors reach the caller.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str,
        clock: Callable[[], float],
        parse_record: Callable[[Union[bytes, str]], SessionRecord],
        owner_json: Callable[[str], str],
        in_commit: bool,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.in_commit = in_commit
        self._clock = clock
        self._parse_record = parse_record
        self._owner_json = owner_json
        self._key_start = prefix + "owner:"

    # -- names ---------------------------------------------------------------------

    def key(self, owner: str) -> str:
        """The key of ``owner``'s set: a digest of the owner, never the owner."""
        return self._key_start + hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()

    def hash_key(self, member: str) -> str:
        """The key of the session hash a member names."""
        return f"{self.prefix}{{{member}}}"

    # -- changes around a commit (on a Cluster) -------------------------------------

    def add(self, owner: str, member: str, now: float) -> int:
        """Add a session to ``owner``'s set, before the write; answers :meth:`added`'s ``size``."""
        return int(_ADD(self.client, [self.key(owner)], [repr(now), member]))

    def remove(self, owner: str, member: str, added_before: float) -> None:
        """Take a session out of ``owner``'s set after a write gave it another owner.

        A member added again since ``added_before`` (the session given back
        to that owner meanwhile) stays.
        """
        _REMOVE_OLDER(self.client, [self.key(owner)], [repr(added_before), member])

    def added(self, owner: str, size: int) -> None:
        """An addition found ``owner``'s set at ``size`` members (0: the member was there): prune when due."""
        if size > INDEX_BOUND and (size - INDEX_BOUND) % PRUNE_EVERY == 1:
            self._prune(self._examine([self.key(owner)])[0], self._clock())

    # -- the owner's sessions --------------------------------------------------------

    def sessions_of(self, owner: str, current: Optional[str]) -> List[SessionInfo]:
        """``owner``'s live sessions, oldest first; the one stored under ``current`` is marked.

        Members found stale are pruned on the way.
        """
        now = self._clock()
        key = self.key(owner)
        (entries,) = self._examine([key])
        self._prune(entries, now)
        infos = [
            session_info(member, record, member == current)
            for member, _, record in entries[1]
            if record is not None and self._is_live(record, key, now)
        ]
        return sorted(infos, key=lambda info: info.created_at)

    def end_session(self, owner: str, handle: str) -> bool:
        """End ``owner``'s session named by ``handle``; False when there is no such live session."""
        members = self._members(self.key(owner))
        for member in members:
            if session_handle(member) == handle:
                return self._end(owner, [member]) == 1
        return False

    def end_sessions(self, owner: str, keep: Optional[str]) -> int:
        """End every session of ``owner`` but the one stored under ``keep``; answers how many live ones ended."""
        members = [member for member in self._members(self.key(owner)) if member != keep]
        return self._end(owner, members) if members else 0

    def _end(self, owner: str, members: List[str]) -> int:
        owner_json, now = self._owner_json(owner), repr(self._clock())
        calls = [([self.hash_key(member), self.hash_key(member) + ":lock"], [owner_json, now]) for member in members]
        results = [int(result) for result in _END.run_many(self.client, calls)]
        ended = [member for member, result in zip(members, results) if result]
        if ended:  # their hashes are gone for good: nothing can give them back to the owner
            self.client.zrem(self.key(owner), *ended)
        return results.count(1)

    # -- pruning -----------------------------------------------------------------------

    def sweep(self) -> int:
        """Prune every owner's set, :data:`SWEEP_BATCH` sets at a time; answers how many members went."""
        pattern = _glob_escape(self._key_start) + "*"
        removed = 0
        batch: List[str] = []
        for key in self.client.scan_iter(match=pattern, count=SWEEP_BATCH):
            batch.append(_text(key))
            if len(batch) == SWEEP_BATCH:
                removed += self._prune_sets(batch)
                batch = []
        if batch:
            removed += self._prune_sets(batch)
        return removed

    def _prune_sets(self, keys: List[str]) -> int:
        # As _prune, for many sets: the removals go in one pipeline.
        now = self._clock()
        calls = [call for call in (self._removal(entries, now) for entries in self._examine(keys)) if call]
        return sum(int(removed) for removed in _REMOVE_OLDER.run_many(self.client, calls)) if calls else 0

    def _prune(self, entries: _Set, now: float) -> int:
        # Removes the set's members that are neither live sessions of its
        # owner nor recent; answers how many went.
        call = self._removal(entries, now)
        return int(_REMOVE_OLDER(self.client, *call)) if call else 0

    def _removal(self, entries: _Set, now: float) -> Optional[Tuple[List[str], List[str]]]:
        # The keys and arguments of _REMOVE_OLDER for a set's stale members; None when there are none.
        key, members = entries
        cutoff = now - INDEX_GRACE
        stale = [member for member, score, record in members if score <= cutoff and not self._is_live(record, key, now)]
        return ([key], [repr(cutoff), *stale]) if stale else None

    def _is_live(self, record: Optional[SessionRecord], key: str, now: float) -> bool:
        # A record whose owner's set is ``key``, and that has not expired.
        if record is None:
            return False
        owner = record.get("owner")
        if type(owner) is not str or self.key(owner) != key:
            return False
        expires = record["expires"]
        return expires is None or now < expires

    # -- reading ---------------------------------------------------------------------

    def _members(self, key: str) -> List[str]:
        return [_text(member) for member in self.client.zrange(key, 0, -1)]

    def _examine(self, keys: Sequence[str]) -> List[_Set]:
        # Each set's members with their scores and their sessions' records:
        # one pipeline reads the sets, one more the records (a cluster
        # client's pipeline sends each command to the node of its key).
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.zrange(key, 0, -1, withscores=True)
        scored = [[(_text(member), float(score)) for member, score in found] for found in pipe.execute()]
        pipe = self.client.pipeline(transaction=False)
        for members in scored:
            for member, _ in members:
                pipe.execute_command("HGET", self.hash_key(member), "m:record")
        texts = iter(pipe.execute() if any(scored) else ())
        sets: List[_Set] = []
        for key, members in zip(keys, scored):
            sets.append((key, [(member, score, self._record(next(texts))) for member, score in members]))
        return sets

    def _record(self, text: Optional[Union[bytes, str]]) -> Optional[SessionRecord]:
        if text is None:
            return None
        try:
            return self._parse_record(text)
        except SessionStoreError:  # a damaged hash is nobody's session
            return None


def _text(value: Union[bytes, str]) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


def _glob_escape(text: str) -> str:
    # SCAN's MATCH is a glob: the prefix's own *, ?, [ and \ are literal.
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
