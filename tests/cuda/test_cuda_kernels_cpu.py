"""Every CUDA kernel, executed on the CPU through the shim, against the NumPy reference.

The kernels are the same source text NVRTC compiles; here g++ compiles it with
``kernels/cuda/cpu_shim.h`` and each thread block runs as cooperative fibers. Each test
launches a kernel with several grid and block shapes, on sizes that are not multiples of
the block (so the grid-stride loops and the tails run), and compares with the reference op
of :class:`nnback.backends.base.Backend`:

* against the float64 reference on the same (rounded) inputs, within the tolerance table;
* where the kernel repeats the reference's exact sequence of correctly rounded operations
  (everything but exp/log/tanh and reordered sums), bit for bit against the reference run
  in the same dtype;
* reductions: bit for bit across different grid sizes (their order may depend on the block
  shape only).
"""

from __future__ import annotations

import numpy
import pytest
from cuda_helpers import DTYPES, REFERENCE, assert_bitwise, assert_within, f64, i32, i64, rounded
from nnback.kernels.cuda.launch import ACTIVATION_CODES

from nnback.backends.base import EPSILON_CLIP

ACTS = tuple(ACTIVATION_CODES)
GRIDS_1D = [((1,), (32,)), ((3,), (64,)), ((7,), (256,))]


def _launch(cpu: dict, module: str, kernel: str, grid: tuple, block: tuple, *args: object) -> None:
    cpu[module].get_function(kernel)(grid, block, args)


@pytest.mark.parametrize("grid, block", GRIDS_1D)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_act_forward(cpu: dict, dtype: str, act: str, grid: tuple, block: tuple) -> None:
    rng = numpy.random.default_rng(1)
    z, z64 = rounded(rng, (37, 13), dtype, -3, 3)
    b, b64 = rounded(rng, (13,), dtype)
    sfx = dtype[-2:]
    # With the bias, in place (as dense_forward uses it).
    y = z.copy()
    _launch(
        cpu,
        "dense",
        f"bias_act_forward_f{sfx}",
        grid,
        block,
        y,
        b,
        y,
        i64(37),
        i64(13),
        i32(ACTIVATION_CODES[act]),
        f64(0.01),
    )
    assert_within("dense_forward", y, REFERENCE.activation_forward(z64 + b64, act), dtype)
    if act not in ("sigmoid", "tanh"):  # no libm function: same roundings as NumPy
        assert_bitwise(y, REFERENCE.activation_forward(z + b, act), f"{act} forward")
    # Without a bias, out of place (as activation_forward uses it); z must stay unchanged.
    out = numpy.full_like(z, numpy.nan)
    _launch(
        cpu,
        "dense",
        f"bias_act_forward_f{sfx}",
        grid,
        block,
        z,
        None,
        out,
        i64(37),
        i64(13),
        i32(ACTIVATION_CODES[act]),
        f64(0.01),
    )
    assert_within("activation_forward", out, REFERENCE.activation_forward(z64, act), dtype)
    assert_bitwise(z, z64.astype(dtype), "input z")


@pytest.mark.parametrize("grid, block", GRIDS_1D)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_act_backward(cpu: dict, dtype: str, act: str, grid: tuple, block: tuple) -> None:
    rng = numpy.random.default_rng(2)
    dy, dy64 = rounded(rng, (29, 11), dtype, -2, 2)
    y = REFERENCE.activation_forward(rounded(rng, (29, 11), dtype, -3, 3)[0], act)
    dz = numpy.empty_like(dy)
    _launch(
        cpu,
        "dense",
        f"act_backward_f{dtype[-2:]}",
        grid,
        block,
        dy,
        y,
        dz,
        i64(dy.size),
        i32(ACTIVATION_CODES[act]),
        f64(0.01),
    )
    expected = REFERENCE.activation_backward(dy64, y.astype(numpy.float64), act)
    assert_within("activation_backward", dz, expected, dtype)
    assert_bitwise(dz, REFERENCE.activation_backward(dy, y, act), f"{act} backward")


