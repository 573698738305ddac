"""The CuPy backend: cuBLAS GEMMs (``cupy.matmul``) with the fused CUDA kernels of
``nnback.kernels.cuda`` as epilogues, losses, dropout and optimizer steps.

Every op not overridden here is the base class's reference code running on CuPy arrays.
Each override checks what its kernel supports (float32/float64 throughout, C-contiguous
non-empty device arrays, hyper-parameters that NumPy would not promote) and otherwise
returns ``super().op(...)``; how the kernels are launched is in
:mod:`nnback.kernels.cuda.launch`.

Nothing here imports CuPy at module import: the array module arrives through ``xp``, which
is ``cupy`` (imported when the backend is created) or, in the tests, the strict fake of
:mod:`nnback.testing.fake_cupy`, which runs the same kernel sources on the CPU.

Precision: TF32 is off for float32 GEMMs unless ``NNBACK_ALLOW_TF32=1`` is set before the
first float32 matmul (it sets ``CUPY_TF32=1``, which CuPy reads at that moment; setting
``CUPY_TF32=1`` yourself is the same opt-in). The kernels are compiled without fast maths
and without FMA contraction (``nnback.kernels.cuda.COMPILE_OPTIONS``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy

from ..errors import BackendUnavailableError
from ..kernels.cuda import COMPILE_OPTIONS
from ..kernels.cuda.launch import ACTIVATION_CODES, LABEL_SUFFIX, SUFFIX, KernelRunner
from .base import EPSILON_CLIP, Backend, adam_scalars
from .conv_ops import CONV_ACTIVATIONS, kernel_geometry
from .cublas import CublasGemm, find_cublas_library

Array = Any

TF32_ENV = "NNBACK_ALLOW_TF32"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _import_cupy() -> Any:
    """Import CuPy, or raise BackendUnavailableError with one line saying why not."""
    if os.environ.get(TF32_ENV, "").strip() == "1":
        os.environ["CUPY_TF32"] = "1"
    try:
        import cupy
    except ImportError:
        raise BackendUnavailableError(
            "cupy is not installed: pip install 'nnback[gpu]' (CUDA 12) or "
            "'nnback[gpu-cuda13]' (CUDA 13)"
        ) from None
    except Exception as exc:  # a broken CUDA installation fails at import in many ways
        raise BackendUnavailableError(f"cupy cannot be imported: {_one_line(exc)}") from None
    return cupy


def _check_device(xp: Any) -> None:
    """Raise BackendUnavailableError (one line) unless ``xp`` sees at least one GPU."""
    try:
        count = int(xp.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError: no driver, driver too old, no device
        raise BackendUnavailableError(f"no NVIDIA GPU/driver found: {_one_line(exc)}") from None
    if count < 1:
        raise BackendUnavailableError("no NVIDIA GPU/driver found: CUDA reports 0 devices")


def _weak(value: Any, dtype: Any) -> bool:
    """Whether ``array(dtype) op value`` is computed in ``dtype`` by NumPy's rules (NEP 50).

    Python numbers are "weak": rounded to the array's dtype, as the kernels do. A NumPy
    float64 scalar would promote a float32 array instead, so such calls fall back.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | numpy.number):
        return False
    return numpy.result_type(dtype, value) == dtype


# conv.cu indexes within an image, a window or a column of im2col's matrix with int.
_INT_MAX = 2**31 - 1


def _rows_ok(x: Array, activation: str) -> bool:
    """Whether the activation kernels take ``x`` (already checked to fit): softmax rows
    (n, k); the element-wise activations any array of at least one dimension."""
    return x.ndim == 2 if activation == "softmax" else x.ndim >= 1


def as_rows(x: Array) -> Array:
    """A C-contiguous array of any shape (at least 1-D) as a 2-D view (size // last, last),
    as the element-wise activation kernels take it (eager and planned alike)."""
    return x if x.ndim == 2 else x.reshape(-1, x.shape[-1])


def _alpha(activation: str, alpha: Any) -> float:
    """The kernels' alpha argument: leaky_relu's slope, 0 for the others (unused)."""
    return float(alpha) if activation == "leaky_relu" else 0.0


