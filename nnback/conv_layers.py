"""Layers for images: :class:`Conv2D`, :class:`MaxPool2D`, :class:`AvgPool2D`,
:class:`Flatten` and :class:`Reshape`.

Images are NCHW batches, ``(n, channels, height, width)``. A model's data stay rows
``(n, features)``, as for an MLP: a CNN starts with :class:`Reshape`, which turns each row
of 784 pixels into a ``(1, 28, 28)`` image, and a :class:`Flatten` turns the feature maps
back into rows for the Dense layers at the end::

    Sequential([
        Reshape((1, 28, 28)),
        Conv2D(1, 32, 3), ReLU(), MaxPool2D(2),
        Conv2D(32, 64, 3), ReLU(), MaxPool2D(2),
        Flatten(), Dense(1600, 128), ReLU(), Dense(128, 10), Softmax(),
    ])

The layers keep the textbooks' attributes: ``inputs`` and ``output`` after ``forward``,
``dinputs`` (and ``dweights``, ``dbiases`` for Conv2D) after ``backward``. Inside a
:class:`~nnback.model.Sequential` model a Conv2D followed by an activation layer (linear,
ReLU, LeakyReLU, sigmoid or tanh) is fused into one backend call, as for Dense.
"""

from __future__ import annotations

import math
from typing import Any

import numpy

from .backends import Backend
from .backends.conv_ops import CONV_ACTIVATIONS, conv_output_size
from .errors import InputError
from .initializers import Initializer, get_initializer
from .layer_base import Layer
from .validation import check_nonnegative_float, check_positive_int

__all__ = ["AvgPool2D", "Conv2D", "Flatten", "MaxPool2D", "Reshape"]

Array = Any


def _pair(name: str, value: Any) -> tuple[int, int]:
    """An int or a pair of ints >= 1, as ``(height, width)``."""
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise InputError(
                f"{name}: expected an int or a pair (height, width), got {value!r}; pass "
                "e.g. 3 or (3, 3)"
            )
        return check_positive_int(name, value[0]), check_positive_int(name, value[1])
    size = check_positive_int(name, value)
    return size, size


def _check_images(layer: Layer, inputs: Array, channels: int | None = None) -> None:
    shape = tuple(inputs.shape)
    if len(shape) != 4 or (channels is not None and shape[1] != channels):
        want = f"(n, {channels}, h, w)" if channels is not None else "(n, c, h, w)"
        raise InputError(
            f"{layer!r}: expected an NCHW batch of images {want}, got shape {shape}"
            + ("; turn rows into images with Reshape((c, h, w)) first" if len(shape) == 2 else "")
        )


