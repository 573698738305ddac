"""The GPU benchmarks without a GPU: catalogue, skip reasons, worker environments, arithmetic,
report columns, and the PyTorch step code on device "cpu" (graph capture itself needs CUDA).

The dry-run mode (``NNBACK_BENCH_GPU_DRY_RUN=1``) runs the GPU runners' code on the CPU;
nothing here compares a time with a threshold.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

import pytest

from nnback.bench import Settings, TimingOptions, measure
from nnback.bench import gpu as gpu_module
from nnback.bench.catalog import FAMILY_ORDER, family_workloads, gpu_workloads, quick_workloads
from nnback.bench.data import MAIN_NETWORK, NETWORKS, network_flops
from nnback.bench.gpu_report import ceiling_share, format_gpu_summary, junit_counts
from nnback.bench.isolation import worker_environment
from nnback.bench.report import entries_from as report_entries
from nnback.bench.report import format_table, table_rows
from nnback.bench.startup import startup_env
from nnback.bench.workload import GPU_DRY_RUN_ENV_VAR, GPU_PEERS, PEERS, WorkloadSkipped

# Two rounds of each long workload whatever the machine's load: the default 4 s budget
# gave a loaded machine a single round, and the start-up tests need two.
FAST = TimingOptions(
    max_time=0.0, min_rounds=1, round_time=0.0, long_rounds=2, settle=0.0, long_budget=600.0
)
RUNNERS = {"cupy", "cupy-eager", "torch-cuda", "torch-cuda-fused", "torch-cuda-graph"}


@pytest.fixture
def dry_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GPU_DRY_RUN_ENV_VAR, "1")


def _settings(**fields: Any) -> Settings:
    values: dict[str, Any] = dict(samples=256, backends=(("numpy", None),), peers=True)
    values.update(fields)
    return Settings(**values)


def test_gpu_catalogue_names_runners_batches_and_the_peak_ceiling(dry_run: None) -> None:
    works = gpu_workloads(_settings())
    epochs = [w for w in works if w.family == "gpu_train_epoch"]
    assert {w.runner for w in epochs} == RUNNERS
    assert sorted({w.batch for w in epochs}) == [128, 1024, 8192]
    assert len(epochs) == 15 and all(w.long and w.dtype == "float32" for w in epochs)
    assert "cupy-eager-float32-b1024-784-256-128-10" in {w.param_id for w in epochs}
    starts = [w for w in works if w.family == "gpu_start"]
    assert [w.runner for w in starts] == ["cupy-cold", "cupy-warm"]
    assert all(w.own_process for w in starts)
    ceilings = {w.provides.key for w in works if w.provides is not None}
    assert {w.ceiling.key for w in epochs} == {"gpu gemm peak float32 b256 256-256"}
    assert "gpu gemm peak float32 b256 256-256" in ceilings and "gpu bandwidth" in ceilings
    assert set(GPU_PEERS) <= set(PEERS)
    assert FAMILY_ORDER.index("gpu_train_epoch") < FAMILY_ORDER.index("dense_forward")


def test_gpu_items_are_not_in_the_quick_subset_and_the_peak_is_8192_cubed() -> None:
    quick = quick_workloads(_settings(peers=False))
    assert not [w for w in quick if w.family in ("gpu_train_epoch", "gpu_start")]
    peak = gpu_module.peak_ceiling()
    assert (peak.kind, peak.batch, peak.layers, peak.dtype) == (
        "peak",
        8192,
        (8192, 8192),
        "float32",
    )


def test_a_worker_builds_only_its_own_runner() -> None:
    settings = _settings(backends=(), runners=("torch-cuda-graph",))
    works = family_workloads("gpu_train_epoch", dataclasses.replace(settings, isolate=False))
    assert {w.runner for w in works} == {"torch-cuda-graph"}
    assert family_workloads("gpu_start", settings) == []


def test_runners_skip_with_the_reason_without_cupy_torch_or_a_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import nnback.backends as backends
    import nnback.bench.peers_torch as peers_torch
    import nnback.bench.peers_torch_cuda as peers_cuda

    monkeypatch.delenv(GPU_DRY_RUN_ENV_VAR, raising=False)

    def refuse(name: str) -> None:
        raise backends.BackendUnavailableError("cupy is not installed")

    monkeypatch.setattr(backends, "get_backend", refuse)
    assert (
        gpu_module.gpu_backend_reason() == "the cupy backend does not load: cupy is not installed"
    )
    monkeypatch.setattr(peers_torch, "torch_unavailable", lambda: "PyTorch is not installed")
    assert peers_cuda.torch_cuda_unavailable() == "PyTorch is not installed"
    monkeypatch.setattr(peers_torch, "torch_unavailable", lambda: None)
    monkeypatch.setattr(peers_cuda.os.path, "exists", lambda path: False)
    monkeypatch.setattr(peers_cuda.ctypes.util, "find_library", lambda name: None)
    assert "no NVIDIA driver" in str(peers_cuda.torch_cuda_unavailable())
    works = gpu_workloads(_settings(backends=()))
    reasons = {w.runner: w.skip for w in works if w.family == "gpu_train_epoch"}
    assert (
        reasons["cupy"]
        == reasons["cupy-eager"]
        == "the cupy backend does not load: cupy is not installed"
    )
    assert "no NVIDIA driver" in str(reasons["torch-cuda-graph"])
    # The GPU ceilings skip for the same reason as the cupy runners, never fail.
    assert all(w.skip for w in works if w.provides is not None)


def _fake_torch(cuda: str | None, available: bool) -> Any:
    return types.SimpleNamespace(
        __version__="2.99",
        version=types.SimpleNamespace(cuda=cuda),
        cuda=types.SimpleNamespace(is_available=lambda: available),
    )


@pytest.mark.parametrize(
    ("cuda", "available", "reason"),
    [(None, False, "CPU-only build"), ("13.0", False, "sees no usable CUDA device")],
)
def test_torch_without_cuda_skips_at_setup_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, cuda: str | None, available: bool, reason: str
) -> None:
    import nnback.bench.peers_torch as peers_torch
    from nnback.bench.peers_torch_cuda import cuda_torch

    monkeypatch.setattr(peers_torch, "_torch", lambda: _fake_torch(cuda, available))
    with pytest.raises(WorkloadSkipped, match=reason):
        cuda_torch("cuda")


def test_worker_environments_set_capture_and_the_kernel_cache() -> None:
    assert gpu_module.nnback_gpu_env("cupy") == {"NNBACK_CAPTURE": "1"}
    assert gpu_module.nnback_gpu_env("cupy-eager") == {"NNBACK_CAPTURE": "0"}
    assert startup_env("/tmp/k") == {"CUPY_CACHE_DIR": "/tmp/k", "NNBACK_CAPTURE": "1"}
    env = worker_environment({"NNBACK_CAPTURE": "0"})
    assert env["NNBACK_CAPTURE"] == "0" and "PYTHONPATH" in env


def _epoch(runner: str, batch: int = 128, isolate: bool = True) -> Any:
    settings = _settings(isolate=isolate, peers=False)
    works = family_workloads("gpu_train_epoch", settings)
    (work,) = [w for w in works if w.runner == runner and w.batch == batch]
    return work


@pytest.mark.parametrize(("runner", "value"), [("cupy", "1"), ("cupy-eager", "0")])
def test_nnback_gpu_runner_trains_in_a_worker_that_has_its_capture_setting(
    dry_run: None, runner: str, value: str
) -> None:
    work = _epoch(runner)
    assert dict(work.env) == {"NNBACK_CAPTURE": value}
    result = measure(work, FAST)
    assert result.error is None and result.skipped is None, result.error
    assert result.extra["isolated"] is True
    assert result.extra["nnback_capture"] == value
    assert result.first_call_amount == 256  # a whole warm-up epoch before the timed ones


def test_same_process_run_sets_the_capture_variable_around_its_calls(
    dry_run: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NNBACK_CAPTURE", raising=False)
    result = measure(_epoch("cupy-eager", isolate=False), FAST)
    assert result.error is None and result.extra["nnback_capture"] == "0"
    import os

    assert "NNBACK_CAPTURE" not in os.environ


@pytest.mark.parametrize("runner", ["cupy-cold", "cupy-warm"])
def test_start_up_runs_a_fresh_process_per_round_with_its_kernel_cache(
    dry_run: None, runner: str
) -> None:
    (work,) = [w for w in family_workloads("gpu_start", _settings()) if w.runner == runner]
    result = measure(work, FAST)
    assert result.error is None and result.skipped is None, result.error
    dirs = result.extra["cache_dirs"]
    assert len(dirs) == 2 and all(dirs)
    if runner == "cupy-cold":
        assert dirs[0] != dirs[1] and result.extra["cache"] == "empty"
    else:
        assert dirs[0] == dirs[1] and result.extra["cache"] == "warm"
    assert result.extra["first_epoch_s"] > 0


def test_flops_per_sample_come_from_the_shapes() -> None:
    per_sample = network_flops(NETWORKS[MAIN_NETWORK], 1, training=True)
    # Forward 2*(784*256 + 256*128 + 128*10), as much again for dW, dX for all but layer 1.
    assert per_sample == 1_007_104
    work = _epoch("cupy", batch=8192, isolate=False)
    assert work.flops == pytest.approx(work.amount * per_sample)
    assert ceiling_share(1e6, per_sample, 50e12) == pytest.approx(0.02014208)


def _gpu_document(make_entry: Any, make_document: Any) -> dict[str, Any]:
    key = "gpu gemm peak float32 b8192 8192-8192"
    flops = 60_000 * 1_007_104.0
    rows = [
        make_entry(
            "gpu train epoch 784-256-128-10",
            runner,
            60_000 / rate,
            batch=128,
            amount=60_000,
            family="gpu_train_epoch",
            flops=flops,
            ceiling=key,
        )
        for runner, rate in (("cupy", 400e3), ("cupy-eager", 100e3), ("torch-cuda-graph", 387e3))
    ]
    rows.append(
        make_entry(
            "ceiling: peak gemm 8192x8192x8192",
            "gpu",
            0.025,
            batch=8192,
            unit="flop",
            amount=2.0 * 8192**3,
            family="ceiling",
            minimum=2.0 * 8192**3 / 50e12,
            flops=2.0 * 8192**3,
            ceiling_key=key,
            ceiling_measure="flops",
            tf32="off",
        )
    )
    rows.append(
        make_entry(
            "gpu start-up to first epoch 784-256-128-10",
            "cupy-cold",
            7.5,
            amount=0.0,
            unit="start",
            family="gpu_start",
            first_epoch_s=5.9,
            backend_s=0.4,
            cache="empty",
        )
    )
    return make_document(*rows)


def test_report_has_a_graph_column_and_the_share_of_the_peak(
    make_entry: Any, make_document: Any
) -> None:
    document = _gpu_document(make_entry, make_document)
    columns, rows = table_rows(report_entries(document))
    assert "×graph" in columns and "×torch" not in columns
    by_runner = {row[columns.index("runner")]: row for row in rows}
    assert by_runner["cupy"][columns.index("×graph")] == "1.03"
    # 400k samples/s x 1.007104 MFLOP / 50 TFLOP/s = 0.806 %
    assert by_runner["cupy"][columns.index("ceiling")] == "1% gemm"
    assert "first epoch 5.90 s" in by_runner["cupy-cold"][columns.index("notes")]
    assert "cupy-eager" in format_table(report_entries(document))


def test_gpu_summary_table(make_entry: Any, make_document: Any, tmp_path: Any) -> None:
    junit = tmp_path / "suite.xml"
    junit.write_text(
        '<testsuites><testsuite tests="10" failures="1" errors="0" skipped="2"/></testsuites>'
    )
    assert junit_counts(str(junit)) == {
        "tests": 10,
        "failed": 1,
        "errors": 0,
        "skipped": 2,
        "passed": 7,
    }
    text = format_gpu_summary(
        _gpu_document(make_entry, make_document),
        junit={"suite on cupy": str(junit), "gpu tests": str(tmp_path / "missing.xml")},
        phases={"gpu tests": "124", "suite on cupy": "1"},
    )
    lines = text.splitlines()
    header = lines[1].split()
    row = dict(zip(header, lines[2].split(), strict=True))
    assert row["batch"] == "128" and row["cupy"] == "400k" and row["t-graph"] == "387k"
    assert row["cupy/graph"] == "1.03" and row["eager/graph"] == "0.26"
    assert row["cupy%peak"] == "0.8%"
    assert "50.0 TFLOP/s" in text and "TF32 off" in text
    assert "cold 7.5 s (first epoch 5.90 s)" in text
    assert "gpu tests: TIMED OUT: no test results" in text
    assert "suite on cupy: exit 1: 7 passed, 1 failed, 0 errors, 2 skipped" in text
