"""SQLAlchemyStore: the sessions of an owner on SQLite, PostgreSQL and MariaDB, and the owner column of older tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from webtest import TestApp

from wsgisession import SessionStoreError
from wsgisession.store import Store
from wsgisession.stores.sqlalchemy import SQLAlchemyStore
from wsgisession.testing import FakeClock

from .owner_suite import OwnerSuite, signed_in
from .store_suite import DAY, cookie_of
from .test_sqlalchemy_store import StoreFactory, row_of, rows, statements_run, stores_made, verbs


@pytest.fixture
def new_store(tmp_path: Path, clock: FakeClock) -> Iterator[StoreFactory]:
    with stores_made(tmp_path, clock) as make:
        yield make


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "postgresql", "mariadb"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestOwnersEveryBackend(OwnerSuite):
    @pytest.fixture
    def store(self, backend: str, new_store: StoreFactory) -> SQLAlchemyStore:
        return new_store(backend)

    def index_size(self, store: Store, owner: str) -> int:
        # The rows that hold the owner, expired ones included: what the index covers.
        return len([row for row in rows(store) if row["owner"] == owner])  # type: ignore[arg-type]


def test_the_owner_has_a_column_and_the_details_travel_with_the_data(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(backend)
    app = signed_in(make_app, store, "ann", "laptop")
    row = row_of(store, cookie_of(app))
    assert row["owner"] == "ann"
    assert '"details":{"agent":"laptop"}' in row["data"]
    assert app.get("/clear").json == {"owner": None, "data": {}}
    assert rows(store) == []  # cleared: no data and no owner, so no row


def test_owners_differing_in_case_or_trailing_spaces_are_different_owners(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    # MariaDB compares strings without regard to case or trailing spaces by default.
    owners = ("ann", "Ann", "ann ")

    def handler(session: Any, environ: dict) -> Any:
        if environ["PATH_INFO"] == "/login":
            session.owner = owners[int(environ["QUERY_STRING"])]
            session.owner_details = {"agent": f"agent of {session.owner!r}"}
        return session.owner

    store = new_store(backend)
    apps = {}
    for index, owner in enumerate(owners):
        apps[owner] = make_app(handler, store)
        assert apps[owner].get(f"/login?{index}").json == owner
    for owner in owners:
        assert [info.details["agent"] for info in store.sessions_of(owner)] == [f"agent of {owner!r}"]
    (handle,) = [info.handle for info in store.sessions_of("ann")]
    assert store.end_session("Ann", handle) is False
    assert store.end_session("ann ", handle) is False
    assert store.end_sessions("ANN") == 0
    assert store.end_sessions("ann") == 1
    assert [len(store.sessions_of(owner)) for owner in ("ann", "Ann", "ann ")] == [0, 1, 1]
    assert [app.get("/").json for app in apps.values()] == [None, "Ann", "ann "]


def test_an_owner_is_written_with_the_data_and_changed_by_the_swap(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    def handler(session: Any, environ: dict) -> Any:
        if environ["PATH_INFO"] == "/give":
            session.owner = environ["QUERY_STRING"]
        elif environ["PATH_INFO"] == "/disown":
            session.owner = None
        return session.owner

    store = new_store(backend)
    app = make_app(handler, store)
    app.get("/give?ann")
    assert row_of(store, cookie_of(app))["owner"] == "ann"
    assert app.get("/give?bob").json == "bob"
    assert row_of(store, cookie_of(app))["owner"] == "bob"
    assert (store.sessions_of("ann"), len(store.sessions_of("bob"))) == ([], 1)
    response = app.get("/disown")  # the owner was the only content: the session ends
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert rows(store) == []


def test_an_owner_longer_than_the_column_is_refused_before_the_database_sees_it(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(backend)
    app = make_app(lambda session, environ: setattr(session, "owner", "x" * 256), store)
    with pytest.raises(SessionStoreError, match="256 characters long, more than the 255 of the owner column"):
        app.get("/")
    assert rows(store) == []


def test_cleanup_removes_expired_sessions_from_the_index(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    store = new_store(backend)
    for agent in ("old laptop", "old phone"):
        signed_in(make_app, store, "ann", agent, expire_after=DAY)
    clock.advance(0.9 * DAY)
    fresh = signed_in(make_app, store, "ann", "new laptop", expire_after=DAY)
    clock.advance(0.2 * DAY)
    assert [info.details["agent"] for info in store.sessions_of("ann")] == ["new laptop"]
    assert store.end_sessions("ann", keep=None) == 1  # the live one only; the expired ones are cleanup's
    assert fresh.get("/").json == {"owner": None, "data": {}}
    assert len([row for row in rows(store) if row["owner"] == "ann"]) == 2
    assert store.cleanup() == 2
    assert rows(store) == []


def test_listing_is_one_select_on_the_owner_index_and_ending_all_one_delete(
    backend: str, new_store: StoreFactory, make_app: Callable[..., TestApp]
) -> None:
    store = new_store(backend)
    keeper = signed_in(make_app, store, "ann", "laptop")
    for agent in ("phone", "tablet"):
        signed_in(make_app, store, "ann", agent)
    with statements_run(store.engine) as run:
        assert len(store.sessions_of("ann")) == 3
    assert verbs(run) == ["SELECT"]
    assert "WHERE" in run[0] and ".owner = " in run[0].replace('"', "")
    with statements_run(store.engine) as run:
        assert keeper.get("/end-others").json == 2
    assert verbs(run) == ["SELECT", "DELETE"]  # the request's load, then one DELETE
    assert [info.details["agent"] for info in store.sessions_of("ann")] == ["laptop"]
    if backend != "sqlite-memory":
        assert f"ix_{store.table.name}_owner" in _plan_of_listing(store)


def _plan_of_listing(store: SQLAlchemyStore) -> str:
    """How the database runs the listing (on MariaDB: the index it uses)."""
    listing = store._owner_statements.sessions.params(owner="ann", now=0.0)  # type: ignore[union-attr]
    compiled = str(listing.compile(store.engine, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN " if store.engine.dialect.name == "sqlite" else "EXPLAIN "
    with store.engine.connect() as connection:
        if store.engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: a scan would be cheaper
        plan = connection.exec_driver_sql(explain + compiled).mappings().all()
    if store.engine.dialect.name == "mysql":
        return " ".join(str(row["key"]) for row in plan)
    return " ".join(str(value) for row in plan for value in row.values())
