"""The numba backend's convolution and pooling kernels against the float64 reference.

Every call here must take a kernel (the ``fallbacks`` spy stays empty). Geometries cover
strides 1-3, paddings 0-2, odd sizes, 1x1 and non-square kernels and c_in = 1 (the direct
convolution; stride 1 with few taps) as well as the im2col path, in a few small cases so
that the JIT compile (once per kernel and dtype, then cached on disk) dominates the time.

Tolerances: until the parity table has rows of its own for the convolution ops, the dense
rows apply, on data within their assumptions (unit scale, weights scaled by
1/sqrt(fan_in), reductions of at most 64 terms: c_in * kh * kw <= 36 in the forward pass,
n * oh * ow <= 64 for dw/db here):

* conv2d_forward is a dot product over c_in * kh * kw plus the bias, through the
  activation: ``dense_forward``;
* conv2d_backward sums dz * x over n * oh * ow for dw and db, and dz * w over
  c_out * kh * kw per pixel for dx: ``dense_backward``;
* the epilogues alone: ``bias_activation_inplace`` and ``activation_bias_backward``;
* im2col moves values and col2im adds them in the reference's order, and pooling
  compares, moves and adds in the reference's order: all are bit-identical (``EXACT``),
  which is what the kernels promise.
"""

from __future__ import annotations

import contextlib
import threading
import time

import numpy
import pytest

pytest.importorskip("numba", reason="the numba backend needs numba: pip install 'nnback[numba]'")

from nnback.backends.base import Backend
from nnback.backends.conv_ops import CONV_ACTIVATIONS
from nnback.testing import assert_close, random_array

DTYPES = ["float32", "float64"]

# (n, c_in, h, w), (c_out, kh, kw), stride, padding; n * oh * ow <= 64 in every case.
GEOMETRIES = [
    ((2, 1, 7, 6), (3, 3, 3), (1, 1), (0, 0)),  # c_in = 1: direct convolution
    ((2, 1, 5, 5), (2, 3, 2), (1, 1), (1, 2)),  # direct, padded, non-square
    ((2, 3, 7, 8), (4, 3, 3), (2, 2), (1, 1)),  # im2col, stride 2
    ((1, 4, 9, 7), (3, 2, 3), (3, 1), (2, 0)),  # stride 3 x 1, padding 2 x 0
    ((2, 5, 4, 5), (3, 1, 1), (1, 1), (0, 0)),  # 1x1
    ((2, 4, 6, 5), (2, 3, 3), (1, 2), (0, 1)),  # im2col at stride 1 rows
    ((2, 3, 6, 5), (2, 3, 3), (1, 1), (1, 0)),  # direct 3x3 over 3 channels, padded
]
IDS = [f"x{g[0]}-k{g[1]}-s{g[2]}-p{g[3]}" for g in GEOMETRIES]


@pytest.fixture
def rng() -> numpy.random.Generator:
    return numpy.random.default_rng(20240915)


def _pair(values: numpy.ndarray, dtype: str) -> tuple[numpy.ndarray, numpy.ndarray]:
    rounded = values.astype(dtype)
    return rounded, rounded.astype(numpy.float64)


def _conv_inputs(rng: numpy.random.Generator, geometry: tuple, dtype: str) -> tuple:
    x_shape, (c_out, kh, kw), _, _ = geometry
    limit = numpy.sqrt(3.0 / (x_shape[1] * kh * kw))
    x = _pair(random_array(rng, x_shape), dtype)
    w = _pair(random_array(rng, (c_out, x_shape[1], kh, kw), -limit, limit), dtype)
    b = _pair(random_array(rng, (1, c_out), -0.5, 0.5), dtype)
    return x, w, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=IDS)
