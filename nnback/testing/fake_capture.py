"""Streams, CUDA-graph capture and a cuBLAS stand-in for the fake CuPy device.

CUDA's rules for stream capture, as :class:`~nnback.testing.fake_cupy.FakeCupy` enforces them
(stricter than CUDA where that keeps the fake honest):

* capture begins on a non-default stream (:class:`FakeStream`), once at a time, and work is
  *recorded, not run*, until ``end_capture`` returns a :class:`FakeGraph`; ``launch`` replays
  the recorded work in order, with the pointers it was captured with;
* only kernel launches (``RawModule`` kernels) and cuBLAS GEMMs can be recorded, and only on
  the capturing stream. Every other device operation is refused while a capture is under
  way: host reads and transfers, synchronisation, new allocations (CUDA refuses
  ``cudaMalloc`` and synchronous copies; CuPy's own element-wise kernels would be capturable
  on a GPU, but the fake runs them at once, so it refuses them rather than run them at the
  wrong time: a captured step must consist of nnback's own launches);
* cuBLAS (:class:`FakeCublasLibrary`, the C functions nnback calls through ctypes): a handle
  used in a capture must have had its stream and its workspace set before the capture
  began, as cuBLAS needs for capture safety. GEMMs read and write memory by the raw
  pointers they are given, column-major with leading dimensions, exactly as cuBLAS does, so
  the backend's layout arithmetic is checked for real.
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy

__all__ = ["CaptureError", "FakeCublasLibrary", "FakeGraph", "FakeStream", "StreamState"]

_STREAM_IDS = itertools.count(0x1000, 0x10)
_HANDLE_IDS = itertools.count(0x5000, 0x10)
_INVALID_VALUE, _NOT_INITIALIZED = 7, 1


class CaptureError(RuntimeError):
    """An operation CUDA (or the fake) refuses while a stream is capturing."""


class StreamState:
    """The fake device's streams: the current one (a stack) and the capture under way."""

    def __init__(self) -> None:
        self.null = FakeStream(self, ptr=0)
        self._current: list[FakeStream] = [self.null]
        self.capturing: FakeStream | None = None
        self.recorded: list[tuple[str, Callable[[], None]]] = []
        self.graphs_launched = 0
        self._known: set[int] = {0}

    def known(self, ptr: int) -> bool:
        """Whether ``ptr`` is a stream of this device (0: the default stream)."""
        return ptr in self._known

    def current(self) -> FakeStream:
        return self._current[-1]

    def refuse(self, what: str) -> None:
        """Raise CaptureError if a capture is under way."""
        if self.capturing is not None:
            raise CaptureError(
                f"{what} while a stream is capturing a CUDA graph: not permitted (CUDA "
                "refuses host reads, synchronisation and allocations during capture; the fake "
                "also refuses CuPy's own array operations, which a captured step must not use)"
            )

    def run_or_record(self, name: str, work: Callable[[], None]) -> bool:
        """Run ``work`` now, or record it when the current stream is capturing.

        Returns True when it was recorded.
        """
        if self.capturing is None:
            work()
            return False
        if self.current() is not self.capturing:
            raise CaptureError(
                f"{name}: launched on stream {self.current().ptr:#x} while stream "
                f"{self.capturing.ptr:#x} is capturing (the capture would be invalidated)"
            )
        self.recorded.append((name, work))
        return True


class FakeStream:
    """``cupy.cuda.Stream``: a context manager that makes itself current, with capture."""

    def __init__(self, streams: StreamState, ptr: int | None = None) -> None:
        self._streams = streams
        self.ptr = next(_STREAM_IDS) if ptr is None else ptr
        if ptr is None:
            streams._known.add(self.ptr)

    def __enter__(self) -> FakeStream:
        self._streams._current.append(self)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._streams._current.pop()

    def begin_capture(self, mode: Any = None) -> None:
        streams = self._streams
        if self.ptr == 0:
            raise CaptureError("cannot capture on the default (legacy) stream")
        if streams.capturing is not None:
            raise CaptureError("a stream is already capturing")
        streams.capturing = self
        streams.recorded = []

    def end_capture(self) -> FakeGraph:
        streams = self._streams
        if streams.capturing is not self:
            raise CaptureError("end_capture on a stream that is not capturing")
        streams.capturing = None
        graph = FakeGraph(streams, list(streams.recorded))
        streams.recorded = []
        return graph

    def is_capturing(self) -> bool:
        return self._streams.capturing is self

    def synchronize(self) -> None:
        self._streams.refuse("Stream.synchronize()")


@dataclass
class FakeGraph:
    """``cupy.cuda.Graph``: the recorded work, replayed in order by :meth:`launch`."""

    _streams: StreamState
    nodes: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def launch(self, stream: Any = None) -> None:
        self._streams.refuse("Graph.launch()")
        for _, work in self.nodes:
            work()
        self._streams.graphs_launched += 1

    def node_names(self) -> list[str]:
        return [name for name, _ in self.nodes]


def _value(arg: Any) -> Any:
    """The Python value of a ctypes scalar, pointer-to-scalar or plain int."""
    if isinstance(arg, ctypes._Pointer):
        return arg.contents.value
    return getattr(arg, "value", arg)


