"""RedisStore against a real Redis: the store suite, TTLs, key layout, races, locks and failures.

Every key lives under a prefix unique to the test run and is deleted after each
test.  The middleware and the store share the fake clock; Redis TTLs are real
time, computed from the record's expiry relative to that clock.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterator, List

import pytest
import redis
from redis.crc import key_slot
from webtest import TestApp

from wsgisession import SessionLockTimeout, SessionStoreError
from wsgisession.stores.redis import RedisStore
from wsgisession.testing import FakeClock

from .store_suite import DAY, ServerSideSuite, clone, cookie_of, interrupted
from .support import REDIS_URL, RUN_ID, counter_app, require_service

PREFIX = f"wsgisession-test-{RUN_ID}:"


@pytest.fixture(scope="module")
def redis_url() -> str:
    return require_service("Redis", REDIS_URL)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client for looking at Redis directly; every key under PREFIX is deleted afterwards."""
    client = redis.Redis.from_url(redis_url)
    yield client
    leftovers = list(client.scan_iter(match=PREFIX + "*", count=1000))
    if leftovers:
        client.delete(*leftovers)
    client.close()


@pytest.fixture
def store(redis_url: str, redis_client: redis.Redis, clock: FakeClock) -> Iterator[RedisStore]:
    store = RedisStore(redis_url, prefix=PREFIX, clock=clock)
    yield store
    store.close()


class TestRedisStore(ServerSideSuite):
    rounds = 30
    threads = 16

    @pytest.fixture(params=["url", "decoding-client"])
    def store(
        self, request: pytest.FixtureRequest, redis_url: str, redis_client: redis.Redis, clock: FakeClock
    ) -> Iterator[RedisStore]:
        # Both kinds of reply: bytes from a client built from the URL, str from
        # a client passed in with decode_responses=True.
        if request.param == "url":
            store = RedisStore(redis_url, prefix=PREFIX, clock=clock)
            yield store
            store.close()
        else:
            client = redis.Redis.from_url(redis_url, decode_responses=True)
            yield RedisStore(client, prefix=PREFIX, clock=clock)
            client.close()


def session_keys(client: redis.Redis) -> List[bytes]:
    return sorted(client.scan_iter(match=PREFIX + "*", count=1000))


def ttl_seconds(client: redis.Redis, key: str) -> float:
    milliseconds = client.pttl(key)
    assert milliseconds > 0, f"{key} has no TTL ({milliseconds})"
    return milliseconds / 1000


# -- layout ---------------------------------------------------------------------


def test_keys_are_digests_and_the_raw_id_is_nowhere(
    make_app: Callable[..., TestApp], store: RedisStore, redis_client: redis.Redis
) -> None:
    held: Dict[str, List[bytes]] = {}

    def handler(session: Any, environ: dict) -> Any:
        session["user"] = "ann"
        session.flash("notice", "welcome")
        held["during"] = session_keys(redis_client)  # includes the request lock
        return "ok"

    app = make_app(handler, store, lock=True)
    app.get("/")  # creates the session
    cookie = cookie_of(app)
    app.get("/")  # runs under the lock
    digest = hashlib.sha256(cookie.encode()).hexdigest()
    session_key = f"{PREFIX}{{{digest}}}"
    assert held["during"] == [session_key.encode(), (session_key + ":lock").encode()]
    assert session_keys(redis_client) == [session_key.encode()]  # the lock is gone
    stored = redis_client.hgetall(session_key)
    assert {field.decode() for field in stored} == {
        "d:user",
        "f:notice",
        "m:created",
        "m:refreshed",
        "m:expires",
        "m:persistent",
        "m:record",
    }
    assert stored[b"d:user"] == b'"ann"'
    for text in [*held["during"], *stored, *stored.values()]:
        assert cookie.encode() not in text


def test_a_sessions_keys_share_one_cluster_slot(make_app: Callable[..., TestApp], store: RedisStore) -> None:
    slots = set()
    for _ in range(8):
        app = make_app(counter_app, store)
        app.get("/")
        cookie = cookie_of(app)
        slot = key_slot(store.hash_key(cookie).encode())
        assert key_slot(store.lock_key(cookie).encode()) == slot
        slots.add(slot)
    assert len(slots) > 1  # the hash tag is the digest, so sessions spread over slots


