"""End-to-end benchmarks of nnback: training epochs, inference, real data, peak memory.

The model is the one ``nnback train`` builds (:func:`nnback.cli.build_classifier`): Dense
layers with ReLU (He initialization), a Softmax output trained with the fused softmax +
cross-entropy, Adam with learning rate 1e-3. Training calls :meth:`Sequential.fit` for one
epoch per timed call, so every cost a user pays is in the time: shuffling, taking
minibatches, reading the loss each step, the metric.

The first call is a short fit of a few steps (compilation included), timed apart.
"""

from __future__ import annotations

import resource
import tracemalloc
from typing import Any

from .conv import CNN_NETWORK, cnn_ceiling, cnn_epoch_flops
from .data import (
    MAIN_NETWORK,
    NETWORKS,
    epoch_flops,
    mnist_shaped,
    network_flops,
    real_data,
)
from .workload import CeilingSpec, Prepared, Workload, device_of

__all__ = [
    "REAL_BATCH",
    "build_model",
    "inference_workload",
    "memory_workload",
    "real_data_workload",
    "train_epoch_workload",
]

REAL_BATCH = 128
WARMUP_STEPS = 3
INFERENCE_SAMPLES = 10_000


def build_model(network: str, dtype: str, backend: Any, seed: int = 0) -> Any:
    """The MLP classifier ``nnback train`` builds, for ``network`` like ``"784-256-128-10"``,
    or the CNN of ``nnback train --model cnn`` (without dropout) for :data:`CNN_NETWORK`."""
    from ..cli import build_classifier

    if network == CNN_NETWORK:
        from ..zoo import build_cnn

        return build_cnn("adam", 1e-3, seed, dtype, backend)

    layers = NETWORKS[network]
    return build_classifier(
        layers[0], layers[-1], list(layers[1:-1]), "relu", "adam", 1e-3, seed, dtype, backend
    )


def _device(runner: str) -> str:
    from ..backends import get_backend

    try:
        return device_of(get_backend(runner))
    except Exception:  # unavailable: skipped anyway
        return "gpu" if runner == "cupy" else "cpu"


def _fit_epoch(model: Any, X: Any, y: Any, batch: int) -> Any:
    history = model.fit(X, y, epochs=1, batch_size=batch, verbose=0)
    model.backend.synchronize()
    return history


