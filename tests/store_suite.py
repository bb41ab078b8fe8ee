"""The behaviour every store must show, through real requests.

A test module for a store subclasses :class:`StoreSuite` and provides a
``store`` fixture (it may use the ``clock`` fixture for stores that read the
time).  Server-side stores also get the concurrency guarantees in
:class:`ServerSideSuite`.
"""

from __future__ import annotations

import datetime
import decimal
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List

import pytest
from webtest import TestApp, TestResponse

from wsgisession import SessionMiddleware
from wsgisession.store import Store

from .support import browser, counter_app

DAY = 24 * 60 * 60


def cookie_of(app: TestApp, name: str = "session") -> str:
    return app.cookies.get(name, "")


def clone(app: TestApp, cookie: str, name: str = "session") -> TestApp:
    """A second browser holding the same session cookie (for concurrent requests)."""
    other = browser(app.app)
    other.set_cookie(name, cookie)
    return other


def interrupted(
    slow: TestApp,
    loaded: threading.Event,
    other: TestApp,
    other_done: threading.Event,
    slow_path: str = "/",
    other_path: str = "/",
) -> TestResponse:
    """``slow``'s response to ``slow_path`` when ``other``'s request to ``other_path`` runs between its load and its save.

    The slow handler sets ``loaded`` once it has read the session, then waits for ``other_done``.
    """
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(slow.get, slow_path)
        assert loaded.wait(10)
        other.get(other_path)
        other_done.set()
        return pending.result()


