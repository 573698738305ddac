"""Activation forward kernels: the dense layer's bias + activation epilogue, and softmax.

Every entry of :data:`FORWARD_KERNELS` takes ``(z, b, out[, alpha])``, ``z`` C-contiguous
and 2-D:

* ``b`` is the bias row (1-D, ``z.shape[1]`` values) or ``None`` for no bias;
* ``out`` is the destination, or ``None`` to write over ``z`` in place.

The dense forward pass calls ``kernel(z, b, None)`` on its GEMM output; ``activation_forward``
calls ``kernel(z, None, out)``. The bias is added first and the sum rounded to the dtype
before the activation, exactly as the reference's ``z += b`` does.

linear, relu and leaky_relu are one compiled pass over the memory BLAS just wrote, where
the reference makes a bias pass, an activation pass into a new array and a copy back.
sigmoid, tanh and softmax need a transcendental function: Numba can only call libm's scalar
``expf``/``tanhf`` for it, measured 3x and 8x slower than NumPy's SIMD ``exp``/``tanh``, so
they are compiled passes around NumPy's own ufunc, applied in place (which also makes their
exponentials bit-identical to the reference's).
"""

from __future__ import annotations

import numpy as np

from .runtime import kernel

Array = np.ndarray  # annotations only: Numba infers the types from the arguments

__all__ = [
    "FORWARD_KERNELS",
    "leaky_relu_forward",
    "linear_forward",
    "relu_forward",
    "sigmoid_forward",
    "softmax_forward",
    "tanh_forward",
]


@kernel
def linear_forward(z: Array, b: Array | None, out: Array | None) -> None:
    """``z + b``: the reference dense_forward with activation ``"linear"``."""
    n, k = z.shape
    for i in range(n):
        for j in range(k):
            v = z[i, j]
            if b is not None:
                v = v + b[j]
            if out is None:
                z[i, j] = v
            else:
                out[i, j] = v


@kernel
def relu_forward(z: Array, b: Array | None, out: Array | None) -> None:
    """``maximum(z + b, 0)``: reference activation_forward ``"relu"``.

    Written as ``0 if v < 0 else v`` so that NaN passes through as in ``numpy.maximum``;
    LLVM turns it into one ``vmaxps`` per 8 values.
    """
    n, k = z.shape
    zero = z.dtype.type(0)
    for i in range(n):
        for j in range(k):
            v = z[i, j]
            if b is not None:
                v = v + b[j]
            v = zero if v < zero else v
            if out is None:
                z[i, j] = v
            else:
                out[i, j] = v


@kernel
def leaky_relu_forward(z: Array, b: Array | None, out: Array | None, alpha: float) -> None:
    """``where(z + b > 0, z + b, (z + b) * alpha)``: reference ``"leaky_relu"``."""
    n, k = z.shape
    zero = z.dtype.type(0)
    slope = z.dtype.type(alpha)
    for i in range(n):
        for j in range(k):
            v = z[i, j]
            if b is not None:
                v = v + b[j]
            v = v if v > zero else v * slope
            if out is None:
                z[i, j] = v
            else:
                out[i, j] = v


@kernel
def _bias_and_negabs(z: Array, b: Array | None, dst: Array, t: Array) -> None:
    """``dst = z + b`` (rounded, as the reference's ``z += b``) and ``t = -|dst|``."""
    n, k = z.shape
    for i in range(n):
        for j in range(k):
            v = z[i, j]
            if b is not None:
                v = v + b[j]
            dst[i, j] = v
            t[i, j] = -abs(v)


@kernel
def _sigmoid_from_exp(dst: Array, e: Array) -> None:
    """``dst = 1/(1+e)`` where ``dst >= 0``, else ``e/(1+e)``, given ``e = exp(-|dst|)``."""
    n, k = dst.shape
    zero = dst.dtype.type(0)
    one = dst.dtype.type(1)
    for i in range(n):
        for j in range(k):
            ej = e[i, j]
            dst[i, j] = one / (one + ej) if dst[i, j] >= zero else ej / (one + ej)


def sigmoid_forward(z: Array, b: Array | None, out: Array | None) -> None:
    """Reference ``"sigmoid"``: ``e = exp(-|v|)``, then ``1/(1+e)`` for v >= 0, else ``e/(1+e)``.

    Compiled: add the bias and take ``-|v|``; NumPy: ``exp`` in place; compiled: the
    reference's two branches. The exponent is never positive, so exp never overflows.
    """
    dst = z if out is None else out
    e = np.empty_like(z)
    _bias_and_negabs(z, b, dst, e)
    np.exp(e, out=e)
    _sigmoid_from_exp(dst, e)


def tanh_forward(z: Array, b: Array | None, out: Array | None) -> None:
    """``tanh(z + b)``: reference ``"tanh"``; the bias add compiled, then NumPy's ``tanh``."""
    dst = z if out is None else out
    if b is not None or out is None:
        linear_forward(z, b, out)
        np.tanh(dst, out=dst)
    else:
        np.tanh(z, out=dst)


@kernel
def _bias_and_shift_rows(z: Array, b: Array | None, dst: Array) -> None:
    """``dst = v - max(v)`` row by row, with ``v = z + b`` rounded first (reference order)."""
    n, k = z.shape
    for i in range(n):
        peak = z[i, 0]
        if b is not None:
            peak = peak + b[0]
        for j in range(k):
            v = z[i, j]
            if b is not None:
                v = v + b[j]
            dst[i, j] = v
            # max() would drop a NaN; this keeps the first one, so its row ends all NaN.
            if v > peak or v != v:
                peak = v
        for j in range(k):
            dst[i, j] = dst[i, j] - peak


@kernel
def _normalize_rows(e: Array) -> None:
    """``e /= sum(e, axis=1)`` for positive ``e`` (a plain sum per row, in the dtype)."""
    n, k = e.shape
    for i in range(n):
        total = e.dtype.type(0)
        for j in range(k):
            total += e[i, j]
        for j in range(k):
            e[i, j] = e[i, j] / total


def softmax_forward(z: Array, b: Array | None, out: Array | None) -> None:
    """Row-wise softmax of ``z + b``: reference ``softmax``, ``exp(v - max) / sum(exp(...))``.

    Shift (compiled), NumPy's SIMD ``exp`` in place, normalize (compiled): three passes
    with no temporary, where the reference makes four arrays.
    """
    dst = z if out is None else out
    _bias_and_shift_rows(z, b, dst)
    np.exp(dst, out=dst)
    _normalize_rows(dst)


# activation name -> kernel; "leaky_relu" takes the extra ``alpha`` argument.
FORWARD_KERNELS = {
    "linear": linear_forward,
    "relu": relu_forward,
    "leaky_relu": leaky_relu_forward,
    "sigmoid": sigmoid_forward,
    "tanh": tanh_forward,
    "softmax": softmax_forward,
}
