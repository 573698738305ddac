"""The *Neural Networks from Scratch* book's programs on every backend.

The chapter 16 (binary logistic regression) and 17 (regression) programs are written as
the book's reader writes them, with only the import changed, and run for fewer epochs.
Each run on a backend is compared with the same program on the NumPy reference backend:
as written (float32), at the precision the program prints; and with ``nnfs.init``
switched to float64, where two backends agree to a few ulps, so the comparison is tight.
(Adam in float32 amplifies rounding differences in weights whose gradients are tiny, so
float32 weights of two correct backends differ by up to ~1e-3 after a hundred steps.)

The programs here run in generator mode (``nnfs.init(book=False)``), where every backend,
numpy included, runs nnback's own ops: the comparison is of backends, not with the book.
Book mode, where numpy computes as the book does, is tested in test_compat_nnfs_book.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nnback
from nnback.compat import nnfs
from nnback.compat.nnfs import (
    Activation_Linear,
    Activation_ReLU,
    Activation_Sigmoid,
    Activation_Softmax,
    Activation_Softmax_Loss_CategoricalCrossentropy,
    Layer_Dense,
    Layer_Dropout,
    Loss_BinaryCrossentropy,
    Loss_MeanSquaredError,
    Optimizer_Adagrad,
    Optimizer_Adam,
    Optimizer_RMSprop,
    Optimizer_SGD,
    sine_data,
    spiral_data,
)
from nnback.testing import StrictNamespace
from nnback.tolerances import get_trajectory_tolerance

# float64 runs are compared with the tolerance table's rule for whole training runs
# (nnback.tolerances.get_trajectory_tolerance: far below any difference a wrong op would
# make; its cupy row says why cuBLAS needs more). float32 runs as the book writes them:
# the printed figures (3 decimals) must agree.
PRINTED = {"rtol": 0.0, "atol": 2e-3}


def host(backend: Any, array: Any) -> np.ndarray:
    return backend.to_numpy(array) if backend.is_array(array) else np.asarray(array)


def chapter_16(epochs: int) -> dict[str, Any]:
    """Binary logistic regression on two spirals, the book's chapter 16 program."""
    nnfs.init(book=False)
    X, y = spiral_data(samples=100, classes=2)
    y = y.reshape(-1, 1)
    dense1 = Layer_Dense(2, 64, weight_regularizer_l2=5e-4, bias_regularizer_l2=5e-4)
    activation1 = Activation_ReLU()
    dense2 = Layer_Dense(64, 1)
    activation2 = Activation_Sigmoid()
    loss_function = Loss_BinaryCrossentropy()
    optimizer = Optimizer_Adam(decay=5e-7)
    for epoch in range(epochs + 1):
        dense1.forward(X)
        activation1.forward(dense1.output)
        dense2.forward(activation1.output)
        activation2.forward(dense2.output)
        data_loss = loss_function.calculate(activation2.output, y)
        regularization_loss = loss_function.regularization_loss(
            dense1
        ) + loss_function.regularization_loss(dense2)
        loss = data_loss + regularization_loss
        predictions = (activation2.output > 0.5) * 1
        accuracy = np.mean(predictions == y)
        if not epoch % 100:
            print(f"epoch: {epoch}, acc: {accuracy:.3f}, loss: {loss:.3f}")
        loss_function.backward(activation2.output, y)
        activation2.backward(loss_function.dinputs)
        dense2.backward(activation2.dinputs)
        activation1.backward(dense2.dinputs)
        dense1.backward(activation1.dinputs)
        optimizer.pre_update_params()
        optimizer.update_params(dense1)
        optimizer.update_params(dense2)
        optimizer.post_update_params()
    X_test, y_test = spiral_data(samples=100, classes=2)
    y_test = y_test.reshape(-1, 1)
    dense1.forward(X_test)
    activation1.forward(dense1.output)
    dense2.forward(activation1.output)
    activation2.forward(dense2.output)
    val_loss = loss_function.calculate(activation2.output, y_test)
    predictions = (activation2.output > 0.5) * 1
    val_accuracy = np.mean(predictions == y_test)
    backend = dense1.backend
    return {
        "loss": loss,
        "accuracy": float(accuracy),
        "val_loss": val_loss,
        "val_accuracy": float(val_accuracy),
        "weights": [host(backend, a) for a in (dense1.weights, dense1.biases, dense2.weights)],
    }


