"""examples/flask_app.py under gunicorn with examples/gunicorn.conf.py: two workers, one SQLite file.

Browser-like clients sign in, use the session and sign out while the two
worker processes serve them in turn, so every step reads a session another
process may have written.  Bounded: four clients, sixteen requests each, a
timeout on every request and on the server's start; the server is always
stopped.
"""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from .servers import gunicorn

pytest.importorskip("flask_login")
pytest.importorskip("gunicorn")
# MemoryStore is per process: two workers need a store they share.
pytest.importorskip("wsgisession.stores.sqlalchemy")

CLIENTS = 4
VISITS = 10
TIMEOUT = 15.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[str, Path]]:
    """gunicorn -c examples/gunicorn.conf.py examples.flask_app:app on a free port; yields (base URL, access log)."""
    tmp_path = tmp_path_factory.mktemp("gunicorn")
    access_log = tmp_path / "access.log"
    options = [
        "-c", "examples/gunicorn.conf.py",  # gunicorn() binds a free port, which wins over the file's 127.0.0.1:8000
        "--access-logfile", str(access_log),
        "--access-logformat", "%(p)s %(m)s %(U)s %(s)s",
    ]  # fmt: skip
    environment = {"WSGISESSION_STORE": f"sqlite:///{tmp_path / 'sessions.sqlite3'}"}
    with gunicorn("examples.flask_app:app", *options, env=environment) as (host, port):
        yield f"http://{host}:{port}", access_log


class Browser:
    """Cookies kept between requests, redirects followed, like a browser."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=TIMEOUT) as response:
            return str(response.read().decode())

    def post(self, path: str, **form: str) -> str:
        data = urllib.parse.urlencode(form).encode()
        with self.opener.open(self.base + path, data=data, timeout=TIMEOUT) as response:
            return str(response.read().decode())

    def session_cookie(self) -> str:
        return next((cookie.value or "" for cookie in self.cookies if cookie.name == "session"), "")


def sign_in_use_and_sign_out(base: str) -> List[str]:
    """One user's visit; returns the problems seen (none is success)."""
    problems = []
    browser = Browser(base)
    if "Sign in" not in browser.get("/"):
        problems.append("no sign-in form")
    if "Name a user to sign in." not in browser.post("/login", username=""):
        problems.append("the error was not flashed")
    anonymous = browser.session_cookie()
    page = browser.post("/login", username="ann")
    if "Welcome, ann." not in page or "visit 1 since" not in page:
        problems.append("sign-in failed")
    if browser.session_cookie() in ("", anonymous):
        problems.append("the session id was not regenerated at sign-in")
    for visit in range(2, VISITS + 2):
        if f"visit {visit} since" not in browser.get("/"):
            problems.append(f"visit {visit} was not counted")
    page = browser.post("/logout")
    if "Signed out." not in page or "Signed in as" in page:
        problems.append("sign-out failed")
    if "Signed in as" in browser.get("/"):
        problems.append("still signed in after signing out")
    return problems


def test_flask_example_with_two_gunicorn_workers(server: Tuple[str, Path]) -> None:
    base, access_log = server
    logged_before = len(access_log.read_text().splitlines()) if access_log.exists() else 0
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(sign_in_use_and_sign_out, [base] * CLIENTS))
    assert results == [[]] * CLIENTS

    # A worker logs a request just after answering it: wait for the last lines.
    expected = CLIENTS * (VISITS + 8)  # every request, the redirects' GETs included
    deadline = time.monotonic() + 10
    while True:
        lines = [line.split() for line in access_log.read_text().splitlines()[logged_before:] if line.strip()]
        if len(lines) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # polling for the log, not a wait for time to pass
    assert len(lines) == expected
    assert len({pid for pid, *_ in lines}) == 2, "both workers served requests"


def test_secure_cookie_behind_a_tls_proxy(server: Tuple[str, Path]) -> None:
    base, _ = server

    def set_cookie(headers: dict) -> str:
        request = urllib.request.Request(base + "/login", data=b"username=ann", headers=headers, method="POST")
        opener = urllib.request.build_opener(NoRedirect())
        with opener.open(request, timeout=TIMEOUT) as response:
            return str(response.headers["Set-Cookie"])

    # gunicorn trusts X-Forwarded-Proto from 127.0.0.1 (forwarded_allow_ips), so
    # wsgi.url_scheme is https and SESSION_COOKIE_SECURE = "auto" marks the cookie Secure.
    assert re.search(r";\s*Secure", set_cookie({"X-Forwarded-Proto": "https"}))
    assert not re.search(r";\s*Secure", set_cookie({}))


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None

    def http_error_302(self, request: object, response: object, *args: object) -> object:
        return response
