"""SQLAlchemyStore: sessions in one SQL table on SQLite, PostgreSQL or MariaDB/MySQL.

Rows are keyed by the SHA-256 digest of the session id and hold the data as
JSON.  Every change of the data is a compare-and-swap on a version column, so
concurrent requests on one session keep each other's keys and a deleted
session is never written back.  SQLAlchemy 2.x Core builds every statement;
the per-request ones run straight on a pooled DBAPI connection, because
SQLAlchemy's execution layer alone costs more than the whole SELECT.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from operator import itemgetter
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, Type, Union

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, Connection, Dialect, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection, SingletonThreadPool, StaticPool

from ..errors import SessionLockTimeout, SessionStoreError
from ..serialization import dumps, loads
from ..store import ChangeOutcome, SessionChanges, SessionLock, SessionRecord, Store, WSGIEnviron, storage_key

__all__ = ["SQLAlchemyStore", "session_table"]

log = logging.getLogger("wsgisession")

#: How long a SQLite connection waits for another writer before failing.
SQLITE_BUSY_TIMEOUT_MS = 5000

_SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")

# The request lock is polled with sleeps growing from the first to the last.
_LOCK_POLL_FIRST = 0.002
_LOCK_POLL_LAST = 0.05

# Per request and store, environ[_LOADED_KEY + id(store)] maps a row's key to
# what get_session read: (version, payload, created).  A later write of the
# same request tries its compare-and-swap against that version first, so a
# write needs no second read unless another request wrote in between.
_LOADED_KEY = "wsgisession.sqlalchemy.loaded."

_Loaded = Tuple[int, str, float]

# A compare-and-swap after a lost one reads under a row lock and so can not
# lose again; the bound only guards against isolation levels that abort
# instead of waiting.
_MAX_ATTEMPTS = 3

_COLUMNS = (
    "id",
    "data",
    "created_at",
    "refreshed_at",
    "expires_at",
    "updated_at",
    "version",
    "lock_token",
    "lock_expires",
)


def session_table(metadata: sa.MetaData, name: str = "sessions") -> sa.Table:
    """Define the sessions table in ``metadata`` (for migrations) and return it.

    A table of that name already in ``metadata`` is returned when it has the
    store's columns; otherwise ``ValueError`` is raised.
    """
    existing = metadata.tables.get(name)
    if existing is not None:
        missing = set(_COLUMNS) - set(existing.c.keys())
        if missing:
            raise ValueError(f"table {name!r} in the given MetaData lacks the columns {sorted(missing)}")
        return existing
    # Times are Unix seconds (UTC by definition) in DOUBLE columns rather than
    # DATETIME: no driver, server or connection time zone converts a number,
    # so one value is one instant on SQLite (no date type), PostgreSQL and
    # MySQL (whose TIMESTAMP shifts with the connection's time_zone).  The
    # store's clock is the only source of time, so tests can move it.
    return sa.Table(
        name,
        metadata,
        # SHA-256 hex of the session id: the id itself is never stored.
        sa.Column("id", sa.String(64), primary_key=True),
        # JSON of {"data": ..., "flash": [...]}; MySQL's TEXT stops at 64 KiB.
        sa.Column("data", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("refreshed_at", sa.Double(), nullable=False),
        # NULL for a session that never expires.
        sa.Column("expires_at", sa.Double(), nullable=True, index=True),
        # When the data last changed; a refresh of the expiry does not count.
        sa.Column("updated_at", sa.Double(), nullable=False),
        # Raised by every change of the data: the compare-and-swap token.
        sa.Column("version", sa.Integer(), nullable=False),
        # The per-session request lock: its holder's token and when it lapses.
        sa.Column("lock_token", sa.String(32), nullable=True),
        sa.Column("lock_expires", sa.Double(), nullable=True),
    )


class SQLAlchemyStore(Store):
    """Sessions in a SQL table, shared safely by several processes and threads.

    ``engine_or_url`` is an Engine, used as it is, or a URL such as
    ``sqlite:///sessions.sqlite3``, ``postgresql+psycopg://...`` or
    ``mysql+pymysql://...`` to build one from (``engine_options`` go to
    ``create_engine``).  The table is created on first use unless
    ``create_table`` is False; ``metadata`` puts it in the application's own.
    ``sweep_every=N`` deletes a batch of expired rows every N writes, for
    deployments without a cron job running ``cleanup()``.  A request lock whose
    holder died lapses after ``lock_expire_after`` seconds.
    """

    can_lock = True

    def __init__(
        self,
        engine_or_url: Union[Engine, str, URL],
        table_name: str = "sessions",
        *,
        create_table: bool = True,
        metadata: Optional[sa.MetaData] = None,
        clock: Callable[[], float] = time.time,
        sweep_every: Optional[int] = None,
        cleanup_batch_size: int = 1000,
        lock_expire_after: float = 30.0,
        sqlite_synchronous: str = "NORMAL",
        engine_options: Optional[Mapping[str, Any]] = None,
    ) -> None:
        if sweep_every is not None and sweep_every < 1:
            raise ValueError("sweep_every must be a positive number of writes, or None")
        if cleanup_batch_size < 1:
            raise ValueError("cleanup_batch_size must be at least 1")
        if not lock_expire_after > 0:
            raise ValueError("lock_expire_after must be a positive number of seconds")
        if isinstance(engine_or_url, Engine):
            if engine_options:
                raise ValueError("engine_options apply only when the store builds the engine from a URL")
            self.engine = engine_or_url
            self._owns_engine = False
            autocommit = False  # the engine's own transaction handling is kept
        else:
            self.engine, autocommit = _build_engine(
                sa.make_url(engine_or_url), sqlite_synchronous, engine_options or {}
            )
            self._owns_engine = True
        self.table = session_table(metadata if metadata is not None else sa.MetaData(), table_name)
        self.create_table = create_table
        self.sweep_every = sweep_every
        self.cleanup_batch_size = cleanup_batch_size
        self.lock_expire_after = float(lock_expire_after)
        self._clock = clock
        self._serial = _serializer(self.engine)
        self._autocommit = autocommit
        self._begin_statement = _begin_statement(self.engine.dialect.name, autocommit)
        self._statements = _Statements(self.table, self.engine.dialect)
        self._errors: Tuple[Type[BaseException], ...] = (SQLAlchemyError, self.engine.dialect.loaded_dbapi.Error)
        self._loaded_key = f"{_LOADED_KEY}{id(self)}"
        self._table_ready = not create_table
        self._table_mutex = threading.Lock()
        self._writes = 0
        self._writes_mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"<SQLAlchemyStore {self._where()} table={self.table.name!r}>"

    # -- connections, errors and the table -------------------------------------

    def _work(self, action: str, *, write: bool = False) -> _Work:
        # ``with self._work(action) as work``: see _Work.
        return _Work(self, action, write)

    @contextlib.contextmanager
    def _connection(self, action: str) -> Iterator[Connection]:
        # A SQLAlchemy connection in a transaction, for the statements that are
        # not on the request path (cleanup).
        try:
            with self._serial or contextlib.nullcontext():
                self._ensure_table()
                with self.engine.begin() as connection:
                    yield connection
        except self._errors as exc:
            raise self._failure(action, exc) from exc

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _failure(self, action: str, exc: BaseException) -> SessionStoreError:
        lines = str(exc).strip().splitlines()
        return SessionStoreError(
            f"SQLAlchemyStore could not {action} (table {self.table.name!r} at {self._where()}): "
            f"{type(exc).__name__}: {lines[0] if lines else ''}"
        )

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        with self._table_mutex:
            if self._table_ready:
                return
            try:
                self.table.create(self.engine, checkfirst=True)
            except SQLAlchemyError:
                # Another process may have created it between check and CREATE.
                if not sa.inspect(self.engine).has_table(self.table.name):
                    raise
            self._table_ready = True

    # -- the four basic methods ------------------------------------------------

    def get_session(self, id: str, environ: WSGIEnviron) -> Optional[SessionRecord]:
        key = storage_key(id)
        with self._work("load a session") as work:
            row = self._statements.load.run(work.cursor, {"key": key, "now": self._clock()}).fetchone()
        if row is None:
            return None
        payload_text, created, refreshed, expires, version = row
        payload = self._parse(payload_text)
        self._remember(environ, key, (version, payload_text, created))
        return _record(payload, created, refreshed, expires)

    def create_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        values = {
            "id": storage_key(id),
            "data": _payload(data),
            "created_at": float(data["created"]),
            "refreshed_at": float(data["refreshed"]),
            "expires_at": _seconds(data["expires"]),
            "updated_at": float(self._clock()),
        }
        with self._work("create a session", write=True) as work:
            self._statements.insert.run(work.cursor, values)
        self._count_write()

    def persist_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        # UPDATE only: a row that a concurrent logout deleted stays deleted.
        values = {
            "key": storage_key(id),
            "data": _payload(data),
            "refreshed_at": float(data["refreshed"]),
            "expires_at": _seconds(data["expires"]),
            "updated_at": float(self._clock()),
        }
        with self._work("save a session", write=True) as work:
            replaced = self._statements.replace.run(work.cursor, values).rowcount
        if replaced == 0:
            log.info("session was deleted before it could be saved; it was not re-created")
            return
        self._count_write()

    def delete_session(self, id: str, environ: WSGIEnviron) -> None:
        with self._work("delete a session", write=True) as work:
            self._statements.delete.run(work.cursor, {"key": storage_key(id)})

    # -- the concurrency guarantees ----------------------------------------------

    def apply_changes(self, id: str, changes: SessionChanges, environ: WSGIEnviron) -> ChangeOutcome:
        key = storage_key(id)
        if not changes.changes_data and not changes.claimed:
            return self._refresh(key, changes)

        def rewrite(payload_text: str, created: float) -> _Rewrite:
            payload = self._parse(payload_text)
            if payload.get("generation", 0) != changes.generation:
                return ChangeOutcome.GONE  # cleared since the request loaded it
            record = changes.apply_to(_record(payload, created, 0.0, None))
            if not record["data"]:
                return ChangeOutcome.EMPTIED
            expiry = {"refreshed_at": float(record["refreshed"]), "expires_at": _seconds(record["expires"])}
            return _payload(record), expiry

        outcome = self._swap("save a session", key, environ, self._statements.swap_all, rewrite)
        if outcome is ChangeOutcome.APPLIED:
            self._count_write()
        return outcome

    def _refresh(self, key: str, changes: SessionChanges) -> ChangeOutcome:
        # Only the expiry moves, so no version check and no version bump:
        # concurrent writers of the data are not disturbed.  On MySQL the
        # rowcount counts matched rows (SQLAlchemy's MySQL dialects connect
        # with CLIENT_FOUND_ROWS), so an unchanged value still counts as found.
        values = {
            "key": key,
            "now": float(self._clock()),
            "refreshed_at": float(changes.refreshed),
            "expires_at": _seconds(changes.expires),
        }
        with self._work("refresh a session's expiry", write=True) as work:
            refreshed: int = self._statements.refresh.run(work.cursor, values).rowcount
        return ChangeOutcome.APPLIED if refreshed > 0 else ChangeOutcome.GONE

    def consume_flash(self, id: str, key: str, environ: WSGIEnviron) -> bool:
        def rewrite(payload_text: str, created: float) -> _Rewrite:
            payload = self._parse(payload_text)
            if key not in payload["flash"]:
                return None
            payload["data"].pop(key, None)
            payload["flash"] = [flash_key for flash_key in payload["flash"] if flash_key != key]
            return dumps(payload), {}

        outcome = self._swap("consume a flash value", storage_key(id), environ, self._statements.swap_data, rewrite)
        return outcome is ChangeOutcome.APPLIED

    def _swap(
        self,
        action: str,
        key: str,
        environ: WSGIEnviron,
        statement: _Statement,
        rewrite: Callable[[str, float], _Rewrite],
    ) -> ChangeOutcome:
        # Compare-and-swap of the row's data: ``rewrite(payload, created)``
        # answers the new payload and further columns, None to leave the row
        # alone, GONE to give up, or EMPTIED to delete the row.  The first
        # attempt trusts the version this request loaded and costs one
        # statement.  When that version is gone (another request wrote) or
        # unknown, the row is read under a row lock (FOR UPDATE; BEGIN
        # IMMEDIATE on SQLite) so that the statement that follows can not
        # lose again, however many requests compete.
        loaded = self._remembered(environ, key)
        for _ in range(_MAX_ATTEMPTS):
            now = float(self._clock())
            with self._work(action, write=True) as work:
                fresh = loaded is None
                if loaded is None:
                    work.begin()
                    loaded = self._read_locked(work, key, now)
                    if loaded is None:
                        return ChangeOutcome.GONE  # deleted, regenerated or expired meanwhile
                version, payload_text, created = loaded
                rewritten = rewrite(payload_text, created)
                if rewritten is None or (rewritten is ChangeOutcome.GONE and not fresh):
                    if fresh:
                        return ChangeOutcome.GONE
                    loaded = None  # the request's copy may be stale: ask the database
                    continue
                if rewritten is ChangeOutcome.GONE:
                    return ChangeOutcome.GONE
                if rewritten is ChangeOutcome.EMPTIED:
                    removed = self._statements.delete_version.run(work.cursor, {"key": key, "version": version})
                    if removed.rowcount == 1:
                        return ChangeOutcome.EMPTIED
                    loaded = None
                    continue
                assert isinstance(rewritten, tuple)
                new_payload, columns = rewritten
                values = {"key": key, "version": version, "now": now, "data": new_payload, "updated_at": now}
                swapped = statement.run(work.cursor, {**values, **columns}).rowcount == 1
            if swapped:
                self._remember(environ, key, (version + 1, new_payload, created))
                return ChangeOutcome.APPLIED
            loaded = None
        raise SessionStoreError(
            f"SQLAlchemyStore could not {action}: {_MAX_ATTEMPTS} attempts lost to concurrent writes "
            f"(is the engine's isolation level SERIALIZABLE?)"
        )

    def lock_session(self, id: str, timeout: float, environ: WSGIEnviron) -> SessionLock:
        """Hold the session row's request lock, which works across processes.

        Polls with short sleeps for at most ``timeout`` seconds, then raises
        ``SessionLockTimeout``; a lock older than ``lock_expire_after`` (by the
        store's clock) is taken over.  A session with no row needs no lock.
        """
        key = storage_key(id)
        token = secrets.token_hex(16)
        deadline = time.monotonic() + timeout
        pause = _LOCK_POLL_FIRST
        while True:
            now = float(self._clock())
            values = {"key": key, "now": now, "token": token, "lock_expires": now + self.lock_expire_after}
            with self._work("lock a session", write=True) as work:
                taken = self._statements.lock.run(work.cursor, values).rowcount == 1
                stored = taken or self._statements.exists.run(work.cursor, {"key": key}).fetchone() is not None
            if taken:
                return _RowLock(self, key, token)
            if not stored:
                return SessionLock()  # nothing stored: the session starts fresh
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SessionLockTimeout(
                    f"SQLAlchemyStore: the session's request lock was not free within {timeout} s "
                    f"(table {self.table.name!r})"
                )
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _LOCK_POLL_LAST)

    def _unlock(self, key: str, token: str) -> None:
        # Matching the token means a holder whose lock lapsed and was taken
        # over can not release the new holder's lock.
        with self._work("release a session's request lock", write=True) as work:
            self._statements.unlock.run(work.cursor, {"key": key, "token": token})

    # -- cleanup -------------------------------------------------------------------

    def cleanup(self) -> int:
        """Delete every expired row, ``cleanup_batch_size`` per statement, and return how many."""
        total = 0
        while True:
            selected, deleted = self._delete_expired_batch()
            total += deleted
            if selected < self.cleanup_batch_size:
                return total

    def _delete_expired_batch(self) -> Tuple[int, int]:
        # Two statements because MySQL refuses a DELETE whose subquery reads
        # the same table (and a LIMIT inside IN).  The DELETE checks expiry
        # again so that a row refreshed in between survives.
        statements = self._statements
        now = float(self._clock())
        with self._connection("delete expired sessions") as connection:
            keys = list(
                connection.execute(statements.expired, {"now": now, "limit": self.cleanup_batch_size}).scalars()
            )
            if not keys:
                return 0, 0
            deleted = connection.execute(statements.delete_expired, {"keys": keys, "now": now}).rowcount
        return len(keys), deleted

    def _count_write(self) -> None:
        if self.sweep_every is None:
            return
        with self._writes_mutex:
            self._writes += 1
            due = self._writes % self.sweep_every == 0
        if due:
            try:
                self._delete_expired_batch()
            except SessionStoreError as exc:
                # Housekeeping only: the request's own write succeeded, and the
                # next sweep (or cleanup from cron) deletes these rows.
                log.warning("sweeping expired sessions failed: %s", exc)

    def close(self) -> None:
        """Close the pooled connections of an engine the store built itself."""
        if self._owns_engine:
            self.engine.dispose()

    # -- rows and records ----------------------------------------------------------

    def _read_locked(self, work: _Work, key: str, now: float) -> Optional[_Loaded]:
        # The row, locked against other writers until the transaction ends
        # (FOR UPDATE; on SQLite, BEGIN IMMEDIATE locked the whole database).
        row = self._statements.load_locked.run(work.cursor, {"key": key, "now": now}).fetchone()
        if row is None:
            return None
        payload_text, created, version = row
        return version, payload_text, created

    def _remembered(self, environ: WSGIEnviron, key: str) -> Optional[_Loaded]:
        loaded: Optional[Dict[str, _Loaded]] = environ.get(self._loaded_key)
        return None if loaded is None else loaded.get(key)

    def _remember(self, environ: WSGIEnviron, key: str, loaded: _Loaded) -> None:
        environ.setdefault(self._loaded_key, {})[key] = loaded

    def _parse(self, payload_text: str) -> Dict[str, Any]:
        try:
            payload = loads(payload_text)
            if not isinstance(payload.get("data"), dict) or not isinstance(payload.get("flash"), list):
                raise ValueError("expected an object with 'data' and 'flash'")
        except (ValueError, TypeError, AttributeError) as exc:
            raise SessionStoreError(
                f"SQLAlchemyStore found a malformed session row in table {self.table.name!r}: {exc}"
            ) from exc
        return payload  # type: ignore[no-any-return]


# What rewrite functions of _swap answer: the new payload and columns, None
# (nothing to write), or GONE / EMPTIED.
_Rewrite = Union[None, ChangeOutcome, Tuple[str, Dict[str, Any]]]


def _payload(record: SessionRecord) -> str:
    # The data column: the record's content besides its times, which have
    # columns of their own.  Rows written by 0.1.0 hold only data and flash.
    payload: Dict[str, Any] = {"data": record["data"], "flash": record["flash"]}
    if record.get("generation"):
        payload["generation"] = record["generation"]
    if "persistent" in record:
        payload["persistent"] = record["persistent"]
    return dumps(payload)


def _record(payload: Dict[str, Any], created: float, refreshed: float, expires: Optional[float]) -> SessionRecord:
    record: SessionRecord = {
        "data": payload["data"],
        "flash": payload["flash"],
        "created": created,
        "refreshed": refreshed,
        "expires": expires,
    }
    if "generation" in payload:
        record["generation"] = int(payload["generation"])
    if "persistent" in payload:
        record["persistent"] = bool(payload["persistent"])
    return record


def _seconds(value: Optional[float]) -> Optional[float]:
    return None if value is None else float(value)


class _Work:
    """One short unit of work on a pooled DBAPI connection: ``with _Work(...) as work``.

    Statements run on ``work.cursor``.  Each one commits by itself on the
    store's own engines (AUTOCOMMIT: no BEGIN and COMMIT round trips); call
    ``work.begin()`` first when several must be one transaction.  On an engine
    passed in, which is transactional, a ``write`` unit commits at the end.
    A database error, from the checkout to the commit, becomes a
    ``SessionStoreError`` naming ``action``.  (A class, not a generator: this
    is on the path of every request, and the generator machinery costs
    several microseconds.)
    """

    __slots__ = ("_store", "_action", "_write", "_connection", "cursor", "_in_transaction")

    def __init__(self, store: SQLAlchemyStore, action: str, write: bool) -> None:
        self._store = store
        self._action = action
        self._write = write
        self._connection: Optional[PoolProxiedConnection] = None
        self.cursor: Any = None
        self._in_transaction = False

    def __enter__(self) -> _Work:
        store = self._store
        if store._serial is not None:
            store._serial.acquire()
        try:
            store._ensure_table()
            # Pre-pinged at checkout for servers (pool_pre_ping).
            self._connection = store.engine.raw_connection()
            self.cursor = self._connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        except BaseException as exc:
            self._release()
            if isinstance(exc, store._errors):
                raise store._failure(self._action, exc) from exc
            raise
        return self

    def begin(self) -> None:
        """Make the following statements one transaction, committed when the unit ends without error."""
        statement = self._store._begin_statement
        if statement is not None:
            self.cursor.execute(statement)
        self._in_transaction = True

    def __exit__(self, kind: Any, error: Optional[BaseException], traceback: Any) -> None:
        store = self._store
        connection = self._connection
        assert connection is not None
        ending_failed = False
        try:
            if error is None:
                if self._in_transaction or (self._write and not store._autocommit):
                    connection.commit()
            elif self._in_transaction and store._autocommit:
                # The store's engines do not roll back on return to the pool
                # (that would cost MySQL a round trip per request), so an
                # unfinished transaction ends here, releasing its row locks.
                connection.rollback()
        except store._errors as exc:
            error = error or exc
            ending_failed = True
        try:
            if isinstance(error, store._errors) and (
                ending_failed
                or store.engine.dialect.is_disconnect(
                    error,  # type: ignore[arg-type]
                    connection.dbapi_connection,
                    self.cursor,
                )
            ):
                # Thrown away now: never handed out again in an unknown
                # state, and the pool does not log a traceback trying to roll
                # back a dead connection.
                connection.invalidate(error)
        finally:
            self._release()
        if isinstance(error, store._errors):
            raise store._failure(self._action, error) from error

    def _release(self) -> None:
        try:
            if self.cursor is not None:
                self.cursor.close()
        finally:
            try:
                if self._connection is not None:
                    self._connection.close()
            finally:
                if self._store._serial is not None:
                    self._store._serial.release()


class _Statement:
    """A Core statement rendered once for one dialect, run on a DBAPI cursor."""

    __slots__ = ("sql", "order", "_positional")

    def __init__(self, statement: sa.Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        for name, bind in compiled.binds.items():
            # Every value is passed to run(); a constant turned into a bound
            # parameter would silently be missing.
            if bind.value is not None or bind.callable is not None:
                raise ValueError(f"statement has a constant bound parameter {name!r}: {compiled.string}")
        self.sql: str = compiled.string
        self.order: Optional[Tuple[str, ...]] = tuple(compiled.positiontup) if compiled.positional else None
        self._positional = None if self.order is None else _picker(self.order)

    def run(self, cursor: Any, values: Mapping[str, Any]) -> Any:
        """Execute with ``values`` (by name) in the driver's parameter style; return the cursor."""
        if self._positional is None:
            cursor.execute(self.sql, values)
        else:
            cursor.execute(self.sql, self._positional(values))
        return cursor


def _picker(names: Tuple[str, ...]) -> Callable[[Mapping[str, Any]], Tuple[Any, ...]]:
    # The values for positional parameters, in order: a tuple even for one name.
    if len(names) == 1:
        (name,) = names
        return lambda values: (values[name],)
    return itemgetter(*names)


class _Statements:
    """Every statement the store runs, built once per store."""

    def __init__(self, table: sa.Table, dialect: Dialect) -> None:
        c = table.c
        key = c.id == sa.bindparam("key")
        live = sa.or_(c.expires_at.is_(None), c.expires_at > sa.bindparam("now"))
        same_version = c.version == sa.bindparam("version")
        # Every data change raises the version, so on MySQL "rows changed"
        # equals "rows matched" even without CLIENT_FOUND_ROWS.
        next_version = c.version + sa.literal_column("1", sa.Integer())
        new_data: Dict[str, Any] = {
            "data": sa.bindparam("data"),
            "updated_at": sa.bindparam("updated_at"),
            "version": next_version,
        }
        new_expiry: Dict[str, Any] = {
            "refreshed_at": sa.bindparam("refreshed_at"),
            "expires_at": sa.bindparam("expires_at"),
        }
        # A refresh does not raise the version, so a request that loaded the
        # session before another one refreshed it still wins its swap: its
        # older expiry must not replace the newer one.  Each column is
        # compared with itself only, because MySQL evaluates SET assignments
        # left to right, seeing the new values of earlier columns.
        later_expiry: Dict[str, Any] = {
            name: sa.case((c[name] > sa.bindparam(name), c[name]), else_=sa.bindparam(name))
            for name in ("refreshed_at", "expires_at")
        }

        def statement(executable: sa.Executable) -> _Statement:
            return _Statement(executable, dialect)

        self.load = statement(sa.select(c.data, c.created_at, c.refreshed_at, c.expires_at, c.version).where(key, live))
        self.load_locked = statement(sa.select(c.data, c.created_at, c.version).where(key, live).with_for_update())
        self.exists = statement(sa.select(c.id).where(key))
        self.insert = statement(
            sa.insert(table).values(
                {
                    **{
                        name: sa.bindparam(name)
                        for name in ("id", "data", "created_at", "refreshed_at", "expires_at", "updated_at")
                    },
                    "version": sa.literal_column("1", sa.Integer()),
                }
            )
        )
        self.replace = statement(sa.update(table).where(key).values(**new_data, **new_expiry))
        self.swap_all = statement(sa.update(table).where(key, same_version, live).values(**new_data, **later_expiry))
        self.swap_data = statement(sa.update(table).where(key, same_version, live).values(**new_data))
        self.refresh = statement(sa.update(table).where(key, live).values(**later_expiry))
        self.delete = statement(sa.delete(table).where(key))
        self.delete_version = statement(sa.delete(table).where(key, same_version))
        self.lock = statement(
            sa.update(table)
            .where(key, sa.or_(c.lock_token.is_(None), c.lock_expires <= sa.bindparam("now")))
            .values(lock_token=sa.bindparam("token"), lock_expires=sa.bindparam("lock_expires"))
        )
        self.unlock = statement(
            sa.update(table)
            .where(key, c.lock_token == sa.bindparam("token"))
            .values(lock_token=sa.null(), lock_expires=sa.null())
        )
        # Cleanup runs through a SQLAlchemy connection: its list of keys is
        # an expanding parameter, rendered per call.
        expired = sa.and_(c.expires_at.is_not(None), c.expires_at <= sa.bindparam("now"))
        self.expired = sa.select(c.id).where(expired).limit(sa.bindparam("limit"))
        self.delete_expired = sa.delete(table).where(c.id.in_(sa.bindparam("keys", expanding=True)), expired)


class _RowLock(SessionLock):
    """A held request lock: the token written into the session's row."""

    __slots__ = ("_store", "_key", "_token")

    def __init__(self, store: SQLAlchemyStore, key: str, token: str) -> None:
        self._store: Optional[SQLAlchemyStore] = store
        self._key = key
        self._token = token

    def release(self) -> None:
        store, self._store = self._store, None
        if store is None:
            return
        try:
            store._unlock(self._key, self._token)
        except SessionStoreError as exc:
            # Release runs while a request ends, often while another error is
            # being handled; the lock lapses by itself after lock_expire_after.
            log.warning("%s; the lock lapses after %s s", exc, store.lock_expire_after)


# -- engines -------------------------------------------------------------------------


def _is_memory_sqlite(url: URL) -> bool:
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database == "" or ":memory:" in database or url.query.get("mode") == "memory"
    )


