"""The Redis URL forms: what each part of a Sentinel URL sets, and clear errors for malformed URLs.

A Sentinel client connects only when it is first used, so the client built
from a URL can be looked at here without servers; the cluster and Sentinel
modules use the same URLs against real servers.
"""

from __future__ import annotations

import socket
import time

import pytest

pytest.importorskip("redis")

from redis.connection import SSLConnection
from redis.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

from wsgisession import SessionStoreError
from wsgisession.contrib import store_from_url
from wsgisession.stores.redis import DEFAULT_CONNECT_TIMEOUT, DEFAULT_SOCKET_TIMEOUT, RedisStore
from wsgisession.stores.redis.clients import client_from_url, wait_limits


def test_a_sentinel_url_names_the_sentinels_the_service_the_database_and_the_logins() -> None:
    client = client_from_url(
        "redis+sentinel://app:s%40cret@10.0.0.1,10.0.0.2:26380,[::1]:26381/sessions/4"
        "?sentinel_password=watch&socket_timeout=0.5"
    )
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "sessions"
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (4, "app", "s@cret")
    assert wait_limits(client) == (0.5, DEFAULT_CONNECT_TIMEOUT)  # the URL's option, then the default
    sentinels = pool.sentinel_manager.sentinels
    assert [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"]) for s in sentinels
    ] == [
        ("10.0.0.1", 26379),
        ("10.0.0.2", 26380),
        ("::1", 26381),
    ]
    sentinel_kwargs = sentinels[0].connection_pool.connection_kwargs
    assert sentinel_kwargs["password"] == "watch" and sentinel_kwargs["socket_timeout"] == 0.5
    client.close()


def test_rediss_sentinel_uses_tls_for_redis_and_the_sentinels() -> None:
    client = client_from_url("rediss+sentinel://10.0.0.1/sessions")
    assert client.connection_pool.connection_class is SentinelManagedSSLConnection
    sentinel = client.connection_pool.sentinel_manager.sentinels[0]
    assert issubclass(sentinel.connection_pool.connection_class, SSLConnection)
    assert client.connection_pool.connection_kwargs.get("db", 0) == 0
    client.close()


def test_plain_urls_get_the_default_timeouts_unless_they_set_their_own() -> None:
    assert wait_limits(client_from_url("redis://127.0.0.1:6379/0")) == (DEFAULT_SOCKET_TIMEOUT, DEFAULT_CONNECT_TIMEOUT)
    assert wait_limits(client_from_url("rediss://127.0.0.1:6380/0?socket_connect_timeout=3")) == (
        DEFAULT_SOCKET_TIMEOUT,
        3.0,
    )
    assert wait_limits(client_from_url("unix:///run/redis.sock?db=2&socket_timeout=0.25")) == (
        0.25,
        DEFAULT_CONNECT_TIMEOUT,
    )


@pytest.mark.parametrize(
    "url, message",
    [
        ("redis+sentinel://10.0.0.1:26379", "name the Sentinel service"),
        ("redis+sentinel://10.0.0.1:26379/sessions/first", "not a database number"),
        ("redis+sentinel://10.0.0.1:port/sessions", "'port' is not a port"),
        ("redis+sentinel://10.0.0.1,,10.0.0.2/sessions", "an empty host"),
        ("redis+cluster://10.0.0.1:7000/3", "only database 0"),
        ("redis+shards://10.0.0.1:7000", "not a Redis URL"),
    ],
)
def test_a_malformed_redis_url_is_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisStore(url)


@pytest.mark.parametrize("scheme", ["redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "REDIS+Sentinel"])
def test_store_from_url_gives_every_redis_scheme_to_the_redis_store(scheme: str) -> None:
    path = "/run/redis.sock" if scheme == "unix" else "127.0.0.1/sessions/0"
    store = store_from_url(f"{scheme}://{path}", prefix="urls:")
    assert isinstance(store, RedisStore) and store.prefix == "urls:"
    store.close()


def test_an_error_about_a_url_never_shows_its_password() -> None:
    with pytest.raises(ValueError) as refused:
        RedisStore("redis+sentinel://app:hunter2-secret@10.0.0.1:26379")
    assert "hunter2-secret" not in str(refused.value) and "app:***@" in str(refused.value)


def test_a_cluster_url_whose_nodes_do_not_answer_fails_at_startup() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(SessionStoreError, match="RedisStore could not connect to Redis"):
        RedisStore(f"redis+cluster://127.0.0.1:{port}")
    assert time.monotonic() - started < 2 * DEFAULT_CONNECT_TIMEOUT + 1.0
