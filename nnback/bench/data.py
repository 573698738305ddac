"""Sizes and data for the benchmarks: the textbooks' MNIST networks and MNIST-shaped samples.

The synthetic samples look like MNIST where it matters for speed: 28 x 28 pixels in [0, 1]
with a blank 4-pixel border (so, as on real data, some inputs are always zero and the
weights fed by them get zero gradients) and about half the inner pixels zero. Labels come
from a fixed random linear "teacher", so a network can learn them and training behaves as
on real data rather than on noise.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy

from .workload import WorkloadSkipped, env_int

__all__ = [
    "DEFAULT_SAMPLES",
    "DTYPES",
    "LAYER_SHAPES",
    "MAIN_NETWORK",
    "NETWORKS",
    "OP_BATCHES",
    "SAMPLES_ENV_VAR",
    "SECOND_NETWORK",
    "TINY_NETWORK",
    "TRAIN_BATCHES",
    "epoch_flops",
    "gemm_flops",
    "layer_activation",
    "mnist_shaped",
    "network_flops",
    "real_data",
    "samples_setting",
]

DTYPES = ("float32", "float64")
OP_BATCHES = (32, 128, 1024)
TRAIN_BATCHES = (32, 128, 512, 1024)
NETWORKS: dict[str, tuple[int, ...]] = {
    "784-256-128-10": (784, 256, 128, 10),
    "784-100-50-10": (784, 100, 50, 10),
    "784-32-10": (784, 32, 10),
}
MAIN_NETWORK = "784-256-128-10"
SECOND_NETWORK = "784-100-50-10"
#: The per-step overhead network of the Numba issue: tiny, so the fixed cost per step shows.
TINY_NETWORK = "784-32-10"
#: Every layer shape of the two textbook networks.
LAYER_SHAPES: tuple[tuple[int, int], ...] = (
    (784, 256),
    (256, 128),
    (128, 10),
    (784, 100),
    (100, 50),
    (50, 10),
)
DEFAULT_SAMPLES = 60_000
SAMPLES_ENV_VAR = "NNBACK_BENCH_SAMPLES"
N_CLASSES = 10


def samples_setting(value: int | None = None, default: int = DEFAULT_SAMPLES) -> int:
    """Samples per training epoch: ``value``, else ``$NNBACK_BENCH_SAMPLES``, else ``default``."""
    return int(value) if value else env_int(SAMPLES_ENV_VAR, default)


def layer_activation(n_out: int) -> str:
    """The activation a layer of this width has in the networks: linear for the 10 outputs."""
    return "linear" if n_out == N_CLASSES else "relu"


def gemm_flops(batch: int, n_in: int, n_out: int) -> float:
    """Floating-point operations of one ``(batch, n_in) @ (n_in, n_out)`` product."""
    return 2.0 * batch * n_in * n_out


def network_flops(layers: tuple[int, ...], batch: int, training: bool) -> float:
    """GEMM operations of one step on a batch: forward only, or forward and backward.

    Backward is two more GEMMs per layer (``dW`` and ``dX``) except the first layer, which
    needs no input gradient.
    """
    total = 0.0
    for index, (n_in, n_out) in enumerate(zip(layers[:-1], layers[1:], strict=True)):
        flops = gemm_flops(batch, n_in, n_out)
        total += flops
        if training:
            total += flops if index == 0 else 2 * flops
    return total


def epoch_flops(layers: tuple[int, ...], samples: int, batch: int) -> float:
    """GEMM operations of one training epoch, the last partial batch included."""
    full, rest = divmod(samples, batch)
    total = full * network_flops(layers, batch, training=True)
    if rest:
        total += network_flops(layers, rest, training=True)
    return total


@functools.lru_cache(maxsize=2)
def _mnist_shaped_float32(samples: int, seed: int) -> tuple[numpy.ndarray, numpy.ndarray]:
    rng = numpy.random.default_rng(seed)
    images = numpy.zeros((samples, 28, 28), dtype=numpy.float32)
    inner = rng.random((samples, 20, 20), dtype=numpy.float32)
    inner[inner < 0.5] = 0
    images[:, 4:24, 4:24] = inner
    X = images.reshape(samples, 28 * 28)
    teacher = numpy.random.default_rng(seed + 1).standard_normal((28 * 28, N_CLASSES))
    y = numpy.argmax(X @ teacher.astype(numpy.float32), axis=1).astype(numpy.int64)
    X.flags.writeable = False
    y.flags.writeable = False
    return X, y


def mnist_shaped(samples: int, dtype: str, seed: int = 0) -> tuple[numpy.ndarray, numpy.ndarray]:
    """``samples`` MNIST-shaped images (samples, 784) of ``dtype`` and labels 0..9 (int64).

    Arrays are read-only and cached (the last two sizes), so several benchmarks share them.
    """
    X, y = _mnist_shaped_float32(int(samples), seed)
    if dtype != "float32":
        X = X.astype(dtype)
    return X, y


def real_data(path: str | None = None) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """Fashion-MNIST from disk (never downloaded here), or :class:`WorkloadSkipped` with why."""
    from ..datasets import DatasetNotFoundError, load_fashion_mnist

    try:
        return load_fashion_mnist(path, download=False)
    except DatasetNotFoundError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise WorkloadSkipped(
            "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, or "
            f"NNBACK_DATA=DIR): {first_line}"
        ) from exc
