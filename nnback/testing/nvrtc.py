"""Compile CUDA sources with NVRTC through ctypes, without a GPU or a driver.

CuPy's own compile helpers ask the driver for the device's architecture, so they cannot run
on a machine without a GPU. NVRTC itself needs neither: this module loads ``libnvrtc`` (from
the ``nvidia-cuda-nvrtc-cu12`` or ``nvidia-cuda-nvrtc`` (CUDA 13) pip wheel, a CUDA toolkit,
or the path in ``NNBACK_NVRTC_LIBRARY``), compiles a source for a named architecture and
returns the PTX, the CUBIN and the log, from which :func:`parse_resource_usage` reads the
register and spill figures that ``--ptxas-options=-v`` prints.

Two traps of newer NVRTC versions are handled here:

* From CUDA 12.9 NVRTC keeps a cache of compiled PTX and CUBIN in the driver's compute
  cache (``~/.nv/ComputeCache``) whenever a driver (``libcuda``) can be loaded. A
  compilation served from that cache never runs ptxas, so ``-v`` prints nothing and the
  register figures are missing from the log. This is invisible on a machine without a
  driver, where NVRTC quietly disables the cache. :meth:`Nvrtc.compile` adds
  ``--no-cache`` (an option NVRTC 12.8 and older reject) whenever it asks for the report.
* The CUDA 13 wheel's ``libnvrtc.so.13`` has no RUNPATH, so it cannot find its
  ``libnvrtc-builtins.so.13.x`` beside it unless that folder is on the loader's path;
  :class:`Nvrtc` loads the builtins library from the same folder first.
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import sys
from dataclasses import dataclass, field

__all__ = [
    "CompileResult",
    "KernelResources",
    "Nvrtc",
    "NvrtcNotFound",
    "find_nvrtc_library",
    "load_nvrtc",
    "parse_resource_usage",
    "verbose_options",
]

ENV_VAR = "NNBACK_NVRTC_LIBRARY"

# Where the pip wheels put the library, relative to a site-packages folder: CUDA 12's
# nvidia-cuda-nvrtc-cu12, then CUDA 13's nvidia-cuda-nvrtc.
_WHEEL_PATTERNS = ("nvidia/cuda_nvrtc/lib/libnvrtc.so.*", "nvidia/cu13/lib/libnvrtc.so.*")
_TOOLKIT_PATTERNS = ("lib64/libnvrtc.so*", "lib/libnvrtc.so*", "targets/*/lib/libnvrtc.so*")

# The first NVRTC with a compilation cache (and so with the option that turns it off).
_CACHE_SINCE = (12, 9)


class NvrtcNotFound(RuntimeError):
    """No NVRTC shared library could be found or loaded here."""


@dataclass
class KernelResources:
    """What ptxas reports for one kernel on one architecture."""

    registers: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    stack_frame: int = 0
    shared_bytes: int = 0


@dataclass
class CompileResult:
    """The outcome of one NVRTC compilation."""

    ok: bool
    log: str
    ptx: bytes = b""
    cubin: bytes = b""
    resources: dict[str, KernelResources] = field(default_factory=dict)


def _candidates() -> list[str]:
    """Library paths to try, best first (the newest version within each group)."""
    found: list[str] = []
    explicit = os.environ.get(ENV_VAR, "").strip()
    if explicit:
        found.append(explicit)
    for entry in sys.path:
        for pattern in _WHEEL_PATTERNS:
            found.extend(sorted(glob.glob(os.path.join(entry or ".", pattern)), reverse=True))
    roots = [os.environ.get("CUDA_PATH", ""), os.environ.get("CUDA_HOME", "")]
    roots += sorted(glob.glob("/usr/local/cuda*"), reverse=True)
    for root in filter(None, roots):
        for pattern in _TOOLKIT_PATTERNS:
            found.extend(sorted(glob.glob(os.path.join(root, pattern)), reverse=True))
    # The ".alt" variant of the wheels is the same compiler built differently; skip it, and
    # skip duplicates while keeping the order.
    unique: list[str] = []
    for path in found:
        if ".alt." not in os.path.basename(path) and path not in unique:
            unique.append(path)
    return unique


def find_nvrtc_library() -> str | None:
    """The path of the first NVRTC library that loads, or None."""
    for path in _candidates():
        try:
            ctypes.CDLL(path)
        except OSError:
            continue
        return path
    return None


def verbose_options(version: tuple[int, int]) -> tuple[str, ...]:
    """The options that make NVRTC ``version`` print the ptxas -v report for a real arch.

    ``--ptxas-options=-v`` alone is not enough from NVRTC 12.9 on: a CUBIN served from the
    driver-backed compilation cache comes without running ptxas, hence without a report,
    so the cache is turned off for these compilations with ``--no-cache``. Older versions
    have no cache and reject that option.
    """
    options = ("--ptxas-options=-v",)
    if version >= _CACHE_SINCE:
        options += ("--no-cache",)
    return options


class Nvrtc:
    """A loaded NVRTC library: version, supported architectures and :meth:`compile`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lib = ctypes.CDLL(path)
        lib = self._lib
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        self.version = (major.value, minor.value)
        self._builtins = self._load_builtins()

    def _load_builtins(self) -> ctypes.CDLL | None:
        """Load ``libnvrtc-builtins.so.<major>.<minor>`` from the folder of ``libnvrtc``.

        NVRTC opens that library by its bare name during each compilation. The CUDA 12
        wheel's libnvrtc finds it through its RUNPATH ($ORIGIN); the CUDA 13 wheel's has
        none, and compiling then fails with "failed to open libnvrtc-builtins.so.13.0"
        unless the folder happens to be on LD_LIBRARY_PATH. Once a library of that SONAME
        is loaded, the dynamic loader hands it to NVRTC's own lookup.
        """
        major, minor = self.version
        builtins = os.path.join(
            os.path.dirname(os.path.abspath(self.path)), f"libnvrtc-builtins.so.{major}.{minor}"
        )
        if not os.path.exists(builtins):
            return None  # a toolkit install with its own search path: leave it to NVRTC
        try:
            return ctypes.CDLL(builtins)
        except OSError:
            return None

    def verbose_options(self) -> tuple[str, ...]:
        """The options that make this NVRTC print the ptxas -v report (see below)."""
        return verbose_options(self.version)

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            message = self._lib.nvrtcGetErrorString(status).decode()
            raise RuntimeError(f"{what} failed: {message} ({status})")

    def supported_architectures(self) -> list[int]:
        """Compute capabilities this NVRTC can target, e.g. [75, 80, 86, 89, 90, ...]."""
        count = ctypes.c_int()
        status = self._lib.nvrtcGetNumSupportedArchs(ctypes.byref(count))
        self._check(status, "nvrtcGetNumSupportedArchs")
        archs = (ctypes.c_int * count.value)()
        self._check(self._lib.nvrtcGetSupportedArchs(archs), "nvrtcGetSupportedArchs")
        return list(archs)

    def _read(self, prog: ctypes.c_void_p, size_fn: str, get_fn: str) -> bytes:
        size = ctypes.c_size_t()
        if getattr(self._lib, size_fn)(prog, ctypes.byref(size)) != 0 or size.value == 0:
            return b""
        buffer = ctypes.create_string_buffer(size.value)
        if getattr(self._lib, get_fn)(prog, buffer) != 0:
            return b""
        return buffer.raw[: size.value]

    def compile(
        self, source: str, name: str, arch: str, options: tuple[str, ...] = ()
    ) -> CompileResult:
        """Compile ``source`` for ``arch`` (``"sm_80"``: CUBIN and PTX; ``"compute_80"``: PTX).

        ``--ptxas-options=-v`` (and, where NVRTC has a compilation cache, ``--no-cache``:
        see :meth:`verbose_options`) is added for a real architecture so the log carries
        the register and spill figures, parsed into ``CompileResult.resources``.
        """
        prog = ctypes.c_void_p()
        status = self._lib.nvrtcCreateProgram(
            ctypes.byref(prog), source.encode(), name.encode(), 0, None, None
        )
        self._check(status, "nvrtcCreateProgram")
        try:
            flags = [f"--gpu-architecture={arch}", *options]
            if arch.startswith("sm_"):
                flags.extend(option for option in self.verbose_options() if option not in flags)
            argv = (ctypes.c_char_p * len(flags))(*(flag.encode() for flag in flags))
            status = self._lib.nvrtcCompileProgram(prog, len(flags), argv)
            log = self._read(prog, "nvrtcGetProgramLogSize", "nvrtcGetProgramLog")
            text = log.rstrip(b"\0").decode(errors="replace")
            if status != 0:
                message = self._lib.nvrtcGetErrorString(status).decode()
                return CompileResult(ok=False, log=f"{message}\n{text}")
            ptx = self._read(prog, "nvrtcGetPTXSize", "nvrtcGetPTX")
            cubin = b""
            if arch.startswith("sm_"):
                cubin = self._read(prog, "nvrtcGetCUBINSize", "nvrtcGetCUBIN")
            return CompileResult(
                ok=True, log=text, ptx=ptx, cubin=cubin, resources=parse_resource_usage(text)
            )
        finally:
            self._lib.nvrtcDestroyProgram(ctypes.byref(prog))


