"""Finite-difference gradient checks of whole small models, in float64, on every backend.

``model.backward`` must give the gradient of the *data* loss (the optimizer, not the layer,
adds the L1/L2 term), for every activation fused into a Dense layer, for Dropout with a
fixed mask, and for every loss, including the fused Softmax + categorical cross-entropy.
The optimizer steps are then checked to fold in the regularization gradient.
"""

from __future__ import annotations

from typing import Any

import numpy
import pytest
from model_helpers import gradients, randomize_biases, regularization_factors

import nnback as nb
from nnback.testing import assert_gradient_close, numerical_gradient
from nnback.training import prepare_targets

N = 8
FEATURES = 3
HIDDEN = 5

HIDDEN_ACTIVATIONS = {
    "relu": nb.ReLU,
    "leaky_relu": lambda: nb.LeakyReLU(0.2),
    "sigmoid": nb.Sigmoid,
    "tanh": nb.Tanh,
    "linear": nb.Linear,
    "softmax": nb.Softmax,
}

# head name -> (output activation, loss, number of outputs, target kind)
HEADS = {
    "softmax+cce(int)": (nb.Softmax, nb.CategoricalCrossentropy, 3, "labels"),
    "softmax+cce(one-hot)": (nb.Softmax, nb.CategoricalCrossentropy, 3, "one-hot"),
    "sigmoid+bce": (nb.Sigmoid, nb.BinaryCrossentropy, 2, "binary"),
    "linear+mse": (nb.Linear, nb.MeanSquaredError, 2, "values"),
    "linear+mae": (nb.Linear, nb.MeanAbsoluteError, 2, "values"),
}


def _targets(kind: str, k: int, rng: numpy.random.Generator) -> numpy.ndarray:
    labels = numpy.arange(N) % k
    if kind == "labels":
        return labels
    if kind == "one-hot":
        return numpy.eye(k)[labels]
    if kind == "binary":
        return (rng.random((N, k)) < 0.5).astype(numpy.float64)
    return rng.uniform(-1.0, 1.0, size=(N, k))


def _model(backend: Any, body: list[Any], head: str, **dense_kwargs: Any) -> nb.Sequential:
    activation, loss, k, _ = HEADS[head]
    layers = [*body, nb.Dense(HIDDEN, k, weight_initializer="xavier", **dense_kwargs), activation()]
    model = nb.Sequential(layers, loss=loss(), optimizer=nb.SGD(0.1), seed=3, dtype="float64")
    model.build(backend)
    randomize_biases(model)
    return model


def _reseed_dropout(model: nb.Sequential, seed: int) -> None:
    """The same keep mask at every forward pass: each Dropout draws from a fresh generator."""
    for layer in model.layers:
        if isinstance(layer, nb.Dropout):
            layer.rng = numpy.random.default_rng(seed)


def _data_loss(model: nb.Sequential, xb: Any, yb: Any) -> float:
    _reseed_dropout(model, 11)
    output = model.forward(xb, training=True)
    loss, _ = model.loss_and_gradient(output, yb, with_grad=False)
    return model.backend.to_float(loss)


def _check_model(model: nb.Sequential, X: numpy.ndarray, y: numpy.ndarray) -> None:
    """backward() against central differences of the data loss, parameter by parameter."""
    backend = model.backend
    xb = backend.asarray(X)
    yb = backend.asarray(prepare_targets(model, y, X.shape[0]))
    base = model.get_weights()

    _reseed_dropout(model, 11)
    output = model.forward(xb, training=True)
    _, grad = model.loss_and_gradient(output, yb)
    model.backward(grad)
    analytic = gradients(model)

    for index, value in enumerate(base):

        def loss_at(candidate: numpy.ndarray, index: int = index) -> float:
            weights = [w.copy() for w in base]
            weights[index] = candidate
            model.set_weights(weights)
            return _data_loss(model, xb, yb)

        numeric = numerical_gradient(loss_at, value)
        assert_gradient_close(analytic[index], numeric, f"{model!r} parameter {index}")
    model.set_weights(base)


