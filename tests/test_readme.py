"""README.rst stays true: CI runs its test command, and the pages it names exist.

Its Python code runs in tests/test_docs_code.py, with the docs'.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.rst").read_text(encoding="utf-8")


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"^       (python3 -m venv .*)$", README, re.MULTILINE)
    assert len(commands) == 2, commands
    test_command = commands[1]
    install, run_tests = test_command.rsplit(" && ", 1)
    ci = (REPO / ".ci" / "run").read_text()
    assert run_tests in ci
    assert install.replace("pip install", "pip install -q") in ci


def test_the_files_the_readme_names_exist() -> None:
    named = set(re.findall(r"``((?:docs/|benchmarks/|examples/|CONTRIBUTING|CHANGELOG)[\w/.-]*)``", README))
    assert "docs/api.rst" in named
    missing = sorted(name for name in named if "_build" not in name and not (REPO / name).exists())
    assert missing == []
