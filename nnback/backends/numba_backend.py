"""The Numba backend: NumPy arrays, BLAS GEMMs through NumPy, fused compiled kernels around them.

Only the fused ops are overridden. Each override checks that its kernel supports the call
(NumPy arrays of float32 or float64, one dtype for all of them, C-contiguous where a kernel
reads or writes them, the shapes the kernel assumes, writable outputs) and otherwise
returns the reference op with ``super()``, so every input the reference accepts still
works, at the reference's speed. The kernels live in :mod:`nnback.kernels.cpu`.

Hyper-parameters reach the kernels as Python floats and are rounded to the array dtype
inside, as NumPy rounds a Python scalar next to a float32 array: with Python-float
arguments the optimizer steps, dropout and the element-wise activations give bit-identical
results to the reference. A NumPy float64 scalar is treated the same way here, while NumPy
computes with it in float64; the difference is one rounding, well inside the parity table.
"""

from __future__ import annotations

from typing import Any

import numpy

from ..kernels.cpu import activations, dense, dropout, losses, metrics, optimizers, runtime
from ..kernels.cpu.support import (
    TINY,
    bias_row,
    flat_views,
    float_dtype,
    int64_labels,
    is_real,
    loss_value,
    nonempty_2d,
    scale_in_dtype_of,
    writable,
)
from .base import EPSILON_CLIP, Array, Backend, adam_scalars


