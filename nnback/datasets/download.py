"""Downloading data files safely: mirrors, checksums and atomic placement.

A file is streamed into a temporary file in the destination directory, verified, and only
then renamed to its final name. A checksum failure or an interrupted transfer therefore
never leaves a file under the final name that a later run would trust.

The network is reached through a single function, :func:`urlopen`; tests replace it (or
pass ``fetch=``) so the test suite never touches the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import NNBackError
from .idx import IDXFormatError, decode_idx, decompress_if_gzip

__all__ = [
    "DownloadError",
    "Fetch",
    "FileSpec",
    "download_files",
    "urlopen",
    "verify_file",
]

#: Opens a URL and returns a readable binary stream usable as a context manager (the shape
#: of ``urllib.request.urlopen``'s result; ``io.BytesIO`` also fits, which is what tests use).
Fetch = Callable[[str], BinaryIO]

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


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
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "uint8"
    payload_sha256: str | None = None
    archive_md5: str | None = None


def urlopen(url: str) -> BinaryIO:
    """Open ``url`` with urllib (the default :data:`Fetch`).

    Parameters
    ----------
    url : str
        An http(s) URL.

    Returns
    -------
    BinaryIO
        The response stream.
    """
    # Some hosts reject urllib's default User-Agent; naming the client is the polite fix.
    request = urllib.request.Request(url, headers={"User-Agent": "nnback-datasets/1"})
    return urllib.request.urlopen(request, timeout=_TIMEOUT_S)  # noqa: S310 - http(s) only


def verify_file(path: str | os.PathLike[str], spec: FileSpec) -> str | None:
    """Check a file against ``spec``.

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
    name = str(path)
    try:
        # Whole-file reads (at most ~50 MB for these data sets): decompressing once and
        # reusing the bytes for the digest and the structure check halves the work.
        raw = Path(path).read_bytes()
        if spec.archive_md5 is not None:
            got = hashlib.md5(raw, usedforsecurity=False).hexdigest()
            if got != spec.archive_md5:
                return f"MD5 checksum mismatch (expected {spec.archive_md5}, got {got})"
        payload = decompress_if_gzip(raw, name)
        if spec.payload_sha256 is not None:
            got = hashlib.sha256(payload).hexdigest()
            if got != spec.payload_sha256:
                return f"SHA-256 checksum mismatch (expected {spec.payload_sha256}, got {got})"
        # Structure is checked even when a digest matched: it is the only check for files
        # without a known digest, and it turns a wrong-digest table entry into a clear error.
        array = decode_idx(payload, name)
    except (OSError, IDXFormatError) as exc:
        return f"unreadable ({exc})"
    if array.shape != spec.shape or array.dtype != np.dtype(spec.dtype):
        return (
            f"unexpected content: shape {array.shape} of {array.dtype}, "
            f"expected {spec.shape} of {spec.dtype}"
        )
    return None


def _fetch_one(url: str, spec: FileSpec, directory: Path, fetch: Fetch) -> str | None:
    """Download ``url`` into ``directory / spec.name``; return None or why it failed."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.name}.", suffix=".part", dir=directory)
    except OSError as exc:
        return f"cannot create a temporary file in {directory}: {exc}"
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, fetch(url) as response:
            shutil.copyfileobj(response, out, _CHUNK)
        problem = verify_file(tmp, spec)
        if problem is None:
            # os.replace is atomic on one file system, so readers see no file or a whole one.
            os.replace(tmp, directory / spec.name)
        return problem
    # URLError and HTTPError are OSErrors; IncompleteRead and friends are HTTPExceptions;
    # urllib raises ValueError for a malformed URL.
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def download_files(
    specs: Sequence[FileSpec],
    mirrors: Sequence[str],
    directory: str | os.PathLike[str],
    *,
    fetch: Fetch | None = None,
) -> list[Path]:
    """Download every file of ``specs`` that ``directory`` lacks, verifying each one.

    Mirrors are tried in order for each file until one delivers a file that passes
    :func:`verify_file`.

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
            for mirror in mirrors:
                url = mirror + spec.name
                problem = _fetch_one(url, spec, directory, fetch)
                if problem is None:
                    break
                failures.append(f"{url}: {problem}")
            else:
                tried = "\n  ".join(failures) or "(no mirrors given)"
                raise DownloadError(f"could not download {spec.name}; tried:\n  {tried}")
        paths.append(target)
    return paths
