"""JSON with tagged round trips: the only format sessions are stored in.

Session values are converted to JSON-compatible data (``encode_value``) before a
store sees them and converted back (``decode_value``) after loading.  Types JSON
lacks are written as a small tagged object ``{"$t": tag, "$v": value}``:

========== ===================================
type       stored as
========== ===================================
datetime   ISO 8601 text (naive stays naive)
date       ISO 8601 text
UUID       canonical text
bytes      base64 text
tuple      list of encoded items
Decimal    text
========== ===================================

A plain dict that itself contains the key ``"$t"`` is wrapped as tag ``dict`` so
it can never be mistaken for a tagged value.  Pickle is never used: loading a
session can not execute code.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
import uuid
from typing import Any, Callable, Dict

__all__ = ["encode_value", "decode_value", "dumps", "loads"]

TAG = "$t"
VALUE = "$v"

_SCALARS = (str, int, bool, type(None))

#: The types JSON parsing gives that need no decoding.
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def encode_value(value: Any) -> Any:
    """Return ``value`` as JSON-compatible data, building new containers.

    Raises ``TypeError`` for a value that can not be stored (the caller adds the
    session key to the message).
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise TypeError(f"{value!r} is not a finite number and has no JSON form")
        return value
    if kind is list:
        return [encode_value(item) for item in value]
    if kind is dict:
        encoded = {}
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"dict key {key!r} is not a str; JSON keys must be text")
            encoded[key] = encode_value(item)
        if TAG in encoded:
            return {TAG: "dict", VALUE: encoded}
        return encoded
    if kind is tuple:
        return {TAG: "tuple", VALUE: [encode_value(item) for item in value]}
    if isinstance(value, datetime.datetime):
        return {TAG: "datetime", VALUE: value.isoformat()}
    if isinstance(value, datetime.date):
        return {TAG: "date", VALUE: value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", VALUE: str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {TAG: "bytes", VALUE: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", VALUE: str(value)}
    # Subclasses of the JSON scalars (an IntEnum, markupsafe.Markup) are stored
    # as their base type; bool is checked first because it subclasses int.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return encode_value(float(value))
    raise TypeError(f"values of type {kind.__name__} can not be stored in a session (JSON and the tagged types only)")


_DECODERS: Dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "uuid": uuid.UUID,
    "bytes": lambda text: base64.b64decode(text.encode("ascii")),
    "decimal": decimal.Decimal,
    "tuple": lambda items: tuple(decode_value(item) for item in items),
    "dict": lambda mapping: {key: decode_value(item) for key, item in mapping.items()},
}


def decode_value(data: Any) -> Any:
    """Return the Python value for JSON-compatible ``data``, building new containers.

    Raises ``ValueError`` for a tagged object whose tag is unknown or whose value
    is malformed.
    """
    kind = type(data)
    if kind is list:
        # Scalars are their own decoded form: no call for them.
        return [item if type(item) in _JSON_SCALARS else decode_value(item) for item in data]
    if kind is dict:
        if TAG in data:
            decoder = _DECODERS.get(data[TAG])
            if decoder is None or VALUE not in data:
                raise ValueError(f"unknown tagged value {data!r}")
            try:
                return decoder(data[VALUE])
            except (TypeError, ValueError, AttributeError, decimal.InvalidOperation) as exc:
                raise ValueError(f"malformed tagged value {data!r}") from exc
        return {key: item if type(item) in _JSON_SCALARS else decode_value(item) for key, item in data.items()}
    return data


def copy_data(data: Any) -> Any:
    """Return a deep copy of JSON-compatible ``data`` (dicts, lists and scalars)."""
    kind = type(data)
    if kind is dict:
        return {key: copy_data(item) for key, item in data.items()}
    if kind is list:
        return [copy_data(item) for item in data]
    return data


# Built once: json.dumps() and json.loads() with options other than the
# defaults build a new encoder or decoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(data: Any) -> str:
    """Serialize JSON-compatible ``data`` to compact JSON text."""
    return _ENCODER.encode(data)


# JSONDecoder.raw_decode() parses a text that starts with its value without
# json.loads()'s wrappers: a quarter to a third less to parse a session record.
# Anything it does not take whole (whitespace around the value, another
# encoding, an error) goes to json.loads(), so the result or the error is
# exactly its own.
_raw_decode = json.JSONDecoder().raw_decode


def loads(text: str | bytes) -> Any:
    """Parse JSON text produced by :func:`dumps` (or any JSON text, like ``json.loads``)."""
    try:
        string = text if type(text) is str else text.decode("utf-8")  # type: ignore[union-attr]
        value, end = _raw_decode(string)
    except (ValueError, AttributeError):
        return json.loads(text)
    if end != len(string):
        return json.loads(text)
    return value
