"""Bad input fails early with a clear nnback error that names the problem."""

from __future__ import annotations

import warnings
from typing import Any

import numpy
import pytest
from model_helpers import classification_data, classifier

import nnback as nb

X, Y = classification_data(n=12)


def _fit(model: nb.Sequential | None = None, X: Any = X, y: Any = Y, **kwargs: Any) -> Any:
    model = model if model is not None else classifier()
    return model.fit(X, y, verbose=0, **kwargs)


def _with_nan() -> numpy.ndarray:
    bad = X.copy()
    bad[3, 1] = numpy.nan
    return bad


def _one_hot_not_summing_to_one() -> numpy.ndarray:
    rows = numpy.eye(3)[Y]
    rows[2] = [0.5, 0.0, 0.0]
    return rows


FIT_ERRORS = {
    "X 1-D": (lambda: _fit(X=X[:, 0]), r"X: expected a 2-D array .*got shape \(12,\).*reshape"),
    "X 3-D": (lambda: _fit(X=X[:, :, None]), r"expected a 2-D array .*\(12, 3, 1\)"),
    "length mismatch": (lambda: _fit(y=Y[:7]), r"y: expected 12 targets .*got shape \(7,\)"),
    "empty X": (lambda: _fit(X=X[:0], y=Y[:0]), r"X: expected at least one sample"),
    "wrong n_features": (
        lambda: _fit(X=numpy.ones((12, 4))),
        r"first Dense layer expects 3 features per sample, got 4",
    ),
    "label too large": (
        lambda: _fit(y=numpy.where(Y == 2, 3, Y)),
        r"class labels must be in \[0, 3\) for a 3-unit output layer, got \[3",
    ),
    "negative label": (lambda: _fit(y=Y - 1), r"class labels must be in \[0, 3\).*got \[-1"),
    "fractional label": (lambda: _fit(y=Y + 0.5), "whole numbers"),
    "one-hot rows not summing to 1": (
        lambda: _fit(y=_one_hot_not_summing_to_one()),
        "one-hot rows must sum to 1",
    ),
    "one-hot of the wrong width": (
        lambda: _fit(y=numpy.eye(4)[Y]),
        r"one-hot rows \(n, 3\), got shape \(12, 4\)",
    ),
    "NaN in X": (lambda: _fit(X=_with_nan()), "X: contains NaN or infinity"),
    "infinity in X": (lambda: _fit(X=X * numpy.inf), "X: contains NaN or infinity"),
    "NaN in y": (lambda: _fit(y=numpy.where(Y == 0, numpy.nan, Y)), "y: contains NaN"),
    "strings in X": (lambda: _fit(X=X.astype(str)), r"X: expected numbers, got dtype <U"),
    "objects in X": (lambda: _fit(X=[[1.0, "a", None]] * 12), "X: expected numbers"),
    "epochs 0": (lambda: _fit(epochs=0), "epochs: expected a positive integer, got 0"),
    "epochs -2": (lambda: _fit(epochs=-2), "epochs: expected a positive integer, got -2"),
    "epochs 1.5": (lambda: _fit(epochs=1.5), "epochs: expected a positive integer, got 1.5"),
    "batch_size 0": (lambda: _fit(batch_size=0), "batch_size: expected a positive integer"),
    "batch_size True": (lambda: _fit(batch_size=True), "batch_size: expected a positive"),
    "validation_split 1": (lambda: _fit(validation_split=1.0), r"validation_split: .*\[0.0, 1.0\)"),
    "validation_split too small": (
        lambda: _fit(validation_split=0.01),
        "leaves 0 validation samples out of 12",
    ),
    "BCE targets outside [0, 1]": (
        lambda: nb.Sequential(
            [nb.Dense(3, 1), nb.Sigmoid()], loss="binary_crossentropy", optimizer="sgd"
        ).fit(X, Y, verbose=0),
        r"binary cross-entropy targets must be in \[0, 1\]",
    ),
    "MSE targets of the wrong width": (
        lambda: nb.Sequential([nb.Dense(3, 2)], loss="mse", optimizer="sgd").fit(X, Y, verbose=0),
        r"targets of shape \(n, 2\) for a 2-unit output layer, got \(12, 1\)",
    ),
}


