"""Running the store's statements: on the thread's connection, with a deadline, one retry, clear errors.

Every statement goes through ``Connection.execute``.  On an engine the store
built, each thread runs its statements on a connection it holds
(``per_thread.py``); on an engine passed in, or one whose pool the user
sized, a statement that stands alone takes a connection from the pool and
gives it back at once, and :meth:`Database.transaction` keeps one for a few
statements that must be one transaction.  Nothing is sent to check a
connection before use: when one turns out to be dead (the server restarted,
or closed it as idle), SQLAlchemy discards it, and a statement whose
repetition is harmless runs once more on a new connection:

* reads, the expiry refresh, deletes, the lock's take and release: repeating
  them changes nothing;
* the INSERT of a new session: its key is random, so if the repetition finds
  the key taken, the first attempt was applied;
* the compare-and-swap writes are not repeated: the database may have applied
  the first attempt before the connection broke, and a repetition could apply
  a change twice.  The request gets ``SessionStoreError``.

Every failure becomes ``SessionStoreError`` naming the operation, the table,
the database (password hidden) and the cause; a statement that got no answer
within ``timeout`` says so.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Tuple, Type, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from ...errors import SessionStoreError
from ..per_thread import PerThread
from .deadlines import WATCHDOG
from .engines import begin_statement, single_connection_mutex
from .upgrade import owner_column_statements, prepare_table

__all__ = ["Database", "Transaction"]

log = logging.getLogger("wsgisession")

_T = TypeVar("_T")

_COMMIT = sa.text("COMMIT")
_ROLLBACK = sa.text("ROLLBACK")


class _NoAnswer(Exception):
    """A statement got no answer within the timeout (its connection was shut down)."""


class Database:
    """The store's engine and table, and how statements run on them.

    ``autocommit`` says whether the engine's connections are in AUTOCOMMIT
    mode (the store's own engines); otherwise (an engine passed in) a write
    is committed after its statement.  ``per_thread`` says whether each
    thread holds a connection (``build_engine`` decides, only in AUTOCOMMIT
    mode).
    """

    def __init__(
        self,
        engine: Engine,
        table: sa.Table,
        *,
        create_table: bool,
        autocommit: bool,
        per_thread: bool = False,
        timeout: float,
    ) -> None:
        self.engine = engine
        self.table = table
        self.timeout = timeout
        self._autocommit = autocommit
        self._held: Optional[PerThread[Connection]] = (
            PerThread(engine.connect, Connection.close) if per_thread else None
        )
        begin = begin_statement(engine.dialect.name, autocommit)
        self._begin = None if begin is None else sa.text(begin)
        self._mutex = single_connection_mutex(engine)
        self._errors: Tuple[Type[BaseException], ...] = (SQLAlchemyError, engine.dialect.loaded_dbapi.Error)
        self._errors_or_no_answer = (*self._errors, _NoAnswer)
        # The driver of PostgreSQL has no read timeout: the store's deadline stands in.
        self._watched = engine.dialect.name == "postgresql"
        self._create_table = create_table
        #: Whether the table has the ``owner`` column; None until the first
        #: statement found out (and created or upgraded the table if asked),
        #: and while the table does not exist.
        self.owner_column: Optional[bool] = None
        self._table_mutex = threading.Lock()

    # -- single statements ------------------------------------------------------------

    def fetch_one(
        self, action: str, statement: sa.Executable, values: Mapping[str, Any], *, retry: bool = False
    ) -> Optional[Sequence[Any]]:
        """The first row ``statement`` returns, or None."""
        return self._run(action, statement, values, CursorResult.fetchone, write=False, retry=retry)

    def fetch_all(
        self, action: str, statement: sa.Executable, values: Mapping[str, Any], *, retry: bool = False
    ) -> Sequence[Sequence[Any]]:
        """Every row ``statement`` returns."""
        return self._run(action, statement, values, CursorResult.all, write=False, retry=retry)

    def change(self, action: str, statement: sa.Executable, values: Mapping[str, Any], *, retry: bool = False) -> int:
        """Run a write and return how many rows it matched."""
        return self._run(action, statement, values, _rowcount, write=True, retry=retry)

    def insert_new(self, action: str, statement: sa.Executable, values: Mapping[str, Any]) -> None:
        """Insert a row under a fresh random key; once more on a new connection if the first one was dead."""
        for attempt in (1, 2):
            started = time.monotonic()
            try:
                self._once(statement, values, _rowcount, True)
                return
            except _NoAnswer as exc:
                raise self.failure(action, exc, started) from exc.__cause__
            except IntegrityError as exc:
                if attempt == 2:
                    return  # the key is random: only the first attempt can have taken it, so it was applied
                raise self.failure(action, exc, started) from exc
            except self._errors as exc:
                if attempt == 2 or not self._found_dead(exc, started):
                    raise self.failure(action, exc, started) from exc
                log.info("a pooled connection was found dead; the INSERT runs again on a new one")

    def _run(
        self,
        action: str,
        statement: sa.Executable,
        values: Mapping[str, Any],
        read: Callable[[CursorResult[Any]], _T],
        *,
        write: bool,
        retry: bool,
    ) -> _T:
        attempts = 2 if retry else 1
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                return self._once(statement, values, read, write)
            except _NoAnswer as exc:
                raise self.failure(action, exc, started) from exc.__cause__
            except self._errors as exc:
                if attempt == attempts or not self._found_dead(exc, started):
                    raise self.failure(action, exc, started) from exc
                log.info("a pooled connection was found dead; the statement runs again on a new one")
        raise AssertionError("unreachable")

    def _found_dead(self, exc: BaseException, started: float) -> bool:
        # A connection found dead fails at once; one that timed out means the
        # database is not answering, which another attempt would only prolong.
        return _disconnected(exc) and time.monotonic() - started < self.timeout

    def _once(
        self, statement: sa.Executable, values: Mapping[str, Any], read: Callable[[CursorResult[Any]], _T], write: bool
    ) -> _T:
        # One statement, on the thread's connection or a pooled one.  (Plain
        # code rather than a context manager: this runs for every statement.)
        held = self._held_connection()
        if held is not None:
            if self.owner_column is None:
                self._prepare_table(held)
            return _finished(self.execute(held, statement, values), read)
        mutex = self._mutex
        if mutex is not None:
            mutex.acquire()
        try:
            connection = self.engine.connect()
            try:
                if self.owner_column is None:
                    self._prepare_table(connection)
                result = _finished(self.execute(connection, statement, values), read)
                if write and not self._autocommit:
                    connection.commit()
                return result
            finally:
                connection.close()
        finally:
            if mutex is not None:
                mutex.release()

    # -- transactions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, action: str) -> Iterator[Transaction]:
        """Several statements as one transaction, committed when the block ends without error.

        Its reads lock what they read (``SELECT ... FOR UPDATE``; on SQLite
        the whole database, with ``BEGIN IMMEDIATE``).  It is never repeated.
        """
        started = time.monotonic()
        try:
            with self._connection() as connection:
                if self._begin is not None:
                    self.execute(connection, self._begin, {})
                try:
                    yield Transaction(self, connection)
                except BaseException:
                    if not connection.invalidated:
                        self._end(connection, commit=False)
                    raise
                self._end(connection, commit=True)
        except self._errors as exc:
            raise self.failure(action, exc, started) from exc
        except _NoAnswer as exc:
            raise self.failure(action, exc, started) from exc.__cause__

    def _end(self, connection: Connection, *, commit: bool) -> None:
        if not self._autocommit:
            if commit:
                connection.commit()
            else:
                connection.rollback()
            return
        try:
            # Sent as statements, so that instrumentation sees the whole transaction.
            self.execute(connection, _COMMIT if commit else _ROLLBACK, {})
        except self._errors_or_no_answer:
            # The connection is used again (by its thread, or from the pool,
            # which does not roll back on return), so a transaction that could
            # not be committed is rolled back, and a connection whose
            # transaction could not be ended at all is discarded.
            if commit and not connection.invalidated:
                try:
                    self.execute(connection, _ROLLBACK, {})
                except self._errors_or_no_answer:
                    pass
                else:
                    raise
            if not connection.invalidated:
                connection.invalidate()
            if commit:
                raise

    # -- connections and statements ---------------------------------------------------

    def _held_connection(self) -> Optional[Connection]:
        # The thread's connection, a new one if the last broke; None when
        # statements borrow from the pool.
        if self._held is None:
            return None
        connection = self._held.get()
        if connection is not None and (connection.invalidated or connection.closed):
            connection = self._held.replace()
        return connection

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        held = self._held_connection()
        if held is not None:
            if self.owner_column is None:
                self._prepare_table(held)
            yield held
            return
        with self._mutex or contextlib.nullcontext(), self.engine.connect() as connection:
            if self.owner_column is None:
                self._prepare_table(connection)
            yield connection

    def close(self) -> None:
        """Give back the connections the threads hold (no request may be running)."""
        if self._held is not None:
            self._held.end_all()

    def execute(self, connection: Connection, statement: sa.Executable, values: Mapping[str, Any]) -> CursorResult[Any]:
        """Run one statement on ``connection``, within the deadline."""
        if not self._watched:
            return connection.execute(statement, values)
        ticket = WATCHDOG.arm(_fileno(connection), self.timeout)
        try:
            result = connection.execute(statement, values)
        except BaseException as exc:
            if WATCHDOG.disarm(ticket):
                raise _NoAnswer() from exc
            raise
        if WATCHDOG.disarm(ticket):
            # The answer came just as the deadline passed and the socket was
            # shut down: the connection must not go back to the pool, and the
            # statement counts as unanswered, like any other that overran.
            connection.invalidate()
            raise _NoAnswer()
        return result

    def find_owner_column(self, action: str) -> Optional[bool]:
        """Whether the table has the ``owner`` column, preparing the table on first use; None while it does not exist."""
        if self.owner_column is None:
            started = time.monotonic()
            try:
                with self._connection():
                    pass
            except self._errors as exc:
                raise self.failure(action, exc, started) from exc
            except _NoAnswer as exc:
                raise self.failure(action, exc, started) from exc.__cause__
        return self.owner_column

    def _prepare_table(self, connection: Connection) -> None:
        # On first use, within the deadline like any statement: create the
        # table or add what an older one lacks, if asked; see what it has.
        with self._table_mutex:
            if self.owner_column is not None:
                return
            ticket = WATCHDOG.arm(_fileno(connection), self.timeout) if self._watched else None
            try:
                owner_column = prepare_table(connection, self.table, create=self._create_table)
                connection.commit()
            except BaseException as exc:
                if ticket is not None and WATCHDOG.disarm(ticket):
                    raise _NoAnswer() from exc
                raise
            if ticket is not None and WATCHDOG.disarm(ticket):
                connection.invalidate()
                raise _NoAnswer()
            self.owner_column = owner_column

    def missing_owner_column(self, action: str) -> SessionStoreError:
        """The error for an owner the table can not hold: what to run to add the column."""
        where = f"SQLAlchemyStore could not {action}: table {self.table.name!r} at {self.where()}"
        if "owner" not in self.table.c:
            return SessionStoreError(
                f"{where} has no 'owner' column, and neither has its definition in the given MetaData; "
                "define the table with wsgisession.stores.sqlalchemy.session_table() and add the column"
            )
        statements = "; ".join(owner_column_statements(self.table, self.engine.dialect))
        return SessionStoreError(
            f"{where} has no 'owner' column (tables created before 0.2.0 lack it); "
            f"add it with: {statements}; or let the store add it on first use (create_table=True)"
        )

    # -- errors -------------------------------------------------------------------------

    def where(self) -> str:
        """The database's URL, password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    def failure(self, action: str, exc: BaseException, started: float) -> SessionStoreError:
        """The ``SessionStoreError`` for ``exc``, raised while trying to ``action``."""
        where = f"SQLAlchemyStore could not {action} (table {self.table.name!r} at {self.where()})"
        if isinstance(exc, _NoAnswer) or (
            _disconnected(exc) and time.monotonic() - started >= self.timeout and self.engine.dialect.name != "sqlite"
        ):
            return SessionStoreError(
                f"{where}: the database did not answer within {self.timeout:g} s (the store's timeout); "
                "its connection was closed"
            )
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        lines = str(cause).strip().splitlines()
        message = f"{where}: {type(cause).__name__}: {lines[0] if lines else ''}"
        if self.engine.dialect.name == "sqlite" and "database is locked" in message:
            message += f" (another connection held its write lock for longer than the busy timeout, {self.timeout:g} s)"
        return SessionStoreError(message)


class Transaction:
    """The statements of one :meth:`Database.transaction`."""

    __slots__ = ("_database", "_connection")

    def __init__(self, database: Database, connection: Connection) -> None:
        self._database = database
        self._connection = connection

    def fetch_one(self, statement: sa.Executable, values: Mapping[str, Any]) -> Optional[Sequence[Any]]:
        """The first row ``statement`` returns, or None."""
        return _finished(self._database.execute(self._connection, statement, values), CursorResult.fetchone)

    def change(self, statement: sa.Executable, values: Mapping[str, Any]) -> int:
        """Run a write and return how many rows it matched."""
        return _finished(self._database.execute(self._connection, statement, values), _rowcount)


def _fileno(connection: Connection) -> int:
    return connection.connection.dbapi_connection.fileno()  # type: ignore[union-attr,no-any-return]


def _rowcount(result: CursorResult[Any]) -> int:
    return result.rowcount


def _finished(result: CursorResult[Any], read: Callable[[CursorResult[Any]], _T]) -> _T:
    # What ``read`` takes from ``result``, whose cursor is then closed: a
    # statement left open would keep its connection's read snapshot (SQLite
    # in WAL mode), and the connection is used again.
    try:
        return read(result)
    finally:
        result.close()


def _disconnected(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
