"""The "scratch deep neural network classifier" exercise's API on nnback.

The exercise builds a classifier from small classes: a fully connected layer
``FC(n_nodes1, n_nodes2, initializer, optimizer)`` whose ``backward`` updates itself through
``optimizer.update(layer)``; initializers with ``W(n_nodes1, n_nodes2)`` and ``B(n_nodes2)``;
optimizers with ``update(layer)``; activations with ``forward`` and ``backward`` (the
softmax's backward takes the output and the one-hot targets); and
:class:`ScratchDeepNeuralNetworkClassifier`, which trains any stack of them::

    clf = ScratchDeepNeuralNetworkClassifier(
        n_nodes=(400, 200), activation=Tanh, initializer=XavierInitializer,
        optimizer=AdaGrad, lr=0.01, sigma=0.01, epochs=10, batch_size=20)
    clf.fit(X_train, y_train, X_val, y_val)
    clf.loss, clf.val_loss          # per epoch
    clf.predict(X_test)

``FC`` is nnback's :class:`~nnback.Dense` layer and the activations are nnback's, so the
classifier trains as an nnback :class:`~nnback.Sequential` model (each dense layer fused
with its activation, softmax fused with the cross-entropy) on the selected backend.

Reproducibility: the exercise draws its weights from NumPy's global state
(``sigma * np.random.randn``) and sets no seed, so its printed figures come from draws
nobody can repeat, and its training arithmetic is nnback's fused ops rather than the
exercise's line by line. What is reproducible here: ``random_state`` (or an initializer's
``rng``) fixes the initial weights and the minibatch order, and the same seed trains the
same model on every backend, to the tolerance table's rules.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy

from .. import activations as _act
from ..backends import Backend, get_backend
from ..errors import InputError
from ..initializers import Gaussian, He, Xavier, Zeros
from ..layer_base import Layer
from ..layers import Dense
from ..losses import CategoricalCrossentropy
from ..model import Sequential
from ..optimizers import Optimizer
from . import as_targets, softmax_crossentropy_gradient

__all__ = [
    "FC",
    "SGD",
    "AdaGrad",
    "HeInitializer",
    "ReLU",
    "ScratchDeepNeuralNetworkClassifier",
    "Sigmoid",
    "SimpleInitializer",
    "Softmax",
    "Tanh",
    "XavierInitializer",
]

Array = Any

_RNG: dict[str, numpy.random.Generator] = {"rng": numpy.random.default_rng(0)}


# --------------------------------------------------------------------------------------
# Initializers: W(n_nodes1, n_nodes2) and B(n_nodes2), host arrays from nnback's initializers
# --------------------------------------------------------------------------------------
class _Initializer:
    """Base: ``rng`` is the generator drawn from (the module's shared one when None)."""

    weights = Gaussian(0.01)
    biases: Any = Zeros()

    def __init__(self, rng: numpy.random.Generator | None = None) -> None:
        self.rng = rng

    def _rng(self) -> numpy.random.Generator:
        return self.rng if self.rng is not None else _RNG["rng"]

    def W(self, n_nodes1: int, n_nodes2: int) -> numpy.ndarray:
        """Initial weights, shape (n_nodes1, n_nodes2)."""
        return self.weights((n_nodes1, n_nodes2), self._rng(), numpy.float64)

    def B(self, n_nodes2: int) -> numpy.ndarray:
        """Initial biases, shape (n_nodes2,)."""
        return self.biases((1, n_nodes2), self._rng(), numpy.float64).reshape(n_nodes2)


class SimpleInitializer(_Initializer):
    """Weights and biases drawn from ``N(0, sigma**2)``."""

    def __init__(self, sigma: float = 0.01, rng: numpy.random.Generator | None = None) -> None:
        super().__init__(rng)
        self.sigma = sigma
        self.weights = self.biases = Gaussian(sigma)


class XavierInitializer(_Initializer):
    """Weights from ``N(0, 1 / n_nodes1)`` (suits sigmoid and tanh), zero biases."""

    weights = Xavier()


class HeInitializer(_Initializer):
    """Weights from ``N(0, 2 / n_nodes1)`` (suits ReLU), zero biases."""

    weights = He()


# --------------------------------------------------------------------------------------
# Optimizers: update(layer) takes one in-place backend step per parameter
# --------------------------------------------------------------------------------------
class SGD:
    """Plain gradient descent: ``W -= lr * dW``, ``B -= lr * dB``."""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr

    def update(self, layer: Any) -> Any:
        backend: Backend = layer.backend
        for _, value, grad, l1, l2 in layer.parameters():
            backend.sgd_update_inplace(value, grad, None, self.lr, l1=l1, l2=l2)
        return layer


class AdaGrad(SGD):
    """AdaGrad: ``H += dW**2``, ``W -= lr * dW / (sqrt(H) + 1e-7)``; ``H`` lives on the layer."""

    epsilon = 1e-7

    def update(self, layer: Any) -> Any:
        backend: Backend = layer.backend
        for name, value, grad, l1, l2 in layer.parameters():
            state = layer.optimizer_state.setdefault(name, {})
            if "cache" not in state:
                state["cache"] = backend.zeros_like(value)
            backend.adagrad_update_inplace(
                value, grad, state["cache"], self.lr, self.epsilon, l1=l1, l2=l2
            )
        return layer


class _EachLayersOwn(Optimizer):
    """Lets a :class:`~nnback.Sequential` model step every FC layer with its own optimizer."""

    def update_params(self, layer: Any) -> None:
        layer.optimizer.update(layer)


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------
def _view_setter(attribute: str, shape_of: str) -> Any:
    def setter(self: FC, value: Array) -> None:
        target = getattr(self, attribute)
        if value is not target:
            source = self.backend.asarray(value, dtype=self.dtype)  # type: ignore[union-attr]
            self.backend.copy_into_inplace(target, source.reshape(getattr(self, shape_of)))  # type: ignore[union-attr]

    return setter


class FC(Dense):
    """Fully connected layer from ``n_nodes1`` to ``n_nodes2`` units.

    ``W`` (n_nodes1, n_nodes2) and ``B`` (n_nodes2,) come from ``initializer.W`` and
    ``initializer.B``. ``forward(X)`` returns ``X @ W + B``; ``backward(dA)`` sets ``dW`` and
    ``dB``, returns the input gradient ``dA @ W.T`` (with ``W`` before the step) and then
    calls ``optimizer.update(self)``.
    """

    def __init__(
        self,
        n_nodes1: int,
        n_nodes2: int,
        initializer: Any,
        optimizer: Any,
        dtype: str = "float32",
    ) -> None:
        super().__init__(n_nodes1, n_nodes2)
        self.optimizer = optimizer
        #: False inside the classifier's model, which steps every layer after backward.
        self.update_in_backward = True
        backend = get_backend()
        Layer.build(self, backend, dtype, _RNG["rng"])
        self.weights = backend.asarray(initializer.W(n_nodes1, n_nodes2), dtype=self.dtype)
        self.biases = backend.asarray(
            numpy.reshape(initializer.B(n_nodes2), (1, n_nodes2)), dtype=self.dtype
        )

    def build(self, backend: Backend, dtype: Any, rng: numpy.random.Generator) -> None:
        """Keep the initial values (moved to ``backend`` and ``dtype`` if they differ)."""
        if backend is self.backend and numpy.dtype(dtype) == self.dtype:
            return
        weights = self.backend.to_numpy(self.weights)  # type: ignore[union-attr]
        biases = self.backend.to_numpy(self.biases)  # type: ignore[union-attr]
        Layer.build(self, backend, dtype, rng)
        self.weights = backend.asarray(weights, dtype=self.dtype)
        self.biases = backend.asarray(biases, dtype=self.dtype)
        self.dweights = self.dbiases = None
        self.optimizer_state = {}
        self._workspaces = {}

    W = property(lambda self: self.weights, _view_setter("weights", "_w_shape"))
    B = property(lambda self: self.biases.reshape(-1), _view_setter("biases", "_b_shape"))
    dW = property(lambda self: self.dweights)
    dB = property(lambda self: None if self.dbiases is None else self.dbiases.reshape(-1))
    _w_shape = property(lambda self: tuple(self.weights.shape))
    _b_shape = property(lambda self: tuple(self.biases.shape))

    def forward(self, X: Array, training: bool = False) -> Array:
        inputs = self.backend.asarray(X, dtype=self.dtype)  # type: ignore[union-attr]
        return super().forward(inputs, training=training)

    def backward(self, dA: Array, need_dinputs: bool = True, overwrite: bool = False) -> Array:
        dZ = super().backward(dA, need_dinputs=need_dinputs, overwrite=overwrite)
        if self.update_in_backward:
            self.optimizer.update(self)
        return dZ


class _ScratchActivation(_act.Activation):
    """``forward(A)`` returns ``Z``; ``backward(dZ)`` returns ``dA``, on the backend."""

    def forward(self, A: Array, training: bool = False) -> Array:
        return super().forward(self._backend().asarray(A), training)


class Tanh(_ScratchActivation, _act.Tanh):
    """Hyperbolic tangent."""


class Sigmoid(_ScratchActivation, _act.Sigmoid):
    """Logistic sigmoid."""


class ReLU(_ScratchActivation, _act.ReLU):
    """``max(0, A)``."""


class Softmax(_ScratchActivation, _act.Softmax):
    """Softmax output; ``backward(Z, Y)`` is softmax with cross-entropy together.

    ``backward(Z, Y)`` returns ``(Z - Y) / n``, the gradient of the mean cross-entropy
    :meth:`loss` with respect to the softmax input, for one-hot ``Y`` (n, k).
    """

    def backward(self, Z: Array, Y: Array, overwrite: bool = False) -> Array:
        backend = self._backend()
        Z = backend.asarray(Z)
        targets = as_targets(backend, Y, Z, categorical=True)
        self.dinputs = softmax_crossentropy_gradient(
            backend, getattr(self, "inputs", None), getattr(self, "output", None), Z, targets
        )
        return self.dinputs

    def loss(self, Z: Array, Y: Array) -> float:
        """Mean cross-entropy of the probabilities ``Z`` against one-hot ``Y``, as a float."""
        backend = self._backend()
        Z = backend.asarray(Z)
        value, _ = backend.categorical_crossentropy(Z, as_targets(backend, Y, Z, True), False)
        return backend.to_float(value)


# --------------------------------------------------------------------------------------
# The classifier
# --------------------------------------------------------------------------------------
def _instance(spec: Any, *args: Any) -> Any:
    """A fresh object from a class (called with ``args``) or a copy of an instance."""
    return spec(*args) if isinstance(spec, type) else copy.deepcopy(spec)


class ScratchDeepNeuralNetworkClassifier:
    """A deep fully connected classifier built from this module's parts.

    Parameters
    ----------
    n_nodes : tuple of int
        Hidden layer sizes; the input and output sizes come from the data.
    activation : class or instance
        Hidden activation (``Tanh``, ``Sigmoid``, ``ReLU``).
    initializer : class or instance
        ``SimpleInitializer`` (made with ``sigma``), ``XavierInitializer`` or
        ``HeInitializer``.
    optimizer : class or instance
        ``SGD`` or ``AdaGrad`` (made with ``lr``); each layer gets its own copy.
    lr, sigma : float
        Learning rate and the simple initializer's standard deviation.
    epochs, batch_size : int
        Passes over the data and minibatch size (minibatches are shuffled every epoch).
    layers : list, optional
        An explicit stack (``[FC(...), Tanh(), ..., FC(...), Softmax()]``) used instead of
        ``n_nodes``/``activation``/``initializer``/``optimizer``; it must end in ``Softmax``.
    verbose : bool
        Print one line per epoch.
    random_state : int or None
        Seeds initial weights and shuffling: the same seed trains the same model on every
        backend.
    dtype : {"float32", "float64"}

    Attributes
    ----------
    loss, val_loss : list of float
        Training loss (the mean over the epoch's minibatches) and validation loss (after
        the epoch, when validation data were given) of each epoch.
    train_accuracy, val_accuracy : list of float
    classes_ : numpy.ndarray
        The class labels, in the order of the output units.
    model : nnback.Sequential
        The trained network.
    """

    def __init__(
        self,
        n_nodes: tuple[int, ...] = (400, 200),
        activation: Any = Tanh,
        initializer: Any = XavierInitializer,
        optimizer: Any = AdaGrad,
        lr: float = 0.01,
        sigma: float = 0.01,
        epochs: int = 10,
        batch_size: int = 20,
        layers: list[Any] | None = None,
        verbose: bool = False,
        random_state: int | None = 0,
        dtype: str = "float32",
    ) -> None:
        self.n_nodes = n_nodes
        self.activation = activation
        self.initializer = initializer
        self.optimizer = optimizer
        self.lr = lr
        self.sigma = sigma
        self.epochs = epochs
        self.batch_size = batch_size
        self.layers = layers
        self.verbose = verbose
        self.random_state = random_state
        self.dtype = dtype

    def _make_layers(self, n_features: int, n_classes: int) -> list[Any]:
        rng = numpy.random.default_rng(self.random_state)
        sizes = [n_features, *self.n_nodes, n_classes]
        stack: list[Any] = []
        for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            is_simple = self.initializer is SimpleInitializer or isinstance(
                self.initializer, SimpleInitializer
            )
            args = (self.sigma,) if is_simple and isinstance(self.initializer, type) else ()
            initializer = _instance(self.initializer, *args)
            initializer.rng = rng
            optimizer = _instance(self.optimizer, self.lr)
            stack.append(FC(n_in, n_out, initializer, optimizer, dtype=self.dtype))
            last = index == len(sizes) - 2
            stack.append(Softmax() if last else _instance(self.activation))
        return stack

    def _labels(self, y: Any) -> numpy.ndarray:
        y = numpy.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:  # one-hot rows
            return self.classes_[numpy.argmax(y, axis=1)]
        return y.reshape(-1)

    def _encode(self, y: Any) -> numpy.ndarray:
        labels = self._labels(y)
        index = numpy.searchsorted(self.classes_, labels)
        index = numpy.clip(index, 0, len(self.classes_) - 1)
        if not numpy.array_equal(self.classes_[index], labels):
            raise InputError("y: contains labels that were not in the training targets")
        return index

    def fit(
        self, X: Any, y: Any, X_val: Any = None, y_val: Any = None
    ) -> ScratchDeepNeuralNetworkClassifier:
        """Train on ``X`` (n, n_features) and labels ``y`` (n,) or one-hot rows (n, k)."""
        X = numpy.asarray(X)
        y_array = numpy.asarray(y)
        if y_array.ndim == 2 and y_array.shape[1] > 1:
            self.classes_ = numpy.arange(y_array.shape[1])
        else:
            self.classes_ = numpy.unique(y_array.reshape(-1))
        stack = (
            self.layers
            if self.layers is not None
            else self._make_layers(X.shape[1], len(self.classes_))
        )
        if not stack or not isinstance(stack[-1], Softmax):
            raise InputError("layers: the stack must end with Softmax()")
        for layer in stack:
            if isinstance(layer, FC):
                layer.update_in_backward = False
        self.model = Sequential(
            stack,
            loss=CategoricalCrossentropy(),
            optimizer=_EachLayersOwn(self.lr),
            seed=self.random_state,
            dtype=self.dtype,
        )
        validation = None
        if X_val is not None and y_val is not None:
            validation = (numpy.asarray(X_val), self._encode(y_val))
        history = self.model.fit(
            X,
            self._encode(y),
            epochs=self.epochs,
            batch_size=self.batch_size,
            validation_data=validation,
            verbose=2 if self.verbose else 0,
        )
        self.history = history
        self.loss = list(history["loss"])
        self.train_accuracy = list(history["accuracy"])
        self.val_loss = list(history.history.get("val_loss", []))
        self.val_accuracy = list(history.history.get("val_accuracy", []))
        return self

    def predict_proba(self, X: Any) -> numpy.ndarray:
        """Class probabilities (n, n_classes) as a host array."""
        return self.model.predict(numpy.asarray(X))

    def predict(self, X: Any) -> numpy.ndarray:
        """Predicted labels (n,)."""
        return self.classes_[numpy.argmax(self.predict_proba(X), axis=1)]

    def score(self, X: Any, y: Any) -> float:
        """Accuracy of :meth:`predict` on ``X`` against labels ``y``."""
        return float(numpy.mean(self.predict(X) == self._labels(y)))
