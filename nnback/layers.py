"""Layers: :class:`Dense` and :class:`Dropout` (activations live in :mod:`nnback.activations`,
the image layers in :mod:`nnback.conv_layers`; all are importable from here).

Layers hold backend arrays and call the backend for every operation; they never touch
NumPy, Numba or CuPy directly to compute. They keep the textbooks' stateful convention:
after ``forward`` the layer has ``inputs`` and ``output``; after ``backward`` it has
``dinputs`` and, for trainable layers, ``dweights`` and ``dbiases``.

Inside a :class:`~nnback.model.Sequential` model a Dense layer followed by an activation
layer is fused: the model sets the Dense layer's ``fused_activation`` and skips the
activation layer, so bias, activation and their gradients take one backend call each.
"""

from __future__ import annotations

from typing import Any

import numpy

from .activations import (
    Activation,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    get_activation,
)
from .backends import Backend
from .backends.base import ACTIVATIONS
from .conv_layers import AvgPool2D, Conv2D, Flatten, MaxPool2D, Reshape
from .errors import InputError
from .initializers import Initializer, get_initializer
from .layer_base import Layer
from .validation import check_nonnegative_float, check_positive_int, check_rate

__all__ = [
    "Activation",
    "AvgPool2D",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MaxPool2D",
    "ReLU",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "get_activation",
    "layer_from_config",
]

Array = Any