def _bias_grad(
    cpu: dict,
    dy: numpy.ndarray,
    y: numpy.ndarray | None,
    act: str,
    block: tuple,
    rows_per_chunk: int,
    grid: tuple,
) -> tuple[numpy.ndarray, numpy.ndarray]:
    n, k = dy.shape
    sfx = str(dy.dtype)[-2:]
    chunks = -(-n // rows_per_chunk)
    dz = None if y is None else numpy.empty_like(dy)
    partial = numpy.empty((chunks, k), dy.dtype)
    _launch(
        cpu,
        "dense",
        f"act_backward_bias_grad_f{sfx}",
        grid,
        block,
        dy,
        y,
        dz,
        partial,
        i64(n),
        i64(k),
        i64(rows_per_chunk),
        i32(ACTIVATION_CODES[act]),
        f64(0.01),
    )
    db = numpy.empty((1, k), dy.dtype)
    _launch(cpu, "dense", f"column_sum_f{sfx}", (2,), (32,), partial, db, i64(chunks), i64(k))
    return dz, db


@pytest.mark.parametrize("block, rows_per_chunk", [((32, 8), 256), ((16, 4), 16), ((5, 7), 7)])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_act_backward_bias_grad(
    cpu: dict, dtype: str, act: str, block: tuple, rows_per_chunk: int
) -> None:
    rng = numpy.random.default_rng(3)
    dy, dy64 = rounded(rng, (70, 45), dtype, -2, 2)
    y = REFERENCE.activation_forward(rounded(rng, (70, 45), dtype, -3, 3)[0], act)
    expected = REFERENCE.activation_backward(dy64, y.astype(numpy.float64), act)
    results = []
    for grid in [(1, 1), (2, 3), (-(-45 // block[0]), -(-70 // rows_per_chunk))]:
        dz, db = _bias_grad(cpu, dy, y, act, block, rows_per_chunk, grid)
        assert_within("dense_backward", dz, expected, dtype, "dz")
        assert_within("dense_backward", db, expected.sum(axis=0, keepdims=True), dtype, "db")
        results.append(db)
    for db in results[1:]:  # the grid changes nothing, not even the last bit
        assert_bitwise(db, results[0], "db for another grid")
    # The linear path reads dy alone and writes no dz.
    none, db = _bias_grad(cpu, dy, None, "linear", block, rows_per_chunk, (2, 2))
    assert none is None
    assert_within("dense_backward", db, dy64.sum(axis=0, keepdims=True), dtype, "db (linear)")


@pytest.mark.parametrize(
    "shape, block, grid", [((9, 13), (32,), (2,)), ((4, 300), (64,), (4,)), ((3, 1), (256,), (1,))]
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_softmax_forward(
    cpu: dict, dtype: str, shape: tuple, block: tuple, grid: tuple
) -> None:
    rng = numpy.random.default_rng(4)
    z, z64 = rounded(rng, shape, dtype, -3, 3)
    b, b64 = rounded(rng, shape[1:], dtype)
    sfx = dtype[-2:]
    y = z.copy()
    _launch(
        cpu,
        "losses",
        f"bias_softmax_forward_f{sfx}",
        grid,
        block,
        y,
        b,
        y,
        i64(shape[0]),
        i64(shape[1]),
    )
    assert_within("dense_forward", y, REFERENCE.softmax(z64 + b64), dtype)
    out = numpy.empty_like(z)
    z[0, 0] = numpy.nan  # a NaN spreads over its row, as numpy.max makes it
    _launch(
        cpu,
        "losses",
        f"bias_softmax_forward_f{sfx}",
        grid,
        block,
        z,
        None,
        out,
        i64(shape[0]),
        i64(shape[1]),
    )
    assert_within("softmax", out, REFERENCE.softmax(z.astype(numpy.float64)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_backward(cpu: dict, dtype: str) -> None:
    rng = numpy.random.default_rng(5)
    dy, dy64 = rounded(rng, (17, 10), dtype, -2, 2)
    y = REFERENCE.softmax(rounded(rng, (17, 10), dtype, -3, 3)[0])
    dz = numpy.empty_like(dy)
    _launch(
        cpu, "losses", f"softmax_backward_f{dtype[-2:]}", (3,), (32,), dy, y, dz, i64(17), i64(10)
    )
    expected = REFERENCE.activation_backward(dy64, y.astype(numpy.float64), "softmax")
    assert_within("activation_backward", dz, expected, dtype)


def _finalize(
    cpu: dict,
    values: numpy.ndarray,
    divisor: int,
    negate: bool,
    grid: tuple = (1,),
    block: tuple = (256,),
) -> numpy.ndarray:
    out = numpy.empty((), values.dtype)
    _launch(
        cpu,
        "losses",
        f"finalize_mean_f{str(values.dtype)[-2:]}",
        grid,
        block,
        values,
        i64(values.size),
        out,
        f64(divisor),
        i32(int(negate)),
    )
    return out


@pytest.mark.parametrize("with_grad", [True, False])
@pytest.mark.parametrize("label_dtype", ["int32", "int64"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_labels(cpu: dict, dtype: str, label_dtype: str, with_grad: bool) -> None:
    rng = numpy.random.default_rng(6)
    n, k = 37, 10
    logits, logits64 = rounded(rng, (n, k), dtype, -4, 4)
    labels = rng.integers(-k, k, size=n).astype(label_dtype)  # negatives count from the end
    grad = numpy.empty_like(logits) if with_grad else None
    rows = numpy.empty(n, dtype)
    kernel = f"softmax_xent_labels_f{dtype[-2:]}_i{label_dtype[-2:]}"
    _launch(cpu, "losses", kernel, (5,), (32,), logits, labels, grad, rows, i64(n), i64(k))
    loss, expected_grad = REFERENCE.softmax_crossentropy(logits64, labels.astype(numpy.int64))
    assert_within("softmax_crossentropy", _finalize(cpu, rows, n, False), loss, dtype, "loss")
    if with_grad:
        assert_within("softmax_crossentropy", grad, expected_grad, dtype, "grad")
    # A label outside [-k, k) (an IndexError in NumPy) makes that row NaN, not garbage.
    labels[3] = k
    grad = numpy.empty_like(logits)
    _launch(cpu, "losses", kernel, (5,), (32,), logits, labels, grad, rows, i64(n), i64(k))
    assert numpy.isnan(rows[3]) and numpy.isnan(grad[3]).all()
    assert numpy.isfinite(numpy.delete(rows, 3)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_onehot(cpu: dict, dtype: str) -> None:
    rng = numpy.random.default_rng(7)
    n, k = 23, 300  # more columns than threads: each thread strides over its row
    logits, logits64 = rounded(rng, (n, k), dtype, -4, 4)
    onehot = numpy.eye(k, dtype=dtype)[rng.integers(0, k, size=n)]
    grad, rows = numpy.empty_like(logits), numpy.empty(n, dtype)
    _launch(
        cpu,
        "losses",
        f"softmax_xent_onehot_f{dtype[-2:]}",
        (4,),
        (64,),
        logits,
        onehot,
        grad,
        rows,
        i64(n),
        i64(k),
    )
    loss, expected_grad = REFERENCE.softmax_crossentropy(logits64, onehot.astype(numpy.float64))
    assert_within("softmax_crossentropy", _finalize(cpu, rows, n, True), loss, dtype, "loss")
    assert_within("softmax_crossentropy", grad, expected_grad, dtype, "grad")


_LOSSES = {
    "bce_loss_grad": ("binary_crossentropy", True),
    "mse_loss_grad": ("mean_squared_error", False),
    "mae_loss_grad": ("mean_absolute_error", False),
}


def _constants(kernel: str, n: int, k: int) -> tuple[numpy.float64, ...]:
    if kernel == "bce_loss_grad":
        return f64(EPSILON_CLIP), f64(1 - EPSILON_CLIP), f64(n * k)
    return (f64(2 / (n * k)),) if kernel == "mse_loss_grad" else (f64(n * k),)


@pytest.mark.parametrize("chunk", [2048, 100, 7])
@pytest.mark.parametrize("kernel", list(_LOSSES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_losses(cpu: dict, dtype: str, kernel: str, chunk: int) -> None:
    rng = numpy.random.default_rng(8)
    n, k = 33, 7
    op, negate = _LOSSES[kernel]
    pred = rounded(rng, (n, k), dtype, 0, 1)[0]
    target = (rng.random((n, k)) < 0.5).astype(dtype)
    pred[0, :4] = (0, 1, 0, 1)  # clipped by the cross-entropy
    target[0, :4] = (1, 0, 0, 1)
    pred[1, :3] = target[1, :3]  # MAE's sign is 0 there
    pred64, target64 = pred.astype(numpy.float64), target.astype(numpy.float64)
    loss64, grad64 = getattr(REFERENCE, op)(pred64, target64)
    chunks = -(-(n * k) // chunk)
    name = f"{kernel}_f{dtype[-2:]}"
    losses = []
    for grid in [(1,), (3,), (chunks,)]:
        grad, partial = numpy.empty_like(pred), numpy.empty(chunks, dtype)
        args = (pred, target, grad, partial, i64(n * k), i64(chunk), *_constants(kernel, n, k))
        _launch(cpu, "losses", name, grid, (64,), *args)
        losses.append(_finalize(cpu, partial, n * k, negate))
        assert_within(op, losses[-1], loss64, dtype, "loss")
        assert_within(op, grad, grad64, dtype, "grad")
        assert_bitwise(grad, getattr(REFERENCE, op)(pred, target)[1], f"{op} grad")
    for loss in losses[1:]:
        assert_bitwise(loss, losses[0], "loss for another grid")
    partial = numpy.empty(chunks, dtype)  # without the gradient (with_grad=False)
    args = (pred, target, None, partial, i64(n * k), i64(chunk), *_constants(kernel, n, k))
    _launch(cpu, "losses", name, (2,), (32,), *args)
    assert_within(op, _finalize(cpu, partial, n * k, negate), loss64, dtype, "loss, no grad")


@pytest.mark.parametrize("dtype", DTYPES)
def test_finalize_mean_ignores_extra_blocks(cpu: dict, dtype: str) -> None:
    rng = numpy.random.default_rng(9)
    values, values64 = rounded(rng, (1000,), dtype)
    one = _finalize(cpu, values, 1000, True)
    assert_bitwise(_finalize(cpu, values, 1000, True, grid=(4,)), one, "finalize, 4 blocks")
    assert_within("mean", one, -values64.mean(), dtype)
    assert_within("mean", _finalize(cpu, values, 1000, False, block=(48,)), values64.mean(), dtype)
