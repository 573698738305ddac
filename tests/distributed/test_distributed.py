"""Data-parallel training over real MPI ranks, launched through ``mpiexec`` by the tests.

N ranks with global batch B must end with the parameters of one process with batch B
(within the parity tolerance: the batch's gradient is summed in another order), the same
bits on every rank; the NaN guard, Ctrl-C and a failing rank must stop every rank at the
same step, never hang; only rank 0 writes model files. Every launch has a timeout, so a
hang fails the test instead of blocking CI.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import nnback as nb
from nnback import distributed
from nnback.tolerances import get_tolerance, get_trajectory_tolerance

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import mpi_worker  # noqa: E402

LAUNCH_TIMEOUT = 120  # seconds; a launch that hangs fails instead of blocking CI


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="needs mpi4py and mpiexec: pip install 'nnback[mpi]' (or apt-get install "
    "python3-mpi4py mpich)",
)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"  # the ranks share the cores
    env.pop("NNBACK_BACKEND", None)
    return env


def launch(
    ranks: int, arguments: list[str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [MPIEXEC, "-n", str(ranks), *arguments],
        env=_environment(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT,
    )
    if check and result.returncode != 0:
        pytest.fail(f"mpiexec -n {ranks} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def run_worker(ranks: int, scenario: str, folder: Path) -> list[dict]:
    launch(ranks, [sys.executable, str(HERE / "mpi_worker.py"), scenario, str(folder)])
    outputs = []
    for rank in range(ranks):
        with open(folder / f"rank{rank}.pkl", "rb") as handle:
            outputs.append(pickle.load(handle))
    return outputs


def tolerance(dtype: str) -> dict[str, float]:
    if dtype == "float64":
        return get_trajectory_tolerance("float64")._asdict()
    # nnback.tolerances has no whole-run rule for float32; these runs are ~20 steps, and
    # the optimizer-step rule (16 eps, relative and absolute) holds them with a margin of
    # about 40 (measured: weights within 4.5e-8 of one process's).
    return get_tolerance("adam_update_inplace", "float32")._asdict()


@pytest.fixture(scope="module")
def one_process() -> dict:
    return mpi_worker.train_cases(False)


@needs_mpi
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_n_ranks_end_where_one_process_ends(ranks, tmp_path, one_process):
    outputs = run_worker(ranks, "parity", tmp_path)
    for name, dtype, *_ in mpi_worker.CASES:
        expected = one_process[name]
        first = outputs[0]["cases"][name]
        for out in outputs:
            got = out["cases"][name]
            # Bit-identical across ranks: parameters and every reported figure.
            numpy.testing.assert_array_equal(got["weights"], first["weights"])
            for key in ("loss", "accuracy", "val_loss", "val_accuracy", "evaluate"):
                assert got[key] == first[key], (name, key)
            numpy.testing.assert_array_equal(got["predict"], first["predict"])
            assert f"data-parallel over {ranks} MPI rank" in got["step_mode"]
        # Equal to one process within the parity tolerance.
        tol = tolerance(dtype)
        numpy.testing.assert_allclose(first["weights"], expected["weights"], **tol, err_msg=name)
        numpy.testing.assert_allclose(first["predict"], expected["predict"], **tol, err_msg=name)
        numpy.testing.assert_allclose(first["loss"], expected["loss"], rtol=1e-5, err_msg=name)
        assert first["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
        assert first["evaluate"]["accuracy"] == pytest.approx(expected["evaluate"]["accuracy"])
        if ranks == 1:  # one rank is one process, bit for bit
            numpy.testing.assert_array_equal(first["weights"], expected["weights"])
    if ranks == 2:
        # The CuPy backend on the fake device: gradients staged through host memory.
        assert outputs[0]["transport"].startswith("host staging")
        name, dtype = mpi_worker.CASES[0][:2]
        for out in outputs:
            got = out["fake_cupy"][name]
            assert "host staging" in got["step_mode"]
            numpy.testing.assert_allclose(
                got["weights"], one_process[name]["weights"], **tolerance(dtype)
            )


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_cupy_gradients_go_through_nccl_on_fake_devices(ranks, tmp_path):
    """The NCCL transport on fake devices (one per rank, NCCL over the job's MPI ranks):
    the same end as one process, bit-identical ranks; host staging forced by argument or
    environment ends alike; without NCCL, or with two ranks on one GPU, host staging says
    why; the fake NCCL refuses misuse and is captured into a CUDA graph."""
    outputs = run_worker(ranks, "nccl", tmp_path)
    one = mpi_worker.train_cases(False, cases=mpi_worker.NCCL_CASES)
    steps = sum(mpi_worker.EPOCHS * -(-n // b) for *_, n, b in mpi_worker.NCCL_CASES)
    for out in outputs:
        nccl, host = out["nccl"], out["host"]
        assert nccl["transport"].startswith(f"NCCL (cupy.cuda.nccl, NCCL 2.18.5, GPU {out['rank']}")
        assert nccl["nccl_launches"] == steps  # one allReduce per step, nothing else
        assert host["transport"].endswith("NCCL not used: transport='host'")
        assert out["environment"]["transport"].endswith(
            "NCCL not used: NNBACK_DISTRIBUTED_TRANSPORT=host"
        )
        assert host["nccl_launches"] == out["environment"]["nccl_launches"] == 0
        for name, dtype, *_ in mpi_worker.NCCL_CASES:
            got = nccl[name]
            assert "gradients through NCCL" in got["step_mode"]
            numpy.testing.assert_array_equal(got["weights"], outputs[0]["nccl"][name]["weights"])
            assert got["loss"] == outputs[0]["nccl"][name]["loss"]
            tol = tolerance(dtype)
            numpy.testing.assert_allclose(got["weights"], one[name]["weights"], **tol)
            numpy.testing.assert_allclose(got["predict"], one[name]["predict"], **tol)
            # Host staging sums the same two numbers (2 ranks: a + b either way) or three
            # in MPI's order, which may differ from NCCL's rank order: within tolerance.
            numpy.testing.assert_allclose(host[name]["weights"], got["weights"], **tol)
            if ranks == 2:
                numpy.testing.assert_array_equal(host[name]["weights"], got["weights"])
            numpy.testing.assert_array_equal(
                out["environment"][name]["weights"], host[name]["weights"]
            )
        cases, transport = out["no_nccl"]
        assert transport.startswith("host staging") and (
            "cupy.cuda.nccl unavailable on rank 0 (ImportError: libnccl.so.2" in transport
        )
        name, dtype = mpi_worker.NCCL_CASES[0][:2]
        numpy.testing.assert_allclose(
            cases[name]["weights"], one[name]["weights"], **tolerance(dtype)
        )
        cases, transport = out["one_gpu"]
        assert "NCCL not used: two ranks share one GPU (rank 0: GPU 0" in transport
        assert out["required"].startswith("DistributedError: NNBACK_DISTRIBUTED_TRANSPORT=nccl")
        refusals = out["refusals"]
        assert "float32 data type for a float64 buffer" in refusals["dtype"]
        assert "overrun the buffer" in refusals["overrun"]
        assert "is not the address of memory on this device" in refusals["pointer"]
        assert "stream 0x3039 is not a stream here" in refusals["stream"]
        assert "allReduce calls differ" in refusals["counts"]
        assert "each NCCL rank once" in refusals["ranks"]
        assert "Duplicate GPU detected" in refusals["duplicate"]
        assert "is capturing (the capture would be invalidated)" in refusals["other_stream"]
        assert "destroyed communicator" in refusals["destroyed"]
        # sum over ranks of arange(6) * (rank + 1), once eagerly, once more at the replay.
        factor = ranks * (ranks + 1) // 2
        numpy.testing.assert_array_equal(out["sum"], numpy.arange(6.0) * factor)
        numpy.testing.assert_array_equal(out["before_replay"], out["sum"])  # recorded only
        numpy.testing.assert_array_equal(out["after_replay"], out["sum"] * ranks)
        assert out["graph_nodes"] == ["ncclAllReduce"]


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_nan_ctrl_c_failure_and_saving_stop_or_act_on_every_rank(ranks, tmp_path):
    outputs = run_worker(ranks, "control", tmp_path)
    last = ranks - 1
    for out in outputs:
        kind, epoch, step, message, _ = out["nan"]
        assert (kind, epoch, step) == ("TrainingError", 1, 5)
        assert f"non-finite on 1 of {ranks} ranks" in message
        # Ctrl-C on the last rank after step 10 (epoch 2, step 2): all stop there.
        assert out["interrupt"] == (True, (2, 2), 1)
        kind, message, iterations = out["failure"]
        if out["rank"] == 1:
            assert (kind, message) == ("ValueError", "disk full on rank 1")
        else:
            assert kind == "DistributedError"
            assert "another rank failed (rank 1: ValueError: disk full on rank 1)" in message
        assert iterations == 2  # the step after the failing callback was not taken
        assert out["save"]["same"]
    written = [out["save"]["written"] for out in outputs]
    assert written[0] == [str(tmp_path / f"ckpt-{e}.npz") for e in (1, 2)] + [
        str(tmp_path / "model.npz")
    ]
    assert all(w == [] for w in written[1:])
    assert not list(tmp_path.glob(".nnback-*"))
    assert outputs[last]["save"]["weights"].tobytes() == outputs[0]["save"]["weights"].tobytes()


@needs_mpi
def test_an_uncaught_exception_on_one_rank_ends_the_job(tmp_path):
    result = launch(
        2, [sys.executable, str(HERE / "mpi_worker.py"), "uncaught", str(tmp_path)], check=False
    )
    assert result.returncode != 0
    assert "rank 1 fails between fit and evaluate" in result.stderr
    assert "aborting the MPI job" in result.stderr


@needs_mpi
def test_nnback_train_distributed_matches_one_process():
    options = ["train", "--epochs", "1", "--hidden", "32", "--batch-size", "100", "--quiet"]
    options += ["--seed", "3"]
    single = subprocess.run(
        [sys.executable, "-m", "nnback.cli", *options],
        env=_environment(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT,
    )
    assert single.returncode == 0, single.stderr
    multi = launch(2, [sys.executable, "-m", "nnback.cli", *options, "--distributed"])
    pattern = re.compile(r"test accuracy (\S+), test loss (\S+);")
    one = pattern.findall(single.stdout)
    two = pattern.findall(multi.stdout)
    assert len(one) == 1 and len(two) == 1, multi.stdout  # only rank 0 prints
    assert two[0][0] == one[0][0]
    assert float(two[0][1]) == pytest.approx(float(one[0][1]), abs=2e-4)
    assert "data-parallel over 2 MPI ranks" in multi.stderr


def test_without_mpi4py_distributed_fails_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setattr(distributed, "_DEFAULT", None)
    model = mpi_worker.make_model("float64", 0.0, 0.0, "adam")
    X, y = mpi_worker.data(16)
    with pytest.raises(nb.BackendUnavailableError) as info:
        model.fit(X, y, epochs=1, verbose=0, distributed=True)
    message = str(info.value)
    assert "\n" not in message
    assert "pip install 'nnback[mpi]'" in message


def test_transport_choice_is_checked(monkeypatch):
    with pytest.raises(nb.InputError, match="transport"):
        nb.Distributed(transport="infiniband")
    monkeypatch.setenv("NNBACK_DISTRIBUTED_TRANSPORT", "gloo")
    with pytest.raises(nb.InputError, match="NNBACK_DISTRIBUTED_TRANSPORT='gloo'"):
        nb.Distributed()


def test_distributed_argument_is_checked():
    model = mpi_worker.make_model("float64", 0.0, 0.0, "adam")
    X, y = mpi_worker.data(16)
    with pytest.raises(nb.InputError, match="distributed"):
        model.fit(X, y, epochs=1, verbose=0, distributed="yes")


@pytest.mark.filterwarnings("ignore:MLPClassifier reached max_iter")
def test_grid_search_with_joblib_processes():
    """The scikit-learn route: MLPClassifier in GridSearchCV(n_jobs=2) on loky workers."""
    pytest.importorskip("sklearn", reason="scikit-learn is not installed: pip install scikit-learn")
    from sklearn.model_selection import GridSearchCV

    X, y = mpi_worker.data(120)
    search = GridSearchCV(
        nb.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0),
        {"alpha": [1e-4, 1e-1], "learning_rate_init": [1e-2]},
        cv=2,
        n_jobs=2,
    )
    search.fit(X, y)
    assert search.best_params_["alpha"] in (1e-4, 1e-1)
    assert len(search.cv_results_["mean_test_score"]) == 2
    assert search.predict(X).shape == (120,)
