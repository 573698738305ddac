"""Fixtures for the backend op tests: the dtype and the memory layout of the inputs."""

from __future__ import annotations

import numpy
import pytest

from nnback.testing import LAYOUTS


@pytest.fixture(params=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> numpy.dtype:
    """The dtype of the inputs given to the backend (the reference always runs in float64)."""
    return numpy.dtype(request.param)


@pytest.fixture(params=LAYOUTS)
def layout(request: pytest.FixtureRequest) -> str:
    """How the inputs sit in memory: C-contiguous, every other row, or transposed."""
    return request.param
