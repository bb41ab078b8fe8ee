"""CookieStore: the store suite, then signing, rotation, tampering, expiry, size, encryption and fuzzing."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import BadSignature, Signer, base64_decode, base64_encode
from webtest import TestApp, TestResponse
from werkzeug.http import parse_cookie

from wsgisession import SessionCookieTooLarge, SessionError, SessionMiddleware
from wsgisession.store import generate_session_id
from wsgisession.stores.cookie import COMPRESS_MIN_BYTES, MAX_COOKIE_CHARS, MIN_SECRET_KEY_BYTES, CookieStore
from wsgisession.testing import FakeClock

from .store_suite import DAY, StoreSuite, clone, cookie_of
from .support import browser, counter_app, json_app

SECRET = "test-secret-" + "s" * 32
OLD_SECRET = "old-secret-" + "o" * 32
OTHER_SECRET = "someone-else's-secret-" + "x" * 32
AES_KEY = bytes(range(32))
OLD_AES_KEY = bytes(range(100, 132))
SALT = "wsgisession.cookie"

FRESH = {"new": True, "data": {}}


def state(session: Any, environ: dict) -> Any:
    """Handler: what the request sees of its session (flash values are listed, not consumed)."""
    return {"new": session.new, "data": dict(session.items())}


def login(session: Any, environ: dict) -> Any:
    """Handler: /login stores a user and returns the state; any other path only reads."""
    if environ["PATH_INFO"] == "/login":
        session["user"] = "ann"
    return state(session, environ)


def signer(secret: Any = SECRET, salt: str = SALT) -> Signer:
    """A stock itsdangerous signer that makes the signatures CookieStore documents."""
    return Signer(secret, salt=salt, key_derivation="hmac", digest_method=hashlib.sha256)


def forge(body: bytes, flag: str = "j", secret: Any = SECRET, salt: str = SALT) -> str:
    """A cookie with a valid signature around any body: what only a holder of the key can make."""
    return signer(secret, salt).sign(flag.encode("ascii") + base64_encode(body)).decode("ascii")


def payload_json(session_id: str, data: Dict[str, Any], created: float, refreshed: float) -> bytes:
    return json.dumps([session_id, created, refreshed, data, []]).encode()


def body_of(cookie: str) -> bytes:
    """The decoded bytes between the flag and the signature."""
    return base64_decode(cookie[1:].rsplit(".", 1)[0])


def payload_of(cookie: str) -> Any:
    """The JSON payload of a signed (not encrypted) cookie: readable by anyone."""
    body = body_of(cookie)
    return json.loads(zlib.decompress(body) if cookie[0] == "z" else body)


def send(app: TestApp, value: str, path: str = "/") -> TestResponse:
    """Request with ``session=<value>`` as a server would deliver it: UTF-8 on the wire, latin-1 in environ."""
    wire = value.encode("utf-8").decode("latin-1")
    return app.get(path, extra_environ={"HTTP_COOKIE": "session=" + wire})


def set_cookie_value(response: TestResponse) -> Optional[str]:
    header = response.headers.get("Set-Cookie")
    if header is None:
        return None
    return header.split(";", 1)[0].split("=", 1)[1]


def logged_in(make_app: Callable[..., TestApp], store: CookieStore, **options: Any) -> str:
    app = make_app(login, store, **options)
    app.get("/login")
    return cookie_of(app)


def reading(make_app: Callable[..., TestApp], store: CookieStore, cookie: str, **options: Any) -> TestApp:
    app = make_app(login, store, **options)
    app.set_cookie("session", cookie)
    return app


# -- the behaviour every store shows ---------------------------------------------------


class TestCookieStore(StoreSuite):
    @pytest.fixture
    def store(self) -> CookieStore:
        return CookieStore(SECRET)


class TestEncryptedCookieStore(StoreSuite):
    @pytest.fixture
    def store(self) -> CookieStore:
        return CookieStore(SECRET, encryption_key=AES_KEY)


class TestCompressedEncryptedCookieStore(StoreSuite):
    @pytest.fixture
    def store(self) -> CookieStore:
        return CookieStore([OLD_SECRET, SECRET], encryption_key=[OLD_AES_KEY, AES_KEY], compress=True)


# -- construction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret_key",
    ["", "too short", b"x" * (MIN_SECRET_KEY_BYTES - 1), [], [SECRET, "short"], ["é" * 15]],
)
def test_empty_or_short_secret_keys_are_refused(secret_key: Any) -> None:
    with pytest.raises(ValueError, match=str(MIN_SECRET_KEY_BYTES)):
        CookieStore(secret_key)


def test_a_32_byte_key_is_the_minimum() -> None:
    assert CookieStore("k" * MIN_SECRET_KEY_BYTES).client_side
    assert CookieStore(["é" * 16]).client_side  # 32 bytes in UTF-8


@pytest.mark.parametrize("secret_key", [None, 12345678901234567890123456789012345, [SECRET, None]])
def test_secret_keys_must_be_text_or_bytes(secret_key: Any) -> None:
    with pytest.raises(TypeError):
        CookieStore(secret_key)


@pytest.mark.parametrize("encryption_key", [b"", b"k" * 15, b"k" * 33, [], [AES_KEY, b"k" * 20]])
def test_encryption_keys_must_be_aes_sized(encryption_key: Any) -> None:
    with pytest.raises(ValueError):
        CookieStore(SECRET, encryption_key=encryption_key)


def test_encryption_keys_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="bytes"):
        CookieStore(SECRET, encryption_key=["k" * 32])  # type: ignore[list-item]


def test_missing_cryptography_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ImportError, match=r"wsgisession\[crypto\]"):
        CookieStore(SECRET, encryption_key=AES_KEY)
    assert CookieStore(SECRET).client_side  # signing alone does not need it


# -- the cookie: signed with HMAC-SHA256, readable, not editable ------------------------------


def test_cookie_is_signed_by_itsdangerous_with_sha256(make_app: Callable[..., TestApp]) -> None:
    cookie = logged_in(make_app, CookieStore(SECRET))
    assert signer().unsign(cookie)
    sha1_signer = Signer(SECRET, salt=SALT, key_derivation="hmac")  # itsdangerous's default digest
    with pytest.raises(BadSignature):
        sha1_signer.unsign(cookie)


def test_the_signed_payload_carries_id_times_and_data(make_app: Callable[..., TestApp], clock: FakeClock) -> None:
    cookie = logged_in(make_app, CookieStore(SECRET))
    session_id, created, refreshed, data, flash, persistent = payload_of(cookie)
    assert persistent is True
    assert len(session_id) == 43
    assert created == refreshed == clock()
    assert data == {"user": "ann"}
    assert flash == []


def test_a_forged_payload_built_like_the_store_does_is_accepted(
    make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    # The control for the malformed-payload tests below: forge() makes real cookies.
    payload = payload_json(generate_session_id(), {"user": "bob"}, clock(), clock())
    for cookie in [forge(payload), forge(zlib.compress(payload), flag="z")]:
        assert reading(make_app, CookieStore(SECRET), cookie).get("/").json == {"new": False, "data": {"user": "bob"}}


def test_editing_the_readable_payload_breaks_the_signature(make_app: Callable[..., TestApp], clock: FakeClock) -> None:
    store = CookieStore(SECRET)
    cookie = logged_in(make_app, store, expire_after=DAY)
    session_id, created, refreshed, data, flash, _ = payload_of(cookie)
    signature = cookie.rsplit(".", 1)[1]
    clock.advance(2 * DAY)
    edits = [
        [session_id, created, refreshed, {"user": "admin"}, flash],  # privilege escalation
        [session_id, clock(), clock(), data, flash],  # reviving an expired session
        [generate_session_id(), created, refreshed, data, flash],  # another id
    ]
    for edit in edits:
        tampered = "j" + base64_encode(json.dumps(edit).encode()).decode() + "." + signature
        assert reading(make_app, store, tampered, expire_after=DAY).get("/").json == FRESH


# -- key rotation ---------------------------------------------------------------------------


def test_cookie_signed_with_an_old_key_is_read_and_re_signed_with_the_newest(
    make_app: Callable[..., TestApp],
) -> None:
    old_cookie = logged_in(make_app, CookieStore(OLD_SECRET))
    rotated = CookieStore([OLD_SECRET, SECRET])

    def visit(session: Any, environ: dict) -> Any:
        session["visits"] = session.get("visits", 0) + 1
        return dict(session.items())

    app = make_app(visit, rotated)
    app.set_cookie("session", old_cookie)
    assert app.get("/").json == {"user": "ann", "visits": 1}
    new_cookie = cookie_of(app)
    assert signer(SECRET).unsign(new_cookie)
    with pytest.raises(BadSignature):
        signer(OLD_SECRET).unsign(new_cookie)
    # Only the newest key is needed from now on.
    assert reading(make_app, CookieStore(SECRET), new_cookie).get("/").json["data"] == {"user": "ann", "visits": 1}


def test_a_refresh_re_signs_an_old_key_cookie_within_the_refresh_interval(
    make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    old_cookie = logged_in(make_app, CookieStore(OLD_SECRET), expire_after=DAY)
    app = reading(make_app, CookieStore([OLD_SECRET, SECRET]), old_cookie, expire_after=DAY)
    clock.advance(0.05 * DAY)
    response = app.get("/")
    assert response.json["data"] == {"user": "ann"}
    assert "Set-Cookie" not in response.headers  # a read inside the refresh interval writes nothing
    clock.advance(0.1 * DAY)
    refreshed_cookie = set_cookie_value(app.get("/"))
    assert refreshed_cookie is not None and signer(SECRET).unsign(refreshed_cookie)


def test_a_key_removed_from_the_list_no_longer_verifies(make_app: Callable[..., TestApp]) -> None:
    old_cookie = logged_in(make_app, CookieStore(OLD_SECRET))
    assert reading(make_app, CookieStore([OLD_SECRET, SECRET]), old_cookie).get("/").json["data"] == {"user": "ann"}
    response = reading(make_app, CookieStore([SECRET]), old_cookie).get("/")
    assert response.json == FRESH
    assert response.headers["Set-Cookie"].startswith("session=;")  # the rejected cookie is removed


# -- tampering: every part of the cookie ------------------------------------------------------


def _replace(text: str, index: int, alternatives: str = "AB") -> str:
    char = alternatives[0] if text[index] != alternatives[0] else alternatives[1]
    return text[:index] + char + text[index + 1 :]


def _in_signature(cookie: str, index: int) -> str:
    dot = cookie.rindex(".")
    return cookie[: dot + 1] + _replace(cookie[dot + 1 :], index)


TAMPERINGS: Dict[str, Callable[[str], str]] = {
    "flag j to z": lambda c: "z" + c[1:],
    "flag j to e": lambda c: "e" + c[1:],
    "flag removed": lambda c: c[1:],
    "flag doubled": lambda c: c[0] + c,
    "payload first char": lambda c: _replace(c, 1),
    "payload middle char": lambda c: _replace(c, c.rindex(".") // 2),
    "payload last char": lambda c: _replace(c, c.rindex(".") - 1),
    "payload char dropped": lambda c: c[:5] + c[6:],
    "payload char added": lambda c: c[:5] + "A" + c[5:],
    "signature first char": lambda c: _in_signature(c, 0),
    "signature last char": lambda c: _in_signature(c, -1),
    "signature last char, same decoded bits": lambda c: c[:-1] + chr(ord(c[-1]) + 1),
    "signature truncated": lambda c: c[:-1],
    "signature extended": lambda c: c + "A",
    "signature with a char outside base64": lambda c: c[:-5] + "*" + c[-5:],
    "signature removed": lambda c: c.rsplit(".", 1)[0],
    "separator removed": lambda c: c.replace(".", ""),
    "truncated to half": lambda c: c[: len(c) // 2],
    "truncated to the flag": lambda c: c[:1],
    "empty": lambda c: "",
    "padding added": lambda c: c.replace(".", "==."),
    "non-ASCII in the payload": lambda c: c[:3] + "é" + c[4:],
    "non-ASCII appended": lambda c: c + "ü",
    "zero byte": lambda c: c[:3] + "\x00" + c[4:],
}


@pytest.mark.parametrize("tamper", list(TAMPERINGS.values()), ids=list(TAMPERINGS))
def test_tampered_cookie_gives_a_fresh_session(make_app: Callable[..., TestApp], tamper: Callable[[str], str]) -> None:
    store = CookieStore(SECRET)
    cookie = logged_in(make_app, store)
    assert cookie[0] == "j"
    tampered = tamper(cookie)
    assert tampered != cookie
    response = send(make_app(login, store), tampered)
    assert response.status_int == 200
    assert response.json == FRESH


@pytest.mark.parametrize(
    "foreign",
    [
        CookieStore(OTHER_SECRET),
        CookieStore(SECRET, salt="another.app"),
        CookieStore(SECRET, encryption_key=AES_KEY),
    ],
    ids=["other key", "same key, other salt", "encrypted by a store that only signs"],
)
def test_cookie_from_a_foreign_store_gives_a_fresh_session(
    make_app: Callable[..., TestApp], foreign: CookieStore
) -> None:
    foreign_cookie = logged_in(make_app, foreign)
    assert reading(make_app, CookieStore(SECRET), foreign_cookie).get("/").json == FRESH


def test_signed_cookie_is_refused_by_a_store_that_encrypts(make_app: Callable[..., TestApp]) -> None:
    plain_cookie = logged_in(make_app, CookieStore(SECRET))
    assert reading(make_app, CookieStore(SECRET, encryption_key=AES_KEY), plain_cookie).get("/").json == FRESH


def _after_id(rest: str) -> bytes:
    """A payload starting with a well-formed id, then ``rest``."""
    return ('["' + "A" * 43 + '", ' + rest + "]").encode()


@pytest.mark.parametrize(
    "flag, body",
    [
        ("j", b"not json"),
        ("j", b""),
        ("j", b"[]"),
        ("j", b"{}"),
        ("j", b"null"),
        ("j", b'["short id", 1, 2, {}, []]'),
        ("j", b"[123, 1, 2, {}, []]"),
        ("j", _after_id('"1", 2, {}, []')),
        ("j", _after_id("true, 2, {}, []")),
        ("j", _after_id("1, Infinity, {}, []")),
        ("j", _after_id("1, NaN, {}, []")),
        ("j", _after_id("1, 1e999, {}, []")),
        ("j", _after_id("1" + "0" * 400 + ", 2, {}, []")),
        ("j", _after_id("1, 2, [], []")),
        ("j", _after_id("1, 2, {}, {}")),
        ("j", _after_id("1, 2, {}, [1]")),
        ("j", _after_id('1, 2, {}, [], "extra"')),
        ("j", b"\xff\xfe not UTF-8"),
        ("j", b"[" * 2500),
        ("z", b"not zlib data"),
        ("z", zlib.compress(b"not json")),
        ("z", zlib.compress(b"[]")),
    ],
)
def test_malformed_payload_with_a_valid_signature_gives_a_fresh_session(
    make_app: Callable[..., TestApp], flag: str, body: bytes
) -> None:
    # Only a holder of the key can sign these; a bug or a leaked key must still not give a 500.
    response = reading(make_app, CookieStore(SECRET), forge(body, flag)).get("/")
    assert response.status_int == 200
    assert response.json == FRESH


def test_oversized_cookie_is_rejected_before_decoding(make_app: Callable[..., TestApp], clock: FakeClock) -> None:
    payload = payload_json(generate_session_id(), {"big": "x" * MAX_COOKIE_CHARS}, clock(), clock())
    cookie = forge(payload)  # validly signed, but no browser would have kept it
    assert len(cookie) > MAX_COOKIE_CHARS
    assert reading(make_app, CookieStore(SECRET), cookie).get("/").json == FRESH


def test_rejections_are_logged_at_debug_level(
    make_app: Callable[..., TestApp], caplog: pytest.LogCaptureFixture
) -> None:
    cookie = logged_in(make_app, CookieStore(OTHER_SECRET))
    with caplog.at_level(logging.DEBUG, logger="wsgisession"):
        reading(make_app, CookieStore(SECRET), cookie).get("/")
    assert any("signature does not verify" in record.getMessage() for record in caplog.records)
    assert all(record.levelno == logging.DEBUG for record in caplog.records)


# -- expiry from the signed times -------------------------------------------------------------


def test_expired_cookie_replayed_gives_a_fresh_session(make_app: Callable[..., TestApp], clock: FakeClock) -> None:
    store = CookieStore(SECRET)
    cookie = logged_in(make_app, store, expire_after=DAY)
    clock.advance(DAY - 1)
    assert reading(make_app, store, cookie, expire_after=DAY).get("/").json["data"] == {"user": "ann"}
    clock.advance(2)
    response = reading(make_app, store, cookie, expire_after=DAY).get("/")
    assert response.json == FRESH
    assert response.headers["Set-Cookie"].startswith("session=;")


def test_an_older_cookie_dies_on_its_own_signed_time(make_app: Callable[..., TestApp], clock: FakeClock) -> None:
    store = CookieStore(SECRET)
    first = logged_in(make_app, store, expire_after=DAY)
    clock.advance(0.5 * DAY)
    app = reading(make_app, store, first, expire_after=DAY)
    app.get("/")  # the refresh issues a newer cookie
    second = cookie_of(app)
    assert second != first
    clock.advance(0.6 * DAY)  # past the first cookie's deadline, within the second's
    assert reading(make_app, store, first, expire_after=DAY).get("/").json == FRESH
    assert reading(make_app, store, second, expire_after=DAY).get("/").json["data"] == {"user": "ann"}


def test_max_lifetime_counts_from_the_signed_creation_time(make_app: Callable[..., TestApp], clock: FakeClock) -> None:
    store = CookieStore(SECRET)
    options = {"expire_after": DAY, "max_lifetime": 1.5 * DAY}
    cookie = logged_in(make_app, store, **options)
    app = reading(make_app, store, cookie, **options)
    clock.advance(0.9 * DAY)
    assert app.get("/").json["data"] == {"user": "ann"}  # refreshed: a new cookie, same creation time
    assert payload_of(cookie_of(app))[1] == payload_of(cookie)[1]
    clock.advance(0.7 * DAY)
    assert app.get("/").json == FRESH


# -- delete, regenerate and concurrency: what a cookie session can and can not do ---------------


def test_a_copied_cookie_stays_valid_after_delete_until_it_expires(
    make_app: Callable[..., TestApp], clock: FakeClock
) -> None:
    # The README's warning, shown: delete() only asks this browser to drop its cookie.
    store = CookieStore(SECRET)
    cookie = logged_in(make_app, store, expire_after=DAY)
    app = make_app(lambda session, environ: session.delete(), store, expire_after=DAY)
    app.set_cookie("session", cookie)
    assert app.get("/logout").headers["Set-Cookie"].startswith("session=;")
    assert reading(make_app, store, cookie, expire_after=DAY).get("/").json["data"] == {"user": "ann"}
    clock.advance(DAY)
    assert reading(make_app, store, cookie, expire_after=DAY).get("/").json == FRESH


def test_regenerate_gives_a_new_id_but_the_old_cookie_still_opens_the_old_session(
    make_app: Callable[..., TestApp],
) -> None:
    store = CookieStore(SECRET)
    before = logged_in(make_app, store)

    def regenerate(session: Any, environ: dict) -> Any:
        session.regenerate()
        return session.id

    app = make_app(regenerate, store)
    app.set_cookie("session", before)
    new_id = app.get("/").json
    after = cookie_of(app)
    assert payload_of(after)[0] == new_id != payload_of(before)[0]
    assert payload_of(after)[3] == payload_of(before)[3] == {"user": "ann"}
    assert reading(make_app, store, before).get("/").json["data"] == {"user": "ann"}


def test_concurrent_writers_each_issue_a_whole_cookie_and_the_last_one_wins(
    make_app: Callable[..., TestApp],
) -> None:
    # The README's concurrency caveat, shown: the browser keeps only the cookie it got last.
    store = CookieStore(SECRET)
    start = make_app(lambda session, environ: session.setdefault("cart", ["apple"]), store)
    start.get("/")

    def add(session: Any, environ: dict) -> Any:
        session["cart"] = session["cart"] + [environ["PATH_INFO"].strip("/")]
        return session["cart"]

    app = make_app(add, store)
    first, second = clone(app, cookie_of(start)), clone(app, cookie_of(start))
    assert first.get("/pear").json == ["apple", "pear"]
    assert second.get("/plum").json == ["apple", "plum"]
    assert payload_of(cookie_of(second))[3] == {"cart": ["apple", "plum"]}  # the pear is gone


def test_one_store_serves_many_threads(make_app: Callable[..., TestApp]) -> None:
    store = CookieStore(SECRET, encryption_key=AES_KEY)

    def one_browser(_: int) -> Any:
        app = make_app(counter_app, store)
        return [app.get("/").json for _ in range(10)][-1]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one_browser, range(16)))
    assert results == [{"xx": 29, "yy": 10}] * 16


def test_flash_is_removed_from_the_reissued_cookie(make_app: Callable[..., TestApp]) -> None:
    store = CookieStore(SECRET)
    setter = make_app(lambda session, environ: [session.set("user", "ann"), session.flash("notice", "saved")], store)
    setter.get("/")
    with_flash = cookie_of(setter)
    assert payload_of(with_flash)[3:5] == [{"user": "ann", "notice": "saved"}, ["notice"]]
    reader = make_app(lambda session, environ: session.get("notice"), store)
    reader.set_cookie("session", with_flash)
    assert reader.get("/").json == "saved"
    assert payload_of(cookie_of(reader))[3:5] == [{"user": "ann"}, []]


def test_reading_the_last_flash_value_expires_the_cookie(make_app: Callable[..., TestApp]) -> None:
    store = CookieStore(SECRET)
    setter = make_app(lambda session, environ: session.flash("notice", "saved"), store)
    setter.get("/")
    reader = make_app(lambda session, environ: session.get("notice"), store)
    reader.set_cookie("session", cookie_of(setter))
    response = reader.get("/")
    assert response.json == "saved"
    assert response.headers["Set-Cookie"].startswith("session=;") and "Max-Age=0" in response.headers["Set-Cookie"]
    assert cookie_of(reader) == ""
    assert reader.get("/").json is None


# -- size ------------------------------------------------------------------------------------------


def test_too_large_a_session_raises_naming_size_and_limit(make_app: Callable[..., TestApp]) -> None:
    app = make_app(lambda session, environ: session.set("blob", secrets.token_urlsafe(3500)), CookieStore(SECRET))
    with pytest.raises(SessionCookieTooLarge) as raised:
        app.get("/")
    assert raised.value.limit == 4096 and raised.value.size > 4096
    assert f"{raised.value.size} bytes" in str(raised.value) and "4096 bytes" in str(raised.value)


def test_a_session_just_under_the_limit_round_trips(make_app: Callable[..., TestApp]) -> None:
    blob = secrets.token_urlsafe(2500)
    app = make_app(lambda session, environ: session.setdefault("blob", blob), CookieStore(SECRET))
    assert 3500 < len(app.get("/").headers["Set-Cookie"]) <= 4096
    assert app.get("/").json == blob


def test_compression_fits_a_repetitive_session_that_would_not_fit_otherwise(
    make_app: Callable[..., TestApp],
) -> None:
    rows = [{"sku": f"item-{index}", "quantity": 1, "gift": False} for index in range(150)]
    compressed = make_app(lambda session, environ: session.setdefault("cart", rows), CookieStore(SECRET))
    compressed.get("/")
    assert cookie_of(compressed)[0] == "z"
    assert compressed.get("/").json == rows
    uncompressed = make_app(
        lambda session, environ: session.setdefault("cart", rows), CookieStore(SECRET, compress=False)
    )
    with pytest.raises(SessionCookieTooLarge):
        uncompressed.get("/")


def test_small_payloads_are_not_compressed(make_app: Callable[..., TestApp]) -> None:
    cookie = logged_in(make_app, CookieStore(SECRET))
    assert cookie[0] == "j" and len(body_of(cookie)) < COMPRESS_MIN_BYTES


# -- encryption ----------------------------------------------------------------------------------


SECRET_VALUE = "correct horse battery staple 42"


def _set_secret(session: Any, environ: dict) -> Any:
    session["password_hint"] = SECRET_VALUE
    return None


def test_encrypted_cookie_reveals_nothing(make_app: Callable[..., TestApp]) -> None:
    plain = make_app(_set_secret, CookieStore(SECRET))
    plain.get("/")
    assert SECRET_VALUE.encode() in body_of(cookie_of(plain))  # the control: signing alone hides nothing
    for store in [
        CookieStore(SECRET, encryption_key=AES_KEY),
        CookieStore(SECRET, encryption_key=AES_KEY, compress=True),
    ]:
        app = make_app(_set_secret, store)
        app.get("/")
        cookie = cookie_of(app)
        assert cookie[0] == "e"
        body = body_of(cookie)
        for secret_part in [SECRET_VALUE.encode(), b"password_hint", b"horse", b"staple"]:
            assert secret_part not in body
        assert SECRET_VALUE not in cookie and "password" not in cookie
        reader = make_app(lambda session, environ: session.get("password_hint"), store)
        reader.set_cookie("session", cookie)
        assert reader.get("/").json == SECRET_VALUE


def test_encrypted_cookie_is_compressed_only_when_asked(make_app: Callable[..., TestApp]) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    rows = [{"sku": f"item-{index}", "quantity": 1} for index in range(40)]
    sizes = {}
    for compress in [False, True]:
        app = make_app(
            lambda session, environ: session.setdefault("cart", rows),
            CookieStore(SECRET, encryption_key=AES_KEY, compress=compress),
        )
        app.get("/")
        body = body_of(cookie_of(app))
        plaintext = AESGCM(AES_KEY).decrypt(body[:12], body[12:], SALT.encode())
        assert plaintext[:1] == (b"z" if compress else b"j")
        assert app.get("/").json == rows
        sizes[compress] = len(body)
    assert sizes[True] < sizes[False]


def test_each_encrypted_cookie_has_its_own_nonce(make_app: Callable[..., TestApp]) -> None:
    store = CookieStore(SECRET, encryption_key=AES_KEY)
    cookies = set()
    for _ in range(3):
        app = make_app(lambda session, environ: session.setdefault("same", "value"), store)
        app.get("/")
        cookies.add(body_of(cookie_of(app))[:12])
    assert len(cookies) == 3


def test_retired_encryption_key_fails_and_rotation_works(make_app: Callable[..., TestApp]) -> None:
    old_cookie = logged_in(make_app, CookieStore(SECRET, encryption_key=OLD_AES_KEY))
    retired = CookieStore(SECRET, encryption_key=AES_KEY)
    assert reading(make_app, retired, old_cookie).get("/").json == FRESH
    rotating = CookieStore(SECRET, encryption_key=[OLD_AES_KEY, AES_KEY])
    app = make_app(lambda session, environ: session.setdefault("visited", True) and dict(session.items()), rotating)
    app.set_cookie("session", old_cookie)
    assert app.get("/").json == {"user": "ann", "visited": True}
    new_cookie = cookie_of(app)
    assert reading(make_app, retired, new_cookie).get("/").json["data"] == {"user": "ann", "visited": True}
    assert reading(make_app, CookieStore(SECRET, encryption_key=OLD_AES_KEY), new_cookie).get("/").json == FRESH


def _encrypted_body(plaintext: bytes, key: bytes = AES_KEY, associated_data: bytes = SALT.encode()) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def test_ciphertext_is_authenticated_by_aes_gcm_itself(make_app: Callable[..., TestApp], clock: FakeClock) -> None:
    store = CookieStore(SECRET, encryption_key=AES_KEY)
    payload = b"j" + payload_json(generate_session_id(), {"user": "bob"}, clock(), clock())
    good = _encrypted_body(payload)
    assert reading(make_app, store, forge(good, "e")).get("/").json["data"] == {"user": "bob"}  # the control
    flipped = good[:20] + bytes([good[20] ^ 1]) + good[21:]
    bad_bodies = {
        "flipped ciphertext bit": flipped,
        "other associated data": _encrypted_body(payload, associated_data=b"another.app"),
        "unknown key": _encrypted_body(payload, key=bytes(32)),
        "shorter than a nonce": good[:11],
        "no ciphertext": good[:12],
        "nested encryption flag": _encrypted_body(b"e" + payload[1:]),
        "compressed flag on plain JSON": _encrypted_body(b"z" + payload[1:]),
    }
    for name, body in bad_bodies.items():
        # Validly signed with the secret key: only the cipher can refuse these.
        assert reading(make_app, store, forge(body, "e")).get("/").json == FRESH, name


# -- fuzzing ---------------------------------------------------------------------------------------

FUZZ_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class _Fuzzer:
    """Sends fuzzed cookie values and checks what a user would see."""

    def __init__(self, store: CookieStore) -> None:
        self.clock = FakeClock()

        def handler(session: Any, environ: dict) -> Any:
            if environ["PATH_INFO"] == "/write":
                session["n"] = 1
            return state(session, environ)

        self.app = SessionMiddleware(json_app(handler), store, clock=self.clock)
        valid = browser(self.app)
        valid.get("/write")
        self.valid_cookie = cookie_of(valid)

    def check(self, value: str, wire: Optional[str] = None) -> None:
        """Send ``value`` (as UTF-8, or as the given latin-1 ``wire`` text) and expect a fresh session."""
        if wire is None:
            wire = value.encode("utf-8").decode("latin-1")
        for path, expected in [("/", FRESH), ("/write", {"new": True, "data": {"n": 1}})]:
            response = browser(self.app).get(path, extra_environ={"HTTP_COOKIE": "session=" + wire})
            assert response.status_int == 200
            assert response.json == expected
            issued = set_cookie_value(response)
            if issued:
                assert issued != value
                if len(value) >= 8:
                    assert value not in response.headers["Set-Cookie"]


_PLAIN = _Fuzzer(CookieStore(SECRET))
_ENCRYPTED = _Fuzzer(CookieStore(SECRET, encryption_key=AES_KEY))


@FUZZ_SETTINGS
@given(value=st.text(max_size=300))
def test_fuzzed_text_cookie_gives_a_fresh_session(value: str) -> None:
    _PLAIN.check(value)
    _ENCRYPTED.check(value)


@FUZZ_SETTINGS
@given(value=st.text(alphabet=_BASE64URL + ".jze=", max_size=400).map(lambda text: "j" + text))
def test_fuzzed_cookie_shaped_text_gives_a_fresh_session(value: str) -> None:
    _PLAIN.check(value)
    _ENCRYPTED.check("e" + value[1:])


@FUZZ_SETTINGS
@given(data=st.data())
def test_every_one_character_change_of_a_valid_cookie_is_rejected(data: st.DataObject) -> None:
    for fuzzer in (_PLAIN, _ENCRYPTED):
        cookie = fuzzer.valid_cookie
        index = data.draw(st.integers(0, len(cookie)))
        char = data.draw(st.sampled_from(_BASE64URL + ".=*é\x00"))
        operation = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        if operation == "insert":
            mutated = cookie[:index] + char + cookie[index:]
        elif operation == "delete":
            mutated = cookie[:index] + cookie[index + 1 :]
        else:
            mutated = cookie[:index] + char + cookie[index + 1 :]
        if parse_cookie("session=" + mutated.encode().decode("latin-1")).get("session") == cookie:
            continue  # not a change of the value the server sees
        fuzzer.check(mutated)


@FUZZ_SETTINGS
@given(raw=st.binary(max_size=300))
def test_fuzzed_bytes_cookie_gives_a_fresh_session(raw: bytes) -> None:
    # A server hands the header's bytes over decoded as latin-1, UTF-8 or not.
    _PLAIN.check(raw.decode("latin-1"), wire=raw.decode("latin-1"))
    _ENCRYPTED.check(raw.decode("latin-1"), wire=raw.decode("latin-1"))


def test_the_fuzzers_can_tell_a_valid_cookie(make_app: Callable[..., TestApp]) -> None:
    # The control for the fuzz tests: check() fails on a cookie that is accepted.
    for fuzzer in (_PLAIN, _ENCRYPTED):
        with pytest.raises(AssertionError):
            fuzzer.check(fuzzer.valid_cookie)


def test_setting_a_key_to_its_current_value_re_issues_no_cookie(make_app: Callable[..., TestApp]) -> None:
    store = CookieStore(SECRET)
    cookie = logged_in(make_app, store)
    again = reading(make_app, store, cookie)
    assert "Set-Cookie" not in again.get("/login").headers  # user is "ann" already


def test_reading_a_flash_value_re_issues_the_cookie_without_it(make_app: Callable[..., TestApp]) -> None:
    store = CookieStore(SECRET)
    setter = make_app(lambda session, environ: [session.set("keep", 1), session.flash("notice", "saved")], store)
    setter.get("/")
    reader = make_app(lambda session, environ: session.get("notice"), store)
    reader.set_cookie("session", cookie_of(setter))
    response = reader.get("/")
    assert response.json == "saved"
    assert payload_of(set_cookie_value(response) or "")[3] == {"keep": 1}
    assert reader.get("/").json is None


def test_the_owner_travels_in_the_cookie_but_the_server_can_not_list_or_end_sessions(
    make_app: Callable[..., TestApp],
) -> None:
    store = CookieStore(SECRET)

    def handler(session: Any, environ: dict) -> Any:
        if environ["PATH_INFO"] == "/login":
            session.owner = "ann"
            session.owner_details = {"agent": "laptop"}
        return [session.owner, session.owner_details]

    app = make_app(handler, store)
    assert app.get("/login").json == ["ann", {"agent": "laptop"}]
    assert app.get("/").json == ["ann", {"agent": "laptop"}]
    for call in (
        lambda: store.sessions_of("ann"),
        lambda: store.end_session("ann", "0" * 32),
        lambda: store.end_sessions("ann"),
    ):
        with pytest.raises(SessionError, match="generation number per user"):
            call()
