"""Fixtures for the numba backend's own tests: the backend, and a spy on the reference ops.

The parity harness in ``tests/backends`` checks the numba backend's results; these tests
check *which path* produced them: the compiled kernel, or the reference op the backend
falls back to with ``super()``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nnback.backends.base import Backend

try:
    from nnback.backends.numba_backend import NumbaBackend
except ImportError:  # numba is not installed: the test modules skip themselves
    NumbaBackend = None


# Overrides that are not accelerated ops with a reference fallback: facts, the thread
# policy of a loop, the GEMM primitive (numpy.matmul itself, split by rows over the
# kernel threads inside compute_scope) and dense_backward (the reference's own calls,
# its two GEMMs at once on two threads there); tested in test_numba_conv.py.
_NOT_OPS = {"info", "compute_scope", "matmul", "dense_backward"}


def _overridden() -> list[str]:
    """Every op the numba backend overrides, i.e. every op that has a fallback path."""
    return sorted(
        name
        for name, member in vars(NumbaBackend).items()
        if callable(member) and not name.startswith("_") and name not in _NOT_OPS
    )


@pytest.fixture
def overridden_ops() -> list[str]:
    return _overridden()


@pytest.fixture
def numba_backend() -> NumbaBackend:
    """A numba backend instance of its own (the registry's shared one is left alone)."""
    return NumbaBackend()


@pytest.fixture
def fallbacks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Names of the reference ops that a NumbaBackend reached (through ``super()``).

    Each overridden op of :class:`Backend` is wrapped while the test runs; a call whose
    ``self`` is a NumbaBackend is recorded. Calls made by the NumPy reference are not, so
    a test may compute its expected values with the spy in place.
    """
    calls: list[str] = []

    def spy(name: str) -> object:
        original = getattr(Backend, name)

        def wrapper(self: Backend, *args: object, **kwargs: object) -> object:
            if isinstance(self, NumbaBackend):
                calls.append(name)
            return original(self, *args, **kwargs)

        wrapper.__name__ = name
        return wrapper

    for name in _overridden():
        monkeypatch.setattr(Backend, name, spy(name))
    yield calls
