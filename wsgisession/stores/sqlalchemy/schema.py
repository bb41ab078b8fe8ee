"""The sessions table, and how a row holds a session record.

A row is keyed by the SHA-256 digest of the session id.  Its ``data`` column
holds the JSON of the record's content, ``{"data": {...}, "flash": [...]}``
plus ``"generation"``, ``"persistent"`` and the owner's ``"details"`` when
they are set (rows written by 0.1.0 have only the first two); the record's
times have columns of their own, and so has its owner, indexed so that the
sessions of an owner are found without a scan.  ``version`` rises with every
change of the data or the owner: it is the compare-and-swap token, which the
store hands out with each record it loads (:class:`RowVersion`).
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from ...errors import SessionStoreError
from ...serialization import dumps, loads
from ...store import SessionRecord

__all__ = ["session_table", "RowVersion", "payload_of", "parse_payload", "record_of", "OWNER_LENGTH"]

#: The columns a table needs: those of 0.1.0.  The ``owner`` column came with
#: 0.2.0; the store adds it to an older table (see ``upgrade``).
COLUMNS = (
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

#: The longest owner the ``owner`` column holds, in characters.
OWNER_LENGTH = 255


def session_table(metadata: sa.MetaData, name: str = "sessions") -> sa.Table:
    """Define the sessions table in ``metadata`` (for migrations) and return it.

    A table of that name already in ``metadata`` is returned when it has the
    columns of 0.1.0; otherwise ``ValueError`` is raised (one without the
    ``owner`` column serves sessions without owners).  The definition adds the
    indexed ``owner`` column to those of 0.1.0: a migration tool comparing
    it with a table created by 0.1.0 adds that column and its index, which
    the store also does by itself on first use unless ``create_table`` is
    False.
    """
    existing = metadata.tables.get(name)
    if existing is not None:
        missing = set(COLUMNS) - set(existing.c.keys())
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
        # The JSON payload; MySQL's TEXT stops at 64 KiB.
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
        # Who the session belongs to (NULL for nobody); indexed for the
        # sessions of an owner.  MariaDB and MySQL compare strings without
        # regard to case by default: a binary collation keeps "Ann" and "ann"
        # two owners.
        sa.Column(
            "owner",
            sa.String(OWNER_LENGTH).with_variant(
                mysql.VARCHAR(OWNER_LENGTH, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
            ),
            nullable=True,
            index=True,
        ),
    )


class RowVersion(NamedTuple):
    """What ``record["version"]`` holds for a record this store loaded or wrote.

    ``number`` is the row's ``version`` column, and ``payload`` and ``owner``
    what its ``data`` and ``owner`` columns held at that version.  A write
    applies the request's changes to them and succeeds only while the row
    still has ``number``: one statement, and no change another request made
    meanwhile is overwritten.  (The record's own ``data`` is the request's
    copy, which the session changes as the request goes on, so it can not
    serve.)
    """

    number: int
    payload: str
    owner: Optional[str] = None


def payload_of(record: SessionRecord) -> str:
    """The ``data`` column for ``record``: its content besides the times and the owner."""
    payload: Dict[str, Any] = {"data": record["data"], "flash": record["flash"]}
    if record.get("generation"):
        payload["generation"] = record["generation"]
    if "persistent" in record:
        payload["persistent"] = record["persistent"]
    details = record.get("details")
    if details and record.get("owner") is not None:
        payload["details"] = details
    return dumps(payload)


def parse_payload(text: str, table_name: str) -> Dict[str, Any]:
    """The content of a ``data`` column; ``SessionStoreError`` when it is not a session's."""
    try:
        payload = loads(text)
        if not isinstance(payload.get("data"), dict) or not isinstance(payload.get("flash"), list):
            raise ValueError("expected an object with 'data' and 'flash'")
    except (ValueError, TypeError, AttributeError) as exc:
        raise SessionStoreError(
            f"SQLAlchemyStore found a malformed session row in table {table_name!r}: {exc}"
        ) from exc
    return payload  # type: ignore[no-any-return]


def record_of(
    payload: Dict[str, Any], created: float, refreshed: float, expires: Optional[float], owner: Optional[str] = None
) -> SessionRecord:
    """The record a row holds: its parsed ``data`` column, its times and its owner."""
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
    if owner is not None:
        record["owner"] = owner
        details = payload.get("details")
        if details:
            record["details"] = details
    return record
