"""Round trips to Redis per request, counted by Redis itself (INFO commandstats).

A throwaway server of this module's own is used (and a throwaway Cluster
for what an owner costs there), so its statistics can be reset before every
request.  Redis counts the commands a script runs as
well as the script call: a request's round trips are its ``HGET`` and
``EVALSHA`` calls, the only commands the store sends outside its scripts in
these requests, and every other command counted must be one a script of the
store runs.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Iterator, List

import pytest
from webtest import TestApp

import wsgisession.stores.redis as redis_store
import wsgisession.stores.redis.lock as redis_lock
import wsgisession.stores.redis.owners as redis_owners
from wsgisession.stores.redis import RedisStore
from wsgisession.stores.redis.lua import LuaScript
from wsgisession.testing import FakeClock

from .redis_servers import ClusterSetup, RedisProcess, redis_cluster, redis_server
from .store_suite import DAY, clone, cookie_of

#: The commands the store sends itself in these requests; a script call is one round trip.
SENT = ("hget", "evalsha")


def commands_of_the_scripts() -> set:
    scripts = [
        value
        for module in (redis_store, redis_lock, redis_owners)
        for value in vars(module).values()
        if isinstance(value, LuaScript)
    ]
    assert len(scripts) >= 9
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
    return counted_on([server], request)


def counted_on(servers: List[RedisProcess], request: Callable[[], Any]) -> Counted:
    """What ``servers`` (a cluster's nodes, say) ran together for ``request``."""
    admins = [server.client() for server in servers]
    try:
        for admin in admins:
            admin.config_resetstat()
        request()
        calls: Dict[str, int] = {}
        for admin in admins:
            for name, value in admin.info("commandstats").items():
                calls[name] = calls.get(name, 0) + int(value["calls"])
        return Counted({name: {"calls": total} for name, total in calls.items()})
    finally:
        for admin in admins:
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


def owner_handler(session: Any, environ: dict) -> Any:
    """Paths that sign in (with or without an owner), read, write and change the owner."""
    path = environ["PATH_INFO"]
    if path in ("/login", "/anonymous"):
        if path == "/login":
            session.owner = environ["QUERY_STRING"] or "ann"
            session.owner_details = {"agent": "laptop"}
        session["visits"] = 1
    elif path == "/write":
        session["visits"] = session.get("visits", 0) + 1
    elif path == "/read":
        session.get("visits")
    elif path == "/owner":
        session.owner = environ["QUERY_STRING"] or None
    return "ok"


def owner_round_trips(
    count: Callable[[Callable[[], Any]], Counted], make_app: Callable[..., TestApp], store: RedisStore
) -> Dict[str, int]:
    """The round trips of each kind of request, for a session with an owner and one without."""
    warm = make_app(owner_handler, store, expire_after=DAY)
    for path in ("/login", "/read", "/write", "/owner?bob", "/owner?ann", "/anonymous"):
        warm.get(path)  # connections open and scripts loaded before counting
    trips: Dict[str, int] = {}
    for kind, path in (("owned", "/login"), ("anonymous", "/anonymous")):
        app = make_app(owner_handler, store, expire_after=DAY)
        trips[f"new {kind}"] = count(lambda: app.get(path)).round_trips
        trips[f"read {kind}"] = count(lambda: app.get("/read")).round_trips
        trips[f"write {kind}"] = count(lambda: app.get("/write")).round_trips
    owner_set = make_app(owner_handler, store, expire_after=DAY)
    owner_set.get("/anonymous")
    trips["owner set"] = count(lambda: owner_set.get("/owner?ann")).round_trips
    trips["owner replaced"] = count(lambda: owner_set.get("/owner?bob")).round_trips
    trips["owner removed"] = count(lambda: owner_set.get("/owner")).round_trips
    return trips


def test_an_owner_costs_no_round_trip_on_one_server(
    server: RedisProcess, store: RedisStore, make_app: Callable[..., TestApp]
) -> None:
    # The owner's index changes inside the commit script.
    trips = owner_round_trips(lambda request: counted(server, request), make_app, store)
    assert trips == {
        "new owned": 1,
        "read owned": 1,
        "write owned": 2,
        "new anonymous": 1,
        "read anonymous": 1,
        "write anonymous": 2,
        "owner set": 2,
        "owner replaced": 2,
        "owner removed": 2,
    }


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSetup]:
    with redis_cluster(primaries=3) as setup:
        yield setup


def test_an_owner_costs_a_command_more_on_a_cluster_when_it_changes(
    cluster: ClusterSetup, make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    # The owner's index lives in another slot: joining it is one command
    # before the commit, leaving it one command after.
    store = RedisStore(cluster.url, clock=clock)
    try:
        trips = owner_round_trips(lambda request: counted_on(cluster.nodes, request), make_app, store)
    finally:
        store.close()
    assert trips == {
        "new owned": 2,
        "read owned": 1,
        "write owned": 2,
        "new anonymous": 1,
        "read anonymous": 1,
        "write anonymous": 2,
        "owner set": 3,
        "owner replaced": 4,
        "owner removed": 3,
    }
