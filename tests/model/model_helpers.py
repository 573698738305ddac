"""Small shared pieces for the model tests: data, models and host-side views of them.

Imported by the test modules of this folder as ``model_helpers`` (pytest puts the folder on
``sys.path``; the name is chosen not to clash with other test folders).
"""

from __future__ import annotations

from typing import Any

import numpy

import nnback as nb
from nnback.datasets import one_hot


def classification_data(
    n: int = 24, features: int = 3, classes: int = 3, seed: int = 0
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Unit-scale features (n, features) and balanced integer labels (n,)."""
    rng = numpy.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n, features))
    y = numpy.arange(n) % classes
    rng.shuffle(y)
    return X, y


def regression_data(n: int = 24, features: int = 3, seed: int = 0) -> tuple[Any, Any]:
    """Features (n, features) and a smooth target (n,)."""
    rng = numpy.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n, features))
    return X, numpy.sin(X.sum(axis=1))


def classifier(
    features: int = 3,
    hidden: int = 8,
    classes: int = 3,
    *,
    optimizer: Any = None,
    seed: int = 0,
    dtype: str = "float32",
    backend: Any = None,
    **dense_kwargs: Any,
) -> nb.Sequential:
    """Dense-ReLU-Dense-Softmax with categorical cross-entropy (the fused path)."""
    return nb.Sequential(
        [
            nb.Dense(features, hidden, weight_initializer="xavier", **dense_kwargs),
            nb.ReLU(),
            nb.Dense(hidden, classes, weight_initializer="xavier", **dense_kwargs),
            nb.Softmax(),
        ],
        loss=nb.CategoricalCrossentropy(),
        optimizer=optimizer if optimizer is not None else nb.SGD(learning_rate=0.5),
        seed=seed,
        dtype=dtype,
        backend=backend,
    )


def regressor(
    features: int = 3,
    hidden: int = 8,
    *,
    optimizer: Any = None,
    seed: int = 0,
    dtype: str = "float32",
    backend: Any = None,
) -> nb.Sequential:
    """Dense-Tanh-Dense-Linear with mean squared error."""
    return nb.Sequential(
        [
            nb.Dense(features, hidden, weight_initializer="xavier"),
            nb.Tanh(),
            nb.Dense(hidden, 1, weight_initializer="xavier"),
            nb.Linear(),
        ],
        loss=nb.MeanSquaredError(),
        optimizer=optimizer if optimizer is not None else nb.SGD(learning_rate=0.1),
        seed=seed,
        dtype=dtype,
        backend=backend,
    )


def randomize_biases(model: nb.Sequential, seed: int = 1, scale: float = 0.5) -> None:
    """Give every bias a non-zero value (zero biases would hide a wrong bias gradient)."""
    rng = numpy.random.default_rng(seed)
    weights = model.get_weights()
    for index in range(1, len(weights), 2):
        weights[index] = rng.uniform(-scale, scale, size=weights[index].shape)
    model.set_weights(weights)


def gradients(model: nb.Sequential) -> list[numpy.ndarray]:
    """Host copies of every (dweights, dbiases), in :meth:`get_weights` order."""
    backend = model.backend
    return [
        numpy.array(backend.to_numpy(grad), copy=True)
        for layer in model.layers
        for _, _, grad, _, _ in layer.parameters()
    ]


def regularization_factors(model: nb.Sequential) -> list[tuple[float, float]]:
    """(l1, l2) of every parameter, in :meth:`get_weights` order."""
    return [(l1, l2) for layer in model.layers for _, _, _, l1, l2 in layer.parameters()]


def one_hot_labels(y: numpy.ndarray, classes: int) -> numpy.ndarray:
    return one_hot(y, classes).astype(numpy.float64)


def assert_weights_equal(got: list[Any], expected: list[Any], what: str = "weights") -> None:
    """Bit-for-bit equality of two weight lists."""
    assert len(got) == len(expected), f"{what}: {len(got)} arrays, expected {len(expected)}"
    for index, (a, b) in enumerate(zip(got, expected, strict=True)):
        numpy.testing.assert_array_equal(a, b, err_msg=f"{what}: array {index} differs")
