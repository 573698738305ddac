"""Metric kernels: counts over a batch in one pass, as the reference computes them."""

from __future__ import annotations

import numpy as np

from .runtime import kernel

__all__ = ["count_argmax_matches"]


@kernel
def count_argmax_matches(scores: np.ndarray, labels: np.ndarray) -> int:
    """Reference ``count_correct`` for several columns and integer labels.

    ``sum(argmax(scores, axis=1) == labels)``, with NumPy's argmax: the first maximum of a
    row, or its first NaN (NaN counts as the largest value). Labels are only compared, so
    one outside ``[0, k)`` is simply never matched, as in the reference.
    """
    n, k = scores.shape
    count = 0
    for i in range(n):
        best = scores[i, 0]
        index = 0
        if best == best:  # not NaN: look further
            for j in range(1, k):
                value = scores[i, j]
                if value != value:
                    index = j
                    break
                if value > best:
                    best = value
                    index = j
        if index == labels[i]:
            count += 1
    return count