def _kink_free(model: nb.Sequential, X: numpy.ndarray) -> None:
    """The test's premise: no hidden pre-activation lies within 1e-3 of the ReLU kink at 0
    (a finite-difference step of 1e-5 then never crosses it)."""
    dense = model.layers[0]
    z = X @ model.backend.to_numpy(dense.weights) + model.backend.to_numpy(dense.biases)
    assert numpy.abs(z).min() > 1e-3, "a pre-activation sits on the kink: change the seed"


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("hidden", sorted(HIDDEN_ACTIVATIONS))
def test_backward_matches_finite_differences(backend: Any, hidden: str, head: str) -> None:
    rng = numpy.random.default_rng(5)
    X = rng.uniform(-1.0, 1.0, size=(N, FEATURES))
    y = _targets(HEADS[head][3], HEADS[head][2], rng)
    body = [
        nb.Dense(FEATURES, HIDDEN, weight_initializer="xavier"),
        HIDDEN_ACTIVATIONS[hidden](),
    ]
    model = _model(backend, body, head)
    if hidden in ("relu", "leaky_relu"):
        _kink_free(model, X)
    _check_model(model, X, y)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_backward_with_dropout_and_fixed_mask(backend: Any, head: str) -> None:
    rng = numpy.random.default_rng(6)
    X = rng.uniform(-1.0, 1.0, size=(N, FEATURES))
    y = _targets(HEADS[head][3], HEADS[head][2], rng)
    body = [
        nb.Dense(FEATURES, 6, weight_initializer="xavier"),
        nb.Tanh(),
        nb.Dropout(0.4),
        nb.Dense(6, HIDDEN, weight_initializer="xavier"),
        nb.Sigmoid(),
    ]
    model = _model(backend, body, head)
    _reseed_dropout(model, 11)
    mask = numpy.asarray(
        model.backend.to_numpy(
            model.layers[2].forward(model.backend.asarray(numpy.ones((N, 6))), training=True)
        )
    )
    # The premise: the fixed mask drops some units and keeps others (scaled by 1 / 0.6).
    assert set(numpy.unique(numpy.round(mask, 12))) == {0.0, round(1 / 0.6, 12)}
    _check_model(model, X, y)


REGULARIZATION = {
    "weight_regularizer_l1": 3e-2,
    "weight_regularizer_l2": 5e-2,
    "bias_regularizer_l1": 2e-2,
    "bias_regularizer_l2": 4e-2,
}


def _regularized_model(backend: Any, optimizer: nb.Optimizer) -> nb.Sequential:
    model = nb.Sequential(
        [
            nb.Dense(FEATURES, HIDDEN, weight_initializer="xavier", **REGULARIZATION),
            nb.Tanh(),
            nb.Dense(HIDDEN, 3, weight_initializer="xavier", **REGULARIZATION),
            nb.Softmax(),
        ],
        loss=nb.CategoricalCrossentropy(),
        optimizer=optimizer,
        seed=4,
        dtype="float64",
    )
    model.build(backend)
    randomize_biases(model)
    return model


def test_backward_excludes_regularization(backend: Any) -> None:
    """With L1/L2 on every parameter, backward is still the gradient of the data loss."""
    rng = numpy.random.default_rng(7)
    X = rng.uniform(-1.0, 1.0, size=(N, FEATURES))
    model = _regularized_model(backend, nb.SGD(0.1))
    _check_model(model, X, numpy.arange(N) % 3)


def test_regularization_loss_is_the_penalty(backend: Any) -> None:
    model = _regularized_model(backend, nb.SGD(0.1))
    expected = sum(
        l1 * numpy.abs(w).sum() + l2 * (w * w).sum()
        for w, (l1, l2) in zip(model.get_weights(), regularization_factors(model), strict=True)
    )
    assert model.regularization_loss() == pytest.approx(expected, rel=1e-12)
    assert expected > 0.01  # the penalty is not negligible next to the data loss


def _one_step(model: nb.Sequential, X: numpy.ndarray, y: numpy.ndarray) -> list[numpy.ndarray]:
    """Gradients of one full batch, then one optimizer step; returns the gradients."""
    backend = model.backend
    output = model.forward(backend.asarray(X), training=True)
    _, grad = model.loss_and_gradient(output, backend.asarray(y))
    model.backward(grad)
    data_grads = gradients(model)
    model.optimizer.step(model.trainable_layers)
    return data_grads


