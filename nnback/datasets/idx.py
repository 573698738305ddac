"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimension sizes, then the elements in C order, big-endian. Files are often gzipped;
compression is detected from the gzip magic bytes ``1f 8b`` rather than the file name,
because mirrors and unpackers rename files freely.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError, NNBackError

__all__ = [
    "IDX_DTYPES",
    "IDXFormatError",
    "decode_idx",
    "decompress_if_gzip",
    "read_idx",
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


class IDXFormatError(NNBackError, ValueError):
    """A file is not a valid IDX file: truncated, corrupted or of another format."""


def decompress_if_gzip(data: bytes, name: str = "<bytes>") -> bytes:
    """Return ``data`` decompressed if it starts with the gzip magic, else unchanged.

    Parameters
    ----------
    data : bytes
        A file's content.
    name : str, optional
        What to call the data in error messages.

    Returns
    -------
    bytes
        The uncompressed content.

    Raises
    ------
    IDXFormatError
        If the gzip stream is truncated or corrupted.
    """
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    # A cut-off download ends the stream early (EOFError); a damaged one fails its CRC or
    # the deflate decoder (BadGzipFile is an OSError, zlib.error is not).
    except (EOFError, OSError, zlib.error) as exc:
        raise IDXFormatError(f"{name}: corrupted or truncated gzip data ({exc})") from exc


def _parse_header(data: bytes, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Validate the IDX header in ``data`` and return (dtype, shape, header length)."""
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
    if len(data) < header_len:
        raise IDXFormatError(
            f"{name}: truncated header: {ndim} dimensions need {header_len} header bytes, "
            f"the file has {len(data)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[code], shape, header_len


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
    data = decompress_if_gzip(data, name)
    dtype, shape, header_len = _parse_header(data, name)
    # Python ints: a corrupted header could declare sizes whose product overflows int64.
    count = math.prod(shape)
    expected = count * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing data"
        raise IDXFormatError(
            f"{name}: payload {what}: the header declares shape {shape} of {dtype.name} "
            f"({expected} bytes), but {actual} bytes follow the header"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header_len).reshape(shape)
    # frombuffer gives a read-only big-endian view of the bytes; astype copies it into a
    # writable array in the machine's byte order, which every backend expects.
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzipped or not, into a NumPy array.

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
    return decode_idx(path.read_bytes(), str(path))


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
