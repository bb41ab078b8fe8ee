"""RedisStore on a real Redis Cluster of three primaries, started by these tests.

The store suite and its concurrency guarantees run on ``redis.cluster.RedisCluster``,
built from a ``redis+cluster://`` URL and passed in; gunicorn workers share
sessions through the URL form; a session's keys stay in one slot while sessions
spread over every node; a node that stops answering fails requests within the
client's timeouts.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from webtest import TestApp

from wsgisession import SessionStoreError
from wsgisession.contrib import store_from_url
from wsgisession.stores.redis import DEFAULT_CONNECT_TIMEOUT, RedisStore
from wsgisession.stores.redis.clients import wait_limits
from wsgisession.testing import FakeClock

from .redis_owner_suite import RedisOwnerSuite
from .redis_servers import ClusterSetup, redis_cluster
from .servers import REPO, Browser, free_port, gunicorn, serving
from .store_suite import ServerSideSuite, clone, cookie_of
from .support import counter_app


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSetup]:
    with redis_cluster(primaries=3) as setup:
        yield setup


@pytest.fixture
def cluster_client(cluster: ClusterSetup) -> Iterator[RedisCluster]:
    """A cluster client built by hand, as an application would pass it in."""
    nodes = [ClusterNode("127.0.0.1", node.port) for node in cluster.nodes]
    client = RedisCluster(startup_nodes=nodes, decode_responses=True, socket_timeout=2, socket_connect_timeout=2)
    yield client
    client.close()


def keys_on_every_node(cluster: ClusterSetup, pattern: str) -> List[str]:
    """The keys matching ``pattern``, asked of each node directly."""
    return [key.decode() for node in cluster.nodes for key in node.ask("KEYS", pattern)]


class TestRedisClusterStore(ServerSideSuite):
    @pytest.fixture(params=["redis+cluster URL", "RedisCluster passed in"])
    def store(self, request: pytest.FixtureRequest, cluster: ClusterSetup, clock: FakeClock) -> Iterator[RedisStore]:
        if request.param == "redis+cluster URL":
            store = RedisStore(cluster.url, clock=clock)
            assert isinstance(store.client, RedisCluster)
        else:
            store = RedisStore(request.getfixturevalue("cluster_client"), clock=clock)
        yield store
        store.close()


class TestRedisClusterOwners(RedisOwnerSuite):
    """The owners' sets live in other slots than the sessions: they change by commands of their own."""

    @pytest.fixture(params=["redis+cluster URL", "RedisCluster passed in"])
    def store(self, request: pytest.FixtureRequest, cluster: ClusterSetup, clock: FakeClock) -> Iterator[RedisStore]:
        prefix = f"owners-{uuid.uuid4().hex[:8]}:"  # a prefix of the test's own: owners' names repeat
        if request.param == "redis+cluster URL":
            store = RedisStore(cluster.url, prefix=prefix, clock=clock)
        else:
            store = RedisStore(request.getfixturevalue("cluster_client"), prefix=prefix, clock=clock)
        assert not store._owners.in_commit
        yield store
        store.close()


def test_store_from_url_builds_a_cluster_client(cluster: ClusterSetup, make_app: Callable[..., TestApp]) -> None:
    store = store_from_url(cluster.url + "?socket_timeout=0.7", prefix="from-url:")
    assert isinstance(store, RedisStore) and isinstance(store.client, RedisCluster)
    assert wait_limits(store.client) == (0.7, DEFAULT_CONNECT_TIMEOUT)  # the URL's option, then the default
    app = make_app(counter_app, store)
    assert [app.get("/").json["yy"] for _ in range(3)] == [1, 2, 3]
    store.close()


def test_the_counter_demo_runs_on_a_cluster_url(cluster: ClusterSetup, tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, str(REPO / "examples" / "counter.py"), "--store", "redis", "--url", cluster.url]
    with serving([*command, "--port", str(port)], port, cwd=tmp_path, startup_timeout=20, stop_timeout=10) as address:
        client = Browser(address, timeout=10)
        assert [client.get_json("/testsession")["yy"] for _ in range(3)] == [1, 2, 3]
        client.close()


