"""The short table ``bench/gpu_check.sh`` prints last: GPU throughput, ratios, ceiling, tests.

``python -m nnback.bench.gpu_report --bench PART.json ... --junit NAME=FILE.xml ...
--phase NAME=STATUS ... --out DIR`` merges the benchmark parts into one pytest-benchmark
document (``DIR/bench.json``; a ceiling measured in several parts keeps its best round,
since a ceiling is the best the machine did), then prints and saves (``DIR/summary.txt``):

- samples/s per runner and batch (steady-state epochs, the statistic chosen, median by
  default), and the ratios nnback captured / PyTorch CUDA graph and nnback eager / graph;
- each runner's share of the FP32 GEMM peak (samples/s x GEMM FLOPs per sample / peak);
- cold and warm start-up;
- per test phase, passed / failed / errors / skipped from its JUnit XML, and each phase's
  exit status (124: the phase ran out of its time).

Missing parts are said to be missing: the table is printed whatever happened before.
"""

from __future__ import annotations

import argparse
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from typing import Any

from .report import Entry, ceiling_rates, entries_from, format_time, load_results

__all__ = ["ceiling_share", "format_gpu_summary", "junit_counts", "main", "merge_documents"]

GPU_RUNNERS = ("cupy", "cupy-eager", "torch-cuda", "torch-cuda-fused", "torch-cuda-graph")
SHORT = {
    "cupy": "cupy",
    "cupy-eager": "eager",
    "torch-cuda": "t-cuda",
    "torch-cuda-fused": "t-fused",
    "torch-cuda-graph": "t-graph",
}


