"""Downloads from a hostile mirror, served by a local HTTP server on 127.0.0.1 only.

Each server thread serves one behaviour; every test is bounded in time (a few seconds at
most, enforced by the deadline under test and by the server's own stop).
"""

from __future__ import annotations

import gzip
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from nnback.datasets import download
from nnback.datasets.download import DownloadError, FileSpec, download_files

Serve = Callable[[socket.socket, threading.Event], None]


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Serve], str]]:
    """Start a server on 127.0.0.1 that answers every connection with ``serve``; return
    its base URL. The real urlopen is put back (the conftest blocks the network)."""
    monkeypatch.setattr(download, "urlopen", _REAL_URLOPEN)
    stop = threading.Event()
    servers: list[socket.socket] = []

    def start(serve: Serve) -> str:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        server.settimeout(0.2)
        servers.append(server)

        def loop() -> None:
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                with conn:
                    conn.recv(65536)  # the request
                    try:
                        serve(conn, stop)
                    except OSError:
                        pass  # the client hung up

        threading.Thread(target=loop, daemon=True).start()
        return f"http://127.0.0.1:{server.getsockname()[1]}/"

    yield start
    stop.set()
    for server in servers:
        server.close()


_REAL_URLOPEN = download.urlopen


def _ok(body: bytes) -> Serve:
    def serve(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    return serve


def _trickle(prefix: bytes, every: float) -> Serve:
    def serve(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(prefix)
        while not stop.is_set():
            conn.sendall(b"X" if prefix.endswith(b"\r\n\r\n") else b"x")
            time.sleep(every)

    return serve


def _endless(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
    chunk = bytes(1 << 16)
    for _ in range(1024):  # 64 MiB at most: a test never fills a disk
        if stop.is_set():
            return
        conn.sendall(chunk)


def _idx(n: int) -> bytes:
    payload = np.arange(n, dtype=np.uint8).tobytes()
    return gzip.compress(b"\x00\x00\x08\x01" + n.to_bytes(4, "big") + payload, mtime=0)


def test_a_good_file_downloads(mirror, tmp_path: Path) -> None:
    blob = _idx(100)
    spec = FileSpec(name="a.gz", shape=(100,), archive_sha256=hashlib.sha256(blob).hexdigest())
    [path] = download_files([spec], [mirror(_ok(blob))], tmp_path / "d")
    assert path.read_bytes() == blob


def test_the_archive_sha256_is_checked_as_it_streams(mirror, tmp_path: Path) -> None:
    spec = FileSpec(name="a.gz", shape=(100,), archive_sha256="0" * 64)
    with pytest.raises(DownloadError, match="SHA-256 checksum mismatch"):
        download_files([spec], [mirror(_ok(_idx(100)))], tmp_path / "d")
    assert list((tmp_path / "d").iterdir()) == []  # nothing left behind


@pytest.mark.parametrize(
    "prefix",
    [b"HTTP/1.0 200 OK\r\n\r\n", b"HTTP/1.0 200 OK\r\nX-Slow: "],
    ids=["body", "headers"],
)
def test_a_trickling_mirror_meets_the_deadline(mirror, tmp_path: Path, prefix: bytes) -> None:
    spec = FileSpec(name="a.gz", shape=(100,))
    start = time.monotonic()
    with pytest.raises(DownloadError, match="took more than 1 s"):
        download_files([spec], [mirror(_trickle(prefix, 0.1))], tmp_path / "d", deadline_s=1.0)
    assert time.monotonic() - start < 5
    assert list((tmp_path / "d").iterdir()) == []  # nothing left behind


def test_an_endless_response_is_cut_at_the_largest_possible_size(mirror, tmp_path: Path) -> None:
    spec = FileSpec(name="a.gz", shape=(1000,))
    with pytest.raises(DownloadError, match="sent more than 5105 bytes"):
        download_files([spec], [mirror(_endless)], tmp_path / "d", deadline_s=10.0)
    assert download.max_archive_bytes(spec) == 5105
    assert list((tmp_path / "d").iterdir()) == []  # nothing left behind


def test_a_gzip_bomb_is_not_unpacked_past_its_header(mirror, tmp_path: Path) -> None:
    bomb = gzip.compress(b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + bytes(32 << 20))
    spec = FileSpec(name="a.gz", shape=(10,))
    with pytest.raises(DownloadError, match="sent more than"):  # 32 KB for 10 bytes
        download_files([spec], [mirror(_ok(bomb))], tmp_path / "d")
    big = FileSpec(name="a.gz", shape=(64, 1024))  # large enough to accept the 32 KB
    with pytest.raises(DownloadError, match="unexpected content: shape \\(10,\\)"):
        download_files([big], [mirror(_ok(bomb))], tmp_path / "d")
