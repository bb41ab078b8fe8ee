"""A complete custom store: sessions in a ``dbm`` file, kept across restarts.

Run it and open http://127.0.0.1:8000/ a few times, restart it, and open it
again: the count goes on (the file is ``wsgisession-example.dbm`` in the
temporary directory, or ``$DBM_STORE_PATH``)::

    python examples/custom_store.py

The four basic methods are all a store needs.  ``apply_changes`` is the
optional fifth: applying each request's changes under the store's lock keeps
concurrent requests from erasing each other's keys, and a logout from being
undone.  One process only: dbm
files are not made for several writers.
"""

from __future__ import annotations

import dbm
import json
import os
import tempfile
import threading
from typing import Any, Callable, Dict, Iterable, Optional

from wsgisession import SessionMiddleware, get_session
from wsgisession.store import ChangeOutcome, SessionChanges, SessionRecord, Store, storage_key


class DbmStore(Store):
    """Each session as JSON in a dbm file, under the SHA-256 digest of its id."""

    def __init__(self, path: str) -> None:
        self.database = dbm.open(path, "c")  # noqa: SIM115 (open while the store lives; close() closes it)
        self.mutex = threading.Lock()  # dbm objects are not thread-safe

    def get_session(self, id: str, environ: Dict[str, Any]) -> Optional[SessionRecord]:
        with self.mutex:
            text = self.database.get(storage_key(id))
        return None if text is None else json.loads(text)  # type: ignore[no-any-return]

    def create_session(self, data: SessionRecord, id: str, environ: Dict[str, Any]) -> None:
        with self.mutex:
            self.database[storage_key(id)] = json.dumps(data)

    persist_session = create_session

    def delete_session(self, id: str, environ: Dict[str, Any]) -> None:
        with self.mutex:
            if storage_key(id) in self.database:
                del self.database[storage_key(id)]

    def apply_changes(self, id: str, changes: SessionChanges, environ: Dict[str, Any]) -> ChangeOutcome:
        key = storage_key(id)
        with self.mutex:
            text = self.database.get(key)
            record = None if text is None else json.loads(text)
            if record is None or record.get("generation", 0) != changes.generation:
                return ChangeOutcome.GONE  # deleted or cleared meanwhile: stays so
            updated = changes.apply_to(record)
            if not updated["data"]:
                del self.database[key]
                return ChangeOutcome.EMPTIED
            self.database[key] = json.dumps(updated)
            return ChangeOutcome.APPLIED

    def close(self) -> None:
        self.database.close()


def counter(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    session = get_session(environ)
    session["count"] = session.get("count", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [f"count {session['count']}\n".encode()]


def create_app(path: str) -> SessionMiddleware:
    """The counter app on a DbmStore at ``path``."""
    return SessionMiddleware(counter, DbmStore(path))


app = create_app(os.environ.get("DBM_STORE_PATH", os.path.join(tempfile.gettempdir(), "wsgisession-example.dbm")))

if __name__ == "__main__":
    from werkzeug.serving import run_simple

    run_simple("127.0.0.1", int(os.environ.get("PORT", "8000")), app, threaded=True)