def merge_documents(documents: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One document of several runs' results; a repeated ceiling keeps its fastest round."""
    if not documents:
        return {"machine_info": {}, "commit_info": {}, "benchmarks": [], "nnback_skipped": []}
    merged = dict(documents[0])
    benchmarks: list[dict[str, Any]] = []
    ceilings: dict[str, int] = {}
    skipped: list[Any] = []
    for document in documents:
        skipped += document.get("nnback_skipped") or []
        for bench in document.get("benchmarks") or []:
            key = (bench.get("extra_info") or {}).get("ceiling_key")
            if key is None:
                benchmarks.append(bench)
                continue
            if key in ceilings:
                kept = benchmarks[ceilings[key]]
                if float(bench["stats"]["min"]) < float(kept["stats"]["min"]):
                    benchmarks[ceilings[key]] = bench
            else:
                ceilings[key] = len(benchmarks)
                benchmarks.append(bench)
    merged["benchmarks"] = benchmarks
    merged["nnback_skipped"] = skipped
    return merged


def ceiling_share(
    samples_per_s: float, flops_per_sample: float, ceiling_flops_per_s: float
) -> float:
    """The fraction of the GEMM ceiling a training rate uses."""
    return samples_per_s * flops_per_sample / ceiling_flops_per_s


def junit_counts(path: str) -> dict[str, int] | None:
    """``tests``, ``passed``, ``failed``, ``errors``, ``skipped`` of a JUnit XML file (or None)."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        counts["tests"] += int(suite.get("tests", 0))
        counts["failed"] += int(suite.get("failures", 0))
        counts["errors"] += int(suite.get("errors", 0))
        counts["skipped"] += int(suite.get("skipped", 0))
    counts["passed"] = counts["tests"] - counts["failed"] - counts["errors"] - counts["skipped"]
    return counts


def _rate(entry: Entry, stat: str) -> float:
    return entry.amount / entry.value(stat)


def _si(value: float) -> str:
    for factor, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _training_table(entries: list[Entry], stat: str) -> list[str]:
    training = [e for e in entries if e.family == "gpu_train_epoch"]
    if not training:
        return ["GPU training epochs: no results"]
    rates = ceiling_rates(entries)
    by_batch: dict[int, dict[str, Entry]] = {}
    for entry in training:
        by_batch.setdefault(int(entry.batch or 0), {})[entry.runner] = entry
    samples = int(training[0].amount)
    lines = [
        f"GPU training epoch, 784-256-128-10 float32, {samples:,} samples: samples/s ({stat})",
    ]
    header = ["batch", *(SHORT[r] for r in GPU_RUNNERS), "cupy/graph", "eager/graph"]
    header += [f"{SHORT[r]}%peak" for r in ("cupy", "cupy-eager", "torch-cuda-graph")]
    rows = [header]
    for batch in sorted(by_batch):
        found = by_batch[batch]
        row = [str(batch)]
        row += [_si(_rate(found[r], stat)) if r in found else "-" for r in GPU_RUNNERS]
        graph = found.get("torch-cuda-graph")
        for mine in ("cupy", "cupy-eager"):
            ok = graph is not None and mine in found
            row.append(f"{_rate(found[mine], stat) / _rate(graph, stat):.2f}" if ok else "-")
        for runner in ("cupy", "cupy-eager", "torch-cuda-graph"):
            entry = found.get(runner)
            key = entry.extra.get("ceiling") if entry else None
            if entry is None or key not in rates or not entry.amount:
                row.append("-")
                continue
            per_sample = float(entry.extra.get("flops") or 0.0) / entry.amount
            row.append(f"{100 * ceiling_share(_rate(entry, stat), per_sample, rates[key][1]):.1f}%")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return lines


def _ceiling_lines(entries: list[Entry]) -> list[str]:
    lines = []
    for entry in entries:
        if entry.family != "ceiling" or entry.runner != "gpu" or entry.unit != "flop":
            continue
        rate = entry.amount / float(entry.stats.get("min") or entry.value())
        device = entry.extra.get("device_name", "")
        lines.append(
            f"FP32 GEMM peak ({entry.work.removeprefix('ceiling: peak gemm ')}, best round, "
            f"TF32 {entry.extra.get('tf32', '?')}): {rate / 1e12:.1f} TFLOP/s"
            + (f" on {device}" if device else "")
        )
    return lines or ["FP32 GEMM peak: not measured"]


def _startup_lines(entries: list[Entry], stat: str) -> list[str]:
    found = {e.runner: e for e in entries if e.family == "gpu_start"}
    if not found:
        return ["start-up: not measured"]
    parts = []
    for runner in ("cupy-cold", "cupy-warm"):
        entry = found.get(runner)
        if entry is not None:
            first = float(entry.extra.get("first_epoch_s") or 0.0)
            parts.append(
                f"{runner.split('-')[1]} {format_time(entry.value(stat))} "
                f"(first epoch {first:.2f} s)"
            )
    return ["start-up, fresh process to end of first epoch (batch 128): " + ", ".join(parts)]


def _test_lines(junit: dict[str, str], phases: dict[str, str]) -> list[str]:
    lines = []
    for name, status in phases.items():
        note = {"0": "ok", "124": "TIMED OUT", "skipped": "skipped"}.get(status, f"exit {status}")
        counts = junit_counts(junit[name]) if name in junit else None
        if counts is not None:
            note += (
                f": {counts['passed']} passed, {counts['failed']} failed, "
                f"{counts['errors']} errors, {counts['skipped']} skipped"
            )
        elif name in junit:
            note += ": no test results"
        lines.append(f"  {name}: {note}")
    return ["phases:", *lines] if lines else []


def format_gpu_summary(
    document: dict[str, Any],
    junit: dict[str, str] | None = None,
    phases: dict[str, str] | None = None,
    stat: str = "median",
) -> str:
    """The summary table (see the module doc)."""
    entries = entries_from(document)
    lines = _training_table(entries, stat)
    lines += _ceiling_lines(entries)
    lines += _startup_lines(entries, stat)
    failed = [s for s in document.get("nnback_skipped") or [] if "failed" in str(s.get("reason"))]
    skipped = [s for s in document.get("nnback_skipped") or [] if s not in failed]
    if skipped:
        reasons = sorted({f"{s.get('runner')}: {s.get('reason')}" for s in skipped})
        lines += ["skipped:", *(f"  {r}" for r in reasons)]
    if failed:
        lines += ["FAILED:", *(f"  {s.get('name')}: {s.get('reason')}" for s in failed)]
    lines += _test_lines(junit or {}, phases or {})
    return "\n".join(lines)


def _pairs(values: Sequence[str], option: str) -> dict[str, str]:
    found = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep:
            raise SystemExit(f"{option} {value!r}: expected NAME=VALUE")
        found[name] = rest
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Merge the parts, print the summary, save ``bench.json`` and ``summary.txt``."""
    parser = argparse.ArgumentParser(prog="python -m nnback.bench.gpu_report")
    parser.add_argument("--bench", nargs="*", default=[], help="nnback bench --json files")
    parser.add_argument("--junit", action="append", default=[], help="NAME=junit.xml")
    parser.add_argument("--phase", action="append", default=[], help="NAME=exit status")
    parser.add_argument("--out", default=None, help="directory for bench.json, summary.txt")
    parser.add_argument("--stat", default="median")
    args = parser.parse_args(argv)
    documents, missing = [], []
    for path in args.bench:
        try:
            documents.append(load_results(path))
        except Exception:  # a part that timed out wrote nothing: say so, keep going
            missing.append(os.path.basename(path))
    document = merge_documents(documents)
    text = format_gpu_summary(
        document, _pairs(args.junit, "--junit"), _pairs(args.phase, "--phase"), args.stat
    )
    if missing:
        text += "\nbenchmark parts with no results: " + ", ".join(missing)
    print(text)
    if args.out:
        import json

        with open(os.path.join(args.out, "bench.json"), "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1, default=str)
        with open(os.path.join(args.out, "summary.txt"), "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
