"""Lua scripts that RedisStore runs by their SHA-1, loading them where a server does not know them."""

from __future__ import annotations

import hashlib
from typing import Any, Sequence, Union

from redis.exceptions import NoScriptError

__all__ = ["LuaScript"]


class LuaScript:
    """One Lua script: ``script(client, keys, args)`` runs it with ``EVALSHA``, one round trip.

    A server that does not know the script yet (a new one, a restarted one, a
    replica promoted by a failover) answers ``NOSCRIPT``; the script is then
    loaded (on every primary of a cluster) and run again.  redis-py's
    ``Script`` does the same, but builds its argument tuples and imports the
    pipeline class on every call, which costs more than a request's own work.
    """

    __slots__ = ("text", "sha")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode("utf-8")).hexdigest()

    def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Union[str, int, float]] = ()) -> Any:
        try:
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.text)
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
