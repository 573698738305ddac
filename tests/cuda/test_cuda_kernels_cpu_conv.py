"""The kernels of ``conv.cu``, executed on the CPU through the shim, against the reference ops
of :mod:`nnback.backends.conv_ops`.

Most of these kernels move values or repeat the reference's exact sequence of roundings in
the same dtype (im2col copies; col2im and the pooling backward passes gather each pixel's
contributions in the reference's order; max pooling compares; the average sums the window
in order and divides), so they are checked bit for bit against the reference run in the
same dtype. Only the transcendental activations and the bias gradient (a tree sum where
NumPy sums pairwise) are compared with the float64 reference within the tolerance table,
and the bias gradient bit for bit across grids (its order depends on the block only).

Geometries cover strides 1, 2 and 3, paddings 0, 1 and 2, odd and non-square images,
1x1 and non-square kernels, one input channel, and pooling windows that overlap
(stride < pool) or leave a partial window out.
"""

from __future__ import annotations

import numpy
import pytest
from cuda_helpers import DTYPES, REFERENCE, assert_bitwise, assert_within, f64, i32, i64, rounded
from nnback.kernels.cuda.launch import ACTIVATION_CODES

from nnback.backends.conv_ops import conv_output_size
from nnback.tolerances import tolerance_ops

ACTS = tuple(ACTIVATION_CODES)
GRIDS = [((1,), (32,)), ((3,), (64,)), ((5,), (256,))]

# (n, c, h, w), kernel, stride, padding
CONV_CASES = [
    ((2, 3, 7, 6), (3, 3), (1, 1), (0, 0)),
    ((2, 2, 9, 8), (3, 2), (2, 1), (1, 0)),  # non-square kernel and stride
    ((1, 1, 7, 7), (5, 3), (3, 2), (2, 1)),  # one channel, stride 3, padding 2
    ((3, 2, 5, 5), (1, 1), (1, 1), (0, 0)),  # 1x1
    ((2, 3, 6, 7), (2, 3), (2, 3), (2, 2)),  # padding 2 all round, stride 3
    ((1, 2, 4, 5), (3, 3), (3, 3), (1, 1)),  # stride 3: pixels no window reads
]
CONV_IDS = [f"{c[0][1]}x{c[0][2]}x{c[0][3]}-k{c[1]}-s{c[2]}-p{c[3]}" for c in CONV_CASES]

# (n, c, h, w), pool, stride
POOL_CASES = [
    ((2, 3, 6, 6), (2, 2), (2, 2)),
    ((2, 2, 7, 5), (3, 3), (1, 1)),  # overlapping windows
    ((1, 3, 9, 8), (3, 2), (2, 1)),  # non-square, overlapping along both axes
    ((2, 1, 8, 9), (2, 3), (3, 2)),  # stride > pool: gaps; partial windows dropped
    ((1, 2, 5, 4), (1, 1), (1, 1)),
]
POOL_IDS = [f"{c[0][2]}x{c[0][3]}-p{c[1]}-s{c[2]}" for c in POOL_CASES]


def _tolerance_op(op: str, fallback: str) -> str:
    """The table's row for ``op``, or the row of the dense op it mirrors until it has one."""
    return op if op in tolerance_ops() else fallback


def _sfx(dtype: object) -> str:
    return "f" + str(numpy.dtype(dtype))[-2:]


def _launch(cpu: dict, kernel: str, grid: tuple, block: tuple, *args: object) -> None:
    cpu["conv"].get_function(kernel)(grid, block, args)


def _geometry(shape: tuple, kernel: tuple, stride: tuple, padding: tuple) -> tuple[int, int]:
    return (
        conv_output_size(shape[2], kernel[0], stride[0], padding[0]),
        conv_output_size(shape[3], kernel[1], stride[1], padding[1]),
    )


def _conv_args(shape: tuple, kernel: tuple, stride: tuple, padding: tuple) -> tuple:
    oh, ow = _geometry(shape, kernel, stride, padding)
    return tuple(i32(v) for v in (*shape, *kernel, *stride, *padding, oh, ow))


