"""The losses of :mod:`nnback.compat.nnfs` (the book's ``Loss_*`` classes).

On the numpy backend in book mode they compute with the book's expressions
(:mod:`nnback.compat.nnfs_book`) and return NumPy scalars, as the book's code does;
elsewhere with nnback's fused loss ops.
"""

from __future__ import annotations

from typing import Any

import numpy

from .. import losses as _losses
from ..backends import Backend, get_backend
from . import as_targets
from . import nnfs_book as _book
from .nnfs_data import STATE as _STATE
from .nnfs_data import book_numpy as _book_numpy

Array = Any


class Loss:
    """Base of the book's losses: ``calculate``, ``backward`` and ``regularization_loss``.

    ``core`` is the nnback loss whose backend op computes the value and the gradient;
    book mode on numpy computes with ``_book_pair`` (sample losses, gradient) instead and
    returns NumPy scalars, as the book's code does.
    """

    core: _losses.Loss = _losses.Loss()
    _book_pair: tuple[Any, Any]

    def _backend(self) -> Backend:
        return get_backend()

    def _targets(self, backend: Backend, y: Array, like: Array) -> Array:
        return as_targets(
            backend, numpy.asarray(y) if isinstance(y, list) else y, like, self.core.categorical
        )

    def calculate(self, output: Array, y: Array, *, include_regularization: bool = False) -> Any:
        """The mean data loss as a float (and the regularization loss, if asked)."""
        backend = self._backend()
        if _book_numpy(backend):
            data_loss = numpy.mean(self._book_pair[0](output, numpy.asarray(y)))
        else:
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

    def regularization_loss(self, layer: Any = None) -> Any:
        """The L1/L2 penalty of ``layer`` (or of the remembered trainable layers)."""
        layers = [layer] if layer is not None else getattr(self, "trainable_layers", [])
        if _book_numpy():
            return _book.regularization_loss(layers)
        total = 0.0
        for item in layers:
            term = item.regularization_loss()
            if term is not None:
                total += item.backend.to_float(term)
        return total

    def backward(self, dvalues: Array, y_true: Array) -> Array:
        """Sets ``dinputs``, the gradient of the mean loss with respect to ``dvalues``."""
        backend = self._backend()
        if _book_numpy(backend):
            dtype = _STATE["dtype"]
            self.dinputs = self._book_pair[1](dvalues, numpy.asarray(y_true), dtype)
            return self.dinputs
        dvalues = backend.asarray(dvalues)
        y = self._targets(backend, y_true, dvalues)
        _, self.dinputs = self.core.compute(backend, dvalues, y, True)
        return self.dinputs


class Loss_CategoricalCrossentropy(Loss):
    """Cross-entropy of probabilities against class indices or one-hot rows."""

    core = _losses.CategoricalCrossentropy()
    _book_pair = (_book.categorical_losses, _book.categorical_gradient)


class Loss_BinaryCrossentropy(Loss):
    """Binary cross-entropy of sigmoid outputs against 0/1 targets of the same shape."""

    core = _losses.BinaryCrossentropy()
    _book_pair = (_book.binary_losses, _book.binary_gradient)


class Loss_MeanSquaredError(Loss):
    """Mean squared error (L2 loss)."""

    core = _losses.MeanSquaredError()
    _book_pair = (_book.squared_losses, _book.squared_gradient)


class Loss_MeanAbsoluteError(Loss):
    """Mean absolute error (L1 loss)."""

    core = _losses.MeanAbsoluteError()
    _book_pair = (_book.absolute_losses, _book.absolute_gradient)
