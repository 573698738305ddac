"""Shared by the reproduction scripts: command line, data loading and the result line.

Every script runs on the backend that ``NNBACK_BACKEND`` (or ``--backend``) selects, takes
``--quick`` for a smoke run of a few seconds on a small subset, and ends by printing what
its text reported next to what nnback reached.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np

import nnback
from nnback.datasets import (
    CLASS_NAMES,
    DatasetNotFoundError,
    DownloadError,
    load_fashion_mnist,
    load_mnist,
    load_sample,
)


def summary(doc: str) -> str:
    """The first paragraph of a script's docstring, on one line: its ``--help`` text."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def parser(description: str, data: bool = True) -> argparse.ArgumentParser:
    """The options every script takes; ``data=False`` for scripts that make their own data
    (no ``--data-dir`` or ``--download``, which would do nothing there)."""
    p = argparse.ArgumentParser(description=summary(description))
    p.add_argument("--quick", action="store_true", help="a smoke run on a small subset")
    p.add_argument(
        "--backend",
        default=None,
        help="numpy, numba, cupy or auto (default: $NNBACK_BACKEND, else numpy)",
    )
    if data:
        p.add_argument("--data-dir", default=None, help="directory with the MNIST IDX files")
        p.add_argument("--download", action="store_true", help="download MNIST if it is missing")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return p


def class_names(dataset: str) -> tuple[str, ...]:
    """Names for the class indices of what :func:`load_digits` returned."""
    if "Fashion" in dataset:
        return CLASS_NAMES
    return tuple(f"digit {digit}" for digit in range(10))


def setup(args: argparse.Namespace) -> str:
    """Select the backend and print which one runs; returns its name."""
    if args.backend:
        nnback.set_backend(args.backend)
    name = nnback.get_backend().name
    print(f"backend: {name}" + (" (quick run)" if args.quick else ""))
    return name


def load_digits(args: argparse.Namespace) -> tuple[tuple[np.ndarray, ...], str]:
    """``(X_train, y_train, X_test, y_test)`` of MNIST, else Fashion-MNIST, and its name.

    ``--quick`` uses the Fashion-MNIST sample shipped with nnback. Without MNIST files the
    scripts fall back to Fashion-MNIST and say so: its figures are not comparable with
    the texts' MNIST figures (Fashion-MNIST is the harder set).
    """
    if args.quick:
        (X, y), (X_test, y_test) = load_sample()
        print("data: the Fashion-MNIST sample shipped with nnback (quick run)")
        return (X, y, X_test, y_test), "Fashion-MNIST sample"
    try:
        (X, y), (X_test, y_test) = load_mnist(args.data_dir, download=args.download)
        print("data: MNIST")
        return (X, y, X_test, y_test), "MNIST"
    except (DatasetNotFoundError, DownloadError) as exc:
        reason = type(exc).__name__
        print(
            f"MNIST is not available here ({reason}; --data-dir DIR or --download to use "
            "it); using Fashion-MNIST "
            "instead, so the figures below are NOT comparable with the text's MNIST ones",
            file=sys.stderr,
        )
    (X, y), (X_test, y_test) = load_fashion_mnist()
    print("data: Fashion-MNIST (MNIST not found)")
    return (X, y, X_test, y_test), "Fashion-MNIST"


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.started


def report(rows: list[tuple[str, str, str]], dataset: str, backend: str) -> None:
    """Print ``what | the text reported | nnback`` rows as a small table."""
    width = max(len(r[0]) for r in rows)
    print(f"\nresult ({dataset}, {backend} backend):")
    print(f"  {'':<{width}}  {'text reported':<24} nnback")
    for what, text, ours in rows:
        print(f"  {what:<{width}}  {text:<24} {ours}")
    sys.stdout.flush()


def plot_dir(path: str | None) -> str | None:
    """Create the plot directory when one was asked for."""
    if path:
        os.makedirs(path, exist_ok=True)
    return path
