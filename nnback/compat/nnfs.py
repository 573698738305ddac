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

**Book mode** (the default; ``init(book=False)`` leaves it) reproduces the book's numbers.
:func:`init` seeds NumPy's global legacy ``RandomState`` as the ``nnfs`` package's
``init()`` does, and every random number comes from it in the book's order: the data sets
(equal to the ``nnfs`` package's, dtypes included), the initial weights (``0.01 * randn``
with both factors in float32) and the dropout masks (``binomial(1, keep, shape) / keep``,
drawn at every training call). On the numpy backend the classes also compute with the
book's own expressions (:mod:`nnback.compat.nnfs_book`: every matrix product in float64
rounded to float32, as the ``nnfs`` package's ``np.dot`` does; the book's optimizer
formulas, with their state on the layer), so the chapter 16 and 17 programs print the
lines the book's code prints on the same machine (chapter 17: the lines the book
prints). The optimizers decay the learning rate with the book's formula, a Python float
(``lr: 0.00045458678061641964``).

NumPy itself is left alone: ``init`` does not replace ``np.dot`` and friends, since that
would change every other NumPy user in the process (nnback's own ``Sequential``
included). A program that computes with ``np.dot`` itself next to the compat classes
passes ``init(patch_numpy=True)`` (or calls the real ``nnfs.init()``) to get the book's
float32 ``np.dot``, ``np.zeros``, ``np.eye`` and ``np.random.randn``.

On the numba and cupy backends book mode keeps the same random draws, data and learning
rates but computes with nnback's fused float32 ops, so the printed figures drift from the
book's over thousands of epochs (see the README for how many lines still match).

