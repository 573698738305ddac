"""Turn pytest-benchmark JSON into a table: times, throughput, speed-ups, fraction of ceiling.

One row per result; rows of the same work item (same work, dtype and batch size) sit
together, one per runner. Columns:

- ``median`` (or the statistic chosen, e.g. ``min``): the time of one call (an epoch, a
  batch, an optimizer step) over the timed rounds; every other column uses the same one;
- ``throughput``: the work per second (samples/s, µs per step, params/s, GFLOP/s, GB/s);
- ``×numpy``, ``×torch``, ``×tuned``, ``×graph``: speed-up over the NumPy reference
  backend, PyTorch as users run it, tuned PyTorch and PyTorch with the whole step in a CUDA
  graph on the same item (their time / this time: > 1 is faster);
- ``ceiling``: the fraction of the machine's GEMM rate at the same shapes (``gemm``) or of
  its copy bandwidth (``bw``), both measured in the same run;
- ``notes``: test accuracy, late/early epoch throughput, peak memory, samples per epoch.

Works on the JSON of ``pytest bench/ --benchmark-json`` and of ``nnback bench --json``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .catalog import FAMILY_ORDER
from .machine import describe_machine

__all__ = [
    "Entry",
    "ceiling_rates",
    "entries_from",
    "format_first_calls",
    "format_report",
    "format_table",
    "load_results",
]

RUNNER_ORDER = (
    "numpy",
    "numba",
    "cupy",
    "cupy-eager",
    "cupy-cold",
    "cupy-warm",
    "torch",
    "torch-tuned",
    "torch-cuda",
    "torch-cuda-fused",
    "torch-cuda-graph",
    "sklearn",
    "cpu",
    "gpu",
)
REFERENCE, TORCH, TORCH_TUNED = "numpy", "torch", "torch-tuned"
TORCH_CUDA_GRAPH = "torch-cuda-graph"


@dataclass
class Entry:
    """One benchmark result, with the facts the report needs pulled out of its JSON."""

    work: str
    runner: str
    dtype: str
    batch: int | None
    family: str
    unit: str
    amount: float
    stats: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def item(self) -> tuple[str, str, int | None]:
        """The work item: rows with the same item are compared with each other."""
        return (self.work, self.dtype, self.batch)

    @property
    def key(self) -> tuple[str, str, str, int | None]:
        """What identifies this result across runs: work, runner, dtype, batch."""
        return (self.work, self.runner, self.dtype, self.batch)

    def value(self, stat: str = "median") -> float:
        """Seconds per call for ``stat`` (``median``, ``mean``, ``min``...)."""
        return float(self.stats[stat])

    def per_unit(self, stat: str = "median") -> float:
        """Seconds per unit of work (comparable across runs of different sample counts)."""
        return self.value(stat) / self.amount if self.amount else self.value(stat)


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a pytest-benchmark JSON file, with a clear error if it is not one."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        raise InputError(f"{path}: no such benchmark results file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not readable as JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), list):
        raise InputError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    return document


def _entry(bench: dict[str, Any]) -> Entry:
    extra = dict(bench.get("extra_info") or {})
    params = bench.get("params") or {}
    name = str(bench.get("name") or bench.get("fullname") or "?")
    runner = extra.get("runner") or params.get("runner") or bench.get("param") or name
    return Entry(
        work=str(extra.get("work") or bench.get("group") or name.split("[")[0]),
        runner=str(runner),
        dtype=str(extra.get("dtype", params.get("dtype", "")) or ""),
        batch=extra.get("batch", params.get("batch")),
        family=str(extra.get("family", "")),
        unit=str(extra.get("unit", "")),
        amount=float(extra.get("amount") or 0.0),
        stats=dict(bench.get("stats") or {}),
        extra=extra,
        name=name,
    )


def entries_from(document: dict[str, Any]) -> list[Entry]:
    """The results of a pytest-benchmark JSON document (those with timings)."""
    return [_entry(b) for b in document["benchmarks"] if (b.get("stats") or {}).get("median")]


def ceiling_rates(entries: list[Entry]) -> dict[str, tuple[str, float]]:
    """``ceiling key -> (measure, rate)``: FLOP/s of a GEMM ceiling, bytes/s of bandwidth.

    A ceiling is the best the machine did, so its rate is taken from the fastest round.
    """
    rates = {}
    for entry in entries:
        key = entry.extra.get("ceiling_key")
        measure = entry.extra.get("ceiling_measure", "flops")
        work = float(entry.extra.get(measure) or 0.0)
        fastest = float(entry.stats.get("min") or entry.value())
        if key and work and fastest:
            rates[str(key)] = (str(measure), work / fastest)
    return rates


def _number(value: float) -> str:
    """Three significant digits, without an exponent: ``0.0123``, ``45.6``, ``7,890``."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _si(value: float) -> str:
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return _number(value)


