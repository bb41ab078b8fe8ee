"""The request path of SessionMiddleware, through real requests."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webtest import TestApp

from wsgisession import SessionError, SessionMiddleware, SessionStoreError, get_session
from wsgisession.store import SessionChanges, SessionRecord
from wsgisession.stores.memory import MemoryStore

from .support import browser, counter_app

DAY = 24 * 60 * 60


class CountingStore(MemoryStore):
    """A MemoryStore that counts how often each store method is called."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls: Counter[str] = Counter()

    def load_session(self, cookie_value: str, environ: Dict[str, Any]) -> Any:
        self.calls["load_session"] += 1
        return super().load_session(cookie_value, environ)

    def create_session(self, data: SessionRecord, id: str, environ: Dict[str, Any]) -> None:
        self.calls["create_session"] += 1
        super().create_session(data, id, environ)

    def apply_changes(self, id: str, changes: SessionChanges, environ: Dict[str, Any]) -> bool:
        self.calls["apply_changes"] += 1
        return super().apply_changes(id, changes, environ)

    def delete_session(self, id: str, environ: Dict[str, Any]) -> None:
        self.calls["delete_session"] += 1
        super().delete_session(id, environ)


class BrokenStore(MemoryStore):
    """A store whose medium has gone away."""

    def load_session(self, cookie_value: str, environ: Dict[str, Any]) -> Any:
        raise ConnectionError("database at 127.0.0.1:1 refused the connection")


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


def test_untouched_request_costs_no_store_call_and_sets_nothing(
    make_app: Callable[..., TestApp], store: CountingStore
) -> None:
    app = make_app(counter_app, store)
    app.get("/")
    store.calls.clear()
    untouched = make_app(lambda session, environ: "hello", store)
    untouched.set_cookie("session", app.cookies["session"])
    response = untouched.get("/")
    assert response.json == "hello"
    assert store.calls == Counter()
    assert "Set-Cookie" not in response.headers and "Vary" not in response.headers


def test_a_new_session_without_data_gets_no_record_and_no_cookie(
    make_app: Callable[..., TestApp], store: CountingStore
) -> None:
    app = make_app(lambda session, environ: session.get("anything"), store)
    response = app.get("/")
    assert "Set-Cookie" not in response.headers
    assert response.headers["Vary"] == "Cookie"
    assert len(store) == 0


@pytest.mark.parametrize(
    "touch",
    [
        lambda session: session.get("x"),
        lambda session: session["x"] if "x" in session else None,  # noqa: SIM401 - the [] path
        lambda session: "x" in session,
        lambda session: len(session),
        lambda session: list(session),
        lambda session: session.id,
    ],
    ids=["get", "getitem", "in", "len", "iter", "id"],
)
def test_any_access_adds_vary_cookie(make_app: Callable[..., TestApp], touch: Callable[[Any], Any]) -> None:
    response = make_app(lambda session, environ: bool(touch(session)) and None).get("/")
    assert response.headers["Vary"] == "Cookie"


@pytest.mark.parametrize(
    "app_headers, expected",
    [
        ([("Vary", "Accept-Encoding, Cookie")], "Accept-Encoding, Cookie"),
        ([("Vary", "Accept-Encoding")], "Accept-Encoding, Cookie"),
        (
            [("Vary", "accept-encoding"), ("X-Other", "1"), ("vary", "Accept-Language")],
            "accept-encoding, Accept-Language, Cookie",
        ),
        ([("Vary", "cookie")], "cookie"),
        ([("Vary", "*")], "*"),
    ],
)
def test_cookie_is_merged_into_one_vary_header(app_headers: List[Any], expected: str) -> None:
    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        get_session(environ).get("x")
        start_response("200 OK", list(app_headers))
        return [b""]

    response = browser(SessionMiddleware(app)).get("/")
    assert response.headers.getall("Vary") == [expected]
    assert [name for name, _ in response.headerlist if name.lower() == "x-other"] == (
        ["X-Other"] if len(app_headers) == 3 else []
    )


def test_unchanged_session_is_not_rewritten(make_app: Callable[..., TestApp], store: CountingStore) -> None:
    app = make_app(counter_app, store)
    app.get("/")
    reader = make_app(lambda session, environ: [session.get("xx"), dict(session.items())], store)
    reader.set_cookie("session", app.cookies["session"])
    store.calls.clear()
    for _ in range(5):
        reader.get("/")
    assert store.calls == Counter(load_session=5)


def test_setting_a_key_to_its_current_value_writes_nothing(
    make_app: Callable[..., TestApp], store: CountingStore
) -> None:
    app = make_app(lambda session, environ: session.update(user="ann", roles=["admin"]), store)
    app.get("/")
    store.calls.clear()
    app.get("/")
    assert store.calls == Counter(load_session=1)


