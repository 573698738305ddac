"""Parity of the activations, forward and backward, and of softmax, with the reference."""

from __future__ import annotations

import numpy
import pytest

from nnback.backends.base import ACTIVATIONS, Backend
from nnback.errors import InputError
from nnback.testing import assert_close, assert_unchanged, make_input, random_array

N, K = 32, 10  # a batch of 32 rows of 10 units (softmax over 10 classes)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_forward(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    activation: str,
) -> None:
    # Logits in [-2, 2] (a spread of at most 4) kept 0.01 away from relu's kink.
    z, z64 = make_input(backend, random_array(rng, (N, K), -2, 2, min_abs=0.01), dtype, layout)
    got = backend.activation_forward(z, activation)
    assert_close("activation_forward", backend, got, reference.activation_forward(z64, activation))
    assert_unchanged(backend, z, z64, "z")


@pytest.mark.parametrize("alpha", [0.01, 0.2])
def test_leaky_relu_slope(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    alpha: float,
) -> None:
    z, z64 = make_input(backend, random_array(rng, (N, K), -2, 2, min_abs=0.01), dtype)
    dy, dy64 = make_input(backend, random_array(rng, (N, K)), dtype)
    y = backend.activation_forward(z, "leaky_relu", alpha=alpha)
    y64 = reference.activation_forward(z64, "leaky_relu", alpha=alpha)
    assert_close("activation_forward", backend, y, y64, dtype=dtype)
    got = backend.activation_backward(dy, y, "leaky_relu", alpha=alpha)
    want = reference.activation_backward(dy64, y64, "leaky_relu", alpha=alpha)
    assert_close("activation_backward", backend, got, want, dtype=dtype)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_backward(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    activation: str,
) -> None:
    # The output y comes from the reference forward pass, rounded to the dtype, so both
    # sides differentiate at exactly the same y.
    z64 = random_array(rng, (N, K), -2, 2, min_abs=0.01)
    y, y64 = make_input(backend, reference.activation_forward(z64, activation), dtype, layout)
    dy, dy64 = make_input(backend, random_array(rng, (N, K)), dtype, layout)
    got = backend.activation_backward(dy, y, activation)
    want = reference.activation_backward(dy64, y64, activation)
    assert_close("activation_backward", backend, got, want, dtype=dtype)
    assert_unchanged(backend, dy, dy64, "dy")
    assert_unchanged(backend, y, y64, "y")


@pytest.mark.parametrize("offset", [0.0, 1000.0, -1000.0])
def test_softmax(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    offset: float,
) -> None:
    # Logits of +-1000 overflow exp unless the row maximum is subtracted first. In float32
    # 1000 + z rounds z to ~6e-5, but both sides get the same rounded values.
    z, z64 = make_input(backend, offset + random_array(rng, (N, K), -2, 2), dtype, layout)
    got = backend.softmax(z)
    want = reference.softmax(z64)
    assert numpy.isfinite(want).all()
    assert_close("softmax", backend, got, want, dtype=dtype)
    numpy.testing.assert_allclose(backend.to_numpy(got).sum(axis=1), 1.0, rtol=1e-5)


def test_softmax_activation_is_softmax(
    backend: Backend, rng: numpy.random.Generator, dtype: numpy.dtype
) -> None:
    z, _ = make_input(backend, random_array(rng, (N, K), -2, 2), dtype)
    numpy.testing.assert_array_equal(
        backend.to_numpy(backend.activation_forward(z, "softmax")),
        backend.to_numpy(backend.softmax(z)),
    )


def test_sigmoid_saturates_without_overflow(backend: Backend, dtype: numpy.dtype) -> None:
    # exp(-z) for z = -200 overflows float32; the stable form never takes exp of a positive.
    z, _ = make_input(backend, numpy.array([[-200.0, -50.0, 0.0, 50.0, 200.0]] * 2), dtype)
    with numpy.errstate(over="raise"):
        y = backend.to_numpy(backend.activation_forward(z, "sigmoid"))
    assert numpy.isfinite(y).all()
    assert y[0, 0] == 0.0 or y[0, 0] < 1e-40
    assert y[0, 2] == 0.5
    assert y[0, 4] == 1.0


@pytest.mark.parametrize("activation", ["gelu", "ReLU", ""])
def test_unknown_activation_is_refused(
    backend: Backend, rng: numpy.random.Generator, activation: str
) -> None:
    z, _ = make_input(backend, random_array(rng, (4, 3)), "float64")
    w, _ = make_input(backend, random_array(rng, (3, 2)), "float64")
    b, _ = make_input(backend, random_array(rng, (1, 2)), "float64")
    with pytest.raises(InputError, match="unknown activation"):
        backend.activation_forward(z, activation)
    with pytest.raises(InputError, match="unknown activation"):
        backend.activation_backward(z, z, activation)
    with pytest.raises(InputError, match="unknown activation"):
        backend.dense_forward(z, w, b, activation)
