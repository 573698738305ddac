"""Plots of training and results, written as PNG files (matplotlib, an optional extra).

- :func:`plot_history`: loss and accuracy curves (training and validation) per epoch;
- :func:`plot_misclassified`: a grid of misclassified images, captioned with the true and
  the predicted class;
- :func:`plot_decision_boundary`: the predicted class over the plane of a 2-D toy set;
- :func:`plot_regression`: predictions against targets;
- :func:`write_training_plots`: what fits a trained model, as ``nnback train --plot DIR``.

matplotlib is imported when a plot is made (``pip install 'nnback[plot]'``). Figures are
drawn with matplotlib's object-oriented API on the Agg canvas, so no window opens and
pyplot's global state (and the user's chosen matplotlib backend) is left alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy

from .errors import InputError

__all__ = [
    "plot_decision_boundary",
    "plot_history",
    "plot_misclassified",
    "plot_regression",
    "write_training_plots",
]


def _figure(width: float, height: float) -> Any:
    """A new matplotlib Figure on the Agg canvas; a clear error if matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "nnback's plots need matplotlib: pip install 'nnback[plot]' (or matplotlib)"
        ) from exc
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | os.PathLike[str] | None) -> Any:
    if path is not None:
        directory = os.path.dirname(os.fspath(path))
        if directory:
            os.makedirs(directory, exist_ok=True)
        figure.savefig(path, dpi=100)
    return figure


def _curves(history: Any) -> dict[str, list[float]]:
    """Per-epoch series from a History, a dict of lists, or an estimator with curves."""
    if hasattr(history, "history") and isinstance(history.history, dict):
        return {k: list(v) for k, v in history.history.items()}
    if isinstance(history, dict):
        return {k: list(v) for k, v in history.items()}
    curves: dict[str, list[float]] = {}
    for key, attribute in (
        ("loss", "loss_curve_"),
        ("val_accuracy", "validation_scores_"),
        ("loss", "loss"),
        ("val_loss", "val_loss"),
        ("accuracy", "train_accuracy"),
        ("val_accuracy", "val_accuracy"),
    ):
        values = getattr(history, attribute, None)
        if isinstance(values, list) and values and key not in curves:
            curves[key] = list(values)
    if not curves:
        raise InputError(
            "plot_history: expected a History, a dict of per-epoch lists, or an object "
            f"with loss curves, got {type(history).__name__}"
        )
    return curves


