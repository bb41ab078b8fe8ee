"""Flask's own session behaviours, checked the way a Flask user checks them: Flask's test client.

Each test follows one of Flask's own session tests (``tests/test_basic.py``
in Flask) or a habit of Flask apps, on an app whose session is wsgisession's.
Where wsgisession deliberately differs (README, "Flask": Max-Age without
Expires, no ``SESSION_REFRESH_EACH_REQUEST``), the test says so.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any, Dict, List

import pytest

from wsgisession.stores.memory import MemoryStore
from wsgisession.testing import FakeClock

flask = pytest.importorskip("flask")
from wsgisession.contrib.flask import WsgiSession  # noqa: E402

SECRET = "a test secret key, long enough for the cookie store"


@pytest.fixture(params=["memory", "cookie"])
def app(request: Any, clock: FakeClock) -> Any:
    application = flask.Flask(__name__)
    application.config.update(TESTING=True, SECRET_KEY=SECRET)
    store = MemoryStore(clock=clock) if request.param == "memory" else "cookie"
    application.config["WSGISESSION_STORE"] = store
    return application


def install(app: Any, clock: FakeClock) -> Any:
    """Install wsgisession after the routes, the way an app calls an extension's init_app."""
    WsgiSession(app, clock=clock)
    return app.test_client()


def test_session_values_and_modified(app: Any, clock: FakeClock) -> None:
    @app.post("/set")
    def set_value() -> Any:
        assert not flask.session.modified
        flask.session["value"] = flask.request.form["value"]
        assert flask.session.accessed
        assert flask.session.modified
        return "value set"

    @app.get("/get")
    def get() -> Any:
        value = flask.session.get("value", "None")
        assert flask.session.accessed
        assert not flask.session.modified
        return value

    client = install(app, clock)
    assert client.post("/set", data={"value": "42"}).data == b"value set"
    assert client.get("/get").data == b"42"


def test_vary_cookie_is_one_header_merged_with_the_apps_own(app: Any, clock: FakeClock) -> None:
    @app.route("/set")
    def set_session() -> Any:
        flask.session["test"] = "test"
        return ""

    @app.route("/get")
    def get() -> Any:
        return flask.session.get("test") or ""

    @app.route("/getitem")
    def getitem() -> Any:
        return flask.session["test"]

    @app.route("/setdefault")
    def setdefault() -> Any:
        return flask.session.setdefault("test", "default")

    @app.route("/vary-cookie-header-set")
    def vary_cookie_header_set() -> Any:
        response = flask.Response()
        response.vary.add("Cookie")
        flask.session["test"] = "test"
        return response

    @app.route("/vary-header-set")
    def vary_header_set() -> Any:
        response = flask.Response()
        response.vary.update(("Accept-Encoding", "Accept-Language"))
        flask.session["test"] = "test"
        return response

    @app.route("/no-vary-header")
    def no_vary_header() -> Any:
        return ""

    client = install(app, clock)

    def expect(path: str, header_value: Any = "Cookie") -> None:
        response = client.get(path)
        if header_value:
            assert len(response.headers.get_all("Vary")) == 1
            assert response.headers["Vary"] == header_value
            assert "cookie" in response.vary  # werkzeug's parsed view sees it too
        else:
            assert "Vary" not in response.headers

    expect("/set")
    expect("/get")
    expect("/getitem")
    expect("/setdefault")
    expect("/vary-cookie-header-set")
    expect("/vary-header-set", "Accept-Encoding, Accept-Language, Cookie")
    expect("/no-vary-header", None)


def test_session_stored_last(app: Any, clock: FakeClock) -> None:
    @app.after_request
    def modify_session(response: Any) -> Any:
        flask.session["foo"] = 42
        return response

    @app.route("/")
    def dump_session_contents() -> Any:
        return repr(flask.session.get("foo"))

    client = install(app, clock)
    assert client.get("/").data == b"None"
    assert client.get("/").data == b"42"


