"""Parity of the fused dense layer (forward and backward), its epilogues, and matmul."""

from __future__ import annotations

import numpy
import pytest

from nnback.backends.base import ACTIVATIONS, Backend
from nnback.testing import assert_close, assert_unchanged, make_input, random_array, to_host

N, K_IN, K_OUT = 32, 24, 10


def _layer(
    backend: Backend, rng: numpy.random.Generator, dtype: numpy.dtype, layout: str
) -> tuple[tuple[object, object, object], tuple[numpy.ndarray, ...]]:
    """Input x (N, K_IN), weights w (K_IN, K_OUT) of variance 1/K_IN, bias b (1, K_OUT)."""
    x, x64 = make_input(backend, random_array(rng, (N, K_IN)), dtype, layout)
    limit = numpy.sqrt(3.0 / K_IN)  # uniform with variance 1/K_IN, as Glorot/He scale it
    w, w64 = make_input(backend, random_array(rng, (K_IN, K_OUT), -limit, limit), dtype, layout)
    b, b64 = make_input(backend, random_array(rng, (1, K_OUT), -0.5, 0.5), dtype, layout)
    return (x, w, b), (x64, w64, b64)


def _workspace(backend: Backend, shape: tuple[int, ...], dtype: numpy.dtype) -> object:
    """A workspace full of NaN, so a kernel that accumulates into it instead of writing fails."""
    return backend.asarray(numpy.full(shape, numpy.nan, dtype=dtype))


