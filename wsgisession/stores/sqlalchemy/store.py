"""SQLAlchemyStore: load, save and delete sessions, with compare-and-swap writes."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from ...errors import SessionStoreError
from ...serialization import dumps
from ...store import (
    ChangeOutcome,
    SessionChanges,
    SessionInfo,
    SessionLock,
    SessionRecord,
    Store,
    SupportsId,
    WSGIEnviron,
    is_empty,
    session_handle,
    session_info,
    storage_key,
)
from .database import Database
from .engines import build_engine, check_database
from .locking import RequestLocks
from .schema import OWNER_LENGTH, RowVersion, parse_payload, payload_of, record_of, session_table
from .statements import OwnerStatements, Statements

__all__ = ["SQLAlchemyStore"]

log = logging.getLogger("wsgisession")

# A compare-and-swap after a lost one reads under a row lock and so can not
# lose again; the bound only guards against isolation levels that abort
# instead of waiting.
_MAX_ATTEMPTS = 3

# What the rewrite functions of _swap answer, given the row at the version
# they start from: the new payload and further columns to set, None (nothing
# to write), or GONE / EMPTIED.
_Rewrite = Union[None, ChangeOutcome, Tuple[str, Dict[str, Any]]]

# What _swap answers: the outcome, and the version written if any.
_Swapped = Tuple[ChangeOutcome, Optional[RowVersion]]


class SQLAlchemyStore(Store):
    """Sessions in a SQL table, shared safely by several processes and threads.

    ``engine_or_url`` is an Engine, used as it is, or a URL such as
    ``sqlite:///sessions.sqlite3``, ``postgresql+psycopg://...`` or
    ``mysql+pymysql://...`` to build one from (``engine_options`` go to
    ``create_engine``); other databases are refused.  The table is created on
    first use unless ``create_table`` is False; ``metadata`` puts it in the
    application's own.  ``timeout`` bounds every wait on the database of an
    engine the store builds (and every statement's wait on PostgreSQL).
    ``sweep_every=N`` deletes a batch of expired rows every N writes, for
    deployments without a cron job running ``cleanup()``.  A request lock
    whose holder died lapses after ``lock_expire_after`` seconds.

    Each row keeps its session's owner in an indexed column, for
    :meth:`sessions_of`, :meth:`end_session` and :meth:`end_sessions`.  A
    table created before that column existed gets it on first use; with
    ``create_table=False`` it serves sessions without owners, and setting or
    listing an owner raises ``SessionStoreError`` naming the statements that
    add the column.
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
        timeout: float = 2.0,
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
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        if isinstance(engine_or_url, Engine):
            if engine_options:
                raise ValueError("engine_options apply only when the store builds the engine from a URL")
            check_database(engine_or_url.dialect.name)
            engine = engine_or_url
            # The engine's own transaction handling and pool are kept.
            autocommit = per_thread = False
            self._owns_engine = False
        else:
            url = sa.make_url(engine_or_url)
            check_database(url.get_backend_name())
            built = build_engine(
                url, timeout=timeout, sqlite_synchronous=sqlite_synchronous, options=engine_options or {}
            )
            engine, autocommit, per_thread = built.engine, built.autocommit, built.per_thread
            self._owns_engine = True
        self.engine = engine
        self.table = session_table(metadata if metadata is not None else sa.MetaData(), table_name)
        self.timeout = float(timeout)
        self.sweep_every = sweep_every
        self.cleanup_batch_size = cleanup_batch_size
        self.lock_expire_after = float(lock_expire_after)
        self._clock = clock
        self._database = Database(
            engine,
            self.table,
            create_table=create_table,
            autocommit=autocommit,
            per_thread=per_thread,
            timeout=timeout,
        )
        # The statements for a table with the owner column until the first
        # use finds out (``_sql``); the lock's do not read the owner.
        owner_column = "owner" in self.table.c
        self._statements = Statements(self.table, owner_column=owner_column)
        self._owner_statements = OwnerStatements(self.table) if owner_column else None
        self._locks = RequestLocks(self._database, self._statements, clock, self.lock_expire_after)
        self._writes = 0
        self._writes_mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"<SQLAlchemyStore {self._database.where()} table={self.table.name!r}>"

    def _sql(self, action: str) -> Statements:
        # The statements that fit the table, once the first use has found out
        # whether it has the owner column.  While the table does not exist,
        # those of a current table run, and fail saying so.
        if self._database.owner_column is None and self._database.find_owner_column(action) is False:
            self._statements = Statements(self.table, owner_column=False)
        return self._statements

    def _owner_value(self, action: str, owner: Optional[str]) -> Optional[str]:
        # What the owner column gets: refused before the statement when the
        # table can not hold it, rather than failing differently on each database.
        if owner is not None:
            if self._database.owner_column is False:
                raise self._database.missing_owner_column(action)
            if len(owner) > OWNER_LENGTH:
                raise SessionStoreError(
                    f"SQLAlchemyStore could not {action}: the owner is {len(owner)} characters long, "
                    f"more than the {OWNER_LENGTH} of the owner column"
                )
        return owner

    # -- the four basic methods ------------------------------------------------

    def get_session(self, id: str, environ: WSGIEnviron) -> Optional[SessionRecord]:
        """The session's record, with ``record["version"]``, a :class:`RowVersion` for the request's writes."""
        action = "load a session"
        row = self._database.fetch_one(
            action, self._sql(action).load, {"key": storage_key(id), "now": self._clock()}, retry=True
        )
        if row is None:
            return None
        payload_text, created, refreshed, expires, version, owner = row
        record = record_of(parse_payload(payload_text, self.table.name), created, refreshed, expires, owner)
        record["version"] = RowVersion(version, payload_text, owner)
        return record

    def create_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        action = "create a session"
        statements = self._sql(action)
        values = {
            "id": storage_key(id),
            "data": payload_of(data),
            "created_at": float(data["created"]),
            "refreshed_at": float(data["refreshed"]),
            "expires_at": _seconds(data["expires"]),
            "updated_at": float(self._clock()),
        }
        self._add_owner(action, values, data)
        self._database.insert_new(action, statements.insert, values)
        self._count_write()

    def persist_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        # UPDATE only: a row that a concurrent logout deleted stays deleted.
        action = "save a session"
        statements = self._sql(action)
        values = {
            "key": storage_key(id),
            "data": payload_of(data),
            "refreshed_at": float(data["refreshed"]),
            "expires_at": _seconds(data["expires"]),
            "updated_at": float(self._clock()),
        }
        self._add_owner(action, values, data)
        if self._database.change(action, statements.replace, values, retry=True) == 0:
            log.info("session was deleted before it could be saved; it was not re-created")
            return
        self._count_write()

    def delete_session(self, id: str, environ: WSGIEnviron) -> None:
        self._database.change("delete a session", self._statements.delete, {"key": storage_key(id)}, retry=True)

    def _add_owner(self, action: str, values: Dict[str, Any], record: SessionRecord) -> None:
        # The statements of a table without the owner column take no owner.
        owner = self._owner_value(action, record.get("owner"))
        if self._database.owner_column is not False:
            values["owner"] = owner

    # -- the concurrency guarantees ----------------------------------------------

    def apply_changes(self, id: str, changes: SessionChanges, environ: WSGIEnviron) -> ChangeOutcome:
        """Apply the changes with a compare-and-swap against ``changes.base["version"]``.

        On success ``changes.base["version"]`` is the version written, so that
        the request's next write starts from it.
        """
        key = storage_key(id)
        if not changes.changes_data and not changes.claimed:
            return self._refresh(key, changes)
        action = "save a session"
        statements = self._sql(action)
        # A new owner rides the compare-and-swap of the data: no statement more.
        owner_change = changes.owner
        new_owner = owner_change is not None and self._database.owner_column is not False
        if owner_change is not None:
            self._owner_value(action, owner_change.owner)

        base = changes.base
        known = base.get("version") if base is not None else None
        # A request that leaves the expiry as it loaded it writes the data
        # alone: a smaller statement, which keeps any newer expiry another
        # request wrote meanwhile.  (Only the columns of the statement may
        # be among its values: SQLAlchemy would set any other column named.)
        times = (
            new_owner or base is None or (changes.refreshed, changes.expires) != (base["refreshed"], base["expires"])
        )
        if new_owner:
            statement = statements.swap_owner
        else:
            statement = statements.swap_all if times else statements.swap_data

        def rewrite(version: RowVersion) -> _Rewrite:
            payload = parse_payload(version.payload, self.table.name)
            if payload.get("generation", 0) != changes.generation:
                return ChangeOutcome.GONE  # cleared since the request loaded it
            record = changes.apply_to(record_of(payload, 0.0, 0.0, None, version.owner))
            if is_empty(record):
                return ChangeOutcome.EMPTIED
            columns: Dict[str, Any] = {}
            if times:
                columns["refreshed_at"] = float(record["refreshed"])
                columns["expires_at"] = _seconds(record["expires"])
            if new_owner:
                columns["owner"] = record.get("owner")
            return payload_of(record), columns

        outcome, written = self._swap(
            action,
            key,
            known if isinstance(known, RowVersion) else None,
            statement,
            rewrite,
        )
        if written is not None and base is not None:
            base["version"] = written
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
        refreshed = self._database.change("refresh a session's expiry", self._statements.refresh, values, retry=True)
        return ChangeOutcome.APPLIED if refreshed > 0 else ChangeOutcome.GONE

    def consume_flash(self, id: str, key: str, environ: WSGIEnviron) -> bool:
        def rewrite(version: RowVersion) -> _Rewrite:
            payload = parse_payload(version.payload, self.table.name)
            if key not in payload["flash"]:
                return None
            payload["data"].pop(key, None)
            payload["flash"] = [flash_key for flash_key in payload["flash"] if flash_key != key]
            return dumps(payload), {}

        outcome, _ = self._swap("consume a flash value", storage_key(id), None, self._statements.swap_data, rewrite)
        return outcome is ChangeOutcome.APPLIED

    def _swap(
        self,
        action: str,
        key: str,
        known: Optional[RowVersion],
        statement: sa.Update,
        rewrite: Callable[[RowVersion], _Rewrite],
    ) -> _Swapped:
        # Compare-and-swap of the row's data; the version written comes back
        # with the outcome.  The first attempt costs one statement when the
        # request knows the version it loaded, two (a read, then the swap)
        # when it does not.  If another request wrote in between, the row is
        # read again under a row lock, so that the write that follows can not
        # lose again, however many requests compete.
        database = self._database

        def change(sql: sa.Executable, values: Mapping[str, Any]) -> int:
            return database.change(action, sql, values)

        for attempt in range(_MAX_ATTEMPTS):
            now = float(self._clock())
            if attempt == 0:
                fresh = known is None
                if known is None:
                    row = database.fetch_one(action, self._statements.load, {"key": key, "now": now}, retry=True)
                    if row is None:
                        return ChangeOutcome.GONE, None  # deleted, regenerated or expired
                    known = RowVersion(row[4], row[0], row[5])
                swapped = self._write(change, key, known, now, statement, rewrite)
                # GONE from the request's own copy may be stale: ask the database.
                if swapped is not None and (fresh or swapped[0] is not ChangeOutcome.GONE):
                    return swapped
                continue
            with database.transaction(action) as transaction:
                row = transaction.fetch_one(self._statements.load_locked, {"key": key, "now": now})
                if row is None:
                    return ChangeOutcome.GONE, None
                swapped = self._write(
                    transaction.change, key, RowVersion(row[1], row[0], row[2]), now, statement, rewrite
                )
            if swapped is not None:
                return swapped
        raise SessionStoreError(
            f"SQLAlchemyStore could not {action}: {_MAX_ATTEMPTS} attempts lost to concurrent writes "
            f"(is the engine's isolation level SERIALIZABLE?)"
        )

    def _write(
        self,
        change: Callable[[sa.Executable, Mapping[str, Any]], int],
        key: str,
        version: RowVersion,
        now: float,
        statement: sa.Update,
        rewrite: Callable[[RowVersion], _Rewrite],
    ) -> Optional[_Swapped]:
        # ``rewrite(version)`` answers the new payload and further columns,
        # None to leave the row alone (GONE), GONE, or EMPTIED to delete the
        # row.  None comes back when the row is no longer at ``version``.
        rewritten = rewrite(version)
        if rewritten is None or rewritten is ChangeOutcome.GONE:
            return ChangeOutcome.GONE, None
        if rewritten is ChangeOutcome.EMPTIED:
            if change(self._statements.delete_version, {"key": key, "version": version.number}) == 1:
                return ChangeOutcome.EMPTIED, None
            return None
        assert isinstance(rewritten, tuple)
        payload, columns = rewritten
        values = {"key": key, "version": version.number, "now": now, "data": payload, "updated_at": now, **columns}
        if change(statement, values) == 1:
            return ChangeOutcome.APPLIED, RowVersion(version.number + 1, payload, columns.get("owner", version.owner))
        return None

    def lock_session(self, id: str, timeout: float, environ: WSGIEnviron) -> SessionLock:
        """Hold the session's request lock, which works across processes (see ``locking.py``).

        Raises ``SessionLockTimeout`` after ``timeout`` seconds; a lock older
        than ``lock_expire_after`` (by the store's clock) is taken over.  A
        session with no row needs no lock.
        """
        return self._locks.acquire(storage_key(id), timeout)

    # -- the sessions of an owner ------------------------------------------------------

    def _owner_sql(self, action: str) -> OwnerStatements:
        self._sql(action)
        if self._database.owner_column is False or self._owner_statements is None:
            raise self._database.missing_owner_column(action)
        return self._owner_statements

    def sessions_of(self, owner: str, current: Optional[SupportsId] = None) -> List[SessionInfo]:
        """The live sessions of ``owner``, oldest first: one ``SELECT`` on the owner column's index."""
        action = "list the sessions of an owner"
        current_key = storage_key(current.id) if current is not None else None
        rows = self._database.fetch_all(
            action, self._owner_sql(action).sessions, {"owner": owner, "now": float(self._clock())}, retry=True
        )
        return [
            session_info(
                key,
                record_of(parse_payload(payload_text, self.table.name), created, refreshed, expires, owner),
                key == current_key,
            )
            for key, payload_text, created, refreshed, expires in rows
        ]

    def end_session(self, owner: str, handle: str) -> bool:
        """End ``owner``'s session named by ``handle``, as ``delete()`` would; False when there is none.

        The handle is not stored: it is computed for each of the owner's
        sessions, and the one that matches is deleted.
        """
        action = "end a session"
        statements = self._owner_sql(action)
        rows = self._database.fetch_all(
            action, statements.keys, {"owner": owner, "now": float(self._clock())}, retry=True
        )
        for (key,) in rows:
            if session_handle(key) == handle:
                return self._database.change(action, statements.end_one, {"key": key, "owner": owner}, retry=True) > 0
        return False

    def end_sessions(self, owner: str, keep: Optional[SupportsId] = None) -> int:
        """End every live session of ``owner`` but ``keep``, as ``delete()`` would, in one ``DELETE``; return how many.

        Expired ones are left to :meth:`cleanup`, like every expired row.
        """
        action = "end the sessions of an owner"
        values = {
            "owner": owner,
            "keep": storage_key(keep.id) if keep is not None else "",
            "now": float(self._clock()),
        }
        return self._database.change(action, self._owner_sql(action).end_others, values, retry=True)

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
        now = float(self._clock())
        action = "delete expired sessions"
        rows = self._database.fetch_all(
            action, self._statements.expired, {"now": now, "limit": self.cleanup_batch_size}, retry=True
        )
        if not rows:
            return 0, 0
        keys = [row[0] for row in rows]
        deleted = self._database.change(action, self._statements.delete_expired, {"keys": keys, "now": now}, retry=True)
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
        """Close the connections of an engine the store built itself (no request may be running)."""
        if self._owns_engine:
            self._database.close()
            self.engine.dispose()


def _seconds(value: Optional[float]) -> Optional[float]:
    return None if value is None else float(value)
