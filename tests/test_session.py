"""The Session object: its mapping API, the original package's API and thread safety."""

from __future__ import annotations

import datetime
import json
import threading
from typing import Any, Callable, Dict, List

import pytest
from webtest import TestApp

from wsgisession.session import Session


def run(make_app: Callable[..., TestApp], handler: Callable[[Session, dict], Any], **options: Any) -> Any:
    return make_app(handler, **options).get("/").json


def test_mapping_api(make_app: Callable[..., TestApp]) -> None:
    def handler(session: Session, environ: dict) -> Any:
        session["a"] = 1
        session.set("b", 2)
        session.update({"c": 3}, d=4)
        assert session.setdefault("a", 99) == 1
        assert session.setdefault("e", 5) == 5
        del session["b"]
        popped = session.pop("c")
        missing = session.pop("nope", "default")
        with pytest.raises(KeyError):
            session.pop("nope")
        with pytest.raises(KeyError):
            session["nope"]
        return {
            "popped": popped,
            "missing": missing,
            "get_missing": session.get("nope"),
            "keys": sorted(session.keys()),
            "items": sorted(session.items()),
            "values": sorted(session.values()),
            "len": len(session),
            "in": ["a" in session, "b" in session],
            "iter": sorted(session),
            "equal": session == {"a": 1, "d": 4, "e": 5},
        }

    assert run(make_app, handler) == {
        "popped": 3,
        "missing": "default",
        "get_missing": None,
        "keys": ["a", "d", "e"],
        "items": [["a", 1], ["d", 4], ["e", 5]],
        "values": [1, 4, 5],
        "len": 3,
        "in": [True, False],
        "iter": ["a", "d", "e"],
        "equal": True,
    }


def test_clear_removes_every_key_but_keeps_the_session(make_app: Callable[..., TestApp]) -> None:
    def handler(session: Session, environ: dict) -> Any:
        if environ["PATH_INFO"] == "/fill":
            session.update(a=1, b=2)
        elif environ["PATH_INFO"] == "/clear":
            session.clear()
            session["c"] = 3
        return session.to_dict()

    app = make_app(handler)
    app.get("/fill")
    cookie = app.cookies["session"]
    assert app.get("/clear").json == {"c": 3}
    assert app.get("/").json == {"c": 3}
    assert app.cookies["session"] == cookie


def test_facts_about_the_session(make_app: Callable[..., TestApp], clock: Any) -> None:
    facts: List[Dict[str, Any]] = []

    def handler(session: Session, environ: dict) -> Any:
        before = {"new": session.new, "modified": session.modified}
        session["n"] = session.get("n", 0) + 1
        facts.append({**before, "modified_after": session.modified, "id": session.id})
        return None

    app = make_app(handler, expire_after=3600)
    app.get("/")
    app.get("/")
    assert [fact["new"] for fact in facts] == [True, False]
    assert [fact["modified"] for fact in facts] == [False, False]
    assert [fact["modified_after"] for fact in facts] == [True, True]
    assert facts[0]["id"] == facts[1]["id"] == app.cookies["session"]
    assert len(facts[0]["id"]) == 43  # 256 bits, URL-safe base64

    def expiry(session: Session, environ: dict) -> Any:
        return [session.created_at.isoformat(), session.expires_at.isoformat() if session.expires_at else None]

    created, expires = run(make_app, expiry, expire_after=3600)
    assert datetime.datetime.fromisoformat(expires) - datetime.datetime.fromisoformat(created) == datetime.timedelta(
        hours=1
    )


def test_to_dict_is_a_plain_copy_ready_for_json(make_app: Callable[..., TestApp]) -> None:
    def handler(session: Session, environ: dict) -> Any:
        session["cart"] = ["apple"]
        session.flash("notice", "hi")
        copy = session.to_dict()
        copy["cart"].append("not saved")
        return [json.loads(json.dumps(session.to_dict())), session.get("notice")]

    assert run(make_app, handler) == [{"cart": ["apple"], "notice": "hi"}, "hi"]


@pytest.mark.parametrize(
    "bad_value, reason",
    [
        (object(), "type object can not be stored"),
        ({1, 2}, "type set can not be stored"),
        (float("nan"), "finite"),
        ({1: "int key"}, "not a str"),
    ],
)
def test_unstorable_values_raise_type_error_naming_the_key(
    make_app: Callable[..., TestApp], bad_value: Any, reason: str
) -> None:
    def handler(session: Session, environ: dict) -> Any:
        with pytest.raises(TypeError, match=f"session key 'bad'.*{reason}"):
            session["bad"] = bad_value
        return "bad" in session

    assert run(make_app, handler) is False


