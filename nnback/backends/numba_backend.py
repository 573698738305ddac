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

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy

from ..kernels.cpu import activations, conv, dense, dropout, losses, metrics, optimizers, runtime
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
from . import array_pool
from .base import EPSILON_CLIP, Array, Backend, adam_scalars
from .conv_ops import int_tuple, kernel_geometry


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
                    _run_flat(optimizers.sgd, flat, float(learning_rate), float(l1), float(l2))
                    return
            else:
                flat = flat_views(param, grad, velocity)
                if flat is not None:
                    _run_flat(
                        optimizers.sgd_momentum,
                        flat,
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
        _run_flat(
            optimizers.adagrad,
            flat,
            float(learning_rate),
            float(epsilon),
            float(l1),
            float(l2),
            TINY[param.dtype],
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
        _run_flat(
            optimizers.rmsprop,
            flat,
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
        runtime.prewake()  # its checks and allocations overlap the helpers' wake-up
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
        _run_flat(
            optimizers.adam,
            flat,
            float(step_size),
            float(beta_1),
            float(beta_2),
            float(epsilon),
            float(root_correction),
            float(l1),
            float(l2),
            TINY[param.dtype],
        )

    # ------------------------------------------------------------------------------------
    # Convolution and pooling
    # ------------------------------------------------------------------------------------
    # A convolution whose c_in * kh * kw is at most this (and stride 1) runs as a direct
    # convolution (conv.conv_direct_*): with so few taps the GEMM's inner dimension is too
    # short for BLAS, and im2col writes kh * kw copies of the input for it.
    conv_direct_max_taps = 27
    # Bytes of im2col columns per batch chunk of the GEMM path: a chunk's columns, GEMM
    # output and epilogue stay in the (2 MiB, per core) L2 cache between the kernels and
    # the single-threaded GEMMs that share them. Measured at batch 128, conv 32->64 3x3 on
    # 13x13: 1 MiB chunks (7 samples) ran the forward pass in 7.7 ms on one thread against
    # 10.8 ms for one 16 MiB chunk.
    conv_chunk_bytes = 1 << 20
    # Multiply-adds per chunk of a direct convolution, and values per chunk of a pooling:
    # enough work that the Python between chunks is small beside it.
    direct_chunk_work = 1 << 21
    pool_chunk_work = 1 << 16
    # A GEMM of at least this many multiply-adds inside compute_scope() is split by rows
    # over the kernel threads (BLAS then runs single-threaded).
    matmul_split_min_macs = 1 << 24

    def dense_backward(
        self,
        dy: Array,
        x: Array,
        w: Array,
        y: Array,
        activation: str = "linear",
        alpha: float = 0.01,
        need_dx: bool = True,
        overwrite_dy: bool = False,
        out: tuple[Array | None, Array | None, Array | None] | None = None,
    ) -> tuple[Array | None, Array, Array]:
        runtime.prewake()  # its checks and allocations overlap the helpers' wake-up
        # The reference's three calls; inside compute_scope the two GEMMs, which do not
        # depend on each other, run at once on two kernel threads when neither is large
        # enough to be split by rows itself (batch 32, 1600 -> 128: 0.43 -> 0.3 ms).
        out_dx, out_dw, out_db = out if out is not None else (None, None, None)
        dz, db = self.activation_bias_backward(dy, y, activation, alpha, overwrite_dy, out_db)
        if (
            need_dx
            and runtime.blas_is_single_threaded()
            and all(type(a) is numpy.ndarray for a in (x, w, dz))
            and x.ndim == 2
            and w.ndim == 2
            and dz.ndim == 2
            and x.dtype == w.dtype == dz.dtype
            and x.shape[0] == dz.shape[0]
            and w.shape == (x.shape[1], dz.shape[1])
            and x.size * dz.shape[1] < self.matmul_split_min_macs
        ):
            dw = _workspace(out_dw, w.shape, w.dtype)
            dx = _workspace(out_dx, x.shape, x.dtype)

            def gemm(k: int) -> None:
                if k == 0:
                    numpy.matmul(x.T, dz, out=dw)
                else:
                    numpy.matmul(dz, w.T, out=dx)

            runtime.run_chunks(gemm, 2)
            return dx, dw, db
        dw = self.matmul(x.T, dz, out=out_dw)
        dx = self.matmul(dz, w.T, out=out_dx) if need_dx else None
        return dx, dw, db

    def compute_scope(self, layers: Sequence[Any] = ()) -> contextlib.AbstractContextManager[Any]:
        """For a model with convolutions or pooling (or no ``layers`` given): BLAS on one
        thread for the whole loop, while nnback's kernel threads split each op by batch
        chunks (GEMMs included, :meth:`matmul`; see ``runtime.run_chunks``). For dense
        layers only, BLAS keeps its own threads: there the step is GEMMs, and BLAS shares
        one packed operand among its threads where a split packs it once per thread
        (measured: an MLP epoch at batch 512 or 1024 ran 7-20 % slower split). The conv
        and pooling ops' large outputs are recycled either way (``array_pool``)."""
        chunked = not layers or any(_is_image_layer(layer) for layer in layers)
        return _compute_scope(chunked)

    def matmul(self, a: Array, b: Array, out: Array | None = None) -> Array:
        if (
            out is None
            or not runtime.blas_is_single_threaded()  # only with several kernel threads
            or type(a) is not numpy.ndarray
            or type(b) is not numpy.ndarray
            or type(out) is not numpy.ndarray
            or a.ndim != 2
            or b.ndim != 2
            or out.shape != (a.shape[0], b.shape[1])
            or a.shape[1] != b.shape[0]
            or a.shape[0] * a.shape[1] * b.shape[1] < self.matmul_split_min_macs
        ):
            # The reference's own call (not a fallback: BLAS is this backend's GEMM too).
            return numpy.matmul(a, b) if out is None else numpy.matmul(a, b, out=out)
        # Rows of the product on the kernel threads. No sum is split, but BLAS may block a
        # GEMM of fewer rows differently: measured, most shapes gave the unsplit product's
        # bits and some differed in the last place (parity tolerances cover it).
        # One chunk per thread: a GEMM of few rows runs below BLAS's speed.
        per_row = a.shape[1] * b.shape[1]
        share = -(-a.shape[0] // runtime.kernel_threads())
        rows = runtime.batch_chunks(a.shape[0], per_row, max(share * per_row, 1))

        def part(k: int) -> None:
            r = slice(rows[k].start, rows[k].stop)
            numpy.matmul(a[r], b, out=out[r])

        runtime.run_chunks(part, len(rows))
        return out

    def im2col(
        self,
        x: Array,
        kernel: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
    ) -> Array:
        geometry = _conv_geometry(x, kernel, stride, padding)
        if float_dtype(x) is None or geometry is None:
            return super().im2col(x, kernel, stride, padding)
        (kh, kw), (sh, sw), (ph, pw), (oh, ow) = geometry
        n, c = x.shape[0], x.shape[1]
        cols = numpy.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
        conv.im2col(x, kh, kw, sh, sw, ph, pw, 0, n, cols, 0)
        return cols

    def col2im(
        self,
        cols: Array,
        x_shape: tuple[int, int, int, int],
        kernel: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
    ) -> Array:
        shape = int_tuple(x_shape, 4, 1)
        geometry = None if shape is None else _conv_geometry(shape, kernel, stride, padding)
        if float_dtype(cols) is None or geometry is None:
            return super().col2im(cols, x_shape, kernel, stride, padding)
        (kh, kw), (sh, sw), (ph, pw), (oh, ow) = geometry
        n, c = shape[0], shape[1]
        if cols.shape != (c * kh * kw, n * oh * ow):
            return super().col2im(cols, x_shape, kernel, stride, padding)
        dx = numpy.empty(shape, dtype=cols.dtype)
        conv.col2im(cols, 0, kh, kw, sh, sw, ph, pw, 0, n, dx)
        return dx

    def conv_bias_activation(
        self, z: Array, b: Array, activation: str = "linear", alpha: float = 0.01
    ) -> Array:
        dtype = float_dtype(z)
        code = conv.ACTIVATION_CODES.get(activation)
        ok = dtype is not None and code is not None and z.ndim == 4 and is_real(alpha)
        bias = bias_row(b, dtype, z.shape[0]) if ok else None
        if bias is None:
            return super().conv_bias_activation(z, b, activation, alpha)
        c_out, n, oh, ow = z.shape
        y = array_pool.empty((n, c_out, oh, ow), dtype=dtype)
        conv.epilogue_forward(
            z.reshape(c_out, n * oh * ow),
            0,
            bias,
            y.reshape(n, c_out, oh * ow),
            0,
            n,
            _fused_code(code),
            float(alpha),
        )
        self._conv_activation_rest(y, activation)
        return y

    def conv_activation_bias_backward(
        self,
        dy: Array,
        y: Array,
        activation: str = "linear",
        alpha: float = 0.01,
        out_db: Array | None = None,
    ) -> tuple[Array, Array]:
        code = conv.ACTIVATION_CODES.get(activation)
        if (
            code is None
            or float_dtype(dy, y) is None
            or dy.ndim != 4
            or dy.shape != y.shape
            or not is_real(alpha)
        ):
            return super().conv_activation_bias_backward(dy, y, activation, alpha, out_db)
        n, c_out, oh, ow = dy.shape
        dz = numpy.empty((c_out, n, oh, ow), dtype=dy.dtype)
        db_parts = numpy.zeros((c_out, oh * ow), dtype=dy.dtype)
        conv.epilogue_backward(
            dy.reshape(n, c_out, oh * ow),
            y.reshape(n, c_out, oh * ow),
            0,
            n,
            dz.reshape(c_out, n * oh * ow),
            0,
            db_parts,
            code,
            float(alpha),
        )
        db = db_parts.sum(axis=1).reshape(1, c_out)
        if out_db is not None:
            out_db[...] = db.reshape(out_db.shape)
            db = out_db
        return dz, db

    def _conv_activation_rest(self, y: Array, activation: str) -> None:
        """sigmoid/tanh after a linear epilogue: the dense kernels' passes, in place."""
        if _fused_code(conv.ACTIVATION_CODES[activation]) == 0 and activation != "linear":
            n, c = y.shape[0], y.shape[1]
            activations.FORWARD_KERNELS[activation](y.reshape(n * c, -1), None, None)

    def _conv_checks(
        self,
        x: Array,
        w: Array,
        stride: Any,
        padding: Any,
        activation: str,
        alpha: Any,
        *others: Array,
    ) -> tuple[Any, ...] | None:
        """The geometry of a convolution the kernels can run, or None (the reference's)."""
        if (
            conv.ACTIVATION_CODES.get(activation) is None
            or not is_real(alpha)
            or float_dtype(x, w, *others) is None
            or w.ndim != 4
            or x.ndim != 4
            or x.shape[1] != w.shape[1]
            or min(w.shape) < 1
        ):
            return None
        return _conv_geometry(x, w.shape[2:], stride, padding)

    def _direct(self, w: Array, stride: tuple[int, int]) -> bool:
        return (
            stride == (1, 1) and w.shape[1] * w.shape[2] * w.shape[3] <= self.conv_direct_max_taps
        )

    def conv2d_forward(
        self,
        x: Array,
        w: Array,
        b: Array,
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        activation: str = "linear",
        alpha: float = 0.01,
    ) -> tuple[Array, Array]:
        runtime.prewake()  # its checks and allocations overlap the helpers' wake-up
        geometry = self._conv_checks(x, w, stride, padding, activation, alpha)
        bias = bias_row(b, x.dtype, w.shape[0]) if geometry is not None else None
        if bias is None:
            return super().conv2d_forward(x, w, b, stride, padding, activation, alpha)
        (kh, kw), (sh, sw), (ph, pw), (oh, ow) = geometry
        n, c_in = x.shape[0], x.shape[1]
        c_out = w.shape[0]
        dtype = x.dtype
        code = _fused_code(conv.ACTIVATION_CODES[activation])
        y = array_pool.empty((n, c_out, oh, ow), dtype=dtype)
        cols = None
        if self._direct(w, (sh, sw)):
            xp = _padded(x, ph, pw)

            def direct(s0: int, s1: int) -> None:
                conv.conv_direct_forward(xp[s0:s1], w, bias, y[s0:s1], code, float(alpha))

            chunks = runtime.batch_chunks(n, y[0].size * w[0].size, self.direct_chunk_work)
            _run_ranges(direct, chunks)
        else:
            # Chunk by chunk: im2col of a few samples into a cache-sized workspace of the
            # thread's own, the GEMM, the epilogue into y. The columns are not kept (None:
            # the backward pass makes them again, chunk by chunk, which measured faster than
            # writing and reading back the whole matrix, c_in * kh * kw times the size of x).
            taps, npos = c_in * kh * kw, oh * ow
            w2 = w.reshape(c_out, taps)
            y3 = y.reshape(n, c_out, npos)
            chunks = runtime.batch_chunks(n, taps * npos * dtype.itemsize, self.conv_chunk_bytes)

            def forward(s0: int, s1: int) -> None:
                m = (s1 - s0) * npos
                part = _scratch("cols", taps * m, dtype).reshape(taps, m)
                z = _scratch("z", c_out * m, dtype).reshape(c_out, m)
                conv.im2col(x, kh, kw, sh, sw, ph, pw, s0, s1, part, 0)
                numpy.matmul(w2, part, out=z)
                conv.epilogue_forward(z, 0, bias, y3, s0, s1, code, float(alpha))

            _run_gemm_ranges(forward, chunks)
        self._conv_activation_rest(y, activation)
        return y, cols

    def conv2d_backward(
        self,
        dy: Array,
        x: Array,
        w: Array,
        y: Array,
        cols: Array | None = None,
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        activation: str = "linear",
        alpha: float = 0.01,
        need_dx: bool = True,
        out: tuple[Array | None, Array | None] | None = None,
    ) -> tuple[Array | None, Array, Array]:
        runtime.prewake()  # its checks and allocations overlap the helpers' wake-up
        geometry = self._conv_checks(x, w, stride, padding, activation, alpha, dy, y)
        if geometry is not None:
            (kh, kw), (sh, sw), (ph, pw), (oh, ow) = geometry
            n, c_out = x.shape[0], w.shape[0]
            if dy.shape != (n, c_out, oh, ow) or y.shape != dy.shape:
                geometry = None
        if geometry is None:
            return super().conv2d_backward(
                dy, x, w, y, cols, stride, padding, activation, alpha, need_dx, out
            )
        dtype = x.dtype
        code = conv.ACTIVATION_CODES[activation]
        if not need_dx and self._direct(w, (sh, sw)):
            # Each chunk sums into its own dw, db; the chunks are added in order after.
            xp = _padded(x, ph, pw)
            chunks = runtime.batch_chunks(n, 2 * y[0].size * w[0].size, self.direct_chunk_work)
            dws = array_pool.empty((len(chunks), *w.shape), dtype=dtype)
            dbs = array_pool.empty((len(chunks), c_out), dtype=dtype)

            def direct(k: int) -> None:
                s0, s1 = chunks[k].start, chunks[k].stop
                conv.conv_direct_backward(
                    dy[s0:s1], y[s0:s1], xp[s0:s1], dws[k], dbs[k], code, float(alpha)
                )

            runtime.run_chunks(direct, len(chunks))
            return (None, *_into_out(out, _sum_parts(dws), _sum_parts(dbs).reshape(1, c_out)))
        # ``cols`` is not read: the columns are made again chunk by chunk (see forward).
        dy3, y3 = dy.reshape(n, c_out, -1), y.reshape(n, c_out, -1)

        def dz_of(s0: int, s1: int, dz: Array, db_part: Array, _code: int = code) -> None:
            conv.epilogue_backward(dy3, y3, s0, s1, dz, 0, db_part, _code, float(alpha))

        return self._conv_backward_chunks(x, w, y, geometry, need_dx, out, dz_of)

    def _conv_backward_chunks(
        self,
        x: Array,
        w: Array,
        y: Array,
        geometry: tuple[Any, ...],
        need_dx: bool,
        out: tuple[Array | None, Array | None] | None,
        dz_of: Any,
    ) -> tuple[Array | None, Array, Array]:
        """conv2d_backward's im2col path chunk by chunk over the kernel threads, with
        ``dz_of(s0, s1, dz, db_part)`` writing a chunk's ``dz`` (c_out, m) and adding its
        bias-gradient partial sums."""
        (kh, kw), (sh, sw), (ph, pw), (oh, ow) = geometry
        n, c_in = x.shape[0], x.shape[1]
        c_out = w.shape[0]
        dtype = x.dtype
        taps, npos = c_in * kh * kw, oh * ow
        w2 = w.reshape(c_out, taps)
        chunks = runtime.batch_chunks(n, taps * npos * dtype.itemsize, self.conv_chunk_bytes)
        dx = array_pool.empty(x.shape, dtype) if need_dx else None
        # One weight gradient and one set of bias partial sums per chunk, added in order.
        dws = array_pool.empty((len(chunks), c_out, taps), dtype)
        db_parts = array_pool.empty((len(chunks), c_out, npos), dtype)
        db_parts.fill(0)

        def backward(k: int) -> None:
            s0, s1 = chunks[k].start, chunks[k].stop
            m = (s1 - s0) * npos
            dz = _scratch("dz", c_out * m, dtype).reshape(c_out, m)
            part = _scratch("cols", taps * m, dtype).reshape(taps, m)
            dz_of(s0, s1, dz, db_parts[k])
            conv.im2col(x, kh, kw, sh, sw, ph, pw, s0, s1, part, 0)
            numpy.matmul(dz, part.T, out=dws[k])
            if dx is not None:
                dcols = _scratch("dcols", taps * m, dtype).reshape(taps, m)
                numpy.matmul(w2.T, dz, out=dcols)
                conv.col2im(dcols, 0, kh, kw, sh, sw, ph, pw, s0, s1, dx)

        _run_gemm_ranges(backward, chunks, by_index=True)
        db = _sum_parts(db_parts).sum(axis=1).reshape(1, c_out)
        return (dx, *_into_out(out, _sum_parts(dws).reshape(w.shape), db))

    def conv2d_maxpool_backward(
        self,
        dp: Array,
        argmax: Array,
        pool: tuple[int, int],
        pool_stride: tuple[int, int],
        x: Array,
        w: Array,
        y: Array,
        cols: Array | None = None,
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        activation: str = "linear",
        alpha: float = 0.01,
        need_dx: bool = True,
        out: tuple[Array | None, Array | None] | None = None,
    ) -> tuple[Array | None, Array, Array]:
        runtime.prewake()  # its checks and allocations overlap the helpers' wake-up
        geometry = self._pooled_geometry(dp, argmax, pool, pool_stride, x, w, y, stride, padding)
        if geometry is None or conv.ACTIVATION_CODES.get(activation) is None or not is_real(alpha):
            return super().conv2d_maxpool_backward(
                dp, argmax, pool, pool_stride, x, w, y, cols, stride, padding, activation,
                alpha, need_dx, out,
            )  # fmt: skip
        (kh, kw), (sh, sw), (ph, pw), (oh, ow) = geometry
        n, c_out = x.shape[0], w.shape[0]
        dtype = x.dtype
        code = conv.ACTIVATION_CODES[activation]
        if not need_dx and self._direct(w, (sh, sw)):
            xp = _padded(x, ph, pw)
            chunks = runtime.batch_chunks(n, 2 * y[0].size * w[0].size, self.direct_chunk_work)
            dws = array_pool.empty((len(chunks), *w.shape), dtype)
            dbs = array_pool.empty((len(chunks), c_out), dtype)

            def direct(k: int) -> None:
                s0, s1 = chunks[k].start, chunks[k].stop
                conv.conv_direct_backward_pooled(
                    dp[s0:s1], argmax[s0:s1], y[s0:s1], xp[s0:s1], dws[k], dbs[k], code,
                    float(alpha),
                )  # fmt: skip

            runtime.run_chunks(direct, len(chunks))
            return (None, *_into_out(out, _sum_parts(dws), _sum_parts(dbs).reshape(1, c_out)))

        def dz_of(s0: int, s1: int, dz: Array, db_part: Array, _code: int = code) -> None:
            conv.epilogue_backward_pooled(
                dp, argmax, y, s0, s1, dz, 0, db_part, _code, float(alpha)
            )

        return self._conv_backward_chunks(x, w, y, geometry, need_dx, out, dz_of)

    def _pooled_geometry(
        self,
        dp: Array,
        argmax: Array,
        pool: Any,
        pool_stride: Any,
        x: Array,
        w: Array,
        y: Array,
        stride: Any,
        padding: Any,
    ) -> tuple[Any, ...] | None:
        """The convolution's geometry when the fused kernels can take this pooled backward
        pass (2x2 windows at stride 2 over the convolution's output, a finite ``dp``)."""
        if (
            int_tuple(pool, 2, 1) != (2, 2)
            or int_tuple(pool_stride, 2, 1) != (2, 2)
            or float_dtype(dp, x, w, y) is None
            or type(argmax) is not numpy.ndarray
            or argmax.dtype != numpy.int32
            or not argmax.flags.c_contiguous
            or x.ndim != 4
            or w.ndim != 4
            or y.ndim != 4
            or dp.ndim != 4
            or x.shape[1] != w.shape[1]
            or min(w.shape) < 1
        ):
            return None
        geometry = _conv_geometry(x, w.shape[2:], stride, padding)
        if geometry is None:
            return None
        n, c_out, (oh, ow) = x.shape[0], w.shape[0], geometry[3]
        if (
            y.shape != (n, c_out, oh, ow)
            or dp.shape != (n, c_out, oh // 2, ow // 2)
            or argmax.shape != dp.shape
            or not numpy.isfinite(dp).all()
        ):
            return None
        return geometry

    def maxpool2d_forward(
        self, x: Array, pool: tuple[int, int], stride: tuple[int, int]
    ) -> tuple[Array, Array]:
        runtime.prewake()  # its checks and allocations overlap the helpers' wake-up
        geometry = _pool_geometry(x, pool, stride)
        if float_dtype(x) is None or geometry is None:
            return super().maxpool2d_forward(x, pool, stride)
        (ph, pw), (sh, sw), (oh, ow) = geometry
        n, c = x.shape[0], x.shape[1]
        y = array_pool.empty((n, c, oh, ow), dtype=x.dtype)
        argmax = array_pool.empty((n, c, oh, ow), dtype=numpy.int32)

        def pool(s0: int, s1: int) -> None:
            conv.maxpool_forward(x[s0:s1], ph, pw, sh, sw, y[s0:s1], argmax[s0:s1])

        _run_ranges(pool, runtime.batch_chunks(n, x[0].size, self.pool_chunk_work))
        return y, argmax

    def maxpool2d_backward(
        self,
        dy: Array,
        argmax: Array,
        x_shape: tuple[int, int, int, int],
        pool: tuple[int, int],
        stride: tuple[int, int],
    ) -> Array:
        runtime.prewake()  # its checks and allocations overlap the helpers' wake-up
        shape = int_tuple(x_shape, 4, 1)
        geometry = None if shape is None else _pool_geometry(shape, pool, stride)
        if (
            geometry is None
            or float_dtype(dy) is None
            or type(argmax) is not numpy.ndarray
            or argmax.dtype != numpy.int32
            or not argmax.flags.c_contiguous
            or argmax.shape != dy.shape
            or dy.shape != (*shape[:2], *geometry[2])
        ):
            return super().maxpool2d_backward(dy, argmax, x_shape, pool, stride)
        (ph, pw), (sh, sw), _ = geometry
        dx = array_pool.empty(shape, dtype=dy.dtype)

        def pool(s0: int, s1: int) -> None:
            conv.maxpool_backward(dy[s0:s1], argmax[s0:s1], ph, pw, sh, sw, dx[s0:s1])

        _run_ranges(pool, runtime.batch_chunks(shape[0], dx[0].size, self.pool_chunk_work))
        return dx

    def avgpool2d_forward(self, x: Array, pool: tuple[int, int], stride: tuple[int, int]) -> Array:
        geometry = _pool_geometry(x, pool, stride)
        if float_dtype(x) is None or geometry is None:
            return super().avgpool2d_forward(x, pool, stride)
        (ph, pw), (sh, sw), (oh, ow) = geometry
        y = array_pool.empty((x.shape[0], x.shape[1], oh, ow), dtype=x.dtype)
        conv.avgpool_forward(x, ph, pw, sh, sw, y)
        return y

    def avgpool2d_backward(
        self,
        dy: Array,
        x_shape: tuple[int, int, int, int],
        pool: tuple[int, int],
        stride: tuple[int, int],
    ) -> Array:
        shape = int_tuple(x_shape, 4, 1)
        geometry = None if shape is None else _pool_geometry(shape, pool, stride)
        if geometry is None or float_dtype(dy) is None or dy.shape != (*shape[:2], *geometry[2]):
            return super().avgpool2d_backward(dy, x_shape, pool, stride)
        (ph, pw), (sh, sw), _ = geometry
        dx = array_pool.empty(shape, dtype=dy.dtype)
        conv.avgpool_backward(dy, ph, pw, sh, sw, dx)
        return dx


def _fused_code(code: int) -> int:
    """The epilogue code for a forward pass: sigmoid/tanh (3, 4) run as linear first."""
    return code if code <= 2 else 0


def _conv_geometry(x: Any, kernel: Any, stride: Any, padding: Any) -> tuple[Any, ...] | None:
    """((kh, kw), (sh, sw), (ph, pw), (oh, ow)) of a convolution over ``x`` (an array or a
    shape), or None when a kernel cannot take it (the reference then runs or raises)."""
    shape = x if isinstance(x, tuple) else x.shape
    geometry = kernel_geometry(shape, kernel, stride, padding)
    return None if geometry is None else (*geometry[1], geometry[2])


def _pool_geometry(x: Any, pool: Any, stride: Any) -> tuple[Any, ...] | None:
    """((ph, pw), (sh, sw), (oh, ow)) of a pooling over ``x`` (an array or a shape)."""
    geometry = _conv_geometry(x, pool, stride, (0, 0))
    return None if geometry is None else (geometry[0], geometry[1], geometry[3])


def _padded(x: Array, ph: int, pw: int) -> Array:
    """``x`` with ``ph``/``pw`` zero rows/columns on both sides (``x`` itself without)."""
    if not ph and not pw:
        return x
    n, c, h, w = x.shape
    out = array_pool.empty((n, c, h + 2 * ph, w + 2 * pw), x.dtype)
    out.fill(0)
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def _into_out(
    out: tuple[Array | None, Array | None] | None, dw: Array, db: Array
) -> tuple[Array, Array]:
    """``(dw, db)``, copied into the caller's ``out`` arrays where those fit (see
    ``Backend.conv2d_backward``): the kernels write workspaces of their own."""
    out_dw, out_db = out if out is not None else (None, None)
    if out_dw is not None and out_dw.shape == dw.shape and out_dw.dtype == dw.dtype:
        out_dw[...] = dw
        dw = out_dw
    if out_db is not None and out_db.size == db.size and out_db.dtype == db.dtype:
        out_db[...] = db.reshape(out_db.shape)
        db = out_db
    return dw, db


def _run_ranges(run: Any, chunks: list[range]) -> None:
    """``run(s0, s1)`` for every chunk, over the kernel threads (runtime.run_chunks)."""
    runtime.run_chunks(lambda k: run(chunks[k].start, chunks[k].stop), len(chunks))


def _run_gemm_ranges(run: Any, chunks: list[range], by_index: bool = False) -> None:
    """As :func:`_run_ranges` for chunks that each call a GEMM: over the kernel threads
    only when BLAS can be held to one thread meanwhile (two threads each driving a
    multi-threaded GEMM would oversubscribe the cores), else one chunk after another."""
    call = run if by_index else (lambda k: run(chunks[k].start, chunks[k].stop))
    with runtime.blas_single_threaded() as single:
        if single:
            runtime.run_chunks(call, len(chunks))
        else:
            for k in range(len(chunks)):
                call(k)


def _sum_parts(parts: Array) -> Array:
    """``parts[0] + parts[1] + ...`` in that order (the per-chunk partial sums of a
    gradient): the same bits whichever threads made them."""
    total = parts[0].copy()
    for k in range(1, parts.shape[0]):
        total += parts[k]
    return total


_local = threading.local()


def _scratch(name: str, size: int, dtype: Any) -> Array:
    """A flat workspace of at least ``size`` values, the calling thread's own and kept
    between calls (a fresh large array costs page faults on every call, and those of two
    threads wait on each other in the kernel)."""
    cache = getattr(_local, "arrays", None)
    if cache is None:
        cache = _local.arrays = {}
    key = (name, numpy.dtype(dtype).str)
    array = cache.get(key)
    if array is None or array.size < size:
        array = cache[key] = numpy.empty(max(size, 1), dtype=dtype)
    return array[:size]


# Values per chunk of an element-wise optimizer step split over the kernel threads.
FLAT_CHUNK = 1 << 16


def _run_flat(kernel: Any, flat: tuple[Array, ...], *scalars: Any) -> None:
    """``kernel(*flat, *scalars)`` for an element-wise kernel over flat arrays of one size,
    cut into ranges over the kernel threads inside compute_scope (each value is computed
    alone, so the bits do not depend on the cut)."""
    size = flat[0].size
    if not runtime.blas_is_single_threaded() or size < 2 * FLAT_CHUNK:
        kernel(*flat, *scalars)
        return
    parts = runtime.batch_chunks(size, 1, FLAT_CHUNK)

    def part(k: int) -> None:
        r = slice(parts[k].start, parts[k].stop)
        kernel(*(a[r] for a in flat), *scalars)

    runtime.run_chunks(part, len(parts))


def _workspace(out: Array | None, shape: tuple[int, ...], dtype: Any) -> Array:
    """``out`` when it is a C-contiguous array of that shape and dtype, else a new one."""
    if (
        type(out) is numpy.ndarray
        and out.shape == tuple(shape)
        and out.dtype == dtype
        and out.flags.c_contiguous
    ):
        return out
    return numpy.empty(shape, dtype=dtype)


def _is_image_layer(layer: Any) -> bool:
    """A convolution or pooling layer (duck-typed: the layers import the backends)."""
    return hasattr(layer, "kernel_size") or hasattr(layer, "pool_size")


@contextlib.contextmanager
def _compute_scope(chunked: bool) -> Iterator[None]:
    with array_pool.scope():
        if chunked and runtime.parallel_enabled():
            with runtime.blas_single_threaded():
                yield
        else:
            yield
