"""Saving and loading: round trips, resumed training, other backends, bad files, atomicity."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy
import pytest
from model_helpers import assert_weights_equal, classification_data, regression_data

import nnback as nb
from nnback import serialization
from nnback.tolerances import get_tolerance

HEADER = "__nnback_header__"


def _models() -> dict[str, Any]:
    return {
        "classifier-dropout-adam": lambda: nb.Sequential(
            [
                nb.Dense(3, 8, weight_initializer="he", weight_regularizer_l2=1e-3),
                nb.ReLU(),
                nb.Dropout(0.2),
                nb.Dense(8, 3, weight_initializer=nb.GlorotUniform()),
                nb.Softmax(),
            ],
            loss=nb.CategoricalCrossentropy(),
            optimizer=nb.Adam(learning_rate=0.01, decay=1e-2),
            seed=11,
        ),
        "binary-rmsprop-float64": lambda: nb.Sequential(
            [
                nb.Dense(3, 6, bias_initializer=nb.Constant(0.1)),
                nb.LeakyReLU(0.05),
                nb.Dense(6, 1),
                nb.Sigmoid(),
            ],
            loss=nb.BinaryCrossentropy(),
            optimizer=nb.RMSprop(0.01, rho=0.8),
            seed=12,
            dtype="float64",
        ),
        "regressor-sgd-momentum": lambda: nb.Sequential(
            [
                nb.Dense(3, 6, weight_initializer=nb.Gaussian(0.1)),
                nb.Tanh(),
                nb.Dense(6, 1),
                nb.Linear(),
            ],
            loss=nb.MeanSquaredError(),
            optimizer=nb.SGD(0.05, decay=1e-3, momentum=0.9),
            seed=13,
        ),
        "adagrad-mae": lambda: nb.Sequential(
            [nb.Dense(3, 4), nb.Sigmoid(), nb.Dense(4, 1)],
            loss=nb.MeanAbsoluteError(),
            optimizer=nb.AdaGrad(0.1),
            seed=14,
        ),
    }


MODELS = _models()


def _data(name: str) -> tuple[numpy.ndarray, numpy.ndarray]:
    if name.startswith(("regressor", "adagrad")):
        return regression_data(n=16)
    return classification_data(n=16, classes=2 if name.startswith("binary") else 3)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_round_trip_and_resumed_training(tmp_path: Path, name: str) -> None:
    X, y = _data(name)
    model = MODELS[name]()
    model.fit(X, y, epochs=2, batch_size=5, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = nb.load_model(path)

    assert repr(loaded) == repr(model)
    assert (loaded.dtype, loaded.seed) == (model.dtype, model.seed)
    numpy.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.evaluate(X, y) == model.evaluate(X, y)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 8
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for original, copy in zip(model.layers, loaded.layers, strict=True):
        state = getattr(original, "optimizer_state", {})
        assert set(state) == set(getattr(copy, "optimizer_state", {}))
        for parameter, slots in state.items():
            for slot, value in slots.items():
                numpy.testing.assert_array_equal(copy.optimizer_state[parameter][slot], value)

    # Continuing after a save and load is the same as continuing without one: the weights,
    # the optimizer's state and step count, and the generator (shuffles, dropout masks).
    continued = model.fit(X, y, epochs=2, batch_size=5, verbose=0)
    resumed = loaded.fit(X, y, epochs=2, batch_size=5, verbose=0)
    assert_weights_equal(loaded.get_weights(), model.get_weights())
    assert resumed["learning_rate"] == continued["learning_rate"]
    assert resumed["loss"] == continued["loss"]


def test_an_unbuilt_model_saves_its_initial_weights(tmp_path: Path) -> None:
    model = MODELS["classifier-dropout-adam"]()
    model.save(tmp_path / "fresh.npz")
    assert_weights_equal(nb.load_model(tmp_path / "fresh.npz").get_weights(), model.get_weights())


def test_load_onto_another_backend(backend: Any, tmp_path: Path) -> None:
    X, y = classification_data(n=16)
    model = MODELS["classifier-dropout-adam"]()
    model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = nb.load_model(tmp_path / "m.npz", backend=backend)
    assert loaded.backend is backend or loaded.backend.name == backend.name
    assert_weights_equal(loaded.get_weights(), model.get_weights())
    # Two dense layers of float32 forward passes, each within the table's tolerance.
    tolerance = get_tolerance("dense_forward", "float32", backend.name)
    numpy.testing.assert_allclose(
        loaded.predict(X), model.predict(X), rtol=2 * tolerance.rtol, atol=2 * tolerance.atol
    )


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    X, y = classification_data(n=12)
    model = MODELS["classifier-dropout-adam"]()
    model.fit(X, y, epochs=1, batch_size=6, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    return path


def _rewrite(path: Path, change: Any) -> None:
    """Read the file's header and arrays, let ``change(header, arrays)`` edit them in place
    (or return another JSON value to write as the header), and write the file back."""
    with numpy.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays.pop(HEADER).tobytes().decode())
    replacement = change(header, arrays)
    header = header if replacement is None else replacement
    encoded = numpy.frombuffer(json.dumps(header).encode(), dtype=numpy.uint8)
    with open(path, "wb") as handle:
        numpy.savez(handle, **{HEADER: encoded}, **arrays)


CORRUPTIONS = {
    "truncated": (
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        "cannot be read as an nnback model file",
    ),
    "random bytes": (
        lambda p: p.write_bytes(numpy.random.default_rng(0).bytes(2000)),
        "cannot be read as an nnback model file",
    ),
    "empty file": (lambda p: p.write_bytes(b""), "cannot be read"),
    "plain npz": (
        lambda p: numpy.savez(open(p, "wb"), weights=numpy.ones(3)),
        "not an nnback model file",
    ),
    "tampered array": (
        lambda p: _rewrite(p, lambda h, a: a["layer0/weights"].__setitem__((0, 0), 9.0)),
        "checksum mismatch",
    ),
    "removed array": (
        lambda p: _rewrite(p, lambda h, a: a.__delitem__("layer3/biases")),
        "checksum mismatch",
    ),
    "newer version": (
        lambda p: _rewrite(p, lambda h, a: h.__setitem__("version", 99)),
        "format version 99 is newer than this nnback reads",
    ),
    "other format": (
        lambda p: _rewrite(p, lambda h, a: h.__setitem__("format", "keras")),
        "not an nnback model file",
    ),
    "changed architecture": (
        lambda p: _rewrite(p, lambda h, a: h["config"]["layers"][3].__setitem__("n_neurons", 4)),
        "misshapen array 'layer3/weights'",
    ),
    "inconsistent architecture": (
        lambda p: _rewrite(p, lambda h, a: h["config"]["layers"][0].__setitem__("n_neurons", 5)),
        "expects 8 inputs",
    ),
    "header without config": (
        lambda p: _rewrite(p, lambda h, a: h.__delitem__("config")),
        "config",
    ),
    "header not an object": (
        lambda p: _rewrite(p, lambda h, a: [1, 2, 3]),
        "header",
    ),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_bad_file_raises_model_file_error(saved: Path, corruption: str) -> None:
    corrupt, message = CORRUPTIONS[corruption]
    corrupt(saved)
    with pytest.raises(nb.ModelFileError, match=message) as raised:
        nb.load_model(saved)
    assert str(saved) in str(raised.value)  # the message names the file


def test_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        nb.load_model(tmp_path / "nowhere.npz")


class _DiskFull(OSError):
    pass


@pytest.mark.parametrize("error", [_DiskFull("no space left on device"), KeyboardInterrupt()])
def test_save_is_atomic(saved: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    before = nb.load_model(saved).get_weights()
    X, y = classification_data(n=12)
    changed = MODELS["classifier-dropout-adam"]()
    changed.fit(X, y, epochs=3, batch_size=4, verbose=0)

    def broken_savez(file: Any, *args: Any, **kwargs: Any) -> None:
        file.write(b"PK\x03\x04 half a zip file")
        raise error

    monkeypatch.setattr(numpy, "savez", broken_savez)
    with pytest.raises(type(error)):
        changed.save(saved)
    with pytest.raises(type(error)):
        changed.save(saved.parent / "new.npz")
    monkeypatch.undo()

    assert_weights_equal(nb.load_model(saved).get_weights(), before, "the old file")
    assert sorted(os.listdir(saved.parent)) == ["model.npz"]  # no temporary file, no new.npz


def test_save_replaces_an_existing_file(saved: Path) -> None:
    X, y = classification_data(n=12)
    model = MODELS["classifier-dropout-adam"]()
    model.fit(X, y, epochs=3, batch_size=4, verbose=0)
    model.save(saved)
    assert_weights_equal(nb.load_model(saved).get_weights(), model.get_weights())
    assert sorted(os.listdir(saved.parent)) == ["model.npz"]


def test_header_records_the_format(saved: Path) -> None:
    with numpy.load(saved) as archive:
        header = json.loads(archive[HEADER].tobytes().decode())
    assert header["format"] == serialization.FORMAT
    assert header["version"] == serialization.FORMAT_VERSION
    assert header["config"]["dtype"] == "float32" and header["config"]["seed"] == 11
    # The model was built on the default backend (NNBACK_BACKEND, or numpy).
    assert header["saved_from_backend"] == nb.get_backend().name
