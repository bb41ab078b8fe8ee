"""RedisStore's request lock is a line: waiters are served in the order they came.

The fairness measurement runs under gunicorn (two workers of eight threads):
32 clients send 600 requests on one session, each holding the lock for 50 ms
of work, with the default ``lock_timeout`` of 10 s; none may time out.  The
other tests show the line's rules one by one: arrival order, a hand-over
that wakes the next waiter at once, a waiter that gives up or dies does not
hold up the ones behind it.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterator, List

import pytest
import redis
from webtest import TestApp

from wsgisession import SessionLockTimeout
from wsgisession.stores.redis import RedisStore
from wsgisession.stores.redis.lock import LONGEST_WAIT, PLACE_LEASE
from wsgisession.testing import FakeClock

from .servers import REPO, Browser, gunicorn
from .store_suite import clone, cookie_of
from .support import REDIS_URL, RUN_ID, require_service

PREFIX = f"wsgisession-test-{RUN_ID}-lock:"

# The fairness measurement.
REQUESTS = 600
CLIENTS = 32
WORK_SECONDS = 0.05


@pytest.fixture(scope="module")
def redis_url() -> str:
    return require_service("Redis", REDIS_URL)


@pytest.fixture
def store(redis_url: str, clock: FakeClock) -> Iterator[RedisStore]:
    store = RedisStore(redis_url, prefix=PREFIX, clock=clock)
    yield store
    leftovers = list(store.client.scan_iter(match=PREFIX + "*", count=1000))
    if leftovers:
        store.client.delete(*leftovers)
    store.close()


def test_600_requests_from_32_clients_under_gunicorn_none_times_out(redis_url: str) -> None:
    prefix = PREFIX + "fair:"
    env = {"WSGISESSION_LOCK_APP_URL": redis_url, "WSGISESSION_LOCK_APP_PREFIX": prefix}
    options = ["--workers", "2", "--worker-class", "gthread", "--threads", "8", "--timeout", "120"]
    statuses: List[int] = []
    latencies: List[float] = []
    remaining = iter(range(REQUESTS))
    take = threading.Lock()
    try:
        with gunicorn("tests.redis_lock_app:application", *options, "--graceful-timeout", "5", env=env) as address:
            owner = Browser(address)
            assert owner.get_json("/seed") == 0
            owner.close()

            def client(_: int) -> None:
                while True:
                    with take:
                        if next(remaining, None) is None:
                            return
                    browser = Browser(address, owner.cookies, timeout=60)
                    try:
                        started = time.monotonic()
                        status, _ = browser.get("/increment")
                        latencies.append(time.monotonic() - started)
                        statuses.append(status)
                    finally:
                        browser.close()

            started = time.monotonic()
            with ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(client, range(CLIENTS)))
            elapsed = time.monotonic() - started
            reader = Browser(address, owner.cookies)
            count = reader.get_json("/count")
            reader.close()
    finally:
        client_for_cleanup = redis.Redis.from_url(redis_url)
        leftovers = list(client_for_cleanup.scan_iter(match=prefix + "*", count=1000))
        if leftovers:
            client_for_cleanup.delete(*leftovers)
        client_for_cleanup.close()
    timeouts = len(statuses) - statuses.count(200)
    latencies.sort()
    summary = (
        f"{timeouts} of {REQUESTS} failed; {elapsed:.1f} s; latency p50 {statistics.median(latencies):.2f} s, "
        f"p99 {latencies[int(len(latencies) * 0.99)]:.2f} s, max {latencies[-1]:.2f} s"
    )
    print(summary)
    assert len(statuses) == REQUESTS
    assert timeouts == 0, summary
    assert count == REQUESTS  # the lock serialized every read-modify-write
    assert elapsed >= REQUESTS * WORK_SECONDS  # one at a time


def holder(store: RedisStore, make_app: Callable[..., TestApp], cookie: str) -> Any:
    """A request that holds the session's lock until its ``release`` event is set."""
    holding, release = threading.Event(), threading.Event()

    def handler(session: Any, environ: dict) -> Any:
        session.get("owner")
        holding.set()
        assert release.wait(30)
        return "held"

    app = clone(make_app(handler, store, lock=True, lock_timeout=30), cookie)
    return app, holding, release


def new_session(store: RedisStore, make_app: Callable[..., TestApp]) -> str:
    app = make_app(lambda session, environ: session.setdefault("owner", "ann"), store)
    app.get("/")
    return cookie_of(app)


