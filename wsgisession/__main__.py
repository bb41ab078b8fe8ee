"""Command line: ``python -m wsgisession cleanup --url URL [--table NAME]``.

``cleanup`` deletes the expired sessions of a SQLAlchemyStore table, for a
cron job; it prints how many rows went and exits non-zero when it failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Optional, Sequence

from .errors import SessionError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m wsgisession", description="wsgisession maintenance commands")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cleanup = commands.add_parser("cleanup", help="delete expired sessions from a SQLAlchemyStore table")
    cleanup.add_argument("--url", required=True, help="SQLAlchemy database URL, e.g. sqlite:///sessions.sqlite3")
    cleanup.add_argument("--table", default="sessions", help="the sessions table (default: %(default)s)")
    arguments = parser.parse_args(argv)
    if arguments.command == "cleanup":
        return _cleanup(arguments.url, arguments.table)
    parser.error(f"unknown command {arguments.command!r}")  # argparse exits before this
    return 2


def _cleanup(url: str, table: str) -> int:
    try:
        import sqlalchemy

        from .stores.sqlalchemy import SQLAlchemyStore
    except ImportError as exc:
        print(f"wsgisession cleanup: SQLAlchemy is not installed ({exc})", file=sys.stderr)
        return 1
    try:
        missing_file = _missing_sqlite_file(sqlalchemy.make_url(url))
        if missing_file is not None:
            # SQLite would create an empty database there instead of failing.
            print(f"wsgisession cleanup: no SQLite database at {missing_file}", file=sys.stderr)
            return 1
        # create_table=False: a cron job pointed at the wrong table must fail,
        # not create an empty one.
        store = SQLAlchemyStore(url, table, create_table=False)
    except Exception as exc:  # a malformed URL or a missing driver
        print(f"wsgisession cleanup: can not use the database URL: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    try:
        deleted = store.cleanup()
    except SessionError as exc:
        print(f"wsgisession cleanup: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"deleted {deleted} expired session{'' if deleted == 1 else 's'} from table {table!r}")
    return 0


def _missing_sqlite_file(url: URL) -> Optional[str]:
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return None if os.path.exists(database) else os.path.abspath(database)


if __name__ == "__main__":
    sys.exit(main())
