"""Determinism and training trajectories: the same seed gives the same model and the same run.

On one backend, two runs with the same seed are bit-identical. Across backends the initial
weights are bit-identical (drawn on the host), and after N training steps the weights agree
with the NumPy reference within a tolerance built from :mod:`nnback.tolerances`.
"""

from __future__ import annotations

from typing import Any

import numpy
import pytest
from model_helpers import assert_weights_equal, classification_data

import nnback as nb
from nnback.tolerances import Tolerance, get_tolerance

EPOCHS = 2
BATCH = 8
N_SAMPLES = 24
STEPS = EPOCHS * (N_SAMPLES // BATCH)


def _model(backend: Any, dtype: str, seed: int = 42) -> nb.Sequential:
    """Dropout and shuffling included, so masks and permutations take part in the run."""
    return nb.Sequential(
        [
            nb.Dense(3, 16, weight_initializer="he"),
            nb.ReLU(),
            nb.Dropout(0.25),
            nb.Dense(16, 8, weight_initializer="xavier", weight_regularizer_l2=1e-3),
            nb.Tanh(),
            nb.Dense(8, 3, weight_initializer="xavier"),
            nb.Softmax(),
        ],
        loss=nb.CategoricalCrossentropy(),
        optimizer=nb.SGD(learning_rate=0.1, momentum=0.5),
        seed=seed,
        dtype=dtype,
        backend=backend,
    )


def _train(backend: Any, dtype: str, seed: int = 42) -> tuple[list[Any], list[Any]]:
    X, y = classification_data(n=N_SAMPLES)
    model = _model(backend, dtype, seed)
    model.build()
    initial = model.get_weights()
    model.fit(X, y, epochs=EPOCHS, batch_size=BATCH, verbose=0)
    assert model.optimizer.iterations == STEPS
    return initial, model.get_weights()


def trajectory_tolerance(dtype: str, backend_name: str, steps: int) -> Tolerance:
    """How far a backend's weights may be from the reference's after ``steps`` steps.

    One step chains a dense forward, the fused softmax cross-entropy, a dense backward and an
    optimizer update; each contributes at most its table error (relative to the values it
    produces), and the largest of them bounds the step. The update moves each weight by a
    small ``lr * g``, so over a few steps on unit-scale weights these errors add up rather
    than grow: ``steps`` times the largest per-op tolerance. The table's per-backend
    overrides are honoured through ``get_tolerance``.
    """
    ops = ("dense_forward", "dense_backward", "softmax_crossentropy", "sgd_update_inplace")
    tolerances = [get_tolerance(op, dtype, backend_name) for op in ops]
    return Tolerance(
        rtol=steps * max(t.rtol for t in tolerances), atol=steps * max(t.atol for t in tolerances)
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_same_run_on_one_backend(backend: Any, dtype: str) -> None:
    first_initial, first_final = _train(backend, dtype)
    second_initial, second_final = _train(backend, dtype)
    assert_weights_equal(second_initial, first_initial, "initial weights")
    assert_weights_equal(second_final, first_final, "weights after training")
    assert not numpy.array_equal(first_initial[0], first_final[0])


def test_another_seed_another_model(backend: Any) -> None:
    initial, final = _train(backend, "float32", seed=42)
    other_initial, other_final = _train(backend, "float32", seed=43)
    assert not numpy.array_equal(initial[0], other_initial[0])
    assert not numpy.array_equal(final[0], other_final[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_backend_follows_the_numpy_trajectory(backend: Any, dtype: str) -> None:
    reference_initial, reference_final = _train("numpy", dtype)
    initial, final = _train(backend, dtype)
    assert_weights_equal(initial, reference_initial, "initial weights (drawn on the host)")
    tolerance = trajectory_tolerance(dtype, backend.name, STEPS)
    for index, (got, want) in enumerate(zip(final, reference_final, strict=True)):
        assert got.dtype == numpy.dtype(dtype)
        numpy.testing.assert_allclose(
            got,
            want,
            rtol=tolerance.rtol,
            atol=tolerance.atol,
            err_msg=f"{backend.name}: parameter {index} after {STEPS} steps",
        )


def test_trajectory_tolerance_would_catch_a_wrong_step() -> None:
    """The tolerance is much tighter than the change that one more step makes."""
    X, y = classification_data(n=N_SAMPLES)
    model = _model("numpy", "float32")
    model.fit(X, y, epochs=EPOCHS, batch_size=BATCH, verbose=0)
    before = model.get_weights()
    model.fit(X[:BATCH], y[:BATCH], epochs=1, batch_size=BATCH, verbose=0)
    tolerance = trajectory_tolerance("float32", "numpy", STEPS)
    for old, new in zip(before, model.get_weights(), strict=True):
        allowed = tolerance.atol + tolerance.rtol * numpy.abs(old)
        assert (numpy.abs(new - old) > 10 * allowed).mean() > 0.8
