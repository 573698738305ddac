"""Captured training steps of convolutional networks (nnback.step_plan_conv) on the fake
CuPy device: replayed steps and captured validation passes equal eager ones bit for bit.

The equality tests are collected again by test_cuda_gpu.py with ``fake`` replaced by the
real backend, so the same checks run on a GPU when one is lent.
"""

from __future__ import annotations

from typing import Any

import numpy
import pytest
from test_cuda_capture import _assert_same, _fit_both

import nnback as nb
from nnback.backends.cupy_backend import CupyBackend
from nnback.step_plan import StepPlan
from nnback.testing.fake_cupy import make_fake_cupy_backend


@pytest.fixture
def fake(cpu: dict) -> CupyBackend:
    return make_fake_cupy_backend()


def _images(n: int, side: int = 12, classes: int = 3, seed: int = 0) -> tuple[Any, Any]:
    rng = numpy.random.default_rng(seed)
    return rng.standard_normal((n, side * side)), rng.integers(0, classes, n)


def _cnn(
    backend: Any,
    optimizer: Any = None,
    dtype: str = "float32",
    dropout: float = 0.0,
    l2: float = 0.0,
    body: list[Any] | None = None,
    flat: int = 8,
    side: int = 12,
) -> nb.Sequential:
    """The issue's CNN scaled down: 1x12x12 images, Conv(1->4, 3) ReLU MaxPool(2),
    Conv(4->8, 3) ReLU MaxPool(2), Flatten, Dense(8, 16) ReLU, Dense(16, 3) Softmax."""
    if body is None:
        body = [
            nb.Conv2D(1, 4, 3, weight_regularizer_l2=l2),
            nb.ReLU(),
            nb.MaxPool2D(2),
            nb.Conv2D(4, 8, 3, weight_regularizer_l2=l2),
            nb.ReLU(),
            nb.MaxPool2D(2),
        ]
    layers = [nb.Reshape((1, side, side)), *body, nb.Flatten()]
    if dropout:
        layers.append(nb.Dropout(dropout))
    layers += [nb.Dense(flat, 16), nb.ReLU(), nb.Dense(16, 3), nb.Softmax()]
    return nb.Sequential(
        layers,
        loss=nb.CategoricalCrossentropy(),
        optimizer=optimizer if optimizer is not None else nb.Adam(learning_rate=0.01),
        seed=3,
        dtype=dtype,
        backend=backend,
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "optimizer",
    [
        lambda: nb.Adam(learning_rate=0.01, decay=1e-3),
        lambda: nb.SGD(learning_rate=0.05, momentum=0.9),
    ],
    ids=["adam", "sgd"],
)
def test_captured_cnn_epochs_equal_eager_epochs_bit_for_bit(
    fake: Any, dtype: str, optimizer: Any
) -> None:
    # 150 rows, 30 for validation: 3 full batches of 32 and a last one of 24 (its own graph);
    # the validation pass is a captured graph too.
    X, y = _images(150)
    make = lambda: _cnn(fake, optimizer(), dtype, dropout=0.25, l2=1e-3)  # noqa: E731
    eager, captured, h1, h2 = _fit_both(make, X, y, epochs=2, batch_size=32, validation_split=0.2)
    _assert_same(eager, captured, h1, h2)
    # The textbook attributes point at the step's buffers, as after an eager step.
    conv = captured.layers[1]
    assert conv.output.shape[1:] == (4, 10, 10) and conv._cols.shape[0] == 9
    assert captured.layers[3].argmax.shape[1:] == (4, 5, 5)


_VARIANTS = {
    # AvgPool2D, a convolution with stride and padding, overlapping max-pooling windows
    "avgpool stride padding": (
        lambda: [
            nb.Conv2D(1, 4, 3, stride=2, padding=1),  # 12 -> 6
            nb.LeakyReLU(0.1),
            nb.AvgPool2D(2),  # 6 -> 3
            nb.Conv2D(4, 8, (3, 2), padding=(1, 0)),  # 3x3 -> 3x2
            nb.Tanh(),
            nb.MaxPool2D(2, stride=1),  # -> 2x1
        ],
        16,
    ),
    "same padding, overlapping pools, sigmoid": (
        lambda: [
            nb.Conv2D(1, 3, 3, padding="same"),
            nb.Sigmoid(),
            nb.MaxPool2D(3, stride=2),  # 12 -> 5
            nb.Conv2D(3, 4, 2),  # 5 -> 4, no activation
            nb.AvgPool2D(2),  # -> 2
        ],
        16,
    ),
    # Activation layers on images that no convolution fuses: after a pool, after dropout.
    "activations on images": (
        lambda: [
            nb.Conv2D(1, 4, 3),
            nb.MaxPool2D(2),
            nb.ReLU(),
            nb.Conv2D(4, 8, 3),
            nb.Dropout(0.2),
            nb.LeakyReLU(0.05),
            nb.MaxPool2D(2),
        ],
        8,
    ),
}


