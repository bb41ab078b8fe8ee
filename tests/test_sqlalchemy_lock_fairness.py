"""SQLAlchemyStore's request lock under contention: first come, first served, and no connection held while waiting.

The measurement of the issue, as a test: gunicorn with 2 workers x 8 threads
on 127.0.0.1, 32 clients, 600 requests on ONE session with ``lock=True``,
each holding the session for 50 ms.  Served one after another that takes
30 s; a fair queue keeps every wait near 16 x 50 ms, far below the default
``lock_timeout`` of 10 s, so no request may time out.

This module is also the WSGI app gunicorn serves (``application``), built
from the environment in each worker on its first request.
"""

from __future__ import annotations

import itertools
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import pytest
import sqlalchemy as sa
from webtest import TestApp

from wsgisession import SessionMiddleware
from wsgisession.stores.sqlalchemy import SQLAlchemyStore
from wsgisession.testing import FakeClock

from .servers import Browser, gunicorn
from .store_suite import clone, cookie_of
from .support import MYSQL_URL, POSTGRES_URL, RUN_ID, json_app, require_service
from .test_sqlalchemy_store import StoreFactory, stores_made

#: How long each request holds the session.
HOLD = 0.05
REQUESTS = 600
CLIENTS = 32

_URL = "WSGISESSION_FAIRNESS_URL"
_TABLE = "WSGISESSION_FAIRNESS_TABLE"


def _hold(session: Any, environ: Dict[str, Any]) -> Any:
    if environ["PATH_INFO"] == "/seed":
        session["count"] = 0
        return 0
    if environ["PATH_INFO"] == "/count":
        return session["count"]
    count = session["count"] + 1
    time.sleep(HOLD)  # the critical section: nobody else may read the count meanwhile
    session["count"] = count
    return count


_served: Optional[SessionMiddleware] = None
_served_mutex = threading.Lock()


def application(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The app gunicorn serves: ``/seed`` starts a count, ``/count`` reads it, ``/hold`` holds the session and counts."""
    global _served
    with _served_mutex:
        if _served is None:
            store = SQLAlchemyStore(os.environ[_URL], os.environ[_TABLE])
            _served = SessionMiddleware(json_app(_hold), store, lock=True)
    return _served(environ, start_response)


# -- the measurement -------------------------------------------------------------------

_tables = itertools.count()


def _database_url(database: str, tmp_path: Path) -> str:
    if database == "sqlite-file":
        return f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    if database == "postgresql":
        return require_service("PostgreSQL", POSTGRES_URL)
    return require_service("MariaDB", MYSQL_URL)


@pytest.mark.parametrize("database", ["sqlite-file", "postgresql", "mariadb"])
def test_no_request_times_out_in_a_queue_far_shorter_than_the_lock_timeout(database: str, tmp_path: Path) -> None:
    url = _database_url(database, tmp_path)
    table = f"fairness_{RUN_ID}_{next(_tables)}"
    environment = {_URL: url, _TABLE: table}
    try:
        with gunicorn(
            "tests.test_sqlalchemy_lock_fairness:application",
            *("--workers", "2", "--worker-class", "gthread", "--threads", "8", "--keep-alive", "0", "--timeout", "120"),
            env=environment,
        ) as address:
            seeder = Browser(address)
            assert seeder.get_json("/seed") == 0
            tickets = itertools.count()
            statuses: List[int] = []
            waits: List[float] = []

            def client() -> None:
                browser = Browser(address, seeder.cookies, timeout=60)
                while next(tickets) < REQUESTS:
                    started = time.monotonic()
                    status, _ = browser.get("/hold")
                    waits.append(time.monotonic() - started)
                    statuses.append(status)
                browser.close()

            started = time.monotonic()
            with ThreadPoolExecutor(CLIENTS) as pool:
                for future in [pool.submit(client) for _ in range(CLIENTS)]:
                    future.result()
            took = time.monotonic() - started
            final = seeder.get_json("/count")
            seeder.close()
    finally:
        engine = sa.create_engine(url)
        sa.Table(table, sa.MetaData()).drop(engine, checkfirst=True)
        engine.dispose()
    timeouts = sum(1 for status in statuses if status != 200)
    mean = statistics.mean(waits)
    print(
        f"\n{database}: {len(statuses)} requests in {took:.1f} s; "
        f"response time mean {mean:.2f} s, longest {max(waits):.2f} s; {timeouts} not 200"
    )
    assert timeouts == 0
    assert final == REQUESTS  # one at a time: no increment lost
    # Each response waits for the requests ahead of it (32 clients share the
    # lock): a queue served in order keeps the longest wait near the mean.
    assert max(waits) < 4 * mean, "a request waited far longer than its turn"


# -- waiting holds no connection ---------------------------------------------------------


@pytest.fixture
def new_store(tmp_path: Path, clock: FakeClock) -> Iterator[StoreFactory]:
    with stores_made(tmp_path, clock) as make:
        yield make


@pytest.mark.parametrize("database", ["sqlite-file", "postgresql", "mariadb"])
def test_waiting_requests_do_not_drain_the_connection_pool(
    database: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    # Twelve requests queue on one session behind a pool of two connections
    # (and a pool timeout of one second): each holds a connection only while
    # one of its statements runs.
    store = new_store(database, timeout=1.0, engine_options={"pool_size": 2, "max_overflow": 0})
    app = make_app(_hold, store, lock=True, lock_timeout=10)
    app.get("/seed")
    cookie = cookie_of(app)
    with ThreadPoolExecutor(12) as pool:
        counts = list(pool.map(lambda _: clone(app, cookie).get("/hold").json, range(12)))
    assert sorted(counts) == list(range(1, 13))
