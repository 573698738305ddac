"""``nnback bench --compare``: a slowed-down op is flagged and the command exits non-zero."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from nnback.bench import TimingOptions, measure, results_json
from nnback.bench.compare import compare, format_comparison
from nnback.bench.ops import loss_workload
from nnback.bench.workload import Prepared, Workload
from nnback.bench_cli import main as bench_main

INJECTED_DELAY_S = 0.05
Factory = Callable[..., dict[str, Any]]


def _slowed(work: Workload, delay: float) -> Workload:
    """The same workload with ``delay`` seconds of sleep added to every timed call."""

    def setup() -> Prepared:
        prepared = work.setup()
        original = prepared.run

        def run() -> None:
            original()
            time.sleep(delay)

        return dataclasses.replace(prepared, run=run)

    return dataclasses.replace(work, setup=setup)


def _run_json(work: Workload) -> dict[str, Any]:
    options = TimingOptions(max_time=0.0, min_rounds=3, round_time=0.0)
    result = measure(work, options)
    assert result.error is None and result.skipped is None
    return json.loads(json.dumps(results_json([result], {}, {})))


def test_injected_slowdown_is_flagged_by_compare_and_exit_status(tmp_path: Any) -> None:
    # A real op on the reference backend, run twice: the second run sleeps 50 ms per call,
    # so it is slower by construction, whatever the machine's load.
    op = loss_workload("numpy", "float32", 128, "softmax_crossentropy", None)
    old_path, new_path = tmp_path / "old.json", tmp_path / "new.json"
    old_path.write_text(json.dumps(_run_json(op)))
    new_path.write_text(json.dumps(_run_json(_slowed(op, INJECTED_DELAY_S))))

    result = compare(json.loads(old_path.read_text()), json.loads(new_path.read_text()), 0.1)
    assert result.failed
    assert [change.label for change, _ in result.regressions] == [
        "softmax_crossentropy n x 10 | numpy | float32 | batch 128"
    ]
    assert bench_main(["--compare", str(old_path), str(new_path), "--threshold", "0.1"]) == 1
    assert bench_main(["--compare", str(old_path), str(old_path)]) == 0


def test_threshold_separates_noise_from_regressions(
    make_entry: Factory, make_document: Factory
) -> None:
    old = make_document(
        make_entry("dense", "numpy", 1.00),
        make_entry("dense", "numba", 1.00),
        make_entry("dense", "torch", 1.00),
    )
    new = make_document(
        make_entry("dense", "numpy", 1.05),  # within 10 %
        make_entry("dense", "numba", 1.30),  # 30 % slower
        make_entry("dense", "torch", 0.50),  # twice as fast
    )
    result = compare(old, new, threshold=0.1)
    assert [c.label.split(" | ")[1] for c, _ in result.regressions] == ["numba"]
    assert [c.label.split(" | ")[1] for c, _ in result.improvements] == ["torch"]
    assert result.unchanged == 1
    text = format_comparison(result, "old.json", "new.json")
    assert "REGRESSIONS (1" in text and "+30.0%" in text and "-50.0%" in text
    assert not compare(old, new, threshold=0.5).failed


def test_times_are_compared_per_unit_of_work(make_entry: Factory, make_document: Factory) -> None:
    # 10,000 samples in 1 s against 60,000 samples in 6 s: the same speed.
    old = make_document(make_entry("epoch", "numpy", 1.0, amount=10_000, family="train_epoch"))
    new = make_document(make_entry("epoch", "numpy", 6.0, amount=60_000, family="train_epoch"))
    assert not compare(old, new, 0.1).failed


def test_peak_memory_growth_is_a_regression(make_entry: Factory, make_document: Factory) -> None:
    old = make_document(make_entry("memory", "numpy", 1.0, peak_bytes=10 << 20))
    new = make_document(make_entry("memory", "numpy", 1.0, peak_bytes=20 << 20))
    result = compare(old, new, 0.1)
    assert result.failed
    assert "10.0 MiB -> 20.0 MiB" in result.regressions[0][1]


def test_unmatched_results_are_listed_not_flagged(
    make_entry: Factory, make_document: Factory
) -> None:
    old = make_document(make_entry("a", "numpy", 1.0), make_entry("b", "numpy", 1.0))
    new = make_document(make_entry("a", "numpy", 1.0), make_entry("c", "numpy", 1.0))
    result = compare(old, new)
    assert not result.failed
    assert result.only_old == ["b | numpy | float32 | batch 128"]
    assert result.only_new == ["c | numpy | float32 | batch 128"]


def test_entries_without_nnback_facts_match_by_name(make_document: Factory) -> None:
    def plain(median: float) -> dict[str, Any]:
        return {
            "group": None,
            "name": "test_x",
            "fullname": "t.py::test_x",
            "stats": {"median": median, "min": median, "mean": median, "max": median},
        }

    assert compare(make_document(plain(1.0)), make_document(plain(2.0))).failed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compare", "missing-old.json", "missing-new.json"], "no such benchmark results"),
        (["--compare", "{nonjson}", "{nonjson}"], "not readable as JSON"),
        (["--compare", "{old}", "{old}", "--threshold", "-1"], "--threshold"),
        (["--compare", "{old}", "{old}", "--stat", "p99"], "--stat"),
    ],
)
def test_bad_compare_input_is_a_clear_error(
    args: list[str],
    message: str,
    tmp_path: Any,
    capsys: Any,
    make_entry: Factory,
    make_document: Factory,
) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps(make_document(make_entry("a", "numpy", 1.0))))
    nonjson = tmp_path / "bad.json"
    nonjson.write_text("not json at all")
    argv = [a.format(old=old, nonjson=nonjson) for a in args]
    argv = [str(tmp_path / a) if a.startswith("missing") else a for a in argv]
    assert bench_main(argv) == 2
    assert message in capsys.readouterr().err
