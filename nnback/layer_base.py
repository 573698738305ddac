"""The base class of every layer (kept apart so activations and layers can both use it)."""

from __future__ import annotations

from typing import Any

import numpy

from .backends import Backend, get_backend

Array = Any


class Layer:
    """Base class of every layer.

    Subclasses implement :meth:`forward` and :meth:`backward`; trainable ones also
    :meth:`build` and :meth:`parameters`.
    """

    trainable = False
    backend: Backend | None = None
    #: The flat buffers this layer's parameters are views of, set by ``Sequential.build``
    #: (see :mod:`nnback.parameter_pack`); None for a layer used on its own.
    parameter_pack: Any = None

    def build(self, backend: Backend, dtype: Any, rng: numpy.random.Generator) -> None:
        """Attach the layer to a backend (and allocate its parameters, if any)."""
        self.backend = backend
        self.dtype = numpy.dtype(dtype)

    @property
    def built(self) -> bool:
        return self.backend is not None

    def _ensure_built(self, inputs: Array) -> Backend:
        if self.backend is None:
            backend = get_backend()
            dtype = getattr(inputs, "dtype", numpy.float32)
            self.build(backend, dtype, numpy.random.default_rng())
        return self.backend  # type: ignore[return-value]

    def forward(self, inputs: Array, training: bool = False) -> Array:
        raise NotImplementedError

    def backward(self, dvalues: Array) -> Array:
        raise NotImplementedError

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of one output sample for one input sample of ``input_shape``.

        Shapes leave out the batch axis: ``(k,)`` for rows, ``(c, h, w)`` for images. Used
        by the model to check a stack of layers before it runs and by ``summary``; raises
        :class:`~nnback.errors.InputError` saying what the layer expected. The default (for
        activations and dropout) passes the shape through.
        """
        return tuple(input_shape)

    def input_size(self) -> int | None:
        """Features per sample this layer needs as the first layer of a model, whose data
        are rows (n, features); None for a layer that takes any shape (an activation)."""
        return None

    def parameter_count(self) -> int:
        """Trainable numbers this layer holds (known before it is built)."""
        return 0

    def parameters(self) -> list[tuple[str, Array, Array | None, float, float]]:
        """``(name, value, gradient, l1, l2)`` for each trainable array."""
        return []

    def get_config(self) -> dict[str, Any]:
        return {"class": type(self).__name__}

    def regularization_loss(self) -> Array | None:
        """The layer's L1/L2 penalty as a 0-d backend array (None when it has none)."""
        return None
