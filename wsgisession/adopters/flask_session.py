"""Adopting Flask-Session's stored sessions: the record its cookie names, in SQL or Redis.

Flask-Session keeps a session under ``key_prefix + id`` (``"session:"`` by
default), in the ``sessions`` table of its SQLAlchemy backend or as a Redis
key, and gives the browser the id in the session cookie, signed with the
app's secret key when ``SESSION_USE_SIGNER`` was on.  Since 0.7 it stores the
session as msgpack (JSON with ``SESSION_SERIALIZATION_FORMAT = "json"``);
both are read here.  Earlier versions pickled it: such a record is only read
with ``allow_pickle=True``, because unpickling runs whatever code the bytes
name, so anyone who can write to the old store could run code in the app.

The record is deleted when the new session is saved, by one statement whose
result says whether it was still there (``DELETE`` and its row count, Redis
``DEL`` and its count): of two requests that adopt the same record at once,
one saves the new session and the other saves nothing.

These adopters need no Flask: any WSGI app that replaces Flask-Session can
use them with ``SessionMiddleware(adopter=...)``.  The SQLAlchemy one needs
SQLAlchemy and the Redis one a redis-py client; both need msgspec (installed
with Flask-Session).
"""

from __future__ import annotations

import datetime
import logging
import os
import pickle
import re
import threading
import time
from typing import Any, Callable, Dict, Optional, Sequence, Union

from itsdangerous import BadSignature, Signer
from werkzeug.http import parse_cookie

from ..adoption import Adoption, LegacyCookie
from ..errors import SessionStoreError

__all__ = ["FlaskSessionAdopter", "FlaskSessionSQLAlchemyAdopter", "FlaskSessionRedisAdopter"]

log = logging.getLogger("wsgisession")

SecretKeys = Union[str, bytes, Sequence[Union[str, bytes]]]

# Flask-Session's ids are URL-safe tokens (UUIDs before 0.6); anything else
# in the cookie is not one of its ids and is not looked up.
_SESSION_ID = re.compile(r"[A-Za-z0-9_.\-]{1,255}")

# The salt and key derivation Flask-Session signs ids with (SESSION_USE_SIGNER).
_SIGNER_SALT = "flask-session"


