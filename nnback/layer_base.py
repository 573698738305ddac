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

    def parameters(self) -> list[tuple[str, Array, Array | None, float, float]]:
        """``(name, value, gradient, l1, l2)`` for each trainable array."""
        return []

    def get_config(self) -> dict[str, Any]:
        return {"class": type(self).__name__}

    def regularization_loss(self) -> Array | None:
        """The layer's L1/L2 penalty as a 0-d backend array (None when it has none)."""
        return None