def _build_engine(url: URL, synchronous: str, options: Mapping[str, Any]) -> Tuple[Engine, bool]:
    # Returns the engine and whether its connections are in autocommit mode.
    options = dict(options)
    # Autocommit: a statement that stands alone (a load, a swap, a refresh)
    # is one round trip, without BEGIN and COMMIT; _Work.begin() opens a
    # transaction where several statements must be one.  Nothing is left to
    # roll back on return to the pool, so the pool's reset is skipped.
    options.setdefault("isolation_level", "AUTOCOMMIT")
    autocommit = options["isolation_level"] == "AUTOCOMMIT"
    if autocommit:
        options.setdefault("pool_reset_on_return", None)
    if url.get_backend_name() != "sqlite":
        # A pooled connection the server closed (restart, idle timeout) is
        # detected at checkout and replaced instead of failing a request.
        options.setdefault("pool_pre_ping", True)
        return sa.create_engine(url, **options), autocommit
    if _is_memory_sqlite(url):
        # One connection shared by every thread so that all of them see the
        # same in-memory database; the store serializes its use (_serializer).
        options.setdefault("poolclass", StaticPool)
        options["connect_args"] = {"check_same_thread": False, **dict(options.get("connect_args", {}))}
        return sa.create_engine(url, **options), autocommit
    level = synchronous.upper()
    if level not in _SYNCHRONOUS_LEVELS:
        raise ValueError(f"sqlite_synchronous must be one of {', '.join(_SYNCHRONOUS_LEVELS)}, not {synchronous!r}")
    engine = sa.create_engine(url, **options)

    def configure(dbapi_connection: Any, connection_record: Any) -> None:
        # WAL lets readers work beside one writer, across processes; the busy
        # timeout makes a second writer wait instead of failing.  With WAL,
        # synchronous=NORMAL keeps every commit through a crash of the process
        # (not of the machine) and spares an fsync per commit.
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {level}")
        finally:
            cursor.close()

    sa.event.listen(engine, "connect", configure)
    return engine, autocommit


def _begin_statement(dialect_name: str, autocommit: bool) -> Optional[str]:
    # What _Work.begin() runs.  SQLite takes its write lock at once (IMMEDIATE)
    # so that a read-then-write transaction never has to upgrade its lock
    # (which fails at once instead of waiting); pysqlite lets an explicit
    # BEGIN through in both of its modes.  Transactional connections of the
    # servers are always in a transaction already.
    if dialect_name == "sqlite":
        return "BEGIN IMMEDIATE"
    if not autocommit:
        return None
    return "START TRANSACTION" if dialect_name in ("mysql", "mariadb") else "BEGIN"


def _serializer(engine: Engine) -> Optional[threading.RLock]:
    # A single shared connection (StaticPool: an in-memory SQLite database)
    # has one transaction state, so the store uses it one thread at a time.
    if isinstance(engine.pool, StaticPool):
        return threading.RLock()
    if isinstance(engine.pool, SingletonThreadPool) and _is_memory_sqlite(engine.url):
        raise ValueError(
            "this in-memory SQLite engine gives every thread its own empty database; "
            "pass the URL 'sqlite://' to SQLAlchemyStore, or build the engine with poolclass=StaticPool"
        )
    return None
