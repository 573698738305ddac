"""Checks at the API boundary, so bad input fails with a clear message, not deep in a kernel.

Every message names the argument, what was expected, what was given and what to do, in
that order: ``"<argument>: expected <what>, got <what>; <what to do>"``. The table in
``docs/reliability.md`` lists each check and its message, and ``tests/reliability`` proves
each row.
"""

from __future__ import annotations

import numbers
import sys
import warnings
from typing import Any

import numpy

from .callbacks import Callback
from .errors import InputError

__all__ = [
    "check_callbacks",
    "check_features",
    "check_labels",
    "check_nonnegative_float",
    "check_positive_float",
    "check_positive_int",
    "check_rate",
    "check_targets",
    "check_verbose",
    "check_X",
]

# NaN/inf are looked for in blocks of about this many elements, so the check needs a
# bounded temporary (a boolean block) instead of a boolean array as large as the data.
_FINITE_BLOCK = 1 << 20


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(
            f"{name}: expected a positive integer, got {value!r}; pass a whole number >= 1"
        )
    return int(value)


def check_positive_float(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(
            f"{name}: expected a positive number, got {value!r}; pass a finite number > 0"
        )
    if not (numpy.isfinite(value) and value > 0):
        raise InputError(
            f"{name}: expected a finite number > 0, got {value!r}; pass a finite number > 0"
        )
    return float(value)


def check_nonnegative_float(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number >= 0."""
    fix = "pass 0 to turn it off, or a finite positive number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name}: expected a number >= 0, got {value!r}; {fix}")
    if not (numpy.isfinite(value) and value >= 0):
        raise InputError(f"{name}: expected a finite number >= 0, got {value!r}; {fix}")
    return float(value)


def check_rate(name: str, value: Any, *, low: float = 0.0, high: float = 1.0) -> float:
    """Return ``value`` as a float in ``[low, high)``, or raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value < high:
        raise InputError(
            f"{name}: expected a number in [{low}, {high}), got {value!r}; "
            f"pass a value >= {low} and < {high}"
        )
    return float(value)


def _foreign_array_error(name: str, value: Any, backend: Any) -> InputError:
    """The error for a device array that the model's backend cannot take (one line)."""
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    device = getattr(value, "device", None)
    where = f" on device {device}" if device is not None else ""
    return InputError(
        f"{name}: expected a NumPy array or an array of the model's "
        f"{getattr(backend, 'name', '?')!r} backend, got a {kind}{where}; copy it to the "
        f"host first (CuPy: {name}.get(), PyTorch: {name}.cpu().numpy()) or build the model "
        f"on that array's backend (backend=...)"
    )


def _host_array(name: str, value: Any, backend: Any) -> Any:
    """Return ``value`` unchanged if it is an array of ``backend`` or NumPy, else as a host array.

    Host data (NumPy arrays, lists, anything NumPy converts) is the normal input of every
    model: the model copies it to its backend once, explicitly. An array that lives on a
    device of another backend is refused: converting it would be a hidden transfer, and
    most device arrays refuse it anyway.
    """
    if backend is not None and backend.is_array(value):
        return value
    if isinstance(value, numpy.ndarray):
        return value
    if hasattr(value, "__cuda_array_interface__"):
        raise _foreign_array_error(name, value, backend)
    try:
        return numpy.asarray(value)
    except TypeError as exc:
        # Device arrays (CuPy, the strict stand-in, CUDA tensors) refuse implicit conversion.
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            raise _foreign_array_error(name, value, backend) from None
        raise InputError(
            f"{name}: expected an array of numbers, got {type(value).__name__} ({exc}); "
            "pass a NumPy array or a nested list of numbers"
        ) from None
    except ValueError as exc:
        raise InputError(
            f"{name}: expected a rectangular array of numbers, got a {type(value).__name__} "
            f"that NumPy cannot convert ({exc}); give every row the same length"
        ) from None


def _first_nonfinite(array: numpy.ndarray) -> tuple[tuple[int, ...], int] | None:
    """``(index of the first NaN/inf, how many there are)``, or None when all are finite."""
    rows = array.reshape(array.shape[0], -1) if array.ndim else array.reshape(1, 1)
    step = max(1, _FINITE_BLOCK // max(1, rows.shape[1]))
    first: tuple[int, ...] | None = None
    count = 0
    for start in range(0, rows.shape[0], step):
        bad = ~numpy.isfinite(rows[start : start + step])
        if first is None and not bad.any():
            continue
        if first is None:
            row, column = numpy.argwhere(bad)[0]
            flat = (start + int(row)) * rows.shape[1] + int(column)
            first = tuple(int(i) for i in numpy.unravel_index(flat, array.shape))
        count += int(bad.sum())
    return None if first is None else (first, count)


def _check_finite(name: str, converted: numpy.ndarray, original: numpy.ndarray) -> None:
    """Raise if ``converted`` holds NaN or infinity, saying whether the input did or the
    conversion to a narrower dtype overflowed."""
    found = _first_nonfinite(converted)
    if found is None:
        return
    index, count = found
    given = original[index]
    if numpy.isfinite(given):
        largest = float(numpy.max(numpy.abs(original.astype(numpy.float64))))
        limit = float(numpy.finfo(converted.dtype).max)
        raise InputError(
            f"{name}: expected magnitudes below {limit:.3g} (the largest {converted.dtype}), "
            f"got values up to {largest:.3g}, which overflow; rescale the data (for example "
            "standardize it) or use a float64 model (dtype='float64')"
        )
    where = ", ".join(str(i) for i in index)
    if name.startswith("y"):
        # A missing label or target cannot be made up: filling it in (nan_to_num gives 0)
        # would train on a wrong answer. Only dropping the sample is right.
        fix = (
            f"a missing target cannot be filled in, so drop those samples (keep = "
            f"numpy.isfinite({name}).reshape(len({name}), -1).all(axis=1), then train on "
            f"the rows of X and {name} where keep is True)"
        )
    else:
        fix = "drop those samples or impute the values first (for example with numpy.nan_to_num)"
    raise InputError(
        f"{name}: contains NaN or infinity: expected finite numbers, got {count} non-finite "
        f"value(s), the first {given} at [{where}]; {fix}"
    )


def _warn_if_rounded(name: str, X: numpy.ndarray, target: numpy.dtype) -> None:
    """Warn when converting ``X`` to ``target`` changes values (not for float64 -> float32).

    float64 input to a float32 model is the normal case (NumPy's default meets the default
    model) and is rounded silently, as in every framework; float16 and integers that fit in
    the mantissa convert exactly. Integers too large for it, and long doubles, do not.
    """
    kind = X.dtype.kind
    if kind in "iu" and X.size:
        exact = 2 ** (numpy.finfo(target).nmant + 1)
        # Python ints: abs() of the smallest int64 overflows in NumPy.
        largest = max(abs(int(X.min())), abs(int(X.max())))
        if largest > exact:
            warnings.warn(
                f"{name}: integers above {exact} lose precision as {target} (got up to "
                f"{largest}); convert them yourself if that matters",
                stacklevel=4,
            )
    elif kind == "f" and X.dtype.itemsize > max(target.itemsize, 8):
        warnings.warn(
            f"{name}: {X.dtype} values are rounded to {target}; pass float64 to silence this",
            stacklevel=4,
        )


def check_X(name: str, X: Any, dtype: Any, backend: Any = None) -> Any:
    """Validate a feature matrix: 2-D, non-empty, numeric, finite; returns it in ``dtype``.

    Host input comes back as a C-contiguous NumPy array of ``dtype`` (a copy only when the
    layout or dtype differ); an array of ``backend`` stays on the backend (one host
    synchronisation for the finiteness check).
    """
    X = _host_array(name, X, backend)
    if X.ndim != 2:
        if X.ndim == 1:
            hint = (
                "reshape a single sample with X.reshape(1, -1), a single feature with "
                "X.reshape(-1, 1)"
            )
        elif X.ndim > 2:
            hint = "flatten each sample first, for example X.reshape(len(X), -1)"
        else:
            hint = "pass an array of shape (n_samples, n_features)"
        raise InputError(
            f"{name}: expected a 2-D array (n_samples, n_features), got shape "
            f"{tuple(X.shape)}; {hint.replace('X', name)}"
        )
    if X.shape[0] == 0:
        raise InputError(
            f"{name}: expected at least one sample, got shape {tuple(X.shape)}; pass a "
            "non-empty array (check the filter or split that produced it)"
        )
    kind = numpy.dtype(str(X.dtype)).kind
    if kind not in "biuf":
        raise InputError(
            f"{name}: expected numbers, got dtype {X.dtype}; convert it with "
            f"{name}.astype(float) after encoding any text or categories as numbers"
        )
    target = numpy.dtype(dtype)
    if isinstance(X, numpy.ndarray):
        _warn_if_rounded(name, X, target)
        converted = numpy.ascontiguousarray(X, dtype=target)
        _check_finite(name, converted, X)
        return converted
    try:
        converted = backend.asarray(X, dtype=target)
    except TypeError:
        raise _foreign_array_error(name, X, backend) from None
    if not backend.all_finite(converted):
        raise InputError(
            f"{name}: contains NaN or infinity: expected finite numbers, got a "
            f"{backend.name} array with non-finite values; drop those samples or impute "
            "the values first"
        )
    return converted


def check_features(name: str, n_features: int, expected: int, layer: Any = None) -> None:
    """Raise if a feature count does not match the first layer's input size.

    ``layer`` is the model's first layer that fixes the input size (a Dense layer when
    None); a Reshape there gets its own message.
    """
    if n_features != expected and layer is not None and type(layer).__name__ != "Dense":
        raise InputError(
            f"{name}: the first layer, {layer!r}, expects {expected} features per sample, "
            f"got {n_features}; pass {expected} columns (images flattened to rows, for "
            f"example X.reshape(len(X), -1)) or change the layer's shape"
        )
    if n_features != expected:
        raise InputError(
            f"{name}: the first Dense layer expects {expected} features per sample, "
            f"got {n_features}; pass {expected} columns, the features the model was built "
            f"for (or build it with Dense({n_features}, ...))"
        )


def check_labels(name: str, y: Any, n_samples: int, backend: Any = None) -> numpy.ndarray:
    """Validate targets: one row per sample, numeric and finite. Returns a host array.

    Targets of a backend are copied to the host once (they are small next to X, and the
    checks of :func:`check_targets` need their values there).
    """
    y = _host_array(name, y, backend)
    if not isinstance(y, numpy.ndarray):
        y = backend.to_numpy(y)
    if y.ndim == 0 or y.shape[0] != n_samples:
        raise InputError(
            f"{name}: expected {n_samples} targets (one per sample of X), got shape "
            f"{tuple(y.shape)}; pass X and {name} with the same number of rows"
        )
    kind = y.dtype.kind
    if kind not in "biuf":
        raise InputError(
            f"{name}: expected numbers, got dtype {y.dtype}; encode labels as integers "
            f"0..k-1 first (for example classes, {name} = numpy.unique({name}, "
            "return_inverse=True))"
        )
    if kind == "f":
        _check_finite(name, y, y)
    return y


def _categorical_targets(y: numpy.ndarray, k: int, dtype: numpy.dtype) -> numpy.ndarray:
    if y.ndim == 1:
        if y.dtype.kind == "f":
            fractional = numpy.mod(y, 1) != 0
            if fractional.any():
                raise InputError(
                    f"y: class labels must be whole numbers, got fractions such as "
                    f"{y[fractional][0]}; pass integer class indices 0..{k - 1} or one-hot rows"
                )
        bad = (y < 0) | (y >= k)  # in y's own dtype: a huge float must not wrap as int64
        if bad.any():
            values = numpy.unique(y[bad])[:5].tolist()
            raise InputError(
                f"y: class labels must be in [0, {k}) for a {k}-unit output layer, "
                f"got {values}; map labels to 0..{k - 1} first (or give the output layer "
                "more units)"
            )
        return y.astype(numpy.int64)
    if y.ndim != 2 or y.shape[1] != k:
        hint = (
            "flatten a column of labels with y.ravel()"
            if y.ndim == 2 and y.shape[1] == 1
            else f"one-hot rows need one column per output unit ({k})"
        )
        raise InputError(
            f"y: expected class indices (n,) or one-hot rows (n, {k}), "
            f"got shape {tuple(y.shape)}; {hint}"
        )
    sums = y.sum(axis=1, dtype=numpy.float64)
    bad_rows = ~numpy.isclose(sums, 1.0, rtol=0.0, atol=1e-3) | ((y < 0) | (y > 1)).any(axis=1)
    if bad_rows.any():
        row = int(numpy.argmax(bad_rows))
        raise InputError(
            f"y: one-hot rows must sum to 1 with values in [0, 1], got row {row} = "
            f"{y[row][:8].tolist()}; pass class indices, or rows from "
            "nnback.datasets.one_hot(labels, n_classes)"
        )
    return numpy.ascontiguousarray(y, dtype=dtype)


def check_targets(
    y: Any, n_samples: int, n_outputs: int, loss: Any, dtype: Any, backend: Any = None
) -> numpy.ndarray:
    """Check targets against a loss and an output layer of ``n_outputs`` units.

    Returns a host array: class indices as int64 (n,) for categorical losses given indices,
    everything else in ``dtype``, shaped (n, n_outputs).
    """
    y = check_labels("y", y, n_samples, backend)
    dtype = numpy.dtype(dtype)
    k = n_outputs
    if loss is not None and loss.categorical:
        return _categorical_targets(y, k, dtype)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != k:
        raise InputError(
            f"y: expected targets of shape (n, {k}) for a {k}-unit output layer, "
            f"got {tuple(y.shape)}; pass one target column per output unit (or change the "
            "output layer)"
        )
    if loss is not None and loss.op == "binary_crossentropy" and ((y < 0) | (y > 1)).any():
        raise InputError(
            f"y: binary cross-entropy targets must be in [0, 1], got values from "
            f"{y.min()} to {y.max()}; pass 0/1 labels or probabilities"
        )
    converted = numpy.ascontiguousarray(y, dtype=dtype)
    _check_finite("y", converted, y)
    return converted


def check_verbose(verbose: Any) -> int:
    """Return ``verbose`` as 0, 1 or 2 (``"auto"``: 1 on a terminal, else 0), or raise."""
    if isinstance(verbose, str) and verbose == "auto":
        return 1 if sys.stderr.isatty() else 0
    if isinstance(verbose, bool | int | numpy.integer) and int(verbose) in (0, 1, 2):
        return int(verbose)
    raise InputError(
        f"verbose: expected 0, 1, 2 or 'auto', got {verbose!r}; pass 0 for silence, 1 for a "
        "progress bar, 2 for one line per epoch"
    )


def check_callbacks(callbacks: Any) -> list[Callback]:
    """Return ``callbacks`` (None, a list or a tuple of Callback objects) as a list, or raise."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, list | tuple):
        raise InputError(
            f"callbacks: expected a list of Callback objects, got {type(callbacks).__name__}; "
            "wrap it in a list: callbacks=[...]"
        )
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise InputError(
                f"callbacks: expected Callback objects, got {type(callback).__name__}; "
                "subclass nnback.Callback or use nnback.LambdaCallback(on_epoch_end=...)"
            )
    return list(callbacks)
