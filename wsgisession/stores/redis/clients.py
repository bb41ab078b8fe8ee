"""Redis clients for RedisStore: built from a URL with a bounded wait, or checked when passed in.

Three kinds of URL name the three ways Redis is deployed:

* ``redis://``, ``rediss://`` (TLS) and ``unix://``: one server, redis-py's own
  URLs (``redis.Redis.from_url``);
* ``redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db][?options]``
  and ``rediss+sentinel://``: the primary that these Sentinels name for
  ``service`` (``redis.sentinel.Sentinel.master_for``); a Sentinel's port
  defaults to 26379;
* ``redis+cluster://[user:password@]host[:port][,host[:port]...][?options]`` and
  ``rediss+cluster://``: the Redis Cluster these nodes belong to
  (``redis.cluster.RedisCluster``); a node's port defaults to 6379.

Query options are redis-py's URL options (``socket_timeout=0.5``, ...) and apply
to the connections to Redis itself; on a Sentinel URL, ``sentinel_username``
and ``sentinel_password`` log in to the Sentinels.  The user and password of
the URL are Redis's.

A client built here waits at most :data:`DEFAULT_SOCKET_TIMEOUT` seconds for a
reply and :data:`DEFAULT_CONNECT_TIMEOUT` for a connection unless the URL
says otherwise, and tries a command at most twice: a call returns or fails
within about twice the longer of the two (on a Sentinel URL, plus the time to
ask the Sentinels where the primary is, bounded alike).  redis-py's own
defaults wait without limit (older versions) or retry a failed call several
times (newer ones).
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from ..per_thread import PerThread

__all__ = [
    "RedisClient",
    "REDIS_ERRORS",
    "DEFAULT_SOCKET_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "SCHEMES",
    "client_from_url",
    "wait_limits",
    "ConnectionPerThread",
]

#: A redis-py client: a plain, Sentinel-managed or cluster one.
RedisClient = Union["redis.Redis", "RedisCluster"]

#: What redis-py raises when Redis fails: its errors, and the cluster
#: client's own (a slot no node serves), which are not RedisErrors.
REDIS_ERRORS = (RedisError, RedisClusterException)

#: Seconds a client built from a URL waits for a reply, unless the URL says otherwise.
DEFAULT_SOCKET_TIMEOUT = 1.0
#: Seconds a client built from a URL waits for a connection, unless the URL says otherwise.
DEFAULT_CONNECT_TIMEOUT = 1.0

#: The URL schemes :func:`client_from_url` understands.
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")

_SENTINEL_PORT = 26379
_CLUSTER_PORT = 6379
# Options on a Sentinel URL that are for the Sentinels, not for Redis.
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


def _bounded(options: Dict[str, Any]) -> Dict[str, Any]:
    # The URL's own options win: they are applied over these defaults.
    bounded: Dict[str, Any] = {
        "socket_timeout": DEFAULT_SOCKET_TIMEOUT,
        "socket_connect_timeout": DEFAULT_CONNECT_TIMEOUT,
    }
    bounded.update(options)
    return bounded


def _retry_once() -> Dict[str, Any]:
    # One retry, on a new connection, after a dropped connection or a
    # timeout.  A failed connection is always closed before the retry: a
    # connection that timed out and went back to the pool would hand its late
    # reply to the next command.  Some redis-py versions use a Retry only
    # together with retry_on_error, so both are given.
    return {"retry": Retry(NoBackoff(), 1), "retry_on_error": [RedisConnectionError, RedisTimeoutError]}


def client_from_url(url: str) -> RedisClient:
    """A client for ``url`` (any of :data:`SCHEMES`), with a bounded wait on every call.

    Raises ``ValueError`` for another scheme or a malformed address list.
    """
    scheme = url.partition("://")[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        # redis-py applies the URL's query options over these keyword arguments.
        return redis.Redis.from_url(url, **_bounded({}), **_retry_once())
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        return _sentinel_primary(url, tls=scheme.startswith("rediss"))
    if scheme in ("redis+cluster", "rediss+cluster"):
        return _cluster(url, tls=scheme.startswith("rediss"))
    raise ValueError(f"not a Redis URL: {_shown(url)} (schemes: {', '.join(s + '://' for s in SCHEMES)})")


def _shown(url: str) -> str:
    # A URL as error messages show it: never with its password.
    parts = urlsplit(url)
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        return repr(parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{hostlist}").geturl())
    return repr(url)


def _split(url: str, default_port: int) -> Tuple[List[Tuple[str, int]], Dict[str, Any], str]:
    # "scheme://[userinfo@]host[:port],host[:port]/path?query": the hosts, the
    # options in the user info and the query (parsed by redis-py itself, so
    # they mean what they mean in redis:// URLs), and the path.
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    hosts = []
    for entry in hostlist.split(","):
        entry = entry.strip()
        if entry.startswith("["):  # an IPv6 address: [::1]:26379
            host, _, rest = entry[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = entry.partition(":")
        if not host:
            raise ValueError(f"{_shown(url)}: an empty host in the address list")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ValueError(f"{_shown(url)}: {port_text!r} is not a port") from None
        hosts.append((unquote(host), port))
    login = f"{userinfo}@" if userinfo else ""
    options: Dict[str, Any] = parse_url(f"redis://{login}localhost/?{parts.query}")  # type: ignore[no-untyped-call]
    options.pop("host", None)
    return hosts, options, unquote(parts.path)


def _sentinel_primary(url: str, *, tls: bool) -> redis.Redis:
    sentinels, options, path = _split(url, _SENTINEL_PORT)
    service, _, db = path.strip("/").partition("/")
    if not service:
        raise ValueError(
            f"{_shown(url)}: name the Sentinel service after the hosts: redis+sentinel://host:26379/service"
        )
    if db and "db" not in options:
        try:
            options["db"] = int(db)
        except ValueError:
            raise ValueError(f"{_shown(url)}: {db!r} is not a database number") from None
    options = _bounded(options)
    if tls:
        options["ssl"] = True
    sentinel_options = {name: options.pop(name) for name in _SENTINEL_OPTIONS if name in options}
    sentinel_kwargs: Dict[str, Any] = {
        "username" if name == "sentinel_username" else "password": value for name, value in sentinel_options.items()
    }
    for name in ("socket_timeout", "socket_connect_timeout", "ssl"):
        if name in options:
            sentinel_kwargs[name] = options[name]
    # Asking a Sentinel is not retried: the next Sentinel in the list is asked instead.
    sentinel_kwargs["retry"] = Retry(NoBackoff(), 0)
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    primary: redis.Redis = sentinel.master_for(service, **options, **_retry_once())  # type: ignore[no-untyped-call]
    return primary


def _cluster(url: str, *, tls: bool) -> RedisCluster:
    nodes, options, path = _split(url, _CLUSTER_PORT)
    if path.strip("/") not in ("", "0") or options.get("db", 0) != 0:
        raise ValueError(f"{_shown(url)}: a Redis Cluster has only database 0")
    options.pop("db", None)
    options = _bounded(options)
    if tls:
        options["ssl"] = True
    # The cluster client retries a failed call once, after it has read the
    # cluster's slot map again (a failover moves slots to another node).
    startup_nodes = [ClusterNode(host, port) for host, port in nodes]  # type: ignore[no-untyped-call]
    return RedisCluster(startup_nodes=startup_nodes, retry=Retry(NoBackoff(), 1), **options)


class ConnectionPerThread:
    """The commands of each thread on one connection of ``client``'s pool, held while the thread lives.

    Each command of a pooled client borrows a connection and gives it back:
    two turns of the pool's lock and a system call or three asking the
    socket whether stale bytes wait on it, about a tenth of a command's time
    on loopback.  A thread's own client (``single_connection_client``) skips
    them, and loses none of their safety: redis-py closes a connection whose
    command failed or was interrupted, and makes a new one for the next
    command.  Threads, forks and green threads are handled as
    :mod:`wsgisession.stores.per_thread` says; under green threads the
    shared client borrows from the pool as usual.

    Not for a Sentinel-managed client: redis-py asks the Sentinels where the
    primary is when the pool hands out a connection, so a connection held
    by its thread would reconnect to the old primary after a failover.
    """

    @staticmethod
    def suits(client: redis.Redis) -> bool:
        """True for a client of one server, whose connections always go to the same address."""
        return not isinstance(client.connection_pool, SentinelConnectionPool)

    def __init__(self, client: redis.Redis) -> None:
        self._shared = client
        pool = client.connection_pool
        self._per_thread: PerThread[redis.Redis] = PerThread(
            lambda: redis.Redis(connection_pool=pool, single_connection_client=True), redis.Redis.close
        )

    def client(self) -> redis.Redis:
        """This thread's client, made (and connected) on the thread's first call; under green threads the shared one."""
        client = self._per_thread.get()
        return self._shared if client is None else client

    def close(self) -> None:
        """Give every thread's connection back to the pool."""
        self._per_thread.end_all()


