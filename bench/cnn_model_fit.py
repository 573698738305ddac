"""Issue 14's CNN through the real model (``Sequential.fit`` on random 28x28 data), beside
PyTorch CPU, each runner in its own process, rounds alternating::

    PYTHONPATH=. python bench/cnn_model_fit.py --batch 32 128 --rounds 3 [--profile]

Unlike bench/cnn_ops_step.py this includes the layers' own overheads (gradient buffers,
Python per layer). ``--profile`` prints the top of cProfile for one numba run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SAMPLES = 4096


def _data():
    import numpy

    rng = numpy.random.default_rng(0)
    x = rng.random((SAMPLES, 784), dtype=numpy.float32)
    y = rng.integers(0, 10, SAMPLES).astype(numpy.int64)
    return x, y


def run_nnback(backend: str, n: int, profile: bool) -> dict:
    import nnback as nb

    model = nb.Sequential(
        [
            nb.Reshape((1, 28, 28)),
            nb.Conv2D(1, 32, 3),
            nb.ReLU(),
            nb.MaxPool2D(2),
            nb.Conv2D(32, 64, 3),
            nb.ReLU(),
            nb.MaxPool2D(2),
            nb.Flatten(),
            nb.Dense(1600, 128),
            nb.ReLU(),
            nb.Dense(128, 10),
            nb.Softmax(),
        ],
        loss=nb.CategoricalCrossentropy(),
        optimizer=nb.Adam(1e-3),
        seed=0,
        dtype="float32",
        backend=backend.partition("@")[0].removesuffix("/serial"),
    )
    x, y = _data()
    model.fit(x[: n * 4], y[: n * 4], epochs=1, batch_size=n, verbose=0)  # warm-up
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        model.fit(x, y, epochs=1, batch_size=n, verbose=0)
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(x, y, epochs=1, batch_size=n, verbose=0)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"samples_per_s": SAMPLES / elapsed, "cpu_ms_per_step": cpu / (SAMPLES / n) * 1e3}


def run_torch(n: int) -> dict:
    import torch

    torch.set_num_threads(2)
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
    xn, yn = _data()
    x, y = torch.from_numpy(xn).reshape(-1, 1, 28, 28), torch.from_numpy(yn)
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch(limit: int) -> None:
        perm = torch.randperm(limit)
        for s in range(0, limit, n):
            idx = perm[s : s + n]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()

    epoch(n * 4)
    start, cpu = time.perf_counter(), time.process_time()
    epoch(SAMPLES)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"samples_per_s": SAMPLES / elapsed, "cpu_ms_per_step": cpu / (SAMPLES / n) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runners", nargs="+", default=["numba", "torch"])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        runner, n = args.worker[0], int(args.worker[1])
        out = run_torch(n) if runner == "torch" else run_nnback(runner, n, args.profile)
        print(json.dumps(out))
        return
    for n in args.batch:
        results: dict[str, list[dict]] = {r: [] for r in args.runners}
        for k in range(args.rounds):
            for runner in args.runners:
                cmd = [sys.executable, __file__, "--worker", runner, str(n)]
                if args.profile and k == 0 and runner != "torch":
                    cmd.append("--profile")
                env = None
                if runner.endswith("/serial"):
                    env = {**(env or os.environ), "NNBACK_KERNEL_THREADS": "1"}
                done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
                if "--profile" in cmd:
                    print(done.stderr[-6000:])
                results[runner].append(json.loads(done.stdout.strip().splitlines()[-1]))
        line = f"batch {n:4d}:"
        for r, v in results.items():
            rates = sorted(x["samples_per_s"] for x in v)
            line += f"  {r} best {rates[-1]:.0f} median {rates[len(rates) // 2]:.0f}/s"
        if "torch" in results:
            tb = max(x["samples_per_s"] for x in results["torch"])
            for r in args.runners:
                if r != "torch":
                    line += f"  {r}/torch {max(x['samples_per_s'] for x in results[r]) / tb:.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
