"""Parity of the metrics (counts) and of dropout, with the reference."""

from __future__ import annotations

import numpy
import pytest

from nnback.backends.base import Backend
from nnback.testing import assert_close, assert_unchanged, make_input, random_array, to_host

N, K = 32, 10


@pytest.mark.parametrize("kind", ["int", "onehot"])
def test_count_correct_classes(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    kind: str,
) -> None:
    # Distinct scores per row (a permutation) so no backend meets a tie in argmax.
    scores = numpy.stack([rng.permutation(K) for _ in range(N)]) / K
    labels = rng.integers(0, K, size=N)
    labels[:8] = scores[:8].argmax(axis=1)  # some right answers
    p, p64 = make_input(backend, scores, dtype, layout)
    if kind == "int":
        y, y64 = make_input(backend, labels, numpy.int64, layout)
    else:
        y, y64 = make_input(backend, numpy.eye(K)[labels], dtype, layout)
    got = backend.count_correct(p, y)
    want = reference.count_correct(p64, y64)
    assert to_host(backend, got).dtype.kind in "iu", "count_correct returns an integer count"
    assert_close("count_correct", backend, got, want, dtype=dtype)
    assert int(want) == int((scores.argmax(axis=1) == labels).sum())


@pytest.mark.parametrize("target_shape", [(N, 1), (N,)])
def test_count_correct_binary(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    target_shape: tuple[int, ...],
) -> None:
    # Probabilities kept 0.01 away from the 0.5 threshold.
    p_values = random_array(rng, (N, 1), -0.49, 0.49, min_abs=0.01) + 0.5
    t_values = (rng.random(size=target_shape) < 0.5).astype(numpy.float64)
    p, p64 = make_input(backend, p_values, dtype)
    t, t64 = make_input(backend, t_values, dtype)
    got = backend.count_correct(p, t)
    assert_close("count_correct", backend, got, reference.count_correct(p64, t64), dtype=dtype)


@pytest.mark.parametrize("shape", [(N, 1), (N, K)])
def test_count_within(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    shape: tuple[int, int],
) -> None:
    # |difference| in [0, 0.2] but never within 0.005 of the 0.1 tolerance: rounding to
    # float32 cannot move an element across it.
    pred = random_array(rng, shape, -2, 2)
    gap = rng.uniform(0.0, 0.2, size=shape)
    gap = numpy.where(numpy.abs(gap - 0.1) < 0.005, gap + 0.01, gap)
    true = pred + numpy.where(rng.random(size=shape) < 0.5, -gap, gap)
    p, p64 = make_input(backend, pred, dtype, layout)
    t, t64 = make_input(backend, true, dtype, layout)
    got = backend.count_within(p, t, 0.1)
    assert_close("count_within", backend, got, reference.count_within(p64, t64, 0.1), dtype=dtype)
    assert 0 < int(to_host(backend, got)) < numpy.prod(shape)


def _mask(rng: numpy.random.Generator, kind: str, dtype: numpy.dtype) -> numpy.ndarray:
    keep = rng.random(size=(N, K)) >= 0.3
    return keep if kind == "bool" else keep.astype(dtype)


@pytest.mark.parametrize("mask_kind", ["bool", "float"])
@pytest.mark.parametrize("op", ["dropout_forward", "dropout_backward"])
def test_dropout(
    backend: Backend,
    reference: Backend,
    rng: numpy.random.Generator,
    dtype: numpy.dtype,
    layout: str,
    op: str,
    mask_kind: str,
    request: pytest.FixtureRequest,
) -> None:
    # A boolean keep mask times the Python float scale is float64, which upcasts float32
    # activations in the base class: keep_mask * scale should be done in x's dtype.
    scale = 1 / (1 - 0.3)
    x, x64 = make_input(backend, random_array(rng, (N, K)), dtype, layout)
    mask_values = _mask(rng, mask_kind, dtype)
    mask, mask_ref = make_input(backend, mask_values, mask_values.dtype, layout)
    got = getattr(backend, op)(x, mask, scale)
    want = getattr(reference, op)(x64, mask_ref, scale)
    assert_close(op, backend, got, want, dtype=dtype)
    assert_unchanged(backend, x, x64, "x")
    dropped = ~mask_values.astype(bool)
    assert (to_host(backend, got)[dropped] == 0).all()
