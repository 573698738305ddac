"""Helpers shared by the CUDA tests: rounded random inputs and tolerance checks."""

from __future__ import annotations

from typing import Any

import numpy

from nnback.backends.base import Backend
from nnback.tolerances import get_tolerance

DTYPES = ("float32", "float64")
REFERENCE = Backend()  # the NumPy reference, run in float64 (or in the dtype for exactness)


def rounded(
    rng: numpy.random.Generator,
    shape: tuple[int, ...],
    dtype: str,
    low: float = -1.0,
    high: float = 1.0,
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Uniform values rounded to ``dtype``, and the same values in float64 for the reference."""
    values = rng.uniform(low, high, size=shape).astype(dtype)
    return values, values.astype(numpy.float64)


def assert_within(op: str, got: Any, expected: Any, dtype: str, what: str = "") -> None:
    """``got`` (in ``dtype``) against the float64 reference, within the table's tolerance
    for ``op`` on the cupy backend."""
    got = numpy.asarray(got)
    assert got.dtype == numpy.dtype(dtype), f"{op} {what}: dtype {got.dtype}, not {dtype}"
    tol = get_tolerance(op, dtype, "cupy")
    numpy.testing.assert_allclose(
        got.astype(numpy.float64),
        numpy.asarray(expected, dtype=numpy.float64),
        rtol=tol.rtol,
        atol=tol.atol,
        equal_nan=True,
        err_msg=f"{op} {what} ({dtype})",
    )


def assert_bitwise(got: Any, expected: Any, what: str) -> None:
    """Identical values (NaN equal to NaN): for kernels that repeat the reference's exact
    sequence of correctly rounded operations in the same dtype."""
    got, expected = numpy.asarray(got), numpy.asarray(expected)
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} vs {expected.dtype}"
    same = (got == expected) | (numpy.isnan(got) & numpy.isnan(expected))
    assert same.all(), (
        f"{what}: {int((~same).sum())} of {same.size} values differ from the same-dtype "
        f"reference; first at {numpy.argwhere(~same)[0]}: {got[~same][0]!r} vs "
        f"{expected[~same][0]!r}"
    )


def i64(value: int) -> numpy.int64:
    return numpy.int64(value)


def f64(value: float) -> numpy.float64:
    return numpy.float64(value)


def i32(value: int) -> numpy.int32:
    return numpy.int32(value)
