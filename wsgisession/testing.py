"""Helpers for testing applications that use wsgisession."""

from __future__ import annotations

import threading
import time
from typing import Optional

__all__ = ["FakeClock"]


class FakeClock:
    """A clock for ``SessionMiddleware(clock=...)`` and stores that moves only when told.

    Starts at the real current time (or ``start``) so records stay plausible to
    a database or Redis; ``advance(seconds)`` moves it forward.  Thread-safe.
    """

    def __init__(self, start: Optional[float] = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        with self._lock:
            self._now += seconds
