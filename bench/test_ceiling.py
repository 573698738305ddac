"""The machine's ceiling, measured in the same run as everything else.

GEMM rates at every shape the other benchmarks use (one layer forward or backward, a whole
forward pass, a whole training step) in float32 and float64, and the copy bandwidth. The
report reads each result as a fraction of the matching ceiling.
"""

from __future__ import annotations

from typing import Any

from nnback.bench import Workload, run_pytest_benchmark


def test_ceiling(benchmark: Any, workload: Workload) -> None:
    """A bare GEMM (or GEMMs) into preallocated outputs, or a large copy."""
    run_pytest_benchmark(benchmark, workload)
