"""Parity of the in-place optimizer steps over several steps, and the subnormal flush."""

from __future__ import annotations

from typing import Any

import numpy
import pytest

from nnback.backends.base import Backend
from nnback.errors import InputError
from nnback.testing import assert_close, make_input, random_array

SHAPE = (12, 7)
STEPS = 3
REGULARIZATION = {"none": (0.0, 0.0), "l1": (1e-2, 0.0), "l2": (0.0, 1e-2), "l1l2": (1e-2, 2e-2)}

# optimizer -> (state names, keyword arguments of the step); states start positive where
# they are sums of squares.
OPTIMIZERS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "sgd": ((), {"learning_rate": 0.05}),
    "sgd_momentum": (("velocity",), {"learning_rate": 0.05, "momentum": 0.9}),
    "sgd_velocity_no_momentum": (("velocity",), {"learning_rate": 0.05, "momentum": 0.0}),
    "adagrad": (("cache",), {"learning_rate": 0.05}),
    "rmsprop": (("cache",), {"learning_rate": 0.01, "rho": 0.9}),
    "adam": (("m", "v"), {"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999}),
}
POSITIVE_STATES = {"cache", "v"}


def _op(optimizer: str) -> str:
    return optimizer.split("_")[0] + "_update_inplace"


def _step(
    backend: Backend, optimizer: str, param: Any, grad: Any, states: list[Any], step: int, **kw: Any
) -> None:
    names, options = OPTIMIZERS[optimizer]
    method = getattr(backend, _op(optimizer))
    if optimizer == "sgd":
        result = method(param, grad, None, **options, **kw)
    elif optimizer == "adam":
        result = method(param, grad, *states, step=step, **options, **kw)
    else:
        result = method(param, grad, *states, **options, **kw)
    assert result is None, "an _inplace op returns None"


@pytest.mark.parametrize("regularization", REGULARIZATION)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_optimizer_steps(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    optimizer: str,
    regularization: str,
) -> None:
    l1, l2 = REGULARIZATION[regularization]
    names, _ = OPTIMIZERS[optimizer]
    # Parameters kept 0.5 from 0: 3 steps move them by < 0.5 (AdaGrad: lr / sqrt(0.1) per
    # step), so none crosses 0 and sign(param) (L1) agrees in every dtype.
    param, param64 = make_input(
        backend, random_array(rng, SHAPE, -2, 2, min_abs=0.5), dtype, layout
    )
    states, states64 = [], []
    for name in names:
        values = random_array(rng, SHAPE, 0.1, 2) if name in POSITIVE_STATES else None
        values = random_array(rng, SHAPE) if values is None else values
        state, state64 = make_input(backend, values, dtype, layout)
        states.append(state)
        states64.append(state64)
    for step in range(1, STEPS + 1):
        grad, grad64 = make_input(backend, random_array(rng, SHAPE), dtype, layout)
        _step(backend, optimizer, param, grad, states, step, l1=l1, l2=l2)
        _step(reference, optimizer, param64, grad64, states64, step, l1=l1, l2=l2)
    op = _op(optimizer)
    assert_close(op, backend, param, param64, dtype=dtype, label="param")
    for name, state, state64 in zip(names, states, states64, strict=True):
        assert_close(op, backend, state, state64, dtype=dtype, label=name)


def test_sgd_without_momentum_leaves_velocity(
    backend: Backend, rng: numpy.random.Generator, dtype: numpy.dtype
) -> None:
    param, _ = make_input(backend, random_array(rng, SHAPE), dtype)
    velocity, velocity64 = make_input(backend, random_array(rng, SHAPE), dtype)
    grad, _ = make_input(backend, random_array(rng, SHAPE), dtype)
    backend.sgd_update_inplace(param, grad, velocity, 0.1, momentum=0.0)
    numpy.testing.assert_array_equal(backend.to_numpy(velocity), velocity64.astype(dtype))


@pytest.mark.parametrize("step", [0, -1])
def test_adam_step_counts_from_one(backend: Backend, dtype: numpy.dtype, step: int) -> None:
    p = backend.zeros((2, 2), dtype)
    with pytest.raises(InputError, match="from 1"):
        backend.adam_update_inplace(p, p, backend.zeros((2, 2), dtype), p, 0.1, step=step)


# Subnormal flush: state values that fall below the dtype's smallest normal number must be
# exactly 0 afterwards, on every backend. Row 0 starts subnormal, row 1 starts just above
# `tiny` and decays below it (every decay factor used here is < 1 / 1.0005), row 2 starts
# at 4 * tiny and stays normal (a flush in the wrong dtype or with the wrong threshold
# would zero it). Their gradients are 0, so only the decay moves them.
START = numpy.array([0.5, 1.0005, 4.0])


@pytest.mark.parametrize("optimizer", ["sgd_momentum", "adagrad", "rmsprop", "adam"])
def test_subnormal_state_is_flushed(
    backend: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    optimizer: str,
) -> None:
    tiny = float(numpy.finfo(dtype).tiny)
    names, _ = OPTIMIZERS[optimizer]
    grad_values = random_array(rng, (6, 4))
    grad_values[:3] = 0.0
    param, _ = make_input(backend, random_array(rng, (6, 4)), dtype, layout)
    grad, _ = make_input(backend, grad_values, dtype, layout)
    states = []
    for name in names:
        values = random_array(rng, (6, 4), 0.1, 1.0)
        sign = 1.0 if name in POSITIVE_STATES else -1.0  # momentum terms may be negative
        values[:3] = sign * tiny * START[:, None]
        states.append(make_input(backend, values.astype(dtype), dtype, layout)[0])
    before = backend.to_numpy(param).copy()
    _step(backend, optimizer, param, grad, states, step=1)
    for name, state in zip(names, states, strict=True):
        host = backend.to_numpy(state)
        if optimizer == "adagrad":  # the cache never decays: only the subnormal row flushes
            assert (host[0] == 0).all(), f"{name}: subnormal values not flushed"
            assert (numpy.abs(host[1:3]) >= tiny).all(), f"{name}: normal values flushed"
        else:
            assert (host[:2] == 0).all(), f"{name}: values below tiny not flushed: {host[:2]}"
            assert (numpy.abs(host[2]) >= tiny).all(), f"{name}: normal values flushed"
        assert (host[3:] != 0).all()
    # A zero-gradient parameter moves by at most a subnormal-sized step, i.e. not visibly.
    numpy.testing.assert_allclose(backend.to_numpy(param)[:2], before[:2], rtol=1e-6, atol=0)
