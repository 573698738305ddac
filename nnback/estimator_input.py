"""Input checks and exception classes shared by the scikit-learn compatible estimators.

Kept apart from :mod:`nnback.estimators` so each module has one job: this one turns what
a scikit-learn user may pass (lists, pandas-like objects, 1-D targets, string labels)
into validated host arrays, with scikit-learn's exception classes when it is installed.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy

from .errors import InputError

__all__ = [
    "ConvergenceWarning",
    "NotFittedError",
    "check_estimator_X",
    "check_estimator_y",
    "sklearn_class",
]


def sklearn_class(module: str, name: str, fallback: type) -> type:
    """scikit-learn's exception or warning class when it is installed, else ``fallback``."""
    try:
        return getattr(__import__(f"sklearn.{module}", fromlist=[name]), name)
    except ImportError:
        return fallback


class NotFittedError(InputError, AttributeError):
    """Raised by ``predict`` before ``fit`` (scikit-learn's own class when installed)."""


class ConvergenceWarning(UserWarning):
    """Training stopped at ``max_iter`` before the loss settled."""


def check_estimator_X(X: Any, estimator: Any, reset: bool) -> numpy.ndarray:
    """A finite, numeric, C-contiguous 2-D float array; sets or checks ``n_features_in_``."""
    if X is None:
        raise InputError("Expected a 2-D array X, got None")
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise TypeError("Sparse input is not supported; convert it with X.toarray() first")
    X = numpy.asarray(X)
    if X.dtype.kind == "c":
        raise InputError("Complex data not supported")
    if X.dtype.kind not in "biuf":
        try:
            X = X.astype(numpy.float64)
        except TypeError as exc:
            raise TypeError(f"X: expected numbers; {exc}") from exc
        except ValueError as exc:
            raise InputError(f"X: expected numbers; {exc}") from exc
    if X.ndim != 2:
        raise InputError(
            f"Expected 2D array, got {X.ndim}D array instead. Reshape your data with "
            "X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample."
        )
    for axis, what in ((0, "sample"), (1, "feature")):
        if X.shape[axis] == 0:
            raise InputError(
                f"Found array with 0 {what}(s) (shape={X.shape}) while a minimum of 1 is required."
            )
    dtype = numpy.float32 if X.dtype == numpy.float32 else numpy.float64
    if reset and estimator.dtype is not None:
        dtype = numpy.dtype(estimator.dtype)
    elif not reset:
        dtype = estimator.model_.dtype
    X = numpy.ascontiguousarray(X, dtype=dtype)
    if not numpy.isfinite(X).all():
        bad = "NaN" if numpy.isnan(X).any() else "infinity"
        raise InputError(f"Input X contains {bad}.")
    if reset:
        estimator.n_features_in_ = X.shape[1]
    elif X.shape[1] != estimator.n_features_in_:
        raise InputError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    return X


def check_estimator_y(y: Any, n_samples: int, multi_output: bool) -> numpy.ndarray:
    if y is None:
        raise InputError("requires y to be passed, but the target y is None")
    y = numpy.asarray(y)
    if y.dtype.kind == "c":
        raise InputError("Complex data not supported")
    if y.ndim == 2 and y.shape[1] == 1 and not multi_output:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected. Please change the "
            "shape of y to (n_samples, ), for example using ravel().",
            sklearn_class("exceptions", "DataConversionWarning", UserWarning),
            stacklevel=3,
        )
        y = y.ravel()
    if y.ndim == 0 or y.ndim > (2 if multi_output else 1):
        raise InputError(f"y should be a 1d array, got an array of shape {y.shape} instead.")
    if y.shape[0] != n_samples:
        raise InputError(
            f"Found input variables with inconsistent numbers of samples: "
            f"[{n_samples}, {y.shape[0]}]"
        )
    if y.dtype.kind == "f" and not numpy.isfinite(y).all():
        raise InputError(f"Input y contains {'NaN' if numpy.isnan(y).any() else 'infinity'}.")
    return y
