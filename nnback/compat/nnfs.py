"""The *Neural Networks from Scratch* (Kinsley and Kukiela) book's API on nnback.

A program from the book runs with its imports changed: instead of defining the classes
and importing ``nnfs``, write ::

    from nnback.compat import nnfs
    from nnback.compat.nnfs import *   # Layer_Dense, Activation_ReLU, Optimizer_Adam, ...

    nnfs.init()
    X, y = spiral_data(samples=100, classes=2)

and keep the rest: the stateful ``.output`` / ``.dinputs`` / ``.dweights`` / ``.dbiases``
convention, ``forward`` / ``backward`` calls, ``Loss.calculate`` and
``Loss.regularization_loss(layer)``, and the optimizers' ``pre_update_params`` /
``update_params(layer)`` / ``post_update_params`` protocol.

Every class is a thin subclass or wrapper of nnback's own layer, activation, loss or
optimizer, so the arithmetic is the selected backend's (``NNBACK_BACKEND=numba``).
Differences from the book, all deliberate:

* Random numbers (initial weights, dropout masks, the data sets) come from one
  ``numpy.random.Generator`` that :func:`init` seeds, not from NumPy's global state, so
  the numbers differ from the book's while being the same on every backend.
* Like the book, ``Layer_Dense.backward`` adds the L1/L2 penalty gradients to ``dweights``
  and ``dbiases``; the L1 term uses ``sign(w)``, which is 0 (not the book's +1) at
  exactly 0.
* Probabilities are clipped to ``[1e-7, 1 - 1e-7]`` in the cross-entropy gradients too.
* Arrays such as ``.output`` live on the backend: NumPy arrays on ``numpy`` and ``numba``,
  CuPy arrays on a GPU. The data set functions return arrays of the selected backend too,
  so the data move to the device once and the book's lines such as
  ``np.mean(predictions == y)`` compare arrays of one kind (CuPy takes NumPy functions
  on its arrays through ``__array_function__``). Plotting device arrays with matplotlib
  needs them moved to the host first (``cupy.asnumpy``).
"""

from __future__ import annotations

from typing import Any

import numpy

from .. import activations as _act
from .. import losses as _losses
from .. import optimizers as _opt
from ..backends import Backend, get_backend
from ..datasets import toy as _toy
from ..initializers import Gaussian
from ..layers import Dense, Dropout
from . import as_targets, softmax_crossentropy_gradient

__all__ = [
    "Activation_Linear",
    "Activation_ReLU",
    "Activation_Sigmoid",
    "Activation_Softmax",
    "Activation_Softmax_Loss_CategoricalCrossentropy",
    "Layer_Dense",
    "Layer_Dropout",
    "Loss",
    "Loss_BinaryCrossentropy",
    "Loss_CategoricalCrossentropy",
    "Loss_MeanAbsoluteError",
    "Loss_MeanSquaredError",
    "Optimizer_Adagrad",
    "Optimizer_Adam",
    "Optimizer_RMSprop",
    "Optimizer_SGD",
    "init",
    "sine_data",
    "spiral_data",
    "vertical_data",
]

Array = Any

_STATE: dict[str, Any] = {"rng": numpy.random.default_rng(0), "dtype": numpy.dtype("float32")}


def init(seed: int = 0, dtype: str = "float32") -> None:
    """Seed the generator behind weights, dropout masks and data sets (the book's ``nnfs.init``).

    Parameters
    ----------
    seed : int
        Seed of the ``numpy.random.Generator`` used from now on.
    dtype : {"float32", "float64"}
        The dtype of the layers created from now on (the book works in float32).
    """
    _STATE["rng"] = numpy.random.default_rng(seed)
    _STATE["dtype"] = numpy.dtype(dtype)


def _on_backend(X: numpy.ndarray, y: numpy.ndarray) -> tuple[Array, Array]:
    backend = get_backend()
    return backend.asarray(X), backend.asarray(y)


def spiral_data(samples: int, classes: int) -> tuple[Array, Array]:
    """The book's spiral data set; each call draws new noise, as in the book.

    Returns ``X`` (samples * classes, 2) and integer labels ``y``, as arrays of the
    selected backend (NumPy arrays on ``numpy`` and ``numba``).
    """
    return _on_backend(*_toy.spiral_data(samples, classes, seed=_STATE["rng"]))


