"""The sessions of an owner ("your sessions", "sign out everywhere else"), for every store that indexes owners.

A test module subclasses :class:`OwnerSuite` and provides a ``store``
fixture, as for :class:`tests.store_suite.StoreSuite`.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict

import pytest
from webtest import TestApp

from wsgisession.store import MAX_DETAILS_BYTES, Store

from .store_suite import DAY, clone, cookie_of

Handler = Callable[[Any, dict], Any]


def owner_app(make_app: Callable[..., TestApp], store: Store, **options: Any) -> TestApp:
    """An app whose paths sign in, show the owner's sessions, end them and read the session."""

    def handler(session: Any, environ: dict) -> Any:
        path = environ["PATH_INFO"]
        query = dict(part.split("=", 1) for part in environ.get("QUERY_STRING", "").split("&") if "=" in part)
        if path == "/login":
            session.regenerate()
            session.owner = query["user"]
            session.owner_details = {"agent": environ.get("HTTP_USER_AGENT", "")}
            session["cart"] = ["tea"]
        elif path == "/mine":
            return [
                {"handle": info.handle, "current": info.current, "details": dict(info.details)}
                for info in store.sessions_of(session.owner, current=session)
            ]
        elif path == "/end":
            return store.end_session(session.owner, query["handle"])
        elif path == "/end-others":
            return store.end_sessions(session.owner, keep=session)
        elif path == "/clear":
            session.clear()
        return {"owner": session.owner, "data": dict(session.items())}

    return make_app(handler, store, **options)


def signed_in(make_app: Callable[..., TestApp], store: Store, user: str, agent: str, **options: Any) -> TestApp:
    app = owner_app(make_app, store, **options)
    app.get("/login", {"user": user}, headers={"User-Agent": agent})
    return app


