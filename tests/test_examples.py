"""Every example in examples/ is imported, driven through real requests, and served as its README says."""

from __future__ import annotations

import importlib
import logging
import secrets
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
from webtest import TestApp

from wsgisession.store import Store
from wsgisession.stores.cookie import CookieStore
from wsgisession.stores.memory import MemoryStore
from wsgisession.testing import FakeClock, session_of

from .servers import REPO
from .store_suite import StoreSuite, cookie_of
from .support import browser

SECRET = "a-test-secret-of-at-least-thirty-two-characters"


# -- Flask ------------------------------------------------------------------------


@pytest.fixture
def flask_client(clock: FakeClock) -> TestApp:
    pytest.importorskip("flask_login")
    from examples import flask_app

    return browser(flask_app.create_app(store=MemoryStore(clock=clock), clock=clock))


def test_flask_example_asks_for_a_user_name_once(flask_client: TestApp) -> None:
    page = flask_client.post("/login", {"username": "  "}).follow()
    assert "Name a user to sign in." in page.text and 'class="error"' in page.text
    assert "Name a user" not in flask_client.get("/").text


def test_flask_example_login_regenerates_and_logout_ends_the_session(flask_client: TestApp) -> None:
    flask_client.post("/login", {"username": ""})
    anonymous = cookie_of(flask_client)
    page = flask_client.post("/login", {"username": "ann"}).follow()
    assert "Welcome, ann." in page.text and "visit 1 since" in page.text
    signed_in = cookie_of(flask_client)
    assert signed_in not in ("", anonymous)
    assert "visit 2 since" in flask_client.get("/").text
    assert session_of(flask_client)["visits"] == 2

    page = flask_client.post("/logout").follow()
    assert "Signed out." in page.text and "Sign in" in page.text
    for stale in (anonymous, signed_in):
        replay = browser(flask_client.app)
        replay.set_cookie("session", stale)
        assert "Signed in as" not in replay.get("/").text


def test_flask_example_pages_for_signed_in_users_send_others_to_sign_in(flask_client: TestApp) -> None:
    assert flask_client.get("/sessions").status_int == 302
    flask_client.post("/notes", {"text": "hi"}, status=302)
    assert session_of(flask_client).get("notes") is None


def test_flask_example_notes(flask_client: TestApp) -> None:
    flask_client.post("/login", {"username": "ann"})
    page = flask_client.post("/notes", {"text": "<milk>"}).follow()
    assert "<li>&lt;milk&gt;</li>" in page.text
    assert "Write something first." in flask_client.post("/notes", {"text": " "}).follow().text
    assert "can not lock" not in page.text  # the memory store locks


def test_flask_example_module_app() -> None:
    pytest.importorskip("flask_login")
    from examples import flask_app

    client = browser(flask_app.app)
    assert "Sign in" in client.get("/").text
    assert "Welcome, ann." in client.post("/login", {"username": "ann"}).follow().text


@pytest.fixture
def flask_cookie_client(clock: FakeClock) -> TestApp:
    pytest.importorskip("flask_login")
    from examples import flask_app

    return browser(flask_app.create_app(store=CookieStore(SECRET), clock=clock))


def test_flask_example_on_the_cookie_store_says_what_it_can_not_do(flask_cookie_client: TestApp) -> None:
    page = flask_cookie_client.post("/login", {"username": "ann"}).follow()
    assert "Signed in as ann" in page.text
    assert "changes made at the same time in two tabs can be lost" in page.text
    sessions = flask_cookie_client.get("/sessions").text
    assert "can not be listed or ended" in sessions and "generation number" in sessions
    assert "Sign out everywhere else" not in sessions


def test_flask_example_explains_a_session_too_large_for_its_cookie(flask_cookie_client: TestApp) -> None:
    flask_cookie_client.post("/login", {"username": "ann"})
    flask_cookie_client.post("/notes", {"text": "a small note"})
    page = flask_cookie_client.post("/notes", {"text": secrets.token_urlsafe(4000)}, status=500)
    assert "<h1>The session is too large for a cookie</h1>" in page.text
    assert "over the limit of 4096 bytes" in page.text and "server-side store" in page.text
    assert page.headers["Content-Type"] == "text/html; charset=utf-8" and "Set-Cookie" not in page.headers
    # Nothing was saved: the browser keeps the session it had.
    assert "<li>a small note</li>" in flask_cookie_client.get("/").text


def test_flask_example_keeps_a_large_note_on_a_server_side_store(flask_client: TestApp) -> None:
    flask_client.post("/login", {"username": "ann"})
    note = secrets.token_urlsafe(4000)
    assert f"<li>{note}</li>" in flask_client.post("/notes", {"text": note}).follow().text


