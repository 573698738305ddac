"""Training failures: non-finite losses and updates, gradient clipping, Ctrl-C during fit.

Each leaves a model whose weights are finite and equal to those after a finished step,
with an optimizer iteration count that matches, on every backend of the fixture.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import warnings
from typing import Any

import numpy
import pytest
from reliability_helpers import all_finite, blobs, mlp, weights_equal

import nnback as nb

X, Y = blobs(n=24)
STEPS_PER_EPOCH = 6  # 24 samples in batches of 4


class _Recorder(nb.Callback):
    """Keeps the weights and iteration count after every finished step."""

    def __init__(self) -> None:
        self.weights: list[list[numpy.ndarray]] = []
        self.iterations: list[int] = []

    def on_train_begin(self, logs: Any = None) -> None:
        self.weights = [self.model.get_weights()]
        self.iterations = [self.model.optimizer.iterations]

    def on_batch_end(self, step: int, logs: Any = None) -> None:
        self.weights.append(self.model.get_weights())
        self.iterations.append(self.model.optimizer.iterations)


def _fit_quietly(model: nb.Sequential, X_in: Any, batch_size: int = 4, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the overflow that makes the NaN
        return model.fit(X_in, Y, batch_size=batch_size, verbose=0, **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_nan_loss_stops_before_the_weights_on_every_backend(backend: Any, dtype: str) -> None:
    # Inputs and a learning rate so large for the dtype that the forward pass overflows
    # after a step or two: the loss is finite at first, then not.
    largest = float(numpy.finfo(dtype).max)
    model = mlp(optimizer=nb.SGD(learning_rate=largest**0.5), dtype=dtype, backend=backend)
    recorder = _Recorder()
    with pytest.raises(nb.TrainingError) as raised:
        _fit_quietly(model, X * largest**0.25, epochs=20, callbacks=[recorder])
    error = raised.value
    steps_done = len(recorder.weights) - 1
    assert error.step is not None  # found by a loss, not by the end-of-epoch check
    epochs_done, steps_in_epoch = divmod(steps_done, STEPS_PER_EPOCH)
    assert (error.epoch, error.step) == (epochs_done + 1, steps_in_epoch + 1)
    assert f"at epoch {error.epoch}, step {error.step}" in str(error)
    assert "learning rate" in str(error) and "lower it" in str(error)
    weights = model.get_weights()
    assert all_finite(weights)
    if "left as they were before that step" in str(error):
        assert weights_equal(weights, recorder.weights[-1])
        assert model.optimizer.iterations == recorder.iterations[-1] == steps_done
    else:  # an update had overflowed first: back to the start of the epoch
        first = (error.epoch - 1) * STEPS_PER_EPOCH
        assert "put back as they were at the start of epoch" in str(error)
        assert weights_equal(weights, recorder.weights[first])
        assert model.optimizer.iterations == recorder.iterations[first]


def test_an_overflowing_update_is_undone_on_every_backend(backend: Any) -> None:
    # Finite losses, but the L2 term of the first update overflows float32 (lr * 2 * l2 * w
    # > 3.4e38); with one step per epoch only the end-of-epoch check of the weights sees it.
    model = nb.Sequential(
        [
            nb.Dense(3, 4, weight_initializer="he", weight_regularizer_l2=1e38),
            nb.ReLU(),
            nb.Dense(4, 3),
            nb.Softmax(),
        ],
        loss="categorical_crossentropy",
        optimizer=nb.SGD(learning_rate=10.0, momentum=0.5),
        seed=0,
        backend=backend,
    )
    recorder = _Recorder()
    with pytest.raises(nb.TrainingError, match="NaN or infinite although every loss") as raised:
        _fit_quietly(model, X, batch_size=24, epochs=3, callbacks=[recorder])
    assert (raised.value.epoch, raised.value.step) == (1, None)
    assert "put back as they were at the start of epoch 1" in str(raised.value)
    assert len(recorder.weights) == 2  # the step ran (and overflowed), then was undone
    assert weights_equal(model.get_weights(), recorder.weights[0])
    assert model.optimizer.iterations == 0
    # The momentum slots created by the undone step are gone, as before that step.
    assert all(getattr(layer, "optimizer_state", {}) == {} for layer in model.layers)


def test_weights_that_were_never_finite_are_reported() -> None:
    model = mlp().build()
    weights = model.get_weights()
    weights[0][0, 0] = numpy.nan
    model.set_weights(weights)
    with pytest.raises(nb.TrainingError, match="already NaN or infinite when the epoch started"):
        model.fit(X, Y, verbose=0)


@pytest.mark.parametrize("clip", [0.05, 1e-4])
def test_clip_norm_bounds_the_global_gradient_norm(backend: Any, clip: float) -> None:
    model = mlp(optimizer=nb.SGD(learning_rate=0.1), backend=backend, dtype="float64")
    norms: list[float] = []

    class Probe(nb.Callback):
        # on_batch_end runs after the step: the gradients are the clipped ones it used.
        def on_batch_end(self, step: int, logs: Any = None) -> None:
            grads = [
                backend.to_numpy(grad)
                for layer in self.model.trainable_layers
                for _, _, grad, _, _ in layer.parameters()
            ]
            norms.append(math.sqrt(sum(float((g.astype(numpy.float64) ** 2).sum()) for g in grads)))

    unclipped = mlp(optimizer=nb.SGD(learning_rate=0.1), backend=backend, dtype="float64")
    raw: list[float] = []
    unclipped.fit(X, Y, batch_size=4, shuffle=False, verbose=0, callbacks=[_NormProbe(raw)])
    assert raw[0] > clip  # the premise: clipping has work to do from the first step
    model.fit(X, Y, batch_size=4, shuffle=False, verbose=0, clip_norm=clip, callbacks=[Probe()])
    assert len(norms) == STEPS_PER_EPOCH
    for norm in norms:
        assert norm <= clip * (1 + 1e-12)
    # The first step starts from the same weights, so its clipped gradient is the raw one
    # rescaled to exactly the clip norm.
    assert norms[0] == pytest.approx(clip, rel=1e-12)


class _NormProbe(nb.Callback):
    def __init__(self, out: list[float]) -> None:
        self.out = out

    def on_batch_end(self, step: int, logs: Any = None) -> None:
        backend = self.model.backend
        total = 0.0
        for layer in self.model.trainable_layers:
            for _, _, grad, _, _ in layer.parameters():
                total += float((backend.to_numpy(grad).astype(numpy.float64) ** 2).sum())
        self.out.append(math.sqrt(total))


def test_a_non_finite_gradient_norm_stops_before_the_step() -> None:
    model = mlp(optimizer=nb.SGD(learning_rate=1.0))
    recorder = _Recorder()
    # Large enough that the squared gradient norm overflows float32 while the loss does not.
    with pytest.raises(nb.TrainingError, match="the gradient norm became inf at epoch 1, step"):
        _fit_quietly(model, X * 1e25, epochs=1, clip_norm=1.0, callbacks=[recorder])
    assert weights_equal(model.get_weights(), recorder.weights[-1])
    assert model.optimizer.iterations == len(recorder.weights) - 1


class _Interrupt(nb.Callback):
    """Raises KeyboardInterrupt at the end of global step ``at`` (1-based)."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.seen = 0

    def on_batch_end(self, step: int, logs: Any = None) -> None:
        self.seen += 1
        if self.seen == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("at", [1, 8, 12])