class Dense(Layer):
    """Fully connected layer: ``output = inputs @ weights + biases``.

    Parameters
    ----------
    n_inputs, n_neurons : int
        Input and output sizes; ``weights`` is (n_inputs, n_neurons) and ``biases``
        (1, n_neurons).
    weight_initializer, bias_initializer : Initializer or str
        Default: ``Gaussian(0.01)`` (the textbooks' ``0.01 * randn``) and zeros.
    weight_regularizer_l1, weight_regularizer_l2, bias_regularizer_l1, bias_regularizer_l2
        Non-negative penalty factors; the penalty is ``l1 * sum|w| + l2 * sum w**2``.
    """

    trainable = True
    #: Activations the model may fuse into this layer.
    fusable_activations = ACTIVATIONS

    def __init__(
        self,
        n_inputs: int,
        n_neurons: int,
        weight_initializer: Initializer | str = "gaussian",
        bias_initializer: Initializer | str = "zeros",
        weight_regularizer_l1: float = 0.0,
        weight_regularizer_l2: float = 0.0,
        bias_regularizer_l1: float = 0.0,
        bias_regularizer_l2: float = 0.0,
    ) -> None:
        self.n_inputs = check_positive_int("Dense(n_inputs)", n_inputs)
        self.n_neurons = check_positive_int("Dense(n_neurons)", n_neurons)
        self.weight_initializer = get_initializer(weight_initializer)
        self.bias_initializer = get_initializer(bias_initializer)
        self.weight_regularizer_l1 = check_nonnegative_float(
            "Dense(weight_regularizer_l1)", weight_regularizer_l1
        )
        self.weight_regularizer_l2 = check_nonnegative_float(
            "Dense(weight_regularizer_l2)", weight_regularizer_l2
        )
        self.bias_regularizer_l1 = check_nonnegative_float(
            "Dense(bias_regularizer_l1)", bias_regularizer_l1
        )
        self.bias_regularizer_l2 = check_nonnegative_float(
            "Dense(bias_regularizer_l2)", bias_regularizer_l2
        )
        # Set by the model when the next layer is an activation it fuses into this one.
        self.fused_activation = "linear"
        self.fused_alpha = 0.01
        self.weights: Array = None
        self.biases: Array = None
        self.dweights: Array = None
        self.dbiases: Array = None
        self.optimizer_state: dict[str, dict[str, Array]] = {}
        self._workspaces: dict[tuple[str, int], Array] = {}

    def build(self, backend: Backend, dtype: Any, rng: numpy.random.Generator) -> None:
        """Draw the initial parameters on the host from ``rng``, then move them to ``backend``."""
        super().build(backend, dtype, rng)
        shape_w = (self.n_inputs, self.n_neurons)
        self.weights = backend.asarray(self.weight_initializer(shape_w, rng, self.dtype))
        self.biases = backend.asarray(self.bias_initializer((1, self.n_neurons), rng, self.dtype))
        self.dweights = None
        self.dbiases = None
        self.optimizer_state = {}
        self._workspaces = {}

    def _workspace(self, kind: str, shape: tuple[int, ...]) -> Array:
        """A reusable array for training steps, kept for at most two batch sizes."""
        key = (kind, shape[0])
        buffer = self._workspaces.get(key)
        if buffer is None:
            sizes = {k[1] for k in self._workspaces}
            if len(sizes) >= 2 and shape[0] not in sizes:
                self._workspaces.clear()
            buffer = self.backend.empty(shape, self.dtype)  # type: ignore[union-attr]
            self._workspaces[key] = buffer
        return buffer

    def forward(self, inputs: Array, training: bool = False) -> Array:
        """``fused_activation(inputs @ weights + biases)`` for inputs (n, n_inputs).

        In training the output is written to a workspace reused from step to step, so
        keep a copy if you need it after the next step.
        """
        backend = self._ensure_built(inputs)
        if inputs.shape[-1] != self.n_inputs:
            raise InputError(
                f"Dense: expected inputs with {self.n_inputs} features, "
                f"got shape {tuple(inputs.shape)}"
            )
        out = self._workspace("y", (inputs.shape[0], self.n_neurons)) if training else None
        self.inputs = inputs
        self.output = backend.dense_forward(
            inputs, self.weights, self.biases, self.fused_activation, self.fused_alpha, out=out
        )
        return self.output

    def backward(self, dvalues: Array, need_dinputs: bool = True, overwrite: bool = False) -> Array:
        """Gradients of the data loss; sets ``dweights``, ``dbiases`` and ``dinputs``.

        Regularization is not added here: the optimizer folds it into its step. (The
        textbook-compatible layer in :mod:`nnback.compat.nnfs` adds it, as the book does.)
        """
        backend = self.backend
        n = dvalues.shape[0]
        if self.dweights is None:
            self.dweights = backend.empty(self.weights.shape, self.dtype)
            self.dbiases = backend.empty(self.biases.shape, self.dtype)
        dx_out = self._workspace("dx", (n, self.n_inputs)) if need_dinputs else None
        self.dinputs, self.dweights, self.dbiases = backend.dense_backward(
            dvalues,
            self.inputs,
            self.weights,
            self.output,
            self.fused_activation,
            self.fused_alpha,
            need_dx=need_dinputs,
            overwrite_dy=overwrite,
            out=(dx_out, self.dweights, self.dbiases),
        )
        return self.dinputs

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(n_neurons,)`` for rows of ``n_inputs`` features."""
        shape = tuple(input_shape)
        if len(shape) != 1:
            raise InputError(
                f"{self!r} expects rows of {self.n_inputs} features, got samples of shape "
                f"{shape}; put Flatten() before it"
            )
        if shape[0] != self.n_inputs:
            raise InputError(f"{self!r} expects {self.n_inputs} inputs, got {shape[0]}")
        return (self.n_neurons,)

    def input_size(self) -> int | None:
        return self.n_inputs

    def parameter_count(self) -> int:
        return self.n_inputs * self.n_neurons + self.n_neurons

    def parameters(self) -> list[tuple[str, Array, Array | None, float, float]]:
        return [
            (
                "weights",
                self.weights,
                self.dweights,
                self.weight_regularizer_l1,
                self.weight_regularizer_l2,
            ),
            (
                "biases",
                self.biases,
                self.dbiases,
                self.bias_regularizer_l1,
                self.bias_regularizer_l2,
            ),
        ]

    def regularization_loss(self) -> Array | None:
        backend = self.backend
        if backend is None:
            return None
        total = None
        for _, value, _, l1, l2 in self.parameters():
            if l1 > 0 or l2 > 0:
                term = backend.regularization_loss(value, l1, l2)
                total = term if total is None else total + term
        return total

    def get_config(self) -> dict[str, Any]:
        return {
            "class": "Dense",
            "n_inputs": self.n_inputs,
            "n_neurons": self.n_neurons,
            "weight_initializer": self.weight_initializer.get_config(),
            "bias_initializer": self.bias_initializer.get_config(),
            "weight_regularizer_l1": self.weight_regularizer_l1,
            "weight_regularizer_l2": self.weight_regularizer_l2,
            "bias_regularizer_l1": self.bias_regularizer_l1,
            "bias_regularizer_l2": self.bias_regularizer_l2,
        }

    def __repr__(self) -> str:
        return f"Dense({self.n_inputs}, {self.n_neurons})"


class Dropout(Layer):
    """Inverted dropout: in training each unit is kept with probability ``1 - rate`` and
    scaled by ``1 / (1 - rate)``; at inference the layer passes values through.

    The keep mask is drawn on the host from the model's generator, so every backend drops
    the same units for the same seed.
    """

    def __init__(self, rate: float) -> None:
        self.rate = check_rate("Dropout(rate)", rate)
        self.rng: numpy.random.Generator | None = None

    def build(self, backend: Backend, dtype: Any, rng: numpy.random.Generator) -> None:
        super().build(backend, dtype, rng)
        self.rng = rng

    def forward(self, inputs: Array, training: bool = False) -> Array:
        backend = self._ensure_built(inputs)
        self.inputs = inputs
        if not training or self.rate == 0:
            self.mask = None
            self.output = inputs
            return inputs
        assert self.rng is not None
        keep = self.rng.random(tuple(inputs.shape)) >= self.rate
        self.mask = backend.asarray(keep)
        self.output = backend.dropout_forward(inputs, self.mask, 1.0 / (1.0 - self.rate))
        return self.output

    def backward(self, dvalues: Array, need_dinputs: bool = True, overwrite: bool = False) -> Array:
        if self.mask is None:
            self.dinputs = dvalues
        else:
            self.dinputs = self.backend.dropout_backward(  # type: ignore[union-attr]
                dvalues, self.mask, 1.0 / (1.0 - self.rate)
            )
        return self.dinputs

    def get_config(self) -> dict[str, Any]:
        return {"class": "Dropout", "rate": self.rate}

    def __repr__(self) -> str:
        return f"Dropout({self.rate})"


def layer_from_config(config: dict[str, Any]) -> Layer:
    """Rebuild a layer (unbuilt) from :meth:`Layer.get_config`."""
    config = dict(config)
    name = config.pop("class")
    if name == "Dense":
        config["weight_initializer"] = get_initializer(config["weight_initializer"])
        config["bias_initializer"] = get_initializer(config["bias_initializer"])
        return Dense(**config)
    if name == "Dropout":
        return Dropout(**config)
    images = {"Conv2D": Conv2D, "MaxPool2D": MaxPool2D, "AvgPool2D": AvgPool2D}
    images.update({"Flatten": Flatten, "Reshape": Reshape})
    if name in images:
        return images[name](**config)
    return get_activation(name, **config)
