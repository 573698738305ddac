"""Every benchmark of the suite, by family, and the quick subset ``nnback bench`` runs.

Runners are the backends chosen by :func:`nnback.testing.selected_backends` (every backend
that loads here, or exactly those in ``NNBACK_TEST_BACKENDS``; the strict test device is
left out, it measures nothing real), then the peers (PyTorch, scikit-learn) where they have
a counterpart, then the ceilings the items refer to. A runner that cannot load stays in the
list with the reason, so the run shows it as skipped instead of silently measuring less.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .ceiling import CEILING_FAMILY, ceiling_workload, device_backend_name
from .conv import (
    CNN_BATCHES,
    CNN_NETWORK,
    CNN_OP_FAMILIES,
    cnn_samples,
    conv_op_workload,
)
from .data import (
    DEFAULT_SAMPLES,
    DTYPES,
    LAYER_SHAPES,
    MAIN_NETWORK,
    OP_BATCHES,
    SECOND_NETWORK,
    TINY_NETWORK,
    TRAIN_BATCHES,
    samples_setting,
)
from .endtoend import (
    inference_workload,
    memory_workload,
    real_data_workload,
    train_epoch_workload,
)
from .gpu import GPU_FAMILY, gpu_backend_reason, gpu_train_epochs
from .isolation import isolated
from .ops import (
    LOSSES,
    OPTIMIZER_SHAPES,
    OPTIMIZERS,
    activation_workload,
    dense_workload,
    epilogue_workload,
    loss_workload,
    optimizer_workload,
    softmax_crossentropy_workload,
)
from .peers_sklearn import SKLEARN, sklearn_peer
from .peers_torch import TORCH, TORCH_TUNED, torch_peer
from .startup import START_FAMILY, startup_workloads
from .workload import CeilingSpec, Workload, env_int

__all__ = [
    "FAMILY_ORDER",
    "QUICK_SAMPLES",
    "Settings",
    "all_workloads",
    "family_workloads",
    "gpu_workloads",
    "quick_workloads",
    "select",
    "with_ceilings",
]

QUICK_SAMPLES = 10_000
REAL_EPOCHS_ENV_VAR = "NNBACK_BENCH_EPOCHS"
DEFAULT_REAL_EPOCHS = 10
ACTIVATION_NAMES = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax")
EPILOGUE_ACTIVATIONS = ("relu", "sigmoid")

#: Families in the order the report lists them: end to end first, the machine last.
FAMILY_ORDER = (
    "train_epoch",
    GPU_FAMILY,
    START_FAMILY,
    "train_step_overhead",
    "inference",
    "real_data_training",
    "memory_peak",
    "dense_forward",
    "dense_backward",
    "dense_epilogue_forward",
    "dense_epilogue_backward",
    "activation_forward",
    "activation_backward",
    "softmax_crossentropy",
    "loss",
    "optimizer_step",
    *CNN_OP_FAMILIES,
    CEILING_FAMILY,
)
#: Conv ops with a PyTorch counterpart (the kernels its autograd calls).
TORCH_CONV_OPS = ("conv2d_forward", "conv2d_backward", "maxpool2d_forward", "maxpool2d_backward")


def _default_backends() -> tuple[tuple[str, str | None], ...]:
    from ..testing.backends import STRICT, selected_backends

    chosen = selected_backends(include_strict=False)
    return tuple((c.name, c.reason) for c in chosen if c.name != STRICT)


@dataclass(frozen=True)
class Settings:
    """What to run: the backends (name, reason it cannot load or None), sizes, peers.

    Attributes
    ----------
    samples : int
        Samples per training epoch (60,000 for the full suite).
    real_epochs : int
        Epochs of the real-data run.
    backends : tuple of (str, str or None)
        nnback backends to benchmark, each with why it cannot load (None if it can).
    peers : bool
        Whether to add PyTorch and scikit-learn where they have a counterpart.
    isolate : bool
        Whether each long workload (an epoch) runs in a worker process of its own
        (:mod:`~nnback.bench.isolation`), so that runners measured in one run cannot slow
        each other down.
    runners : tuple of str, optional
        Only these runners in the GPU families (a worker builds only its own).
    """

    samples: int = DEFAULT_SAMPLES
    real_epochs: int = DEFAULT_REAL_EPOCHS
    backends: tuple[tuple[str, str | None], ...] = field(default_factory=_default_backends)
    peers: bool = True
    isolate: bool = True
    runners: tuple[str, ...] | None = None

    @classmethod
    def from_environment(
        cls,
        samples: int | None = None,
        real_epochs: int | None = None,
        backends: Iterable[str] | None = None,
        peers: bool = True,
        default_samples: int = DEFAULT_SAMPLES,
        isolate: bool = True,
    ) -> Settings:
        """Settings from arguments, else ``NNBACK_BENCH_SAMPLES`` / ``NNBACK_BENCH_EPOCHS``."""
        chosen = _default_backends() if backends is None else _named_backends(backends)
        return cls(
            samples=samples_setting(samples, default_samples),
            real_epochs=int(real_epochs or env_int(REAL_EPOCHS_ENV_VAR, DEFAULT_REAL_EPOCHS)),
            backends=chosen,
            peers=peers,
            isolate=isolate,
        )


def _named_backends(names: Iterable[str]) -> tuple[tuple[str, str | None], ...]:
    from ..backends import backend_status
    from ..errors import UnknownBackendError

    status = backend_status()
    chosen = []
    for name in names:
        name = name.strip().lower()
        if name not in status:
            raise UnknownBackendError(f"unknown backend {name!r}; known: {', '.join(status)}")
        chosen.append((name, status[name]))
    return tuple(chosen)


Maker = Callable[[str, str | None], Workload]


def _expand(settings: Settings, make: Maker, peers: tuple[str, ...] = (TORCH,)) -> list[Workload]:
    """``make`` for every backend, then its peers (built from the NumPy variant)."""
    found = [make(name, reason) for name, reason in settings.backends]
    if settings.peers:
        base = make("numpy", None)
        # A peer trains the epoch its nnback twin trains: the CNN's epoch is capped below
        # the suite's sample count, and a peer given that count timed 15x the work.
        samples = int(base.amount) if base.family == "train_epoch" else settings.samples
        for peer in peers:
            if peer == SKLEARN:
                twin = sklearn_peer(base, samples, settings.real_epochs)
            else:
                twin = torch_peer(base, peer, samples, settings.real_epochs)
            if twin is not None:
                found.append(twin)
    return found


def _train_epoch(settings: Settings) -> list[Workload]:
    found: list[Workload] = []
    for network in (MAIN_NETWORK, SECOND_NETWORK):
        for batch in TRAIN_BATCHES:
            for dtype in DTYPES if batch == 128 else ("float32",):
                found += _expand(
                    settings,
                    lambda r, s, d=dtype, b=batch, n=network: train_epoch_workload(
                        r, d, b, n, settings.samples, s
                    ),
                    (TORCH, TORCH_TUNED, SKLEARN),
                )
    # The CNN of issue 14: float32, beside PyTorch (scikit-learn has no CNN).
    for batch in CNN_BATCHES:
        found += _expand(
            settings,
            lambda r, s, b=batch: train_epoch_workload(
                r, "float32", b, CNN_NETWORK, cnn_samples(settings.samples), s
            ),
            (TORCH, TORCH_TUNED),
        )
    return found


def _families() -> dict[str, Callable[[Settings], list[Workload]]]:
    def grid(make: Callable[[str, str, int, str | None], Workload]) -> Callable:
        def build(settings: Settings) -> list[Workload]:
            found: list[Workload] = []
            for dtype in DTYPES:
                for batch in OP_BATCHES:
                    found += _expand(settings, lambda r, s, d=dtype, b=batch: make(r, d, b, s))
            return found

        return build

    def each(values: Iterable, make: Callable) -> Callable[[Settings], list[Workload]]:
        builders = [grid(lambda r, d, b, s, v=v: make(r, d, b, v, s)) for v in values]
        return lambda settings: [w for build in builders for w in build(settings)]

    def conv_ops(family: str) -> Callable[[Settings], list[Workload]]:
        layers = ("pool1", "pool2") if family.startswith("maxpool") else ("conv1", "conv2")

        def build(settings: Settings) -> list[Workload]:
            found: list[Workload] = []
            for dtype in DTYPES:
                for batch in CNN_BATCHES:
                    for layer in layers:
                        found += _expand(
                            settings,
                            lambda r, s, d=dtype, b=batch, la=layer: conv_op_workload(
                                r, d, b, family, la, s
                            ),
                            (TORCH,) if family in TORCH_CONV_OPS else (),
                        )
            return found

        return build

    def optimizers(settings: Settings) -> list[Workload]:
        found: list[Workload] = []
        for name in OPTIMIZERS:
            for shape in OPTIMIZER_SHAPES:
                for dtype in DTYPES:
                    found += _expand(
                        settings,
                        lambda r, s, d=dtype, n=name, sh=shape: optimizer_workload(r, d, n, sh, s),
                        (TORCH, TORCH_TUNED),
                    )
        return found

    return {
        "train_epoch": _train_epoch,
        "train_step_overhead": lambda st: _expand(
            st,
            lambda r, s: train_epoch_workload(
                r, "float32", 32, TINY_NETWORK, min(st.samples, 6400), s, "train_step_overhead"
            ),
            (TORCH, TORCH_TUNED),
        ),
        "inference": lambda st: [
            w
            for batch in OP_BATCHES
            for w in _expand(
                st,
                lambda r, s, b=batch: inference_workload(
                    r, "float32", b, MAIN_NETWORK, st.samples, s
                ),
            )
        ],
        "real_data_training": lambda st: _expand(
            st, lambda r, s: real_data_workload(r, st.real_epochs, s), (TORCH, TORCH_TUNED, SKLEARN)
        ),
        "memory_peak": lambda st: [memory_workload(n, st.samples, s) for n, s in st.backends],
        "dense_forward": each(
            LAYER_SHAPES, lambda r, d, b, sh, s: dense_workload(r, d, b, *sh, False, s)
        ),
        "dense_backward": each(
            LAYER_SHAPES, lambda r, d, b, sh, s: dense_workload(r, d, b, *sh, True, s)
        ),
        "dense_epilogue_forward": each(
            EPILOGUE_ACTIVATIONS, lambda r, d, b, a, s: epilogue_workload(r, d, b, a, False, s)
        ),
        "dense_epilogue_backward": each(
            EPILOGUE_ACTIVATIONS, lambda r, d, b, a, s: epilogue_workload(r, d, b, a, True, s)
        ),
        "activation_forward": each(
            ACTIVATION_NAMES, lambda r, d, b, a, s: activation_workload(r, d, b, a, False, s)
        ),
        "activation_backward": each(
            ACTIVATION_NAMES, lambda r, d, b, a, s: activation_workload(r, d, b, a, True, s)
        ),
        "softmax_crossentropy": grid(softmax_crossentropy_workload),
        "loss": each(LOSSES, loss_workload),
        "optimizer_step": optimizers,
        **{family: conv_ops(family) for family in CNN_OP_FAMILIES},
        GPU_FAMILY: lambda st: gpu_train_epochs(st.samples, st.peers, st.runners),
        START_FAMILY: lambda st: startup_workloads(st.samples, st.runners),
    }


def _ceilings_for(workloads: Iterable[Workload], settings: Settings) -> list[Workload]:
    """The ceiling measurements the workloads refer to, plus each device's bandwidth."""
    reasons = dict(settings.backends)
    specs: dict[str, CeilingSpec] = {}
    for work in workloads:
        if work.ceiling is not None:
            specs.setdefault(work.ceiling.key, work.ceiling)
            bandwidth = CeilingSpec(work.ceiling.device, "bandwidth")
            specs.setdefault(bandwidth.key, bandwidth)
    found = []
    for spec in specs.values():
        backend_name = device_backend_name(spec.device)
        if backend_name in reasons:
            reason = reasons[backend_name]
        else:  # a GPU item's ceiling when the cupy backend was not among those chosen
            reason = gpu_backend_reason() if spec.device == "gpu" else None
        found.append(ceiling_workload(spec, reason))
    return found