def test_keyboard_interrupt_from_a_callback_returns_a_consistent_model(
    backend: Any, at: int
) -> None:
    model = mlp(backend=backend, dropout=0.25)
    recorder = _Recorder()
    with pytest.warns(UserWarning, match="training interrupted"):
        history = model.fit(
            X, Y, epochs=5, batch_size=4, verbose=0, callbacks=[recorder, _Interrupt(at)]
        )
    finished_epochs, step_in_epoch = divmod(at - 1, STEPS_PER_EPOCH)
    assert history.interrupted and not history.stopped_early
    assert history.interrupted_at == (finished_epochs + 1, step_in_epoch + 1)
    # The interrupted epoch never reached its end, so the history stops before it.
    assert history.epoch == list(range(finished_epochs))
    assert all(len(values) == finished_epochs for values in history.history.values())
    assert model.history is history
    weights = model.get_weights()
    assert all_finite(weights) and weights_equal(weights, recorder.weights[at])
    assert model.optimizer.iterations == at
    # The model trains on from there as if nothing had happened.
    model.fit(X, Y, epochs=1, batch_size=4, verbose=0)
    assert model.optimizer.iterations == at + STEPS_PER_EPOCH


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_ctrl_c_is_deferred_to_the_end_of_the_step() -> None:
    """A real SIGINT sent in the middle of an optimizer step lands after the step."""
    model = mlp()
    recorder = _Recorder()
    sent: list[int] = []
    original_step = model.optimizer.step

    def step_with_a_signal_inside(layers: Any) -> None:
        if len(sent) == 0 and model.optimizer.iterations == 6:
            # Half-way through step 7: after the first layer's update, before the second's.
            model.optimizer.pre_update_params()
            model.optimizer.update_params(layers[0])
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            sent.append(1)
            for layer in layers[1:]:
                model.optimizer.update_params(layer)  # the handler ran; no exception yet
            model.optimizer.post_update_params()
            return
        original_step(layers)

    model.optimizer.step = step_with_a_signal_inside  # type: ignore[method-assign]
    with pytest.warns(UserWarning, match="training interrupted"):
        history = model.fit(X, Y, epochs=4, batch_size=4, verbose=0, callbacks=[recorder])
    assert sent and history.interrupted
    assert history.interrupted_at == (2, 1)
    assert len(history) == 1
    assert model.optimizer.iterations == 7
    assert weights_equal(model.get_weights(), recorder.weights[7])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler put back


def test_a_second_ctrl_c_propagates() -> None:
    model = mlp()

    class DoubleInterrupt(nb.Callback):
        # Two Ctrl-C in a row inside one step: the second must not wait for the step's end.
        def on_batch_end(self, step: int, logs: Any = None) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, epochs=2, batch_size=4, verbose=0, callbacks=[DoubleInterrupt()])
    assert model.history is not None and model.history.interrupted
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
