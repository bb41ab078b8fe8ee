"""SQLAlchemyStore: a bounded wait when the database stops answering, and recovery when it is back.

The store talks to the real PostgreSQL and MariaDB through a TCP proxy that
the test freezes: the proxy's kernel still acknowledges every byte, so TCP
timeouts and the server's own timeouts never fire; only the store's deadline
(PostgreSQL) or the driver's read timeout (PyMySQL) can end the wait.
"""

from __future__ import annotations

import itertools
import multiprocessing
import re
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Tuple
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from webtest import TestApp

from wsgisession import SessionStoreError
from wsgisession.stores.sqlalchemy import SQLAlchemyStore
from wsgisession.testing import FakeClock

from .store_suite import DAY, clone, cookie_of
from .support import MYSQL_URL, POSTGRES_URL, RUN_ID, require_service
from .tcp_proxy import TcpProxy

#: The store's timeout in these tests.
TIMEOUT = 1.0
#: What a loaded machine may add to it (scheduling, the deadline's resolution).
SLACK = 1.5

_numbers = itertools.count()


def _server_url(server: str) -> str:
    return (
        require_service("PostgreSQL", POSTGRES_URL) if server == "postgresql" else require_service("MariaDB", MYSQL_URL)
    )


@pytest.fixture(params=["postgresql", "mariadb"])
def proxied(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Tuple[SQLAlchemyStore, TcpProxy]]:
    """A store on a new table, reaching its server through a proxy the test can freeze."""
    url = _server_url(str(request.param))
    parts = urlsplit(url)
    with TcpProxy((parts.hostname or "127.0.0.1", parts.port or 0)) as proxy:
        store = SQLAlchemyStore(proxy.url(url), f"frozen_{RUN_ID}_{next(_numbers)}", timeout=TIMEOUT, clock=clock)
        try:
            yield store, proxy
        finally:
            proxy.thaw()
            store.close()
            direct = sa.create_engine(url)
            store.table.drop(direct, checkfirst=True)
            direct.dispose()


def session_app(make_app: Callable[..., TestApp], store: SQLAlchemyStore, proxy: TcpProxy, **options: Any) -> TestApp:
    """``/login`` stores a user; ``/add/<key>`` adds a key, ``/freeze-then-add/<key>`` freezes the proxy after loading."""

    def handler(session: Any, environ: Dict[str, Any]) -> Any:
        path = environ["PATH_INFO"]
        if path == "/login":
            session["user"] = "ann"
        elif path.startswith("/add/"):
            session[path.rsplit("/", 1)[1]] = True
        elif path.startswith("/freeze-then-add/"):
            session.get("user")  # loaded while the database still answers
            proxy.freeze()
            session[path.rsplit("/", 1)[1]] = True
        return dict(session.items())

    return make_app(handler, store, expire_after=DAY, **options)


def fails_within(seconds: float, request: Callable[[], Any], match: str) -> float:
    """Run ``request``, which must raise ``SessionStoreError`` matching ``match``; return how long it took."""
    started = time.monotonic()
    with pytest.raises(SessionStoreError, match=match):
        request()
    elapsed = time.monotonic() - started
    assert elapsed <= seconds + SLACK, f"waited {elapsed:.2f} s"
    return elapsed


NO_ANSWER = rf"did not answer within {TIMEOUT:g} s"


def test_a_read_fails_within_the_timeout_and_the_store_recovers(
    proxied: Tuple[SQLAlchemyStore, TcpProxy], make_app: Callable[..., TestApp]
) -> None:
    store, proxy = proxied
    app = session_app(make_app, store, proxy)
    app.get("/login")
    proxy.freeze()
    elapsed = fails_within(TIMEOUT, lambda: app.get("/read"), rf"could not load a session .*{NO_ANSWER}")
    assert elapsed >= TIMEOUT * 0.9
    proxy.thaw()
    for _ in range(3):  # no connection cut by the deadline is handed out again
        assert app.get("/read").json == {"user": "ann"}


def test_a_write_fails_within_the_timeout_and_nothing_is_lost_or_stale(
    proxied: Tuple[SQLAlchemyStore, TcpProxy], make_app: Callable[..., TestApp]
) -> None:
    store, proxy = proxied
    app = session_app(make_app, store, proxy)
    app.get("/login")
    app.get("/add/before")
    fails_within(TIMEOUT, lambda: app.get("/freeze-then-add/during"), rf"could not save a session .*{NO_ANSWER}")
    proxy.thaw()
    # The swap that got no answer is delivered when the proxy thaws, and may
    # land at any moment until another write moves the row's version on: it
    # is then applied whole, like any write that timed out, or not at all.
    assert app.get("/read").json in ({"user": "ann", "before": True}, {"user": "ann", "before": True, "during": True})
    app.get("/add/after")
    final = app.get("/read").json
    assert final in (
        {"user": "ann", "before": True, "after": True},
        {"user": "ann", "before": True, "during": True, "after": True},
    )
    for _ in range(3):
        assert app.get("/read").json == final


def test_a_new_session_fails_within_the_timeout(
    proxied: Tuple[SQLAlchemyStore, TcpProxy], make_app: Callable[..., TestApp]
) -> None:
    store, proxy = proxied
    app = session_app(make_app, store, proxy)
    app.get("/login")  # the table exists and a connection is pooled
    proxy.freeze()
    newcomer = session_app(make_app, store, proxy)
    fails_within(TIMEOUT, lambda: newcomer.get("/login"), rf"could not create a session .*{NO_ANSWER}")
    proxy.thaw()
    assert newcomer.get("/login").json == {"user": "ann"}
    assert app.get("/read").json == {"user": "ann"}


