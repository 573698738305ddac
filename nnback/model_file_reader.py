"""Reading a model file as untrusted input: what may be opened, listed, decompressed, read.

A model file is a zip archive of ``.npy`` members. Everything in it can lie: the central
directory's sizes, the ``.npy`` headers, the compression ratio. The rules here make the
memory ``load_model`` uses depend on the model the header declares, never on those lies:

* only a regular file is opened, with ``O_NONBLOCK`` so that a FIFO cannot block the
  ``open`` itself, and checked with ``fstat`` on the open descriptor (no race with a rename);
* no single read of the file asks for more than :data:`MAX_READ` bytes, so the central
  directory ``zipfile`` parses (and the ``ZipInfo`` objects it makes) is bounded;
* members are stored or deflated (what ``numpy.savez`` and ``numpy.savez_compressed``
  write); bzip2 and LZMA are refused, because ``zipfile`` decompresses those without an
  output limit per call;
* a member is read in chunks of at most :data:`CHUNK` bytes, and reading stops one byte
  past the size the caller expects, whatever the zip headers declare.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import zipfile
from typing import BinaryIO

import numpy
from numpy.lib import format as npy_format

from .errors import ModelFileError

__all__ = [
    "CHUNK",
    "MAX_READ",
    "BoundedFile",
    "open_regular_file",
    "read_member",
    "read_npy_header",
]

#: The largest single read of the model file; bounds the central directory zipfile reads.
MAX_READ = 1 << 20
#: Members are read (and decompressed) this many bytes at a time.
CHUNK = 1 << 18
#: The largest ``.npy`` header accepted (numpy writes about 128 bytes).
MAX_NPY_HEADER = 4096
_ACCEPTED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_METHOD_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
# Deflate cannot expand data by more than about 1032 times (258 bytes per 2 bits).
MAX_DEFLATE_RATIO = 1032

_KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}


def file_kind(mode: int) -> str:
    """What ``mode`` (an ``st_mode``) is, in words."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def open_regular_file(path: str) -> tuple[BinaryIO, int]:
    """Open ``path`` for reading if it is a regular file; return the file and its size.

    Raises FileNotFoundError or IsADirectoryError (with what to do), or ModelFileError for
    a device, FIFO or socket. ``O_NONBLOCK`` makes opening a FIFO return at once instead
    of waiting for a writer; it changes nothing for a regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, f"no model file at {path}; check the path", path
        ) from None
    except IsADirectoryError:  # Windows cannot open a directory at all
        raise _is_a_directory(path) from None
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise _is_a_directory(path)
        if not stat.S_ISREG(info.st_mode):
            raise ModelFileError(
                f"{path} is {file_kind(info.st_mode)}, not a regular file; pass the path of a "
                "saved model file"
            )
        return os.fdopen(descriptor, "rb", buffering=0), info.st_size
    except BaseException:
        os.close(descriptor)
        raise


def _is_a_directory(path: str) -> IsADirectoryError:
    return IsADirectoryError(
        errno.EISDIR, f"{path} is a directory; pass the path of a saved model file", path
    )


class BoundedFile(io.RawIOBase):
    """A read-only view of a file that refuses any single read of more than ``MAX_READ``.

    ``zipfile`` reads the whole central directory in one read of the size the end record
    declares; refusing a large read there keeps a file with millions of tiny entries from
    costing memory in proportion to its size.
    """

    def __init__(self, raw: BinaryIO, size: int, path: str) -> None:
        super().__init__()
        self._raw, self._size, self._path = raw, size, path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def read(self, size: int | None = -1) -> bytes:
        wanted = self._size - self._raw.tell() if size is None or size < 0 else size
        if wanted > MAX_READ:
            raise ModelFileError(
                f"{self._path}: the zip structure asks for a read of {wanted} bytes at once "
                f"(more than {MAX_READ}); not an nnback model file"
            )
        data = self._raw.read(wanted)
        return data if data is not None else b""

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def check_member_info(info: zipfile.ZipInfo, file_size: int, path: str) -> None:
    """Refuse a member whose method or declared sizes cannot be right, before reading it."""
    if info.flag_bits & 0x1:
        raise ModelFileError(f"{path}: member {info.filename!r} is encrypted; not a model file")
    if info.compress_type not in _ACCEPTED_METHODS:
        method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise ModelFileError(
            f"{path}: member {info.filename!r} is compressed with {method}; nnback reads "
            "only stored or deflated members"
        )
    if info.compress_size > file_size:
        raise ModelFileError(
            f"{path}: member {info.filename!r} declares {info.compress_size} stored bytes, "
            f"more than the whole file ({file_size}); the file is corrupted"
        )
    if info.compress_type == zipfile.ZIP_STORED:
        limit = info.compress_size
    else:
        limit = info.compress_size * MAX_DEFLATE_RATIO + 1024
    if info.file_size > limit:
        raise ModelFileError(
            f"{path}: member {info.filename!r} declares {info.file_size} bytes, more than "
            f"{info.compress_size} stored bytes can hold; the file is corrupted"
        )


def read_member(handle: BinaryIO, out: memoryview, what: str, path: str) -> None:
    """Fill ``out`` (bytes) from an open member, and check that nothing follows.

    At most ``len(out) + 1`` bytes are ever decompressed, in chunks of :data:`CHUNK`,
    whatever the zip headers declared. Reading to the end makes ``zipfile`` check the CRC.
    """
    size, done = len(out), 0
    while done < size:
        data = handle.read(min(CHUNK, size - done))
        if not data:
            raise ModelFileError(
                f"{path}: {what} is truncated ({done} of {size} bytes); the file is corrupted"
            )
        out[done : done + len(data)] = data
        done += len(data)
    if handle.read(1):
        raise ModelFileError(
            f"{path}: {what} holds more than the {size} bytes its header declares; the file "
            "is corrupted"
        )


def read_npy_header(
    handle: BinaryIO, name: str, path: str
) -> tuple[tuple[int, ...], bool, numpy.dtype, int]:
    """Read a ``.npy`` header (bounded); return (shape, fortran_order, dtype, its length)."""
    prefix = handle.read(8)
    if len(prefix) != 8 or prefix[:6] != npy_format.MAGIC_PREFIX:
        raise ModelFileError(f"{path}: array {name!r} is not a .npy array; the file is corrupted")
    version = (prefix[6], prefix[7])
    width = {(1, 0): 2, (2, 0): 4}.get(version)
    if width is None:
        raise ModelFileError(f"{path}: array {name!r} uses .npy version {version}; not supported")
    length_bytes = handle.read(width)
    length = int.from_bytes(length_bytes, "little") if len(length_bytes) == width else -1
    if not 0 <= length <= MAX_NPY_HEADER:
        raise ModelFileError(
            f"{path}: array {name!r} has a .npy header of {length} bytes (at most "
            f"{MAX_NPY_HEADER} accepted); the file is corrupted"
        )
    text = handle.read(length)
    if len(text) != length:
        raise ModelFileError(f"{path}: array {name!r} is truncated; the file is corrupted")
    whole = io.BytesIO(prefix + length_bytes + text)
    whole.seek(8)
    try:
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(whole)
        else:
            shape, fortran, dtype = npy_format.read_array_header_2_0(whole)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as exc:
        raise ModelFileError(
            f"{path}: array {name!r} has an invalid .npy header ({type(exc).__name__}: {exc})"
        ) from None
    return tuple(shape), bool(fortran), dtype, 8 + width + length
