"""Recycled output arrays for the numba backend's convolution and pooling ops.

A training step of a CNN allocates a dozen large arrays (conv outputs, pooling indices,
input gradients: 11 MB a step at batch 32) and frees them a step later. glibc serves
arrays that large from fresh ``mmap`` pages, so every step first-touches every page again:
measured on the 2-core machine, about 1 ms of CPU time per step at batch 32 (throughput
+10 % with glibc told to keep such memory, ``MALLOC_MMAP_THRESHOLD_``), and the page faults
of the kernel threads wait on each other in the kernel.

:func:`empty` hands back an array of the same shape and dtype made earlier once nothing
else holds it, which Python's reference count tells exactly: a layer still holding its
output, a user's reference, a view (views hold their base) or an exported buffer all count,
so an array is never handed out twice while in use. Only arrays of at least
``MIN_BYTES`` are pooled, at most ``MAX_BYTES`` in all, and only inside :func:`scope`;
otherwise :func:`empty` is ``numpy.empty``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy

__all__ = ["MAX_BYTES", "MIN_BYTES", "empty", "pooled_bytes", "scope"]

MIN_BYTES = 1 << 18
MAX_BYTES = 1 << 28

# The references an idle pooled array has inside _take: the pool's list, the loop
# variable and getrefcount's own argument.
_IDLE_REFS = 3

_lock = threading.Lock()
_pool: dict[tuple[tuple[int, ...], str], list[numpy.ndarray]] = {}
_bytes = 0


_active = 0


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Recycle inside the block (the backend's ``compute_scope``: a ``fit``, ``evaluate``
    or ``predict`` loop); when the outermost block ends the pool lets go of its arrays, so
    no memory stays held between calls."""
    global _active
    with _lock:
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                _clear_locked()


def empty(shape: tuple[int, ...], dtype: Any) -> numpy.ndarray:
    """An uninitialized C-contiguous array, like ``numpy.empty``; inside :func:`scope`
    possibly a recycled one."""
    dtype = numpy.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    nbytes = dtype.itemsize
    for s in shape:
        nbytes *= s
    if nbytes < MIN_BYTES or not _active:
        return numpy.empty(shape, dtype=dtype)
    key = (shape, dtype.str)
    with _lock:
        found = _take(_pool.get(key, ()))
        if found is not None:
            return found
        array = numpy.empty(shape, dtype=dtype)
        if _bytes + nbytes <= MAX_BYTES or _evict(nbytes):
            _add(key, array)
        return array


def _take(arrays: Any) -> numpy.ndarray | None:
    for arr in arrays:
        if sys.getrefcount(arr) == _IDLE_REFS:
            return arr
    return None


def _add(key: tuple[tuple[int, ...], str], array: numpy.ndarray) -> None:
    global _bytes
    _pool.setdefault(key, []).append(array)
    _bytes += array.nbytes


def _evict(nbytes: int) -> bool:
    """Drop idle arrays until ``nbytes`` more fit; whether they do."""
    global _bytes
    for key in list(_pool):
        arrays = _pool[key]
        i = 0
        while i < len(arrays) and _bytes + nbytes > MAX_BYTES:
            arr = arrays[i]  # the list, arr and getrefcount's argument: _IDLE_REFS if idle
            if sys.getrefcount(arr) == _IDLE_REFS:
                del arrays[i]
                _bytes -= arr.nbytes
            else:
                i += 1
        if not arrays:
            del _pool[key]
    return _bytes + nbytes <= MAX_BYTES


def _clear_locked() -> None:
    """Forget every pooled array (those in use stay alive with their holders)."""
    global _bytes
    _pool.clear()
    _bytes = 0


def pooled_bytes() -> int:
    """Bytes of the arrays the pool keeps (in use or idle)."""
    return _bytes
