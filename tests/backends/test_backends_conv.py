"""Parity of the convolution and pooling ops (nnback/backends/conv_ops.py) on every backend.

Each op runs on the backend under test, on float32 or float64 inputs in three layouts (C
order; every other image of a larger batch full of NaN; NHWC memory seen as NCHW), and is
compared with the NumPy reference on the same values in float64. The shapes are small and
odd, with strides and paddings that differ along the two axes. Every reduction stays within
the table's ``MAX_REDUCTION`` terms (``c_in * kh * kw`` in the forward GEMM, ``n * oh * ow``
for ``dW`` and ``db``).
"""

from __future__ import annotations

from typing import Any

import numpy
import pytest

from nnback.backends.base import Backend
from nnback.backends.conv_ops import CONV_ACTIVATIONS, conv_output_size
from nnback.errors import InputError
from nnback.testing import assert_close, assert_unchanged, make_input, on_backend, random_array
from nnback.tolerances import MAX_REDUCTION

LAYOUTS_4D = ("contiguous", "strided", "nhwc")

# (n, c_in, h, w, c_out, kernel, stride, padding)
CONFIGS = {
    "3x3": (2, 3, 7, 6, 4, (3, 3), (1, 1), (0, 0)),
    "3x2-s21-p10": (2, 2, 8, 7, 3, (3, 2), (2, 1), (1, 0)),
    "1x1": (2, 1, 5, 5, 5, (1, 1), (1, 1), (0, 0)),
    "3x3-s23-p12": (1, 2, 6, 9, 2, (3, 3), (2, 3), (1, 2)),
}
# The configuration with each activation, the others with relu.
CASES = [("3x3", act) for act in CONV_ACTIVATIONS] + [
    (name, "relu") for name in CONFIGS if name != "3x3"
]
CASE_IDS = [f"{name}-{act}" for name, act in CASES]
# (pool, stride): disjoint windows, overlapping ones (up to 4 windows share a pixel), and
# windows with a gap between them along the width.
POOLS = {
    "2x2-s2": ((2, 2), (2, 2)),
    "3x3-s2": ((3, 3), (2, 2)),
    "2x3-s13": ((2, 3), (1, 3)),
    "2x1-s12": ((2, 1), (1, 2)),
}
ALPHA = 0.05


def _out_hw(config: tuple[Any, ...]) -> tuple[int, int]:
    _, _, h, w, _, (kh, kw), (sh, sw), (ph, pw) = config
    return conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)


def _image(
    backend: Backend, values: numpy.ndarray, dtype: numpy.dtype, layout: str
) -> tuple[Any, numpy.ndarray]:
    """A 4-D array on the backend in one of ``LAYOUTS_4D``, and its float64 values."""
    rounded = numpy.asarray(values).astype(dtype)
    reference = rounded.astype(numpy.float64)
    if layout == "nhwc":
        array = backend.asarray(numpy.ascontiguousarray(rounded.transpose(0, 2, 3, 1)))
        array = array.transpose(0, 3, 1, 2)
        assert not array.flags.c_contiguous or min(rounded.shape[1:]) == 1
        return array, reference
    return on_backend(backend, rounded, layout), reference


def _conv_inputs(
    backend: Backend, rng: numpy.random.Generator, dtype: numpy.dtype, layout: str, name: str
) -> tuple[tuple[Any, Any, Any], tuple[numpy.ndarray, ...]]:
    n, c_in, h, w, c_out, (kh, kw), _, _ = CONFIGS[name]
    assert c_in * kh * kw <= MAX_REDUCTION and n * numpy.prod(_out_hw(CONFIGS[name])) <= 64
    x, x64 = _image(backend, random_array(rng, (n, c_in, h, w)), dtype, layout)
    limit = numpy.sqrt(3.0 / (c_in * kh * kw))  # variance 1/fan_in, as He/Glorot scale it
    w_, w64 = _image(
        backend, random_array(rng, (c_out, c_in, kh, kw), -limit, limit), dtype, layout
    )
    b, b64 = make_input(backend, random_array(rng, (1, c_out), -0.5, 0.5), dtype, "strided")
    return (x, w_, b), (x64, w64, b64)