def test_a_value_made_unstorable_after_set_fails_at_commit_naming_the_key(make_app: Callable[..., TestApp]) -> None:
    def handler(session: Session, environ: dict) -> Any:
        session["items"] = []
        session["items"].append(object())
        return None

    with pytest.raises(TypeError, match="session key 'items'"):
        make_app(handler).get("/")


def test_non_string_keys_are_refused(make_app: Callable[..., TestApp]) -> None:
    def handler(session: Session, environ: dict) -> Any:
        with pytest.raises(TypeError, match="keys must be str"):
            session[1] = "x"  # type: ignore[index]
        return None

    run(make_app, handler)


def test_flash_via_getitem_and_pop(make_app: Callable[..., TestApp]) -> None:
    def handler(session: Session, environ: dict) -> Any:
        if environ["PATH_INFO"] == "/set":
            session.flash("a", 1)
            session.flash("b", 2)
            return None
        present = ["a" in session, "b" in session]
        if environ["PATH_INFO"] == "/again":
            return present
        return [present, session["a"], session.pop("b"), "a" in session, session.get("a")]

    app = make_app(handler)
    app.get("/set")
    assert app.get("/").json == [[True, True], 1, 2, False, None]
    assert app.get("/again").json == [False, False]


def test_setting_a_flash_key_again_as_plain_value_makes_it_stay(make_app: Callable[..., TestApp]) -> None:
    def handler(session: Session, environ: dict) -> Any:
        if environ["PATH_INFO"] == "/flash":
            session.flash("k", "once")
        elif environ["PATH_INFO"] == "/plain":
            session["k"] = "kept"
        return session.get("k") if environ["PATH_INFO"] == "/read" else None

    app = make_app(handler)
    app.get("/flash")
    app.get("/plain")
    assert app.get("/read").json == "kept"
    assert app.get("/read").json == "kept"


def test_delete_then_set_starts_a_new_session(make_app: Callable[..., TestApp]) -> None:
    def handler(session: Session, environ: dict) -> Any:
        if environ["PATH_INFO"] == "/logout":
            session.delete()
            session.flash("notice", "logged out")
        else:
            session.setdefault("user", "ann")
        return dict(session.items())

    app = make_app(handler)
    app.get("/")
    old = app.cookies["session"]
    assert app.get("/logout").json == {"notice": "logged out"}
    assert app.cookies["session"] != old
    assert app.get("/").json == {"notice": "logged out", "user": "ann"}


def test_sixteen_threads_in_one_request_lose_nothing(make_app: Callable[..., TestApp]) -> None:
    def handler(session: Session, environ: dict) -> Any:
        errors: List[BaseException] = []

        def work(thread: int) -> None:
            try:
                for index in range(200):
                    key = f"t{thread}-{index}"
                    session[key] = index
                    assert session.get(key) == index
                    if index % 3 == 0:
                        del session[key]
                    len(session)
                    list(session.items())
            except BaseException as exc:  # noqa: BLE001 - collected and reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(thread,)) for thread in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {"errors": [repr(error) for error in errors], "len": len(session)}

    app = make_app(handler)
    expected = 16 * (200 - len(range(0, 200, 3)))
    assert app.get("/").json == {"errors": [], "len": expected}
    assert app.get("/").json["len"] == expected


def test_repr_does_not_leak_the_id(make_app: Callable[..., TestApp]) -> None:
    def handler(session: Session, environ: dict) -> Any:
        session["user"] = "ann"
        return [repr(session), session.id]

    text, session_id = run(make_app, handler)
    assert session_id not in text and "user" in text


def test_popitem_takes_flash_values_once(make_app: Callable[..., TestApp]) -> None:
    def handler(session: Session, environ: dict) -> Any:
        if environ["PATH_INFO"] == "/set":
            session.flash("notice", "hi")
            return None
        taken = [session.popitem()]
        with pytest.raises(KeyError):
            session.popitem()
        return taken

    app = make_app(handler)
    app.get("/set")
    assert app.get("/").json == [["notice", "hi"]]
