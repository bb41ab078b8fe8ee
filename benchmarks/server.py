"""Server mode: each subject under gunicorn on 127.0.0.1, loaded for a bounded time.

gunicorn runs one gthread worker with four threads and
binds port 0, so the kernel picks a free port and gunicorn's log says which;
no port can be taken by someone else between choosing and binding.  The
server is always stopped, whatever happens.  Throughput is reported as a ratio
to the bare app's (and, for Flask peers, to Flask without a session).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Dict, List, Optional, Sequence, Tuple, Type

from . import load
from .subjects import Subject
from .workspace import Workspace

#: How the parent tells the gunicorn worker (``benchmarks.served``) what to build.
SUBJECT_VARIABLE = "WSGISESSION_BENCH_SUBJECT"
RUN_ID_VARIABLE = "WSGISESSION_BENCH_RUN_ID"
DIRECTORY_VARIABLE = "WSGISESSION_BENCH_DIRECTORY"

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
STARTUP_SECONDS = 30.0
STOP_SECONDS = 10.0

#: Concurrent visitors under load, each with a session and a connection of its own.
VISITORS = 4

#: Scenarios run under the server unless told otherwise.
DEFAULT_SERVER_SCENARIOS = ("read", "write")


class GunicornServer:
    """A gunicorn process serving one subject; a context manager that always stops it."""

    def __init__(self, subject: Subject, workspace: Workspace, threads: int = 4) -> None:
        self.subject = subject
        self.workspace = workspace
        self.threads = threads
        self.log_path = workspace.directory / f"gunicorn-{subject.name.replace(':', '_')}.log"
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.port = 0

    def __enter__(self) -> GunicornServer:
        environment = dict(os.environ)
        environment[SUBJECT_VARIABLE] = self.subject.name
        environment[RUN_ID_VARIABLE] = self.workspace.run_id
        environment[DIRECTORY_VARIABLE] = str(self.workspace.directory)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY_ROOT), environment.get("PYTHONPATH")]))
        command = [
            sys.executable, "-m", "gunicorn",
            "--bind", "127.0.0.1:0",
            "--workers", "1",
            "--worker-class", "gthread",
            "--threads", str(self.threads),
            "--timeout", "60",
            "--graceful-timeout", "5",
            "--log-level", "info",
            "benchmarks.served:application",
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=REPOSITORY_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self.port = self._wait_until_serving()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], traceback: Optional[TracebackType]
    ) -> None:
        self.stop()

    def _log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _wait_until_serving(self) -> int:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        port = 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self._log()[-2000:]}")
            if not port:
                found = _LISTENING.search(self._log())
                port = int(found.group(1)) if found else 0
            if port and _answers(port):
                return port
            time.sleep(0.05)  # polling for the server to come up
        raise RuntimeError(f"gunicorn did not serve within {STARTUP_SECONDS} s:\n{self._log()[-2000:]}")

    def stop(self) -> None:
        """Stop gunicorn (SIGTERM, then SIGKILL after a grace period); idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_SECONDS)


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection(load.HOST, port, timeout=2)
    try:
        connection.request("GET", "/untouched")
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


@dataclass(frozen=True)
class ServerRow:
    """One subject's throughput in one scenario under gunicorn, and its ratios (median over passes)."""

    subject: str
    scenario: str
    per_second: float
    errors: int
    ratio_to_bare: Optional[float]
    ratio_to_baseline: Optional[float]


def _load(port: int, path: str, seconds: float, generator: str, cookies: List[str]) -> load.LoadResult:
    if generator == "wrk":
        return load.wrk_load(port, path, seconds, cookies)
    return load.python_load(port, path, seconds, cookies)


def _median_ratio(mine: List[float], theirs: Optional[List[float]]) -> Optional[float]:
    if not theirs:
        return None
    ratios = [a / b for a, b in zip(mine, theirs) if b > 0]
    return statistics.median(ratios) if ratios else None


def run_server_mode(
    subjects: Sequence[Subject],
    workspace: Workspace,
    *,
    seconds: float,
    scenarios: Sequence[str] = DEFAULT_SERVER_SCENARIOS,
    generator: str = "auto",
    progress: bool = True,
) -> Tuple[List[ServerRow], Dict[str, str], str]:
    """Serve every subject at once and load each in turn: ``(rows, reasons for failures, generator used)``.

    All servers start first (an idle gunicorn costs next to nothing); the load
    then runs in one-second passes, round-robin over subjects and scenarios, so
    drift of the machine falls on all alike.  A ratio is the median over passes
    of (subject's rate / its baseline's rate in the same pass).
    """
    if generator == "auto":
        generator = "wrk" if load.wrk_path() else "python"
    passes = max(1, int(round(seconds)))
    slice_seconds = seconds / passes
    failures: Dict[str, str] = {}
    rates: Dict[Tuple[str, str], List[float]] = {}
    errors: Dict[Tuple[str, str], int] = {}
    with contextlib.ExitStack() as running:
        ports: Dict[str, int] = {}
        cookies: Dict[str, List[str]] = {}
        for subject in subjects:
            if progress:
                print(f"  server: starting {subject.name}", file=sys.stderr, flush=True)
            try:
                server = running.enter_context(GunicornServer(subject, workspace))
                visitors = cookies[subject.name] = [load.cookie_for(server.port) for _ in range(VISITORS)]
                for scenario in scenarios:  # warm up: imports, first queries, caches
                    load.python_load(server.port, f"/{scenario}", min(0.5, slice_seconds / 4), visitors, 500)
            except Exception as exc:
                failures[subject.name] = f"{type(exc).__name__}: {str(exc)[:500]}"
                continue
            ports[subject.name] = server.port
        order = [(name, scenario) for name in ports for scenario in scenarios]
        for number in range(passes):
            if progress:
                print(f"  server: pass {number + 1}/{passes}", file=sys.stderr, flush=True)
            start = number % len(order) if order else 0
            for name, scenario in order[start:] + order[:start]:
                if name in failures:
                    continue
                try:
                    result = _load(ports[name], f"/{scenario}", slice_seconds, generator, cookies[name])
                except Exception as exc:
                    failures[name] = f"{type(exc).__name__}: {str(exc)[:500]}"
                    continue
                rates.setdefault((name, scenario), []).append(result.per_second)
                errors[(name, scenario)] = errors.get((name, scenario), 0) + result.errors
    rows = []
    for subject in subjects:
        for scenario in scenarios:
            mine = rates.get((subject.name, scenario))
            if not mine or subject.name in failures:
                continue
            rows.append(
                ServerRow(
                    subject.name,
                    scenario,
                    statistics.mean(mine),
                    errors[(subject.name, scenario)],
                    _median_ratio(mine, rates.get(("bare", scenario))),
                    _median_ratio(mine, rates.get((subject.baseline, scenario))),
                )
            )
    return rows, failures, generator
