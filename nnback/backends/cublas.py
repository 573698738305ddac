"""Capture-safe cuBLAS GEMMs for the CuPy backend: ``cublasSgemm_v2``/``cublasDgemm_v2`` on
the libcublas that CuPy itself loaded, through a handle of nnback's own and ctypes.

Why not ``cupy.matmul``: CuPy refuses every cuBLAS call while a stream is capturing (its
handle's ``setStream`` raises ``NotImplementedError: calling cuBLAS API during stream
capture is currently unsupported``), so a training step that calls it cannot become a CUDA
graph. cuBLAS itself supports capture when the handle's stream and workspace are set before
the capture begins, which is what :class:`CublasGemm` does. Why not NVIDIA's
``nvmath-python``: it would be a dependency of its own for the four functions used here,
and its GEMM objects plan per shape; a ctypes call costs a few microseconds of host time
against ``cupy.matmul``'s ~30 on the slow hosts measured.

The backend sends *every* float GEMM it can through this path, eager or captured, so a
replayed step and an eager step run the very same cuBLAS calls and agree bit for bit.

Row-major ``C (m, n) = A (m, k) @ B (k, n)`` is column-major ``C^T = B^T A^T``: cuBLAS is
called with B first. A C-contiguous operand is its own transpose in column-major order
(``CUBLAS_OP_N``, leading dimension = its columns); an F-contiguous one (a ``.T`` view of a
C-contiguous array, as in ``x.T @ dz``) is passed with ``CUBLAS_OP_T`` and leading
dimension = its rows. Nothing is copied.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy

__all__ = ["CublasError", "CublasGemm", "find_cublas_library"]

OP_N, OP_T = 0, 1
DEFAULT_MATH, TF32_TENSOR_OP_MATH = 0, 3
# Hopper's recommended cuBLAS workspace; a workspace set by the user, rather than one cuBLAS
# allocates on its own, is what makes the calls safe to capture.
WORKSPACE_BYTES = 32 << 20
_INT_MAX = 2**31 - 1

_STATUS = {
    1: "CUBLAS_STATUS_NOT_INITIALIZED",
    3: "CUBLAS_STATUS_ALLOC_FAILED",
    7: "CUBLAS_STATUS_INVALID_VALUE",
    8: "CUBLAS_STATUS_ARCH_MISMATCH",
    11: "CUBLAS_STATUS_MAPPING_ERROR",
    13: "CUBLAS_STATUS_EXECUTION_FAILED",
    14: "CUBLAS_STATUS_INTERNAL_ERROR",
    15: "CUBLAS_STATUS_NOT_SUPPORTED",
    16: "CUBLAS_STATUS_LICENSE_ERROR",
}
_F32, _F64 = numpy.dtype(numpy.float32), numpy.dtype(numpy.float64)
_FUNCTIONS = {_F32: "cublasSgemm_v2", _F64: "cublasDgemm_v2"}
_SCALAR = {_F32: ctypes.c_float, _F64: ctypes.c_double}


class CublasError(RuntimeError):
    """A cuBLAS call returned an error status."""


def find_cublas_library(xp: Any) -> Any:
    """The libcublas CuPy loaded, opened again with ctypes (the same library, not a copy).

    Raises OSError, with the reason, when it cannot be found.
    """
    xp.cuda.device.get_cublas_handle()  # makes CuPy load libcublas if it has not yet
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "/libcublas.so" in line}
    except OSError as exc:
        raise OSError(f"cannot list the loaded libraries (/proc/self/maps): {exc}") from None
    if not paths:
        raise OSError("CuPy has not loaded a libcublas.so (none in /proc/self/maps)")
    return ctypes.CDLL(sorted(paths)[0])


def _check(status: int, what: str) -> None:
    if status != 0:
        name = _STATUS.get(int(status), f"status {int(status)}")
        raise CublasError(f"{what} failed with {name}")


@dataclass
class _Handle:
    """One thread's cuBLAS handle, its workspace and the stream it is set to."""

    handle: ctypes.c_void_p
    workspace: Any
    stream: int | None = None
    scalars: dict[numpy.dtype, tuple[Any, Any]] = field(default_factory=dict)


