"""The scratch deep neural network classifier API: its parts, and the classifier itself on
a small MNIST-shaped subset, on every backend against the NumPy reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nnback
from nnback.compat.scratch import (
    FC,
    SGD,
    AdaGrad,
    HeInitializer,
    ReLU,
    ScratchDeepNeuralNetworkClassifier,
    Sigmoid,
    SimpleInitializer,
    Softmax,
    Tanh,
    XavierInitializer,
)
from nnback.datasets import load_sample


@pytest.fixture(scope="module")
def subset() -> tuple[np.ndarray, ...]:
    (X, y), (X_test, y_test) = load_sample()
    return X[:400], y[:400], X_test[:100], y_test[:100]


def train(subset: tuple[np.ndarray, ...], **options: Any) -> ScratchDeepNeuralNetworkClassifier:
    X, y, X_val, y_val = subset
    settings = {
        "n_nodes": (24, 16),
        "epochs": 3,
        "batch_size": 20,
        "dtype": "float64",
        "random_state": 1,
    }
    settings.update(options)
    return ScratchDeepNeuralNetworkClassifier(**settings).fit(X, y, X_val, y_val)


_REFERENCE: dict[str, ScratchDeepNeuralNetworkClassifier] = {}


@pytest.mark.parametrize(
    "options",
    [
        {"activation": Tanh, "initializer": XavierInitializer, "optimizer": AdaGrad, "lr": 0.01},
        {"activation": ReLU, "initializer": HeInitializer, "optimizer": SGD, "lr": 0.1},
        {
            "activation": Sigmoid,
            "initializer": SimpleInitializer,
            "optimizer": SGD,
            "lr": 0.5,
            "sigma": 0.05,
        },
    ],
    ids=["tanh-xavier-adagrad", "relu-he-sgd", "sigmoid-simple-sgd"],
)
def test_classifier_matches_the_reference(on_backend: Any, subset: Any, options: Any) -> None:
    key = options["activation"].__name__
    if key not in _REFERENCE:
        with nnback.use_backend("numpy"):
            _REFERENCE[key] = train(subset, **options)
    expected = _REFERENCE[key]
    clf = train(subset, **options)
    assert len(clf.loss) == len(clf.val_loss) == 3
    np.testing.assert_allclose(clf.loss, expected.loss, rtol=1e-9)
    np.testing.assert_allclose(clf.val_loss, expected.val_loss, rtol=1e-9)
    np.testing.assert_allclose(
        clf.predict_proba(subset[2]), expected.predict_proba(subset[2]), rtol=1e-8, atol=1e-12
    )
    assert clf.loss[-1] < clf.loss[0]


def test_default_configuration_learns(subset: Any) -> None:
    clf = train(subset, n_nodes=(64, 32), epochs=4, dtype="float32")
    assert clf.val_loss[-1] < clf.val_loss[0]
    assert clf.score(subset[2], subset[3]) > 0.6
    assert set(clf.predict(subset[2])) <= set(range(10))


def test_explicit_layers_and_string_labels(subset: Any) -> None:
    X, y, X_val, y_val = subset
    names = np.array(list("abcdefghij"))
    layers = [
        FC(784, 20, XavierInitializer(), AdaGrad(0.02), dtype="float64"),
        Tanh(),
        FC(20, 10, SimpleInitializer(0.01), SGD(0.1), dtype="float64"),
        Softmax(),
    ]
    clf = ScratchDeepNeuralNetworkClassifier(layers=layers, epochs=2, dtype="float64")
    clf.fit(X, names[y], X_val, names[y_val])
    assert list(clf.classes_) == list(names)
    assert clf.predict(X_val[:5]).dtype.kind == "U"
    assert len(clf.val_loss) == 2
    with pytest.raises(ValueError, match="Softmax"):
        ScratchDeepNeuralNetworkClassifier(layers=layers[:2]).fit(X, y)


def test_fc_layer_updates_itself_in_backward() -> None:
    with nnback.use_backend("numpy"):
        rng = np.random.default_rng(0)
        X, dA = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
        layer = FC(3, 2, SimpleInitializer(0.1), SGD(0.5), dtype="float64")
        W, B = layer.W.copy(), layer.B.copy()
        assert W.shape == (3, 2) and B.shape == (2,)
        np.testing.assert_allclose(layer.forward(X), X @ W + B)
        dZ = layer.backward(dA)
        np.testing.assert_allclose(dZ, dA @ W.T)
        np.testing.assert_allclose(layer.dW, X.T @ dA)
        np.testing.assert_allclose(layer.dB, dA.sum(axis=0))
        np.testing.assert_allclose(layer.W, W - 0.5 * X.T @ dA)
        np.testing.assert_allclose(layer.B, B - 0.5 * dA.sum(axis=0))
        layer.B = np.zeros(2)
        assert float(np.abs(layer.biases).sum()) == 0.0


def test_adagrad_and_activations_follow_their_formulas() -> None:
    with nnback.use_backend("numpy"):
        rng = np.random.default_rng(1)
        X, dA = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
        layer = FC(3, 2, HeInitializer(), AdaGrad(0.1), dtype="float64")
        W = layer.W.copy()
        layer.forward(X)
        layer.backward(dA)
        dW = X.T @ dA
        np.testing.assert_allclose(layer.W, W - 0.1 * dW / (np.sqrt(dW * dW) + 1e-7))
        A = rng.standard_normal((4, 3))
        Y = np.eye(3)[[0, 2, 1, 1]]
        softmax = Softmax()
        Z = softmax.forward(A)
        expected_z = np.exp(A) / np.exp(A).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(Z, expected_z, rtol=1e-12)
        np.testing.assert_allclose(softmax.backward(Z, Y), (Z - Y) / 4, rtol=1e-9, atol=1e-15)
        assert softmax.loss(Z, Y) == pytest.approx(-np.mean(np.log(Z[Y == 1])))
        tanh = Tanh()
        out = tanh.forward(A)
        np.testing.assert_allclose(tanh.backward(np.ones_like(A)), 1 - out**2)
        sigmoid = Sigmoid()
        out = sigmoid.forward(A)
        np.testing.assert_allclose(sigmoid.backward(np.ones_like(A)), out * (1 - out))
