"""Analytic gradients of the reference against central finite differences, in float64.

The parity tests prove every backend computes what the reference computes; these prove the
reference computes the right derivatives. Inputs stay away from kinks (relu at 0, |x| at
0, sign at 0) and from the loss clips, where a finite difference is not a derivative.
"""

from __future__ import annotations

import numpy
import pytest

from nnback.backends.base import ACTIVATIONS, Backend
from nnback.testing import assert_gradient_close, numerical_gradient, random_array

N, K_IN, K_OUT = 4, 3, 5


@pytest.fixture
def r(rng: numpy.random.Generator) -> numpy.ndarray:
    """Random weights of a scalar probe loss sum(r * y), so dL/dy = r."""
    return random_array(rng, (N, K_OUT))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_backward(
    reference: Backend, rng: numpy.random.Generator, r: numpy.ndarray, activation: str
) -> None:
    z = random_array(rng, (N, K_OUT), -2, 2, min_abs=0.1)

    def probe(z_: numpy.ndarray) -> float:
        return float(numpy.sum(r * reference.activation_forward(z_, activation, alpha=0.1)))

    y = reference.activation_forward(z, activation, alpha=0.1)
    analytic = reference.activation_backward(r, y, activation, alpha=0.1)
    assert_gradient_close(analytic, numerical_gradient(probe, z), f"{activation} dz")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_backward(
    reference: Backend, rng: numpy.random.Generator, r: numpy.ndarray, activation: str
) -> None:
    # Redraw until every pre-activation is at least 0.05 from relu's kink (a few tries).
    while True:
        x = random_array(rng, (N, K_IN))
        w = random_array(rng, (K_IN, K_OUT))
        b = random_array(rng, (1, K_OUT))
        if (numpy.abs(x @ w + b) >= 0.05).all():
            break

    def probe(x_: numpy.ndarray, w_: numpy.ndarray, b_: numpy.ndarray) -> float:
        return float(numpy.sum(r * reference.dense_forward(x_, w_, b_, activation, alpha=0.1)))

    y = reference.dense_forward(x, w, b, activation, alpha=0.1)
    dx, dw, db = reference.dense_backward(r, x, w, y, activation, alpha=0.1)
    assert_gradient_close(dx, numerical_gradient(lambda x_: probe(x_, w, b), x), "dx")
    assert_gradient_close(dw, numerical_gradient(lambda w_: probe(x, w_, b), w), "dw")
    assert_gradient_close(db, numerical_gradient(lambda b_: probe(x, w, b_), b), "db")


def _labels(rng: numpy.random.Generator, kind: str) -> numpy.ndarray:
    labels = rng.integers(0, K_OUT, size=N)
    return labels if kind == "int" else numpy.eye(K_OUT)[labels]


@pytest.mark.parametrize("kind", ["int", "onehot"])
def test_softmax_crossentropy(reference: Backend, rng: numpy.random.Generator, kind: str) -> None:
    logits = random_array(rng, (N, K_OUT), -3, 3)
    y = _labels(rng, kind)
    _, grad = reference.softmax_crossentropy(logits, y)
    numeric = numerical_gradient(lambda z: reference.softmax_crossentropy(z, y, False)[0], logits)
    assert_gradient_close(grad, numeric, f"softmax_crossentropy ({kind})")


@pytest.mark.parametrize("kind", ["int", "onehot"])
def test_categorical_crossentropy(
    reference: Backend, rng: numpy.random.Generator, kind: str
) -> None:
    # Probabilities in [0.05, 0.95]: far from the clips, each entry a free variable.
    p = rng.uniform(0.05, 0.95, size=(N, K_OUT))
    y = _labels(rng, kind)
    _, grad = reference.categorical_crossentropy(p, y)
    numeric = numerical_gradient(lambda q: reference.categorical_crossentropy(q, y, False)[0], p)
    assert_gradient_close(grad, numeric, f"categorical_crossentropy ({kind})")


def test_binary_crossentropy(reference: Backend, rng: numpy.random.Generator) -> None:
    p = rng.uniform(0.05, 0.95, size=(N, K_OUT))
    t = (rng.random(size=(N, K_OUT)) < 0.5).astype(numpy.float64)
    _, grad = reference.binary_crossentropy(p, t)
    numeric = numerical_gradient(lambda q: reference.binary_crossentropy(q, t, False)[0], p)
    assert_gradient_close(grad, numeric, "binary_crossentropy")


@pytest.mark.parametrize("op", ["mean_squared_error", "mean_absolute_error"])
def test_regression_losses(reference: Backend, rng: numpy.random.Generator, op: str) -> None:
    true = random_array(rng, (N, K_OUT))
    pred = true + random_array(rng, (N, K_OUT), -1, 1, min_abs=0.1)  # off MAE's kinks
    loss = getattr(reference, op)
    _, grad = loss(pred, true)
    numeric = numerical_gradient(lambda q: loss(q, true, False)[0], pred)
    assert_gradient_close(grad, numeric, op)


@pytest.mark.parametrize("l1, l2", [(1e-2, 0.0), (0.0, 3e-2), (2e-2, 5e-2)])
def test_regularization_gradient_folded_by_optimizers(
    reference: Backend, rng: numpy.random.Generator, l1: float, l2: float
) -> None:
    # The optimizers fold l1 * sign(p) + 2 * l2 * p into the gradient: it must be the
    # derivative of regularization_loss, or training minimises another objective.
    param = random_array(rng, (N, K_IN), -2, 2, min_abs=0.1)
    numeric = numerical_gradient(lambda p: reference.regularization_loss(p, l1, l2), param)
    folded = reference.regularization_gradient(param, numpy.zeros_like(param), l1, l2)
    assert_gradient_close(folded, numeric, f"regularization l1={l1} l2={l2}")
    # And a plain SGD step with (l1, l2) equals one on the gradient plus that derivative.
    grad = random_array(rng, (N, K_IN))
    stepped, expected = param.copy(), param.copy()
    reference.sgd_update_inplace(stepped, grad, None, 0.1, l1=l1, l2=l2)
    reference.sgd_update_inplace(expected, grad + numeric, None, 0.1)
    numpy.testing.assert_allclose(stepped, expected, rtol=1e-9, atol=1e-10)


def test_dropout_backward(reference: Backend, rng: numpy.random.Generator) -> None:
    x = random_array(rng, (N, K_OUT))
    mask = (rng.random(size=(N, K_OUT)) >= 0.5).astype(numpy.float64)
    r = random_array(rng, (N, K_OUT))
    numeric = numerical_gradient(
        lambda x_: float(numpy.sum(r * reference.dropout_forward(x_, mask, 2.0))), x
    )
    assert_gradient_close(reference.dropout_backward(r, mask, 2.0), numeric, "dropout")