class FlaskSessionAdopter:
    """The part common to Flask-Session's backends: the cookie, its signature and the record's format.

    ``cookie_name``, ``cookie_path`` and ``cookie_domain`` are the cookie's
    (Flask's ``SESSION_COOKIE_NAME``, ``SESSION_COOKIE_PATH`` or
    ``APPLICATION_ROOT``, ``SESSION_COOKIE_DOMAIN``); ``key_prefix`` is
    ``SESSION_KEY_PREFIX``; ``secret_key`` (one key, or a list with the
    current key last) verifies ids signed under ``SESSION_USE_SIGNER``, which
    ``use_signer`` says were.  ``allow_pickle=True`` also reads records that
    Flask-Session before 0.7 pickled: only for a store no one else can write.

    A backend implements :meth:`fetch` and :meth:`retire`.
    """

    def __init__(
        self,
        *,
        key_prefix: str = "session:",
        use_signer: bool = False,
        secret_key: Optional[SecretKeys] = None,
        cookie_name: str = "session",
        cookie_path: str = "/",
        cookie_domain: Optional[str] = None,
        allow_pickle: bool = False,
    ) -> None:
        import msgspec  # Flask-Session's own dependency

        self.key_prefix = key_prefix
        self.signer: Optional[Signer] = None
        if use_signer:
            if not secret_key:
                raise ValueError(
                    "Flask-Session's signed ids (use_signer) are verified with its secret key: give secret_key"
                )
            keys = [secret_key] if isinstance(secret_key, (str, bytes)) else list(secret_key)
            self.signer = Signer(keys, salt=_SIGNER_SALT, key_derivation="hmac")  # type: ignore[arg-type]
        self.allow_pickle = allow_pickle
        self.cookie = LegacyCookie(cookie_name, cookie_path, cookie_domain)
        #: The cookie removed from browsers that bring a wsgisession session beside it.
        self.legacy_cookies = (self.cookie,)
        self._decoders = (msgspec.msgpack.Decoder(), msgspec.json.Decoder())
        self._decode_error = msgspec.DecodeError

    def __call__(self, environ: Dict[str, Any]) -> Optional[Adoption]:
        """The Flask-Session session the request's cookie names, or None."""
        value = parse_cookie(environ).get(self.cookie.name)
        if not value:
            return None
        id = self._session_id(value)
        if id is None:
            return None
        key = self.key_prefix + id
        payload = self.fetch(key)
        if payload is None:
            return None
        data = self._decode(payload)
        if data is None:
            return None
        persistent = bool(data.pop("_permanent", False))
        return Adoption(data=data, expire=[self.cookie], persistent=persistent, on_commit=lambda: self.retire(key))

    def fetch(self, key: str) -> Optional[bytes]:
        """The stored payload under ``key``, or None when there is none or it expired."""
        raise NotImplementedError

    def retire(self, key: str) -> bool:
        """Delete the record under ``key`` in one atomic step; True when it was still there."""
        raise NotImplementedError

    def _session_id(self, value: str) -> Optional[str]:
        if self.signer is not None:
            try:
                value = self.signer.unsign(value).decode("utf-8")
            except (BadSignature, UnicodeDecodeError):
                log.debug("a Flask-Session cookie's signature did not verify; it was not adopted")
                return None
        return value if _SESSION_ID.fullmatch(value) else None

    def _decode(self, payload: bytes) -> Optional[Dict[str, Any]]:
        data: Any = None
        for decoder in self._decoders:
            try:
                data = decoder.decode(payload)
                break
            except self._decode_error:
                continue
        else:
            if not self.allow_pickle:
                log.warning(
                    "a Flask-Session record was not adopted: it is neither msgpack nor JSON (Flask-Session "
                    "before 0.7 pickled sessions; allow_pickle=True reads those, if no one else can write to the store)"
                )
                return None
            try:
                data = pickle.loads(payload)  # the user opted in, for a store only the app writes
            except Exception as exc:
                log.warning("a Flask-Session record was not adopted: it could not be read (%s)", exc)
                return None
        if not isinstance(data, dict):
            log.warning("a Flask-Session record was not adopted: it holds a %s, not a dict", type(data).__name__)
            return None
        return dict(data)


