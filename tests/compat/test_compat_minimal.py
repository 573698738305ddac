"""The minimal Network API against a per-sample pure-NumPy implementation of the original.

The reference below is the tutorial's algorithm written out in NumPy: each sample goes
forward alone, and every layer takes its SGD step as the error passes back through it.
nnback's batched implementation with ``batch_size=1`` must match it step for step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nnback
from nnback.compat import minimal
from nnback.compat.minimal import (
    ActivationLayer,
    FCLayer,
    Network,
    mse,
    mse_prime,
    relu,
    relu_prime,
    sigmoid,
    sigmoid_prime,
    tanh,
    tanh_prime,
)

PRIMES = {
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
}


def reference_fit(
    weights: list[tuple[np.ndarray, np.ndarray]],
    kinds: list[str],
    x_train: np.ndarray,
    y_train: np.ndarray,
    epochs: int,
    learning_rate: float,
) -> tuple[list[float], list[tuple[np.ndarray, np.ndarray]]]:
    """Per-sample SGD on dense layers each followed by an activation, with MSE."""
    params = [(w.copy(), b.copy()) for w, b in weights]
    errors = []
    for _ in range(epochs):
        total = 0.0
        for x, y in zip(x_train, y_train, strict=True):
            inputs, pre = [], []
            a = x.reshape(1, -1)
            for (w, b), kind in zip(params, kinds, strict=True):
                inputs.append(a)
                z = a @ w + b
                pre.append(z)
                a = PRIMES[kind][0](z)
            total += np.mean((y.reshape(a.shape) - a) ** 2)
            error = 2 * (a - y.reshape(a.shape)) / a.size
            for index in range(len(params) - 1, -1, -1):
                w, b = params[index]
                error = PRIMES[kinds[index]][1](pre[index]) * error
                input_error = error @ w.T
                w -= learning_rate * (inputs[index].T @ error)
                b -= learning_rate * error
                error = input_error
        errors.append(total / len(x_train))
    return errors, params


def build(sizes: list[int], kinds: list[str], seed: int) -> Network:
    functions = {
        "tanh": (tanh, tanh_prime),
        "sigmoid": (sigmoid, sigmoid_prime),
        "relu": (relu, relu_prime),
    }
    minimal.set_seed(seed)
    net = Network()
    for n_in, n_out, kind in zip(sizes[:-1], sizes[1:], kinds, strict=True):
        net.add(FCLayer(n_in, n_out))
        net.add(ActivationLayer(*functions[kind]))
    net.use(mse, mse_prime)
    return net


def host_weights(net: Network, backend: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (backend.to_numpy(layer.weights).copy(), backend.to_numpy(layer.bias).copy())
        for layer in net.layers
        if isinstance(layer, FCLayer)
    ]


XOR_X = np.array([[[0, 0]], [[0, 1]], [[1, 0]], [[1, 1]]], dtype=float)
XOR_Y = np.array([[[0]], [[1]], [[1]], [[0]]], dtype=float)


@pytest.mark.parametrize("kinds", [["tanh", "tanh"], ["relu", "sigmoid"]])
def test_xor_matches_the_per_sample_original(on_backend: Any, kinds: list[str]) -> None:
    net = build([2, 3, 1], kinds, seed=4)
    start = host_weights(net, on_backend)
    errors = net.fit(XOR_X, XOR_Y, epochs=40, learning_rate=0.1, verbose=False)
    expected_errors, expected = reference_fit(start, kinds, XOR_X, XOR_Y, 40, 0.1)
    np.testing.assert_allclose(errors, expected_errors, rtol=1e-10, atol=1e-13)
    for (w, b), (ew, eb) in zip(host_weights(net, on_backend), expected, strict=True):
        np.testing.assert_allclose(w, ew, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(b, eb, rtol=1e-10, atol=1e-13)
    out = net.predict(XOR_X)
    assert len(out) == 4 and out[0].shape == (1, 1)


def test_mnist_shaped_data_in_minibatches(on_backend: Any) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((60, 1, 36))
    y = np.eye(4)[rng.integers(0, 4, 60)].reshape(60, 1, 4)
    net = build([36, 12, 8, 4], ["tanh", "tanh", "tanh"], seed=1)
    errors = net.fit(x, y, epochs=6, learning_rate=0.1, batch_size=10, verbose=False)
    assert len(errors) == 6 and errors[-1] < errors[0]
    with nnback.use_backend("numpy"):
        reference = build([36, 12, 8, 4], ["tanh", "tanh", "tanh"], seed=1)
        expected = reference.fit(x, y, epochs=6, learning_rate=0.1, batch_size=10, verbose=False)
    np.testing.assert_allclose(errors, expected, rtol=1e-10)


def test_python_functions_take_the_unfused_path_with_the_same_result() -> None:
    with nnback.use_backend("numpy"):
        fused = build([2, 3, 1], ["tanh", "tanh"], seed=2)
        minimal.set_seed(2)
        plain = Network()
        plain.add(FCLayer(2, 3))
        plain.add(ActivationLayer(np.tanh, lambda x: 1 - np.tanh(x) ** 2))
        plain.add(FCLayer(3, 1))
        plain.add(ActivationLayer(np.tanh, lambda x: 1 - np.tanh(x) ** 2))
        plain.compute_loss(lambda t, p: np.mean((t - p) ** 2), lambda t, p: 2 * (p - t) / t.size)
        assert plain.layers[1].core is None and fused.layers[1].core is not None
        a = fused.fit(XOR_X, XOR_Y, epochs=20, learning_rate=0.2, verbose=False)
        b = plain.fit(XOR_X, XOR_Y, epochs=20, learning_rate=0.2, verbose=False)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_functions_and_printing(capsys: pytest.CaptureFixture[str]) -> None:
    x = np.array([[-2.0, 0.0, 1.5]])
    np.testing.assert_allclose(tanh(x), np.tanh(x))
    np.testing.assert_allclose(tanh_prime(x), 1 - np.tanh(x) ** 2)
    np.testing.assert_allclose(sigmoid_prime(x), PRIMES["sigmoid"][1](x))
    np.testing.assert_array_equal(relu_prime(x), [[0.0, 0.0, 1.0]])
    assert mse(np.array([1.0, 2.0]), np.array([[1.5, 2.0]])) == pytest.approx(0.125)
    np.testing.assert_allclose(
        mse_prime(np.array([1.0, 2.0]), np.array([[1.5, 2.0]])), [[0.5, 0.0]]
    )
    net = build([2, 2, 1], ["tanh", "tanh"], seed=0)
    net.fit(XOR_X, XOR_Y, epochs=2, learning_rate=0.1)
    assert "epoch 2/2   error=" in capsys.readouterr().out
    with pytest.raises(ValueError, match="loss"):
        Network().fit(XOR_X, XOR_Y, epochs=1, learning_rate=0.1)


def test_equal_global_seeds_give_the_tutorials_numbers_on_numpy() -> None:
    # The tutorial draws each layer's weights, then its bias, with np.random.rand - 0.5
    # from NumPy's global state. Seeded alike, nnback's layers start from the same draws
    # and, on numpy with one sample per step, train to the same numbers bit for bit.
    x = np.array([[[0, 0]], [[0, 1]], [[1, 0]], [[1, 1]]], dtype=float)
    y = np.array([[[0]], [[1]], [[1]], [[0]]], dtype=float)
    np.random.seed(5)  # noqa: NPY002
    drawn = [(np.random.rand(i, o) - 0.5, np.random.rand(1, o) - 0.5) for i, o in [(2, 3), (3, 1)]]  # noqa: NPY002
    expected, params = reference_fit(drawn, ["tanh", "tanh"], x, y, 300, 0.1)
    with nnback.use_backend("numpy"):
        try:
            minimal.set_seed(5, global_state=True)
            net = Network()
            net.add(FCLayer(2, 3))
            net.add(ActivationLayer(tanh, tanh_prime))
            net.add(FCLayer(3, 1))
            net.add(ActivationLayer(tanh, tanh_prime))
            net.use(mse, mse_prime)
            got = net.fit(x, y, epochs=300, learning_rate=0.1, verbose=False)
        finally:
            minimal.set_seed(0)
    assert got == expected
    for layer, (w, b) in zip(net.layers[::2], params, strict=True):
        np.testing.assert_array_equal(layer.weights, w)
        np.testing.assert_array_equal(layer.bias, b)
