"""The fusion plan of Sequential: which layers become one backend call, and that it is exact.

A Dense layer followed by an activation runs as one ``dense_forward``/``dense_backward``;
Softmax followed by categorical cross-entropy runs as ``softmax_crossentropy`` on the
logits. Fusing must not change the maths: the fused model is compared with the same layers
run one by one through their standalone ``forward``/``backward``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy
import pytest
from model_helpers import classification_data, gradients, randomize_biases

import nnback as nb
from nnback.backends.base import Backend
from nnback.layers import layer_from_config
from nnback.training import prepare_targets


def test_dense_then_activation_fuses() -> None:
    dense1, relu, dense2, softmax = nb.Dense(3, 4), nb.ReLU(), nb.Dense(4, 2), nb.Softmax()
    model = nb.Sequential([dense1, relu, dense2, softmax], loss=nb.CategoricalCrossentropy())
    model.build("numpy")
    assert model.steps == [dense1, dense2]
    assert len(model.steps) < len(model.layers)
    assert dense1.fused_activation == "relu"
    assert model.fused_softmax_loss is True
    assert dense2.fused_activation == "linear"  # the fused loss takes the logits


def test_leaky_relu_slope_travels_with_the_fusion() -> None:
    dense = nb.Dense(3, 4)
    model = nb.Sequential([dense, nb.LeakyReLU(alpha=0.3), nb.Dense(4, 1)], loss="mse")
    model.build("numpy")
    assert (dense.fused_activation, dense.fused_alpha) == ("leaky_relu", 0.3)
    assert len(model.steps) == 2


@pytest.mark.parametrize(
    ("layers", "expected_steps"),
    [
        # Dropout between them: the activation stays a step of its own.
        (lambda: [nb.Dense(3, 4), nb.Dropout(0.5), nb.ReLU(), nb.Dense(4, 1)], 4),
        # Two activations in a row: only the first one fuses.
        (lambda: [nb.Dense(3, 4), nb.ReLU(), nb.Tanh(), nb.Dense(4, 1)], 3),
        # An activation first has no Dense to fuse into.
        (lambda: [nb.Tanh(), nb.Dense(3, 4), nb.Sigmoid(), nb.Dense(4, 1)], 3),
    ],
)
def test_what_does_not_fuse(layers: Any, expected_steps: int) -> None:
    model = nb.Sequential(layers(), loss="mse")
    model.build("numpy")
    assert len(model.steps) == expected_steps


def test_softmax_with_another_loss_is_not_the_fused_loss() -> None:
    dense = nb.Dense(3, 4)
    model = nb.Sequential([dense, nb.Softmax()], loss=nb.MeanSquaredError())
    model.build("numpy")
    assert model.fused_softmax_loss is False
    assert dense.fused_activation == "softmax"  # still fused into the Dense layer
    assert model.steps == [dense]


def test_changing_the_loss_after_build_updates_the_plan() -> None:
    """compile(loss=...) on a built model must re-plan: the fused CE must not stay on."""
    X, y = classification_data(n=12)
    targets = numpy.eye(3)[y]
    model = nb.Sequential(
        [nb.Dense(3, 4), nb.ReLU(), nb.Dense(4, 3), nb.Softmax()],
        loss=nb.CategoricalCrossentropy(),
        seed=0,
        dtype="float64",
    )
    model.build("numpy")
    model.compile(loss=nb.MeanSquaredError())
    expected = numpy.mean((model.predict(X) - targets) ** 2)
    assert model.evaluate(X, targets)["data_loss"] == pytest.approx(expected, rel=1e-12)


def test_compiling_the_loss_after_build_enables_the_fused_path() -> None:
    model = nb.Sequential([nb.Dense(3, 4), nb.ReLU(), nb.Dense(4, 3), nb.Softmax()], seed=0)
    model.build("numpy")
    model.compile(loss=nb.CategoricalCrossentropy(), optimizer=nb.SGD(0.1))
    assert model.fused_softmax_loss is True


class SpyBackend(Backend):
    """The reference backend, counting which ops (and which activations) it is asked for."""

    name = "spy"

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def softmax_crossentropy(self, *args: Any, **kwargs: Any) -> Any:
        self.calls["softmax_crossentropy"] += 1
        return super().softmax_crossentropy(*args, **kwargs)

    def categorical_crossentropy(self, *args: Any, **kwargs: Any) -> Any:
        self.calls["categorical_crossentropy"] += 1
        return super().categorical_crossentropy(*args, **kwargs)

    def activation_forward(self, z: Any, activation: str, alpha: float = 0.01) -> Any:
        self.calls[f"activation_forward:{activation}"] += 1
        return super().activation_forward(z, activation, alpha)

    def activation_backward(self, dy: Any, y: Any, activation: str, alpha: float = 0.01) -> Any:
        self.calls[f"activation_backward:{activation}"] += 1
        return super().activation_backward(dy, y, activation, alpha)

    def softmax(self, z: Any) -> Any:
        self.calls["softmax"] += 1
        return super().softmax(z)

    def dense_forward(self, x: Any, w: Any, b: Any, activation: str = "linear", *a: Any, **k: Any):
        self.calls[f"dense_forward:{activation}"] += 1
        return super().dense_forward(x, w, b, activation, *a, **k)


def test_softmax_and_crossentropy_train_through_the_fused_op() -> None:
    spy = SpyBackend()
    X, y = classification_data(n=12)
    model = nb.Sequential(
        [nb.Dense(3, 4), nb.ReLU(), nb.Dense(4, 3), nb.Softmax()],
        loss=nb.CategoricalCrossentropy(),
        optimizer=nb.SGD(0.1),
        seed=0,
        backend=spy,
    )
    model.fit(X, y, epochs=2, batch_size=6, verbose=0)
    model.evaluate(X, y)
    calls = spy.calls
    assert calls["softmax_crossentropy"] == 4 + 1  # 2 epochs of 2 steps, then evaluate
    assert calls["categorical_crossentropy"] == 0
    assert calls["activation_backward:softmax"] == 0
    assert calls["softmax"] == 0  # the fused op never materialises probabilities apart
    assert calls["dense_forward:relu"] == 5 and calls["dense_forward:linear"] == 5
    spy.calls.clear()
    probabilities = model.predict(X)
    numpy.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert spy.calls["softmax"] == 1  # predict applies the softmax to the logits, once


def _layer_by_layer(
    model: nb.Sequential, X: numpy.ndarray, y: numpy.ndarray, dropout_seed: int
) -> tuple[Any, float, list[numpy.ndarray]]:
    """Copies of the model's layers, run one by one unfused; returns output, loss, grads."""
    backend = model.backend
    layers = [layer_from_config(layer.get_config()) for layer in model.layers]
    for original, layer in zip(model.layers, layers, strict=True):
        layer.build(backend, model.dtype, numpy.random.default_rng(dropout_seed))
        if isinstance(layer, nb.Dense):
            layer.weights = backend.copy(original.weights)
            layer.biases = backend.copy(original.biases)
            assert layer.fused_activation == "linear"
    x = backend.asarray(X)
    for layer in layers:
        x = layer.forward(x, training=True)
    yb = backend.asarray(prepare_targets(model, y, X.shape[0]))
    loss, grad = model.loss.compute(backend, x, yb)
    for layer in reversed(layers):
        grad = layer.backward(grad)
    grads = [backend.to_numpy(grad) for layer in layers for _, _, grad, _, _ in layer.parameters()]
    return backend.to_numpy(x), backend.to_float(loss), grads


