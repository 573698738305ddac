"""Determinism: the same seed, data and backend give bit-identical weights.

With the BLAS thread count fixed (threadpoolctl), two runs in one process and a run in a
fresh process agree bit for bit. Across thread counts and across backends they need not
(docs/reliability.md says which operations differ, and why); across backends they agree
within the parity tolerance instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy
import pytest
from reliability_helpers import blobs, weights_equal

import nnback as nb

threadpoolctl = pytest.importorskip(
    "threadpoolctl", reason="threadpoolctl is not installed: pip install -e '.[dev]'"
)

X, Y = blobs(n=96, features=6, classes=4)


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """Fix the BLAS thread count (None: leave the machine's default)."""
    if count is None:
        yield
        return
    with threadpoolctl.threadpool_limits(limits=count, user_api="blas"):
        yield


def _train(backend: Any, seed: int = 3) -> list[numpy.ndarray]:
    model = nb.Sequential(
        [
            nb.Dense(6, 32, weight_initializer="he", weight_regularizer_l2=1e-4),
            nb.ReLU(),
            nb.Dropout(0.2),
            nb.Dense(32, 16, weight_initializer="he"),
            nb.Tanh(),
            nb.Dense(16, 4),
            nb.Softmax(),
        ],
        loss="categorical_crossentropy",
        optimizer=nb.Adam(learning_rate=0.01),
        seed=seed,
        backend=backend,
    )
    model.fit(X, Y, epochs=3, batch_size=16, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_same_bits(backend: Any, threads: int) -> None:
    with _threads(threads):
        first, second = _train(backend), _train(backend)
    assert weights_equal(first, second)
    with _threads(threads):
        other_seed = _train(backend, seed=4)
    assert not weights_equal(first, other_seed)  # the seed does matter


_CHILD = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import threadpoolctl
    import test_determinism as t
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        weights = t._train(sys.argv[2])
    print(json.dumps([w.tobytes().hex() for w in weights]))
    """
)


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_a_fresh_process_gives_the_same_bits(name: str) -> None:
    if name not in nb.available_backends():
        pytest.skip(f"{name} backend not available")
    here = os.path.dirname(os.path.abspath(__file__))
    # Another hash seed too: nothing may depend on set or dict-of-str ordering.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, here, name],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    ).stdout
    with _threads(1):
        mine = [w.tobytes().hex() for w in _train(name)]
    assert json.loads(out.strip().splitlines()[-1]) == mine


def test_backends_agree_within_tolerance_not_bits() -> None:
    """Across backends the weights differ in the last bits only (see the docs)."""
    with _threads(1):
        runs = {name: _train(name) for name in nb.available_backends()}
    reference = runs.pop("numpy")
    for name, weights in runs.items():
        for got, want in zip(weights, reference, strict=True):
            # Three epochs of Adam: far fewer ulps than the weights' scale.
            numpy.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
