"""The printed results: aligned Markdown tables and the targets, met or not.

Tables are plain text that also renders as Markdown.  Ratios of added cost
compare wsgisession with the peer doing the same job; a target is met when
that ratio is at most the target's limit.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .inprocess import Row
from .scenarios import SCENARIO_NAMES
from .subjects import SUBJECTS_BY_NAME


@dataclass(frozen=True)
class Target:
    """A goal: ours' added cost at most ``limit`` times the peer's."""

    scenario: str
    ours: str
    peer: str
    limit: float
    label: str


TARGETS: Tuple[Target, ...] = (
    Target("untouched", "ours:memory", "floor", 1.3, "<= 1.3"),
    Target("read", "ours:memory", "floor", 3.0, "<= 3"),
    Target("write", "ours:memory", "floor", 3.0, "<= 3"),
    Target("read", "ours:cookie", "beaker:cookie", 0.3, "<= 0.3"),
    Target("write", "ours:cookie", "beaker:cookie", 0.6, "<= 0.6"),
    Target("read", "ours-flask:cookie", "flask:cookie", 0.5, "<= 0.5"),
    Target("write", "ours-flask:cookie", "flask:cookie", 0.5, "<= 0.5"),
    Target("read", "ours-flask:memory", "flask:cookie", 0.25, "<= 0.25"),
    Target("write", "ours-flask:memory", "flask:cookie", 0.25, "<= 0.25"),
    Target("read", "ours:sqlite", "beaker:sqla", 1 / 3, "<= 1/3"),
    Target("write", "ours:sqlite", "beaker:sqla", 0.2, "<= 1/5"),
    Target("read", "ours:postgres", "beaker:sqla-postgres", 0.5, "<= 0.5"),
    Target("write", "ours:postgres", "beaker:sqla-postgres", 0.5, "<= 0.5"),
    Target("read", "ours:redis", "flask-session:redis", 0.8, "<= 0.8"),
    Target("write", "ours:redis", "flask-session:redis", 0.8, "<= 0.8"),
)

#: Under gunicorn, the memory store's read throughput relative to the bare app.
SERVER_TARGET = ("ours:memory", "read", 0.9)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[bool]) -> str:
    """An aligned Markdown table; ``right[i]`` right-aligns column ``i`` (numbers)."""
    body = [list(row) for row in rows]
    widths = [max([len(header)] + [len(row[i]) for row in body]) for i, header in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.rjust(width) if r else cell.ljust(width) for cell, width, r in zip(cells, widths, right)]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|" + "|".join(("-" * (width + 1) + ":") if r else ("-" * (width + 2)) for width, r in zip(widths, right)) + "|"
    )
    return "\n".join([line(headers), rule] + [line(row) for row in body])


def number(value: Optional[float], digits: int = 1) -> str:
    """``value`` with ``digits`` decimals, or a dash."""
    return "-" if value is None else f"{value:.{digits}f}"


def machine() -> str:
    """One line saying where the numbers were taken."""
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}"
    )


def _order(rows: Iterable[Row]) -> List[Row]:
    subject_order = {name: index for index, name in enumerate(SUBJECTS_BY_NAME)}
    scenario_order = {name: index for index, name in enumerate(SCENARIO_NAMES)}
    return sorted(rows, key=lambda row: (scenario_order[row.scenario], subject_order[row.subject]))


def per_request_table(rows: Sequence[Row]) -> str:
    """Every cell: us per request, us added over its baseline (with noise), ratio to the baseline."""
    lines = []
    for row in _order(rows):
        baseline = SUBJECTS_BY_NAME[row.subject].baseline
        lines.append(
            [
                row.scenario,
                row.subject,
                number(row.per_request_us),
                number(row.added_us),
                "-" if row.added_spread_us is None else f"±{row.added_spread_us:.1f}",
                "-" if row.added_us is None else f"{row.ratio_to_baseline:.2f} ({baseline})",
            ]
        )
    return table(
        ["scenario", "subject", "us/request", "added us", "noise", "x baseline"],
        lines,
        [False, False, True, True, True, True],
    )


def added_matrix(rows: Sequence[Row]) -> str:
    """One row per subject, one column per scenario: microseconds added per request over its baseline."""
    added: Dict[Tuple[str, str], Optional[float]] = {(row.subject, row.scenario): row.added_us for row in rows}
    present = {row.subject for row in rows}
    subjects = [name for name, subject in SUBJECTS_BY_NAME.items() if name in present and subject.group != "baseline"]
    lines = [[name] + [number(added.get((name, scenario))) for scenario in SCENARIO_NAMES] for name in subjects]
    return table(["added us/request"] + list(SCENARIO_NAMES), lines, [False] + [True] * len(SCENARIO_NAMES))


def _target_for(scenario: str, ours: str, peer: str) -> Optional[Target]:
    for target in TARGETS:
        if (target.scenario, target.ours, target.peer) == (scenario, ours, peer):
            return target
    return None


def comparison_table(rows: Sequence[Row]) -> Tuple[str, List[str]]:
    """Ours against each peer doing the same job: ``(table, one line per target)``."""
    added = {(row.scenario, row.subject): row.added_us for row in rows}
    lines = []
    verdicts = []
    for row in _order(rows):
        subject = SUBJECTS_BY_NAME[row.subject]
        if not subject.is_ours:
            continue
        for peer in subject.peers:
            theirs = added.get((row.scenario, peer))
            ratio = None if theirs is None or row.added_us is None or theirs <= 0 else row.added_us / theirs
            target = _target_for(row.scenario, row.subject, peer)
            verdict = ""
            if target is not None:
                verdict = "n/a" if ratio is None else ("met" if ratio <= target.limit else "NOT met")
                verdicts.append(
                    f"{row.scenario} {row.subject} vs {peer}: {number(ratio, 2)} (target {target.label}): {verdict}"
                )
            lines.append(
                [
                    row.scenario,
                    row.subject,
                    peer,
                    number(row.added_us),
                    number(theirs),
                    number(ratio, 2),
                    target.label if target else "",
                    verdict,
                ]
            )
    text = table(
        ["scenario", "ours", "peer", "ours added us", "peer added us", "ours/peer", "target", "verdict"],
        lines,
        [False, False, False, True, True, True, False, False],
    )
    return text, verdicts


def unavailable_lines(unavailable: Dict[str, str]) -> str:
    """One line per subject or cell that was not measured, with the reason."""
    return "\n".join(f"- {name}: {reason}" for name, reason in sorted(unavailable.items()))


def out(text: str = "") -> None:
    """Print a report line to stdout and flush (progress goes to stderr)."""
    print(text)
    sys.stdout.flush()