def _matrix(ptr: int, dtype: numpy.dtype, rows: int, cols: int, ld: int) -> numpy.ndarray:
    """The column-major ``rows x cols`` matrix at address ``ptr`` with leading dimension ld."""
    count = ld * (cols - 1) + rows
    buffer = (ctypes.c_char * (count * dtype.itemsize)).from_address(ptr)
    flat = numpy.frombuffer(buffer, dtype=dtype, count=count)
    strides = (dtype.itemsize, ld * dtype.itemsize)
    return numpy.lib.stride_tricks.as_strided(flat, shape=(rows, cols), strides=strides)


@dataclass
class _FakeHandle:
    stream: int = 0
    workspace: int = 0
    math_mode: int = 0


class FakeCublasLibrary:
    """The libcublas functions :class:`nnback.backends.cublas.CublasGemm` calls, on the CPU.

    Attributes
    ----------
    gemms : int
        GEMMs executed (replays included).
    """

    def __init__(self, streams: StreamState) -> None:
        self._streams = streams
        self._handles: dict[int, _FakeHandle] = {}
        self.gemms = 0

    def _handle(self, handle: Any) -> _FakeHandle | None:
        return self._handles.get(int(_value(handle) or 0))

    def cublasCreate_v2(self, pointer: Any) -> int:  # noqa: N802 (cuBLAS's names)
        self._streams.refuse("cublasCreate_v2")
        key = next(_HANDLE_IDS)
        self._handles[key] = _FakeHandle()
        pointer.contents.value = key
        return 0

    def cublasSetMathMode(self, handle: Any, mode: int) -> int:  # noqa: N802
        found = self._handle(handle)
        if found is None:
            return _NOT_INITIALIZED
        found.math_mode = int(mode)
        return 0

    def cublasSetWorkspace_v2(self, handle: Any, workspace: Any, size: Any) -> int:  # noqa: N802
        self._streams.refuse("cublasSetWorkspace_v2")
        found = self._handle(handle)
        if found is None:
            return _NOT_INITIALIZED
        found.workspace = int(_value(workspace) or 0) if int(_value(size)) > 0 else 0
        return 0

    def cublasSetStream_v2(self, handle: Any, stream: Any) -> int:  # noqa: N802
        # As cuBLAS documents: setting the stream also puts the handle back on the library's
        # default workspace pool, so a user workspace must be set again afterwards.
        self._streams.refuse("cublasSetStream_v2")
        found = self._handle(handle)
        if found is None:
            return _NOT_INITIALIZED
        found.stream = int(_value(stream) or 0)
        found.workspace = 0
        return 0

    def cublasSgemm_v2(self, *args: Any) -> int:  # noqa: N802
        return self._gemm(numpy.dtype(numpy.float32), args)

    def cublasDgemm_v2(self, *args: Any) -> int:  # noqa: N802
        return self._gemm(numpy.dtype(numpy.float64), args)

    def _gemm(self, dtype: numpy.dtype, args: tuple[Any, ...]) -> int:
        handle, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc = args
        found = self._handle(handle)
        if found is None:
            return _NOT_INITIALIZED
        op_a, op_b, m, n, k = (int(_value(v)) for v in (op_a, op_b, m, n, k))
        lda, ldb, ldc = (int(_value(v)) for v in (lda, ldb, ldc))
        a_shape = (m, k) if op_a == 0 else (k, m)
        b_shape = (k, n) if op_b == 0 else (n, k)
        if (
            min(m, n, k) < 0
            or op_a not in (0, 1)
            or op_b not in (0, 1)
            or lda < max(1, a_shape[0])
            or ldb < max(1, b_shape[0])
            or ldc < max(1, m)
        ):
            return _INVALID_VALUE
        streams = self._streams
        if streams.capturing is not None:
            if found.stream != streams.capturing.ptr:
                raise CaptureError(
                    "cuBLAS GEMM during capture on a handle bound to another stream: set "
                    "the capturing stream on the handle before the capture begins"
                )
            if not found.workspace:
                raise CaptureError(
                    "cuBLAS GEMM during capture without a user workspace "
                    "(cublasSetWorkspace_v2): cuBLAS may allocate during the capture"
                )
        pointers = [int(_value(p) or 0) for p in (a, b, c)]
        if 0 in pointers:
            return _INVALID_VALUE
        scale, shift = float(_value(alpha)), float(_value(beta))

        def run() -> None:
            stored_a = _matrix(pointers[0], dtype, *a_shape, lda)
            stored_b = _matrix(pointers[1], dtype, *b_shape, ldb)
            out = _matrix(pointers[2], dtype, m, n, ldc)
            product = numpy.matmul(
                stored_a if op_a == 0 else stored_a.T, stored_b if op_b == 0 else stored_b.T
            )
            if scale != 1.0:
                product = product * dtype.type(scale)
            # beta == 0: C is not read (a NaN in it does not propagate), as in cuBLAS.
            out[...] = product if shift == 0.0 else product + dtype.type(shift) * out
            self.gemms += 1

        streams.run_or_record("cublasGemm", run)
        return 0
