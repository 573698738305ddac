"""The PyTorch CUDA runners' step code on device "cpu", and the device script's dry run.

Graph capture and ``Adam(capturable=True)`` need CUDA, so on the CPU the graph runner calls
its step function directly; what is checked is everything around it: the device-side
gather from the uploaded permutation, the step offset the graph advances itself, the full
and partial batches, the loss summed on the device.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy
import pytest

from nnback.bench.workload import GPU_DRY_RUN_ENV_VAR

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def _data(torch: Any, n: int) -> tuple[Any, Any]:
    rng = numpy.random.default_rng(3)
    X = torch.from_numpy(rng.random((n, 784), dtype=numpy.float32))
    y = torch.from_numpy(rng.integers(0, 10, n))
    return X, y


def _parameters(model: Any) -> list[Any]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(("n", "batch"), [(300, 128), (256, 128), (100, 128)])
def test_graph_step_on_cpu_trains_as_the_users_loop_does(torch: Any, n: int, batch: int) -> None:
    from nnback.bench.peers_torch_cuda import GraphTrainer, _model, eager_epoch

    X, y = _data(torch, n)
    trainer = GraphTrainer(torch, X, y, batch, torch.Generator().manual_seed(5))
    full, rest = divmod(n, batch)
    assert trainer.steps == [(s, c) for s, c in ((batch, full), (rest, 1)) if s and c]
    reference = _model(torch, "cpu")
    generator = torch.Generator().manual_seed(5)
    for _ in range(2):
        loss = trainer.epoch()
        expected = eager_epoch(torch, reference, X, y, batch, generator)
        assert loss == pytest.approx(expected, rel=1e-5)
        assert int(trainer.offset) == n  # the step offset walked the whole permutation
    for got, want in zip(_parameters(trainer.parts[0]), _parameters(reference[0]), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert trainer.graphs == {}  # nothing captured without CUDA


@pytest.mark.parametrize("runner", ["torch-cuda", "torch-cuda-fused", "torch-cuda-graph"])
def test_torch_gpu_runners_run_on_cpu_in_a_dry_run(
    torch: Any, monkeypatch: pytest.MonkeyPatch, runner: str
) -> None:
    from nnback.bench.peers_torch_cuda import _setup

    monkeypatch.setenv(GPU_DRY_RUN_ENV_VAR, "1")
    prepared = _setup(runner, 128, 320)
    assert prepared.warmup is not None and prepared.warmup_amount == 320
    prepared.warmup()
    prepared.run()
    facts = prepared.finish() if prepared.finish else {}
    assert facts["device"] == "cpu" and numpy.isfinite(facts["mean_loss"])
    if runner == "torch-cuda-graph":
        assert "not captured" in facts["graphs"]


def test_gpu_check_dry_run_prints_the_table_and_saves_its_files(tmp_path: Path) -> None:
    if shutil.which("bash") is None or shutil.which("timeout") is None:
        pytest.skip("bash and coreutils' timeout are needed to run bench/gpu_check.sh")
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path))
    env.pop("NNBACK_TEST_BACKENDS", None)
    done = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    table = out[out.index("GPU training epoch") :]
    assert "cupy/graph" in table and "FP32 GEMM peak" in table
    assert "start-up, fresh process to end of first epoch" in table
    assert "gpu tests: ok" in table and "suite on cupy: ok" in table
    assert "bench b128: ok" in table and "bench start: ok" in table
    saved = {p.name for p in tmp_path.iterdir()}
    assert {"main.log", "bench.json", "summary.txt", "bench.log"} <= saved
    assert len(saved) <= 8 and all(p.is_file() for p in tmp_path.iterdir())
