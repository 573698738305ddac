"""CUDA C sources of the CuPy backend's fused kernels (shipped as ``nnback.kernels.cuda``).

Each ``.cu`` file here is a module of templated kernels with ``extern "C"`` entry points named
``<kernel>_f32`` / ``<kernel>_f64``; its header comment names the reference op of
:class:`nnback.backends.base.Backend` that each kernel must match. Three consumers read them
through :func:`load_source`, so all three see the same text:

* :class:`nnback.backends.cupy_backend.CupyBackend` compiles them with ``cupy.RawModule``;
* :mod:`nnback.testing.nvrtc` compiles them with NVRTC for sm_80 and sm_90 (no GPU needed);
* :mod:`nnback.testing.cpu_kernels` compiles them as C++ with ``cpu_shim.h`` and runs them on
  the CPU.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "COMPILE_OPTIONS",
    "CUPY_ADDED_OPTIONS",
    "MAX_BLOCK",
    "SOURCES",
    "kernel_names",
    "load_source",
    "source_dir",
]

# The kernel modules, by file stem.
SOURCES = ("dense", "losses", "optimizers", "dropout", "step", "conv")

# NVRTC options for every module, on the GPU and in the compile check alike. --fmad=false keeps
# a * b + c as two roundings, as NumPy computes it (the kernels are memory-bound, so the fused
# multiply-add would buy no speed, only a difference from the reference); no --use_fast_math,
# so expf/logf/tanhf are the accurate versions and division and square root are IEEE-rounded.
COMPILE_OPTIONS = ("--std=c++17", "--fmad=false")

# What cupy.RawModule adds to every NVRTC compilation besides the architecture (CuPy 13 and
# 14, cupy/cuda/compiler.py): float32 subnormals flushed to zero. The compile check adds it
# too, to compile exactly what the GPU runs. It changes results only below 1.2e-38.
CUPY_ADDED_OPTIONS = ("-ftz=true",)

# Most threads per block any launcher may use: NNB_MAX_BLOCK in common.cuh sizes the static
# shared arrays by it (a test checks the two agree).
MAX_BLOCK = 256

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.MULTILINE)
_ENTRY = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(')


def source_dir() -> Path:
    """The folder holding the ``.cu`` / ``.cuh`` / ``.h`` files."""
    return Path(__file__).resolve().parent


def load_source(name: str) -> str:
    """The text of ``<name>.cu`` with its local ``#include "..."`` headers inlined once each.

    Inlining (rather than passing an include path) makes the text self-contained, so CuPy's
    on-disk kernel cache, keyed by the source text, notices a change in a header too.
    """
    if name not in SOURCES:
        raise ValueError(f"unknown CUDA kernel module {name!r}; expected one of {SOURCES}")
    seen: set[str] = set()

    def expand(path: Path) -> str:
        def include(match: re.Match[str]) -> str:
            header = match.group(1)
            if header in seen:
                return f"// {header} already included"
            seen.add(header)
            return f"// ---- begin {header}\n{expand(path.parent / header)}// ---- end {header}"

        return _INCLUDE.sub(include, path.read_text(encoding="utf-8"))

    return expand(source_dir() / f"{name}.cu")


def kernel_names(name: str) -> list[str]:
    """The ``extern "C"`` kernel entry points of module ``name``, in source order."""
    return _ENTRY.findall(load_source(name))
