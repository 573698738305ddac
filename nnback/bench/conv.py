"""Benchmarks of the convolutional network of issue 14 (:func:`nnback.zoo.build_cnn`).

End to end, the CNN's training epoch joins the ``train_epoch`` family (case
:data:`CNN_NETWORK`), beside PyTorch CPU (:mod:`~nnback.bench.peers_torch`). A CNN step
costs about 40 times an MLP step, so its epoch is at most :data:`CNN_SAMPLES` samples
(throughput is per sample, so the figures compare with a longer epoch's).

Per op, at the shapes of the CNN's layers (``conv1``: 1 -> 32 channels on 28 x 28 images,
``conv2``: 32 -> 64 on 13 x 13; the pools after them on 32 x 26 x 26 and 64 x 11 x 11):

- ``conv2d_forward``: im2col + GEMM + bias + ReLU, as the model calls it;
- ``conv2d_backward``: ReLU backward + bias gradient, the weight GEMM and, for ``conv2``
  (not the first layer, as in training), the input GEMM and col2im;
- ``maxpool2d_forward`` / ``maxpool2d_backward``: 2 x 2 windows, argmax kept;
- ``im2col`` / ``col2im``: the conv layers' patch matrices alone.

The GEMM ceiling of the CNN (kind ``"cnn-step"``) times every GEMM of its training step
back to back at the im2col shapes (:func:`cnn_gemm_shapes`), so the end-to-end figure
reads as a share of the machine's measured GEMM rate. Its FLOPs come from the layer
shapes (:func:`nnback.zoo.training_flops`): about 15.4 MFLOP per training sample.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy

from ..zoo import CNN_NAME, cnn_layers, training_flops
from .workload import CeilingSpec, Prepared, Workload, device_of

__all__ = [
    "CNN_BATCHES",
    "CNN_NETWORK",
    "CNN_OP_FAMILIES",
    "CNN_SAMPLES",
    "CONV_LAYERS",
    "cnn_epoch_flops",
    "cnn_gemm_shapes",
    "cnn_samples",
    "conv_op_workload",
]

CNN_NETWORK = CNN_NAME
CNN_BATCHES = (32, 128)
#: Most samples in one CNN training epoch of the benchmarks.
CNN_SAMPLES = 4096
#: Input rows of the CNN: 28 x 28 pixels.
CNN_INPUT = (784,)
#: The conv layers: input images (c, h, w) and weights (out, in, kh, kw).
CONV_LAYERS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int, int]]] = {
    "conv1": ((1, 28, 28), (32, 1, 3, 3)),
    "conv2": ((32, 13, 13), (64, 32, 3, 3)),
}
#: The pools: input feature maps (c, h, w), 2 x 2 windows.
POOL_LAYERS: dict[str, tuple[int, int, int]] = {"pool1": (32, 26, 26), "pool2": (64, 11, 11)}
CNN_OP_FAMILIES = (
    "conv2d_forward",
    "conv2d_backward",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "im2col",
    "col2im",
)


def cnn_samples(samples: int) -> int:
    """Samples of one CNN benchmark epoch for the suite's ``samples`` setting."""
    return max(1, min(int(samples), CNN_SAMPLES))


def cnn_epoch_flops(samples: int, batch: int) -> float:
    """GEMM operations of one CNN training epoch (from the layer shapes)."""
    layers = cnn_layers()
    full, rest = divmod(samples, batch)
    total = full * training_flops(layers, CNN_INPUT, batch)
    if rest:
        total += training_flops(layers, CNN_INPUT, rest)
    return total


def cnn_gemm_shapes(batch: int) -> list[tuple[int, int, int]]:
    """``(rows, k, n)`` of each GEMM-bearing layer's forward product, in order: a Conv2D's
    rows are the batch's output pixels and ``k = in_channels * kh * kw``."""
    from ..conv_layers import Conv2D
    from ..layers import Dense

    shapes = []
    shape: tuple[int, ...] = CNN_INPUT
    for layer in cnn_layers():
        out = tuple(layer.output_shape(shape))
        if isinstance(layer, Dense):
            shapes.append((batch, layer.n_inputs, layer.n_neurons))
        elif isinstance(layer, Conv2D):
            kh, kw = layer.kernel_size
            k = layer.in_channels * kh * kw
            shapes.append((batch * out[1] * out[2], k, layer.out_channels))
        shape = out
    return shapes


def _device(runner: str) -> str:
    from ..backends import get_backend

    try:
        return device_of(get_backend(runner))
    except Exception:  # unavailable: skipped anyway
        return "gpu" if runner == "cupy" else "cpu"


