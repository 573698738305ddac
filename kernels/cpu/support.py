"""What the kernels accept: the checks the numba backend runs before calling one.

The kernels assume valid input (Numba compiles them without bounds checks), so every
condition they rely on is tested here, in plain Python, on the way in. When a check fails
the backend hands the call to the reference op instead. Each check costs well under a
microsecond: attribute reads on the arrays, no pass over the data.
"""

from __future__ import annotations

from typing import Any

import numpy

__all__ = [
    "F32",
    "F64",
    "TINY",
    "bias_row",
    "flat_views",
    "float_dtype",
    "int64_labels",
    "is_real",
    "loss_value",
    "nonempty_2d",
    "scale_in_dtype_of",
    "writable",
]

Array = numpy.ndarray

F32 = numpy.dtype(numpy.float32)
F64 = numpy.dtype(numpy.float64)
INT64 = numpy.dtype(numpy.int64)

# The smallest normal number per dtype: optimizer state below it is flushed to zero.
TINY = {F32: float(numpy.finfo(numpy.float32).tiny), F64: float(numpy.finfo(numpy.float64).tiny)}


def float_dtype(*arrays: Any) -> numpy.dtype | None:
    """The dtype of ``arrays`` if all are C-contiguous NumPy arrays of one float dtype.

    ``type(a) is numpy.ndarray`` rather than isinstance: a subclass (a memmap, a masked
    array) keeps the behaviour of its class by taking the reference path.
    """
    first = arrays[0]
    if type(first) is not numpy.ndarray:
        return None
    dtype = first.dtype
    if dtype != F32 and dtype != F64:
        return None
    for a in arrays:
        if type(a) is not numpy.ndarray or a.dtype != dtype or not a.flags.c_contiguous:
            return None
    return dtype


def writable(*arrays: Array) -> bool:
    """Whether every array may be written (a read-only one makes the reference raise)."""
    for a in arrays:
        if not a.flags.writeable:
            return False
    return True


def nonempty_2d(a: Array) -> bool:
    """Whether ``a`` is 2-D with at least one row and one column (kernels read ``a[i, 0]``)."""
    return a.ndim == 2 and a.shape[0] > 0 and a.shape[1] > 0


_REAL = (int, float, numpy.integer, numpy.floating)
_BOOL = (bool, numpy.bool_)


def is_real(*values: Any) -> bool:
    """Whether every value is a real Python or NumPy scalar (not a bool, not an array)."""
    for v in values:
        kind = type(v)
        if kind is float or kind is int:  # the usual case, checked first (type(True) is bool)
            continue
        if isinstance(v, _BOOL) or not isinstance(v, _REAL):
            return False
    return True


def bias_row(b: Any, dtype: numpy.dtype | None, k: int) -> Array | None:
    """``b`` as a 1-D view of ``k`` values if it is a (1, k) or (k,) bias of ``dtype``."""
    if float_dtype(b) != dtype or b.ndim not in (1, 2) or b.size != k or b.shape[-1] != k:
        return None
    return b.reshape(k)


def int64_labels(y_true: Any, n: int) -> Array | None:
    """Integer class labels (n,) as contiguous int64, or None when ``y_true`` is not that.

    Other integer dtypes (uint8 from an IDX file, int32) and strided label vectors are
    converted, n values being cheaper to copy than the reference path is to take; uint64
    is left to the reference, since labels above 2**63 would wrap.
    """
    if type(y_true) is not numpy.ndarray or y_true.ndim != 1 or y_true.shape[0] != n:
        return None
    if y_true.dtype.kind not in "iu" or y_true.dtype == numpy.uint64:
        return None
    if y_true.dtype == INT64 and y_true.flags.c_contiguous:
        return y_true
    return numpy.ascontiguousarray(y_true, dtype=INT64)


def loss_value(mean: float, dtype: numpy.dtype) -> Array:
    """A kernel's float64 mean loss as a 0-d array of the input dtype (the loss convention)."""
    return numpy.asarray(mean, dtype=dtype)


def flat_views(param: Any, grad: Any, *state: Any) -> list[Array] | None:
    """1-D views of a parameter, its gradient and its state, if one kernel can update them.

    All must be C-contiguous arrays of one float dtype and one shape, the parameter and the
    state writable. (Plain loops: this runs for every parameter at every step, and
    generator expressions doubled its cost.)
    """
    if float_dtype(param, grad, *state) is None:
        return None
    shape = param.shape
    if grad.shape != shape or not param.flags.writeable:
        return None
    views = [param.reshape(-1), grad.reshape(-1)]
    for s in state:
        if s.shape != shape or not s.flags.writeable:
            return None
        views.append(s.reshape(-1))
    return views


def scale_in_dtype_of(x: Any, keep_mask: Any, scale: Any) -> Any:
    """The dropout scale to give the reference op: a scalar of x's dtype for a boolean mask.

    The reference's ``keep_mask * scale`` promotes a boolean mask times a Python float to
    float64, which upcasts float32 activations (a base-class bug the parity tests mark);
    with the scale in x's dtype the product stays in it. For a float mask NumPy already
    rounds the Python float to the mask's dtype, so the scale is passed unchanged.
    """
    if (
        isinstance(x, numpy.ndarray)
        and x.dtype.kind == "f"
        and getattr(keep_mask, "dtype", None) == numpy.bool_
        and is_real(scale)
    ):
        return x.dtype.type(scale)
    return scale
