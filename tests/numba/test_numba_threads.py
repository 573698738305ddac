"""The numba backend's kernel threads (``runtime.run_chunks``) give the one-thread result.

Inside ``compute_scope()`` (what ``fit``, ``evaluate`` and ``predict`` run in) BLAS is held
to one thread and the backend hands work to its own threads: the two GEMMs of a dense
backward pass at once, and element-wise optimizer steps in ranges. Each must equal the
same calls made outside the scope with single-threaded BLAS, bit for bit.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy
import pytest

pytest.importorskip("numba", reason="the numba backend needs numba: pip install 'nnback[numba]'")
threadpoolctl = pytest.importorskip(
    "threadpoolctl", reason="the kernel threads hold BLAS to one thread through threadpoolctl"
)

from nnback.kernels.cpu import runtime  # noqa: E402


@pytest.fixture
def two_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_threads", 2)


def _spy_threads(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> set[str]:
    seen: set[str] = set()
    original = getattr(module, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.add(threading.current_thread().name)
        time.sleep(0.005)  # long enough for the helper to wake and take the next chunk
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_backward_gemms_at_once(
    numba_backend: Any, monkeypatch: pytest.MonkeyPatch, two_threads: None, dtype: str
) -> None:
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal((32, 300)).astype(dtype)
    w = (rng.standard_normal((300, 40)) * 0.1).astype(dtype)
    y = numpy.maximum(x @ w, 0).astype(dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        want = numba_backend.dense_backward(dy, x, w, y, "relu")
    seen = _spy_threads(monkeypatch, numpy, "matmul")
    out = (numpy.empty_like(x), numpy.empty_like(w), None)
    with numba_backend.compute_scope():
        got = numba_backend.dense_backward(dy, x, w, y, "relu", out=out)
    assert len(seen) == 2  # dW and dX on two threads
    assert got[0] is out[0] and got[1] is out[1]
    for g, e in zip(got, want, strict=True):
        numpy.testing.assert_array_equal(g, e)


def test_optimizer_steps_in_ranges(
    numba_backend: Any, monkeypatch: pytest.MonkeyPatch, two_threads: None
) -> None:
    from nnback.backends import numba_backend as module

    monkeypatch.setattr(module, "FLAT_CHUNK", 1000)
    monkeypatch.setattr(runtime, "SPLIT_MIN_WORK", 0)
    rng = numpy.random.default_rng(2)
    shape = (70, 90)  # 6,300 values: 8 ranges

    def state() -> list[numpy.ndarray]:
        r = numpy.random.default_rng(3)
        return [r.standard_normal(shape).astype("float32") for _ in range(4)]

    grad = rng.standard_normal(shape).astype("float32")
    from nnback.kernels.cpu import optimizers

    seen = _spy_threads(monkeypatch, optimizers, "adam")
    for name, call in {
        "adam": lambda p, m, v, c: numba_backend.adam_update_inplace(p, grad, m, v, 1e-3, 3),
        "rmsprop": lambda p, m, v, c: numba_backend.rmsprop_update_inplace(p, grad, c, 1e-3),
        "adagrad": lambda p, m, v, c: numba_backend.adagrad_update_inplace(p, grad, c, 1e-2),
        "momentum": lambda p, m, v, c: numba_backend.sgd_update_inplace(p, grad, m, 0.1, 0.9),
        "sgd": lambda p, m, v, c: numba_backend.sgd_update_inplace(p, grad, None, 0.1, l2=1e-3),
    }.items():
        want = state()
        want[3] = numpy.abs(want[3])
        call(*want)
        got = state()
        got[3] = numpy.abs(got[3])
        with numba_backend.compute_scope():
            call(*got)
        for g, e in zip(got, want, strict=True):
            numpy.testing.assert_array_equal(g, e, err_msg=name)
    assert len(seen) == 2  # the Adam ranges ran on both threads


def test_kernel_threads_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_usable_cores", lambda: 8)
    for name in ("NNBACK_KERNEL_THREADS", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SLURM_NTASKS_PER_NODE", raising=False)
    assert runtime._kernel_threads() == 8
    monkeypatch.setenv("MPI_LOCALNRANKS", "2")  # two MPI ranks on this machine share it
    assert runtime._kernel_threads() == 4
    monkeypatch.setenv("MPI_LOCALNRANKS", "16")
    assert runtime._kernel_threads() == 1
    monkeypatch.setenv("NNBACK_KERNEL_THREADS", "3")  # the user's choice wins
    assert runtime._kernel_threads() == 3
    monkeypatch.setenv("NNBACK_KERNEL_THREADS", "two")
    with pytest.warns(RuntimeWarning, match="NNBACK_KERNEL_THREADS='two' is not a whole"):
        assert runtime._kernel_threads() == 1


def test_scope_splits_only_for_image_layers(numba_backend: Any, two_threads: None) -> None:
    # A model of dense layers keeps BLAS's own threads (its step is GEMMs, which BLAS
    # splits with one packed operand); convolutions and pooling get the kernel threads.
    import nnback as nb

    with numba_backend.compute_scope([nb.Dense(4, 3), nb.ReLU()]):
        assert not runtime.blas_is_single_threaded()
    with numba_backend.compute_scope([nb.Reshape((1, 4, 4)), nb.Conv2D(1, 2, 3)]):
        assert runtime.blas_is_single_threaded()
    with numba_backend.compute_scope():  # no layers named: the ops' own choice, split
        assert runtime.blas_is_single_threaded()
    assert not runtime.blas_is_single_threaded()
