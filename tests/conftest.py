"""Fixtures shared by every test: the backend under test, the reference, and the gpu marker.

``backend`` runs a test once per selected backend (see
:func:`nnback.testing.selected_backends`): every backend that loads here plus the strict
device stand-in, or exactly the names in ``NNBACK_TEST_BACKENDS=numpy,numba``. The report
header lists what is *not* being tested on this machine, and why.
"""

from __future__ import annotations

import zlib

import numpy
import pytest

from nnback import get_backend
from nnback.backends.base import Backend
from nnback.testing import (
    TEST_BACKENDS_ENV_VAR,
    BackendCandidate,
    backend_params,
    gpu_unavailable_reason,
    selected_backends,
    unselected_backends,
)
from nnback.testing.fake_cupy import fake_cupy_backend_param


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; repeated so the marker is known when pytest runs
    # with another configuration file (or none).
    config.addinivalue_line(
        "markers", "gpu: needs a real NVIDIA GPU with CuPy (skipped with the reason otherwise)"
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    chosen = ", ".join(c.name for c in selected_backends())
    lines = [f"nnback backends under test: {chosen} (narrow with {TEST_BACKENDS_ENV_VAR}=...)"]
    for name, reason in unselected_backends().items():
        lines.append(f"nnback backend not tested: {name}: {reason}")
    gpu = gpu_unavailable_reason()
    lines.append("gpu tests: run" if gpu is None else f"gpu tests: skipped ({gpu})")
    return lines


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    reason = gpu_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"gpu test: {reason}")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture(params=[*backend_params(), fake_cupy_backend_param()])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The backend under test (a fresh StrictBackend each time, so its counters start at 0)."""
    candidate: BackendCandidate = request.param
    return candidate.load()


@pytest.fixture
def reference() -> Backend:
    """The NumPy reference backend, to run in float64."""
    return get_backend("numpy")


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> numpy.random.Generator:
    """A generator seeded from the test's id, so every test sees its own fixed data."""
    return numpy.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
