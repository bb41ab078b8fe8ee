"""A deadline for each statement sent to PostgreSQL.

psycopg has no client-side read timeout, and nothing on the server helps when
the server (or a proxy, or a failover in progress) accepts the statement and
never replies: the kernel acknowledges the bytes, so TCP keepalives and
timeouts stay quiet, and ``statement_timeout`` never starts.  A request would
wait as long as the outage lasts.

So the store arms a deadline around each statement.  One daemon thread per
process wakes every :data:`RESOLUTION` seconds while statements are pending
and shuts down the socket of any statement past its deadline.  The waiting
driver then sees the connection end and raises at once; SQLAlchemy finds it
disconnected and discards it, and the rest of the pool with it, so a
connection that was cut is never handed out again.  Shutting the socket
down, rather than closing it, is what wakes a thread blocked on it.

Cancelling the statement instead (a cancel request on a new connection)
would keep the connection, but the cancel needs the very server that is not
answering.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from typing import Dict, Optional, Set, Tuple

__all__ = ["WATCHDOG", "Watchdog", "RESOLUTION"]

#: How often the watchdog looks at pending statements: a deadline fires at
#: most this late.
RESOLUTION = 0.05


class Watchdog:
    """Shuts down the connection of a statement that outlives its deadline."""

    def __init__(self) -> None:
        self._pending: Dict[int, Tuple[float, int]] = {}
        self._fired: Set[int] = set()
        self._tickets = itertools.count()
        self._mutex = threading.Lock()
        self._work = threading.Event()
        self._pid: Optional[int] = None

    def arm(self, fileno: int, seconds: float) -> int:
        """Watch the socket ``fileno`` for ``seconds``; return the ticket for :meth:`disarm`."""
        if self._pid != os.getpid():
            self._start()  # first use in this process (a fork does not copy threads)
        ticket = next(self._tickets)
        self._pending[ticket] = (time.monotonic() + seconds, fileno)
        if not self._work.is_set():
            self._work.set()
        return ticket

    def disarm(self, ticket: int) -> bool:
        """Stop watching; True when the deadline had passed and the socket was shut down."""
        with self._mutex:
            if self._pending.pop(ticket, None) is not None:
                return False
            self._fired.discard(ticket)
            return True

    def forget_parent(self) -> None:
        """In a process just forked: no thread runs here yet, and the parent's statements are not ours."""
        self._pending = {}
        self._fired = set()
        self._mutex = threading.Lock()  # the parent's may have been held by a thread that is gone
        self._work = threading.Event()
        self._pid = None

    def _start(self) -> None:
        with self._mutex:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            threading.Thread(target=self._watch, name="wsgisession-sql-deadlines", daemon=True).start()

    def _watch(self) -> None:
        while True:
            self._work.clear()
            if not self._pending:
                self._work.wait()
            time.sleep(RESOLUTION)
            now = time.monotonic()
            with self._mutex:
                # Under the mutex, so that a statement can not be disarmed
                # (and its connection reused) between the check and the shutdown.
                for ticket, (deadline, fileno) in list(self._pending.items()):
                    if deadline <= now:
                        del self._pending[ticket]
                        self._fired.add(ticket)
                        _shut_down(fileno)


def _shut_down(fileno: int) -> None:
    try:
        with socket.socket(fileno=os.dup(fileno)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the statement is failing anyway


#: The one watchdog of this process.
WATCHDOG = Watchdog()

if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=WATCHDOG.forget_parent)
