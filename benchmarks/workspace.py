"""Where one benchmark run keeps its files, names its tables and keys, and cleans up.

Every table and Redis key a run creates carries the run's id, so the run can
remove exactly what it made (including what a gunicorn worker made for it).
Service URLs come from the same environment variables the test suite reads.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Callable, List, Optional
from urllib.parse import urlsplit

POSTGRES_URL_VARIABLE = "WSGISESSION_TEST_POSTGRES_URL"
REDIS_URL_VARIABLE = "WSGISESSION_TEST_REDIS_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"

#: The prefix of every table name and Redis key a benchmark run creates.
NAME_PREFIX = "wsb"


class Unavailable(Exception):
    """A store, peer or service this run can not use; the message says why."""


def reachable(url: str) -> bool:
    """True when something accepts TCP connections at the URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1.0):
            return True
    except OSError:
        return False


class Workspace:
    """One run's temporary directory, unique names, services and cleanup duties.

    The process that creates a workspace with ``owner=True`` removes the
    directory, the PostgreSQL tables and the Redis keys named after the run id
    in :meth:`close`; a gunicorn worker joins the same run with ``owner=False``.
    """

    def __init__(self, run_id: Optional[str] = None, directory: Optional[Path] = None, *, owner: bool = True) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:10]
        self.directory = directory or Path(tempfile.mkdtemp(prefix=f"wsgisession-bench-{self.run_id}-"))
        self.owner = owner
        postgres_url = os.environ.get(POSTGRES_URL_VARIABLE, DEFAULT_POSTGRES_URL)
        redis_url = os.environ.get(REDIS_URL_VARIABLE, DEFAULT_REDIS_URL)
        self.postgres_url: Optional[str] = postgres_url if reachable(postgres_url) else None
        self.redis_url: Optional[str] = redis_url if reachable(redis_url) else None
        self._closers: List[Callable[[], None]] = []

    def table_name(self, label: str) -> str:
        """A table name unique to this run and ``label`` (letters, digits and underscores)."""
        return f"{NAME_PREFIX}_{self.run_id}_{label}".replace("-", "_").replace(":", "_")

    def redis_prefix(self, label: str) -> str:
        """A Redis key prefix unique to this run and ``label``."""
        return f"{NAME_PREFIX}:{self.run_id}:{label}:"

    def sqlite_url(self, label: str) -> str:
        """An SQLAlchemy URL for an SQLite file of its own in the run's directory."""
        return f"sqlite:///{self.directory / (label.replace(':', '_') + '.sqlite')}"

    def require_postgres(self) -> str:
        """The PostgreSQL URL; raises :class:`Unavailable` when the server does not answer."""
        if self.postgres_url is None:
            raise Unavailable(f"PostgreSQL not reachable (set {POSTGRES_URL_VARIABLE})")
        return self.postgres_url

    def require_redis(self) -> str:
        """The Redis URL; raises :class:`Unavailable` when the server does not answer."""
        if self.redis_url is None:
            raise Unavailable(f"Redis not reachable (set {REDIS_URL_VARIABLE})")
        return self.redis_url

    def on_close(self, closer: Callable[[], None]) -> None:
        """Call ``closer`` (close a store, dispose an engine) when the workspace closes."""
        self._closers.append(closer)

    def close(self) -> None:
        """Close what was registered; the owner also drops the run's tables, keys and files."""
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception as exc:  # cleanup goes on; the run's results stand
                print(f"warning: closing a benchmark resource failed: {type(exc).__name__}: {exc}")
        if not self.owner:
            return
        self._drop_postgres_tables()
        self._delete_redis_keys()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _drop_postgres_tables(self) -> None:
        if self.postgres_url is None:
            return
        import sqlalchemy as sa

        engine = sa.create_engine(self.postgres_url)
        try:
            prefix = f"{NAME_PREFIX}_{self.run_id}_"
            names = [name for name in sa.inspect(engine).get_table_names() if name.startswith(prefix)]
            if names:
                with engine.begin() as connection:
                    for name in names:
                        connection.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
        except Exception as exc:
            print(f"warning: dropping the benchmark's PostgreSQL tables failed: {type(exc).__name__}: {exc}")
        finally:
            engine.dispose()

    def _delete_redis_keys(self) -> None:
        if self.redis_url is None:
            return
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(match=f"{NAME_PREFIX}:{self.run_id}:*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
        except Exception as exc:
            print(f"warning: deleting the benchmark's Redis keys failed: {type(exc).__name__}: {exc}")
        finally:
            client.close()
