"""The hardware ceiling, measured in the same run: GEMM rate at the MLP shapes, and bandwidth.

Every dense layer and training step is mostly GEMMs, and every elementwise op (activations,
losses, optimizer steps) is mostly memory traffic. So each result can be read as a fraction
of what the machine allows: a dense forward pass against the bare ``x @ w`` at the same
shape and dtype, a training step against every GEMM of that step back to back, an
optimizer step against the copy bandwidth.

The GEMMs run through the array module the backends use (NumPy's BLAS on the CPU, cuBLAS
through CuPy on a GPU), into preallocated outputs, as the backends do. The bandwidth is a
copy of 64 MiB (CPU) or 512 MiB (GPU) into another array: read once, written once, larger
than the caches. Small arrays that stay in cache can move faster than that, so a
memory-bound op can show more than 100 % of it. On a GPU the peak FP32 GEMM rate (``peak``:
one square product, TF32 off as nnback keeps it) is measured too: the GPU training epochs
are read against it.
"""

from __future__ import annotations

from typing import Any

import numpy

from .data import gemm_flops, network_flops
from .workload import CeilingSpec, Prepared, Workload, gpu_dry_run

__all__ = ["CEILING_FAMILY", "ceiling_workload", "device_backend_name"]

CEILING_FAMILY = "ceiling"
_DEVICE_BACKENDS = {"cpu": "numpy", "gpu": "cupy"}
_COPY_BYTES = {"cpu": 64 << 20, "gpu": 512 << 20}
_DRY_RUN_COPY_BYTES = 8 << 20


def device_backend_name(device: str) -> str:
    """The backend whose array module measures a device's ceiling (numpy in a GPU dry run)."""
    if device == "gpu" and gpu_dry_run():
        return "numpy"
    return _DEVICE_BACKENDS[device]


def _backend(device: str) -> Any:
    from ..backends import get_backend

    return get_backend(device_backend_name(device))


def _random(backend: Any, rng: numpy.random.Generator, shape: tuple[int, ...], dtype: str) -> Any:
    return backend.asarray(rng.standard_normal(shape, dtype=numpy.dtype(dtype).type))


def _gemm_calls(spec: CeilingSpec, backend: Any) -> list[tuple[Any, Any, Any]]:
    """The ``(a, b, out)`` triples of the GEMMs the spec stands for, allocated on ``backend``."""
    rng = numpy.random.default_rng(0)
    dtype, n = spec.dtype, int(spec.batch or 1)
    calls: list[tuple[Any, Any, Any]] = []
    if spec.kind == "cnn-step":
        from .conv import cnn_gemm_shapes

        # Each conv layer is one GEMM over the batch's output pixels (im2col rows).
        triples = cnn_gemm_shapes(n)
        spec_kind = "step"
    else:
        pairs = zip(spec.layers[:-1], spec.layers[1:], strict=True)
        triples = [(n, n_in, n_out) for n_in, n_out in pairs]
        spec_kind = spec.kind
    for index, (n, n_in, n_out) in enumerate(triples):
        x = _random(backend, rng, (n, n_in), dtype)
        w = _random(backend, rng, (n_in, n_out), dtype)
        if spec_kind == "peak":
            calls.append((x, w, backend.empty((n, n_out), dtype)))
            continue
        dz = _random(backend, rng, (n, n_out), dtype)
        forward = spec_kind in ("fwd", "forward", "step")
        weight_grad = spec_kind in ("bwd", "bwd-nodx", "step")
        input_grad = spec_kind == "bwd" or (spec_kind == "step" and index > 0)
        if forward:
            calls.append((x, w, backend.empty((n, n_out), dtype)))
        if weight_grad:
            calls.append((x.T, dz, backend.empty((n_in, n_out), dtype)))
        if input_grad:
            calls.append((dz, w.T, backend.empty((n, n_in), dtype)))
    return calls


