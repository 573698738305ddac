"""Book mode of :mod:`nnback.compat.nnfs`: the book's programs print the book's lines.

The programs in ``book_programs/`` are written against the compat API as the book's
reader writes them. On the numpy backend:

* chapter 17's lines must equal the lines the book prints, figure for figure and with
  the learning rate's full ``repr``. The first attempt (1-64-1) runs its whole 10,000
  epochs here; the 1-64-64-1 attempts run their first 100 (the first two printed lines)
  unless ``NNBACK_BOOK_FULL=1`` asks for all 10,000 (about 30 s each on one core).
* chapter 16's lines must equal those of the book's arithmetic written in plain NumPy
  below, run under the real ``nnfs`` package's ``init()``: the book's own printout drifts
  from that after epoch 200 (float32 ``exp``/``log`` rounding of its machine's NumPy).
  Its first three lines, and every learning rate it prints, must equal the book's.
* the data sets and the initial weights must equal the ``nnfs`` package's.

Expected figures are the book's printed output (chapters 16 and 17), typed in here.
"""

# ruff: noqa: NPY002  (the book draws from NumPy's global legacy RandomState on purpose)

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnback
from nnback.compat import nnfs as compat
from nnback.compat.nnfs import (
    Activation_ReLU,
    Activation_Softmax_Loss_CategoricalCrossentropy,
    Layer_Dense,
    Layer_Dropout,
    Optimizer_Adam,
    sine_data,
    spiral_data,
    vertical_data,
)

sys.path.insert(0, str(Path(__file__).parent))
from book_programs import ch16_binary_logistic_regression as ch16  # noqa: E402
from book_programs import ch17_regression as ch17  # noqa: E402

FULL = os.environ.get("NNBACK_BOOK_FULL") == "1"


def line(epoch: int, acc: str, loss: str, lr: str, data: str | None = None) -> str:
    """A line as the book's programs print it (regularization 0.000 in chapter 17)."""
    return (
        f"epoch: {epoch}, acc: {acc}, loss: {loss} (data_loss: {data or loss}, "
        f"reg_loss: 0.000), lr: {lr}"
    )


# Chapter 17's printed lines (epochs 0, 100, 9900, 10000), per attempt: the program, the
# weight factor, the optimizer's arguments. "lr 0.005" is printed in the book under the
# 0.01 weights, but its lines are those of the 0.1 weights shown later in the chapter.
CH17: dict[str, tuple[Any, float, dict[str, float], list[str]]] = {
    "1-64-1 Adam()": (
        ch17.one_hidden_layer,
        0.01,
        {},
        [
            line(0, "0.002", "0.500", "0.001"),
            line(100, "0.003", "0.346", "0.001"),
            line(9900, "0.003", "0.145", "0.001"),
            line(10000, "0.004", "0.145", "0.001"),
        ],
    ),
    "1-64-64-1 Adam()": (
        ch17.two_hidden_layers,
        0.01,
        {},
        [
            line(0, "0.002", "0.500", "0.001"),
            line(100, "0.003", "0.187", "0.001"),
            line(9900, "0.617", "0.031", "0.001"),
            line(10000, "0.620", "0.031", "0.001"),
        ],
    ),
    "1-64-64-1 lr 0.01 decay 1e-3": (
        ch17.two_hidden_layers,
        0.01,
        {"learning_rate": 0.01, "decay": 1e-3},
        [
            line(0, "0.002", "0.500", "0.01"),
            line(100, "0.027", "0.061", "0.009099181073703368"),
            line(9900, "0.565", "0.031", "0.0009175153683824203"),
            line(10000, "0.564", "0.031", "0.0009091735612328393"),
        ],
    ),
    "1-64-64-1 lr 0.05 decay 1e-3": (
        ch17.two_hidden_layers,
        0.01,
        {"learning_rate": 0.05, "decay": 1e-3},
        [
            line(0, "0.002", "0.500", "0.05"),
            line(100, "0.087", "0.031", "0.04549590536851684"),
            line(9900, "0.275", "0.031", "0.004587576841912101"),
            line(10000, "0.229", "0.031", "0.0045458678061641965"),
        ],
    ),
    "1-64-64-1 lr 0.005 decay 1e-3, 0.1 weights": (
        ch17.two_hidden_layers,
        0.1,
        {"learning_rate": 0.005, "decay": 1e-3},
        [
            line(0, "0.003", "0.496", "0.005"),
            line(100, "0.017", "0.048", "0.004549590536851684"),
            line(9900, "0.982", "0.000", "0.00045875768419121016"),
            line(10000, "0.981", "0.000", "0.00045458678061641964"),
        ],
    ),
    "1-64-64-1 Adam(), 0.1 weights": (
        ch17.two_hidden_layers,
        0.1,
        {},
        [
            line(0, "0.003", "0.496", "0.001"),
            line(100, "0.005", "0.114", "0.001"),
            line(9900, "0.869", "0.000", "0.001"),
            line(10000, "0.883", "0.000", "0.001"),
        ],
    ),
    "1-64-64-1 lr 0.01 decay 1e-3, 0.1 weights": (
        ch17.two_hidden_layers,
        0.1,
        {"learning_rate": 0.01, "decay": 1e-3},
        [
            line(0, "0.003", "0.496", "0.01"),
            line(100, "0.065", "0.011", "0.009099181073703368"),
            line(9900, "0.958", "0.000", "0.0009175153683824203"),
            line(10000, "0.949", "0.000", "0.0009091735612328393"),
        ],
    ),
}

