"""Compare two benchmark runs and list the regressions beyond a threshold.

Results are matched by work item, runner, dtype and batch size (from ``extra_info``, so a
quick ``nnback bench`` run and a ``pytest bench/`` run can be compared), or by full test
name for JSON that lacks them. Times are compared per unit of work, so runs with different
samples per epoch still compare; peak-memory results compare their peak bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .report import Entry, entries_from, format_time

__all__ = ["Change", "Comparison", "compare", "format_comparison"]

STATS = ("median", "mean", "min", "max")
_LISTED = 8


@dataclass(frozen=True)
class Change:
    """One result present in both runs: its old and new cost (seconds per unit, or bytes)."""

    label: str
    old: float
    new: float
    memory: bool = False

    @property
    def change(self) -> float:
        """Relative change of the cost: +0.25 is 25 % slower (or larger)."""
        return self.new / self.old - 1.0 if self.old else float("inf")

    def describe(self, old_total: float, new_total: float) -> str:
        if self.memory:
            before, after = f"{old_total / 2**20:.1f} MiB", f"{new_total / 2**20:.1f} MiB"
        else:
            before, after = format_time(old_total), format_time(new_total)
        return f"{self.label}: {before} -> {after} ({100 * self.change:+.1f}%)"


@dataclass
class Comparison:
    """The outcome of :func:`compare`."""

    threshold: float
    stat: str
    regressions: list[tuple[Change, str]] = field(default_factory=list)
    improvements: list[tuple[Change, str]] = field(default_factory=list)
    unchanged: int = 0
    only_old: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether any result regressed beyond the threshold."""
        return bool(self.regressions)


def _label(entry: Entry) -> str:
    parts = [entry.work, entry.runner, entry.dtype, f"batch {entry.batch}" if entry.batch else ""]
    return " | ".join(part for part in parts if part)


def _index(entries: list[Entry]) -> dict[Any, Entry]:
    index: dict[Any, Entry] = {}
    for entry in entries:
        key = entry.key if entry.extra.get("work") else ("name", entry.name)
        index.setdefault(key, entry)
    return index


def _cost(entry: Entry, stat: str) -> tuple[float, float, bool]:
    """(comparable cost, displayed total, is memory) of one entry."""
    if "peak_bytes" in entry.extra:
        peak = float(entry.extra["peak_bytes"])
        return peak, peak, True
    return entry.per_unit(stat), entry.value(stat), False


def compare(
    old: dict[str, Any], new: dict[str, Any], threshold: float = 0.1, stat: str = "median"
) -> Comparison:
    """Match the results of two pytest-benchmark JSON documents and classify each change.

    Parameters
    ----------
    old, new : dict
        Loaded JSON documents (:func:`nnback.bench.report.load_results`).
    threshold : float
        Relative slowdown that counts as a regression: 0.1 flags results 10 % slower.
    stat : str
        Which statistic to compare: ``median`` (default), ``mean``, ``min`` or ``max``.
    """
    if threshold < 0:
        raise InputError(f"--threshold: expected a fraction >= 0 such as 0.1, got {threshold}")
    if stat not in STATS:
        raise InputError(f"--stat: expected one of {', '.join(STATS)}, got {stat!r}")
    before, after = _index(entries_from(old)), _index(entries_from(new))
    result = Comparison(threshold=threshold, stat=stat)
    for key, new_entry in after.items():
        old_entry = before.get(key)
        if old_entry is None:
            result.only_new.append(_label(new_entry))
            continue
        old_cost, old_total, memory = _cost(old_entry, stat)
        new_cost, new_total, _ = _cost(new_entry, stat)
        change = Change(_label(new_entry), old_cost, new_cost, memory)
        text = change.describe(old_total, new_total)
        if change.change > threshold:
            result.regressions.append((change, text))
        elif change.change < -threshold:
            result.improvements.append((change, text))
        else:
            result.unchanged += 1
    result.only_old = [_label(e) for key, e in before.items() if key not in after]
    result.regressions.sort(key=lambda pair: -pair[0].change)
    result.improvements.sort(key=lambda pair: pair[0].change)
    return result


def format_comparison(result: Comparison, old_name: str = "OLD", new_name: str = "NEW") -> str:
    """A readable summary: regressions first, then improvements, then what did not match."""
    pct = f"{100 * result.threshold:g}%"
    lines = [f"comparing {new_name} against {old_name} ({result.stat}, threshold {pct})"]
    if result.regressions:
        lines.append(f"REGRESSIONS ({len(result.regressions)}, slower by more than {pct}):")
        lines += [f"  {text}" for _, text in result.regressions]
    else:
        lines.append(f"no regressions beyond {pct}")
    if result.improvements:
        lines.append(f"improvements ({len(result.improvements)}, faster by more than {pct}):")
        lines += [f"  {text}" for _, text in result.improvements]
    lines.append(f"within {pct}: {result.unchanged}")
    for name, labels in ((old_name, result.only_old), (new_name, result.only_new)):
        if labels:
            shown = "; ".join(labels[:_LISTED]) + ("; ..." if len(labels) > _LISTED else "")
            lines.append(f"only in {name} ({len(labels)}): {shown}")
    return "\n".join(lines)
