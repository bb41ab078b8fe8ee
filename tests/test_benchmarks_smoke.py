"""The benchmark suite still runs: a few rounds of each mode, and no timing assertions.

Stores and peers that are not installed or not reachable are reported by the
benchmark as not measured; whatever builds must answer every scenario.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from benchmarks import inprocess, probe
from benchmarks.run import main
from benchmarks.scenarios import SCENARIO_NAMES
from benchmarks.subjects import SUBJECTS, SUBJECTS_BY_NAME, build_all
from benchmarks.workspace import Workspace

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def workspace() -> Iterator[Workspace]:
    workspace = Workspace()
    yield workspace
    workspace.close()


def test_the_table_has_a_row_per_scenario_for_the_memory_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--only", "memory"]) == 0
    output = capsys.readouterr().out
    for scenario in SCENARIO_NAMES:
        assert re.search(rf"^\| {scenario} +\| ours:memory +\| +\d+\.\d \| +-?\d+\.\d \|", output, re.MULTILINE)
        assert re.search(rf"^\| {scenario} +\| ours:memory +\| beaker:memory +\|", output, re.MULTILINE)
    assert re.search(r"^\| memory +\| +\d+\.\d \| +\d+\.\d \| +\d+\.\d\d \|$", output, re.MULTILINE)  # commit path
    assert "Targets (ours at most the limit times the peer's added cost):" in output


def test_every_available_subject_answers_every_scenario(workspace: Workspace) -> None:
    apps, unavailable = build_all(SUBJECTS, workspace)
    assert "ours:memory" in apps and "bare" in apps
    assert not [reason for reason in unavailable.values() if reason.startswith("failed to build")]
    measured = [subject for subject in SUBJECTS if subject.name in apps]
    cells, errors = inprocess.measure(measured, apps, rounds=2, max_iterations=3, progress=False)
    assert errors == {}
    rows = inprocess.summarize(cells)
    assert {(row.subject, row.scenario) for row in rows} == {
        (s.name, name) for s in measured for name in SCENARIO_NAMES
    }
    assert all(row.added_us is not None for row in rows if SUBJECTS_BY_NAME[row.subject].group != "baseline")


def test_the_probe_finds_no_lost_key_in_the_memory_store(workspace: Workspace) -> None:
    results, skipped = probe.run_probe([SUBJECTS_BY_NAME["ours:memory"]], workspace, concurrency=16)
    assert skipped == {}
    by_variant = {result.variant: result for result in results}
    unlocked, locked = by_variant[""], by_variant["lock=True"]
    assert unlocked.answered == locked.answered == 16
    assert unlocked.lost_keys == 0
    # Without the lock the shared read-modify-write races: the probe must see it.
    assert unlocked.lost_increments > 0
    assert locked.lost_keys == 0 and locked.lost_increments == 0
    assert unlocked.verdict == locked.verdict == "ok"


def test_an_unknown_subject_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--only", "no-such-store"]) == 2
    assert "matches no subject" in capsys.readouterr().out


def test_the_documented_command_runs_server_mode() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--server", "--only", "memory"]
        + ["--server-scenarios", "read", "--load-generator", "python"],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert re.search(r"^\| read +\| ours:memory +\| +[1-9]\d* \| +0 \|", completed.stdout, re.MULTILINE), (
        completed.stdout
    )
    assert "Not measured" not in completed.stdout
