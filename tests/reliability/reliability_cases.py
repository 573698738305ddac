"""The bad inputs of the reliability table, one :class:`Case` per row of docs/reliability.md.

Each case is a call that makes the mistake, the outcome it must have (an exception type,
a warning, or plain success) and the fragments its message must contain: the argument,
what was expected, what was given and what to do. ``test_error_table.py`` runs each case
and checks the docs' table row with the same id against it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import pytest
from reliability_helpers import blobs, mlp

import nnback as nb
from nnback import backends as registry
from nnback.datasets.idx import IDXFormatError, decode_idx
from nnback.testing import StrictBackend

Call = Callable[[pytest.MonkeyPatch, Path], Any]
X, Y = blobs(n=12)


@dataclass(frozen=True)
class Case:
    """One row: ``call`` must raise ``error`` (or, when None, succeed), emitting ``warning``
    when given; the message (of the error, else of the warning) contains ``fragments``."""

    id: str
    call: Call
    error: type[BaseException] | None
    fragments: tuple[str, ...] = ()
    warning: type[Warning] | None = None

    @property
    def outcome(self) -> str:
        """How the docs' table names the outcome: an exception or ``works``."""
        if self.error is not None:
            return self.error.__name__
        return "works" + (f", {self.warning.__name__}" if self.warning else "")


def fit(X: Any = X, y: Any = Y, model: nb.Sequential | None = None, **kwargs: Any) -> Any:
    model = model if model is not None else mlp()
    kwargs.setdefault("verbose", 0)
    return model.fit(X, y, **kwargs)


def _fitted(backend: Any = None) -> nb.Sequential:
    model = mlp(backend=backend)
    fit(model=model)
    return model


def _with(value: float, where: tuple[int, int] = (3, 1)) -> numpy.ndarray:
    bad = X.copy()
    bad[where] = value
    return bad


def _one_hot_off() -> numpy.ndarray:
    rows = numpy.eye(3)[Y]
    rows[2] = [0.5, 0.0, 0.0]
    return rows


