"""The correctness probe: K concurrent requests on one session, counting what was lost.

Each request sets a key of its own and increments one shared counter
(read, simulated work, write).  A store that applies each request's changes
to the current record keeps every key; only a per-session lock (``lock=True``)
also keeps every increment, since a read-modify-write is the app's own race.
Lost keys and lost increments are counted over the requests that answered 200.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from .browser import Browser
from .scenarios import PROBE_KEY_PREFIX, WSGIApp
from .subjects import Subject
from .workspace import Unavailable, Workspace

DEFAULT_CONCURRENCY = 32


@dataclass(frozen=True)
class ProbeResult:
    """What one subject (in one variant) kept of K concurrent requests."""

    subject: str
    variant: str
    requests: int
    answered: int
    lost_keys: int
    lost_increments: int
    #: For ours: what must hold (lost keys 0; with the lock, lost increments 0 too).
    expectation: str
    verdict: str


def probe_app(app: WSGIApp, concurrency: int) -> Tuple[int, int, int]:
    """Run the probe on ``app``: ``(requests answered 200, lost keys, lost increments)``."""
    browser = Browser(app)
    browser.get("/setup")
    start = threading.Barrier(concurrency)

    def one(index: int) -> bool:
        environ = browser.environ("/probe", str(index))
        try:
            start.wait(timeout=30)
        except threading.BrokenBarrierError:
            return False
        try:
            response, _ = browser.call(environ)
        except Exception:
            return False
        if not response.status.startswith("200"):
            return False
        browser.keep_cookies(response.headers)
        return True

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        answered = list(pool.map(one, range(concurrency)))
    report = json.loads(browser.get("/report").body)
    kept = set(report["keys"])
    succeeded = [index for index, ok in enumerate(answered) if ok]
    lost_keys = sum(1 for index in succeeded if f"{PROBE_KEY_PREFIX}{index}" not in kept)
    lost_increments = len(succeeded) - int(report["counter"])
    return len(succeeded), lost_keys, lost_increments


def _verdict(
    subject: Subject, locked: bool, server_side: bool, lost_keys: int, lost_increments: int
) -> Tuple[str, str]:
    if not subject.is_ours or not server_side:
        return "", ""
    if locked:
        return "no loss", "ok" if lost_keys == 0 and lost_increments == 0 else "FAIL"
    return "lost keys 0", "ok" if lost_keys == 0 else "FAIL"


def _variants(subject: Subject) -> List[Tuple[str, bool]]:
    if subject.is_ours and subject.build_locked is not None:
        return [("", False), ("lock=True", True)]
    return [("", False)]


def run_probe(
    subjects: Sequence[Subject], workspace: Workspace, concurrency: int = DEFAULT_CONCURRENCY
) -> Tuple[List[ProbeResult], Dict[str, str]]:
    """Probe each subject (ours with and without ``lock=True``): ``(results, reasons for skips)``."""
    results = []
    skipped: Dict[str, str] = {}
    for subject in subjects:
        if subject.group == "baseline":
            continue
        for variant, locked in _variants(subject):
            name = f"{subject.name} {variant}".strip()
            build = subject.build_locked if locked and subject.build_locked is not None else subject.build
            label = subject.name + ("_probe_lock" if locked else "_probe")
            try:
                app = build(workspace, label)
                answered, lost_keys, lost_increments = probe_app(app, concurrency)
            except Unavailable as exc:
                skipped[name] = str(exc)
                continue
            except Exception as exc:
                skipped[name] = f"failed: {type(exc).__name__}: {exc}"
                continue
            server_side = not _client_side(app)
            expectation, verdict = _verdict(subject, locked, server_side, lost_keys, lost_increments)
            results.append(
                ProbeResult(
                    subject.name, variant, concurrency, answered, lost_keys, lost_increments, expectation, verdict
                )
            )
    return results, skipped


def _client_side(app: WSGIApp) -> bool:
    # wsgisession's middleware, found through Flask's wsgi_app for the Flask integration.
    from wsgisession.errors import SessionError
    from wsgisession.testing import find_middleware

    try:
        return find_middleware(app).store.client_side
    except SessionError:
        return False
