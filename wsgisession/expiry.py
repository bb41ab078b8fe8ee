"""Every expiry rule in one place.

A session has two clocks (OWASP asks for both):

* ``expire_after``, the sliding idle timeout: a session not used for that long
  is dead.  Using the session pushes the deadline forward, but the store is only
  told about it once per ``refresh_interval`` so that an unchanged session is
  not rewritten on every request.
* ``max_lifetime``, the absolute timeout counted from creation, which sliding
  never extends.

Times are Unix seconds (floats) from an injectable ``clock`` so tests can move
time without sleeping.
"""

from __future__ import annotations

import datetime
import math
import time
from typing import Callable, Optional, Union

Duration = Union[int, float, datetime.timedelta]

#: The default idle timeout: fourteen days.
DEFAULT_EXPIRE_AFTER = 14 * 24 * 60 * 60

#: A refresh of the sliding expiry is written once per this fraction of
#: ``expire_after``: a session used continuously then lives between 90% and
#: 100% of ``expire_after`` after its last use.
REFRESH_FRACTION = 0.1


def to_seconds(value: Optional[Duration], name: str) -> Optional[float]:
    """Return ``value`` (seconds or a timedelta) as float seconds, or None.

    Raises ``ValueError`` for zero or negative durations.
    """
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{name} must be seconds (int or float), a timedelta or None, not {value!r}")
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"{name} must be a positive, finite duration, not {value!r}")
    return seconds


class ExpiryPolicy:
    """Decides when a session is expired, when to refresh it and the cookie's Max-Age."""

    __slots__ = ("expire_after", "max_lifetime", "refresh_interval", "clock")

    def __init__(
        self,
        expire_after: Optional[Duration] = DEFAULT_EXPIRE_AFTER,
        max_lifetime: Optional[Duration] = None,
        refresh_interval: Optional[Duration] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.expire_after = to_seconds(expire_after, "expire_after")
        self.max_lifetime = to_seconds(max_lifetime, "max_lifetime")
        interval = to_seconds(refresh_interval, "refresh_interval")
        if interval is None and self.expire_after is not None:
            interval = self.expire_after * REFRESH_FRACTION
        self.refresh_interval = interval
        self.clock = clock

    def expires_at(self, created: float, refreshed: float) -> Optional[float]:
        """The time the session dies unless it is refreshed; None for never."""
        deadline = None
        if self.expire_after is not None:
            deadline = refreshed + self.expire_after
        if self.max_lifetime is not None:
            absolute = created + self.max_lifetime
            deadline = absolute if deadline is None else min(deadline, absolute)
        return deadline

    def is_expired(self, created: float, refreshed: float, now: float) -> bool:
        """True when a session created and last refreshed at these times is dead at ``now``."""
        return (self.expire_after is not None and now >= refreshed + self.expire_after) or (
            self.max_lifetime is not None and now >= created + self.max_lifetime
        )

    def refresh_due(self, refreshed: float, now: float) -> bool:
        """True when the sliding expiry should be written again."""
        return self.refresh_interval is not None and now - refreshed >= self.refresh_interval

    def cookie_max_age(self, created: float, refreshed: float, now: float) -> Optional[int]:
        """Max-Age for the cookie, or None for a browser-session cookie."""
        deadline = self.expires_at(created, refreshed)
        if deadline is None:
            return None
        return max(0, math.ceil(deadline - now))