@pytest.mark.parametrize("use_out", [False, True], ids=["new", "out"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_forward(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    activation: str,
    use_out: bool,
) -> None:
    (x, w, b), (x64, w64, b64) = _layer(backend, rng, dtype, layout)
    out = _workspace(backend, (N, K_OUT), dtype) if use_out else None
    got = backend.dense_forward(x, w, b, activation, alpha=0.05, out=out)
    want = reference.dense_forward(x64, w64, b64, activation, alpha=0.05)
    assert_close("dense_forward", backend, got, want, dtype=dtype)
    if use_out:
        assert got is out, "dense_forward must return the workspace it was given"
    for name, arr, values in (("x", x, x64), ("w", w, w64), ("b", b, b64)):
        assert_unchanged(backend, arr, values, name)


VARIANTS = {
    "plain": {},
    "no_dx": {"need_dx": False},
    "overwrite_dy": {"overwrite_dy": True},
    "out": {"out": "all"},
    "out_partial": {"out": "dw_db", "need_dx": False},
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_backward(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    activation: str,
    variant: str,
) -> None:
    options = dict(VARIANTS[variant])
    (x, w, _), (x64, w64, b64) = _layer(backend, rng, dtype, layout)
    # y is the reference forward output rounded to the dtype: both sides see the same y.
    y, y64 = make_input(backend, reference.dense_forward(x64, w64, b64, activation), dtype, layout)
    dy, dy64 = make_input(backend, random_array(rng, (N, K_OUT)), dtype, layout)
    out = options.pop("out", None)
    if out is not None:
        dx_ws = _workspace(backend, (N, K_IN), dtype) if out == "all" else None
        out = (
            dx_ws,
            _workspace(backend, (K_IN, K_OUT), dtype),
            _workspace(backend, (1, K_OUT), dtype),
        )
    dx, dw, db = backend.dense_backward(dy, x, w, y, activation, alpha=0.05, out=out, **options)
    want_dx, want_dw, want_db = reference.dense_backward(
        dy64, x64, w64, y64, activation, alpha=0.05
    )
    need_dx = options.get("need_dx", True)
    if need_dx:
        assert_close("dense_backward", backend, dx, want_dx, dtype=dtype, label="dx")
    else:
        assert dx is None, "need_dx=False must return dx=None"
    assert_close("dense_backward", backend, dw, want_dw, dtype=dtype, label="dw")
    assert_close("dense_backward", backend, db, want_db, dtype=dtype, label="db")
    if out is not None:
        assert dw is out[1] and db is out[2], "dense_backward must return its workspaces"
        if need_dx:
            assert dx is out[0]
    if not options.get("overwrite_dy", False):
        assert_unchanged(backend, dy, dy64, "dy")
    for name, arr, values in (("x", x, x64), ("w", w, w64), ("y", y, y64)):
        assert_unchanged(backend, arr, values, name)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bias_activation_inplace(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    activation: str,
) -> None:
    z, z64 = make_input(backend, random_array(rng, (N, K_OUT), -3.0, 3.0), dtype, layout)
    b, b64 = make_input(backend, random_array(rng, (1, K_OUT), -0.5, 0.5), dtype, layout)
    assert backend.bias_activation_inplace(z, b, activation, alpha=0.05) is None
    want = z64.copy()
    reference.bias_activation_inplace(want, b64, activation, alpha=0.05)
    assert_close("bias_activation_inplace", backend, z, want, dtype=dtype)
    assert_unchanged(backend, b, b64, "b")


@pytest.mark.parametrize("variant", ["plain", "overwrite_dy", "out_db"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_bias_backward(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    activation: str,
    variant: str,
) -> None:
    z64 = random_array(rng, (N, K_OUT), -3.0, 3.0)
    y, y64 = make_input(backend, reference.activation_forward(z64, activation, 0.05), dtype, layout)
    dy, dy64 = make_input(backend, random_array(rng, (N, K_OUT)), dtype, layout)
    out_db = _workspace(backend, (1, K_OUT), dtype) if variant == "out_db" else None
    dz, db = backend.activation_bias_backward(
        dy, y, activation, 0.05, overwrite_dy=variant == "overwrite_dy", out_db=out_db
    )
    want_dz, want_db = reference.activation_bias_backward(dy64, y64, activation, 0.05)
    assert_close("activation_bias_backward", backend, dz, want_dz, dtype=dtype, label="dz")
    assert_close("activation_bias_backward", backend, db, want_db, dtype=dtype, label="db")
    if out_db is not None:
        assert db is out_db, "activation_bias_backward must return the workspace it was given"
    if variant != "overwrite_dy":
        assert_unchanged(backend, dy, dy64, "dy")
    assert_unchanged(backend, y, y64, "y")


@pytest.mark.parametrize("use_out", [False, True], ids=["new", "out"])
@pytest.mark.parametrize("shapes", [((N, K_IN), (K_IN, K_OUT)), ((K_IN, N), (N, K_OUT))])
def test_matmul(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    shapes: tuple[tuple[int, int], tuple[int, int]],
    use_out: bool,
) -> None:
    (m, k), (_, n) = shapes
    a, a64 = make_input(backend, random_array(rng, (m, k)), dtype, layout)
    limit = numpy.sqrt(3.0 / k)
    b, b64 = make_input(backend, random_array(rng, (k, n), -limit, limit), dtype, layout)
    out = _workspace(backend, (m, n), dtype) if use_out else None
    got = backend.matmul(a, b, out=out)
    assert_close("matmul", backend, got, reference.matmul(a64, b64), dtype=dtype)
    if use_out:
        assert got is out
    assert_unchanged(backend, a, a64, "a")


def test_matmul_of_transposed_views(
    backend: Backend, reference: Backend, rng: numpy.random.Generator, dtype: numpy.dtype
) -> None:
    # dense_backward multiplies by x.T and w.T: views, never copies, on every backend.
    x, x64 = make_input(backend, random_array(rng, (N, K_IN)), dtype)
    dz, dz64 = make_input(backend, random_array(rng, (N, K_OUT)), dtype)
    got = backend.matmul(x.T, dz)
    assert_close("matmul", backend, got, reference.matmul(x64.T, dz64), dtype=dtype)
    assert to_host(backend, got).shape == (K_IN, K_OUT)
