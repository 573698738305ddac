"""Loss kernels: each computes the mean loss and, when asked, its gradient in one pass.

Common conventions:

* ``grad`` is the destination of the gradient (same shape as the predictions), or ``None``
  for the loss alone (``with_grad=False``).
* softmax + cross-entropy is two compiled passes around NumPy's SIMD ``exp`` (shift by
  the row maximum; then sums, loss and gradient); the other losses are one compiled pass.
* The loss is returned as a float64 mean. Element terms are computed in the input dtype,
  as the reference does, but summed in float64: the reference's float32 pairwise sum and a
  float32 running sum both drift from the float64 reference with the number of terms, a
  float64 sum does not.
* Kernels taking integer labels return ``(loss, bad)`` where ``bad`` is the first row whose
  label is outside ``[0, k)``, or -1. The backend then hands the call to the reference,
  which raises an IndexError or, for labels in ``[-k, 0)``, wraps them like NumPy indexing.
* Probabilities are clipped to ``[lo, hi]`` by comparisons, so a NaN passes through as in
  ``numpy.clip``.
"""

from __future__ import annotations

import numpy as np

from .runtime import kernel

__all__ = [
    "binary_crossentropy",
    "categorical_crossentropy_labels",
    "categorical_crossentropy_onehot",
    "mean_absolute_error",
    "mean_squared_error",
    "softmax_crossentropy_labels",
    "softmax_crossentropy_onehot",
]

Array = np.ndarray  # annotations only: Numba infers the types from the arguments


@kernel
def _shift_rows(logits: Array, shifted: Array, peaks: Array) -> None:
    """``shifted = logits - max(logits, axis=1)``, keeping each row's maximum in ``peaks``.

    A NaN in a row becomes its maximum, as ``numpy.max`` propagates it, so the row's loss
    and gradient end NaN as in the reference.
    """
    n, k = logits.shape
    for i in range(n):
        peak = logits[i, 0]
        for j in range(k):
            v = logits[i, j]
            if v > peak or v != v:
                peak = v
        peaks[i] = peak
        for j in range(k):
            shifted[i, j] = logits[i, j] - peak


@kernel
def _finish_labels(
    logits: Array, labels: Array, peaks: Array, e: Array, with_grad: bool
) -> tuple[float, int]:
    """Loss and, in place of ``e = exp(shifted)``, the gradient, for integer labels."""
    n, k = logits.shape
    count = logits.dtype.type(n)
    one = logits.dtype.type(1)
    total = 0.0
    for i in range(n):
        label = labels[i]
        if label < 0 or label >= k:
            return 0.0, i
        sum_e = e.dtype.type(0)
        for j in range(k):
            sum_e += e[i, j]
        total += np.log(sum_e) - (logits[i, label] - peaks[i])
        if with_grad:
            for j in range(k):
                g = e[i, j] / sum_e
                if j == label:
                    g -= one
                e[i, j] = g / count
    return total / n, -1


@kernel
def _finish_onehot(logits: Array, target: Array, peaks: Array, e: Array, with_grad: bool) -> float:
    """Loss and, in place of ``e = exp(shifted)``, the gradient, for one-hot targets."""
    n, k = logits.shape
    count = logits.dtype.type(n)
    total = 0.0
    for i in range(n):
        sum_e = e.dtype.type(0)
        for j in range(k):
            sum_e += e[i, j]
        log_sum = np.log(sum_e)
        for j in range(k):
            total -= target[i, j] * ((logits[i, j] - peaks[i]) - log_sum)
        if with_grad:
            for j in range(k):
                e[i, j] = (e[i, j] / sum_e - target[i, j]) / count
    return total / n


def _exp_of_shifted(logits: Array, grad: Array | None) -> tuple[Array, Array]:
    """``exp(logits - row max)`` into ``grad`` (or a scratch array), and the row maxima.

    The exponentials are NumPy's SIMD ``exp``, the reference's own (Numba's scalar libm
    ``expf`` made the fused single-pass kernel 25% slower at 128 x 10).
    """
    e = np.empty_like(logits) if grad is None else grad
    peaks = np.empty(logits.shape[0], dtype=logits.dtype)
    _shift_rows(logits, e, peaks)
    np.exp(e, out=e)
    return e, peaks


def softmax_crossentropy_labels(
    logits: Array, labels: Array, grad: Array | None
) -> tuple[float, int]:
    """Reference ``softmax_crossentropy`` with integer labels (n,).

    Per row: ``loss = log(sum(exp(z - max))) - (z[label] - max)``;
    ``grad = (exp(z - max) / sum - one_hot) / n``.
    """
    e, peaks = _exp_of_shifted(logits, grad)
    return _finish_labels(logits, labels, peaks, e, grad is not None)


def softmax_crossentropy_onehot(logits: Array, target: Array, grad: Array | None) -> float:
    """Reference ``softmax_crossentropy`` with one-hot (or soft) targets (n, k).

    ``loss = -sum(target * ((z - max) - log(sum)))``; ``grad = (exp(z - max) / sum - target) / n``.
    """
    e, peaks = _exp_of_shifted(logits, grad)
    return _finish_onehot(logits, target, peaks, e, grad is not None)


