"""Training holds a bounded working set: one epoch's peak memory, measured with tracemalloc.

NumPy reports its allocations to tracemalloc, so for the host backends the traced peak of
``fit`` is the memory it allocates on top of what the caller already holds. The bound is
``copies * data + 12 * parameters``, where

* ``data`` is the training set as the model trains on it (n x 784 float32, int labels);
* ``copies`` is 0 when X is already C-contiguous float32 (fit uses it in place; 0.25 is
  allowed for the O(n) index arrays: the permutation and int64 labels, 16 bytes per sample
  against 3136 of features) and 1 otherwise (one converted copy, made once per fit);
* ``12 * parameters`` covers what is proportional to the model, measured at ~8x: the
  start-of-epoch snapshot of parameters and Adam's two slots (3x) that lets a failed epoch
  be undone, the reference Adam step's temporaries (~4x of the parameters in flight), the
  finiteness check's products (1x of the largest parameter); the minibatch activations
  (128 x 394 floats) are small next to them.

Measured on the 2-core CI machine (numpy backend): 8192 samples, float32 input, peak 7.4
MB for 25.7 MB of data and 0.94 MB of parameters; float64 input 33 MB (the float32 copy
plus the same 7.4 MB).
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy
import pytest

import nnback as nb

N_SAMPLES = 8192


def epoch_peak_memory(
    n_samples: int,
    *,
    input_dtype: str = "float32",
    backend: str = "numpy",
    batch_size: int = 128,
) -> dict[str, float]:
    """Peak bytes ``fit`` allocates for one epoch of 784-256-128-10 (Adam) on ``n_samples``
    MNIST-shaped samples, next to the data and parameter sizes.

    A short warm-up fit first builds the workspaces, the optimizer state and any compiled
    kernels, so the peak is that of a steady epoch.
    """
    rng = numpy.random.default_rng(0)
    X = (rng.random((n_samples, 784)) * 255).astype(input_dtype)
    y = rng.integers(0, 10, n_samples)
    model = nb.Sequential(
        [
            nb.Dense(784, 256, weight_initializer="he"),
            nb.ReLU(),
            nb.Dense(256, 128, weight_initializer="he"),
            nb.ReLU(),
            nb.Dense(128, 10),
            nb.Softmax(),
        ],
        loss="categorical_crossentropy",
        optimizer=nb.Adam(learning_rate=1e-3),
        seed=0,
        backend=backend,
    )
    model.fit(X[: batch_size * 2], y[: batch_size * 2], batch_size=batch_size, verbose=0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        model.fit(X, y, epochs=1, batch_size=batch_size, verbose=0)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    data = n_samples * 784 * 4 + n_samples * 8
    parameters = sum(w.nbytes for w in model.get_weights())
    return {
        "data_bytes": data,
        "parameter_bytes": parameters,
        "peak_bytes": peak - before,
        "retained_bytes": after - before,
        "factor": (peak - before) / (data + parameters),
    }


@pytest.mark.parametrize(
    ("input_dtype", "copies"), [("float32", 0.25), ("float64", 1.0), ("uint8", 1.0)]
)
def test_one_epoch_stays_within_the_bound(input_dtype: str, copies: float) -> None:
    backend = "numpy"
    got = epoch_peak_memory(N_SAMPLES, input_dtype=input_dtype, backend=backend)
    bound = copies * got["data_bytes"] + 12 * got["parameter_bytes"]
    print(f"{input_dtype}: {got}")
    assert got["peak_bytes"] <= bound, got
    # Nothing of that size stays behind once fit returns (the history is a few floats).
    assert got["retained_bytes"] <= 2 * got["parameter_bytes"], got


def test_the_numba_backend_is_bounded_too() -> None:
    if "numba" not in nb.available_backends():
        pytest.skip("numba backend not available")
    got: Any = epoch_peak_memory(N_SAMPLES // 2, backend="numba")
    assert got["peak_bytes"] <= 0.25 * got["data_bytes"] + 12 * got["parameter_bytes"], got
