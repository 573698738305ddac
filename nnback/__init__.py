"""nnback: from-scratch neural networks on pluggable NumPy, Numba and CuPy backends."""

from __future__ import annotations

from .backends import (
    Backend,
    available_backends,
    backend_status,
    get_backend,
    set_backend,
    use_backend,
)
from .errors import (
    BackendUnavailableError,
    InputError,
    ModelFileError,
    NNBackError,
    TrainingError,
    UnknownBackendError,
)

__version__ = "0.1.0"
