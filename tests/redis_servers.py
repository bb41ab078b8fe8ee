"""Throwaway Redis servers for tests: one server, a Redis Cluster, a Sentinel set-up.

Each starts from the ``redis-server`` binary on free 127.0.0.1 ports, keeps its
files in a temporary directory, and is stopped (killed if it does not stop)
however the test ends.  Waiting for a set-up to be ready is bounded; when it
is not, the error shows what the servers wrote.  Without the binary the tests
that need one are skipped, or fail when WSGISESSION_REQUIRE_SERVICES=1.

The shared Redis on port 6379 is never touched here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence

import pytest
import redis

from .support import REQUIRE_SERVICES

HOST = "127.0.0.1"
#: The Sentinel service name of the set-ups started here.
SERVICE = "wsgisession"
#: How long a set-up may take to be ready.
STARTUP_TIMEOUT = 30.0
#: How long Sentinels wait before they call a silent primary down.
DOWN_AFTER_MILLISECONDS = 1000


class RedisDidNotStart(RuntimeError):
    """A server exited, or a set-up was not ready within :data:`STARTUP_TIMEOUT`."""


def redis_server_binary() -> str:
    """The ``redis-server`` to start: ``$WSGISESSION_TEST_REDIS_SERVER`` or the one on PATH.

    Skips the test without one, or fails it when WSGISESSION_REQUIRE_SERVICES=1.
    """
    binary = os.environ.get("WSGISESSION_TEST_REDIS_SERVER") or shutil.which("redis-server")
    if binary is None or not os.access(binary, os.X_OK):
        message = (
            f"{binary or 'redis-server'} can not be run (install it: apt-get install redis-server), "
            "so no test Redis can be started"
        )
        if REQUIRE_SERVICES:
            pytest.fail(message + " and WSGISESSION_REQUIRE_SERVICES=1")
        pytest.skip(message)
    return binary


def _free_port(*, with_bus_port: bool = False) -> int:
    # A cluster node also listens on its port + 10000 (the cluster bus).
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        if not with_bus_port:
            return port
        if port + 10000 <= 65535:
            with socket.socket() as probe:
                try:
                    probe.bind((HOST, port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _wait_until(ready: Callable[[], bool], what: str, processes: Sequence[RedisProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            if process.process.poll() is not None:
                raise RedisDidNotStart(f"{process} exited while waiting for {what}:\n{process.log_tail()}")
        try:
            if ready():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {process}\n{process.log_tail()}" for process in processes)
            raise RedisDidNotStart(f"{what} within {timeout} s failed:\n{logs}")
        time.sleep(0.05)  # polling for the servers to come up, not a wait for time to pass


@dataclass
class RedisProcess:
    """One ``redis-server`` process (a server or a Sentinel) on 127.0.0.1."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def __str__(self) -> str:
        return f"{self.name} on {HOST}:{self.port}"

    def url(self, db: int = 0) -> str:
        """A ``redis://`` URL of this server."""
        return f"redis://{HOST}:{self.port}/{db}"

    def client(self, **options: Any) -> redis.Redis:
        """A client of this server that never waits long."""
        options.setdefault("socket_timeout", 2.0)
        options.setdefault("socket_connect_timeout", 2.0)
        return redis.Redis(HOST, self.port, **options)

    def ask(self, *command: Any) -> Any:
        """Run one command on a short-lived connection."""
        client = self.client()
        try:
            return client.execute_command(*command)
        finally:
            client.close()

    def freeze(self) -> None:
        """Stop the process (SIGSTOP): it keeps its connections but answers nothing."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen process run again (SIGCONT)."""
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the process, killing it if it has not stopped within 5 s."""
        if self.process.poll() is not None:
            return
        self.thaw()  # a frozen process acts on SIGTERM only once it runs
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, characters: int = 2000) -> str:
        """The end of what the process wrote."""
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError as exc:
            return f"(no log: {exc})"


def _start(
    binary: str, name: str, directory: Path, port: int, options: Sequence[str], stack: ExitStack, *, config: str = ""
) -> RedisProcess:
    # Everything in the server's own directory; nothing is saved to disk.
    directory.mkdir(parents=True, exist_ok=True)
    command = [binary]
    if config:
        config_path = directory / "redis.conf"
        config_path.write_text(config)
        command.append(str(config_path))
    command += ["--port", str(port), "--bind", HOST, "--dir", str(directory), "--save", "", "--appendonly", "no"]
    command += list(options)
    log_path = directory / "output.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    server = RedisProcess(name, port, process, log_path)
    stack.callback(server.stop)
    return server


def _answers(server: RedisProcess) -> Callable[[], bool]:
    return lambda: bool(server.ask("PING"))


@contextmanager
def redis_server(*options: str) -> Iterator[RedisProcess]:
    """One Redis server of its own, with ``options`` on its command line."""
    binary = redis_server_binary()
    with tempfile.TemporaryDirectory(prefix="wsgisession-redis-") as root, ExitStack() as stack:
        server = _start(binary, "redis", Path(root) / "server", _free_port(), options, stack)
        _wait_until(_answers(server), f"{server} answering", [server], STARTUP_TIMEOUT)
        yield server


@dataclass
class ClusterSetup:
    """A running Redis Cluster: its primaries, and the URL naming it."""

    nodes: List[RedisProcess]

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL listing every node."""
        return "redis+cluster://" + ",".join(f"{HOST}:{node.port}" for node in self.nodes)

    def node_serving(self, key: str) -> RedisProcess:
        """The node whose slots hold ``key``."""
        slot = int(self.nodes[0].ask("CLUSTER", "KEYSLOT", key))
        for start, end, primary, *_ in self.nodes[0].ask("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(node for node in self.nodes if node.port == int(primary[1]))
        raise LookupError(f"no node serves slot {slot}")


@contextmanager
def redis_cluster(primaries: int = 3) -> Iterator[ClusterSetup]:
    """A Redis Cluster of ``primaries`` primaries (no replicas), its 16384 slots split evenly."""
    binary = redis_server_binary()
    with tempfile.TemporaryDirectory(prefix="wsgisession-cluster-") as root, ExitStack() as stack:
        nodes = []
        for index in range(primaries):
            port = _free_port(with_bus_port=True)
            options = ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
            nodes.append(_start(binary, f"cluster node {index}", Path(root) / f"node{index}", port, options, stack))
        for node in nodes:
            _wait_until(_answers(node), f"{node} answering", nodes, STARTUP_TIMEOUT)
        # What redis-cli --cluster create does: distinct config epochs, the
        # slots split in ranges, then every node meets the first.
        for index, node in enumerate(nodes):
            node.ask("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
            first, last = index * 16384 // primaries, (index + 1) * 16384 // primaries - 1
            node.ask("CLUSTER", "ADDSLOTS", *range(first, last + 1))
        for node in nodes[1:]:
            nodes[0].ask("CLUSTER", "MEET", HOST, node.port)

        def ready() -> bool:
            for node in nodes:
                info = node.ask("CLUSTER INFO")
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != primaries:
                    return False
            return True

        _wait_until(ready, f"a cluster of {primaries} nodes agreeing", nodes, STARTUP_TIMEOUT)
        yield ClusterSetup(nodes)


@dataclass
class SentinelSetup:
    """A primary, its replicas and the Sentinels watching them."""

    primary: RedisProcess
    replicas: List[RedisProcess]
    sentinels: List[RedisProcess]
    service: str = SERVICE

    def url(self, db: int = 0, **options: Any) -> str:
        """A ``redis+sentinel://`` URL listing every Sentinel, with ``options`` as its query."""
        hosts = ",".join(f"{HOST}:{sentinel.port}" for sentinel in self.sentinels)
        query = "&".join(f"{name}={value}" for name, value in options.items())
        return f"redis+sentinel://{hosts}/{self.service}/{db}" + (f"?{query}" if query else "")

    def primary_port(self) -> Optional[int]:
        """The port of the primary the first answering Sentinel names now."""
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                address = client.sentinel_get_master_addr_by_name(self.service)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if address:
                return int(address[1])
        return None

    def server_on(self, port: int) -> RedisProcess:
        """The server (primary or replica) listening on ``port``."""
        return next(server for server in [self.primary, *self.replicas] if server.port == port)


@contextmanager
def redis_sentinel(replicas: int = 1, sentinels: int = 3) -> Iterator[SentinelSetup]:
    """A primary with ``replicas`` replicas, watched by ``sentinels`` Sentinels (quorum: a majority).

    Ready once every replica is in sync and every Sentinel knows the
    replicas and the other Sentinels, so a failover can start.
    """
    binary = redis_server_binary()
    quorum = sentinels // 2 + 1
    with tempfile.TemporaryDirectory(prefix="wsgisession-sentinel-") as root, ExitStack() as stack:
        base = Path(root)
        # No delay before a full sync (Redis waits 5 s for more replicas by default).
        options = ["--repl-diskless-sync-delay", "0"]
        primary = _start(binary, "primary", base / "primary", _free_port(), options, stack)
        _wait_until(_answers(primary), f"{primary} answering", [primary], STARTUP_TIMEOUT)
        copies = [
            _start(
                binary,
                f"replica {index}",
                base / f"replica{index}",
                _free_port(),
                [*options, "--replicaof", HOST, str(primary.port)],
                stack,
            )
            for index in range(replicas)
        ]

        def in_sync() -> bool:
            for replica in copies:
                info = replica.ask("INFO", "replication")
                if info.get("master_link_status") != "up":
                    return False
            return True

        _wait_until(in_sync, "the replicas in sync", [primary, *copies], STARTUP_TIMEOUT)
        # Each Sentinel is told the others and the replicas up front, as it
        # would write them into its own file, instead of finding them over
        # the next seconds.
        ports = [_free_port() for _ in range(sentinels)]
        ids = [f"{index + 1:040x}" for index in range(sentinels)]
        watchers = []
        for index, port in enumerate(ports):
            lines = [
                f"sentinel myid {ids[index]}",
                f"sentinel monitor {SERVICE} {HOST} {primary.port} {quorum}",
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MILLISECONDS}",
                f"sentinel failover-timeout {SERVICE} 10000",
                f"sentinel parallel-syncs {SERVICE} 1",
                *(f"sentinel known-replica {SERVICE} {HOST} {replica.port}" for replica in copies),
                *(
                    f"sentinel known-sentinel {SERVICE} {HOST} {other_port} {other_id}"
                    for other_port, other_id in zip(ports, ids)
                    if other_port != port
                ),
            ]
            directory = base / f"sentinel{index}"
            watchers.append(
                _start(
                    binary, f"sentinel {index}", directory, port, ["--sentinel"], stack, config="\n".join(lines) + "\n"
                )
            )

        def watching() -> bool:
            for sentinel in watchers:
                client = sentinel.client()
                try:
                    state = client.sentinel_master(SERVICE)
                finally:
                    client.close()
                if int(state["num-other-sentinels"]) != sentinels - 1 or int(state["num-slaves"]) != replicas:
                    return False
            return True

        _wait_until(
            watching,
            "the Sentinels knowing each other and the replicas",
            [primary, *copies, *watchers],
            STARTUP_TIMEOUT,
        )
        yield SentinelSetup(primary, copies, watchers)
