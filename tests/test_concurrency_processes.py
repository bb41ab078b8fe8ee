"""No lost updates across processes: gunicorn workers sharing one session store.

A browser-like client fires bounded bursts of concurrent requests that carry
one session cookie; every request sets its own key.  All keys must survive,
whichever worker process served them.  With the request lock, concurrent
increments of one counter must all count.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from .servers import Address, Browser, gunicorn
from .support import POSTGRES_URL, REDIS_URL, RUN_ID, require_service

ROUNDS = 3
REQUESTS_PER_ROUND = 32
CLIENT_THREADS = 16

#: gunicorn's options for each worker model under test.
WORKERS = {
    "4 sync workers": ["--workers", "4", "--worker-class", "sync", "--threads", "1"],
    "2 gthread workers x 4 threads": ["--workers", "2", "--worker-class", "gthread", "--threads", "4"],
}
#: No worker is killed as stuck during a burst; shutdown does not wait long for stragglers.
TIMEOUTS = ["--timeout", "60", "--graceful-timeout", "5"]


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Dict[str, str]]:
    """Environment for tests/served_app.py: a store URL and a unique table or prefix, removed afterwards."""
    table = f"proc_{RUN_ID}_{request.param}"
    if request.param == "sqlite":
        pytest.importorskip("sqlalchemy")
        url = f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    elif request.param == "postgresql":
        pytest.importorskip("sqlalchemy")
        url = require_service("PostgreSQL", POSTGRES_URL)
    else:
        pytest.importorskip("redis")
        url = require_service("Redis", REDIS_URL)
        table = f"wsgisession-test-{RUN_ID}-proc:"
    yield {"WSGISESSION_SERVED_STORE": url, "WSGISESSION_SERVED_TABLE": table}
    if request.param == "postgresql":
        import sqlalchemy

        engine = sqlalchemy.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f'DROP TABLE IF EXISTS "{table}"'))
        engine.dispose()
    elif request.param == "redis":
        import redis

        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=f"{table}*"):
            client.delete(key)
        client.close()


def burst(address: Address, cookies: Dict[str, str], paths: List[str]) -> List[int]:
    def one(path: str) -> int:
        browser = Browser(address, cookies)
        try:
            status, _ = browser.get(path)
            return status
        finally:
            browser.close()

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        return list(pool.map(one, paths))


@pytest.mark.parametrize("workers", list(WORKERS), ids=list(WORKERS))
def test_concurrent_requests_across_workers_lose_no_key(store_env: Dict[str, str], workers: str) -> None:
    with gunicorn("tests.served_app:application", *WORKERS[workers], *TIMEOUTS, env=store_env) as address:
        for round_number in range(ROUNDS):
            owner = Browser(address)
            owner.get("/seed")
            keys = [f"r{round_number}-k{index}" for index in range(REQUESTS_PER_ROUND)]
            assert burst(address, owner.cookies, [f"/set/{key}" for key in keys]) == [200] * len(keys)
            status, body = owner.get("/read")
            owner.close()
            stored = json.loads(body)
            lost = sorted(set(keys) - set(stored))
            assert not lost, f"round {round_number}: {len(lost)} keys lost: {lost[:5]}"
            assert stored["owner"] == "ann"


def test_the_request_lock_counts_every_increment_across_workers(store_env: Dict[str, str]) -> None:
    env = dict(store_env, WSGISESSION_SERVED_LOCK="1")
    with gunicorn("tests.served_app:application", *WORKERS["4 sync workers"], *TIMEOUTS, env=env) as address:
        owner = Browser(address)
        owner.get("/seed")
        assert burst(address, owner.cookies, ["/increment"] * REQUESTS_PER_ROUND) == [200] * REQUESTS_PER_ROUND
        status, body = owner.get("/read")
        owner.close()
        assert json.loads(body)["count"] == REQUESTS_PER_ROUND