def vertical_data(samples: int, classes: int) -> tuple[Array, Array]:
    """The book's vertical blobs data set; each call draws new noise."""
    return _on_backend(*_toy.vertical_data(samples, classes, seed=_STATE["rng"]))


def sine_data(samples: int = 1000) -> tuple[Array, Array]:
    """One period of a sine wave, ``X`` (samples, 1) and ``y = sin(2 pi X)``."""
    return _on_backend(*_toy.sine_data(samples))


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------
_SLOT_NAMES = {"momentums": ("velocity", "m"), "cache": ("cache", "v")}


class Layer_Dense(Dense):
    """Dense layer with the book's constructor, ``forward(inputs)`` and ``backward(dvalues)``.

    Weights are ``weight_scale * N(0, 1)`` and biases zero, drawn when the layer is created,
    on the backend selected at that moment. The class attribute ``weight_scale`` is the
    book's 0.01; its chapter 17 listing changes the class to draw with 0.1, which is
    ``Layer_Dense.weight_scale = 0.1`` here. ``backward`` sets ``dweights``/``dbiases`` to the data
    gradient plus the penalty gradients, as in the book; the penalties are therefore not
    added again by the optimizers.
    """

    weight_scale: float = 0.01

    def __init__(
        self,
        n_inputs: int,
        n_neurons: int,
        weight_regularizer_l1: float = 0.0,
        weight_regularizer_l2: float = 0.0,
        bias_regularizer_l1: float = 0.0,
        bias_regularizer_l2: float = 0.0,
    ) -> None:
        super().__init__(
            n_inputs,
            n_neurons,
            weight_initializer=Gaussian(self.weight_scale),
            weight_regularizer_l1=weight_regularizer_l1,
            weight_regularizer_l2=weight_regularizer_l2,
            bias_regularizer_l1=bias_regularizer_l1,
            bias_regularizer_l2=bias_regularizer_l2,
        )
        self.build(get_backend(), _STATE["dtype"], _STATE["rng"])

    def forward(self, inputs: Array, training: bool = False) -> Array:
        """``output = inputs @ weights + biases`` (a fresh array each call)."""
        inputs = self.backend.asarray(inputs, dtype=self.dtype)  # type: ignore[union-attr]
        return super().forward(inputs, training=False)

    def backward(self, dvalues: Array, need_dinputs: bool = True, overwrite: bool = False) -> Array:
        """Gradients of the loss including the L1/L2 penalties; sets ``dinputs``."""
        backend: Backend = self.backend  # type: ignore[assignment]
        dvalues = backend.asarray(dvalues, dtype=self.dtype)
        super().backward(dvalues, need_dinputs=need_dinputs)
        grads = []
        for _, value, grad, l1, l2 in super().parameters():
            # Returns grad itself when both factors are 0.
            grads.append(backend.regularization_gradient(value, grad, l1, l2))
        self.dweights, self.dbiases = grads
        return self.dinputs

    def parameters(self) -> list[tuple[str, Array, Array | None, float, float]]:
        """Parameters with zero penalty factors: ``backward`` already added the penalties."""
        return [(name, value, grad, 0.0, 0.0) for name, value, grad, _, _ in super().parameters()]

    def regularization_loss(self) -> Array | None:
        """The layer's L1/L2 penalty (0-d backend array), from its own factors."""
        backend = self.backend
        total = None
        for _, value, _, l1, l2 in super().parameters():
            if l1 > 0 or l2 > 0:
                term = backend.regularization_loss(value, l1, l2)  # type: ignore[union-attr]
                total = term if total is None else total + term
        return total

    def get_parameters(self) -> tuple[Array, Array]:
        """``(weights, biases)``, as in the book's later chapters."""
        return self.weights, self.biases

    def set_parameters(self, weights: Array, biases: Array) -> None:
        """Replace the weights and biases (host or backend arrays of the same shapes)."""
        backend: Backend = self.backend  # type: ignore[assignment]
        self.weights = backend.copy(backend.asarray(weights, dtype=self.dtype))
        self.biases = backend.copy(backend.asarray(biases, dtype=self.dtype))

    def _slot(self, parameter: str, kind: str) -> Array:
        state = self.optimizer_state.get(parameter, {})
        for slot in _SLOT_NAMES[kind]:
            if slot in state:
                return state[slot]
        raise AttributeError(f"{parameter} has no {kind} (no optimizer step has kept one)")

    # The book's optimizers keep their state as attributes of the layer.
    weight_momentums = property(lambda self: self._slot("weights", "momentums"))
    weight_cache = property(lambda self: self._slot("weights", "cache"))
    bias_momentums = property(lambda self: self._slot("biases", "momentums"))
    bias_cache = property(lambda self: self._slot("biases", "cache"))


