"""``nnback bench``: run the quick benchmark subset and print the table, or compare two runs.

Registered into :data:`nnback.cli.EXTRA_COMMANDS` on import (``nnback.cli`` imports this
module when it exists); ``python -m nnback.bench`` runs the same command on its own.

Usage::

    nnback bench                                  # quick subset, table on stdout
    nnback bench --json run.json --plot run.png   # also save JSON and a bar chart
    nnback bench --full --filter "train_epoch numba"   # any part of the full suite
    nnback bench --gpu --rounds 5                 # GPU items beside PyTorch CUDA
    nnback bench --report run.json                # the table of an earlier run (or pytest's)
    nnback bench --compare old.json new.json --threshold 0.1   # exit 1 on regressions

Exit status: 0; 1 when ``--compare`` finds a regression or a benchmark failed; 2 for
errors a user can fix (a missing file, a bad option).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .errors import NNBackError

__all__ = ["add_arguments", "main", "run"]

HELP = "benchmark backends and peers (quick subset), print a table, compare runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser``."""
    what = parser.add_argument_group("what to run")
    what.add_argument(
        "--backends",
        default=None,
        help="comma-separated nnback backends (default: every one that loads, or "
        "$NNBACK_TEST_BACKENDS)",
    )
    what.add_argument("--no-peers", action="store_true", help="leave out PyTorch and scikit-learn")
    what.add_argument(
        "--full", action="store_true", help="the whole suite instead of the quick subset (long)"
    )
    what.add_argument(
        "--gpu",
        action="store_true",
        help="the GPU items only: nnback cupy (captured and eager) beside PyTorch CUDA "
        "(eager, fused Adam, CUDA graph) at batch 128, 1024 and 8192, cold and warm "
        "start-up, and the GPU's GEMM peak (60,000 samples unless --samples)",
    )
    what.add_argument(
        "--filter", default="", help="only benchmarks whose name contains every word given"
    )
    what.add_argument(
        "--samples",
        type=int,
        default=None,
        help="samples per training epoch (quick: 10,000; full: 60,000; or $NNBACK_BENCH_SAMPLES)",
    )
    what.add_argument(
        "--epochs", type=int, default=None, help="epochs of the real-data run (default 10)"
    )
    what.add_argument(
        "--max-time", type=float, default=0.3, help="seconds of timing per short benchmark"
    )
    what.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="timed epochs per training benchmark (one only when an epoch takes over 4 s)",
    )
    what.add_argument(
        "--same-process",
        action="store_true",
        help="run training epochs in this process instead of one worker process each "
        "(runners then share threads and environment and can slow each other down)",
    )
    what.add_argument("--list", action="store_true", help="list the benchmarks, run nothing")
    output = parser.add_argument_group("output")
    output.add_argument("--json", metavar="PATH", help="save the results as pytest-benchmark JSON")
    output.add_argument("--plot", metavar="PATH", help="draw a bar chart (needs matplotlib)")
    output.add_argument("--format", choices=["text", "markdown"], default="text")
    output.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    other = parser.add_argument_group("reports of earlier runs")
    other.add_argument("--report", metavar="JSON", help="print the table of a saved run")
    other.add_argument(
        "--compare",
        nargs=2,
        metavar=("OLD", "NEW"),
        help="list results of NEW slower than OLD beyond --threshold; exit 1 if any",
    )
    other.add_argument(
        "--threshold", type=float, default=0.1, help="regression threshold (0.1 = 10%%)"
    )
    other.add_argument(
        "--stat",
        default="median",
        help="statistic of the timed rounds for the table and --compare: median, min (the "
        "best round; other load on a shared machine only adds time) or mean",
    )


