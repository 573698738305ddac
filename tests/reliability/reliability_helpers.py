"""Shared pieces of the reliability tests: small data, small models, the fuzz settings.

Imported as ``reliability_helpers`` (pytest puts this folder on ``sys.path``; the name is
chosen not to clash with the helpers of other test folders).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy
import pytest

import nnback as nb

try:  # only the fuzz tests need hypothesis (a dev dependency); the others run without it
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - exercised only where hypothesis is missing
    settings = None

# ---------------------------------------------------------------------------------------
# Fuzzing: one settings profile for every property test of this folder
# ---------------------------------------------------------------------------------------
# The whole fuzz suite must finish in CI in ~2-3 minutes on 2 cores, so each property runs
# a fixed number of examples (scaled by NNBACK_FUZZ_SCALE, e.g. 10 for a long local run)
# with no per-example deadline: a first call may compile a Numba kernel, which takes
# seconds and says nothing about the code under test. database=None keeps the runs from
# writing a .hypothesis folder into the repository; print_blob prints what is needed to
# replay a failure.
FUZZ_SCALE = float(os.environ.get("NNBACK_FUZZ_SCALE", "1"))

if settings is not None:
    settings.register_profile(
        "nnback-fuzz",
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def fuzz_settings(max_examples: int) -> Any:
    """The folder's profile with ``max_examples`` scaled by ``NNBACK_FUZZ_SCALE``."""
    if settings is None:
        pytest.skip("hypothesis is not installed (pip install -e '.[dev]')")
    return settings(
        settings.get_profile("nnback-fuzz"),
        max_examples=max(1, int(max_examples * FUZZ_SCALE)),
    )


# Examples run per property, filled as they run and printed in the terminal summary by
# conftest.py (the issue asks for the number of cases the fuzzing tried).
FUZZ_COUNTS: Counter[str] = Counter()


def run_counted(name: str, prop: Any, *args: Any) -> int:
    """Run the hypothesis test ``prop`` and return how many examples it ran (asserted > 0)."""
    before = FUZZ_COUNTS[name]
    prop(*args)
    ran = FUZZ_COUNTS[name] - before
    assert ran > 0, f"{name}: hypothesis ran no examples"
    return ran


# ---------------------------------------------------------------------------------------
# Data and models
# ---------------------------------------------------------------------------------------
def blobs(
    n: int = 24, features: int = 3, classes: int = 3, seed: int = 0
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Unit-scale features (n, features) and balanced labels (n,), slightly separable."""
    rng = numpy.random.default_rng(seed)
    y = numpy.arange(n) % classes
    rng.shuffle(y)
    X = rng.normal(size=(n, features)) * 0.5
    X[:, 0] += y - (classes - 1) / 2
    return X, y


def mlp(
    features: int = 3,
    hidden: int = 8,
    classes: int = 3,
    *,
    optimizer: Any = None,
    seed: int = 0,
    dtype: str = "float32",
    backend: Any = None,
    dropout: float = 0.0,
) -> nb.Sequential:
    """Dense-ReLU-(Dropout)-Dense-Softmax with categorical cross-entropy."""
    layers: list[nb.Layer] = [nb.Dense(features, hidden, weight_initializer="he"), nb.ReLU()]
    if dropout:
        layers.append(nb.Dropout(dropout))
    layers += [nb.Dense(hidden, classes, weight_initializer="xavier"), nb.Softmax()]
    return nb.Sequential(
        layers,
        loss=nb.CategoricalCrossentropy(),
        optimizer=optimizer if optimizer is not None else nb.Adam(learning_rate=0.01),
        seed=seed,
        dtype=dtype,
        backend=backend,
    )


def weights_equal(got: list[numpy.ndarray], want: list[numpy.ndarray]) -> bool:
    """Bit-for-bit equality of two weight lists (NaN never equals, on purpose)."""
    return len(got) == len(want) and all(
        a.shape == b.shape and a.dtype == b.dtype and numpy.array_equal(a, b)
        for a, b in zip(got, want, strict=True)
    )


def all_finite(weights: list[numpy.ndarray]) -> bool:
    return all(bool(numpy.isfinite(w).all()) for w in weights)
