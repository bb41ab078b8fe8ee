"""In-process measurement: every (subject, scenario) cell, interleaved in rounds.

Each round runs one batch of every cell, round-robin, starting one cell later
than the round before, so slow drift of the machine (frequency, caches, other
load) falls on all cells alike.  A batch times only the app (the call, the
body's iteration and ``close()``); the browser's own work is outside the
clock.  A cell's result is the median over rounds of microseconds per request;
its added cost is the median over rounds of (cell - its baseline's cell), the
two measured in the same round.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .browser import Browser
from .scenarios import BASELINE_COOKIES, SCENARIOS, Scenario, WSGIApp
from .subjects import Subject

#: A batch of a slow cell (a database write) is cut to about this long, so
#: slow cells do not dominate a round; fast cells run ``iterations`` requests.
BATCH_BUDGET_US = 4000.0
MIN_ITERATIONS = 3


@dataclass
class Cell:
    """One subject doing one scenario: its browser, batch size and per-round results."""

    subject: Subject
    scenario: Scenario
    browser: Browser
    iterations: int = 1
    samples: List[float] = field(default_factory=list)
    error: Optional[str] = None

    def run_batch(self) -> float:
        """Run ``iterations`` requests; return microseconds per request spent in the app."""
        browser = self.browser
        path = self.scenario.path
        send_cookies = self.scenario.returning
        total = 0
        for _ in range(self.iterations):
            response, elapsed = browser.call(browser.environ(path, send_cookies=send_cookies))
            if response.status[:3] != "200":
                raise RuntimeError(f"{path} answered {response.status}: {response.body[:300]!r}")
            browser.keep_cookies(response.headers)
            total += elapsed
        return total / self.iterations / 1000.0


@dataclass(frozen=True)
class Row:
    """The summary of one cell."""

    subject: str
    scenario: str
    per_request_us: float
    #: Median over rounds of (this cell - its baseline's cell); None for baselines.
    added_us: Optional[float]
    #: Half the interquartile range of those per-round differences: the noise.
    added_spread_us: Optional[float]
    ratio_to_baseline: float


def _prepare(subject: Subject, app: WSGIApp, scenario: Scenario) -> Cell:
    browser = Browser(app)
    if scenario.returning:
        if subject.group == "baseline":
            browser.cookies.update(BASELINE_COOKIES)
        else:
            browser.get("/setup")
    return Cell(subject, scenario, browser)


def _calibrate(cell: Cell, max_iterations: int) -> None:
    cell.iterations = MIN_ITERATIONS
    cell.run_batch()  # warm up: imports, first queries, caches
    per_request = max(cell.run_batch(), 0.01)
    cell.iterations = max(MIN_ITERATIONS, min(max_iterations, int(BATCH_BUDGET_US / per_request)))


def measure(
    subjects: Sequence[Subject],
    apps: Mapping[str, WSGIApp],
    *,
    rounds: int,
    max_iterations: int,
    scenarios: Sequence[Scenario] = SCENARIOS,
    progress: bool = True,
) -> Tuple[List[Cell], Dict[str, str]]:
    """Measure every built subject in every scenario: ``(cells, errors by cell name)``.

    A cell whose app fails is dropped from the measurement and reported.
    """
    errors: Dict[str, str] = {}
    cells: List[Cell] = []
    for subject in subjects:
        app = apps.get(subject.name)
        if app is None:
            continue
        for scenario in scenarios:
            try:
                cell = _prepare(subject, app, scenario)
                _calibrate(cell, max_iterations)
            except Exception as exc:
                errors[f"{subject.name}/{scenario.name}"] = f"{type(exc).__name__}: {exc}"
                continue
            cells.append(cell)
    for round_number in range(rounds):
        start = round_number % len(cells) if cells else 0
        for cell in cells[start:] + cells[:start]:
            if cell.error is not None:
                continue
            try:
                cell.samples.append(cell.run_batch())
            except Exception as exc:
                cell.error = f"{type(exc).__name__}: {exc}"
                errors[f"{cell.subject.name}/{cell.scenario.name}"] = cell.error
        if progress and (round_number + 1) % max(1, rounds // 10) == 0:
            print(f"  in-process: round {round_number + 1}/{rounds}", file=sys.stderr, flush=True)
    return [cell for cell in cells if cell.error is None], errors


def _half_iqr(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    quartiles = statistics.quantiles(values, n=4)
    return (quartiles[2] - quartiles[0]) / 2


def summarize(cells: Sequence[Cell]) -> List[Row]:
    """One :class:`Row` per cell, the added cost paired round by round with the baseline."""
    by_key = {(cell.subject.name, cell.scenario.name): cell for cell in cells}
    rows = []
    for cell in cells:
        median = statistics.median(cell.samples)
        baseline = by_key.get((cell.subject.baseline, cell.scenario.name))
        added = spread = None
        ratio = 1.0
        if baseline is not None and baseline is not cell:
            differences = [mine - theirs for mine, theirs in zip(cell.samples, baseline.samples)]
            added = statistics.median(differences)
            spread = _half_iqr(differences)
            ratio = median / statistics.median(baseline.samples)
        rows.append(Row(cell.subject.name, cell.scenario.name, median, added, spread, ratio))
    return rows
