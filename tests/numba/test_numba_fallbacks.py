"""Every override of the numba backend falls back to the reference op when its kernel can't
take the call (layout, dtype, shape, argument type), and the fallback gives the reference's
result.

Each case runs once on the numba backend with a spy on the base class's ops, asserting the
reference op was reached through ``super()``, and once on the NumPy reference with the same
inputs; a fallback computes exactly what the reference computes, so results must be equal.
The contiguous twin of each case is checked to take the kernel, so the trigger is the one
thing that differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy
import pytest

pytest.importorskip("numba", reason="the numba backend needs numba: pip install 'nnback[numba]'")

from nnback import get_backend
from nnback.errors import InputError
from nnback.testing import random_array

N, K_IN, K_OUT = 6, 5, 4
F32 = numpy.float32

Args = tuple[tuple[Any, ...], dict[str, Any]]


def _a(rng: numpy.random.Generator, *shape: int, dtype: Any = F32) -> numpy.ndarray:
    return random_array(rng, shape).astype(dtype)


def _strided(a: numpy.ndarray) -> numpy.ndarray:
    """The values of ``a`` as every other row of a NaN-padded array (not C-contiguous)."""
    padded = numpy.full((2 * a.shape[0], *a.shape[1:]), numpy.nan, a.dtype)
    padded[::2] = a
    return padded[::2]


def _transposed(a: numpy.ndarray) -> numpy.ndarray:
    return numpy.ascontiguousarray(a.T).T


def _labels(rng: numpy.random.Generator, low: int = 0) -> numpy.ndarray:
    return rng.integers(low, K_OUT, size=N)


def _probs(rng: numpy.random.Generator, dtype: Any = F32) -> numpy.ndarray:
    return rng.uniform(0.05, 0.95, size=(N, K_OUT)).astype(dtype)


def _dense_backward(rng: numpy.random.Generator, **change: Any) -> Args:
    dy, x, w = _a(rng, N, K_OUT), _a(rng, N, K_IN), _a(rng, K_IN, K_OUT)
    y = numpy.abs(_a(rng, N, K_OUT))
    args = {"dy": dy, "x": x, "w": w, "y": y}
    kwargs: dict[str, Any] = {"activation": "relu"}
    for key, value in change.items():
        (args if key in args else kwargs)[key] = value(args[key]) if key in args else value
    return (args["dy"], args["x"], args["w"], args["y"]), kwargs


def _epilogue_backward(rng: numpy.random.Generator, **change: Any) -> Args:
    """activation_bias_backward's arguments: dense_backward's without x and w."""
    (dy, _, _, y), kwargs = _dense_backward(rng, **change)
    return (dy, y), kwargs


def _adam(rng: numpy.random.Generator, layout: Callable[[Any], Any] = lambda a: a) -> Args:
    p, g, m, v = (layout(_a(rng, K_IN, K_OUT)) for _ in range(4))
    v = numpy.abs(v)
    return (p, g, m, v, 1e-2), {"step": 3, "l1": 1e-3, "l2": 1e-3}


# case id -> (op, builder of (args, kwargs), positions of arguments modified in place).
# Each builder is called with a fresh generator of the same seed, so calls get equal data.
CASES: dict[str, tuple[str, Callable[[numpy.random.Generator], Args], tuple[int, ...]]] = {
    "activation_forward-transposed": (
        "activation_forward",
        lambda r: ((_transposed(_a(r, N, K_OUT)), "relu"), {}),
        (),
    ),
    "activation_forward-linear": (
        "activation_forward",
        lambda r: ((_a(r, N, 3), "linear"), {}),
        (),
    ),
    "activation_forward-int": (
        "activation_forward",
        lambda r: ((r.integers(-3, 3, size=(N, 3)), "leaky_relu"), {"alpha": 0.5}),
        (),
    ),
    "activation_backward-mixed-dtypes": (
        "activation_backward",
        lambda r: ((_a(r, N, 3), _a(r, N, 3, dtype=numpy.float64), "sigmoid"), {}),
        (),
    ),
    "activation_backward-strided": (
        "activation_backward",
        lambda r: ((_strided(_a(r, N, 3)), _a(r, N, 3), "tanh"), {}),
        (),
    ),
    "softmax-float16": ("softmax", lambda r: ((_a(r, N, 3, dtype=numpy.float16),), {}), ()),
    "softmax-transposed": ("softmax", lambda r: ((_transposed(_a(r, N, 3)),), {}), ()),
    "bias_activation_inplace-float64-bias": (
        "bias_activation_inplace",
        lambda r: ((_a(r, N, K_OUT), _a(r, 1, K_OUT, dtype="f8"), "relu"), {}),
        (0,),
    ),
    "bias_activation_inplace-strided-z": (
        "bias_activation_inplace",
        lambda r: ((_strided(_a(r, N, K_OUT)), _a(r, 1, K_OUT), "tanh"), {}),
        (0,),
    ),
    "bias_activation_inplace-per-sample-bias": (
        "bias_activation_inplace",
        lambda r: ((_a(r, N, K_OUT), _a(r, N, K_OUT), "sigmoid"), {}),
        (0,),
    ),
    "activation_bias_backward-strided-dy": (
        "activation_bias_backward",
        lambda r: _epilogue_backward(r, dy=_strided),
        (),
    ),
    "activation_bias_backward-float64-y": (
        "activation_bias_backward",
        lambda r: _epilogue_backward(r, y=lambda a: a.astype(numpy.float64)),
        (),
    ),
    "activation_bias_backward-strided-db-out": (
        "activation_bias_backward",
        lambda r: _epilogue_backward(
            r, out_db=numpy.zeros((1, 2 * K_OUT), F32)[:, ::2], activation="softmax"
        ),
        (),
    ),
    "count_correct-onehot": (
        "count_correct",
        lambda r: ((_a(r, N, K_OUT), numpy.eye(K_OUT, dtype=F32)[_labels(r)]), {}),
        (),
    ),
    "count_correct-one-column": (
        "count_correct",
        lambda r: ((_probs(r)[:, :1].copy(), (_labels(r) % 2).astype(F32)), {}),
        (),
    ),
    "softmax_crossentropy-negative-labels": (
        "softmax_crossentropy",
        lambda r: ((_a(r, N, K_OUT), _labels(r, low=-K_OUT)), {}),
        (),
    ),
    "softmax_crossentropy-int-onehot": (
        "softmax_crossentropy",
        lambda r: ((_a(r, N, K_OUT), numpy.eye(K_OUT, dtype=numpy.int64)[_labels(r)]), {}),
        (),
    ),
    "softmax_crossentropy-strided": (
        "softmax_crossentropy",
        lambda r: ((_strided(_a(r, N, K_OUT)), _labels(r)), {}),
        (),
    ),
    "categorical_crossentropy-negative-labels": (
        "categorical_crossentropy",
        lambda r: ((_probs(r), _labels(r, low=-K_OUT)), {}),
        (),
    ),
    "categorical_crossentropy-transposed": (
        "categorical_crossentropy",
        lambda r: ((_transposed(_probs(r)), numpy.eye(K_OUT, dtype=F32)[_labels(r)]), {}),
        (),
    ),
    "binary_crossentropy-mixed-dtypes": (
        "binary_crossentropy",
        lambda r: ((_probs(r), r.integers(0, 2, size=(N, K_OUT)).astype("f8")), {}),
        (),
    ),
    "mean_squared_error-strided": (
        "mean_squared_error",
        lambda r: ((_strided(_a(r, N, 3)), _a(r, N, 3)), {"with_grad": False}),
        (),
    ),
    "mean_absolute_error-broadcast-target": (
        "mean_absolute_error",
        lambda r: ((_a(r, N, 3), _a(r, 1, 3)), {}),
        (),
    ),
    "dropout_forward-float64-mask": (
        "dropout_forward",
        lambda r: ((_a(r, N, 3), (r.random((N, 3)) > 0.3).astype("f8"), 1 / 0.7), {}),
        (),
    ),
    "dropout_backward-strided": (
        "dropout_backward",
        lambda r: ((_strided(_a(r, N, 3)), r.random((N, 3)) > 0.3, 1 / 0.7), {}),
        (),
    ),
    "sgd_update_inplace-strided-velocity": (
        "sgd_update_inplace",
        lambda r: ((_a(r, N, 3), _a(r, N, 3), _strided(_a(r, N, 3)), 0.1), {"momentum": 0.9}),
        (0, 2),
    ),
    "sgd_update_inplace-array-learning-rate": (
        "sgd_update_inplace",
        lambda r: ((_a(r, N, 3), _a(r, N, 3), None, numpy.asarray(0.1)), {"l2": 0.01}),
        (0,),
    ),
    "adagrad_update_inplace-float64-cache": (
        "adagrad_update_inplace",
        lambda r: ((_a(r, N, 3), _a(r, N, 3), numpy.abs(_a(r, N, 3, dtype="f8")), 0.1), {}),
        (0, 2),
    ),
    "rmsprop_update_inplace-transposed": (
        "rmsprop_update_inplace",
        lambda r: (
            (_transposed(_a(r, N, 3)), _a(r, 3, N).T.copy(), numpy.abs(_a(r, N, 3)), 0.1),
            {"l1": 0.01},
        ),
        (0, 2),
    ),
    "adam_update_inplace-strided": ("adam_update_inplace", lambda r: _adam(r, _strided), (0, 2, 3)),
    # Convolution and pooling: NCHW batches of 2 images, 3 channels, 7x6 pixels.
    "conv2d_forward-strided-x": (
        "conv2d_forward",
        lambda r: (
            (_strided(_a(r, 2, 3, 7, 6)), _a(r, 4, 3, 3, 3), _a(r, 1, 4)),
            {"stride": (1, 2), "padding": (1, 0), "activation": "relu"},
        ),
        (),
    ),
    "conv2d_backward-float64-dy": ("conv2d_backward", lambda r: _conv_backward(r, "f8"), ()),
    "conv2d_maxpool_backward-float64-dp": (
        "conv2d_maxpool_backward",
        lambda r: (
            (
                _a(r, 2, 4, 2, 2, dtype="f8"),
                r.integers(0, 4, (2, 4, 2, 2)).astype(numpy.int32),
                (2, 2),
                (2, 2),
                *_conv_backward(r, "f4")[0][1:],
            ),
            {"activation": "relu"},
        ),
        (),
    ),
    "im2col-float16": (
        "im2col",
        lambda r: ((_a(r, 2, 3, 7, 6, dtype="f2"), (3, 2)), {"stride": (2, 1), "padding": (1, 1)}),
        (),
    ),
    "col2im-strided-cols": (
        "col2im",
        lambda r: ((_strided(_a(r, 18, 2 * 5 * 7)), (2, 3, 7, 6), (3, 2)), {"padding": (0, 1)}),
        (),
    ),
    "conv_bias_activation-transposed-z": (
        "conv_bias_activation",
        lambda r: ((_a(r, 2, 4, 5, 6).transpose(1, 0, 2, 3), _a(r, 1, 4), "leaky_relu"), {}),
        (),
    ),
    "conv_activation_bias_backward-float64-y": (
        "conv_activation_bias_backward",
        lambda r: ((_a(r, 2, 4, 5, 6), numpy.abs(_a(r, 2, 4, 5, 6, dtype="f8")), "relu"), {}),
        (),
    ),
    "maxpool2d_forward-strided": (
        "maxpool2d_forward",
        lambda r: ((_strided(_a(r, 2, 3, 7, 6)), (2, 2), (2, 2)), {}),
        (),
    ),
    "maxpool2d_backward-int64-argmax": (
        "maxpool2d_backward",
        lambda r: (
            (_a(r, 2, 3, 3, 3), r.integers(0, 4, (2, 3, 3, 3)), (2, 3, 7, 6), (2, 2), (2, 2)),
            {},
        ),
        (),
    ),
    "avgpool2d_forward-float16": (
        "avgpool2d_forward",
        lambda r: ((_a(r, 2, 3, 7, 6, dtype="f2"), (3, 2), (2, 2)), {}),
        (),
    ),
    "avgpool2d_backward-strided-dy": (
        "avgpool2d_backward",
        lambda r: ((_strided(_a(r, 2, 3, 3, 3)), (2, 3, 7, 6), (2, 2), (2, 2)), {}),
        (),
    ),
}


def _conv_backward(rng: numpy.random.Generator, dy_dtype: Any) -> Args:
    x, w = _a(rng, 2, 3, 7, 6), _a(rng, 4, 3, 3, 3)
    y = numpy.abs(_a(rng, 2, 4, 5, 4))
    dy = _a(rng, 2, 4, 5, 4, dtype=dy_dtype)
    return (dy, x, w, y), {"activation": "relu"}


def _run(backend: Any, op: str, build: Callable[[numpy.random.Generator], Args]) -> tuple:
    args, kwargs = build(numpy.random.default_rng(7))
    result = getattr(backend, op)(*args, **kwargs)
    return args, result


def _outputs(args: tuple, result: Any, mutated: tuple[int, ...]) -> list[numpy.ndarray]:
    if mutated:
        return [numpy.asarray(args[i]) for i in mutated]
    values = result if isinstance(result, tuple) else (result,)
    return [numpy.asarray(v) for v in values if v is not None]


def test_every_override_has_a_fallback_case(overridden_ops: list[str]) -> None:
    covered = {op for op, _, _ in CASES.values()}
    missing = set(overridden_ops) - covered
    assert not missing, f"no fallback case for {sorted(missing)}"
    assert len(overridden_ops) == 28


@pytest.mark.parametrize("case", CASES)
def test_fallback_matches_reference(numba_backend: Any, fallbacks: list[str], case: str) -> None:
    op, build, mutated = CASES[case]
    args, result = _run(numba_backend, op, build)
    assert op in fallbacks, f"{op} did not fall back to the reference for {case}"
    want_args, want = _run(get_backend("numpy"), op, build)
    got, expected = _outputs(args, result, mutated), _outputs(want_args, want, mutated)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        if op.startswith("dropout") and args[1].dtype == numpy.bool_:
            # The fallback rounds the scale to x's dtype first (see the test below).
            numpy.testing.assert_allclose(g, e, rtol=2 * numpy.finfo(F32).eps)
        else:
            numpy.testing.assert_array_equal(g, e)


def test_contiguous_twin_takes_the_kernel(numba_backend: Any, fallbacks: list[str]) -> None:
    # The same builders with C-contiguous float32 inputs: no op reaches the reference.
    rng = numpy.random.default_rng(3)
    x, w, b = _a(rng, N, K_IN), _a(rng, K_IN, K_OUT), _a(rng, 1, K_OUT)
    y = numba_backend.dense_forward(x, w, b, "relu")
    numba_backend.dense_backward(*_dense_backward(rng)[0], activation="relu")
    numba_backend.activation_forward(x, "tanh")
    numba_backend.activation_backward(y, y, "sigmoid")
    numba_backend.softmax(y)
    numba_backend.softmax_crossentropy(y, _labels(rng))
    numba_backend.count_correct(y, _labels(rng))
    numba_backend.categorical_crossentropy(_probs(rng), _labels(rng))
    numba_backend.binary_crossentropy(_probs(rng), _probs(rng))
    numba_backend.mean_squared_error(y, y)
    numba_backend.mean_absolute_error(y, y)
    numba_backend.dropout_forward(y, rng.random(y.shape) > 0.5, 2.0)
    numba_backend.dropout_backward(y, (rng.random(y.shape) > 0.5).astype(F32), 2.0)
    numba_backend.sgd_update_inplace(_a(rng, 3), _a(rng, 3), _a(rng, 3), 0.1, momentum=0.9)
    numba_backend.adagrad_update_inplace(_a(rng, 3), _a(rng, 3), numpy.ones(3, F32), 0.1)
    numba_backend.rmsprop_update_inplace(_a(rng, 3), _a(rng, 3), numpy.ones(3, F32), 0.1)
    args, kwargs = _adam(rng)
    numba_backend.adam_update_inplace(*args, **kwargs)
    assert fallbacks == []


def test_dropout_fallback_keeps_the_dtype(numba_backend: Any, fallbacks: list[str]) -> None:
    # The reference's bool_mask * python_float is float64 and would upcast float32
    # activations; the fallback passes the scale in x's dtype, so it stays float32.
    rng = numpy.random.default_rng(1)
    x = _strided(_a(rng, N, 3))
    mask = rng.random((N, 3)) > 0.3
    got = numba_backend.dropout_forward(x, mask, 1 / 0.7)
    assert fallbacks == ["dropout_forward"]
    assert got.dtype == F32
    numpy.testing.assert_allclose(got, x * mask / F32(0.7), rtol=2 * numpy.finfo(F32).eps)


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("activation_forward", (numpy.ones((2, 2), F32), "swish")),
        ("activation_backward", (numpy.ones((2, 2), F32), numpy.ones((2, 2), F32), "gelu")),
        ("bias_activation_inplace", (numpy.ones((2, 2), F32), numpy.ones(2, F32), "selu")),
    ],
)
def test_unknown_activation_raises_through_the_reference(
    numba_backend: Any, fallbacks: list[str], op: str, args: tuple
) -> None:
    with pytest.raises(InputError, match="unknown activation"):
        getattr(numba_backend, op)(*args)
    assert op in fallbacks


def test_adam_step_zero_raises_through_the_reference(
    numba_backend: Any, fallbacks: list[str]
) -> None:
    args, kwargs = _adam(numpy.random.default_rng(0))
    with pytest.raises(InputError, match="counts from 1"):
        numba_backend.adam_update_inplace(*args, **{**kwargs, "step": 0})
    assert fallbacks == ["adam_update_inplace"]


def test_read_only_parameter_raises_through_the_reference(
    numba_backend: Any, fallbacks: list[str]
) -> None:
    param = numpy.ones(4, F32)
    param.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        numba_backend.sgd_update_inplace(param, numpy.ones(4, F32), None, 0.1)
    assert fallbacks == ["sgd_update_inplace"]
