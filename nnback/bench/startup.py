"""Start-up of nnback on the GPU: a fresh process to the end of its first training epoch.

Two runners of one item, each call a new Python process (``python -m
nnback.bench.startup``) that imports nnback, loads the cupy backend, makes the data, builds
the model and trains one epoch (captured steps), then prints its own timings as JSON:

- ``cupy-cold``: ``CUPY_CACHE_DIR`` points at a new, empty directory for every call, so
  NVRTC compiles every kernel the epoch needs, as on a machine's very first run;
- ``cupy-warm``: ``CUPY_CACHE_DIR`` points at a directory that one untimed process filled
  first, as on every later run.

The time of a call is the wall time of the whole process (interpreter, imports, data, first
epoch). The facts recorded add the child's own split: ``backend_s`` (loading the backend),
``first_epoch_s`` (model build and the first epoch, compilation included) and how many
files the kernel cache held before and after.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from .data import MAIN_NETWORK
from .workload import Prepared, Workload, WorkloadSkipped

__all__ = ["START_BATCH", "START_FAMILY", "START_RUNNERS", "startup_env", "startup_workloads"]

START_FAMILY = "gpu_start"
START_RUNNERS = ("cupy-cold", "cupy-warm")
START_BATCH = 128
CHILD_TIMEOUT_S = 300.0


def startup_env(cache_dir: str) -> dict[str, str]:
    """The environment a start-up process gets on top of a worker's: its kernel cache."""
    from .gpu import CAPTURE_ENV_VAR

    return {"CUPY_CACHE_DIR": cache_dir, CAPTURE_ENV_VAR: "1"}


def _cache_files(path: str) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def _child(spec: dict[str, Any], cache_dir: str) -> dict[str, Any]:
    from .isolation import worker_environment

    done = subprocess.run(
        [sys.executable, "-m", "nnback.bench.startup", json.dumps(spec)],
        env=worker_environment(startup_env(cache_dir)),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip()[-1500:] or "(it printed nothing)"
        raise RuntimeError(f"the start-up process exited with code {done.returncode}: {tail}")
    reply = json.loads(lines[-1])
    if "skipped" in reply:
        raise WorkloadSkipped(reply["skipped"])
    return reply


def _workload(runner: str, samples: int, skip: str | None) -> Workload:
    from .gpu import gpu_backend_name

    spec = {"backend": gpu_backend_name(), "samples": samples, "batch": START_BATCH}
    cold = runner == "cupy-cold"
    replies: list[dict[str, Any]] = []

    def setup() -> Prepared:
        root = tempfile.mkdtemp(prefix=f"nnback-{runner}-")
        warm_dir = os.path.join(root, "warm")
        if not cold:
            _child(spec, warm_dir)  # fills the cache; not timed

        def run() -> None:
            cache = tempfile.mkdtemp(prefix="cold-", dir=root) if cold else warm_dir
            replies.append(_child(spec, cache))

        def finish() -> dict[str, Any]:
            shutil.rmtree(root, ignore_errors=True)
            if not replies:
                return {}
            facts: dict[str, Any] = {"cache": "empty" if cold else "warm"}
            for key in ("backend_s", "data_s", "first_epoch_s"):
                facts[key] = statistics.median(float(r[key]) for r in replies)
            for key in ("backend", "cache_files_before", "cache_files_after", "device"):
                facts[key] = replies[-1].get(key)
            facts["cache_dirs"] = [r.get("cache_dir") for r in replies]
            return facts

        # The first call would be a start-up like any other: nothing to warm up.
        return Prepared(run=run, warmup=lambda: None, warmup_amount=0.0, finish=finish)

    return Workload(
        family=START_FAMILY,
        group=f"gpu start-up to first epoch {MAIN_NETWORK}",
        runner=runner,
        dtype="float32",
        batch=START_BATCH,
        case=MAIN_NETWORK,
        setup=setup,
        unit="start",
        amount=0.0,
        long=True,
        skip=skip,
        env=(("NNBACK_CAPTURE", "1"),),
        own_process=True,
    )


def startup_workloads(samples: int, runners: tuple[str, ...] | None = None) -> list[Workload]:
    """The cold and warm start-up of nnback's cupy backend (``runners`` keeps only those)."""
    from .gpu import gpu_backend_reason

    chosen = [r for r in START_RUNNERS if runners is None or r in runners]
    if not chosen:
        return []
    skip = gpu_backend_reason()
    return [_workload(runner, samples, skip) for runner in chosen]


def main(argv: list[str] | None = None) -> None:
    """The start-up process: one epoch from a cold interpreter, timings as JSON on stdout."""
    started = time.perf_counter()
    spec = json.loads((sys.argv[1:] if argv is None else argv)[0])
    cache = os.environ.get("CUPY_CACHE_DIR", "")
    before = _cache_files(cache) if cache else 0
    from ..backends import get_backend
    from ..errors import BackendUnavailableError

    try:
        backend = get_backend(spec["backend"])
    except BackendUnavailableError as exc:
        print(json.dumps({"skipped": str(exc)}))
        return
    imported = time.perf_counter()
    from .data import mnist_shaped
    from .endtoend import build_model

    X_host, y = mnist_shaped(int(spec["samples"]), "float32")
    X = backend.asarray(X_host)
    backend.synchronize()
    made = time.perf_counter()
    model = build_model(MAIN_NETWORK, "float32", backend)
    model.fit(X, y, epochs=1, batch_size=int(spec["batch"]), verbose=0)
    backend.synchronize()
    finished = time.perf_counter()
    reply = {
        "backend": backend.name,
        "device": backend.info().get("device", "cpu"),
        "backend_s": imported - started,
        "data_s": made - imported,
        "first_epoch_s": finished - made,
        "cache_dir": cache,
        "cache_files_before": before,
        "cache_files_after": _cache_files(cache) if cache else 0,
    }
    print(json.dumps(reply))


if __name__ == "__main__":
    main()
