"""How each fused CUDA kernel is launched: grids, blocks, workspaces and exact argument types.

:class:`KernelRunner` belongs to :class:`nnback.backends.cupy_backend.CupyBackend`, which
decides *whether* an op can use a kernel (and otherwise falls back to the reference);
this module says *how*, next to the sources whose signatures it must follow. Arguments are
passed as NumPy scalars of the kernel's parameter types (``numpy.int64`` for ``long long``,
``numpy.int32`` for ``int``, ``numpy.float64`` for ``double``) because the GPU reads their
bytes as they are; the fake device of the tests refuses anything else.

Every reduction is done by one block per row, per column tile and row chunk, or per chunk
of elements, in an order fixed by constants here, then summed again by one block: results
never depend on the grid, which is capped at 8 blocks per multiprocessor (grid-stride loops
do the rest). Workspaces come from CuPy's memory pool, which hands the same blocks back on
the next step, so a training loop allocates no new device memory after its first step.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy

from . import COMPILE_OPTIONS, MAX_BLOCK, load_source

__all__ = ["ACTIVATION_CODES", "NULL", "KernelRunner", "row_block"]

# Activation codes of the kernels: NNB_ACT_* in common.cuh (a test checks they agree).
ACTIVATION_CODES = {"linear": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}

BLOCK = 256  # threads per block of the element-wise kernels
COLUMN_BLOCK = (32, 8)  # bias gradient: 32 columns (coalesced reads) x 8 row lanes
ROWS_PER_CHUNK = 256  # rows one block sums for the bias gradient (fixes the order)
LOSS_CHUNK = 2048  # elements per block of the element-wise losses (fixes the order)
CONV_CHUNK = 4096  # elements of one channel a block sums for a conv bias gradient (the order)
BLOCKS_PER_SM = 8
_MAX_GRID_Y = 65535  # CUDA's limit on gridDim.y

# A null pointer argument. CuPy passes None as 0xffffffff, not as NULL (cupy/cupy#9046,
# open), so every optional pointer the kernels test against null is sent as an 8-byte zero.
NULL = numpy.uint64(0)

SUFFIX = {numpy.dtype(numpy.float32): "f32", numpy.dtype(numpy.float64): "f64"}
LABEL_SUFFIX = {numpy.dtype(numpy.int32): "i32", numpy.dtype(numpy.int64): "i64"}
_I32, _I64, _F64 = numpy.int32, numpy.int64, numpy.float64


def _conv_args(
    x_shape: tuple[int, ...], kernel: tuple, stride: tuple, padding: tuple
) -> tuple[numpy.int32, ...]:
    """conv.cu's geometry arguments (n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow)."""
    n, c, h, w = x_shape
    oh = (h + 2 * padding[0] - kernel[0]) // stride[0] + 1
    ow = (w + 2 * padding[1] - kernel[1]) // stride[1] + 1
    return tuple(_I32(v) for v in (n, c, h, w, *kernel, *stride, *padding, oh, ow))


def _pool_args(
    x_shape: tuple[int, ...], y_shape: tuple[int, ...], pool: tuple, stride: tuple
) -> tuple[Any, ...]:
    """conv.cu's pooling arguments (planes, h, w, ph, pw, sh, sw, oh, ow)."""
    n, c, h, w = x_shape
    oh, ow = y_shape[2:]
    return (_I64(n * c), *(_I32(v) for v in (h, w, *pool, *stride, oh, ow)))


def row_block(k: int) -> int:
    """Threads per block of a row kernel: a power of two from 32 to MAX_BLOCK, about k."""
    threads = 32
    while threads < k and threads < MAX_BLOCK:
        threads *= 2
    return threads