@pytest.mark.parametrize("activation", ["relu", "linear", "leaky_relu"])
def test_conv2d_forward_backward(
    numba_backend: Backend,
    reference: Backend,
    fallbacks: list[str],
    rng: numpy.random.Generator,
    dtype: str,
    geometry: tuple,
    activation: str,
) -> None:
    (x, x64), (w, w64), (b, b64) = _conv_inputs(rng, geometry, dtype)
    _, _, stride, padding = geometry
    y, cols = numba_backend.conv2d_forward(x, w, b, stride, padding, activation, 0.1)
    y64, _ = reference.conv2d_forward(x64, w64, b64, stride, padding, activation, 0.1)
    assert y.dtype == x.dtype and y.flags.c_contiguous
    assert_close("dense_forward", numba_backend, y, y64, dtype=dtype)
    dy, dy64 = _pair(random_array(rng, y.shape), dtype)
    y_in = y.astype(numpy.float64)  # the backend's own output, given to both
    for need_dx in (True, False):
        got = numba_backend.conv2d_backward(
            dy, x, w, y, cols, stride, padding, activation, 0.1, need_dx
        )
        want = reference.conv2d_backward(
            dy64, x64, w64, y_in, None, stride, padding, activation, 0.1, need_dx
        )
        assert (got[0] is None) == (not need_dx)
        for label, g, e in zip(("dx", "dw", "db"), got, want, strict=True):
            if e is not None:
                assert g.shape == e.shape and g.dtype == x.dtype
                assert_close("dense_backward", numba_backend, g, e, dtype=dtype, label=label)
    assert fallbacks == []


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", CONV_ACTIVATIONS)
def test_conv2d_every_activation(
    numba_backend: Backend,
    reference: Backend,
    fallbacks: list[str],
    rng: numpy.random.Generator,
    dtype: str,
    activation: str,
) -> None:
    # sigmoid and tanh run the epilogue as linear, then the dense kernels' passes.
    for geometry in (GEOMETRIES[0], GEOMETRIES[2]):
        (x, x64), (w, w64), (b, b64) = _conv_inputs(rng, geometry, dtype)
        _, _, stride, padding = geometry
        y, cols = numba_backend.conv2d_forward(x, w, b, stride, padding, activation)
        y64, _ = reference.conv2d_forward(x64, w64, b64, stride, padding, activation)
        assert_close("dense_forward", numba_backend, y, y64, dtype=dtype)
        dy, dy64 = _pair(random_array(rng, y.shape), dtype)
        y_in = y.astype(numpy.float64)
        got = numba_backend.conv2d_backward(dy, x, w, y, cols, stride, padding, activation)
        want = reference.conv2d_backward(dy64, x64, w64, y_in, None, stride, padding, activation)
        for label, g, e in zip(("dx", "dw", "db"), got, want, strict=True):
            assert_close("dense_backward", numba_backend, g, e, dtype=dtype, label=label)
    assert fallbacks == []


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=IDS)
def test_im2col_col2im_exact(
    numba_backend: Backend,
    reference: Backend,
    fallbacks: list[str],
    rng: numpy.random.Generator,
    dtype: str,
    geometry: tuple,
) -> None:
    (x, _), _, _ = _conv_inputs(rng, geometry, dtype)
    _, (_, kh, kw), stride, padding = geometry
    cols = numba_backend.im2col(x, (kh, kw), stride, padding)
    numpy.testing.assert_array_equal(cols, reference.im2col(x, (kh, kw), stride, padding))
    assert cols.dtype == x.dtype
    grad = random_array(rng, cols.shape).astype(dtype)
    dx = numba_backend.col2im(grad, x.shape, (kh, kw), stride, padding)
    numpy.testing.assert_array_equal(dx, reference.col2im(grad, x.shape, (kh, kw), stride, padding))
    assert dx.dtype == x.dtype
    assert fallbacks == []


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", CONV_ACTIVATIONS)
def test_epilogues(
    numba_backend: Backend,
    reference: Backend,
    fallbacks: list[str],
    rng: numpy.random.Generator,
    dtype: str,
    activation: str,
) -> None:
    z, z64 = _pair(random_array(rng, (3, 2, 5, 3), -3, 3, min_abs=0.01), dtype)
    b, b64 = _pair(random_array(rng, (1, 3), -0.5, 0.5), dtype)
    y = numba_backend.conv_bias_activation(z, b, activation, 0.1)
    assert y.shape == (2, 3, 5, 3) and y.flags.c_contiguous
    want = reference.conv_bias_activation(z64, b64, activation, 0.1)
    assert_close("bias_activation_inplace", numba_backend, y, want, dtype=dtype)
    dy, dy64 = _pair(random_array(rng, y.shape), dtype)
    dz, db = numba_backend.conv_activation_bias_backward(dy, y, activation, 0.1)
    dz64, db64 = reference.conv_activation_bias_backward(dy64, y.astype("f8"), activation, 0.1)
    assert dz.shape == (3, 2, 5, 3) and dz.flags.c_contiguous and db.shape == (1, 3)
    assert_close("activation_bias_backward", numba_backend, dz, dz64, dtype=dtype, label="dz")
    assert_close("activation_bias_backward", numba_backend, db, db64, dtype=dtype, label="db")
    assert fallbacks == []