**Generator mode** (``init(seed, book=False)``): random numbers come from one
``numpy.random.Generator`` that :func:`init` seeds (NumPy's global state is untouched),
and every backend, numpy included, runs nnback's own ops, so the numbers are the same on
every backend but not the book's.

Every class is a thin subclass or wrapper of nnback's own layer, activation, loss or
optimizer. Outside book mode's numpy arithmetic, differences from the book, all
deliberate:

* The L1 term of ``Layer_Dense.backward`` uses ``sign(w)``, which is 0 (not the book's
  +1) at exactly 0; probabilities are clipped to ``[1e-7, 1 - 1e-7]`` in the
  cross-entropy gradients too.
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
from .. import optimizers as _opt
from ..backends import Backend, get_backend
from ..initializers import Gaussian
from ..layers import Dense, Dropout
from . import nnfs_book as _book
from . import nnfs_data as _data
from . import softmax_crossentropy_gradient
from .nnfs_data import init, sine_data, spiral_data, vertical_data
from .nnfs_losses import (
    Loss,
    Loss_BinaryCrossentropy,
    Loss_CategoricalCrossentropy,
    Loss_MeanAbsoluteError,
    Loss_MeanSquaredError,
)

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

_STATE = _data.STATE
_book_numpy = _data.book_numpy


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------
_SLOT_NAMES = {"momentums": ("velocity", "m"), "cache": ("cache", "v")}


class _BookGaussian(Gaussian):
    """Book mode's weights: ``sigma * randn`` from the global state, both in the layer
    dtype (the book multiplies its float32 ``randn`` by 0.01 in float32)."""

    def __call__(self, shape: tuple[int, int], rng: Any, dtype: Any = numpy.float32) -> Any:
        draw = _data.randn(*shape).astype(dtype)
        return draw.dtype.type(self.sigma) * draw


def _layer_state(name: str, parameter: str, kind: str) -> property:
    """An optimizer state array as an attribute of the layer, as the book keeps it."""

    def get(self: Layer_Dense) -> Array:
        book = self.__dict__.get("_book_state", {})
        return book[name] if name in book else self._slot(parameter, kind)

    def put(self: Layer_Dense, value: Array) -> None:
        self.__dict__.setdefault("_book_state", {})[name] = value

    return property(get, put)


class Layer_Dense(Dense):
    """Dense layer with the book's constructor, ``forward(inputs)`` and ``backward(dvalues)``.

    Weights are ``weight_scale * N(0, 1)`` and biases zero, drawn when the layer is created,
    on the backend selected at that moment (book mode: from NumPy's global state, as the
    book draws them). The class attribute ``weight_scale`` is the book's 0.01; its chapter
    17 listing changes the class to draw with 0.1, which is ``Layer_Dense.weight_scale =
    0.1`` here. ``backward`` sets ``dweights``/``dbiases`` to the data gradient plus the
    penalty gradients, as in the book; the penalties are therefore not added again by the
    optimizers.
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
        book = _data.book_mode()
        super().__init__(
            n_inputs,
            n_neurons,
            weight_initializer=(_BookGaussian if book else Gaussian)(self.weight_scale),
            weight_regularizer_l1=weight_regularizer_l1,
            weight_regularizer_l2=weight_regularizer_l2,
            bias_regularizer_l1=bias_regularizer_l1,
            bias_regularizer_l2=bias_regularizer_l2,
        )
        self.build(get_backend(), _STATE["dtype"], _STATE["rng"])
        self._book = _book_numpy(self.backend)

    def forward(self, inputs: Array, training: bool = False) -> Array:
        """``output = inputs @ weights + biases`` (a fresh array each call)."""
        if self._book:
            return _book.dense_forward(self, numpy.asarray(inputs))
        inputs = self.backend.asarray(inputs, dtype=self.dtype)  # type: ignore[union-attr]
        return super().forward(inputs, training=False)

    def backward(self, dvalues: Array, need_dinputs: bool = True, overwrite: bool = False) -> Array:
        """Gradients of the loss including the L1/L2 penalties; sets ``dinputs``."""
        if self._book:
            return _book.dense_backward(self, numpy.asarray(dvalues))
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
    weight_momentums = _layer_state("weight_momentums", "weights", "momentums")
    weight_cache = _layer_state("weight_cache", "weights", "cache")
    bias_momentums = _layer_state("bias_momentums", "biases", "momentums")
    bias_cache = _layer_state("bias_cache", "biases", "cache")


class Layer_Dropout:
    """Dropout with the book's ``rate`` (the share of units dropped; ``self.rate`` keeps).

    ``forward(inputs, training=True)`` drops units as the book's chapter 15 does; pass
    ``training=False`` to pass values through. In book mode the mask is the book's
    ``numpy.random.binomial(1, keep, shape) / keep`` from the global state, drawn at every
    training call (even at rate 0), on every backend; on numpy it also multiplies as the
    book does (the float64 mask makes the output float64).
    """

    def __init__(self, rate: float) -> None:
        self._layer = Dropout(rate)
        self._layer.build(get_backend(), _STATE["dtype"], _STATE["rng"])
        self.rate = 1 - rate

    def forward(self, inputs: Array, training: bool = True) -> Array:
        backend = self._layer.backend
        if not _data.book_mode():
            self.inputs = backend.asarray(inputs)  # type: ignore[union-attr]
            self.output = self._layer.forward(self.inputs, training=training)
            return self.output
        self.inputs = inputs
        self.binary_mask = None
        if not training:
            self.output = inputs.copy()
            return self.output
        # The book's draw, from the global legacy state on purpose.
        mask = numpy.random.binomial(1, self.rate, size=inputs.shape)  # noqa: NPY002
        self.binary_mask = mask / self.rate
        if _book_numpy(backend):
            self.output = inputs * self.binary_mask
        else:
            self._keep = backend.asarray(self.binary_mask != 0)  # type: ignore[union-attr]
            self.output = backend.dropout_forward(inputs, self._keep, 1 / self.rate)  # type: ignore[union-attr]
        return self.output

    def backward(self, dvalues: Array) -> Array:
        backend = self._layer.backend
        if not _data.book_mode():
            self.dinputs = self._layer.backward(dvalues)
        elif self.binary_mask is None:
            self.dinputs = dvalues
        elif _book_numpy(backend):
            self.dinputs = dvalues * self.binary_mask
        else:
            self.dinputs = backend.dropout_backward(dvalues, self._keep, 1 / self.rate)  # type: ignore[union-attr]
        return self.dinputs


# --------------------------------------------------------------------------------------
# Activations (the losses are in nnfs_losses)
# --------------------------------------------------------------------------------------
class _BookActivation(_act.Activation):
    """Moves host inputs to the backend, then runs nnback's activation layer (book mode on
    numpy: the book's expressions, ``_book_pair``)."""

    _book_pair: tuple[Any, Any]

    def forward(self, inputs: Array, training: bool = False) -> Array:
        if _book_numpy():
            self.inputs = inputs
            self.output = self._book_pair[0](self, inputs)
            return self.output
        return super().forward(self._backend().asarray(inputs), training)

    def backward(self, dvalues: Array, need_dinputs: bool = True, overwrite: bool = False) -> Array:
        if _book_numpy():
            self.dinputs = self._book_pair[1](self, dvalues)
            return self.dinputs
        return super().backward(self._backend().asarray(dvalues), need_dinputs, overwrite)

    def predictions(self, outputs: Array) -> Array:
        return outputs


class Activation_ReLU(_BookActivation, _act.ReLU):
    """``max(0, x)``."""

    _book_pair = (_book.relu_forward, _book.relu_backward)


class Activation_Linear(_BookActivation, _act.Linear):
    """The identity, for regression outputs."""

    _book_pair = (_book.linear_forward, _book.linear_backward)


class Activation_Sigmoid(_BookActivation, _act.Sigmoid):
    """``1 / (1 + exp(-x))``; ``predictions`` thresholds at 0.5."""

    _book_pair = (_book.sigmoid_forward, _book.sigmoid_backward)

    def predictions(self, outputs: Array) -> Array:
        return (outputs > 0.5) * 1


class Activation_Softmax(_BookActivation, _act.Softmax):
    """Row-wise softmax; ``predictions`` is the argmax of each row."""

    _book_pair = (_book.softmax_forward, _book.softmax_backward)

    def predictions(self, outputs: Array) -> Array:
        return self._backend().argmax(outputs, axis=1)


class Activation_Softmax_Loss_CategoricalCrossentropy:
    """Softmax and cross-entropy together, with the fused, stable backend op.

    ``forward(inputs, y_true)`` sets ``output`` (the probabilities) and returns the mean
    loss; ``backward(dvalues, y_true)`` sets ``dinputs = (dvalues - one_hot) / n``.
    Book mode on numpy: the book's separate softmax, loss and gradient expressions.
    """

    def __init__(self) -> None:
        self.activation = Activation_Softmax()
        self.loss = Loss_CategoricalCrossentropy()
        self._grad: Array = None
        self._y_true: Array = None

    def forward(self, inputs: Array, y_true: Array | None = None) -> Any:
        backend = get_backend()
        if _book_numpy(backend):
            self.inputs = inputs
            self.output = self.activation.forward(inputs)
            return None if y_true is None else self.loss.calculate(self.output, y_true)
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
        backend = get_backend()
        if _book_numpy(backend):
            self.dinputs = _book.softmax_crossentropy_gradient(dvalues, numpy.asarray(y_true))
            return self.dinputs
        if self._grad is not None and dvalues is self.output and y_true is self._y_true:
            self.dinputs = self._grad
            return self.dinputs
        y = self.loss._targets(backend, y_true, dvalues)
        self.dinputs = softmax_crossentropy_gradient(
            backend, getattr(self, "inputs", None), getattr(self, "output", None), dvalues, y
        )
        return self.dinputs


# --------------------------------------------------------------------------------------
# Optimizers: nnback's own under the book's names (same arguments and defaults); book
# mode decays the rate with the book's formula, and on numpy updates with the book's.
# --------------------------------------------------------------------------------------
class _BookOptimizer:
    _book_update: Any

    def pre_update_params(self) -> None:
        """Set ``current_learning_rate`` (a Python float) for this iteration."""
        if not _data.book_mode():
            super().pre_update_params()  # type: ignore[misc]
        elif self.decay:  # type: ignore[attr-defined]
            self.current_learning_rate = _book.decayed_rate(self)

    def update_params(self, layer: Any) -> None:
        """Update ``layer``'s weights and biases from its ``dweights`` and ``dbiases``."""
        if getattr(layer, "_book", False):
            type(self)._book_update(self, layer)
        else:
            super().update_params(layer)  # type: ignore[misc]


class Optimizer_SGD(_BookOptimizer, _opt.SGD):
    """``Optimizer_SGD(learning_rate=1.0, decay=0.0, momentum=0.0)``."""

    _book_update = _book.sgd_update


class Optimizer_Adagrad(_BookOptimizer, _opt.AdaGrad):
    """``Optimizer_Adagrad(learning_rate=1.0, decay=0.0, epsilon=1e-7)``."""

    _book_update = _book.adagrad_update


class Optimizer_RMSprop(_BookOptimizer, _opt.RMSprop):
    """``Optimizer_RMSprop(learning_rate=0.001, decay=0.0, epsilon=1e-7, rho=0.9)``."""

    _book_update = _book.rmsprop_update


class Optimizer_Adam(_BookOptimizer, _opt.Adam):
    """``Optimizer_Adam(learning_rate=0.001, decay=0.0, epsilon=1e-7, beta_1=0.9,
    beta_2=0.999)``."""

    _book_update = _book.adam_update
