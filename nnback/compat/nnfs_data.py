"""Seeding and data sets of :mod:`nnback.compat.nnfs`, in book mode and in generator mode.

Book mode (the default) draws from NumPy's global legacy ``RandomState``, as the book's
code does after the ``nnfs`` package's ``init()`` seeded it: the same calls, in the same
order, with the same dtypes and roundings, so the data sets equal the ``nnfs`` package's
element for element. Generator mode (``init(book=False)``) draws from one
``numpy.random.Generator`` instead, which :func:`init` seeds.

The ``nnfs`` package's ``init()`` also replaces ``np.dot`` (it computes in float64 and
returns float32) and makes ``np.zeros``, ``np.random.randn`` and ``np.eye`` return
float32 by default. This module does not replace NumPy's functions unless asked
(``init(patch_numpy=True)``): the compat classes apply that arithmetic themselves (see
:mod:`nnback.compat.nnfs_book`), and a global patch would also change every other
NumPy user in the process, nnback's own ``Sequential`` on the numpy backend included.
A program that mixes the compat classes with its own ``np.dot`` or ``np.zeros`` lines
and wants them to compute as in the book passes ``patch_numpy=True`` (or calls the real
``nnfs.init()``, which the compat classes tolerate: their arithmetic is the same
either way).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy

from ..backends import get_backend
from ..datasets import toy as _toy

Array = Any

#: The compat module's mode: ``book`` (global RandomState and the book's arithmetic), the
#: generator of generator mode, and the dtype of the layers created from now on.
STATE: dict[str, Any] = {
    "book": True,
    "rng": numpy.random.default_rng(0),
    "dtype": numpy.dtype("float32"),
}

# The NumPy functions replaced by ``init(patch_numpy=True)``, with their originals.
_ORIGINALS: dict[tuple[Any, str], Any] = {}


def init(
    seed: int = 0, dtype: str = "float32", *, book: bool = True, patch_numpy: bool = False
) -> None:
    """Seed the random numbers behind weights, dropout masks and data sets (``nnfs.init``).

    Parameters
    ----------
    seed : int
        Book mode: the seed of NumPy's global ``RandomState`` (``numpy.random.seed``), as
        the ``nnfs`` package's ``init()`` sets it (0 by default). Generator mode: the seed
        of the ``numpy.random.Generator`` used from now on.
    dtype : {"float32", "float64"}
        The dtype of the layers and data created from now on (the book works in float32;
        float64 is nnback's own variant, not the book's arithmetic).
    book : bool
        True (the default): book mode, the book's numbers on the numpy backend. False:
        generator mode, nnback's own generator and the backend's fused arithmetic.
    patch_numpy : bool
        Also replace ``np.dot``, ``np.zeros``, ``np.random.randn`` and ``np.eye`` the way
        the ``nnfs`` package does, for programs that call them themselves. False (the
        default) undoes an earlier patch.
    """
    STATE["book"] = bool(book)
    STATE["dtype"] = numpy.dtype(dtype)
    STATE["rng"] = numpy.random.default_rng(seed)
    _unpatch()
    if book:
        numpy.random.seed(seed)  # noqa: NPY002 (the book's global state, on purpose)
        if patch_numpy:
            _patch(STATE["dtype"])


def book_mode() -> bool:
    """Whether the compat module is in book mode (see :func:`init`)."""
    return bool(STATE["book"])


def book_numpy(backend: Any = None) -> bool:
    """Book mode on the numpy backend: the book's own arithmetic (:mod:`.nnfs_book`)."""
    backend = backend if backend is not None else get_backend()
    return book_mode() and backend.name == "numpy" and backend.xp is numpy