def _image_shape(layer: Layer, input_shape: tuple[int, ...], channels: int | None = None) -> None:
    if len(input_shape) != 3 or (channels is not None and input_shape[0] != channels):
        want = f"({channels}, h, w)" if channels is not None else "(c, h, w)"
        hint = "; put Reshape((c, h, w)) before it" if len(input_shape) == 1 else ""
        raise InputError(
            f"{layer!r} expects images of shape {want}, got samples of shape "
            f"{tuple(input_shape)}{hint}"
        )


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every framework) of NCHW images.

    ``output[s, o] = biases[0, o] + sum_c correlate(inputs[s, c], weights[o, c])``,
    computed by the backend as im2col + GEMM.

    Parameters
    ----------
    in_channels, out_channels : int
        ``weights`` is (out_channels, in_channels, kh, kw) and ``biases`` (1, out_channels).
    kernel_size : int or (int, int)
        The window ``(kh, kw)``.
    stride : int or (int, int)
    padding : int, (int, int) or "same"
        Zeros added on both sides of each image. ``"same"`` keeps the height and width
        (stride 1 and odd kernels only); ``"valid"`` is 0.
    weight_initializer, bias_initializer : Initializer or str
        Default: ``He`` (normal, standard deviation ``sqrt(2 / (in_channels * kh * kw))``,
        which suits ReLU) and zeros.
    weight_regularizer_l1, weight_regularizer_l2, bias_regularizer_l1, bias_regularizer_l2
        Non-negative penalty factors, as for :class:`~nnback.layers.Dense`.

    Shapes: inputs (n, in_channels, h, w) -> output (n, out_channels, oh, ow) with
    ``oh = (h + 2 * ph - kh) // sh + 1`` (the same for the width).
    """

    trainable = True
    #: Activations the model may fuse into this layer (softmax is a row-wise op of rows).
    fusable_activations = CONV_ACTIVATIONS

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        weight_initializer: Initializer | str = "he",
        bias_initializer: Initializer | str = "zeros",
        weight_regularizer_l1: float = 0.0,
        weight_regularizer_l2: float = 0.0,
        bias_regularizer_l1: float = 0.0,
        bias_regularizer_l2: float = 0.0,
    ) -> None:
        self.in_channels = check_positive_int("Conv2D(in_channels)", in_channels)
        self.out_channels = check_positive_int("Conv2D(out_channels)", out_channels)
        self.kernel_size = _pair("Conv2D(kernel_size)", kernel_size)
        self.stride = _pair("Conv2D(stride)", stride)
        self.padding_spec: tuple[int, int] | str
        if isinstance(padding, str):
            if padding == "valid":
                self.padding_spec, self.padding = (0, 0), (0, 0)
            elif padding == "same":
                kh, kw = self.kernel_size
                if self.stride != (1, 1) or kh % 2 == 0 or kw % 2 == 0:
                    raise InputError(
                        f"Conv2D(padding): 'same' needs stride 1 and an odd kernel, got "
                        f"kernel_size={self.kernel_size}, stride={self.stride}; pass the "
                        "padding as numbers instead"
                    )
                self.padding_spec, self.padding = "same", ((kh - 1) // 2, (kw - 1) // 2)
            else:
                raise InputError(
                    f"Conv2D(padding): expected an int, a pair, 'same' or 'valid', got {padding!r}"
                )
        else:
            self.padding = self._padding_pair(padding)
            self.padding_spec = self.padding
        self.weight_initializer = get_initializer(weight_initializer)
        self.bias_initializer = get_initializer(bias_initializer)
        factors = {}
        for key, value in (
            ("weight_regularizer_l1", weight_regularizer_l1),
            ("weight_regularizer_l2", weight_regularizer_l2),
            ("bias_regularizer_l1", bias_regularizer_l1),
            ("bias_regularizer_l2", bias_regularizer_l2),
        ):
            factors[key] = check_nonnegative_float(f"Conv2D({key})", value)
        self.weight_regularizer_l1 = factors["weight_regularizer_l1"]
        self.weight_regularizer_l2 = factors["weight_regularizer_l2"]
        self.bias_regularizer_l1 = factors["bias_regularizer_l1"]
        self.bias_regularizer_l2 = factors["bias_regularizer_l2"]
        # Set by the model when the next layer is an activation it fuses into this one.
        self.fused_activation = "linear"
        self.fused_alpha = 0.01
        self.weights: Array = None
        self.biases: Array = None
        self.dweights: Array = None
        self.dbiases: Array = None
        self.optimizer_state: dict[str, dict[str, Array]] = {}
        self._cols: Array = None

    @staticmethod
    def _padding_pair(padding: Any) -> tuple[int, int]:
        values = padding if isinstance(padding, list | tuple) else (padding, padding)
        ok = len(values) == 2 and all(
            isinstance(v, int | numpy.integer) and not isinstance(v, bool) and v >= 0
            for v in values
        )
        if not ok:
            raise InputError(
                f"Conv2D(padding): expected a whole number >= 0, a pair of them, 'same' or "
                f"'valid', got {padding!r}"
            )
        return int(values[0]), int(values[1])

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels, *self.kernel_size)

    def build(self, backend: Backend, dtype: Any, rng: numpy.random.Generator) -> None:
        """Draw the initial parameters on the host from ``rng``, then move them to ``backend``."""
        super().build(backend, dtype, rng)
        self.weights = backend.asarray(self.weight_initializer(self.weight_shape, rng, self.dtype))
        self.biases = backend.asarray(
            self.bias_initializer((1, self.out_channels), rng, self.dtype)
        )
        self.dweights = None
        self.dbiases = None
        self.optimizer_state = {}
        self._cols = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(out_channels, oh, ow)`` for images ``(in_channels, h, w)``."""
        _image_shape(self, input_shape, self.in_channels)
        _, h, w = input_shape
        oh = conv_output_size(h, self.kernel_size[0], self.stride[0], self.padding[0])
        ow = conv_output_size(w, self.kernel_size[1], self.stride[1], self.padding[1])
        if oh < 1 or ow < 1:
            raise InputError(
                f"{self!r}: a {self.kernel_size[0]}x{self.kernel_size[1]} kernel with padding "
                f"{self.padding} does not fit images of {h}x{w}; use a smaller kernel or more "
                "padding"
            )
        return (self.out_channels, oh, ow)

    def input_size(self) -> int | None:
        raise InputError(
            f"{self!r} takes images (n, c, h, w) but a model's data are rows (n, features); "
            f"put Reshape(({self.in_channels}, h, w)) before it"
        )

    def parameter_count(self) -> int:
        return math.prod(self.weight_shape) + self.out_channels

    def forward(self, inputs: Array, training: bool = False) -> Array:
        """``fused_activation(conv2d(inputs, weights) + biases)``.

        inputs (n, in_channels, h, w) -> output (n, out_channels, oh, ow).
        """
        backend = self._ensure_built(inputs)
        _check_images(self, inputs, self.in_channels)
        self.output_shape(tuple(inputs.shape[1:]))  # a kernel larger than the image
        self.inputs = inputs
        self.output, cols = backend.conv2d_forward(
            inputs,
            self.weights,
            self.biases,
            self.stride,
            self.padding,
            self.fused_activation,
            self.fused_alpha,
        )
        # The patches are kept for the backward pass only: at inference they are large.
        self._cols = cols if training else None
        return self.output

    def backward(self, dvalues: Array, need_dinputs: bool = True, overwrite: bool = False) -> Array:
        """Gradients of the data loss; sets ``dweights`` (c_out, c_in, kh, kw), ``dbiases``
        (1, c_out) and ``dinputs`` (n, c_in, h, w) from ``dvalues`` (n, c_out, oh, ow).

        Regularization is not added here: the optimizer folds it into its step.
        """
        backend = self._gradient_buffers()
        return self._take_gradients(
            *backend.conv2d_backward(dvalues, *self._backward_args(need_dinputs))
        )

    def backward_through_pool(
        self, pool: MaxPool2D, dvalues: Array, need_dinputs: bool = True
    ) -> Array:
        """:meth:`backward` of this layer after ``pool.backward(dvalues)`` of the
        :class:`MaxPool2D` that pooled this layer's output, in one backend call
        (``conv2d_maxpool_backward``): the same ``dweights``, ``dbiases`` and ``dinputs``
        from the pooled gradient ``dvalues`` (n, c_out, ph_out, pw_out). The gradient of this
        layer's output is not formed (``pool.dinputs`` is None)."""
        backend = self._gradient_buffers()
        grads = backend.conv2d_maxpool_backward(
            dvalues, pool.argmax, pool.pool_size, pool.stride, *self._backward_args(need_dinputs)
        )
        pool.dinputs = None
        return self._take_gradients(*grads)

    def _backward_args(self, need_dinputs: bool) -> tuple[Any, ...]:
        """``x, w, y, cols, stride, padding, activation, alpha, need_dx, out`` of the
        backend's conv2d_backward (and conv2d_maxpool_backward after its pooling's)."""
        return (
            self.inputs,
            self.weights,
            self.output,
            self._cols,
            self.stride,
            self.padding,
            self.fused_activation,
            self.fused_alpha,
            need_dinputs,
            (self.dweights, self.dbiases),
        )

    def _gradient_buffers(self) -> Backend:
        backend = self.backend
        assert backend is not None, "call forward() before backward()"
        if self.dweights is None:
            self.dweights = backend.empty(self.weights.shape, self.dtype)
            self.dbiases = backend.empty(self.biases.shape, self.dtype)
        return backend

    def _take_gradients(self, dx: Array | None, dw: Array, db: Array) -> Array:
        backend = self.backend
        assert backend is not None
        # Gradients are written into the arrays already held (the model's flat buffer once
        # the optimizer has packed them), so the optimizer steps over them in place, and a
        # captured step writes them with the same launches. A backend that returned others
        # (a strided array it would not write) has them copied in.
        if dw is not self.dweights:
            backend.copy_into_inplace(self.dweights, dw)
        if db is not self.dbiases:
            backend.copy_into_inplace(self.dbiases, db)
        self.dinputs = dx
        return dx

    def parameters(self) -> list[tuple[str, Array, Array | None, float, float]]:
        return [
            ("weights", self.weights, self.dweights, self.weight_regularizer_l1,
             self.weight_regularizer_l2),
            ("biases", self.biases, self.dbiases, self.bias_regularizer_l1,
             self.bias_regularizer_l2),
        ]  # fmt: skip

    def regularization_loss(self) -> Array | None:
        backend = self.backend
        if backend is None:
            return None
        total = None
        for _, value, _, l1, l2 in self.parameters():
            if l1 > 0 or l2 > 0:
                term = backend.regularization_loss(value, l1, l2)
                total = term if total is None else total + term
        return total

    def get_config(self) -> dict[str, Any]:
        padding = self.padding_spec
        return {
            "class": "Conv2D",
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": padding if isinstance(padding, str) else list(padding),
            "weight_initializer": self.weight_initializer.get_config(),
            "bias_initializer": self.bias_initializer.get_config(),
            "weight_regularizer_l1": self.weight_regularizer_l1,
            "weight_regularizer_l2": self.weight_regularizer_l2,
            "bias_regularizer_l1": self.bias_regularizer_l1,
            "bias_regularizer_l2": self.bias_regularizer_l2,
        }

    def __repr__(self) -> str:
        kh, kw = self.kernel_size
        text = f"Conv2D({self.in_channels}, {self.out_channels}, {kh if kh == kw else (kh, kw)}"
        if self.stride != (1, 1):
            text += f", stride={self.stride[0] if len(set(self.stride)) == 1 else self.stride}"
        if self.padding_spec == "same":
            text += ", padding='same'"
        elif self.padding != (0, 0):
            ph, pw = self.padding
            text += f", padding={ph if ph == pw else self.padding}"
        return text + ")"


