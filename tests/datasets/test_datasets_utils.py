"""Tests of one_hot, the stratified splits and minibatch iteration."""

from __future__ import annotations

import numpy as np
import pytest

from nnback.datasets import iterate_minibatches, one_hot, stratified_split, train_test_split
from nnback.errors import InputError


def test_one_hot_values_shape_and_dtype() -> None:
    encoded = one_hot(np.array([2, 0, 1, 2]))
    assert encoded.dtype == np.float32
    assert np.array_equal(encoded, np.eye(3)[[2, 0, 1, 2]])
    assert one_hot([1], n_classes=4, dtype=np.float64).tolist() == [[0, 1, 0, 0]]
    assert one_hot(np.zeros((2, 3), np.uint8), 2).shape == (2, 3, 2)
    assert one_hot(np.array([], np.int64), 5).shape == (0, 5)


@pytest.mark.parametrize(
    ("labels", "n_classes", "fragment"),
    [
        (np.array([0, -1]), 3, "labels must be >= 0, got a minimum of -1"),
        (np.array([0, 3]), 3, "labels must be < n_classes=3, got a maximum of 3"),
        (np.array([0.0, 1.0]), None, "labels must be integers, got dtype float64"),
        (np.array([0, 1]), 0, "n_classes must be a positive int (>= 1), got 0"),
        (np.array([], np.int64), None, "cannot infer n_classes from empty labels"),
    ],
)
def test_one_hot_errors(labels, n_classes, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        one_hot(labels, n_classes)
    assert fragment in str(info.value)


def test_stratified_split_keeps_class_proportions() -> None:
    y = np.repeat([0, 1, 2], [600, 300, 100])
    X = np.arange(len(y) * 2, dtype=np.float32).reshape(-1, 2)
    train, val, test = stratified_split(X, y, validation=0.1, test=0.2, seed=0)
    assert np.array_equal(np.bincount(val[1]), [60, 30, 10])
    assert np.array_equal(np.bincount(test[1]), [120, 60, 20])
    assert np.array_equal(np.bincount(train[1]), [420, 210, 70])
    # Rows stay with their labels, and the parts partition the data.
    rows = np.concatenate([part[0][:, 0] for part in (train, val, test)]) // 2
    assert np.array_equal(np.sort(rows), np.arange(len(y)))
    for part_X, part_y in (train, val, test):
        assert np.array_equal(y[(part_X[:, 0] // 2).astype(int)], part_y)
    # Each part is shuffled, not grouped by class.
    assert not np.all(np.diff(val[1]) >= 0)


def test_stratified_split_leaves_out_empty_parts_and_is_reproducible() -> None:
    X, y = np.arange(40), np.arange(40) % 4
    parts = stratified_split(X, y)
    assert len(parts) == 2 and len(parts[1][0]) == 4
    again = stratified_split(X, y)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(parts, again, strict=True))
    assert len(stratified_split(X, y, validation=0.0, test=0.5)) == 2
    (X_tr, y_tr), (X_te, y_te) = train_test_split(X, y, test=0.25, seed=3)
    # 25% of 40 is 10: two classes give 3 and two give 2 (ceil or floor of 2.5 each).
    assert len(X_te) == 10 and sorted(np.bincount(y_te).tolist()) == [2, 2, 3, 3]
    assert len(X_tr) == 30 and np.array_equal(np.bincount(y_tr) + np.bincount(y_te), [10] * 4)


def test_split_totals_are_exact_with_uneven_classes() -> None:
    y = np.repeat(np.arange(7), [1, 2, 3, 5, 8, 13, 21])
    train, val, test = stratified_split(np.zeros(len(y)), y, validation=0.15, test=0.3, seed=2)
    assert (len(train[0]), len(val[0]), len(test[0])) == (
        29,
        8,
        16,
    )  # 53 samples: 8 = round(7.95), 16 = round(15.9)
    exact = np.bincount(y) * 0.15
    assert np.all(np.abs(np.bincount(val[1], minlength=7) - exact) < 1)


def test_string_labels_are_stratified() -> None:
    y = np.array(["cat"] * 10 + ["dog"] * 20)
    _, (X_val, y_val) = stratified_split(np.zeros((30, 1)), y, validation=0.5)
    assert sorted(y_val.tolist()) == ["cat"] * 5 + ["dog"] * 10


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"validation": 1.0}, "validation must be a fraction in [0, 1), got 1.0"),
        ({"test": -0.1}, "test must be a fraction in [0, 1), got -0.1"),
        ({"validation": 0.5, "test": 0.5}, "validation + test must be < 1"),
    ],
)
def test_split_argument_errors(kwargs, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        stratified_split(np.zeros(10), np.zeros(10), **kwargs)
    assert fragment in str(info.value)


def test_split_length_mismatch() -> None:
    with pytest.raises(InputError, match="same number of samples, got 3 and 2"):
        stratified_split(np.zeros(3), np.zeros(2))
    with pytest.raises(InputError, match="test must be a fraction in"):
        train_test_split(np.zeros(3), np.zeros(3), test=0.0)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (12, 4), (5, 8), (1, 1)])
def test_minibatches_cover_every_sample_once(n: int, batch_size: int, shuffle: bool) -> None:
    X = np.arange(n * 3).reshape(n, 3)
    y = np.arange(n)
    batches = list(iterate_minibatches(X, y, batch_size, shuffle=shuffle, rng=0))
    sizes = [len(bx) for bx, _ in batches]
    assert sizes == [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    seen = np.concatenate([by for _, by in batches])
    assert np.array_equal(np.sort(seen), y)
    assert np.array_equal(seen, y) is (not shuffle or n == 1) or n <= 2
    for bx, by in batches:
        assert np.array_equal(bx[:, 0] // 3, by)  # X and y stay aligned


def test_minibatches_drop_last_and_rng() -> None:
    X, y = np.arange(10), np.arange(10)
    batches = list(iterate_minibatches(X, y, 4, drop_last=True, rng=1))
    assert [len(b[0]) for b in batches] == [4, 4]
    assert len(set(np.concatenate([b[1] for b in batches]).tolist())) == 8
    rng = np.random.default_rng(5)
    first = np.concatenate([b[1] for b in iterate_minibatches(X, y, 3, rng=rng)])
    second = np.concatenate([b[1] for b in iterate_minibatches(X, y, 3, rng=rng)])
    assert not np.array_equal(first, second)  # a shared Generator gives a new epoch order
    replay = np.concatenate([b[1] for b in iterate_minibatches(X, y, 3, rng=5)])
    assert np.array_equal(first, replay)


def test_minibatch_argument_errors() -> None:
    with pytest.raises(InputError, match="batch_size must be a positive int"):
        next(iterate_minibatches(np.zeros(3), np.zeros(3), 0))
    with pytest.raises(InputError, match="same number of samples"):
        next(iterate_minibatches(np.zeros(3), np.zeros(4), 2))
    with pytest.raises(InputError, match="rng must be an int"):
        next(iterate_minibatches(np.zeros(3), np.zeros(3), 2, rng="seed"))