class NumbaBackend(Backend):
    """The reference ops on NumPy arrays, with the fused ones compiled by Numba."""

    name = "numba"
    xp = numpy

    def info(self) -> dict[str, str]:
        """The array module, Numba's version and threading, and the BLAS and its threads."""
        facts = super().info()
        facts.update(runtime.threading_facts())
        facts.update(runtime.blas_facts())
        return facts

    # ------------------------------------------------------------------------------------
    # Activations
    # ------------------------------------------------------------------------------------
    def activation_forward(self, z: Array, activation: str, alpha: float = 0.01) -> Array:
        kernel = activations.FORWARD_KERNELS.get(activation)
        # "linear" is a copy: nothing to fuse.
        if (
            kernel is None
            or activation == "linear"
            or float_dtype(z) is None
            or not nonempty_2d(z)
            or not is_real(alpha)
        ):
            return super().activation_forward(z, activation, alpha)
        y = numpy.empty_like(z)
        if activation == "leaky_relu":
            kernel(z, None, y, float(alpha))
        else:
            kernel(z, None, y)
        return y

    def activation_backward(
        self, dy: Array, y: Array, activation: str, alpha: float = 0.01
    ) -> Array:
        kernel = dense.BACKWARD_KERNELS.get(activation)
        if (
            kernel is None
            or float_dtype(dy, y) is None
            or not nonempty_2d(dy)
            or dy.shape != y.shape
            or not is_real(alpha)
        ):
            return super().activation_backward(dy, y, activation, alpha)
        dz = numpy.empty_like(dy)
        if activation == "leaky_relu":
            kernel(dy, y, dz, None, float(alpha))
        else:
            kernel(dy, y, dz, None)
        return dz

    def softmax(self, z: Array) -> Array:
        if float_dtype(z) is None or not nonempty_2d(z):
            return super().softmax(z)
        y = numpy.empty_like(z)
        activations.softmax_forward(z, None, y)
        return y

    # ------------------------------------------------------------------------------------
    # Dense layer
    # ------------------------------------------------------------------------------------
    def bias_activation_inplace(
        self, z: Array, b: Array, activation: str = "linear", alpha: float = 0.01
    ) -> None:
        # The GEMM before it is the base class's (numpy.matmul into the workspace); this is
        # the one pass over its output that the reference makes in two or three.
        kernel = activations.FORWARD_KERNELS.get(activation)
        dtype = float_dtype(z)
        ok = (
            kernel is not None
            and dtype is not None
            and nonempty_2d(z)
            and writable(z)
            and is_real(alpha)
        )
        bias = bias_row(b, dtype, z.shape[1]) if ok else None
        if bias is None:
            super().bias_activation_inplace(z, b, activation, alpha)
        elif activation == "leaky_relu":
            kernel(z, bias, None, float(alpha))
        else:
            kernel(z, bias, None)

    def activation_bias_backward(
        self,
        dy: Array,
        y: Array,
        activation: str = "linear",
        alpha: float = 0.01,
        overwrite_dy: bool = False,
        out_db: Array | None = None,
    ) -> tuple[Array, Array]:
        kernel = dense.BACKWARD_KERNELS.get(activation)
        dtype = float_dtype(dy, y)
        ok = (
            (kernel is not None or activation == "linear")
            and dtype is not None
            and nonempty_2d(dy)
            and dy.shape == y.shape
            and is_real(alpha)
        )
        k_out = dy.shape[-1] if ok else 0
        if ok and out_db is not None:
            ok = bias_row(out_db, dtype, k_out) is not None and writable(out_db)
        if not ok:
            return super().activation_bias_backward(dy, y, activation, alpha, overwrite_dy, out_db)
        db = numpy.empty((1, k_out), dtype=dtype) if out_db is None else out_db
        db_row = db.reshape(k_out)
        if kernel is None:
            # "linear": dz is dy itself (the reference's copy of it is never modified).
            dense.column_sums(dy, db_row)
            return dy, db
        # overwrite_dy: write dz over dy (it is read at the same index just before).
        dz = dy if overwrite_dy and writable(dy) else numpy.empty_like(dy)
        target = None if dz is dy else dz
        if activation == "leaky_relu":
            kernel(dy, y, target, db_row, float(alpha))
        else:
            kernel(dy, y, target, db_row)
        return dz, db

    # ------------------------------------------------------------------------------------
    # Losses
    # ------------------------------------------------------------------------------------
    def softmax_crossentropy(
        self, logits: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        dtype = float_dtype(logits)
        if dtype is not None and nonempty_2d(logits):
            grad = numpy.empty_like(logits) if with_grad else None
            labels = int64_labels(y_true, logits.shape[0])
            if labels is not None:
                mean, bad = losses.softmax_crossentropy_labels(logits, labels, grad)
                if bad < 0:
                    return loss_value(mean, dtype), grad
            elif float_dtype(logits, y_true) is not None and y_true.shape == logits.shape:
                mean = losses.softmax_crossentropy_onehot(logits, y_true, grad)
                return loss_value(mean, dtype), grad
        return super().softmax_crossentropy(logits, y_true, with_grad)

    def categorical_crossentropy(
        self, y_pred: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        dtype = float_dtype(y_pred)
        if dtype is not None and nonempty_2d(y_pred):
            grad = numpy.empty_like(y_pred) if with_grad else None
            labels = int64_labels(y_true, y_pred.shape[0])
            bounds = (EPSILON_CLIP, 1 - EPSILON_CLIP)
            if labels is not None:
                mean, bad = losses.categorical_crossentropy_labels(y_pred, labels, grad, *bounds)
                if bad < 0:
                    return loss_value(mean, dtype), grad
            elif float_dtype(y_pred, y_true) is not None and y_true.shape == y_pred.shape:
                mean = losses.categorical_crossentropy_onehot(y_pred, y_true, grad, *bounds)
                return loss_value(mean, dtype), grad
        return super().categorical_crossentropy(y_pred, y_true, with_grad)

    def _elementwise_loss(
        self, kernel: Any, y_pred: Array, y_true: Array, with_grad: bool, *args: float
    ) -> tuple[Array, Array | None] | None:
        """Run an element-wise loss kernel, or return None when it cannot take the call."""
        dtype = float_dtype(y_pred, y_true)
        if dtype is None or not nonempty_2d(y_pred) or y_true.shape != y_pred.shape:
            return None
        grad = numpy.empty_like(y_pred) if with_grad else None
        return loss_value(kernel(y_pred, y_true, grad, *args), dtype), grad

    def binary_crossentropy(
        self, y_pred: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        result = self._elementwise_loss(
            losses.binary_crossentropy, y_pred, y_true, with_grad, EPSILON_CLIP, 1 - EPSILON_CLIP
        )
        return result or super().binary_crossentropy(y_pred, y_true, with_grad)

    def mean_squared_error(
        self, y_pred: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        result = self._elementwise_loss(losses.mean_squared_error, y_pred, y_true, with_grad)
        return result or super().mean_squared_error(y_pred, y_true, with_grad)

    def mean_absolute_error(
        self, y_pred: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        result = self._elementwise_loss(losses.mean_absolute_error, y_pred, y_true, with_grad)
        return result or super().mean_absolute_error(y_pred, y_true, with_grad)

    # ------------------------------------------------------------------------------------
    # Metrics
    # ------------------------------------------------------------------------------------
    def count_correct(self, y_pred: Array, y_true: Array) -> Array:
        # Several columns and integer labels (accuracy in training, every step): one pass
        # instead of argmax, compare and sum. Thresholded and one-hot cases: the reference.
        labels = None
        if float_dtype(y_pred) is not None and nonempty_2d(y_pred) and y_pred.shape[1] > 1:
            labels = int64_labels(y_true, y_pred.shape[0])
        if labels is None:
            return super().count_correct(y_pred, y_true)
        return numpy.int64(metrics.count_argmax_matches(y_pred, labels))

    # ------------------------------------------------------------------------------------
    # Dropout
    # ------------------------------------------------------------------------------------
    def _masked_scale(self, x: Array, keep_mask: Array, scale: float) -> Array | None:
        """``x * (keep_mask * scale)`` in x's dtype, or None when the kernel cannot take it."""
        dtype = float_dtype(x)
        if (
            dtype is None
            or type(keep_mask) is not numpy.ndarray
            or keep_mask.shape != x.shape
            or not keep_mask.flags.c_contiguous
            or (keep_mask.dtype != dtype and keep_mask.dtype != numpy.bool_)
            or not is_real(scale)
        ):
            return None
        out = numpy.empty_like(x)
        dropout.masked_scale(x.reshape(-1), keep_mask.reshape(-1), float(scale), out.reshape(-1))
        return out

    def dropout_forward(self, x: Array, keep_mask: Array, scale: float) -> Array:
        out = self._masked_scale(x, keep_mask, scale)
        if out is None:
            return super().dropout_forward(x, keep_mask, scale_in_dtype_of(x, keep_mask, scale))
        return out

    def dropout_backward(self, dy: Array, keep_mask: Array, scale: float) -> Array:
        out = self._masked_scale(dy, keep_mask, scale)
        if out is None:
            return super().dropout_backward(dy, keep_mask, scale_in_dtype_of(dy, keep_mask, scale))
        return out

    # ------------------------------------------------------------------------------------
    # Optimizer steps
    # ------------------------------------------------------------------------------------
    def sgd_update_inplace(
        self,
        param: Array,
        grad: Array,
        velocity: Array | None,
        learning_rate: float,
        momentum: float = 0.0,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        if is_real(learning_rate, momentum, l1, l2):
            if momentum == 0 or velocity is None:
                flat = flat_views(param, grad)
                if flat is not None:
                    optimizers.sgd(*flat, float(learning_rate), float(l1), float(l2))
                    return
            else:
                flat = flat_views(param, grad, velocity)
                if flat is not None:
                    optimizers.sgd_momentum(
                        *flat,
                        float(learning_rate),
                        float(momentum),
                        float(l1),
                        float(l2),
                        TINY[param.dtype],
                    )
                    return
        super().sgd_update_inplace(param, grad, velocity, learning_rate, momentum, l1, l2)

    def adagrad_update_inplace(
        self,
        param: Array,
        grad: Array,
        cache: Array,
        learning_rate: float,
        epsilon: float = 1e-7,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        flat = flat_views(param, grad, cache)
        if flat is None or not is_real(learning_rate, epsilon, l1, l2):
            super().adagrad_update_inplace(param, grad, cache, learning_rate, epsilon, l1, l2)
            return
        optimizers.adagrad(
            *flat, float(learning_rate), float(epsilon), float(l1), float(l2), TINY[param.dtype]
        )

    def rmsprop_update_inplace(
        self,
        param: Array,
        grad: Array,
        cache: Array,
        learning_rate: float,
        rho: float = 0.9,
        epsilon: float = 1e-7,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        flat = flat_views(param, grad, cache)
        if flat is None or not is_real(learning_rate, rho, epsilon, l1, l2):
            super().rmsprop_update_inplace(param, grad, cache, learning_rate, rho, epsilon, l1, l2)
            return
        optimizers.rmsprop(
            *flat,
            float(learning_rate),
            float(rho),
            float(epsilon),
            float(l1),
            float(l2),
            TINY[param.dtype],
        )

    def adam_update_inplace(
        self,
        param: Array,
        grad: Array,
        m: Array,
        v: Array,
        learning_rate: float,
        step: int,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        flat = flat_views(param, grad, m, v)
        if (
            flat is None
            or not is_real(learning_rate, step, beta_1, beta_2, epsilon, l1, l2)
            or step < 1  # the reference raises the error
        ):
            super().adam_update_inplace(
                param, grad, m, v, learning_rate, step, beta_1, beta_2, epsilon, l1, l2
            )
            return
        # The bias corrections in Python floats, exactly as the reference computes them.
        step_size, root_correction = adam_scalars(learning_rate, step, beta_1, beta_2)
        optimizers.adam(
            *flat,
            float(step_size),
            float(beta_1),
            float(beta_2),
            float(epsilon),
            float(root_correction),
            float(l1),
            float(l2),
            TINY[param.dtype],
        )