class CupyBackend(Backend):
    """NVIDIA GPU backend on CuPy, with fused CUDA kernels.

    Parameters
    ----------
    xp : module, optional
        The array module. ``None`` imports ``cupy`` and checks a GPU is present; the tests
        pass the fake from :func:`nnback.testing.fake_cupy.make_fake_cupy_backend`.
    cublas : library, optional
        libcublas with the functions :class:`~nnback.backends.cublas.CublasGemm` calls.
        ``None`` finds the one CuPy loaded, on first use; the fake device passes its own.

    Raises
    ------
    BackendUnavailableError
        When CuPy is not installed or no GPU/driver is present (one line saying which).
    """

    name = "cupy"
    #: Training steps can be planned and captured as CUDA graphs (nnback.step_plan).
    supports_captured_steps = True

    def __init__(self, xp: Any = None, cublas: Any = None) -> None:
        super().__init__(_import_cupy() if xp is None else xp)
        _check_device(self.xp)
        self._kernels = KernelRunner(self.xp)
        self._cublas_library = cublas
        self._gemm: CublasGemm | None = None
        self.gemm_unavailable: str | None = None

    def _capture_gemm(self) -> CublasGemm | None:
        """The capture-safe cuBLAS GEMM (None, with ``gemm_unavailable`` saying why)."""
        if self._gemm is None and self.gemm_unavailable is None:
            try:
                library = self._cublas_library
                if library is None:
                    library = find_cublas_library(self.xp)
                self._gemm = CublasGemm(self.xp, library)
            except Exception as exc:  # no libcublas found, a missing symbol, ...
                self.gemm_unavailable = f"cuBLAS through ctypes is unavailable: {_one_line(exc)}"
        return self._gemm

    def capture_unavailable(self) -> str | None:
        self._capture_gemm()
        return self.gemm_unavailable

    # ------------------------------------------------------------------------------------
    # Transfers, device facts
    # ------------------------------------------------------------------------------------
    def to_numpy(self, x: Array) -> numpy.ndarray:
        """A host copy of ``x`` (``cupy.asnumpy``, i.e. ``x.get()``; a host array passes)."""
        if isinstance(x, numpy.ndarray):
            return x
        return self.xp.asnumpy(x)

    def to_float(self, x: Array) -> float:
        """The value of a 0-d (or size-1) device array: one explicit device-to-host copy."""
        return float(self.to_numpy(x).reshape(()))

    def synchronize(self) -> None:
        """Wait for every kernel queued on the current device."""
        self.xp.cuda.Device().synchronize()

    def info(self) -> dict[str, str]:
        xp = self.xp
        device = xp.cuda.Device()
        name = xp.cuda.runtime.getDeviceProperties(device.id)["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        cc = str(device.compute_capability)
        pool = xp.get_default_memory_pool()
        tf32 = os.environ.get("CUPY_TF32", "0").strip() == "1"
        return {
            **super().info(),
            "device": f"{device.id}: {name} (compute capability {cc[:-1]}.{cc[-1:]})",
            "memory pool": f"{pool.used_bytes()} bytes used, {pool.total_bytes()} held",
            "tf32": "on (CUPY_TF32=1)" if tf32 else f"off (set {TF32_ENV}=1 to allow)",
            "kernels": f"NVRTC {' '.join(COMPILE_OPTIONS)}, compiled on first use",
            "gemm": "cuBLAS (ctypes, capture-safe)"
            if self._capture_gemm() is not None
            else f"cupy.matmul ({self.gemm_unavailable})",
        }

    # ------------------------------------------------------------------------------------
    # What the kernels accept
    # ------------------------------------------------------------------------------------
    def _fits(self, *arrays: Any) -> bool:
        """All are non-empty C-contiguous device arrays of one dtype, float32 or float64."""
        first = arrays[0]
        if not self.is_array(first) or first.size == 0 or first.dtype not in SUFFIX:
            return False
        return all(
            self.is_array(a) and a.dtype == first.dtype and a.flags.c_contiguous for a in arrays
        )

    def _activation_ok(self, activation: Any, alpha: Any, dtype: Any) -> bool:
        if activation == "leaky_relu":
            return _weak(alpha, dtype)
        return activation in ACTIVATION_CODES or activation == "softmax"

    def _cast(self, y: Array, dtype: Any) -> Array:
        """``y`` in ``dtype``, as the reference's ``_as_dtype`` does (targets, masks)."""
        return y if y.dtype == dtype else y.astype(dtype)

    # ------------------------------------------------------------------------------------
    # Activations and the dense layer: cuBLAS GEMM + fused epilogue
    # ------------------------------------------------------------------------------------
    def matmul(self, a: Array, b: Array, out: Array | None = None) -> Array:
        # Every float GEMM the capture-safe path takes goes through it, eager or captured,
        # so a replayed step runs the same cuBLAS calls as an eager one.
        gemm = self._capture_gemm()
        if gemm is None or not gemm.supports(a, b, out):
            return super().matmul(a, b, out=out)
        if out is None:
            out = self.xp.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
        gemm.gemm(a, b, out)
        return out

    def activation_forward(self, z: Array, activation: str, alpha: float = 0.01) -> Array:
        # Softmax is a row op (2-D only); the element-wise ones take any C-contiguous array
        # (images included) viewed as rows: the same launch as for that 2-D array.
        if not (
            self._fits(z)
            and _rows_ok(z, activation)
            and self._activation_ok(activation, alpha, z.dtype)
        ):
            return super().activation_forward(z, activation, alpha)
        y = self.xp.empty_like(z)
        self._kernels.bias_activation(
            as_rows(z), None, as_rows(y), activation, _alpha(activation, alpha)
        )
        return y

    def softmax(self, z: Array) -> Array:
        if not (self._fits(z) and z.ndim == 2):
            return super().softmax(z)
        y = self.xp.empty_like(z)
        self._kernels.bias_activation(z, None, y, "softmax", 0.0)
        return y

    def activation_backward(
        self, dy: Array, y: Array, activation: str, alpha: float = 0.01
    ) -> Array:
        if not (
            self._fits(dy, y)
            and _rows_ok(dy, activation)
            and dy.shape == y.shape
            and self._activation_ok(activation, alpha, dy.dtype)
        ):
            return super().activation_backward(dy, y, activation, alpha)
        dz = self.xp.empty_like(dy)
        args = (as_rows(dy), as_rows(y), as_rows(dz))
        self._kernels.activation_grad(*args, activation, _alpha(activation, alpha))
        return dz

    def bias_activation_inplace(
        self, z: Array, b: Array, activation: str = "linear", alpha: float = 0.01
    ) -> None:
        # The GEMM before it is the base class's (cuBLAS into the workspace).
        ok = (
            self._fits(z, b)
            and z.ndim == 2
            and b.shape in ((z.shape[1],), (1, z.shape[1]))
            and self._activation_ok(activation, alpha, z.dtype)
        )
        if not ok:
            super().bias_activation_inplace(z, b, activation, alpha)
            return
        self._kernels.bias_activation(z, b, z, activation, _alpha(activation, alpha))

    def activation_bias_backward(
        self,
        dy: Array,
        y: Array,
        activation: str = "linear",
        alpha: float = 0.01,
        overwrite_dy: bool = False,
        out_db: Array | None = None,
    ) -> tuple[Array, Array]:
        ok = (
            self._fits(dy, y)
            and dy.ndim == 2
            and dy.shape == y.shape
            and self._activation_ok(activation, alpha, dy.dtype)
        )
        if not ok:
            return super().activation_bias_backward(dy, y, activation, alpha, overwrite_dy, out_db)
        k = dy.shape[1]
        alpha = _alpha(activation, alpha)
        db = out_db
        if db is None or not self._fits(db, dy) or db.size != k:
            db = self.xp.empty((1, k), dtype=dy.dtype)
        if activation == "linear":
            dz = dy  # nothing to write: only the column sums of dy
            self._kernels.bias_grad(dy, None, None, db, "linear", 0.0)
        elif activation == "softmax":
            # The softmax backward needs row sums first; then dz's columns are summed.
            dz = dy if overwrite_dy else self.xp.empty_like(dy)
            self._kernels.activation_grad(dy, y, dz, "softmax", 0.0)
            self._kernels.bias_grad(dz, None, None, db, "linear", 0.0)
        else:
            dz = dy if overwrite_dy else self.xp.empty_like(dy)
            self._kernels.bias_grad(dy, y, dz, db, activation, alpha)
        if out_db is not None and db is not out_db:
            out_db[...] = db
            db = out_db
        return dz, db

    # ------------------------------------------------------------------------------------
    # Convolution and pooling (conv.cu). conv2d_forward/backward stay the base class's:
    # im2col, the GEMMs through self.matmul (cuBLAS, on reshaped and transposed views of
    # C-contiguous arrays: no copies), these epilogues and col2im.
    # ------------------------------------------------------------------------------------
    def _conv_geometry(
        self, x_shape: Any, kernel: Any, stride: Any, padding: Any
    ) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...], tuple[int, int]] | None:
        """``(x_shape, (kernel, stride, padding), (oh, ow))`` when conv.cu can take them."""
        geometry = kernel_geometry(x_shape, kernel, stride, padding, limit=_INT_MAX // 4)
        if geometry is None:
            return None
        (n, c, h, w), ((kh, kw), _, (ph, pw)), (oh, ow) = geometry
        if max((h + 2 * ph) * (w + 2 * pw), c * kh * kw, n * oh * ow) > _INT_MAX:
            return None
        return geometry

    def im2col(
        self,
        x: Array,
        kernel: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
    ) -> Array:
        geometry = self._conv_geometry(getattr(x, "shape", ()), kernel, stride, padding)
        if geometry is None or not self._fits(x):
            return super().im2col(x, kernel, stride, padding)
        (n, c, _, _), (k, s, p), (oh, ow) = geometry
        cols = self.xp.empty((c * k[0] * k[1], n * oh * ow), dtype=x.dtype)
        self._kernels.im2col(x, cols, k, s, p)
        return cols

    def col2im(
        self,
        cols: Array,
        x_shape: tuple[int, int, int, int],
        kernel: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
    ) -> Array:
        geometry = self._conv_geometry(x_shape, kernel, stride, padding)
        if geometry is None or not self._fits(cols):
            return super().col2im(cols, x_shape, kernel, stride, padding)
        shape, (k, s, p), (oh, ow) = geometry
        n, c = shape[:2]
        if cols.shape != (c * k[0] * k[1], n * oh * ow):
            return super().col2im(cols, x_shape, kernel, stride, padding)  # says what is wrong
        dx = self.xp.empty(shape, dtype=cols.dtype)
        self._kernels.col2im(cols, dx, k, s, p)
        return dx

    def _conv_activation_ok(self, activation: Any, alpha: Any, dtype: Any) -> bool:
        # Softmax is not a convolution's: the reference raises for it.
        return activation in CONV_ACTIVATIONS and self._activation_ok(activation, alpha, dtype)

    def conv_bias_activation(
        self, z: Array, b: Array, activation: str = "linear", alpha: float = 0.01
    ) -> Array:
        ok = (
            self._fits(z, b)
            and z.ndim == 4
            and b.shape in ((z.shape[0],), (1, z.shape[0]))
            and z.shape[2] * z.shape[3] <= _INT_MAX
            and z.shape[0] <= _INT_MAX
            and self._conv_activation_ok(activation, alpha, z.dtype)
        )
        if not ok:
            return super().conv_bias_activation(z, b, activation, alpha)
        c, n, oh, ow = z.shape
        y = self.xp.empty((n, c, oh, ow), dtype=z.dtype)
        self._kernels.conv_bias_activation(z, b, y, activation, _alpha(activation, alpha))
        return y

    def conv_activation_bias_backward(
        self,
        dy: Array,
        y: Array,
        activation: str = "linear",
        alpha: float = 0.01,
        out_db: Array | None = None,
    ) -> tuple[Array, Array]:
        ok = (
            self._fits(dy, y)
            and dy.ndim == 4
            and dy.shape == y.shape
            and dy.shape[2] * dy.shape[3] <= _INT_MAX
            and dy.shape[1] <= _INT_MAX
            and self._conv_activation_ok(activation, alpha, dy.dtype)
        )
        if not ok:
            return super().conv_activation_bias_backward(dy, y, activation, alpha, out_db)
        n, c, oh, ow = dy.shape
        dz = self.xp.empty((c, n, oh, ow), dtype=dy.dtype)
        db = out_db
        if db is None or not self._fits(db, dy) or db.size != c:
            db = self.xp.empty((1, c), dtype=dy.dtype)
        self._kernels.conv_bias_grad(dy, y, dz, db, activation, _alpha(activation, alpha))
        if out_db is not None and db is not out_db:
            out_db[...] = db.reshape(out_db.shape)
            db = out_db
        return dz, db

    def _pool_geometry(
        self, x_shape: Any, pool: Any, stride: Any
    ) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...], tuple[int, int]] | None:
        geometry = self._conv_geometry(x_shape, pool, stride, (0, 0))
        if geometry is None:
            return None
        shape, (k, s, _), out = geometry
        return shape, (k, s), out

    def maxpool2d_forward(
        self, x: Array, pool: tuple[int, int], stride: tuple[int, int]
    ) -> tuple[Array, Array]:
        geometry = self._pool_geometry(getattr(x, "shape", ()), pool, stride)
        if geometry is None or not self._fits(x):
            return super().maxpool2d_forward(x, pool, stride)
        (n, c, _, _), (k, s), (oh, ow) = geometry
        y = self.xp.empty((n, c, oh, ow), dtype=x.dtype)
        argmax = self.xp.empty((n, c, oh, ow), dtype=numpy.int32)
        self._kernels.maxpool_forward(x, y, argmax, k, s)
        return y, argmax

    def maxpool2d_backward(
        self,
        dy: Array,
        argmax: Array,
        x_shape: tuple[int, int, int, int],
        pool: tuple[int, int],
        stride: tuple[int, int],
    ) -> Array:
        geometry = self._pool_geometry(x_shape, pool, stride)
        ok = (
            geometry is not None
            and self._fits(dy)
            and dy.shape == (*geometry[0][:2], *geometry[2])
            and self.is_array(argmax)
            and argmax.dtype == numpy.int32
            and argmax.shape == dy.shape
            and argmax.flags.c_contiguous
        )
        if not ok:
            return super().maxpool2d_backward(dy, argmax, x_shape, pool, stride)
        shape, (k, s), _ = geometry  # type: ignore[misc]
        dx = self.xp.empty(shape, dtype=dy.dtype)
        self._kernels.maxpool_backward(dy, argmax, dx, k, s)
        return dx

    def avgpool2d_forward(self, x: Array, pool: tuple[int, int], stride: tuple[int, int]) -> Array:
        geometry = self._pool_geometry(getattr(x, "shape", ()), pool, stride)
        if geometry is None or not self._fits(x):
            return super().avgpool2d_forward(x, pool, stride)
        (n, c, _, _), (k, s), (oh, ow) = geometry
        y = self.xp.empty((n, c, oh, ow), dtype=x.dtype)
        self._kernels.avgpool_forward(x, y, k, s)
        return y

    def avgpool2d_backward(
        self,
        dy: Array,
        x_shape: tuple[int, int, int, int],
        pool: tuple[int, int],
        stride: tuple[int, int],
    ) -> Array:
        geometry = self._pool_geometry(x_shape, pool, stride)
        ok = (
            geometry is not None and self._fits(dy) and dy.shape == (*geometry[0][:2], *geometry[2])
        )
        if not ok:
            return super().avgpool2d_backward(dy, x_shape, pool, stride)
        shape, (k, s), _ = geometry  # type: ignore[misc]
        dx = self.xp.empty(shape, dtype=dy.dtype)
        self._kernels.avgpool_backward(dy, dx, k, s)
        return dx

    # ------------------------------------------------------------------------------------
    # Losses: per-row or per-chunk partial sums, then one fixed-order sum
    # ------------------------------------------------------------------------------------
    def softmax_crossentropy(
        self, logits: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        fits = (
            self._fits(logits)
            and logits.ndim == 2
            and self.is_array(y_true)
            and y_true.shape[:1] == logits.shape[:1]
        )
        if fits and y_true.ndim == 2:
            y_true = self._cast(y_true, logits.dtype)  # one-hot rows, as the reference
            fits = y_true.shape == logits.shape and self._fits(y_true)
        else:
            fits = (
                fits
                and y_true.ndim == 1
                and y_true.flags.c_contiguous
                and y_true.dtype in LABEL_SUFFIX
            )
        if not fits:
            return super().softmax_crossentropy(logits, y_true, with_grad)
        grad = self.xp.empty_like(logits) if with_grad else None
        return self._kernels.softmax_crossentropy(logits, y_true, grad), grad

    def _targets(self, y_pred: Array, y_true: Array) -> Array | None:
        """``y_true`` in ``y_pred``'s dtype when both suit the element-wise loss kernels."""
        if not (self._fits(y_pred) and y_pred.ndim == 2 and self.is_array(y_true)):
            return None
        y_true = self._cast(y_true, y_pred.dtype)
        return y_true if y_true.shape == y_pred.shape and self._fits(y_true) else None

    def _loss(
        self,
        kernel: str,
        y_pred: Array,
        y_true: Array,
        with_grad: bool,
        *constants: float,
        negate: bool = False,
    ) -> tuple[Array, Array | None]:
        grad = self.xp.empty_like(y_pred) if with_grad else None
        loss = self._kernels.elementwise_loss(
            kernel, y_pred, y_true, grad, *constants, negate=negate
        )
        return loss, grad

    def binary_crossentropy(
        self, y_pred: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        target = self._targets(y_pred, y_true)
        if target is None:
            return super().binary_crossentropy(y_pred, y_true, with_grad)
        bounds = (EPSILON_CLIP, 1 - EPSILON_CLIP, y_pred.size)
        return self._loss("bce_loss_grad", y_pred, target, with_grad, *bounds, negate=True)

    def mean_squared_error(
        self, y_pred: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        target = self._targets(y_pred, y_true)
        if target is None:
            return super().mean_squared_error(y_pred, y_true, with_grad)
        return self._loss("mse_loss_grad", y_pred, target, with_grad, 2 / y_pred.size)

    def mean_absolute_error(
        self, y_pred: Array, y_true: Array, with_grad: bool = True
    ) -> tuple[Array, Array | None]:
        target = self._targets(y_pred, y_true)
        if target is None:
            return super().mean_absolute_error(y_pred, y_true, with_grad)
        return self._loss("mae_loss_grad", y_pred, target, with_grad, y_pred.size)

    # ------------------------------------------------------------------------------------
    # Dropout (mask drawn on the host by the caller)
    # ------------------------------------------------------------------------------------
    def _dropout(self, x: Array, keep_mask: Array, scale: float) -> Array | None:
        if not (self._fits(x) and _weak(scale, x.dtype) and self.is_array(keep_mask)):
            return None
        if keep_mask.dtype != numpy.bool_:
            keep_mask = self._cast(keep_mask, x.dtype)  # as the reference does
        if keep_mask.shape != x.shape or not keep_mask.flags.c_contiguous:
            return None
        return self._kernels.dropout(x, keep_mask, scale)

    def dropout_forward(self, x: Array, keep_mask: Array, scale: float) -> Array:
        out = self._dropout(x, keep_mask, scale)
        return super().dropout_forward(x, keep_mask, scale) if out is None else out

    def dropout_backward(self, dy: Array, keep_mask: Array, scale: float) -> Array:
        out = self._dropout(dy, keep_mask, scale)
        return super().dropout_backward(dy, keep_mask, scale) if out is None else out

    # ------------------------------------------------------------------------------------
    # Optimizer steps: one launch reads and writes each element once
    # ------------------------------------------------------------------------------------
    def _step_ok(self, arrays: tuple[Array, ...], scalars: tuple[Any, ...]) -> bool:
        return (
            self._fits(*arrays)
            and all(a.shape == arrays[0].shape for a in arrays)
            and all(_weak(value, arrays[0].dtype) for value in scalars)
        )

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
        plain = momentum == 0
        arrays = (param, grad) if plain else (param, grad, velocity)
        scalars = (learning_rate, momentum, l1, l2)
        if (not plain and velocity is None) or not self._step_ok(arrays, scalars):
            return super().sgd_update_inplace(
                param, grad, velocity, learning_rate, momentum, l1, l2
            )
        if plain:
            self._kernels.step("sgd_step", arrays, learning_rate, l1, 2 * l2)
        else:
            constants = (learning_rate, momentum, l1, 2 * l2)
            self._kernels.step("sgd_momentum_step", arrays, *constants)

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
        arrays = (param, grad, cache)
        if not self._step_ok(arrays, (learning_rate, epsilon, l1, l2)):
            return super().adagrad_update_inplace(
                param, grad, cache, learning_rate, epsilon, l1, l2
            )
        self._kernels.step("adagrad_step", arrays, learning_rate, epsilon, l1, 2 * l2)

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
        arrays = (param, grad, cache)
        if not self._step_ok(arrays, (learning_rate, rho, epsilon, l1, l2)):
            return super().rmsprop_update_inplace(
                param, grad, cache, learning_rate, rho, epsilon, l1, l2
            )
        constants = (learning_rate, rho, 1 - rho, epsilon, l1, 2 * l2)
        self._kernels.step("rmsprop_step", arrays, *constants)

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
        arrays = (param, grad, m, v)
        scalars = (learning_rate, beta_1, beta_2, epsilon, l1, l2)
        if step < 1 or not self._step_ok(arrays, scalars):  # the reference raises for step < 1
            return super().adam_update_inplace(
                param, grad, m, v, learning_rate, step, beta_1, beta_2, epsilon, l1, l2
            )
        # 1 - beta and the bias corrections in Python, exactly as the reference computes them.
        step_size, root_correction = adam_scalars(learning_rate, step, beta_1, beta_2)
        constants = (step_size, beta_1, 1 - beta_1, beta_2, 1 - beta_2, root_correction, epsilon)
        self._kernels.step("adam_step", arrays, *constants, l1, 2 * l2)
