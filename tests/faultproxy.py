"""A TCP proxy that breaks connections on purpose, to test how clients survive a flaky store.

It sits between boto3 and the S3 API server. ``drop_every=N`` closes the connection instead of forwarding
every Nth request (the client sees the connection closed before any response, as when a load balancer
drops it); ``throttle_every=N`` answers every Nth request itself with S3's ``503 SlowDown`` error, as a
store under load does; ``down()`` refuses and cuts everything, as when the store goes away; ``up()``
brings it back.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading

_SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_SLOW_DOWN_BODY)).encode() + b"\r\n\r\n" + _SLOW_DOWN_BODY
)


class FaultProxy:
    def __init__(
        self, upstream_host: str, upstream_port: int, *, drop_every: int = 0, throttle_every: int = 0
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.drop_every = drop_every
        self.throttle_every = throttle_every
        self.requests = 0
        self.dropped = 0
        self.throttled = 0
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            self._kill(conn)

    @staticmethod
    def _kill(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                self._kill(client)
                continue
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump_requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump_requests(self, src: socket.socket, dst: socket.socket) -> None:
        # Each chunk read from a fresh request boundary is counted as one request (boto3 sends a GET's
        # head in one write; good enough to schedule faults, not an HTTP parser).
        try:
            while data := src.recv(65536):
                if data[:4] in (b"GET ", b"PUT ", b"HEAD", b"POST", b"DELE"):
                    n = next(self._counter)
                    self.requests = n
                    if self.drop_every and n % self.drop_every == 0:
                        self.dropped += 1
                        break
                    if self.throttle_every and n % self.throttle_every == 0:
                        self.throttled += 1
                        src.sendall(_SLOW_DOWN)
                        break  # close after answering: the request body (if any) was never forwarded
                dst.sendall(data)
        except OSError:
            pass
        self._kill(src)
        self._kill(dst)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        self._kill(src)
        self._kill(dst)
