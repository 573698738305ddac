"""Textbook results, reproduced quickly on the NumPy backend.

* XOR: small 2-x-1 networks learn the table exactly.
* "Neural Networks from Scratch", chapter 16: a binary classifier of two spirals
  (Dense(2, 64) with L2 5e-4 on weights and biases, ReLU, Dense(64, 1), Sigmoid, binary
  cross-entropy, Adam with decay 5e-7) reaches the book's validation accuracy (0.91; the
  issue asks for >= 0.90) on a separate draw of the spirals.
* Chapter 17: a sine regression (1-64-64-1, ReLU, linear output, MSE, Adam lr 0.005,
  weights Gaussian(0.1)) reaches the book's regression accuracy (>= 0.9, precision
  std(y) / 250).

Both book runs use 10,000 full-batch epochs; here the learning-rate schedule is compressed
into fewer epochs (said in each test), which reaches the same figures in a fraction of
the time. Small matrices gain nothing from BLAS threads, and idle-spinning threads on a
shared machine cost a lot, so the runs use one BLAS thread when threadpoolctl is present.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy
import pytest

import nnback as nb
from nnback.datasets import sine_data, spiral_data, xor


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with the dev extras
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.mark.parametrize(
    ("activation", "optimizer", "epochs"),
    [
        (nb.Tanh, lambda: nb.Adam(learning_rate=0.05), 300),
        (nb.Sigmoid, lambda: nb.SGD(learning_rate=2.0, momentum=0.9), 1000),
    ],
    ids=["tanh-adam", "sigmoid-sgd-momentum"],
)
def test_xor_converges(activation: type, optimizer: object, epochs: int) -> None:
    X, y = xor()
    model = nb.Sequential(
        [
            nb.Dense(2, 4, weight_initializer="xavier"),
            activation(),
            nb.Dense(4, 1, weight_initializer="xavier"),
            nb.Sigmoid(),
        ],
        loss=nb.BinaryCrossentropy(),
        optimizer=optimizer(),  # type: ignore[operator]
        seed=0,
        dtype="float64",
    )
    with one_blas_thread():
        history = model.fit(X, y, epochs=epochs, batch_size=4, verbose=0)
    assert model.evaluate(X, y)["accuracy"] == 1.0
    numpy.testing.assert_array_equal(model.predict_classes(X), y)
    assert history["loss"][-1] < 0.05 < history["loss"][0]
    probabilities = model.predict(X)[:, 0]
    assert probabilities[[0, 3]].max() < 0.1 and probabilities[[1, 2]].min() > 0.9


def test_spiral_binary_classifier_nnfs_chapter_16() -> None:
    X, y = spiral_data(100, 2, seed=0)
    X_val, y_val = spiral_data(100, 2, seed=1)  # a separate draw, as in the book
    model = nb.Sequential(
        [
            nb.Dense(2, 64, weight_regularizer_l2=5e-4, bias_regularizer_l2=5e-4),
            nb.ReLU(),
            nb.Dense(64, 1),
            nb.Sigmoid(),
        ],
        loss=nb.BinaryCrossentropy(),
        # The book: Adam(decay=5e-7) with lr 0.001 for 10,000 epochs. Here lr 0.01 for 2,000
        # epochs (seeds 0 to 5 all reached >= 0.905 when this test was written). Weights
        # start as the book's 0.01 * randn, the default initializer.
        optimizer=nb.Adam(learning_rate=0.01, decay=5e-7),
        seed=3,
    )
    with one_blas_thread():
        history = model.fit(X, y, epochs=2000, batch_size=len(X), verbose=0)
    scores = model.evaluate(X_val, y_val)
    assert scores["accuracy"] >= 0.90, scores
    assert history["accuracy"][-1] >= 0.90
    # The book's regularization figure is of the same order (0.018 after 10,000 epochs).
    assert 0.005 < scores["regularization_loss"] < 0.1
    assert scores["loss"] == pytest.approx(scores["data_loss"] + scores["regularization_loss"])


@pytest.mark.slow
def test_sine_regression_nnfs_chapter_17() -> None:
    X, y = sine_data(1000)
    gaussian = nb.Gaussian(0.1)
    model = nb.Sequential(
        [
            nb.Dense(1, 64, weight_initializer=gaussian),
            nb.ReLU(),
            nb.Dense(64, 64, weight_initializer=gaussian),
            nb.ReLU(),
            nb.Dense(64, 1, weight_initializer=gaussian),
            nb.Linear(),
        ],
        loss=nb.MeanSquaredError(),
        # The book: lr 0.005, decay 1e-3, 10,000 epochs, ending at lr 0.005 / 11. Here the
        # same schedule in 2,000 epochs: decay 5e-3 ends at the same rate. The result
        # depends on the seed in the book's setting too (with 10,000 epochs some seeds stay
        # near 0.7); this one reaches the book's figure in both.
        optimizer=nb.Adam(learning_rate=0.005, decay=5e-3),
        seed=0,
    )
    with one_blas_thread():
        history = model.fit(X, y, epochs=2000, batch_size=len(X), verbose=0)
    assert isinstance(model.metric, nb.RegressionAccuracy)
    assert model.metric.precision == pytest.approx(float(numpy.std(y)) / 250)
    scores = model.evaluate(X, y)
    assert scores["accuracy"] >= 0.9, scores
    assert scores["loss"] < 1e-4
    assert history["accuracy"][0] < 0.1  # it is learned, not given
    numpy.testing.assert_allclose(model.predict(X), y, atol=0.02)
