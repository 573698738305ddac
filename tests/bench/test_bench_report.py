"""The report table: units, speed-up columns, fraction of ceiling, first calls, skips."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nnback.bench.report import (
    entries_from,
    format_report,
    format_table,
    format_throughput,
    format_time,
    table_rows,
)

Factory = Callable[..., dict[str, Any]]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2.5, "2.5 s"), (0.0123, "12.3 ms"), (4.56e-5, "45.6 µs"), (7e-8, "70 ns")],
)
def test_format_time_picks_a_readable_unit(seconds: float, text: str) -> None:
    assert format_time(seconds) == text


@pytest.mark.parametrize(
    ("unit", "amount", "median", "extra", "text"),
    [
        ("sample", 60_000, 2.0, {}, "30k samples/s"),
        ("param", 200_704, 1e-4, {}, "2.01G params/s"),
        ("step", 200, 0.02, {}, "100 µs/step"),
        ("step", 200, 2.0, {}, "10,000 µs/step"),
        ("flop", 2e9, 0.5, {}, "4 GFLOP/s"),
        ("byte", 1.2e8, 0.01, {}, "12 GB/s"),
        ("sample", 60_000, 1.0, {"peak_bytes": 3 << 20}, "peak 3.0 MiB"),
    ],
)
def test_throughput_is_written_in_the_unit_of_the_work(
    make_entry: Factory,
    make_document: Factory,
    unit: str,
    amount: float,
    median: float,
    extra: dict[str, Any],
    text: str,
) -> None:
    doc = make_document(make_entry("w", "numpy", median, unit=unit, amount=amount, **extra))
    assert format_throughput(entries_from(doc)[0]) == text


def _training_document(make_entry: Factory, make_document: Factory) -> dict[str, Any]:
    ceiling = {"ceiling": "cpu gemm step float32 b128 784-256-128-10", "flops": 4e9}
    epoch = {"family": "train_epoch", "amount": 60_000.0, **ceiling}
    return make_document(
        make_entry("train epoch", "numpy", 4.0, first_call_s=0.5, **epoch),
        make_entry("train epoch", "numba", 1.0, first_call_s=3.0, **epoch),
        make_entry("train epoch", "torch", 2.0, **epoch),
        make_entry("train epoch", "torch-tuned", 1.6, **epoch),
        make_entry(
            "ceiling: gemm training step",
            "cpu",
            0.25,
            minimum=0.2,  # the ceiling's rate comes from its fastest round
            family="ceiling",
            unit="flop",
            amount=4e9,
            flops=4e9,
            ceiling_key=ceiling["ceiling"],
            ceiling_measure="flops",
        ),
    )


def test_table_gives_speedups_over_numpy_and_pytorch_and_ceiling_fraction(
    make_entry: Factory, make_document: Factory
) -> None:
    columns, rows = table_rows(entries_from(_training_document(make_entry, make_document)))
    assert columns == [
        "work", "dtype", "batch", "runner", "median", "throughput",
        "×numpy", "×torch", "×tuned", "ceiling", "notes",
    ]  # fmt: skip
    table = {row[3]: dict(zip(columns, row, strict=True)) for row in rows}
    assert [row[3] for row in rows] == ["numpy", "numba", "torch", "torch-tuned", "cpu"]
    numba = table["numba"]
    assert (numba["×numpy"], numba["×torch"], numba["×tuned"]) == ("4.00", "2.00", "1.60")
    assert numba["throughput"] == "60k samples/s"
    # 4 GFLOP in 1 s against a ceiling of 4 GFLOP in 0.2 s: 20 %.
    assert numba["ceiling"] == "20% gemm"
    assert table["numpy"]["ceiling"] == "5% gemm"
    assert table["cpu"]["throughput"] == "20 GFLOP/s"  # its best round
    assert numba["notes"] == "60,000 samples"


def test_text_table_names_each_work_item_once_and_aligns(
    make_entry: Factory, make_document: Factory
) -> None:
    text = format_table(entries_from(_training_document(make_entry, make_document)))
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["work", "dtype", "batch", "runner"]
    assert set(lines[1]) <= {"-", " "}
    body = lines[2:]
    assert sum(line.startswith("train epoch") for line in body) == 1
    assert body[1].startswith(" ") and "numba" in body[1]
    position = lines[0].index("runner")
    assert all(
        line[position:].split()[0] in {"numpy", "numba", "torch", "torch-tuned", "cpu"}
        for line in body
    )


def test_markdown_table_has_one_row_per_result(make_entry: Factory, make_document: Factory) -> None:
    text = format_table(entries_from(_training_document(make_entry, make_document)), "markdown")
    lines = text.splitlines()
    assert lines[0].startswith("| work | dtype | batch | runner | median |")
    assert lines[1].startswith("|---|---:|---:|---|")
    assert len(lines) == 2 + 5
    assert all(line.startswith("| train epoch |") for line in lines[2:6])


def test_columns_of_absent_peers_are_left_out(make_entry: Factory, make_document: Factory) -> None:
    doc = make_document(make_entry("op", "numpy", 2e-4), make_entry("op", "numba", 1e-4))
    columns, rows = table_rows(entries_from(doc))
    assert "×torch" not in columns and "×tuned" not in columns
    assert rows[1][columns.index("×numpy")] == "2.00"
    assert rows[1][columns.index("ceiling")] == "-"


def test_report_names_the_machine_first_calls_and_skips(
    make_entry: Factory, make_document: Factory
) -> None:
    doc = _training_document(make_entry, make_document)
    doc["nnback_skipped"] = [
        {"name": "test_train_epoch[cupy-float32-b128]", "runner": "cupy", "reason": "no GPU"},
        {"name": "test_dense_forward[cupy-float32-b32]", "runner": "cupy", "reason": "no GPU"},
    ]
    text = format_report(doc)
    assert "machine: Test CPU (avx2/fma), 2 cores usable" in text
    assert "first calls" in text
    # numba's first call was a full epoch taking 3 s against a steady 1 s: 2 s of compilation.
    assert "numba: 2 s over 1 benchmarks" in text
    assert "cupy: no GPU (2 benchmarks)" in text


def test_results_without_timings_are_left_out(make_entry: Factory, make_document: Factory) -> None:
    broken = make_entry("op", "numba", 1.0)
    broken["stats"] = {}
    doc = make_document(make_entry("op", "numpy", 1.0), broken)
    assert [e.runner for e in entries_from(doc)] == ["numpy"]
    assert "(no timed results)" in format_report(make_document())