@kernel
def categorical_crossentropy_labels(
    y_pred: Array, labels: Array, grad: Array | None, lo: float, hi: float
) -> tuple[float, int]:
    """Reference ``categorical_crossentropy`` with integer labels (n,).

    ``p = clip(y_pred[label])``; ``loss = -log(p)``; the gradient is 0 except
    ``-1 / (p * n)`` at the label.
    """
    n, k = y_pred.shape
    low = y_pred.dtype.type(lo)
    high = y_pred.dtype.type(hi)
    zero = y_pred.dtype.type(0)
    one = y_pred.dtype.type(1)
    count = y_pred.dtype.type(n)
    total = 0.0
    for i in range(n):
        label = labels[i]
        if label < 0 or label >= k:
            return 0.0, i
        p = y_pred[i, label]
        p = low if p < low else (high if p > high else p)
        total -= np.log(p)
        if grad is not None:
            for j in range(k):
                grad[i, j] = zero
            grad[i, label] = -one / (p * count)
    return total / n, -1


@kernel
def categorical_crossentropy_onehot(
    y_pred: Array, target: Array, grad: Array | None, lo: float, hi: float
) -> float:
    """Reference ``categorical_crossentropy`` with one-hot targets (n, k).

    ``loss = -sum(target * log(clip(y_pred)))``; ``grad = -target / clip(y_pred) / n``.
    """
    n, k = y_pred.shape
    low = y_pred.dtype.type(lo)
    high = y_pred.dtype.type(hi)
    count = y_pred.dtype.type(n)
    total = 0.0
    for i in range(n):
        for j in range(k):
            p = y_pred[i, j]
            p = low if p < low else (high if p > high else p)
            t = target[i, j]
            total -= t * np.log(p)
            if grad is not None:
                grad[i, j] = -t / p / count
    return total / n


@kernel
def binary_crossentropy(
    y_pred: Array, target: Array, grad: Array | None, lo: float, hi: float
) -> float:
    """Reference ``binary_crossentropy``: mean over all n*k outputs of clipped log-losses.

    ``loss = -(t log p + (1 - t) log q)``; ``grad = -(t / p - (1 - t) / q) / (n k)``, with
    ``p = clip(y_pred)`` and ``q = clip(1 - y_pred)``. Clipping the complement, rather than
    taking ``1 - clip(y_pred)`` as the base class does, is what meets the float64
    definition in float32: there the upper bound ``1 - 1e-7`` rounds to ``1 - 2**-23``, so
    ``1 - clip(p)`` of a saturated wrong prediction is 1.19e-7 instead of 1e-7 (19% off in
    the gradient), while ``1 - y_pred`` is exact for ``y_pred >= 1/2`` and is then clipped
    to 1e-7 itself. The parity tests check this case.
    """
    n, k = y_pred.shape
    low = y_pred.dtype.type(lo)
    high = y_pred.dtype.type(hi)
    one = y_pred.dtype.type(1)
    size = y_pred.dtype.type(n * k)
    total = 0.0
    for i in range(n):
        for j in range(k):
            p = y_pred[i, j]
            q = one - p
            p = low if p < low else (high if p > high else p)
            q = low if q < low else (high if q > high else q)
            t = target[i, j]
            total -= t * np.log(p) + (one - t) * np.log(q)
            if grad is not None:
                grad[i, j] = -(t / p - (one - t) / q) / size
    return total / (n * k)


@kernel
def mean_squared_error(y_pred: Array, target: Array, grad: Array | None) -> float:
    """Reference ``mean_squared_error``: ``loss = mean(d * d)``; ``grad = d * (2 / (n k))``."""
    n, k = y_pred.shape
    # 2 / (n * k) in float64 first, then rounded once, as NumPy does with a Python float.
    factor = y_pred.dtype.type(2.0 / (n * k))
    total = 0.0
    for i in range(n):
        for j in range(k):
            d = y_pred[i, j] - target[i, j]
            total += d * d
            if grad is not None:
                grad[i, j] = d * factor
    return total / (n * k)


@kernel
def mean_absolute_error(y_pred: Array, target: Array, grad: Array | None) -> float:
    """Reference ``mean_absolute_error``: ``loss = mean(|d|)``; ``grad = sign(d) / (n k)``."""
    n, k = y_pred.shape
    zero = y_pred.dtype.type(0)
    one = y_pred.dtype.type(1)
    size = y_pred.dtype.type(n * k)
    total = 0.0
    for i in range(n):
        for j in range(k):
            d = y_pred[i, j] - target[i, j]
            total += abs(d)
            if grad is not None:
                # numpy.sign: 1, -1, 0 for a zero of either sign, NaN for NaN.
                s = one if d > zero else (-one if d < zero else d * zero)
                grad[i, j] = s / size
    return total / (n * k)
