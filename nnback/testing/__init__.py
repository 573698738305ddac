"""Test support shared by ``tests/`` and ``bench/``: backend selection, parity helpers and a
strict stand-in for a non-host device.

Importing this package imports neither pytest nor any optional backend.
"""

from __future__ import annotations

from .backends import (
    STRICT,
    TEST_BACKENDS_ENV_VAR,
    BackendCandidate,
    backend_params,
    gpu_unavailable_reason,
    selected_backends,
    unselected_backends,
)
from .parity import (
    LAYOUTS,
    assert_close,
    assert_gradient_close,
    assert_unchanged,
    make_input,
    numerical_gradient,
    on_backend,
    random_array,
    to_host,
)
from .strict import (
    StrictArray,
    StrictBackend,
    StrictNamespace,
    make_strict_namespace,
    strict_to_numpy,
    unwrap_strict,
)

__all__ = [
    "LAYOUTS",
    "STRICT",
    "TEST_BACKENDS_ENV_VAR",
    "BackendCandidate",
    "StrictArray",
    "StrictBackend",
    "StrictNamespace",
    "assert_close",
    "assert_gradient_close",
    "assert_unchanged",
    "backend_params",
    "gpu_unavailable_reason",
    "make_input",
    "make_strict_namespace",
    "numerical_gradient",
    "on_backend",
    "random_array",
    "selected_backends",
    "strict_to_numpy",
    "to_host",
    "unselected_backends",
    "unwrap_strict",
]