def test_the_examples_development_secret_is_fixed_and_announced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from examples import settings

    monkeypatch.delenv("WSGISESSION_SECRET_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="examples"):
        secret = settings.secret_key()
    assert secret == settings.secret_key() == settings.DEVELOPMENT_SECRET_KEY  # every process signs alike
    assert "PUBLIC development secret" in caplog.text and "WSGISESSION_SECRET_KEY" in caplog.text
    caplog.clear()
    monkeypatch.setenv("WSGISESSION_SECRET_KEY", SECRET)
    assert settings.secret_key() == SECRET and caplog.text == ""


# -- Bottle -----------------------------------------------------------------------


@pytest.fixture
def bottle_client(clock: FakeClock) -> TestApp:
    pytest.importorskip("bottle")
    from examples import bottle_app

    return browser(bottle_app.create_app(MemoryStore(clock=clock), clock=clock))


def test_bottle_example_cart(bottle_client: TestApp) -> None:
    assert bottle_client.get("/cart.json").json == {"cart": []}
    page = bottle_client.post("/cart", {"item": "apple"}).follow()
    assert "Added apple." in page.text and "<li>apple</li>" in page.text
    assert "Added apple." not in bottle_client.get("/").text  # the notice is read once
    bottle_client.post("/cart", {"item": "<pear>"})
    assert bottle_client.get("/cart.json").json == {"cart": ["apple", "<pear>"]}
    assert "<li>&lt;pear&gt;</li>" in bottle_client.get("/").text
    assert "Name the item" in bottle_client.post("/cart", {"item": " "}).follow().text
    assert "The cart is empty." in bottle_client.post("/cart/empty").follow().text
    assert bottle_client.get("/cart.json").json == {"cart": []}


def test_bottle_example_module_app() -> None:
    pytest.importorskip("bottle")
    from examples import bottle_app

    client = browser(bottle_app.app)
    client.post("/cart", {"item": "fig"})
    assert client.get("/cart.json").json == {"cart": ["fig"]}


# -- Pyramid ----------------------------------------------------------------------


@pytest.fixture
def pyramid_client() -> TestApp:
    pytest.importorskip("pyramid")
    from examples import pyramid_app

    return browser(pyramid_app.create_app({"wsgisession.store": "memory"}))


def csrf_token(page: Any) -> str:
    return str(page.html.find("input", {"name": "csrf_token"})["value"])


def test_pyramid_example_notes_with_csrf(pyramid_client: TestApp) -> None:
    token = csrf_token(pyramid_client.get("/"))
    pyramid_client.post("/notes", {"text": "forged"}, status=400)
    pyramid_client.post("/notes", {"text": "forged", "csrf_token": "0" * 64}, status=400)
    page = pyramid_client.post("/notes", {"text": "first", "csrf_token": token}).follow()
    assert "<p>Saved.</p>" in page.text and "<li>first</li>" in page.text
    assert csrf_token(page) == token
    page = pyramid_client.post("/notes", {"text": "", "csrf_token": token}).follow()
    assert '<p class="error">Write something first.</p>' in page.text
    page = pyramid_client.get("/")
    assert "Saved." not in page.text and "Write something" not in page.text  # queues popped
    assert session_of(pyramid_client) == {"_csrft_": token, "notes": ["first"]}


def test_pyramid_example_module_app() -> None:
    pytest.importorskip("pyramid")
    from examples import pyramid_app

    client = browser(pyramid_app.app)
    token = csrf_token(client.get("/"))
    assert "<li>hi</li>" in client.post("/notes", {"text": "hi", "csrf_token": token}).follow().text


# -- two tabs at once -----------------------------------------------------------------

#: Items two tabs add at the same time, half each.
PARALLEL_ITEMS = 20


@pytest.fixture(params=["memory", "sqlite"])
def locking_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store the examples lock their sessions on: memory, or a SQLite file."""
    if request.param == "memory":
        yield MemoryStore()
        return
    pytest.importorskip("sqlalchemy")
    from wsgisession.stores.sqlalchemy import SQLAlchemyStore

    store = SQLAlchemyStore(f"sqlite:///{tmp_path / 'sessions.sqlite3'}")
    yield store
    store.close()


def add_from_two_tabs(first: TestApp, add: Callable[[TestApp, str], Any]) -> List[str]:
    """A second tab with ``first``'s cookie; both ``add`` half the items in parallel threads; returns them."""
    second = browser(first.app)
    second.set_cookie("session", cookie_of(first))
    start = threading.Barrier(2)

    def tab(client: TestApp, name: str) -> List[str]:
        items = [f"{name} {index}" for index in range(PARALLEL_ITEMS // 2)]
        start.wait(timeout=10)
        for item in items:
            add(client, item)
        return items

    # Threads switch often, so that the two tabs' requests interleave even on
    # the memory store: without the lock, 10 to 20 of the 20 items are kept.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(tab, first, "first"), pool.submit(tab, second, "second")]
            return [item for future in futures for item in future.result(timeout=60)]
    finally:
        sys.setswitchinterval(switch_interval)


def test_bottle_example_keeps_every_item_two_tabs_add_at_once(locking_store: Store) -> None:
    pytest.importorskip("bottle")
    from examples import bottle_app

    app = bottle_app.create_app(locking_store)
    assert app.lock_timeout is not None  # the example asks for the lock
    client = browser(app)
    client.post("/cart", {"item": "seed"})
    added = add_from_two_tabs(client, lambda tab, item: tab.post("/cart", {"item": item}))
    cart = client.get("/cart.json").json["cart"]
    assert sorted(cart) == sorted(["seed", *added]) and len(cart) == PARALLEL_ITEMS + 1


def test_pyramid_example_keeps_every_note_two_tabs_add_at_once(locking_store: Store) -> None:
    pytest.importorskip("pyramid")
    from examples import pyramid_app

    client = browser(pyramid_app.create_app({"wsgisession.store": locking_store}))
    token = csrf_token(client.get("/"))
    client.post("/notes", {"text": "seed", "csrf_token": token})
    added = add_from_two_tabs(client, lambda tab, text: tab.post("/notes", {"text": text, "csrf_token": token}))
    notes = session_of(client)["notes"]
    assert sorted(notes) == sorted(["seed", *added]) and len(notes) == PARALLEL_ITEMS + 1


def test_flask_example_keeps_every_note_two_tabs_add_at_once(locking_store: Store) -> None:
    pytest.importorskip("flask_login")
    from examples import flask_app

    client = browser(flask_app.create_app(store=locking_store))
    client.post("/login", {"username": "ann"})
    added = add_from_two_tabs(client, lambda tab, text: tab.post("/notes", {"text": text}))
    notes = session_of(client)["notes"]
    assert sorted(notes) == sorted(added) and len(notes) == PARALLEL_ITEMS


@pytest.mark.parametrize("example", ["bottle_app", "pyramid_app"])
def test_on_the_cookie_store_the_examples_say_that_parallel_changes_can_be_lost(
    example: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip(example.split("_")[0])
    monkeypatch.setenv("WSGISESSION_STORE", "cookie")
    monkeypatch.setenv("WSGISESSION_SECRET_KEY", SECRET)
    module = importlib.import_module(f"examples.{example}")
    page = browser(module.create_app()).get("/")
    assert "changes made at the same time in two tabs can be lost" in page.text
    monkeypatch.setenv("WSGISESSION_STORE", "memory")
    assert "can be lost" not in browser(module.create_app()).get("/").text


# -- the custom store ---------------------------------------------------------------


class TestDbmStoreExample(StoreSuite):
    """The example's store shows the behaviour every store must show."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        from examples.custom_store import DbmStore

        store = DbmStore(str(tmp_path / "sessions"))
        yield store
        store.close()


def test_custom_store_example_keeps_sessions_across_restarts(tmp_path: Path) -> None:
    from examples import custom_store

    path = str(tmp_path / "sessions")
    first = custom_store.create_app(path)
    client = browser(first)
    assert [client.get("/").text for _ in range(2)] == ["count 1\n", "count 2\n"]
    first.store.close()
    restarted = browser(custom_store.create_app(path))
    restarted.set_cookie("session", cookie_of(client))
    assert restarted.get("/").text == "count 3\n"
    stored = b"".join(file.read_bytes() for file in tmp_path.iterdir())
    assert cookie_of(client).encode() not in stored  # only digests of ids are at rest


def test_custom_store_example_module_app() -> None:
    from examples import custom_store

    client = browser(custom_store.app)
    assert client.get("/").text == "count 1\n"


def test_the_core_package_imports_no_framework() -> None:
    code = (
        "import sys, wsgisession, wsgisession.testing, wsgisession.contrib, wsgisession.contrib.paste\n"
        "loaded = {name.split('.')[0] for name in sys.modules}\n"
        "print(sorted(loaded & {'flask', 'bottle', 'pyramid', 'webtest', 'webob', 'zope', 'gunicorn'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
