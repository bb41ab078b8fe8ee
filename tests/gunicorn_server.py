"""Run a WSGI app under a real gunicorn on 127.0.0.1 for a test, and talk to it like a browser."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Mapping, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def gunicorn(
    app: str,
    *,
    workers: int = 2,
    worker_class: str = "sync",
    threads: int = 1,
    env: Optional[Mapping[str, str]] = None,
    startup_timeout: float = 30.0,
) -> Iterator[Tuple[str, int]]:
    """Serve ``app`` ("module:callable") with gunicorn; yields ("127.0.0.1", port); always stops it."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--worker-class", worker_class,
        "--threads", str(threads),
        "--timeout", "60",
        "--graceful-timeout", "5",
        "--chdir", str(REPO),
        app,
    ]  # fmt: skip
    environment = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    server = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.stderr.read().decode(errors="replace") if server.stderr else ""
                    raise RuntimeError(f"gunicorn did not start:\n{output[-3000:]}") from None
                time.sleep(0.05)  # polling for the server to come up, not a wait for time to pass
        yield "127.0.0.1", port
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


class Browser:
    """A keep-alive HTTP client that sends back the cookies it was given, like a browser."""

    def __init__(self, address: Tuple[str, int], cookies: Optional[Dict[str, str]] = None) -> None:
        self.connection = http.client.HTTPConnection(*address, timeout=30)
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

    def close(self) -> None:
        self.connection.close()