class KernelRunner:
    """Compiles the kernel modules on first use (``xp.RawModule``) and launches them.

    Parameters
    ----------
    xp : module
        ``cupy``, or the fake of :mod:`nnback.testing.fake_cupy`.
    """

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self._lock = threading.Lock()
        self._modules: dict[str, Any] = {}
        self._functions: dict[str, Any] = {}
        self._max_blocks: int | None = None
        #: Resolve (compile, load) kernels in :meth:`launch` without launching them.
        self.dry_run = False

    def launch(
        self, module: str, kernel: str, grid: tuple[int, ...], block: tuple[int, ...], *args: Any
    ) -> None:
        """Launch ``kernel`` of ``module``.cu on the current stream (no synchronisation).

        ``None`` arguments are null pointers, sent as :data:`NULL`.
        """
        function = self._functions.get(kernel)
        if function is None:
            function = self.function(module, kernel)
        if self.dry_run:
            return  # a captured step loading its kernels before the capture
        function(grid, block, tuple(NULL if arg is None else arg for arg in args))

    def function(self, module: str, kernel: str) -> Any:
        """The compiled ``kernel`` of ``module``.cu (compiled and loaded on first use).

        A captured step resolves its kernels through this before the capture begins, so
        nothing is compiled or loaded while a stream is capturing.
        """
        with self._lock:
            function = self._functions.get(kernel)
            if function is None:
                raw = self._modules.get(module)
                if raw is None:
                    raw = self.xp.RawModule(code=load_source(module), options=COMPILE_OPTIONS)
                    self._modules[module] = raw
                function = self._functions[kernel] = raw.get_function(kernel)
            return function

    def max_blocks(self) -> int:
        """The most blocks a launch uses on this device (BLOCKS_PER_SM per multiprocessor)."""
        if self._max_blocks is None:
            sms = int(self.xp.cuda.Device().attributes["MultiProcessorCount"])
            self._max_blocks = BLOCKS_PER_SM * max(1, sms)
        return self._max_blocks

    def grid(self, work: int, per_block: int = BLOCK) -> tuple[int]:
        """A 1-D grid for ``work`` items of ``per_block`` per block, capped per device."""
        return (max(1, min(-(-work // per_block), self.max_blocks())),)

    # ---- activations and the dense layer's epilogues --------------------------------------
    def bias_activation(self, z: Any, b: Any | None, y: Any, activation: str, alpha: float) -> None:
        """``y = activation(z + b)`` for (n, k) arrays; b may be None, y may be z."""
        n, k = z.shape
        s = SUFFIX[z.dtype]
        if activation == "softmax":
            args = (z, b, y, _I64(n), _I64(k))
            kernel = f"bias_softmax_forward_{s}"
            self.launch("losses", kernel, self.grid(n, 1), (row_block(k),), *args)
            return
        args = (z, b, y, _I64(n), _I64(k), _I32(ACTIVATION_CODES[activation]), _F64(alpha))
        self.launch("dense", f"bias_act_forward_{s}", self.grid(n * k), (BLOCK,), *args)

    def activation_grad(self, dy: Any, y: Any, dz: Any, activation: str, alpha: float) -> None:
        """``dz = activation_backward(dy, y)`` for (n, k) arrays; dz may be dy."""
        n, k = dy.shape
        s = SUFFIX[dy.dtype]
        if activation == "softmax":
            args = (dy, y, dz, _I64(n), _I64(k))
            kernel = f"softmax_backward_{s}"
            self.launch("losses", kernel, self.grid(n, 1), (row_block(k),), *args)
            return
        args = (dy, y, dz, _I64(n * k), _I32(ACTIVATION_CODES[activation]), _F64(alpha))
        self.launch("dense", f"act_backward_{s}", self.grid(n * k), (BLOCK,), *args)

    def bias_grad(
        self,
        dy: Any,
        y: Any | None,
        dz: Any | None,
        db: Any,
        activation: str,
        alpha: float,
        partial: Any | None = None,
    ) -> None:
        """``dz = activation_backward(dy, y)`` (unless dz is None) and ``db = sum(dz, 0)``.

        y None means linear (dz is dy itself); db is a contiguous (k,) or (1, k) array.
        ``partial`` is a workspace of :meth:`bias_grad_chunks` rows (allocated if None).
        """
        n, k = dy.shape
        s = SUFFIX[dy.dtype]
        chunks = self.bias_grad_chunks(n)
        # One chunk: the partial sums are db itself and the second stage is skipped.
        if chunks == 1:
            partial = db
        elif partial is None:
            partial = self.xp.empty((chunks, k), dtype=dy.dtype)
        tiles = -(-k // COLUMN_BLOCK[0])
        grid = (min(tiles, self.grid(k, COLUMN_BLOCK[0])[0]), min(chunks, _MAX_GRID_Y))
        code = _I32(ACTIVATION_CODES.get(activation, 0))
        args = (dy, y, dz, partial, _I64(n), _I64(k), _I64(ROWS_PER_CHUNK), code, _F64(alpha))
        self.launch("dense", f"act_backward_bias_grad_{s}", grid, COLUMN_BLOCK, *args)
        if chunks > 1:
            args = (partial, db, _I64(chunks), _I64(k))
            self.launch("dense", f"column_sum_{s}", self.grid(k), (BLOCK,), *args)

    @staticmethod
    def bias_grad_chunks(n: int) -> int:
        """Rows of the partial sums :meth:`bias_grad` needs for ``n`` rows (1: none)."""
        return -(-n // ROWS_PER_CHUNK)

    # ---- convolution and pooling (conv.cu); geometry checked by the backend ------------------
    def im2col(self, x: Any, cols: Any, kernel: tuple, stride: tuple, padding: tuple) -> None:
        """``cols = im2col(x)``: (n, c, h, w) -> (c * kh * kw, n * oh * ow); one thread per
        (channel, column) writes the column's kh * kw entries."""
        c = x.shape[1]
        args = (x, cols, *_conv_args(x.shape, kernel, stride, padding))
        work = c * cols.shape[1]
        self.launch("conv", f"im2col_{SUFFIX[x.dtype]}", self.grid(work), (BLOCK,), *args)

    def col2im(self, cols: Any, dx: Any, kernel: tuple, stride: tuple, padding: tuple) -> None:
        """``dx = col2im(cols)``: one thread per pixel of dx gathers its contributions."""
        args = (cols, dx, *_conv_args(dx.shape, kernel, stride, padding))
        self.launch("conv", f"col2im_{SUFFIX[cols.dtype]}", self.grid(dx.size), (BLOCK,), *args)

    def conv_bias_activation(self, z: Any, b: Any, y: Any, activation: str, alpha: float) -> None:
        """``y (n, c, oh, ow) = activation(z (c, n, oh, ow) + b)``."""
        c, n, oh, ow = z.shape
        code = _I32(ACTIVATION_CODES[activation])
        args = (z, b, y, _I64(n), _I32(c), _I32(oh * ow), code, _F64(alpha))
        kernel = f"conv_bias_act_forward_{SUFFIX[z.dtype]}"
        self.launch("conv", kernel, self.grid(z.size), (BLOCK,), *args)

    def conv_bias_grad(
        self,
        dy: Any,
        y: Any,
        dz: Any,
        db: Any,
        activation: str,
        alpha: float,
        partial: Any | None = None,
    ) -> None:
        """``dz (c, n, oh, ow) = activation_backward(dy, y)`` transposed, ``db = sum(dz)`` per
        channel: partial sums per (chunk of CONV_CHUNK elements, channel), then dense.cu's
        column_sum over the chunks (skipped for one chunk). ``partial`` is a workspace of
        :meth:`conv_bias_grad_chunks` rows of c (allocated if None)."""
        n, c, oh, ow = dy.shape
        s = SUFFIX[dy.dtype]
        chunks = self.conv_bias_grad_chunks(n * oh * ow)
        if chunks == 1:
            partial = db
        elif partial is None:
            partial = self.xp.empty((chunks, c), dtype=dy.dtype)
        rows = min(c, _MAX_GRID_Y)
        # One block per (chunk, channel) up to the device's cap on blocks; grid-strided beyond.
        grid = (max(1, min(chunks, self.max_blocks() // rows)), rows)
        code = _I32(ACTIVATION_CODES[activation])
        args = (dy, y, dz, partial, _I64(n), _I32(c), _I32(oh * ow), _I64(CONV_CHUNK), code)
        self.launch("conv", f"conv_act_backward_bias_grad_{s}", grid, (BLOCK,), *args, _F64(alpha))
        if chunks > 1:
            args = (partial, db, _I64(chunks), _I64(c))
            self.launch("dense", f"column_sum_{s}", self.grid(c), (BLOCK,), *args)

    @staticmethod
    def conv_bias_grad_chunks(elements: int) -> int:
        """Rows of the partial sums :meth:`conv_bias_grad` needs for ``n * oh * ow``
        elements per channel (1: none)."""
        return -(-elements // CONV_CHUNK)

    def maxpool_forward(self, x: Any, y: Any, argmax: Any, pool: tuple, stride: tuple) -> None:
        """``y, argmax = maxpool2d_forward(x)``; argmax int32."""
        args = (x, y, argmax, *_pool_args(x.shape, y.shape, pool, stride))
        kernel = f"maxpool_forward_{SUFFIX[x.dtype]}"
        self.launch("conv", kernel, self.grid(y.size), (BLOCK,), *args)

    def maxpool_backward(self, dy: Any, argmax: Any, dx: Any, pool: tuple, stride: tuple) -> None:
        """``dx = maxpool2d_backward(dy, argmax)``: one thread per pixel of dx gathers."""
        args = (dy, argmax, dx, *_pool_args(dx.shape, dy.shape, pool, stride))
        kernel = f"maxpool_backward_{SUFFIX[dy.dtype]}"
        self.launch("conv", kernel, self.grid(dx.size), (BLOCK,), *args)

    def avgpool_forward(self, x: Any, y: Any, pool: tuple, stride: tuple) -> None:
        """``y = avgpool2d_forward(x)``."""
        args = (x, y, *_pool_args(x.shape, y.shape, pool, stride))
        kernel = f"avgpool_forward_{SUFFIX[x.dtype]}"
        self.launch("conv", kernel, self.grid(y.size), (BLOCK,), *args)

    def avgpool_backward(self, dy: Any, dx: Any, pool: tuple, stride: tuple) -> None:
        """``dx = avgpool2d_backward(dy)``: one thread per pixel of dx gathers."""
        args = (dy, dx, *_pool_args(dx.shape, dy.shape, pool, stride))
        kernel = f"avgpool_backward_{SUFFIX[dy.dtype]}"
        self.launch("conv", kernel, self.grid(dx.size), (BLOCK,), *args)

    # ---- losses -----------------------------------------------------------------------------
    def _finalize(self, values: Any, divisor: int, negate: bool, loss: Any | None = None) -> Any:
        """The 0-d loss: ``(-1 if negate) * sum(values) / divisor``, summed by one block."""
        if loss is None:
            loss = self.xp.empty((), dtype=values.dtype)
        args = (values, _I64(values.size), loss, _F64(divisor), _I32(int(negate)))
        # One block, of about as many threads as values (up to MAX_BLOCK): the order then
        # depends on the number of values only.
        block = (row_block(values.size),)
        self.launch("losses", f"finalize_mean_{SUFFIX[values.dtype]}", (1,), block, *args)
        return loss

    def softmax_crossentropy(
        self,
        logits: Any,
        y_true: Any,
        grad: Any | None,
        rows: Any | None = None,
        loss: Any | None = None,
    ) -> Any:
        """The loss (0-d), writing ``(softmax - onehot) / n`` into grad unless None.

        ``y_true`` is int32/int64 labels (n,) or one-hot rows of logits' dtype (n, k).
        ``rows`` (n,) and the 0-d ``loss`` are workspaces (allocated if None).
        """
        n, k = logits.shape
        s = SUFFIX[logits.dtype]
        labels = y_true.ndim == 1
        kernel = f"softmax_xent_onehot_{s}"
        if labels:
            kernel = f"softmax_xent_labels_{s}_{LABEL_SUFFIX[y_true.dtype]}"
        if rows is None:
            rows = self.xp.empty((n,), dtype=logits.dtype)
        args = (logits, y_true, grad, rows, _I64(n), _I64(k))
        self.launch("losses", kernel, self.grid(n, 1), (row_block(k),), *args)
        return self._finalize(rows, n, not labels, loss)

    def elementwise_loss(
        self,
        kernel: str,
        y_pred: Any,
        y_true: Any,
        grad: Any | None,
        *constants: float,
        negate: bool = False,
        partial: Any | None = None,
        loss: Any | None = None,
    ) -> Any:
        """``bce``/``mse``/``mae_loss_grad``: the 0-d loss, the gradient into grad if given.

        ``partial`` (:meth:`loss_chunks` values) and the 0-d ``loss`` are workspaces.
        """
        size = y_pred.size
        chunks = self.loss_chunks(size)
        if partial is None:
            partial = self.xp.empty((chunks,), dtype=y_pred.dtype)
        scalars = (_I64(size), _I64(LOSS_CHUNK), *(_F64(c) for c in constants))
        kernel = f"{kernel}_{SUFFIX[y_pred.dtype]}"
        args = (y_pred, y_true, grad, partial, *scalars)
        self.launch("losses", kernel, self.grid(chunks, 1), (BLOCK,), *args)
        return self._finalize(partial, size, negate, loss)

    @staticmethod
    def loss_chunks(size: int) -> int:
        """Partial sums :meth:`elementwise_loss` needs for ``size`` elements."""
        return -(-size // LOSS_CHUNK)

    # ---- dropout and optimizer steps ----------------------------------------------------------
    def dropout(self, x: Any, keep_mask: Any, scale: float, out: Any | None = None) -> Any:
        """``x * keep_mask * scale`` into ``out`` (a new array if None); the mask is bool or
        of x's dtype."""
        if out is None:
            out = self.xp.empty_like(x)
        kernel = f"dropout_apply_{SUFFIX[x.dtype]}" + ("_b8" if keep_mask.dtype == bool else "")
        args = (x, keep_mask, out, _I64(x.size), _F64(scale))
        self.launch("dropout", kernel, self.grid(x.size), (BLOCK,), *args)
        return out

    def step(self, kernel: str, arrays: tuple[Any, ...], *constants: float) -> None:
        """One optimizer step ``<kernel>_step`` over same-shape arrays, in place."""
        size = arrays[0].size
        kernel = f"{kernel}_{SUFFIX[arrays[0].dtype]}"
        args = (*arrays, _I64(size), *(_F64(c) for c in constants))
        self.launch("optimizers", kernel, self.grid(size), (BLOCK,), *args)

    # ---- a planned (captured) step: per-step values read from the device books ----------------
    def planned_step(
        self, kernel: str, arrays: tuple[Any, ...], table: Any, state: Any, *constants: float
    ) -> None:
        """``<kernel>_planned``: :meth:`step` with the per-step scalars from ``table``."""
        size = arrays[0].size
        kernel = f"{kernel}_planned_{SUFFIX[arrays[0].dtype]}"
        args = (*arrays, _I64(size), table, state, *(_F64(c) for c in constants))
        self.launch("optimizers", kernel, self.grid(size), (BLOCK,), *args)

    def planned_dropout(
        self, x: Any, masks: Any, out: Any, scale: float, state: Any, first: int = 0
    ) -> None:
        """:meth:`dropout` with the bool mask of step ``state[0]`` from masks that start at
        step ``first``."""
        kernel = f"dropout_apply_planned_{SUFFIX[x.dtype]}_b8"
        args = (x, masks, out, _I64(x.size), _F64(scale), state, _I64(first))
        self.launch("dropout", kernel, self.grid(x.size), (BLOCK,), *args)

    def gather_rows(self, src: Any, order: Any, state: Any, out: Any, stride: int) -> None:
        """``out = src[order[state[0] * stride :][:n]]`` for n = len(out)."""
        n = out.shape[0]
        k = out.size // n
        suffix = {**SUFFIX, **{numpy.dtype(numpy.int64): "i64"}}[src.dtype]
        args = (src, order, state, out, _I64(n), _I64(k), _I64(stride))
        self.launch("step", f"gather_rows_{suffix}", self.grid(n * k), (BLOCK,), *args)

    def step_books(self, loss: Any, n: int, state: Any, sums: Any) -> None:
        """Add the step's loss to the books, or raise the non-finite flag (one thread)."""
        args = (loss, _I64(n), state, sums)
        self.launch("step", f"step_books_{SUFFIX[loss.dtype]}", (1,), (32,), *args)

    def score_books(self, loss: Any, n: int, total: Any) -> None:
        """``total = total + loss * n`` in the loss's dtype (one thread)."""
        args = (loss, _I64(n), total)
        self.launch("step", f"score_books_{SUFFIX[loss.dtype]}", (1,), (32,), *args)

    def step_advance(self, state: Any) -> None:
        """Move the books' cursor to the next step (one thread)."""
        self.launch("step", "step_advance", (1,), (32,), state)

    def count(self, kind: str, pred: Any, truth: Any, state: Any, tolerance: float = 0.0) -> None:
        """Add the correct predictions of a batch to ``state[3]``, in one block.

        ``kind``: ``"labels"`` (argmax against int64 labels), ``"onehot"`` (argmax against
        the argmax of the targets), ``"threshold"`` (one column, 0.5) or ``"within"``
        (``|pred - truth| < tolerance`` element by element).
        """
        s = SUFFIX[pred.dtype]
        n = pred.shape[0]
        k = pred.size // n
        block = (row_block(pred.size if kind == "within" else n),)
        if kind in ("labels", "onehot"):
            args: tuple[Any, ...] = (pred, truth, _I64(n), _I64(k), state)
            self.launch("step", f"count_argmax_{kind}_{s}", (1,), block, *args)
        elif kind == "threshold":
            self.launch("step", f"count_threshold_{s}", (1,), block, pred, truth, _I64(n), state)
        else:
            args = (pred, truth, _I64(pred.size), _F64(tolerance), state)
            self.launch("step", f"count_within_{s}", (1,), block, *args)
