"""The book-compatible classes one by one, against the book's formulas written in NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nnback
from nnback.compat import nnfs
from nnback.compat.nnfs import (
    Activation_Linear,
    Activation_ReLU,
    Activation_Sigmoid,
    Activation_Softmax,
    Activation_Softmax_Loss_CategoricalCrossentropy,
    Layer_Dense,
    Layer_Dropout,
    Loss_BinaryCrossentropy,
    Loss_CategoricalCrossentropy,
    Loss_MeanAbsoluteError,
    Loss_MeanSquaredError,
    Optimizer_Adam,
    Optimizer_SGD,
    sine_data,
    spiral_data,
    vertical_data,
)

TIGHT = {"rtol": 1e-12, "atol": 1e-14}


@pytest.fixture(autouse=True)
def _float64_numpy() -> Any:
    nnfs.init(seed=7, dtype="float64")
    with nnback.use_backend("numpy"):
        yield


def test_dense_backward_adds_the_penalty_gradients_as_the_book_does() -> None:
    dense = Layer_Dense(
        3,
        4,
        weight_regularizer_l1=0.01,
        weight_regularizer_l2=0.02,
        bias_regularizer_l1=0.03,
        bias_regularizer_l2=0.04,
    )
    rng = np.random.default_rng(0)
    X, dvalues = rng.standard_normal((5, 3)), rng.standard_normal((5, 4))
    dense.biases[...] = rng.standard_normal((1, 4))
    W, b = dense.weights.copy(), dense.biases.copy()
    dense.forward(X)
    np.testing.assert_allclose(dense.output, X @ W + b, **TIGHT)
    dense.backward(dvalues)
    np.testing.assert_allclose(
        dense.dweights, X.T @ dvalues + 0.01 * np.sign(W) + 0.04 * W, **TIGHT
    )
    np.testing.assert_allclose(
        dense.dbiases, dvalues.sum(axis=0, keepdims=True) + 0.03 * np.sign(b) + 0.08 * b, **TIGHT
    )
    np.testing.assert_allclose(dense.dinputs, dvalues @ W.T, **TIGHT)
    expected = (
        0.01 * np.abs(W).sum()
        + 0.02 * (W * W).sum()
        + 0.03 * np.abs(b).sum()
        + 0.04 * (b * b).sum()
    )
    assert Loss_MeanSquaredError().regularization_loss(dense) == pytest.approx(expected)
    # The optimizer must not add the penalty a second time.
    optimizer = Optimizer_SGD(learning_rate=0.5)
    optimizer.update_params(dense)
    np.testing.assert_allclose(
        dense.weights, W - 0.5 * (X.T @ dvalues + 0.01 * np.sign(W) + 0.04 * W), **TIGHT
    )


def test_combined_softmax_loss_matches_the_separate_pair() -> None:
    logits = np.array([[1.0, 2.0, 0.5], [0.2, -1.0, 3.0], [0.0, 0.0, 0.0]])
    classes = np.array([1, 2, 0])
    combined = Activation_Softmax_Loss_CategoricalCrossentropy()
    loss = combined.forward(logits, classes)
    combined.backward(combined.output, classes)
    softmax, cross_entropy = Activation_Softmax(), Loss_CategoricalCrossentropy()
    softmax.forward(logits)
    assert loss == pytest.approx(cross_entropy.calculate(softmax.output, classes), rel=1e-12)
    cross_entropy.backward(softmax.output, classes)
    softmax.backward(cross_entropy.dinputs)
    np.testing.assert_allclose(combined.dinputs, softmax.dinputs, rtol=1e-9, atol=1e-15)
    expected = softmax.output.copy()
    expected[range(3), classes] -= 1
    np.testing.assert_allclose(combined.dinputs, expected / 3, **TIGHT)
    # One-hot targets, and probabilities handed in by the user (the book's chapter 9).
    one_hot = np.eye(3)[classes]
    fresh = Activation_Softmax_Loss_CategoricalCrossentropy()
    fresh.backward(softmax.output.copy(), one_hot)
    np.testing.assert_allclose(fresh.dinputs, expected / 3, rtol=1e-9, atol=1e-15)


def test_regression_and_binary_losses_follow_the_book() -> None:
    rng = np.random.default_rng(1)
    pred, true = rng.random((6, 2)), rng.random((6, 2))
    mse, mae, bce = Loss_MeanSquaredError(), Loss_MeanAbsoluteError(), Loss_BinaryCrossentropy()
    assert mse.calculate(pred, true) == pytest.approx(np.mean((true - pred) ** 2))
    mse.backward(pred, true)
    np.testing.assert_allclose(mse.dinputs, -2 * (true - pred) / 2 / 6, **TIGHT)
    assert mae.calculate(pred, true) == pytest.approx(np.mean(np.abs(true - pred)))
    mae.backward(pred, true)
    np.testing.assert_allclose(mae.dinputs, np.sign(pred - true) / 2 / 6, **TIGHT)
    labels = (true > 0.5) * 1
    expected = -np.mean(labels * np.log(pred) + (1 - labels) * np.log(1 - pred))
    assert bce.calculate(pred, labels) == pytest.approx(expected)
    bce.backward(pred, labels)
    np.testing.assert_allclose(
        bce.dinputs, -(labels / pred - (1 - labels) / (1 - pred)) / 2 / 6, rtol=1e-9
    )
    value, regularization = bce.calculate(pred, labels, include_regularization=True)
    assert regularization == 0.0


def test_activations_and_their_predictions() -> None:
    x = np.array([[-1.0, 0.5], [2.0, -3.0]])
    relu, sigmoid, linear = Activation_ReLU(), Activation_Sigmoid(), Activation_Linear()
    relu.forward(x)
    relu.backward(np.ones_like(x))
    np.testing.assert_array_equal(relu.dinputs, x > 0)
    sigmoid.forward(x)
    np.testing.assert_allclose(sigmoid.output, 1 / (1 + np.exp(-x)), **TIGHT)
    np.testing.assert_array_equal(sigmoid.predictions(sigmoid.output), (x > 0) * 1)
    linear.forward(x)
    np.testing.assert_array_equal(linear.predictions(linear.output), x)
    np.testing.assert_array_equal(Activation_Softmax().predictions(x), [1, 0])


def test_optimizer_state_is_kept_on_the_layer_under_the_books_names() -> None:
    dense = Layer_Dense(2, 3)
    assert not hasattr(dense, "weight_cache")
    dense.forward(np.ones((4, 2)))
    dense.backward(np.ones((4, 3)))
    optimizer = Optimizer_Adam(learning_rate=0.01, decay=0.1)
    optimizer.pre_update_params()
    optimizer.update_params(dense)
    optimizer.post_update_params()
    assert dense.weight_momentums.shape == dense.weight_cache.shape == (2, 3)
    assert dense.bias_cache.shape == (1, 3)
    optimizer.pre_update_params()
    assert optimizer.current_learning_rate == pytest.approx(0.01 / 1.1)
    weights, biases = dense.get_parameters()
    dense.set_parameters(weights * 0, biases + 1)
    assert float(np.abs(dense.weights).sum()) == 0.0


def test_init_seeds_weights_and_data_and_each_draw_is_new() -> None:
    nnfs.init(seed=11)
    first = Layer_Dense(2, 4).weights.copy()
    X1, y1 = spiral_data(samples=10, classes=3)
    X2, _ = spiral_data(samples=10, classes=3)
    nnfs.init(seed=11)
    np.testing.assert_array_equal(Layer_Dense(2, 4).weights, first)
    np.testing.assert_array_equal(spiral_data(samples=10, classes=3)[0], X1)
    assert not np.array_equal(X1, X2)
    assert first.dtype == np.float32 and abs(float(first.std()) - 0.01) < 0.01
    assert X1.shape == (30, 2) and sorted(set(y1.tolist())) == [0, 1, 2]
    assert vertical_data(samples=5, classes=2)[0].shape == (10, 2)
    X, y = sine_data(samples=50)
    np.testing.assert_allclose(y, np.sin(2 * np.pi * X), atol=1e-6)


def test_dropout_keeps_the_books_rate_convention() -> None:
    dropout = Layer_Dropout(0.25)
    assert dropout.rate == 0.75
    x = np.ones((200, 50))
    dropout.forward(x)
    kept = dropout.output != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(dropout.output[kept], 1 / 0.75)
    dropout.backward(np.ones_like(x))
    np.testing.assert_array_equal(dropout.dinputs != 0, kept)
    dropout.forward(x, training=False)
    np.testing.assert_array_equal(dropout.output, x)
