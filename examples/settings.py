"""What every example reads from its environment: the store's URL and the cookie store's secret.

``WSGISESSION_STORE`` names the store (``memory`` by default; ``cookie``,
``sqlite:///sessions.sqlite3``, ``redis://127.0.0.1:6379/0`` ...), and
``WSGISESSION_SECRET_KEY`` the secret that signs cookie-store sessions (at
least 32 characters).  Without a secret the examples fall back to a fixed
development secret and log a warning: anyone who reads this file can forge
sessions signed with it.  It is fixed, not random, so that every worker
process (gunicorn runs two) signs and verifies with the same one.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("examples")

#: Known to everyone who has this repository: for a laptop, never for a server.
DEVELOPMENT_SECRET_KEY = "wsgisession-examples-public-development-secret-never-for-production"

#: What the examples show when the store can not hold the per-session lock.
LOST_CHANGES_NOTICE = (
    "This store keeps the session in the cookie and can not lock it: "
    "changes made at the same time in two tabs can be lost (the last response's cookie wins)."
)


def store_url() -> str:
    """The store's URL: ``WSGISESSION_STORE``, or ``memory``."""
    return os.environ.get("WSGISESSION_STORE", "memory")


def is_cookie_store(store: Any) -> bool:
    """True when ``store`` (a URL or a Store) keeps sessions in the cookie."""
    if isinstance(store, str):
        return store.strip().lower() in ("cookie", "cookie://")
    return bool(getattr(store, "client_side", False))


def secret_key() -> str:
    """The cookie store's secret: ``WSGISESSION_SECRET_KEY``, or the development secret with a warning."""
    configured = os.environ.get("WSGISESSION_SECRET_KEY")
    if configured:
        return configured
    # Logged where the server logs it and printed by the logging module's
    # last-resort handler when nothing is configured: hard to miss.
    log.warning(
        "\n%s\nWSGISESSION_SECRET_KEY is not set: cookie sessions are signed with a PUBLIC development "
        "secret, so anyone can forge them. Set WSGISESSION_SECRET_KEY (32 or more random characters, "
        "the same in every process) for anything but local development.\n%s",
        "!" * 78,
        "!" * 78,
    )
    return DEVELOPMENT_SECRET_KEY


def can_lock(store: Any) -> bool:
    """True when ``store`` (a URL or a Store) has the per-session request lock (``lock=True``)."""
    if isinstance(store, str):
        return not is_cookie_store(store)  # memory, SQL databases and Redis all lock
    return bool(getattr(store, "can_lock", False))