def test_a_changed_session_is_written_once(make_app: Callable[..., TestApp], store: CountingStore) -> None:
    app = make_app(counter_app, store)
    app.get("/")
    store.calls.clear()
    response = app.get("/")
    assert store.calls == Counter(load_session=1, apply_changes=1)
    assert "Set-Cookie" not in response.headers  # the id did not change and no refresh was due


def test_fixation_a_client_chosen_id_is_never_adopted(make_app: Callable[..., TestApp]) -> None:
    app = make_app(lambda session, environ: [session.setdefault("n", 1), session.id])
    chosen = "A" * 43  # the shape of a real id, but unknown to the store
    app.set_cookie("session", chosen)
    result = app.get("/").json
    assert result[1] != chosen
    assert app.cookies["session"] == result[1]


def test_expired_session_is_dropped_and_its_record_deleted(
    make_app: Callable[..., TestApp], store: CountingStore, clock: Any
) -> None:
    app = make_app(counter_app, store, expire_after=60)
    app.get("/")
    clock.advance(61)
    store.calls.clear()
    assert app.get("/").json == {"xx": 2, "yy": 1}
    assert store.calls["delete_session"] == 1
    assert len(store) == 1


def test_expired_cookie_without_new_data_is_removed_from_the_browser(
    make_app: Callable[..., TestApp], clock: Any
) -> None:
    store = MemoryStore(clock=clock)
    make_app(counter_app, store, expire_after=60)
    writer = make_app(counter_app, store, expire_after=60)
    writer.get("/")
    reader = make_app(lambda session, environ: session.get("xx"), store, expire_after=60)
    reader.set_cookie("session", writer.cookies["session"])
    clock.advance(61)
    response = reader.get("/")
    assert response.json is None
    assert "Max-Age=0" in response.headers["Set-Cookie"]


def test_cookie_max_age_follows_expire_after(make_app: Callable[..., TestApp]) -> None:
    import datetime

    set_cookie = make_app(counter_app, expire_after=datetime.timedelta(hours=2)).get("/").headers["Set-Cookie"]
    assert "Max-Age=7200" in set_cookie


def test_default_cookie_attributes(make_app: Callable[..., TestApp]) -> None:
    set_cookie = make_app(counter_app).get("/").headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0] for part in set_cookie.split(";")[1:]}
    assert attributes == {"Max-Age", "HttpOnly", "Path", "SameSite"}
    assert "SameSite=Lax" in set_cookie and "Path=/" in set_cookie and "Max-Age=1209600" in set_cookie


def test_configured_cookie_attributes(make_app: Callable[..., TestApp]) -> None:
    options = {
        "path": "/app",
        "domain": "example.com",
        "secure": True,
        "httponly": False,
        "samesite": "strict",
        "partitioned": True,
    }
    app = make_app(counter_app, cookie_name="sid", cookie_options=options)
    set_cookie = app.get("/app/").headers["Set-Cookie"]
    assert set_cookie.startswith("sid=")
    for expected in ("Path=/app", "Domain=example.com", "Secure", "SameSite=Strict", "Partitioned"):
        assert expected in set_cookie
    assert "HttpOnly" not in set_cookie


def test_secure_auto_follows_the_request_scheme(make_app: Callable[..., TestApp]) -> None:
    app = make_app(counter_app, cookie_options={"secure": "auto"})
    assert "Secure" not in app.get("/").headers["Set-Cookie"]
    https = make_app(counter_app, cookie_options={"secure": "auto"})
    assert "Secure" in https.get("/", extra_environ={"wsgi.url_scheme": "https"}).headers["Set-Cookie"]


