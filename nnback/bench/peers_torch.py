"""PyTorch CPU as a peer: the same work, done the way PyTorch users do it.

Two runners:

- ``torch``: as users run it: ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU``,
  ``nn.CrossEntropyLoss``, ``optim.Adam`` with its defaults (``lr=1e-3``), a minibatch
  loop over a ``randperm`` of the samples reading ``loss.item()`` each step (nnback's
  ``fit`` reads the loss each step too);
- ``torch-tuned``: the same with ``Adam(fused=True)`` and ``torch.set_flush_denormal(True)``
  (restored afterwards, since it changes the calling thread's floating-point mode).

PyTorch's intra-op threads are set to the machine's CPU count. Per-op peers call the
kernels PyTorch's autograd calls (``threshold_backward``, ``sigmoid_backward``, ...) so
their times compare with nnback's fused ops. Missing PyTorch skips with the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy

from .data import NETWORKS, mnist_shaped, real_data
from .workload import Prepared, Workload, WorkloadSkipped

__all__ = ["TORCH", "TORCH_TUNED", "torch_peer", "torch_unavailable"]

TORCH, TORCH_TUNED = "torch", "torch-tuned"
_FUSED = {"sgd", "adagrad", "adam"}
_WARMUP_STEPS = 3


def torch_unavailable() -> str | None:
    """None when PyTorch is importable, else why its benchmarks skip."""
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed (pip install torch; the CPU build is enough)"
    return None


def users_wait_policy() -> str | None:
    """The ``OMP_WAIT_POLICY`` the user chose: None if only nnback's numba runtime set it."""
    runtime = sys.modules.get("nnback.kernels.cpu.runtime")
    if runtime is not None:
        try:
            if "set by nnback" in runtime.threading_facts()["OMP_WAIT_POLICY"]:
                return None
        except Exception:  # facts are best effort; keep the environment as it is
            pass
    return os.environ.get("OMP_WAIT_POLICY")


@contextlib.contextmanager
def _users_openmp_environment() -> Iterator[None]:
    """Import PyTorch under the user's OpenMP settings, as a PyTorch user would run it.

    The numba backend sets ``OMP_WAIT_POLICY=passive`` for the process when imported (for
    its own reasons); PyTorch's bundled OpenMP reads the variable once, when it loads, and
    would run slower than its users see it if it read nnback's choice.
    """
    before = os.environ.get("OMP_WAIT_POLICY")
    wanted = users_wait_policy()
    if wanted is None:
        os.environ.pop("OMP_WAIT_POLICY", None)
    else:
        os.environ["OMP_WAIT_POLICY"] = wanted
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_WAIT_POLICY", None)
        else:
            os.environ["OMP_WAIT_POLICY"] = before


def _torch() -> Any:
    if "torch" not in sys.modules:
        with _users_openmp_environment():
            import torch
    import torch

    threads = os.cpu_count() or 1
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch


def _tensor(torch: Any, rng: numpy.random.Generator, shape: tuple[int, ...], dtype: str) -> Any:
    return torch.from_numpy(rng.standard_normal(shape).astype(dtype))


def _activation_forward(torch: Any, activation: str) -> Callable[[Any], Any]:
    functional = torch.nn.functional
    return {
        "linear": lambda z: z.clone(),
        "relu": functional.relu,
        "leaky_relu": lambda z: functional.leaky_relu(z, 0.01),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "softmax": lambda z: torch.softmax(z, 1),
    }[activation]


def _activation_backward(torch: Any, activation: str) -> Callable[[Any, Any], Any]:
    aten = torch.ops.aten
    return {
        "linear": lambda dy, y: dy.clone(),
        "relu": lambda dy, y: aten.threshold_backward(dy, y, 0.0),
        "leaky_relu": lambda dy, y: aten.leaky_relu_backward(dy, y, 0.01, True),
        "sigmoid": aten.sigmoid_backward,
        "tanh": aten.tanh_backward,
        "softmax": lambda dy, y: aten._softmax_backward_data(dy, y, 1, y.dtype),
    }[activation]