def test_a_prefix_with_braces_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match="braces"):
        RedisStore(redis_url, prefix="app:{sessions}:")


# -- TTLs -------------------------------------------------------------------------

GRACE = 10.0


def test_ttl_is_set_from_the_expiry_and_refreshed_with_it(
    make_app: Callable[..., TestApp], store: RedisStore, redis_client: redis.Redis, clock: FakeClock
) -> None:
    app = make_app(counter_app, store, expire_after=DAY)
    app.get("/")
    key = store.hash_key(cookie_of(app))
    assert DAY + GRACE - 5 < ttl_seconds(redis_client, key) <= DAY + GRACE

    # A change inside the refresh interval keeps the deadline: the times (and
    # so the TTL's end) stay as they were.
    clock.advance(0.05 * DAY)
    times = redis_client.hmget(key, "m:refreshed", "m:expires")
    app.get("/")
    assert redis_client.hget(key, "d:yy") == b"2"
    assert redis_client.hmget(key, "m:refreshed", "m:expires") == times
    assert ttl_seconds(redis_client, key) <= DAY + GRACE

    # A read after the refresh interval slides the deadline: the TTL is full again.
    reader = clone(make_app(lambda session, environ: session.get("yy"), store, expire_after=DAY), cookie_of(app))
    clock.advance(0.5 * DAY)
    response = reader.get("/")
    assert response.json == 2
    assert "Max-Age=86400" in response.headers["Set-Cookie"]
    assert DAY + GRACE - 5 < ttl_seconds(redis_client, key) <= DAY + GRACE
    assert store.cleanup() == 0  # Redis expires records itself


def test_ttl_never_passes_the_absolute_lifetime(
    make_app: Callable[..., TestApp], store: RedisStore, redis_client: redis.Redis, clock: FakeClock
) -> None:
    app = make_app(counter_app, store, expire_after=DAY, max_lifetime=1.5 * DAY)
    app.get("/")
    key = store.hash_key(cookie_of(app))
    clock.advance(0.9 * DAY)
    app.get("/")
    # Sliding would give a full day; the absolute lifetime leaves 0.6 days.
    assert 0.6 * DAY + GRACE - 5 < ttl_seconds(redis_client, key) <= 0.6 * DAY + GRACE


def test_no_expiry_means_no_ttl(make_app: Callable[..., TestApp], store: RedisStore, redis_client: redis.Redis) -> None:
    app = make_app(counter_app, store, expire_after=None)
    app.get("/")
    app.get("/")
    assert redis_client.pttl(store.hash_key(cookie_of(app))) == -1


def test_grace_is_an_option(
    make_app: Callable[..., TestApp], redis_url: str, redis_client: redis.Redis, clock: FakeClock
) -> None:
    store = RedisStore(redis_url, prefix=PREFIX, clock=clock, grace=0)
    app = make_app(counter_app, store, expire_after=60)
    app.get("/")
    assert 55 < ttl_seconds(redis_client, store.hash_key(cookie_of(app))) <= 60
    store.close()


def test_thousands_of_keys_are_written_and_cleared(
    make_app: Callable[..., TestApp], store: RedisStore, redis_client: redis.Redis
) -> None:
    # More arguments than one Lua unpack() takes: the scripts send them in chunks.
    def handler(session: Any, environ: dict) -> Any:
        if environ["PATH_INFO"] == "/fill":
            session.update({f"key{index}": index for index in range(5000)})
            session.flash("notice", "filled")
        elif environ["PATH_INFO"] == "/refill":
            session.update({f"key{index}": -index for index in range(5000)})
        elif environ["PATH_INFO"] == "/clear":
            session.clear()
            session["after"] = "clear"
        return len(session)

    app = make_app(handler, store)
    assert app.get("/fill").json == 5001
    assert app.get("/refill").json == 5001  # through apply_changes
    assert redis_client.hget(store.hash_key(cookie_of(app)), "d:key4999") == b"-4999"
    assert app.get("/clear").json == 1
    assert app.get("/count").json == 1
    fields = redis_client.hkeys(store.hash_key(cookie_of(app)))
    # clear() started the session's second generation.
    assert sorted(fields) == [
        b"d:after",
        b"m:created",
        b"m:expires",
        b"m:gen",
        b"m:persistent",
        b"m:record",
        b"m:refreshed",
    ]
    assert redis_client.hget(store.hash_key(cookie_of(app)), "m:gen") == b"1"


