"""A/B of the numba backend's threading modes in ONE process, interleaved every few steps,
so a shared machine's changing load hits every mode alike (separate processes minutes
apart measured 3-10x swings). Trains issue 14's CNN with Sequential.fit::

    PYTHONPATH=. python bench/cnn_threading_ab.py --batch 32 128 --rounds 15

Modes: ``gemm-halves`` (default: conv GEMMs in batch halves on nnback's two threads, BLAS
single-threaded meanwhile), ``kernel-halves`` (only the kernels between GEMMs in halves;
BLAS's own threads for the GEMMs), ``serial`` (no helper thread).
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    import numpy

    import nnback as nb
    from nnback.kernels.cpu import runtime

    rng = numpy.random.default_rng(0)
    for n in args.batch:
        model = nb.Sequential(
            [
                nb.Reshape((1, 28, 28)),
                nb.Conv2D(1, 32, 3), nb.ReLU(), nb.MaxPool2D(2),
                nb.Conv2D(32, 64, 3), nb.ReLU(), nb.MaxPool2D(2),
                nb.Flatten(), nb.Dense(1600, 128), nb.ReLU(), nb.Dense(128, 10), nb.Softmax(),
            ],
            loss=nb.CategoricalCrossentropy(), optimizer=nb.Adam(1e-3), seed=0,
            dtype="float32", backend="numba",
        )
        be = model.backend
        x = rng.random((n * args.steps, 784), dtype=numpy.float32)
        y = rng.integers(0, 10, n * args.steps)
        default_macs = be.conv_gemm_halves_min_macs
        modes = {
            "gemm-halves": (True, default_macs),
            "kernel-halves": (True, 1 << 62),
            "serial": (False, 1 << 62),
        }
        rates: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        for k in range(args.rounds + 1):
            for mode, (halves, macs) in modes.items():
                runtime._halves_on = halves
                be.conv_gemm_halves_min_macs = macs
                t, c = time.perf_counter(), time.process_time()
                model.fit(x, y, epochs=1, batch_size=n, shuffle=False, verbose=0)
                t, c = time.perf_counter() - t, time.process_time() - c
                if k:  # round 0 warms up
                    rates[mode].append(n * args.steps / t)
                    cpu[mode].append(c / args.steps * 1e3)
        print(f"batch {n}: samples/s median (best)  CPU ms/step median")
        for mode in modes:
            print(
                f"  {mode:14s} {statistics.median(rates[mode]):7.0f} ({max(rates[mode]):.0f})"
                f"  {statistics.median(cpu[mode]):7.1f}"
            )


if __name__ == "__main__":
    main()
