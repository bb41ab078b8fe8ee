"""The demo in examples/counter.py: in process, and as the README's command serves it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator, List

import pytest

from examples.counter import create_app, make_store

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