ARCHITECTURES = {
    "relu-softmax-cce": (
        lambda: [nb.Dense(3, 6), nb.ReLU(), nb.Dense(6, 3), nb.Softmax()],
        nb.CategoricalCrossentropy,
        "labels",
    ),
    "leaky-dropout-tanh-softmax-cce(one-hot)": (
        lambda: [
            nb.Dense(3, 6),
            nb.LeakyReLU(0.2),
            nb.Dropout(0.3),
            nb.Dense(6, 5),
            nb.Tanh(),
            nb.Dense(5, 3),
            nb.Softmax(),
        ],
        nb.CategoricalCrossentropy,
        "one-hot",
    ),
    "sigmoid-sigmoid-bce": (
        lambda: [nb.Dense(3, 6), nb.Sigmoid(), nb.Dense(6, 1), nb.Sigmoid()],
        nb.BinaryCrossentropy,
        "binary",
    ),
    "tanh-linear-mse": (
        lambda: [nb.Dense(3, 6), nb.Tanh(), nb.Dense(6, 2), nb.Linear()],
        nb.MeanSquaredError,
        "values",
    ),
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_fused_model_equals_layer_by_layer(backend: Any, name: str) -> None:
    layers, loss, kind = ARCHITECTURES[name]
    X, labels = classification_data(n=10)
    rng = numpy.random.default_rng(2)
    y = {
        "labels": labels,
        "one-hot": numpy.eye(3)[labels],
        "binary": (labels % 2).astype(numpy.float64),
        "values": rng.uniform(-1, 1, size=(10, 2)),
    }[kind]
    model = nb.Sequential(layers(), loss=loss(), seed=1, dtype="float64")
    model.build(backend)
    randomize_biases(model)
    expected_out, expected_loss, expected_grads = _layer_by_layer(model, X, y, dropout_seed=21)

    for layer in model.layers:
        if isinstance(layer, nb.Dropout):
            layer.rng = numpy.random.default_rng(21)
    assert len(model.steps) < len(model.layers)
    output = model.forward(backend.asarray(X), training=True)
    yb = backend.asarray(prepare_targets(model, y, X.shape[0]))
    loss_value, grad = model.loss_and_gradient(output, yb)
    model.backward(grad)
    if model.fused_softmax_loss:
        output = backend.softmax(output)

    # Same maths in float64, only the rounding order differs (the unfused softmax backward
    # cancels in y * (dy - sum(dy * y))): errors of a few eps times the largest entry.
    numpy.testing.assert_allclose(backend.to_numpy(output), expected_out, rtol=1e-12, atol=1e-14)
    assert backend.to_float(loss_value) == pytest.approx(expected_loss, rel=1e-12)
    for index, (got, want) in enumerate(zip(gradients(model), expected_grads, strict=True)):
        scale = numpy.abs(want).max()
        numpy.testing.assert_allclose(
            got, want, rtol=1e-10, atol=1e-12 * scale, err_msg=f"{name}: gradient {index}"
        )


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_predict_equals_layer_by_layer_inference(name: str) -> None:
    layers, loss, _ = ARCHITECTURES[name]
    X, _ = classification_data(n=10)
    model = nb.Sequential(layers(), loss=loss(), seed=1, dtype="float64")
    model.build("numpy")
    randomize_biases(model)
    x = X
    for original in model.layers:
        layer = layer_from_config(original.get_config())
        layer.build(model.backend, model.dtype, numpy.random.default_rng(0))
        if isinstance(layer, nb.Dense):
            layer.weights = model.backend.copy(original.weights)
            layer.biases = model.backend.copy(original.biases)
        x = layer.forward(x, training=False)  # Dropout is the identity at inference
    numpy.testing.assert_allclose(model.predict(X), x, rtol=1e-12, atol=1e-15)


def test_no_input_gradient_before_the_first_trainable_layer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing trains from the input gradient of the first layer with parameters, nor of
    # the shape-only layers before it, so backward neither asks for it nor runs them.
    reshape, conv = nb.Reshape((1, 6, 6)), nb.Conv2D(1, 2, 3)
    flatten, dense = nb.Flatten(), nb.Dense(32, 3)
    model = nb.Sequential(
        [reshape, conv, nb.ReLU(), flatten, dense, nb.Softmax()],
        loss=nb.CategoricalCrossentropy(),
        optimizer=nb.SGD(0.1),
        seed=0,
    )
    model.build("numpy")
    calls: list[tuple[str, bool]] = []
    for layer in model.steps:
        original = layer.backward

        def spy(dvalues: Any, need_dinputs: bool = True, _f: Any = original, **kw: Any) -> Any:
            calls.append((type(_f.__self__).__name__, need_dinputs))
            return _f(dvalues, need_dinputs=need_dinputs, **kw)

        monkeypatch.setattr(layer, "backward", spy)
    X, y = classification_data(8, 36, 3)
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    assert calls == [("Dense", True), ("Flatten", True), ("Conv2D", False)]
    assert conv.dweights is not None and numpy.isfinite(conv.dweights).all()


@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
def test_conv_then_maxpool_backward_in_one_call(backend_name: str) -> None:
    # Sequential.backward runs a Conv2D and the MaxPool2D after it as one
    # conv2d_maxpool_backward call: the gradients of the two layers' own backward passes.
    if backend_name == "numba":
        pytest.importorskip("numba", reason="the numba backend needs numba")
    layers = [
        nb.Reshape((1, 10, 10)),
        nb.Conv2D(1, 3, 3),
        nb.ReLU(),
        nb.MaxPool2D(2),
        nb.Conv2D(3, 4, 3, padding="same"),
        nb.MaxPool2D(2),
        nb.Flatten(),
        nb.Dense(16, 3),
        nb.Softmax(),
    ]
    model = nb.Sequential(layers, loss=nb.CategoricalCrossentropy(), seed=1)
    model.build(backend_name)
    backend = model.backend
    X, y = classification_data(6, 100, 3)
    output = model.forward(backend.asarray(X), training=True)
    _, grad = model.loss_and_gradient(output, backend.asarray(prepare_targets(model, y, 6)))
    model.backward(grad)
    fused = [backend.to_numpy(a).copy() for layer in model.trainable_layers
             for a in (layer.dweights, layer.dbiases)]  # fmt: skip
    assert layers[3].dinputs is None and layers[5].dinputs is None  # never formed
    g = grad
    for layer in reversed(model.steps):  # each layer's own backward pass
        g = layer.backward(g, need_dinputs=layer is not layers[1], overwrite=False)
        if layer is layers[1]:
            break
    separate = [backend.to_numpy(a) for layer in model.trainable_layers
                for a in (layer.dweights, layer.dbiases)]  # fmt: skip
    for a, b in zip(fused, separate, strict=True):
        numpy.testing.assert_array_equal(a, b)
