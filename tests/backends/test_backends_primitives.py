"""Parity and behaviour of the primitives: transfers, allocation, reductions, small maths."""

from __future__ import annotations

import numpy
import pytest

from nnback.backends.base import Backend
from nnback.testing import assert_close, assert_unchanged, make_input, random_array, to_host

N, K = 32, 24  # 768 terms for the whole-array reductions


def test_asarray_to_numpy_round_trip(backend: Backend, dtype: numpy.dtype) -> None:
    host = numpy.arange(12, dtype=dtype).reshape(3, 4) / 7
    x = backend.asarray(host)
    assert backend.is_array(x)
    assert not backend.is_array(object())
    back = backend.to_numpy(x)
    assert isinstance(back, numpy.ndarray)
    assert back.dtype == dtype
    numpy.testing.assert_array_equal(back, host)


def test_asarray_converts_dtype_and_lists(backend: Backend, dtype: numpy.dtype) -> None:
    x = backend.asarray([[1, 2], [3, 4]], dtype=dtype)
    assert x.dtype == dtype
    assert_close("asarray", backend, x, [[1, 2], [3, 4]], dtype=dtype)
    y = backend.asarray(x, dtype=numpy.float64)
    assert y.dtype == numpy.float64


def test_allocation(backend: Backend, dtype: numpy.dtype) -> None:
    for make in (backend.empty, backend.zeros):
        x = make((3, 5), dtype)
        assert backend.is_array(x)
        assert x.shape == (3, 5) and x.dtype == dtype
    assert_close("zeros", backend, backend.zeros((3, 5), dtype), numpy.zeros((3, 5)))
    like = backend.zeros_like(backend.asarray(numpy.ones((2, 7), dtype=dtype)))
    assert like.dtype == dtype
    assert_close("zeros_like", backend, like, numpy.zeros((2, 7)))


def test_copy_is_independent(backend: Backend, dtype: numpy.dtype, layout: str) -> None:
    values = numpy.arange(20.0).reshape(5, 4)
    x, x64 = make_input(backend, values, dtype, layout)
    y = backend.copy(x)
    assert_close("copy", backend, y, x64, dtype=dtype)
    backend.scale_inplace(y, 2.0)
    assert_unchanged(backend, x, x64, "the source of copy")


def test_copy_into_inplace(backend: Backend, dtype: numpy.dtype, layout: str) -> None:
    dst, _ = make_input(backend, numpy.zeros((6, 4)), dtype, layout)
    src, src64 = make_input(backend, numpy.arange(24.0).reshape(6, 4), dtype)
    assert backend.copy_into_inplace(dst, src) is None
    assert_close("copy_into_inplace", backend, dst, src64, dtype=dtype)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_sum_and_mean(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    axis: int | None,
    keepdims: bool,
) -> None:
    x, x64 = make_input(backend, random_array(rng, (N, K)), dtype, layout)
    for op in ("sum", "mean"):
        got = getattr(backend, op)(x, axis=axis, keepdims=keepdims)
        want = getattr(reference, op)(x64, axis=axis, keepdims=keepdims)
        assert_close(op, backend, got, want, dtype=dtype)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_argmax(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    axis: int,
) -> None:
    # A permutation has no ties, so every backend must pick the same index.
    values = rng.permutation(N * K).reshape(N, K) / (N * K)
    x, x64 = make_input(backend, values, dtype, layout)
    assert_close("argmax", backend, backend.argmax(x, axis=axis), reference.argmax(x64, axis))


def test_squared_norm(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
) -> None:
    x, x64 = make_input(backend, random_array(rng, (N, K)), dtype, layout)
    got = backend.squared_norm(x)
    assert_close("squared_norm", backend, got, reference.squared_norm(x64), dtype=dtype)
    assert to_host(backend, got).shape == ()


@pytest.mark.parametrize("factor", [0.5, -3.25, 1 / 3])
def test_scale_inplace(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    factor: float,
) -> None:
    x, x64 = make_input(backend, random_array(rng, (N, K)), dtype, layout)
    assert backend.scale_inplace(x, factor) is None
    reference.scale_inplace(x64, factor)
    assert_close("scale_inplace", backend, x, x64, dtype=dtype)


def test_scale_inplace_by_a_device_scalar(backend: Backend, dtype: numpy.dtype) -> None:
    # The factor may be a 0-d backend array (a loss scale computed on the device).
    x, x64 = make_input(backend, numpy.arange(6.0).reshape(2, 3), dtype)
    backend.scale_inplace(x, backend.asarray(numpy.array(0.5, dtype=dtype)))
    assert_close("scale_inplace", backend, x, x64 * 0.5, dtype=dtype)


@pytest.mark.parametrize("bad", [None, numpy.nan, numpy.inf, -numpy.inf])
def test_all_finite(backend: Backend, dtype: numpy.dtype, layout: str, bad: float | None) -> None:
    values = numpy.ones((6, 4))
    if bad is not None:
        values[3, 2] = bad
    x, _ = make_input(backend, values, dtype, layout)
    assert backend.all_finite(x) is (bad is None)


def test_to_float(backend: Backend, dtype: numpy.dtype) -> None:
    value = numpy.asarray(1 / 3, dtype=dtype)
    got = backend.to_float(backend.asarray(value))
    assert type(got) is float
    assert got == float(value)
    assert backend.to_float(backend.asarray(numpy.array([[2.5]], dtype=dtype))) == 2.5


def test_synchronize_and_info(backend: Backend) -> None:
    assert backend.synchronize() is None
    info = backend.info()
    assert isinstance(info, dict) and "array module" in info
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.items())