def _dense(work: Workload, n_in: int, n_out: int, activation: str, backward: bool) -> Any:
    need_dx = work.family == "dense_backward" and n_in != 784

    def setup() -> Prepared:
        torch = _torch()
        rng, n, dtype = numpy.random.default_rng(0), int(work.batch or 1), work.dtype
        x, w, b = (_tensor(torch, rng, s, dtype) for s in ((n, n_in), (n_out, n_in), (n_out,)))
        act = _activation_forward(torch, activation)
        if not backward:

            def forward() -> None:
                with torch.no_grad():
                    act(torch.nn.functional.linear(x, w, b))

            return Prepared(run=forward)
        y = act(torch.nn.functional.linear(x, w, b))
        dy = _tensor(torch, rng, (n, n_out), dtype)
        act_backward = _activation_backward(torch, activation)

        def run_backward() -> None:
            with torch.no_grad():
                dz = act_backward(dy, y)
                torch.mm(dz.t(), x)
                dz.sum(0)
                if need_dx:
                    torch.mm(dz, w)

        return Prepared(run=run_backward)

    return setup


def _activation(work: Workload) -> Any:
    width = 10 if work.case == "softmax" else 256

    def setup() -> Prepared:
        torch = _torch()
        rng = numpy.random.default_rng(0)
        z = _tensor(torch, rng, (int(work.batch or 1), width), work.dtype)
        forward = _activation_forward(torch, work.case)
        if work.family == "activation_forward":
            return Prepared(run=lambda: forward(z))
        y, dy = forward(z), _tensor(torch, rng, tuple(z.shape), work.dtype)
        backward = _activation_backward(torch, work.case)
        return Prepared(run=lambda: backward(dy, y))

    return setup


def _loss(work: Workload) -> Any:
    loss = "softmax_crossentropy" if work.family == "softmax_crossentropy" else work.case

    def setup() -> Prepared:
        torch = _torch()
        functional = torch.nn.functional
        rng, n = numpy.random.default_rng(0), int(work.batch or 1)
        logits = _tensor(torch, rng, (n, 10), work.dtype)
        labels = torch.from_numpy(rng.integers(0, 10, n))
        targets = _tensor(torch, rng, (n, 10), work.dtype)
        if loss == "softmax_crossentropy":
            pred, fn = logits, lambda p: functional.cross_entropy(p, labels)
        elif loss == "categorical_crossentropy":
            pred = torch.softmax(logits, 1)
            fn = lambda p: functional.nll_loss(torch.log(p.clamp(1e-7, 1 - 1e-7)), labels)  # noqa: E731
        elif loss == "binary_crossentropy":
            pred, targets = torch.sigmoid(logits), (targets > 0).to(logits.dtype)
            fn = lambda p: functional.binary_cross_entropy(p, targets)  # noqa: E731
        elif loss == "mean_squared_error":
            pred, fn = logits, lambda p: functional.mse_loss(p, targets)
        else:
            pred, fn = logits, lambda p: functional.l1_loss(p, targets)
        pred = pred.detach().requires_grad_(True)
        return Prepared(run=lambda: torch.autograd.grad(fn(pred), pred))

    return setup


def _optimizer(work: Workload, tuned: bool) -> Any:
    name, shape_text = work.case.split("-")
    shape = tuple(int(part) for part in shape_text.split("x"))
    if tuned and name not in _FUSED:
        raise WorkloadSkipped(f"torch.optim has no fused {name} on CPU")

    def setup() -> Prepared:
        torch = _torch()
        rng = numpy.random.default_rng(0)
        param = torch.nn.Parameter(_tensor(torch, rng, shape, work.dtype))
        param.grad = 0.01 * _tensor(torch, rng, shape, work.dtype)
        extra = {"fused": True} if tuned else {}
        optimizer = {
            "sgd": lambda: torch.optim.SGD([param], lr=0.01, momentum=0.9, **extra),
            "adagrad": lambda: torch.optim.Adagrad([param], lr=0.01, **extra),
            "rmsprop": lambda: torch.optim.RMSprop([param], lr=0.001),
            "adam": lambda: torch.optim.Adam([param], lr=0.001, **extra),
        }[name]()
        return Prepared(run=optimizer.step)

    return setup


