"""Per-op benchmarks of nnback backends: each op called as the model calls it.

Families (the pytest test names without ``test_``):

- ``dense_forward`` / ``dense_backward``: one Dense layer of the textbook networks with its
  fused activation (ReLU on hidden layers, linear on the 10 outputs), into workspaces, as in
  training; the first layer's backward skips the input gradient, as in training.
- ``dense_epilogue_forward`` / ``dense_epilogue_backward``: the same ops with one input
  feature, so the GEMM is negligible and what is left is the fused part: bias + activation,
  and activation backward + bias gradient, over an (n, 256) batch.
- ``activation_forward`` / ``activation_backward``: each activation alone on (n, 256)
  (softmax on (n, 10), its width in the networks).
- ``softmax_crossentropy``: the fused output loss on (n, 10) logits and integer labels.
- ``loss``: each other loss with its gradient on (n, 10).
- ``optimizer_step``: each optimizer's in-place step over one weight matrix.

Every timed call ends with ``backend.synchronize()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy

from .data import gemm_flops, layer_activation
from .workload import CeilingSpec, Prepared, Workload, device_of

__all__ = [
    "ACTIVATION_WIDTH",
    "LOSSES",
    "OPTIMIZERS",
    "OPTIMIZER_SHAPES",
    "activation_workload",
    "dense_workload",
    "epilogue_workload",
    "loss_workload",
    "optimizer_workload",
    "softmax_crossentropy_workload",
]

ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax")
ACTIVATION_WIDTH = 256
LOSSES = (
    "categorical_crossentropy",
    "binary_crossentropy",
    "mean_squared_error",
    "mean_absolute_error",
)
OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam")
OPTIMIZER_SHAPES: tuple[tuple[int, int], ...] = ((784, 256), (256, 128))
#: Arrays each optimizer step reads or writes once, in parameter-sized units.
_OPTIMIZER_TRAFFIC = {"sgd": 5, "adagrad": 5, "rmsprop": 5, "adam": 7}
N_CLASSES = 10


def _device(runner: str) -> str:
    from ..backends import get_backend

    try:
        return device_of(get_backend(runner))
    except Exception:  # an unavailable backend: its benchmarks are skipped anyway
        return "gpu" if runner == "cupy" else "cpu"


def _setup_with(runner: str, build: Callable[[Any, numpy.random.Generator], Any]) -> Any:
    """A ``setup`` that loads the backend and a fixed generator, then calls ``build``."""

    def setup() -> Prepared:
        from ..backends import get_backend

        backend = get_backend(runner)
        run = build(backend, numpy.random.default_rng(0))
        return Prepared(run=run)

    return setup


def _array(backend: Any, rng: numpy.random.Generator, shape: tuple[int, ...], dtype: str) -> Any:
    return backend.asarray(rng.standard_normal(shape).astype(dtype))


def _itemsize(dtype: str) -> int:
    return numpy.dtype(dtype).itemsize


def dense_workload(
    runner: str, dtype: str, batch: int, n_in: int, n_out: int, backward: bool, skip: str | None
) -> Workload:
    """Dense forward or backward of an ``n_in -> n_out`` layer with its network activation."""
    activation = layer_activation(n_out)
    need_dx = n_in != 784
    kind = ("bwd" if need_dx else "bwd-nodx") if backward else "fwd"

    def build(backend: Any, rng: numpy.random.Generator) -> Callable[[], None]:
        x = _array(backend, rng, (batch, n_in), dtype)
        w = backend.asarray((rng.standard_normal((n_in, n_out)) / numpy.sqrt(n_in)).astype(dtype))
        b = _array(backend, rng, (1, n_out), dtype)
        y = backend.dense_forward(x, w, b, activation, out=backend.empty((batch, n_out), dtype))
        sync = backend.synchronize
        if not backward:
            out = backend.empty((batch, n_out), dtype)

            def forward() -> None:
                backend.dense_forward(x, w, b, activation, out=out)
                sync()

            return forward
        # ReLU and linear backward in place are idempotent, so reusing dy call after call
        # with overwrite_dy=True (as training passes) keeps every call's work the same.
        dy = _array(backend, rng, (batch, n_out), dtype)
        dx = backend.empty((batch, n_in), dtype) if need_dx else None
        outs = (dx, backend.empty((n_in, n_out), dtype), backend.empty((1, n_out), dtype))

        def run_backward() -> None:
            backend.dense_backward(
                dy, x, w, y, activation, need_dx=need_dx, overwrite_dy=True, out=outs
            )
            sync()

        return run_backward

    flops = gemm_flops(batch, n_in, n_out) * ((2 if need_dx else 1) if backward else 1)
    family = "dense_backward" if backward else "dense_forward"
    return Workload(
        family=family,
        group=f"{family} {n_in}->{n_out} {activation}",
        runner=runner,
        dtype=dtype,
        batch=batch,
        case=f"{n_in}-{n_out}",
        setup=_setup_with(runner, build),
        unit="sample",
        amount=batch,
        flops=flops,
        ceiling=CeilingSpec(_device(runner), kind, dtype, batch, (n_in, n_out)),
        skip=skip,
    )


def epilogue_workload(
    runner: str, dtype: str, batch: int, activation: str, backward: bool, skip: str | None
) -> Workload:
    """A dense layer's epilogue alone, the part around the GEMM that a backend fuses.

    Forward: ``bias_activation_inplace`` over a (batch, 256) GEMM output, with a zero bias
    so that repeating it in place keeps the values (and the work) the same from call to
    call. Backward: ``activation_bias_backward`` from dy and the output y, writing dz and
    the bias gradient.
    """
    width = ACTIVATION_WIDTH

    def build(backend: Any, rng: numpy.random.Generator) -> Callable[[], None]:
        z = backend.asarray(
            backend.to_numpy(
                backend.activation_forward(_array(backend, rng, (batch, width), dtype), activation)
            )
        )
        sync = backend.synchronize
        if not backward:
            b = backend.zeros((1, width), dtype)

            def forward() -> None:
                backend.bias_activation_inplace(z, b, activation)
                sync()

            return forward
        dy = _array(backend, rng, (batch, width), dtype)
        db = backend.empty((1, width), dtype)

        def run_backward() -> None:
            backend.activation_bias_backward(dy, z, activation, out_db=db)
            sync()

        return run_backward

    family = "dense_epilogue_backward" if backward else "dense_epilogue_forward"
    traffic = (3 if backward else 2) * batch * width * _itemsize(dtype)
    return Workload(
        family=family,
        group=f"{family} {activation} n x {width}",
        runner=runner,
        dtype=dtype,
        batch=batch,
        case=activation,
        setup=_setup_with(runner, build),
        unit="sample",
        amount=batch,
        bytes=traffic,
        ceiling=CeilingSpec(_device(runner), "bandwidth"),
        skip=skip,
    )


def activation_workload(
    runner: str, dtype: str, batch: int, activation: str, backward: bool, skip: str | None
) -> Workload:
    """One activation's forward (from z) or backward (from dy and the output y)."""
    width = N_CLASSES if activation == "softmax" else ACTIVATION_WIDTH

    def build(backend: Any, rng: numpy.random.Generator) -> Callable[[], None]:
        z = _array(backend, rng, (batch, width), dtype)
        sync = backend.synchronize
        if not backward:

            def forward() -> None:
                backend.activation_forward(z, activation)
                sync()

            return forward
        y = backend.activation_forward(z, activation)
        dy = _array(backend, rng, (batch, width), dtype)

        def run_backward() -> None:
            backend.activation_backward(dy, y, activation)
            sync()

        return run_backward

    family = "activation_backward" if backward else "activation_forward"
    traffic = (3 if backward else 2) * batch * width * _itemsize(dtype)
    return Workload(
        family=family,
        group=f"{family} {activation} n x {width}",
        runner=runner,
        dtype=dtype,
        batch=batch,
        case=activation,
        setup=_setup_with(runner, build),
        unit="sample",
        amount=batch,
        bytes=traffic,
        ceiling=CeilingSpec(_device(runner), "bandwidth"),
        skip=skip,
    )