class OwnerSuite:
    """What every store that indexes owners shows."""

    def test_an_owner_lists_their_sessions_with_handles_details_and_the_current_one(
        self, make_app: Callable[..., TestApp], store: Store
    ) -> None:
        laptop = signed_in(make_app, store, "ann", "laptop")
        phone = signed_in(make_app, store, "ann", "phone")
        signed_in(make_app, store, "bob", "bob's")
        mine = laptop.get("/mine").json
        assert sorted(info["details"]["agent"] for info in mine) == ["laptop", "phone"]
        assert [info["current"] for info in mine if info["details"]["agent"] == "laptop"] == [True]
        assert [info["current"] for info in mine if info["details"]["agent"] == "phone"] == [False]
        handles = {info["handle"] for info in mine}
        assert len(handles) == 2
        for handle in handles:  # a handle is neither the id nor the key stored
            assert handle not in (cookie_of(laptop), cookie_of(phone))
            assert len(handle) == 32
        assert {info["handle"] for info in phone.get("/mine").json} == handles

    def test_ending_one_session_logs_that_browser_out_and_no_other(
        self, make_app: Callable[..., TestApp], store: Store
    ) -> None:
        laptop = signed_in(make_app, store, "ann", "laptop")
        phone = signed_in(make_app, store, "ann", "phone")
        bob = signed_in(make_app, store, "bob", "bob's")
        (phone_handle,) = [info["handle"] for info in laptop.get("/mine").json if not info["current"]]
        assert bob.get("/end", {"handle": phone_handle}).json is False  # not bob's session
        assert phone.get("/").json["owner"] == "ann"
        assert laptop.get("/end", {"handle": phone_handle}).json is True
        assert phone.get("/").json == {"owner": None, "data": {}}
        assert laptop.get("/").json["owner"] == "ann"
        assert len(laptop.get("/mine").json) == 1
        assert laptop.get("/end", {"handle": phone_handle}).json is False  # already ended

    def test_a_handle_can_not_be_used_as_a_cookie(self, make_app: Callable[..., TestApp], store: Store) -> None:
        laptop = signed_in(make_app, store, "ann", "laptop")
        (info,) = laptop.get("/mine").json
        thief = owner_app(make_app, store)
        thief.set_cookie("session", info["handle"])
        assert thief.get("/").json == {"owner": None, "data": {}}

    def test_sign_out_everywhere_else_survives_requests_in_flight(
        self, make_app: Callable[..., TestApp], store: Store
    ) -> None:
        for round_number in range(3):
            user = f"ann{round_number}"
            keeper = signed_in(make_app, store, user, "laptop")
            others = [signed_in(make_app, store, user, f"tablet {index}") for index in range(3)]
            loaded = threading.Barrier(len(others) + 1)
            ended = threading.Event()

            def slow(session: Any, environ: dict) -> Any:
                session.get("cart")
                loaded.wait(10)
                assert ended.wait(10)
                session["late"] = "write"  # computed before the sessions were ended
                session.owner_details = {"agent": "changed"}
                return "slow"

            slow_app = make_app(slow, store)
            with ThreadPoolExecutor(len(others)) as pool:
                pending = [pool.submit(clone(slow_app, cookie_of(other)).get, "/") for other in others]
                loaded.wait(10)
                assert keeper.get("/end-others").json == 3
                ended.set()
                assert [future.result().json for future in pending] == ["slow"] * 3
            for other in others:
                assert other.get("/").json == {"owner": None, "data": {}}  # none came back
            assert [info["details"]["agent"] for info in keeper.get("/mine").json] == ["laptop"]
            assert keeper.get("/").json == {"owner": user, "data": {"cart": ["tea"]}}

    def test_an_ended_session_is_not_carried_to_a_new_id_by_a_request_in_flight(
        self, make_app: Callable[..., TestApp], store: Store
    ) -> None:
        keeper = signed_in(make_app, store, "ann", "laptop")
        other = signed_in(make_app, store, "ann", "tablet")
        loaded = threading.Event()
        ended = threading.Event()

        def slow(session: Any, environ: dict) -> Any:
            session.get("cart")
            loaded.set()
            assert ended.wait(10)
            session.regenerate()  # computed before the session was ended
            return "slow"

        slow_app = clone(make_app(slow, store), cookie_of(other))
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(slow_app.get, "/")
            assert loaded.wait(10)
            assert keeper.get("/end-others").json == 1
            ended.set()
            assert pending.result().json == "slow"
        assert other.get("/").json == {"owner": None, "data": {}}
        assert clone(owner_app(make_app, store), cookie_of(slow_app)).get("/").json == {"owner": None, "data": {}}
        assert [info["details"]["agent"] for info in keeper.get("/mine").json] == ["laptop"]

    def test_clear_and_delete_remove_the_owner_and_regenerate_keeps_it(
        self, make_app: Callable[..., TestApp], store: Store
    ) -> None:
        laptop = signed_in(make_app, store, "ann", "laptop")
        before = cookie_of(laptop)
        laptop.get("/login", {"user": "ann"}, headers={"User-Agent": "laptop"})  # regenerates
        assert cookie_of(laptop) != before
        assert len(laptop.get("/mine").json) == 1  # the old id left the index with its record
        assert laptop.get("/clear").json == {"owner": None, "data": {}}
        watcher = signed_in(make_app, store, "ann", "phone")
        assert [info["details"]["agent"] for info in watcher.get("/mine").json] == ["phone"]

    def test_a_session_whose_only_content_is_its_owner_is_kept(
        self, make_app: Callable[..., TestApp], store: Store
    ) -> None:
        def handler(session: Any, environ: dict) -> Any:
            if environ["PATH_INFO"] == "/login":
                session.owner = "ann"
            return [session.owner, dict(session.items())]

        app = make_app(handler, store)
        assert "Set-Cookie" in app.get("/login").headers
        assert app.get("/").json == ["ann", {}]
        assert len(store.sessions_of("ann")) == 1

    def test_owner_details_are_bounded_and_need_an_owner(self, make_app: Callable[..., TestApp], store: Store) -> None:
        def handler(session: Any, environ: dict) -> Any:
            with pytest.raises(ValueError, match="need an owner"):
                session.owner_details = {"agent": "x"}
            session.owner = "ann"
            with pytest.raises(ValueError, match=f"more than the {MAX_DETAILS_BYTES} allowed"):
                session.owner_details = {"agent": "x" * MAX_DETAILS_BYTES}
            with pytest.raises(TypeError, match="can not be stored"):
                session.owner_details = {"agent": object()}
            session.owner_details = {"agent": "fits"}
            return session.owner_details

        assert make_app(handler, store).get("/").json == {"agent": "fits"}

    def test_expired_sessions_leave_the_index(self, make_app: Callable[..., TestApp], store: Store, clock: Any) -> None:
        signed_in(make_app, store, "ann", "old laptop", expire_after=DAY)
        clock.advance(0.5 * DAY)
        fresh = signed_in(make_app, store, "ann", "new laptop", expire_after=DAY)
        clock.advance(0.6 * DAY)  # the first is past its idle timeout, the second is not
        assert [info["details"]["agent"] for info in fresh.get("/mine").json] == ["new laptop"]
        assert store.cleanup() >= 0
        assert self.index_size(store, "ann") == 1

    def test_many_owners_concurrently(self, make_app: Callable[..., TestApp], store: Store) -> None:
        def sign_in(index: int) -> Dict[str, Any]:
            app = signed_in(make_app, store, f"user{index % 4}", f"agent {index}")
            return {"owner": f"user{index % 4}", "agent": f"agent {index}", "handles": app.get("/mine").json}

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(sign_in, range(16)))
        for owner in ("user0", "user1", "user2", "user3"):
            listed = sorted(info.details["agent"] for info in store.sessions_of(owner))
            expected = sorted(result["agent"] for result in results if result["owner"] == owner)
            assert listed == expected

    def index_size(self, store: Store, owner: str) -> int:
        """How many entries the store's owner index holds for ``owner`` (expired ones included)."""
        return len(store.sessions_of(owner))