def test_a_locked_request_fails_within_the_timeout(
    proxied: Tuple[SQLAlchemyStore, TcpProxy], make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    store, proxy = proxied
    app = session_app(make_app, store, proxy, lock=True, lock_timeout=5)
    app.get("/login")
    proxy.freeze()
    fails_within(TIMEOUT, lambda: app.get("/read"), rf"could not lock a session .*{NO_ANSWER}")
    proxy.thaw()
    # The take that got no answer may have been applied once the database
    # answered again; its holder is gone, so the lock lapses like any other.
    clock.advance(store.lock_expire_after + 1)
    assert app.get("/read").json == {"user": "ann"}
    assert app.get("/read").json == {"user": "ann"}


def _read_in_a_forked_worker(store: SQLAlchemyStore, cookie: str, ready: Any, frozen: Any, answers: Any) -> None:
    # What a gunicorn worker does after ``--preload``: it inherits the store
    # (its engine and the deadline watchdog of the parent) and uses it.
    try:
        store.engine.dispose(close=False)  # the parent's pooled connections stay the parent's
        assert store.get_session(cookie, {}) is not None  # this process's own connection
        ready.set()
        assert frozen.wait(10)
        started = time.monotonic()
        try:
            store.get_session(cookie, {})
            answers.put("answered")
        except SessionStoreError as exc:
            answers.put(f"{time.monotonic() - started:.2f} {exc}")
    except BaseException as exc:  # reported to the test, which fails on it
        answers.put(repr(exc))


def test_a_forked_worker_is_bounded_too(
    proxied: Tuple[SQLAlchemyStore, TcpProxy], make_app: Callable[..., TestApp]
) -> None:
    store, proxy = proxied
    app = session_app(make_app, store, proxy)
    app.get("/login")  # the parent has used the store: its watchdog thread runs here, not in a child
    context = multiprocessing.get_context("fork")
    ready, frozen, answers = context.Event(), context.Event(), context.Queue()
    worker = context.Process(target=_read_in_a_forked_worker, args=(store, cookie_of(app), ready, frozen, answers))
    worker.start()
    try:
        assert ready.wait(20)
        proxy.freeze()
        frozen.set()
        answer = answers.get(timeout=20)
    finally:
        worker.join(20)
    seconds, _, message = answer.partition(" ")
    assert re.search(rf"could not load a session .*{NO_ANSWER}", message), answer
    assert float(seconds) <= TIMEOUT + SLACK


def test_a_server_that_accepts_connections_but_never_answers(
    proxied: Tuple[SQLAlchemyStore, TcpProxy], make_app: Callable[..., TestApp]
) -> None:
    # A listening socket nobody accepts from: the kernel completes the TCP
    # handshake, and the driver waits for a greeting that never comes.
    store, proxy = proxied
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        url = store.engine.url.set(port=silent.getsockname()[1])
        mute = SQLAlchemyStore(url, store.table.name, timeout=TIMEOUT)
        app = session_app(make_app, mute, proxy)
        # libpq counts its connect timeout in whole seconds, at least 2.
        bound = max(2.0, TIMEOUT) if url.get_backend_name() == "postgresql" else TIMEOUT
        fails_within(bound, lambda: app.get("/login"), r"could not create a session .*(timeout|timed out)")
        mute.close()
    finally:
        silent.close()


# -- SQLite: another connection's write lock ---------------------------------------------


def test_sqlite_a_write_blocked_by_another_writer_fails_after_the_busy_timeout(
    tmp_path: Path, make_app: Callable[..., TestApp]
) -> None:
    path = tmp_path / "sessions.sqlite3"
    store = SQLAlchemyStore(f"sqlite:///{path}", timeout=0.5)

    def handler(session: Any, environ: Dict[str, Any]) -> Any:
        if environ["PATH_INFO"].startswith("/add/"):
            session[environ["PATH_INFO"].rsplit("/", 1)[1]] = True
        return dict(session.items())

    app = make_app(handler, store)
    app.get("/add/before")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock, as a long transaction elsewhere would
    try:
        assert app.get("/read").json == {"before": True}  # readers never wait (WAL)
        elapsed = fails_within(
            0.5, lambda: app.get("/add/during"), r"could not save a session .*database is locked.*busy timeout, 0.5 s"
        )
        assert elapsed >= 0.45
        newcomer = clone(make_app(handler, store), "")
        fails_within(0.5, lambda: newcomer.get("/add/new"), r"could not create a session .*database is locked")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert app.get("/add/after").json == {"before": True, "after": True}
    assert cookie_of(app)
    store.close()


def test_sqlite_a_writer_waits_for_a_short_transaction_elsewhere(
    tmp_path: Path, make_app: Callable[..., TestApp]
) -> None:
    path = tmp_path / "sessions.sqlite3"
    store = SQLAlchemyStore(f"sqlite:///{path}", timeout=2.0)
    app = make_app(lambda session, environ: session.setdefault("n", 1), store)
    app.get("/")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: other.execute("ROLLBACK")).start()
    started = time.monotonic()
    assert make_app(lambda session, environ: session.setdefault("m", 2), store).get("/").json == 2
    assert 0.25 <= time.monotonic() - started <= 2.0
    other.close()
    store.close()
