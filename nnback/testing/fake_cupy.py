"""A strict fake ``cupy`` module, so the CuPy backend's Python code runs in CI without a GPU.

:class:`FakeCupy` is the strict device namespace of :mod:`nnback.testing.strict` (arrays that
refuse implicit conversion to NumPy and refuse mixing with host arrays) plus the parts of
CuPy that :class:`~nnback.backends.cupy_backend.CupyBackend` uses:

* ``RawModule(code=..., options=...)``: ``get_function(name)`` returns a kernel that runs
  the *same CUDA source* on the CPU through :mod:`nnback.testing.cpu_kernels`. A launch is
  checked as a GPU would need it to be right, and stricter than CuPy checks it: grid and
  block tuples within CUDA's limits and the kernels' ``MAX_BLOCK``; arrays of this device
  only (a host NumPy array is refused), C-contiguous, of the exact pointer dtype; scalars
  as NumPy scalars of the exact parameter type (the GPU reads their bytes); a null pointer
  as ``numpy.uint64(0)``, never ``None``, which CuPy sends as 0xffffffff (cupy/cupy#9046).
  Each launch is
  recorded in ``launches`` so tests can tell a fused path from a fallback.
* ``cuda.runtime.getDeviceCount`` / ``getDeviceProperties``, ``cuda.Device()`` with
  ``synchronize``, ``id``, ``compute_capability`` and ``attributes``;
* ``get_default_memory_pool()`` and ``asnumpy`` (the explicit, counted transfer);
* streams and CUDA-graph capture (``cuda.Stream``, ``cuda.get_current_stream``,
  ``begin_capture``/``end_capture``, ``Graph.launch``), with CUDA's rules: while a stream
  captures, kernel launches and cuBLAS GEMMs are recorded instead of run, and host reads,
  synchronisation and allocations are refused (:mod:`nnback.testing.fake_capture`);
* ``cublas_library``: the cuBLAS functions the backend calls through ctypes, computing on
  the CPU by raw pointer, column-major, as cuBLAS does.

:func:`make_fake_cupy_backend` returns a ``CupyBackend`` on a new fake device, and
:func:`fake_cupy_backend_param` the ``pytest.param`` that adds it to the ``backend``
fixture of ``tests/conftest.py``.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy

from ..backends.base import Backend
from . import cpu_kernels
from .backends import BackendCandidate
from .fake_capture import FakeCublasLibrary, FakeStream, StreamState
from .strict import StrictArray, StrictNamespace, strict_to_numpy, unwrap_strict

__all__ = [
    "FAKE_CUPY",
    "FakeCupy",
    "FakeCupyCandidate",
    "fake_cupy_backend_param",
    "fake_cupy_unavailable_reason",
    "make_fake_cupy_backend",
]

FAKE_CUPY = "fake-cupy"
"""The name of the fake device in a test selection (the backend itself is named "cupy")."""

_MAX_BLOCK_DEFINE = re.compile(r"#define\s+NNB_MAX_BLOCK\s+(\d+)")


@dataclass
class Launch:
    """One kernel launch that ran (``graph``: as part of a replayed CUDA graph)."""

    kernel: str
    grid: tuple[int, ...]
    block: tuple[int, ...]
    graph: bool = False


class _Runtime:
    def __init__(self, fake: FakeCupy) -> None:
        self._fake = fake

    def getDeviceCount(self) -> int:  # noqa: N802 (CuPy's name)
        return self._fake.device_count

    def getDeviceProperties(self, device: int) -> dict[str, Any]:  # noqa: N802
        return {"name": f"fake GPU ({self._fake.device}, kernels run on the CPU)".encode()}


class _Device:
    """``cupy.cuda.Device(i)``: one of the fake's ``device_count`` devices (the current one
    by default). They share one memory: the index only says which GPU a rank would use."""

    def __init__(self, fake: FakeCupy, device: int | None = None) -> None:
        if device is None:
            device = fake.current_device
        if not isinstance(device, int) or not 0 <= device < fake.device_count:
            raise ValueError(f"the fake has devices 0..{fake.device_count - 1}, not {device!r}")
        self._fake = fake
        self.id = device
        self.compute_capability = "90"
        self.attributes = {"MultiProcessorCount": fake.multiprocessors}

    def synchronize(self) -> None:
        # Kernels run synchronously on the CPU: nothing is ever pending.
        self._fake.streams.refuse("Device.synchronize()")
        self._fake.synchronizations += 1

    def use(self) -> None:
        """Make this device the current one."""
        self._fake.streams.refuse("Device.use()")
        self._fake.current_device = self.id


class _Cuda:
    def __init__(self, fake: FakeCupy) -> None:
        self._fake = fake
        self.runtime = _Runtime(fake)

    def Device(self, device: int | None = None) -> _Device:  # noqa: N802 (CuPy's name)
        return _Device(self._fake, device)

    def Stream(  # noqa: N802 (CuPy's name)
        self, null: bool = False, non_blocking: bool = False, ptds: bool = False
    ) -> FakeStream:
        streams = self._fake.streams
        return streams.null if null else FakeStream(streams)

    def get_current_stream(self) -> FakeStream:
        return self._fake.streams.current()

    @property
    def nccl(self) -> Any:
        """``cupy.cuda.nccl``: the fake's :class:`~nnback.testing.fake_nccl.FakeNccl`, or the
        ImportError of a CuPy without NCCL (the default: ``FakeCupy(nccl=...)`` adds it)."""
        found = self._fake.nccl
        if found is None:
            raise ImportError("the fake CuPy device was made without NCCL (FakeCupy(nccl=True))")
        if isinstance(found, BaseException):
            raise found
        return found


class _MemoryPool:
    """``cupy.get_default_memory_pool()``: the fake keeps no pool of its own."""

    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        pass


class FakeRawKernel:
    """A kernel of a :class:`FakeRawModule`; calling it launches it on the CPU."""

    def __init__(self, fake: FakeCupy, kernel: cpu_kernels.CpuKernel, max_block: int) -> None:
        self._fake = fake
        self._kernel = kernel
        self._max_block = max_block
        self.name = kernel.name

    def _shape(self, value: Any, what: str, limits: tuple[int, ...]) -> tuple[int, ...]:
        if not isinstance(value, tuple) or not 1 <= len(value) <= 3:
            raise TypeError(f"{self.name}: {what} must be a tuple of 1 to 3 ints, got {value!r}")
        for size, limit in zip(value, limits, strict=False):
            if not isinstance(size, int | numpy.integer) or not 1 <= size <= limit:
                raise ValueError(f"{self.name}: {what} {value!r} outside 1..{limit} per axis")
        return tuple(int(size) for size in value)

    def _argument(self, arg: Any, pointer: bool) -> Any:
        if arg is None:
            raise TypeError(
                f"{self.name}: None is not a null pointer on CuPy, which sends it as "
                "0xffffffff (cupy/cupy#9046); pass numpy.uint64(0)"
            )
        if pointer and isinstance(arg, numpy.uint64) and arg == 0:
            return None  # the CPU kernels' null pointer
        if isinstance(arg, StrictArray):
            if arg.device != self._fake.device:
                raise TypeError(
                    f"{self.name}: array of device {arg.device!r} passed to a "
                    f"kernel on {self._fake.device!r}"
                )
            return unwrap_strict(arg)
        if isinstance(arg, numpy.generic):
            return arg
        if isinstance(arg, numpy.ndarray):
            raise TypeError(f"{self.name}: host numpy array passed to a device kernel")
        raise TypeError(
            f"{self.name}: pass {type(arg).__name__} arguments as NumPy scalars of the "
            "kernel's parameter type (numpy.int64 for long long, numpy.float64 for double)"
        )

    def __call__(
        self, grid: Any, block: Any, args: Sequence[Any], *, shared_mem: int = 0, stream: Any = None
    ) -> None:
        grid3 = self._shape(grid, "grid", (2**31 - 1, 65535, 65535))
        block3 = self._shape(block, "block", (1024, 1024, 64))
        if numpy.prod(block3) > self._max_block:
            raise ValueError(
                f"{self.name}: block {block3} has more than NNB_MAX_BLOCK = "
                f"{self._max_block} threads (the kernels' shared arrays)"
            )
        if shared_mem:
            raise ValueError(f"{self.name}: the kernels use no dynamic shared memory")
        if not isinstance(args, tuple):
            raise TypeError(f"{self.name}: args must be a tuple, as cupy.RawKernel wants")
        pointers = [param.pointer for param in self._kernel.params]
        pointers += [False] * (len(args) - len(pointers))  # a count mismatch is caught below
        # The arguments are taken now, as a GPU takes them at the launch (or the capture).
        values = [self._argument(a, p) for a, p in zip(args, pointers, strict=False)]
        streams = self._fake.streams
        in_graph = streams.capturing is not None

        def run() -> None:
            self._kernel(grid3, block3, values)
            self._fake.launches.append(Launch(self.name, grid3, block3, graph=in_graph))

        streams.run_or_record(self.name, run)


class FakeRawModule:
    """``cupy.RawModule(code=..., options=...)``: compiled for the CPU on first use."""

    def __init__(self, fake: FakeCupy, code: str, options: Sequence[str]) -> None:
        self._fake = fake
        self.code = code
        self.options = tuple(options)
        match = _MAX_BLOCK_DEFINE.search(code)
        self._max_block = int(match.group(1)) if match else 1024
        self._module: cpu_kernels.CpuModule | None = None

    def get_function(self, name: str) -> FakeRawKernel:
        # A captured step loads its kernels before the capture (KernelRunner.function).
        self._fake.streams.refuse(f"loading kernel {name!r}")
        if self._module is None:
            self._module = cpu_kernels.module_for_source(self.code, "rawmodule")
            self._fake.compiled.append(self.options)
        return FakeRawKernel(self._fake, self._module.get_function(name), self._max_block)


class FakeCupy(StrictNamespace):
    """A strict stand-in for the ``cupy`` module (see the module docstring).

    Parameters
    ----------
    device : str
        The fake device's name (its arrays never mix with another device's).
    multiprocessors : int
        Reported as ``MultiProcessorCount``. The backend caps grids at 8 blocks per
        multiprocessor, so a small value makes grid-stride loops go round several times.

    Attributes
    ----------
    launches : list of Launch
        Every kernel that ran, in order (a replayed graph's too; a capture runs nothing).
    streams : StreamState
        The current stream and the capture under way.
    cublas_library : FakeCublasLibrary
        The cuBLAS stand-in a ``CupyBackend`` on this device calls.
    compiled : list of tuple
        The options of each module compiled.
    synchronizations : int
        Calls of ``cuda.Device().synchronize()``.
    """

    def __init__(
        self,
        device: str = "fake-cupy:0",
        multiprocessors: int = 2,
        device_count: int = 1,
        nccl: Any = None,
    ) -> None:
        super().__init__(device)
        self.__name__ = f"fake cupy [{device}]"
        self.multiprocessors = multiprocessors
        self.cuda = _Cuda(self)
        self._pool = _MemoryPool()
        self.launches: list[Launch] = []
        self.compiled: list[tuple[str, ...]] = []
        self.synchronizations = 0
        self.streams = StreamState()
        self.cublas_library = FakeCublasLibrary(self.streams)
        self.device_count = device_count
        self.current_device = 0
        # Arrays whose address was taken (``.data.ptr``): what raw-pointer APIs may address.
        self._addressed: dict[int, weakref.ref[numpy.ndarray]] = {}
        if nccl is True or isinstance(nccl, dict):
            from .fake_nccl import FakeNccl

            nccl = FakeNccl(self, **(nccl if isinstance(nccl, dict) else {}))
        self.nccl = nccl

    def _note_address(self, data: numpy.ndarray) -> None:
        """Called by ``StrictArray.data``: remember the memory block it lies in."""
        base = data
        while isinstance(base.base, numpy.ndarray):
            base = base.base
        start = base.__array_interface__["data"][0]
        if start not in self._addressed or self._addressed[start]() is None:
            if len(self._addressed) > 256:
                self._addressed = {k: r for k, r in self._addressed.items() if r() is not None}
            self._addressed[start] = weakref.ref(base)

    def buffer_at(self, ptr: int, dtype: numpy.dtype, count: int, what: str) -> numpy.ndarray:
        """The ``count`` elements of ``dtype`` at device address ``ptr``, as a writable host
        view: refused (NcclError, invalid argument) unless they lie inside one live array of
        this device of that dtype whose address was taken."""
        from .fake_nccl import NcclError

        nbytes = count * dtype.itemsize
        for start, ref in self._addressed.items():
            base = ref()
            if base is None or not start <= ptr < start + max(base.nbytes, 1):
                continue
            if base.dtype != dtype:
                raise NcclError(4, f"{what}: {dtype} data type for a {base.dtype} buffer")
            if ptr + nbytes > start + base.nbytes or (ptr - start) % dtype.itemsize:
                raise NcclError(4, f"{what}: {count} elements at {ptr:#x} overrun the buffer")
            if not base.flags.writeable:
                raise NcclError(4, f"{what}: read-only memory")
            offset = (ptr - start) // dtype.itemsize
            return base.reshape(-1)[offset : offset + count]
        raise NcclError(4, f"{what}: {ptr:#x} is not the address of memory on this device")

    def _check_allowed(self, what: str) -> None:
        self.streams.refuse(what)

    def RawModule(  # noqa: N802 (CuPy's name)
        self, code: str = "", options: Sequence[str] = (), **kwargs: Any
    ) -> FakeRawModule:
        if kwargs.get("path") or kwargs.get("name_expressions"):
            raise TypeError('the fake RawModule takes code= with extern "C" kernels only')
        return FakeRawModule(self, code, options)

    def get_default_memory_pool(self) -> _MemoryPool:
        return self._pool

    def asnumpy(self, x: Any) -> numpy.ndarray:
        """A host copy of a device array (counted in ``to_host``); host arrays pass through."""
        if isinstance(x, numpy.ndarray):
            return x
        return strict_to_numpy(x)

    def kernels_launched(self) -> list[str]:
        """The names of the kernels launched so far, in order."""
        return [launch.kernel for launch in self.launches]


def fake_cupy_unavailable_reason() -> str | None:
    """``None`` when the fake device can run here, else why not (no C++ compiler)."""
    try:
        cpu_kernels.build_all()
    except cpu_kernels.CompilerNotFound as exc:
        return f"{exc}: the fake device runs the CUDA kernels compiled for the CPU"
    return None


def make_fake_cupy_backend(
    multiprocessors: int = 2, device_count: int = 1, nccl: Any = None
) -> Backend:
    """A ``CupyBackend`` on a new :class:`FakeCupy` device (fresh counters); ``nccl=True``
    (or FakeNccl's keyword arguments as a dict) gives it a fake ``cupy.cuda.nccl``."""
    from ..backends.cupy_backend import CupyBackend

    fake = FakeCupy(multiprocessors=multiprocessors, device_count=device_count, nccl=nccl)
    return CupyBackend(xp=fake, cublas=fake.cublas_library)


@dataclass(frozen=True)
class FakeCupyCandidate(BackendCandidate):
    """A :class:`BackendCandidate` whose ``load`` returns a fresh fake-device CupyBackend."""

    def load(self) -> Backend:
        if self.reason is not None:
            raise RuntimeError(f"the fake cupy device is not available: {self.reason}")
        return make_fake_cupy_backend()


def fake_cupy_backend_param() -> Any:
    """The fake device as a ``pytest.param`` for the ``backend`` fixture's params.

    Usage in ``tests/conftest.py``::

        @pytest.fixture(params=[*backend_params(), fake_cupy_backend_param()])
        def backend(request): return request.param.load()

    Its id is ``"fake-cupy"``; it is skipped, with the reason, when no C++ compiler exists.
    """
    import pytest

    reason = fake_cupy_unavailable_reason()
    marks = [] if reason is None else [pytest.mark.skip(reason=reason)]
    return pytest.param(FakeCupyCandidate(FAKE_CUPY, reason), id=FAKE_CUPY, marks=marks)