ODD_KEYS = ["", 'a"b', "back\\slash", "new\nline", "tab\tand\x01", "slash/ed", "grüße ✓", "\u2028", "m:record", "d:x"]


def test_odd_keys_survive_the_record_every_script_writes(make_app: Callable[..., TestApp], store: RedisStore) -> None:
    # The scripts quote keys themselves when they write m:record: whatever
    # a key holds, the record that loads is the one that was written.
    def handler(session: Any, environ: dict) -> Any:
        path = environ["PATH_INFO"]
        if path == "/create":
            session.update({key: index for index, key in enumerate(ODD_KEYS)})
        elif path == "/change":
            session.update({key: [key] for key in ODD_KEYS[::2]})
            session.flash(ODD_KEYS[1], "flash")
        elif path == "/take":
            session.get(ODD_KEYS[1])
        return sorted(session.to_dict().items())

    app = make_app(handler, store)
    created = app.get("/create").json
    assert created == sorted([key, index] for index, key in enumerate(ODD_KEYS))
    assert app.get("/read").json == created  # create_session's record
    changed = app.get("/change").json
    assert app.get("/read").json == changed  # apply_changes' record, a flash value in it
    app.get("/take")
    assert ODD_KEYS[1] not in dict(app.get("/read").json)  # consume_flash's record


def test_persist_session_replaces_a_live_record_but_never_revives_a_deleted_one(
    make_app: Callable[..., TestApp], store: RedisStore
) -> None:
    # The middleware commits through apply_changes; persist_session is the
    # basic method other code may call, and it must keep a logout too.
    def logout(session: Any, environ: dict) -> Any:
        session.delete()
        return None

    app = make_app(counter_app, store)
    app.get("/")
    cookie = cookie_of(app)
    record = store.get_session(cookie, {})
    assert record is not None and record["data"] == {"xx": 2, "yy": 1}
    record["data"] = {"yy": 5}
    store.persist_session(record, cookie, {})
    assert app.get("/").json == {"xx": 2, "yy": 6}
    clone(make_app(logout, store), cookie).get("/")
    store.persist_session(record, cookie, {})
    assert store.get_session(cookie, {}) is None


# -- round trips ------------------------------------------------------------------


