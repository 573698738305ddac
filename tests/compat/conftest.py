"""Fixtures for the compatibility-API tests: backend selection and a quiet, one-thread BLAS.

The compat tests run small programs many times over; a threaded BLAS on a machine with
few, shared cores spends most of such runs waiting for its own threads, so BLAS is held
to one thread here (with threadpoolctl, when installed).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import nnback
from nnback.backends.base import Backend

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
    threadpool_limits = None


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread() -> Iterator[None]:
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture
def on_backend(backend: Backend) -> Iterator[Backend]:
    """The backend under test, selected with ``nnback.use_backend`` for the test's body."""
    with nnback.use_backend(backend):
        yield backend