def plot_history(
    history: Any,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Any:
    """Loss (left) and accuracy (right, when recorded) per epoch, training and validation.

    Parameters
    ----------
    history : History, dict or object
        ``model.fit``'s :class:`~nnback.History`, a dict such as ``{"loss": [...],
        "val_loss": [...]}``, an :class:`~nnback.MLPClassifier` (``loss_curve_``) or a
        scratch classifier (``loss`` / ``val_loss``).
    path : path, optional
        Where to write the PNG.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    curves = _curves(history)
    panels = [name for name in ("loss", "accuracy") if name in curves or f"val_{name}" in curves]
    figure = _figure(5.0 * len(panels), 3.8)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, name in zip(axes, panels, strict=True):
        for key, label in ((name, "training"), (f"val_{name}", "validation")):
            if key in curves:
                values = curves[key]
                ax.plot(range(1, len(values) + 1), values, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_misclassified(
    images: Any,
    y_true: Any,
    y_pred: Any,
    path: str | os.PathLike[str] | None = None,
    class_names: Sequence[str] | None = None,
    max_images: int = 25,
    image_shape: tuple[int, int] | None = None,
    title: str | None = None,
) -> Any:
    """A grid of the first misclassified images, each captioned with its index, its true
    class and the class the model predicted.

    Parameters
    ----------
    images : array (n, h*w) or (n, h, w)
        Rows are reshaped to ``image_shape`` (default: square).
    y_true, y_pred : array (n,)
        Labels (class indices, or any labels if ``class_names`` is None).
    class_names : sequence of str, optional
        Names to print for class indices (such as ``nnback.datasets.CLASS_NAMES`` for
        Fashion-MNIST); without them the captions show the class numbers.
    max_images : int
    title : str, optional
        The figure's title; by default it says what the grid shows and how many of the
        images were misclassified.
    """
    images = numpy.asarray(images)
    y_true, y_pred = numpy.asarray(y_true).reshape(-1), numpy.asarray(y_pred).reshape(-1)
    if not len(images) == len(y_true) == len(y_pred):
        raise InputError("plot_misclassified: images, y_true and y_pred differ in length")
    if image_shape is None:
        side = math.isqrt(int(numpy.prod(images.shape[1:])))
        image_shape = (side, side) if images.ndim == 2 else tuple(images.shape[1:3])  # type: ignore[assignment]
    wrong = numpy.flatnonzero(y_true != y_pred)[:max_images]
    columns = max(1, min(5, len(wrong)))
    rows = max(1, math.ceil(len(wrong) / columns))
    figure = _figure(2.0 * columns, 2.2 * rows + 0.5)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()

    def name(label: Any) -> str:
        if class_names is None:
            return f"class {label}"
        return str(class_names[int(label)])

    for ax in axes:
        ax.set_axis_off()
    for ax, index in zip(axes, wrong, strict=False):
        ax.imshow(images[index].reshape(image_shape), cmap="Greys", interpolation="nearest")
        ax.set_title(
            f"image {index}\ntrue: {name(y_true[index])}\npredicted: {name(y_pred[index])}",
            fontsize=8,
        )
    if len(wrong) == 0:
        axes[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    n_wrong = int(numpy.sum(y_true != y_pred))
    shown = f"; the first {len(wrong)} shown" if 0 < len(wrong) < n_wrong else ""
    figure.suptitle(
        title
        or f"Misclassified images: {n_wrong} of {len(y_true)} "
        f"({n_wrong / max(1, len(y_true)):.1%}){shown}\n"
        "each captioned with its true class and the class the model predicted"
    )
    return _save(figure, path)


def _class_predictor(model: Any) -> Callable[[numpy.ndarray], numpy.ndarray]:
    """A function from X to predicted labels, for a model, an estimator or a callable."""
    if hasattr(model, "predict_classes"):
        return model.predict_classes
    if callable(model) and not hasattr(model, "predict"):
        return model
    return model.predict


def plot_decision_boundary(
    model: Any,
    X: Any,
    y: Any,
    path: str | os.PathLike[str] | None = None,
    resolution: int = 200,
    title: str | None = None,
) -> Any:
    """The predicted class over the plane, with the points of a 2-D data set on top.

    Parameters
    ----------
    model : Sequential, estimator or callable
        Something that predicts labels: a :class:`~nnback.Sequential` model
        (``predict_classes``), an estimator (``predict``) or a function of X.
    X : array (n, 2)
    y : array (n,) or (n, 1)
    resolution : int
        Grid points per axis.
    """
    X = numpy.asarray(X, dtype=numpy.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise InputError(f"plot_decision_boundary: expected X of shape (n, 2), got {X.shape}")
    y = numpy.asarray(y).reshape(-1)
    predict = _class_predictor(model)
    pad_x = 0.1 * (numpy.ptp(X[:, 0]) or 1.0)
    pad_y = 0.1 * (numpy.ptp(X[:, 1]) or 1.0)
    grid_x, grid_y = numpy.meshgrid(
        numpy.linspace(X[:, 0].min() - pad_x, X[:, 0].max() + pad_x, resolution),
        numpy.linspace(X[:, 1].min() - pad_y, X[:, 1].max() + pad_y, resolution),
    )
    grid = numpy.column_stack([grid_x.ravel(), grid_y.ravel()])
    zones = numpy.asarray(predict(grid)).reshape(grid_x.shape)
    labels, zone_index = numpy.unique(zones, return_inverse=True)
    figure = _figure(5.5, 5.0)
    ax = figure.subplots()
    ax.contourf(
        grid_x,
        grid_y,
        zone_index.reshape(grid_x.shape),
        alpha=0.3,
        cmap="brg",
        levels=numpy.arange(len(labels) + 1) - 0.5,
    )
    ax.scatter(X[:, 0], X[:, 1], c=y, s=12, cmap="brg", edgecolors="k", linewidths=0.3)
    accuracy = float(numpy.mean(numpy.asarray(predict(X)).reshape(-1) == y))
    ax.set_title(title or f"decision boundary (accuracy {accuracy:.3f})")
    return _save(figure, path)


def plot_regression(
    X: Any,
    y_true: Any,
    y_pred: Any,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Any:
    """Predictions against targets: curves over ``X`` for one input, else a scatter plot."""
    X = numpy.asarray(X, dtype=numpy.float64)
    y_true = numpy.asarray(y_true, dtype=numpy.float64).reshape(len(X), -1)
    y_pred = numpy.asarray(y_pred, dtype=numpy.float64).reshape(len(X), -1)
    figure = _figure(5.5, 4.0)
    ax = figure.subplots()
    if X.ndim == 2 and X.shape[1] == 1:
        order = numpy.argsort(X[:, 0])
        ax.plot(X[order, 0], y_true[order, 0], label="target")
        ax.plot(X[order, 0], y_pred[order, 0], label="prediction")
        ax.set_xlabel("x")
        ax.legend()
    else:
        ax.scatter(y_true.ravel(), y_pred.ravel(), s=8)
        low, high = float(y_true.min()), float(y_true.max())
        ax.plot([low, high], [low, high], color="grey", linewidth=1)
        ax.set_xlabel("target")
        ax.set_ylabel("prediction")
    mse = float(numpy.mean((y_true - y_pred) ** 2))
    ax.set_title(title or f"predictions against targets (MSE {mse:.4g})")
    return _save(figure, path)


def write_training_plots(
    model: Any,
    history: Any,
    X_test: Any,
    y_test: Any,
    directory: str | os.PathLike[str],
    class_names: Sequence[str] | None = None,
) -> list[str]:
    """Write the plots that suit a trained :class:`~nnback.Sequential` model into ``directory``.

    Always ``history.png`` (loss and accuracy curves); for a classifier on square images
    ``misclassified.png`` (captioned with ``class_names`` when given, else class numbers);
    for two input features ``decision_boundary.png``; for a regression model (squared or
    absolute error) ``regression.png``.

    Returns
    -------
    list of str
        The paths written.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    written = [os.path.join(directory, "history.png")]
    plot_history(history, written[0])
    X_test = numpy.asarray(X_test)
    op = getattr(getattr(model, "loss", None), "op", "")
    if op in ("mean_squared_error", "mean_absolute_error"):
        path = os.path.join(directory, "regression.png")
        plot_regression(X_test, y_test, model.predict(X_test), path)
        written.append(path)
        return written
    if X_test.ndim == 2 and X_test.shape[1] == 2:
        path = os.path.join(directory, "decision_boundary.png")
        plot_decision_boundary(model, X_test, y_test, path)
        written.append(path)
    side = math.isqrt(X_test.shape[1]) if X_test.ndim == 2 else 0
    if side > 2 and side * side == X_test.shape[1]:
        y_true = numpy.asarray(y_test)
        y_true = y_true.argmax(axis=1) if y_true.ndim == 2 else y_true
        path = os.path.join(directory, "misclassified.png")
        predicted = _class_predictor(model)(X_test)
        plot_misclassified(X_test, y_true, predicted, path, class_names=class_names)
        written.append(path)
    return written
