"""The PasteDeploy filter: an ini-configured app gets SessionMiddleware, through real requests."""

from __future__ import annotations

import configparser
import importlib.metadata
from pathlib import Path
from typing import Any, Dict

import pytest

from wsgisession import SessionMiddleware
from wsgisession.contrib import middleware_options, store_from_url
from wsgisession.contrib.paste import filter_app_factory
from wsgisession.stores.memory import MemoryStore

from .support import browser, counter_app, json_app

loadwsgi = pytest.importorskip("paste.deploy")

REPO = Path(__file__).resolve().parent.parent


def app_factory(global_conf: Dict[str, Any], **local_conf: Any) -> Any:
    """The ini files' app: the original package's counter."""
    return json_app(counter_app)


#: The session filter by its factory's dotted path, which needs no installed entry point.
FILTER_FACTORY = "call:wsgisession.contrib.paste:filter_factory"


def load_pipeline(directory: Path, *, use: str = FILTER_FACTORY, **settings: str) -> Any:
    """Write an app.ini whose pipeline puts the session filter (``use``, with ``settings``) before the counter; load it."""
    lines = [
        "[app:counter]",
        f"use = call:{__name__}:app_factory",
        "",
        "[filter:session]",
        f"use = {use}",
        *(f"{name} = {value}" for name, value in settings.items()),
        "",
        "[pipeline:main]",
        "pipeline = session counter",
        "",
    ]
    path = directory / "app.ini"
    path.write_text("\n".join(lines))
    return loadwsgi.loadapp(f"config:{path}")


def test_the_filter_wraps_the_app_through_call(tmp_path: Path) -> None:
    app = load_pipeline(tmp_path, expire_after="3600")
    assert isinstance(app, SessionMiddleware)
    client = browser(app)
    assert [client.get("/").json["yy"] for _ in range(3)] == [1, 2, 3]
    assert "Max-Age=3600" in browser(app).get("/").headers["Set-Cookie"]


def _wsgisession_is_installed() -> bool:
    try:
        importlib.metadata.distribution("wsgisession")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_the_entry_point_declared_in_setup_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not _wsgisession_is_installed():
        # A checkout that is not installed: publish setup.cfg's entry points
        # as installed metadata, so egg:wsgisession resolves as after a pip install.
        setup = configparser.ConfigParser()
        setup.read(REPO / "setup.cfg")
        info = tmp_path / "site" / "wsgisession-0.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wsgisession\nVersion: 0.0\n")
        entry_points = configparser.ConfigParser()
        for group, text in setup["options.entry_points"].items():
            entry_points[group] = dict(line.split("=", 1) for line in text.strip().splitlines())
        with (info / "entry_points.txt").open("w") as file:
            entry_points.write(file)
        monkeypatch.syspath_prepend(str(tmp_path / "site"))
    app = load_pipeline(tmp_path, use="egg:wsgisession#session", cookie_name="sid")
    assert isinstance(app, SessionMiddleware)
    assert browser(app).get("/").headers["Set-Cookie"].startswith("sid=")


def test_every_ini_setting(tmp_path: Path) -> None:
    app = load_pipeline(
        tmp_path,
        store="memory",
        cookie_name="sid",
        expire_after="none",
        max_lifetime="600",
        refresh_interval="60",
        cookie_path="/",
        cookie_domain="localhost",
        cookie_secure="auto",
        cookie_httponly="no",
        cookie_samesite="Strict",
        cookie_partitioned="false",
        lock="true",
        lock_timeout="2.5",
        environ_key="my.session",
    )
    assert isinstance(app.store, MemoryStore)
    assert (app.policy.expire_after, app.policy.max_lifetime, app.policy.refresh_interval) == (None, 600, 60)
    assert (app.lock_timeout, app.environ_key) == (2.5, "my.session")
    cookie = app.cookie
    assert (cookie.name, cookie.path, cookie.domain, cookie.secure) == ("sid", "/", "localhost", "auto")
    assert (cookie.httponly, cookie.samesite, cookie.partitioned) == (False, "Strict", False)


def test_the_settings_reach_the_response(tmp_path: Path) -> None:
    app = load_pipeline(
        tmp_path,
        cookie_name="sid",
        max_lifetime="600",
        expire_after="none",
        cookie_secure="auto",
        cookie_httponly="off",
        cookie_samesite="Strict",
    )
    plain = browser(app).get("/").headers["Set-Cookie"]
    assert plain.startswith("sid=") and "Max-Age=600" in plain and "SameSite=Strict" in plain
    assert "Secure" not in plain and "HttpOnly" not in plain
    https = browser(app)
    https.extra_environ["wsgi.url_scheme"] = "https"
    assert "Secure" in https.get("/").headers["Set-Cookie"]


def test_a_sqlite_store_by_url_relative_to_the_ini_file(tmp_path: Path) -> None:
    pytest.importorskip("wsgisession.stores.sqlalchemy")
    app = load_pipeline(
        tmp_path,
        store="sqlite:///%(here)s/sessions.sqlite3",
        **{"store.table_name": "web_sessions"},
    )
    try:
        client = browser(app)
        assert [client.get("/").json["yy"] for _ in range(2)] == [1, 2]
        assert (tmp_path / "sessions.sqlite3").exists()
    finally:
        app.store.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"expires": "10"}, "unknown session setting 'expires'"),
        ({"store": "nothing"}, "unknown session store"),
        ({"store": "memory", "store.colour": "red"}, "unknown store setting"),
        ({"store.table_name": "x"}, "need the store setting to be a URL"),
        ({"lock": "perhaps"}, "lock must be true or false"),
        ({"expire_after": "soon"}, "number of seconds"),
        ({"lock_timeout": "a while"}, "lock_timeout must be a number of seconds"),
        ({"secret_key": "k" * 32}, "set store = cookie"),
    ],
)
def test_bad_settings_are_refused(settings: Dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        filter_app_factory(json_app(counter_app), {}, **settings)


def test_cookie_store_settings_rotate_keys() -> None:
    pytest.importorskip("wsgisession.stores.cookie")
    old, new = "o" * 32, "n" * 32
    before = browser(filter_app_factory(json_app(counter_app), {}, store="cookie", secret_key=old))
    before.get("/")
    after = browser(filter_app_factory(json_app(counter_app), {}, store="cookie", secret_key=f"{old} {new}"))
    after.set_cookie("session", before.cookies["session"])
    assert after.get("/").json == {"xx": 5, "yy": 2}
    with pytest.raises(ValueError, match="secret key"):
        filter_app_factory(json_app(counter_app), {}, store="cookie")


def test_a_store_named_by_module_and_attribute() -> None:
    store = store_from_url("wsgisession.stores.memory:MemoryStore", max_entries=5)
    assert isinstance(store, MemoryStore) and store.max_entries == 5
    with pytest.raises(ValueError, match="not a wsgisession Store"):
        store_from_url("builtins:dict")


def test_typed_values_pass_through() -> None:
    store = MemoryStore()
    options = middleware_options({"session.store": store, "session.expire_after": 30, "other": 1}, "session.")
    assert options == {"store": store, "expire_after": 30}