def wait_limits(client: Any) -> Optional[Tuple[Optional[float], Optional[float]]]:
    """``(reply timeout, connect timeout)`` of ``client``'s connections, None for no limit; None when unknown."""
    if isinstance(client, RedisCluster):
        # Each node is a redis.Redis built with these keyword arguments.
        kwargs = getattr(getattr(client, "nodes_manager", None), "connection_kwargs", None)
        builder: Any = redis.Redis
    else:
        pool = getattr(client, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", None)
        builder = getattr(pool, "connection_class", None)
    if not isinstance(kwargs, dict) or builder is None:
        return None
    reply = _setting(kwargs, builder, "socket_timeout")
    connect = _setting(kwargs, builder, "socket_connect_timeout")
    if connect is None:  # redis-py then waits socket_timeout for a connection
        connect = reply
    return reply, connect


def _setting(kwargs: Dict[str, Any], builder: Any, name: str) -> Any:
    # A setting the client was not given is the default of the class that
    # makes its connections (redis-py changed these defaults over time); a
    # subclass may take it through **kwargs, so its bases are asked too.
    if name in kwargs:
        return kwargs[name]
    for klass in getattr(builder, "__mro__", ()):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameter = inspect.signature(init).parameters.get(name)
        except (TypeError, ValueError):
            continue
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            return parameter.default
    return None
