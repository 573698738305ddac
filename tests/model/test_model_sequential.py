"""The Sequential API: fit, evaluate, predict, targets, dtypes and weights."""

from __future__ import annotations

import math
from typing import Any

import numpy
import pytest
from model_helpers import (
    assert_weights_equal,
    classification_data,
    classifier,
    regression_data,
    regressor,
)

import nnback as nb
from nnback.testing import STRICT


def test_fit_returns_a_history_with_every_key() -> None:
    X, y = classification_data(n=30)
    Xv, yv = classification_data(n=12, seed=1)
    model = classifier()
    history = model.fit(X, y, epochs=3, batch_size=8, validation_data=(Xv, yv), verbose=0)
    assert isinstance(history, nb.History)
    assert model.history is history
    assert history.epoch == [0, 1, 2] and len(history) == 3
    keys = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "samples_per_second")
    for key in keys:
        assert key in history, key
        assert len(history[key]) == 3, key
        assert all(math.isfinite(v) for v in history[key]), key
    assert all(0.0 <= a <= 1.0 for a in history["accuracy"] + history["val_accuracy"])
    assert all(s > 0 for s in history["samples_per_second"])
    assert history["learning_rate"] == [0.5] * 3
    assert history.last()["val_loss"] == history["val_loss"][-1]


def test_no_validation_keys_without_validation() -> None:
    X, y = classification_data(n=16)
    history = classifier().fit(X, y, epochs=2, batch_size=8, verbose=0)
    assert "val_loss" not in history and "val_accuracy" not in history


def test_validation_data_is_scored_like_evaluate() -> None:
    X, y = classification_data(n=30)
    Xv, yv = classification_data(n=12, seed=1)
    model = classifier(weight_regularizer_l2=1e-2)
    history = model.fit(X, y, epochs=2, batch_size=10, validation_data=(Xv, yv), verbose=0)
    scores = model.evaluate(Xv, yv)
    assert history["val_loss"][-1] == pytest.approx(scores["loss"], rel=1e-12)
    assert history["val_accuracy"][-1] == scores["accuracy"]


