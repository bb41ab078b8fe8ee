"""How a RedisStore built from a URL uses its connections: one per thread, given back, never shared across a fork."""

from __future__ import annotations

import os
import time
from typing import Callable, Iterator

import pytest
import redis
from webtest import TestApp

from wsgisession import SessionMiddleware
from wsgisession.stores.redis import RedisStore

from .support import (
    GREEN_PATCHES,
    REDIS_URL,
    RUN_ID,
    browser,
    count_in_threads,
    count_under_green_threads,
    counter_app,
    json_app,
    require_service,
)
from .tcp_proxy import TcpProxy

PREFIX = f"wsgisession-test-{RUN_ID}-connections:"
#: The name the store's connections give themselves, to find them in CLIENT LIST.
NAME = f"wsgisession-test-{RUN_ID}"


@pytest.fixture(autouse=True)
def admin() -> Iterator[redis.Redis]:
    """A client of the shared Redis for looking at connections; every key under PREFIX is deleted afterwards."""
    client = redis.Redis.from_url(require_service("Redis", REDIS_URL))
    yield client
    leftovers = list(client.scan_iter(match=PREFIX + "*", count=1000))
    if leftovers:
        client.delete(*leftovers)
    client.close()


def named_url(url: str) -> str:
    return url + ("&" if "?" in url else "?") + f"client_name={NAME}"


def connections(admin: redis.Redis) -> int:
    return sum(1 for entry in admin.client_list() if entry.get("name") == NAME)


def closed_soon(admin: redis.Redis) -> bool:
    """True once Redis has seen every connection of the store close (it notices a closed socket a moment later)."""
    deadline = time.monotonic() + 5
    while connections(admin) and time.monotonic() < deadline:
        time.sleep(0.01)
    return connections(admin) == 0


def test_a_thread_keeps_one_connection_and_gives_it_back_when_it_ends(admin: redis.Redis) -> None:
    store = RedisStore(named_url(REDIS_URL), prefix=PREFIX)
    app = SessionMiddleware(json_app(counter_app), store)
    # Threads one after another: each takes the connection the last one gave back.
    assert count_in_threads(app, 6, 5, at_once=False) == [5] * 6
    assert connections(admin) == 1
    # Threads at once: one connection each, no more.
    assert count_in_threads(app, 4, 20, at_once=True) == [20] * 4
    assert connections(admin) == 4
    store.close()
    assert closed_soon(admin)


def test_a_connection_the_server_closed_is_replaced_without_failing_the_request(
    make_app: Callable[..., TestApp],
) -> None:
    host, port = REDIS_URL.split("://", 1)[1].split("/", 1)[0].split(":")
    with TcpProxy((host, int(port))) as proxy:
        store = RedisStore(proxy.url(REDIS_URL), prefix=PREFIX)
        app = make_app(counter_app, store)
        assert app.get("/").json == {"xx": 2, "yy": 1}
        proxy.drop()  # the thread's connection is closed, as by a server's idle timeout or a restart
        assert app.get("/").json == {"xx": 5, "yy": 2}
        store.close()


def test_a_forked_child_never_uses_its_parents_connection() -> None:
    # A child that used the connection its parent's thread holds would read
    # the parent's replies (and the parent the child's).
    store = RedisStore(REDIS_URL, prefix=PREFIX)
    app = SessionMiddleware(json_app(counter_app), store)
    parent = browser(app)
    assert parent.get("/").json["yy"] == 1  # this thread now holds a connection
    child_browser = browser(app)
    pid = os.fork()
    if pid == 0:  # the child: count on a session of its own, exit 0 when every count was right
        try:
            ok = all(child_browser.get("/").json["yy"] == count for count in range(1, 201))
        except BaseException:  # noqa: BLE001 - any failure is the child's exit status
            ok = False
        os._exit(0 if ok else 1)
    counts = [parent.get("/").json["yy"] for _ in range(200)]
    _, status = os.waitpid(pid, 0)
    assert counts == list(range(2, 202))
    assert os.waitstatus_to_exitcode(status) == 0
    store.close()


@pytest.mark.parametrize("library, patch", GREEN_PATCHES)
def test_green_threads_borrow_from_the_pool_instead_of_holding_a_connection_each(library: str, patch: str) -> None:
    # A greenlet serves one request: a client of its own would be made for
    # every request.
    pytest.importorskip(library)
    assert count_under_green_threads(patch, REDIS_URL, prefix=PREFIX) == ["True", "4"]
