"""The command line: ``python -m benchmarks [options]``.

Without a mode flag it measures in process (the table of microseconds per
request) and the commit path.  ``--probe`` runs the concurrency probe,
``--server`` the gunicorn throughput mode, ``--all`` everything.  ``--quick``
shrinks every mode to a few seconds (the test suite's smoke test uses it).
Results go to stdout as Markdown tables, progress to stderr.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from typing import Dict, List, Optional, Sequence

from . import commit_path, inprocess, probe, report, server
from .browser import Browser
from .report import out
from .scenarios import SCENARIO_NAMES, SCENARIOS
from .subjects import SUBJECTS_BY_NAME, Subject, build_all, select
from .workspace import Unavailable, Workspace

DEFAULT_ROUNDS = 120
DEFAULT_ITERATIONS = 200
DEFAULT_SERVER_SECONDS = 3.0


def parse_arguments(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The options, with ``--quick`` applied to the defaults it shrinks."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="wsgisession's per-request cost against a bare WSGI app, Beaker and Flask.",
    )
    parser.add_argument("--rounds", type=int, help=f"interleaved rounds in process (default {DEFAULT_ROUNDS})")
    parser.add_argument(
        "--iterations",
        type=int,
        help=f"most requests per cell and round (default {DEFAULT_ITERATIONS}; slow cells run fewer)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAMES",
        help="comma-separated subjects or groups: memory, cookie, sqlite, postgres, redis (ours), "
        "ours, beaker, beaker:memory, flask:cookie, flask-session ... (baselines always run)",
    )
    parser.add_argument("--server", action="store_true", help="measure throughput under gunicorn")
    parser.add_argument("--probe", action="store_true", help="run the concurrency probe (lost keys, lost increments)")
    parser.add_argument("--all", action="store_true", help="in process, commit path, probe and server mode")
    parser.add_argument("--quick", action="store_true", help="a few rounds and iterations: seconds, not minutes")
    parser.add_argument(
        "--server-seconds", type=float, help=f"load per subject and scenario (default {DEFAULT_SERVER_SECONDS})"
    )
    parser.add_argument(
        "--server-scenarios",
        default=",".join(server.DEFAULT_SERVER_SCENARIOS),
        help="comma-separated scenarios under gunicorn (default %(default)s)",
    )
    parser.add_argument(
        "--load-generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="wrk when installed (auto) or the Python client",
    )
    parser.add_argument(
        "--probe-concurrency", type=int, help=f"concurrent requests in the probe (default {probe.DEFAULT_CONCURRENCY})"
    )
    parser.add_argument(
        "--profile",
        metavar="SUBJECT/SCENARIO",
        help="profile one cell with cProfile instead of measuring, e.g. ours:memory/read",
    )
    parser.add_argument("--profile-requests", type=int, default=20000, help="requests profiled (default %(default)s)")
    arguments = parser.parse_args(argv)
    quick = arguments.quick
    if arguments.rounds is None:
        arguments.rounds = 3 if quick else DEFAULT_ROUNDS
    if arguments.iterations is None:
        arguments.iterations = 10 if quick else DEFAULT_ITERATIONS
    if arguments.server_seconds is None:
        arguments.server_seconds = 1.0 if quick else DEFAULT_SERVER_SECONDS
    if arguments.probe_concurrency is None:
        arguments.probe_concurrency = 8 if quick else probe.DEFAULT_CONCURRENCY
    if arguments.rounds < 1 or arguments.iterations < 1 or arguments.probe_concurrency < 2:
        parser.error("--rounds and --iterations must be at least 1, --probe-concurrency at least 2")
    unknown = set(_split(arguments.server_scenarios)) - set(SCENARIO_NAMES)
    if unknown:
        parser.error(f"unknown --server-scenarios {sorted(unknown)}; known: {', '.join(SCENARIO_NAMES)}")
    return arguments


def _split(values: Optional[Sequence[str]] | str) -> List[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def run_inprocess(subjects: Sequence[Subject], workspace: Workspace, arguments: argparse.Namespace) -> None:
    """Measure in process and print the three tables and the targets."""
    apps, unavailable = build_all(subjects, workspace)
    measured = [subject for subject in subjects if subject.name in apps]
    began = time.perf_counter()
    cells, errors = inprocess.measure(measured, apps, rounds=arguments.rounds, max_iterations=arguments.iterations)
    rows = inprocess.summarize(cells)
    out(f"## In process: microseconds per request ({arguments.rounds} interleaved rounds, median)")
    out()
    out(f"{report.machine()}; {time.perf_counter() - began:.0f} s.")
    out(
        "added = median over rounds of (subject - its baseline in the same round); noise = half its interquartile range."
    )
    out()
    out("Subjects:")
    out("\n".join(f"- {subject.name}: {subject.description}" for subject in measured))
    out()
    out(report.per_request_table(rows))
    out()
    out("### Added microseconds per request over the baseline")
    out()
    out(report.added_matrix(rows))
    out()
    out("### wsgisession against the peer doing the same job (ratio of added cost)")
    out()
    comparison, verdicts = report.comparison_table(rows)
    out(comparison)
    out()
    if verdicts:
        out("Targets (ours at most the limit times the peer's added cost):")
        for verdict in verdicts:
            out(f"- {verdict}")
        out()
    unavailable.update(errors)
    if unavailable:
        out("Not measured:")
        out(report.unavailable_lines(unavailable))
        out()


def run_commit_path(workspace: Workspace, only: List[str], arguments: argparse.Namespace) -> None:
    """Measure and print atomic ``apply_changes`` against a blind ``persist_session``."""
    names = None
    if only:
        names = [name.split(":", 1)[1] for name in (s.name for s in select(only)) if name.startswith("ours:")]
    rounds = max(3, arguments.rounds // 2)
    rows, skipped = commit_path.measure_commit_path(workspace, names, rounds, arguments.iterations)
    out("## Commit path: atomic apply_changes vs blind write (persist_session of the whole record)")
    out()
    lines = [[row.store, report.number(row.atomic_us), report.number(row.blind_us), f"{row.ratio:.2f}"] for row in rows]
    out(
        report.table(
            ["store", "apply_changes us", "persist_session us", "atomic/blind"], lines, [False, True, True, True]
        )
    )
    out()
    if skipped:
        out(report.unavailable_lines(skipped))
        out()


def run_probe(
    subjects: Sequence[Subject], workspace: Workspace, arguments: argparse.Namespace
) -> List[probe.ProbeResult]:
    """Run and print the concurrency probe."""
    results, skipped = probe.run_probe(subjects, workspace, arguments.probe_concurrency)
    out(f"## Probe: {arguments.probe_concurrency} concurrent requests on one session")
    out()
    out("Each request sets its own key and increments one shared counter (read, 2 ms of work, write).")
    out()
    lines = [
        [
            f"{result.subject} {result.variant}".strip(),
            str(result.requests),
            str(result.answered),
            str(result.lost_keys),
            str(result.lost_increments),
            result.expectation,
            result.verdict,
        ]
        for result in results
    ]
    out(
        report.table(
            ["subject", "requests", "answered 200", "lost keys", "lost increments", "must hold", "verdict"],
            lines,
            [False, True, True, True, True, False, False],
        )
    )
    out()
    if skipped:
        out(report.unavailable_lines(skipped))
        out()
    return results


def run_server(subjects: Sequence[Subject], workspace: Workspace, arguments: argparse.Namespace) -> None:
    """Serve each subject with gunicorn, load it, and print throughput ratios."""
    scenarios = _split(arguments.server_scenarios)
    rows, failures, generator = server.run_server_mode(
        subjects, workspace, seconds=arguments.server_seconds, scenarios=scenarios, generator=arguments.load_generator
    )
    out(
        f"## Under gunicorn: 1 gthread worker, 4 threads, 127.0.0.1, {generator} load, "
        f"{arguments.server_seconds:g} s per subject and scenario in 1 s passes"
    )
    out()
    lines = []
    for row in rows:
        baseline = SUBJECTS_BY_NAME[row.subject].baseline
        lines.append(
            [
                row.scenario,
                row.subject,
                f"{row.per_second:.0f}",
                str(row.errors),
                report.number(row.ratio_to_bare, 2),
                "-" if baseline == "bare" else f"{report.number(row.ratio_to_baseline, 2)} ({baseline})",
            ]
        )
    out(
        report.table(
            ["scenario", "subject", "requests/s", "errors", "x bare", "x own baseline"],
            lines,
            [False, False, True, True, True, True],
        )
    )
    out()
    ours, scenario, limit = report.SERVER_TARGET
    target_row = next((row for row in rows if (row.subject, row.scenario) == (ours, scenario)), None)
    if target_row is not None and target_row.ratio_to_bare is not None:
        ratio = target_row.ratio_to_bare
        verdict = "met" if ratio >= limit else "NOT met"
        out(f"Target: {ours} {scenario} throughput {ratio:.2f} of bare (target >= {limit}): {verdict}")
        out()
    if failures:
        out("Not measured:")
        out(report.unavailable_lines(failures))
        out()


def run_profile(target: str, workspace: Workspace, requests: int) -> int:
    """Profile ``SUBJECT/SCENARIO`` with cProfile and print the top functions."""
    subject_name, _, scenario_name = target.partition("/")
    subject = SUBJECTS_BY_NAME.get(subject_name) or SUBJECTS_BY_NAME.get(f"ours:{subject_name}")
    scenario = next((s for s in SCENARIOS if s.name == scenario_name), None)
    if subject is None or scenario is None:
        out(f"--profile wants SUBJECT/SCENARIO, e.g. ours:memory/read; scenarios: {', '.join(SCENARIO_NAMES)}")
        return 2
    try:
        app = subject.build(workspace, subject.name + "_profile")
    except Unavailable as exc:
        out(f"{subject.name} is not available: {exc}")
        return 1
    cell = inprocess.Cell(subject, scenario, Browser(app), iterations=min(requests, 500))
    if scenario.returning:
        cell.browser.get("/setup")
    cell.run_batch()  # warm up
    cell.iterations = requests
    profiler = cProfile.Profile()
    profiler.enable()
    per_request = cell.run_batch()
    profiler.disable()
    out(
        f"## Profile of {subject.name} / {scenario.name}: {requests} requests, {per_request:.1f} us each under cProfile"
    )
    out()
    listing = io.StringIO()
    stats = pstats.Stats(profiler, stream=listing)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)
    out(listing.getvalue())
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the modes asked for; return the process exit status."""
    arguments = parse_arguments(argv)
    only = _split(arguments.only)
    try:
        subjects = select(only)
    except ValueError as exc:
        out(str(exc))
        return 2
    workspace = Workspace()
    try:
        if arguments.profile:
            return run_profile(arguments.profile, workspace, arguments.profile_requests)
        modes_given = arguments.server or arguments.probe
        out("# wsgisession benchmark")
        out()
        if arguments.all or not modes_given:
            run_inprocess(subjects, workspace, arguments)
            run_commit_path(workspace, only, arguments)
        probe_results: Dict[str, probe.ProbeResult] = {}
        if arguments.all or arguments.probe:
            for result in run_probe(subjects, workspace, arguments):
                probe_results[f"{result.subject} {result.variant}".strip()] = result
        if arguments.all or arguments.server:
            run_server(subjects, workspace, arguments)
        failed = [name for name, result in probe_results.items() if result.verdict == "FAIL"]
        if failed:
            out(f"Probe FAILED for: {', '.join(failed)}")
            return 1
        return 0
    finally:
        workspace.close()
