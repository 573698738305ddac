"""Downloading data files safely: mirrors, checksums and atomic placement.

A file is streamed into a temporary file in the destination directory, verified, and only
then renamed to its final name. A checksum failure or an interrupted transfer therefore
never leaves a file under the final name that a later run would trust.

A mirror is untrusted: the response is capped at the largest size the file can have
(:func:`max_archive_bytes`), its SHA-256 (and MD5) are computed as it streams to disk,
the whole transfer has a deadline (not only each read), a gzip file is unpacked only as
far as its IDX header declares, and https mirrors are tried before plain http ones.

The network is reached through a single function, :func:`urlopen`; tests replace it (or
pass ``fetch=``) so the test suite never touches the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import NNBackError
from . import _deadline
from .idx import IDXFormatError, read_idx_stream

__all__ = [
    "DownloadError",
    "Fetch",
    "FileSpec",
    "download_files",
    "max_archive_bytes",
    "urlopen",
    "verify_file",
]

#: Opens a URL and returns a readable binary stream usable as a context manager (the shape
#: of ``urllib.request.urlopen``'s result; ``io.BytesIO`` also fits, which is what tests use).
Fetch = Callable[[str], BinaryIO]

_CHUNK = 1 << 20
#: The longest wait for any data from a mirror.
_TIMEOUT_S = 60.0
#: The longest a whole file may take (the 47 MB MNIST images at about 80 KB/s).
DEADLINE_S = 600.0


class DownloadError(NNBackError, OSError):
    """No mirror delivered a file that passed its checks."""


@dataclass(frozen=True)
class FileSpec:
    """What a downloaded IDX file must be.

    Attributes
    ----------
    name : str
        The file name on the mirrors (``...-ubyte.gz``); it is also the name on disk.
    shape : tuple of int
        Shape the IDX header must declare, e.g. ``(60000, 28, 28)``.
    dtype : str
        NumPy name of the element type, e.g. ``"uint8"``.
    payload_sha256 : str or None
        SHA-256 of the *decompressed* IDX bytes. Hashing the payload, not the archive,
        accepts any mirror that re-compressed the same data (Debian's Fashion-MNIST .gz
        files differ byte-wise from upstream's but decompress to identical files).
    archive_md5 : str or None
        MD5 of the file exactly as published, for data sets whose only checksums published
        are MD5s of the archives. It guards integrity against corruption, not an attacker.
    archive_sha256 : str or None
        SHA-256 of the file exactly as published, checked as the file streams to disk.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "uint8"
    payload_sha256: str | None = None
    archive_md5: str | None = None
    archive_sha256: str | None = None


def max_archive_bytes(spec: FileSpec) -> int:
    """The largest a file of ``spec`` can be, gzipped or not: its IDX header and payload,
    plus what gzip adds to incompressible data (5 bytes per 16 KB block, and a header)."""
    raw = 4 + 4 * len(spec.shape) + math.prod(spec.shape) * np.dtype(spec.dtype).itemsize
    return raw + raw // 1000 + 4096


def urlopen(url: str) -> BinaryIO:
    """Open ``url`` with urllib (the default :data:`Fetch`).

    Each wait for data is bounded by 60 s; while :func:`download_files` runs, the whole
    transfer (connecting and headers included) is also bounded by its deadline.

    Parameters
    ----------
    url : str
        An http(s) URL.

    Returns
    -------
    BinaryIO
        The response stream.
    """
    return _deadline.open_url(url, _TIMEOUT_S)


def _hash_file(path: str | os.PathLike[str], algorithm: str) -> str:
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_content(path: str | os.PathLike[str], spec: FileSpec) -> str | None:
    """The payload checks: IDX structure (the shape checked before the payload is read,
    which is never unpacked past its declared size) and the payload's SHA-256."""
    name = str(path)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as raw:
            read_idx_stream(raw, name, digest=digest, expect=(spec.shape, np.dtype(spec.dtype)))
    except (OSError, IDXFormatError) as exc:
        return f"unreadable ({exc})"
    if spec.payload_sha256 is not None and digest.hexdigest() != spec.payload_sha256:
        return (
            f"SHA-256 checksum mismatch (expected {spec.payload_sha256}, got {digest.hexdigest()})"
        )
    return None


def verify_file(path: str | os.PathLike[str], spec: FileSpec) -> str | None:
    """Check a file against ``spec``, reading it as a stream (memory: one array of
    ``spec.shape``, whatever the file unpacks to).

    Parameters
    ----------
    path : str or os.PathLike
        The file to check.
    spec : FileSpec
        What it must be.

    Returns
    -------
    str or None
        None if every check passes, else a sentence saying which check failed.
    """
    try:
        size = os.path.getsize(path)
        if size > max_archive_bytes(spec):
            return f"{size} bytes, more than a file of shape {spec.shape} can hold"
        checks = (("sha256", "SHA-256", spec.archive_sha256), ("md5", "MD5", spec.archive_md5))
        for algorithm, label, want in checks:
            if want is not None:
                got = _hash_file(path, algorithm)
                if got != want:
                    return f"{label} checksum mismatch (expected {want}, got {got})"
    except OSError as exc:
        return f"unreadable ({exc})"
    return _check_content(path, spec)


def _stream_to(
    out: BinaryIO, response: BinaryIO, spec: FileSpec, deadline: _deadline.Deadline
) -> str | None:
    """Copy the response to ``out``, checking the size cap, the deadline and the archive
    digests as it goes; return None or why it stopped."""
    limit = max_archive_bytes(spec)
    digests = {"SHA-256": hashlib.sha256(), "MD5": hashlib.md5(usedforsecurity=False)}
    read = getattr(response, "read1", None) or response.read
    size = 0
    while True:
        if deadline.remaining() <= 0 or deadline.expired:
            return f"took more than {deadline.seconds:g} s, the deadline for the whole file"
        chunk = read(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            return f"sent more than {limit} bytes, the most {spec.name} can be; stopped"
        for digest in digests.values():
            digest.update(chunk)
        out.write(chunk)
    if deadline.expired:  # the watchdog cut the connection: what came is incomplete
        return f"took more than {deadline.seconds:g} s, the deadline for the whole file"
    for label, want in (("SHA-256", spec.archive_sha256), ("MD5", spec.archive_md5)):
        got = digests[label].hexdigest()
        if want is not None and got != want:
            return f"{label} checksum mismatch (expected {want}, got {got})"
    return None


def _fetch_one(
    url: str, spec: FileSpec, directory: Path, fetch: Fetch, deadline_s: float
) -> str | None:
    """Download ``url`` into ``directory / spec.name``; return None or why it failed."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.name}.", suffix=".part", dir=directory)
    except OSError as exc:
        return f"cannot create a temporary file in {directory}: {exc}"
    tmp = Path(tmp_name)
    deadline = _deadline.Deadline(deadline_s)
    token = _deadline.CURRENT.set(deadline)
    try:
        with deadline, os.fdopen(fd, "wb") as out, fetch(url) as response:
            problem = _stream_to(out, response, spec, deadline)
        if problem is None:
            problem = _check_content(tmp, spec)
        if problem is None:
            # os.replace is atomic on one file system, so readers see no file or a whole one.
            os.replace(tmp, directory / spec.name)
        return problem
    # URLError and HTTPError are OSErrors; IncompleteRead and friends are HTTPExceptions;
    # urllib raises ValueError for a malformed URL.
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if deadline.expired:
            return f"took more than {deadline_s:g} s, the deadline for the whole file"
        return f"{type(exc).__name__}: {exc}"
    finally:
        _deadline.CURRENT.reset(token)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _https_first(mirrors: Sequence[str]) -> list[str]:
    """The mirrors in their order, but every https one before any other (stable)."""
    return sorted(mirrors, key=lambda url: not url.lower().startswith("https://"))


def download_files(
    specs: Sequence[FileSpec],
    mirrors: Sequence[str],
    directory: str | os.PathLike[str],
    *,
    fetch: Fetch | None = None,
    deadline_s: float = DEADLINE_S,
) -> list[Path]:
    """Download every file of ``specs`` that ``directory`` lacks, verifying each one.

    Mirrors are tried in order (https ones first) for each file until one delivers a file
    that passes the checks of :func:`verify_file`. Each response is capped at
    :func:`max_archive_bytes` and must arrive within ``deadline_s``.

    Parameters
    ----------
    specs : sequence of FileSpec
        The files wanted.
    mirrors : sequence of str
        Base URLs; a file's URL is ``mirror + spec.name`` (each mirror ends with ``/``).
    directory : str or os.PathLike
        Where the files go; created if missing.
    fetch : Fetch, optional
        Opens a URL. Defaults to this module's :func:`urlopen`, looked up at call time so
        that tests can monkeypatch it.
    deadline_s : float, default DEADLINE_S (600)
        The longest one file may take, from connecting to the last byte.

    Returns
    -------
    list of pathlib.Path, length len(specs)
        The final path of each file, in the order of ``specs``.

    Raises
    ------
    DownloadError
        If some file could not be obtained from any mirror; the message lists every URL
        tried and why it failed. Files obtained before the failure are kept.
    """
    fetch = fetch if fetch is not None else urlopen
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create download directory {directory}: {exc}") from exc
    paths = []
    for spec in specs:
        target = directory / spec.name
        if not target.exists():
            failures = []
            for mirror in _https_first(mirrors):
                url = mirror + spec.name
                problem = _fetch_one(url, spec, directory, fetch, deadline_s)
                if problem is None:
                    break
                failures.append(f"{url}: {problem}")
            else:
                tried = "\n  ".join(failures) or "(no mirrors given)"
                raise DownloadError(f"could not download {spec.name}; tried:\n  {tried}")
        paths.append(target)
    return paths