def chapter_17(epochs: int) -> dict[str, Any]:
    """Regression of a sine wave, the book's chapter 17 program."""
    nnfs.init(book=False)
    X, y = sine_data()
    dense1 = Layer_Dense(1, 64)
    activation1 = Activation_ReLU()
    dense2 = Layer_Dense(64, 64)
    activation2 = Activation_ReLU()
    dense3 = Layer_Dense(64, 1)
    activation3 = Activation_Linear()
    loss_function = Loss_MeanSquaredError()
    optimizer = Optimizer_Adam(learning_rate=0.005, decay=1e-3)
    accuracy_precision = np.std(y) / 250
    for epoch in range(epochs + 1):
        dense1.forward(X)
        activation1.forward(dense1.output)
        dense2.forward(activation1.output)
        activation2.forward(dense2.output)
        dense3.forward(activation2.output)
        activation3.forward(dense3.output)
        data_loss = loss_function.calculate(activation3.output, y)
        regularization_loss = (
            loss_function.regularization_loss(dense1)
            + loss_function.regularization_loss(dense2)
            + loss_function.regularization_loss(dense3)
        )
        loss = data_loss + regularization_loss
        predictions = activation3.output
        accuracy = np.mean(np.absolute(predictions - y) < accuracy_precision)
        if not epoch % 100:
            print(f"epoch: {epoch}, acc: {accuracy:.3f}, loss: {loss:.3f}")
        loss_function.backward(activation3.output, y)
        activation3.backward(loss_function.dinputs)
        dense3.backward(activation3.dinputs)
        activation2.backward(dense3.dinputs)
        dense2.backward(activation2.dinputs)
        activation1.backward(dense2.dinputs)
        dense1.backward(activation1.dinputs)
        optimizer.pre_update_params()
        optimizer.update_params(dense1)
        optimizer.update_params(dense2)
        optimizer.update_params(dense3)
        optimizer.post_update_params()
    backend = dense1.backend
    return {
        "loss": loss,
        "accuracy": float(accuracy),
        "lr": optimizer.current_learning_rate,
        "output": host(backend, activation3.output),
        "weights": [host(backend, a) for a in (dense1.weights, dense2.weights, dense3.biases)],
    }


def chapter_15_classifier(epochs: int, optimizer: Any) -> dict[str, Any]:
    """Three spirals with dropout, L1/L2 and softmax + cross-entropy, written without
    NumPy calls on the outputs so it also runs on the strict device stand-in."""
    nnfs.init(seed=3, dtype="float64", book=False)
    X, y = spiral_data(samples=40, classes=3)
    dense1 = Layer_Dense(
        2,
        32,
        weight_regularizer_l1=1e-4,
        weight_regularizer_l2=5e-4,
        bias_regularizer_l1=1e-4,
        bias_regularizer_l2=5e-4,
    )
    activation1 = Activation_ReLU()
    dropout1 = Layer_Dropout(0.1)
    dense2 = Layer_Dense(32, 3)
    loss_activation = Activation_Softmax_Loss_CategoricalCrossentropy()
    losses = []
    for _ in range(epochs):
        dense1.forward(X)
        activation1.forward(dense1.output)
        dropout1.forward(activation1.output)
        dense2.forward(dropout1.output)
        data_loss = loss_activation.forward(dense2.output, y)
        regularization_loss = loss_activation.loss.regularization_loss(
            dense1
        ) + loss_activation.loss.regularization_loss(dense2)
        losses.append(data_loss + regularization_loss)
        loss_activation.backward(loss_activation.output, y)
        dense2.backward(loss_activation.dinputs)
        dropout1.backward(dense2.dinputs)
        activation1.backward(dropout1.dinputs)
        dense1.backward(activation1.dinputs)
        optimizer.pre_update_params()
        optimizer.update_params(dense1)
        optimizer.update_params(dense2)
        optimizer.post_update_params()
    backend = dense1.backend
    predictions = Activation_Softmax().predictions(loss_activation.output)
    return {
        "losses": np.array(losses),
        "accuracy": float((predictions == y).mean()),
        "weights": [host(backend, a) for a in (dense1.weights, dense1.biases, dense2.weights)],
    }


_REFERENCE: dict[Any, dict[str, Any]] = {}


def reference_run(key: Any, program: Any, *args: Any) -> dict[str, Any]:
    """The program on the NumPy backend, computed once per test session."""
    if key not in _REFERENCE:
        with nnback.use_backend("numpy"):
            _REFERENCE[key] = program(*args)
    return _REFERENCE[key]


