"""Building hostile files at test time: zip archives with chosen (or lying) sizes, deflate
and bzip2 bombs, edited model files with a recomputed checksum, gzip bombs of IDX files.

Bombs are built from one compressed block repeated (deflate with a full flush restarts
from an empty history, so every block of zeros compresses to the same bytes): a 512 MiB
member costs a few milliseconds and about half a megabyte on disk.
"""

from __future__ import annotations

import bz2
import io
import json
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy
from numpy.lib import format as npy_format

from nnback.serialization import _HEADER, _checksum

MiB = 1 << 20


class Member:
    """One zip member: its name, method, the bytes stored, and the sizes and CRC the zip
    headers declare (by default the true ones)."""

    def __init__(self, name: str, stored: bytes, method: int, crc: int, size: int) -> None:
        self.name, self.stored, self.method, self.crc, self.size = name, stored, method, crc, size


def write_zip(path: Path, members: list[Member]) -> Path:
    """A zip file of ``members``, exactly as declared (no zip64: sizes below 4 GiB)."""
    body, directory = bytearray(), bytearray()
    for m in members:
        name = m.name.encode()
        fields = (20, 0, m.method, 0, 0x21, m.crc, len(m.stored), m.size, len(name), 0)
        offset = len(body)
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + name + m.stored
        central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, *fields, 0, 0, 0, 0, offset)
        directory += central + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                      len(directory), len(body), 0)  # fmt: skip
    path.write_bytes(bytes(body + directory + end))
    return path


def members_of(path: Path) -> list[Member]:
    """The members of an ``.npz`` written by ``numpy.savez`` (stored, not compressed)."""
    with zipfile.ZipFile(path) as archive:
        return [
            Member(i.filename, archive.read(i), zipfile.ZIP_STORED, i.CRC, i.file_size)
            for i in archive.infolist()
        ]


def npy_prefix(shape: tuple[int, ...], dtype: str) -> bytes:
    """The ``.npy`` header of an array of ``shape`` and ``dtype``."""
    buffer = io.BytesIO()
    header = {"descr": numpy.dtype(dtype).str, "fortran_order": False, "shape": shape}
    npy_format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def deflate_bomb(name: str, prefix: bytes, zero_mib: int) -> Member:
    """``prefix`` then ``zero_mib`` MiB of zeros, deflated, with true sizes and CRC."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    stored = head + block * zero_mib + compressor.flush()
    crc = zlib.crc32(prefix)
    zeros = bytes(MiB)
    for _ in range(zero_mib):
        crc = zlib.crc32(zeros, crc)
    return Member(name, stored, zipfile.ZIP_DEFLATED, crc, len(prefix) + zero_mib * MiB)


def bzip2_bomb(name: str, prefix: bytes, zero_mib: int) -> Member:
    """``prefix`` then ``zero_mib`` MiB of zeros, bzip2-compressed, true sizes and CRC."""
    compressor = bz2.BZ2Compressor(9)
    pieces, crc = [compressor.compress(prefix)], zlib.crc32(prefix)
    zeros = bytes(16 * MiB)
    for _ in range(zero_mib // 16):
        pieces.append(compressor.compress(zeros))
        crc = zlib.crc32(zeros, crc)
    stored = b"".join(pieces) + compressor.flush()
    return Member(name, stored, zipfile.ZIP_BZIP2, crc, len(prefix) + zero_mib // 16 * 16 * MiB)


def gzip_bomb(header: bytes, zero_mib: int) -> bytes:
    """A gzip file of ``header`` then ``zero_mib`` MiB of zeros (true CRC and size)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(header)
    zeros = bytes(MiB)
    for _ in range(zero_mib):
        crc = zlib.crc32(zeros, crc)
    size = (len(header) + zero_mib * MiB) & 0xFFFFFFFF
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, size)
    return gzip_header + head + block * zero_mib + compressor.flush() + trailer


def rewrite_model(source: Path, target: Path, change: Any) -> Path:
    """Copy a model file, letting ``change(header, arrays)`` edit it, with the SHA-256
    recomputed: what anyone can do to a file, since a checksum is not a signature."""
    with numpy.load(source) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays.pop(_HEADER).tobytes().decode())
    change(header, arrays)
    header["checksum"] = _checksum(arrays)
    encoded = numpy.frombuffer(json.dumps(header).encode(), dtype=numpy.uint8)
    with open(target, "wb") as handle:
        numpy.savez(handle, **{_HEADER: encoded}, **arrays)
    return target
