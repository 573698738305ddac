"""Optimizer steps, fused into one in-place pass per parameter.

Each kernel takes the parameter, its gradient and its state flattened to 1-D C-contiguous
arrays of one dtype, and Python-float hyper-parameters that are rounded to that dtype
inside (as NumPy rounds a Python scalar next to a float32 array). Per element, in the
reference's order of operations:

1. the regularized gradient ``g = grad + l1 * sign(param) + (2 * l2) * param`` (each term
   only when its coefficient is positive, as in ``Backend.regularization_gradient``);
2. the state update;
3. the state flushed to zero where its magnitude is below the dtype's smallest normal
   number ``tiny``, exactly like ``Backend._flush_subnormal_inplace``: moments of
   parameters whose gradient stays zero decay into subnormals, which measured 2-14x slower
   for every op that touches them;
4. the parameter update from the flushed state.

The reference makes about ten passes and as many temporaries; these make one, and the loop
vectorizes because every constant is in the array dtype and nothing in it can raise.
"""

from __future__ import annotations

import numpy as np

from .runtime import kernel

__all__ = ["adagrad", "adam", "rmsprop", "sgd", "sgd_momentum"]

Array = np.ndarray  # annotations only: Numba infers the types from the arguments


@kernel
def _regularized(
    g: float, p: float, l1: float, l2_twice: float, use_l1: bool, use_l2: bool, one: float
) -> float:
    """``g + l1 * sign(p) + l2_twice * p`` with the reference's conditions and rounding.

    ``one`` carries the dtype: an integer literal here would promote float32 to float64.
    """
    if use_l1:
        # numpy.sign: 1, -1, 0 for a zero, NaN for NaN (p * 0 keeps both).
        zero = one - one
        sign = one if p > zero else (-one if p < zero else p * zero)
        g = g + l1 * sign
    if use_l2:
        g = g + l2_twice * p
    return g


@kernel
def sgd(param: Array, grad: Array, learning_rate: float, l1: float, l2: float) -> None:
    """Reference ``sgd_update_inplace`` without momentum: ``param -= lr * g``."""
    dt = param.dtype.type
    lr, c1, c2, one = dt(learning_rate), dt(l1), dt(2.0 * l2), dt(1)
    for i in range(param.size):
        p = param[i]
        g = _regularized(grad[i], p, c1, c2, l1 > 0, l2 > 0, one)
        param[i] = p - lr * g


@kernel
def sgd_momentum(
    param: Array,
    grad: Array,
    velocity: Array,
    learning_rate: float,
    momentum: float,
    l1: float,
    l2: float,
    tiny: float,
) -> None:
    """Reference ``sgd_update_inplace`` with momentum.

    ``velocity = momentum * velocity - lr * g``, flushed; ``param += velocity``.
    """
    dt = param.dtype.type
    lr, mu, c1, c2, small = dt(learning_rate), dt(momentum), dt(l1), dt(2.0 * l2), dt(tiny)
    zero, one = dt(0), dt(1)
    for i in range(param.size):
        p = param[i]
        g = _regularized(grad[i], p, c1, c2, l1 > 0, l2 > 0, one)
        v = velocity[i] * mu
        v = v - lr * g
        v = zero if abs(v) < small else v
        velocity[i] = v
        param[i] = p + v


@kernel
def adagrad(
    param: Array,
    grad: Array,
    cache: Array,
    learning_rate: float,
    epsilon: float,
    l1: float,
    l2: float,
    tiny: float,
) -> None:
    """Reference ``adagrad_update_inplace``.

    ``cache += g * g``, flushed; ``param -= lr * g / (sqrt(cache) + epsilon)``.
    """
    dt = param.dtype.type
    lr, eps, c1, c2, small = dt(learning_rate), dt(epsilon), dt(l1), dt(2.0 * l2), dt(tiny)
    zero, one = dt(0), dt(1)
    for i in range(param.size):
        p = param[i]
        g = _regularized(grad[i], p, c1, c2, l1 > 0, l2 > 0, one)
        c = cache[i] + g * g
        c = zero if abs(c) < small else c
        cache[i] = c
        param[i] = p - lr * g / (np.sqrt(c) + eps)


@kernel
def rmsprop(
    param: Array,
    grad: Array,
    cache: Array,
    learning_rate: float,
    rho: float,
    epsilon: float,
    l1: float,
    l2: float,
    tiny: float,
) -> None:
    """Reference ``rmsprop_update_inplace``.

    ``cache = rho * cache + (1 - rho) * g * g``, flushed;
    ``param -= lr * g / (sqrt(cache) + epsilon)``.
    """
    dt = param.dtype.type
    lr, eps, c1, c2, small = dt(learning_rate), dt(epsilon), dt(l1), dt(2.0 * l2), dt(tiny)
    decay, keep = dt(rho), dt(1.0 - rho)
    zero, one = dt(0), dt(1)
    for i in range(param.size):
        p = param[i]
        g = _regularized(grad[i], p, c1, c2, l1 > 0, l2 > 0, one)
        c = cache[i] * decay
        c = c + keep * (g * g)
        c = zero if abs(c) < small else c
        cache[i] = c
        param[i] = p - lr * g / (np.sqrt(c) + eps)


@kernel
def adam(
    param: Array,
    grad: Array,
    m: Array,
    v: Array,
    step_size: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    root_correction: float,
    l1: float,
    l2: float,
    tiny: float,
) -> None:
    """Reference ``adam_update_inplace``, with its two scalars from ``adam_scalars``.

    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g g``; both flushed;
    ``param -= (m / (sqrt(v) * root_correction + epsilon)) * step_size``.
    """
    dt = param.dtype.type
    eps, c1, c2, small = dt(epsilon), dt(l1), dt(2.0 * l2), dt(tiny)
    b1, b1c, b2, b2c = dt(beta_1), dt(1.0 - beta_1), dt(beta_2), dt(1.0 - beta_2)
    size, root = dt(step_size), dt(root_correction)
    zero, one = dt(0), dt(1)
    for i in range(param.size):
        p = param[i]
        g = _regularized(grad[i], p, c1, c2, l1 > 0, l2 > 0, one)
        mi = m[i] * b1
        mi = mi + b1c * g
        vi = v[i] * b2
        vi = vi + b2c * (g * g)
        mi = zero if abs(mi) < small else mi
        vi = zero if abs(vi) < small else vi
        m[i] = mi
        v[i] = vi
        param[i] = p - (mi / (np.sqrt(vi) * root + eps)) * size
