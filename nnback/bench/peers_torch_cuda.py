"""PyTorch on a CUDA GPU as a peer: eager, with fused Adam, and the whole step in a CUDA graph.

The network is the one every training benchmark uses (``nn.Linear`` + ``nn.ReLU``,
``nn.CrossEntropyLoss``, Adam 1e-3, float32); the samples are uploaded to the device once.
The permutation of each epoch is drawn on the host (as nnback draws it) and uploaded.

- ``torch-cuda``: as users write the loop: minibatches indexed on the device from the
  permutation, ``zero_grad``, forward, loss, backward, ``Adam.step()``, ``loss.item()``
  each step (nnback's CPU peers read the loss each step too);
- ``torch-cuda-fused``: the same with ``Adam(fused=True)``;
- ``torch-cuda-graph``: the strongest way PyTorch offers: static buffers, warm-up steps on
  a side stream, then one ``torch.cuda.graph`` capture of the whole step per batch size
  (the full batch and the epoch's last, partial one) with ``Adam(capturable=True)``. The
  minibatch is gathered on the device *inside* the graph, from the epoch's permutation
  (uploaded once per epoch into a static tensor) and a step offset that the graph advances
  itself; the loss is summed on the device and read back once per epoch.

TF32 is turned off for matmuls (PyTorch's default too), so every runner does FP32 GEMMs.
Each timed epoch ends with ``torch.cuda.synchronize()``. Missing PyTorch, a CPU-only build
or no CUDA device skip with the reason. In a dry run (``NNBACK_BENCH_GPU_DRY_RUN=1``) the
same code runs on device ``cpu``; the graph runner then calls its step function directly
instead of replaying a graph (capture needs CUDA), with plain Adam (``capturable`` too).
"""

from __future__ import annotations

import ctypes.util
import os
import time
from typing import Any

import numpy

from .data import MAIN_NETWORK, NETWORKS, epoch_flops, mnist_shaped
from .workload import CeilingSpec, Prepared, Workload, WorkloadSkipped, gpu_dry_run

__all__ = [
    "GraphTrainer",
    "TORCH_CUDA",
    "TORCH_CUDA_FUSED",
    "TORCH_CUDA_GRAPH",
    "cuda_torch",
    "eager_epoch",
    "torch_cuda_epoch",
    "torch_cuda_unavailable",
]

TORCH_CUDA, TORCH_CUDA_FUSED, TORCH_CUDA_GRAPH = (
    "torch-cuda",
    "torch-cuda-fused",
    "torch-cuda-graph",
)
GRAPH_WARMUP_STEPS = 3


def torch_cuda_unavailable() -> str | None:
    """Why the PyTorch CUDA runners skip, as far as can be told without importing torch."""
    from .peers_torch import torch_unavailable

    missing = torch_unavailable()
    if missing is not None:
        return missing
    if gpu_dry_run():
        return None
    if not os.path.exists("/dev/nvidiactl") and ctypes.util.find_library("cuda") is None:
        return "no NVIDIA driver on this machine (no /dev/nvidiactl, no libcuda)"
    return None


def cuda_torch(device: str) -> Any:
    """PyTorch, checked to have a usable ``device``; :class:`WorkloadSkipped` saying why not."""
    from .peers_torch import _torch

    torch = _torch()
    if device == "cuda":
        if torch.version.cuda is None:
            raise WorkloadSkipped(f"PyTorch {torch.__version__} is a CPU-only build (no CUDA)")
        if not torch.cuda.is_available():
            raise WorkloadSkipped(
                f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) sees no usable CUDA "
                "device (no GPU, or the driver is missing or too old)"
            )
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return torch


def _model(torch: Any, device: str, **adam: Any) -> tuple[Any, Any, Any]:
    torch.manual_seed(0)
    widths = NETWORKS[MAIN_NETWORK]
    layers: list[Any] = []
    for index, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(torch.nn.Linear(n_in, n_out))
        if index < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(device=device, dtype=torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **adam)
    return model, optimizer, torch.nn.CrossEntropyLoss()


