"""CupyBackend's convolution and pooling ops on the strict fake device, against the reference.

As ``test_cuda_backend_fake.py`` does for the dense ops: each override matches the float64
reference (or, where the kernel repeats the reference's roundings, the reference in the same
dtype bit for bit), launches the kernels it should and nothing else, sends the GEMMs of
``conv2d_forward``/``conv2d_backward`` (reshaped and transposed views, never copies) through
the capture-safe cuBLAS path, and falls back to the reference, launching nothing, where its
kernels do not apply. The tests that need no launch log are collected again on a real GPU
by ``test_cuda_gpu.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy
import pytest
from cuda_helpers import DTYPES, REFERENCE, assert_bitwise
from nnback.kernels.cuda.launch import CONV_CHUNK

from nnback.backends.cupy_backend import CupyBackend
from nnback.errors import InputError
from nnback.testing.fake_cupy import FakeCupy, make_fake_cupy_backend
from nnback.testing.parity import assert_close, make_input, to_host
from nnback.tolerances import tolerance_ops

ACTS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh")

# (n, c_in, h, w), (c_out, kh, kw), stride, padding
CONV_CASES = [
    ((2, 3, 7, 6), (4, 3, 3), (1, 1), (0, 0)),
    ((2, 1, 9, 8), (3, 3, 2), (2, 1), (1, 2)),  # one input channel, non-square kernel
    ((3, 2, 5, 5), (5, 1, 1), (1, 1), (0, 0)),  # 1x1
    ((1, 2, 8, 7), (2, 2, 3), (3, 2), (2, 1)),  # stride 3, padding 2
]
CONV_IDS = [f"c{c[0][1]}-k{c[1][1]}x{c[1][2]}-s{c[2]}-p{c[3]}" for c in CONV_CASES]

POOL_CASES = [
    ((2, 3, 6, 6), (2, 2), (2, 2)),
    ((2, 2, 7, 5), (3, 3), (1, 1)),  # overlapping windows
    ((1, 3, 9, 8), (3, 2), (2, 3)),  # non-square; a partial window dropped
]


@pytest.fixture
def fake(cpu: dict) -> CupyBackend:
    return make_fake_cupy_backend()


def _sfx(dtype: str) -> str:
    return dtype.replace("float", "f")


def _tolerance_op(op: str, fallback: str) -> str:
    """The table's row for ``op``, or the dense op's it mirrors until it has one."""
    return op if op in tolerance_ops() else fallback


def _launches_since(backend: CupyBackend, start: int) -> list[str] | None:
    """Kernels launched since the ``start``-th launch (None on a real GPU: no log)."""
    if not isinstance(backend.xp, FakeCupy):
        return None
    return backend.xp.kernels_launched()[start:]


def _mark(backend: CupyBackend) -> tuple[int, int]:
    """(launches so far, cuBLAS GEMMs so far) on the fake device, else (0, 0)."""
    if not isinstance(backend.xp, FakeCupy):
        return 0, 0
    return len(backend.xp.launches), backend.xp.cublas_library.gemms


def _expect(
    backend: CupyBackend, mark: tuple[int, int], kernels: list[str], gemms: int = 0
) -> None:
    """Exactly ``kernels`` launched and ``gemms`` cuBLAS GEMMs since ``mark`` (fake only)."""
    launched = _launches_since(backend, mark[0])
    if launched is None:
        return
    assert launched == kernels, f"kernels launched: {launched}"
    assert backend.xp.cublas_library.gemms - mark[1] == gemms, "GEMMs not through cuBLAS"


def _random(rng: numpy.random.Generator, shape: tuple, low: float = -1, high: float = 1):
    return rng.uniform(low, high, size=shape)


@pytest.mark.parametrize("shape, wshape, stride, padding", CONV_CASES, ids=CONV_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_and_col2im(fake, dtype: str, shape, wshape, stride, padding) -> None:
    rng = numpy.random.default_rng(40)
    kernel = wshape[1:]
    x, x64 = make_input(fake, _random(rng, shape), dtype)
    mark = _mark(fake)
    cols = fake.im2col(x, kernel, stride, padding)
    _expect(fake, mark, [f"im2col_{_sfx(dtype)}"])
    assert_bitwise(
        to_host(fake, cols), REFERENCE.im2col(to_host(fake, x), kernel, stride, padding), "im2col"
    )
    mark = _mark(fake)
    dx = fake.col2im(cols, shape, kernel, stride, padding)
    _expect(fake, mark, [f"col2im_{_sfx(dtype)}"])
    host_cols = to_host(fake, cols)
    expected = REFERENCE.col2im(host_cols, shape, kernel, stride, padding)
    assert_bitwise(to_host(fake, dx), expected, "col2im")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape, wshape, stride, padding", CONV_CASES, ids=CONV_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_forward_and_backward(fake, dtype: str, shape, wshape, stride, padding, act) -> None:
    rng = numpy.random.default_rng(41)
    c_out, kh, kw = wshape
    c_in = shape[1]
    fan_in = c_in * kh * kw
    x, x64 = make_input(fake, _random(rng, shape), dtype)
    w, w64 = make_input(fake, _random(rng, (c_out, c_in, kh, kw)) / numpy.sqrt(fan_in), dtype)
    b, b64 = make_input(fake, _random(rng, (1, c_out)), dtype)
    s = _sfx(dtype)

    mark = _mark(fake)
    y, cols = fake.conv2d_forward(x, w, b, stride, padding, act)
    # im2col, one cuBLAS GEMM on w.reshape(c_out, -1) (a view), the fused epilogue.
    _expect(fake, mark, [f"im2col_{s}", f"conv_bias_act_forward_{s}"], gemms=1)
    y_ref, _ = REFERENCE.conv2d_forward(x64, w64, b64, stride, padding, act)
    assert_close(_tolerance_op("conv2d_forward", "dense_forward"), fake, y, y_ref)
    assert y.flags.c_contiguous

    dy, dy64 = make_input(fake, _random(rng, to_host(fake, y).shape), dtype)
    y64 = to_host(fake, y).astype(numpy.float64)
    expected = REFERENCE.conv2d_backward(dy64, x64, w64, y64, None, stride, padding, act)
    mark = _mark(fake)
    dx, dw, db = fake.conv2d_backward(dy, x, w, y, cols, stride, padding, act)
    # The epilogue, dz2 @ cols.T and w2.T @ dz2 through cuBLAS (transposed views), col2im.
    kernels = [f"conv_act_backward_bias_grad_{s}", f"col2im_{s}"]
    _expect(fake, mark, kernels, gemms=2)
    op = _tolerance_op("conv2d_backward", "dense_backward")
    for got, want, label in zip((dx, dw, db), expected, ("dx", "dw", "db"), strict=True):
        assert_close(op, fake, got, want, label=label)

    # Without dx (a first layer) and without cols (recomputed): one GEMM, no col2im.
    mark = _mark(fake)
    none, dw2, db2 = fake.conv2d_backward(dy, x, w, y, None, stride, padding, act, need_dx=False)
    _expect(fake, mark, [f"im2col_{s}", f"conv_act_backward_bias_grad_{s}"], gemms=1)
    assert none is None
    assert_bitwise(to_host(fake, dw2), to_host(fake, dw), "dw without cols")
    assert_bitwise(to_host(fake, db2), to_host(fake, db), "db without cols")


@pytest.mark.parametrize("act", ["linear", "relu"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_bias_gradient_over_several_chunks(fake, dtype: str, act: str) -> None:
    # More than CONV_CHUNK elements per channel: partial sums per chunk, then column_sum.
    # Halves and small integers add exactly in any order, so the sums equal the
    # reference's bit for bit however either side orders them.
    rng = numpy.random.default_rng(42)
    n, c, oh, ow = 2, 3, 46, 47
    assert n * oh * ow > CONV_CHUNK
    dy, _ = make_input(fake, rng.integers(-4, 5, size=(n, c, oh, ow)) / 2, dtype)
    y, _ = make_input(fake, rng.integers(-2, 3, size=(n, c, oh, ow)).astype(float), dtype)
    mark = _mark(fake)
    dz, db = fake.conv_activation_bias_backward(dy, y, act)
    _expect(fake, mark, [f"conv_act_backward_bias_grad_{_sfx(dtype)}", f"column_sum_{_sfx(dtype)}"])
    dz_ref, db_ref = REFERENCE.conv_activation_bias_backward(
        to_host(fake, dy), to_host(fake, y), act
    )
    assert_bitwise(to_host(fake, dz), dz_ref, "dz")
    assert_bitwise(to_host(fake, db), db_ref, "db")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_epilogues(fake, dtype: str, act: str) -> None:
    rng = numpy.random.default_rng(43)
    c, n, oh, ow = 4, 3, 5, 3
    z, z64 = make_input(fake, _random(rng, (c, n, oh, ow), -3, 3), dtype)
    b, b64 = make_input(fake, _random(rng, (1, c)), dtype)
    mark = _mark(fake)
    y = fake.conv_bias_activation(z, b, act, 0.02)
    _expect(fake, mark, [f"conv_bias_act_forward_{_sfx(dtype)}"])
    op = _tolerance_op("conv_bias_activation", "bias_activation_inplace")
    assert_close(op, fake, y, REFERENCE.conv_bias_activation(z64, b64, act, 0.02))
    dy, dy64 = make_input(fake, _random(rng, (n, c, oh, ow), -2, 2), dtype)
    y64 = to_host(fake, y).astype(numpy.float64)
    dz_ref, db_ref = REFERENCE.conv_activation_bias_backward(dy64, y64, act, 0.02)
    mark = _mark(fake)
    dz, db = fake.conv_activation_bias_backward(dy, y, act, 0.02)
    _expect(fake, mark, [f"conv_act_backward_bias_grad_{_sfx(dtype)}"])
    op = _tolerance_op("conv_activation_bias_backward", "activation_bias_backward")
    assert_close(op, fake, dz, dz_ref, label="dz")
    assert_close(op, fake, db, db_ref, label="db")
    assert dz.flags.c_contiguous and db.shape == (1, c)


@pytest.mark.parametrize("shape, pool, stride", POOL_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling(fake, dtype: str, shape, pool, stride) -> None:
    rng = numpy.random.default_rng(44)
    # A few distinct values: ties, where the first maximum must win as in numpy.argmax.
    x, _ = make_input(fake, rng.integers(-3, 4, size=shape) / 4, dtype)
    host_x = to_host(fake, x)
    s = _sfx(dtype)
    mark = _mark(fake)
    y, argmax = fake.maxpool2d_forward(x, pool, stride)
    _expect(fake, mark, [f"maxpool_forward_{s}"])
    y_ref, argmax_ref = REFERENCE.maxpool2d_forward(host_x, pool, stride)
    assert_bitwise(to_host(fake, y), y_ref, "maxpool y")
    assert_bitwise(to_host(fake, argmax), argmax_ref, "maxpool argmax")
    dy, _ = make_input(fake, _random(rng, y_ref.shape), dtype)
    host_dy = to_host(fake, dy)
    mark = _mark(fake)
    dx = fake.maxpool2d_backward(dy, argmax, shape, pool, stride)
    _expect(fake, mark, [f"maxpool_backward_{s}"])
    expected = REFERENCE.maxpool2d_backward(host_dy, argmax_ref, shape, pool, stride)
    assert_bitwise(to_host(fake, dx), expected, "maxpool dx")

    mark = _mark(fake)
    y = fake.avgpool2d_forward(x, pool, stride)
    dx = fake.avgpool2d_backward(dy, shape, pool, stride)
    _expect(fake, mark, [f"avgpool_forward_{s}", f"avgpool_backward_{s}"])
    assert_bitwise(to_host(fake, y), REFERENCE.avgpool2d_forward(host_x, pool, stride), "avg y")
    expected = REFERENCE.avgpool2d_backward(host_dy, shape, pool, stride)
    assert_bitwise(to_host(fake, dx), expected, "avgpool dx")


def test_no_hidden_transfers(fake) -> None:
    rng = numpy.random.default_rng(45)
    x = fake.asarray(_random(rng, (2, 1, 8, 8)).astype("float32"))
    w = fake.asarray(_random(rng, (3, 1, 3, 3)).astype("float32"))
    b = fake.zeros((1, 3), "float32")
    fake.xp.reset_counters()
    y, cols = fake.conv2d_forward(x, w, b, (1, 1), (1, 1), "relu")
    p, argmax = fake.maxpool2d_forward(y, (2, 2), (2, 2))
    dp = fake.xp.ones_like(p)
    dy = fake.maxpool2d_backward(dp, argmax, tuple(y.shape), (2, 2), (2, 2))
    fake.conv2d_backward(dy, x, w, y, cols, (1, 1), (1, 1), "relu")
    fake.avgpool2d_backward(
        fake.avgpool2d_forward(y, (3, 3), (1, 1)), tuple(y.shape), (3, 3), (1, 1)
    )
    assert fake.xp.counters() == {"host_syncs": 0, "to_device": 0, "to_host": 0}


# ---- fallbacks: the reference runs, no conv.cu kernel is launched --------------------------
def _no_conv_kernel(backend: CupyBackend, mark: tuple[int, int]) -> None:
    launched = _launches_since(backend, mark[0]) or []
    assert not any(
        k.startswith(("im2col", "col2im", "conv_", "maxpool", "avgpool")) for k in launched
    ), launched


@pytest.mark.parametrize(
    "call",
    [
        # Not C-contiguous.
        lambda f, x: f.im2col(x[:, :, ::2], (3, 3), (1, 1), (0, 0)),
        lambda f, x: f.maxpool2d_forward(x.transpose(0, 1, 3, 2), (2, 2), (2, 2)),
        lambda f, x: f.avgpool2d_forward(x[:, :, 1:], (2, 2), (1, 1)),
        # leaky_relu's slope as a NumPy float64 would promote a float32 result.
        lambda f, x: f.conv_bias_activation(
            x.reshape(2, 2, 8, 8), f.zeros((1, 2), "float32"), "leaky_relu", numpy.float64(0.1)
        ),
        # int64 argmax (the kernel reads int32).
        lambda f, x: f.maxpool2d_backward(
            f.zeros((2, 2, 4, 4), "float32"),
            f.zeros((2, 2, 4, 4), "int64"),
            (2, 2, 8, 8),
            (2, 2),
            (2, 2),
        ),
        # float64 dy with float32 y.
        lambda f, x: f.conv_activation_bias_backward(x.astype("float64"), x, "relu"),
    ],
)
def test_fallbacks_run_the_reference(fake, call: Callable) -> None:
    rng = numpy.random.default_rng(46)
    host = _random(rng, (2, 2, 8, 8)).astype("float32")
    x = fake.asarray(host)
    mark = _mark(fake)
    got = call(fake, x)
    _no_conv_kernel(fake, mark)
    expected = call(REFERENCE, host)
    for g, e in zip(
        got if isinstance(got, tuple) else (got,),
        expected if isinstance(expected, tuple) else (expected,),
        strict=True,
    ):
        numpy.testing.assert_array_equal(to_host(fake, g), e)


def test_bad_arguments_get_the_reference_errors(fake) -> None:
    x = fake.zeros((2, 2, 5, 5), "float32")
    with pytest.raises(InputError, match="cannot fuse activation"):
        fake.conv_bias_activation(x, fake.zeros((1, 2), "float32"), "softmax")
    with pytest.raises(InputError, match="does not fit"):
        fake.im2col(x, (7, 7), (1, 1), (0, 0))
    with pytest.raises(InputError, match="does not fit"):
        fake.maxpool2d_forward(x, (6, 2), (1, 1))
    with pytest.raises(InputError, match="col2im expects cols of shape"):
        fake.col2im(fake.zeros((3, 4), "float32"), (2, 2, 5, 5), (3, 3), (1, 1), (0, 0))
