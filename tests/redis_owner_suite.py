"""The sessions of an owner on RedisStore: the owner suite, plus the index's own guarantees.

A test module subclasses :class:`RedisOwnerSuite` and provides a ``store``
fixture whose prefix no other test uses (one server, Sentinel, Cluster).
What is looked at directly in Redis goes through the store's own client.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, List

import pytest
from webtest import TestApp

import wsgisession.stores.redis.owners as owners
from wsgisession.store import Store, storage_key
from wsgisession.stores.redis import RedisStore
from wsgisession.testing import FakeClock

from .owner_suite import OwnerSuite, signed_in
from .store_suite import cookie_of


def keys_under(store: RedisStore, pattern: str = "*") -> List[str]:
    """The key names under the store's prefix (on every node of a cluster)."""
    found = store.client.scan_iter(match=store.prefix + pattern, count=1000)
    return sorted(key.decode() if isinstance(key, bytes) else key for key in found)


def members(store: RedisStore, owner: str) -> List[str]:
    """The entries of ``owner``'s index: storage keys of sessions."""
    return sorted(
        member.decode() if isinstance(member, bytes) else member
        for member in store.client.zrange(store.owner_key(owner), 0, -1)
    )


def logged_out(make_app: Callable[..., TestApp], store: Store, user: str) -> TestApp:
    """A browser that signed in as ``user`` and then out with ``delete()``: its index entry stays behind."""
    app = signed_in(make_app, store, user, "gone")

    def logout(session: Any, environ: dict) -> Any:
        session.delete()

    browser = make_app(logout, store)
    browser.set_cookie("session", cookie_of(app))
    browser.get("/")
    return app