def assert_same_run(
    got: dict[str, Any], expected: dict[str, Any], backend: Any, tight: bool = True
) -> None:
    """``tight``: a float64 run, held to the table's trajectory rule for ``backend``."""
    parity = get_trajectory_tolerance("float64", backend.name)._asdict()
    for key, value in expected.items():
        if key == "weights":
            if tight:
                for index, (a, b) in enumerate(zip(got[key], value, strict=True)):
                    np.testing.assert_allclose(a, b, **parity, err_msg=f"weights[{index}]")
        elif tight or key != "output":
            np.testing.assert_allclose(
                got[key], value, **(parity if tight else PRINTED), err_msg=key
            )


def in_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the program's own ``nnfs.init()`` call create float64 layers."""
    init = nnfs.init
    monkeypatch.setattr(
        nnfs, "init", lambda seed=0, book=True: init(seed, dtype="float64", book=book)
    )


def skip_if_strict(backend: Any) -> None:
    # Both the strict stand-in and the fake CuPy device are built on the strict namespace.
    if isinstance(backend.xp, StrictNamespace):
        pytest.skip(
            "the book's own lines call NumPy functions on the outputs (np.mean, np.std); "
            "the strict stand-in refuses NumPy functions on device arrays (CuPy accepts "
            "them); the adapters run on it in test_adapters_on_every_backend"
        )


@pytest.mark.parametrize("precision", ["as-written", "float64"])
def test_chapter_16_program(
    on_backend: Any,
    precision: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    skip_if_strict(on_backend)
    if precision == "float64":
        in_float64(monkeypatch)
    got = chapter_16(epochs=120)
    expected = reference_run(("ch16", precision), chapter_16, 120)
    assert_same_run(got, expected, on_backend, tight=precision == "float64")
    assert "epoch: 100, acc:" in capsys.readouterr().out
    assert got["loss"] < 0.69


@pytest.mark.parametrize("precision", ["as-written", "float64"])
def test_chapter_17_program(
    on_backend: Any, precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    skip_if_strict(on_backend)
    if precision == "float64":
        in_float64(monkeypatch)
    got = chapter_17(epochs=60)
    expected = reference_run(("ch17", precision), chapter_17, 60)
    assert_same_run(got, expected, on_backend, tight=precision == "float64")
    assert got["lr"] == pytest.approx(0.005 / (1 + 1e-3 * 60))
    assert got["output"].shape == (1000, 1)


@pytest.mark.parametrize("backend_name", ["numpy", "cupy"])
def test_trajectory_rule_still_catches_one_step_more(
    backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The widest row of the trajectory rule (cupy's, for cuBLAS) must still be far tighter
    # than the change one more step of the chapter 17 program makes.
    in_float64(monkeypatch)
    expected = reference_run(("ch17", "float64"), chapter_17, 60)
    one_more = reference_run(("ch17", "float64", "61"), chapter_17, 61)
    tolerance = get_trajectory_tolerance("float64", backend_name)
    for old, new in zip(expected["weights"], one_more["weights"], strict=True):
        # Weights of units that ReLU kept dead from the start never move; of the others,
        # over 80% move by over 100 times what the rule allows.
        moved = new != old
        allowed = tolerance.atol + tolerance.rtol * np.abs(old[moved])
        assert moved.mean() > 0.3
        assert (np.abs(new[moved] - old[moved]) > 100 * allowed).mean() > 0.8


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda: Optimizer_SGD(learning_rate=1.0, decay=1e-3, momentum=0.9),
        lambda: Optimizer_Adagrad(learning_rate=0.1, decay=1e-4),
        lambda: Optimizer_RMSprop(learning_rate=0.02, decay=1e-5, rho=0.999),
        lambda: Optimizer_Adam(learning_rate=0.05, decay=5e-7),
    ],
    ids=["sgd", "adagrad", "rmsprop", "adam"],
)
def test_adapters_on_every_backend(on_backend: Any, make_optimizer: Any) -> None:
    key = ("ch15", make_optimizer.__code__.co_firstlineno)
    expected = reference_run(key, chapter_15_classifier, 25, make_optimizer())
    got = chapter_15_classifier(25, make_optimizer())
    assert_same_run(got, expected, on_backend)
    assert got["losses"][-1] < got["losses"][0]
