"""Helpers for parity tests: inputs in any layout on any backend, and tolerant comparison.

A parity test makes float64 values on the host, rounds them to the dtype under test, moves
them to the backend in a chosen layout with :func:`make_input` (which also returns the
rounded values in float64 for the reference), runs the op on both, and compares with
:func:`assert_close`, whose tolerance comes from :mod:`nnback.tolerances`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy
import numpy.testing

from ..backends.base import Backend
from ..tolerances import FINITE_DIFFERENCE_STEP, GRADIENT_CHECK, get_tolerance

__all__ = [
    "LAYOUTS",
    "assert_close",
    "assert_gradient_close",
    "assert_unchanged",
    "make_input",
    "numerical_gradient",
    "on_backend",
    "random_array",
    "to_host",
]

LAYOUTS = ("contiguous", "strided", "transposed")
"""``contiguous``: C order. ``strided``: every other row (every other column for a single
row) of a larger array whose skipped entries hold poison (NaN, -1), so a kernel that ignores
strides gives wrong numbers. ``transposed``: the ``.T`` view of a C-ordered array (Fortran
order); 2-D arrays with both sides > 1 only, others fall back to ``strided``."""


def random_array(
    rng: numpy.random.Generator,
    shape: tuple[int, ...],
    low: float = -1.0,
    high: float = 1.0,
    *,
    min_abs: float = 0.0,
) -> numpy.ndarray:
    """Uniform float64 values in ``[low, high]``, optionally kept ``min_abs`` away from 0.

    ``min_abs > 0`` (for symmetric ranges) keeps values off kinks such as relu's and
    sign's at zero, so a rounding to float32 cannot change which side of 0 a value is on.
    """
    if min_abs <= 0:
        return rng.uniform(low, high, size=shape)
    if low != -high or not 0 < min_abs < high:
        raise ValueError("min_abs needs a symmetric range [-high, high] with high > min_abs")
    magnitude = rng.uniform(min_abs, high, size=shape)
    return numpy.where(rng.random(size=shape) < 0.5, -magnitude, magnitude)


def _poison(dtype: numpy.dtype) -> Any:
    if dtype.kind == "f":
        return numpy.nan
    if dtype.kind == "i":
        return -1
    return numpy.ones((), dtype=dtype)[()]


def on_backend(backend: Backend, host: numpy.ndarray, layout: str = "contiguous") -> Any:
    """A new backend array with the values of ``host`` in the given layout.

    The layout is made on the backend (by slicing or transposing there), so it is the
    backend's own strided view, whatever the backend. The host array is never aliased:
    in-place ops on the result leave it unchanged.
    """
    host = numpy.asarray(host)
    if layout == "transposed" and (host.ndim != 2 or min(host.shape) < 2):
        layout = "strided"
    if layout == "contiguous":
        return backend.asarray(numpy.array(host, copy=True))
    if layout == "transposed":
        result = backend.asarray(numpy.ascontiguousarray(host.T)).T
    elif layout == "strided":
        # Step 2 along the first axis that has two or more entries (rows, else columns).
        axis = next((i for i, n in enumerate(host.shape) if n >= 2), None)
        if axis is None:
            raise ValueError(f"cannot make a strided view of shape {host.shape}")
        shape = list(host.shape)
        shape[axis] *= 2
        every_other = (slice(None),) * axis + (slice(None, None, 2),)
        padded = numpy.full(shape, _poison(host.dtype), host.dtype)
        padded[every_other] = host
        result = backend.asarray(padded)[every_other]
    else:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if result.flags.c_contiguous:
        raise AssertionError(f"{layout} view of shape {host.shape} is C-contiguous")
    return result


def make_input(
    backend: Backend, values: Any, dtype: Any, layout: str = "contiguous"
) -> tuple[Any, numpy.ndarray]:
    """Round ``values`` to ``dtype``; return them on the backend and, for the reference, in float64.

    Integer and boolean dtypes (labels, masks) come back unchanged for the reference.
    """
    rounded = numpy.asarray(values).astype(dtype)
    reference = rounded.astype(numpy.float64) if rounded.dtype.kind == "f" else rounded.copy()
    return on_backend(backend, rounded, layout), reference


def to_host(backend: Backend, x: Any) -> numpy.ndarray:
    """A backend result (array, NumPy scalar or Python number) as a host ``numpy.ndarray``."""
    if x is None:
        raise AssertionError("expected an array, got None")
    if isinstance(x, bool | int | float):
        return numpy.asarray(x)
    return numpy.asarray(backend.to_numpy(x))


def assert_close(
    op: str,
    backend: Backend,
    got: Any,
    expected: Any,
    *,
    dtype: Any = None,
    label: str = "",
) -> None:
    """Assert a backend result matches the float64 reference within the op's tolerance.

    Parameters
    ----------
    op : str
        The op's name in the tolerance table, e.g. ``"dense_backward"``.
    backend : Backend
        The backend that computed ``got`` (for the transfer and per-backend tolerances).
    got : backend array or scalar
    expected : array-like
        The reference result, in float64.
    dtype : dtype-like, optional
        The dtype of the op's inputs. Defaults to the result's dtype when it is floating
        (float64 otherwise). A floating result must have this dtype: no silent upcasts.
    label : str
        Names the output in the message (``"dW"``, ``"loss"``, ...).
    """
    host = to_host(backend, got)
    want = numpy.asarray(expected)
    where = f"{op}[{backend.name}]" + (f" {label}" if label else "")
    if dtype is None:
        dtype = host.dtype if host.dtype.kind == "f" else numpy.float64
    dtype = numpy.dtype(dtype)
    if host.dtype.kind == "f" and host.dtype != dtype:
        raise AssertionError(f"{where}: result dtype {host.dtype}, expected {dtype}")
    if host.shape != want.shape:
        raise AssertionError(f"{where}: result shape {host.shape}, expected {want.shape}")
    tol = get_tolerance(op, dtype, backend.name)
    got64 = host.astype(numpy.float64)
    want64 = want.astype(numpy.float64)
    error = numpy.abs(got64 - want64)
    both_nan = numpy.isnan(got64) & numpy.isnan(want64)
    bad = ~((error <= tol.atol + tol.rtol * numpy.abs(want64)) | both_nan)
    if not bad.any():
        return
    error = numpy.where(numpy.isnan(error), numpy.inf, error)
    with numpy.errstate(divide="ignore", invalid="ignore"):
        relative = numpy.where(bad, error / numpy.abs(want64), 0)
    eps = float(numpy.finfo(dtype).eps)
    lines = [
        f"{where} on {dtype} inputs: {int(bad.sum())} of {bad.size} values outside "
        f"rtol={tol.rtol:.3g}, atol={tol.atol:.3g}"
    ]
    for kind, score in (("abs", numpy.where(bad, error, -1)), ("rel", relative)):
        at = tuple(int(i) for i in numpy.unravel_index(numpy.argmax(score), error.shape))
        lines.append(
            f"  max {kind} error at {at}: abs {error[at]:.3g} ({error[at] / eps:.3g} eps), "
            f"rel {relative[at]:.3g}; got {float(got64[at])!r}, expected {float(want64[at])!r}"
        )
    raise AssertionError("\n".join(lines))


def assert_unchanged(backend: Backend, x: Any, values: numpy.ndarray, what: str) -> None:
    """Assert the backend array ``x`` still holds ``values`` (an op must not modify inputs)."""
    host = to_host(backend, x)
    if not numpy.array_equal(host, numpy.asarray(values).astype(host.dtype), equal_nan=True):
        raise AssertionError(f"{what} was modified in place on backend {backend.name!r}")


def numerical_gradient(
    f: Callable[[numpy.ndarray], float], x: numpy.ndarray, step: float = FINITE_DIFFERENCE_STEP
) -> numpy.ndarray:
    """Central finite-difference gradient of the scalar function ``f`` at float64 ``x``.

    ``f`` is called with a perturbed copy of ``x`` (same shape); ``x`` is not modified.
    """
    x = numpy.array(x, dtype=numpy.float64, copy=True)
    grad = numpy.empty_like(x)
    for index in numpy.ndindex(*x.shape):
        saved = x[index]
        x[index] = saved + step
        upper = float(f(x))
        x[index] = saved - step
        lower = float(f(x))
        x[index] = saved
        grad[index] = (upper - lower) / (2 * step)
    return grad


def assert_gradient_close(analytic: Any, numeric: numpy.ndarray, label: str) -> None:
    """Assert an analytic float64 gradient matches finite differences (``GRADIENT_CHECK``)."""
    numpy.testing.assert_allclose(
        numpy.asarray(analytic),
        numeric,
        rtol=GRADIENT_CHECK.rtol,
        atol=GRADIENT_CHECK.atol,
        err_msg=f"gradient check failed: {label}",
    )