@pytest.mark.parametrize("variant", list(_VARIANTS))
def test_cnn_layer_variants_equal_eager_bit_for_bit(fake: Any, variant: str) -> None:
    body, flat = _VARIANTS[variant]
    X, y = _images(140, seed=1)
    make = lambda: _cnn(fake, body=body(), flat=flat)  # noqa: E731
    _assert_same(*_fit_both(make, X, y, epochs=2, batch_size=40, validation_split=0.25))


def test_a_dense_layer_before_the_images_gets_its_gradient_through_them(fake: Any) -> None:
    # Dense -> Reshape -> Conv2D: the convolution's input gradient goes back through Reshape.
    X, y = _images(96, side=4, seed=2)

    def make() -> nb.Sequential:
        layers = [
            nb.Dense(16, 36),
            nb.Tanh(),
            nb.Reshape((1, 6, 6)),
            nb.Conv2D(1, 2, 3),
            nb.ReLU(),
            nb.AvgPool2D(2),
            nb.Flatten(),
            nb.Dense(8, 3),
            nb.Softmax(),
        ]
        return nb.Sequential(
            layers, loss="categorical_crossentropy", optimizer="adam", seed=5, backend=fake
        )

    _assert_same(*_fit_both(make, X, y, epochs=2, batch_size=32))


def test_a_cnn_step_is_one_replay_of_its_launches(fake: Any) -> None:
    X, y = _images(96)
    model = _cnn(fake)
    history = model.fit(X, y, epochs=1, batch_size=32, verbose=0, validation_split=1 / 3)
    assert history.step_mode == "captured"
    # 2 training steps and one validation pass, each one replay
    assert fake.xp.streams.graphs_launched == 3
    in_graphs = [launch.kernel for launch in fake.xp.launches if launch.graph]
    step = in_graphs[: in_graphs.index("step_advance") + 1]
    # the validation pass: gathers, forward, loss, books, count, advance
    assert len(in_graphs) == 2 * len(step) + 15
    assert step == [
        "gather_rows_f32",
        "gather_rows_i64",
        "im2col_f32",
        "conv_bias_act_forward_f32",
        "maxpool_forward_f32",
        "im2col_f32",
        "conv_bias_act_forward_f32",
        "maxpool_forward_f32",
        "bias_act_forward_f32",
        "bias_act_forward_f32",
        "softmax_xent_labels_f32_i64",
        "finalize_mean_f32",
        "step_books_f32",
        "count_argmax_labels_f32",
        "act_backward_bias_grad_f32",
        "act_backward_bias_grad_f32",
        "maxpool_backward_f32",
        "conv_act_backward_bias_grad_f32",
        "col2im_f32",
        "maxpool_backward_f32",
        "conv_act_backward_bias_grad_f32",  # the first convolution: no input gradient
        "adam_step_planned_f32",
        "step_advance",
    ], step


def test_the_issue_cnn_at_batch_128_is_36_launches(fake: Any) -> None:
    # Recorded, not run: a capture only records; the ops' count is the plan's.
    layers = [
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
    ]
    model = nb.Sequential(layers, loss="categorical_crossentropy", optimizer="adam", backend=fake)
    model.build()
    X = fake.asarray(numpy.zeros((128, 784), numpy.float32))
    y = fake.asarray(numpy.zeros(128, numpy.int64))
    model.optimizer.flat_state(model.trainable_layers[0].parameter_pack)
    plan = StepPlan(model, X, y, 128, 1)
    plan.capture()
    nodes = plan.graph.node_names()
    gemms = [name for name in nodes if "gemm" in name.lower()]
    # 25 kernels (the bias gradients of both convolutions sum over several chunks: 2 each)
    # and 11 GEMMs (4 forward, 7 backward: no input gradient for the first convolution).
    assert (len(nodes) - len(gemms), len(gemms)) == (25, 11), nodes