def train_epoch_workload(
    runner: str,
    dtype: str,
    batch: int,
    network: str,
    samples: int,
    skip: str | None,
    family: str = "train_epoch",
) -> Workload:
    """One training epoch of ``samples`` MNIST-shaped samples, in samples per second.

    With ``family="train_step_overhead"`` the unit is steps, for the per-step cost of a
    tiny network.
    """

    def setup() -> Prepared:
        from ..backends import get_backend

        backend = get_backend(runner)
        X_host, y = mnist_shaped(samples, dtype)
        # On the device once, as a user training epoch after epoch would keep it; each
        # timed fit call still validates it there.
        X = backend.asarray(X_host)
        model = build_model(network, dtype, backend)
        warm = min(samples, WARMUP_STEPS * batch)

        return Prepared(
            run=lambda: _fit_epoch(model, X, y, batch),
            warmup=lambda: _fit_epoch(model, X[:warm], y[:warm], batch),
            warmup_amount=warm if family == "train_epoch" else -(-warm // batch),
        )

    steps = -(-samples // batch)
    per_step = family == "train_step_overhead"
    work = "train step overhead" if per_step else "train epoch"
    if network == CNN_NETWORK:
        flops = cnn_epoch_flops(samples, batch)
        ceiling = cnn_ceiling(runner, dtype, batch)
    else:
        flops = epoch_flops(NETWORKS[network], samples, batch)
        ceiling = CeilingSpec(_device(runner), "step", dtype, batch, NETWORKS[network])
    return Workload(
        family=family,
        group=f"{work} {network}",
        runner=runner,
        dtype=dtype,
        batch=batch,
        case=network,
        setup=setup,
        unit="step" if per_step else "sample",
        amount=steps if per_step else samples,
        flops=flops,
        ceiling=ceiling,
        long=True,
        skip=skip,
    )


def inference_workload(
    runner: str, dtype: str, batch: int, network: str, samples: int, skip: str | None
) -> Workload:
    """``model.predict`` over up to 10,000 samples in batches of ``batch``, kept on device."""
    n = min(samples, INFERENCE_SAMPLES)

    def setup() -> Prepared:
        from ..backends import get_backend

        backend = get_backend(runner)
        X, _ = mnist_shaped(n, dtype)
        model = build_model(network, dtype, backend).build()

        def run() -> None:
            model.predict(X, batch_size=batch, to_numpy=False)
            backend.synchronize()

        return Prepared(run=run)

    layers = NETWORKS[network]
    full, rest = divmod(n, batch)
    flops = full * network_flops(layers, batch, False) + network_flops(layers, rest, False)
    return Workload(
        family="inference",
        group=f"inference {network}",
        runner=runner,
        dtype=dtype,
        batch=batch,
        case=network,
        setup=setup,
        unit="sample",
        amount=n,
        flops=flops,
        ceiling=CeilingSpec(_device(runner), "forward", dtype, batch, layers),
        skip=skip,
    )


def real_data_workload(runner: str, epochs: int, skip: str | None) -> Workload:
    """Several epochs of 784-256-128-10 on Fashion-MNIST at batch 128, float32, in wall time.

    Records the test accuracy and each epoch's throughput: a late slowdown (subnormal
    numbers in the optimizer state) shows as ``last_over_first`` well below 1.
    """
    dtype, batch, network = "float32", REAL_BATCH, MAIN_NETWORK
    state: dict[str, Any] = {}

    def setup() -> Prepared:
        from ..backends import get_backend

        backend = get_backend(runner)
        (X, y), (X_test, y_test) = real_data()
        model = build_model(network, dtype, backend)

        def warmup() -> None:
            warm = WARMUP_STEPS * batch
            build_model(network, dtype, backend).fit(
                X[:warm], y[:warm], epochs=1, batch_size=batch, verbose=0
            )
            backend.synchronize()

        def run() -> None:
            fresh = build_model(network, dtype, backend)
            fresh.fit(X, y, epochs=epochs, batch_size=batch, verbose=0)
            backend.synchronize()
            state["model"] = fresh

        def finish() -> dict[str, Any]:
            trained = state.get("model", model)
            per_epoch = [float(v) for v in trained.history["samples_per_second"]]
            return {
                "test_accuracy": float(trained.evaluate(X_test, y_test)["accuracy"]),
                "epochs": epochs,
                "epoch_samples_per_second": per_epoch,
                "last_over_first": per_epoch[-1] / per_epoch[0] if per_epoch else None,
            }

        return Prepared(run=run, warmup=warmup, warmup_amount=WARMUP_STEPS * batch, finish=finish)

    samples = 60_000
    return Workload(
        family="real_data_training",
        group=f"real data: Fashion-MNIST {epochs} epochs {network}",
        runner=runner,
        dtype=dtype,
        batch=batch,
        case=f"{epochs}ep",
        setup=setup,
        unit="sample",
        amount=float(epochs * samples),
        flops=epochs * epoch_flops(NETWORKS[network], samples, batch),
        ceiling=CeilingSpec(_device(runner), "step", dtype, batch, NETWORKS[network]),
        long=True,
        max_rounds=1,
        skip=skip,
    )


def memory_workload(runner: str, samples: int, skip: str | None) -> Workload:
    """Peak memory allocated by one epoch of 784-256-128-10 at batch 128 (float32).

    Measured with :mod:`tracemalloc` (which sees NumPy's allocations, not a GPU's), from
    after the data and the model exist: what training itself allocates. The time recorded
    is the traced epoch, slower than an untraced one; read ``peak_bytes``, not the time.
    """
    dtype, batch, network = "float32", REAL_BATCH, MAIN_NETWORK
    result: dict[str, Any] = {}

    def setup() -> Prepared:
        from ..backends import get_backend

        backend = get_backend(runner)
        X, y = mnist_shaped(samples, dtype)
        warm = min(samples, WARMUP_STEPS * batch)

        def warmup() -> None:
            model = build_model(network, dtype, backend)
            _fit_epoch(model, X[:warm], y[:warm], batch)

        def run() -> None:
            model = build_model(network, dtype, backend).build()
            tracemalloc.start()
            try:
                tracemalloc.reset_peak()
                baseline = tracemalloc.get_traced_memory()[0]
                _fit_epoch(model, X, y, batch)
                result["peak_bytes"] = tracemalloc.get_traced_memory()[1] - baseline
            finally:
                tracemalloc.stop()

        def finish() -> dict[str, Any]:
            maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            info = {"peak_bytes": int(result.get("peak_bytes", 0)), "samples": samples}
            info["process_max_rss_bytes"] = int(maxrss_kib) * 1024
            info["tool"] = "tracemalloc"
            return info

        return Prepared(run=run, warmup=warmup, warmup_amount=warm, finish=finish)

    return Workload(
        family="memory_peak",
        group=f"memory: peak of one epoch {network}",
        runner=runner,
        dtype=dtype,
        batch=batch,
        case=network,
        setup=setup,
        unit="sample",
        amount=samples,
        long=True,
        max_rounds=1,
        skip=skip,
    )
