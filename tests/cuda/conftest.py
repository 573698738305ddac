"""Fixtures of the CUDA tests: the kernels built for the CPU, and NVRTC.

Each fixture skips, saying why, when its tool is missing here (no C++ compiler; no NVRTC
library), so a machine without them reports what it did not check instead of failing.
"""

from __future__ import annotations

import pytest

from nnback.testing import cpu_kernels
from nnback.testing.nvrtc import Nvrtc, NvrtcNotFound, load_nvrtc


@pytest.fixture(scope="session")
def cpu() -> dict[str, cpu_kernels.CpuModule]:
    """Every kernel module compiled for the CPU with the shim (built once, cached on disk)."""
    try:
        return cpu_kernels.build_all()
    except cpu_kernels.CompilerNotFound as exc:
        pytest.skip(f"CPU execution of the CUDA kernels not checked: {exc}")


@pytest.fixture(scope="session")
def nvrtc() -> Nvrtc:
    """The NVRTC library from the CUDA pip wheels (or a toolkit)."""
    try:
        return load_nvrtc()
    except NvrtcNotFound as exc:
        pytest.skip(f"CUDA kernels not compiled: {exc}")
