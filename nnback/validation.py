"""Checks at the API boundary, so bad input fails with a clear message, not deep in a kernel.

Every message names the argument, what was expected, what was given and, where it helps,
what to do.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy

from .errors import InputError

__all__ = [
    "check_features",
    "check_labels",
    "check_nonnegative_float",
    "check_positive_float",
    "check_positive_int",
    "check_rate",
    "check_X",
]


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def check_positive_float(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name}: expected a positive number, got {value!r}")
    if not (numpy.isfinite(value) and value > 0):
        raise InputError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


def check_nonnegative_float(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name}: expected a number >= 0, got {value!r}")
    if not (numpy.isfinite(value) and value >= 0):
        raise InputError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def check_rate(name: str, value: Any, *, low: float = 0.0, high: float = 1.0) -> float:
    """Return ``value`` as a float in ``[low, high)``, or raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name}: expected a number in [{low}, {high}), got {value!r}")
    if not low <= value < high:
        raise InputError(f"{name}: expected a number in [{low}, {high}), got {value!r}")
    return float(value)


def _host_array(name: str, value: Any, backend: Any) -> Any:
    """Return ``value`` unchanged if it is an array of ``backend``, else as a host array.

    A device array of another backend is refused: silently copying it would hide a
    transfer the user did not ask for.
    """
    if backend is not None and backend.is_array(value):
        return value
    if isinstance(value, numpy.ndarray):
        return value
    module = type(value).__module__.split(".")[0]
    if module in ("cupy", "torch", "jax", "nnback"):
        raise InputError(
            f"{name}: got a {module} array but the model runs on the "
            f"{getattr(backend, 'name', '?')!r} backend; move it first "
            f"(for example with model.backend.asarray(...) or .get() / .numpy())"
        )
    try:
        return numpy.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{name}: expected an array of numbers, got {type(value).__name__}"
        ) from exc


def check_X(name: str, X: Any, dtype: Any, backend: Any = None) -> Any:
    """Validate a feature matrix: 2-D, non-empty, numeric, finite; returns it in ``dtype``.

    Integer and boolean input is converted; float16 and float128 too, with a warning when
    precision is lost. Backend arrays are checked on the backend (one host synchronisation).
    """
    X = _host_array(name, X, backend)
    if X.ndim != 2:
        raise InputError(
            f"{name}: expected a 2-D array (n_samples, n_features), got shape {tuple(X.shape)}"
            + ("; reshape a single sample with X.reshape(1, -1)" if X.ndim == 1 else "")
        )
    if X.shape[0] == 0:
        raise InputError(f"{name}: expected at least one sample, got shape {tuple(X.shape)}")
    kind = numpy.dtype(str(X.dtype)).kind
    if kind not in "biuf":
        raise InputError(f"{name}: expected numbers, got dtype {X.dtype}")
    target = numpy.dtype(dtype)
    # float64 -> float32 is the normal case (NumPy's default meets a float32 model) and is
    # not warned about; integers too large to be represented exactly are.
    if kind in "iu" and isinstance(X, numpy.ndarray) and X.size:
        exact = 2 ** (numpy.finfo(target).nmant + 1)
        if int(numpy.abs(X).max()) > exact:
            warnings.warn(
                f"{name}: integers above {exact} lose precision as {target}", stacklevel=3
            )
    if isinstance(X, numpy.ndarray):
        X = numpy.ascontiguousarray(X, dtype=target)
        if not numpy.isfinite(X).all():
            raise InputError(f"{name}: contains NaN or infinity; clean or impute it first")
        return X
    X = backend.asarray(X, dtype=target)
    if not backend.all_finite(X):
        raise InputError(f"{name}: contains NaN or infinity; clean or impute it first")
    return X


def check_features(name: str, n_features: int, expected: int) -> None:
    """Raise if a feature count does not match the first layer's input size."""
    if n_features != expected:
        raise InputError(
            f"{name}: the first Dense layer expects {expected} features per sample, "
            f"got {n_features}"
        )


def check_labels(name: str, y: Any, n_samples: int, backend: Any = None) -> Any:
    """Validate targets: as many rows as samples, numeric and finite. Returns a host array."""
    y = _host_array(name, y, backend)
    if y.ndim == 0 or y.shape[0] != n_samples:
        raise InputError(
            f"{name}: expected {n_samples} targets (one per sample), got shape {tuple(y.shape)}"
        )
    kind = numpy.dtype(str(y.dtype)).kind
    if kind not in "biuf":
        raise InputError(f"{name}: expected numbers, got dtype {y.dtype}")
    if kind == "f" and isinstance(y, numpy.ndarray) and not numpy.isfinite(y).all():
        raise InputError(f"{name}: contains NaN or infinity")
    return y
