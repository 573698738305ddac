"""Training throughput of issue 14's CNN through backend ops, beside PyTorch CPU.

Standalone (not collected by pytest: no ``test_`` prefix); it measures before the layers
exist, by running one training step of

    Conv(1->32, 3x3) ReLU MaxPool(2) -> Conv(32->64, 3x3) ReLU MaxPool(2) -> Flatten
    -> Dense(1600, 128) ReLU -> Dense(128, 10) softmax-CE, Adam, float32

directly through a backend's ops (conv2d_forward/backward, maxpool2d_*, dense_*,
softmax_crossentropy, adam_update_inplace), and the same network in PyTorch
(``torch.set_num_threads(2)``). Each runner runs in its own process; rounds alternate
between them, so ratios are taken from the same run::

    PYTHONPATH=. python bench/cnn_ops_step.py --batch 32 128 --rounds 5

``--profile`` also reports the share of a numba step spent in GEMMs (every
``Backend.matmul`` call, the dense layers' and the convolutions').
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

STEP_SECONDS = 2.0  # timed per round and runner, after the warm-up


def _data(n: int):
    import numpy

    rng = numpy.random.default_rng(0)
    x = rng.random((n, 1, 28, 28), dtype=numpy.float32)
    labels = rng.integers(0, 10, n).astype(numpy.int64)
    return x, labels


def run_nnback(backend_name: str, n: int, profile: bool) -> dict:
    import numpy

    from nnback import get_backend

    name, _, chunk_bytes = backend_name.partition("@")[0].removesuffix("/serial").partition(":")
    be = get_backend(name)
    if chunk_bytes:  # "numba:4194304" tries another conv_chunk_bytes
        be.conv_chunk_bytes = int(chunk_bytes)
    rng = numpy.random.default_rng(1)
    f32 = numpy.float32

    def he(shape, fan_in):
        return (rng.standard_normal(shape) * numpy.sqrt(2.0 / fan_in)).astype(f32)

    params = [
        he((32, 1, 3, 3), 9),
        numpy.zeros((1, 32), f32),
        he((64, 32, 3, 3), 288),
        numpy.zeros((1, 64), f32),
        he((1600, 128), 1600),
        numpy.zeros((1, 128), f32),
        he((128, 10), 128),
        numpy.zeros((1, 10), f32),
    ]
    ms = [numpy.zeros_like(p) for p in params]
    vs = [numpy.zeros_like(p) for p in params]
    x, labels = _data(n)
    one, zero, two = (1, 1), (0, 0), (2, 2)
    gemm_time = [0.0]
    if profile:
        plain = be.matmul

        def timed(a, b, out=None):
            t = time.perf_counter()
            r = plain(a, b, out=out)
            gemm_time[0] += time.perf_counter() - t
            return r

        be.matmul = timed
    state = {"step": 0}

    def step():
        w1, b1, w2, b2, w3, b3, w4, b4 = params
        y1, c1 = be.conv2d_forward(x, w1, b1, one, zero, "relu")
        p1, a1 = be.maxpool2d_forward(y1, two, two)
        y2, c2 = be.conv2d_forward(p1, w2, b2, one, zero, "relu")
        p2, a2 = be.maxpool2d_forward(y2, two, two)
        f = p2.reshape(n, -1)
        h = be.dense_forward(f, w3, b3, "relu")
        o = be.dense_forward(h, w4, b4, "linear")
        _, g = be.softmax_crossentropy(o, labels)
        dh, dw4, db4 = be.dense_backward(g, h, w4, o, "linear")
        df, dw3, db3 = be.dense_backward(dh, f, w3, h, "relu")
        dy2 = be.maxpool2d_backward(df.reshape(p2.shape), a2, y2.shape, two, two)
        dp1, dw2, db2 = be.conv2d_backward(dy2, p1, w2, y2, c2, one, zero, "relu")
        dy1 = be.maxpool2d_backward(dp1, a1, y1.shape, two, two)
        _, dw1, db1 = be.conv2d_backward(dy1, x, w1, y1, c1, one, zero, "relu", need_dx=False)
        state["step"] += 1
        grads = (dw1, db1, dw2, db2, dw3, db3, dw4, db4)
        for p, gr, m, v in zip(params, grads, ms, vs, strict=True):
            be.adam_update_inplace(p, gr, m, v, 1e-3, state["step"])

    with be.compute_scope():  # the thread policy fit runs its steps under
        return _time(step, n, gemm_time)


def run_torch(n: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(1600, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xn, ln = _data(n)
    x, labels = torch.from_numpy(xn), torch.from_numpy(ln)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), labels)
        loss.backward()
        opt.step()

    return _time(step, n, None)


def _time(step, n: int, gemm_time) -> dict:
    for _ in range(5):
        step()
    if gemm_time is not None:
        gemm_time[0] = 0.0
    steps, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < STEP_SECONDS:
        step()
        steps += 1
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    out = {
        "samples_per_s": steps * n / elapsed,
        "ms_per_step": elapsed / steps * 1e3,
        "cpu_ms_per_step": cpu / steps * 1e3,
    }
    if gemm_time is not None and gemm_time[0] > 0:
        out["gemm_share"] = gemm_time[0] / elapsed
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runners", nargs="+", default=["numba", "torch"])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="PyTorch threads, and BLAS threads for nnback when not 2 (threadpoolctl); "
        "--threads 1 compares CPU time per step, which a loaded machine distorts least",
    )
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        runner, n = args.worker[0], int(args.worker[1])
        if runner == "torch":
            result = run_torch(n, args.threads)
        else:
            if args.threads != 2:
                import numpy  # noqa: F401 - loads the BLAS, so that threadpoolctl finds it
                import threadpoolctl

                threadpoolctl.threadpool_limits(args.threads, "blas")
            result = run_nnback(runner, n, args.profile)
        print(json.dumps(result))
        return
    for n in args.batch:
        results: dict[str, list[dict]] = {r: [] for r in args.runners}
        for _ in range(args.rounds):
            for runner in args.runners:
                cmd = [sys.executable, __file__, "--worker", runner, str(n)]
                cmd += ["--threads", str(args.threads)]
                if args.profile:
                    cmd.append("--profile")
                env = None
                if runner.endswith("/serial"):  # one kernel thread (BLAS keeps its own threads)
                    env = {**(env or os.environ), "NNBACK_KERNEL_THREADS": "1"}
                done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
                results[runner].append(json.loads(done.stdout.strip().splitlines()[-1]))
        best = {r: max(x["samples_per_s"] for x in v) for r, v in results.items()}
        line = f"batch {n:4d}: " + "  ".join(
            f"{r} {best[r]:7.0f}/s (" + ",".join(f"{x['samples_per_s']:.0f}" for x in v) + ")"
            for r, v in results.items()
        )
        if "torch" in best:
            for r in args.runners:
                if r != "torch":
                    line += f"  {r}/torch {best[r] / best['torch']:.2f}"
                    shares = [x["gemm_share"] for x in results[r] if "gemm_share" in x]
                    if shares:
                        line += f" gemm share {sum(shares) / len(shares):.0%}"
        cpu = {r: min(x["cpu_ms_per_step"] for x in v) for r, v in results.items()}
        line += "\n            CPU ms/step (min): " + "  ".join(
            f"{r} {c:.1f}" for r, c in cpu.items()
        )
        print(line, flush=True)


if __name__ == "__main__":
    main()