class CountingRedis(redis.Redis):
    """A real client that records the commands it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: List[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(str(args[0]).upper())
        return super().execute_command(*args, **options)


def test_each_request_costs_one_round_trip_per_step(
    make_app: Callable[..., TestApp], redis_url: str, redis_client: redis.Redis, clock: FakeClock
) -> None:
    client = CountingRedis.from_url(redis_url)
    store = RedisStore(client, prefix=PREFIX, clock=clock)
    warm_up = make_app(counter_app, store, expire_after=DAY)
    warm_up.get("/")
    warm_up.get("/")  # the server now knows both scripts (a new server loads them once)
    client.sent.clear()
    app = make_app(counter_app, store, expire_after=DAY)
    app.get("/")
    assert client.sent == ["EVALSHA"]  # a new session: one script writes it and its TTL
    reader = clone(make_app(lambda session, environ: session.get("yy"), store, expire_after=DAY), cookie_of(app))
    key = store.hash_key(cookie_of(app))
    before = redis_client.hgetall(key)

    client.sent.clear()
    reader.get("/")
    assert client.sent == ["HGET"]  # a read inside the refresh interval writes nothing
    assert redis_client.hgetall(key) == before

    client.sent.clear()
    clock.advance(0.5 * DAY)
    reader.get("/")
    assert client.sent == ["HGET", "EVALSHA"]  # the refresh: one script
    after = redis_client.hgetall(key)
    changed = {field for field in before.keys() | after.keys() if before.get(field) != after.get(field)}
    assert changed == {b"m:refreshed", b"m:expires", b"m:record"}  # only the times (and the TTL) move

    client.sent.clear()
    app.get("/")
    assert client.sent == ["HGET", "EVALSHA"]
    client.close()


# -- concurrency beyond the suite ----------------------------------------------------


def test_32_concurrent_requests_set_flash_and_delete_their_own_keys(
    make_app: Callable[..., TestApp], store: RedisStore
) -> None:
    def seed(session: Any, environ: dict) -> Any:
        session.update({f"old{index}": index for index in range(32)})
        session["shared"] = "kept"
        return None

    def handler(session: Any, environ: dict) -> Any:
        index = environ["PATH_INFO"].strip("/")
        del session[f"old{index}"]
        session[f"new{index}"] = int(index)
        session.flash(f"note{index}", index)
        return None

    for round_number in range(6):
        seeder = make_app(seed, store)
        seeder.get("/")
        cookie = cookie_of(seeder)
        app = make_app(handler, store)
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda index: clone(app, cookie).get(f"/{index}"), range(32)))
        reader = clone(make_app(lambda session, environ: dict(session.items()), store), cookie)
        seen = reader.get("/").json
        expected = {"shared": "kept"}
        expected.update({f"new{index}": index for index in range(32)})
        expected.update({f"note{index}": str(index) for index in range(32)})
        assert seen == expected, f"round {round_number}"


def test_concurrent_writes_of_one_key_leave_one_whole_value(
    make_app: Callable[..., TestApp], store: RedisStore
) -> None:
    def handler(session: Any, environ: dict) -> Any:
        writer = int(environ["PATH_INFO"].strip("/"))
        session["profile"] = {"writer": writer, "items": [writer] * 50}
        return None

    for _ in range(5):
        starter = make_app(lambda session, environ: session.setdefault("profile", None), store)
        starter.get("/")
        cookie = cookie_of(starter)
        app = make_app(handler, store)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda writer: clone(app, cookie).get(f"/{writer}"), range(16)))
        profile = clone(make_app(lambda session, environ: session["profile"], store), cookie).get("/").json
        assert profile["items"] == [profile["writer"]] * 50


def test_a_refresh_after_logout_does_not_bring_the_session_back(
    make_app: Callable[..., TestApp], store: RedisStore, redis_client: redis.Redis, clock: FakeClock
) -> None:
    loaded = threading.Event()
    logged_out = threading.Event()

    def slow_reader(session: Any, environ: dict) -> Any:
        value = session.get("yy")  # loads; only the expiry refresh is due at commit
        loaded.set()
        assert logged_out.wait(10)
        return value

    app = make_app(counter_app, store, expire_after=DAY)
    app.get("/")
    cookie = cookie_of(app)
    clock.advance(0.5 * DAY)
    slow = clone(make_app(slow_reader, store, expire_after=DAY), cookie)
    logout = clone(make_app(lambda session, environ: session.delete(), store), cookie)
    assert interrupted(slow, loaded, logout, logged_out).json == 1
    assert session_keys(redis_client) == []


def test_a_regenerated_id_stays_dead_for_a_request_that_loaded_it(
    make_app: Callable[..., TestApp], store: RedisStore
) -> None:
    loaded = threading.Event()
    regenerated = threading.Event()

    def slow_writer(session: Any, environ: dict) -> Any:
        session.get("user")
        loaded.set()
        assert regenerated.wait(10)
        session["late"] = True
        return None

    def login(session: Any, environ: dict) -> Any:
        session.regenerate()
        session["user"] = "ann"
        return None

    app = make_app(lambda session, environ: session.setdefault("user", None), store)
    app.get("/")
    old_cookie = cookie_of(app)
    slow = clone(make_app(slow_writer, store), old_cookie)
    login_app = clone(make_app(login, store), old_cookie)
    interrupted(slow, loaded, login_app, regenerated)
    stale = clone(make_app(lambda session, environ: [session.new, dict(session.items())], store), old_cookie)
    assert stale.get("/").json == [True, {}]
    fresh = clone(make_app(lambda session, environ: dict(session.items()), store), cookie_of(login_app))
    assert fresh.get("/").json == {"user": "ann"}


# -- locks ------------------------------------------------------------------------


def test_a_lock_left_by_a_dead_holder_expires(
    make_app: Callable[..., TestApp], redis_url: str, redis_client: redis.Redis, clock: FakeClock
) -> None:
    store = RedisStore(redis_url, prefix=PREFIX, clock=clock, lock_expire_after=0.5)

    def increment(session: Any, environ: dict) -> Any:
        session["count"] = session.get("count", 0) + 1
        return session["count"]

    app = make_app(increment, store, lock=True)
    app.get("/")
    cookie = cookie_of(app)
    store.lock_session(cookie, 1, {})  # a holder that dies without releasing
    assert 0 < redis_client.pttl(store.lock_key(cookie)) <= 500

    impatient = clone(make_app(increment, store, lock=True, lock_timeout=0.05), cookie)
    with pytest.raises(SessionLockTimeout, match="not free within"):
        impatient.get("/")

    patient = clone(make_app(increment, store, lock=True, lock_timeout=5), cookie)
    started = time.monotonic()
    assert patient.get("/").json == 2
    assert time.monotonic() - started < 2  # waited for the lock's expiry, not the timeout
    assert redis_client.exists(store.lock_key(cookie)) == 0  # released after the request
    store.close()


# -- failures ----------------------------------------------------------------------


def test_a_closed_port_raises_session_store_error(make_app: Callable[..., TestApp], clock: FakeClock) -> None:
    store = RedisStore("redis://127.0.0.1:1/0?socket_connect_timeout=0.5", prefix=PREFIX, clock=clock)
    new_visitor = make_app(counter_app, store)
    with pytest.raises(SessionStoreError, match="RedisStore could not create the session: ConnectionError") as failed:
        new_visitor.get("/")
    assert isinstance(failed.value.__cause__, redis.exceptions.ConnectionError)

    returning = make_app(counter_app, store)
    returning.set_cookie("session", "A" * 43)
    with pytest.raises(SessionStoreError, match="RedisStore could not load the session: ConnectionError"):
        returning.get("/")
    store.close()


def test_a_refused_login_raises_session_store_error(make_app: Callable[..., TestApp], redis_url: str) -> None:
    host_and_db = redis_url.split("://", 1)[1]
    store = RedisStore(f"redis://wsgisession-nobody:wrong-password@{host_and_db}", prefix=PREFIX)
    with pytest.raises(SessionStoreError, match="AuthenticationError") as failed:
        make_app(counter_app, store).get("/")
    assert isinstance(failed.value.__cause__, redis.exceptions.AuthenticationError)
    store.close()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


def test_a_server_that_does_not_answer_raises_session_store_error(
    make_app: Callable[..., TestApp], silent_server: int
) -> None:
    store = RedisStore(f"redis://127.0.0.1:{silent_server}/0?socket_timeout=0.2", prefix=PREFIX)
    app = make_app(counter_app, store)
    app.set_cookie("session", "A" * 43)
    started = time.monotonic()
    with pytest.raises(SessionStoreError, match="RedisStore could not load the session: TimeoutError"):
        app.get("/")
    assert time.monotonic() - started < 5
    store.close()


@pytest.mark.parametrize("kind", ["hash without times", "not a hash"])
def test_a_foreign_value_under_the_key_raises_and_is_left_alone(
    make_app: Callable[..., TestApp], store: RedisStore, redis_client: redis.Redis, kind: str
) -> None:
    cookie = "B" * 43
    key = store.hash_key(cookie)
    if kind == "not a hash":
        redis_client.set(key, "someone else's value")
    else:
        redis_client.hset(key, "d:user", '"ann"')
    before = redis_client.dump(key)
    app = make_app(counter_app, store)
    app.set_cookie("session", cookie)
    with pytest.raises(SessionStoreError, match="RedisStore"):
        app.get("/")
    assert redis_client.dump(key) == before
