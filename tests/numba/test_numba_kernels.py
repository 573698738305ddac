"""The numba backend's kernels on odd sizes, their in-place contracts, and the subnormal flush.

Sizes of 1 and sizes that are not a multiple of the SIMD width (8 float32 or 4 float64 per
AVX2 register) exercise the vectorized loops' scalar remainders. Every call here must take
the kernel (the ``fallbacks`` spy stays empty), and match the float64 reference within the
parity table's tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy
import pytest

pytest.importorskip("numba", reason="the numba backend needs numba: pip install 'nnback[numba]'")

from nnback.backends.base import ACTIVATIONS, Backend
from nnback.testing import assert_close, random_array

DTYPES = ["float32", "float64"]
SHAPES = [(1, 1), (1, 13), (13, 1), (3, 17), (9, 33), (2, 7)]
DENSE_SHAPES = [(1, 1, 1), (1, 5, 3), (7, 1, 9), (3, 17, 33), (9, 33, 1), (5, 9, 10)]


def _pair(values: numpy.ndarray, dtype: str) -> tuple[numpy.ndarray, numpy.ndarray]:
    """``values`` rounded to ``dtype``, and the same rounded values in float64."""
    rounded = values.astype(dtype)
    return rounded, rounded.astype(numpy.float64)


@pytest.fixture
def rng() -> numpy.random.Generator:
    return numpy.random.default_rng(20240611)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=str)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_odd_sizes(
    numba_backend: Backend,
    reference: Backend,
    fallbacks: list[str],
    rng: numpy.random.Generator,
    dtype: str,
    shape: tuple[int, int, int],
    activation: str,
) -> None:
    n, k_in, k_out = shape
    limit = numpy.sqrt(3.0 / k_in)
    x, x64 = _pair(random_array(rng, (n, k_in)), dtype)
    w, w64 = _pair(random_array(rng, (k_in, k_out), -limit, limit), dtype)
    b, b64 = _pair(random_array(rng, (1, k_out), -0.5, 0.5), dtype)
    dy, dy64 = _pair(random_array(rng, (n, k_out)), dtype)
    y = numba_backend.dense_forward(x, w, b, activation, alpha=0.1)
    y64 = reference.dense_forward(x64, w64, b64, activation, alpha=0.1)
    assert_close("dense_forward", numba_backend, y, y64, dtype=dtype)
    # The backward pass from the backend's own output, rounded values given to both.
    y_in = y.astype(numpy.float64)
    got = numba_backend.dense_backward(dy, x, w, y, activation, alpha=0.1)
    want = reference.dense_backward(dy64, x64, w64, y_in, activation, alpha=0.1)
    for label, g, e in zip(("dx", "dw", "db"), got, want, strict=True):
        assert_close("dense_backward", numba_backend, g, e, dtype=dtype, label=label)
    assert fallbacks == []


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if a != "linear"])
def test_activations_odd_sizes(
    numba_backend: Backend,
    reference: Backend,
    fallbacks: list[str],
    rng: numpy.random.Generator,
    dtype: str,
    shape: tuple[int, int],
    activation: str,
) -> None:
    z, z64 = _pair(random_array(rng, shape, -3, 3, min_abs=0.01), dtype)
    dy, dy64 = _pair(random_array(rng, shape), dtype)
    y = numba_backend.activation_forward(z, activation, alpha=0.2)
    assert_close(
        "activation_forward",
        numba_backend,
        y,
        reference.activation_forward(z64, activation, alpha=0.2),
        dtype=dtype,
    )
    y64 = y.astype(numpy.float64)
    got = numba_backend.activation_backward(dy, y, activation, alpha=0.2)
    want = reference.activation_backward(dy64, y64, activation, alpha=0.2)
    assert_close("activation_backward", numba_backend, got, want, dtype=dtype)
    assert_close(
        "softmax", numba_backend, numba_backend.softmax(z), reference.softmax(z64), dtype=dtype
    )
    assert fallbacks == []


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("with_grad", [True, False], ids=["grad", "nograd"])
def test_losses_odd_sizes(
    numba_backend: Backend,
    reference: Backend,
    fallbacks: list[str],
    rng: numpy.random.Generator,
    dtype: str,
    shape: tuple[int, int],
    with_grad: bool,
) -> None:
    n, k = shape
    labels = rng.integers(0, k, size=n).astype(numpy.uint8)  # converted by the backend
    onehot = numpy.eye(k)[labels]
    logits, logits64 = _pair(random_array(rng, shape, -4, 4), dtype)
    probs, probs64 = _pair(rng.uniform(0.01, 0.99, size=shape), dtype)
    target, target64 = _pair(random_array(rng, shape), dtype)
    bits, bits64 = _pair(rng.integers(0, 2, size=shape).astype(numpy.float64), dtype)
    calls: list[tuple[str, tuple[Any, ...], tuple[Any, ...]]] = [
        ("softmax_crossentropy", (logits, labels), (logits64, labels)),
        ("softmax_crossentropy", (logits, onehot.astype(dtype)), (logits64, onehot)),
        ("categorical_crossentropy", (probs, labels), (probs64, labels)),
        ("categorical_crossentropy", (probs, onehot.astype(dtype)), (probs64, onehot)),
        ("binary_crossentropy", (probs, bits), (probs64, bits64)),
        ("mean_squared_error", (logits, target), (logits64, target64)),
        ("mean_absolute_error", (logits, target), (logits64, target64)),
    ]
    for op, args, ref_args in calls:
        loss, grad = getattr(numba_backend, op)(*args, with_grad=with_grad)
        want_loss, want_grad = getattr(reference, op)(*ref_args, with_grad=with_grad)
        assert numpy.ndim(loss) == 0
        assert_close(op, numba_backend, loss, want_loss, dtype=dtype, label="loss")
        if with_grad:
            assert_close(op, numba_backend, grad, want_grad, dtype=dtype, label="grad")
        else:
            assert grad is None
    assert fallbacks == []


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (1, 1), (7,), (3, 17), (33, 9)], ids=str)
def test_optimizers_and_dropout_odd_sizes(
    numba_backend: Backend,
    reference: Backend,
    fallbacks: list[str],
    rng: numpy.random.Generator,
    dtype: str,
    shape: tuple[int, ...],
) -> None:
    def fresh() -> list[numpy.ndarray]:
        values = [random_array(rng, shape) for _ in range(3)] + [rng.uniform(0.1, 1, shape)]
        return [v.astype(dtype) for v in values]

    steps = {
        "sgd_update_inplace": lambda b, p, g, s, c: b.sgd_update_inplace(p, g, s, 0.1, 0.9, 1e-2),
        "adagrad_update_inplace": lambda b, p, g, s, c: b.adagrad_update_inplace(p, g, c, 0.1),
        "rmsprop_update_inplace": lambda b, p, g, s, c: b.rmsprop_update_inplace(
            p, g, c, 0.01, l2=1e-2
        ),
        "adam_update_inplace": lambda b, p, g, s, c: b.adam_update_inplace(
            p, g, s, c, 0.01, 2, l1=1e-2, l2=1e-2
        ),
    }
    for op, step in steps.items():
        mine = fresh()
        theirs = [a.astype(numpy.float64) for a in mine]
        step(numba_backend, *mine)
        step(reference, *theirs)
        for label, g, e in zip(("param", "grad", "state", "cache"), mine, theirs, strict=True):
            assert_close(op, numba_backend, g, e, dtype=dtype, label=label)
    x, x64 = _pair(random_array(rng, shape), dtype)
    mask = rng.random(shape) >= 0.25
    got = numba_backend.dropout_forward(x, mask, 1 / 0.75)
    assert_close(
        "dropout_forward",
        numba_backend,
        got,
        reference.dropout_forward(x64, mask, 1 / 0.75),
        dtype=dtype,
    )
    assert fallbacks == []


def test_dense_backward_overwrites_dy_and_fills_out(
    numba_backend: Backend, reference: Backend, rng: numpy.random.Generator
) -> None:
    x, w = random_array(rng, (5, 3)).astype("f4"), random_array(rng, (3, 9)).astype("f4")
    y = numba_backend.dense_forward(x, w, numpy.zeros((1, 9), "f4"), "relu")
    dy = random_array(rng, (5, 9)).astype("f4")
    dz = reference.activation_backward(dy, y, "relu")
    out = (
        numpy.full((5, 3), numpy.nan, "f4"),
        numpy.full((3, 9), numpy.nan, "f4"),
        numpy.full((1, 9), numpy.nan, "f4"),
    )
    got = numba_backend.dense_backward(dy, x, w, y, "relu", overwrite_dy=True, out=out)
    assert all(g is o for g, o in zip(got, out, strict=True)), "out= arrays must be returned"
    numpy.testing.assert_array_equal(dy, dz)  # dz was written over dy
    numpy.testing.assert_array_equal(out[2], dz.sum(axis=0, keepdims=True))


def test_dense_forward_writes_into_out(numba_backend: Backend, rng: numpy.random.Generator) -> None:
    x, w = random_array(rng, (4, 3)).astype("f8"), random_array(rng, (3, 2)).astype("f8")
    out = numpy.full((4, 2), numpy.nan)
    assert numba_backend.dense_forward(x, w, numpy.ones(2), "sigmoid", out=out) is out
    numpy.testing.assert_allclose(out, 1 / (1 + numpy.exp(-(x @ w + 1))), rtol=1e-15)


def test_adam_float32_flushes_subnormal_moments_like_the_reference(
    numba_backend: Backend, reference: Backend, fallbacks: list[str], rng: numpy.random.Generator
) -> None:
    # Weights whose gradient is zero (dead units, blank border pixels): m decays by 0.9 per
    # step and would pass below float32's smallest normal after ~800 steps from 1e-3; v
    # starts near tiny so that it crosses too. Both kernels must flush at the same step,
    # bit for bit, and never store a subnormal.
    tiny = numpy.finfo(numpy.float32).tiny
    shape = (16, 24)
    grad = random_array(rng, shape).astype("f4") * 1e-2
    grad[:8] = 0
    start = [random_array(rng, shape).astype("f4") * 1e-3, numpy.full(shape, 1e-3, "f4")]
    start[1][:8] = 2 * tiny  # 0.999**693 < 1/2: crosses tiny at step 693
    param = random_array(rng, shape).astype("f4")
    mine = [param.copy(), *(s.copy() for s in start)]
    theirs = [param.copy(), *(s.copy() for s in start)]
    for step in range(1, 1001):
        numba_backend.adam_update_inplace(mine[0], grad, mine[1], mine[2], 1e-3, step)
        reference.adam_update_inplace(theirs[0], grad, theirs[1], theirs[2], 1e-3, step)
        for state in mine[1:]:
            magnitude = numpy.abs(state)
            assert not ((magnitude > 0) & (magnitude < tiny)).any(), f"subnormal at {step}"
    assert fallbacks == []
    for got, want in zip(mine, theirs, strict=True):
        numpy.testing.assert_array_equal(got, want)
    assert (mine[1][:8] == 0).all() and (mine[2][:8] == 0).all(), "decayed moments not flushed"
    assert (mine[1][8:] != 0).all() and (mine[2][8:] >= tiny).all()


def test_count_correct_matches_numpy_argmax_on_ties_nan_and_odd_labels(
    numba_backend: Backend,
) -> None:
    scores = numpy.array(
        [
            [1.0, 3.0, 3.0],  # tie: the first maximum
            [numpy.nan, 5.0, 1.0],  # NaN first: index 0
            [2.0, numpy.nan, 9.0],  # a NaN wins over a larger value after it
            [-numpy.inf, -numpy.inf, -numpy.inf],
            [0.0, -1.0, 4.0],
        ],
        dtype="f4",
    )
    for labels in ([1, 0, 1, 0, 2], [2, 1, 2, 5, -1], [1, 0, 1, 0, 2][::-1]):
        y = numpy.array(labels, dtype=numpy.int32)
        want = int(numpy.sum(numpy.argmax(scores, axis=1) == y))
        got = numba_backend.count_correct(scores, y)
        assert int(got) == want and numpy.asarray(got).dtype == numpy.int64
