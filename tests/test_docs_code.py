"""The README's and the docs' Python code runs as written, and does what the pages say."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List

import pytest
from webtest import TestApp

from wsgisession import get_session
from wsgisession.store import Store

from .doc_code import PAGE_ENVIRONMENT, REPO, page_namespace, pages, python_blocks, run_page
from .store_suite import StoreSuite, clone, cookie_of
from .support import browser

PAGES_WITH_CODE = [path for path in pages() if python_blocks(path)]


@pytest.fixture
def reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a reader runs a page: an empty working directory, the secrets the pages read set."""
    monkeypatch.chdir(tmp_path)
    for name, value in PAGE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


def test_the_pages_have_code_to_run() -> None:
    names = {str(path.relative_to(REPO)) for path in PAGES_WITH_CODE}
    assert {"README.rst", "docs/getting-started.rst", "docs/writing-a-store.rst", "docs/testing.rst"} <= names


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda path: str(path.relative_to(REPO)))
@pytest.mark.usefixtures("reader")
def test_every_python_block_of_a_page_runs(page: Path) -> None:
    run_page(python_blocks(page), page_namespace())


def page(relative: str) -> Path:
    return REPO / relative


@pytest.mark.usefixtures("reader")
def test_an_oversize_cookie_shows_in_the_development_debugger() -> None:
    def remember_everything(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        get_session(environ)["seen"] = [secrets.token_urlsafe(12) for _ in range(400)]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    namespace = page_namespace()
    namespace["application"] = remember_everything
    namespace = run_page(python_blocks(page("docs/stores/cookie.rst")), namespace)
    response = TestApp(namespace["development_app"]).get("/", expect_errors=True)
    assert response.status_int == 500
    assert "SessionCookieTooLarge" in response.text


@pytest.mark.usefixtures("reader")
def test_the_proxy_fix_example_marks_the_cookie_secure_behind_https() -> None:
    def login(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        get_session(environ)["user"] = "ann"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    namespace = page_namespace()
    namespace["application"] = login
    namespace = run_page(python_blocks(page("docs/deployment.rst")), namespace)
    client = TestApp(namespace["application"])
    behind_proxy = client.get("/", headers={"X-Forwarded-Proto": "https"}).headers["Set-Cookie"]
    plain = client.get("/").headers["Set-Cookie"]
    assert "Secure" in behind_proxy
    assert "Secure" not in plain


class TestDirectoryStoreOfTheDocs(StoreSuite):
    """The twenty-line store of docs/writing-a-store.rst passes the suite every store passes."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        namespace = run_page(python_blocks(page("docs/writing-a-store.rst")), page_namespace())
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


def test_the_readme_quick_start_counts_visits() -> None:
    quick_start = next(block for block in python_blocks(page("README.rst")) if "visit number" in block.source)
    namespace = run_page([quick_start], page_namespace())
    client = browser(namespace["app"])
    assert client.get("/").text == "visit number 1"
    assert client.get("/").text == "visit number 2"


def test_a_fragment_is_not_taken_for_a_program(tmp_path: Path) -> None:
    sample = tmp_path / "sample.rst"
    sample.write_text(
        "Title\n=====\n\nA fragment::\n\n    session.flash('a', 1)\n\n"
        "A program:\n\n.. code-block:: python\n   :caption: x\n\n    x = 1\n\n        # indented\n    y = x + 1\n\nAfter.\n\n"
        "- nested:\n\n  .. code-block:: python\n\n      z = 3\n",
        encoding="utf-8",
    )
    blocks = python_blocks(sample)
    assert [(block.line, block.source) for block in blocks] == [
        (13, "x = 1\n\n    # indented\ny = x + 1"),
        (24, "z = 3"),
    ]
