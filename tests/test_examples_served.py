"""Each example served as its docs say, with each store it offers, and used through its main page.

Every server is a real process on 127.0.0.1 (``python examples/<name>.py``,
and gunicorn with ``examples/gunicorn.conf.py`` for the Flask example), with
no secret configured for the cookie store: the examples' development secret
must do, the same in gunicorn's two workers.
"""

from __future__ import annotations

import http.cookiejar
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from .servers import REPO, free_port, gunicorn, serving
from .support import REDIS_URL, require_service

TIMEOUT = 15.0
STORES = ["memory", "cookie", "sqlite", "redis"]


class Client:
    """Cookies kept and redirects followed, like a browser."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=TIMEOUT) as response:
            assert response.status == 200
            return str(response.read().decode())

    def post(self, path: str, **form: str) -> str:
        data = urllib.parse.urlencode(form).encode()
        with self.opener.open(self.base + path, data=data, timeout=TIMEOUT) as response:
            assert response.status == 200
            return str(response.read().decode())


def store_url(store: str, tmp_path: Path) -> str:
    if store == "sqlite":
        pytest.importorskip("sqlalchemy")
        return f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    if store == "redis":
        pytest.importorskip("redis")
        return require_service("Redis", REDIS_URL)
    return store


def environment(url: str) -> Dict[str, str]:
    # No WSGISESSION_SECRET_KEY: the cookie store runs on the development secret.
    return {"WSGISESSION_STORE": url, "WSGISESSION_SECRET_KEY": ""}


def use_flask(client: Client) -> None:
    assert "Sign in" in client.get("/")
    assert "Signed in as ann; this is visit 1" in client.post("/login", username="ann")
    assert "visit 2 since" in client.get("/")


def use_bottle(client: Client) -> None:
    assert "Add" in client.get("/")
    assert "<li>fig</li>" in client.post("/cart", item="fig")


def use_pyramid(client: Client) -> None:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', client.get("/"))
    assert match is not None
    assert "<li>hi</li>" in client.post("/notes", text="hi", csrf_token=match.group(1))


def use_custom_store(client: Client) -> None:
    assert [client.get("/"), client.get("/")] == ["count 1\n", "count 2\n"]


def use_counter(client: Client) -> None:
    assert 'href="/testsession"' in client.get("/")
    assert [client.get("/testsession"), client.get("/testsession")] == ['{"xx": 2, "yy": 1}', '{"xx": 5, "yy": 2}']


EXAMPLES: Dict[str, Callable[[Client], None]] = {
    "flask_app": use_flask,
    "bottle_app": use_bottle,
    "pyramid_app": use_pyramid,
}


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_framework_example_serves_with_each_store(name: str, store: str, tmp_path: Path) -> None:
    pytest.importorskip({"flask_app": "flask_login", "bottle_app": "bottle", "pyramid_app": "pyramid"}[name])
    port = free_port()
    command = [sys.executable, str(REPO / "examples" / f"{name}.py")]
    env = {"PORT": str(port), **environment(store_url(store, tmp_path))}
    with serving(command, port, cwd=tmp_path, env=env, stop_timeout=10) as (host, port):
        EXAMPLES[name](Client(f"http://{host}:{port}"))


def test_custom_store_example_serves(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, str(REPO / "examples" / "custom_store.py")]
    env = {"PORT": str(port), "DBM_STORE_PATH": str(tmp_path / "sessions")}
    with serving(command, port, cwd=tmp_path, env=env, stop_timeout=10) as (host, port):
        use_custom_store(Client(f"http://{host}:{port}"))


@pytest.mark.parametrize("store", ["sqlite", "memory", "cookie", "redis", "sqlalchemy"])
def test_the_demo_serves_with_each_store(store: str, tmp_path: Path) -> None:
    url: Optional[str] = None
    if store == "redis":
        url = store_url("redis", tmp_path)
    elif store in ("sqlite", "sqlalchemy"):
        pytest.importorskip("sqlalchemy")
        url = f"sqlite:///{tmp_path / 'named.sqlite3'}" if store == "sqlalchemy" else None
    port = free_port()
    command = [sys.executable, str(REPO / "examples" / "counter.py"), "--store", store, "--port", str(port)]
    command += ["--url", url] if url else []
    with serving(command, port, cwd=tmp_path, env={"WSGISESSION_SECRET_KEY": ""}, stop_timeout=10) as (host, port):
        use_counter(Client(f"http://{host}:{port}"))


@pytest.mark.parametrize("store", ["sqlite", "cookie", "redis"])
def test_flask_example_under_gunicorn_with_each_shared_store(store: str, tmp_path: Path) -> None:
    pytest.importorskip("flask_login")
    pytest.importorskip("gunicorn")
    env = environment(store_url(store, tmp_path))
    with gunicorn("examples.flask_app:app", "-c", "examples/gunicorn.conf.py", env=env) as (host, port):
        client = Client(f"http://{host}:{port}")
        use_flask(client)
        # Two workers answer in turn: each must read the session the other
        # wrote (for the cookie store: verify what the other signed).
        pages: List[str] = [client.get("/") for _ in range(8)]
        assert [f"visit {visit} since" in page for visit, page in enumerate(pages, start=3)] == [True] * 8
