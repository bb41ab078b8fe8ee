"""Every Redis call of RedisStore has a bounded wait: by default for a URL, by its own settings for a client.

A TcpProxy between the store and the shared Redis freezes: connections stay
open and nothing comes back, so only the client's timeouts can end a call.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterator

import pytest
import redis
from webtest import TestApp

from wsgisession import SessionStoreError
from wsgisession.stores.redis import DEFAULT_CONNECT_TIMEOUT, DEFAULT_SOCKET_TIMEOUT, RedisStore
from wsgisession.testing import FakeClock

from .support import REDIS_URL, RUN_ID, counter_app, require_service
from .tcp_proxy import TcpProxy

PREFIX = f"wsgisession-test-{RUN_ID}-timeouts:"
#: A loaded machine's scheduling delays on top of a timeout.
SLACK = 1.0


@pytest.fixture(autouse=True)
def redis_url() -> Iterator[str]:
    """The shared Redis; every key under PREFIX is deleted afterwards."""
    url = require_service("Redis", REDIS_URL)
    yield url
    client = redis.Redis.from_url(url)
    leftovers = list(client.scan_iter(match=PREFIX + "*", count=1000))
    if leftovers:
        client.delete(*leftovers)
    client.close()


@pytest.fixture
def proxy(redis_url: str) -> Iterator[TcpProxy]:
    host, port = redis_url.split("://", 1)[1].split("/", 1)[0].split(":")
    with TcpProxy((host, int(port))) as relay:
        yield relay


def frozen_load_takes(proxy: TcpProxy, store: RedisStore, make_app: Callable[..., TestApp]) -> float:
    """Seconds until a returning request fails once the proxy freezes; its error must be SessionStoreError."""
    app = make_app(counter_app, store)
    assert app.get("/").json == {"xx": 2, "yy": 1}  # a pooled connection, through the proxy
    proxy.freeze()
    started = time.monotonic()
    try:
        with pytest.raises(SessionStoreError, match="RedisStore could not load the session: TimeoutError"):
            app.get("/")
        return time.monotonic() - started
    finally:
        proxy.thaw()


def test_a_store_built_from_a_url_waits_a_bounded_time_by_default(
    proxy: TcpProxy, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    store = RedisStore(proxy.url(REDIS_URL), prefix=PREFIX, clock=clock)
    waited = frozen_load_takes(proxy, store, make_app)
    # Two tries (the second on a new connection), each waiting at most the timeout.
    bound = 2 * max(DEFAULT_SOCKET_TIMEOUT, DEFAULT_CONNECT_TIMEOUT)
    assert DEFAULT_SOCKET_TIMEOUT <= waited < bound + SLACK, waited
    store.close()


def test_the_url_sets_its_own_timeouts(proxy: TcpProxy, make_app: Callable[..., TestApp], clock: FakeClock) -> None:
    store = RedisStore(
        proxy.url(REDIS_URL) + "?socket_timeout=0.2&socket_connect_timeout=0.2", prefix=PREFIX, clock=clock
    )
    waited = frozen_load_takes(proxy, store, make_app)
    assert 0.2 <= waited < 2 * 0.2 + SLACK, waited
    store.close()


def test_a_client_passed_in_waits_as_it_was_configured(
    proxy: TcpProxy, make_app: Callable[..., TestApp], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis.from_url(proxy.url(REDIS_URL), socket_timeout=0.3, socket_connect_timeout=0.3)
    with caplog.at_level(logging.WARNING, logger="wsgisession"):
        store = RedisStore(client, prefix=PREFIX, clock=clock)
    assert caplog.records == []  # bounded: nothing to warn about
    waited = frozen_load_takes(proxy, store, make_app)
    assert 0.3 <= waited < SLACK + 3 * 0.3, waited  # whatever retries the client makes, each bounded
    client.close()


def test_a_client_passed_in_without_timeouts_is_used_with_a_warning(
    redis_url: str, make_app: Callable[..., TestApp], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=None, socket_connect_timeout=None)
    with caplog.at_level(logging.WARNING, logger="wsgisession"):
        store = RedisStore(client, prefix=PREFIX, clock=clock)
    [warning] = caplog.records
    assert "no socket_timeout and no socket_connect_timeout" in warning.getMessage()
    assert make_app(counter_app, store).get("/").json == {"xx": 2, "yy": 1}  # used all the same
    client.close()


def test_the_request_lock_fails_within_the_timeouts_when_redis_stops_answering(
    proxy: TcpProxy, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    store = RedisStore(
        proxy.url(REDIS_URL) + "?socket_timeout=0.2&socket_connect_timeout=0.2", prefix=PREFIX, clock=clock
    )
    app = make_app(counter_app, store, lock=True, lock_timeout=30)
    app.get("/")
    proxy.freeze()
    started = time.monotonic()
    try:
        with pytest.raises(SessionStoreError, match="RedisStore could not lock the session: TimeoutError"):
            app.get("/")
    finally:
        proxy.thaw()
    # Two calls (the attempt, and leaving the line in case it got through),
    # each bounded by the client's timeouts; never lock_timeout.
    assert time.monotonic() - started < 2 * (2 * 0.2) + SLACK
    store.close()
