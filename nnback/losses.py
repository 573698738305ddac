"""Loss functions: each computes its data loss and gradient with one backend call.

A loss object is used by :class:`~nnback.model.Sequential`, and can also be used on its own
(:meth:`Loss.calculate`, as in the textbooks). Every loss is the mean over samples of the
per-sample loss; element-wise losses first average over the outputs.
"""

from __future__ import annotations

from typing import Any

from .backends import Backend, get_backend
from .errors import InputError

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Loss",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "get_loss",
]

Array = Any


class Loss:
    """Base class. ``op`` names the backend method that returns ``(loss, gradient)``."""

    op = ""
    #: True for losses whose targets are class indices or one-hot rows.
    categorical = False

    def compute(
        self, backend: Backend, y_pred: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        """``(mean loss as a 0-d array, gradient with respect to y_pred or None)``."""
        return getattr(backend, self.op)(y_pred, y_true, with_grad=with_grad)

    def calculate(self, output: Array, y: Array, backend: Backend | None = None) -> float:
        """The mean data loss as a Python float (the textbooks' ``Loss.calculate``)."""
        backend = backend or get_backend()
        loss, _ = self.compute(backend, output, y, with_grad=False)
        return backend.to_float(loss)

    @staticmethod
    def regularization_loss(layers: Any) -> Array | float:
        """Sum of the L1/L2 penalties of a layer or a list of layers (0.0 if none)."""
        if not isinstance(layers, list | tuple):
            layers = [layers]
        total: Any = None
        for layer in layers:
            term = layer.regularization_loss()
            if term is not None:
                total = term if total is None else total + term
        return 0.0 if total is None else total

    def check_output(self, n_outputs: int, activation: str | None) -> None:
        """Raise if this loss does not fit a model whose last layer has ``n_outputs``."""

    def get_config(self) -> dict[str, Any]:
        return {"class": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CategoricalCrossentropy(Loss):
    """``-log p[true class]`` for probabilities, with integer labels (n,) or one-hot (n, k).

    After a Softmax layer in a model, the model uses the fused ``softmax_crossentropy`` op
    on the logits instead, which is exact where clipping probabilities is not.
    """

    op = "categorical_crossentropy"
    categorical = True

    def check_output(self, n_outputs: int, activation: str | None) -> None:
        if n_outputs < 2:
            raise InputError(
                "CategoricalCrossentropy needs an output layer with at least 2 units "
                f"(one per class), got {n_outputs}; for two classes with one sigmoid "
                "output use BinaryCrossentropy"
            )
        if activation not in ("softmax", None):
            raise InputError(
                f"CategoricalCrossentropy expects probabilities from a Softmax output layer, "
                f"the model ends in {activation!r}; add Softmax()"
            )


class BinaryCrossentropy(Loss):
    """Binary cross-entropy of sigmoid outputs (n, k) against 0/1 targets (n, k)."""

    op = "binary_crossentropy"

    def check_output(self, n_outputs: int, activation: str | None) -> None:
        if activation == "softmax":
            raise InputError(
                "BinaryCrossentropy expects independent sigmoid outputs, the model ends in "
                "Softmax; use CategoricalCrossentropy with Softmax, or Sigmoid outputs"
            )
        if activation not in ("sigmoid", None):
            raise InputError(
                f"BinaryCrossentropy expects probabilities in (0, 1) from a Sigmoid output "
                f"layer, the model ends in {activation!r}; add Sigmoid()"
            )


class MeanSquaredError(Loss):
    """``mean((y_pred - y_true) ** 2)`` over outputs, then samples."""

    op = "mean_squared_error"


class MeanAbsoluteError(Loss):
    """``mean(|y_pred - y_true|)`` over outputs, then samples."""

    op = "mean_absolute_error"


_BY_NAME: dict[str, type[Loss]] = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
}


def get_loss(spec: str | Loss | dict[str, Any]) -> Loss:
    """A loss from an instance, a name (``"mse"``) or a saved config dict."""
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, dict):
        spec = spec["class"]
    classes = {cls.__name__.lower(): cls for cls in _BY_NAME.values()}
    if isinstance(spec, str):
        cls = _BY_NAME.get(spec.lower()) or classes.get(spec.lower())
        if cls is not None:
            return cls()
    raise InputError(f"unknown loss {spec!r}; expected a Loss or one of {sorted(_BY_NAME)}")