def format_time(seconds: float) -> str:
    """``1.23 s``, ``45.6 ms``, ``789 µs`` or ``12.3 ns``."""
    for factor, suffix in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if seconds >= factor:
            return f"{seconds / factor:.3g} {suffix}"
    return f"{seconds / 1e-9:.3g} ns"


def format_throughput(entry: Entry, stat: str = "median") -> str:
    """The work per second in the unit of the entry."""
    if "peak_bytes" in entry.extra:
        return f"peak {entry.extra['peak_bytes'] / 2**20:.1f} MiB"
    if not entry.amount:
        return "-"
    # A ceiling row shows the rate the fractions are read against: its fastest round.
    seconds = float(entry.stats.get("min") or 0.0) if entry.extra.get("ceiling_key") else 0.0
    rate = entry.amount / (seconds or entry.value(stat))
    if entry.unit == "step":
        return f"{_number(1e6 / rate)} µs/step"
    if entry.unit == "flop":
        return f"{_number(rate / 1e9)} GFLOP/s"
    if entry.unit == "byte":
        return f"{_number(rate / 1e9)} GB/s"
    return f"{_si(rate)} {entry.unit or 'unit'}s/s"


def _ceiling_fraction(entry: Entry, rates: dict[str, tuple[str, float]], stat: str) -> str:
    key = entry.extra.get("ceiling")
    if not key or key not in rates or "peak_bytes" in entry.extra:
        return "-"
    measure, rate = rates[key]
    work = float(entry.extra.get(measure) or 0.0)
    if not work:
        return "-"
    label = "gemm" if measure == "flops" else "bw"
    return f"{100 * work / entry.value(stat) / rate:.0f}% {label}"


def _notes(entry: Entry) -> str:
    extra, notes = entry.extra, []
    if extra.get("test_accuracy") is not None:
        notes.append(f"acc {100 * float(extra['test_accuracy']):.1f}%")
    if extra.get("last_over_first"):
        notes.append(f"last/first epoch {float(extra['last_over_first']):.2f}")
    if entry.family in ("train_epoch", "gpu_train_epoch", "memory_peak") and entry.unit == "sample":
        notes.append(f"{int(entry.amount):,} samples")
    if extra.get("first_epoch_s") is not None:
        notes.append(
            f"first epoch {float(extra['first_epoch_s']):.2f} s, backend load "
            f"{float(extra.get('backend_s') or 0.0):.2f} s, kernel cache {extra.get('cache')}"
        )
    if extra.get("nnback_capture"):
        notes.append(f"NNBACK_CAPTURE={extra['nnback_capture']}")
    if extra.get("tf32"):
        notes.append(f"tf32 {extra['tf32']}")
    return ", ".join(notes)


def _item_label(entry: Entry) -> str:
    batch = f"batch {entry.batch}" if entry.batch else ""
    return " ".join(part for part in (entry.work, entry.dtype, batch) if part)


def _ratio(reference: Entry | None, entry: Entry, stat: str) -> str:
    if reference is None or "peak_bytes" in entry.extra:
        return "-"
    return f"{reference.per_unit(stat) / entry.per_unit(stat):.2f}"


def _order(entries: list[Entry]) -> list[Entry]:
    families = {name: index for index, name in enumerate(FAMILY_ORDER)}
    runners = {name: index for index, name in enumerate(RUNNER_ORDER)}
    first_seen: dict[str, int] = {}
    for entry in entries:
        first_seen.setdefault(entry.work, len(first_seen))
    return sorted(
        entries,
        key=lambda e: (
            families.get(e.family, len(families)),
            first_seen[e.work],
            e.dtype,
            e.batch or 0,
            runners.get(e.runner, len(runners)),
            e.runner,
        ),
    )


