"""The exceptions wsgisession raises.

They form a tree so that callers catch at the level they care about:
``SessionError`` for anything session related, ``SessionStoreError`` for a store
that failed, ``SessionCookieTooLarge`` for a session that no longer fits a cookie.
"""

from __future__ import annotations


class SessionError(Exception):
    """Base class of every error wsgisession raises on purpose."""


class SessionStoreError(SessionError):
    """A store could not load, save or delete a session.

    The message names the store and the operation; ``__cause__`` holds the
    original exception.  The session is never replaced by an empty one when this
    is raised, so real data is not overwritten.
    """


class SessionLockTimeout(SessionStoreError):
    """The per-session request lock could not be acquired in time."""


class SessionCookieTooLarge(SessionError):
    """The encoded session cookie is larger than browsers keep.

    Raised at commit time so that the developer sees it in tests instead of
    users being silently logged out in production.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the session cookie would be {size} bytes, over the limit of {limit} bytes; "
            "store less in the session or use a server-side store"
        )
        self.size = size
        self.limit = limit