def test_waiters_get_the_lock_in_the_order_they_came(store: RedisStore, make_app: Callable[..., TestApp]) -> None:
    cookie = new_session(store, make_app)
    order: List[int] = []

    def handler(session: Any, environ: dict) -> Any:
        session.get("owner")  # the first touch takes the lock
        order.append(int(environ["PATH_INFO"].strip("/")))
        return None

    waiter = make_app(handler, store, lock=True, lock_timeout=30)
    hold, holding, release = holder(store, make_app, cookie)
    with ThreadPoolExecutor(9) as pool:
        held = pool.submit(hold.get, "/")
        assert holding.wait(10)
        waiting = []
        for number in range(8):
            waiting.append(pool.submit(clone(waiter, cookie).get, f"/{number}"))
            # The next one comes after this one is in line.
            deadline = time.monotonic() + 10
            while store.client.llen(store.lock_key(cookie) + ":queue") < number + 1:
                assert time.monotonic() < deadline
                time.sleep(0.005)
        release.set()
        held.result()
        for response in waiting:
            response.result()
    assert order == list(range(8))


def test_a_release_wakes_the_next_waiter_at_once(store: RedisStore, make_app: Callable[..., TestApp]) -> None:
    cookie = new_session(store, make_app)
    handovers: List[float] = []
    for _ in range(5):
        hold, holding, release = holder(store, make_app, cookie)
        with ThreadPoolExecutor(2) as pool:
            held = pool.submit(hold.get, "/")
            assert holding.wait(10)
            waiting = pool.submit(store.lock_session, cookie, 10, {})
            time.sleep(2 * LONGEST_WAIT)  # the waiter is blocked in Redis, between two looks
            released = time.monotonic()
            release.set()
            lock = waiting.result()
            handovers.append(time.monotonic() - released)
            lock.release()
            held.result()
    # Woken by the hand-over, not by its next look at the lock.
    assert statistics.median(handovers) < LONGEST_WAIT / 2, handovers


def test_a_waiter_that_gives_up_leaves_the_line(store: RedisStore, make_app: Callable[..., TestApp]) -> None:
    cookie = new_session(store, make_app)
    hold, holding, release = holder(store, make_app, cookie)
    with ThreadPoolExecutor(3) as pool:
        held = pool.submit(hold.get, "/")
        assert holding.wait(10)
        impatient = pool.submit(store.lock_session, cookie, 0.3, {})
        time.sleep(0.1)
        patient = pool.submit(store.lock_session, cookie, 10, {})
        with pytest.raises(SessionLockTimeout, match="not free within 0.3 s"):
            impatient.result()
        released = time.monotonic()
        release.set()
        lock = patient.result()
        waited = time.monotonic() - released
        lock.release()
        held.result()
    assert waited < PLACE_LEASE / 2, waited  # not held up by the place the impatient one left


def test_a_waiter_that_died_is_skipped_once_its_place_lapses(
    store: RedisStore, make_app: Callable[..., TestApp], redis_url: str
) -> None:
    cookie = new_session(store, make_app)
    hold, holding, release = holder(store, make_app, cookie)
    queue = store.lock_key(cookie) + ":queue"
    waiter_script = (
        "import sys; from wsgisession.stores.redis import RedisStore; "
        f"RedisStore({redis_url!r}, prefix={PREFIX!r}).lock_session({cookie!r}, 60, {{}}); sys.exit(3)"
    )
    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(hold.get, "/")
        assert holding.wait(10)
        doomed = subprocess.Popen([sys.executable, "-c", waiter_script], cwd=REPO)
        try:
            deadline = time.monotonic() + 10
            while store.client.llen(queue) < 1:  # the other process is in line
                assert time.monotonic() < deadline and doomed.poll() is None
                time.sleep(0.01)
        finally:
            doomed.kill()  # it dies waiting, without leaving the line
            doomed.wait(10)
        patient = pool.submit(store.lock_session, cookie, 10, {})
        released = time.monotonic()
        release.set()
        lock = patient.result()
        waited = time.monotonic() - released
        lock.release()
        held.result()
    # The dead waiter was first in line: at most its place's lease (or a
    # lock handed to it) is lost, never the patient one's whole timeout.
    assert waited < PLACE_LEASE + 1.0, waited


def test_the_line_leaves_no_keys_behind(store: RedisStore, make_app: Callable[..., TestApp]) -> None:
    cookie = new_session(store, make_app)

    def increment(session: Any, environ: dict) -> Any:
        session["count"] = session.get("count", 0) + 1
        time.sleep(0.01)
        return session["count"]

    app = make_app(increment, store, lock=True, lock_timeout=30)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: clone(app, cookie).get("/"), range(24)))
    keys: Dict[bytes, int] = {key: store.client.pttl(key) for key in store.client.scan_iter(match=PREFIX + "*")}
    assert list(keys) == [store.hash_key(cookie).encode()], keys  # no lock, line, place or wake-up key left