@pytest.mark.parametrize(
    "options",
    [{"samesite": "sometimes"}, {"secure": "yes"}, {"samesite": "None"}, {"partitioned": True}, {"colour": "red"}],
)
def test_invalid_cookie_options_are_refused(options: Dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        SessionMiddleware(counter_app, cookie_options=options)  # type: ignore[arg-type]


def test_get_session_without_middleware_is_a_clear_error() -> None:
    with pytest.raises(SessionError, match="SessionMiddleware"):
        get_session({})


def test_configured_environ_key(make_app: Callable[..., TestApp]) -> None:
    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        session = get_session(environ, "my.session")
        session["n"] = 1
        start_response("200 OK", [])
        return [b"ok"]

    response = browser(SessionMiddleware(app, environ_key="my.session")).get("/")
    assert "Set-Cookie" in response.headers


def test_exception_in_the_app_persists_nothing(store: CountingStore) -> None:
    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        session = get_session(environ)
        session["n"] = session.get("n", 0) + 1
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        start_response("200 OK", [])
        return [str(session["n"]).encode()]

    client = browser(SessionMiddleware(app, store))
    client.get("/")
    with pytest.raises(RuntimeError):
        client.get("/boom")
    assert client.get("/").text == "2"


def test_changes_while_a_streaming_body_iterates_are_saved(store: CountingStore) -> None:
    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        session = get_session(environ)
        session["before"] = session.get("before", 0) + 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first chunk "
        session["during"] = session.get("during", 0) + 1  # after the headers were sent
        yield json.dumps([session["before"], session["during"]]).encode()

    client = browser(SessionMiddleware(app, store))
    assert client.get("/").text == "first chunk [1, 1]"
    assert client.get("/").text == "first chunk [2, 2]"


def test_a_body_that_raises_while_streaming_persists_no_late_changes(store: CountingStore) -> None:
    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        session = get_session(environ)
        session["n"] = session.get("n", 0) + 1
        start_response("200 OK", [])
        yield b"x"
        session["late"] = True
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("failed mid-stream")

    client = browser(SessionMiddleware(app, store))
    client.get("/")
    with pytest.raises(RuntimeError):
        client.get("/boom")
    reader = browser(SessionMiddleware(lambda environ, start_response: _echo(environ, start_response), store))
    reader.set_cookie("session", client.cookies["session"])
    assert reader.get("/").json == {"n": 2, "late": True}  # "late" from the first request only


def _echo(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(get_session(environ).to_dict()).encode()]


def test_store_failure_raises_session_store_error_with_the_cause(make_app: Callable[..., TestApp]) -> None:
    app = make_app(counter_app, BrokenStore())
    app.set_cookie("session", "B" * 43)
    with pytest.raises(SessionStoreError, match="BrokenStore could not load the session: ConnectionError") as info:
        app.get("/")
    assert isinstance(info.value.__cause__, ConnectionError)


def test_lock_needs_a_store_that_can_lock() -> None:
    from wsgisession.store import Store

    class FourMethodStore(Store):
        pass

    with pytest.raises(ValueError, match="lock_session"):
        SessionMiddleware(counter_app, FourMethodStore(), lock=True)


def test_rejected_cookies_are_logged_at_debug(make_app: Callable[..., TestApp], caplog: Any) -> None:
    app = make_app(lambda session, environ: session.get("x"))
    app.set_cookie("session", "forged")
    with caplog.at_level(logging.DEBUG, logger="wsgisession"):
        app.get("/")
    assert any("rejected" in record.getMessage() for record in caplog.records)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.text(max_size=200),
        st.text(alphabet="ABCDEFabcdef0123456789-_", min_size=40, max_size=46),
        st.binary(max_size=100).map(lambda raw: raw.decode("latin-1")),
    )
)
def test_garbage_cookies_never_fail_and_are_never_adopted(garbage: str) -> None:
    seen: List[Optional[str]] = []

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        session = get_session(environ)
        session["n"] = session.get("n", 0) + 1
        seen.append(session.id)
        start_response("200 OK", [])
        return [str(session["n"]).encode()]

    middleware = SessionMiddleware(app)
    header = "session=" + garbage.replace("\r", " ").replace("\n", " ")
    response = TestApp(middleware).get("/", headers={"Cookie": header.encode("latin-1", "replace").decode("latin-1")})
    assert response.status_int == 200
    assert response.text == "1"
    assert seen[0] != garbage


def test_a_new_session_first_filled_after_start_response_is_dropped_with_a_warning(
    store: CountingStore, caplog: Any
) -> None:
    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        start_response("200 OK", [])
        get_session(environ)["late"] = True  # too late for a new session's cookie
        return [b"ok"]

    with caplog.at_level(logging.WARNING, logger="wsgisession"):
        response = browser(SessionMiddleware(app, store)).get("/")
    assert "Set-Cookie" not in response.headers
    assert len(store) == 0
    assert any("dropped" in record.getMessage() for record in caplog.records)


# -- the commit point: just before the first byte can reach the client ---------------------


def test_the_response_a_client_sees_is_saved_before_its_first_chunk(store: CountingStore) -> None:
    seen_by_another_request: List[Any] = []
    reader = browser(SessionMiddleware(_echo, store))

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        session = get_session(environ)
        session["n"] = session.get("n", 0) + 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first chunk"
        # The first chunk is on its way: another request already sees the change.
        reader.set_cookie("session", session.id)
        seen_by_another_request.append(reader.get("/").json)
        yield b", second chunk"

    client = browser(SessionMiddleware(app, store))
    client.get("/")
    assert client.get("/").text == "first chunk, second chunk"
    assert seen_by_another_request == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_an_empty_body_is_saved_when_it_ends(store: CountingStore, method: str) -> None:
    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        session = get_session(environ)
        session["n"] = session.get("n", 0) + 1
        start_response("204 No Content", [])
        yield b""

    client = browser(SessionMiddleware(app, store))
    response = client.request("/", method=method)
    assert response.status_int == 204 and "Set-Cookie" in response.headers
    client.request("/", method=method)
    assert store.get_session(client.cookies["session"], {})["data"] == {"n": 2}  # type: ignore[index]


