"""Host-side data helpers: one-hot encoding, stratified splits and minibatch iteration.

These work on NumPy arrays on the host; the training loop hands each batch to its backend,
which moves it to the device. Randomness comes from an explicit seed or Generator, never
from NumPy's global state, so runs are reproducible across backends.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import numpy as np
from numpy.typing import DTypeLike

from ..errors import InputError
from ._checks import fraction, positive_int

__all__ = ["one_hot", "stratified_split", "train_test_split", "iterate_minibatches"]

Pair = tuple[np.ndarray, np.ndarray]


def one_hot(
    labels: np.ndarray, n_classes: int | None = None, dtype: DTypeLike = np.float32
) -> np.ndarray:
    """Encode integer class labels as one-hot rows.

    Parameters
    ----------
    labels : array_like of int, shape (n,) (or any shape S)
        Class indices, each in ``0 .. n_classes - 1``.
    n_classes : int, optional
        Number of classes (>= 1). Defaults to ``labels.max() + 1``; pass it explicitly when
        a batch may lack the highest class, or the width will vary from batch to batch.
    dtype : dtype, default numpy.float32
        Element type of the result.

    Returns
    -------
    numpy.ndarray, shape (n, n_classes) (or S + (n_classes,))
        1 at ``[i, labels[i]]``, 0 elsewhere.

    Raises
    ------
    InputError
        If the labels are not integers, are negative or are ``>= n_classes``.
    """
    labels = np.asarray(labels)
    # Floats are refused rather than truncated: 2.7 silently becoming class 2 hides bugs.
    if labels.dtype.kind not in "iu":
        raise InputError(
            f"labels must be integers, got dtype {labels.dtype} "
            "(convert with labels.astype(numpy.int64) if the values are whole numbers)"
        )
    if n_classes is None:
        if labels.size == 0:
            raise InputError("cannot infer n_classes from empty labels; pass n_classes")
        n_classes = int(labels.max()) + 1
    n_classes = positive_int("n_classes", n_classes)
    if labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0:
            raise InputError(f"labels must be >= 0, got a minimum of {low}")
        if high >= n_classes:
            raise InputError(f"labels must be < n_classes={n_classes}, got a maximum of {high}")
    flat = labels.reshape(-1)
    encoded = np.zeros((flat.size, n_classes), dtype=dtype)
    encoded[np.arange(flat.size), flat] = 1
    return encoded.reshape(*labels.shape, n_classes)


def _check_pair(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim == 0 or y.ndim == 0:
        raise InputError(f"X and y must have at least 1 dimension, got {X.shape} and {y.shape}")
    if len(X) != len(y):
        raise InputError(f"X and y must have the same number of samples, got {len(X)} and {len(y)}")
    return X, y


def _allocate(counts: np.ndarray, share: float) -> np.ndarray:
    """Split ``round(counts.sum() * share)`` samples over classes in proportion to ``counts``.

    Largest-remainder rounding: each class gets ``floor`` or ``ceil`` of its exact share, and
    the total is exact. Rounding each class on its own would not be: 4 classes of 10 at 25%
    would give 2 each (round half to even), 8 in all instead of 10.
    """
    exact = counts * share
    allotted = np.floor(exact).astype(np.int64)
    short = int(np.floor(counts.sum() * share + 0.5)) - int(allotted.sum())
    # A stable sort gives the extra samples to the lowest class index on ties: deterministic.
    by_remainder = np.argsort(allotted - exact, kind="stable")
    allotted[by_remainder[:short]] += 1
    return allotted


def stratified_split(
    X: np.ndarray,
    y: np.ndarray,
    *,
    validation: float = 0.1,
    test: float = 0.0,
    seed: int | np.random.Generator | None = 0,
) -> tuple[Pair, ...]:
    """Split samples into train / validation / test parts with class proportions kept.

    Each class is shuffled and cut separately. The validation part gets
    ``round(n * validation)`` samples in all, each class contributing ``floor`` or ``ceil``
    of ``n_c * validation`` (largest remainders get the extra ones); likewise for test; the
    rest is for training. Each part is then shuffled, so classes are not grouped.

    Parameters
    ----------
    X : array_like, shape (n, ...)
        Samples.
    y : array_like, shape (n,)
        Class labels (any type ``numpy.unique`` can sort).
    validation : float, default 0.1
        Fraction of each class for validation, in ``[0, 1)``.
    test : float, default 0.0
        Fraction of each class for test, in ``[0, 1)``; ``validation + test < 1``.
    seed : int, numpy.random.Generator or None, default 0
        Source of the shuffles.

    Returns
    -------
    tuple of (X_part, y_part) pairs
        ``(train, validation, test)``, leaving out the validation or test pair when its
        fraction is 0. Each ``X_part`` has shape (n_part, ...) and ``y_part`` (n_part,).

    Raises
    ------
    InputError
        If the fractions are out of range or X and y differ in length.
    """
    X, y = _check_pair(X, y)
    if y.ndim != 1:
        raise InputError(f"y must be 1-D class labels for a stratified split, got {y.shape}")
    validation = fraction("validation", validation)
    test = fraction("test", test)
    if validation + test >= 1:
        raise InputError(
            f"validation + test must be < 1 to leave training data, got {validation} + {test}"
        )
    rng = np.random.default_rng(seed)
    _, inverse = np.unique(y, return_inverse=True)
    counts = np.bincount(inverse.reshape(-1))
    val_counts = _allocate(counts, validation)
    # Clipping only bites for tiny classes when validation + test is close to 1.
    test_counts = np.minimum(_allocate(counts, test), counts - val_counts)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in range(len(counts)):
        members = rng.permutation(np.flatnonzero(inverse == cls))
        n_val, n_test = int(val_counts[cls]), int(test_counts[cls])
        parts[1].append(members[:n_val])
        parts[2].append(members[n_val : n_val + n_test])
        parts[0].append(members[n_val + n_test :])
    result = []
    for index_lists, wanted in zip(parts, (True, validation > 0, test > 0), strict=True):
        if wanted:
            index = np.concatenate(index_lists) if index_lists else np.empty(0, np.intp)
            index = rng.permutation(index)
            result.append((X[index], y[index]))
    return tuple(result)


def train_test_split(
    X: np.ndarray,
    y: np.ndarray,
    *,
    test: float = 0.2,
    seed: int | np.random.Generator | None = 0,
) -> tuple[Pair, Pair]:
    """Split samples into a training and a test part, stratified by class.

    Parameters
    ----------
    X : array_like, shape (n, ...)
        Samples.
    y : array_like, shape (n,)
        Class labels.
    test : float, default 0.2
        Fraction of each class for test, in ``(0, 1)``.
    seed : int, numpy.random.Generator or None, default 0
        Source of the shuffles.

    Returns
    -------
    ((X_train, y_train), (X_test, y_test)) : two (ndarray, ndarray) pairs
        ``X_train`` has shape (n_train, ...), ``y_train`` (n_train,); likewise for test.
    """
    test = fraction("test", test, allow_zero=False)
    train, held_out = stratified_split(X, y, validation=test, test=0.0, seed=seed)
    return train, held_out


def iterate_minibatches(
    X: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool = True,
    rng: int | np.random.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[Pair]:
    """Yield ``(X_batch, y_batch)`` pairs covering the data once (one epoch).

    Parameters
    ----------
    X : array_like, shape (n, ...)
        Samples.
    y : array_like, shape (n, ...)
        Targets.
    batch_size : int
        Samples per batch (>= 1).
    shuffle : bool, default True
        Visit the samples in a random order (a fresh permutation per call).
    rng : int, numpy.random.Generator or None, optional
        Source of the permutation. Pass one Generator for the whole training run so each
        epoch gets a different, reproducible order; None uses fresh OS entropy.
    drop_last : bool, default False
        Skip the final batch when it is smaller than ``batch_size``.

    Yields
    ------
    X_batch : numpy.ndarray, shape (b, ...)
        ``b == batch_size`` except possibly for the last batch.
    y_batch : numpy.ndarray, shape (b, ...)
        The matching targets.
    """
    X, y = _check_pair(X, y)
    batch_size = positive_int("batch_size", batch_size)
    if isinstance(rng, bool) or not (
        rng is None or isinstance(rng, numbers.Integral | np.random.Generator)
    ):
        raise InputError(f"rng must be an int, a numpy.random.Generator or None, got {rng!r}")
    n = len(X)
    # Without shuffling, slices are views (no copy); with it, fancy indexing by one
    # permutation keeps X and y aligned.
    order = np.random.default_rng(rng).permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, n)
        if order is None:
            yield X[start:end], y[start:end]
        else:
            index = order[start:end]
            yield X[index], y[index]
