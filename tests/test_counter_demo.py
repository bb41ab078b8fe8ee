"""The demo in examples/counter.py: in process, and as the README's command serves it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator, List

import pytest

from examples.counter import PAGES, create_app, make_store

from .servers import REPO, Address, Browser, free_port, serving
from .support import browser


@pytest.mark.parametrize("store_name", ["memory", "sqlite"])
def test_counters_and_flash(store_name: str, tmp_path: Path) -> None:
    if store_name == "sqlite":
        pytest.importorskip("sqlalchemy")
    store = make_store(store_name, f"sqlite:///{tmp_path / 'demo.sqlite3'}" if store_name == "sqlite" else None)
    app = browser(create_app(store))
    assert [app.get("/testsession").json for _ in range(3)] == [
        {"xx": 2, "yy": 1},
        {"xx": 5, "yy": 2},
        {"xx": 8, "yy": 3},
    ]
    app.get("/flash", {"message": "saved!"})
    assert app.get("/message").json == {"message": "saved!"}
    assert app.get("/message").json == {"message": None}
    app.get("/logout")
    assert app.get("/testsession").json == {"xx": 2, "yy": 1}


def test_the_index_links_every_page_and_unknown_paths_are_404(tmp_path: Path) -> None:
    app = browser(create_app(make_store("memory")))
    index = app.get("/")
    assert index.content_type == "text/html"
    links = [link["href"] for link in index.html.find_all("a")]
    assert sorted(link.partition("?")[0] for link in links) == sorted(PAGES)
    for link in links:
        assert index.click(href=link.replace("?", r"\?")).status_int == 200
    for unknown in ("/nope", "/testsession/", "/favicon.ico"):
        missing = app.get(unknown, status=404)
        assert missing.html.find("a")["href"] == "/" and "Set-Cookie" not in missing.headers


def test_the_cookie_store_runs_on_the_development_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WSGISESSION_SECRET_KEY", raising=False)
    app = browser(create_app(make_store("cookie")))
    assert [app.get("/testsession").json["yy"] for _ in range(2)] == [1, 2]


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[Address]:
    """``python examples/counter.py`` as README runs it, in a scratch directory."""
    pytest.importorskip("sqlalchemy")
    port = free_port()
    command = [sys.executable, str(REPO / "examples" / "counter.py"), "--port", str(port)]
    with serving(command, port, cwd=tmp_path, startup_timeout=20, stop_timeout=10) as address:
        yield address


def test_the_readme_demo_command_serves_the_counter(demo_server: Address, tmp_path: Path) -> None:
    client = Browser(demo_server, timeout=10)
    seen: List[object] = [client.get_json("/testsession") for _ in range(3)]
    client.close()
    assert seen == [{"xx": 2, "yy": 1}, {"xx": 5, "yy": 2}, {"xx": 8, "yy": 3}]
    assert (tmp_path / "sessions.sqlite3").exists()  # the embedded default keeps sessions on disk