def _isolate(workloads: list[Workload], settings: Settings) -> list[Workload]:
    """Long workloads in worker processes of their own when ``settings.isolate``."""
    if not settings.isolate:
        return workloads
    return [
        isolated(w, settings.samples, settings.real_epochs)
        if w.long and not w.skip and not w.own_process
        else w
        for w in workloads
    ]


def family_workloads(family: str, settings: Settings) -> list[Workload]:
    """Every workload of one family (``"ceiling"``: those every other family refers to)."""
    if family == CEILING_FAMILY:
        return _ceilings_for(all_workloads(settings, with_ceiling=False), settings)
    families = _families()
    if family not in families:
        raise KeyError(f"unknown benchmark family {family!r}; known: {', '.join(FAMILY_ORDER)}")
    return _isolate(families[family](settings), settings)


def all_workloads(settings: Settings, with_ceiling: bool = True) -> list[Workload]:
    """The whole suite."""
    found = _isolate([w for build in _families().values() for w in build(settings)], settings)
    return with_ceilings(found, settings) if with_ceiling else found


def with_ceilings(workloads: list[Workload], settings: Settings) -> list[Workload]:
    """``workloads`` plus the ceilings they refer to (not already among them), ceilings first."""
    present = {w.provides.key for w in workloads if w.provides is not None}
    extra = [w for w in _ceilings_for(workloads, settings) if w.provides.key not in present]  # type: ignore[union-attr]
    return extra + workloads


