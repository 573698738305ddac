"""Long workloads in worker processes, and interleaved rounds (no timing checks)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest

from nnback.bench import Prepared, Settings, TimingOptions, Workload, measure
from nnback.bench.catalog import family_workloads
from nnback.bench.isolation import IsolationError, isolated, worker_environment
from nnback.bench.runner import measure_interleaved, run_workloads

FAST = TimingOptions(max_time=0.0, min_rounds=2, round_time=0.0, long_rounds=2, settle=0.0)
SAMPLES = 64


def _tiny_epoch(isolate: bool) -> Workload:
    settings = Settings(samples=SAMPLES, backends=(("numpy", None),), peers=False, isolate=isolate)
    (work,) = [w for w in family_workloads("train_step_overhead", settings) if w.runner == "numpy"]
    return work


def test_catalog_isolates_long_workloads_only_when_asked() -> None:
    settings = Settings(samples=SAMPLES, backends=(("numpy", None),), peers=False)
    long_work = _tiny_epoch(isolate=True)
    short = family_workloads("softmax_crossentropy", settings)[0]
    assert long_work.long and not short.long
    # The isolated workload's setup starts a worker; the others set up in this process.
    assert "isolated" in long_work.setup.__qualname__
    assert "isolated" not in _tiny_epoch(isolate=False).setup.__qualname__
    assert "isolated" not in short.setup.__qualname__


def test_isolated_workload_runs_in_another_process_and_reports_its_facts() -> None:
    result = measure(_tiny_epoch(isolate=True), FAST)
    assert result.error is None and result.skipped is None
    assert len(result.times) == 2 and all(t > 0 for t in result.times)
    assert result.first_call_s is not None
    assert result.extra["isolated"] is True
    assert result.extra["worker_pid"] != os.getpid()


def test_worker_that_cannot_build_its_workload_fails_with_the_reason() -> None:
    work = dataclasses.replace(_tiny_epoch(isolate=False), case="no-such-network")
    broken = isolated(work, SAMPLES, 1)
    result = measure(broken, FAST)
    assert result.error is not None
    assert "IsolationError" in result.error and "no workload" in result.error


def test_worker_that_dies_is_reported() -> None:
    work = isolated(_tiny_epoch(isolate=False), SAMPLES, 1)
    prepared = work.setup()
    worker = prepared.run.__self__  # type: ignore[attr-defined]
    worker.process.kill()
    worker.process.wait()
    with pytest.raises(IsolationError, match="exited"):
        prepared.run()


def test_worker_environment_drops_only_nnbacks_own_wait_policy(monkeypatch: Any) -> None:
    import nnback.bench.peers_torch as peers_torch

    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    monkeypatch.setattr(peers_torch, "users_wait_policy", lambda: None)
    assert "OMP_WAIT_POLICY" not in worker_environment()
    monkeypatch.setattr(peers_torch, "users_wait_policy", lambda: "active")
    assert worker_environment()["OMP_WAIT_POLICY"] == "active"


def _recording(name: str, calls: list[str], fail_on: int | None = None, **fields: Any) -> Workload:
    def setup() -> Prepared:
        count = {"runs": 0}

        def run() -> None:
            count["runs"] += 1
            if count["runs"] == fail_on:
                raise RuntimeError(f"{name} broke")
            calls.append(name)

        return Prepared(run=run, finish=lambda: {"finished": name})

    values: dict[str, Any] = dict(
        family="f",
        group="g",
        runner=name,
        dtype="float32",
        batch=8,
        case="c",
        setup=setup,
        unit="sample",
        amount=8.0,
        long=True,
    )
    values.update(fields)
    return Workload(**values)


def test_interleaved_rounds_alternate_runners_and_give_each_the_same_count() -> None:
    calls: list[str] = []
    works = [_recording(name, calls) for name in ("a", "b", "c")]
    results = measure_interleaved(works, dataclasses.replace(FAST, long_rounds=3))
    # The first call of each is its warm-up (no warmup given), then rounds in turn.
    assert calls == ["a", "b", "c"] + ["a", "b", "c"] * 3
    assert [len(r.times) for r in results] == [3, 3, 3]
    assert [r.extra["finished"] for r in results] == ["a", "b", "c"]


def test_interleaved_failure_keeps_the_other_runners_results() -> None:
    calls: list[str] = []
    works = [_recording("a", calls), _recording("b", calls, fail_on=3)]
    results = measure_interleaved(works, dataclasses.replace(FAST, long_rounds=3))
    assert results[0].error is None and len(results[0].times) == 3
    assert results[1].error is not None and "b broke" in results[1].error
    assert results[1].times == []


def test_run_workloads_groups_the_same_item_and_keeps_the_given_order() -> None:
    calls: list[str] = []
    works = [
        _recording("a", calls),
        _recording("x", calls, group="other"),
        _recording("b", calls),
    ]
    results = run_workloads(works, dataclasses.replace(FAST, long_rounds=1), progress=None)
    assert [r.workload.runner for r in results] == ["a", "x", "b"]
    # a and b are measured together (warm-ups, then one round in turn), before x.
    assert calls == ["a", "b", "a", "b", "x", "x"]