POOLS = [((2, 2), (2, 2)), ((3, 2), (1, 2)), ((2, 3), (3, 1)), ((1, 1), (1, 1)), ((3, 3), (2, 2))]


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool,stride", POOLS, ids=str)
def test_pooling_exact(
    numba_backend: Backend,
    reference: Backend,
    fallbacks: list[str],
    rng: numpy.random.Generator,
    dtype: str,
    pool: tuple,
    stride: tuple,
) -> None:
    x = random_array(rng, (2, 3, 7, 9)).astype(dtype)
    x[0, 0, 0, :3] = 0.5  # ties: the first maximum wins
    x[1, 2, 1:3, 2:4] = -0.0
    x[1, 1, 2, 3] = numpy.nan  # a NaN is the maximum of its windows
    x[0, 2, 4, 4] = numpy.inf
    y, argmax = numba_backend.maxpool2d_forward(x, pool, stride)
    y_ref, argmax_ref = reference.maxpool2d_forward(x, pool, stride)
    assert argmax.dtype == numpy.int32
    numpy.testing.assert_array_equal(argmax, argmax_ref)
    numpy.testing.assert_array_equal(y, y_ref)
    dy = random_array(rng, y.shape).astype(dtype)
    dy[0, 1, 0, 0] = numpy.inf  # dy * 0 is NaN in the reference's other window cells
    got = numba_backend.maxpool2d_backward(dy, argmax, x.shape, pool, stride)
    numpy.testing.assert_array_equal(
        got, reference.maxpool2d_backward(dy, argmax, x.shape, pool, stride)
    )
    assert got.dtype == x.dtype
    avg = numba_backend.avgpool2d_forward(x, pool, stride)
    numpy.testing.assert_array_equal(avg, reference.avgpool2d_forward(x, pool, stride))
    assert avg.dtype == x.dtype
    got = numba_backend.avgpool2d_backward(dy, x.shape, pool, stride)
    numpy.testing.assert_array_equal(got, reference.avgpool2d_backward(dy, x.shape, pool, stride))
    assert fallbacks == []


