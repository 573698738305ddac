"""Fuzzing the model: random small problems, data and hyperparameters, valid or not.

Each example draws a problem in one of three modes:

* ``valid``: every setting and every input is legal. ``fit`` must train (a history of the
  asked epochs, finite weights, ``predict`` and ``evaluate`` working) or, when the numbers
  blow up, raise :class:`~nnback.errors.TrainingError` leaving finite weights. An
  :class:`~nnback.errors.InputError` here would be a valid input refused: a bug.
* ``one fault``: exactly one setting or input is illegal. It must be refused with an
  :class:`~nnback.errors.InputError`, before any training (the optimizer has not moved).
* ``chaos``: any mix, each setting illegal with probability 1/4.

In every mode: a problem with any illegal part is refused with an InputError before
training, a problem with none is never refused, and no other exception type comes out.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy
import pytest
from reliability_helpers import FUZZ_COUNTS, all_finite, fuzz_settings, run_counted

import nnback as nb
from nnback.activations import get_activation

# hypothesis is a dev dependency: without it these tests skip instead of failing.
hypothesis = pytest.importorskip(
    "hypothesis", reason="hypothesis is not installed: pip install -e '.[dev]'"
)
given = hypothesis.given
st = pytest.importorskip(
    "hypothesis.strategies", reason="hypothesis is not installed: pip install -e '.[dev]'"
)

OPTIMIZERS = {"sgd": nb.SGD, "adam": nb.Adam, "rmsprop": nb.RMSprop, "adagrad": nb.AdaGrad}
# Output activations that fit each loss (others are a fault: the loss does not fit).
OUTPUTS = {
    "categorical_crossentropy": ["softmax"],
    "binary_crossentropy": ["sigmoid"],
    "mse": ["linear", "none", "tanh", "relu", "sigmoid"],
    "mae": ["linear", "none", "tanh"],
}
# Output activations that do not fit (the regression losses accept any output).
MISFITS = {
    "categorical_crossentropy": ["relu", "sigmoid", "tanh"],
    "binary_crossentropy": ["softmax", "relu", "linear"],
    "mse": [],
    "mae": [],
}
# name -> (valid values, invalid values)
SETTINGS: dict[str, tuple[st.SearchStrategy[Any], list[Any]]] = {
    "learning_rate": (st.floats(1e-6, 1e6), [0.0, -1.0, math.nan, math.inf, "0.1"]),
    "batch_size": (st.integers(1, 30), [0, -1, 2.5, "8"]),
    "epochs": (st.integers(1, 3), [0, -2, 1.0]),
    "dropout": (st.sampled_from([0.0, 0.3, 0.9]), [1.0, -0.1, math.nan]),
    "l2": (st.sampled_from([0.0, 1e-3, 1.0, 1e3, 1e38]), [-1e-3, math.inf]),
    "l1": (st.sampled_from([0.0, 1e-3, 1.0, 1e38]), [-1.0, math.nan]),
    "clip_norm": (st.sampled_from([None, None, 1e-3, 1.0, 1e30]), [0.0, -1.0, math.nan]),
    "hidden": (st.integers(1, 6), [0, -3]),
    "output": (st.just("fits"), ["does not fit"]),
    "X": (st.just("valid"), ["nan", "inf", "1-D", "3-D", "text", "empty", "features"]),
    "y": (st.just("valid"), ["out of range", "nan", "length", "text"]),
}


class _Picker:
    """Draws each setting, illegal only for the fields in ``faults``."""

    def __init__(self, data: Any, faults: set[str]) -> None:
        self.data = data
        self.faults = faults

    def __call__(self, name: str) -> Any:
        valid, invalid = SETTINGS[name]
        if name in self.faults:
            return self.data.draw(st.sampled_from(invalid), label=f"{name} (fault)")
        return self.data.draw(valid, label=name)


def _features(data: Any, pick: _Picker, n: int, k: int) -> Any:
    rng = numpy.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    fault = pick("X")
    if fault == "empty":
        n = 0
    X = rng.normal(size=(n, k + (fault == "features")))
    kind = data.draw(st.sampled_from(["unit", "unit", "scaled", "int", "bool", "f16"]))
    if kind == "scaled":  # tiny to large, all representable in float32
        X = X * 10.0 ** data.draw(st.integers(-40, 30))
    elif kind == "int":
        X = (X * 10.0 ** data.draw(st.integers(0, 18))).astype(data.draw(st.sampled_from("bq")))
    elif kind == "bool":
        X = X > 0
    elif kind == "f16":
        X = X.astype(numpy.float16)
    if fault in ("nan", "inf") and n:
        X = X.astype(numpy.float64)
        X.flat[data.draw(st.integers(0, X.size - 1))] = math.nan if fault == "nan" else -math.inf
    if fault == "1-D":
        return X.ravel()
    if fault == "3-D":
        return X[..., None]
    if fault == "text":
        return X.astype(str)
    layout = data.draw(st.sampled_from(["C", "F", "strided", "list"]))
    if layout == "F":
        return numpy.asfortranarray(X)
    if layout == "strided":
        wide = numpy.zeros((X.shape[0], 2 * X.shape[1]), dtype=X.dtype)
        wide[:, ::2] = X
        return wide[:, ::2]
    return X.tolist() if layout == "list" else X


def _targets(data: Any, pick: _Picker, n: int, k: int, loss: str) -> Any:
    rng = numpy.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    fault = pick("y")
    if loss == "categorical_crossentropy":
        y = rng.integers(0, k, size=n)
        if data.draw(st.booleans()) and fault != "out of range":
            y = numpy.eye(k)[y]
    elif loss == "binary_crossentropy":
        y = rng.integers(0, 2, size=(n, k)).astype(float)
    else:
        y = rng.normal(size=(n, k)) * 10.0 ** data.draw(st.integers(-5, 5))
    if k == 1 and y.ndim == 2 and data.draw(st.booleans()):
        y = y.ravel()  # (n,) targets for a one-unit output are fine
    if fault == "out of range" and loss in ("mse", "mae"):
        y = numpy.zeros((n, k + 1))  # no range for regression: a column too many instead
    elif fault == "out of range":
        y = numpy.full(n, k if loss == "categorical_crossentropy" else 2.0)
    elif fault == "nan":
        y = numpy.full(y.shape, math.nan)
    elif fault == "length":
        y = y[: max(0, n - 1)] if n > 1 else numpy.zeros(n + 2)
    elif fault == "text":
        y = y.astype(str)
    return y


def _build(pick: _Picker, data: Any, n_in: int, n_out: int, loss: str) -> nb.Sequential:
    hidden = pick("hidden")
    dropout = pick("dropout")
    layers: list[nb.Layer] = [
        nb.Dense(n_in, hidden, weight_regularizer_l2=pick("l2")),
        data.draw(st.sampled_from([nb.ReLU, nb.Tanh, nb.Sigmoid, nb.LeakyReLU]))(),
    ]
    if dropout != 0:
        layers.append(nb.Dropout(dropout))
    layers.append(nb.Dense(hidden, n_out, bias_regularizer_l1=pick("l1")))
    if pick("output") == "fits" or not MISFITS[loss]:
        pick.faults.discard("output")  # no output is wrong for a regression loss
        output = data.draw(st.sampled_from(OUTPUTS[loss]))
    else:
        output = data.draw(st.sampled_from(MISFITS[loss]))
    if output != "none":
        layers.append(get_activation(output))
    optimizer = OPTIMIZERS[data.draw(st.sampled_from(sorted(OPTIMIZERS)))](pick("learning_rate"))
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    return nb.Sequential(layers, loss=loss, optimizer=optimizer, seed=0, dtype=dtype)


def _one_problem(data: Any, backend: Any) -> str:
    """Draw and run one problem; return its outcome's name (asserting what the mode allows)."""
    mode = data.draw(st.sampled_from(["valid", "valid", "valid", "one fault", "chaos"]))
    if mode == "valid":
        faults: set[str] = set()
    elif mode == "one fault":
        faults = {data.draw(st.sampled_from(sorted(SETTINGS)))}
    else:
        faults = {name for name in SETTINGS if data.draw(st.integers(0, 3)) == 0}
    pick = _Picker(data, faults)
    loss = data.draw(st.sampled_from(sorted(OUTPUTS)))
    n_out = data.draw(st.integers(2 if loss == "categorical_crossentropy" else 1, 4))
    n, n_in = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 4))
    try:
        model = _build(pick, data, n_in, n_out, loss)
        model.build(backend)
        X = _features(data, pick, n, n_in)
        y = _targets(data, pick, n, n_out, loss)
        settings = {name: pick(name) for name in ("epochs", "batch_size", "clip_norm")}
        split = 0.25 if n >= 8 and data.draw(st.booleans()) else 0.0
        history = model.fit(X, y, validation_split=split, verbose=0, **settings)
    except nb.InputError as exc:
        assert faults, f"a valid problem was refused: {exc}"
        built = "model" in locals() and model.built
        assert not built or model.optimizer.iterations == 0, "InputError after training began"
        return "InputError"
    except nb.TrainingError as exc:
        assert not faults, f"the faults {faults} reached training"
        assert all_finite(model.get_weights()), f"non-finite weights left after: {exc}"
        return "TrainingError"
    assert not faults, f"the faults {faults} were accepted"
    assert all_finite(model.get_weights()), "fit returned non-finite weights"
    assert len(history) == settings["epochs"]
    rows = numpy.asarray(X, dtype=numpy.float64)
    assert model.predict(rows).shape == (rows.shape[0], n_out)
    assert set(model.evaluate(rows, y)) >= {"loss", "accuracy"}
    return "trained"


def test_fuzz_fit(backend: Any) -> None:
    outcomes: dict[str, int] = {}

    @fuzz_settings(300 if backend.name == "numpy" else 100)
    @given(st.data())
    def prop(data: Any) -> None:
        FUZZ_COUNTS["model fit"] += 1
        with warnings.catch_warnings():
            # Overflow inside the dtype's range and lost integer precision are expected
            # here; the property is about exceptions and the state left behind.
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            outcome = _one_problem(data, backend)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    run_counted("model fit", prop)
    print(f"model fit on {backend.name}: {outcomes}")
    assert outcomes.get("trained", 0) > 0, outcomes  # the strategies do reach training
