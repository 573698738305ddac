"""CupyBackend's Python code on the strict fake device, against the NumPy reference.

The fake ``cupy`` (:mod:`nnback.testing.fake_cupy`) refuses implicit host conversions and
runs the real kernel sources on the CPU, so these tests exercise the backend's allocation,
launch arguments, grids, workspaces and fallbacks exactly as a GPU run would, minus the GPU:

* each fused op matches the float64 reference within the tolerance table and launches the
  kernels it should (the fake records every launch);
* each fallback condition (layout, dtype mix, promoting scalars, unsupported shapes) runs
  the reference code, launches nothing and gives the reference's result or error;
* no op reads device memory on the host behind the caller's back;
* the backend keeps Backend's interface and says in one line why it cannot load.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy
import pytest
from cuda_helpers import DTYPES, REFERENCE
from nnback.kernels.cuda import load_source
from nnback.kernels.cuda.launch import NULL

from nnback.backends.base import Backend
from nnback.backends.cupy_backend import CupyBackend
from nnback.testing.cpu_kernels import KernelLaunchError
from nnback.testing.fake_cupy import FakeCupy, make_fake_cupy_backend
from nnback.testing.parity import assert_close, make_input, to_host

ACTS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax")


@pytest.fixture
def fake(cpu: dict) -> CupyBackend:
    return make_fake_cupy_backend()


def _launched(backend: CupyBackend) -> list[str]:
    return backend.xp.kernels_launched()


def _expect(backend: CupyBackend, check: Callable[[list[str]], bool]) -> None:
    """Check the kernels launched so far; on a real GPU (tests/cuda/test_cuda_gpu.py runs
    these tests there too) there is no launch log, and only the values are checked."""
    if isinstance(backend.xp, FakeCupy):
        launched = _launched(backend)
        assert check(launched), f"kernels launched: {launched}"


def _public(cls: type) -> dict[str, object]:
    return {n: m for n, m in inspect.getmembers(cls) if not n.startswith("_") and callable(m)}


def test_same_interface_as_backend() -> None:
    base, mine = _public(Backend), _public(CupyBackend)
    assert set(mine) == set(base), f"added: {sorted(set(mine) - set(base))}"
    for name, method in base.items():
        assert inspect.signature(mine[name]) == inspect.signature(method), name


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_forward_and_backward(fake: CupyBackend, dtype: str, act: str) -> None:
    rng = numpy.random.default_rng(20)
    n, k_in, k_out = 300, 20, 33  # 300 rows: two chunks of the bias gradient
    x, x64 = make_input(fake, rng.uniform(-1, 1, (n, k_in)), dtype, "transposed")
    w, w64 = make_input(fake, rng.uniform(-1, 1, (k_in, k_out)) / 4, dtype)
    b, b64 = make_input(fake, rng.uniform(-1, 1, (1, k_out)), dtype)
    y = fake.dense_forward(x, w, b, act)
    _expect(fake, lambda ks: ks[-1].startswith("bias_softmax" if act == "softmax" else "bias_a"))
    assert_close("dense_forward", fake, y, REFERENCE.dense_forward(x64, w64, b64, act))
    dy, dy64 = make_input(fake, rng.uniform(-1, 1, (n, k_out)), dtype)
    y64 = to_host(fake, y).astype(numpy.float64)
    dx, dw, db = fake.dense_backward(dy, x, w, y, act)
    _expect(fake, lambda ks: ks[-1] == "column_sum_" + dtype.replace("float", "f"))
    expected = REFERENCE.dense_backward(dy64, x64, w64, y64, act)
    for got, want, label in zip((dx, dw, db), expected, ("dx", "dw", "db"), strict=True):
        assert_close("dense_backward", fake, got, want, label=label)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_workspaces_and_overwrite(fake: CupyBackend, dtype: str) -> None:
    rng = numpy.random.default_rng(21)
    x, x64 = make_input(fake, rng.uniform(-1, 1, (40, 8)), dtype)
    w, w64 = make_input(fake, rng.uniform(-1, 1, (8, 5)), dtype)
    b, b64 = make_input(fake, rng.uniform(-1, 1, (1, 5)), dtype)
    out = fake.zeros((40, 5), dtype)
    y = fake.dense_forward(x, w, b, "tanh", out=out)
    assert y is out
    dy, dy64 = make_input(fake, rng.uniform(-1, 1, (40, 5)), dtype)
    outs = (fake.zeros((40, 8), dtype), fake.zeros((8, 5), dtype), fake.zeros((1, 5), dtype))
    y64 = to_host(fake, y).astype(numpy.float64)
    got = fake.dense_backward(dy, x, w, y, "tanh", overwrite_dy=True, out=outs)
    assert all(g is o for g, o in zip(got, outs, strict=True))
    for g, want in zip(got, REFERENCE.dense_backward(dy64, x64, w64, y64, "tanh"), strict=True):
        assert_close("dense_backward", fake, g, want)
    # overwrite_dy let the backend keep dz in dy's memory; a linear layer sums dy as it is.
    now64 = to_host(fake, dy).astype(numpy.float64)
    dx, _, db = fake.dense_backward(dy, x, w, y, "linear", need_dx=False)
    assert dx is None
    assert_close("dense_backward", fake, db, now64.sum(axis=0, keepdims=True))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_activations(fake: CupyBackend, dtype: str, act: str) -> None:
    rng = numpy.random.default_rng(22)
    z, z64 = make_input(fake, rng.uniform(-3, 3, (17, 9)), dtype)
    y = fake.activation_forward(z, act)
    assert_close("activation_forward", fake, y, REFERENCE.activation_forward(z64, act))
    dy, dy64 = make_input(fake, rng.uniform(-2, 2, (17, 9)), dtype)
    y64 = to_host(fake, y).astype(numpy.float64)
    expected = REFERENCE.activation_backward(dy64, y64, act)
    assert_close("activation_backward", fake, fake.activation_backward(dy, y, act), expected)
    assert_close("softmax", fake, fake.softmax(z), REFERENCE.softmax(z64))
    _expect(fake, lambda ks: len(ks) == 3)


@pytest.mark.parametrize("labels", ["int32", "int64", "onehot"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_crossentropy(fake: CupyBackend, dtype: str, labels: str) -> None:
    rng = numpy.random.default_rng(23)
    z, z64 = make_input(fake, rng.uniform(-4, 4, (50, 10)), dtype)
    classes = rng.integers(0, 10, 50)
    truth = numpy.eye(10)[classes] if labels == "onehot" else classes.astype(labels)
    t, t64 = make_input(fake, truth, dtype if labels == "onehot" else labels)
    for with_grad in (True, False):
        loss, grad = fake.softmax_crossentropy(z, t, with_grad)
        ref_loss, ref_grad = REFERENCE.softmax_crossentropy(z64, t64, with_grad)
        assert_close("softmax_crossentropy", fake, loss, ref_loss, label="loss")
        assert (grad is None) == (not with_grad)
        if with_grad:
            assert_close("softmax_crossentropy", fake, grad, ref_grad, label="grad")
    _expect(fake, lambda ks: ks[-1].startswith("finalize_mean"))


@pytest.mark.parametrize("targets", ["same", "bool", "other float"])
@pytest.mark.parametrize("op", ["binary_crossentropy", "mean_squared_error", "mean_absolute_error"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_losses(fake: CupyBackend, dtype: str, op: str, targets: str) -> None:
    rng = numpy.random.default_rng(24)
    p, p64 = make_input(fake, rng.uniform(0.01, 0.99, (700, 3)), dtype)  # two loss chunks
    other = "float64" if dtype == "float32" else "float32"
    t_dtype = {"same": dtype, "bool": "bool", "other float": other}[targets]
    # Targets of another dtype are cast to the predictions' first, as the reference does.
    t, t64 = make_input(fake, (rng.random((700, 3)) < 0.5).astype(float), t_dtype)
    loss, grad = getattr(fake, op)(p, t)
    ref_loss, ref_grad = getattr(REFERENCE, op)(p64, t64)
    assert_close(op, fake, loss, ref_loss, label="loss")
    assert_close(op, fake, grad, ref_grad, label="grad")
    assert getattr(fake, op)(p, t, with_grad=False)[1] is None
    suffix = "loss_grad_" + dtype.replace("float", "f")
    _expect(fake, lambda ks: sum(name.endswith(suffix) for name in ks) == 2)


@pytest.mark.parametrize("mask", ["same", "bool", "int8"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout(fake: CupyBackend, dtype: str, mask: str) -> None:
    rng = numpy.random.default_rng(25)
    x, x64 = make_input(fake, rng.uniform(-1, 1, (30, 7)), dtype)
    keep = rng.random((30, 7)) >= 0.25
    m, m64 = make_input(fake, keep, dtype if mask == "same" else mask)
    for method in ("dropout_forward", "dropout_backward"):
        got = getattr(fake, method)(x, m, 1 / 0.75)
        expected = getattr(REFERENCE, method)(x64, m64, 1 / 0.75)
        assert_close(method, fake, got, expected, dtype=dtype)
    # An int8 mask is cast to x's dtype first (as the reference does); a bool one is read.
    kernel = "dropout_apply_" + dtype.replace("float", "f") + ("_b8" if mask == "bool" else "")
    _expect(fake, lambda ks: ks == [kernel, kernel])


@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_steps(fake: CupyBackend, dtype: str, name: str) -> None:
    rng = numpy.random.default_rng(26)
    p, p64 = make_input(fake, rng.uniform(-1, 1, (64, 9)), dtype)
    states = [make_input(fake, numpy.zeros((64, 9)), dtype) for _ in range(2)]
    kwargs = {"l1": 1e-3, "l2": 1e-3}
    for step in range(1, 4):
        g, g64 = make_input(fake, rng.uniform(-1, 1, (64, 9)), dtype)
        for backend, (param, grad, s) in (
            (fake, (p, g, [a for a, _ in states])),
            (REFERENCE, (p64, g64, [b for _, b in states])),
        ):
            if name in ("sgd", "momentum"):
                momentum = 0.9 if name == "momentum" else 0.0
                backend.sgd_update_inplace(param, grad, s[0], 0.05, momentum, **kwargs)
            elif name == "adam":
                backend.adam_update_inplace(param, grad, s[0], s[1], 0.01, step, **kwargs)
            else:
                getattr(backend, f"{name}_update_inplace")(param, grad, s[0], 0.01, **kwargs)
    op = "sgd_update_inplace" if name in ("sgd", "momentum") else f"{name}_update_inplace"
    assert_close(op, fake, p, p64, label="param")
    _expect(fake, lambda ks: len(ks) == 3 and ks[0].endswith(dtype.replace("float", "f")))


def test_no_hidden_transfers(fake: CupyBackend) -> None:
    rng = numpy.random.default_rng(27)
    x = fake.asarray(rng.uniform(-1, 1, (64, 8)).astype("float32"))
    w = fake.asarray(rng.uniform(-1, 1, (8, 4)).astype("float32"))
    b = fake.zeros((1, 4), "float32")
    labels = fake.asarray(rng.integers(0, 4, 64))
    fake.xp.reset_counters()
    logits = fake.dense_forward(x, w, b, "linear")
    loss, grad = fake.softmax_crossentropy(logits, labels)
    _, dw, db = fake.dense_backward(grad, x, w, logits, need_dx=False)
    fake.adam_update_inplace(w, dw, fake.zeros_like(w), fake.zeros_like(w), 0.01, 1)
    fake.synchronize()
    assert fake.xp.counters() == {"host_syncs": 0, "to_device": 0, "to_host": 0}
    assert isinstance(fake.to_float(loss), float) and fake.xp.to_host == 1
    assert fake.xp.synchronizations == 1


def test_info(fake: CupyBackend) -> None:
    info = fake.info()
    assert "fake GPU" in info["device"] and "compute capability 9.0" in info["device"]
    assert info["tf32"].startswith("off") and "--fmad=false" in info["kernels"]


@pytest.mark.parametrize(
    "change, error",
    [
        (lambda a: a.__setitem__(1, None), "cupy/cupy#9046"),  # None is not NULL on CuPy
        (lambda a: a.__setitem__(0, numpy.zeros((4, 3), "float32")), "host numpy array"),
        (lambda a: a.__setitem__(3, 4), "NumPy scalars"),  # a Python int
        (lambda a: a.__setitem__(3, numpy.int32(4)), "numpy.int64 scalar"),
    ],
)
def test_fake_launches_are_checked_as_a_gpu_needs(fake: CupyBackend, change, error) -> None:
    z = fake.zeros((4, 3), "float32")
    args = [z, NULL, z, numpy.int64(4), numpy.int64(3), numpy.int32(0), numpy.float64(0.0)]
    kernel = fake.xp.RawModule(code=load_source("dense")).get_function("bias_act_forward_f32")
    kernel((1,), (32,), tuple(args))  # as the backend sends it: NULL for "no bias"
    change(args)
    with pytest.raises((TypeError, KernelLaunchError), match=error):
        kernel((1,), (32,), tuple(args))
    with pytest.raises(ValueError, match="NNB_MAX_BLOCK"):
        kernel((1,), (512,), tuple(args))
    with pytest.raises(TypeError, match="tuple"):
        kernel(1, (32,), tuple(args))