def _settings(args: argparse.Namespace) -> Any:
    from .bench.catalog import QUICK_SAMPLES, Settings
    from .bench.data import DEFAULT_SAMPLES

    names = None if args.backends is None else [n for n in args.backends.split(",") if n.strip()]
    for option in ("samples", "epochs", "rounds"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise NNBackError(f"--{option}: expected a positive number, got {value}")
    return Settings.from_environment(
        samples=args.samples,
        real_epochs=args.epochs,
        backends=names,
        peers=not args.no_peers,
        default_samples=DEFAULT_SAMPLES if args.full or args.gpu else QUICK_SAMPLES,
        isolate=not args.same_process,
    )


def _run_order(workload: Any) -> int:
    from .bench.workload import PEERS

    if workload.provides is not None:
        return 0  # the ceiling first, before any peer changes the threads' state
    return 2 if workload.runner in PEERS else 1


def _chosen(args: argparse.Namespace, settings: Any) -> list[Any]:
    from .bench import catalog

    if args.gpu:
        workloads = catalog.gpu_workloads(settings)
    elif args.full:
        workloads = catalog.all_workloads(settings)
    else:
        workloads = catalog.quick_workloads(settings)
    if args.filter:
        workloads = catalog.with_ceilings(catalog.select(workloads, args.filter), settings)
        if not any(w.provides is None for w in workloads):
            raise NNBackError(f"--filter {args.filter!r} matches no benchmark (try --list)")
    return sorted(workloads, key=_run_order)


def _write_json(document: dict[str, Any], path: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, default=str)
            handle.write("\n")
    except OSError as exc:
        raise NNBackError(f"--json: cannot write {path}: {exc}") from None


def _plot(document: dict[str, Any], path: str) -> None:
    from .bench.plot import plot_speedups

    print(f"wrote {plot_speedups(document, path)}", file=sys.stderr)


def _compare(args: argparse.Namespace) -> int:
    from .bench.compare import compare, format_comparison
    from .bench.report import load_results

    old_path, new_path = args.compare
    result = compare(load_results(old_path), load_results(new_path), args.threshold, args.stat)
    print(format_comparison(result, old_path, new_path))
    return 1 if result.failed else 0


def run(args: argparse.Namespace) -> int:
    """Carry out ``nnback bench`` with parsed arguments; return the exit status."""
    from .bench.report import format_report, load_results

    if args.compare:
        return _compare(args)
    if args.report:
        document = load_results(args.report)
        title = f"nnback bench report of {args.report}"
        print(format_report(document, args.format, title=title, stat=args.stat))
        if args.plot:
            _plot(document, args.plot)
        return 0
    from .bench.machine import commit_info, machine_info
    from .bench.runner import TimingOptions, results_json, run_workloads

    settings = _settings(args)
    workloads = _chosen(args, settings)
    if args.list:
        for work in workloads:
            print(
                f"{work.group} | {work.param_id}" + (f"  (skip: {work.skip})" if work.skip else "")
            )
        return 0
    options = TimingOptions(max_time=args.max_time, long_rounds=args.rounds)
    results = run_workloads(workloads, options, progress=None if args.quiet else sys.stderr)
    document = results_json(results, machine_info(), commit_info())
    document["nnback_settings"] = {
        "subset": "gpu" if args.gpu else "full" if args.full else "quick",
        "filter": args.filter,
        "samples_per_epoch": settings.samples,
        "real_data_epochs": settings.real_epochs,
        "max_time_s": args.max_time,
        "epoch_rounds": args.rounds,
    }
    scope = "GPU items" if args.gpu else "full suite" if args.full else "quick subset"
    title = f"nnback bench ({scope}, {settings.samples:,} samples per training epoch)"
    print(format_report(document, args.format, title=title, stat=args.stat))
    if args.json:
        _write_json(document, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        _plot(document, args.plot)
    failures = [r for r in results if r.error]
    for failed in failures:
        print(f"FAILED: {failed.workload.name}: {failed.error}", file=sys.stderr)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m nnback.bench`` (the same options as ``nnback bench``)."""
    parser = argparse.ArgumentParser(prog="python -m nnback.bench", description=HELP)
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m nnback.bench``."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (NNBackError, FileNotFoundError) as exc:
        print(f"nnback bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnback bench: interrupted", file=sys.stderr)
        return 130


def _register() -> None:
    from . import cli

    cli.EXTRA_COMMANDS["bench"] = (HELP, add_arguments, run)


_register()
