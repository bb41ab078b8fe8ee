"""Every example in examples/ is imported, driven through real requests, and served as its README says."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from webtest import TestApp

from wsgisession.store import Store
from wsgisession.stores.memory import MemoryStore
from wsgisession.testing import FakeClock, session_of

from .servers import REPO, free_port, serving
from .store_suite import StoreSuite, cookie_of
from .support import browser

PASSWORD = "correct horse battery staple"


# -- Flask ------------------------------------------------------------------------


@pytest.fixture
def flask_client(clock: FakeClock) -> TestApp:
    pytest.importorskip("flask")
    from examples import flask_app

    return browser(flask_app.create_app(store=MemoryStore(clock=clock), clock=clock))


def test_flask_example_wrong_password_flashes_an_error_once(flask_client: TestApp) -> None:
    page = flask_client.post("/login", {"username": "ann", "password": "guess"}).follow()
    assert "Wrong user name or password." in page.text and 'class="error"' in page.text
    assert "Wrong user name" not in flask_client.get("/").text
    page = flask_client.post("/login", {"username": "nobody", "password": PASSWORD}).follow()
    assert "Wrong user name or password." in page.text


def test_flask_example_login_regenerates_and_logout_ends_the_session(flask_client: TestApp) -> None:
    flask_client.post("/login", {"username": "ann", "password": "guess"})
    anonymous = cookie_of(flask_client)
    page = flask_client.post("/login", {"username": "ann", "password": PASSWORD}).follow()
    assert "Welcome, ann." in page.text and "visit 1 since" in page.text
    signed_in = cookie_of(flask_client)
    assert signed_in not in ("", anonymous)
    assert "visit 2 since" in flask_client.get("/").text
    assert session_of(flask_client) == {"user": "ann", "visits": 2}

    page = flask_client.post("/logout").follow()
    assert "Signed out." in page.text and "Sign in" in page.text
    for stale in (anonymous, signed_in):
        replay = browser(flask_client.app)
        replay.set_cookie("session", stale)
        assert "Signed in as" not in replay.get("/").text


def test_flask_example_module_app() -> None:
    pytest.importorskip("flask")
    from examples import flask_app

    client = browser(flask_app.app)
    assert "Sign in" in client.get("/").text
    assert "Welcome, ann." in client.post("/login", {"username": "ann", "password": PASSWORD}).follow().text


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


# -- running the examples -------------------------------------------------------------


@pytest.mark.parametrize("name", ["flask_app", "bottle_app", "pyramid_app", "custom_store"])
def test_python_examples_name_serves_on_loopback(name: str, tmp_path: Path) -> None:
    if name != "custom_store":
        pytest.importorskip(name.split("_")[0])
    port = free_port()
    environment = {"PORT": str(port), "DBM_STORE_PATH": str(tmp_path / "sessions"), "WSGISESSION_STORE": "memory"}
    command = [sys.executable, str(REPO / "examples" / f"{name}.py")]
    server = serving(command, port, cwd=tmp_path, env=environment, stop_timeout=10)
    with server, urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        assert response.status == 200


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
