"""The model code on a strict pretend device: no implicit host conversion, counted transfers.

:class:`~nnback.testing.strict.StrictBackend` raises on any implicit conversion of its arrays
to NumPy and counts every explicit transfer (``to_device``: host data given to ``asarray``;
``to_host``: ``to_numpy``, which ``to_float`` also uses; ``host_syncs``: ``float()`` and the
like of a 0-d array). These tests pin down what fit, evaluate, predict and save move.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy
import pytest
from model_helpers import classification_data, regression_data

import nnback as nb
from nnback.testing import StrictBackend


def _classifier(backend: Any, l2: float = 0.0) -> nb.Sequential:
    return nb.Sequential(
        [
            nb.Dense(3, 8, weight_initializer="xavier", weight_regularizer_l2=l2),
            nb.ReLU(),
            nb.Dense(8, 3, weight_initializer="xavier"),
            nb.Softmax(),
        ],
        loss=nb.CategoricalCrossentropy(),
        optimizer=nb.Adam(0.01),
        seed=0,
        backend=backend,
    )


def _binary(backend: Any, l2: float = 0.0) -> nb.Sequential:
    return nb.Sequential(
        [nb.Dense(3, 8, bias_regularizer_l2=l2), nb.Tanh(), nb.Dense(8, 1), nb.Sigmoid()],
        loss=nb.BinaryCrossentropy(),
        optimizer=nb.RMSprop(0.01),
        seed=0,
        backend=backend,
    )


def _regressor(backend: Any, l2: float = 0.0) -> nb.Sequential:
    return nb.Sequential(
        [nb.Dense(3, 8, weight_regularizer_l1=l2), nb.Sigmoid(), nb.Dense(8, 1), nb.Linear()],
        loss=nb.MeanSquaredError(),
        optimizer=nb.SGD(0.1, momentum=0.9),
        seed=0,
        backend=backend,
    )


def _data(kind: str, n: int) -> tuple[numpy.ndarray, numpy.ndarray]:
    if kind == "regressor":
        return regression_data(n=n)
    return classification_data(n=n, classes=2 if kind == "binary" else 3)


MODELS = {"classifier": _classifier, "binary": _binary, "regressor": _regressor}
# Arrays each model saves: 4 parameters plus its optimizer's state per parameter.
SAVED_ARRAYS = {"classifier": 4 + 8, "binary": 4 + 4, "regressor": 4 + 4}


@pytest.fixture
def strict() -> StrictBackend:
    return StrictBackend()


def test_the_strict_device_refuses_implicit_conversion(strict: StrictBackend) -> None:
    model = _classifier(strict).build()
    with pytest.raises(TypeError, match="implicit conversion"):
        numpy.asarray(model.layers[0].weights)
    with pytest.raises(TypeError, match="mixing host numpy array"):
        _ = model.layers[0].weights + numpy.ones((3, 8), dtype=numpy.float32)


@pytest.mark.parametrize("l2", [0.0, 1e-3])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_fit_evaluate_predict_save_move_what_they_must(
    strict: StrictBackend, tmp_path: Path, kind: str, l2: float
) -> None:
    counters = strict.xp
    X, y = _data(kind, 20)
    model = MODELS[kind](strict, l2)
    model.build()
    assert counters.counters() == {"host_syncs": 0, "to_device": 4, "to_host": 0}  # W, b, W, b

    epochs, steps = 3, 3 * 3  # batches of 8, 8 and 4
    counters.reset_counters()
    model.fit(X, y, epochs=epochs, batch_size=8, verbose=0)
    penalty_reads = epochs if l2 else 0
    assert counters.counters() == {
        "host_syncs": 0,
        # X and y once per fit, plus one permutation of indices per epoch.
        "to_device": 2 + epochs,
        # One loss read per step (to stop before a NaN reaches the weights), the accuracy
        # and the finiteness of the weights (an update can overflow) once per epoch, and the
        # penalty once per epoch when there is one.
        "to_host": steps + 2 * epochs + penalty_reads,
    }

    counters.reset_counters()
    model.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    assert counters.to_device == 2

    counters.reset_counters()
    scores = model.evaluate(X, y)
    assert numpy.isfinite(scores["loss"])
    assert counters.counters() == {
        "host_syncs": 0,
        "to_device": 2,
        "to_host": 2 + (1 if l2 else 0),
    }

    counters.reset_counters()
    predictions = model.predict(X)
    assert isinstance(predictions, numpy.ndarray)
    assert counters.counters() == {"host_syncs": 0, "to_device": 1, "to_host": 1}
    counters.reset_counters()
    model.predict(X, batch_size=8)
    assert counters.counters() == {"host_syncs": 0, "to_device": 3, "to_host": 1}

    counters.reset_counters()
    path = tmp_path / "model.npz"
    model.save(path)
    assert counters.counters() == {
        "host_syncs": 0,
        "to_device": 0,
        "to_host": SAVED_ARRAYS[kind],
    }
    numpy.testing.assert_array_equal(nb.load_model(path, backend="numpy").predict(X), predictions)


def test_validation_data_moves_once_per_fit(strict: StrictBackend) -> None:
    X, y = classification_data(n=20)
    Xv, yv = classification_data(n=10, seed=1)
    model = _classifier(strict).build()
    epochs = 4
    strict.xp.reset_counters()
    model.fit(X, y, epochs=epochs, batch_size=10, validation_data=(Xv, yv), verbose=0)
    # Training and validation sets each cross once; only the permutations are per epoch.
    assert strict.xp.to_device == 2 + 2 + epochs


def test_dropout_masks_are_the_only_per_step_transfer(strict: StrictBackend) -> None:
    X, y = classification_data(n=20)
    model = nb.Sequential(
        [nb.Dense(3, 8), nb.ReLU(), nb.Dropout(0.5), nb.Dense(8, 3), nb.Softmax()],
        loss=nb.CategoricalCrossentropy(),
        optimizer=nb.SGD(0.1),
        seed=0,
        backend=strict,
    ).build()
    strict.xp.reset_counters()
    model.fit(X, y, epochs=2, batch_size=10, verbose=0)
    # Masks are drawn on the host (the same on every backend): one per step.
    assert strict.xp.to_device == 2 + 2 + 4


def test_device_resident_inputs_are_not_copied_again(strict: StrictBackend) -> None:
    X, y = classification_data(n=20)
    model = _classifier(strict).build()
    X_device, y_device = strict.asarray(X), strict.asarray(y)
    strict.xp.reset_counters()
    model.fit(X_device, y_device, epochs=2, batch_size=10, verbose=0)
    counts = strict.xp.counters()
    # X stays where it is: only the labels' host-side check (one read back, one return)
    # and the two permutations cross; the finiteness check of X is one explicit sync. Per
    # epoch: the accuracy and the weights' finiteness check.
    assert counts == {"host_syncs": 1, "to_device": 1 + 2, "to_host": 1 + 4 + 2 + 2}
    strict.xp.reset_counters()
    on_device = model.predict(X_device, to_numpy=False)
    assert strict.is_array(on_device)
    assert strict.xp.counters() == {"host_syncs": 1, "to_device": 0, "to_host": 0}


def test_a_model_loaded_onto_the_strict_device(strict: StrictBackend, tmp_path: Path) -> None:
    X, y = classification_data(n=20)
    host_model = _classifier("numpy")
    host_model.fit(X, y, epochs=2, batch_size=10, verbose=0)
    host_model.save(tmp_path / "m.npz")
    loaded = nb.load_model(tmp_path / "m.npz", backend=strict)
    assert loaded.backend is strict
    assert all(strict.is_array(w) for w in (loaded.layers[0].weights, loaded.layers[2].biases))
    numpy.testing.assert_array_equal(loaded.predict(X), host_model.predict(X))
    loaded.fit(X, y, epochs=1, batch_size=10, verbose=0)
    host_model.fit(X, y, epochs=1, batch_size=10, verbose=0)
    for got, want in zip(loaded.get_weights(), host_model.get_weights(), strict=True):
        numpy.testing.assert_array_equal(got, want)
