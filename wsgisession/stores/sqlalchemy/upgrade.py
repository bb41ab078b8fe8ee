"""Tables of earlier versions: finding out what a table has, and adding the owner column to it.

A table created by 0.1.0 lacks the indexed ``owner`` column.  Sessions load
from it as they are; the store adds the column and its index on first use
when it may create the table, and otherwise serves sessions without owners
and names the statements to run (:func:`owner_column_statements`).  Two
processes may do this at once: a statement that fails because the other
one did the same is not an error once the column or the index is there.
"""

from __future__ import annotations

from typing import Callable, List, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

__all__ = ["prepare_table", "owner_column_statements"]

OWNER = "owner"


def prepare_table(connection: Connection, table: sa.Table, *, create: bool) -> Optional[bool]:
    """Say whether ``table`` has the owner column; None when the table does not exist.

    With ``create`` the table is created when missing, and the owner column
    and its index are added to an older one, each in a transaction of its own.
    """
    if create and not sa.inspect(connection).has_table(table.name, schema=table.schema):
        _tolerating_others(
            connection,
            lambda: table.create(connection, checkfirst=False),
            lambda: sa.inspect(connection).has_table(table.name, schema=table.schema),
        )
    if OWNER not in table.c:
        return False  # the application defined the table without it: sessions have no owners
    has_column = _has_owner_column(connection, table)
    if has_column is None or not create:
        return has_column
    if not has_column:
        _tolerating_others(
            connection,
            lambda: connection.exec_driver_sql(_add_column(table, connection.dialect)),
            lambda: bool(_has_owner_column(connection, table)),
        )
    index = _owner_index(table)
    if index is not None and not _has_owner_index(connection, table):
        _tolerating_others(
            connection, lambda: index.create(connection, checkfirst=False), lambda: _has_owner_index(connection, table)
        )
    return True


def owner_column_statements(table: sa.Table, dialect: Dialect) -> List[str]:
    """The statements that add the owner column and its index to ``table`` on ``dialect``."""
    statements = [_add_column(table, dialect)]
    index = _owner_index(table)
    if index is not None:
        statements.append(str(sa.schema.CreateIndex(index).compile(dialect=dialect)))
    return statements


def _add_column(table: sa.Table, dialect: Dialect) -> str:
    # SQLAlchemy Core has no ALTER TABLE construct: its DDL compiler writes the
    # column's definition and the table's quoted name, for each database.
    column = sa.schema.CreateColumn(table.c[OWNER]).compile(dialect=dialect)
    return f"ALTER TABLE {dialect.identifier_preparer.format_table(table)} ADD COLUMN {column}"


def _owner_index(table: sa.Table) -> Optional[sa.Index]:
    for index in table.indexes:
        if [column.name for column in index.columns] == [OWNER]:
            return index
    return None


def _has_owner_column(connection: Connection, table: sa.Table) -> Optional[bool]:
    try:
        columns = sa.inspect(connection).get_columns(table.name, schema=table.schema)
    except NoSuchTableError:
        return None
    return any(column["name"] == OWNER for column in columns)


def _has_owner_index(connection: Connection, table: sa.Table) -> bool:
    indexes = sa.inspect(connection).get_indexes(table.name, schema=table.schema)
    return any(index["column_names"] == [OWNER] for index in indexes)


def _tolerating_others(connection: Connection, change: Callable[[], object], done: Callable[[], bool]) -> None:
    # Run one schema change and commit it; when it fails, another process
    # may have made the same change between our look and our statement.
    try:
        change()
        connection.commit()
    except SQLAlchemyError:
        connection.rollback()
        if not done():
            raise
