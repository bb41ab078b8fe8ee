"""The test proxy itself: it relays, holds everything back when frozen, and drops connections."""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator

import pytest

from .tcp_proxy import TcpProxy


@pytest.fixture
def echo_server() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            threading.Thread(target=echo, args=(connection,), daemon=True).start()

    def echo(connection: socket.socket) -> None:
        with connection:
            while True:
                try:
                    data = connection.recv(1024)
                except OSError:
                    return
                if not data:
                    return
                connection.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server
    stop.set()
    thread.join(timeout=5)
    server.close()


def test_relays_freezes_thaws_and_drops(echo_server: socket.socket) -> None:
    with TcpProxy(echo_server.getsockname()[:2]) as proxy:
        client = socket.create_connection(proxy.address, timeout=2)
        client.sendall(b"one")
        assert client.recv(16) == b"one"
        proxy.freeze()
        client.sendall(b"two")  # the kernel accepts it, nobody relays it
        client.settimeout(0.3)
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            client.recv(16)
        assert time.monotonic() - started >= 0.25
        proxy.thaw()
        client.settimeout(2)
        assert client.recv(16) == b"two"
        proxy.drop()
        assert client.recv(16) == b""  # closed by the proxy
        client.close()
        assert proxy.url("redis://user@127.0.0.1:6379/15") == f"redis://user@127.0.0.1:{proxy.port}/15"