class _Pool2D(Layer):
    """Pooling over ``pool_size`` windows moved by ``stride`` (default: the pool size, so
    windows do not overlap); no padding, and a partial window at the edge is dropped."""

    def __init__(
        self, pool_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None
    ) -> None:
        name = type(self).__name__
        self.pool_size = _pair(f"{name}(pool_size)", pool_size)
        self.stride = self.pool_size if stride is None else _pair(f"{name}(stride)", stride)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(c, oh, ow)`` with ``oh = (h - ph) // sh + 1`` for images ``(c, h, w)``."""
        _image_shape(self, input_shape)
        c, h, w = input_shape
        oh = conv_output_size(h, self.pool_size[0], self.stride[0], 0)
        ow = conv_output_size(w, self.pool_size[1], self.stride[1], 0)
        if oh < 1 or ow < 1:
            raise InputError(
                f"{self!r}: a {self.pool_size[0]}x{self.pool_size[1]} window does not fit "
                f"images of {h}x{w}; use a smaller pool"
            )
        return (c, oh, ow)

    def input_size(self) -> int | None:
        raise InputError(
            f"{self!r} takes images (n, c, h, w) but a model's data are rows (n, features); "
            "put Reshape((c, h, w)) before it"
        )

    def _check(self, inputs: Array) -> Backend:
        backend = self._ensure_built(inputs)
        _check_images(self, inputs)
        self.output_shape(tuple(inputs.shape[1:]))
        self.inputs = inputs
        return backend

    def get_config(self) -> dict[str, Any]:
        return {
            "class": type(self).__name__,
            "pool_size": list(self.pool_size),
            "stride": list(self.stride),
        }

    def __repr__(self) -> str:
        ph, pw = self.pool_size
        text = f"{type(self).__name__}({ph if ph == pw else self.pool_size}"
        if self.stride != self.pool_size:
            sh, sw = self.stride
            text += f", stride={sh if sh == sw else self.stride}"
        return text + ")"


