"""Timing workloads: the quick runner behind ``nnback bench`` and the bridge to pytest-benchmark.

Both engines do the same around the clock: ``setup`` outside the timings; the first call
(or the workload's short warm-up) timed on its own and recorded as ``first_call_s``, since
it includes compilation on the Numba and CuPy backends; then the timed calls, each ending
with a device synchronization (inside the workload); then ``finish``, whose facts join the
result's ``extra_info``.

The quick runner writes the JSON layout of pytest-benchmark (``machine_info``,
``commit_info``, ``benchmarks`` with ``group``, ``name``, ``fullname``, ``params``,
``param``, ``extra_info``, ``options`` and ``stats``), so one report and one comparison
read the output of either engine.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .workload import Prepared, Workload, WorkloadSkipped

__all__ = [
    "Result",
    "TimingOptions",
    "compute_stats",
    "measure",
    "measure_interleaved",
    "results_json",
    "run_pytest_benchmark",
    "run_workloads",
]

SCHEMA_VERSION = "4.0.0"
CEILING_MIN_ROUNDS = 30
CEILING_MAX_TIME = 1.0


@dataclass(frozen=True)
class TimingOptions:
    """How long to time each workload.

    Attributes
    ----------
    max_time : float
        Seconds of timed calls per short workload (more rounds stop there).
    min_rounds, max_rounds : int
        Bounds on the rounds of a short workload.
    round_time : float
        Target seconds per round: a round repeats a short call enough times to last it.
    long_rounds : int
        Timed calls of a long workload (an epoch).
    long_budget : float
        Seconds after which a long workload takes no more rounds (at least one is taken):
        keeps the quick subset short on a slow or busy machine.
    settle : float
        Seconds of pause before each interleaved call of a long workload (see
        :func:`measure_interleaved`).
    """

    max_time: float = 0.3
    min_rounds: int = 5
    max_rounds: int = 1000
    round_time: float = 0.002
    long_rounds: int = 2
    long_budget: float = 4.0
    settle: float = 0.2


@dataclass
class Result:
    """One workload's outcome: per-round times (seconds per call) or the reason it skipped."""

    workload: Workload
    times: list[float] = field(default_factory=list)
    iterations: int = 1
    first_call_s: float | None = None
    first_call_amount: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    error: str | None = None

    def as_benchmark(self) -> dict[str, Any]:
        """This result as one entry of pytest-benchmark's ``benchmarks`` list."""
        work = self.workload
        stats = compute_stats(self.times)
        stats["iterations"] = self.iterations
        stats["data"] = list(self.times)
        return {
            "group": work.group,
            "name": work.name,
            "fullname": f"nnback.bench::{work.name}",
            "params": {
                "runner": work.runner,
                "dtype": work.dtype,
                "batch": work.batch,
                "case": work.case,
            },
            "param": work.param_id,
            "extra_info": extra_info(work, self.first_call_s, self.extra, self.first_call_amount),
            "options": {"timer": "perf_counter", "engine": "nnback.bench.runner"},
            "stats": stats,
        }


def extra_info(
    work: Workload,
    first_call_s: float | None,
    extra: dict[str, Any],
    first_call_amount: float | None = None,
) -> dict[str, Any]:
    """The ``extra_info`` of a result: the workload's facts, the first call, ``finish``'s.

    ``first_call_amount`` is the work the first call did (a short warm-up may do less than
    one timed call), so the report can tell compilation from steady-state work.
    """
    info = work.extra_info()
    if first_call_s is not None:
        info["first_call_s"] = first_call_s
        info["first_call_amount"] = work.amount if first_call_amount is None else first_call_amount
    info.update(extra)
    return info


def _quartiles(data: list[float]) -> tuple[float, float]:
    if len(data) < 2:
        return data[0], data[0]
    q1, _, q3 = statistics.quantiles(data, n=4, method="inclusive")
    return q1, q3