class CublasGemm:
    """``out = a @ b`` through cuBLAS, safe inside a stream capture.

    Parameters
    ----------
    xp : module
        ``cupy`` (or the fake of :mod:`nnback.testing.fake_cupy`).
    library : ctypes.CDLL-like
        libcublas (:func:`find_cublas_library`), or the fake's stand-in with the same
        functions.
    """

    def __init__(self, xp: Any, library: Any) -> None:
        self.xp = xp
        self.library = library
        self._local = threading.local()

    def _state(self) -> _Handle:
        state = getattr(self._local, "state", None)
        if state is None:
            lib = self.library
            handle = ctypes.c_void_p()
            _check(lib.cublasCreate_v2(ctypes.pointer(handle)), "cublasCreate_v2")
            # Read when the first GEMM runs, as CuPy reads CUPY_TF32 (cupy_backend.py sets it
            # from NNBACK_ALLOW_TF32): TF32 is off unless the user opted in.
            tf32 = os.environ.get("CUPY_TF32", "0").strip() == "1"
            mode = TF32_TENSOR_OP_MATH if tf32 else DEFAULT_MATH
            _check(lib.cublasSetMathMode(handle, mode), "cublasSetMathMode")
            workspace = self.xp.empty((WORKSPACE_BYTES,), dtype=numpy.uint8)
            state = self._local.state = _Handle(handle, workspace)
        return state

    def _set_workspace(self, state: _Handle) -> None:
        status = self.library.cublasSetWorkspace_v2(
            state.handle,
            ctypes.c_void_p(state.workspace.data.ptr),
            ctypes.c_size_t(WORKSPACE_BYTES),
        )
        _check(status, "cublasSetWorkspace_v2")

    def prepare(self) -> None:
        """Create this thread's handle and set its stream now (before a capture begins)."""
        self._bind(self._state())

    def _bind(self, state: _Handle) -> None:
        stream = int(self.xp.cuda.get_current_stream().ptr)
        if stream != state.stream:
            status = self.library.cublasSetStream_v2(state.handle, ctypes.c_void_p(stream))
            _check(status, "cublasSetStream_v2")
            # cublasSetStream puts the handle back on cuBLAS's own workspace pool, which a
            # capture must not allocate from: set ours again after every change of stream.
            self._set_workspace(state)
            state.stream = stream

    @staticmethod
    def _operand(x: Any) -> tuple[int, int] | None:
        """``(op, leading dimension)`` of a 2-D operand, or None for another layout."""
        rows, cols = x.shape
        if x.flags.c_contiguous:
            return OP_N, max(1, cols)
        if x.flags.f_contiguous:
            return OP_T, max(1, rows)
        return None

    def supports(self, a: Any, b: Any, out: Any | None) -> bool:
        """Whether ``a @ b`` (into ``out``) can go through :meth:`gemm`."""
        arrays = (a, b) if out is None else (a, b, out)
        if not all(isinstance(x, self.xp.ndarray) and x.ndim == 2 for x in arrays):
            return False
        if a.dtype not in _FUNCTIONS or any(x.dtype != a.dtype for x in arrays):
            return False
        m, k = a.shape
        if b.shape[0] != k or min(m, k, b.shape[1]) < 1 or max(m, k, b.shape[1]) > _INT_MAX:
            return False
        if out is not None and (out.shape != (m, b.shape[1]) or not out.flags.c_contiguous):
            return False
        return self._operand(a) is not None and self._operand(b) is not None

    def gemm(self, a: Any, b: Any, out: Any) -> None:
        """``out = a @ b`` on the current stream; check :meth:`supports` first."""
        state = self._state()
        self._bind(state)
        dtype = a.dtype
        scalars = state.scalars.get(dtype)
        if scalars is None:
            kind = _SCALAR[dtype]
            scalars = state.scalars[dtype] = (ctypes.pointer(kind(1.0)), ctypes.pointer(kind(0.0)))
        m, k = a.shape
        n = b.shape[1]
        op_a, ld_a = self._operand(a)  # type: ignore[misc]
        op_b, ld_b = self._operand(b)  # type: ignore[misc]
        function = getattr(self.library, _FUNCTIONS[dtype])
        status = function(
            state.handle,
            op_b,
            op_a,
            n,
            m,
            k,
            scalars[0],
            ctypes.c_void_p(b.data.ptr),
            ld_b,
            ctypes.c_void_p(a.data.ptr),
            ld_a,
            scalars[1],
            ctypes.c_void_p(out.data.ptr),
            max(1, n),
        )
        _check(status, _FUNCTIONS[dtype])