class Layer_Dropout:
    """Dropout with the book's ``rate`` (the share of units dropped; ``self.rate`` keeps).

    ``forward(inputs, training=True)`` drops units as the book's chapter 15 does; pass
    ``training=False`` to pass values through.
    """

    def __init__(self, rate: float) -> None:
        self._layer = Dropout(rate)
        self._layer.build(get_backend(), _STATE["dtype"], _STATE["rng"])
        self.rate = 1 - rate

    def forward(self, inputs: Array, training: bool = True) -> Array:
        backend = self._layer.backend
        self.inputs = backend.asarray(inputs)  # type: ignore[union-attr]
        self.output = self._layer.forward(self.inputs, training=training)
        return self.output

    def backward(self, dvalues: Array) -> Array:
        self.dinputs = self._layer.backward(dvalues)
        return self.dinputs


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------
class _BookActivation(_act.Activation):
    """Moves host inputs to the backend, then runs nnback's activation layer."""

    def forward(self, inputs: Array, training: bool = False) -> Array:
        return super().forward(self._backend().asarray(inputs), training)

    def backward(self, dvalues: Array, need_dinputs: bool = True, overwrite: bool = False) -> Array:
        return super().backward(self._backend().asarray(dvalues), need_dinputs, overwrite)

    def predictions(self, outputs: Array) -> Array:
        return outputs


class Activation_ReLU(_BookActivation, _act.ReLU):
    """``max(0, x)``."""


class Activation_Linear(_BookActivation, _act.Linear):
    """The identity, for regression outputs."""


class Activation_Sigmoid(_BookActivation, _act.Sigmoid):
    """``1 / (1 + exp(-x))``; ``predictions`` thresholds at 0.5."""

    def predictions(self, outputs: Array) -> Array:
        return (outputs > 0.5) * 1


class Activation_Softmax(_BookActivation, _act.Softmax):
    """Row-wise softmax; ``predictions`` is the argmax of each row."""

    def predictions(self, outputs: Array) -> Array:
        return self._backend().argmax(outputs, axis=1)


# --------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------
class Loss:
    """Base of the book's losses: ``calculate``, ``backward`` and ``regularization_loss``.

    ``core`` is the nnback loss whose backend op computes the value and the gradient.
    """

    core: _losses.Loss = _losses.Loss()

    def _backend(self) -> Backend:
        return get_backend()

    def _targets(self, backend: Backend, y: Array, like: Array) -> Array:
        return as_targets(
            backend, numpy.asarray(y) if isinstance(y, list) else y, like, self.core.categorical
        )

    def calculate(self, output: Array, y: Array, *, include_regularization: bool = False) -> Any:
        """The mean data loss as a float (and the regularization loss, if asked)."""
        backend = self._backend()
        output = backend.asarray(output)
        loss, _ = self.core.compute(backend, output, self._targets(backend, y, output), False)
        data_loss = backend.to_float(loss)
        self.accumulated_sum = getattr(self, "accumulated_sum", 0.0) + data_loss * len(output)
        self.accumulated_count = getattr(self, "accumulated_count", 0) + len(output)
        if not include_regularization:
            return data_loss
        return data_loss, self.regularization_loss()

    def calculate_accumulated(self, *, include_regularization: bool = False) -> Any:
        """The mean loss over every batch since :meth:`new_pass` (the book's chapter 18)."""
        data_loss = self.accumulated_sum / self.accumulated_count
        if not include_regularization:
            return data_loss
        return data_loss, self.regularization_loss()

    def new_pass(self) -> None:
        self.accumulated_sum = 0.0
        self.accumulated_count = 0

    def remember_trainable_layers(self, trainable_layers: list[Any]) -> None:
        self.trainable_layers = trainable_layers

    def regularization_loss(self, layer: Any = None) -> float:
        """The L1/L2 penalty of ``layer`` (or of the remembered trainable layers) as a float."""
        layers = [layer] if layer is not None else getattr(self, "trainable_layers", [])
        total = 0.0
        for item in layers:
            term = item.regularization_loss()
            if term is not None:
                total += item.backend.to_float(term)
        return total

    def backward(self, dvalues: Array, y_true: Array) -> Array:
        """Sets ``dinputs``, the gradient of the mean loss with respect to ``dvalues``."""
        backend = self._backend()
        dvalues = backend.asarray(dvalues)
        y = self._targets(backend, y_true, dvalues)
        _, self.dinputs = self.core.compute(backend, dvalues, y, True)
        return self.dinputs


