"""Tests of the toy data sets: shapes, dtypes, classes, reproducibility, argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from nnback.datasets import sine_data, spiral_data, vertical_data, xor
from nnback.errors import InputError


@pytest.mark.parametrize("make", [spiral_data, vertical_data])
def test_classification_sets_shapes_dtypes_and_classes(make) -> None:
    X, y = make(50, 4)
    assert X.shape == (200, 2) and X.dtype == np.float32
    assert y.shape == (200,) and y.dtype == np.int64
    assert np.array_equal(np.bincount(y), [50, 50, 50, 50])
    # Samples come class by class.
    assert np.array_equal(y, np.repeat(np.arange(4), 50))
    assert np.isfinite(X).all()


@pytest.mark.parametrize("make", [spiral_data, vertical_data])
def test_classification_sets_are_reproducible(make) -> None:
    X1, y1 = make(30, 3, seed=7)
    X2, y2 = make(30, 3, seed=7)
    X3, _ = make(30, 3, seed=8)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    # A Generator is accepted and advanced, so two calls on it differ.
    rng = np.random.default_rng(7)
    assert np.array_equal(make(30, 3, seed=rng)[0], X1)
    assert not np.array_equal(make(30, 3, seed=rng)[0], X1)


def test_spiral_follows_the_textbook_formula() -> None:
    X, _ = spiral_data(100, 3, seed=0)
    radius = np.hypot(X[:, 0], X[:, 1])
    # The radius is linspace(0, 1) in every arm, whatever the angular noise.
    expected = np.tile(np.linspace(0, 1, 100), 3)
    np.testing.assert_allclose(radius, expected, atol=1e-6)


def test_vertical_blobs_are_centred_per_class() -> None:
    X, y = vertical_data(2000, 3, seed=1)
    for k in range(3):
        centre = X[y == k].mean(axis=0)
        np.testing.assert_allclose(centre, [k / 3, 0.5], atol=0.01)
        np.testing.assert_allclose(X[y == k].std(axis=0), [0.1, 0.1], atol=0.01)


def test_sine_data() -> None:
    X, y = sine_data(8)
    assert X.shape == y.shape == (8, 1)
    assert X.dtype == y.dtype == np.float32
    np.testing.assert_allclose(X[:, 0], np.arange(8) / 8)
    np.testing.assert_allclose(y, np.sin(2 * np.pi * X), atol=1e-6)
    assert sine_data()[0].shape == (1000, 1)
    assert np.array_equal(sine_data(50)[1], sine_data(50)[1])


def test_xor_points_and_labels() -> None:
    X, y = xor()
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert np.array_equal(X, [[0, 0], [0, 1], [1, 0], [1, 1]])
    assert np.array_equal(y, [0, 1, 1, 0])
    assert np.array_equal(y, np.logical_xor(X[:, 0], X[:, 1]))


def test_xor_repeated_with_noise() -> None:
    X, y = xor(noise=0.05, samples_per_corner=25, seed=3)
    assert X.shape == (100, 2) and y.shape == (100,)
    assert np.array_equal(np.bincount(y), [50, 50])
    # Noise moves every point, but each stays nearest its own corner.
    corners = np.tile([[0, 0], [0, 1], [1, 0], [1, 1]], (25, 1))
    assert (X != corners).all()
    assert np.abs(X - corners).max() < 0.4
    assert np.array_equal(X, xor(noise=0.05, samples_per_corner=25, seed=3)[0])


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: spiral_data(0, 3), "samples must be a positive int (>= 1), got 0"),
        (lambda: spiral_data(10, -2), "classes must be a positive int (>= 1), got -2"),
        (lambda: vertical_data(2.5, 3), "samples must be a positive int, got 2.5 (float)"),
        (lambda: vertical_data(10, True), "classes must be a positive int, got True (bool)"),
        (lambda: sine_data(0), "samples must be a positive int"),
        (lambda: xor(samples_per_corner=0), "samples_per_corner must be a positive int"),
        (lambda: xor(noise=-1.0), "noise must be a finite number >= 0, got -1.0"),
        (lambda: xor(noise="big"), "noise must be a non-negative real number, got 'big'"),
        (lambda: spiral_data(10, 2, seed="x"), "seed must be an int, a numpy.random.Generator"),
    ],
)
def test_invalid_arguments_say_what_was_expected(call, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        call()
    assert isinstance(info.value, InputError)
    assert fragment in str(info.value)


def test_numpy_integers_are_accepted() -> None:
    X, _ = spiral_data(np.int64(5), np.int32(2))
    assert X.shape == (10, 2)