class MaxPool2D(_Pool2D):
    """Max pooling: inputs (n, c, h, w) -> output (n, c, oh, ow).

    Keeps ``argmax``, the position of each maximum in its window, for the backward pass,
    which sends each gradient to that one input (overlapping windows add).
    """

    def forward(self, inputs: Array, training: bool = False) -> Array:
        backend = self._check(inputs)
        self.output, self.argmax = backend.maxpool2d_forward(inputs, self.pool_size, self.stride)
        return self.output

    def backward(self, dvalues: Array, need_dinputs: bool = True, overwrite: bool = False) -> Array:
        self.dinputs = self.backend.maxpool2d_backward(  # type: ignore[union-attr]
            dvalues, self.argmax, tuple(self.inputs.shape), self.pool_size, self.stride
        )
        return self.dinputs


class AvgPool2D(_Pool2D):
    """Average pooling: inputs (n, c, h, w) -> output (n, c, oh, ow); the backward pass
    shares each gradient equally among its window's inputs."""

    def forward(self, inputs: Array, training: bool = False) -> Array:
        backend = self._check(inputs)
        self.output = backend.avgpool2d_forward(inputs, self.pool_size, self.stride)
        return self.output

    def backward(self, dvalues: Array, need_dinputs: bool = True, overwrite: bool = False) -> Array:
        self.dinputs = self.backend.avgpool2d_backward(  # type: ignore[union-attr]
            dvalues, tuple(self.inputs.shape), self.pool_size, self.stride
        )
        return self.dinputs


