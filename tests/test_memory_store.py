"""MemoryStore: the store suite, plus its bound on entries and its amortized sweep."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from webtest import TestApp

from wsgisession.store import Store
from wsgisession.stores.memory import MemoryStore
from wsgisession.testing import FakeClock

from .owner_suite import OwnerSuite
from .store_suite import ServerSideSuite, cookie_of
from .support import counter_app


class TestMemoryStore(ServerSideSuite):
    rounds = 20

    @pytest.fixture
    def store(self, clock: FakeClock) -> MemoryStore:
        return MemoryStore(clock=clock)


def test_least_recently_used_is_evicted_past_max_entries(make_app: Callable[..., TestApp]) -> None:
    store = MemoryStore(max_entries=3)
    first = make_app(counter_app, store)
    first.get("/")
    for _ in range(3):
        make_app(counter_app, store).get("/")
    assert len(store) == 3
    assert first.get("/").json == {"xx": 2, "yy": 1}  # evicted: a fresh session


def test_expired_records_are_swept_by_later_writes(make_app: Callable[..., TestApp], clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    for _ in range(5):
        make_app(counter_app, store, expire_after=60).get("/")
    clock.advance(61)
    make_app(counter_app, store, expire_after=60).get("/")
    assert len(store) == 1


def test_cleanup_counts_expired_records(make_app: Callable[..., TestApp], clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    for _ in range(4):
        make_app(counter_app, store, expire_after=60).get("/")
    clock.advance(61)
    assert store.cleanup() == 4
    assert len(store) == 0


def test_stored_data_is_not_shared_with_the_handler(make_app: Callable[..., TestApp]) -> None:
    store = MemoryStore()
    kept: list = []

    def handler(session: Any, environ: dict) -> Any:
        cart = session.setdefault("cart", [])
        kept.append(cart)
        return cart

    app = make_app(handler, store)
    app.get("/")
    kept[0].append("mutated after the request")
    assert app.get("/").json == []
    assert cookie_of(app)


class TestMemoryStoreOwners(OwnerSuite):
    @pytest.fixture
    def store(self, clock: FakeClock) -> MemoryStore:
        return MemoryStore(clock=clock)

    def index_size(self, store: Store, owner: str) -> int:
        return len(store._owned.get(owner, ()))  # type: ignore[attr-defined]


def test_evicted_sessions_leave_the_owner_index(make_app: Callable[..., TestApp]) -> None:
    store = MemoryStore(max_entries=2)
    for _ in range(4):
        app = make_app(lambda session, environ: setattr(session, "owner", "ann"), store)
        app.get("/")
    assert len(store) == 2
    assert len(store._owned["ann"]) == 2
    assert len(store.sessions_of("ann")) == 2
