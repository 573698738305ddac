"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimension sizes, then the elements in C order, big-endian. Files are often gzipped;
compression is detected from the gzip magic bytes ``1f 8b`` rather than the file name,
because mirrors and unpackers rename files freely.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import InputError, NNBackError

__all__ = [
    "IDX_DTYPES",
    "IDXFormatError",
    "decode_idx",
    "decompress_if_gzip",
    "read_idx",
    "read_idx_stream",
    "write_idx",
]

#: IDX type code -> big-endian NumPy dtype, as defined by the format.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
#: The most dimensions a NumPy array can have (32 before NumPy 2, 64 since).
MAX_DIMS = 64 if int(np.__version__.split(".")[0]) >= 2 else 32


class IDXFormatError(NNBackError, ValueError):
    """A file is not a valid IDX file: truncated, corrupted or of another format."""


def decompress_if_gzip(data: bytes, name: str = "<bytes>", limit: int | None = None) -> bytes:
    """Return ``data`` decompressed if it starts with the gzip magic, else unchanged.

    Parameters
    ----------
    data : bytes
        A file's content.
    name : str, optional
        What to call the data in error messages.
    limit : int, optional
        The most bytes the result may hold; decompression stops one byte past it, so a
        gzip bomb costs ``limit`` bytes of memory, not what it unpacks to.

    Returns
    -------
    bytes
        The uncompressed content.

    Raises
    ------
    IDXFormatError
        If the gzip stream is truncated or corrupted, or unpacks to more than ``limit``.
    """
    if data[:2] != _GZIP_MAGIC:
        return data
    reader = _Stream(io.BytesIO(data), name)
    out = reader.read(limit + 1 if limit is not None else None)
    if limit is not None and len(out) > limit:
        raise IDXFormatError(f"{name}: the gzip data unpacks to more than {limit} bytes")
    return out


class _Stream:
    """The content of a file, unpacked if gzipped, read in bounded pieces.

    Nothing is decompressed beyond what :meth:`read` asks for (plus one chunk of input),
    so a header's declared size can be checked against the stream as it is read.
    ``digest``, when given, is updated with every unpacked byte.
    """

    def __init__(self, raw: BinaryIO, name: str, digest: Any = None) -> None:
        self._raw, self._name, self._digest = raw, name, digest
        self._pending = raw.read(2)
        self._inflate = zlib.decompressobj(31) if self._pending == _GZIP_MAGIC else None
        self.consumed = 0  # unpacked bytes handed out so far

    def read(self, size: int | None) -> bytes:
        """Up to ``size`` bytes (all when None); fewer only at the end of the content."""
        pieces: list[bytes] = []
        have = 0
        while size is None or have < size:
            piece = self._next(_CHUNK if size is None else min(_CHUNK, size - have))
            if not piece:
                break
            pieces.append(piece)
            have += len(piece)
        data = b"".join(pieces)
        self.consumed += len(data)
        if self._digest is not None:
            self._digest.update(data)
        return data

    def _next(self, size: int) -> bytes:
        if self._inflate is None:
            if self._pending:
                piece, self._pending = self._pending[:size], self._pending[size:]
                return piece
            return self._raw.read(size)
        try:
            while True:
                if self._inflate.eof:  # a member ended: the end, or another member
                    rest = self._inflate.unused_data or self._pending or self._raw.read(_CHUNK)
                    if not rest:
                        return b""
                    self._inflate, self._pending = zlib.decompressobj(31), rest
                data = self._inflate.unconsumed_tail or self._pending or self._raw.read(_CHUNK)
                self._pending = b""
                if not data:
                    raise EOFError("the compressed stream ended before its end marker")
                piece = self._inflate.decompress(data, size)
                if piece:
                    return piece
        # A cut-off download ends the stream early (EOFError); a damaged one fails its CRC
        # or the deflate decoder (zlib.error).
        except (EOFError, zlib.error) as exc:
            message = f"{self._name}: corrupted or truncated gzip data ({exc})"
            raise IDXFormatError(message) from None