def _synchronize(torch: Any, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def eager_epoch(
    torch: Any, parts: tuple[Any, Any, Any], X: Any, y: Any, batch: int, generator: Any
) -> float:
    """One epoch as users write it; returns the mean loss (read back every step)."""
    model, optimizer, loss_fn = parts
    n = X.shape[0]
    order = torch.randperm(n, generator=generator).to(X.device)
    total = 0.0
    for start in range(0, n, batch):
        index = order[start : start + batch]
        optimizer.zero_grad()
        loss = loss_fn(model(X[index]), y[index])
        loss.backward()
        optimizer.step()
        total += loss.item() * index.shape[0]
    return total / n


class GraphTrainer:
    """The whole training step as one CUDA graph per batch size, fed from static buffers.

    On a CUDA device :meth:`capture` records the step; :meth:`epoch` then uploads the
    permutation, resets the device-side step offset and replays. On another device (a dry
    run, the tests) :meth:`epoch` calls the same step function directly, step by step.
    """

    def __init__(self, torch: Any, X: Any, y: Any, batch: int, generator: Any) -> None:
        self.torch, self.X, self.y, self.generator = torch, X, y, generator
        self.device = X.device
        self.cuda = self.device.type == "cuda"
        self.parts = _model(torch, str(self.device), **({"capturable": True} if self.cuda else {}))
        n = X.shape[0]
        full, rest = divmod(n, batch)
        #: (rows, how many such steps an epoch takes), the full batches first.
        self.steps = [(size, count) for size, count in ((batch, full), (rest, 1)) if size and count]
        long = dict(dtype=torch.int64, device=self.device)
        self.order = torch.zeros(n, **long)
        self.offset = torch.zeros((), **long)
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=self.device)
        self.rows = {size: torch.arange(size, **long) for size, _ in self.steps}
        self.graphs: dict[int, Any] = {}

    def step(self, size: int) -> None:
        """One step on the next ``size`` samples of the permutation, all on the device."""
        torch = self.torch
        model, optimizer, loss_fn = self.parts
        index = self.order.index_select(0, self.rows[size] + self.offset)
        inputs = self.X.index_select(0, index)
        labels = self.y.index_select(0, index)
        loss = loss_fn(model(inputs), labels)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            self.loss_sum.add_(loss.detach() * size)
            self.offset.add_(size)

    def _start_epoch(self) -> None:
        order = self.torch.randperm(self.X.shape[0], generator=self.generator)
        self.order.copy_(order)
        self.offset.zero_()
        self.loss_sum.zero_()

    def capture(self) -> None:
        """Warm up on a side stream (optimizer state, cuBLAS handles), then record each step."""
        torch = self.torch
        optimizer = self.parts[1]
        self._start_epoch()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):
                for size, _count in self.steps:
                    self.offset.zero_()
                    optimizer.zero_grad(set_to_none=True)
                    self.step(size)
        torch.cuda.current_stream().wait_stream(side)
        for size, _count in self.steps:
            # Gradients start unset, so the captured backward writes (not adds) static
            # gradient buffers of the graph's own, which every replay overwrites.
            optimizer.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.step(size)
            self.graphs[size] = graph
        torch.cuda.synchronize()

    def epoch(self) -> float:
        """One epoch; returns the mean loss, the only read-back of the epoch."""
        self._start_epoch()
        optimizer = self.parts[1]
        for size, count in self.steps:
            graph = self.graphs.get(size)
            for _ in range(count):
                if graph is not None:
                    graph.replay()
                else:
                    optimizer.zero_grad(set_to_none=True)
                    self.step(size)
        return float(self.loss_sum.item()) / self.X.shape[0]


def _setup(runner: str, batch: int, samples: int) -> Prepared:
    device = "cpu" if gpu_dry_run() else "cuda"
    torch = cuda_torch(device)
    X_host, y_host = mnist_shaped(samples, "float32")
    X = torch.from_numpy(numpy.array(X_host)).to(device)
    y = torch.from_numpy(numpy.array(y_host)).to(device)
    generator = torch.Generator().manual_seed(0)
    facts: dict[str, Any] = {"torch": torch.__version__, "device": device}
    if runner == TORCH_CUDA_GRAPH:
        trainer = GraphTrainer(torch, X, y, batch, generator)

        def warmup() -> None:
            started = time.perf_counter()
            if trainer.cuda:
                trainer.capture()
            facts["capture_s"] = time.perf_counter() - started
            trainer.epoch()
            _synchronize(torch, device)

        def run() -> None:
            facts["mean_loss"] = trainer.epoch()
            _synchronize(torch, device)

        facts["graphs"] = "captured" if trainer.cuda else "not captured (no CUDA: dry run)"
    else:
        parts = _model(torch, device, **({"fused": True} if runner == TORCH_CUDA_FUSED else {}))

        def run() -> None:
            facts["mean_loss"] = eager_epoch(torch, parts, X, y, batch, generator)
            _synchronize(torch, device)

        warmup = run
    if device == "cuda":
        facts["gpu"] = torch.cuda.get_device_name()
        facts["tf32"] = "on" if torch.backends.cuda.matmul.allow_tf32 else "off"
    return Prepared(
        run=run, warmup=warmup, warmup_amount=float(samples), finish=lambda: dict(facts)
    )


def torch_cuda_epoch(runner: str, batch: int, samples: int, ceiling: CeilingSpec) -> Workload:
    """The PyTorch CUDA ``runner``'s training epoch at ``batch`` (see the module doc)."""
    from .gpu import GPU_FAMILY

    return Workload(
        family=GPU_FAMILY,
        group=f"gpu train epoch {MAIN_NETWORK}",
        runner=runner,
        dtype="float32",
        batch=batch,
        case=MAIN_NETWORK,
        setup=lambda: _setup(runner, batch, samples),
        unit="sample",
        amount=samples,
        flops=epoch_flops(NETWORKS[MAIN_NETWORK], samples, batch),
        ceiling=ceiling,
        long=True,
        skip=torch_cuda_unavailable(),
    )