def test_a_sessions_keys_share_a_slot_and_sessions_spread_over_every_node(
    cluster: ClusterSetup, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    store = RedisStore(cluster.url, prefix="spread:", clock=clock)
    seen: List[List[str]] = []

    def handler(session: Any, environ: dict) -> Any:
        session["n"] = session.get("n", 0) + 1
        if not session.new:  # a returning request holds the lock: list its keys meanwhile
            seen.append(keys_on_every_node(cluster, store.hash_key(session.id) + "*"))
        return session["n"]

    for _ in range(8):
        app = make_app(handler, store, lock=True)
        app.get("/")
        assert app.get("/").json == 2
    assert len(seen) == 8
    for keys in seen:
        assert len(keys) == 2  # the hash and its lock
        assert len({key_slot(key.encode()) for key in keys}) == 1
    for _ in range(40):
        make_app(counter_app, store).get("/")
    serving = Counter(cluster.node_serving(key).port for key in keys_on_every_node(cluster, "spread:*"))
    assert set(serving) == {node.port for node in cluster.nodes}, serving
    store.close()


def test_gunicorn_workers_share_sessions_through_the_cluster_url(cluster: ClusterSetup) -> None:
    env = {
        "WSGISESSION_SERVED_STORE": cluster.url,
        "WSGISESSION_SERVED_TABLE": "served:",
        "WSGISESSION_SERVED_LOCK": "1",
    }
    options = ["--workers", "2", "--worker-class", "gthread", "--threads", "4", "--timeout", "60"]
    with gunicorn("tests.served_app:application", *options, env=env) as address:
        owner = Browser(address)
        owner.get("/seed")

        def increment(_: int) -> int:
            browser = Browser(address, owner.cookies)
            try:
                return browser.get("/increment")[0]
            finally:
                browser.close()

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(increment, range(32)))
        assert statuses == [200] * 32
        assert owner.get_json("/read")["count"] == 32
        owner.close()


def test_scripts_are_loaded_again_on_a_node_that_lost_them(
    cluster: ClusterSetup, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    store = RedisStore(cluster.url, prefix="reload:", clock=clock)
    app = make_app(counter_app, store)
    app.get("/")
    for node in cluster.nodes:  # as after a restart or a failover to a fresh node
        node.ask("SCRIPT", "FLUSH")
    assert app.get("/").json == {"xx": 5, "yy": 2}
    store.close()


def test_a_node_that_stops_answering_fails_requests_within_the_timeouts(
    cluster: ClusterSetup, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    store = RedisStore(cluster.url + "?socket_timeout=0.5&socket_connect_timeout=0.5", prefix="frozen:", clock=clock)
    app = make_app(counter_app, store)
    app.get("/")
    node = cluster.node_serving(store.hash_key(cookie_of(app)))
    node.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(SessionStoreError, match="RedisStore could not load the session"):
            app.get("/")
        waited = time.monotonic() - started
    finally:
        node.thaw()
    # One wait for the reply, then one retry after the client re-reads the
    # slot map (each bounded by the same timeouts).
    assert waited < 4 * 0.5 + 1.0, waited
    assert app.get("/").json == {"xx": 5, "yy": 2}  # the node answers again
    store.close()


def test_concurrent_requests_on_sessions_of_every_node(
    cluster: ClusterSetup, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    store = RedisStore(cluster.url, prefix="many:", clock=clock)

    def handler(session: Any, environ: dict) -> Any:
        key = environ["PATH_INFO"].strip("/")
        session[key] = True
        return None

    cookies: Dict[str, List[str]] = {}
    for _ in range(6):
        seeder = make_app(lambda session, environ: session.setdefault("owner", "ann"), store)
        seeder.get("/")
        cookies[cookie_of(seeder)] = [f"k{index}" for index in range(16)]
    app = make_app(handler, store)
    jobs = [(cookie, key) for cookie, keys in cookies.items() for key in keys]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda job: clone(app, job[0]).get("/" + job[1]), jobs))
    reader = make_app(lambda session, environ: sorted(session.keys()), store)
    for cookie, keys in cookies.items():
        assert clone(reader, cookie).get("/").json == sorted([*keys, "owner"])
    store.close()
