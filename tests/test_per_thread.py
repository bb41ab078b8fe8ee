"""PerThread: the connection each thread holds for the SQL and Redis stores, and its ends."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from typing import Any, Callable, Iterator, List, Tuple

from wsgisession.stores.per_thread import PerThread


def connections() -> Tuple[PerThread[int], List[int]]:
    """A PerThread of numbered stand-ins for connections, and the list of those ended."""
    numbers = itertools.count(1)
    ended: List[int] = []
    return PerThread(lambda: next(numbers), ended.append), ended


def in_thread(work: Callable[[], Any]) -> Any:
    result: List[Any] = []
    worker = threading.Thread(target=lambda: result.append(work()))
    worker.start()
    worker.join()
    return result[0]


@contextlib.contextmanager
def held_by_another_thread(per_thread: PerThread[int]) -> Iterator[None]:
    """Another thread takes its connection and keeps it until the block ends; then it ends."""
    holding = threading.Event()
    done = threading.Event()

    def hold() -> None:
        per_thread.get()
        holding.set()
        done.wait(10)

    worker = threading.Thread(target=hold)
    worker.start()
    assert holding.wait(10)
    try:
        yield
    finally:
        done.set()
        worker.join()


def test_a_thread_keeps_its_connection_and_ends_it_when_it_ends() -> None:
    per_thread, ended = connections()
    assert in_thread(lambda: [per_thread.get(), per_thread.get()]) == [1, 1]
    assert ended == [1]
    assert per_thread.get() == 2  # another thread, another connection
    assert per_thread.get() == 2
    assert ended == [1]


def test_replace_ends_the_broken_connection_and_makes_a_new_one() -> None:
    per_thread, ended = connections()
    assert per_thread.get() == 1
    assert per_thread.replace() == 2
    assert ended == [1]
    assert per_thread.get() == 2


def test_end_all_ends_every_threads_connection() -> None:
    per_thread, ended = connections()
    with held_by_another_thread(per_thread):
        per_thread.get()
        per_thread.end_all()
        assert sorted(ended) == [1, 2]
    assert sorted(ended) == [1, 2]  # not twice: the thread's end does not end it again


def test_a_forked_child_makes_its_own_and_never_ends_the_parents() -> None:
    # The parent holds two connections, in this thread and in another one
    # that the child does not have; the child must not end either (ending
    # one, for instance closing a socket, could end it for the parent too).
    per_thread, ended = connections()
    with held_by_another_thread(per_thread):
        assert per_thread.get() == 2
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                own = per_thread.get()
                per_thread.end_all()
                report = f"{own} {sorted(ended)}"
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                report = repr(exc)
            os.write(write_end, report.encode())
            os._exit(0)
        os.close(write_end)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read_end) as pipe:
            report = pipe.read()
    # The child made connection 3 and ended only that one.
    assert report == "3 [3]"
    assert os.waitstatus_to_exitcode(status) == 0
    assert per_thread.get() == 2  # the parent's own are untouched
    assert ended == [1]  # the other thread's, when it ended