@pytest.mark.parametrize("grid, block", GRIDS)
@pytest.mark.parametrize("shape, kernel, stride, padding", CONV_CASES, ids=CONV_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col(
    cpu: dict, dtype: str, shape: tuple, kernel: tuple, stride: tuple, padding: tuple, grid, block
) -> None:
    x = rounded(numpy.random.default_rng(1), shape, dtype)[0]
    expected = REFERENCE.im2col(x, kernel, stride, padding)
    cols = numpy.full(expected.shape, numpy.nan, dtype)  # every entry must be written
    _launch(
        cpu,
        f"im2col_{_sfx(dtype)}",
        grid,
        block,
        x,
        cols,
        *_conv_args(shape, kernel, stride, padding),
    )
    assert_bitwise(cols, expected, "im2col")


@pytest.mark.parametrize("grid, block", GRIDS)
@pytest.mark.parametrize("shape, kernel, stride, padding", CONV_CASES, ids=CONV_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_col2im(
    cpu: dict, dtype: str, shape: tuple, kernel: tuple, stride: tuple, padding: tuple, grid, block
) -> None:
    oh, ow = _geometry(shape, kernel, stride, padding)
    n, c = shape[:2]
    cols = rounded(numpy.random.default_rng(2), (c * kernel[0] * kernel[1], n * oh * ow), dtype)[0]
    dx = numpy.full(shape, numpy.nan, dtype)
    _launch(
        cpu,
        f"col2im_{_sfx(dtype)}",
        grid,
        block,
        cols,
        dx,
        *_conv_args(shape, kernel, stride, padding),
    )
    # The same additions in the same order as the reference: equal bit for bit.
    assert_bitwise(dx, REFERENCE.col2im(cols, shape, kernel, stride, padding), "col2im")


@pytest.mark.parametrize("grid, block", GRIDS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_bias_act_forward(cpu: dict, dtype: str, act: str, grid: tuple, block: tuple) -> None:
    rng = numpy.random.default_rng(3)
    c, n, oh, ow = 5, 3, 4, 7
    z, z64 = rounded(rng, (c, n, oh, ow), dtype, -3, 3)
    b, b64 = rounded(rng, (1, c), dtype)
    y = numpy.full((n, c, oh, ow), numpy.nan, dtype)
    args = (z, b, y, i64(n), i32(c), i32(oh * ow), i32(ACTIVATION_CODES[act]), f64(0.01))
    _launch(cpu, f"conv_bias_act_forward_{_sfx(dtype)}", grid, block, *args)
    op = _tolerance_op("conv_bias_activation", "bias_activation_inplace")
    assert_within(op, y, REFERENCE.conv_bias_activation(z64, b64, act), dtype)
    if act not in ("sigmoid", "tanh"):  # no libm function: the reference's roundings
        assert_bitwise(y, REFERENCE.conv_bias_activation(z, b, act), f"{act} forward")


def _bias_grad(
    cpu: dict, dy: numpy.ndarray, y: numpy.ndarray, act: str, chunk: int, grid: tuple, block: tuple
) -> tuple[numpy.ndarray, numpy.ndarray]:
    n, c, oh, ow = dy.shape
    chunks = -(-(n * oh * ow) // chunk)
    dz = numpy.full((c, n, oh, ow), numpy.nan, dy.dtype)
    partial = numpy.full((chunks, c), numpy.nan, dy.dtype)
    args = (dy, y, dz, partial, i64(n), i32(c), i32(oh * ow), i64(chunk))
    args += (i32(ACTIVATION_CODES[act]), f64(0.01))
    _launch(cpu, f"conv_act_backward_bias_grad_{_sfx(dy.dtype)}", grid, block, *args)
    db = numpy.full((1, c), numpy.nan, dy.dtype)
    column_sum = cpu["dense"].get_function(f"column_sum_{_sfx(dy.dtype)}")
    column_sum((2,), (32,), (partial, db, i64(chunks), i64(c)))
    return dz, db


@pytest.mark.parametrize("chunk, block", [(4096, (256,)), (16, (32,)), (7, (48,)), (50, (5,))])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_act_backward_bias_grad(
    cpu: dict, dtype: str, act: str, chunk: int, block: tuple
) -> None:
    rng = numpy.random.default_rng(4)
    n, c, oh, ow = 3, 4, 3, 5  # 45 elements per channel
    dy, dy64 = rounded(rng, (n, c, oh, ow), dtype, -2, 2)
    y = REFERENCE.activation_forward(rounded(rng, (n, c, oh, ow), dtype, -3, 3)[0], act)
    dz64, db64 = REFERENCE.conv_activation_bias_backward(dy64, y.astype(numpy.float64), act)
    results = []
    chunks = -(-(n * oh * ow) // chunk)
    for grid in [(1, 1), (2, 3), (chunks, c)]:
        dz, db = _bias_grad(cpu, dy, y, act, chunk, grid, block)
        assert_bitwise(dz, REFERENCE.conv_activation_bias_backward(dy, y, act)[0], f"{act} dz")
        op = _tolerance_op("conv_activation_bias_backward", "activation_bias_backward")
        assert_within(op, db, db64, dtype, "db")
        results.append(db)
    for db in results[1:]:  # the grid changes nothing, not even the last bit
        assert_bitwise(db, results[0], "db for another grid")


def _pool_args(shape: tuple, pool: tuple, stride: tuple) -> tuple:
    oh, ow = _geometry(shape, pool, stride, (0, 0))
    return (i64(shape[0] * shape[1]), *(i32(v) for v in (*shape[2:], *pool, *stride, oh, ow)))


def _tied(rng: numpy.random.Generator, shape: tuple, dtype: str) -> numpy.ndarray:
    """Few distinct values (many ties), a NaN or two, and signed zeros."""
    x = rng.integers(-2, 3, size=shape).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 2, replace=False)] = numpy.nan
    flat[rng.choice(flat.size, 5, replace=False)] = -0.0
    return x


@pytest.mark.parametrize("grid, block", GRIDS)
@pytest.mark.parametrize("data", ["random", "ties and NaN"])
@pytest.mark.parametrize("shape, pool, stride", POOL_CASES, ids=POOL_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool(
    cpu: dict, dtype: str, shape: tuple, pool: tuple, stride: tuple, data: str, grid, block
) -> None:
    rng = numpy.random.default_rng(5)
    x = rounded(rng, shape, dtype)[0] if data == "random" else _tied(rng, shape, dtype)
    y_ref, argmax_ref = REFERENCE.maxpool2d_forward(x, pool, stride)
    y = numpy.full(y_ref.shape, numpy.nan, dtype)
    argmax = numpy.full(y_ref.shape, -1, numpy.int32)
    args = _pool_args(shape, pool, stride)
    _launch(cpu, f"maxpool_forward_{_sfx(dtype)}", grid, block, x, y, argmax, *args)
    assert_bitwise(y, y_ref, "maxpool y")
    assert_bitwise(argmax, argmax_ref, "maxpool argmax")
    dy = rounded(rng, y_ref.shape, dtype)[0]
    if data != "random":
        dy.reshape(-1)[3] = numpy.inf  # the reference's dy * 0 spreads it as NaN: so here
    dx = numpy.full(shape, numpy.nan, dtype)
    _launch(cpu, f"maxpool_backward_{_sfx(dtype)}", grid, block, dy, argmax, dx, *args)
    with numpy.errstate(invalid="ignore"):  # inf * 0 in the reference, on purpose
        expected = REFERENCE.maxpool2d_backward(dy, argmax_ref, shape, pool, stride)
    assert_bitwise(dx, expected, "maxpool dx")


@pytest.mark.parametrize("grid, block", GRIDS)
@pytest.mark.parametrize("shape, pool, stride", POOL_CASES, ids=POOL_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_avgpool(
    cpu: dict, dtype: str, shape: tuple, pool: tuple, stride: tuple, grid, block
) -> None:
    rng = numpy.random.default_rng(6)
    x = rounded(rng, shape, dtype)[0]
    y_ref = REFERENCE.avgpool2d_forward(x, pool, stride)
    y = numpy.full(y_ref.shape, numpy.nan, dtype)
    args = _pool_args(shape, pool, stride)
    _launch(cpu, f"avgpool_forward_{_sfx(dtype)}", grid, block, x, y, *args)
    assert_bitwise(y, y_ref, "avgpool y")
    dy = rounded(rng, y_ref.shape, dtype)[0]
    dx = numpy.full(shape, numpy.nan, dtype)
    _launch(cpu, f"avgpool_backward_{_sfx(dtype)}", grid, block, dy, dx, *args)
    assert_bitwise(dx, REFERENCE.avgpool2d_backward(dy, shape, pool, stride), "avgpool dx")
