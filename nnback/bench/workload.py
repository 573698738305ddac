"""What a benchmark is: a work item, the runner that does it, and how much work one call does.

A :class:`Workload` is plain data plus a ``setup`` function. ``setup`` allocates everything
(data, model, optimizer state) and returns a :class:`Prepared`: the callable that is timed,
an optional warm-up that stands for "the first call" (it is timed separately, because it
includes compilation on the Numba and CuPy backends), and an optional ``finish`` that runs
after the timings and returns facts to record (an accuracy, a peak memory) and cleans up.

Both timing engines use the same workloads: the pytest-benchmark suite in ``bench/`` and the
quick runner behind ``nnback bench`` (:mod:`nnback.bench.runner`). The names agree, so a
result from one can be compared with a result from the other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

__all__ = [
    "CEILING_RUNNERS",
    "GPU_DRY_RUN_ENV_VAR",
    "GPU_PEERS",
    "PEERS",
    "CeilingSpec",
    "Prepared",
    "Workload",
    "WorkloadSkipped",
    "device_of",
    "env_int",
    "gpu_dry_run",
]

#: PyTorch on a CUDA device: eager, with fused Adam, and the whole step in a CUDA graph.
GPU_PEERS = ("torch-cuda", "torch-cuda-fused", "torch-cuda-graph")
#: Peer implementations, benchmarked in the same run when installed.
PEERS = ("torch", "torch-tuned", "sklearn", *GPU_PEERS)
#: Set to 1 to run the GPU benchmarks' code paths on the CPU with small sizes (nnback's
#: GPU runners on the numpy backend, PyTorch's on device "cpu", no graph capture): a dry
#: run of the plumbing that CI can afford. Its figures mean nothing.
GPU_DRY_RUN_ENV_VAR = "NNBACK_BENCH_GPU_DRY_RUN"
#: Runners of the hardware ceiling measurements (one per device kind).
CEILING_RUNNERS = ("cpu", "gpu")


class WorkloadSkipped(Exception):
    """Raised by a workload's setup when it cannot run here; the message says why."""


@dataclass(frozen=True)
class CeilingSpec:
    """A hardware ceiling to read a work item against.

    Attributes
    ----------
    device : str
        ``"cpu"`` or ``"gpu"``.
    kind : str
        ``"bandwidth"`` (a large copy), or a GEMM kind: ``"fwd"`` (``x @ w``), ``"bwd"``
        (``x.T @ dz`` and ``dz @ w.T``), ``"bwd-nodx"`` (``x.T @ dz`` only), ``"forward"``
        (every forward GEMM of a network) or ``"step"`` (every GEMM of a training step).
    dtype : str
        ``"float32"`` or ``"float64"``; empty for bandwidth.
    batch : int or None
        Rows of the GEMMs.
    layers : tuple of int
        ``(k_in, k_out)`` for one layer, or every width of a network.
    """

    device: str
    kind: str
    dtype: str = ""
    batch: int | None = None
    layers: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        """A stable text key, stored in the JSON of both the item and the ceiling."""
        if self.kind == "bandwidth":
            return f"{self.device} bandwidth"
        shape = "-".join(str(width) for width in self.layers) or "cnn"
        return f"{self.device} gemm {self.kind} {self.dtype} b{self.batch} {shape}"

    @property
    def measure(self) -> str:
        """What the ceiling's rate counts: ``"flops"`` or ``"bytes"``."""
        return "bytes" if self.kind == "bandwidth" else "flops"


@dataclass
class Prepared:
    """A workload made ready to time.

    Attributes
    ----------
    run : callable
        One timed call. It synchronizes the device before returning.
    warmup : callable, optional
        Stands for the first call (compilation included) when a whole ``run`` is too long
        to spend on warming up, e.g. a few training steps instead of an epoch.
    warmup_amount : float, optional
        The work ``warmup`` does, in the workload's unit (to subtract the steady-state part
        of the first-call time). Defaults to the workload's ``amount``.
    finish : callable, optional
        Called once after timing: returns facts to record and releases global state.
    """

    run: Callable[[], Any]
    warmup: Callable[[], Any] | None = None
    warmup_amount: float | None = None
    finish: Callable[[], dict[str, Any]] | None = None