class Flatten(Layer):
    """Each sample as one row: inputs (n, d1, d2, ...) -> output (n, d1 * d2 * ...)."""

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(input_shape),)

    def forward(self, inputs: Array, training: bool = False) -> Array:
        self._ensure_built(inputs)
        if inputs.ndim < 2:
            raise InputError(f"Flatten: expected a batch (n, ...), got shape {tuple(inputs.shape)}")
        self.inputs = inputs
        self.output = inputs.reshape(inputs.shape[0], -1)
        return self.output

    def backward(self, dvalues: Array, need_dinputs: bool = True, overwrite: bool = False) -> Array:
        self.dinputs = dvalues.reshape(tuple(self.inputs.shape))
        return self.dinputs

    def __repr__(self) -> str:
        return "Flatten()"


class Reshape(Layer):
    """Each sample to ``shape``: inputs (n, prod(shape)) (or any (n, ...) of that size) ->
    output (n, *shape). ``Reshape((1, 28, 28))`` turns MNIST rows into images.

    Parameters
    ----------
    shape : tuple of int
        The shape of one output sample, e.g. ``(channels, height, width)``.
    """

    def __init__(self, shape: tuple[int, ...] | list[int]) -> None:
        if not isinstance(shape, list | tuple) or not shape:
            raise InputError(
                f"Reshape(shape): expected a tuple of sizes such as (1, 28, 28), got {shape!r}"
            )
        self.shape = tuple(check_positive_int("Reshape(shape)", n) for n in shape)
        self.size = math.prod(self.shape)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if math.prod(input_shape) != self.size:
            raise InputError(
                f"{self!r} expects {self.size} values per sample, got samples of shape "
                f"{tuple(input_shape)} ({math.prod(input_shape)} values)"
            )
        return self.shape

    def input_size(self) -> int | None:
        return self.size

    def forward(self, inputs: Array, training: bool = False) -> Array:
        self._ensure_built(inputs)
        if inputs.ndim < 1 or math.prod(inputs.shape[1:]) != self.size:
            raise InputError(
                f"{self!r}: expected {self.size} values per sample, got inputs of shape "
                f"{tuple(inputs.shape)}"
            )
        self.inputs = inputs
        self.output = inputs.reshape(inputs.shape[0], *self.shape)
        return self.output

    def backward(self, dvalues: Array, need_dinputs: bool = True, overwrite: bool = False) -> Array:
        self.dinputs = dvalues.reshape(tuple(self.inputs.shape))
        return self.dinputs

    def get_config(self) -> dict[str, Any]:
        return {"class": "Reshape", "shape": list(self.shape)}

    def __repr__(self) -> str:
        return f"Reshape({self.shape})"
