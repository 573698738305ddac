"""Convolutional networks in a Sequential model: fit, evaluate, predict, fusion, shapes,
trajectories across backends, the strict and fake devices, files and moving backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy
import pytest
from model_helpers import assert_weights_equal

import nnback as nb
from nnback.testing import StrictBackend
from nnback.tolerances import Tolerance, get_tolerance

N, SIDE, CLASSES = 24, 8, 3


def _data(n: int = N, seed: int = 0) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Rows of SIDE * SIDE pixels in [0, 1] whose class is the brightest third of the image."""
    rng = numpy.random.default_rng(seed)
    X = rng.uniform(0.0, 1.0, size=(n, SIDE * SIDE)) * 0.5
    y = numpy.arange(n) % CLASSES
    rng.shuffle(y)
    for row, label in zip(X.reshape(n, SIDE, SIDE), y, strict=True):
        row[:, label * 2 : label * 2 + 3] += 0.5
    return X, y


def _cnn(
    backend: Any = None, dtype: str = "float32", seed: int = 7, **kwargs: Any
) -> nb.Sequential:
    return nb.Sequential(
        [
            nb.Reshape((1, SIDE, SIDE)),
            nb.Conv2D(1, 4, 3, padding="same", weight_regularizer_l2=1e-3),
            nb.ReLU(),
            nb.MaxPool2D(2),
            nb.Conv2D(4, 6, 3, stride=1),
            nb.Tanh(),
            nb.AvgPool2D(2, stride=1),
            nb.Flatten(),
            nb.Dense(6, 8, weight_initializer="he"),
            nb.ReLU(),
            nb.Dense(8, CLASSES, weight_initializer="xavier"),
            nb.Softmax(),
        ],
        loss=nb.CategoricalCrossentropy(),
        optimizer=kwargs.pop("optimizer", nb.SGD(0.2, momentum=0.5)),
        seed=seed,
        dtype=dtype,
        backend=backend,
        **kwargs,
    )


def test_fit_evaluate_predict(backend: Any) -> None:
    X, y = _data()
    model = _cnn(backend)
    history = model.fit(X, y, epochs=20, batch_size=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    scores = model.evaluate(X, y)
    assert scores["accuracy"] >= 0.9, scores
    probabilities = model.predict(X, batch_size=5)
    assert probabilities.shape == (N, CLASSES) and probabilities.dtype == numpy.float32
    numpy.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (model.predict_classes(X) == numpy.argmax(probabilities, axis=1)).all()
    # Captured where the backend can (cupy, the fake device included), else eager steps.
    capturable = model.backend.capture_unavailable() is None
    assert (history.step_mode == "captured") == capturable, history.step_mode


def test_the_issue_architecture_trains_on_every_backend(backend: Any) -> None:
    """The CNN of issue 14 (Fashion-MNIST's shapes), one short epoch of random data."""
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
        loss="categorical_crossentropy",
        optimizer="adam",
        seed=0,
        backend=backend,
    )
    rng = numpy.random.default_rng(0)
    X, y = rng.random((8, 784)), numpy.arange(8) % 10
    model.fit(X, y, epochs=1, batch_size=4, verbose=0)
    assert numpy.isfinite(model.evaluate(X, y)["loss"])
    assert model.predict(X).shape == (8, 10)
    assert [type(layer).__name__ for layer in model.steps] == [
        "Reshape", "Conv2D", "MaxPool2D", "Conv2D", "MaxPool2D", "Flatten", "Dense", "Dense",
    ]  # fmt: skip
    assert model.layers[1].fused_activation == "relu"
    assert model.layers[1].weights.shape == (32, 1, 3, 3)
    summary = model.summary()
    for line in ("(32, 26, 26)", "(64, 5, 5)", "1600", "225,034"):
        assert line in summary, summary
    assert "    320" in summary.splitlines()[2]


