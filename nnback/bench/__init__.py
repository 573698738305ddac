"""nnback's benchmarks: the work items, the timing engines, the report and the comparison.

The same work items (:mod:`~nnback.bench.catalog`) are timed by two engines:

- the pytest-benchmark suite in the repository's ``bench/`` folder
  (``pytest bench/ --benchmark-only``), the whole grid;
- ``nnback bench`` (or ``python -m nnback.bench``), a quick subset with its own timing loop
  (:mod:`~nnback.bench.runner`) writing the same JSON layout.

Then :mod:`~nnback.bench.report` turns either JSON into a table (median time, throughput,
speed-up over the NumPy reference and PyTorch, fraction of the machine's GEMM or bandwidth
ceiling), :mod:`~nnback.bench.compare` lists regressions between two runs and
:mod:`~nnback.bench.plot` draws a bar chart.

Importing this package imports neither pytest, PyTorch, scikit-learn nor matplotlib.
"""

from __future__ import annotations

from .catalog import Settings, all_workloads, family_workloads, quick_workloads
from .compare import compare, format_comparison
from .report import format_report, format_table, load_results
from .runner import TimingOptions, measure, results_json, run_pytest_benchmark, run_workloads
from .workload import CeilingSpec, Prepared, Workload, WorkloadSkipped

__all__ = [
    "CeilingSpec",
    "Prepared",
    "Settings",
    "TimingOptions",
    "Workload",
    "WorkloadSkipped",
    "all_workloads",
    "compare",
    "family_workloads",
    "format_comparison",
    "format_report",
    "format_table",
    "load_results",
    "measure",
    "quick_workloads",
    "results_json",
    "run_pytest_benchmark",
    "run_workloads",
]