class Loss_CategoricalCrossentropy(Loss):
    """Cross-entropy of probabilities against class indices or one-hot rows."""

    core = _losses.CategoricalCrossentropy()


class Loss_BinaryCrossentropy(Loss):
    """Binary cross-entropy of sigmoid outputs against 0/1 targets of the same shape."""

    core = _losses.BinaryCrossentropy()


class Loss_MeanSquaredError(Loss):
    """Mean squared error (L2 loss)."""

    core = _losses.MeanSquaredError()


class Loss_MeanAbsoluteError(Loss):
    """Mean absolute error (L1 loss)."""

    core = _losses.MeanAbsoluteError()


class Activation_Softmax_Loss_CategoricalCrossentropy:
    """Softmax and cross-entropy together, with the fused, stable backend op.

    ``forward(inputs, y_true)`` sets ``output`` (the probabilities) and returns the mean
    loss; ``backward(dvalues, y_true)`` sets ``dinputs = (dvalues - one_hot) / n``.
    """

    def __init__(self) -> None:
        self.activation = Activation_Softmax()
        self.loss = Loss_CategoricalCrossentropy()
        self._grad: Array = None
        self._y_true: Array = None

    def forward(self, inputs: Array, y_true: Array | None = None) -> Any:
        backend = get_backend()
        self.inputs = backend.asarray(inputs)
        self.output = self.activation.forward(self.inputs)
        self._grad = self._y_true = None
        if y_true is None:
            return None
        y = self.loss._targets(backend, y_true, self.inputs)
        # One fused call gives the loss and the gradient that backward() will hand out.
        loss, self._grad = backend.softmax_crossentropy(self.inputs, y, with_grad=True)
        self._y_true = y_true
        return backend.to_float(loss)

    def backward(self, dvalues: Array, y_true: Array) -> Array:
        if self._grad is not None and dvalues is self.output and y_true is self._y_true:
            self.dinputs = self._grad
            return self.dinputs
        backend = get_backend()
        y = self.loss._targets(backend, y_true, dvalues)
        self.dinputs = softmax_crossentropy_gradient(
            backend, getattr(self, "inputs", None), getattr(self, "output", None), dvalues, y
        )
        return self.dinputs


# --------------------------------------------------------------------------------------
# Optimizers: nnback's own, under the book's names (same arguments and defaults)
# --------------------------------------------------------------------------------------
class Optimizer_SGD(_opt.SGD):
    """``Optimizer_SGD(learning_rate=1.0, decay=0.0, momentum=0.0)``."""


class Optimizer_Adagrad(_opt.AdaGrad):
    """``Optimizer_Adagrad(learning_rate=1.0, decay=0.0, epsilon=1e-7)``."""


class Optimizer_RMSprop(_opt.RMSprop):
    """``Optimizer_RMSprop(learning_rate=0.001, decay=0.0, epsilon=1e-7, rho=0.9)``."""


class Optimizer_Adam(_opt.Adam):
    """``Optimizer_Adam(learning_rate=0.001, decay=0.0, epsilon=1e-7, beta_1=0.9,
    beta_2=0.999)``."""
