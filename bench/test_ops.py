"""Per-op benchmarks: each fused op of the backend interface, as the model calls it.

Parametrized by ``bench/conftest.py`` from :mod:`nnback.bench.ops`: every selected backend
and PyTorch, float32 and float64, batches 32, 128 and 1024, the textbook MNIST layer shapes.
"""

from __future__ import annotations

from typing import Any

from nnback.bench import Workload, run_pytest_benchmark


def test_dense_forward(benchmark: Any, workload: Workload) -> None:
    """``activation(x @ W + b)`` into a workspace, ReLU on hidden layers."""
    run_pytest_benchmark(benchmark, workload)


def test_dense_backward(benchmark: Any, workload: Workload) -> None:
    """``dX, dW, db`` through the activation (no ``dX`` for the first layer)."""
    run_pytest_benchmark(benchmark, workload)


def test_dense_epilogue_forward(benchmark: Any, workload: Workload) -> None:
    """Bias + activation alone: a dense forward whose GEMM has one input feature."""
    run_pytest_benchmark(benchmark, workload)


def test_dense_epilogue_backward(benchmark: Any, workload: Workload) -> None:
    """Activation backward + bias gradient alone (GEMM with one input feature)."""
    run_pytest_benchmark(benchmark, workload)


def test_activation_forward(benchmark: Any, workload: Workload) -> None:
    """Each activation on an (n, 256) batch (softmax on (n, 10))."""
    run_pytest_benchmark(benchmark, workload)


def test_activation_backward(benchmark: Any, workload: Workload) -> None:
    """Each activation's backward from the output."""
    run_pytest_benchmark(benchmark, workload)


def test_softmax_crossentropy(benchmark: Any, workload: Workload) -> None:
    """Fused softmax + cross-entropy with its gradient, integer labels."""
    run_pytest_benchmark(benchmark, workload)


def test_loss(benchmark: Any, workload: Workload) -> None:
    """Each other loss with its gradient on (n, 10)."""
    run_pytest_benchmark(benchmark, workload)


def test_optimizer_step(benchmark: Any, workload: Workload) -> None:
    """Each optimizer's in-place step over a 784x256 or 256x128 weight matrix."""
    run_pytest_benchmark(benchmark, workload)