def _setup_with(runner: str, build: Callable[[Any, numpy.random.Generator], Any]) -> Any:
    def setup() -> Prepared:
        from ..backends import get_backend

        backend = get_backend(runner)
        return Prepared(run=build(backend, numpy.random.default_rng(0)))

    return setup


def _array(backend: Any, rng: numpy.random.Generator, shape: tuple[int, ...], dtype: str) -> Any:
    return backend.asarray(rng.standard_normal(shape).astype(dtype))


def _conv_build(family: str, layer: str, dtype: str, batch: int) -> Callable:
    (c, h, w), wshape = CONV_LAYERS[layer]
    kernel, one = (wshape[2], wshape[3]), (1, 1)
    zero = (0, 0)
    need_dx = layer != "conv1"

    def build(backend: Any, rng: numpy.random.Generator) -> Callable[[], None]:
        x = _array(backend, rng, (batch, c, h, w), dtype)
        weights = backend.asarray(
            (rng.standard_normal(wshape) / numpy.sqrt(c * kernel[0] * kernel[1])).astype(dtype)
        )
        bias = _array(backend, rng, (1, wshape[0]), dtype)
        sync = backend.synchronize
        if family == "im2col":

            def run_im2col() -> None:
                backend.im2col(x, kernel, one, zero)
                sync()

            return run_im2col
        if family == "col2im":
            cols = backend.im2col(x, kernel, one, zero)

            def run_col2im() -> None:
                backend.col2im(cols, (batch, c, h, w), kernel, one, zero)
                sync()

            return run_col2im
        if family == "conv2d_forward":

            def forward() -> None:
                backend.conv2d_forward(x, weights, bias, one, zero, "relu")
                sync()

            return forward
        y, cols = backend.conv2d_forward(x, weights, bias, one, zero, "relu")
        dy = _array(backend, rng, tuple(y.shape), dtype)

        def backward() -> None:
            backend.conv2d_backward(dy, x, weights, y, cols, one, zero, "relu", need_dx=need_dx)
            sync()

        return backward

    return build


def _pool_build(family: str, layer: str, dtype: str, batch: int) -> Callable:
    c, h, w = POOL_LAYERS[layer]
    pool = (2, 2)

    def build(backend: Any, rng: numpy.random.Generator) -> Callable[[], None]:
        x = _array(backend, rng, (batch, c, h, w), dtype)
        sync = backend.synchronize
        if family == "maxpool2d_forward":

            def forward() -> None:
                backend.maxpool2d_forward(x, pool, pool)
                sync()

            return forward
        y, argmax = backend.maxpool2d_forward(x, pool, pool)
        dy = _array(backend, rng, tuple(y.shape), dtype)

        def backward() -> None:
            backend.maxpool2d_backward(dy, argmax, (batch, c, h, w), pool, pool)
            sync()

        return backward

    return build


def _conv_flops(family: str, layer: str, batch: int) -> float:
    if layer not in CONV_LAYERS:
        return 0.0
    (c, h, w), (out, _, kh, kw) = CONV_LAYERS[layer]
    pixels = batch * (h - kh + 1) * (w - kw + 1)
    forward = 2.0 * pixels * c * kh * kw * out
    if family == "conv2d_forward":
        return forward
    if family == "conv2d_backward":
        return forward * (2 if layer != "conv1" else 1)
    return 0.0


def conv_op_workload(
    runner: str, dtype: str, batch: int, family: str, layer: str, skip: str | None
) -> Workload:
    """One conv or pooling op of the CNN (``family`` of :data:`CNN_OP_FAMILIES`) at the
    shapes of ``layer`` (``conv1``, ``conv2``, ``pool1`` or ``pool2``)."""
    if family.startswith("maxpool"):
        build = _pool_build(family, layer, dtype, batch)
        c, h, w = POOL_LAYERS[layer]
        what = f"{c}x{h}x{w} 2x2"
    else:
        build = _conv_build(family, layer, dtype, batch)
        (c, h, w), (out, _, kh, kw) = CONV_LAYERS[layer]
        what = f"{c}x{h}x{w} -> {out} {kh}x{kw}"
    flops = _conv_flops(family, layer, batch)
    return Workload(
        family=family,
        group=f"{family} {layer} {what}",
        runner=runner,
        dtype=dtype,
        batch=batch,
        case=layer,
        setup=_setup_with(runner, build),
        unit="sample",
        amount=batch,
        flops=flops,
        skip=skip,
    )


def cnn_ceiling(runner: str, dtype: str, batch: int) -> CeilingSpec:
    """The GEMM ceiling a CNN training epoch of ``runner`` is read against."""
    return CeilingSpec(_device(runner), "cnn-step", dtype, batch)