def test_special_types_round_trip(app: Any, clock: FakeClock) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    the_uuid = uuid.uuid4()
    seen: List[Dict[str, Any]] = []

    @app.route("/")
    def store_values() -> Any:
        flask.session["t"] = (1, 2, 3)
        flask.session["b"] = b"\xff"
        flask.session["u"] = the_uuid
        flask.session["d"] = now
        flask.session["t_tag"] = {" t": "not-a-tuple"}
        flask.session["di_tag"] = {" di": "not-a-dict"}
        return "", 204

    @app.route("/read")
    def read() -> Any:
        seen.append(dict(flask.session))
        return ""

    client = install(app, clock)
    assert client.get("/").status_code == 204
    client.get("/read")
    assert seen == [
        {
            "t": (1, 2, 3),
            "b": b"\xff",
            "u": the_uuid,
            "d": now,
            "t_tag": {" t": "not-a-tuple"},
            "di_tag": {" di": "not-a-dict"},
        }
    ]
    assert type(seen[0]["b"]) is bytes and type(seen[0]["t"]) is tuple


def test_emptying_the_session_deletes_the_cookie(app: Any, clock: FakeClock) -> None:
    @app.route("/login")
    def login() -> Any:
        flask.session["user"] = "ann"
        return "in"

    @app.route("/logout")
    def logout() -> Any:
        flask.session.clear()
        return "out"

    @app.route("/pop")
    def pop() -> Any:
        flask.session.pop("user", None)
        return "popped"

    client = install(app, clock)
    for path in ("/logout", "/pop"):
        client.get("/login")
        assert client.get_cookie("session") is not None
        response = client.get(path)
        set_cookie = response.headers["Set-Cookie"]
        assert set_cookie.startswith("session=;") and "Max-Age=0" in set_cookie
        assert "Expires=Thu, 01 Jan 1970 00:00:00 GMT" in set_cookie
        assert client.get_cookie("session") is None
        assert response.headers["Vary"] == "Cookie"


def test_an_empty_untouched_session_sets_no_cookie(app: Any, clock: FakeClock) -> None:
    @app.route("/")
    def read() -> Any:
        return str(len(flask.session))

    client = install(app, clock)
    response = client.get("/")
    assert "Set-Cookie" not in response.headers
    assert response.headers["Vary"] == "Cookie"


def test_permanent_session_expiration(app: Any, clock: FakeClock) -> None:
    permanent = True

    @app.route("/")
    def index() -> Any:
        flask.session["test"] = 42
        flask.session.permanent = permanent
        return ""

    @app.route("/test")
    def test() -> Any:
        return str(flask.session.permanent)

    client = install(app, clock)
    set_cookie = client.get("/").headers["Set-Cookie"]
    # wsgisession sends Max-Age, which every browser in use honours, without Expires.
    assert f"Max-Age={int(app.permanent_session_lifetime.total_seconds())}" in set_cookie
    assert client.get("/test").data == b"True"

    permanent = False
    set_cookie = client.get("/").headers["Set-Cookie"]
    assert "Max-Age" not in set_cookie and "Expires" not in set_cookie
    assert client.get("/test").data == b"False"


def test_a_read_does_not_rewrite_the_cookie(app: Any, clock: FakeClock) -> None:
    # As Flask with SESSION_REFRESH_EACH_REQUEST = False; wsgisession rewrites
    # a persistent cookie's Max-Age once per refresh interval instead.
    @app.route("/bump")
    def bump() -> Any:
        value = flask.session["foo"] = flask.session.get("foo", 0) + 1
        flask.session.permanent = True
        return str(value)

    @app.route("/read")
    def read() -> Any:
        return str(flask.session.get("foo", 0))

    client = install(app, clock)
    assert [client.get("/bump").data for _ in range(3)] == [b"1", b"2", b"3"]
    response = client.get("/read")
    assert response.data == b"3"
    assert "Set-Cookie" not in response.headers
    clock.advance(app.permanent_session_lifetime.total_seconds() / 5)  # past the refresh interval
    assert "Max-Age" in client.get("/read").headers["Set-Cookie"]


def test_flashes_and_modified_in_a_request_context(app: Any, clock: FakeClock) -> None:
    WsgiSession(app, clock=clock)
    with app.test_request_context():
        assert not flask.session.modified
        flask.flash("Zap")
        flask.session.modified = False
        flask.flash("Zip")
        assert flask.session.modified
        assert list(flask.get_flashed_messages()) == ["Zap", "Zip"]


