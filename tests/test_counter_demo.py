"""The demo in examples/counter.py: in process, and as the README's command serves it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from examples.counter import create_app, make_store

from .support import browser

REPO = Path(__file__).resolve().parent.parent


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[int]:
    """``python examples/counter.py`` as README runs it, in a scratch directory."""
    pytest.importorskip("sqlalchemy")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "counter.py"), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    error = process.stderr.read() if process.stderr else b""
                    raise RuntimeError(f"the demo did not start: {error!r}") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _get(port: int, path: str, cookies: Dict[str, str]) -> object:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if cookies:
        request.add_header("Cookie", "; ".join(f"{name}={value}" for name, value in cookies.items()))
    with urllib.request.urlopen(request, timeout=10) as response:
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            cookies[name] = rest.split(";", 1)[0]
        return json.loads(response.read())


def test_the_readme_demo_command_serves_the_counter(demo_server: int, tmp_path: Path) -> None:
    cookies: Dict[str, str] = {}
    seen: List[object] = [_get(demo_server, "/testsession", cookies) for _ in range(3)]
    assert seen == [{"xx": 2, "yy": 1}, {"xx": 5, "yy": 2}, {"xx": 8, "yy": 3}]
    assert (tmp_path / "sessions.sqlite3").exists()  # the embedded default keeps sessions on disk
