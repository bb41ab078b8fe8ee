"""The app the request-lock fairness test serves with gunicorn.

Every request increments one counter in its session under ``lock=True``
(the default ``lock_timeout``), holding the lock for
``WSGISESSION_LOCK_APP_WORK`` seconds of simulated work between its read and
its write.  ``WSGISESSION_LOCK_APP_URL`` is the Redis URL,
``WSGISESSION_LOCK_APP_PREFIX`` the key prefix.  ``/seed`` starts a session,
``/count`` reads the counter.
"""

from __future__ import annotations

import os
import time
from typing import Any

from wsgisession import SessionMiddleware
from wsgisession.stores.redis import RedisStore

from .support import json_app

WORK = float(os.environ.get("WSGISESSION_LOCK_APP_WORK", "0.05"))


def handler(session: Any, environ: dict) -> Any:
    """``/seed`` sets the counter to 0, ``/count`` reads it; any other path adds one to it, slowly."""
    if environ["PATH_INFO"] == "/seed":
        session["count"] = 0
        return 0
    if environ["PATH_INFO"] == "/count":
        return session["count"]
    count = session.get("count", 0)
    time.sleep(WORK)  # the critical section: read, work, write
    session["count"] = count + 1
    return session["count"]


store = RedisStore(os.environ["WSGISESSION_LOCK_APP_URL"], prefix=os.environ["WSGISESSION_LOCK_APP_PREFIX"])
application = SessionMiddleware(json_app(handler), store, lock=True)
