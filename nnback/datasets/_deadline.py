"""A deadline for a whole download, not just for each read.

A socket timeout bounds one wait for data; a mirror that sends one byte every few seconds
(in the body or in its headers) never trips it. A :class:`Deadline` keeps the sockets a
download opened and shuts them down when its time is up, which wakes a read blocked in
any of them, headers included. :func:`open_url` opens a URL with urllib through
connections that register their sockets with the current deadline.
"""

from __future__ import annotations

import contextvars
import http.client
import socket
import ssl
import threading
import time
import urllib.request
from typing import Any, BinaryIO

__all__ = ["CURRENT", "Deadline", "open_url"]


class Deadline:
    """Shuts down every registered socket ``seconds`` after :meth:`start`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def register(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


#: The deadline of the download in progress in this thread (or task), if any.
CURRENT: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "nnback_download_deadline", default=None
)


def _registering(base: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
    class Connection(base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            deadline = CURRENT.get()
            if deadline is not None and self.sock is not None:
                deadline.register(self.sock)

    return Connection


_HTTP = _registering(http.client.HTTPConnection)
_HTTPS = _registering(http.client.HTTPSConnection)


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_HTTP, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_HTTPS, req, context=ssl.create_default_context())


_OPENER = urllib.request.build_opener(_HTTPHandler, _HTTPSHandler)


def open_url(url: str, timeout: float) -> BinaryIO:
    """Open ``url``; each wait for data is bounded by ``timeout`` and, while a download
    runs under a :class:`Deadline`, the whole transfer by that deadline."""
    deadline = CURRENT.get()
    if deadline is not None:
        timeout = max(0.001, min(timeout, deadline.remaining()))
    # Some hosts reject urllib's default User-Agent; naming the client is the polite fix.
    request = urllib.request.Request(url, headers={"User-Agent": "nnback-datasets/1"})
    return _OPENER.open(request, timeout=timeout)
