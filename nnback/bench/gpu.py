"""The GPU benchmarks: nnback's CuPy backend beside PyTorch CUDA, read against the GEMM peak.

One work item, a training epoch of 784-256-128-10 (ReLU, softmax + cross-entropy, Adam 1e-3,
float32) over MNIST-shaped samples at batch 128, 1024 and 8192, done by five runners, each
in a worker process of its own and taking its rounds in turn with the others:

- ``cupy``: nnback's ``fit`` on the cupy backend with captured steps (``NNBACK_CAPTURE=1``
  in its worker: each training step replayed as a CUDA graph where supported);
- ``cupy-eager``: the same with ``NNBACK_CAPTURE=0`` (every op launched from Python);
- ``torch-cuda``, ``torch-cuda-fused``, ``torch-cuda-graph``: PyTorch on the GPU as users
  write it, with fused Adam, and with the whole step captured in a CUDA graph
  (:mod:`nnback.bench.peers_torch_cuda`).

The first timed call of each is preceded by a whole warm-up epoch (compilation, graph
capture of both the full and the last, partial batch), so the figures are steady-state
epochs. Every item refers to the peak FP32 GEMM rate of the GPU (TF32 off) measured in the
same run, so the report reads each result as a share of it: samples/s times the GEMM FLOPs
per sample (``network_flops`` of the shapes: 1.007 MFLOP for this network) over that rate.

With ``NNBACK_BENCH_GPU_DRY_RUN=1`` the same code runs on the CPU (numpy backend, PyTorch on
device ``cpu``, a small GEMM) so the plumbing can be tested where there is no GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .data import MAIN_NETWORK
from .endtoend import train_epoch_workload
from .workload import GPU_PEERS, CeilingSpec, Prepared, Workload, gpu_dry_run

__all__ = [
    "CAPTURE_ENV_VAR",
    "GPU_BATCHES",
    "GPU_FAMILY",
    "NNBACK_GPU_RUNNERS",
    "gpu_backend_name",
    "gpu_backend_reason",
    "gpu_train_epochs",
    "nnback_gpu_env",
    "peak_ceiling",
    "scoped_environment",
]

GPU_FAMILY = "gpu_train_epoch"
GPU_BATCHES = (128, 1024, 8192)
CAPTURE_ENV_VAR = "NNBACK_CAPTURE"
#: nnback's GPU runners and the value of ``NNBACK_CAPTURE`` each runs under.
NNBACK_GPU_RUNNERS = {"cupy": "1", "cupy-eager": "0"}
PEAK_SIZE = 8192
DRY_RUN_PEAK_SIZE = 256


def gpu_backend_name() -> str:
    """The backend nnback's GPU runners use: ``cupy`` (``numpy`` in a dry run)."""
    return "numpy" if gpu_dry_run() else "cupy"


def gpu_backend_reason() -> str | None:
    """Why nnback's GPU runners skip here (CuPy or its GPU missing), or None."""
    if gpu_dry_run():
        return None
    from ..backends import get_backend

    try:  # only cupy: a worker must not load numba (nor set its OpenMP policy) for nothing
        get_backend("cupy")
    except Exception as exc:  # unavailable, or not registered
        return f"the cupy backend does not load: {exc}"
    return None


def nnback_gpu_env(runner: str) -> dict[str, str]:
    """The environment an nnback GPU runner's worker needs (captured or eager steps)."""
    return {CAPTURE_ENV_VAR: NNBACK_GPU_RUNNERS[runner]}


def peak_ceiling() -> CeilingSpec:
    """The peak FP32 GEMM of the GPU: one ``n x n`` by ``n x n`` product (n = 8192)."""
    size = DRY_RUN_PEAK_SIZE if gpu_dry_run() else PEAK_SIZE
    return CeilingSpec("gpu", "peak", "float32", size, (size, size))


@contextlib.contextmanager
def scoped_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in before.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _in_environment(call: Callable[[], Any], values: Mapping[str, str]) -> Callable[[], Any]:
    def scoped() -> Any:
        with scoped_environment(values):
            return call()

    return scoped


def _nnback_epoch(runner: str, batch: int, samples: int, skip: str | None) -> Workload:
    """nnback's training epoch on the GPU backend, captured or eager, whole-epoch warm-up."""
    env = nnback_gpu_env(runner)
    base = train_epoch_workload(gpu_backend_name(), "float32", batch, MAIN_NETWORK, samples, skip)

    def setup() -> Prepared:
        # In a worker the variable is already set; in this process (--same-process) it is
        # set around every call, so both modes train the same way.
        with scoped_environment(env):
            prepared = base.setup()
        epoch = _in_environment(prepared.run, env)

        def finish() -> dict[str, Any]:
            return {"nnback_capture": os.environ.get(CAPTURE_ENV_VAR, "(unset)")}

        return Prepared(
            run=epoch,
            warmup=epoch,
            warmup_amount=float(samples),
            finish=_in_environment(finish, env),
        )

    return dataclasses.replace(
        base,
        family=GPU_FAMILY,
        group=f"gpu train epoch {MAIN_NETWORK}",
        runner=runner,
        setup=setup,
        ceiling=peak_ceiling(),
        env=tuple(env.items()),
    )


def gpu_train_epochs(
    samples: int, peers: bool, runners: tuple[str, ...] | None = None
) -> list[Workload]:
    """Every GPU training epoch: each batch size, nnback's runners then PyTorch's.

    ``runners`` keeps only those named (a worker builds only its own, so a PyTorch worker
    never loads CuPy).
    """
    from .peers_torch_cuda import torch_cuda_epoch

    wanted = (lambda name: True) if runners is None else (lambda name: name in runners)
    found: list[Workload] = []
    reason: list[str | None] = []
    for batch in GPU_BATCHES:
        for runner in NNBACK_GPU_RUNNERS:
            if wanted(runner):
                if not reason:
                    reason.append(gpu_backend_reason())
                found.append(_nnback_epoch(runner, batch, samples, reason[0]))
        if peers:
            for peer in GPU_PEERS:
                if wanted(peer):
                    found.append(torch_cuda_epoch(peer, batch, samples, peak_ceiling()))
    return found
