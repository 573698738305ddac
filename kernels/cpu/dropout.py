"""Inverted dropout with a host-drawn keep mask, forward and backward (the same product)."""

from __future__ import annotations

import numpy as np

from .runtime import kernel

__all__ = ["masked_scale"]

Array = np.ndarray  # annotations only: Numba infers the types from the arguments


@kernel
def masked_scale(x: Array, keep_mask: Array, scale: float, out: Array) -> None:
    """``out = x * (keep_mask * scale)``: reference ``dropout_forward`` and ``dropout_backward``.

    All arrays are 1-D views of C-contiguous data; ``keep_mask`` is boolean or of x's dtype.
    The product is computed in x's dtype: the mask as 0 or 1 (or its float value), the
    scale rounded once, as NumPy rounds a Python float next to a float32 array. (The base
    class's ``keep_mask * scale`` promotes a *boolean* mask to float64, upcasting float32
    activations; the parity tests mark that as a base-class bug, so it is not copied here.)
    """
    dt = x.dtype.type
    s = dt(scale)
    for i in range(x.size):
        out[i] = x[i] * (dt(keep_mask[i]) * s)
