"""Activation layers: ReLU, LeakyReLU, Sigmoid, Tanh, Softmax and Linear.

Each is a thin layer over the backend's ``activation_forward`` / ``activation_backward``;
its backward pass uses the layer's *output*, so the pre-activation is never stored. In a
:class:`~nnback.model.Sequential` model they are fused into the preceding Dense layer.
"""

from __future__ import annotations

from typing import Any

from .backends import Backend
from .layer_base import Layer

Array = Any

__all__ = [
    "Activation",
    "LeakyReLU",
    "Linear",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "get_activation",
]


class Activation(Layer):
    """Base class: ``kind`` names the backend activation; ``alpha`` is LeakyReLU's slope."""

    kind = "linear"
    alpha = 0.01

    def _backend(self) -> Backend:
        if self.backend is None:
            from .backends import get_backend

            self.backend = get_backend()
        return self.backend

    def forward(self, inputs: Array, training: bool = False) -> Array:
        """Apply the activation to ``inputs`` (n, k); sets ``inputs`` and ``output``."""
        self.inputs = inputs
        self.output = self._backend().activation_forward(inputs, self.kind, self.alpha)
        return self.output

    def backward(self, dvalues: Array, need_dinputs: bool = True, overwrite: bool = False) -> Array:
        """Gradient with respect to the inputs, from the gradient of the output (n, k)."""
        self.dinputs = self._backend().activation_backward(
            dvalues, self.output, self.kind, self.alpha
        )
        return self.dinputs

    def predictions(self, outputs: Array) -> Array:
        """Outputs turned into predictions (classes for Softmax, 0/1 for Sigmoid)."""
        return outputs

    def get_config(self) -> dict[str, Any]:
        return {"class": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linear(Activation):
    """Identity: ``y = z`` (the output of a regression model)."""

    kind = "linear"


class ReLU(Activation):
    """``y = max(z, 0)``."""

    kind = "relu"


class LeakyReLU(Activation):
    """``y = z`` for ``z > 0``, else ``alpha * z``."""

    kind = "leaky_relu"

    def __init__(self, alpha: float = 0.01) -> None:
        from .validation import check_positive_float

        self.alpha = check_positive_float("LeakyReLU(alpha)", alpha)

    def get_config(self) -> dict[str, Any]:
        return {"class": "LeakyReLU", "alpha": self.alpha}

    def __repr__(self) -> str:
        return f"LeakyReLU(alpha={self.alpha})"


class Sigmoid(Activation):
    """``y = 1 / (1 + exp(-z))``, computed stably for large ``|z|``."""

    kind = "sigmoid"


class Tanh(Activation):
    """``y = tanh(z)``."""

    kind = "tanh"


class Softmax(Activation):
    """Row-wise ``exp(z) / sum(exp(z))``, shifted by the row maximum for stability.

    Followed by categorical cross-entropy in a model, the pair is computed by the fused,
    numerically stable ``softmax_crossentropy`` op instead.
    """

    kind = "softmax"


_BY_NAME: dict[str, type[Activation]] = {
    "linear": Linear,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "softmax": Softmax,
}


def get_activation(name: str, **kwargs: Any) -> Activation:
    """An activation layer from its name (``"relu"``) or class name (``"ReLU"``)."""
    from .errors import InputError

    classes = {cls.__name__.lower(): cls for cls in _BY_NAME.values()}
    key = name.lower()
    cls = _BY_NAME.get(key) or classes.get(key)
    if cls is None:
        raise InputError(f"unknown activation {name!r}; expected one of {sorted(_BY_NAME)}")
    return cls(**kwargs)
