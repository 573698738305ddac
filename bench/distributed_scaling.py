"""Samples/s of the 784-256-128-10 MLP (float32, numpy backend, Adam) data-parallel over MPI.

    OMP_NUM_THREADS=2 python bench/distributed_scaling.py           # 1 rank, 2 BLAS threads
    OMP_NUM_THREADS=1 mpiexec -n 2 python bench/distributed_scaling.py   # 2 ranks, 1 each

Prints, on rank 0, the median samples/s over the timed epochs at each global batch size, the
step time and the time per step spent in the gradient Allreduce (0.94 MB).
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy

import nnback as nb
from nnback import distributed
from nnback.cli import build_classifier


def main() -> None:
    group = nb.Distributed()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
    rng = numpy.random.default_rng(0)
    X = rng.random((n, 784), dtype=numpy.float32)
    y = rng.integers(0, 10, n)
    spent = []
    original = distributed.Distributed.allreduce_gradient

    def timed(self, backend, flat):
        start = time.perf_counter()
        original(self, backend, flat)
        spent.append(time.perf_counter() - start)

    distributed.Distributed.allreduce_gradient = timed
    for batch in (128, 1024):
        model = build_classifier(784, 10, [256, 128], "relu", "adam", 1e-3, 0)
        model.fit(X, y, epochs=1, batch_size=batch, verbose=0, distributed=group)  # warm-up
        rates, allreduce, steps = [], [], -(-n // batch)
        for _ in range(3):
            spent.clear()
            history = model.fit(X, y, epochs=1, batch_size=batch, verbose=0, distributed=group)
            rates.append(history["samples_per_second"][0])
            allreduce.append(sum(spent) / steps)
        rate = statistics.median(rates)
        if group.is_root:
            print(
                f"ranks {group.size} batch {batch}: {rate:,.0f} samples/s, step "
                f"{batch / rate * 1e3:.2f} ms, allreduce {statistics.median(allreduce) * 1e3:.3f}"
                f" ms/step ({n} samples, runs {', '.join(f'{r:,.0f}' for r in rates)})",
                flush=True,
            )


if __name__ == "__main__":
    main()