def compute_stats(times: list[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` fields for per-round times (seconds per call)."""
    if not times:
        raise ValueError("no timings to summarize")
    data = sorted(times)
    q1, q3 = _quartiles(data)
    iqr = q3 - q1
    mean = statistics.fmean(data)
    stddev = statistics.stdev(data) if len(data) > 1 else 0.0
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    inside = [t for t in data if low <= t <= high] or data
    iqr_outliers = len(data) - len(inside)
    stddev_outliers = sum(1 for t in data if abs(t - mean) > stddev) if stddev else 0
    total = sum(data)
    return {
        "min": data[0],
        "max": data[-1],
        "mean": mean,
        "stddev": stddev,
        "rounds": len(data),
        "median": statistics.median(data),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": inside[0],
        "hd15iqr": inside[-1],
        "ops": len(data) / total if total else 0.0,
        "total": total,
    }


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _first_call(prepared: Prepared) -> float:
    """Time the first call (or the short warm-up standing for it)."""
    return _timed(prepared.warmup or prepared.run)


def _finish(prepared: Prepared | None) -> dict[str, Any]:
    if prepared is None or prepared.finish is None:
        return {}
    return dict(prepared.finish() or {})


def measure(work: Workload, options: TimingOptions | None = None) -> Result:
    """Set up, warm up and time one workload with the quick runner's own loop."""
    options = options or TimingOptions()
    if work.long:  # one rule for the rounds of long workloads, alone or taking turns
        return measure_interleaved([work], options)[0]
    if work.skip:
        return Result(work, skipped=work.skip)
    prepared: Prepared | None = None
    try:
        prepared = work.setup()
        result = Result(
            work, first_call_s=_first_call(prepared), first_call_amount=prepared.warmup_amount
        )
        if work.provides is not None:
            # A ceiling is the best the machine does: time single calls, many of them, so
            # that the fastest one escapes the noise of a busy machine.
            ceiling_options = dataclasses.replace(
                options,
                round_time=0.0,
                min_rounds=max(options.min_rounds, CEILING_MIN_ROUNDS),
                max_time=max(options.max_time, CEILING_MAX_TIME),
            )
            _time_short(prepared.run, ceiling_options, result)
        else:
            _time_short(prepared.run, options, result)
        result.extra = _finish(prepared)
        prepared = None
        return result
    except WorkloadSkipped as exc:
        return Result(work, skipped=str(exc))
    except Exception as exc:  # one failing workload must not lose the others' results
        return Result(work, error=f"{type(exc).__name__}: {exc}")
    finally:
        _finish(prepared)  # release global state (e.g. flush-to-zero) even after an error


def _time_short(run: Callable[[], Any], options: TimingOptions, result: Result) -> None:
    estimate = min(_timed(run) for _ in range(3))
    iterations = max(1, math.ceil(options.round_time / max(estimate, 1e-9)))
    result.iterations = iterations
    spent, times = 0.0, []
    while len(times) < options.max_rounds and (
        len(times) < options.min_rounds or spent < options.max_time
    ):
        started = time.perf_counter()
        for _ in range(iterations):
            run()
        elapsed = time.perf_counter() - started
        spent += elapsed
        times.append(elapsed / iterations)
    result.times = times


def _comparison_key(work: Workload) -> tuple[Any, ...]:
    """What a long workload is compared on: the same item, dtype and batch, any runner."""
    return (work.family, work.group, work.dtype, work.batch, work.case)


def measure_interleaved(
    works: list[Workload], options: TimingOptions | None = None
) -> list[Result]:
    """Time long workloads that are compared with each other, round by round in turn.

    Everything is set up and warmed up first; then each round times one call of every
    workload in turn (A B C A B C ...), with a pause of ``options.settle`` seconds before
    each call (when several take turns) so that the previous runner's idle threads have
    gone to sleep. A slow spell of a shared machine then falls on every runner alike
    instead of on whichever was being timed, which is what makes same-run ratios fair.
    Each workload gets the same number of rounds: another round while the fastest has
    spent under ``long_budget``.
    """
    options = options or TimingOptions()
    results = [Result(work) for work in works]
    prepared: list[Prepared | None] = [None] * len(works)
    try:
        for index, work in enumerate(works):
            _prepare_one(work, results[index], prepared, index)
        active = [i for i, p in enumerate(prepared) if p is not None]
        rounds = min(
            [options.long_rounds] + [works[i].max_rounds or options.long_rounds for i in active]
        )
        while active:
            for i in list(active):
                if len(active) > 1:  # nothing else ran since this runner's last call
                    time.sleep(options.settle)
                try:
                    results[i].times.append(_timed(prepared[i].run))  # type: ignore[union-attr]
                except Exception as exc:
                    results[i].error, results[i].times = f"{type(exc).__name__}: {exc}", []
                    _finish(prepared[i])
                    prepared[i] = None
                    active.remove(i)
            if not active:
                break
            taken = len(results[active[0]].times)
            spent = min(sum(results[i].times) for i in active)
            if taken >= max(1, rounds) or spent >= options.long_budget:
                break
        for i in active:
            results[i].extra = _finish(prepared[i])
            prepared[i] = None
    finally:
        for leftover in prepared:
            _finish(leftover)
    return results


def _prepare_one(
    work: Workload, result: Result, prepared: list[Prepared | None], index: int
) -> None:
    """Set up and warm up one workload for :func:`measure_interleaved`, noting a failure."""
    if work.skip:
        result.skipped = work.skip
        return
    try:
        ready = work.setup()
    except WorkloadSkipped as exc:
        result.skipped = str(exc)
        return
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return
    prepared[index] = ready
    try:
        result.first_call_s = _first_call(ready)
        result.first_call_amount = ready.warmup_amount
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        _finish(ready)
        prepared[index] = None


def _print_progress(progress: TextIO | None, index: int, total: int, result: Result) -> None:
    if progress is None:
        return
    work = result.workload
    if result.skipped:
        outcome = f"skipped: {result.skipped}"
    elif result.error:
        outcome = f"FAILED: {result.error}"
    else:
        outcome = f"{statistics.median(result.times):.4g} s"
    print(f"[{index}/{total}] {work.group} | {work.param_id}: {outcome}", file=progress, flush=True)


def run_workloads(
    workloads: Iterable[Workload],
    options: TimingOptions | None = None,
    progress: TextIO | None = sys.stderr,
) -> list[Result]:
    """Measure each workload, printing one line per workload to ``progress``.

    Long workloads (epochs) of the same item are measured together, interleaved
    (:func:`measure_interleaved`), when the first of them comes up; the results keep the
    order of ``workloads``.
    """
    todo = list(workloads)
    found: dict[int, Result] = {}
    done = 0
    for index, work in enumerate(todo):
        if index in found:
            continue
        if work.long:
            key = _comparison_key(work)
            members = [
                i
                for i in range(index, len(todo))
                if i not in found and todo[i].long and _comparison_key(todo[i]) == key
            ]
            measured = measure_interleaved([todo[i] for i in members], options)
        else:
            members, measured = [index], [measure(work, options)]
        for i, result in zip(members, measured, strict=True):
            found[i] = result
            done += 1
            _print_progress(progress, done, len(todo), result)
    return [found[i] for i in range(len(todo))]


def results_json(
    results: Iterable[Result], machine_info: dict[str, Any], commit_info: dict[str, Any]
) -> dict[str, Any]:
    """The pytest-benchmark JSON document of measured results (skips are listed apart)."""
    benchmarks, skipped = [], []
    for result in results:
        if result.skipped or result.error:
            reason = result.skipped or f"failed: {result.error}"
            work = result.workload
            skipped.append(
                {"name": work.name, "group": work.group, "runner": work.runner, "reason": reason}
            )
        else:
            benchmarks.append(result.as_benchmark())
    try:
        import pytest_benchmark

        version = str(pytest_benchmark.__version__)
    except ImportError:
        version = SCHEMA_VERSION
    return {
        "machine_info": machine_info,
        "commit_info": commit_info,
        "benchmarks": benchmarks,
        "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "version": version,
        "nnback_skipped": skipped,
    }


def run_pytest_benchmark(benchmark: Any, work: Workload, long_rounds: int = 3) -> None:
    """Time a workload with pytest-benchmark's ``benchmark`` fixture (used by ``bench/``).

    Skips the test (with the reason) when the workload cannot run here.
    """
    import pytest

    if work.skip:
        pytest.skip(work.skip)
    prepared: Prepared | None = None
    try:
        try:
            prepared = work.setup()
        except WorkloadSkipped as exc:
            pytest.skip(str(exc))
        first = _first_call(prepared)
        benchmark.group = work.group
        benchmark.extra_info.update(extra_info(work, first, {}, prepared.warmup_amount))
        if work.long:
            rounds = min(long_rounds, work.max_rounds or long_rounds)
            benchmark.pedantic(prepared.run, rounds=max(1, rounds), iterations=1)
        else:
            benchmark(prepared.run)
        done, prepared = prepared, None
        benchmark.extra_info.update(_finish(done))
    finally:
        _finish(prepared)
