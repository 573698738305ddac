"""CPU time per op of issue 14's CNN step on the numba backend (process_time, all threads).

Wall-clock numbers are unreliable on a shared 2-core machine; CPU time per op is what the
serial kernels cost whatever the load. Run::

    PYTHONPATH=. python bench/cnn_op_cpu.py --batch 128 [--reps 30] [--blas-threads 1]

Each op is timed on its own over ``reps`` calls (min over 3 repeats of the mean).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, nargs="+", default=[128])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--blas-threads", type=int, default=0)
    args = parser.parse_args()
    import numpy  # loads the BLAS, which threadpoolctl can only limit once loaded

    if args.blas_threads:
        import threadpoolctl

        threadpoolctl.threadpool_limits(args.blas_threads, "blas")

    from nnback import get_backend

    be = get_backend("numba")
    rng = numpy.random.default_rng(1)
    f32 = numpy.float32
    one, zero, two = (1, 1), (0, 0), (2, 2)
    for n in args.batch:
        x = rng.random((n, 1, 28, 28), dtype=f32)
        w1 = (rng.standard_normal((32, 1, 3, 3)) * 0.4).astype(f32)
        b1 = numpy.zeros((1, 32), f32)
        w2 = (rng.standard_normal((64, 32, 3, 3)) * 0.08).astype(f32)
        b2 = numpy.zeros((1, 64), f32)
        y1, c1 = be.conv2d_forward(x, w1, b1, one, zero, "relu")
        p1, a1 = be.maxpool2d_forward(y1, two, two)
        y2, c2 = be.conv2d_forward(p1, w2, b2, one, zero, "relu")
        p2, a2 = be.maxpool2d_forward(y2, two, two)
        dp2 = rng.standard_normal(p2.shape).astype(f32)
        dy2 = be.maxpool2d_backward(dp2, a2, y2.shape, two, two)
        dp1, _, _ = be.conv2d_backward(dy2, p1, w2, y2, c2, one, zero, "relu")
        dy1 = be.maxpool2d_backward(dp1, a1, y1.shape, two, two)
        ops = {
            "conv1 fwd": lambda: be.conv2d_forward(x, w1, b1, one, zero, "relu"),
            "pool1 fwd": lambda: be.maxpool2d_forward(y1, two, two),
            "conv2 fwd": lambda: be.conv2d_forward(p1, w2, b2, one, zero, "relu"),
            "pool2 fwd": lambda: be.maxpool2d_forward(y2, two, two),
            "pool2 bwd": lambda: be.maxpool2d_backward(dp2, a2, y2.shape, two, two),
            "conv2 bwd": lambda: be.conv2d_backward(dy2, p1, w2, y2, c2, one, zero, "relu"),
            "pool1 bwd": lambda: be.maxpool2d_backward(dp1, a1, y1.shape, two, two),
            "conv1 bwd": lambda: be.conv2d_backward(
                dy1, x, w1, y1, c1, one, zero, "relu", need_dx=False
            ),
        }
        total = total_wall = 0.0
        print(f"batch {n}: CPU ms per call (all threads), wall ms per call (min of 3 means)")
        for name, fn in ops.items():
            for _ in range(3):
                fn()
            best = wall = float("inf")
            for _ in range(3):
                t, t_wall = time.process_time(), time.perf_counter()
                for _ in range(args.reps):
                    fn()
                best = min(best, (time.process_time() - t) / args.reps)
                wall = min(wall, (time.perf_counter() - t_wall) / args.reps)
            total += best
            total_wall += wall
            print(f"  {name:10s} {best * 1e3:7.2f}   wall {wall * 1e3:7.2f}")
        print(f"  {'total':10s} {total * 1e3:7.2f}   wall {total_wall * 1e3:7.2f}")


if __name__ == "__main__":
    main()
