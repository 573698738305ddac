"""Every plot function writes a PNG; ``write_training_plots`` picks the plots that fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nnback
from nnback import plot
from nnback.compat.scratch import ScratchDeepNeuralNetworkClassifier
from nnback.datasets import load_sample, sine_data, spiral_data

pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install nnback[plot])")

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path | str) -> bool:
    return Path(path).read_bytes()[:8] == PNG


def classifier(n_features: int, n_classes: int) -> nnback.Sequential:
    return nnback.Sequential(
        [
            nnback.Dense(n_features, 16, weight_initializer="he"),
            nnback.ReLU(),
            nnback.Dense(16, n_classes),
            nnback.Softmax(),
        ],
        loss=nnback.CategoricalCrossentropy(),
        optimizer=nnback.Adam(0.01),
        seed=0,
        backend="numpy",
    )


def test_plot_functions_write_png_files(tmp_path: Path) -> None:
    X, y = spiral_data(30, 3)
    model = classifier(2, 3)
    history = model.fit(X, y, epochs=3, batch_size=30, validation_split=0.2, verbose=0)
    plot.plot_history(history, tmp_path / "history.png", title="spiral")
    plot.plot_decision_boundary(model, X, y, tmp_path / "boundary.png", resolution=40)
    images = np.random.default_rng(0).random((12, 16))
    plot.plot_misclassified(
        images,
        np.arange(12) % 3,
        np.zeros(12, int),
        tmp_path / "wrong.png",
        class_names=["a", "b", "c"],
    )
    plot.plot_misclassified(images, np.zeros(12), np.zeros(12), tmp_path / "none.png")
    X_sine, y_sine = sine_data(50)
    plot.plot_regression(X_sine, y_sine, y_sine * 0.9, tmp_path / "sine.png")
    plot.plot_regression(np.hstack([X_sine, X_sine]), y_sine, y_sine, tmp_path / "scatter.png")
    for name in ("history", "boundary", "wrong", "none", "sine", "scatter"):
        assert is_png(tmp_path / f"{name}.png"), name


def test_history_from_estimator_and_scratch_curves(tmp_path: Path) -> None:
    plot.plot_history({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}, tmp_path / "a.png")
    (X, y), _ = load_sample()
    clf = ScratchDeepNeuralNetworkClassifier(n_nodes=(8,), epochs=2).fit(
        X[:100], y[:100], X[100:150], y[100:150]
    )
    plot.plot_history(clf, tmp_path / "b.png")
    assert is_png(tmp_path / "a.png") and is_png(tmp_path / "b.png")
    with pytest.raises(ValueError, match="History"):
        plot.plot_history(object())


def test_write_training_plots_for_images_toy_sets_and_regression(tmp_path: Path) -> None:
    (X, y), (X_test, y_test) = load_sample()
    model = classifier(784, 10)
    history = model.fit(X[:300], y[:300], epochs=1, batch_size=50, verbose=0)
    written = plot.write_training_plots(
        model, history, X_test[:100], y_test[:100], tmp_path / "images"
    )
    assert [Path(p).name for p in written] == ["history.png", "misclassified.png"]
    X2, y2 = spiral_data(20, 2)
    model = classifier(2, 2)
    history = model.fit(X2, y2, epochs=1, verbose=0)
    names = [Path(p).name for p in plot.write_training_plots(model, history, X2, y2, tmp_path)]
    assert names == ["history.png", "decision_boundary.png"]
    X_sine, y_sine = sine_data(64)
    regression = nnback.Sequential(
        [nnback.Dense(1, 8), nnback.Tanh(), nnback.Dense(8, 1)],
        loss="mse",
        optimizer="adam",
        seed=0,
        backend="numpy",
    )
    history = regression.fit(X_sine, y_sine, epochs=2, verbose=0)
    written = plot.write_training_plots(regression, history, X_sine, y_sine, tmp_path / "r")
    assert [Path(p).name for p in written] == ["history.png", "regression.png"]
    assert all(is_png(p) for p in written)


def test_misclassified_captions_name_the_true_and_predicted_class() -> None:
    from nnback.datasets import CLASS_NAMES

    images = np.random.default_rng(0).random((4, 16))
    y_true, y_pred = np.array([1, 7, 3, 3]), np.array([7, 7, 3, 9])
    figure = plot.plot_misclassified(images, y_true, y_pred, class_names=CLASS_NAMES)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == [
        "image 0\ntrue: Trouser\npredicted: Sneaker",
        "image 3\ntrue: Dress\npredicted: Ankle boot",
    ]
    heading = figure._suptitle.get_text()
    assert heading.startswith("Misclassified images: 2 of 4 (50.0%)")
    assert "true class and the class the model predicted" in heading
    numbered = plot.plot_misclassified(images, y_true, y_pred, title="mine")
    assert [ax.get_title() for ax in numbered.axes][
        0
    ] == "image 0\ntrue: class 1\npredicted: class 7"
    assert numbered._suptitle.get_text() == "mine"
