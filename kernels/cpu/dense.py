"""Activation backward kernels, fused with the dense layer's bias gradient.

Every kernel has the signature ``(dy, y, dz, db[, alpha])`` over C-contiguous 2-D ``dy``
and ``y`` of the same shape:

* ``dz`` is the destination of the gradient with respect to the pre-activation, or
  ``None`` to write it over ``dy`` (the dense layer's ``overwrite_dy``);
* ``db`` is the bias gradient (1-D, ``dy.shape[1]`` values) to fill with the column sums
  of ``dz``, or ``None`` when only ``activation_backward`` is wanted.

One row-major pass computes ``dz`` and adds each row into ``db``. The bias gradient is thus
summed row after row in the dtype, the very order of the reference's
``sum(dz, axis=0)`` over a C-contiguous array, and the inner loop over a row vectorizes.
(A column-at-a-time sum, the obvious alternative, strides through memory and measured 20x
slower.)
"""

from __future__ import annotations

import numpy as np

from .runtime import kernel

__all__ = [
    "BACKWARD_KERNELS",
    "column_sums",
    "leaky_relu_backward",
    "relu_backward",
    "sigmoid_backward",
    "softmax_backward",
    "tanh_backward",
]

Array = np.ndarray  # annotations only: Numba infers the types from the arguments


@kernel
def column_sums(dy: Array, db: Array) -> None:
    """``db = sum(dy, axis=0)``: the bias gradient of a ``"linear"`` dense layer."""
    n, k = dy.shape
    for j in range(k):
        db[j] = dy.dtype.type(0)
    for i in range(n):
        for j in range(k):
            db[j] += dy[i, j]


@kernel
def relu_backward(dy: Array, y: Array, dz: Array | None, db: Array | None) -> None:
    """Reference ``"relu"`` backward: ``where(y > 0, dy, 0 * dy)``.

    ``0 * dy`` rather than ``0`` keeps the reference's NaN for an infinite ``dy`` and its
    sign of zero.
    """
    n, k = dy.shape
    zero = dy.dtype.type(0)
    if db is not None:
        for j in range(k):
            db[j] = zero
    for i in range(n):
        for j in range(k):
            g = dy[i, j]
            g = g if y[i, j] > zero else g * zero
            if dz is None:
                dy[i, j] = g
            else:
                dz[i, j] = g
            if db is not None:
                db[j] += g


@kernel
def leaky_relu_backward(
    dy: Array, y: Array, dz: Array | None, db: Array | None, alpha: float
) -> None:
    """Reference ``"leaky_relu"`` backward: ``where(y > 0, dy, dy * alpha)``."""
    n, k = dy.shape
    zero = dy.dtype.type(0)
    slope = dy.dtype.type(alpha)
    if db is not None:
        for j in range(k):
            db[j] = zero
    for i in range(n):
        for j in range(k):
            g = dy[i, j]
            g = g if y[i, j] > zero else g * slope
            if dz is None:
                dy[i, j] = g
            else:
                dz[i, j] = g
            if db is not None:
                db[j] += g


@kernel
def sigmoid_backward(dy: Array, y: Array, dz: Array | None, db: Array | None) -> None:
    """Reference ``"sigmoid"`` backward: ``dy * y * (1 - y)``, rounded in that order."""
    n, k = dy.shape
    zero = dy.dtype.type(0)
    one = dy.dtype.type(1)
    if db is not None:
        for j in range(k):
            db[j] = zero
    for i in range(n):
        for j in range(k):
            yj = y[i, j]
            g = dy[i, j] * yj * (one - yj)
            if dz is None:
                dy[i, j] = g
            else:
                dz[i, j] = g
            if db is not None:
                db[j] += g


@kernel
def tanh_backward(dy: Array, y: Array, dz: Array | None, db: Array | None) -> None:
    """Reference ``"tanh"`` backward: ``dy * (1 - y * y)``."""
    n, k = dy.shape
    zero = dy.dtype.type(0)
    one = dy.dtype.type(1)
    if db is not None:
        for j in range(k):
            db[j] = zero
    for i in range(n):
        for j in range(k):
            yj = y[i, j]
            g = dy[i, j] * (one - yj * yj)
            if dz is None:
                dy[i, j] = g
            else:
                dz[i, j] = g
            if db is not None:
                db[j] += g


@kernel
def softmax_backward(dy: Array, y: Array, dz: Array | None, db: Array | None) -> None:
    """Reference ``"softmax"`` backward: ``y * (dy - sum(dy * y, axis=1))`` row by row.

    The row's dot product is finished before the row is written, so ``dz`` may be ``dy``.
    """
    n, k = dy.shape
    zero = dy.dtype.type(0)
    if db is not None:
        for j in range(k):
            db[j] = zero
    for i in range(n):
        dot = zero
        for j in range(k):
            dot += dy[i, j] * y[i, j]
        for j in range(k):
            g = y[i, j] * (dy[i, j] - dot)
            if dz is None:
                dy[i, j] = g
            else:
                dz[i, j] = g
            if db is not None:
                db[j] += g


# activation name -> kernel ("linear" needs none: dz is dy); "leaky_relu" takes ``alpha``.
BACKWARD_KERNELS = {
    "relu": relu_backward,
    "leaky_relu": leaky_relu_backward,
    "sigmoid": sigmoid_backward,
    "tanh": tanh_backward,
    "softmax": softmax_backward,
}