def table_rows(entries: list[Entry], stat: str = "median") -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table (empty ×torch/×tuned columns left out).

    ``stat`` is the statistic of the rounds every column uses (``median``, ``min``...).
    """
    rates = ceiling_rates(entries)
    by_item: dict[tuple, dict[str, Entry]] = defaultdict(dict)
    for entry in entries:
        by_item[entry.item].setdefault(entry.runner, entry)
    runners = {e.runner for e in entries}
    columns = ["work", "dtype", "batch", "runner", stat, "throughput", "×numpy"]
    peer_columns = (("×torch", TORCH), ("×tuned", TORCH_TUNED), ("×graph", TORCH_CUDA_GRAPH))
    columns += [label for label, peer in peer_columns if peer in runners]
    columns += ["ceiling", "notes"]
    rows = []
    for entry in _order(entries):
        peers = by_item[entry.item]
        cells = {
            "work": entry.work,
            "dtype": entry.dtype or "-",
            "batch": str(entry.batch) if entry.batch else "-",
            "runner": entry.runner,
            stat: format_time(entry.value(stat)),
            "throughput": format_throughput(entry, stat),
            "×numpy": _ratio(peers.get(REFERENCE), entry, stat),
            "×torch": _ratio(peers.get(TORCH), entry, stat),
            "×tuned": _ratio(peers.get(TORCH_TUNED), entry, stat),
            "×graph": _ratio(peers.get(TORCH_CUDA_GRAPH), entry, stat),
            "ceiling": _ceiling_fraction(entry, rates, stat),
            "notes": _notes(entry),
        }
        rows.append([cells[column] for column in columns])
    return columns, rows


def format_table(entries: list[Entry], style: str = "text", stat: str = "median") -> str:
    """The table as aligned text (work named once per item) or as a Markdown table."""
    columns, rows = table_rows(entries, stat)
    if style == "markdown":
        lines = ["| " + " | ".join(columns) + " |"]
        lines.append(
            "|"
            + "|".join("---" if c in ("work", "runner", "notes") else "---:" for c in columns)
            + "|"
        )
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    shown, previous = [], None
    for row in rows:
        item = tuple(row[:3])
        shown.append(row if item != previous else ["", "", "", *row[3:]])
        previous = item
    widths = [max(len(str(r[i])) for r in [columns, *shown]) for i in range(len(columns))]
    left = {"work", "runner", "notes", "throughput"}

    def line(cells: list[str]) -> str:
        parts = [
            cell.ljust(width) if name in left else cell.rjust(width)
            for name, cell, width in zip(columns, cells, widths, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, shown)])


def format_first_calls(entries: list[Entry]) -> str:
    """Per runner, the first-call time beyond the steady state (compilation), excluded above."""
    totals: dict[str, list[tuple[float, Entry]]] = defaultdict(list)
    for entry in entries:
        first = entry.extra.get("first_call_s")
        if first is None or not entry.amount:
            continue
        steady = (
            entry.value() * float(entry.extra.get("first_call_amount", entry.amount)) / entry.amount
        )
        totals[entry.runner].append((max(0.0, float(first) - steady), entry))
    if not totals:
        return ""
    lines = ["first calls (compilation and warm-up, excluded from the times above):"]
    for runner in sorted(totals, key=lambda r: (RUNNER_ORDER + (r,)).index(r)):
        costs = totals[runner]
        worst_cost, worst = max(costs, key=lambda pair: pair[0])
        lines.append(
            f"  {runner}: {format_time(sum(c for c, _ in costs))} over {len(costs)} benchmarks"
            f" (largest: {_item_label(worst)}: {format_time(worst_cost)})"
        )
    return "\n".join(lines)


def format_skips(document: dict[str, Any]) -> str:
    """Skipped benchmarks grouped by reason (from ``nnback bench`` JSON or a run's results)."""
    reasons: dict[str, list[str]] = defaultdict(list)
    for skip in document.get("nnback_skipped") or []:
        runner = skip.get("runner") or "?"
        reasons[f"{runner}: {skip.get('reason')}"].append(str(skip.get("name")))
    if not reasons:
        return ""
    lines = ["skipped:"]
    lines += [f"  {reason} ({len(names)} benchmarks)" for reason, names in reasons.items()]
    return "\n".join(lines)


def format_report(
    document: dict[str, Any], style: str = "text", title: str = "", stat: str = "median"
) -> str:
    """The full report: a header naming the machine, the table, first calls and skips.

    ``stat``: the statistic of the timed rounds the table uses, ``median`` or ``min``
    (the best round: on a shared machine, other load only ever adds time) or ``mean``.
    """
    entries = entries_from(document)
    if entries and any(stat not in e.stats for e in entries):
        raise InputError(f"unknown statistic {stat!r}; expected median, min, mean or max")
    header = [
        title or "nnback bench",
        f"machine: {describe_machine(document.get('machine_info') or {})}",
    ]
    if document.get("datetime"):
        header.append(f"run: {document['datetime']}")
    header.append(
        "×numpy/×torch/×tuned/×graph: speed-up over that runner on the same item (>1 is faster); "
        "ceiling: share of the GEMM rate (gemm) or copy bandwidth (bw) measured in this run "
        "(ceiling rows show their best round)"
    )
    table = format_table(entries, style, stat) if entries else "(no timed results)"
    parts = ["\n".join(header), table]
    parts += [text for text in (format_first_calls(entries), format_skips(document)) if text]
    return "\n\n".join(parts)