def test_changed_geometry_after_capture_makes_a_new_plan(fake: Any) -> None:
    # 7x7 images: Conv(3) with stride 1 and no padding, or stride 2 and padding 2, both 5x5.
    X, y = _images(64, side=7)
    X_device = fake.asarray(X.astype(numpy.float32))

    def make() -> nb.Sequential:
        return _cnn(fake, body=[nb.Conv2D(1, 2, 3), nb.ReLU()], flat=50, side=7)

    model, twin = make(), make()
    model.fit(X_device, y, epochs=1, batch_size=32, verbose=0)
    plans = model._step_plans
    model.fit(X_device, y, epochs=1, batch_size=32, verbose=0)
    assert model._step_plans is plans
    twin.fit(X_device, y, epochs=2, batch_size=32, verbose=0, capture=False)
    for m in (model, twin):
        m.layers[1].stride, m.layers[1].padding = (2, 2), (2, 2)
    history = model.fit(X_device, y, epochs=1, batch_size=32, verbose=0)
    assert history.step_mode == "captured" and model._step_plans is not plans
    twin.fit(X_device, y, epochs=1, batch_size=32, verbose=0, capture=False)
    for a, b in zip(model.get_weights(), twin.get_weights(), strict=True):
        assert numpy.array_equal(a, b)


def test_softmax_on_images_stays_eager_and_says_why(fake: Any) -> None:
    X, y = _images(64, side=4)
    layers = [nb.Reshape((1, 4, 4)), nb.Conv2D(1, 2, 3), nb.Softmax(), nb.Flatten()]
    layers += [nb.Dense(8, 3), nb.Softmax()]
    model = nb.Sequential(
        layers, loss="categorical_crossentropy", optimizer="adam", seed=0, backend=fake
    )
    history = model.fit(X, y, epochs=1, batch_size=32, verbose=0)
    assert history.step_mode.startswith("eager (activation 'softmax' of an array of shape")


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_elementwise_activations_of_images_run_the_row_kernel(fake: Any, act: str) -> None:
    # The same launch as for the array viewed as rows, so the same bits.
    rng = numpy.random.default_rng(4)
    z, dy = (fake.asarray(rng.standard_normal((3, 2, 5, 4)).astype("float32")) for _ in "ab")
    y = fake.activation_forward(z, act)
    dz = fake.activation_backward(dy, y, act)
    assert fake.xp.kernels_launched() == ["bias_act_forward_f32", "act_backward_f32"]
    rows = lambda a: a.reshape(30, 4)  # noqa: E731
    assert numpy.array_equal(
        fake.to_numpy(rows(y)), fake.to_numpy(fake.activation_forward(rows(z), act))
    )
    expected = fake.activation_backward(rows(dy), rows(y), act)
    assert numpy.array_equal(fake.to_numpy(rows(dz)), fake.to_numpy(expected))


@pytest.mark.parametrize("backend_name", ["numpy", "fake"])
def test_conv2d_backward_writes_parameter_gradients_into_given_arrays(
    cpu: dict, backend_name: str
) -> None:
    backend = make_fake_cupy_backend() if backend_name == "fake" else nb.get_backend("numpy")
    rng = numpy.random.default_rng(5)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    x, w = backend.asarray(x), backend.asarray(w)
    b = backend.zeros((1, 4), numpy.float64)
    y, cols = backend.conv2d_forward(x, w, b, (1, 1), (1, 1), "relu")
    dy = backend.asarray(rng.standard_normal(tuple(y.shape)))
    args = (dy, x, w, y, cols, (1, 1), (1, 1), "relu")
    dx, dw, db = backend.conv2d_backward(*args)
    flat = backend.zeros((w.size + 4,), numpy.float64)
    out = (flat[: w.size].reshape(w.shape), flat[w.size :].reshape(1, 4))
    dx2, dw2, db2 = backend.conv2d_backward(*args, out=out)
    assert dw2 is out[0] and db2 is out[1]
    for a, b_ in ((dx, dx2), (dw, dw2), (db, db2)):
        assert numpy.array_equal(backend.to_numpy(a), backend.to_numpy(b_))