def test_validation_split_holds_out_the_last_samples() -> None:
    X, y = classification_data(n=40)
    split = classifier(seed=5)
    history = split.fit(X, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0)
    alone = classifier(seed=5)
    alone.fit(X[:30], y[:30], epochs=2, batch_size=8, verbose=0)
    # Training saw exactly the first 30 samples (same shuffles, same steps) ...
    assert_weights_equal(split.get_weights(), alone.get_weights())
    # ... and the last 10 were the validation set.
    assert history["val_loss"][-1] == pytest.approx(split.evaluate(X[30:], y[30:])["loss"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_evaluate_loss_is_data_plus_regularization(dtype: str) -> None:
    X, y = classification_data(n=20)
    model = classifier(
        dtype=dtype,
        weight_regularizer_l1=1e-2,
        weight_regularizer_l2=2e-2,
        bias_regularizer_l2=1e-2,
    )
    model.fit(X, y, epochs=2, batch_size=5, verbose=0)
    scores = model.evaluate(X, y)
    assert set(scores) == {"loss", "data_loss", "regularization_loss", "accuracy"}
    assert scores["loss"] == pytest.approx(scores["data_loss"] + scores["regularization_loss"])
    w1, b1, w2, b2 = (w.astype(numpy.float64) for w in model.get_weights())
    penalty = (
        1e-2 * (numpy.abs(w1).sum() + numpy.abs(w2).sum())
        + 2e-2 * ((w1**2).sum() + (w2**2).sum())
        + 1e-2 * ((b1**2).sum() + (b2**2).sum())
    )
    rtol = 1e-5 if dtype == "float32" else 1e-12
    assert scores["regularization_loss"] == pytest.approx(penalty, rel=rtol)
    probabilities = model.predict(X).astype(numpy.float64)
    data_loss = -numpy.mean(numpy.log(probabilities[numpy.arange(20), y]))
    assert scores["data_loss"] == pytest.approx(data_loss, rel=rtol)
    assert scores["accuracy"] == numpy.mean(probabilities.argmax(axis=1) == y)
    small_batches = model.evaluate(X, y, batch_size=3)
    assert small_batches["loss"] == pytest.approx(scores["loss"], rel=rtol)
    assert small_batches["accuracy"] == scores["accuracy"]


def test_predict_returns_numpy_or_backend_arrays(backend: Any) -> None:
    X, y = classification_data(n=12)
    model = classifier(backend=backend)
    model.fit(X, y, epochs=1, batch_size=4, verbose=0)
    host = model.predict(X)
    assert isinstance(host, numpy.ndarray)
    assert host.shape == (12, 3) and host.dtype == numpy.float32
    on_device = model.predict(X, to_numpy=False)
    assert backend.is_array(on_device)
    if backend.name == STRICT:
        assert not isinstance(on_device, numpy.ndarray)
    numpy.testing.assert_array_equal(backend.to_numpy(on_device), host)
    numpy.testing.assert_array_equal(model.predict(X, batch_size=5), host)


def test_predictions_are_not_aliased_to_workspaces(backend: Any) -> None:
    X, y = classification_data(n=12)
    X2, _ = classification_data(n=12, seed=9)
    model = classifier(backend=backend)
    first = model.predict(X)
    kept = first.copy()
    first_device = model.predict(X, to_numpy=False)
    second = model.predict(X2)
    model.predict(X2, to_numpy=False)
    assert not numpy.array_equal(second, kept)
    numpy.testing.assert_array_equal(first, kept)
    numpy.testing.assert_array_equal(backend.to_numpy(first_device), kept)
    model.fit(X, y, epochs=2, batch_size=4, verbose=0)  # training reuses its own workspaces
    numpy.testing.assert_array_equal(first, kept)
    numpy.testing.assert_array_equal(backend.to_numpy(first_device), kept)


def test_batch_size_that_does_not_divide_n() -> None:
    X, y = classification_data(n=10)
    model = classifier()
    steps: list[float] = []
    history = model.fit(
        X,
        y,
        epochs=2,
        batch_size=4,
        callbacks=[nb.LambdaCallback(on_batch_end=lambda step, logs: steps.append(logs["loss"]))],
        verbose=0,
    )
    assert len(steps) == 6 and model.optimizer.iterations == 6
    # The epoch's data loss weights each batch by its size: 4, 4, then the last 2.
    for epoch in range(2):
        a, b, c = steps[3 * epoch : 3 * epoch + 3]
        assert history["data_loss"][epoch] == pytest.approx((4 * a + 4 * b + 2 * c) / 10)


def test_shuffle_false_takes_the_batches_in_order() -> None:
    X, y = classification_data(n=10)
    model = classifier(seed=1)
    manual = classifier(seed=1)
    manual.build()
    model.fit(X, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    backend = manual.backend
    for _ in range(2):
        for start in (0, 4, 8):
            xb = backend.asarray(X[start : start + 4].astype(numpy.float32))
            output = manual.forward(xb, training=True)
            _, grad = manual.loss_and_gradient(output, backend.asarray(y[start : start + 4]))
            manual.backward(grad)
            manual.optimizer.step(manual.trainable_layers)
    assert_weights_equal(model.get_weights(), manual.get_weights())
    shuffled = classifier(seed=1)
    shuffled.fit(X, y, epochs=2, batch_size=4, verbose=0)
    assert not numpy.array_equal(shuffled.get_weights()[0], model.get_weights()[0])


def test_float64_models_train_in_float64() -> None:
    X, y = classification_data(n=16)
    wide = classifier(dtype="float64", seed=2)
    narrow = classifier(dtype="float32", seed=2)
    wide.fit(X, y, epochs=3, batch_size=4, verbose=0)
    narrow.fit(X, y, epochs=3, batch_size=4, verbose=0)
    assert all(w.dtype == numpy.float64 for w in wide.get_weights())
    assert wide.predict(X).dtype == numpy.float64
    for w64, w32 in zip(wide.get_weights(), narrow.get_weights(), strict=True):
        # The same initial values (drawn in float64, then rounded); after 12 steps the two
        # differ by float32 rounding only: ~1e-6 relative per step, not 1e-3.
        numpy.testing.assert_allclose(w32, w64, rtol=1e-4, atol=1e-5)
        assert not numpy.array_equal(w32.astype(numpy.float64), w64)


def test_integer_and_one_hot_labels_train_identically() -> None:
    X, y = classification_data(n=12)
    by_index, by_row = classifier(seed=3), classifier(seed=3)
    h1 = by_index.fit(X, y, epochs=3, batch_size=4, verbose=0)
    h2 = by_row.fit(X, numpy.eye(3)[y], epochs=3, batch_size=4, verbose=0)
    # softmax - one_hot subtracts the same 1 from the same entry: bit-identical gradients.
    assert_weights_equal(by_index.get_weights(), by_row.get_weights())
    numpy.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-6)
    assert h1["accuracy"] == h2["accuracy"]


def _binary_model() -> nb.Sequential:
    return nb.Sequential(
        [nb.Dense(3, 8, weight_initializer="xavier"), nb.Tanh(), nb.Dense(8, 1), nb.Sigmoid()],
        loss=nb.BinaryCrossentropy(),
        optimizer=nb.Adam(learning_rate=0.05),
        seed=0,
    )


def test_binary_crossentropy_with_one_sigmoid_output_and_flat_targets() -> None:
    X, labels = classification_data(n=24, classes=2)
    flat = _binary_model()
    column = _binary_model()
    h_flat = flat.fit(X, labels, epochs=5, batch_size=8, verbose=0)
    h_column = column.fit(X, labels.reshape(-1, 1).astype(float), epochs=5, batch_size=8, verbose=0)
    assert_weights_equal(flat.get_weights(), column.get_weights())
    assert h_flat["loss"] == h_column["loss"]
    probabilities = flat.predict(X)
    assert probabilities.shape == (24, 1)
    expected = numpy.mean((probabilities[:, 0] > 0.5) == labels)
    assert flat.evaluate(X, labels)["accuracy"] == expected
    numpy.testing.assert_array_equal(flat.predict_classes(X), probabilities[:, 0] > 0.5)


def test_mse_regression_with_flat_targets() -> None:
    X, target = regression_data(n=20)
    flat, column = regressor(seed=4), regressor(seed=4)
    h_flat = flat.fit(X, target, epochs=4, batch_size=5, verbose=0)
    column.fit(X, target.reshape(-1, 1), epochs=4, batch_size=5, verbose=0)
    assert_weights_equal(flat.get_weights(), column.get_weights())
    assert h_flat["loss"][-1] < h_flat["loss"][0]
    prediction = flat.predict(X)[:, 0].astype(numpy.float64)
    mse = numpy.mean((prediction - target) ** 2)
    assert flat.evaluate(X, target)["loss"] == pytest.approx(mse, rel=1e-5)


def test_learning_rate_decay_is_recorded() -> None:
    X, y = classification_data(n=8)
    lr, decay = 0.5, 0.1
    model = classifier(optimizer=nb.SGD(learning_rate=lr, decay=decay))
    seen: list[float] = []
    hook = nb.LambdaCallback(
        on_batch_end=lambda step, logs: seen.append(model.optimizer.current_learning_rate)
    )
    history = model.fit(X, y, epochs=3, batch_size=4, callbacks=[hook], verbose=0)
    # Step t (counted from 0) uses lr / (1 + decay * t); an epoch records its last step's rate.
    assert seen == pytest.approx([lr / (1 + decay * t) for t in range(6)], rel=1e-15)
    assert history["learning_rate"] == pytest.approx([seen[1], seen[3], seen[5]], rel=1e-15)


def test_to_backend_moves_a_model_and_back() -> None:
    from nnback.testing import StrictBackend

    X, y = classification_data(n=12)
    moved = classifier(optimizer=nb.Adam(0.05), seed=6)
    stayed = classifier(optimizer=nb.Adam(0.05), seed=6)
    moved.fit(X, y, epochs=1, batch_size=4, verbose=0)
    stayed.fit(X, y, epochs=1, batch_size=4, verbose=0)
    strict = StrictBackend()
    assert moved.to_backend(strict) is moved
    assert moved.backend is strict
    assert all(strict.is_array(layer.weights) for layer in moved.layers if layer.trainable)
    numpy.testing.assert_array_equal(moved.predict(X), stayed.predict(X))
    moved.fit(X, y, epochs=1, batch_size=4, verbose=0)  # Adam's moments moved too
    stayed.fit(X, y, epochs=1, batch_size=4, verbose=0)
    moved.to_backend("numpy")
    assert isinstance(moved.layers[0].weights, numpy.ndarray)
    moved.fit(X, y, epochs=1, batch_size=4, verbose=0)
    stayed.fit(X, y, epochs=1, batch_size=4, verbose=0)
    assert_weights_equal(moved.get_weights(), stayed.get_weights())


def test_get_weights_and_set_weights() -> None:
    model = classifier()
    model.build()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(3, 8), (1, 8), (8, 3), (1, 3)]
    weights[0][...] = 7.0  # a copy: the model is unchanged
    assert not numpy.any(model.get_weights()[0] == 7.0)
    new = [numpy.full(w.shape, float(i + 1)) for i, w in enumerate(weights)]
    model.set_weights(new)
    assert_weights_equal(model.get_weights(), [w.astype(numpy.float32) for w in new])
    with pytest.raises(nb.InputError, match="expected 4 arrays, got 3"):
        model.set_weights(new[:3])
    with pytest.raises(nb.InputError, match=r"array 2 has shape \(3, 8\), expected \(8, 3\)"):
        model.set_weights([new[0], new[1], new[2].T, new[3]])