def test_extended_flashing(app: Any, clock: FakeClock) -> None:
    @app.route("/")
    def index() -> Any:
        flask.flash("Hello World")
        flask.flash("Hello World", "error")
        flask.flash("<em>Testing</em>", "warning")
        return ""

    @app.route("/test_with_categories/")
    def with_categories() -> Any:
        messages = flask.get_flashed_messages(with_categories=True)
        assert list(messages) == [("message", "Hello World"), ("error", "Hello World"), ("warning", "<em>Testing</em>")]
        return ""

    @app.route("/test_filters/")
    def filters() -> Any:
        messages = flask.get_flashed_messages(category_filter=["message", "warning"], with_categories=True)
        assert list(messages) == [("message", "Hello World"), ("warning", "<em>Testing</em>")]
        return ""

    @app.route("/shown_once/")
    def shown_once() -> Any:
        return str(len(flask.get_flashed_messages()))

    install(app, clock)
    for path in ("/test_with_categories/", "/test_filters/"):
        client = app.test_client()
        client.get("/")
        assert client.get(path).status_code == 200
        assert client.get("/shown_once/").data == b"0"


def test_modified_is_still_true_in_teardown_request(app: Any, clock: FakeClock) -> None:
    seen: List[Any] = []

    @app.route("/")
    def index() -> Any:
        flask.session["n"] = flask.session.get("n", 0) + 1
        return str(flask.session["n"])

    @app.route("/read")
    def read() -> Any:
        return str(flask.session.get("n"))

    @app.teardown_request
    def record(exc: Any) -> None:
        seen.append((flask.request.path, flask.session.modified))

    client = install(app, clock)
    assert "Set-Cookie" in client.get("/").headers  # the response was saved before teardown runs
    client.get("/read")
    assert seen == [("/", True), ("/read", False)]


def test_a_server_error_from_an_error_handler_persists_nothing(app: Any, clock: FakeClock) -> None:
    @app.route("/set")
    def set_value() -> Any:
        flask.session["kept"] = "yes"
        return "ok"

    @app.route("/fail")
    def fail() -> Any:
        flask.session["lost"] = True
        raise RuntimeError("the view failed")

    @app.route("/get")
    def get() -> Any:
        return dict(flask.session)

    @app.errorhandler(500)
    def internal_error(error: Any) -> Any:
        return "sorry", 500

    client = install(app, clock)
    app.testing = False  # let the error handler answer instead of raising into the test
    client.get("/set")
    response = client.get("/fail")
    assert response.status_code == 500 and response.data == b"sorry"
    assert "Set-Cookie" not in response.headers
    assert client.get("/get").json == {"kept": "yes"}


def test_the_secret_key_is_the_apps_even_as_a_class_attribute(clock: FakeClock) -> None:
    class SecretApp(flask.Flask):
        secret_key = SECRET  # as Flask-WTF's own test app does

    app = SecretApp(__name__)
    app.config.update(TESTING=True, WSGISESSION_STORE="cookie")

    @app.route("/")
    def index() -> Any:
        flask.session["n"] = flask.session.get("n", 0) + 1
        return str(flask.session["n"])

    client = install(app, clock)
    assert [client.get("/").data for _ in range(2)] == [b"1", b"2"]


def test_secret_key_fallbacks_still_verify(clock: FakeClock) -> None:
    def make(secret: str, fallbacks: List[str]) -> Any:
        app = flask.Flask(__name__)
        app.config.update(TESTING=True, WSGISESSION_STORE="cookie", SECRET_KEY=secret, SECRET_KEY_FALLBACKS=fallbacks)

        @app.route("/")
        def index() -> Any:
            flask.session["n"] = flask.session.get("n", 0) + 1
            return str(flask.session["n"])

        return install(app, clock)

    old, new = "o" * 40, "n" * 40
    before = make(old, [])
    assert before.get("/").data == b"1"
    cookie = before.get_cookie("session").value
    rotated = make(new, [old])
    rotated.set_cookie("session", cookie)
    assert rotated.get("/").data == b"2"
    dropped = make(new, [])
    dropped.set_cookie("session", cookie)
    assert dropped.get("/").data == b"1"


def test_session_transaction_works_as_with_flasks_own_session(app: Any, clock: FakeClock) -> None:
    @app.route("/")
    def index() -> Any:
        return {"user": flask.session.get("user"), "permanent": flask.session.permanent}

    client = install(app, clock)
    with client.session_transaction() as session:
        session["user"] = "ann"
        session.permanent = True
    assert client.get("/").json == {"user": "ann", "permanent": True}
    assert client.get_cookie("session").max_age == int(app.permanent_session_lifetime.total_seconds())
