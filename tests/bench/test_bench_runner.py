"""The quick runner, the catalog of work items and the JSON they produce (no timing checks)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from nnback.bench import (
    Prepared,
    Settings,
    TimingOptions,
    Workload,
    WorkloadSkipped,
    all_workloads,
    measure,
    quick_workloads,
    results_json,
)
from nnback.bench.catalog import select
from nnback.bench.endtoend import train_epoch_workload
from nnback.bench.ops import dense_workload, optimizer_workload
from nnback.bench.report import entries_from
from nnback.bench.runner import compute_stats

FAST = TimingOptions(max_time=0.0, min_rounds=2, round_time=0.0, long_rounds=1, settle=0.0)
NUMPY_ONLY = (("numpy", None),)


def _workload(setup: Any, **fields: Any) -> Workload:
    values = dict(
        family="f",
        group="g",
        runner="numpy",
        dtype="float32",
        batch=8,
        case="c",
        setup=setup,
        unit="sample",
        amount=8.0,
    )
    values.update(fields)
    return Workload(**values)


def test_compute_stats_follows_pytest_benchmark_fields() -> None:
    stats = compute_stats([4.0, 1.0, 3.0, 2.0, 100.0])
    assert stats["median"] == 3.0 and stats["min"] == 1.0 and stats["max"] == 100.0
    assert stats["rounds"] == 5 and (stats["q1"], stats["q3"]) == (2.0, 4.0)
    assert stats["iqr_outliers"] == 1 and stats["total"] == 110.0
    assert compute_stats([0.5])["median"] == 0.5
    with pytest.raises(ValueError):
        compute_stats([])


def test_measure_times_the_first_call_apart_and_records_finish() -> None:
    calls: list[str] = []

    def setup() -> Prepared:
        return Prepared(
            run=lambda: calls.append("run"),
            warmup=lambda: calls.append("warmup"),
            warmup_amount=2.0,
            finish=lambda: {"accuracy": 0.5} if calls.append("finish") is None else {},
        )

    result = measure(_workload(setup), FAST)
    assert calls[0] == "warmup" and calls[-1] == "finish" and calls.count("finish") == 1
    assert result.first_call_s is not None and result.first_call_amount == 2.0
    assert len(result.times) >= 2 and all(t >= 0 for t in result.times)
    bench = result.as_benchmark()
    assert bench["extra_info"]["accuracy"] == 0.5
    assert bench["extra_info"]["first_call_amount"] == 2.0
    assert bench["name"] == "test_f[numpy-float32-b8-c]"


def test_measure_reports_skips_and_failures_and_still_finishes() -> None:
    finished: list[bool] = []

    def skipping() -> Prepared:
        raise WorkloadSkipped("no data here")

    def failing() -> Prepared:
        def run() -> None:
            raise RuntimeError("kernel exploded")

        return Prepared(run=lambda: None, warmup=run, finish=lambda: finished.append(True) or {})

    assert measure(_workload(skipping), FAST).skipped == "no data here"
    assert measure(_workload(failing, skip="known"), FAST).skipped == "known"
    failed = measure(_workload(failing), FAST)
    assert failed.error == "RuntimeError: kernel exploded" and finished == [True]
    document = results_json([failed], {}, {})
    assert document["benchmarks"] == []
    assert document["nnback_skipped"][0]["reason"].startswith("failed: RuntimeError")


def test_real_workloads_run_and_give_pytest_benchmark_json() -> None:
    works = [
        dense_workload("numpy", "float32", 32, 784, 256, True, None),
        optimizer_workload("numpy", "float64", "adam", (256, 128), None),
        train_epoch_workload("numpy", "float32", 64, "784-32-10", 256, None),
    ]
    results = [measure(work, FAST) for work in works]
    assert [r.error for r in results] == [None, None, None]
    document = json.loads(json.dumps(results_json(results, {"node": "x"}, {})))
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(document)
    bench = document["benchmarks"][0]
    assert {"group", "name", "fullname", "params", "param", "extra_info", "stats"} <= set(bench)
    assert {"median", "min", "max", "mean", "stddev", "rounds", "iqr", "ops"} <= set(bench["stats"])
    assert bench["group"] == "dense_backward 784->256 relu"
    assert bench["extra_info"]["ceiling"] == "cpu gemm bwd-nodx float32 b32 784-256"
    assert [e.runner for e in entries_from(document)] == ["numpy"] * 3


def test_catalog_names_are_unique_and_ceilings_cover_every_reference() -> None:
    settings = Settings(samples=1000, real_epochs=1, backends=NUMPY_ONLY, peers=True)
    works = all_workloads(settings)
    counts = Counter((w.family, w.param_id) for w in works)
    assert max(counts.values()) == 1
    provided = {w.provides.key for w in works if w.provides is not None}
    assert {w.ceiling.key for w in works if w.ceiling is not None} <= provided
    families = {w.family for w in works}
    assert {"dense_forward", "optimizer_step", "train_epoch", "real_data_training"} <= families
    assert {"memory_peak", "ceiling", "loss", "activation_backward"} <= families
    runners = {w.runner for w in works}
    assert {"numpy", "torch", "torch-tuned", "sklearn", "cpu"} <= runners
    dtypes = {w.dtype for w in works if w.family == "dense_forward"}
    assert dtypes == {"float32", "float64"}
    assert {w.batch for w in works if w.family == "dense_forward"} == {32, 128, 1024}


def test_quick_subset_holds_the_headline_comparisons() -> None:
    settings = Settings(samples=1000, real_epochs=1, backends=NUMPY_ONLY, peers=True)
    works = quick_workloads(settings)
    train = {(w.runner, w.batch) for w in works if w.family == "train_epoch"}
    assert {("numpy", b) for b in (32, 128, 1024)} <= train
    assert {("torch", 32), ("torch-tuned", 1024), ("sklearn", 128)} <= train
    assert works[0].provides is not None  # ceilings first
    assert len(works) < 60
    no_peers = quick_workloads(Settings(samples=1000, backends=NUMPY_ONLY, peers=False))
    assert {w.runner for w in no_peers} == {"numpy", "cpu"}


def test_select_keeps_workloads_matching_every_word() -> None:
    works = quick_workloads(Settings(samples=1000, backends=NUMPY_ONLY, peers=True))
    chosen = select(works, "train_epoch TORCH b128")
    assert {(w.runner, w.batch) for w in chosen} == {("torch", 128), ("torch-tuned", 128)}


def test_settings_follow_the_test_backend_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNBACK_TEST_BACKENDS", "numpy,strict")
    monkeypatch.setenv("NNBACK_BENCH_SAMPLES", "1_234")
    settings = Settings.from_environment()
    assert settings.backends == NUMPY_ONLY  # the strict test device measures nothing real
    assert settings.samples == 1234
    monkeypatch.setenv("NNBACK_BENCH_SAMPLES", "many")
    with pytest.raises(ValueError, match="NNBACK_BENCH_SAMPLES"):
        Settings.from_environment()


def test_missing_peers_and_data_are_skipped_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import importlib.util

    from nnback.bench import data, peers_sklearn, peers_torch

    real_find_spec = importlib.util.find_spec
    missing = {"torch", "sklearn"}
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in missing else real_find_spec(name, *a),
    )
    base = train_epoch_workload("numpy", "float32", 128, "784-256-128-10", 256, None)
    torch_twin = peers_torch.torch_peer(base, "torch", 256)
    sklearn_twin = peers_sklearn.sklearn_peer(base, 256)
    assert torch_twin is not None and "PyTorch is not installed" in str(torch_twin.skip)
    assert sklearn_twin is not None and "scikit-learn is not installed" in str(sklearn_twin.skip)
    assert measure(torch_twin, FAST).skipped == torch_twin.skip
    with pytest.raises(WorkloadSkipped, match="Fashion-MNIST is not installed"):
        data.real_data(str(tmp_path))


def test_pytest_benchmark_bridge_records_group_facts_and_first_call() -> None:
    from nnback.bench import run_pytest_benchmark

    class FakeBenchmark:
        """Stands in for pytest-benchmark's fixture: calls the target as it would."""

        def __init__(self) -> None:
            self.group: str | None = None
            self.extra_info: dict[str, Any] = {}
            self.calls: list[str] = []

        def __call__(self, target: Any) -> None:
            self.calls.append("calibrated")
            target()

        def pedantic(self, target: Any, rounds: int, iterations: int) -> None:
            self.calls.append(f"pedantic x{rounds}")
            for _ in range(rounds * iterations):
                target()

    short = optimizer_workload("numpy", "float32", "sgd", (256, 128), None)
    fake = FakeBenchmark()
    run_pytest_benchmark(fake, short)
    assert fake.group == "optimizer_step sgd momentum 256x128"
    assert fake.calls == ["calibrated"]
    assert fake.extra_info["runner"] == "numpy" and fake.extra_info["unit"] == "param"
    assert fake.extra_info["first_call_s"] >= 0

    long = train_epoch_workload("numpy", "float32", 64, "784-32-10", 512, None)
    fake = FakeBenchmark()
    run_pytest_benchmark(fake, long, 2)
    assert fake.calls == ["pedantic x2"]
    assert fake.extra_info["first_call_amount"] == 3 * 64  # a 3-step warm-up, not an epoch


@pytest.mark.slow
def test_every_peer_family_sets_up_and_runs_once() -> None:
    pytest.importorskip(
        "torch", reason="PyTorch is not installed: pip install torch (the CPU build is enough)"
    )
    settings = Settings(samples=256, real_epochs=1, backends=NUMPY_ONLY, peers=True)
    first: dict[tuple[str, str], Workload] = {}
    for work in all_workloads(settings, with_ceiling=False):
        peer = work.runner in ("torch", "torch-tuned", "sklearn")
        if peer and work.family != "real_data_training" and work.batch in (None, 32, 64):
            first.setdefault((work.family, work.runner), work)
    assert len({family for family, _ in first}) >= 12
    for work in first.values():
        result = measure(work, TimingOptions(max_time=0.0, min_rounds=1, round_time=0.0))
        assert result.error is None, (work.name, result.error)
