"""Captured training steps (nnback.step_plan) on the fake CuPy device, which models capture.

The equality tests are collected again by test_cuda_gpu.py with ``fake`` replaced by the
real backend, so the same bit-for-bit checks run on a GPU when one is lent.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy
import pytest

import nnback as nb
from nnback.backends.cupy_backend import CupyBackend
from nnback.errors import InputError, TrainingError
from nnback.step_plan import describe_step_mode
from nnback.testing.fake_capture import CaptureError
from nnback.testing.fake_cupy import make_fake_cupy_backend


@pytest.fixture
def fake(cpu: dict) -> CupyBackend:
    return make_fake_cupy_backend()


def _data(n: int, features: int, classes: int, seed: int = 0) -> tuple[Any, Any]:
    rng = numpy.random.default_rng(seed)
    return rng.standard_normal((n, features)), rng.integers(0, classes, n)


def _model(
    backend: Any, optimizer: Any = "adam", dtype: str = "float32", **kw: Any
) -> nb.Sequential:
    layers = [nb.Dense(12, 16, weight_initializer="he", weight_regularizer_l2=kw.get("l2", 0.0))]
    layers += [nb.ReLU()]
    if kw.get("dropout"):
        layers.append(nb.Dropout(kw["dropout"]))
    if kw.get("tanh"):
        layers += [nb.Dropout(0.0), nb.Tanh()]  # an activation layer the Dense cannot fuse
    layers += [nb.Dense(16, 3, weight_regularizer_l1=kw.get("l1", 0.0)), nb.Softmax()]
    loss = nb.CategoricalCrossentropy()
    return nb.Sequential(
        layers, loss=loss, optimizer=optimizer, seed=3, dtype=dtype, backend=backend
    )


def _fit_both(
    make: Any, X: Any, y: Any, **fit: Any
) -> tuple[nb.Sequential, nb.Sequential, Any, Any]:
    eager, captured = make(), make()
    h1 = eager.fit(X, y, verbose=0, capture=False, **fit)
    h2 = captured.fit(X, y, verbose=0, capture=True, **fit)
    return eager, captured, h1, h2


def _assert_same(eager: nb.Sequential, captured: nb.Sequential, h1: Any, h2: Any) -> None:
    assert h1.step_mode.startswith("eager") and h2.step_mode == "captured", h2.step_mode
    for a, b in zip(eager.get_weights(), captured.get_weights(), strict=True):
        assert numpy.array_equal(a, b), "captured parameters differ from eager ones"
    for key in ("loss", "accuracy", "learning_rate", "val_loss", "val_accuracy"):
        assert h1.history.get(key) == h2.history.get(key), key
    assert eager.optimizer.iterations == captured.optimizer.iterations


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "optimizer",
    [
        lambda: nb.Adam(learning_rate=0.01, decay=1e-3),
        lambda: nb.SGD(learning_rate=0.1, momentum=0.9),
        lambda: nb.SGD(learning_rate=0.1, decay=1e-2),
        lambda: nb.AdaGrad(learning_rate=0.05),
        lambda: nb.RMSprop(learning_rate=0.01),
    ],
    ids=["adam", "momentum", "sgd", "adagrad", "rmsprop"],
)
def test_captured_epochs_equal_eager_epochs_bit_for_bit(
    fake: Any, dtype: str, optimizer: Any
) -> None:
    X, y = _data(700, 12, 3)  # 700 = 10 * 64 + 60: a shorter last batch, its own graph
    make = lambda: _model(fake, optimizer(), dtype, dropout=0.25, l1=1e-4, l2=1e-3)  # noqa: E731
    _assert_same(*_fit_both(make, X, y, epochs=3, batch_size=64, validation_split=0.2))


def test_one_hot_targets_no_shuffle_activation_layers_and_batches_over_256(
    fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nnback import training

    monkeypatch.setattr(training, "_EVALUATION_BATCH", 128)  # 300 validation rows: 2 + tail
    X, y = _data(1500, 12, 3, seed=1)
    one_hot = numpy.eye(3)[y]
    make = lambda: _model(fake, nb.Adam(learning_rate=0.01), tanh=True)  # noqa: E731
    # 300 rows: the bias gradient sums its rows in chunks (a workspace of the plan).
    _assert_same(
        *_fit_both(make, X, one_hot, epochs=2, batch_size=300, shuffle=False, validation_split=0.2)
    )


@pytest.mark.parametrize("loss", ["mse", "mae", "binary_crossentropy"])
def test_elementwise_losses_and_their_metrics(fake: Any, loss: str) -> None:
    rng = numpy.random.default_rng(2)
    X = rng.standard_normal((500, 6))
    target = (X[:, :1] > 0).astype(float) if loss == "binary_crossentropy" else numpy.sin(X[:, :2])

    def make() -> nb.Sequential:
        out = [nb.Sigmoid()] if loss == "binary_crossentropy" else [nb.Linear()]
        width = 1 if loss == "binary_crossentropy" else 2
        layers = [nb.Dense(6, 8), nb.Tanh(), nb.Dense(8, width), *out]
        return nb.Sequential(layers, loss=loss, optimizer=nb.Adam(0.01), seed=0, backend=fake)

    _assert_same(*_fit_both(make, X, target, epochs=2, batch_size=50))


def test_a_step_is_one_graph_replay_of_nnback_launches_only(fake: Any) -> None:
    X, y = _data(256, 12, 3)
    model = _model(fake)
    history = model.fit(X, y, epochs=1, batch_size=64, verbose=0)
    assert history.step_mode == "captured"
    assert fake.xp.streams.graphs_launched == 4
    in_graphs = [launch.kernel for launch in fake.xp.launches if launch.graph]
    per_step = len(in_graphs) // 4
    # gather x2, 2 x (GEMM epilogue), loss + finalize, books, count, 2 bias grads, adam, advance
    assert per_step == 12, in_graphs[:per_step]
    assert in_graphs[:2] == ["gather_rows_f32", "gather_rows_i64"]
    assert in_graphs[per_step - 1] == "step_advance"


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the point of it
def test_a_non_finite_loss_stops_before_its_update(fake: Any) -> None:
    # A learning rate of 1e150 overflows the weights within a few steps; the loss that
    # follows is NaN. Captured and eager runs stop at the same step, with the same weights.
    X, y = _data(640, 12, 3)
    runs = []
    for capture in (False, True):
        model = _model(fake, nb.SGD(learning_rate=1e150), dtype="float64")
        with pytest.raises(TrainingError, match="the loss became") as info:
            model.fit(X, y, epochs=1, batch_size=64, verbose=0, capture=capture)
        runs.append((info.value.step, str(info.value), model))
    (step, message, eager), (step2, message2, captured) = runs
    assert step is not None and step == step2 and 1 < step <= 10
    assert message == message2
    assert eager.optimizer.iterations == captured.optimizer.iterations
    for a, b in zip(eager.get_weights(), captured.get_weights(), strict=True):
        assert numpy.array_equal(a, b)
        assert numpy.isfinite(b).all()


def test_per_batch_callbacks_get_every_step_loss(fake: Any) -> None:
    X, y = _data(300, 12, 3)
    seen: dict[str, list[float]] = {"eager": [], "captured": []}
    for mode, capture in (("eager", False), ("captured", True)):
        callback = nb.callbacks.LambdaCallback(
            on_batch_end=lambda s, logs, m=mode: seen[m].append(logs["loss"])
        )
        _model(fake).fit(
            X, y, epochs=1, batch_size=32, verbose=0, callbacks=[callback], capture=capture
        )
    assert seen["eager"] == seen["captured"] and len(seen["eager"]) == 10


def test_interrupt_keeps_the_finished_steps(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from nnback import training

    calls = {"n": 0}
    original = training._InterruptGuard.check

    def check(self: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            self.pending = True  # Ctrl-C during step 3
        original(self)

    monkeypatch.setattr(training._InterruptGuard, "check", check)
    X, y = _data(640, 12, 3)
    model = _model(fake)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(X, y, epochs=2, batch_size=64, verbose=0)
    assert history.interrupted and history.interrupted_at == (1, 3)
    assert model.optimizer.iterations == 3


def test_mode_switches(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _data(200, 12, 3)
    assert _model(fake).fit(X, y, batch_size=32, verbose=0).step_mode == "captured"
    history = _model(fake).fit(X, y, batch_size=32, verbose=0, clip_norm=1.0)
    assert history.step_mode.startswith("eager (clip_norm")
    monkeypatch.setenv("NNBACK_CAPTURE", "0")
    assert _model(fake).fit(X, y, batch_size=32, verbose=0).step_mode == "eager (NNBACK_CAPTURE=0)"
    assert _model(fake).fit(X, y, batch_size=32, verbose=0, capture=True).step_mode == "captured"
    monkeypatch.setenv("NNBACK_CAPTURE", "maybe")
    with pytest.raises(InputError, match="NNBACK_CAPTURE"):
        _model(fake).fit(X, y, batch_size=32, verbose=0)
    monkeypatch.delenv("NNBACK_CAPTURE")
    with pytest.raises(InputError, match="capture"):
        _model(fake).fit(X, y, batch_size=32, verbose=0, capture="yes")  # type: ignore[arg-type]
    numpy_history = _model("numpy").fit(X, y, batch_size=32, verbose=0)
    assert numpy_history.step_mode.startswith("eager (the numpy backend")
    # nnback info's line for each backend
    assert describe_step_mode(fake).startswith("captured: each full-size step replays")
    assert describe_step_mode(nb.get_backend("numpy")).startswith("eager (the numpy backend")
    monkeypatch.setenv("NNBACK_CAPTURE", "0")
    assert describe_step_mode(fake) == "eager (NNBACK_CAPTURE=0)"


def test_a_custom_optimizer_runs_eagerly_and_says_why(fake: Any) -> None:
    class Halved(nb.SGD):
        pass

    X, y = _data(200, 12, 3)
    history = _model(fake, Halved(0.1)).fit(X, y, batch_size=32, verbose=0)
    assert history.step_mode == "eager (optimizer Halved has no planned kernel)"


def test_the_plan_follows_the_model_between_fits_and_backends(fake: Any, tmp_path: Any) -> None:
    X, y = _data(320, 12, 3)
    model, twin = _model(fake), _model(fake)
    model.fit(X, y, epochs=1, batch_size=64, verbose=0)
    twin.fit(X, y, epochs=1, batch_size=64, verbose=0, capture=False)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = nb.load_model(path, backend=make_fake_cupy_backend())
    model.to_backend("numpy").to_backend(make_fake_cupy_backend())
    for m in (model, loaded, twin):
        m.fit(X, y, epochs=1, batch_size=64, verbose=0, capture=m is not twin)
    for a, b, c in zip(model.get_weights(), loaded.get_weights(), twin.get_weights(), strict=True):
        assert numpy.array_equal(a, c) and numpy.array_equal(b, c)


# ---- the fake device refuses what CUDA refuses while capturing ------------------------------
def test_capture_refuses_host_reads_syncs_allocations_and_other_streams(fake: Any) -> None:
    xp = fake.xp
    x = fake.asarray(numpy.ones((4, 4), numpy.float32))
    out = fake.matmul(x, x)  # the cuBLAS handle, bound to the default stream
    stream = xp.cuda.Stream(non_blocking=True)
    refused = [
        lambda: fake.to_numpy(x),
        lambda: float(fake.sum(x)),
        lambda: fake.synchronize(),
        lambda: xp.empty((2,), numpy.float32),
        lambda: x + x,
    ]
    with stream:
        stream.begin_capture()
        for action in refused:
            with pytest.raises(CaptureError):
                action()
        with pytest.raises(CaptureError, match="cublasSetStream"):
            fake.matmul(x, x, out=out)  # its stream must be set before the capture begins
        graph = stream.end_capture()
    assert graph.nodes == []
    with pytest.raises(CaptureError, match="default"):
        xp.cuda.Stream(null=True).begin_capture()


def test_a_captured_launch_runs_only_when_replayed(fake: Any) -> None:
    xp = fake.xp
    x = fake.asarray(numpy.arange(6, dtype=numpy.float32).reshape(2, 3))
    y = fake.zeros((2, 3), numpy.float32)
    out = fake.zeros((2, 2), numpy.float32)
    gemm = fake._capture_gemm()
    fake._kernels.bias_activation(x, None, y, "relu", 0.0)  # loads the kernel before capture
    stream = xp.cuda.Stream(non_blocking=True)
    with stream:
        gemm.prepare()
        stream.begin_capture()
        fake._kernels.bias_activation(x, None, y, "tanh", 0.0)
        fake.matmul(x, x.T, out=out)
        graph = stream.end_capture()
    assert graph.node_names() == ["bias_act_forward_f32", "cublasGemm"]
    assert numpy.array_equal(fake.to_numpy(y), numpy.maximum(numpy.arange(6.0), 0).reshape(2, 3))
    assert not fake.to_numpy(out).any()
    graph.launch()
    expected = numpy.arange(6, dtype=numpy.float32).reshape(2, 3)
    assert numpy.array_equal(fake.to_numpy(y), numpy.tanh(expected))
    assert numpy.array_equal(fake.to_numpy(out), expected @ expected.T)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cublas_layouts_match_numpy(fake: Any, dtype: str) -> None:
    rng = numpy.random.default_rng(5)
    a, b = rng.standard_normal((7, 5)).astype(dtype), rng.standard_normal((5, 3)).astype(dtype)
    c = rng.standard_normal((7, 3)).astype(dtype)
    A, B, C = (fake.asarray(v) for v in (a, b, c))
    gemms = fake.xp.cublas_library.gemms
    cases = [(A, B, a @ b), (A.T, C, a.T @ c), (C, B.T, c @ b.T), (B.T, A.T, b.T @ a.T)]
    for left, right, expected in cases:
        numpy.testing.assert_allclose(fake.to_numpy(fake.matmul(left, right)), expected, rtol=1e-5)
    assert fake.xp.cublas_library.gemms == gemms + len(cases)
    strided = fake.asarray(rng.standard_normal((7, 10)).astype(dtype))[:, ::2]  # not contiguous
    numpy.testing.assert_allclose(
        fake.to_numpy(fake.matmul(strided, B)), fake.to_numpy(strided).copy() @ b, rtol=1e-5
    )
    assert fake.xp.cublas_library.gemms == gemms + len(cases)  # the reference took it


def test_cublas_in_a_capture_needs_its_workspace_set_after_the_stream(fake: Any) -> None:
    # cublasSetStream puts a handle back on cuBLAS's own workspace pool; a GEMM captured
    # then could allocate during the capture, so the fake refuses it, as the backend's
    # CublasGemm sets its workspace again after every change of stream.
    import ctypes

    lib, xp = fake.xp.cublas_library, fake.xp
    handle = ctypes.c_void_p()
    assert lib.cublasCreate_v2(ctypes.pointer(handle)) == 0
    workspace = xp.empty((1024,), numpy.uint8)
    stream = xp.cuda.Stream(non_blocking=True)
    assert lib.cublasSetWorkspace_v2(handle, ctypes.c_void_p(workspace.data.ptr), 1024) == 0
    assert lib.cublasSetStream_v2(handle, ctypes.c_void_p(stream.ptr)) == 0
    a = fake.asarray(numpy.ones((2, 2), numpy.float32))
    one, zero = ctypes.pointer(ctypes.c_float(1.0)), ctypes.pointer(ctypes.c_float(0.0))
    ptr = ctypes.c_void_p(a.data.ptr)
    with stream:
        stream.begin_capture()
        with pytest.raises(CaptureError, match="workspace"):
            lib.cublasSgemm_v2(handle, 0, 0, 2, 2, 2, one, ptr, 2, ptr, 2, zero, ptr, 2)
        stream.end_capture()
    assert lib.cublasSgemm_v2(handle, 0, 0, 2, 2, 2, one, ptr, 1, ptr, 2, zero, ptr, 2) == 7


def test_column_major_data_are_refused_by_the_plan_rather_than_misread(fake: Any) -> None:
    from nnback.step_plan import PlanUnsupported, StepPlan

    X, y = _data(200, 12, 3)
    model = _model(fake).build()
    columns = fake.asarray(numpy.asfortranarray(X.astype(numpy.float32)))
    assert not columns.flags.c_contiguous
    with pytest.raises(PlanUnsupported, match="not C-contiguous"):
        StepPlan(model, columns, fake.asarray(y), 32, 6)


def test_a_plan_is_used_again_by_the_next_fit_only_while_it_fits(fake: Any) -> None:
    X, y = _data(320, 12, 3)
    model, twin = _model(fake), _model(fake)
    X_device = fake.asarray(X.astype(numpy.float32))
    model.fit(X_device, y, epochs=1, batch_size=64, verbose=0)
    plans = model._step_plans
    model.fit(X_device, y, epochs=1, batch_size=64, verbose=0)
    assert model._step_plans is plans  # the same data: no new capture
    model.optimizer.beta_1 = 0.8  # baked into the planned kernel's arguments
    model.fit(X_device, y, epochs=1, batch_size=64, verbose=0)
    assert model._step_plans is not plans
    twin.fit(X_device, y, epochs=2, batch_size=64, verbose=0, capture=False)
    twin.optimizer.beta_1 = 0.8
    twin.fit(X_device, y, epochs=1, batch_size=64, verbose=0, capture=False)
    for a, b in zip(model.get_weights(), twin.get_weights(), strict=True):
        assert numpy.array_equal(a, b)
    # What copy.deepcopy and pickle take of the model leaves the device's graphs behind.
    assert not {"_step_plans", "_fit_targets"} & set(model.__getstate__())