@pytest.fixture(params=LAYOUTS_4D)
def layout4(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.parametrize("name", CONFIGS)
def test_im2col_col2im(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout4: str,
    name: str,
) -> None:
    n, c, h, w, _, kernel, stride, padding = CONFIGS[name]
    oh, ow = _out_hw(CONFIGS[name])
    x, x64 = _image(backend, random_array(rng, (n, c, h, w)), dtype, layout4)
    got = backend.im2col(x, kernel, stride, padding)
    assert_close(
        "im2col", backend, got, reference.im2col(x64, kernel, stride, padding), dtype=dtype
    )
    assert_unchanged(backend, x, x64, "x")
    shape = (c * kernel[0] * kernel[1], n * oh * ow)
    cols, cols64 = make_input(backend, random_array(rng, shape), dtype, "transposed")
    got = backend.col2im(cols, (n, c, h, w), kernel, stride, padding)
    want = reference.col2im(cols64, (n, c, h, w), kernel, stride, padding)
    assert_close("col2im", backend, got, want, dtype=dtype)
    assert_unchanged(backend, cols, cols64, "cols")


@pytest.mark.parametrize("activation", CONV_ACTIVATIONS)
def test_conv_epilogues(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout4: str,
    activation: str,
) -> None:
    shape = (4, 3, 5, 3)  # (c_out, n, oh, ow): db sums 45 terms per channel
    z, z64 = _image(backend, random_array(rng, shape, -3.0, 3.0), dtype, layout4)
    b, b64 = make_input(backend, random_array(rng, (1, 4), -0.5, 0.5), dtype, "strided")
    got = backend.conv_bias_activation(z, b, activation, ALPHA)
    want = reference.conv_bias_activation(z64, b64, activation, ALPHA)
    assert_close("conv_bias_activation", backend, got, want, dtype=dtype)
    assert_unchanged(backend, z, z64, "z")
    y, y64 = _image(backend, want, dtype, layout4)
    dy, dy64 = _image(backend, random_array(rng, want.shape), dtype, layout4)
    dz, db = backend.conv_activation_bias_backward(dy, y, activation, ALPHA)
    want_dz, want_db = reference.conv_activation_bias_backward(dy64, y64, activation, ALPHA)
    assert_close("conv_activation_bias_backward", backend, dz, want_dz, dtype=dtype, label="dz")
    assert_close("conv_activation_bias_backward", backend, db, want_db, dtype=dtype, label="db")
    assert_unchanged(backend, dy, dy64, "dy")


@pytest.mark.parametrize(("name", "activation"), CASES, ids=CASE_IDS)
def test_conv2d_forward(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout4: str,
    name: str,
    activation: str,
) -> None:
    (x, w, b), (x64, w64, b64) = _conv_inputs(backend, rng, dtype, layout4, name)
    _, _, _, _, _, _, stride, padding = CONFIGS[name]
    y, _ = backend.conv2d_forward(x, w, b, stride, padding, activation, ALPHA)
    want, _ = reference.conv2d_forward(x64, w64, b64, stride, padding, activation, ALPHA)
    assert_close("conv2d_forward", backend, y, want, dtype=dtype)
    for label, arr, values in (("x", x, x64), ("w", w, w64), ("b", b, b64)):
        assert_unchanged(backend, arr, values, label)


@pytest.mark.parametrize("variant", ["cols", "no_cols", "no_dx"])
@pytest.mark.parametrize(("name", "activation"), CASES, ids=CASE_IDS)
def test_conv2d_backward(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout4: str,
    name: str,
    activation: str,
    variant: str,
) -> None:
    (x, w, b), (x64, w64, b64) = _conv_inputs(backend, rng, dtype, layout4, name)
    _, _, _, _, _, _, stride, padding = CONFIGS[name]
    # Both sides see the same y: the reference output rounded to the dtype.
    y_ref, _ = reference.conv2d_forward(x64, w64, b64, stride, padding, activation, ALPHA)
    y, y64 = _image(backend, y_ref, dtype, layout4)
    dy, dy64 = _image(backend, random_array(rng, y_ref.shape), dtype, layout4)
    cols = backend.conv2d_forward(x, w, b, stride, padding, activation, ALPHA)[1]
    dx, dw, db = backend.conv2d_backward(
        dy,
        x,
        w,
        y,
        cols if variant == "cols" else None,
        stride,
        padding,
        activation,
        ALPHA,
        need_dx=variant != "no_dx",
    )
    want_dx, want_dw, want_db = reference.conv2d_backward(
        dy64, x64, w64, y64, None, stride, padding, activation, ALPHA
    )
    if variant == "no_dx":
        assert dx is None, "need_dx=False must return dx=None"
    else:
        assert_close("conv2d_backward", backend, dx, want_dx, dtype=dtype, label="dx")
    assert_close("conv2d_backward", backend, dw, want_dw, dtype=dtype, label="dw")
    assert_close("conv2d_backward", backend, db, want_db, dtype=dtype, label="db")
    for label, arr, values in (("dy", dy, dy64), ("x", x, x64), ("w", w, w64), ("y", y, y64)):
        assert_unchanged(backend, arr, values, label)


@pytest.mark.parametrize("need_dx", [True, False], ids=["dx", "no_dx"])
@pytest.mark.parametrize(
    ("name", "activation"),
    [("3x3", "relu"), ("3x3", "tanh"), ("3x2-s21-p10", "leaky_relu"), ("1x1", "relu")],
)
def test_conv2d_maxpool_backward(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout4: str,
    name: str,
    activation: str,
    need_dx: bool,
) -> None:
    # A convolution's backward pass through the 2x2 max pooling of its output, as the
    # reference's maxpool2d_backward then conv2d_backward (odd output sizes: 1x1 pools 5x5).
    (x, w, b), (x64, w64, b64) = _conv_inputs(backend, rng, dtype, layout4, name)
    _, _, _, _, _, _, stride, padding = CONFIGS[name]
    y_ref, _ = reference.conv2d_forward(x64, w64, b64, stride, padding, activation, ALPHA)
    y, y64 = _image(backend, y_ref, dtype, layout4)
    pooled, argmax64 = reference.maxpool2d_forward(y64, (2, 2), (2, 2))
    argmax = backend.asarray(argmax64)
    dp, dp64 = _image(backend, random_array(rng, pooled.shape), dtype, layout4)
    dx, dw, db = backend.conv2d_maxpool_backward(
        dp, argmax, (2, 2), (2, 2), x, w, y, None, stride, padding, activation, ALPHA, need_dx
    )
    want_dx, want_dw, want_db = reference.conv2d_maxpool_backward(
        dp64, argmax64, (2, 2), (2, 2), x64, w64, y64, None, stride, padding, activation, ALPHA
    )
    if need_dx:
        assert_close("conv2d_maxpool_backward", backend, dx, want_dx, dtype=dtype, label="dx")
    else:
        assert dx is None, "need_dx=False must return dx=None"
    assert_close("conv2d_maxpool_backward", backend, dw, want_dw, dtype=dtype, label="dw")
    assert_close("conv2d_maxpool_backward", backend, db, want_db, dtype=dtype, label="db")
    for label, arr, values in (("dp", dp, dp64), ("x", x, x64), ("y", y, y64)):
        assert_unchanged(backend, arr, values, label)


@pytest.mark.parametrize("pool", POOLS)
def test_maxpool2d(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout4: str,
    pool: str,
) -> None:
    size, stride = POOLS[pool]
    # Distinct values (a shuffled grid) so no window has a tie, whatever the rounding.
    shape = (2, 3, 7, 8)
    grid = rng.permutation(numpy.prod(shape)).reshape(shape) / numpy.prod(shape) * 2 - 1
    x, x64 = _image(backend, grid, dtype, layout4)
    y, argmax = backend.maxpool2d_forward(x, size, stride)
    want_y, want_argmax = reference.maxpool2d_forward(x64, size, stride)
    assert_close("maxpool2d_forward", backend, y, want_y, dtype=dtype)
    assert_close("maxpool2d_forward", backend, argmax, want_argmax, dtype=dtype, label="argmax")
    assert_unchanged(backend, x, x64, "x")
    dy, dy64 = _image(backend, random_array(rng, want_y.shape), dtype, layout4)
    got = backend.maxpool2d_backward(dy, argmax, shape, size, stride)
    want = reference.maxpool2d_backward(dy64, want_argmax, shape, size, stride)
    assert_close("maxpool2d_backward", backend, got, want, dtype=dtype)
    assert_unchanged(backend, dy, dy64, "dy")


@pytest.mark.parametrize("pool", POOLS)
def test_avgpool2d(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout4: str,
    pool: str,
) -> None:
    size, stride = POOLS[pool]
    shape = (2, 3, 7, 8)
    x, x64 = _image(backend, random_array(rng, shape), dtype, layout4)
    got = backend.avgpool2d_forward(x, size, stride)
    want = reference.avgpool2d_forward(x64, size, stride)
    assert_close("avgpool2d_forward", backend, got, want, dtype=dtype)
    assert_unchanged(backend, x, x64, "x")
    dy, dy64 = _image(backend, random_array(rng, want.shape), dtype, layout4)
    got = backend.avgpool2d_backward(dy, shape, size, stride)
    want = reference.avgpool2d_backward(dy64, shape, size, stride)
    assert_close("avgpool2d_backward", backend, got, want, dtype=dtype)
    assert_unchanged(backend, dy, dy64, "dy")


def test_maxpool2d_nan_reaches_the_output(backend: Backend) -> None:
    x = numpy.arange(16, dtype=numpy.float64).reshape(1, 1, 4, 4)
    x[0, 0, 1, 0] = numpy.nan
    y, argmax = backend.maxpool2d_forward(backend.asarray(x), (2, 2), (2, 2))
    host = backend.to_numpy(y)
    assert numpy.isnan(host[0, 0, 0, 0]) and host[0, 0, 1, 1] == 15
    assert int(backend.to_numpy(argmax)[0, 0, 0, 0]) == 2


def test_bad_shapes_are_input_errors(backend: Backend) -> None:
    x = backend.asarray(numpy.zeros((2, 3, 5, 5)))
    w = backend.asarray(numpy.zeros((4, 2, 3, 3)))
    b = backend.asarray(numpy.zeros((1, 4)))
    with pytest.raises(InputError, match=r"\(n, 2, h, w\)"):
        backend.conv2d_forward(x, w, b)
    with pytest.raises(InputError, match="does not fit"):
        backend.conv2d_forward(x[:, :2], backend.asarray(numpy.zeros((4, 2, 7, 7))), b)
    with pytest.raises(InputError, match="does not fit"):
        backend.maxpool2d_forward(x, (6, 6), (1, 1))
    with pytest.raises(InputError, match="NCHW"):
        backend.avgpool2d_forward(backend.asarray(numpy.zeros((2, 25))), (2, 2), (2, 2))
    with pytest.raises(InputError, match="cannot fuse activation 'softmax'"):
        backend.conv_bias_activation(backend.asarray(numpy.zeros((4, 2, 3, 3))), b, "softmax")