class StoreSuite:
    """Session behaviour that holds for every store."""

    def test_counter_counts_like_the_original_package(self, make_app: Callable[..., TestApp], store: Store) -> None:
        app = make_app(counter_app, store)
        seen = [app.get("/testsession").json for _ in range(3)]
        assert seen == [{"xx": 2, "yy": 1}, {"xx": 5, "yy": 2}, {"xx": 8, "yy": 3}]

    def test_untouched_request_sets_no_cookie(self, make_app: Callable[..., TestApp], store: Store) -> None:
        app = make_app(counter_app, store)
        app.get("/")
        untouched = make_app(lambda session, environ: "nothing", store)
        untouched.set_cookie("session", cookie_of(app))
        response = untouched.get("/")
        assert "Set-Cookie" not in response.headers
        assert "Vary" not in response.headers

    def test_reading_only_sets_no_cookie_but_varies(self, make_app: Callable[..., TestApp], store: Store) -> None:
        app = make_app(counter_app, store)
        app.get("/")
        reader = make_app(lambda session, environ: session.get("yy"), store)
        reader.set_cookie("session", cookie_of(app))
        response = reader.get("/")
        assert response.json == 1
        assert "Set-Cookie" not in response.headers
        assert response.headers["Vary"] == "Cookie"

    def test_every_supported_type_round_trips(self, make_app: Callable[..., TestApp], store: Store) -> None:
        values: Dict[str, Any] = {
            "str": "grüße ✓",
            "int": 2**62,
            "float": 1.5,
            "bool": True,
            "none": None,
            "list": [1, [2, "three"]],
            "dict": {"a": {"b": [1]}, "$t": "not a tag"},
            "datetime": datetime.datetime(2026, 11, 26, 12, 30, 1, 5, tzinfo=datetime.timezone.utc),
            "naive": datetime.datetime(2026, 1, 2, 3, 4, 5),
            "date": datetime.date(2026, 11, 26),
            "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "bytes": b"\x00\xffbin",
            "tuple": (1, ("nested", 2.5)),
            "decimal": decimal.Decimal("12.3400"),
        }
        captured: List[Any] = []

        def handler(session: Any, environ: dict) -> Any:
            if environ["PATH_INFO"] == "/set":
                session.update(values)
            else:
                captured.append({key: session[key] for key in values})
            return "ok"

        app = make_app(handler, store)
        app.get("/set")
        app.get("/get")
        assert captured[0] == values
        assert {key: type(value) for key, value in captured[0].items()} == {
            key: type(value) for key, value in values.items()
        }

    def test_flash_is_read_once_in_a_later_request(self, make_app: Callable[..., TestApp], store: Store) -> None:
        def handler(session: Any, environ: dict) -> Any:
            if environ["PATH_INFO"] == "/flash":
                session["user"] = "ann"
                session.flash("notice", "saved")
                return None
            return [session.get("notice"), session.get("user")]

        app = make_app(handler, store)
        app.get("/flash")
        assert app.get("/read").json == ["saved", "ann"]
        assert app.get("/read").json == [None, "ann"]

    def test_flash_read_in_the_same_request_is_gone(self, make_app: Callable[..., TestApp], store: Store) -> None:
        def handler(session: Any, environ: dict) -> Any:
            if environ["PATH_INFO"] == "/flash":
                session["keep"] = 1
                session.flash("notice", "now")
                return session.get("notice")
            return session.get("notice")

        app = make_app(handler, store)
        assert app.get("/flash").json == "now"
        assert app.get("/read").json is None

    def test_nested_mutation_is_saved(self, make_app: Callable[..., TestApp], store: Store) -> None:
        def handler(session: Any, environ: dict) -> Any:
            session.setdefault("cart", []).append(len(session.get("cart", [])))
            return session["cart"]

        app = make_app(handler, store)
        app.get("/")
        app.get("/")
        assert app.get("/").json == [0, 1, 2]

    def test_garbage_cookie_gives_a_fresh_session_with_a_new_id(
        self, make_app: Callable[..., TestApp], store: Store
    ) -> None:
        app = make_app(lambda session, environ: session.setdefault("n", 1), store)
        for garbage in ["x", "A" * 43, "not a session", "A" * 5000, "%00%ff", '"quoted"']:
            app.set_cookie("session", garbage)
            response = app.get("/")
            assert response.status_int == 200
            assert response.json == 1
            assert cookie_of(app) not in (garbage, "")

    def test_delete_expires_the_cookie_and_the_session(self, make_app: Callable[..., TestApp], store: Store) -> None:
        def handler(session: Any, environ: dict) -> Any:
            if environ["PATH_INFO"] == "/logout":
                session.delete()
                return None
            session["user"] = session.get("user") or "ann"
            return session["user"]

        app = make_app(handler, store)
        app.get("/login")
        old_cookie = cookie_of(app)
        response = app.get("/logout")
        set_cookie = response.headers["Set-Cookie"]
        assert set_cookie.startswith("session=;") and "Max-Age=0" in set_cookie and "Path=/" in set_cookie
        assert cookie_of(app) == ""
        if not store.client_side:
            # The old cookie, replayed, no longer opens the session.
            reader = make_app(lambda session, environ: session.get("user"), store)
            reader.set_cookie("session", old_cookie)
            assert reader.get("/").json is None

    def test_regenerate_keeps_data_under_a_new_id(self, make_app: Callable[..., TestApp], store: Store) -> None:
        def handler(session: Any, environ: dict) -> Any:
            if environ["PATH_INFO"] == "/login":
                session.regenerate()
                session["user"] = "ann"
            return [session.get("cart"), session.get("user")]

        app = make_app(lambda session, environ: session.setdefault("cart", ["apple"]), store)
        app.get("/")
        before = cookie_of(app)
        login = make_app(handler, store)
        login.set_cookie("session", before)
        assert login.get("/login").json == [["apple"], "ann"]
        after = cookie_of(login)
        assert after and after != before
        assert login.get("/").json == [["apple"], "ann"]
        if not store.client_side:
            stale = make_app(lambda session, environ: [session.get("cart"), session.new], store)
            stale.set_cookie("session", before)
            assert stale.get("/").json == [None, True]

    def test_sliding_expiry(self, make_app: Callable[..., TestApp], store: Store, clock: Any) -> None:
        app = make_app(counter_app, store, expire_after=DAY)
        app.get("/")
        for _ in range(5):
            clock.advance(0.8 * DAY)  # used within every idle window: stays alive
            app.get("/")
        assert app.get("/").json == {"xx": 20, "yy": 7}
        clock.advance(DAY + 1)
        assert app.get("/").json == {"xx": 2, "yy": 1}

    def test_reads_refresh_expiry_at_most_once_per_interval(
        self, make_app: Callable[..., TestApp], store: Store, clock: Any
    ) -> None:
        writer = make_app(counter_app, store, expire_after=DAY)
        writer.get("/")
        reader = make_app(lambda session, environ: session.get("yy"), store, expire_after=DAY)
        reader.set_cookie("session", cookie_of(writer))
        clock.advance(0.05 * DAY)
        assert "Set-Cookie" not in reader.get("/").headers  # inside the refresh interval
        for _ in range(4):
            clock.advance(0.5 * DAY)
            response = reader.get("/")
            assert response.json == 1
            assert "Max-Age=86400" in response.headers["Set-Cookie"]

    def test_max_lifetime_is_not_extended_by_use(
        self, make_app: Callable[..., TestApp], store: Store, clock: Any
    ) -> None:
        app = make_app(counter_app, store, expire_after=DAY, max_lifetime=2 * DAY)
        app.get("/")
        clock.advance(0.9 * DAY)
        assert app.get("/").json["yy"] == 2
        clock.advance(0.9 * DAY)
        response = app.get("/")
        assert response.json["yy"] == 3
        assert "Max-Age=17280" in response.headers.get("Set-Cookie", "Max-Age=17280")
        clock.advance(0.3 * DAY)
        assert app.get("/").json["yy"] == 1

    def test_no_expiry_gives_a_browser_session_cookie(self, make_app: Callable[..., TestApp], store: Store) -> None:
        app = make_app(counter_app, store, expire_after=None)
        set_cookie = app.get("/").headers["Set-Cookie"]
        assert "Max-Age" not in set_cookie and "Expires" not in set_cookie

    def test_server_error_persists_nothing(self, make_app: Callable[..., TestApp], store: Store) -> None:
        def handler(environ: dict, start_response: Callable[..., Any]) -> List[bytes]:
            from wsgisession import get_session

            session = get_session(environ)
            session["n"] = session.get("n", 0) + 1
            status = "500 Internal Server Error" if environ["PATH_INFO"] == "/fail" else "200 OK"
            start_response(status, [("Content-Type", "text/plain")])
            return [str(session["n"]).encode()]

        app = browser(SessionMiddleware(handler, store))
        app.get("/")
        response = app.get("/fail", status=500)
        assert "Set-Cookie" not in response.headers
        assert app.get("/").text == "2"

    # -- the edges of a request (the lifecycle) ------------------------------------

    @pytest.mark.parametrize("failure", ["raise", "5xx", "raise after start_response"])
    def test_a_flash_value_read_by_a_failing_request_is_still_there(self, store: Store, failure: str) -> None:
        def app(environ: dict, start_response: Callable[..., Any]) -> List[bytes]:
            from wsgisession import get_session

            session = get_session(environ)
            if environ["PATH_INFO"] == "/flash":
                session["user"] = "ann"
                session.flash("notice", "saved")
                start_response("200 OK", [])
                return [b"flashed"]
            notice = str(session.get("notice"))
            if environ["PATH_INFO"] == "/fail":
                if failure == "5xx":
                    start_response("500 Internal Server Error", [])
                    return [notice.encode()]
                if failure == "raise after start_response":
                    start_response("200 OK", [])
                raise RuntimeError("the handler failed after showing the message")
            start_response("200 OK", [])
            return [notice.encode()]

        app_client = browser(SessionMiddleware(app, store))
        app_client.get("/flash")
        if failure == "5xx":
            assert app_client.get("/fail", status=500).text == "saved"
        else:
            with pytest.raises(RuntimeError):
                app_client.get("/fail")
        assert app_client.get("/read").text == "saved"
        assert app_client.get("/read").text == "None"

    def test_raising_after_start_response_persists_nothing(
        self, make_app: Callable[..., TestApp], store: Store
    ) -> None:
        def app(environ: dict, start_response: Callable[..., Any]) -> List[bytes]:
            from wsgisession import get_session

            session = get_session(environ)
            session["n"] = session.get("n", 0) + 1
            start_response("200 OK", [("Content-Type", "text/plain")])
            if environ["PATH_INFO"] == "/boom":
                raise RuntimeError("failed after start_response")
            return [str(session["n"]).encode()]

        client = browser(SessionMiddleware(app, store))
        assert client.get("/").text == "1"
        with pytest.raises(RuntimeError):
            client.get("/boom")
        assert client.get("/").text == "2"

    @pytest.mark.parametrize("emptying", ["pop the last key", "clear()"])
    def test_a_session_left_empty_has_its_record_removed_and_its_cookie_expired(
        self, make_app: Callable[..., TestApp], store: Store, emptying: str
    ) -> None:
        def handler(session: Any, environ: dict) -> Any:
            if environ["PATH_INFO"] == "/login":
                session["user"] = "ann"
            elif environ["PATH_INFO"] == "/logout":
                if emptying == "clear()":
                    session.clear()
                else:
                    session.pop("user")
            return dict(session.items())

        app = make_app(handler, store)
        app.get("/login")
        cookie = cookie_of(app)
        response = app.get("/logout")
        set_cookie = response.headers["Set-Cookie"]
        assert set_cookie.startswith("session=;") and "Max-Age=0" in set_cookie and "Path=/" in set_cookie
        assert cookie_of(app) == ""
        if not store.client_side:
            assert store.get_session(cookie, {}) is None
        assert app.get("/").json == {}
        assert "Set-Cookie" not in app.get("/").headers

    def test_clear_then_set_keeps_the_id_and_the_new_values(
        self, make_app: Callable[..., TestApp], store: Store
    ) -> None:
        def handler(session: Any, environ: dict) -> Any:
            if environ["PATH_INFO"] == "/login":
                session.update(user="ann", cart=["tea"])
            elif environ["PATH_INFO"] == "/logout":
                session.clear()
                session.flash("notice", "signed out")
            return dict(session.items())

        app = make_app(handler, store)
        app.get("/login")
        assert app.get("/logout").json == {"notice": "signed out"}
        assert app.get("/").json == {"notice": "signed out"}

    def test_a_browser_session_cookie_has_no_max_age_and_still_expires_on_the_server(
        self, make_app: Callable[..., TestApp], store: Store, clock: Any
    ) -> None:
        def handler(session: Any, environ: dict) -> Any:
            if environ["PATH_INFO"] == "/remember":
                session.persistent = True
            elif environ["PATH_INFO"] == "/forget":
                session.persistent = False
            else:
                session["n"] = session.get("n", 0) + 1
            return [session.get("n"), session.persistent]

        app = make_app(handler, store, expire_after=DAY, persistent=False)
        set_cookie = app.get("/").headers["Set-Cookie"]
        assert "Max-Age" not in set_cookie and "Expires" not in set_cookie
        clock.advance(0.5 * DAY)  # a refresh is due: written, but no cookie needed
        reader = make_app(lambda session, environ: [session.get("n"), session.persistent], store, expire_after=DAY)
        reader.set_cookie("session", cookie_of(app))
        response = reader.get("/")
        assert response.json == [1, False]  # the flag is the session's, whatever the reader's default
        assert "Max-Age" not in response.headers.get("Set-Cookie", "")
        assert "Max-Age=86400" in app.get("/remember").headers["Set-Cookie"]
        assert app.get("/").json == [2, True]
        assert "Max-Age" not in app.get("/forget").headers["Set-Cookie"]
        clock.advance(DAY + 1)
        assert app.get("/").json == [1, False]  # expired on the server although the cookie was kept

    def test_a_neighbouring_cookie_never_hides_the_session(
        self, make_app: Callable[..., TestApp], store: Store
    ) -> None:
        app = make_app(counter_app, store)
        app.get("/")
        neighbours = [
            "app_session_pref=caf\xe9",  # not UTF-8, in a cookie whose name contains ours
            "session_hint=%%%",
            "xsession=" + "A" * 43,
            "session2=garbage; other=\xff\xfe",
        ]
        expected = 1
        for neighbour in neighbours:
            for neighbour_first in (False, True):
                ours = f"session={cookie_of(app)}"
                header = f"{neighbour}; {ours}" if neighbour_first else f"{ours}; {neighbour}"
                response = app.get("/", headers={"Cookie": header})
                expected += 1
                assert response.json["yy"] == expected, header
                assert "Max-Age=0" not in response.headers.get("Set-Cookie", "")

    def test_modified_stays_true_after_the_response(self, make_app: Callable[..., TestApp], store: Store) -> None:
        sessions: List[Any] = []

        def handler(session: Any, environ: dict) -> Any:
            sessions.append(session)
            if environ["PATH_INFO"] == "/write":
                session["cart"] = []
            elif environ["PATH_INFO"] == "/nested":
                session["cart"].append("tea")
            else:
                session.get("cart")
            return "ok"

        app = make_app(handler, store)
        for path in ("/write", "/read", "/nested", "/read"):
            app.get(path)
        assert [session.modified for session in sessions] == [True, False, True, False]
        reader = make_app(lambda session, environ: session["cart"], store)
        assert reader.get("/", headers={"Cookie": f"session={cookie_of(app)}"}).json == ["tea"]


