"""Callbacks: EarlyStopping with best-weight restore, ModelCheckpoint, LambdaCallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy
import pytest
from model_helpers import assert_weights_equal, classification_data, classifier

import nnback as nb


def _recorder(model: nb.Sequential, store: list[Any]) -> nb.LambdaCallback:
    """Keeps the weights at the end of every epoch (runs before the callbacks after it)."""
    return nb.LambdaCallback(on_epoch_end=lambda epoch, logs: store.append(model.get_weights()))


def _diverging_validation() -> tuple[Any, Any, Any, Any]:
    """Training labels and their opposite for validation: val_loss rises as training learns."""
    X, y = classification_data(n=24, classes=2)
    return X, y, X.copy(), 1 - y


def _binary_classifier(seed: int = 0) -> nb.Sequential:
    return classifier(classes=2, optimizer=nb.Adam(learning_rate=0.05), seed=seed)


def test_early_stopping_stops_and_restores_the_best_weights() -> None:
    X, y, Xv, yv = _diverging_validation()
    model = _binary_classifier()
    snapshots: list[Any] = []
    stopper = nb.EarlyStopping(monitor="val_loss", patience=2)
    history = model.fit(
        X,
        y,
        epochs=30,
        batch_size=8,
        validation_data=(Xv, yv),
        callbacks=[_recorder(model, snapshots), stopper],
        verbose=0,
    )
    best = int(numpy.argmin(history["val_loss"]))
    assert history.stopped_early
    assert len(history) == best + 1 + 2 < 30  # stopped after `patience` epochs without progress
    assert stopper.best_epoch == best
    assert stopper.best == history["val_loss"][best]
    assert_weights_equal(model.get_weights(), snapshots[best], "restored weights")
    assert not numpy.array_equal(snapshots[-1][0], snapshots[best][0])


def test_early_stopping_without_restore_keeps_the_last_weights() -> None:
    X, y, Xv, yv = _diverging_validation()
    model = _binary_classifier()
    snapshots: list[Any] = []
    stopper = nb.EarlyStopping(patience=1, restore_best_weights=False)
    history = model.fit(
        X,
        y,
        epochs=30,
        batch_size=8,
        validation_data=(Xv, yv),
        callbacks=[_recorder(model, snapshots), stopper],
        verbose=0,
    )
    assert history.stopped_early and len(history) < 30
    assert_weights_equal(model.get_weights(), snapshots[-1])


def test_early_stopping_monitors_training_loss_without_validation() -> None:
    X, y = classification_data(n=24, classes=2)
    model = _binary_classifier()
    # A min_delta no epoch can beat: stops after the first epoch plus `patience` more.
    stopper = nb.EarlyStopping(patience=3, min_delta=1e6)
    history = model.fit(X, y, epochs=20, batch_size=8, callbacks=[stopper], verbose=0)
    assert len(history) == 4
    assert stopper.best_epoch == 0


def test_early_stopping_names_a_missing_key() -> None:
    X, y = classification_data(n=8, classes=2)
    with pytest.raises(nb.InputError, match="'val_nonsense' is not logged"):
        _binary_classifier().fit(
            X, y, callbacks=[nb.EarlyStopping(monitor="val_nonsense")], verbose=0
        )


def test_model_checkpoint_every_n_epochs(tmp_path: Path) -> None:
    X, y = classification_data(n=12)
    model = classifier(seed=2)
    snapshots: list[Any] = []
    checkpoint = nb.ModelCheckpoint(tmp_path / "model-{epoch}.npz", every=2)
    model.fit(
        X, y, epochs=5, batch_size=4, callbacks=[_recorder(model, snapshots), checkpoint], verbose=0
    )
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["model-2.npz", "model-4.npz"]
    assert checkpoint.saved == [str(tmp_path / "model-2.npz"), str(tmp_path / "model-4.npz")]
    for epoch in (2, 4):
        loaded = nb.load_model(tmp_path / f"model-{epoch}.npz")
        assert_weights_equal(loaded.get_weights(), snapshots[epoch - 1], f"checkpoint {epoch}")
        assert loaded.optimizer.iterations == 3 * epoch


def test_model_checkpoint_best_only(tmp_path: Path) -> None:
    X, y, Xv, yv = _diverging_validation()
    model = _binary_classifier()
    path = tmp_path / "best.npz"
    snapshots: list[Any] = []
    checkpoint = nb.ModelCheckpoint(path, save_best_only=True, monitor="val_loss")
    history = model.fit(
        X,
        y,
        epochs=6,
        batch_size=8,
        validation_data=(Xv, yv),
        callbacks=[_recorder(model, snapshots), checkpoint],
        verbose=0,
    )
    best = int(numpy.argmin(history["val_loss"]))
    assert best < 5  # the premise: the last epoch is not the best one
    assert_weights_equal(nb.load_model(path).get_weights(), snapshots[best])


def test_model_checkpoint_rejects_a_bad_period(tmp_path: Path) -> None:
    with pytest.raises(nb.InputError, match="every"):
        nb.ModelCheckpoint(tmp_path / "m.npz", every=0)


def test_lambda_callback_hooks_are_called_in_order() -> None:
    X, y = classification_data(n=10)
    events: list[tuple[Any, ...]] = []
    hook = nb.LambdaCallback(
        on_train_begin=lambda logs=None: events.append(("train_begin",)),
        on_epoch_begin=lambda epoch, logs=None: events.append(("epoch_begin", epoch)),
        on_batch_end=lambda step, logs: events.append(("batch", step, round(logs["loss"], 3))),
        on_epoch_end=lambda epoch, logs: events.append(("epoch_end", epoch, sorted(logs))),
        on_train_end=lambda logs=None: events.append(("train_end", sorted(logs or {}))),
    )
    history = classifier().fit(X, y, epochs=2, batch_size=5, callbacks=[hook], verbose=0)
    kinds = [event[0] for event in events]
    epoch = ["epoch_begin", "batch", "batch", "epoch_end"]
    assert kinds == ["train_begin", *epoch, *epoch, "train_end"]
    assert [event[1] for event in events if event[0] == "batch"] == [0, 1, 0, 1]
    assert events[-2][2] == sorted(history.history)
    assert events[-1][1] == sorted(history.history)
    assert hook.model is not None


def test_lambda_callback_can_stop_training() -> None:
    X, y = classification_data(n=10)
    model = classifier()
    stop = nb.LambdaCallback(
        on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", epoch == 1)
    )
    history = model.fit(X, y, epochs=10, batch_size=5, callbacks=[stop], verbose=0)
    assert len(history) == 2 and history.stopped_early


def test_lambda_callback_rejects_unknown_hooks() -> None:
    with pytest.raises(nb.InputError, match="unknown hook 'on_epoch_finish'"):
        nb.LambdaCallback(on_epoch_finish=print)
