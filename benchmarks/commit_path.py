"""Micro-benchmark of the commit path: atomic ``apply_changes`` against a blind whole-record write.

A request that changed one key commits through ``apply_changes`` (merge the
change into the current record, atomically) instead of ``persist_session`` of
the whole record it loaded (a blind overwrite, which loses concurrent writers'
keys).  This measures what that safety costs on each server-side store, both
calls timed on the store directly and interleaved in rounds.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from wsgisession.serialization import encode_value
from wsgisession.store import ChangeOutcome, SessionChanges, SessionRecord, Store, generate_session_id

from .ours import OUR_STORES, OurStore
from .scenarios import SETUP_DATA
from .workspace import Unavailable, Workspace

_EXPIRE_AFTER = 14 * 24 * 60 * 60.0


@dataclass(frozen=True)
class CommitRow:
    """One store's median microseconds per commit, each way."""

    store: str
    atomic_us: float
    blind_us: float

    @property
    def ratio(self) -> float:
        """Atomic over blind: what the merge costs relative to the overwrite."""
        return self.atomic_us / self.blind_us


def _record(visits: int, now: float) -> SessionRecord:
    data = {key: encode_value(value) for key, value in SETUP_DATA.items()}
    data["visits"] = visits
    return {"data": data, "flash": [], "created": now, "refreshed": now, "expires": now + _EXPIRE_AFTER}


def _timed_atomic(store: Store, id: str, iterations: int, start: int) -> float:
    environ: Dict[str, object] = {}
    # The record a request loaded: a store's version for compare-and-swap
    # travels in it, and the store moves it on after each write.
    base = store.get_session(id, environ)
    total = 0
    for visits in range(start, start + iterations):
        now = time.time()
        changes = SessionChanges(set={"visits": visits}, refreshed=now, expires=now + _EXPIRE_AFTER, base=base)
        began = time.perf_counter_ns()
        if store.apply_changes(id, changes, environ) is not ChangeOutcome.APPLIED:
            raise RuntimeError(f"{type(store).__name__}.apply_changes lost the benchmark's session")
        total += time.perf_counter_ns() - began
    return total / iterations / 1000.0


def _timed_blind(store: Store, id: str, iterations: int, start: int) -> float:
    environ: Dict[str, object] = {}
    total = 0
    for visits in range(start, start + iterations):
        record = _record(visits, time.time())
        began = time.perf_counter_ns()
        store.persist_session(record, id, environ)
        total += time.perf_counter_ns() - began
    return total / iterations / 1000.0


def _measure_store(store: Store, rounds: int, max_iterations: int) -> Tuple[float, float]:
    id = generate_session_id()
    store.create_session(_record(0, time.time()), id, {})
    probe = max(_timed_atomic(store, id, 3, 0), _timed_blind(store, id, 3, 0), 0.01)
    iterations = max(3, min(max_iterations, int(2000.0 / probe)))
    atomic: List[float] = []
    blind: List[float] = []
    counter = 10
    for round_number in range(rounds):
        # Alternate which goes first, so neither always follows the other.
        if round_number % 2:
            blind.append(_timed_blind(store, id, iterations, counter))
            atomic.append(_timed_atomic(store, id, iterations, counter))
        else:
            atomic.append(_timed_atomic(store, id, iterations, counter))
            blind.append(_timed_blind(store, id, iterations, counter))
        counter += iterations
    store.delete_session(id, {})
    return statistics.median(atomic), statistics.median(blind)


def measure_commit_path(
    workspace: Workspace, names: Optional[Sequence[str]], rounds: int, max_iterations: int
) -> Tuple[List[CommitRow], Dict[str, str]]:
    """Measure each selected server-side store: ``(rows, reasons for stores skipped)``."""
    rows = []
    skipped: Dict[str, str] = {}
    stores: Sequence[OurStore] = [store for store in OUR_STORES if names is None or store.name in names]
    for factory in stores:
        try:
            store = factory.build(workspace, f"{factory.name}_commit")
        except Unavailable as exc:
            skipped[factory.name] = str(exc)
            continue
        if store.client_side:
            skipped[factory.name] = "client-side: the whole record is the cookie, there is no merge to measure"
            continue
        try:
            atomic, blind = _measure_store(store, rounds, max_iterations)
        except Exception as exc:
            skipped[factory.name] = f"failed: {type(exc).__name__}: {exc}"
            continue
        rows.append(CommitRow(factory.name, atomic, blind))
    return rows, skipped
