"""The strict device stand-in refuses implicit host copies and device mixing, and counts syncs."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import numpy
import pytest

from nnback.testing import (
    StrictArray,
    StrictBackend,
    make_strict_namespace,
    strict_to_numpy,
    unwrap_strict,
)


@pytest.fixture
def xp() -> Any:
    return make_strict_namespace("strict:0")


@pytest.fixture
def x(xp: Any) -> StrictArray:
    return xp.asarray(numpy.arange(6.0).reshape(2, 3))


IMPLICIT_HOST: dict[str, Callable[[StrictArray], Any]] = {
    "numpy.asarray": numpy.asarray,
    "numpy.array": numpy.array,
    "numpy.ascontiguousarray": numpy.ascontiguousarray,
    "numpy.sum": numpy.sum,
    "numpy.exp": numpy.exp,
    "numpy.matmul": lambda a: numpy.matmul(a, a.T),
    "list": list,
    "iter": iter,
    "in": lambda a: 1.0 in a,
    "pickle": pickle.dumps,
    "bool of 2-d": bool,
    "float of 2-d": float,
    "int of 1-d": lambda a: int(a[0]),
    "format of 2-d": lambda a: f"{a:.2f}",
    "index with 1-d": lambda a: [1, 2, 3][a[0].astype(numpy.int64)],
    "memoryview": memoryview,
}


@pytest.mark.parametrize("conversion", IMPLICIT_HOST)
def test_implicit_host_conversion_is_refused(x: StrictArray, xp: Any, conversion: str) -> None:
    with pytest.raises(TypeError):
        IMPLICIT_HOST[conversion](x)
    assert xp.host_syncs == 0 and xp.to_host == 0


HOST = numpy.ones((2, 3))
MIXING: dict[str, Callable[[Any, StrictArray], Any]] = {
    "x + host": lambda xp, a: a + HOST,
    "host + x": lambda xp, a: HOST + a,
    "host * x": lambda xp, a: HOST * a,
    "x += host": lambda xp, a: a.__iadd__(HOST),
    "x < host": lambda xp, a: a < HOST,
    "host < x": lambda xp, a: HOST < a,
    "x == host": lambda xp, a: a == HOST,
    "x @ host": lambda xp, a: a @ HOST.T,
    "x + list": lambda xp, a: a + [1.0, 2.0, 3.0],
    "x + 0-d host": lambda xp, a: a + numpy.array(2.0),
    "maximum": lambda xp, a: xp.maximum(a, HOST),
    "where": lambda xp, a: xp.where(HOST > 0, a, 0.0),
    "matmul": lambda xp, a: xp.matmul(a, HOST.T),
    "matmul out": lambda xp, a: xp.matmul(a, a.T, out=numpy.empty((2, 2))),
    "exp out": lambda xp, a: xp.exp(a, out=numpy.empty((2, 3))),
    "clip": lambda xp, a: xp.clip(a, HOST, 2.0),
    "sum": lambda xp, a: xp.sum(HOST),
    "zeros_like": lambda xp, a: xp.zeros_like(HOST),
    "take_along_axis": lambda xp, a: xp.take_along_axis(a, numpy.zeros((2, 1), int), axis=1),
    "setitem value": lambda xp, a: a.__setitem__(0, HOST[0]),
    "getitem host index": lambda xp, a: a[numpy.array([0, 1])],
    "getitem list index": lambda xp, a: a[[0, 1]],
    "setitem host index": lambda xp, a: a.__setitem__((numpy.array([0]), 0), 1.0),
}


@pytest.mark.parametrize("case", MIXING)
def test_mixing_with_host_arrays_is_refused(x: StrictArray, xp: Any, case: str) -> None:
    with pytest.raises(TypeError, match="mixing host"):
        MIXING[case](xp, x)


def test_mixing_devices_is_refused(x: StrictArray, xp: Any) -> None:
    other = make_strict_namespace("strict:1")
    y = other.asarray(numpy.ones((2, 3)))
    for attempt in (
        lambda: x + y,
        lambda: y * x,
        lambda: x.__iadd__(y),
        lambda: xp.maximum(x, y),
        lambda: other.exp(x),
        lambda: xp.asarray(y),
        lambda: x.__setitem__(0, y[0]),
        lambda: x[other.asarray(numpy.array([0, 1]))],
    ):
        with pytest.raises(TypeError, match="devices 'strict:[01]' and 'strict:[01]'"):
            attempt()


def test_scalars_are_fine_and_follow_numpy_promotion(x: StrictArray, xp: Any) -> None:
    f32 = xp.asarray(numpy.ones((2, 2), dtype=numpy.float32))
    assert (f32 * 2.5).dtype == numpy.float32  # a Python float is weak (NEP 50)
    assert (numpy.float32(2) * f32).dtype == numpy.float32
    assert (f32 + numpy.float64(1)).dtype == numpy.float64  # a NumPy scalar is not
    assert isinstance(1 - x, StrictArray) and isinstance(0 < x, StrictArray)
    assert isinstance(x[0, 1], StrictArray) and x[0, 1].shape == ()  # 0-d, not a scalar
    assert isinstance(xp.sum(x), StrictArray) and xp.sum(x).shape == ()
    x **= 2
    x /= 2
    x -= -1
    numpy.testing.assert_array_equal(
        strict_to_numpy(x), numpy.arange(6.0).reshape(2, 3) ** 2 / 2 + 1
    )


def test_scalar_reads_are_explicit_and_counted(x: StrictArray, xp: Any) -> None:
    total = xp.sum(x)
    assert float(total) == 15.0
    assert int(total) == 15
    assert bool(total > 1)
    assert f"{total:.1f}" == "15.0"
    assert total.item() == 15.0
    assert [10, 11, 12][xp.argmax(x[0])] == 12
    assert xp.host_syncs == 6
    assert xp.to_host == 0


def test_transfers_are_explicit_and_counted(xp: Any) -> None:
    host = numpy.arange(4.0)
    a = xp.asarray(host)
    assert xp.counters() == {"host_syncs": 0, "to_device": 1, "to_host": 0}
    host[0] = 99.0  # the device copy does not alias host memory
    assert xp.asarray(a) is a and xp.to_device == 1  # already on the device: no transfer
    xp.array([1.0, 2.0])
    assert xp.to_device == 2
    back = strict_to_numpy(a)
    assert xp.to_host == 1 and back[0] == 0.0
    back[1] = -1.0  # nor does the host copy alias device memory
    assert float(a[1]) == 1.0
    unwrap_strict(a)  # not a transfer: for implementing device functions
    assert xp.to_host == 1
    xp.reset_counters()
    assert xp.counters() == {"host_syncs": 0, "to_device": 0, "to_host": 0}


def test_views_in_place_ops_and_metadata(x: StrictArray, xp: Any) -> None:
    row = x[1]
    row += 10  # writes through the view, as on NumPy and CuPy
    column = x.T[0]  # column 0 of x
    column[...] = -1
    host = strict_to_numpy(x)
    numpy.testing.assert_array_equal(host, [[-1, 1, 2], [-1, 14, 15]])
    assert x.T.shape == (3, 2) and not x.T.flags.c_contiguous and x.T.flags.f_contiguous
    assert x[:, ::2].strides == (24, 16) and x.ndim == 2 and x.size == 6 and len(x) == 2
    assert x.reshape(3, 2).shape == x.reshape((3, 2)).shape == (3, 2)
    assert x.astype(numpy.float32).dtype == numpy.float32 and x.ravel().shape == (6,)
    assert x.device == "strict:0" and "strict:0" in repr(x) and "14" not in repr(x)
    assert isinstance(copy.deepcopy(x), StrictArray) and xp.to_host == 1


def test_missing_functions_say_where_to_add_them(xp: Any) -> None:
    with pytest.raises(AttributeError, match=r"nnback/testing/strict.py"):
        xp.fft  # noqa: B018
    assert xp.ndarray is StrictArray and xp.float32 is numpy.float32


def test_backend_on_the_strict_device() -> None:
    backend = StrictBackend()
    x = backend.asarray(numpy.ones((3, 2)))
    assert backend.is_array(x) and not backend.is_array(numpy.ones(2))
    assert isinstance(backend.to_numpy(x), numpy.ndarray)
    assert backend.to_numpy(numpy.ones(2)).shape == (2,)  # host input: nothing to move
    assert backend.xp.counters() == {"host_syncs": 0, "to_device": 1, "to_host": 1}
    assert "strict:0" in backend.info()["device"]
    assert StrictBackend().xp is not backend.xp  # each backend counts on its own


def test_every_op_runs_without_a_host_sync() -> None:
    # The whole reference, on the strict device: only the declared synchronising ops
    # (all_finite, to_float) may read the device, and each counts exactly once.
    b = StrictBackend()
    rng = numpy.random.default_rng(0)
    x = b.asarray(rng.uniform(-1, 1, (8, 5)))
    w = b.asarray(rng.uniform(-1, 1, (5, 4)))
    bias = b.asarray(rng.uniform(-1, 1, (1, 4)))
    labels = b.asarray(rng.integers(0, 4, 8))
    onehot = b.asarray(numpy.eye(4)[rng.integers(0, 4, 8)])
    mask = b.asarray(rng.random((8, 4)) > 0.5)
    transfers = b.xp.to_device
    for act in ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax"):
        y = b.dense_forward(x, w, bias, act, out=b.empty((8, 4), numpy.float64))
        b.dense_backward(y, x, w, y, act, out=(None, b.zeros_like(w), b.zeros_like(bias)))
    for y_true in (labels, onehot):
        b.softmax_crossentropy(y, y_true)
        b.categorical_crossentropy(y, y_true)
        b.count_correct(y, y_true)
    b.binary_crossentropy(y, onehot)
    b.mean_squared_error(y, onehot)
    b.mean_absolute_error(y, onehot)
    b.count_within(y, onehot, 0.5)
    b.dropout_backward(b.dropout_forward(y, mask, 2.0), mask, 2.0)
    b.regularization_loss(w, 0.1, 0.1)
    g = b.copy(w)
    b.sgd_update_inplace(w, g, b.zeros_like(w), 0.1, momentum=0.9, l1=0.1, l2=0.1)
    b.adagrad_update_inplace(w, g, b.zeros_like(w), 0.1)
    b.rmsprop_update_inplace(w, g, b.zeros_like(w), 0.1)
    s1, s2 = b.zeros_like(w), b.zeros_like(w)
    b.adam_update_inplace(w, g, s1, s2, 0.1, step=1)
    b.scale_inplace(w, b.sum(b.mean(w, axis=0)) + b.squared_norm(w))
    b.copy_into_inplace(s1, b.argmax(w, axis=1).reshape(5, 1) + w)
    assert b.xp.counters() == {"host_syncs": 0, "to_device": transfers, "to_host": 0}
    assert b.all_finite(w) and isinstance(b.to_float(b.sum(w)), float)
    assert b.xp.counters() == {"host_syncs": 1, "to_device": transfers, "to_host": 1}
