"""Peak memory of training: one epoch of 784-256-128-10 at batch 128 (float32).

Measured with tracemalloc from after the data and model exist, so it is what training itself
allocates (workspaces, minibatch copies, optimizer state, temporaries). The peak is in
``extra_info["peak_bytes"]`` and in the ``nnback bench --report`` table; the recorded time is
of a traced epoch and not comparable with the training benchmarks.
"""

from __future__ import annotations

from typing import Any

from nnback.bench import Workload, run_pytest_benchmark


def test_memory_peak(benchmark: Any, workload: Workload) -> None:
    """One traced epoch; records ``peak_bytes``."""
    run_pytest_benchmark(benchmark, workload, 1)