def _mlp(torch: Any, network: str, dtype: str, tuned: bool) -> tuple[Any, Any, Any]:
    torch.manual_seed(0)
    layers: list[Any] = []
    widths = NETWORKS[network]
    for index, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(torch.nn.Linear(n_in, n_out))
        if index < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(getattr(torch, dtype))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if tuned else {}))
    return model, optimizer, torch.nn.CrossEntropyLoss()


def _cnn(torch: Any, dtype: str, tuned: bool) -> tuple[Any, Any, Any]:
    """The CNN of :func:`nnback.zoo.build_cnn` as a PyTorch user writes it (NCHW input)."""
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(1600, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    ).to(getattr(torch, dtype))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if tuned else {}))
    return model, optimizer, nn.CrossEntropyLoss()


def _model(torch: Any, network: str, dtype: str, tuned: bool) -> tuple[Any, Any, Any]:
    from .conv import CNN_NETWORK

    if network == CNN_NETWORK:
        return _cnn(torch, dtype, tuned)
    return _mlp(torch, network, dtype, tuned)


def _conv_op(work: Workload) -> Any:
    """A conv or max-pool op of the CNN as PyTorch's autograd runs it (aten kernels)."""
    from .conv import CONV_LAYERS, POOL_LAYERS

    family, batch, dtype = work.family, int(work.batch or 1), work.dtype

    def setup() -> Prepared:
        torch = _torch()
        functional, aten = torch.nn.functional, torch.ops.aten
        rng = numpy.random.default_rng(0)
        if family.startswith("maxpool"):
            c, h, w = POOL_LAYERS[work.case]
            x = _tensor(torch, rng, (batch, c, h, w), dtype)
            if family == "maxpool2d_forward":
                return Prepared(run=lambda: functional.max_pool2d(x, 2, return_indices=True))
            y, indices = functional.max_pool2d(x, 2, return_indices=True)
            dy = _tensor(torch, rng, tuple(y.shape), dtype)
            return Prepared(
                run=lambda: aten.max_pool2d_with_indices_backward(
                    dy, x, [2, 2], [2, 2], [0, 0], [1, 1], False, indices
                )
            )
        (c, h, w), wshape = CONV_LAYERS[work.case]
        x = _tensor(torch, rng, (batch, c, h, w), dtype)
        weight = _tensor(torch, rng, wshape, dtype)
        bias = _tensor(torch, rng, (wshape[0],), dtype)
        if family == "conv2d_forward":

            def forward() -> None:
                with torch.no_grad():
                    torch.relu(functional.conv2d(x, weight, bias))

            return Prepared(run=forward)
        y = torch.relu(functional.conv2d(x, weight, bias))
        dy = _tensor(torch, rng, tuple(y.shape), dtype)
        need_dx = work.case != "conv1"

        def backward() -> None:
            with torch.no_grad():
                dz = aten.threshold_backward(dy, y, 0.0)
                aten.convolution_backward(
                    dz,
                    x,
                    weight,
                    [wshape[0]],
                    [1, 1],
                    [0, 0],
                    [1, 1],
                    False,
                    [0, 0],
                    1,
                    [need_dx, True, True],
                )

        return Prepared(run=backward)

    return setup


def _epochs(
    torch: Any, parts: tuple[Any, Any, Any], X: Any, y: Any, batch: int, epochs: int
) -> list[float]:
    """Train ``epochs`` epochs as users write the loop; return each epoch's samples/s."""
    model, optimizer, loss_fn = parts
    generator = torch.Generator().manual_seed(0)
    n, rates = X.shape[0], []
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch):
            index = order[start : start + batch]
            optimizer.zero_grad()
            loss = loss_fn(model(X[index]), y[index])
            loss.backward()
            optimizer.step()
            loss.item()
        rates.append(n / (time.perf_counter() - started))
    return rates