class RedisOwnerSuite(OwnerSuite):
    """The owner suite on RedisStore, and what its index of owners guarantees."""

    def index_size(self, store: Store, owner: str) -> int:
        assert isinstance(store, RedisStore)
        return int(store.client.zcard(store.owner_key(owner)))

    def test_the_owner_lives_in_the_record_and_no_key_names_the_owner(
        self, make_app: Callable[..., TestApp], store: RedisStore
    ) -> None:
        owner = "ann.lee-42"
        app = signed_in(make_app, store, owner, "laptop")
        cookie = cookie_of(app)
        stored = store.client.hgetall(store.hash_key(cookie))
        fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in stored.items()}
        record = json.loads(fields["m:record"])
        assert (record["owner"], record.get("details")) == (owner, {"agent": "laptop"}), fields
        index = store.prefix + "owner:" + hashlib.sha256(owner.encode()).hexdigest()
        assert store.owner_key(owner) == index
        assert keys_under(store) == sorted([store.hash_key(cookie), index])
        assert members(store, owner) == [storage_key(cookie)]
        for key in keys_under(store):
            assert owner not in key and "ann" not in key and cookie not in key
        assert app.get("/").json == {"owner": owner, "data": {"cart": ["tea"]}}

    def test_a_new_owner_moves_the_session_between_indexes_and_details_stay_put(
        self, make_app: Callable[..., TestApp], store: RedisStore
    ) -> None:
        def handler(session: Any, environ: dict) -> Any:
            path = environ["PATH_INFO"]
            if path == "/ann":
                session.owner = "ann"
            elif path == "/details":
                session.owner_details = {"agent": "renamed"}
            elif path == "/bob":
                session.owner = "bob"
            elif path == "/nobody":
                session.owner = None
            return session.owner

        app = make_app(handler, store)
        app.get("/ann")
        key = storage_key(cookie_of(app))
        app.get("/details")
        assert members(store, "ann") == [key]
        assert [info.details for info in store.sessions_of("ann")] == [{"agent": "renamed"}]
        assert app.get("/bob").json == "bob"
        assert (members(store, "ann"), members(store, "bob")) == ([], [key])
        assert store.sessions_of("ann") == [] and len(store.sessions_of("bob")) == 1
        assert app.get("/nobody").json is None
        assert members(store, "bob") == []
        assert keys_under(store, "owner:*") == []  # an empty sorted set is no key at all

    def test_listing_prunes_entries_of_gone_sessions_once_past_the_grace(
        self, make_app: Callable[..., TestApp], store: RedisStore, clock: FakeClock
    ) -> None:
        kept = signed_in(make_app, store, "ann", "laptop")
        for _ in range(3):
            logged_out(make_app, store, "ann")
        assert len(store.sessions_of("ann")) == 1
        assert self.index_size(store, "ann") == 4  # too recent to prune: a write may be on its way
        clock.advance(owners.INDEX_GRACE + 1)
        assert [info.current for info in store.sessions_of("ann", current=_Id(cookie_of(kept)))] == [True]
        assert members(store, "ann") == [storage_key(cookie_of(kept))]

    def test_an_entry_added_before_its_write_is_kept_until_the_grace_ends(
        self, make_app: Callable[..., TestApp], store: RedisStore, clock: FakeClock
    ) -> None:
        # A Cluster adds a session to its owner's index one command before the
        # write that gives it the owner: a listing in between must keep it.
        app = signed_in(make_app, store, "ann", "laptop")
        on_its_way = storage_key("B" * 43)
        store._owners.add("ann", on_its_way, clock())  # the write has not come yet
        clock.advance(owners.INDEX_GRACE / 2)
        assert len(store.sessions_of("ann")) == 1
        assert on_its_way in members(store, "ann")
        clock.advance(owners.INDEX_GRACE / 2 + 1)
        assert len(store.sessions_of("ann")) == 1  # a live session stays, however old its entry
        assert members(store, "ann") == [storage_key(cookie_of(app))]

    def test_an_addition_past_the_bound_prunes_the_index(
        self, make_app: Callable[..., TestApp], store: RedisStore, clock: FakeClock
    ) -> None:
        for _ in range(owners.INDEX_BOUND - 1):
            logged_out(make_app, store, "ann")
        live = signed_in(make_app, store, "ann", "phone")
        assert self.index_size(store, "ann") == owners.INDEX_BOUND
        clock.advance(owners.INDEX_GRACE + 1)
        newest = signed_in(make_app, store, "ann", "tablet")  # the set's 33rd entry: no listing needed
        assert members(store, "ann") == sorted(storage_key(cookie_of(app)) for app in (live, newest))

    def test_recent_entries_survive_the_pruning_past_the_bound(
        self, make_app: Callable[..., TestApp], store: RedisStore
    ) -> None:
        for _ in range(owners.INDEX_BOUND + 1):
            logged_out(make_app, store, "ann")
        assert self.index_size(store, "ann") == owners.INDEX_BOUND + 1
        assert store.sessions_of("ann") == []

    def test_cleanup_sweeps_the_indexes_of_owners_who_never_come_back(
        self, make_app: Callable[..., TestApp], store: RedisStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(owners, "SWEEP_BATCH", 2)  # several batches out of a few owners
        for index in range(5):
            logged_out(make_app, store, f"gone{index}")
        stays = signed_in(make_app, store, "ann", "laptop")
        logged_out(make_app, store, "ann")
        assert len(keys_under(store, "owner:*")) == 6
        assert store.cleanup() == 0  # Redis deletes expired sessions itself
        assert len(keys_under(store, "owner:*")) == 6  # every entry is too recent yet
        clock.advance(owners.INDEX_GRACE + 1)
        assert store.cleanup() == 0
        assert keys_under(store, "owner:*") == [store.owner_key("ann")]
        assert members(store, "ann") == [storage_key(cookie_of(stays))]

    def test_ended_sessions_leave_the_index(self, make_app: Callable[..., TestApp], store: RedisStore) -> None:
        laptop = signed_in(make_app, store, "ann", "laptop")
        others = [signed_in(make_app, store, "ann", f"phone {index}") for index in range(3)]
        (first, *_) = [info for info in laptop.get("/mine").json if not info["current"]]
        assert laptop.get("/end", {"handle": first["handle"]}).json is True
        assert self.index_size(store, "ann") == 3
        assert laptop.get("/end-others").json == 2
        assert members(store, "ann") == [storage_key(cookie_of(laptop))]
        for other in others:
            assert not store.client.exists(store.hash_key(cookie_of(other)))

    def test_an_owner_can_not_end_a_session_that_moved_to_another(
        self, make_app: Callable[..., TestApp], store: RedisStore, clock: FakeClock
    ) -> None:
        def handler(session: Any, environ: dict) -> Any:
            session.owner = environ["PATH_INFO"].strip("/")
            return session.owner

        app = make_app(handler, store)
        app.get("/ann")
        (info,) = store.sessions_of("ann")
        app.get("/bob")
        key = storage_key(cookie_of(app))
        store._owners.add("ann", key, clock())  # an entry left behind, as after a failed removal
        assert store.end_session("ann", info.handle) is False
        assert store.end_sessions("ann") == 0
        assert app.get("/bob").json == "bob"
        assert len(store.sessions_of("bob")) == 1

    def test_sessions_end_on_servers_that_forgot_the_scripts(
        self, make_app: Callable[..., TestApp], store: RedisStore
    ) -> None:
        laptop = signed_in(make_app, store, "ann", "laptop")
        others = [signed_in(make_app, store, "ann", f"phone {index}") for index in range(4)]
        store.client.script_flush()  # as after a restart or a failover: the pipelined calls meet NOSCRIPT
        assert laptop.get("/end-others").json == 4
        for other in others:
            assert other.get("/").json == {"owner": None, "data": {}}


class _Id:
    """Something with a session id, as ``sessions_of(current=...)`` takes it."""

    def __init__(self, id: str) -> None:
        self.id = id