def _works_exactly(X_in: Any) -> None:
    """Trains on ``X_in`` exactly as on its float32 values (conversion changes nothing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: nothing is lost
        a, b = mlp(), mlp()
        fit(X_in, model=a)
    fit(numpy.asarray(X_in).astype(numpy.float32), model=b)
    for got, want in zip(a.get_weights(), b.get_weights(), strict=True):
        numpy.testing.assert_array_equal(got, want)


def _noncontiguous(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    wide = numpy.zeros((12, 6))
    wide[:, ::2] = X
    _works_exactly(wide[:, ::2])  # strided columns
    _works_exactly(numpy.asfortranarray(X))


def _unavailable(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    mp.setattr(registry, "_REGISTRY", {**registry._REGISTRY, "ghost": "nnback_no_such_mod:G"})
    mp.setattr(registry, "_failures", dict(registry._failures))
    nb.set_backend("ghost")


def _env_unknown(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    mp.setattr(registry, "_global_choice", None)
    mp.setenv(registry.ENV_VAR, "numpyy")
    nb.Sequential([nb.Dense(3, 3)]).build()


def _fake_cupy_array() -> Any:
    from nnback.testing import fake_cupy  # numpy only: it loads wherever nnback does

    return fake_cupy.FakeCupy().asarray(X)


def _host_into_device(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    strict = StrictBackend()
    model = mlp(backend=strict)
    fit(model=model, epochs=2)
    assert strict.xp.to_device >= 2  # moved explicitly, once per fit
    assert model.predict(X).shape == (12, 3)


def _save(tmp: Path, path: Path) -> None:
    mlp().save(path)


def _flip_a_weight_bit(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    path = tmp / "m.npz"
    model = mlp()
    model.save(path)
    data = bytearray(path.read_bytes())
    marker = model.get_weights()[0].tobytes()[:16]  # a run of bytes of the first weights
    data[data.index(marker) + 5] ^= 0x10
    path.write_bytes(bytes(data))
    nb.load_model(path)


def _empty_file(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    (tmp / "e.npz").write_bytes(b"")
    nb.load_model(tmp / "e.npz")


def _newer(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    from nnback import serialization

    mlp().save(tmp / "m.npz")
    mp.setattr(serialization, "FORMAT_VERSION", 0)  # this nnback now reads only version 0
    nb.load_model(tmp / "m.npz")


def _foreign_npz(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    numpy.savez(tmp / "other.npz", weights=numpy.ones(3))
    nb.load_model(tmp / "other.npz")


def _nan_loss(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit(X * 1e30, model=mlp(optimizer=nb.SGD(learning_rate=1e30)), batch_size=4, epochs=3)


def _bce_on_softmax(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    model = nb.Sequential([nb.Dense(3, 10), nb.Softmax()], loss="binary_crossentropy")
    fit(model=model.compile(optimizer="adam"))


def _case(id_: str, call: Call, error: Any, *fragments: str, warning: Any = None) -> Case:
    return Case(id_, call, error, fragments, warning)


def _fits(**kwargs: Any) -> Call:
    return lambda mp, tmp: fit(**kwargs)


def _cnn(*layers: Any) -> nb.Sequential:
    """Rows of 16 pixels as (1, 4, 4) images through ``layers``, then a 3-way softmax."""
    return nb.Sequential(
        [*layers, nb.Softmax()], loss="categorical_crossentropy", optimizer="sgd", seed=0
    )


_IMAGES = numpy.random.default_rng(0).random((12, 16))
_CONV = (nb.Conv2D(1, 2, 3), nb.ReLU(), nb.Flatten(), nb.Dense(8, 3))


def _cnn_fits(*layers: Any, X: Any = _IMAGES) -> Call:
    return lambda mp, tmp: fit(X=X, model=_cnn(*layers))


E = nb.InputError
CASES: list[Case] = [
    # --- data ---------------------------------------------------------------------------
    _case("x-1d", _fits(X=X[:, 0]), E, "X:", "expected a 2-D array", "(12,)", "reshape"),
    _case("x-3d", _fits(X=X.reshape(12, 3, 1)), E, "X:", "2-D", "(12, 3, 1)", "flatten"),
    _case("length-mismatch", _fits(y=Y[:7]), E, "y:", "expected 12 targets", "(7,)", "same"),
    _case("empty-x", _fits(X=X[:0], y=Y[:0]), E, "X:", "at least one", "(0, 3)", "non-empty"),
    _case(
        "features-fit", _fits(X=numpy.ones((12, 4))), E, "X:", "expects 3 features", "got 4", "pass"
    ),
    _case(
        "features-predict",
        lambda mp, tmp: _fitted().predict(numpy.ones((2, 5))),
        E,
        "X:",
        "expects 3 features",
        "got 5",
        "pass 3 columns",
    ),
    _case("label-too-large", _fits(y=Y + 1), E, "y:", "[0, 3)", "got [3]", "map labels"),
    _case("label-negative", _fits(y=Y - 1), E, "y:", "[0, 3)", "got [-1]", "map labels"),
    _case("label-fraction", _fits(y=Y + 0.5), E, "y:", "whole numbers", "0.5", "pass integer"),
    _case("one-hot-sum", _fits(y=_one_hot_off()), E, "y:", "sum to 1", "row 2", "one_hot"),
    _case(
        "one-hot-width", _fits(y=numpy.eye(4)[Y]), E, "y:", "(n, 3)", "(12, 4)", "one column per"
    ),
    _case("strings-x", _fits(X=X.astype(str)), E, "X:", "numbers", "<U", "astype(float)"),
    _case("strings-y", _fits(y=Y.astype(str)), E, "y:", "numbers", "<U", "numpy.unique"),
    _case("ragged-x", _fits(X=[[1.0, 2.0, 3.0], [1.0]] * 6), E, "X:", "rectangular", "same length"),
    _case("nan-x", _fits(X=_with(numpy.nan)), E, "X:", "finite", "nan at [3, 1]", "impute"),
    _case("inf-x", _fits(X=_with(-numpy.inf)), E, "X:", "finite", "-inf at [3, 1]", "impute"),
    _case(
        "nan-y",
        _fits(y=numpy.where(Y == 0, numpy.nan, Y)),
        E,
        "y:",
        "finite",
        "nan",
        "cannot be filled in",
        "drop those samples",
    ),
    _case("overflow-x", _fits(X=_with(1e300)), E, "X:", "below 3.4e+38", "1e+300", "rescale"),
    _case("int-x", lambda mp, tmp: _works_exactly((X * 100).astype(numpy.int32)), None),
    _case(
        "int-x-large",
        _fits(X=(X * 1e8).astype(numpy.int64)),
        None,
        "X:",
        "integers above 16777216",
        "got up to",
        "convert them yourself",
        warning=UserWarning,
    ),
    _case("float16-x", lambda mp, tmp: _works_exactly(X.astype(numpy.float16)), None),
    _case("noncontiguous-x", _noncontiguous, None),
    # --- hyperparameters ----------------------------------------------------------------
    _case("lr-zero", lambda mp, tmp: nb.SGD(learning_rate=0), E, "SGD(learning_rate)", "> 0"),
    _case("lr-negative", lambda mp, tmp: nb.Adam(-1e-3), E, "Adam(learning_rate)", "-0.001"),
    _case("lr-nan", lambda mp, tmp: nb.RMSprop(float("nan")), E, "learning_rate", "got nan"),
    _case("batch-size-zero", _fits(batch_size=0), E, "batch_size:", "positive", "got 0", ">= 1"),
    _case("batch-size-float", _fits(batch_size=8.0), E, "batch_size:", "integer", "got 8.0"),
    _case("epochs-zero", _fits(epochs=0), E, "epochs:", "positive integer", "got 0", ">= 1"),
    _case("layer-size-zero", lambda mp, tmp: nb.Dense(3, 0), E, "Dense(n_neurons)", "got 0"),
    _case("layer-size-negative", lambda mp, tmp: nb.Dense(-3, 2), E, "Dense(n_inputs)", "-3"),
    _case("dropout-one", lambda mp, tmp: nb.Dropout(1.0), E, "Dropout(rate)", "[0.0, 1.0)"),
    _case("dropout-negative", lambda mp, tmp: nb.Dropout(-0.1), E, "Dropout(rate)", "-0.1"),
    _case(
        "regularization-negative",
        lambda mp, tmp: nb.Dense(3, 2, weight_regularizer_l2=-1e-4),
        E,
        "Dense(weight_regularizer_l2)",
        ">= 0",
        "-0.0001",
        "pass 0 to turn it off",
    ),
    _case("momentum-one", lambda mp, tmp: nb.SGD(momentum=1.0), E, "SGD(momentum)", "< 1.0"),
    _case("loss-bce-softmax", _bce_on_softmax, E, "BinaryCrossentropy", "Softmax", "use Categ"),
    _case(
        "loss-cce-one-unit",
        lambda mp, tmp: fit(
            model=nb.Sequential(
                [nb.Dense(3, 1), nb.Sigmoid()], loss="categorical_crossentropy"
            ).compile(optimizer="sgd")
        ),
        E,
        "CategoricalCrossentropy",
        "at least 2 units",
        "got 1",
        "BinaryCrossentropy",
    ),
    _case("clip-norm-zero", _fits(clip_norm=0.0), E, "clip_norm:", "> 0", "got 0.0"),
    _case("validation-split-one", _fits(validation_split=1.0), E, "validation_split", "1.0"),
    _case("callbacks-not-list", _fits(callbacks=nb.History()), E, "callbacks:", "wrap it"),
    _case("verbose-bad", _fits(verbose="loud"), E, "verbose:", "'auto'", "'loud'", "pass 0"),
    _case(
        "evaluate-batch-zero",
        lambda mp, tmp: _fitted().evaluate(X, Y, batch_size=0),
        E,
        "batch_size:",
        "got 0",
    ),
    # --- convolutional networks --------------------------------------------------------
    _case(
        "reshape-features",
        _cnn_fits(nb.Reshape((1, 4, 4)), *_CONV, X=numpy.ones((12, 17))),
        E,
        "X: the first layer, Reshape((1, 4, 4)), expects 16 features per sample, got 17",
        "pass 16 columns",
    ),
    _case(
        "conv-channels",
        _cnn_fits(nb.Reshape((1, 4, 4)), nb.Conv2D(3, 2, 3), nb.Flatten(), nb.Dense(8, 3)),
        E,
        "layer 1: Conv2D(3, 2, 3) expects images of shape (3, h, w), got samples of shape "
        "(1, 4, 4)",
    ),
    _case(
        "conv-first",
        _cnn_fits(*_CONV),
        E,
        "Conv2D(1, 2, 3) takes images (n, c, h, w) but a model's data are rows",
        "put Reshape((1, h, w)) before it",
    ),
    _case(
        "dense-without-flatten",
        _cnn_fits(nb.Reshape((1, 4, 4)), nb.Conv2D(1, 2, 3), nb.Dense(8, 3)),
        E,
        "layer 2: Dense(8, 3) expects rows of 8 features, got samples of shape (2, 2, 2)",
        "put Flatten() before it",
    ),
    _case(
        "kernel-too-large",
        _cnn_fits(nb.Reshape((1, 4, 4)), nb.Conv2D(1, 2, 5), nb.Flatten(), nb.Dense(2, 3)),
        E,
        "layer 1: Conv2D(1, 2, 5): a 5x5 kernel with padding (0, 0) does not fit images of 4x4",
        "use a smaller kernel or more padding",
    ),
    _case(
        "same-padding-stride",
        lambda mp, tmp: nb.Conv2D(1, 2, 3, stride=2, padding="same"),
        E,
        "Conv2D(padding): 'same' needs stride 1 and an odd kernel",
        "pass the padding as numbers",
    ),
    # --- backends -----------------------------------------------------------------------
    _case(
        "env-unknown",
        _env_unknown,
        nb.UnknownBackendError,
        "NNBACK_BACKEND='numpyy'",
        "unknown backend",
        "available: numpy",
    ),
    _case(
        "set-backend-unknown",
        lambda mp, tmp: nb.set_backend("tensorflow"),
        nb.UnknownBackendError,
        "'tensorflow'",
        "available: numpy",
    ),
    _case(
        "backend-unavailable",
        _unavailable,
        nb.BackendUnavailableError,
        "'ghost' cannot load",
        "nnback_no_such_mod",
        "available: numpy",
    ),
    _case(
        "strict-array-into-numpy",
        lambda mp, tmp: fit(X=StrictBackend().asarray(X), model=mlp(backend="numpy")),
        E,
        "X:",
        "NumPy array or an array of the model's 'numpy' backend",
        "StrictArray on device strict:0",
        "copy it to the host first",
    ),
    _case(
        "fake-cupy-into-numpy",
        lambda mp, tmp: _fitted("numpy").predict(_fake_cupy_array()),
        E,
        "X:",
        "'numpy' backend",
        "on device fake-cupy:0",
        ".get()",
    ),
    _case(
        "other-device-into-strict",
        lambda mp, tmp: fit(model=mlp(backend=StrictBackend()), X=_fake_cupy_array()),
        E,
        "X:",
        "'strict' backend",
        "fake-cupy:0",
        "copy it to the host first",
    ),
    _case("host-into-device", _host_into_device, None),
    # --- training -----------------------------------------------------------------------
    _case("nan-loss", _nan_loss, nb.TrainingError, "at epoch 1, step", "learning rate", "lower it"),
    # --- files --------------------------------------------------------------------------
    _case(
        "save-to-directory",
        lambda mp, tmp: _save(tmp, tmp),
        IsADirectoryError,
        "is a directory",
        "model.npz",
    ),
    _case(
        "save-missing-directory",
        lambda mp, tmp: _save(tmp, tmp / "nowhere" / "m.npz"),
        FileNotFoundError,
        "does not exist",
        "os.makedirs",
    ),
    _case("load-directory", lambda mp, tmp: nb.load_model(tmp), IsADirectoryError, "directory"),
    _case("load-missing", lambda mp, tmp: nb.load_model(tmp / "x.npz"), FileNotFoundError, "x.npz"),
    _case("load-empty", _empty_file, nb.ModelFileError, "e.npz", "cannot be read"),
    _case("load-bit-flip", _flip_a_weight_bit, nb.ModelFileError, "checksum", "corrupted"),
    _case("load-newer-version", _newer, nb.ModelFileError, "newer", "upgrade nnback"),
    _case("load-foreign-npz", _foreign_npz, nb.ModelFileError, "not an nnback model file"),
    _case(
        "idx-bad-magic",
        lambda mp, tmp: decode_idx(b"\x01\x02\x08\x01" + bytes(8), "f.idx"),
        IDXFormatError,
        "f.idx",
        "not an IDX file",
        "00 00",
    ),
]