def _parse_header(stream: _Stream, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Read and validate the IDX header; return (dtype, shape, header length)."""
    data = stream.read(4)
    if len(data) < 4:
        raise IDXFormatError(
            f"{name}: {len(data)} bytes is too short for an IDX file (the magic number alone "
            "is 4 bytes)"
        )
    if data[0] != 0 or data[1] != 0:
        raise IDXFormatError(
            f"{name}: not an IDX file: it starts with bytes {data[:4].hex(' ')}, but an IDX "
            "magic number starts with 00 00"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} ({IDX_DTYPES[c].name})" for c in IDX_DTYPES)
        raise IDXFormatError(f"{name}: unknown IDX type code 0x{code:02X}; known: {known}")
    if ndim == 0:
        raise IDXFormatError(f"{name}: the IDX header declares 0 dimensions (expected >= 1)")
    header_len = 4 + 4 * ndim
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise IDXFormatError(
            f"{name}: truncated header: {ndim} dimensions need {header_len} header bytes, "
            f"the file has {4 + len(dims)}"
        )
    if ndim > MAX_DIMS:
        raise IDXFormatError(
            f"{name}: the IDX header declares {ndim} dimensions; NumPy arrays have at most "
            f"{MAX_DIMS}"
        )
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    return IDX_DTYPES[code], shape, header_len


def _decode(
    stream: _Stream, name: str, expect: tuple[tuple[int, ...], np.dtype] | None = None
) -> np.ndarray:
    """Decode an IDX file from ``stream``, reading no more than its header declares (+1)."""
    dtype, shape, _ = _parse_header(stream, name)
    if expect is not None and (shape, dtype.newbyteorder("=")) != expect:
        raise IDXFormatError(
            f"{name}: unexpected content: shape {shape} of {dtype.name}, "
            f"expected {expect[0]} of {expect[1].name}"
        )
    # Python ints: a corrupted header could declare sizes whose product overflows int64.
    count = math.prod(shape)
    expected = count * dtype.itemsize
    # Read in chunks into a growing buffer, so a header declaring gigabytes costs what
    # the file really holds, and a payload larger than declared is read one byte past it.
    payload = bytearray()
    while len(payload) < expected:
        piece = stream.read(min(_CHUNK, expected - len(payload)))
        if not piece:
            break
        payload += piece
    if len(payload) < expected:
        raise IDXFormatError(
            f"{name}: payload truncated: the header declares shape {shape} of {dtype.name} "
            f"({expected} bytes), but {len(payload)} bytes follow the header"
        )
    if stream.read(1):
        raise IDXFormatError(
            f"{name}: payload has trailing data: the header declares shape {shape} of "
            f"{dtype.name} ({expected} bytes), but more bytes follow"
        )
    array = np.frombuffer(payload, dtype=dtype, count=count).reshape(shape)
    # frombuffer gives a big-endian view of the bytes; astype copies it into a writable
    # array in the machine's byte order, which every backend expects.
    return array.astype(dtype.newbyteorder("="))


def decode_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an IDX file, gzipped or not (see :func:`read_idx`).

    Parameters
    ----------
    data : bytes
        The file's content.
    name : str, optional
        What to call the data in error messages (a file name).

    Returns
    -------
    numpy.ndarray, shape as declared in the header
        A writable array in native byte order.

    Raises
    ------
    IDXFormatError
        As :func:`read_idx`.
    """
    return _decode(_Stream(io.BytesIO(data), name), name)


def read_idx_stream(
    raw: BinaryIO,
    name: str,
    *,
    digest: Any = None,
    expect: tuple[tuple[int, ...], np.dtype] | None = None,
) -> np.ndarray:
    """Decode an IDX file from an open binary stream, gzipped or not.

    ``digest`` (a ``hashlib`` object) is updated with the unpacked bytes; ``expect``,
    ``(shape, dtype)``, is checked as soon as the header is read, before the payload.
    """
    return _decode(_Stream(raw, name, digest), name, expect)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzipped or not, into a NumPy array.

    The file is read as a stream: a gzipped file is unpacked only as far as its header
    declares (plus one byte), so a small file that unpacks to gigabytes costs no more
    memory than the array it declares.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip compression is recognised by its magic bytes, whatever the name.

    Returns
    -------
    numpy.ndarray, shape as declared in the header (e.g. (n, 28, 28) for MNIST images)
        A writable array in native byte order with the IDX element type (uint8, int8, int16,
        int32, float32 or float64).

    Raises
    ------
    IDXFormatError
        If the magic number, type code or dimension count is invalid, the gzip stream is
        damaged, or the payload is shorter or longer than the header says. The message
        names the file and what is wrong.
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        return read_idx_stream(raw, str(path))


def write_idx(path: str | os.PathLike[str], array: np.ndarray, compress: bool = True) -> Path:
    """Write an array as an IDX file, gzipped by default.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; written whole, replacing any existing file. The name is used as given
        (no ``.gz`` is added), since readers detect compression by content.
    array : array_like, shape (d0, d1, ..., dk), 1 to 255 dimensions
        Data of an IDX type: uint8, int8, int16, int32, float32 or float64 (any byte order).
    compress : bool, default True
        Gzip the file. The gzip timestamp is fixed at 0 so the same array always gives the
        same bytes (useful for checksums and fixtures).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    InputError
        If the dtype has no IDX type code, the array is 0-dimensional or has more than 255
        dimensions, or a dimension does not fit in uint32.
    """
    array = np.asarray(array)
    by_kind = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    code = by_kind.get(array.dtype.newbyteorder("="))
    if code is None:
        names = ", ".join(dt.name for dt in IDX_DTYPES.values())
        raise InputError(
            f"array dtype {array.dtype} has no IDX type code; expected one of {names} "
            "(convert with array.astype(...))"
        )
    if not 1 <= array.ndim <= 255:
        raise InputError(f"an IDX file holds 1 to 255 dimensions, got an array of {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise InputError(f"IDX dimensions must be < 2**32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    blob = header + payload
    if compress:
        blob = gzip.compress(blob, mtime=0)
    path = Path(path)
    path.write_bytes(blob)
    return path
