"""The NumPy reference backend: the base class with ``xp = numpy`` and no overrides."""

from __future__ import annotations

import numpy

from .base import Backend


class NumpyBackend(Backend):
    """Every op as written in :class:`~nnback.backends.base.Backend`, on NumPy arrays."""

    name = "numpy"
    xp = numpy