def test_an_app_that_writes_through_write_is_saved_before_its_first_write(store: CountingStore) -> None:
    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        session = get_session(environ)
        session["n"] = session.get("n", 0) + 1
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"")  # nothing to send yet
        write(str(session["n"]).encode())
        return []

    client = browser(SessionMiddleware(app, store))
    assert client.get("/").text == "1"
    assert client.get("/").text == "2"


def test_a_lazy_app_that_starts_the_response_inside_its_body(store: CountingStore) -> None:
    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        session = get_session(environ)
        session["n"] = session.get("n", 0) + 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield str(session["n"]).encode()

    client = browser(SessionMiddleware(app, store))
    assert client.get("/").text == "1"
    assert client.get("/").text == "2"
    assert client.get("/").headers["Vary"] == "Cookie"


def test_a_body_that_fails_before_its_first_chunk_persists_nothing(store: CountingStore) -> None:
    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        session = get_session(environ)
        session["n"] = session.get("n", 0) + 1
        start_response("200 OK", [])
        if environ["PATH_INFO"] == "/boom":
            yield b""
            raise RuntimeError("failed before any byte was sent")
        yield str(session["n"]).encode()

    client = browser(SessionMiddleware(app, store))
    client.get("/")
    with pytest.raises(RuntimeError):
        client.get("/boom")
    assert client.get("/").text == "2"


def test_a_store_that_fails_at_the_commit_point_gives_an_error_and_saves_nothing_later(clock: Any) -> None:
    class FailingWrites(MemoryStore):
        failing = False

        def apply_changes(self, id: str, changes: SessionChanges, environ: Dict[str, Any]) -> Any:
            if self.failing:
                raise ConnectionError("the store went away")
            return super().apply_changes(id, changes, environ)

    store = FailingWrites(clock=clock)

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        session = get_session(environ)
        session["n"] = session.get("n", 0) + 1
        start_response("200 OK", [])
        yield b"chunk"
        session["late"] = True

    client = browser(SessionMiddleware(app, store, clock=clock))
    client.get("/")
    store.failing = True
    with pytest.raises(SessionStoreError, match="could not save the session: ConnectionError"):
        client.get("/")
    store.failing = False
    # The first request's late change was saved when its body closed; the failed request saved nothing.
    assert store.get_session(client.cookies["session"], {})["data"] == {"n": 1, "late": True}  # type: ignore[index]


def test_the_server_gets_its_start_response_call_before_the_first_chunk() -> None:
    calls: List[str] = []

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        get_session(environ)["n"] = 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        calls.append("app started the response")
        yield b"body"

    def server(environ: Dict[str, Any]) -> List[Any]:
        events: List[Any] = []

        def start_response(status: str, headers: List[Any], exc_info: Any = None) -> Callable[[bytes], None]:
            events.append(("start_response", status, sorted(name for name, _ in headers)))
            return lambda data: events.append(("write", data))

        body = SessionMiddleware(app)(environ, start_response)
        try:
            for chunk in body:
                events.append(("chunk", chunk))
        finally:
            body.close()  # type: ignore[attr-defined]
        return events

    events = server({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"})
    assert events == [("start_response", "200 OK", ["Content-Type", "Set-Cookie", "Vary"]), ("chunk", b"body")]
    assert calls == ["app started the response"]


def test_a_malformed_stored_value_fails_loudly_when_its_key_is_read(clock: Any) -> None:
    store = MemoryStore(clock=clock)
    session_id = "B" * 43
    record = {
        "data": {"fine": [1, 2], "broken": {"$t": "no such tag", "$v": 1}},
        "flash": [],
        "created": clock(),
        "refreshed": clock(),
        "expires": None,
    }
    store.create_session(record, session_id, {})  # type: ignore[arg-type]

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        value = get_session(environ).get(environ["PATH_INFO"].strip("/"))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(value).encode()]

    client = browser(SessionMiddleware(app, store, clock=clock))
    client.set_cookie("session", session_id)
    assert client.get("/fine").json == [1, 2]  # values are decoded when read
    with pytest.raises(SessionStoreError, match="session key 'broken' is malformed"):
        client.get("/broken")