def _patch(dtype: numpy.dtype) -> None:
    """Replace NumPy's functions with the ``nnfs`` package's float32 variants."""

    def replace(owner: Any, name: str, wrapper: Any) -> None:
        original = getattr(owner, name)
        _ORIGINALS[(owner, name)] = original
        setattr(owner, name, functools.wraps(original)(wrapper(original)))

    def float64_dot(original: Any) -> Any:
        return lambda *arrays, **kw: original(
            *[numpy.asarray(a).astype(numpy.float64) for a in arrays], **kw
        ).astype(numpy.float32)

    def cast_result(original: Any) -> Any:
        return lambda *args, **kw: original(*args, **kw).astype(dtype)

    def default_dtype(original: Any) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            if len(args) <= 1 and "dtype" not in kw:
                kw["dtype"] = dtype
            return original(*args, **kw)

        return call

    replace(numpy, "dot", float64_dot)
    replace(numpy.random, "randn", cast_result)
    replace(numpy, "zeros", default_dtype)
    replace(numpy, "eye", default_dtype)


def _unpatch() -> None:
    for (owner, name), original in _ORIGINALS.items():
        setattr(owner, name, original)
    _ORIGINALS.clear()


def randn(*shape: int) -> numpy.ndarray:
    """``numpy.random.randn`` from the global state, rounded to the compat dtype, as the
    ``nnfs`` package's patched ``randn`` returns it."""
    original = _ORIGINALS.get((numpy.random, "randn"), numpy.random.randn)
    return original(*shape).astype(STATE["dtype"])


def _on_backend(X: numpy.ndarray, y: numpy.ndarray) -> tuple[Array, Array]:
    backend = get_backend()
    return backend.asarray(X), backend.asarray(y)


def spiral_data(samples: int, classes: int) -> tuple[Array, Array]:
    """The book's spiral data set; each call draws new noise, as in the book.

    Returns ``X`` (samples * classes, 2) and labels ``y`` as arrays of the selected
    backend. In book mode they equal the ``nnfs`` package's (``X`` in the compat dtype,
    float32 unless :func:`init` said otherwise, ``y`` uint8): the angle noise is drawn
    per class from the global state, rounded to float32 and scaled by 0.2 in float32,
    and added to the float64 angles before ``sin``/``cos``.
    """
    if not book_mode():
        return _on_backend(*_toy.spiral_data(samples, classes, seed=STATE["rng"]))
    dtype = STATE["dtype"]
    X = numpy.zeros((samples * classes, 2), dtype=dtype)
    y = numpy.zeros(samples * classes, dtype=numpy.uint8)
    for label in range(classes):
        rows = slice(samples * label, samples * (label + 1))
        radius = numpy.linspace(0.0, 1.0, samples)
        noise = randn(samples) * dtype.type(0.2)
        angle = numpy.linspace(label * 4, (label + 1) * 4, samples) + noise
        X[rows, 0] = radius * numpy.sin(angle * 2.5)
        X[rows, 1] = radius * numpy.cos(angle * 2.5)
        y[rows] = label
    return _on_backend(X, y)


def vertical_data(samples: int, classes: int) -> tuple[Array, Array]:
    """The book's vertical blobs; each call draws new noise (book mode: as the ``nnfs``
    package draws it, the x noise of a class before its y noise)."""
    if not book_mode():
        return _on_backend(*_toy.vertical_data(samples, classes, seed=STATE["rng"]))
    dtype = STATE["dtype"]
    X = numpy.zeros((samples * classes, 2), dtype=dtype)
    y = numpy.zeros(samples * classes, dtype=numpy.uint8)
    scale = dtype.type(0.1)
    for label in range(classes):
        rows = slice(samples * label, samples * (label + 1))
        X[rows, 0] = randn(samples) * scale + dtype.type(label / 3)
        X[rows, 1] = randn(samples) * scale + dtype.type(0.5)
        y[rows] = label
    return _on_backend(X, y)


def sine_data(samples: int = 1000) -> tuple[Array, Array]:
    """One period of a sine wave, ``X`` (samples, 1) and ``y = sin(2 pi X)``.

    Book mode: float64, as the ``nnfs`` package returns them (the book's regression
    therefore compares float32 outputs with float64 targets). Generator mode: float32.
    """
    if not book_mode():
        return _on_backend(*_toy.sine_data(samples))
    X = numpy.arange(samples).reshape(-1, 1) / samples
    return _on_backend(X, numpy.sin(2 * numpy.pi * X).reshape(-1, 1))