def test_batch_chunks_agree(
    numba_backend: Backend,
    fallbacks: list[str],
    rng: numpy.random.Generator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Chunks of one sample (and an uneven split) give the whole-batch result: the GEMMs
    # and kernels see the same sums per output, only the batch is cut differently.
    geometry = ((5, 3, 6, 6), (4, 3, 3), (1, 1), (1, 1))
    (x, _), (w, _), (b, _) = _conv_inputs(rng, geometry, "float64")
    dy = random_array(rng, (5, 4, 6, 6))
    whole_y, _ = numba_backend.conv2d_forward(x, w, b, (1, 1), (1, 1), "relu")
    whole = numba_backend.conv2d_backward(dy, x, w, whole_y, None, (1, 1), (1, 1), "relu")
    from nnback.kernels.cpu import runtime

    monkeypatch.setattr(runtime, "SPLIT_MIN_WORK", 0)  # so that these tiny batches are cut
    for chunk_bytes in (1, 2 * 27 * 36 * 8):
        monkeypatch.setattr(numba_backend, "conv_chunk_bytes", chunk_bytes)
        y, _ = numba_backend.conv2d_forward(x, w, b, (1, 1), (1, 1), "relu")
        numpy.testing.assert_array_equal(y, whole_y)
        got = numba_backend.conv2d_backward(dy, x, w, y, None, (1, 1), (1, 1), "relu")
        numpy.testing.assert_array_equal(got[0], whole[0])  # dx: per-sample sums
        for g, e in zip(got[1:], whole[1:], strict=True):  # dw, db: summed over chunks
            numpy.testing.assert_allclose(g, e, rtol=1e-13, atol=1e-13)
    assert fallbacks == []


@pytest.mark.parametrize(
    "geometry",
    [GEOMETRIES[0], GEOMETRIES[1], GEOMETRIES[2], GEOMETRIES[5]],
    ids=[IDS[0], IDS[1], IDS[2], IDS[5]],
)
def test_kernel_threads_agree(
    numba_backend: Backend,
    fallbacks: list[str],
    rng: numpy.random.Generator,
    monkeypatch: pytest.MonkeyPatch,
    geometry: tuple,
) -> None:
    # Batches are cut into chunks by their work, never by the thread count, and each
    # chunk's partial dw/db is added in chunk order: two threads give one thread's bits
    # (with single-threaded GEMMs in both: BLAS's own threads may round a GEMM otherwise).
    # Chunks of one sample give the one-chunk result to rounding.
    from nnback.kernels.cpu import conv, runtime

    _, _, stride, padding = geometry
    (x, _), (w, _), (b, _) = _conv_inputs(rng, geometry, "float64")
    x = numpy.concatenate([x, x[::-1] * 0.5, x])  # an odd batch: uneven chunks

    def step() -> list[numpy.ndarray]:
        y, cols = numba_backend.conv2d_forward(x, w, b, stride, padding, "relu")
        dy = numpy.cos(numpy.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        out = [y, *numba_backend.conv2d_backward(dy, x, w, y, cols, stride, padding, "relu")]
        out += numba_backend.conv2d_backward(
            dy, x, w, y, cols, stride, padding, "relu", need_dx=False
        )[1:]
        p, argmax = numba_backend.maxpool2d_forward(y, (2, 2), (2, 2))
        out += [p, argmax, numba_backend.maxpool2d_backward(p, argmax, y.shape, (2, 2), (2, 2))]
        return out

    def chunks_of(size: int) -> None:
        for name in ("conv_chunk_bytes", "direct_chunk_work", "pool_chunk_work"):
            monkeypatch.setattr(numba_backend, name, size)

    monkeypatch.setattr(runtime, "SPLIT_MIN_WORK", 0)
    monkeypatch.setattr(runtime, "_threads", 1)
    chunks_of(1 << 60)
    with _single_threaded_blas():
        whole = step()
    chunks_of(1)
    with _single_threaded_blas():  # what the threads' chunks run their GEMMs with
        serial = step()
    threads: set[str] = set()
    for name in ("im2col", "conv_direct_forward", "maxpool_forward"):
        kernel = getattr(conv, name)

        def spy(*args: object, _kernel: object = kernel) -> object:
            threads.add(threading.current_thread().name)
            time.sleep(0.002)  # tiny chunks: long enough for the helper to wake and take one
            return _kernel(*args)  # type: ignore[operator]

        monkeypatch.setattr(conv, name, spy)
    monkeypatch.setattr(runtime, "_threads", 2)
    with numba_backend.compute_scope():
        threaded = step()
    if runtime._blas_controllers():
        assert len(threads) == 2, threads  # the helper thread took chunks
    for got, want in zip(threaded, serial, strict=True):
        numpy.testing.assert_array_equal(got, want)
    for k, (got, want) in enumerate(zip(serial, whole, strict=True)):
        if k == 7:  # argmax
            numpy.testing.assert_array_equal(got, want)
        else:  # a GEMM over fewer columns may round differently (BLAS's small-matrix path)
            numpy.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    assert fallbacks == []


def _single_threaded_blas() -> contextlib.AbstractContextManager[object]:
    try:
        import threadpoolctl
    except ImportError:
        return contextlib.nullcontext()
    return threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def test_run_chunks_raises_the_first_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from nnback.kernels.cpu import runtime

    monkeypatch.setattr(runtime, "_threads", 2)
    seen: list[int] = []
    names: set[str] = set()

    def run(k: int) -> None:
        seen.append(k)
        names.add(threading.current_thread().name)
        if k in (3, 5):
            raise ValueError(f"chunk {k}")

    with pytest.raises(ValueError, match="chunk 3"):
        runtime.run_chunks(run, 8)
    assert {0, 1, 2, 3} <= set(seen)
    seen.clear()
    runtime.run_chunks(lambda k: (time.sleep(0.002), run(k % 3)), 12)  # no error in 0..2
    assert len(seen) == 12 and len(names) == 2

    def nested(k: int) -> None:  # a chunk that splits again runs its chunks in place
        inner: list[int] = []
        runtime.run_chunks(inner.append, 4)
        assert inner == [0, 1, 2, 3]

    runtime.run_chunks(nested, 4)


def test_batch_chunks_depend_on_work_only() -> None:
    from nnback.kernels.cpu import runtime

    assert runtime.batch_chunks(1, 1 << 30, 1) == [range(1)]
    assert runtime.batch_chunks(100, 1, 1) == [range(100)]  # under SPLIT_MIN_WORK: one chunk
    chunks = runtime.batch_chunks(10, 1 << 20, 3 << 20)  # at most 3 per chunk: 4 chunks
    assert [len(c) for c in chunks] == [2, 3, 2, 3]
    assert [i for c in chunks for i in c] == list(range(10))
    chunks = runtime.batch_chunks(10, 1 << 20, 1 << 20)  # 1 per chunk: 10, not 12
    assert [len(c) for c in chunks] == [1] * 10
    chunks = runtime.batch_chunks(128, 139_392, 1 << 20)  # the CNN's conv2: <= 7 samples
    assert len(chunks) == 20 and {len(c) for c in chunks} == {6, 7}
    assert [i for c in chunks for i in c] == list(range(128))


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_split_by_rows(
    numba_backend: Backend, monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    # Inside compute_scope a large GEMM is cut by rows over the kernel threads: the product
    # agrees with numpy's to rounding (no sum is split), transposed views included; outside
    # it, or without an ``out``, it is numpy.matmul itself.
    from nnback.kernels.cpu import runtime

    monkeypatch.setattr(runtime, "_threads", 2)
    monkeypatch.setattr(numba_backend, "matmul_split_min_macs", 1)
    rng = numpy.random.default_rng(5)
    a = rng.standard_normal((97, 64)).astype(dtype)
    b = rng.standard_normal((64, 33)).astype(dtype)
    for left in (a, rng.standard_normal((64, 97)).astype(dtype).T):
        want = left @ b
        out = numpy.full_like(want, numpy.nan)
        with numba_backend.compute_scope():
            got = numba_backend.matmul(left, b, out=out)
        assert got is out
        eps = numpy.finfo(dtype).eps
        numpy.testing.assert_allclose(got, want, rtol=64 * eps, atol=64 * eps)
    numpy.testing.assert_array_equal(numba_backend.matmul(a, b), a @ b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("need_dx", [True, False], ids=["dx", "no_dx"])
@pytest.mark.parametrize(
    "geometry", [GEOMETRIES[0], GEOMETRIES[2], GEOMETRIES[6]], ids=[IDS[0], IDS[2], IDS[6]]
)
def test_conv_maxpool_backward_fused(
    numba_backend: Backend,
    fallbacks: list[str],
    rng: numpy.random.Generator,
    dtype: str,
    need_dx: bool,
    geometry: tuple,
) -> None:
    # The fused kernels (dz built from the pooled gradient, never the pooling's dx) give
    # the bits of the backend's own maxpool2d_backward then conv2d_backward: the same dz
    # values (zeros off the argmax), the same chunks and sums.
    _, _, stride, padding = geometry
    (x, _), (w, _), (b, _) = _conv_inputs(rng, geometry, dtype)
    x = numpy.concatenate([x, x[::-1] * 0.5, x])
    for activation in ("relu", "leaky_relu", "tanh"):
        y, cols = numba_backend.conv2d_forward(x, w, b, stride, padding, activation)
        pooled, argmax = numba_backend.maxpool2d_forward(y, (2, 2), (2, 2))
        dp = random_array(rng, pooled.shape).astype(dtype)
        fused = numba_backend.conv2d_maxpool_backward(
            dp, argmax, (2, 2), (2, 2), x, w, y, cols, stride, padding, activation,
            need_dx=need_dx,
        )  # fmt: skip
        dy = numba_backend.maxpool2d_backward(dp, argmax, y.shape, (2, 2), (2, 2))
        parts = numba_backend.conv2d_backward(
            dy, x, w, y, cols, stride, padding, activation, need_dx=need_dx
        )
        for got, want in zip(fused, parts, strict=True):
            if want is None:
                assert got is None
            else:
                numpy.testing.assert_array_equal(got, want, err_msg=activation)
    assert fallbacks == []
    # An infinite pooled gradient: the reference's composition runs (NaN where it has NaN).
    dp[0, 0, 0, 0] = numpy.inf
    with numpy.errstate(invalid="ignore"):
        got = numba_backend.conv2d_maxpool_backward(
            dp, argmax, (2, 2), (2, 2), x, w, y, cols, stride, padding, "tanh"
        )
    assert "conv2d_maxpool_backward" in fallbacks
    assert not numpy.isfinite(got[1]).all()
