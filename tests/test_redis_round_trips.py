"""Round trips to Redis per request, counted by Redis itself (INFO commandstats).

A throwaway server of this module's own is used, so its statistics can be
reset before every request.  Redis counts the commands a script runs as
well as the script call: a request's round trips are its ``HGET`` and
``EVALSHA`` calls, the only commands the store sends outside its scripts in
these requests, and every other command counted must be one a script of the
store runs.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Iterator

import pytest
from webtest import TestApp

import wsgisession.stores.redis as redis_store
import wsgisession.stores.redis.lock as redis_lock
from wsgisession.stores.redis import RedisStore
from wsgisession.stores.redis.lua import LuaScript
from wsgisession.testing import FakeClock

from .redis_servers import RedisProcess, redis_server
from .store_suite import DAY, clone, cookie_of

#: The commands the store sends itself in these requests; a script call is one round trip.
SENT = ("hget", "evalsha")


def commands_of_the_scripts() -> set:
    scripts = [
        value for module in (redis_store, redis_lock) for value in vars(module).values() if isinstance(value, LuaScript)
    ]
    assert len(scripts) >= 6
    return {
        command.lower()
        for script in scripts
        for command in re.findall(r"(?:redis\.call|in_chunks)\('([A-Z]+)'", script.text)
    }


SCRIPT_COMMANDS = commands_of_the_scripts()


@pytest.fixture(scope="module")
def server() -> Iterator[RedisProcess]:
    with redis_server() as process:
        yield process


@pytest.fixture
def store(server: RedisProcess, clock: FakeClock) -> Iterator[RedisStore]:
    store = RedisStore(server.url(), clock=clock)
    yield store
    store.close()


class Counted:
    """What Redis ran for one request: each command's calls, from INFO commandstats."""

    def __init__(self, stats: Dict[str, Any]) -> None:
        self.calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
        self.calls.pop("config|resetstat", None)  # the reset itself

    @property
    def round_trips(self) -> int:
        unexplained = set(self.calls).difference(SENT, SCRIPT_COMMANDS)
        assert not unexplained, f"commands neither sent by the store nor run by its scripts: {unexplained}"
        if not self.calls.get("evalsha"):
            assert set(self.calls) <= {"hget"}, self.calls  # no script ran: nothing else may have
        return sum(self.calls.get(command, 0) for command in SENT)


def counted(server: RedisProcess, request: Callable[[], Any]) -> Counted:
    admin = server.client()
    try:
        admin.config_resetstat()
        request()
        return Counted(admin.info("commandstats"))
    finally:
        admin.close()


def test_the_scripts_never_send_what_the_store_sends_itself() -> None:
    assert "hget" not in SCRIPT_COMMANDS and "evalsha" not in SCRIPT_COMMANDS


def test_round_trips_per_request(
    server: RedisProcess, store: RedisStore, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    def handler(session: Any, environ: dict) -> Any:
        path = environ["PATH_INFO"]
        if path == "/write":
            session["visits"] = session.get("visits", 0) + 1
        elif path == "/read":
            session.get("visits")
        elif path == "/flash":
            session.flash("notice", "saved")
        elif path == "/notice":
            session.get("notice")
        return "ok"

    app = make_app(handler, store, expire_after=DAY)
    for path in ("/write", "/read", "/write", "/flash", "/notice", "/untouched"):
        app.get(path)  # connections open and scripts loaded before counting

    new_visitor = make_app(handler, store, expire_after=DAY)
    assert counted(server, lambda: new_visitor.get("/write")).round_trips == 1  # one script writes it all
    returning = clone(new_visitor, cookie_of(new_visitor))
    assert counted(server, lambda: returning.get("/untouched")).calls == {}
    read = counted(server, lambda: returning.get("/read"))
    assert read.calls == {"hget": 1} and read.round_trips == 1
    read_and_write = counted(server, lambda: returning.get("/write"))
    assert read_and_write.round_trips == 2 and read_and_write.calls["hget"] == 1
    clock.advance(0.5 * DAY)  # a refresh of the expiry is due: one write
    assert counted(server, lambda: returning.get("/read")).round_trips == 2
    assert counted(server, lambda: returning.get("/read")).round_trips == 1
    returning.get("/flash")
    assert counted(server, lambda: returning.get("/notice")).round_trips == 2  # the load, and taking the flash value


def test_round_trips_with_the_request_lock(
    server: RedisProcess, store: RedisStore, make_app: Callable[..., TestApp]
) -> None:
    def handler(session: Any, environ: dict) -> Any:
        if environ["PATH_INFO"] == "/write":
            session["visits"] = session.get("visits", 0) + 1
        return session.get("visits")

    app = make_app(handler, store, lock=True)
    app.get("/write")
    app.get("/write")
    # The lock adds two round trips: taking it (free: one script) and releasing it.
    assert counted(server, lambda: app.get("/read")).round_trips == 3
    assert counted(server, lambda: app.get("/write")).round_trips == 4


def test_round_trips_for_a_missing_session_and_a_hash_from_0_1_0(
    server: RedisProcess, store: RedisStore, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    app = make_app(lambda session, environ: session.get("user"), store)
    app.set_cookie("session", "C" * 43)
    app.get("/")  # a connection open and the script loaded before counting
    app.set_cookie("session", "A" * 43)
    # No record field: a second call finds that there is no hash at all.
    assert counted(server, lambda: app.get("/")).round_trips == 2
    old = "B" * 43
    fields = {"d:user": '"ann"', "m:created": repr(clock()), "m:refreshed": repr(clock()), "m:expires": ""}
    server.ask("HSET", store.hash_key(old), *[item for pair in fields.items() for item in pair])
    reader = make_app(lambda session, environ: session.get("user"), store)
    reader.set_cookie("session", old)
    loaded = counted(server, lambda: reader.get("/"))
    assert loaded.round_trips == 2 and "hgetall" in loaded.calls  # built from the fields
    assert reader.get("/").json == "ann"
