"""Adopting another system's sessions (SessionMiddleware(adopter=...)), through real requests."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Dict, List, Optional

import pytest
from webtest import TestApp
from werkzeug.http import parse_cookie

from wsgisession import SessionMiddleware, SessionStoreError, get_session
from wsgisession.adoption import Adoption, LegacyCookie
from wsgisession.stores.memory import MemoryStore
from wsgisession.testing import FakeClock

from .support import browser


class LegacySystem:
    """A stand-in for the session system being replaced: records named by a cookie ``legacy``."""

    def __init__(self, cookie_name: str = "legacy", path: str = "/") -> None:
        self.cookie_name = cookie_name
        self.path = path
        self.records: Dict[str, Dict[str, Any]] = {}
        self.calls = 0
        self.retired: List[str] = []

    def __call__(self, environ: Dict[str, Any]) -> Optional[Adoption]:
        self.calls += 1
        key = parse_cookie(environ).get(self.cookie_name)
        if key is None or key not in self.records:
            return None
        record = self.records[key]

        def retire() -> bool:
            # Atomic in a real store (a DELETE that reports whether it found the row).
            self.retired.append(key)
            return self.records.pop(key, None) is not None

        return Adoption(
            data=record["data"],
            expire=[LegacyCookie(self.cookie_name, self.path)],
            persistent=record.get("permanent"),
            on_commit=retire,
        )


def make_client(legacy: LegacySystem, clock: FakeClock, handler: Optional[Callable[..., Any]] = None) -> TestApp:
    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        session = get_session(environ)
        path = environ["PATH_INFO"]
        status = "200 OK"
        if path == "/logout":
            session.clear()
        elif path == "/fail":
            session.get("user")
            status = "500 Internal Server Error"
        elif path == "/raise":
            session.get("user")
            raise RuntimeError("the handler failed")
        elif handler is not None:
            handler(session)
        body = json.dumps({"data": session.to_dict(), "persistent": session.persistent}).encode()
        start_response(status, [("Content-Type", "application/json")])
        return [body]

    return browser(SessionMiddleware(app, MemoryStore(clock=clock), adopter=legacy, clock=clock))


def set_cookies(response: Any) -> List[str]:
    return list(response.headers.getall("Set-Cookie"))


def test_a_legacy_session_is_adopted_into_a_new_session_and_its_cookie_removed(clock: FakeClock) -> None:
    legacy = LegacySystem()
    legacy.records["old-id"] = {"data": {"user": "ann", "cart": ("tea", 2)}, "permanent": True}
    client = make_client(legacy, clock)
    client.set_cookie("legacy", "old-id")
    response = client.get("/")
    assert response.json == {"data": {"user": "ann", "cart": ["tea", 2]}, "persistent": True}
    cookies = set_cookies(response)
    assert len(cookies) == 2
    assert cookies[0].startswith("session=") and "Max-Age" in cookies[0]
    assert cookies[1].startswith("legacy=;") and "Max-Age=0" in cookies[1] and "Path=/" in cookies[1]
    assert legacy.retired == ["old-id"] and legacy.records == {}
    assert "legacy" not in client.cookies
    calls = legacy.calls
    assert client.get("/").json["data"] == {"user": "ann", "cart": ["tea", 2]}  # from wsgisession now
    assert legacy.calls == calls  # a session that opens is never looked for elsewhere


def test_a_browser_with_both_cookies_uses_ours(clock: FakeClock) -> None:
    legacy = LegacySystem()
    client = make_client(legacy, clock, handler=lambda session: session.setdefault("user", "bob"))
    client.get("/")
    legacy.records["old-id"] = {"data": {"user": "ann"}}
    client.set_cookie("legacy", "old-id")
    assert client.get("/").json["data"] == {"user": "bob"}
    assert legacy.calls == 1  # only for the first, cookieless request
    assert "old-id" in legacy.records


def test_a_failed_request_adopts_nothing(clock: FakeClock) -> None:
    legacy = LegacySystem()
    legacy.records["old-id"] = {"data": {"user": "ann"}}
    client = make_client(legacy, clock)
    client.set_cookie("legacy", "old-id")
    response = client.get("/fail", status=500)
    assert set_cookies(response) == []
    with pytest.raises(RuntimeError):
        client.get("/raise")
    assert legacy.retired == [] and "old-id" in legacy.records
    assert client.get("/").json["data"] == {"user": "ann"}
    assert legacy.records == {}


def test_an_adoption_lost_to_a_concurrent_request_saves_nothing(clock: FakeClock, caplog: Any) -> None:
    legacy = LegacySystem()
    legacy.records["old-id"] = {"data": {"user": "ann"}}
    original = legacy.__call__

    def adopted_elsewhere_meanwhile(environ: Dict[str, Any]) -> Optional[Adoption]:
        adoption = original(environ)
        legacy.records.clear()  # another request retired it before this one saves
        return adoption

    client = make_client(legacy, clock)
    client.app.lifecycle.adopter = adopted_elsewhere_meanwhile
    client.set_cookie("legacy", "old-id")
    with caplog.at_level(logging.INFO, logger="wsgisession"):
        response = client.get("/")
    assert response.json["data"] == {"user": "ann"}  # this response was computed with it
    assert set_cookies(response) == []  # but it carries neither a session nor the old cookie's removal
    assert len(client.app.store) == 0
    assert any("adopted by a concurrent request" in record.getMessage() for record in caplog.records)


def test_a_logout_during_the_adoption_retires_the_old_session_and_saves_none(clock: FakeClock) -> None:
    legacy = LegacySystem()
    legacy.records["old-id"] = {"data": {"user": "ann"}}
    client = make_client(legacy, clock)
    client.set_cookie("legacy", "old-id")
    response = client.get("/logout")
    assert response.json["data"] == {}
    cookies = set_cookies(response)
    assert [cookie.split("=", 1)[0] for cookie in cookies] == ["legacy"] and "Max-Age=0" in cookies[0]
    assert legacy.records == {} and len(client.app.store) == 0


@pytest.mark.parametrize("legacy_path, expected", [("/", ["session"]), ("/old", ["session", "legacy"])])
def test_an_old_cookie_of_the_same_name_is_replaced_or_removed(
    clock: FakeClock, legacy_path: str, expected: List[str]
) -> None:
    legacy = LegacySystem(cookie_name="session", path=legacy_path)
    legacy.records["old-id"] = {"data": {"user": "ann"}}
    client = make_client(legacy, clock)
    response = client.get("/", headers={"Cookie": "session=old-id"})
    assert response.json["data"] == {"user": "ann"}
    cookies = set_cookies(response)
    assert [cookie.split("=", 1)[0] for cookie in cookies] == ["session"] * len(expected)
    assert "Max-Age=0" not in cookies[0]
    if len(cookies) == 2:
        assert "Max-Age=0" in cookies[1] and f"Path={legacy_path}" in cookies[1]


def test_an_old_value_that_can_not_be_stored_is_not_adopted(clock: FakeClock, caplog: Any) -> None:
    legacy = LegacySystem()
    legacy.records["old-id"] = {"data": {"user": "ann", "widget": object()}}
    client = make_client(legacy, clock)
    client.set_cookie("legacy", "old-id")
    with caplog.at_level(logging.WARNING, logger="wsgisession"):
        response = client.get("/")
    assert response.json["data"] == {}
    assert "old-id" in legacy.records and set_cookies(response) == []
    assert any(
        "was not adopted" in record.getMessage() and "widget" in record.getMessage() for record in caplog.records
    )


def test_an_adopter_that_fails_is_a_store_error_naming_it(clock: FakeClock) -> None:
    def broken(environ: Dict[str, Any]) -> Optional[Adoption]:
        raise ConnectionError("the old store is down")

    app = SessionMiddleware(lambda environ, start_response: [get_session(environ).get("x")], adopter=broken)
    with pytest.raises(SessionStoreError, match="could not read the old session: ConnectionError"):
        browser(app).get("/")


@pytest.mark.parametrize("legacy_path, removed", [("/old", True), ("/", False)])
def test_an_old_cookie_of_our_name_beside_ours_is_removed_only_when_it_is_another_cookie(
    clock: FakeClock, legacy_path: str, removed: bool
) -> None:
    legacy = LegacySystem(cookie_name="session", path=legacy_path)
    legacy.legacy_cookies = [LegacyCookie("session", legacy_path)]  # type: ignore[attr-defined]
    client = make_client(legacy, clock, handler=lambda session: session.setdefault("user", "bob"))
    client.get("/")
    ours = client.cookies["session"]
    assert set_cookies(client.get("/", headers={"Cookie": f"session={ours}"})) == []
    # A browser sends one cookie of a name per path.
    response = client.get("/", headers={"Cookie": f"session={ours}; session=old-id"})
    assert response.json["data"] == {"user": "bob"}
    cookies = set_cookies(response)
    if removed:
        [header] = cookies
        assert header.startswith("session=;") and "Max-Age=0" in header and "Path=/old" in header
    else:
        assert cookies == []  # that is our own cookie's name and path: never removed beside ours
