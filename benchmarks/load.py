"""Load generators for server mode: wrk when installed, else a small Python client.

Both are bounded in time; the Python client also in request count.  Each
connection is one returning visitor with a session of its own (four visitors
on four server threads); wrk sends its visitor's cookie unchanged, the Python
client updates it from ``Set-Cookie`` like a browser.  Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from .browser import cookie_expires
from .scenarios import BASELINE_COOKIES

HOST = "127.0.0.1"


@dataclass(frozen=True)
class LoadResult:
    """Requests answered 200 in ``seconds``, and failures (non-200 or socket errors)."""

    requests: int
    seconds: float
    errors: int

    @property
    def per_second(self) -> float:
        """Throughput in requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def wrk_path() -> Optional[str]:
    """The wrk executable, or None."""
    return shutil.which("wrk")


class _Connection:
    """One keep-alive HTTP connection with its own cookie jar."""

    def __init__(self, port: int, cookie: str = "") -> None:
        self.connection = http.client.HTTPConnection(HOST, port, timeout=10)
        self.cookies: Dict[str, str] = {}
        for pair in filter(None, (part.strip() for part in cookie.split(";"))):
            name, _, value = pair.partition("=")
            self.cookies[name] = value

    def get(self, path: str, send_cookies: bool = True) -> int:
        headers = {"Host": f"{HOST}"}
        if send_cookies and self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        self.connection.request("GET", path, headers=headers)
        response = self.connection.getresponse()
        response.read()
        for value in response.headers.get_all("Set-Cookie") or []:
            pair, *attributes = value.split(";")
            name, _, cookie_value = pair.partition("=")
            if cookie_expires(attributes):
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = cookie_value.strip()
        return response.status

    def close(self) -> None:
        self.connection.close()


def cookie_for(port: int) -> str:
    """A returning visitor's Cookie header value: the cookies ``/setup`` set.

    An app that sets none (a baseline) gets a cookie shaped like a session id,
    so its requests are the same size as the others'.
    """
    connection = _Connection(port)
    try:
        status = connection.get("/setup")
        if status != 200:
            raise RuntimeError(f"/setup answered {status}")
        cookies = connection.cookies or BASELINE_COOKIES
        return "; ".join(f"{name}={value}" for name, value in cookies.items())
    finally:
        connection.close()


def python_load(
    port: int, path: str, seconds: float, cookies: Sequence[str], max_requests: int = 500_000
) -> LoadResult:
    """Send GET ``path`` for ``seconds`` (or ``max_requests``), one keep-alive connection per visitor.

    Connection ``i`` starts with the Cookie header ``cookies[i]`` and then
    keeps what ``Set-Cookie`` headers tell it, like a browser.
    """
    connections = len(cookies)
    counts: List[int] = [0] * connections
    errors: List[int] = [0] * connections
    budget = threading.Semaphore(max_requests)
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        cookie = cookies[index]
        connection = _Connection(port, cookie)
        try:
            while time.perf_counter() < deadline and budget.acquire(blocking=False):
                try:
                    status = connection.get(path)
                except (OSError, http.client.HTTPException):
                    errors[index] += 1
                    connection.close()
                    connection = _Connection(port, cookie)
                    continue
                if status == 200:
                    counts[index] += 1
                else:
                    errors[index] += 1
        finally:
            connection.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(index,), daemon=True) for index in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    return LoadResult(sum(counts), time.perf_counter() - began, sum(errors))


_REQUESTS_PER_SECOND = re.compile(r"Requests/sec:\s*([0-9.]+)")
_TOTAL = re.compile(r"(\d+) requests in ([0-9.]+)(us|ms|s|m)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


# wrk gives each thread its own Lua state: setup() hands every thread (one
# connection each) its own visitor's cookie, and request() sends it.
_WRK_SCRIPT = """
local cookies = {%s}
local threads_set_up = 0
function setup(thread)
  thread:set("cookie", cookies[threads_set_up %% #cookies + 1])
  threads_set_up = threads_set_up + 1
end
function request()
  return wrk.format(nil, nil, {["Cookie"] = cookie})
end
"""


def wrk_load(port: int, path: str, seconds: float, cookies: Sequence[str]) -> LoadResult:
    """Run wrk against GET ``path`` for ``seconds``: one thread and one connection per visitor in ``cookies``."""
    executable = wrk_path()
    if executable is None:
        raise RuntimeError("wrk is not installed")
    quoted = ", ".join('"' + cookie.replace("\\", "\\\\").replace('"', '\\"') + '"' for cookie in cookies)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="wsgisession-bench-") as script:
        script.write(_WRK_SCRIPT % quoted)
        script.flush()
        connections = len(cookies)
        command = [executable, f"-t{connections}", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
        command += ["--timeout", "10s", "-s", script.name, f"http://{HOST}:{port}{path}"]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    output = completed.stdout
    total = _TOTAL.search(output)
    if total is None or _REQUESTS_PER_SECOND.search(output) is None:
        raise RuntimeError(f"could not read wrk's output: {output!r}")
    requests = int(total.group(1))
    elapsed = float(total.group(2)) * _UNIT_SECONDS[total.group(3)]
    failed = 0
    non_2xx = _NON_2XX.search(output)
    if non_2xx:
        failed = int(non_2xx.group(1))
    errors = failed
    socket_errors = _SOCKET_ERRORS.search(output)
    if socket_errors:
        errors += sum(int(group) for group in socket_errors.groups())
    return LoadResult(requests - failed, elapsed, errors)
