"""The Flask example's "Your sessions" page, driven by three browsers of one user and one of another."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Iterator

import pytest
from webtest import TestApp

from wsgisession.store import Store
from wsgisession.stores.memory import MemoryStore
from wsgisession.testing import FakeClock

from .store_suite import cookie_of
from .support import REDIS_URL, RUN_ID, require_service

pytest.importorskip("flask_login")
from examples import flask_app  # noqa: E402

#: The stores the page is tested on: every store with an owner index.
OWNER_STORES = ["memory", "redis", "sqlite"]


@pytest.fixture(params=OWNER_STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore(clock=clock)
        return
    if request.param == "redis":
        redis = pytest.importorskip("redis")
        from wsgisession.stores.redis import RedisStore

        url = require_service("Redis", REDIS_URL)
        prefix = f"wsgisession-test-{RUN_ID}-your-sessions:"
        redis_store = RedisStore(url, prefix=prefix, clock=clock)
        yield redis_store
        redis_store.close()
        client = redis.Redis.from_url(url)
        leftovers = list(client.scan_iter(match=prefix + "*", count=1000))
        if leftovers:
            client.delete(*leftovers)
        client.close()
        return
    pytest.importorskip("sqlalchemy")
    from wsgisession.stores.sqlalchemy import SQLAlchemyStore

    sql_store = SQLAlchemyStore(f"sqlite:///{tmp_path / 'sessions.sqlite3'}", clock=clock)
    yield sql_store
    sql_store.close()


@pytest.fixture
def open_browser(store: Store, clock: FakeClock) -> Callable[[str], TestApp]:
    """``open_browser(user_agent)``: a browser of its own (its own cookie jar) on one app."""
    app = flask_app.create_app(store=store, clock=clock)

    def open_one(user_agent: str) -> TestApp:
        return TestApp(app, extra_environ={"HTTP_HOST": "localhost", "HTTP_USER_AGENT": user_agent})

    return open_one


def signed_in(browser: TestApp, user: str) -> TestApp:
    assert f"Welcome, {user}." in browser.post("/login", {"username": user}).follow().text
    return browser


def listed(browser: TestApp) -> Dict[str, str]:
    """The sessions "Your sessions" lists, as {browser: handle or "this session"}."""
    page = browser.get("/sessions")
    rows = page.html.find("table").find_all("tr")[1:]
    sessions = {}
    for row in rows:
        cells = row.find_all("td")
        handle = cells[3].find("input", {"name": "handle"})
        sessions[cells[2].text.strip()] = handle["value"] if handle else cells[3].text.strip()
    return sessions


def is_signed_in(browser: TestApp) -> bool:
    return "Signed in as" in browser.get("/").text


def test_a_user_sees_their_sessions_ends_one_and_signs_out_everywhere_else(
    open_browser: Callable[[str], TestApp], clock: FakeClock
) -> None:
    laptop = signed_in(open_browser("Firefox on the laptop"), "ann")
    clock.advance(60)
    phone = signed_in(open_browser("Safari on the phone"), "ann")
    clock.advance(60)
    library = signed_in(open_browser("Edge in the library"), "ann")
    someone_else = signed_in(open_browser("Chrome at bob's"), "bob")

    sessions = listed(laptop)
    assert list(sessions) == ["Firefox on the laptop", "Safari on the phone", "Edge in the library"]  # oldest first
    assert sessions["Firefox on the laptop"] == "this session"
    assert listed(phone)["Safari on the phone"] == "this session"
    assert "Signed in" in laptop.get("/sessions").text and "+00:00" in laptop.get("/sessions").text

    # A handle names a session on the page; it is not a cookie.
    stranger = open_browser("Firefox on the laptop")
    stranger.set_cookie("session", sessions["Edge in the library"])
    assert not is_signed_in(stranger)

    library_cookie = cookie_of(library)
    page = laptop.post("/sessions/end", {"handle": sessions["Edge in the library"]}).follow()
    assert "That session has ended" in page.text
    assert "Edge in the library" not in page.text
    assert not is_signed_in(library)
    replay = open_browser("Edge in the library")
    replay.set_cookie("session", library_cookie)
    assert not is_signed_in(replay)  # ended as by delete(): its cookie opens nothing
    assert "had ended already" in laptop.post("/sessions/end", {"handle": sessions["Edge in the library"]}).follow()

    # After a password change: every other session of ann ends, this one stays, bob's too.
    page = laptop.post("/sessions/end-others").follow()
    assert "Signed out everywhere else: 1 other session ended." in page.text
    assert listed(laptop) == {"Firefox on the laptop": "this session"}
    assert not is_signed_in(phone)
    assert is_signed_in(laptop) and is_signed_in(someone_else)
    assert list(listed(someone_else)) == ["Chrome at bob's"]


def test_signing_out_removes_the_session_from_the_list(open_browser: Callable[[str], TestApp]) -> None:
    laptop = signed_in(open_browser("Firefox on the laptop"), "ann")
    phone = signed_in(open_browser("Safari on the phone"), "ann")
    phone.post("/logout")
    assert listed(laptop) == {"Firefox on the laptop": "this session"}


def test_a_session_of_another_user_can_not_be_ended(open_browser: Callable[[str], TestApp]) -> None:
    ann = signed_in(open_browser("Firefox"), "ann")
    bob = signed_in(open_browser("Chrome"), "bob")
    bobs_handle = listed(signed_in(open_browser("Chrome, second window"), "bob"))["Chrome"]
    assert list(listed(ann)) == ["Firefox"]
    page = ann.post("/sessions/end", {"handle": bobs_handle}).follow()
    assert "had ended already" in page.text
    assert is_signed_in(bob)
