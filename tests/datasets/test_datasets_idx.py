"""Tests of the IDX reader and writer: every type, compressed or not, and damaged files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from nnback.datasets import IDXFormatError, read_idx, write_idx
from nnback.errors import InputError

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]


def sample_array(dtype: str, shape: tuple[int, ...] = (3, 4, 5)) -> np.ndarray:
    """Values spanning the type's range, extremes included, so byte order errors show."""
    size = int(np.prod(shape))
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        values = np.linspace(info.min, info.max, num=size).round().astype(dtype)
    else:
        info = np.finfo(dtype)
        values = np.random.default_rng(0).normal(scale=1e3, size=size).astype(dtype)
        values[:5] = [info.min, info.max, info.tiny, -0.0, np.inf]
    return values.reshape(shape)


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_dtype(tmp_path: Path, dtype: str, compress: bool) -> None:
    array = sample_array(dtype)
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") is compress
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == array.shape
    assert np.array_equal(back, array)
    assert back.flags.writeable


@pytest.mark.parametrize("shape", [(7,), (2, 3), (1, 2, 1, 3)])
def test_round_trip_shapes(tmp_path: Path, shape: tuple[int, ...]) -> None:
    array = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    assert np.array_equal(read_idx(write_idx(tmp_path / "s", array)), array)


def test_header_is_big_endian_as_the_format_says(tmp_path: Path) -> None:
    write_idx(tmp_path / "h", np.array([[1, 2]], dtype="<i2"), compress=False)
    raw = (tmp_path / "h").read_bytes()
    assert raw == bytes([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0, 2])


def test_compression_is_detected_by_content_not_name(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "looks-raw", array, compress=True)
    write_idx(tmp_path / "looks-gzipped.gz", array, compress=False)
    assert np.array_equal(read_idx(tmp_path / "looks-raw"), array)
    assert np.array_equal(read_idx(tmp_path / "looks-gzipped.gz"), array)


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    array = sample_array("float32")
    first = write_idx(tmp_path / "1", array).read_bytes()
    second = write_idx(tmp_path / "2", array).read_bytes()
    assert first == second


@pytest.fixture
def good_raw(tmp_path: Path) -> bytes:
    return write_idx(tmp_path / "good", np.arange(24, dtype=np.int16), compress=False).read_bytes()


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_truncated_payload(tmp_path: Path, good_raw: bytes, compress: bool) -> None:
    cut = good_raw[:-3]
    path = tmp_path / "cut"
    path.write_bytes(gzip.compress(cut) if compress else cut)
    with pytest.raises(IDXFormatError, match=r"payload truncated.*\(24,\).*48 bytes.*45 bytes"):
        read_idx(path)


def test_trailing_data(tmp_path: Path, good_raw: bytes) -> None:
    (tmp_path / "long").write_bytes(good_raw + b"\0\0")
    with pytest.raises(IDXFormatError, match="trailing data"):
        read_idx(tmp_path / "long")


def test_truncated_gzip_stream(tmp_path: Path, good_raw: bytes) -> None:
    blob = gzip.compress(good_raw)
    (tmp_path / "cut.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(IDXFormatError, match=r"cut\.gz: corrupted or truncated gzip"):
        read_idx(tmp_path / "cut.gz")


def test_corrupted_gzip_stream(tmp_path: Path, good_raw: bytes) -> None:
    blob = bytearray(gzip.compress(good_raw))
    blob[-8] ^= 0xFF  # flip bits in the CRC-32 trailer
    (tmp_path / "bad.gz").write_bytes(bytes(blob))
    with pytest.raises(IDXFormatError, match="corrupted or truncated gzip"):
        read_idx(tmp_path / "bad.gz")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"<!DOCTYPE html><html>404</html>", "not an IDX file: it starts with bytes 3c 21 44 4f"),
        (b"\x89PNG\r\n\x1a\n", "not an IDX file"),
        (b"\x00\x00", "2 bytes is too short for an IDX file"),
        (b"", "0 bytes is too short"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x00", "declares 0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated header: 3 dimensions need 16"),
    ],
)
def test_foreign_or_broken_headers(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "foreign.bin"
    path.write_bytes(content)
    with pytest.raises(IDXFormatError) as info:
        read_idx(path)
    message = str(info.value)
    assert fragment in message
    assert str(path) in message
    assert isinstance(info.value, ValueError)


def test_huge_declared_size_is_reported_not_allocated(tmp_path: Path) -> None:
    header = bytes([0, 0, 0x0E, 3]) + np.array([2**32 - 1] * 3, dtype=">u4").tobytes()
    (tmp_path / "huge").write_bytes(header + b"\0" * 8)
    with pytest.raises(IDXFormatError, match="payload truncated"):
        read_idx(tmp_path / "huge")


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.arange(3, dtype=np.int64), "dtype int64 has no IDX type code"),
        (np.array([True]), "dtype bool has no IDX type code"),
        (np.array(5, dtype=np.uint8), "1 to 255 dimensions, got an array of 0"),
    ],
)
def test_write_rejects_what_idx_cannot_hold(tmp_path: Path, array, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        write_idx(tmp_path / "x", array)