# Chapter 16's printed lines the plain-NumPy run reproduces (the rest drift, see above),
# and the learning rate the book prints at each epoch it shows.
CH16_FIRST = [
    "epoch: 0, acc: 0.500, loss: 0.693 (data_loss: 0.693, reg_loss: 0.000), lr: 0.001",
    "epoch: 100, acc: 0.630, loss: 0.674 (data_loss: 0.673, reg_loss: 0.001), "
    "lr: 0.0009999505024501287",
    "epoch: 200, acc: 0.625, loss: 0.669 (data_loss: 0.668, reg_loss: 0.001), "
    "lr: 0.0009999005098992651",
]
CH16_RATES = {
    300: "0.000999850522346909",
    400: "0.0009998005397923115",
    500: "0.0009997505622347225",
    600: "0.0009997005896733929",
    1500: "0.0009992510613295335",
    2500: "0.0009987520593019025",
    4500: "0.0009977555488927658",
    4600: "0.000997705775569079",
    4700: "0.0009976560072110577",
    4800: "0.0009976062438179587",
    6100: "0.0009969597711777935",
    6600: "0.000996711350897713",
    6700: "0.0009966616816971556",
    6800: "0.00099661201744669",
    6900: "0.0009965623581455767",
    9800: "0.0009951243880606966",
    9900: "0.0009950748768967994",
    10000: "0.0009950253706593885",
}


def quiet(program: Any, *args: Any, **kwargs: Any) -> list[str]:
    with contextlib.redirect_stdout(io.StringIO()), nnback.use_backend("numpy"):
        return program(*args, **kwargs)


@pytest.fixture
def real_nnfs() -> Iterator[Any]:
    """The ``nnfs`` package, whose ``init()`` replaces NumPy functions: put them back."""
    package = pytest.importorskip("nnfs", reason="the nnfs package (pip install nnfs==0.5.1)")
    saved = [(np, "dot"), (np, "zeros"), (np, "eye"), (np.random, "randn")]
    originals = [getattr(owner, name) for owner, name in saved]
    try:
        yield package
    finally:
        for (owner, name), original in zip(saved, originals, strict=True):
            setattr(owner, name, original)


@pytest.mark.parametrize("attempt", list(CH17))
def test_chapter_17_prints_the_books_lines(attempt: str) -> None:
    program, scale, settings, expected = CH17[attempt]
    full = FULL or program is ch17.one_hidden_layer
    lines = quiet(program, 10000 if full else 100, scale, **settings)
    assert lines[:2] == expected[:2]
    if full:
        assert len(lines) == 101
        assert lines[-2:] == expected[2:]