_loaded: Nvrtc | None = None


def load_nvrtc() -> Nvrtc:
    """The NVRTC library of this machine (loaded once), or :class:`NvrtcNotFound` saying why."""
    global _loaded
    if _loaded is None:
        path = find_nvrtc_library()
        if path is None:
            raise NvrtcNotFound(
                "no NVRTC library found: pip install nvidia-cuda-nvrtc-cu12 (CUDA 12) or "
                f"nvidia-cuda-nvrtc (CUDA 13), or set {ENV_VAR} to a libnvrtc.so path"
            )
        _loaded = Nvrtc(path)
    return _loaded


_ENTRY = re.compile(r"Compiling entry function '(\w+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?, (\d+) bytes smem)?")


def parse_resource_usage(log: str) -> dict[str, KernelResources]:
    """Registers, spills, stack and static shared memory per kernel, from a ptxas -v log."""
    usage: dict[str, KernelResources] = {}
    current: KernelResources | None = None
    for line in log.splitlines():
        entry = _ENTRY.search(line)
        if entry:
            current = usage.setdefault(entry.group(1), KernelResources())
            continue
        if current is None:
            continue
        frame = _FRAME.search(line)
        if frame:
            current.stack_frame, current.spill_stores, current.spill_loads = (
                int(value) for value in frame.groups()
            )
        used = _USED.search(line)
        if used:
            current.registers = int(used.group(1))
            current.shared_bytes = int(used.group(2) or 0)
    return usage
