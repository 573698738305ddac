"""Accuracy metrics, accumulated on the backend and read once per pass over the data.

``update`` returns nothing and keeps a running 0-d backend count, so a training loop does
not synchronise the device at every step; ``result()`` reads the count back.
"""

from __future__ import annotations

from typing import Any

import numpy

from .backends import Backend

__all__ = ["Accuracy", "Metric", "RegressionAccuracy", "get_metric"]

Array = Any


class Metric:
    """Base class: ``reset``, ``update(backend, y_pred, y_true)``, ``result() -> float``."""

    name = "accuracy"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._correct: Any = 0
        self._total = 0
        self._backend: Backend | None = None

    def prepare(self, y_train: numpy.ndarray) -> None:
        """Look at the training targets once before training (for data-dependent settings)."""

    def _count(self, backend: Backend, y_pred: Array, y_true: Array) -> tuple[Array, int]:
        raise NotImplementedError

    def update(self, backend: Backend, y_pred: Array, y_true: Array) -> None:
        correct, total = self._count(backend, y_pred, y_true)
        self._backend = backend
        self._correct = self._correct + correct
        self._total += total

    def result(self) -> float:
        if self._total == 0 or self._backend is None:
            return float("nan")
        return self._backend.to_float(self._correct) / self._total

    def calculate(self, backend: Backend, y_pred: Array, y_true: Array) -> float:
        """Accuracy of one batch as a float (the textbooks' ``Accuracy.calculate``)."""
        correct, total = self._count(backend, y_pred, y_true)
        return backend.to_float(correct) / total

    def get_config(self) -> dict[str, Any]:
        return {"class": type(self).__name__}


class Accuracy(Metric):
    """Classification accuracy: the argmax of each row, or ``> 0.5`` for sigmoid outputs.

    With a single sigmoid output (or several independent ones) each output counts once.
    """

    #: Independent 0/1 outputs (set by BinaryAccuracy): each output counts on its own.
    binary = False

    def _count(self, backend: Backend, y_pred: Array, y_true: Array) -> tuple[Array, int]:
        n, k = y_pred.shape
        if self.binary and k > 1 and tuple(y_true.shape) == (n, k):
            # |p - y| < 0.5 is "p on the right side of 0.5" for 0/1 targets.
            return backend.count_within(y_pred, y_true, 0.5), n * k
        return backend.count_correct(y_pred, y_true), n


class BinaryAccuracy(Accuracy):
    """Accuracy of independent sigmoid outputs, each thresholded at 0.5."""

    binary = True


class RegressionAccuracy(Metric):
    """The textbook regression accuracy: share of outputs with ``|pred - y| < precision``.

    ``precision`` defaults to ``std(y_train) / 250``, set from the training targets.
    """

    def __init__(self, precision: float | None = None, divisor: float = 250.0) -> None:
        self.precision = precision
        self.divisor = divisor
        super().__init__()

    def prepare(self, y_train: numpy.ndarray) -> None:
        if self.precision is None:
            self.precision = float(numpy.std(y_train)) / self.divisor

    def _count(self, backend: Backend, y_pred: Array, y_true: Array) -> tuple[Array, int]:
        if self.precision is None:
            raise ValueError("RegressionAccuracy: call prepare(y_train) or give precision")
        return backend.count_within(y_pred, y_true, self.precision), int(y_pred.size)

    def get_config(self) -> dict[str, Any]:
        return {
            "class": "RegressionAccuracy",
            "precision": self.precision,
            "divisor": self.divisor,
        }


def get_metric(spec: str | Metric | dict[str, Any] | None, loss: Any = None) -> Metric:
    """A metric from an instance, a name or a config; ``None``/``"auto"`` picks by loss."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, dict):
        config = dict(spec)
        name = config.pop("class")
        return {"Accuracy": Accuracy, "BinaryAccuracy": BinaryAccuracy}.get(
            name, RegressionAccuracy
        )(**config)
    if spec in (None, "auto"):
        op = getattr(loss, "op", "")
        if op == "binary_crossentropy":
            return BinaryAccuracy()
        if op in ("mean_squared_error", "mean_absolute_error"):
            return RegressionAccuracy()
        return Accuracy()
    names = {
        "accuracy": Accuracy,
        "binary_accuracy": BinaryAccuracy,
        "regression_accuracy": RegressionAccuracy,
    }
    if spec in names:
        return names[spec]()
    raise ValueError(f"unknown metric {spec!r}; expected one of {sorted(names)}")
