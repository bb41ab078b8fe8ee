"""Every statement the store runs, built once per store with SQLAlchemy Core.

They run through ``Connection.execute``, so SQLAlchemy compiles each one
once per dialect (its compiled cache) and every execution passes through
its events, ``echo`` and the instrumentation built on them.
"""

from __future__ import annotations

from typing import Any, Dict

import sqlalchemy as sa

__all__ = ["Statements", "OwnerStatements"]


class Statements:
    """The store's statements for one table; values are passed by name at execution.

    ``owner_column`` says whether the table has the ``owner`` column: without
    it (a table of 0.1.0 the store may not change) rows are read and written
    without owners.
    """

    def __init__(self, table: sa.Table, *, owner_column: bool) -> None:
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

        # The owner is written by the statement that writes the data, so the
        # row and the owner index never disagree.
        owner: Any = c.owner if owner_column else sa.null()
        new_owner: Dict[str, Any] = {"owner": sa.bindparam("owner")} if owner_column else {}

        #: A session's row, if it is live: data, created_at, refreshed_at, expires_at, version, owner.
        self.load = sa.select(c.data, c.created_at, c.refreshed_at, c.expires_at, c.version, owner).where(key, live)
        #: Data, version and owner under a row lock until the transaction ends (FOR UPDATE; SQLite locks
        #: the database instead).
        self.load_locked = sa.select(c.data, c.version, owner).where(key, live).with_for_update()
        self.insert = sa.insert(table).values(
            {
                **{
                    name: sa.bindparam(name)
                    for name in ("id", "data", "created_at", "refreshed_at", "expires_at", "updated_at")
                },
                "version": sa.literal_column("1", sa.Integer()),
                **new_owner,
            }
        )
        #: A blind write of the whole record (persist_session); never inserts.
        self.replace = sa.update(table).where(key).values(**new_data, **new_expiry, **new_owner)
        #: Compare-and-swap of the data and the expiry, of those and the owner, or of the data alone.
        self.swap_all = sa.update(table).where(key, same_version, live).values(**new_data, **later_expiry)
        self.swap_owner = (
            sa.update(table).where(key, same_version, live).values(**new_data, **later_expiry, **new_owner)
        )
        self.swap_data = sa.update(table).where(key, same_version, live).values(**new_data)
        #: The expiry alone, never moved backwards, without a version change.
        self.refresh = sa.update(table).where(key, live).values(**later_expiry)
        self.delete = sa.delete(table).where(key)
        self.delete_version = sa.delete(table).where(key, same_version)

        # The request lock.  Taking it again with one's own token succeeds, so
        # a take whose connection broke after the database applied it can be
        # repeated.  Releasing matches the token: a holder whose lock lapsed
        # and was taken over can not release the new holder's lock.
        free = sa.or_(
            c.lock_token.is_(None), c.lock_expires <= sa.bindparam("now"), c.lock_token == sa.bindparam("token")
        )
        self.lock = (
            sa.update(table)
            .where(key, free)
            .values(lock_token=sa.bindparam("token"), lock_expires=sa.bindparam("lock_expires"))
        )
        self.lock_state = sa.select(c.lock_token, c.lock_expires).where(key)
        self.unlock = (
            sa.update(table)
            .where(key, c.lock_token == sa.bindparam("token"))
            .values(lock_token=sa.null(), lock_expires=sa.null())
        )

        # Cleanup: two statements because MySQL refuses a DELETE whose
        # subquery reads the same table (and a LIMIT inside IN).  The DELETE
        # checks expiry again so that a row refreshed in between survives.
        expired = sa.and_(c.expires_at.is_not(None), c.expires_at <= sa.bindparam("now"))
        self.expired = sa.select(c.id).where(expired).limit(sa.bindparam("limit"))
        self.delete_expired = sa.delete(table).where(c.id.in_(sa.bindparam("keys", expanding=True)), expired)


class OwnerStatements:
    """The statements that find and end the sessions of an owner, for a table with the ``owner`` column."""

    def __init__(self, table: sa.Table) -> None:
        c = table.c
        live = sa.or_(c.expires_at.is_(None), c.expires_at > sa.bindparam("now"))
        owner = sa.bindparam("owner", type_=c.owner.type)
        # The index finds the rows; comparing lengths as well keeps "ann" and
        # "ann " two owners on MariaDB and MySQL, which ignore trailing spaces
        # in comparisons (elsewhere it changes nothing).
        owned = sa.and_(c.owner == owner, sa.func.length(c.owner) == sa.func.length(owner))

        #: The live sessions of an owner, oldest first: id, data, created_at, refreshed_at, expires_at.
        self.sessions = (
            sa.select(c.id, c.data, c.created_at, c.refreshed_at, c.expires_at)
            .where(owned, live)
            .order_by(c.created_at, c.id)
        )
        #: The keys of an owner's live sessions.
        self.keys = sa.select(c.id).where(owned, live)
        #: One session of an owner.
        self.end_one = sa.delete(table).where(c.id == sa.bindparam("key"), owned)
        #: The live sessions of an owner but the one under ``keep``.
        self.end_others = sa.delete(table).where(owned, c.id != sa.bindparam("keep"), live)
