"""The machine a result was measured on: CPU, cores, BLAS and threads, library versions.

Recorded in every JSON file (``machine_info``) and printed above every table, because a
benchmark number means nothing without it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["commit_info", "describe_machine", "machine_info"]

_NOTABLE_FLAGS = ("avx512f", "avx2", "fma", "neon", "sve")
_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "OMP_WAIT_POLICY",
    "NNBACK_TEST_BACKENDS",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [flag for flag in _NOTABLE_FLAGS if flag in flags]
    except OSError:
        pass
    return []


def _blas() -> list[str]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["BLAS unknown (pip install threadpoolctl to name it)"]
    return [
        f"{pool.get('internal_api')} {pool.get('version')} "
        f"({pool.get('num_threads')} threads, {pool.get('threading_layer', pool.get('user_api'))})"
        for pool in threadpool_info()
    ]


def _versions() -> dict[str, str]:
    import importlib.metadata

    versions = {}
    for package in (
        "nnback",
        "numpy",
        "numba",
        "cupy",
        "torch",
        "scikit-learn",
        "pytest-benchmark",
    ):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def machine_info() -> dict[str, Any]:
    """The facts pytest-benchmark records, plus CPU model, BLAS, threads and versions."""
    from ..backends import backend_status

    uname = platform.uname()
    return {
        "node": uname.node,
        "processor": uname.processor,
        "machine": uname.machine,
        "python_compiler": platform.python_compiler(),
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "release": uname.release,
        "system": uname.system,
        "cpu": {
            "brand_raw": _cpu_model(),
            "count": os.cpu_count(),
            "flags": _cpu_flags(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        },
        "blas": _blas(),
        "threads_env": {name: os.environ.get(name) for name in _THREAD_VARIABLES},
        "versions": _versions(),
        "nnback_backends": {
            name: reason or "available" for name, reason in backend_status().items()
        },
    }


def describe_machine(info: dict[str, Any]) -> str:
    """One line naming the CPU, cores, BLAS and Python of a ``machine_info``."""
    cpu = info.get("cpu") or {}
    flags = "/".join(flag for flag in _NOTABLE_FLAGS if flag in (cpu.get("flags") or []))
    blas = "; ".join(info.get("blas") or []) or "BLAS unknown"
    cores = cpu.get("affinity") or cpu.get("count") or "?"
    return (
        f"{cpu.get('brand_raw', info.get('processor') or '?')}"
        f"{f' ({flags})' if flags else ''}, {cores} cores usable; {blas}; "
        f"Python {info.get('python_version', '?')}"
    )


def commit_info() -> dict[str, Any]:
    """The git commit of the working directory, as pytest-benchmark records it (or {})."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, check=True)
        return done.stdout.strip()

    try:
        return {
            "id": git("rev-parse", "HEAD"),
            "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "project": Path(git("rev-parse", "--show-toplevel")).name,
        }
    except (OSError, subprocess.SubprocessError):
        return {}
