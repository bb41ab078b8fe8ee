"""``loads`` parses like ``json.loads``: the same values, and the same errors, for any text."""

from __future__ import annotations

import json
from typing import Any, Tuple, Union

import pytest

from wsgisession.serialization import dumps, loads

TEXTS = [
    dumps({"data": {"name": "Ada", "roles": ["admin"]}, "flash": [], "created": 1.5, "expires": None}),
    dumps({"é": "ü \u2603", 'quote"and\\backslash': "\n"}),
    ' {"padded": true} ',
    '{"a": 1}x',
    "",
    "nul",
    '{"a": NaN}',
    '"\\ud800"',
    "[1, 2",
    dumps({"a": 1}).encode("utf-8"),
    dumps({"é": "ü"}).encode("utf-8"),
    "\ufeff{}".encode("utf-8"),
    dumps({"a": 1}).encode("utf-16"),
    b"\xff{}",
    bytearray(b'{"a": 1}'),
]


def outcome(parse: Any, text: Union[str, bytes, bytearray]) -> Tuple[str, Any]:
    try:
        return "value", parse(text)
    except Exception as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("text", TEXTS, ids=repr)
def test_loads_answers_what_json_loads_answers(text: Union[str, bytes, bytearray]) -> None:
    expected = outcome(json.loads, text)
    got = outcome(loads, text)
    if expected[0] == "value" and expected[1] != expected[1]:  # NaN is not equal to itself
        assert got[0] == "value" and repr(got[1]) == repr(expected[1])
    else:
        assert got == expected
