"""The optimizer-step and dropout kernels, executed on the CPU, against the NumPy reference.

These kernels are element-wise and repeat the reference's operations in its order, each
correctly rounded (+, -, *, /, sqrt), with every Python hyper-parameter rounded to the dtype
first as NumPy does; so after several steps they must equal the reference run in the same
dtype bit for bit, subnormal flushes included, and the float64 reference within the
tolerance table.
"""

from __future__ import annotations

import numpy
import pytest
from cuda_helpers import DTYPES, REFERENCE, assert_bitwise, assert_within, f64, i64, rounded

from nnback.backends.base import adam_scalars

STEPS = 5
REGULARIZATION = {"none": (0.0, 0.0), "l1": (1e-3, 0.0), "l2": (0.0, 2e-3), "both": (1e-3, 2e-3)}
GRIDS = [((1,), (32,)), ((2,), (64,)), ((9,), (256,))]

# optimizer -> (number of state arrays, keyword hyper-parameters of the reference)
OPTIMIZERS = {
    "sgd": (0, {"learning_rate": 0.1}),
    "sgd_momentum": (1, {"learning_rate": 0.05, "momentum": 0.9}),
    "adagrad": (1, {"learning_rate": 0.05, "epsilon": 1e-7}),
    "rmsprop": (1, {"learning_rate": 0.01, "rho": 0.9, "epsilon": 1e-7}),
    "adam": (2, {"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
}


def _reference_step(
    name: str,
    param: numpy.ndarray,
    grad: numpy.ndarray,
    state: list[numpy.ndarray],
    step: int,
    l1: float,
    l2: float,
) -> None:
    hyper = OPTIMIZERS[name][1]
    if name in ("sgd", "sgd_momentum"):
        velocity = state[0] if state else None
        REFERENCE.sgd_update_inplace(param, grad, velocity, l1=l1, l2=l2, **hyper)
    elif name == "adam":
        REFERENCE.adam_update_inplace(
            param, grad, state[0], state[1], step=step, l1=l1, l2=l2, **hyper
        )
    else:
        getattr(REFERENCE, f"{name}_update_inplace")(param, grad, state[0], l1=l1, l2=l2, **hyper)


def _kernel_step(
    cpu: dict,
    name: str,
    grid: tuple,
    block: tuple,
    param: numpy.ndarray,
    grad: numpy.ndarray,
    state: list[numpy.ndarray],
    step: int,
    l1: float,
    l2: float,
) -> None:
    h = OPTIMIZERS[name][1]
    lr = h["learning_rate"]
    beta_1, beta_2 = h.get("beta_1", 0.0), h.get("beta_2", 0.0)
    step_size, root = adam_scalars(lr, step, beta_1, beta_2)
    constants = {
        "sgd": (lr, l1, 2 * l2),
        "sgd_momentum": (lr, h.get("momentum", 0.0), l1, 2 * l2),
        "adagrad": (lr, h.get("epsilon", 0.0), l1, 2 * l2),
        "rmsprop": (
            lr,
            h.get("rho", 0.0),
            1 - h.get("rho", 0.0),
            h.get("epsilon", 0.0),
            l1,
            2 * l2,
        ),
        "adam": (
            step_size,
            beta_1,
            1 - beta_1,
            beta_2,
            1 - beta_2,
            root,
            h.get("epsilon", 0.0),
            l1,
            2 * l2,
        ),
    }[name]
    kernel = cpu["optimizers"].get_function(f"{name}_step_f{str(param.dtype)[-2:]}")
    kernel(grid, block, (param, grad, *state, i64(param.size), *(f64(c) for c in constants)))


@pytest.mark.parametrize("grid, block", GRIDS)
@pytest.mark.parametrize("regularization", list(REGULARIZATION))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_steps(
    cpu: dict, dtype: str, name: str, regularization: str, grid: tuple, block: tuple
) -> None:
    rng = numpy.random.default_rng(10)
    l1, l2 = REGULARIZATION[regularization]
    shape = (23, 19)  # 437 values: no block size divides it
    param, param64 = rounded(rng, shape, dtype)
    states = [numpy.zeros(shape, dtype) for _ in range(OPTIMIZERS[name][0])]
    same = (param.copy(), [s.copy() for s in states])  # the reference in the same dtype
    wide = (param64, [s.astype(numpy.float64) for s in states])  # and in float64
    for step in range(1, STEPS + 1):
        grad = rounded(rng, shape, dtype)[0]
        grad[0, :3] = 0  # parameters whose gradient is zero: l1's sign and decaying states
        _kernel_step(cpu, name, grid, block, param, grad, states, step, l1, l2)
        _reference_step(name, same[0], grad, same[1], step, l1, l2)
        _reference_step(name, wide[0], grad.astype(numpy.float64), wide[1], step, l1, l2)
    op = "sgd_update_inplace" if name.startswith("sgd") else f"{name}_update_inplace"
    assert_bitwise(param, same[0], f"{name} param")
    assert_within(op, param, wide[0], dtype, "param")
    for i, state in enumerate(states):
        assert_bitwise(state, same[1][i], f"{name} state {i}")
        assert_within(op, state, wide[1][i], dtype, f"state {i}")


@pytest.mark.parametrize("name", ["sgd_momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_subnormal_states_are_flushed(cpu: dict, dtype: str, name: str) -> None:
    # A zero gradient decays the state geometrically: started just above the smallest normal
    # number (closer than 1 - 0.999, Adam's slowest decay), one step takes it below, where
    # the reference sets it to 0.
    tiny = float(numpy.finfo(dtype).tiny)
    shape = (5, 7)
    param = numpy.ones(shape, dtype)
    grad = numpy.zeros(shape, dtype)
    states = [numpy.full(shape, 1.0005 * tiny, dtype) for _ in range(OPTIMIZERS[name][0])]
    states[-1][0, 0] = 2.0  # a normal value survives
    same = (param.copy(), [s.copy() for s in states])
    _kernel_step(cpu, name, (2,), (32,), param, grad, states, 1, 0.0, 0.0)
    _reference_step(name, same[0], grad, same[1], 1, 0.0, 0.0)
    for i, state in enumerate(states):
        assert_bitwise(state, same[1][i], f"{name} state {i}")
    assert (states[-1].ravel()[1:] == 0).all() and states[-1][0, 0] != 0


@pytest.mark.parametrize("grid, block", GRIDS)
@pytest.mark.parametrize("mask_kind", ["same", "bool"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_apply(cpu: dict, dtype: str, mask_kind: str, grid: tuple, block: tuple) -> None:
    rng = numpy.random.default_rng(11)
    x, x64 = rounded(rng, (31, 17), dtype, -2, 2)
    keep = rng.random(x.shape) >= 0.3
    mask = keep.astype(dtype) if mask_kind == "same" else keep
    scale = 1 / (1 - 0.3)
    out = numpy.empty_like(x)
    kernel = f"dropout_apply_f{dtype[-2:]}" + ("_b8" if mask_kind == "bool" else "")
    cpu["dropout"].get_function(kernel)(grid, block, (x, mask, out, i64(x.size), f64(scale)))
    assert_within("dropout_forward", out, REFERENCE.dropout_forward(x64, keep, scale), dtype)
    # (x * mask) * scale, as the reference evaluates it, for either kind of mask.
    assert_bitwise(out, REFERENCE.dropout_forward(x, mask, scale), "dropout")