def test_sgd_step_follows_the_total_loss_gradient(backend: Any) -> None:
    """One SGD step moves each parameter by -lr times the numerical gradient of data + penalty."""
    rng = numpy.random.default_rng(8)
    X = rng.uniform(-1.0, 1.0, size=(N, FEATURES))
    y = numpy.arange(N) % 3
    lr = 0.3
    model = _regularized_model(backend, nb.SGD(lr))
    base = model.get_weights()
    xb, yb = backend.asarray(X), backend.asarray(y)

    total_grads = []
    for index, value in enumerate(base):

        def total_loss(candidate: numpy.ndarray, index: int = index) -> float:
            weights = [w.copy() for w in base]
            weights[index] = candidate
            model.set_weights(weights)
            return _data_loss(model, xb, yb) + model.regularization_loss()

        total_grads.append(numerical_gradient(total_loss, value))
    model.set_weights(base)

    data_grads = _one_step(model, X, y)
    after = model.get_weights()
    for index, (w0, w1) in enumerate(zip(base, after, strict=True)):
        # The penalty changes the step: the test could not pass with the data gradient alone.
        assert not numpy.allclose(total_grads[index], data_grads[index], rtol=1e-3, atol=0)
        assert_gradient_close((w0 - w1) / lr, total_grads[index], f"SGD step of parameter {index}")


def _expected_first_step(name: str, w: numpy.ndarray, g: numpy.ndarray, lr: float) -> Any:
    """The optimizers' documented first step from zero state, for regularized gradient g."""
    eps = 1e-7
    if name in ("sgd", "sgd+momentum"):
        return w - lr * g  # the velocity starts at 0, so the first momentum step is plain SGD
    if name in ("adagrad", "adam"):
        # AdaGrad: cache = g**2. Adam: m_hat = g and v_hat = g**2 after bias correction.
        return w - lr * g / (numpy.abs(g) + eps)
    return w - lr * g / (numpy.sqrt(0.1 * g * g) + eps)  # RMSprop, rho = 0.9


OPTIMIZERS = {
    "sgd": lambda lr: nb.SGD(lr),
    "sgd+momentum": lambda lr: nb.SGD(lr, momentum=0.9),
    "adagrad": lambda lr: nb.AdaGrad(lr),
    "rmsprop": lambda lr: nb.RMSprop(lr),
    "adam": lambda lr: nb.Adam(lr),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_step_folds_in_regularization(backend: Any, name: str) -> None:
    rng = numpy.random.default_rng(9)
    X = rng.uniform(-1.0, 1.0, size=(N, FEATURES))
    y = numpy.arange(N) % 3
    lr = 0.05
    model = _regularized_model(backend, OPTIMIZERS[name](lr))
    before = model.get_weights()
    data_grads = _one_step(model, X, y)
    after = model.get_weights()
    flipped = 0
    for index, (w, dw, (l1, l2)) in enumerate(
        zip(before, data_grads, regularization_factors(model), strict=True)
    ):
        g = dw + l1 * numpy.sign(w) + 2 * l2 * w
        flipped += int((numpy.sign(g) != numpy.sign(dw)).sum())
        numpy.testing.assert_allclose(
            after[index],
            _expected_first_step(name, w, g, lr),
            rtol=1e-12,
            atol=1e-15,
            err_msg=f"{name}: parameter {index}",
        )
    # The premise for the sign-like adaptive steps: the penalty flips some gradient signs, so
    # forgetting it would change the step.
    assert flipped > 0


def test_fit_step_equals_manual_regularized_sgd(backend: Any) -> None:
    """fit() with one full batch and no shuffling makes exactly the step computed by hand."""
    rng = numpy.random.default_rng(10)
    X = rng.uniform(-1.0, 1.0, size=(N, FEATURES))
    y = numpy.arange(N) % 3
    lr = 0.2
    reference = _regularized_model(backend, nb.SGD(lr))
    model = _regularized_model(backend, nb.SGD(lr))
    before = reference.get_weights()
    data_grads = _one_step(reference, X, y)
    model.fit(X, y, epochs=1, batch_size=N, shuffle=False, verbose=0)
    factors = regularization_factors(model)
    for index, (w, dw, (l1, l2)) in enumerate(zip(before, data_grads, factors, strict=True)):
        expected = w - lr * (dw + l1 * numpy.sign(w) + 2 * l2 * w)
        numpy.testing.assert_allclose(model.get_weights()[index], expected, rtol=1e-12, atol=1e-15)