@pytest.mark.parametrize("case", sorted(FIT_ERRORS))
def test_fit_rejects_bad_input(case: str) -> None:
    call, message = FIT_ERRORS[case]
    with pytest.raises(nb.InputError, match=message):
        call()


def test_predict_and_evaluate_check_their_input() -> None:
    model = classifier()
    _fit(model)
    with pytest.raises(nb.InputError, match="expects 3 features per sample, got 5"):
        model.predict(numpy.ones((4, 5)))
    with pytest.raises(nb.InputError, match="expects 3 features per sample, got 5"):
        model.evaluate(numpy.ones((4, 5)), Y[:4])
    with pytest.raises(nb.InputError, match="contains NaN"):
        model.predict(_with_nan())
    with pytest.raises(nb.InputError, match="reshape a single sample"):
        model.predict(X[0])
    with pytest.raises(nb.InputError, match="batch_size: expected a positive integer"):
        model.predict(X, batch_size=-1)
    with pytest.raises(nb.InputError, match=r"class labels must be in \[0, 3\)"):
        model.evaluate(X, Y + 3)


CONSTRUCTION_ERRORS = {
    "SGD learning rate 0": (lambda: nb.SGD(learning_rate=0), r"SGD\(learning_rate\).*> 0, got 0"),
    "Adam negative learning rate": (
        lambda: nb.Adam(learning_rate=-1e-3),
        r"Adam\(learning_rate\).*> 0, got -0.001",
    ),
    "RMSprop NaN learning rate": (
        lambda: nb.RMSprop(learning_rate=float("nan")),
        r"RMSprop\(learning_rate\).*got nan",
    ),
    "negative decay": (lambda: nb.AdaGrad(decay=-1.0), r"AdaGrad\(decay\): .*>= 0"),
    "momentum 1": (lambda: nb.SGD(momentum=1.0), r"SGD\(momentum\)"),
    "Dropout rate 1.0": (lambda: nb.Dropout(1.0), r"Dropout\(rate\): .*\[0.0, 1.0\), got 1.0"),
    "Dropout rate negative": (lambda: nb.Dropout(-0.1), r"Dropout\(rate\)"),
    "negative L2": (
        lambda: nb.Dense(3, 2, weight_regularizer_l2=-1e-4),
        r"Dense\(weight_regularizer_l2\): .*>= 0, got -0.0001",
    ),
    "negative bias L1": (
        lambda: nb.Dense(3, 2, bias_regularizer_l1=-1.0),
        r"Dense\(bias_regularizer_l1\)",
    ),
    "zero-width Dense": (lambda: nb.Dense(3, 0), r"Dense\(n_neurons\): expected a positive"),
    "unknown dtype": (lambda: nb.Sequential(dtype="float16"), "dtype: expected 'float32'"),
    "not a layer": (lambda: nb.Sequential().add("relu"), "expected a Layer, got str"),
    "unknown loss": (lambda: nb.Sequential(loss="hinge"), "unknown loss 'hinge'"),
    "unknown optimizer": (lambda: nb.Sequential(optimizer="lbfgs"), "unknown optimizer 'lbfgs'"),
}


@pytest.mark.parametrize("case", sorted(CONSTRUCTION_ERRORS))
def test_construction_rejects_bad_settings(case: str) -> None:
    call, message = CONSTRUCTION_ERRORS[case]
    with pytest.raises(nb.InputError, match=message):
        call()


