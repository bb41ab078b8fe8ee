"""Lua scripts that RedisStore runs by their SHA-1, loading them where a server does not know them."""

from __future__ import annotations

import hashlib
from typing import Any, List, Sequence, Tuple, Union

from redis.exceptions import NoScriptError

__all__ = ["LuaScript"]

Arguments = Sequence[Union[str, int, float]]


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

    def __call__(self, client: Any, keys: Sequence[str], args: Arguments = ()) -> Any:
        try:
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.text)
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    def run_many(self, client: Any, calls: Sequence[Tuple[Sequence[str], Arguments]]) -> List[Any]:
        """Run the script once per ``(keys, args)`` in one pipeline; answer the replies in order.

        A cluster client's pipeline sends each call to the node of its keys.
        Calls that met a server without the script run again once it is loaded.
        """
        replies = self._pipelined(client, calls)
        missing = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            client.script_load(self.text)
            for index, reply in zip(missing, self._pipelined(client, [calls[index] for index in missing])):
                replies[index] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _pipelined(self, client: Any, calls: Sequence[Tuple[Sequence[str], Arguments]]) -> List[Any]:
        pipe = client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        return list(pipe.execute(raise_on_error=False))
