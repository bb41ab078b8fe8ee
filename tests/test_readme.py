"""README.rst stays true: its code runs and CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

import pytest

from wsgisession.store import Store

from .store_suite import StoreSuite
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


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"^       (python3 -m venv .*)$", README, re.MULTILINE)
    assert len(commands) == 2, commands
    test_command = commands[1]
    install, run_tests = test_command.rsplit(" && ", 1)
    ci = (REPO / ".ci" / "run").read_text()
    assert run_tests in ci
    assert install.replace("pip install", "pip install -q") in ci