def _targets(backend: Any, rng: numpy.random.Generator, loss: str, batch: int, dtype: str) -> Any:
    if loss in ("categorical_crossentropy", "softmax_crossentropy"):
        return backend.asarray(rng.integers(0, N_CLASSES, batch).astype(numpy.int64))
    if loss == "binary_crossentropy":
        return backend.asarray((rng.random((batch, N_CLASSES)) < 0.5).astype(dtype))
    return _array(backend, rng, (batch, N_CLASSES), dtype)


def _predictions(
    backend: Any, rng: numpy.random.Generator, loss: str, batch: int, dtype: str
) -> Any:
    logits = rng.standard_normal((batch, N_CLASSES))
    if loss == "categorical_crossentropy":
        e = numpy.exp(logits - logits.max(axis=1, keepdims=True))
        return backend.asarray((e / e.sum(axis=1, keepdims=True)).astype(dtype))
    if loss == "binary_crossentropy":
        return backend.asarray((1 / (1 + numpy.exp(-logits))).astype(dtype))
    return backend.asarray(logits.astype(dtype))


def loss_workload(runner: str, dtype: str, batch: int, loss: str, skip: str | None) -> Workload:
    """A loss and its gradient (``loss`` may be ``"softmax_crossentropy"``, on logits)."""

    def build(backend: Any, rng: numpy.random.Generator) -> Callable[[], None]:
        y_pred = _predictions(backend, rng, loss, batch, dtype)
        y_true = _targets(backend, rng, loss, batch, dtype)
        op, sync = getattr(backend, loss), backend.synchronize

        def run() -> None:
            op(y_pred, y_true, with_grad=True)
            sync()

        return run

    fused = loss == "softmax_crossentropy"
    family = "softmax_crossentropy" if fused else "loss"
    group = "softmax_crossentropy n x 10" if fused else f"loss {loss} n x 10"
    return Workload(
        family=family,
        group=group,
        runner=runner,
        dtype=dtype,
        batch=batch,
        case="" if fused else loss,
        setup=_setup_with(runner, build),
        unit="sample",
        amount=batch,
        bytes=3 * batch * N_CLASSES * _itemsize(dtype),
        ceiling=CeilingSpec(_device(runner), "bandwidth"),
        skip=skip,
    )


