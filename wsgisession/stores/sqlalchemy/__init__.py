"""SQLAlchemyStore: sessions in one SQL table on SQLite, PostgreSQL or MariaDB/MySQL.

One row per session, keyed by the SHA-256 digest of its id, the data as JSON
(``schema``).  Every change of the data is a compare-and-swap on a version
column (``store``), so concurrent requests on one session keep each other's
keys and a deleted session is never written back.  SQLAlchemy Core builds
every statement once (``statements``) and runs it, so ``echo``, engine and
connection events and the instrumentation built on them see each one
(``database``); a statement that gets no answer fails after the store's
``timeout`` (``engines``, ``deadlines``).  ``locking`` is the request lock of
``SessionMiddleware(lock=True)``; ``upgrade`` adds the indexed ``owner``
column to a table created before it existed.
"""

from .schema import RowVersion, session_table
from .store import SQLAlchemyStore

__all__ = ["SQLAlchemyStore", "session_table", "RowVersion"]
