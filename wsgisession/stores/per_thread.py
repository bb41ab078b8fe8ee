"""A connection for each thread that serves requests, kept while the thread lives.

The SQL and Redis stores run a request's statements on a connection the
thread holds, instead of borrowing one from a pool for every statement and
giving it back: the borrowing is a large share of a short statement's cost
(see each store's page).  :class:`PerThread` keeps that connection:

* made on the thread's first call, and ended (given back to its pool) when
  the thread ends, or at once by :meth:`PerThread.end_all`;
* never used across a fork: a child process makes its own, and leaves the
  parent's alone, since the parent may still be using it;
* not at all under gevent or eventlet, whose threads are greenlets that each
  serve one request: a connection per greenlet would be borrowed for the
  whole request, so the caller keeps borrowing per statement there.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from typing import Callable, Generic, List, Optional, TypeVar

__all__ = ["PerThread", "threads_are_green"]

T = TypeVar("T")


def threads_are_green() -> bool:
    """True when gevent or eventlet has made threads into greenlets."""
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is not None and gevent_monkey.is_module_patched("threading"):
        return True
    eventlet_patcher = sys.modules.get("eventlet.patcher")
    return eventlet_patcher is not None and bool(eventlet_patcher.is_monkey_patched("thread"))


class _Held(Generic[T]):
    """One thread's connection; ended when the thread ends (its thread-local storage goes)."""

    __slots__ = ("value", "pid", "_end", "_ended", "__weakref__")

    def __init__(self, value: T, end: Callable[[T], None]) -> None:
        self.value = value
        #: The process that made it: in a forked child, the connection is the parent's.
        self.pid = os.getpid()
        self._end = end
        self._ended = False

    def end(self) -> None:
        """End the connection, once; never the parent's connection, in a child."""
        if not self._ended and self.pid == os.getpid():
            self._ended = True
            self._end(self.value)

    def __del__(self) -> None:
        try:
            self.end()
        except Exception:  # noqa: BLE001 - a thread or the interpreter is ending: nothing to report to
            pass


class PerThread(Generic[T]):
    """A connection per thread: ``make()`` opens one, ``end(connection)`` gives it back."""

    def __init__(self, make: Callable[[], T], end: Callable[[T], None]) -> None:
        self._make = make
        self._end = end
        self._local = threading.local()
        self._all: weakref.WeakSet[_Held[T]] = weakref.WeakSet()

    def get(self) -> Optional[T]:
        """This thread's connection, made on its first call; None under green threads."""
        held: Optional[_Held[T]] = getattr(self._local, "held", None)
        if held is None or held.pid != os.getpid():
            if threads_are_green():
                return None
            return self.replace()
        return held.value

    def replace(self) -> T:
        """End this thread's connection, if any, and make it a new one (after the old one broke)."""
        old: Optional[_Held[T]] = getattr(self._local, "held", None)
        self._local.held = None
        if old is not None:
            self._all.discard(old)
            old.end()
        held = _Held(self._make(), self._end)
        self._local.held = held
        self._all.add(held)
        return held.value

    def end_all(self) -> None:
        """End every thread's connection (when the store closes: no request may be running)."""
        every: List[_Held[T]] = list(self._all)
        self._all.clear()
        for held in every:
            held.end()
