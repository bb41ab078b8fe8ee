"""README.rst stays true: its code runs and CI runs its test command."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from webtest import TestApp

from wsgisession.store import Store

from .store_suite import StoreSuite, clone, cookie_of
from .support import browser

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.rst").read_text(encoding="utf-8")


def code_blocks() -> List[str]:
    """The ``.. code-block:: python`` blocks of the README, dedented."""
    blocks = []
    for match in re.finditer(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", README):
        blocks.append("\n".join(line[4:] for line in match.group(1).splitlines()))
    return blocks


def block_defining(name: str) -> str:
    return next(block for block in code_blocks() if name in block)


def test_quick_start_runs() -> None:
    namespace: Dict[str, Any] = {}
    exec(block_defining("visit number"), namespace)
    client = browser(namespace["app"])
    assert client.get("/").text == "visit number 1"
    assert client.get("/").text == "visit number 2"


class TestReadmeCustomStore(StoreSuite):
    """The README's twenty-line store passes the suite every store passes."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        namespace: Dict[str, Any] = {}
        exec(block_defining("class DirectoryStore"), namespace)
        store: Store = namespace["DirectoryStore"](tmp_path / "sessions")
        return store

    def test_two_tabs_writing_at_once_never_fail(self, make_app: Callable[..., TestApp], store: Store) -> None:
        def handler(session: Any, environ: dict) -> Any:
            session[environ["PATH_INFO"]] = session.get("n", 0)
            session["n"] = session.get("n", 0) + 1
            return "ok"

        opener = make_app(handler, store)
        opener.get("/open")
        tabs = [clone(make_app(handler, store), cookie_of(opener)) for _ in range(2)]

        def browse(tab: TestApp) -> List[str]:
            failures = []
            for number in range(200):
                try:
                    response = tab.get(f"/page{number % 7}", expect_errors=True)
                    if response.status_int != 200:
                        failures.append(response.status)
                except Exception as exc:  # noqa: BLE001 - collected and reported below
                    failures.append(repr(exc))
            return failures

        with ThreadPoolExecutor(2) as pool:
            failures = [failure for found in pool.map(browse, tabs) for failure in found]
        assert failures == []


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"^       (python3 -m venv .*)$", README, re.MULTILINE)
    assert len(commands) == 2, commands
    test_command = commands[1]
    install, run_tests = test_command.rsplit(" && ", 1)
    ci = (REPO / ".ci" / "run").read_text()
    assert run_tests in ci
    assert install.replace("pip install", "pip install -q") in ci