MODEL_ERRORS = {
    "BinaryCrossentropy after Softmax": (
        lambda: nb.Sequential(
            [nb.Dense(3, 3), nb.Softmax()], loss=nb.BinaryCrossentropy(), optimizer="sgd"
        ),
        "BinaryCrossentropy expects independent sigmoid outputs, the model ends in Softmax",
    ),
    "CategoricalCrossentropy after ReLU": (
        lambda: nb.Sequential(
            [nb.Dense(3, 3), nb.ReLU()], loss=nb.CategoricalCrossentropy(), optimizer="sgd"
        ),
        "the model ends in 'relu'; add Softmax",
    ),
    "CategoricalCrossentropy with one output": (
        lambda: nb.Sequential(
            [nb.Dense(3, 1), nb.Softmax()], loss=nb.CategoricalCrossentropy(), optimizer="sgd"
        ),
        "at least 2 units",
    ),
    "no loss": (
        lambda: nb.Sequential([nb.Dense(3, 3), nb.Softmax()], optimizer="sgd"),
        "fit: the model has no loss",
    ),
    "no optimizer": (
        lambda: nb.Sequential([nb.Dense(3, 3), nb.Softmax()], loss="categorical_crossentropy"),
        "fit: the model has no optimizer",
    ),
    "mismatched Dense sizes": (
        lambda: nb.Sequential(
            [nb.Dense(3, 4), nb.ReLU(), nb.Dense(5, 3), nb.Softmax()],
            loss="categorical_crossentropy",
            optimizer="sgd",
        ),
        r"layer 2 \(Dense\(5, 3\)\) expects 5 inputs but the previous Dense layer gives 4",
    ),
    "no layers": (
        lambda: nb.Sequential(loss="categorical_crossentropy", optimizer="sgd"),
        "the model has no layers",
    ),
}


@pytest.mark.parametrize("case", sorted(MODEL_ERRORS))
def test_fit_rejects_a_model_that_cannot_train(case: str) -> None:
    build, message = MODEL_ERRORS[case]
    with pytest.raises(nb.InputError, match=message):
        build().fit(X, Y, verbose=0)


def test_evaluate_without_a_loss() -> None:
    with pytest.raises(nb.InputError, match="evaluate: the model has no loss"):
        nb.Sequential([nb.Dense(3, 3), nb.Softmax()]).evaluate(X, Y)


def test_errors_are_value_errors_too() -> None:
    with pytest.raises(ValueError):
        nb.Dropout(1.0)
    assert issubclass(nb.InputError, nb.NNBackError)
    assert issubclass(nb.TrainingError, RuntimeError)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_nan_loss_stops_training_before_it_reaches_the_weights(dtype: str) -> None:
    model = classifier(optimizer=nb.SGD(learning_rate=1e12), dtype=dtype)
    snapshots: list[Any] = []
    keep = nb.LambdaCallback(on_batch_end=lambda step, logs: snapshots.append(model.get_weights()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the overflow that makes the NaN
        with pytest.raises(nb.TrainingError) as raised:
            model.fit(X * 1e3, Y, epochs=50, batch_size=4, callbacks=[keep], verbose=0)
    message = str(raised.value)
    steps_done = len(snapshots)
    epoch, step = steps_done // 3 + 1, steps_done % 3 + 1
    assert f"at epoch {epoch}, step {step}" in message
    assert "learning rate" in message and "1e+12" in message
    assert "nan" in message or "inf" in message
    weights = model.get_weights()
    assert all(numpy.isfinite(w).all() for w in weights)
    # Left as they were after the last good step.
    for got, want in zip(weights, snapshots[-1], strict=True):
        numpy.testing.assert_array_equal(got, want)
    assert model.optimizer.iterations == steps_done


def test_bad_validation_data_fails_before_any_training() -> None:
    model = classifier()
    with pytest.raises(nb.InputError, match="expects 3 features per sample, got 4"):
        model.fit(X, Y, epochs=3, validation_data=(numpy.ones((4, 4)), Y[:4]), verbose=0)
    assert model.optimizer.iterations == 0  # not found out only after the first epoch
    with pytest.raises(nb.InputError, match=r"class labels must be in \[0, 3\)"):
        model.fit(X, Y, epochs=3, validation_data=(X[:4], Y[:4] + 5), verbose=0)
    assert model.optimizer.iterations == 0
