"""Central finite differences against the backward pass of every image layer, in float64.

Each layer alone (Conv2D with each fusable activation, strides and paddings; MaxPool2D and
AvgPool2D with overlapping windows; Flatten; Reshape) on every backend, through the probe
loss ``sum(r * layer.forward(x))``, whose gradient with respect to the output is ``r``; then
a whole small CNN through ``model.backward`` with the fused softmax + cross-entropy.
"""

from __future__ import annotations

from typing import Any

import numpy
import pytest

import nnback as nb
from nnback.testing import assert_gradient_close, numerical_gradient, random_array


def _layer_check(backend: Any, layer: Any, x: numpy.ndarray, rng: numpy.random.Generator) -> None:
    layer.build(backend, "float64", numpy.random.default_rng(5))
    if getattr(layer, "biases", None) is not None:
        layer.biases = backend.asarray(random_array(rng, tuple(layer.biases.shape), -0.5, 0.5))
    y = layer.forward(backend.asarray(x), training=True)
    r = random_array(rng, tuple(y.shape))

    def probe(x_: numpy.ndarray) -> float:
        return float(numpy.sum(r * backend.to_numpy(layer.forward(backend.asarray(x_)))))

    layer.forward(backend.asarray(x), training=True)
    dx = backend.to_numpy(layer.backward(backend.asarray(r)))
    assert_gradient_close(dx, numerical_gradient(probe, x), f"{layer!r} dinputs")
    for name, value, grad, _, _ in layer.parameters():
        host = backend.to_numpy(value).copy()
        analytic = backend.to_numpy(grad).copy()

        def probe_param(p: numpy.ndarray, name: str = name) -> float:
            setattr(layer, name, backend.asarray(p))
            return probe(x)

        numeric = numerical_gradient(probe_param, host)
        setattr(layer, name, backend.asarray(host))
        assert_gradient_close(analytic, numeric, f"{layer!r} d{name}")


def _away_from_kinks(layer: nb.Conv2D, x: numpy.ndarray, backend: Any) -> bool:
    """Every pre-activation at least 0.05 from relu's kink (redraw otherwise)."""
    saved = layer.fused_activation
    layer.fused_activation = "linear"
    z = backend.to_numpy(layer.forward(backend.asarray(x)))
    layer.fused_activation = saved
    return bool((numpy.abs(z) >= 0.05).all())


CONV_CASES = {
    "relu": dict(kernel_size=3, activation="relu"),
    "leaky_relu-s2-p1": dict(kernel_size=3, stride=2, padding=1, activation="leaky_relu"),
    "sigmoid-3x2-same": dict(kernel_size=(3, 1), padding="same", activation="sigmoid"),
    "tanh-s12": dict(kernel_size=(2, 3), stride=(1, 2), activation="tanh"),
    "linear-1x1": dict(kernel_size=1, activation="linear"),
}


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_layer(backend: Any, rng: numpy.random.Generator, case: str) -> None:
    options = dict(CONV_CASES[case])
    activation = options.pop("activation")
    layer = nb.Conv2D(2, 3, **options)
    layer.fused_activation, layer.fused_alpha = activation, 0.1
    layer.build(backend, "float64", numpy.random.default_rng(5))
    for _ in range(100):
        x = random_array(rng, (2, 2, 5, 6))
        if _away_from_kinks(layer, x, backend):
            break
    _layer_check(backend, layer, x, rng)


@pytest.mark.parametrize("pool", [(2, None), (3, 2), ((2, 3), (1, 2))])
@pytest.mark.parametrize("kind", [nb.MaxPool2D, nb.AvgPool2D])
def test_pool_layers(backend: Any, rng: numpy.random.Generator, kind: Any, pool: Any) -> None:
    shape = (2, 2, 5, 7)
    # Distinct values 0.02 apart: no window's maximum changes within a finite-difference step.
    x = rng.permutation(numpy.prod(shape)).reshape(shape) / numpy.prod(shape) * 2 - 1
    _layer_check(backend, kind(pool[0], pool[1]), x, rng)


def test_flatten_and_reshape(backend: Any, rng: numpy.random.Generator) -> None:
    _layer_check(backend, nb.Flatten(), random_array(rng, (3, 2, 3, 2)), rng)
    _layer_check(backend, nb.Reshape((2, 3, 2)), random_array(rng, (3, 12)), rng)


def test_whole_cnn(backend: Any, rng: numpy.random.Generator) -> None:
    """model.backward of a small CNN (Conv2D + fused ReLU, pools, Flatten, Dense, softmax
    with cross-entropy) against central differences of the data loss."""
    model = nb.Sequential(
        [
            nb.Reshape((1, 6, 6)),
            nb.Conv2D(1, 2, 3, padding=1),
            nb.Tanh(),
            nb.MaxPool2D(2),
            nb.Conv2D(2, 2, 2),
            nb.Sigmoid(),
            nb.AvgPool2D(2),
            nb.Flatten(),
            nb.Dense(2, 3, weight_initializer="xavier"),
            nb.Softmax(),
        ],
        loss="categorical_crossentropy",
        optimizer="sgd",
        seed=2,
        dtype="float64",
    )
    model.build(backend)
    assert [type(s).__name__ for s in model.steps].count("Tanh") == 0, "tanh must be fused"
    X = rng.permutation(4 * 36).reshape(4, 36) / 144 * 2 - 1
    y = numpy.array([0, 1, 2, 1])
    xb, yb = backend.asarray(X), backend.asarray(y)

    def loss() -> float:
        out = model.forward(xb, training=True)
        return backend.to_float(model.loss_and_gradient(out, yb, with_grad=False)[0])

    out = model.forward(xb, training=True)
    _, grad = model.loss_and_gradient(out, yb)
    model.backward(grad)
    for layer in model.trainable_layers:
        for name, value, g, _, _ in layer.parameters():
            host, analytic = backend.to_numpy(value).copy(), backend.to_numpy(g).copy()

            def probe(p: numpy.ndarray, layer: Any = layer, name: str = name) -> float:
                backend.copy_into_inplace(getattr(layer, name), backend.asarray(p))
                return loss()

            numeric = numerical_gradient(probe, host)
            backend.copy_into_inplace(getattr(layer, name), backend.asarray(host))
            assert_gradient_close(analytic, numeric, f"{layer!r} d{name}")