def book_ch16_in_plain_numpy(nnfs: Any) -> list[str]:
    """Chapter 16 as the book computes it: plain NumPy under the real ``nnfs.init()``."""
    from nnfs.datasets import spiral_data as book_spiral

    nnfs.init()
    X, y = book_spiral(100, 2)
    y = y.reshape(-1, 1)
    W1, b1 = 0.01 * np.random.randn(2, 64), np.zeros((1, 64))
    W2, b2 = 0.01 * np.random.randn(64, 1), np.zeros((1, 1))
    params = [W1, b1, W2, b2]
    moments = [np.zeros_like(p) for p in params]
    caches = [np.zeros_like(p) for p in params]
    l2 = 5e-4

    def forward(inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        z1 = np.dot(inputs, W1) + b1
        a1 = np.maximum(0, z1)
        out = 1 / (1 + np.exp(-(np.dot(a1, W2) + b2)))
        return z1, a1, out

    def bce(out: np.ndarray, target: np.ndarray) -> Any:
        p = np.clip(out, 1e-7, 1 - 1e-7)
        return np.mean(np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p)), axis=-1))

    lines, rate = [], 0.001
    for epoch in range(10001):
        z1, a1, out = forward(X)
        data_loss = bce(out, y)
        reg = 0 + l2 * np.sum(W1 * W1) + l2 * np.sum(b1 * b1)
        accuracy = np.mean((out > 0.5) * 1 == y)
        if not epoch % 100:
            lines.append(
                f"epoch: {epoch}, acc: {accuracy:.3f}, loss: {data_loss + reg:.3f} ("
                f"data_loss: {data_loss:.3f}, reg_loss: {reg:.3f}), lr: {rate}"
            )
        p = np.clip(out, 1e-7, 1 - 1e-7)
        grad = -(y / p - (1 - y) / (1 - p)) / 1 / len(out)
        grad = grad * (1 - out) * out
        grads = [None, None, np.dot(a1.T, grad), np.sum(grad, axis=0, keepdims=True)]
        grad = np.dot(grad, W2.T)
        grad = grad.copy()
        grad[z1 <= 0] = 0
        grads[0] = np.dot(X.T, grad) + 2 * l2 * W1
        grads[1] = np.sum(grad, axis=0, keepdims=True) + 2 * l2 * b1
        rate = 0.001 * (1.0 / (1.0 + 5e-7 * epoch))
        for i, (param, g) in enumerate(zip(params, grads, strict=True)):
            moments[i] = 0.9 * moments[i] + (1 - 0.9) * g
            caches[i] = 0.999 * caches[i] + (1 - 0.999) * g**2
            mean = moments[i] / (1 - 0.9 ** (epoch + 1))
            var = caches[i] / (1 - 0.999 ** (epoch + 1))
            param += -rate * mean / (np.sqrt(var) + 1e-7)
    X_test, y_test = book_spiral(100, 2)
    y_test = y_test.reshape(-1, 1)
    out = forward(X_test)[2]
    accuracy = np.mean((out > 0.5) * 1 == y_test.reshape(-1, 1))
    lines.append(f"validation, acc: {accuracy:.3f}, loss: {bce(out, y_test):.3f}")
    return lines


