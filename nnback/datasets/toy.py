"""The textbook toy data sets, generated in code.

Each generator draws from its own :class:`numpy.random.Generator` built from ``seed``, never
from NumPy's global state, so the same seed gives the same data in every process and on
every backend (the arrays are host NumPy arrays; a backend moves them to its device).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import InputError
from ._checks import positive_int

__all__ = ["spiral_data", "vertical_data", "sine_data", "xor"]

#: What ``seed`` may be: an int for a reproducible stream, a Generator to share one stream
#: across several calls, or None for fresh OS entropy.
Seed = int | np.random.Generator | None


def _rng(seed: Seed) -> np.random.Generator:
    # default_rng passes a Generator through unchanged, so callers can chain draws.
    if isinstance(seed, bool) or not (
        seed is None or isinstance(seed, numbers.Integral | np.random.Generator)
    ):
        raise InputError(
            f"seed must be an int, a numpy.random.Generator or None, "
            f"got {seed!r} ({type(seed).__name__})"
        )
    return np.random.default_rng(seed)


def spiral_data(samples: int, classes: int, *, seed: Seed = 0) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved noisy spirals, one arm per class.

    For class ``k`` the radius runs linearly from 0 to 1 while the angle
    ``t = linspace(4k, 4(k+1), samples) + N(0, 0.2)`` sweeps on; the point is
    ``r * (sin(2.5 t), cos(2.5 t))``.

    Parameters
    ----------
    samples : int
        Points per class (>= 1).
    classes : int
        Number of classes, i.e. spiral arms (>= 1).
    seed : int, numpy.random.Generator or None, default 0
        Source of the angular noise.

    Returns
    -------
    X : numpy.ndarray, shape (samples * classes, 2), float32
        The points, class by class.
    y : numpy.ndarray, shape (samples * classes,), int64
        The class of each point, in ``0 .. classes - 1``.
    """
    samples = positive_int("samples", samples)
    classes = positive_int("classes", classes)
    rng = _rng(seed)
    X = np.empty((samples * classes, 2), dtype=np.float64)
    y = np.empty(samples * classes, dtype=np.int64)
    radius = np.linspace(0.0, 1.0, samples)
    for k in range(classes):
        rows = slice(samples * k, samples * (k + 1))
        angle = np.linspace(k * 4.0, (k + 1) * 4.0, samples) + rng.standard_normal(samples) * 0.2
        X[rows, 0] = radius * np.sin(angle * 2.5)
        X[rows, 1] = radius * np.cos(angle * 2.5)
        y[rows] = k
    # Computed in float64 and rounded once, so the float32 result does not depend on the
    # order of float32 operations.
    return X.astype(np.float32), y


def vertical_data(samples: int, classes: int, *, seed: Seed = 0) -> tuple[np.ndarray, np.ndarray]:
    """Vertical Gaussian blobs side by side, one per class.

    Class ``k`` is centred at ``(k / 3, 0.5)`` with standard deviation 0.1 on both axes:
    an almost linearly separable set for checking that training works at all.

    Parameters
    ----------
    samples : int
        Points per class (>= 1).
    classes : int
        Number of classes (>= 1).
    seed : int, numpy.random.Generator or None, default 0
        Source of the noise.

    Returns
    -------
    X : numpy.ndarray, shape (samples * classes, 2), float32
        The points, class by class.
    y : numpy.ndarray, shape (samples * classes,), int64
        The class of each point, in ``0 .. classes - 1``.
    """
    samples = positive_int("samples", samples)
    classes = positive_int("classes", classes)
    rng = _rng(seed)
    X = np.empty((samples * classes, 2), dtype=np.float64)
    y = np.empty(samples * classes, dtype=np.int64)
    for k in range(classes):
        rows = slice(samples * k, samples * (k + 1))
        X[rows, 0] = rng.standard_normal(samples) * 0.1 + k / 3
        X[rows, 1] = rng.standard_normal(samples) * 0.1 + 0.5
        y[rows] = k
    return X.astype(np.float32), y


def sine_data(samples: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """One period of a sine wave, for regression (deterministic).

    Parameters
    ----------
    samples : int, default 1000
        Number of points (>= 1), evenly spaced in ``[0, 1)``.

    Returns
    -------
    X : numpy.ndarray, shape (samples, 1), float32
        ``arange(samples) / samples``.
    y : numpy.ndarray, shape (samples, 1), float32
        ``sin(2 * pi * X)``.
    """
    samples = positive_int("samples", samples)
    X = (np.arange(samples, dtype=np.float64) / samples).reshape(-1, 1)
    y = np.sin(2.0 * np.pi * X)
    return X.astype(np.float32), y.astype(np.float32)


def xor(
    *, noise: float = 0.0, samples_per_corner: int = 1, seed: Seed = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The XOR problem: the four corners of the unit square, labelled ``x0 xor x1``.

    Parameters
    ----------
    noise : float, default 0.0
        Standard deviation of Gaussian noise added to every coordinate (>= 0). With the
        default 0 the points are exact and ``seed`` is not used.
    samples_per_corner : int, default 1
        How many copies of each corner (>= 1).
    seed : int, numpy.random.Generator or None, default 0
        Source of the noise.

    Returns
    -------
    X : numpy.ndarray, shape (4 * samples_per_corner, 2), float32
        The corners ``(0,0), (0,1), (1,0), (1,1)`` repeated in that order, plus noise.
    y : numpy.ndarray, shape (4 * samples_per_corner,), int64
        ``0, 1, 1, 0`` repeated likewise.
    """
    samples_per_corner = positive_int("samples_per_corner", samples_per_corner)
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real):
        raise InputError(
            f"noise must be a non-negative real number, got {noise!r} ({type(noise).__name__})"
        )
    if not (math.isfinite(noise) and noise >= 0):
        raise InputError(f"noise must be a finite number >= 0, got {noise}")
    corners = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    labels = np.array([0, 1, 1, 0], dtype=np.int64)
    # Tiling (not repeating each row) keeps every block of four a complete XOR table, so a
    # prefix of the data is still balanced.
    X = np.tile(corners, (samples_per_corner, 1))
    y = np.tile(labels, samples_per_corner)
    if noise > 0:
        X = X + _rng(seed).standard_normal(X.shape) * noise
    return X.astype(np.float32), y