@dataclass(frozen=True)
class Workload:
    """One benchmark: a work item done by one runner at one dtype and batch size.

    Attributes
    ----------
    family : str
        The kind of benchmark, also the pytest test name without ``test_``.
    group : str
        The work itself (``"train epoch 784-256-128-10"``): pytest-benchmark's group.
    runner : str
        A backend name (``"numpy"``, ``"numba"``, ``"cupy"``), a peer (``"torch"``,
        ``"torch-tuned"``, ``"sklearn"``) or a ceiling device (``"cpu"``, ``"gpu"``).
    dtype : str
        ``"float32"`` or ``"float64"`` (empty when it does not apply).
    batch : int or None
        Rows per batch (None when it does not apply).
    case : str
        What else tells this benchmark apart inside its family (a shape, an activation).
    setup : callable
        Returns a :class:`Prepared`; may raise :class:`WorkloadSkipped`.
    unit : str
        What ``amount`` counts: ``"sample"``, ``"step"``, ``"param"``, ``"flop"`` or
        ``"byte"``.
    amount : float
        Units of work done by one timed call; throughput is ``amount / time``.
    flops, bytes : float
        Floating-point operations of the GEMMs in one call, and the least memory traffic
        one call needs: compared with the ceiling's rate.
    ceiling : CeilingSpec, optional
        The hardware ceiling this item is read against.
    provides : CeilingSpec, optional
        Set on ceiling measurements: the ceiling they measure.
    long : bool
        One call takes seconds (an epoch): timed as a few single calls.
    max_rounds : int, optional
        At most this many timed calls (1 for a ten-epoch run).
    skip : str, optional
        Known before setup: why this benchmark cannot run here.
    env : tuple of (str, str)
        Environment variables the runner needs (``NNBACK_CAPTURE``): set in its worker
        process, and around its calls when it runs in this process.
    own_process : bool
        Each call already starts a fresh process of its own (a start-up measurement), so
        the catalog never wraps it in a worker.
    """

    family: str
    group: str
    runner: str
    dtype: str
    batch: int | None
    case: str
    setup: Callable[[], Prepared] = field(compare=False, repr=False)
    unit: str
    amount: float
    flops: float = 0.0
    bytes: float = 0.0
    ceiling: CeilingSpec | None = None
    provides: CeilingSpec | None = None
    long: bool = False
    max_rounds: int | None = None
    skip: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    own_process: bool = False

    @property
    def param_id(self) -> str:
        """The pytest parameter id: ``runner-dtype-bBATCH-case`` (empty parts left out)."""
        parts = [self.runner, self.dtype, f"b{self.batch}" if self.batch else "", self.case]
        return "-".join(part for part in parts if part)

    @property
    def name(self) -> str:
        """The pytest-benchmark ``name``: ``test_<family>[<param id>]``."""
        return f"test_{self.family}[{self.param_id}]"

    def extra_info(self) -> dict[str, Any]:
        """The facts every result carries in its JSON ``extra_info``, read by the report."""
        info: dict[str, Any] = {
            "family": self.family,
            "work": self.group,
            "runner": self.runner,
            "dtype": self.dtype,
            "batch": self.batch,
            "case": self.case,
            "unit": self.unit,
            "amount": self.amount,
        }
        if self.flops:
            info["flops"] = self.flops
        if self.bytes:
            info["bytes"] = self.bytes
        if self.ceiling is not None:
            info["ceiling"] = self.ceiling.key
        if self.provides is not None:
            info["ceiling_key"] = self.provides.key
            info["ceiling_measure"] = self.provides.measure
        return info


def device_of(backend: Any) -> str:
    """``"gpu"`` for a backend whose arrays live on a GPU (CuPy), else ``"cpu"``."""
    module = getattr(getattr(backend, "xp", None), "__name__", "")
    return "gpu" if module.split(".")[0] == "cupy" else "cpu"


def env_int(name: str, default: int) -> int:
    """An integer from the environment variable ``name``, or ``default`` when unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise InputError(f"{name}={raw!r}: expected a whole number") from None
    if value < 1:
        raise InputError(f"{name}={raw!r}: expected a positive number")
    return value


def gpu_dry_run() -> bool:
    """Whether ``NNBACK_BENCH_GPU_DRY_RUN=1``: GPU benchmarks run on the CPU, tiny and fake."""
    return os.environ.get(GPU_DRY_RUN_ENV_VAR, "").strip() == "1"