def _training(work: Workload, tuned: bool, samples: int, epochs: int, real: bool) -> Any:
    from .conv import CNN_NETWORK

    network = "784-256-128-10" if real else work.case
    batch, dtype = int(work.batch or 1), work.dtype
    images = network == CNN_NETWORK

    def setup() -> Prepared:
        torch = _torch()
        if real:
            (X_np, y_np), (X_test_np, y_test_np) = real_data()
        else:
            X_np, y_np = mnist_shaped(samples, dtype)
        X = torch.from_numpy(numpy.array(X_np, dtype=dtype))
        if images:  # PyTorch users hold images as NCHW tensors
            X = X.reshape(-1, 1, 28, 28)
        y = torch.from_numpy(numpy.array(y_np))
        if tuned:
            torch.set_flush_denormal(True)
        state: dict[str, Any] = {"parts": _model(torch, network, dtype, tuned), "rates": []}
        warm = min(X.shape[0], _WARMUP_STEPS * batch)

        def warmup() -> None:
            _epochs(torch, _model(torch, network, dtype, tuned), X[:warm], y[:warm], batch, 1)

        def run() -> None:
            if real:
                state["parts"] = _model(torch, network, dtype, tuned)
            state["rates"] = _epochs(torch, state["parts"], X, y, batch, epochs)

        def finish() -> dict[str, Any]:
            if tuned:
                torch.set_flush_denormal(False)
            info: dict[str, Any] = {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "epoch_samples": int(X.shape[0]),
                "omp_wait_policy": users_wait_policy() or "default",
            }
            if real:
                with torch.inference_mode():
                    X_test = torch.from_numpy(numpy.array(X_test_np, dtype=dtype))
                    predicted = state["parts"][0](X_test).argmax(1).numpy()
                rates = state["rates"]
                info["test_accuracy"] = float((predicted == y_test_np).mean())
                info["epochs"] = epochs
                info["epoch_samples_per_second"] = rates
                info["last_over_first"] = rates[-1] / rates[0] if rates else None
            return info

        return Prepared(
            run=run,
            warmup=warmup,
            warmup_amount=warm if work.unit == "sample" else -(-warm // batch),
            finish=finish,
        )

    return setup


def _inference(work: Workload) -> Any:
    def setup() -> Prepared:
        torch = _torch()
        X_np, _ = mnist_shaped(int(work.amount), work.dtype)
        X = torch.from_numpy(numpy.array(X_np))
        model = _mlp(torch, work.case, work.dtype, False)[0]
        batch = int(work.batch or 1)

        def run() -> None:
            with torch.inference_mode():
                for start in range(0, X.shape[0], batch):
                    torch.softmax(model(X[start : start + batch]), 1)

        return Prepared(run=run)

    return setup


def torch_peer(work: Workload, peer: str, samples: int = 0, epochs: int = 1) -> Workload | None:
    """The PyTorch counterpart of an nnback workload (same group and units), or None.

    ``samples`` is the epoch size of training families, ``epochs`` the real-data epochs.
    """
    tuned = peer == TORCH_TUNED
    family = work.family
    skip = torch_unavailable()
    try:
        if family in ("train_epoch", "train_step_overhead", "real_data_training"):
            real = family == "real_data_training"
            setup = _training(work, tuned, samples, epochs if real else 1, real)
        elif tuned and family != "optimizer_step":
            return None
        elif family in ("dense_forward", "dense_backward"):
            n_in, n_out = (int(part) for part in work.case.split("-"))
            act = "linear" if n_out == 10 else "relu"
            setup = _dense(work, n_in, n_out, act, family == "dense_backward")
        elif family in ("dense_epilogue_forward", "dense_epilogue_backward"):
            setup = _dense(work, 1, 256, work.case, family.endswith("backward"))
        elif family in ("activation_forward", "activation_backward"):
            setup = _activation(work)
        elif family in ("softmax_crossentropy", "loss"):
            setup = _loss(work)
        elif family == "optimizer_step":
            setup = _optimizer(work, tuned)
        elif family == "inference":
            setup = _inference(work)
        elif family in (
            "conv2d_forward",
            "conv2d_backward",
            "maxpool2d_forward",
            "maxpool2d_backward",
        ):
            setup = _conv_op(work)
        else:
            return None
    except WorkloadSkipped as exc:
        skip = skip or str(exc)
        setup = work.setup
    ceiling = dataclasses.replace(work.ceiling, device="cpu") if work.ceiling else None
    return dataclasses.replace(work, runner=peer, setup=setup, skip=skip, ceiling=ceiling)
