"""End-to-end benchmarks: training epochs, per-step overhead, inference, real data.

A training benchmark times whole epochs of ``Sequential.fit`` (``--bench-rounds`` of them)
on 60,000 MNIST-shaped samples (``--bench-samples`` or ``NNBACK_BENCH_SAMPLES`` for fewer),
after a short warm-up fit that is timed apart as the first call (compilation included).
PyTorch (as users run it, and tuned) and scikit-learn's MLPClassifier run the same network.
"""

from __future__ import annotations

from typing import Any

from nnback.bench import Workload, run_pytest_benchmark


def test_train_epoch(benchmark: Any, workload: Workload, epoch_rounds: int) -> None:
    """One epoch of 784-256-128-10, 784-100-50-10 or the CNN of issue 14 (at most 4,096
    samples) with Adam, in samples per second."""
    run_pytest_benchmark(benchmark, workload, epoch_rounds)


def test_train_step_overhead(benchmark: Any, workload: Workload, epoch_rounds: int) -> None:
    """The per-step cost of a tiny network (784-32-10, batch 32), in µs per step."""
    run_pytest_benchmark(benchmark, workload, epoch_rounds)


def test_inference(benchmark: Any, workload: Workload, epoch_rounds: int) -> None:
    """``predict`` over 10,000 samples, output kept on the device."""
    run_pytest_benchmark(benchmark, workload, epoch_rounds)


def test_real_data_training(benchmark: Any, workload: Workload) -> None:
    """Ten epochs (``--bench-epochs``) on Fashion-MNIST at batch 128, in wall time.

    Long enough for subnormal optimizer state to appear; ``extra_info`` records the test
    accuracy and each epoch's throughput (``last_over_first`` well below 1 is a slowdown).
    Skipped with the reason when Fashion-MNIST is not installed.
    """
    run_pytest_benchmark(benchmark, workload, 1)


def test_gpu_train_epoch(benchmark: Any, workload: Workload, epoch_rounds: int) -> None:
    """One epoch on the GPU: nnback cupy (captured, eager) beside PyTorch CUDA (eager, fused
    Adam, whole step in a CUDA graph), after a whole warm-up epoch. ``nnback bench --gpu``
    takes the same runners' rounds in turn, which pytest-benchmark cannot: quote ratios
    from that."""
    run_pytest_benchmark(benchmark, workload, epoch_rounds)


def test_gpu_start(benchmark: Any, workload: Workload) -> None:
    """A fresh process to the end of its first epoch on cupy, kernel cache empty or warm."""
    run_pytest_benchmark(benchmark, workload, 2)