def test_chapter_16_prints_the_lines_of_the_books_arithmetic(real_nnfs: Any) -> None:
    lines = quiet(ch16.main)
    expected = book_ch16_in_plain_numpy(real_nnfs)
    assert len(lines) == 102
    assert lines == expected
    assert lines[:3] == CH16_FIRST
    for epoch, rate in CH16_RATES.items():
        assert lines[epoch // 100].startswith(f"epoch: {epoch},")
        assert lines[epoch // 100].endswith(f"lr: {rate}")


def test_data_sets_and_weights_equal_the_nnfs_packages(real_nnfs: Any) -> None:
    from nnfs.datasets import sine_data as book_sine
    from nnfs.datasets import spiral_data as book_spiral
    from nnfs.datasets import vertical_data as book_vertical

    with nnback.use_backend("numpy"):
        compat.init()
        got = [*spiral_data(100, 3), *vertical_data(50, 2), *sine_data(), Layer_Dense(3, 5).weights]
        got.append(Layer_Dense(2, 4).biases)
    real_nnfs.init()
    expected = [*book_spiral(100, 3), *book_vertical(50, 2), *book_sine()]
    expected += [0.01 * np.random.randn(3, 5), np.zeros((1, 4))]
    for index, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
        assert mine.dtype == theirs.dtype, index
        np.testing.assert_array_equal(mine, theirs, err_msg=str(index))


def test_patch_numpy_computes_as_the_nnfs_package_and_init_undoes_it(real_nnfs: Any) -> None:
    rng = np.random.default_rng(5)
    a, b = rng.random((7, 9)).astype(np.float32), rng.random((9, 3)).astype(np.float32)
    dot = np.dot
    compat.init(patch_numpy=True)
    try:
        mine = [np.dot(a, b), np.zeros((2, 2)), np.eye(3), np.random.randn(4)]
        assert [x.dtype for x in mine] == [np.float32] * 4
    finally:
        compat.init()
    assert np.dot is dot and np.zeros((2, 2)).dtype == np.float64
    real_nnfs.init()
    theirs = [np.dot(a, b), np.zeros((2, 2)), np.eye(3), np.random.randn(4)]
    for x, y in zip(mine, theirs, strict=True):
        np.testing.assert_array_equal(x, y)
        assert x.dtype == y.dtype


def test_generator_mode_keeps_nnbacks_generator_and_the_global_state() -> None:
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    with nnback.use_backend("numpy"):
        compat.init(seed=4, book=False)
        try:
            weights = Layer_Dense(3, 2).weights
            X, y = spiral_data(10, 2)
            after = np.random.get_state()[1].copy()
        finally:
            compat.init()
    np.testing.assert_array_equal(after, before)
    expected = np.random.default_rng(4).standard_normal((3, 2)) * 0.01
    np.testing.assert_array_equal(weights, expected.astype(np.float32))
    assert X.dtype == np.float32 and y.dtype != np.uint8


def test_book_mode_rate_is_the_books_python_float() -> None:
    optimizer = Optimizer_Adam(learning_rate=0.005, decay=1e-3)
    for _ in range(10000):
        optimizer.pre_update_params()
        optimizer.post_update_params()
    assert type(optimizer.current_learning_rate) is float
    assert repr(optimizer.current_learning_rate) == "0.00045458678061641964"


def classifier_in_book_mode(epochs: int) -> dict[str, Any]:
    """A chapter 15-style classifier (L2, dropout, softmax with cross-entropy, Adam),
    written without NumPy calls on the outputs so it also runs on the device stand-ins."""
    compat.init()
    X, y = spiral_data(samples=40, classes=3)
    dense1 = Layer_Dense(2, 32, weight_regularizer_l2=5e-4, bias_regularizer_l2=5e-4)
    weights = dense1.backend.to_numpy(dense1.weights).copy()
    activation1 = Activation_ReLU()
    dropout1 = Layer_Dropout(0.1)
    dense2 = Layer_Dense(32, 3)
    loss_activation = Activation_Softmax_Loss_CategoricalCrossentropy()
    optimizer = Optimizer_Adam(learning_rate=0.02, decay=5e-5)
    losses, masks, rates = [], [], []
    for _ in range(epochs):
        dense1.forward(X)
        activation1.forward(dense1.output)
        dropout1.forward(activation1.output)
        dense2.forward(dropout1.output)
        data_loss = loss_activation.forward(dense2.output, y)
        losses.append(float(data_loss + loss_activation.loss.regularization_loss(dense1)))
        masks.append(dropout1.binary_mask)
        loss_activation.backward(loss_activation.output, y)
        dense2.backward(loss_activation.dinputs)
        dropout1.backward(dense2.dinputs)
        activation1.backward(dropout1.dinputs)
        dense1.backward(activation1.dinputs)
        optimizer.pre_update_params()
        rates.append(optimizer.current_learning_rate)
        optimizer.update_params(dense1)
        optimizer.update_params(dense2)
        optimizer.post_update_params()
    return {
        "X": dense1.backend.to_numpy(X),
        "weights": weights,
        "losses": np.array(losses),
        "masks": masks,
        "rates": rates,
    }


def test_book_mode_on_every_backend(on_backend: Any) -> None:
    """The same draws (data, weights, dropout masks) and learning rates on every backend;
    the backend's own float32 arithmetic, so losses agree to the printed figures."""
    with nnback.use_backend("numpy"):
        expected = classifier_in_book_mode(20)
    got = classifier_in_book_mode(20)
    np.testing.assert_array_equal(got["X"], expected["X"])
    np.testing.assert_array_equal(got["weights"], expected["weights"])
    for mine, theirs in zip(got["masks"], expected["masks"], strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert got["rates"] == expected["rates"]
    np.testing.assert_allclose(got["losses"], expected["losses"], rtol=0, atol=2e-3)
    assert got["losses"][-1] < got["losses"][0]