def softmax_crossentropy_workload(
    runner: str, dtype: str, batch: int, skip: str | None
) -> Workload:
    """The fused softmax + categorical cross-entropy with its gradient."""
    return loss_workload(runner, dtype, batch, "softmax_crossentropy", skip)


def optimizer_workload(
    runner: str, dtype: str, optimizer: str, shape: tuple[int, int], skip: str | None
) -> Workload:
    """One in-place optimizer step over a weight matrix of ``shape`` (state reused)."""

    def build(backend: Any, rng: numpy.random.Generator) -> Callable[[], None]:
        param = _array(backend, rng, shape, dtype)
        grad = backend.asarray((0.01 * rng.standard_normal(shape)).astype(dtype))
        first = backend.zeros(shape, dtype)
        second = backend.zeros(shape, dtype)
        sync = backend.synchronize
        step = [0]

        def run() -> None:
            if optimizer == "sgd":
                backend.sgd_update_inplace(param, grad, first, 0.01, momentum=0.9)
            elif optimizer == "adagrad":
                backend.adagrad_update_inplace(param, grad, first, 0.01)
            elif optimizer == "rmsprop":
                backend.rmsprop_update_inplace(param, grad, first, 0.001)
            else:
                step[0] += 1
                backend.adam_update_inplace(param, grad, first, second, 0.001, step[0])
            sync()

        return run

    count = shape[0] * shape[1]
    label = "sgd momentum" if optimizer == "sgd" else optimizer
    return Workload(
        family="optimizer_step",
        group=f"optimizer_step {label} {shape[0]}x{shape[1]}",
        runner=runner,
        dtype=dtype,
        batch=None,
        case=f"{optimizer}-{shape[0]}x{shape[1]}",
        setup=_setup_with(runner, build),
        unit="param",
        amount=count,
        bytes=_OPTIMIZER_TRAFFIC[optimizer] * count * _itemsize(dtype),
        ceiling=CeilingSpec(_device(runner), "bandwidth"),
        skip=skip,
    )