class FlaskSessionSQLAlchemyAdopter(FlaskSessionAdopter):
    """Adopts the sessions of Flask-Session's SQLAlchemy backend (``SESSION_TYPE = "sqlalchemy"``).

    ``engine`` is a SQLAlchemy Engine or URL of the database holding
    Flask-Session's ``table`` (``SESSION_SQLALCHEMY_TABLE``, in ``schema``,
    ``SESSION_SQLALCHEMY_SCHEMA``).  A record whose ``expiry`` has passed by
    ``clock`` is not adopted, as Flask-Session would not open it.  The other
    options are :class:`FlaskSessionAdopter`'s.
    """

    def __init__(
        self,
        engine: Any,
        table: str = "sessions",
        *,
        schema: Optional[str] = None,
        clock: Callable[[], float] = time.time,
        **options: Any,
    ) -> None:
        import sqlalchemy as sa

        super().__init__(**options)
        self.engine = sa.create_engine(engine) if isinstance(engine, (str, sa.URL)) else engine
        # Flask-Session's columns that matter here (its model has an integer id too).
        self.table = sa.Table(
            table,
            sa.MetaData(schema=schema),
            sa.Column("session_id", sa.String(255)),
            sa.Column("data", sa.LargeBinary),
            sa.Column("expiry", sa.DateTime),
        )
        self.clock = clock
        self._select = sa.select(self.table.c.data, self.table.c.expiry).where(
            self.table.c.session_id == sa.bindparam("key")
        )
        self._delete = sa.delete(self.table).where(self.table.c.session_id == sa.bindparam("key"))
        self._checked = False
        self._missing = False
        self._check_mutex = threading.Lock()

    def fetch(self, key: str) -> Optional[bytes]:
        """The record's data under ``key``, unless it expired."""
        if not self._checked:
            self.check_table()
        if self._missing:
            return None
        with self.engine.connect() as connection:
            row = connection.execute(self._select, {"key": key}).first()
        if row is None:
            return None
        data, expiry = row
        if expiry is None or _utc_naive(expiry) <= _utc_naive(self.clock()):
            return None
        return bytes(data)

    def retire(self, key: str) -> bool:
        """``DELETE`` the record; True when this statement deleted it."""
        with self.engine.begin() as connection:
            return bool(connection.execute(self._delete, {"key": key}).rowcount == 1)

    def shares_table_with(self, store: Any) -> bool:
        """True when ``store`` is a SQLAlchemyStore keeping its sessions in this very table."""
        from ..stores.sqlalchemy import SQLAlchemyStore

        if not isinstance(store, SQLAlchemyStore):
            return False
        if (store.table.name, store.table.schema) != (self.table.name, self.table.schema):
            return False
        return store.engine is self.engine or _same_database(store.engine.url, self.engine.url)

    def check_table(self) -> None:
        """Check that the table is Flask-Session's; raise ``SessionStoreError`` when it is not.

        Both packages name their table ``sessions`` by default: pointed at
        wsgisession's own table, the adopter says so rather than failing with
        a database error.  A table that does not exist holds nothing to adopt.
        Runs once, on first use, unless called before.
        """
        import sqlalchemy as sa

        with self._check_mutex, self.engine.connect() as connection:
            table = self.table
            inspector = sa.inspect(connection)
            if not inspector.has_table(table.name, table.schema):
                log.warning("Flask-Session's table %r does not exist: there are no sessions to adopt", table.fullname)
                self._missing = True
                self._checked = True
                return
            columns = {column["name"] for column in inspector.get_columns(table.name, table.schema)}
            missing = {"session_id", "data", "expiry"} - columns
            if missing:
                raise SessionStoreError(
                    f"table {table.name!r} is not Flask-Session's: it lacks the columns {sorted(missing)}"
                    + (
                        " (it is wsgisession's own table; give SQLAlchemyStore a table_name of its own)"
                        if "refreshed_at" in columns
                        else ""
                    )
                )
            self._checked = True

    def __repr__(self) -> str:
        where = self.engine.url.render_as_string(hide_password=True)
        return f"<FlaskSessionSQLAlchemyAdopter {where} table={self.table.fullname!r}>"


class FlaskSessionRedisAdopter(FlaskSessionAdopter):
    """Adopts the sessions of Flask-Session's Redis backend (``SESSION_TYPE = "redis"``).

    ``client`` is a redis-py client for the database Flask-Session used
    (``SESSION_REDIS``); Redis expires the records itself.  The other
    options are :class:`FlaskSessionAdopter`'s.
    """

    def __init__(self, client: Any, **options: Any) -> None:
        super().__init__(**options)
        self.client = client

    def fetch(self, key: str) -> Optional[bytes]:
        """``GET`` the record."""
        payload = self.client.get(key)
        return None if payload is None else bytes(payload)

    def retire(self, key: str) -> bool:
        """``DEL`` the record; True when this command deleted it."""
        return int(self.client.delete(key)) == 1

    def __repr__(self) -> str:
        return f"<FlaskSessionRedisAdopter {self.client!r} prefix={self.key_prefix!r}>"


def _same_database(first: Any, second: Any) -> bool:
    # Two URLs naming one database, whichever driver each goes through.
    if first.get_backend_name() != second.get_backend_name():
        return False
    if first.get_backend_name() == "sqlite":
        paths = [url.database for url in (first, second)]
        if any(path in (None, "", ":memory:") for path in paths):
            return False  # each engine has a database of its own
        return bool(os.path.realpath(str(paths[0])) == os.path.realpath(str(paths[1])))
    return bool((first.host, first.port, first.database) == (second.host, second.port, second.database))


def _utc_naive(moment: Union[float, datetime.datetime]) -> datetime.datetime:
    # Flask-Session writes expiry as naive UTC (datetime.utcnow()).
    if not isinstance(moment, datetime.datetime):
        moment = datetime.datetime.fromtimestamp(moment, datetime.timezone.utc)
    elif moment.tzinfo is None:
        return moment
    return moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
