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


# The CNN's ops (issue 14), at the shapes of its layers: conv1 (1 -> 32 channels, 28x28),
# conv2 (32 -> 64, 13x13), the 2x2 max pools after them.


def test_conv2d_forward(benchmark: Any, workload: Workload) -> None:
    """im2col + GEMM + bias + ReLU, as the model calls it."""
    run_pytest_benchmark(benchmark, workload)


def test_conv2d_backward(benchmark: Any, workload: Workload) -> None:
    """ReLU backward + bias gradient, ``dW`` and (not for conv1) ``dX`` through col2im."""
    run_pytest_benchmark(benchmark, workload)


def test_maxpool2d_forward(benchmark: Any, workload: Workload) -> None:
    """2x2 max pooling, argmax kept for the backward pass."""
    run_pytest_benchmark(benchmark, workload)


def test_maxpool2d_backward(benchmark: Any, workload: Workload) -> None:
    """Each gradient to its window's maximum."""
    run_pytest_benchmark(benchmark, workload)


def test_im2col(benchmark: Any, workload: Workload) -> None:
    """The conv layers' patch matrices alone."""
    run_pytest_benchmark(benchmark, workload)


def test_col2im(benchmark: Any, workload: Workload) -> None:
    """The adjoint of im2col: patch gradients summed back into the images."""
    run_pytest_benchmark(benchmark, workload)
