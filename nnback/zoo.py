"""Named models built in one place, so the examples, the command line and the benchmarks
train the same network.

:func:`build_cnn` is the small convolutional network of issue 14 (the textbooks' next step
after the MLP)::

    Reshape((1, 28, 28))
    Conv2D(1, 32, 3)  ReLU  MaxPool2D(2)      # 28x28 -> 26x26 -> 13x13
    Conv2D(32, 64, 3) ReLU  MaxPool2D(2)      # 13x13 -> 11x11 -> 5x5
    Flatten  [Dropout]  Dense(1600, 128) ReLU  [Dropout]  Dense(128, 10) Softmax

:func:`training_flops` counts the GEMM work of a stack of layers from its shapes (a Conv2D
is one GEMM of ``(n*oh*ow, c*kh*kw) @ (c*kh*kw, out)`` through im2col), which the benchmarks
read against the machine's measured GEMM rate.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["CNN_NAME", "build_cnn", "cnn_layers", "training_flops"]

#: The CNN's short name in the benchmark tables and ``nnback train --model``.
CNN_NAME = "cnn-28x28-c32-c64-d128-10"


def cnn_layers(
    image_shape: tuple[int, int, int] = (1, 28, 28),
    n_classes: int = 10,
    dropout: float = 0.0,
) -> list[Any]:
    """The CNN's layers (unbuilt), for images ``(channels, height, width)`` given as rows.

    ``dropout`` > 0 puts a :class:`~nnback.layers.Dropout` of that rate before each Dense
    layer (none by default: the architecture of the issue and of the benchmarks).
    """
    from . import layers as nl
    from .conv_layers import Conv2D, Flatten, MaxPool2D, Reshape

    channels = image_shape[0]
    stack: list[Any] = [
        Reshape(tuple(image_shape)),
        Conv2D(channels, 32, 3),
        nl.ReLU(),
        MaxPool2D(2),
        Conv2D(32, 64, 3),
        nl.ReLU(),
        MaxPool2D(2),
        Flatten(),
    ]
    shape: tuple[int, ...] = tuple(image_shape)
    for layer in stack:
        shape = layer.output_shape(shape)
    flat = math.prod(shape)
    if dropout:
        stack.append(nl.Dropout(dropout))
    stack += [nl.Dense(flat, 128, weight_initializer="he"), nl.ReLU()]
    if dropout:
        stack.append(nl.Dropout(dropout))
    stack += [nl.Dense(128, n_classes, weight_initializer="xavier"), nl.Softmax()]
    return stack


def build_cnn(
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    seed: int = 0,
    dtype: str = "float32",
    backend: Any = None,
    image_shape: tuple[int, int, int] = (1, 28, 28),
    n_classes: int = 10,
    dropout: float = 0.0,
    decay: float = 0.0,
) -> Any:
    """The CNN as a :class:`~nnback.model.Sequential` classifier (categorical
    cross-entropy, fused with the softmax), taking rows of ``prod(image_shape)`` pixels.

    ``decay`` is the optimizer's textbook learning-rate decay, ``lr / (1 + decay * step)``."""
    from .losses import CategoricalCrossentropy
    from .model import Sequential
    from .optimizers import get_optimizer

    return Sequential(
        cnn_layers(image_shape, n_classes, dropout),
        loss=CategoricalCrossentropy(),
        optimizer=get_optimizer(optimizer, learning_rate=learning_rate, decay=decay),
        seed=seed,
        dtype=dtype,
        backend=backend,
    )


def training_flops(
    layers: list[Any], input_shape: tuple[int, ...], batch: int = 1, training: bool = True
) -> float:
    """GEMM floating-point operations of one step over ``batch`` samples of ``input_shape``.

    Forward: ``2 * n * k * m`` per Dense (k inputs, m outputs) and per Conv2D (``n`` the
    output pixels of the batch, ``k = c * kh * kw``, ``m`` the output channels). Training
    adds the weight gradient and, except for the first such layer (its input needs no
    gradient), the input gradient: twice the forward work. Pooling, activations and
    im2col are memory work, not counted.
    """
    from .conv_layers import Conv2D
    from .layers import Dense

    total = 0.0
    shape = tuple(input_shape)
    first = True
    for layer in layers:
        out = tuple(layer.output_shape(shape))
        if isinstance(layer, Dense):
            flops = 2.0 * batch * layer.n_inputs * layer.n_neurons
        elif isinstance(layer, Conv2D):
            kh, kw = layer.kernel_size
            pixels = batch * out[1] * out[2]
            flops = 2.0 * pixels * layer.in_channels * kh * kw * layer.out_channels
        else:
            shape = out
            continue
        total += flops
        if training:
            total += flops if first else 2 * flops
        first = False
        shape = out
    return total