class ServerSideSuite(StoreSuite):
    """The concurrency guarantees of server-side stores (README, "Concurrency guarantees")."""

    #: How many rounds the race tests repeat; each round is one burst of requests.
    rounds = 5
    threads = 16

    def _session(self, make_app: Callable[..., TestApp], store: Store, **options: Any) -> str:
        app = make_app(lambda session, environ: session.setdefault("owner", "ann"), store, **options)
        app.get("/")
        return cookie_of(app)

    def test_concurrent_requests_keep_each_others_keys(self, make_app: Callable[..., TestApp], store: Store) -> None:
        def handler(session: Any, environ: dict) -> Any:
            key = environ["PATH_INFO"].strip("/")
            session[key] = key
            return key

        for round_number in range(self.rounds):
            cookie = self._session(make_app, store)
            app = make_app(handler, store)
            keys = [f"r{round_number}k{index}" for index in range(self.threads)]
            with ThreadPoolExecutor(self.threads) as pool:
                list(pool.map(lambda key: clone(app, cookie).get("/" + key), keys))
            reader = clone(make_app(lambda session, environ: dict(session.items()), store), cookie)
            assert set(keys) <= set(reader.get("/").json), f"lost keys in round {round_number}"

    def test_logout_race_keeps_the_session_deleted(self, make_app: Callable[..., TestApp], store: Store) -> None:
        loaded = threading.Event()
        logged_out = threading.Event()

        def slow(session: Any, environ: dict) -> Any:
            session.get("owner")  # loads the session
            loaded.set()
            assert logged_out.wait(10)
            session["late"] = "write"
            return "slow"

        cookie = self._session(make_app, store)
        slow_app = clone(make_app(slow, store), cookie)
        logout = clone(make_app(lambda session, environ: session.delete(), store), cookie)
        assert interrupted(slow_app, loaded, logout, logged_out).json == "slow"
        reader = clone(make_app(lambda session, environ: [session.new, dict(session.items())], store), cookie)
        assert reader.get("/").json == [True, {}]

    def test_flash_is_consumed_once_by_concurrent_readers(self, make_app: Callable[..., TestApp], store: Store) -> None:
        for _ in range(self.rounds):
            setter = make_app(lambda session, environ: session.flash("notice", "once"), store)
            setter.get("/")
            cookie = cookie_of(setter)
            reader = make_app(lambda session, environ: session.get("notice"), store)
            with ThreadPoolExecutor(8) as pool:
                seen = list(pool.map(lambda _: clone(reader, cookie).get("/").json, range(8)))
            assert seen.count("once") == 1, seen

    def test_lock_serializes_read_modify_write(self, make_app: Callable[..., TestApp], store: Store) -> None:
        def increment(session: Any, environ: dict) -> Any:
            session["count"] = session.get("count", 0) + 1
            return session["count"]

        cookie = self._session(make_app, store, lock=True)
        app = make_app(increment, store, lock=True, lock_timeout=30)
        requests = self.threads * 2
        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(lambda _: clone(app, cookie).get("/"), range(requests)))
        assert clone(app, cookie).get("/").json == requests + 1

    def test_a_failed_request_releases_its_lock(self, make_app: Callable[..., TestApp], store: Store) -> None:
        def handler(session: Any, environ: dict) -> Any:
            session["count"] = session.get("count", 0) + 1
            if environ["PATH_INFO"] == "/boom":
                raise RuntimeError("the handler failed while holding the lock")
            return session["count"]

        cookie = self._session(make_app, store, lock=True)
        app = clone(make_app(handler, store, lock=True, lock_timeout=2), cookie)
        with pytest.raises(RuntimeError):
            app.get("/boom")
        assert app.get("/").json == 1  # not blocked, and the failed request saved nothing

    def test_lock_times_out_with_a_clear_error(self, make_app: Callable[..., TestApp], store: Store) -> None:
        from wsgisession import SessionLockTimeout

        holding = threading.Event()
        release = threading.Event()

        def slow(session: Any, environ: dict) -> Any:
            session.get("owner")
            holding.set()
            assert release.wait(10)
            return "done"

        cookie = self._session(make_app, store, lock=True)
        slow_app = clone(make_app(slow, store, lock=True, lock_timeout=10), cookie)
        waiting = clone(
            make_app(lambda session, environ: session.get("owner"), store, lock=True, lock_timeout=0.2), cookie
        )
        with ThreadPoolExecutor(1) as pool:
            slow_result = pool.submit(slow_app.get, "/")
            assert holding.wait(10)
            try:
                with pytest.raises(SessionLockTimeout, match="not free within 0.2 s"):
                    waiting.get("/")
            finally:
                release.set()
            assert slow_result.result().json == "done"
        assert waiting.get("/").json == "ann"

    # -- the edges of a request under concurrency ------------------------------------

    @pytest.mark.parametrize("late", ["in-place change", "new key"])
    @pytest.mark.parametrize("logout", ["clear()", "clear() and a notice"])
    def test_a_clear_logout_is_never_undone_by_a_slow_request(
        self, make_app: Callable[..., TestApp], store: Store, late: str, logout: str
    ) -> None:
        def sign_out(session: Any, environ: dict) -> Any:
            session.clear()
            if logout == "clear() and a notice":
                session["notice"] = "signed out"
            return "out"

        after_logout = {} if logout == "clear()" else {"notice": "signed out"}
        for _ in range(self.rounds):
            loaded = threading.Event()
            logged_out = threading.Event()

            def slow(session: Any, environ: dict) -> Any:
                user = session["user"]
                loaded.set()
                assert logged_out.wait(10)
                if late == "in-place change":
                    user["hits"] += 1
                else:
                    session["late"] = "write"
                return "slow"

            login = make_app(lambda session, environ: session.setdefault("user", {"name": "ann", "hits": 0}), store)
            login.get("/")
            cookie = cookie_of(login)
            slow_app = clone(make_app(slow, store), cookie)
            assert interrupted(slow_app, loaded, clone(make_app(sign_out, store), cookie), logged_out).json == "slow"
            reader = clone(make_app(lambda session, environ: dict(session.items()), store), cookie)
            assert reader.get("/").json == after_logout

    @pytest.mark.parametrize("logout", ["delete()", "clear()"])
    def test_a_logout_is_never_undone_by_a_slow_request_that_regenerates(
        self, make_app: Callable[..., TestApp], store: Store, logout: str
    ) -> None:
        def sign_out(session: Any, environ: dict) -> Any:
            session.delete() if logout == "delete()" else session.clear()
            return "out"

        for _ in range(self.rounds):
            loaded = threading.Event()
            logged_out = threading.Event()

            def slow(session: Any, environ: dict) -> Any:
                session["user"]
                loaded.set()
                assert logged_out.wait(10)
                session.regenerate()  # a privilege change, say, computed before the logout
                session["step"] = "two"
                return "slow"

            login = make_app(lambda session, environ: session.setdefault("user", "ann"), store)
            login.get("/")
            cookie = cookie_of(login)
            slow_app = clone(make_app(slow, store), cookie)
            assert interrupted(slow_app, loaded, clone(make_app(sign_out, store), cookie), logged_out).json == "slow"
            for kept in {cookie, cookie_of(slow_app)}:  # the old cookie, and any the slow response set
                reader = clone(make_app(lambda session, environ: dict(session.items()), store), kept)
                assert reader.get("/").json == {}

    def test_a_flash_value_is_shown_by_exactly_one_successful_response(self, store: Store) -> None:
        def app(environ: dict, start_response: Callable[..., Any]) -> List[bytes]:
            from wsgisession import get_session

            session = get_session(environ)
            if environ["PATH_INFO"] == "/set":
                session.update(user="ann")
                session.flash("notice", "once")
                start_response("200 OK", [])
                return [b""]
            notice = str(session.get("notice"))
            failing = environ["PATH_INFO"] != "/read/0"
            start_response("500 Internal Server Error" if failing else "200 OK", [])
            return [notice.encode()]

        client = browser(SessionMiddleware(app, store))
        for _ in range(self.rounds):
            client.get("/set")
            cookie = cookie_of(client)
            # Seven readers fail, and the one that succeeds is sent last: the
            # value is often taken by a failing request first, which must give it back.
            with ThreadPoolExecutor(8) as pool:
                responses = list(
                    pool.map(
                        lambda index: clone(client, cookie).get(f"/read/{index}", expect_errors=True), range(7, -1, -1)
                    )
                )
            shown = [response.text == "once" and response.status_int == 200 for response in responses]
            later = clone(client, cookie).get("/read/0").text
            assert shown.count(True) + (later == "once") == 1, [(r.status_int, r.text) for r in responses]

    @pytest.mark.parametrize("logout", ["delete()", "clear()"])
    def test_a_failed_request_gives_no_flash_value_back_after_a_concurrent_logout(
        self, make_app: Callable[..., TestApp], store: Store, logout: str
    ) -> None:
        loaded = threading.Event()
        logged_out = threading.Event()

        def failing(session: Any, environ: dict) -> Any:
            assert session.get("notice") == "for ann"
            loaded.set()
            assert logged_out.wait(10)
            raise RuntimeError("the request failed after taking the flash value")

        def sign_out(session: Any, environ: dict) -> Any:
            if logout == "delete()":
                session.delete()
            else:
                session.clear()
                session["visitor"] = "anonymous"
            return "out"

        setter = make_app(
            lambda session, environ: [session.set("user", "ann"), session.flash("notice", "for ann")], store
        )
        setter.get("/")
        cookie = cookie_of(setter)
        with pytest.raises(RuntimeError):
            interrupted(
                clone(make_app(failing, store), cookie), loaded, clone(make_app(sign_out, store), cookie), logged_out
            )
        reader = clone(make_app(lambda session, environ: dict(session.items()), store), cookie)
        assert reader.get("/").json == ({} if logout == "delete()" else {"visitor": "anonymous"})

    def test_emptying_a_session_keeps_a_key_another_request_added(
        self, make_app: Callable[..., TestApp], store: Store
    ) -> None:
        loaded = threading.Event()
        added = threading.Event()

        def slow(session: Any, environ: dict) -> Any:
            session.get("owner")
            loaded.set()
            assert added.wait(10)
            session.pop("owner")
            return len(session)

        cookie = self._session(make_app, store)
        slow_app = clone(make_app(slow, store), cookie)
        adder = clone(make_app(lambda session, environ: session.set("cart", ["tea"]), store), cookie)
        response = interrupted(slow_app, loaded, adder, added)
        assert response.json == 0  # this request's view was empty ...
        assert "Set-Cookie" not in response.headers  # ... but the stored session was not
        reader = clone(make_app(lambda session, environ: [session.new, dict(session.items())], store), cookie)
        assert reader.get("/").json == [False, {"cart": ["tea"]}]
