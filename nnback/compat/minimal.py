"""The minimal ``Network`` / ``FCLayer`` / ``ActivationLayer`` API on nnback.

The well-known short tutorial builds a network from two layer classes and a loop over
single samples. Its programs run here with the import changed::

    from nnback.compat.minimal import (
        Network, FCLayer, ActivationLayer, tanh, tanh_prime, mse, mse_prime)

    net = Network()
    net.add(FCLayer(2, 3))
    net.add(ActivationLayer(tanh, tanh_prime))
    net.add(FCLayer(3, 1))
    net.add(ActivationLayer(tanh, tanh_prime))
    net.use(mse, mse_prime)
    net.fit(x_train, y_train, epochs=1000, learning_rate=0.1)
    out = net.predict(x_test)

Unlike the original, data move to the backend once and samples go through the layers as
batched arrays. With ``batch_size=1`` (the default) every step is the original's
per-sample step, so the results match it; a larger ``batch_size`` takes one step per
minibatch on the mean of its per-sample gradients (as ``mse_prime`` divides by the number
of values). Known activation and loss functions (those of this module) run as fused
backend ops; other Python functions are called on the backend arrays as they are.

Reproducibility: the tutorial draws its weights from NumPy's global state and sets no
seed, so nobody can repeat its printed figures. Here :func:`set_seed` fixes the weights:
by default from nnback's generator (the same weights on every backend), or with
``set_seed(seed, global_state=True)`` from NumPy's global state exactly as the tutorial
draws them, so that the tutorial's program run after ``np.random.seed(seed)`` and this
module's program give equal numbers on the numpy backend with ``batch_size=1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy

from .. import activations as _act
from ..backends import Backend, get_backend
from ..errors import InputError, TrainingError
from ..initializers import Initializer
from ..layers import Dense
from ..validation import check_positive_float, check_positive_int

__all__ = [
    "ActivationLayer",
    "FCLayer",
    "Layer",
    "Network",
    "mse",
    "mse_prime",
    "relu",
    "relu_prime",
    "set_seed",
    "sigmoid",
    "sigmoid_prime",
    "tanh",
    "tanh_prime",
]

Array = Any

_STATE: dict[str, Any] = {"rng": numpy.random.default_rng(0), "global_state": False}


def set_seed(seed: int | None, *, global_state: bool = False) -> None:
    """Seed the random numbers behind the initial weights of new :class:`FCLayer` objects.

    By default they come from a ``numpy.random.Generator`` seeded here: the same seed
    gives the same weights on every backend. With ``global_state=True`` they come, as in
    the tutorial's code, from NumPy's global legacy ``RandomState`` (``np.random.rand``,
    the weights then the bias of each layer), seeded here with ``numpy.random.seed``
    unless ``seed`` is None: a tutorial program that calls ``np.random.seed(seed)`` first
    and this module's program after ``set_seed(seed, global_state=True)`` start from the
    same weights, and on the numpy backend with ``batch_size=1`` train to the same
    numbers. The tutorial itself sets no seed, so its printed figures come from draws
    nobody can repeat.
    """
    _STATE["rng"] = numpy.random.default_rng(seed)
    _STATE["global_state"] = bool(global_state)
    if global_state and seed is not None:
        numpy.random.seed(seed)  # noqa: NPY002 (the tutorial's global state, on purpose)


# --------------------------------------------------------------------------------------
# Functions: each is computed by the current backend and tagged with the op it stands for
# --------------------------------------------------------------------------------------
def _on_backend(x: Any) -> tuple[Backend, Array, tuple[int, ...]]:
    backend = get_backend()
    array = backend.asarray(x)
    shape = tuple(array.shape)
    # Backend activations work on (n, k) arrays; any other shape is viewed as one row.
    return backend, array.reshape(1, -1) if array.ndim != 2 else array, shape


def _activation(kind: str) -> tuple[Callable[[Any], Array], Callable[[Any], Array]]:
    def function(x: Any) -> Array:
        backend, z, shape = _on_backend(x)
        return backend.activation_forward(z, kind).reshape(shape)

    def prime(x: Any) -> Array:
        backend, z, shape = _on_backend(x)
        y = backend.activation_forward(z, kind)
        ones = backend.zeros_like(y) + 1
        return backend.activation_backward(ones, y, kind).reshape(shape)

    function.kind = prime.kind = kind  # type: ignore[attr-defined]
    function.is_prime, prime.is_prime = False, True  # type: ignore[attr-defined]
    function.__name__, prime.__name__ = kind, f"{kind}_prime"
    function.__doc__ = f"The {kind} activation, computed on the current backend."
    prime.__doc__ = f"The derivative of {kind} at ``x``, computed on the current backend."
    return function, prime


tanh, tanh_prime = _activation("tanh")
sigmoid, sigmoid_prime = _activation("sigmoid")
relu, relu_prime = _activation("relu")


def _loss_pair(y_true: Any, y_pred: Any) -> tuple[Backend, Array, Array]:
    backend = get_backend()
    pred = backend.asarray(y_pred)
    true = backend.asarray(y_true, dtype=pred.dtype).reshape(pred.shape)
    return backend, true, pred


def mse(y_true: Any, y_pred: Any) -> float:
    """Mean of ``(y_true - y_pred) ** 2`` over every value, as a float."""
    backend, true, pred = _loss_pair(y_true, y_pred)
    loss, _ = backend.mean_squared_error(pred.reshape(1, -1), true.reshape(1, -1), False)
    return backend.to_float(loss)


def mse_prime(y_true: Any, y_pred: Any) -> Array:
    """``2 * (y_pred - y_true) / y_true.size``: the gradient of :func:`mse`."""
    backend, true, pred = _loss_pair(y_true, y_pred)
    _, grad = backend.mean_squared_error(pred.reshape(1, -1), true.reshape(1, -1), True)
    return grad.reshape(pred.shape)


mse.op = mse_prime.op = "mean_squared_error"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------
class Layer:
    """Base class: ``forward_propagation(input)`` and ``backward_propagation(error, lr)``."""

    def __init__(self) -> None:
        self.input: Array = None
        self.output: Array = None

    def forward_propagation(self, input: Array) -> Array:
        raise NotImplementedError

    def backward_propagation(self, output_error: Array, learning_rate: float) -> Array:
        raise NotImplementedError


class _CenteredUniform(Initializer):
    """Uniform on ``[-0.5, 0.5)``: the original's ``np.random.rand(...) - 0.5`` (from the
    global state after ``set_seed(..., global_state=True)``)."""

    def sample(self, shape: tuple[int, int], rng: numpy.random.Generator) -> numpy.ndarray:
        if _STATE["global_state"]:
            return numpy.random.rand(*shape) - 0.5  # noqa: NPY002
        return rng.random(shape) - 0.5


class FCLayer(Layer):
    """Fully connected layer; ``weights`` (input_size, output_size), ``bias`` (1, output_size).

    Both start uniform on ``[-0.5, 0.5)``. The layer is nnback's :class:`~nnback.Dense`;
    ``backward_propagation`` computes the input error with the weights before the step,
    then takes a plain SGD step on the backend.
    """

    def __init__(self, input_size: int, output_size: int, dtype: str = "float64") -> None:
        super().__init__()
        self.dense = Dense(
            input_size,
            output_size,
            weight_initializer=_CenteredUniform(),
            bias_initializer=_CenteredUniform(),
        )
        self.dense.build(get_backend(), dtype, _STATE["rng"])

    @property
    def weights(self) -> Array:
        return self.dense.weights

    @property
    def bias(self) -> Array:
        return self.dense.biases

    def forward_propagation(self, input: Array) -> Array:
        backend = self.dense.backend
        x = backend.asarray(input, dtype=self.dense.dtype)  # type: ignore[union-attr]
        self.input = x.reshape(1, -1) if x.ndim == 1 else x
        self.output = self.dense.forward(self.input)
        return self.output

    def backward_propagation(self, output_error: Array, learning_rate: float) -> Array:
        dense = self.dense
        backend: Backend = dense.backend  # type: ignore[assignment]
        error = backend.asarray(output_error, dtype=dense.dtype)
        input_error = dense.backward(error.reshape(self.output.shape))
        for _, value, grad, _, _ in dense.parameters():
            backend.sgd_update_inplace(value, grad, None, learning_rate)
        return input_error


class ActivationLayer(Layer):
    """Applies ``activation``; its backward multiplies by ``activation_prime(input)``.

    With this module's ``tanh``/``tanh_prime``, ``sigmoid``/``sigmoid_prime`` or
    ``relu``/``relu_prime`` the layer is nnback's activation layer (one backend op each way,
    from the saved output); other functions are called as given.
    """

    def __init__(self, activation: Callable[[Any], Any], activation_prime: Callable[[Any], Any]):
        super().__init__()
        self.activation = activation
        self.activation_prime = activation_prime
        kind = getattr(activation, "kind", None)
        fused = kind is not None and getattr(activation_prime, "kind", None) == kind
        self.core: _act.Activation | None = _act.get_activation(kind) if fused else None

    def forward_propagation(self, input: Array) -> Array:
        self.input = input
        if self.core is not None:
            self.output = self.core.forward(self.core._backend().asarray(input))
        else:
            self.output = self.activation(input)
        return self.output

    def backward_propagation(self, output_error: Array, learning_rate: float) -> Array:
        if self.core is not None:
            return self.core.backward(output_error)
        return self.activation_prime(self.input) * output_error


# --------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------
def _rows(name: str, data: Any, backend: Backend, dtype: Any) -> Array:
    """``data`` as a 2-D backend array, one sample per row (the original nests each sample)."""
    array = data if backend.is_array(data) else numpy.asarray(data)
    if array.ndim == 0 or array.shape[0] == 0:
        raise InputError(f"{name}: expected at least one sample, got shape {array.shape}")
    return backend.asarray(array.reshape(array.shape[0], -1), dtype=dtype)


class Network:
    """A stack of layers trained sample by sample (or minibatch by minibatch) with SGD.

    Attributes
    ----------
    errors : list of float
        The mean loss of each epoch of the last :meth:`fit`, as the original prints it.
    """

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.loss: Callable[[Any, Any], Any] | None = None
        self.loss_prime: Callable[[Any, Any], Any] | None = None
        self.errors: list[float] = []

    def add(self, layer: Layer) -> None:
        """Append a layer."""
        self.layers.append(layer)

    def use(self, loss: Callable[[Any, Any], Any], loss_prime: Callable[[Any, Any], Any]) -> None:
        """Set the loss function ``loss(y_true, y_pred)`` and its gradient ``loss_prime``."""
        self.loss = loss
        self.loss_prime = loss_prime

    compute_loss = use

    def _dtype(self) -> Any:
        for layer in self.layers:
            if isinstance(layer, FCLayer):
                return layer.dense.dtype
        return numpy.dtype("float64")

    def _forward(self, x: Array) -> Array:
        for layer in self.layers:
            x = layer.forward_propagation(x)
        return x

    def predict(self, input_data: Any) -> list[numpy.ndarray]:
        """The network's output for each sample, as a list of (1, k) host arrays."""
        backend = get_backend()
        x = _rows("input_data", input_data, backend, self._dtype())
        output = backend.to_numpy(self._forward(x))
        return [row.reshape(1, -1) for row in output]

    def fit(
        self,
        x_train: Any,
        y_train: Any,
        epochs: int,
        learning_rate: float,
        batch_size: int | None = None,
        verbose: bool = True,
    ) -> list[float]:
        """Train with SGD, in order, ``batch_size`` samples per step (default 1).

        Prints ``epoch i/N   error=...`` after each epoch, as the original does, unless
        ``verbose`` is false. Returns the per-epoch errors (also kept in ``errors``).
        """
        if self.loss is None or self.loss_prime is None:
            raise InputError("fit: set the loss first with net.use(loss, loss_prime)")
        epochs = check_positive_int("epochs", epochs)
        learning_rate = check_positive_float("learning_rate", learning_rate)
        batch_size = check_positive_int("batch_size", batch_size or 1)
        backend = get_backend()
        x = _rows("x_train", x_train, backend, self._dtype())
        y = _rows("y_train", y_train, backend, self._dtype())
        n = x.shape[0]
        if y.shape[0] != n:
            raise InputError(f"y_train: expected {n} samples like x_train, got {y.shape[0]}")
        fused = getattr(self.loss, "op", None) == getattr(self.loss_prime, "op", "")
        self.errors = []
        for epoch in range(epochs):
            total: Any = 0.0
            for start in range(0, n, batch_size):
                xb, yb = x[start : start + batch_size], y[start : start + batch_size]
                output = self._forward(xb)
                if fused:
                    loss, error = backend.mean_squared_error(output, yb)
                    # mse averages over the batch; the original sums per-sample means.
                    total = total + loss * xb.shape[0]
                else:
                    total = total + self.loss(yb, output) * xb.shape[0]
                    error = self.loss_prime(yb, output)
                for layer in reversed(self.layers):
                    error = layer.backward_propagation(error, learning_rate)
            mean = float(backend.to_float(total) if backend.is_array(total) else total) / n
            if not math.isfinite(mean):
                raise TrainingError(
                    f"the error became {mean} at epoch {epoch + 1}; lower the learning rate"
                )
            self.errors.append(mean)
            if verbose:
                print(f"epoch {epoch + 1}/{epochs}   error={mean:f}")
        return self.errors