def _trajectory_tolerance(dtype: str, backend_name: str, steps: int) -> Tolerance:
    """``steps`` times the largest table error of the ops of one step (the rule of
    tests/model/test_model_trajectory.py, with the convolution's ops)."""
    ops = (
        "conv2d_forward", "conv2d_backward", "maxpool2d_backward", "avgpool2d_forward",
        "avgpool2d_backward", "dense_forward", "dense_backward", "softmax_crossentropy",
        "sgd_update_inplace",
    )  # fmt: skip
    tolerances = [get_tolerance(op, dtype, backend_name) for op in ops]
    return Tolerance(
        rtol=steps * max(t.rtol for t in tolerances), atol=steps * max(t.atol for t in tolerances)
    )


def _train(backend: Any, dtype: str) -> tuple[list[Any], list[Any]]:
    X, y = _data()
    model = _cnn(backend, dtype).build()
    initial = model.get_weights()
    model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    return initial, model.get_weights()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_backend_follows_the_numpy_trajectory(backend: Any, dtype: str) -> None:
    reference_initial, reference_final = _train("numpy", dtype)
    initial, final = _train(backend, dtype)
    assert_weights_equal(initial, reference_initial, "initial weights (drawn on the host)")
    tolerance = _trajectory_tolerance(dtype, backend.name, 6)
    for index, (got, want) in enumerate(zip(final, reference_final, strict=True)):
        assert got.dtype == numpy.dtype(dtype) and got.shape == want.shape
        numpy.testing.assert_allclose(
            got, want, rtol=tolerance.rtol, atol=tolerance.atol, err_msg=f"parameter {index}"
        )
        assert not numpy.array_equal(got, initial[index]) or index % 2  # weights trained


def test_parameters_live_in_the_flat_buffer() -> None:
    X, y = _data()
    model = _cnn("numpy")
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    conv = model.layers[1]
    pack = conv.parameter_pack
    assert pack is not None and conv.weights.shape == (4, 1, 3, 3)
    assert numpy.shares_memory(conv.weights, pack.param)
    assert numpy.shares_memory(conv.dweights, pack.grad)
    assert pack.param.shape == (sum(layer.parameter_count() for layer in model.layers),)


def test_strict_device_moves_only_what_it_must() -> None:
    strict = StrictBackend()
    counters = strict.xp
    X, y = _data(20)
    model = _cnn(strict).build()
    counters.reset_counters()
    model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    # As for dense models: X, y and a permutation per epoch in; one loss read per step, the
    # accuracy, the weights' finiteness and the (L2) penalty once per epoch out.
    assert counters.counters() == {"host_syncs": 0, "to_device": 2 + 2, "to_host": 6 + 3 * 2}


def test_fake_cupy_captures_cnn_steps_close_to_numpy() -> None:
    # Bit-for-bit equality with eager steps is tests/cuda/test_cuda_capture_conv.py's.
    from nnback.testing.fake_cupy import fake_cupy_backend_param

    backend = fake_cupy_backend_param().values[0].load()
    X, y = _data()
    model = _cnn(backend)
    history = model.fit(X, y, epochs=2, batch_size=8, verbose=0, capture=True)
    assert history.step_mode == "captured"
    assert model.__dict__.get("_step_plans")
    reference = _cnn("numpy")
    reference.fit(X, y, epochs=2, batch_size=8, verbose=0)
    for got, want in zip(model.get_weights(), reference.get_weights(), strict=True):
        numpy.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_save_load_round_trip(tmp_path: Path) -> None:
    X, y = _data()
    model = _cnn("numpy", optimizer=nb.Adam(0.01))
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "cnn.nnb"
    model.save(path)
    loaded = nb.load_model(path)
    assert loaded.get_config() == model.get_config()
    assert [repr(a) for a in loaded.layers] == [repr(a) for a in model.layers]
    assert_weights_equal(loaded.get_weights(), model.get_weights(), "loaded weights")
    numpy.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    # Optimizer state and generator come back too: training goes on identically.
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    loaded.fit(X, y, epochs=1, batch_size=8, verbose=0)
    assert_weights_equal(loaded.get_weights(), model.get_weights(), "after one more epoch")