def gpu_workloads(settings: Settings) -> list[Workload]:
    """The GPU items only: training epochs beside PyTorch CUDA, start-up, the ceilings."""
    families = _families()
    chosen = families[GPU_FAMILY](settings) + families[START_FAMILY](settings)
    return with_ceilings(_isolate(chosen, settings), settings)


def select(workloads: Iterable[Workload], words: str) -> list[Workload]:
    """The workloads whose description contains every word of ``words`` (case-insensitive)."""
    wanted = words.lower().split()
    found = []
    for work in workloads:
        text = f"{work.family} {work.group} {work.param_id}".lower()
        if all(word in text for word in wanted):
            found.append(work)
    return found


def _quick_filter(work: Workload) -> bool:
    if work.family == "train_epoch" and work.case == CNN_NETWORK:
        return work.runner != TORCH_TUNED
    if work.family in CNN_OP_FAMILIES:
        return work.dtype == "float32" and work.batch == 128 and work.case in ("conv2", "pool1")
    if work.family == "train_epoch":
        return (
            work.case == MAIN_NETWORK
            and work.dtype == "float32"
            and (work.runner != SKLEARN or work.batch == 128)
            and work.batch in (32, 128, 1024)
        )
    if work.family in ("train_step_overhead",):
        return True
    if work.family == "inference":
        return work.batch == 1024
    if work.dtype != "float32" or work.batch not in (128, None):
        return False
    return (work.family, work.case) in {
        ("dense_forward", "784-256"),
        ("dense_backward", "256-128"),
        ("dense_epilogue_forward", "relu"),
        ("dense_epilogue_backward", "relu"),
        ("softmax_crossentropy", ""),
        ("optimizer_step", "adam-784x256"),
    }


def quick_workloads(settings: Settings) -> list[Workload]:
    """The subset ``nnback bench`` runs by default (about a minute on 2 cores).

    End to end: a training epoch of 784-256-128-10 (float32) at batch 32, 128 and 1024, the
    CNN of issue 14 at batch 32 and 128 (at most 4,096 samples an epoch) beside PyTorch as
    users run it, the per-step overhead of 784-32-10, inference at batch 1024. Per op
    (float32, batch 128): dense forward 784->256 and backward 256->128, the fused
    epilogues, softmax + cross-entropy, the Adam step over 784x256, the CNN's second
    convolution forward and backward, its im2col and col2im, and the first max pool
    forward and backward. Then the ceilings those refer to.
    """
    quick_families = ("train_epoch", "train_step_overhead", "inference") + FAMILY_ORDER[7:-1]
    families = _families()
    chosen = [
        w for family in quick_families for w in families[family](settings) if _quick_filter(w)
    ]
    return with_ceilings(_isolate(chosen, settings), settings)
