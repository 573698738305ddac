"""A bar chart of benchmark results: each runner's speed-up over the NumPy reference.

One cluster of horizontal bars per work item (work, dtype, batch) that the NumPy reference
ran, one bar per runner, on a log scale with the 1x line marked. matplotlib is an optional
dependency (``pip install 'nnback[plot]'``).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from typing import Any

from ..errors import NNBackError
from .report import REFERENCE, RUNNER_ORDER, Entry, entries_from

__all__ = ["plot_speedups", "speedups"]


def speedups(entries: list[Entry]) -> dict[str, dict[str, float]]:
    """``item label -> runner -> speed-up over numpy`` for items the reference ran."""
    items: dict[tuple, dict[str, Entry]] = defaultdict(dict)
    for entry in entries:
        items[entry.item].setdefault(entry.runner, entry)
    found: dict[str, dict[str, float]] = {}
    for (work, dtype, batch), runners in items.items():
        reference = runners.get(REFERENCE)
        if reference is None or "peak_bytes" in reference.extra:
            continue
        label = " ".join(part for part in (work, dtype, f"b{batch}" if batch else "") if part)
        found[label] = {
            runner: reference.per_unit() / entry.per_unit() for runner, entry in runners.items()
        }
    return found


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise NNBackError(
            "--plot needs matplotlib, which is not installed: pip install 'nnback[plot]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def plot_speedups(document: dict[str, Any], path: str | os.PathLike[str], title: str = "") -> str:
    """Draw the chart of a pytest-benchmark JSON document into ``path`` (PNG, SVG, PDF)."""
    data = speedups(entries_from(document))
    if not data:
        raise NNBackError("nothing to plot: no result of the numpy reference to compare with")
    pyplot = _pyplot()
    runners = sorted(
        {r for values in data.values() for r in values},
        key=lambda r: (RUNNER_ORDER.index(r) if r in RUNNER_ORDER else len(RUNNER_ORDER), r),
    )
    labels = list(data)
    height = 0.8 / len(runners)
    rows = len(labels) * max(1.0, len(runners) / 2)
    figure, axes = pyplot.subplots(figsize=(10, max(3.0, 1.2 + 0.3 * rows)))
    for index, runner in enumerate(runners):
        positions = [row + index * height for row in range(len(labels))]
        values = [data[label].get(runner, math.nan) for label in labels]
        axes.barh(positions, values, height=height, label=runner)
    axes.set_yticks([row + 0.4 - height / 2 for row in range(len(labels))])
    axes.set_yticklabels(labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xlabel("speed-up over the NumPy reference backend (log scale, > 1 is faster)")
    axes.set_title(title or "nnback benchmarks")
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return str(path)
