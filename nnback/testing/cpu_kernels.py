"""Execute the CUDA kernels of ``nnback.kernels.cuda`` on the CPU, through ``cpu_shim.h``.

Each kernel module's text (exactly what NVRTC and ``cupy.RawModule`` compile) is compiled as
C++ by g++ after the shim header into a shared library exporting one launcher per
``extern "C"`` kernel, and called through ctypes with NumPy arrays. The libraries are cached
in a temporary folder keyed by a hash of the shim, the source and the flags, so a test
session compiles each module once (and later sessions not at all).

Launches are strict, like a GPU that cannot convert anything for you: each argument must be
a C-contiguous array of the pointer's exact dtype (``None`` for a null pointer) or a NumPy
scalar of the parameter's exact type. By default every launch is also checked twice over:

* each array is copied into a buffer with guard bytes on both sides, checked after the
  launch, so a kernel writing out of bounds fails loudly (arrays that alias each other
  share one guarded buffer);
* the kernel runs twice on fresh copies, the threads of each block starting in increasing
  and then in decreasing order, and the two results must agree bit for bit: a result that
  depends on the order threads run in means a missing ``__syncthreads`` (a race).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy

from nnback.kernels import cuda as cuda_sources

__all__ = [
    "CXX_FLAGS",
    "CompilerNotFound",
    "CpuKernel",
    "CpuModule",
    "KernelLaunchError",
    "Param",
    "build_all",
    "load_module",
    "module_for_source",
    "parse_signatures",
]

# -ffp-contract=off mirrors NVRTC's --fmad=false: a * b + c is rounded twice, as in NumPy.
# _FORTIFY_SOURCE (on by default in some distributions' compilers) would make longjmp refuse
# the jumps between fiber stacks that the shim is built on.
CXX_FLAGS = (
    "-std=c++17",
    "-O1",
    "-fPIC",
    "-shared",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-U_FORTIFY_SOURCE",
    "-D_FORTIFY_SOURCE=0",
    "-Wall",
    "-Wextra",
    "-Werror",
)
CACHE_ENV = "NNBACK_CPU_KERNEL_CACHE"
_GUARD_BYTES = 64
_GUARD_VALUE = 0xA5

_SCALARS: dict[str, numpy.dtype] = {
    "long long": numpy.dtype(numpy.int64),
    "int": numpy.dtype(numpy.int32),
    "double": numpy.dtype(numpy.float64),
    "float": numpy.dtype(numpy.float32),
    "bool": numpy.dtype(numpy.bool_),
}
_CTYPES = {
    "long long": ctypes.c_longlong,
    "int": ctypes.c_int,
    "double": ctypes.c_double,
    "float": ctypes.c_float,
    "bool": ctypes.c_bool,
}
_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
_PARAM = re.compile(r"^(const\s+)?(long long|int|double|float|bool)\s*(\*?)\s*(\w+)$")


class CompilerNotFound(RuntimeError):
    """No C++ compiler to build the CPU shim libraries with."""


class KernelLaunchError(RuntimeError):
    """A launch was refused (argument types, grid) or failed (out-of-bounds write)."""


@dataclass(frozen=True)
class Param:
    """One kernel parameter: its C type, whether it is a pointer, and whether it is const."""

    name: str
    ctype: str
    pointer: bool
    const: bool

    @property
    def dtype(self) -> numpy.dtype:
        return _SCALARS[self.ctype]


def parse_signatures(source: str) -> dict[str, list[Param]]:
    """The parameters of every ``extern "C" __global__`` kernel in ``source``."""
    signatures: dict[str, list[Param]] = {}
    for name, params in _SIGNATURE.findall(source):
        parsed = []
        for text in params.split(","):
            match = _PARAM.match(" ".join(text.split()))
            if match is None:
                raise ValueError(f"kernel {name}: cannot parse parameter {text.strip()!r}")
            const, ctype, star, pname = match.groups()
            parsed.append(Param(pname, ctype, bool(star), bool(const)))
        signatures[name] = parsed
    return signatures


def _compiler() -> str:
    for candidate in (os.environ.get("CXX", ""), "g++", "c++", "clang++"):
        if candidate and shutil.which(candidate):
            return candidate
    raise CompilerNotFound("no C++ compiler found (install g++ or set CXX)")


def _cache_dir() -> Path:
    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        path = Path(explicit)
    else:
        path = Path(tempfile.gettempdir()) / f"nnback-cpu-kernels-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _build(name: str, source: str) -> Path:
    """Compile ``source`` (labelled ``name``) into a shared library, or reuse the cached one."""
    shim = cuda_sources.source_dir() / "cpu_shim.h"
    exports = "".join(f"NNB_CPU_EXPORT({kernel})\n" for kernel in parse_signatures(source))
    text = f'#include "{shim}"\n{source}\n{exports}'
    compiler = _compiler()
    key = hashlib.sha256(
        "\0".join([shim.read_text(), text, compiler, *CXX_FLAGS]).encode()
    ).hexdigest()[:20]
    library = _cache_dir() / f"{name}-{key}.so"
    if library.exists():
        return library
    # Build under a unique name, then rename: concurrent sessions never see a partial file.
    work = Path(tempfile.mkdtemp(dir=library.parent))
    try:
        cpp = work / f"{name}.cpp"
        cpp.write_text(text)
        result = subprocess.run(
            [compiler, *CXX_FLAGS, str(cpp), "-o", str(work / "out.so")],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"compiling {name}.cu for the CPU failed:\n{result.stderr}")
        os.replace(work / "out.so", library)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return library


def _guarded(arrays: list[numpy.ndarray]) -> tuple[list[numpy.ndarray], list[Any]]:
    """Copy each distinct buffer between guard bytes; aliases share one copy."""
    copies: list[numpy.ndarray] = []
    by_address: dict[tuple[int, int], Any] = {}
    records = []
    for array in arrays:
        key = (array.ctypes.data, array.nbytes)
        if key not in by_address:
            raw = numpy.full(array.nbytes + 2 * _GUARD_BYTES, _GUARD_VALUE, dtype=numpy.uint8)
            inner = raw[_GUARD_BYTES : _GUARD_BYTES + array.nbytes].view(array.dtype)
            inner = inner.reshape(array.shape)
            inner[...] = array
            by_address[key] = (raw, inner, array)
            records.append(by_address[key])
        copies.append(by_address[key][1])
    return copies, records


class CpuKernel:
    """One kernel of a :class:`CpuModule`, launched like ``cupy.RawKernel``."""

    def __init__(self, module: CpuModule, name: str, params: list[Param]) -> None:
        self.module = module
        self.name = name
        self.params = params
        # Whether the kernel reaches __syncthreads (None: not seen launched yet).
        self.needs_fibers: bool | None = None
        self._launch = getattr(module.library, f"nnb_launch_{name}")
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = [
            ctypes.POINTER(ctypes.c_uint),
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_void_p),
        ]

    def _check(self, args: Sequence[Any]) -> None:
        if len(args) != len(self.params):
            raise KernelLaunchError(
                f"{self.name} takes {len(self.params)} arguments, got {len(args)}"
            )
        for param, arg in zip(self.params, args, strict=True):
            where = f"{self.name}: argument {param.name!r}"
            if param.pointer:
                if arg is None:
                    continue
                if not isinstance(arg, numpy.ndarray):
                    raise KernelLaunchError(f"{where} must be an array, got {type(arg).__name__}")
                if arg.dtype != param.dtype or not arg.flags.c_contiguous:
                    raise KernelLaunchError(
                        f"{where} must be a C-contiguous {param.dtype} array, got "
                        f"{arg.dtype} (C-contiguous: {arg.flags.c_contiguous})"
                    )
                if not param.const and not arg.flags.writeable:
                    raise KernelLaunchError(f"{where} is written by the kernel but read-only")
            elif not (isinstance(arg, numpy.generic) and arg.dtype == param.dtype):
                # A GPU receives the scalar's bytes: a Python int where the kernel takes an
                # int (4 bytes) would shift every later argument, so demand the exact type.
                raise KernelLaunchError(
                    f"{where} must be a numpy.{param.dtype} scalar, got {type(arg).__name__}"
                    + (f" {arg.dtype}" if isinstance(arg, numpy.generic) else "")
                )

    def __call__(
        self,
        grid: Sequence[int],
        block: Sequence[int],
        args: Sequence[Any],
        checked: bool = True,
    ) -> None:
        """Run the kernel over ``grid`` blocks of ``block`` threads (each up to 3-D).

        ``checked=False`` runs it once, in place, without the bounds and race checks.
        """
        self._check(args)
        arrays = [arg for arg in args if isinstance(arg, numpy.ndarray)]
        if not checked:
            self._run(grid, block, args, arrays, order=0, direct=False)
            return
        runs: list[list[Any]] = []
        while len(runs) < 2:
            copies, records = _guarded(arrays)
            # Threads run as plain calls until the kernel is seen to use a barrier; then it
            # runs again with fibers, from fresh copies of the inputs.
            if not self._run(grid, block, args, copies, len(runs), not self.needs_fibers):
                self.needs_fibers = True
                runs = []
                continue
            for raw, _, _ in records:
                if (raw[:_GUARD_BYTES] != _GUARD_VALUE).any() or (
                    raw[-_GUARD_BYTES:] != _GUARD_VALUE
                ).any():
                    raise KernelLaunchError(f"{self.name} wrote outside an array's bounds")
            runs.append(records)
        for (first, _, original), (second, _, _) in zip(*runs, strict=True):
            if original.flags.writeable and first.tobytes() != second.tobytes():
                raise KernelLaunchError(
                    f"{self.name}: the result depends on the order the threads of a block "
                    "run in (a missing __syncthreads?)"
                )
        for _, inner, original in runs[0]:
            if original.flags.writeable:
                original[...] = inner

    def _run(
        self,
        grid: Sequence[int],
        block: Sequence[int],
        args: Sequence[Any],
        arrays: list[numpy.ndarray],
        order: int,
        direct: bool,
    ) -> bool:
        """One launch (threads first in increasing order if ``order`` is 0); False when a
        ``direct`` launch met a barrier and was abandoned."""
        grid3 = (ctypes.c_uint * 3)(*(tuple(grid) + (1, 1, 1))[:3])
        block3 = (ctypes.c_uint * 3)(*(tuple(block) + (1, 1, 1))[:3])
        replacement = iter(arrays)
        keep: list[Any] = []
        pointers = (ctypes.c_void_p * max(1, len(args)))()
        for i, (param, arg) in enumerate(zip(self.params, args, strict=True)):
            if param.pointer:
                address = None if arg is None else next(replacement).ctypes.data
                value: Any = ctypes.c_void_p(address)
            else:
                value = _CTYPES[param.ctype](arg.item())
            keep.append(value)
            pointers[i] = ctypes.cast(ctypes.pointer(value), ctypes.c_void_p)
        status = self._launch(grid3, block3, order, int(direct), pointers)
        if status == 5 and direct:
            return False
        if status != 0:
            raise KernelLaunchError(
                f"{self.name}: launch refused (status {status}) for grid {tuple(grid)}, "
                f"block {tuple(block)}"
            )
        return True


class CpuModule:
    """A kernel module compiled for the CPU: ``get_function(name)`` like ``cupy.RawModule``.

    Parameters
    ----------
    source : str
        CUDA source text with its headers inlined (:func:`nnback.kernels.cuda.load_source`).
    name : str
        A label for messages and for the cached library's file name.
    """

    def __init__(self, source: str, name: str) -> None:
        self.name = name
        self.path = _build(name, source)
        self.library = ctypes.CDLL(str(self.path))
        self.signatures = parse_signatures(source)
        self._functions: dict[str, CpuKernel] = {}

    def get_function(self, kernel: str) -> CpuKernel:
        if kernel not in self.signatures:
            raise KernelLaunchError(f"module {self.name}.cu has no kernel {kernel!r}")
        if kernel not in self._functions:
            self._functions[kernel] = CpuKernel(self, kernel, self.signatures[kernel])
        return self._functions[kernel]


_modules: dict[str, CpuModule] = {}
_lock = threading.Lock()


def module_for_source(source: str, name: str = "module") -> CpuModule:
    """The CPU build of any kernel source text (built at most once per process and text)."""
    key = hashlib.sha256(source.encode()).hexdigest()
    with _lock:
        if key not in _modules:
            _modules[key] = CpuModule(source, name)
        return _modules[key]


def load_module(name: str) -> CpuModule:
    """The CPU build of the kernel module ``name`` of :data:`nnback.kernels.cuda.SOURCES`."""
    return module_for_source(cuda_sources.load_source(name), name)


def build_all() -> dict[str, CpuModule]:
    """Build every kernel module, one compiler per core, and return them by name."""
    _compiler()
    names = cuda_sources.SOURCES
    workers = max(1, min(len(names), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda name: _build(name, cuda_sources.load_source(name)), names))
    return {name: load_module(name) for name in names}
