"""Helpers for the benchmark report tests: fabricated pytest-benchmark JSON documents.

No test here times anything against a threshold: documents are written by hand, or come
from a tiny workload run with a slowdown injected by construction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

MACHINE = {
    "cpu": {"brand_raw": "Test CPU", "count": 2, "flags": ["avx2", "fma"]},
    "blas": ["openblas 0.3 (2 threads, pthreads)"],
    "python_version": "3.11.0",
}


def bench_entry(
    work: str,
    runner: str,
    median: float,
    *,
    dtype: str = "float32",
    batch: int | None = 128,
    unit: str = "sample",
    amount: float = 128.0,
    family: str = "dense_forward",
    minimum: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One benchmark entry in pytest-benchmark's JSON layout, with nnback's extra_info."""
    info = {
        "family": family,
        "work": work,
        "runner": runner,
        "dtype": dtype,
        "batch": batch,
        "case": "",
        "unit": unit,
        "amount": amount,
        **extra,
    }
    low = median if minimum is None else minimum
    return {
        "group": work,
        "name": f"test_{family}[{runner}-{dtype}-b{batch}]",
        "fullname": f"bench/test_x.py::test_{family}[{runner}-{dtype}-b{batch}]",
        "params": {"runner": runner, "dtype": dtype, "batch": batch, "case": ""},
        "param": f"{runner}-{dtype}-b{batch}",
        "extra_info": info,
        "options": {},
        "stats": {
            "min": low,
            "max": median,
            "mean": median,
            "median": median,
            "stddev": 0.0,
            "rounds": 5,
            "iterations": 1,
        },
    }


def document(*entries: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A whole pytest-benchmark JSON document around ``entries``."""
    return {
        "machine_info": MACHINE,
        "commit_info": {},
        "benchmarks": list(entries),
        "datetime": "2026-01-01T00:00:00+00:00",
        "version": "5.0.0",
        **top,
    }


@pytest.fixture
def make_entry() -> Callable[..., dict[str, Any]]:
    """:func:`bench_entry`, as a fixture."""
    return bench_entry


@pytest.fixture
def make_document() -> Callable[..., dict[str, Any]]:
    """:func:`document`, as a fixture."""
    return document


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[[str, dict[str, Any]], str]:
    """Write a document to ``tmp_path/name`` and return the path."""

    def write(name: str, doc: dict[str, Any]) -> str:
        path = tmp_path / name
        path.write_text(json.dumps(doc), encoding="utf-8")
        return str(path)

    return write
