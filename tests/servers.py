"""Server processes for tests: any command serving on 127.0.0.1, gunicorn, and a browser-like client.

A test that needs a real server gets it from ``serving``: the process starts,
the test waits until its port accepts connections (never longer than the
startup timeout, and the error shows what the process wrote), and the process
is stopped however the test ends.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

Address = Tuple[str, int]


class ServerDidNotStart(RuntimeError):
    """The process exited, or its port did not answer within the startup timeout."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(
    command: Sequence[str],
    port: int,
    *,
    cwd: Path = REPO,
    env: Optional[Mapping[str, str]] = None,
    startup_timeout: float = 30.0,
    stop_timeout: float = 15.0,
) -> Iterator[Address]:
    """Run ``command``, which listens on 127.0.0.1:``port``; yield that address once it answers.

    The process sees this checkout on PYTHONPATH, as if wsgisession were
    installed, plus ``env``.  On exit it is terminated, and killed if it has not
    stopped after ``stop_timeout`` seconds.
    """
    environment = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    # A file rather than a pipe: a chatty server can not fill it and stall.
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, cwd=cwd, env=environment, stdout=output, stderr=subprocess.STDOUT)
        try:
            _wait_until_listening(process, port, startup_timeout, output)
            yield HOST, port
        finally:
            process.terminate()
            try:
                process.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            # What the server printed (a traceback behind a 500, say) goes to
            # the captured output, which pytest shows when a test failed.
            output.seek(0)
            sys.stderr.write(output.read()[-20000:].decode(errors="replace"))


def _wait_until_listening(process: subprocess.Popen, port: int, timeout: float, output: IO[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                output.seek(0)
                written = output.read().decode(errors="replace")
                command = " ".join(map(str, process.args))
                state = "timed out" if process.returncode is None else f"exited with status {process.returncode}"
                raise ServerDidNotStart(
                    f"{command} did not answer on {HOST}:{port} ({state}):\n{written[-3000:]}"
                ) from None
            time.sleep(0.05)  # polling for the server to come up, not a wait for time to pass


@contextmanager
def gunicorn(
    app: str,
    *options: str,
    env: Optional[Mapping[str, str]] = None,
    startup_timeout: float = 30.0,
) -> Iterator[Address]:
    """Serve ``app`` ("module:callable") with gunicorn from the checkout's root, on a free port.

    ``options`` go to gunicorn's command line as written (``"--workers", "2"``);
    without them gunicorn's defaults, or a ``-c`` file's settings, apply.
    """
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", *options, "--bind", f"{HOST}:{port}", "--chdir", str(REPO), app]
    with serving(command, port, env=env, startup_timeout=startup_timeout) as address:
        yield address


class Browser:
    """A keep-alive HTTP client that sends back the cookies it was given, like a browser."""

    def __init__(self, address: Address, cookies: Optional[Dict[str, str]] = None, timeout: float = 30) -> None:
        self.connection = http.client.HTTPConnection(*address, timeout=timeout)
        self.cookies: Dict[str, str] = dict(cookies or {})

    def get(self, path: str) -> Tuple[int, bytes]:
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        self.connection.request("GET", path, headers=headers)
        response = self.connection.getresponse()
        body = response.read()
        for header in response.headers.get_all("Set-Cookie") or []:
            pair = header.split(";", 1)[0]
            name, _, value = pair.partition("=")
            if "Max-Age=0" in header:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response.status, body

    def get_json(self, path: str) -> Any:
        """The JSON body of a GET that must answer 200."""
        status, body = self.get(path)
        assert status == 200, body
        return json.loads(body)

    def close(self) -> None:
        self.connection.close()