def _gemm_spec_flops(spec: CeilingSpec) -> float:
    n = int(spec.batch or 1)
    if spec.kind == "cnn-step":
        from .conv import cnn_epoch_flops

        return cnn_epoch_flops(n, n)
    if spec.kind == "step":
        return network_flops(spec.layers, n, training=True)
    if spec.kind == "forward":
        return network_flops(spec.layers, n, training=False)
    n_in, n_out = spec.layers
    per_gemm = gemm_flops(n, n_in, n_out)
    return per_gemm * {"fwd": 1, "peak": 1, "bwd-nodx": 1, "bwd": 2}[spec.kind]


def _describe(spec: CeilingSpec) -> str:
    if spec.kind == "cnn-step":
        return "ceiling: gemm training step cnn (im2col shapes)"
    shape = "-".join(str(width) for width in spec.layers)
    return {
        "fwd": f"ceiling: gemm x@W {spec.batch}x{shape.replace('-', 'x')}",
        "bwd": f"ceiling: gemm x.T@dz + dz@W.T {spec.batch}x{shape.replace('-', 'x')}",
        "bwd-nodx": f"ceiling: gemm x.T@dz {spec.batch}x{shape.replace('-', 'x')}",
        "forward": f"ceiling: gemm forward pass {shape}",
        "step": f"ceiling: gemm training step {shape}",
        "peak": f"ceiling: peak gemm {spec.batch}x{shape.replace('-', 'x')}",
    }[spec.kind]


def _gemm_workload(spec: CeilingSpec, skip: str | None) -> Workload:
    def setup() -> Prepared:
        backend = _backend(spec.device)
        calls = _gemm_calls(spec, backend)
        matmul, synchronize = backend.matmul, backend.synchronize

        def run() -> None:
            for a, b, out in calls:
                matmul(a, b, out=out)
            synchronize()

        def finish() -> dict[str, Any]:
            calls.clear()  # hand the device memory back before the next workload
            info = backend.info()
            facts = {
                "backend": backend.name,
                "device_name": info.get("device", f"{backend.name} backend"),
            }
            if "tf32" in info:
                facts["tf32"] = info["tf32"]
            return facts

        return Prepared(run=run, finish=finish)

    flops = _gemm_spec_flops(spec)
    return Workload(
        family=CEILING_FAMILY,
        group=_describe(spec),
        runner=spec.device,
        dtype=spec.dtype,
        batch=spec.batch,
        case="-".join([spec.kind, *(str(width) for width in spec.layers)]),
        setup=setup,
        unit="flop",
        amount=flops,
        flops=flops,
        provides=spec,
        skip=skip,
    )


def _bandwidth_workload(spec: CeilingSpec, skip: str | None) -> Workload:
    size = _COPY_BYTES[spec.device]
    if spec.device == "gpu" and gpu_dry_run():
        size = _DRY_RUN_COPY_BYTES

    def setup() -> Prepared:
        backend = _backend(spec.device)
        count = size // 8
        source = backend.asarray(numpy.arange(count, dtype=numpy.float64))
        target = backend.empty((count,), "float64")
        copy, synchronize = backend.copy_into_inplace, backend.synchronize

        def run() -> None:
            copy(target, source)
            synchronize()

        return Prepared(run=run)

    moved = 2.0 * size
    return Workload(
        family=CEILING_FAMILY,
        group=f"ceiling: memory bandwidth (copy {size >> 20} MiB)",
        runner=spec.device,
        dtype="",
        batch=None,
        case="bandwidth",
        setup=setup,
        unit="byte",
        amount=moved,
        bytes=moved,
        provides=spec,
        skip=skip,
    )


def ceiling_workload(spec: CeilingSpec, skip: str | None = None) -> Workload:
    """The measurement of one ceiling (``skip`` says why its device is unavailable, if so)."""
    if spec.kind == "bandwidth":
        return _bandwidth_workload(spec, skip)
    return _gemm_workload(spec, skip)