def test_to_backend_moves_conv_parameters_and_state() -> None:
    X, y = _data()
    model = _cnn("numpy", optimizer=nb.Adam(0.01))
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    before = model.predict(X)
    model.to_backend(StrictBackend())
    assert not isinstance(model.layers[1].weights, numpy.ndarray)
    assert model.layers[1].weights.shape == (4, 1, 3, 3)
    numpy.testing.assert_allclose(model.predict(X), before, rtol=1e-6)
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)


def test_fusion_follows_the_layer_order() -> None:
    model = nb.Sequential(
        [
            nb.Reshape((1, 6, 6)),
            nb.Conv2D(1, 2, 3),
            nb.LeakyReLU(0.2),
            nb.Conv2D(2, 2, 3),
            nb.MaxPool2D(2),
            nb.Sigmoid(),
            nb.Flatten(),
            nb.Dense(2, 2),
            nb.Softmax(),
        ],
        loss="categorical_crossentropy",
    ).build("numpy")
    assert (model.layers[1].fused_activation, model.layers[1].fused_alpha) == ("leaky_relu", 0.2)
    assert model.layers[3].fused_activation == "linear"  # a pool stands between
    assert sum(isinstance(s, nb.Sigmoid) for s in model.steps) == 1
    # The sigmoid runs on the pooled 4-D maps, as a layer of its own.
    out = model.predict(numpy.linspace(-1, 1, 72).reshape(2, 36))
    assert out.shape == (2, 2)


def test_initializers_read_the_fans_of_conv_weights() -> None:
    rng = numpy.random.default_rng(0)
    shape = (64, 32, 3, 3)  # fan_in 32 * 9 = 288, fan_out 64 * 9 = 576
    assert nb.initializers.fans(shape) == (288, 576)
    assert nb.initializers.fans((5, 7)) == (5, 7)
    he = nb.He()(shape, rng, numpy.float64)
    assert abs(he.std() / numpy.sqrt(2 / 288) - 1) < 0.03
    xavier = nb.Xavier()(shape, rng, numpy.float64)
    assert abs(xavier.std() / numpy.sqrt(1 / 288) - 1) < 0.03
    glorot = nb.GlorotUniform()(shape, rng, numpy.float64)
    assert numpy.abs(glorot).max() <= numpy.sqrt(6 / (288 + 576))
    assert numpy.abs(glorot).max() > 0.99 * numpy.sqrt(6 / (288 + 576))
    with pytest.raises(nb.InputError, match="4-D"):
        nb.He()((2, 3, 4), rng)
    conv = nb.Conv2D(32, 64, 3)
    conv.build(nb.get_backend("numpy"), "float64", rng)
    assert abs(conv.weights.std() / numpy.sqrt(2 / 288) - 1) < 0.05


def test_inference_batches_bound_the_im2col_memory() -> None:
    model = _cnn("numpy")
    # The largest im2col matrix: the second conv's 4 * 9 rows by 2 * 2 outputs per sample.
    assert model.inference_batch() == min(8192, (1 << 24) // (4 * 9 * 2 * 2))
    big = nb.Sequential([nb.Reshape((1, 28, 28)), nb.Conv2D(1, 32, 3), nb.ReLU(),
                         nb.MaxPool2D(2), nb.Conv2D(32, 64, 3), nb.Flatten(),
                         nb.Dense(64 * 11 * 11, 10), nb.Softmax()])  # fmt: skip
    assert big.inference_batch() == (1 << 24) // (32 * 9 * 11 * 11)
    X, y = _data()
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    numpy.testing.assert_allclose(model.predict(X), model.predict(X, batch_size=7), rtol=1e-6)
    dense = nb.Sequential([nb.Dense(3, 2), nb.Softmax()])
    assert dense.inference_batch() == 8192
