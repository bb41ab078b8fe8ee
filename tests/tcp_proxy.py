"""A TCP proxy for tests of a store whose server stops answering.

``TcpProxy(("127.0.0.1", 5432))`` listens on a free loopback port and relays
every connection to the target.  ``freeze()`` stops relaying in both
directions while keeping the sockets open: the kernel still acknowledges what
the client sends, so neither TCP timeouts nor the server's own timeouts fire;
only a deadline the client enforces does.  ``thaw()`` relays again (what was
held back is delivered), ``drop()`` closes every open connection, as a
restarted server or a failed-over network would.  The shared servers are
never stopped.
"""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Dict, List, Optional, Tuple

Address = Tuple[str, int]

_CHUNK = 65536


class TcpProxy:
    """Relay connections from a loopback port to ``target``; freeze, thaw or drop them on demand."""

    def __init__(self, target: Address) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.address: Address = self._listener.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._peers: Dict[socket.socket, socket.socket] = {}
        self._mutex = threading.Lock()
        self._relaying = threading.Event()
        self._relaying.set()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The port clients connect to."""
        return self.address[1]

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def freeze(self) -> None:
        """Stop relaying: bytes stay in the kernel's buffers, connections stay open."""
        self._relaying.clear()

    def thaw(self) -> None:
        """Relay again, delivering what was held back."""
        self._relaying.set()

    def drop(self) -> None:
        """Close every open connection, both sides."""
        with self._mutex:
            sockets: List[socket.socket] = list(self._peers)
            self._peers.clear()
        for sock in sockets:
            self._forget(sock)

    def close(self) -> None:
        """Stop the proxy and close everything."""
        self._stopping = True
        self._relaying.set()
        self._thread.join(timeout=5)
        self.drop()
        try:
            self._selector.unregister(self._listener)
        except (KeyError, ValueError):
            pass
        self._listener.close()
        self._selector.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the relay loop ------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            if not self._relaying.wait(timeout=0.05):
                continue
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                elif self._relaying.is_set():
                    self._relay(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._mutex:
            self._peers[client] = server
            self._peers[server] = client
        self._selector.register(client, selectors.EVENT_READ)
        self._selector.register(server, selectors.EVENT_READ)

    def _relay(self, sock: socket.socket) -> None:
        with self._mutex:
            peer: Optional[socket.socket] = self._peers.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(_CHUNK)
            if data:
                peer.setblocking(True)
                peer.sendall(data)
                peer.setblocking(False)
                return
        except OSError:
            pass
        with self._mutex:
            self._peers.pop(sock, None)
            self._peers.pop(peer, None)
        self._forget(sock)
        self._forget(peer)

    def _forget(self, sock: socket.socket) -> None:
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        try:
            sock.close()
        except OSError:
            pass
