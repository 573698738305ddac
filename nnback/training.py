"""The training and evaluation loops behind :meth:`Sequential.fit` and ``evaluate``.

Kept apart from the model class so each file has one job. The loops move the data to the
backend once, take minibatches there with a permutation drawn on the host from the model's
generator (identical on every backend), and read the loss back each step: that one host
read lets training stop *before* a non-finite loss reaches the weights.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy

from .callbacks import Callback, History
from .errors import InputError, TrainingError
from .validation import (
    check_features,
    check_labels,
    check_positive_float,
    check_positive_int,
    check_rate,
    check_X,
)

if TYPE_CHECKING:
    from .model import Sequential

__all__ = ["evaluate", "fit", "prepare_targets"]

# Evaluation runs in batches of this many samples, to bound the memory it needs.
_EVALUATION_BATCH = 8192


def prepare_targets(model: Sequential, y: Any, n_samples: int) -> numpy.ndarray:
    """Check targets against the model's loss and output; return them as a host array.

    Class indices become int64 (n,); everything else the model's dtype, shaped (n, k).
    """
    y = check_labels("y", y, n_samples, model.backend)
    if not isinstance(y, numpy.ndarray):
        y = model.backend.to_numpy(y)
    k = model.n_outputs
    if model.loss is not None and model.loss.categorical:
        if y.ndim == 1:
            if y.dtype.kind == "f" and not numpy.all(numpy.mod(y, 1) == 0):
                raise InputError("y: class labels must be whole numbers, got fractions")
            labels = y.astype(numpy.int64)
            bad = (labels < 0) | (labels >= k)
            if bad.any():
                raise InputError(
                    f"y: class labels must be in [0, {k}) for a {k}-unit output layer, "
                    f"got {labels[bad][:5].tolist()}; map labels to 0..{k - 1} first"
                )
            return labels
        if y.ndim != 2 or y.shape[1] != k:
            raise InputError(
                f"y: expected class indices (n,) or one-hot rows (n, {k}), "
                f"got shape {tuple(y.shape)}"
            )
        if not numpy.allclose(y.sum(axis=1), 1.0, atol=1e-3):
            raise InputError("y: one-hot rows must sum to 1; use class indices or one_hot()")
        return numpy.ascontiguousarray(y, dtype=model.dtype)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != k:
        raise InputError(
            f"y: expected targets of shape (n, {k}) for a {k}-unit output layer, "
            f"got {tuple(y.shape)}"
        )
    if model.loss is not None and model.loss.op == "binary_crossentropy":
        if ((y < 0) | (y > 1)).any():
            raise InputError("y: binary cross-entropy targets must be in [0, 1]")
    return numpy.ascontiguousarray(y, dtype=model.dtype)


def _split(X: Any, y: numpy.ndarray, fraction: float) -> tuple[Any, Any, Any, Any]:
    n_val = int(round(X.shape[0] * fraction))
    if n_val < 1 or n_val >= X.shape[0]:
        raise InputError(
            f"validation_split={fraction} leaves {n_val} validation samples out of "
            f"{X.shape[0]}; choose a fraction that keeps both parts non-empty"
        )
    cut = X.shape[0] - n_val
    return X[:cut], y[:cut], X[cut:], y[cut:]


def _progress(total: int, epoch: int, epochs: int, show: bool) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False)


def _clip_gradients(model: Sequential, clip_norm: float) -> None:
    """Scale every gradient by ``clip_norm / norm`` when the global L2 norm exceeds it."""
    backend = model.backend
    total = 0.0
    for layer in model.trainable_layers:
        for _, _, grad, _, _ in layer.parameters():
            total += backend.to_float(backend.squared_norm(grad))
    norm = math.sqrt(total)
    if norm > clip_norm:
        for layer in model.trainable_layers:
            for _, _, grad, _, _ in layer.parameters():
                backend.scale_inplace(grad, clip_norm / norm)


def fit(
    model: Sequential,
    X: Any,
    y: Any,
    *,
    epochs: int,
    batch_size: int,
    shuffle: bool,
    validation_data: tuple[Any, Any] | None,
    validation_split: float,
    callbacks: list[Callback] | None,
    verbose: int | str,
    clip_norm: float | None,
) -> History:
    """See :meth:`Sequential.fit`."""
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    validation_split = check_rate("validation_split", validation_split)
    if clip_norm is not None:
        clip_norm = check_positive_float("clip_norm", clip_norm)
    if verbose == "auto":
        verbose = 1 if sys.stderr.isatty() else 0
    if not model.built:
        model.build()
    model._require("fit")
    backend = model.backend
    X = check_X("X", X, model.dtype, backend)
    check_features("X", X.shape[1], model.n_features)
    y = prepare_targets(model, y, X.shape[0])
    if validation_split and validation_data is None:
        X, y, X_val, y_val = _split(X, y, validation_split)
        validation_data = (X_val, y_val)
    model.metric.prepare(y)
    validation = None
    if validation_data is not None:
        # Checked before any training and moved to the backend once, not once per epoch.
        if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
            raise InputError("validation_data: expected a pair (X_val, y_val)")
        X_val = check_X("X_val", validation_data[0], model.dtype, backend)
        check_features("X_val", X_val.shape[1], model.n_features)
        y_val = prepare_targets(model, validation_data[1], X_val.shape[0])
        validation = (backend.asarray(X_val), backend.asarray(y_val))

    n = X.shape[0]
    X_device, y_device = backend.asarray(X), backend.asarray(y)
    steps_per_epoch = -(-n // batch_size)
    history = History()
    model.history = history
    model.stop_training = False
    callbacks = list(callbacks or [])
    for callback in callbacks:
        callback.model = model
        callback.on_train_begin()

    optimizer = model.optimizer
    try:
        for epoch in range(epochs):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            started = time.perf_counter()
            order = backend.asarray(model.rng.permutation(n)) if shuffle else None
            model.metric.reset()
            loss_sum = 0.0
            bar = _progress(steps_per_epoch, epoch + 1, epochs, verbose == 1)
            for step in range(steps_per_epoch):
                start = step * batch_size
                if order is None:
                    xb = X_device[start : start + batch_size]
                    yb = y_device[start : start + batch_size]
                else:
                    index = order[start : start + batch_size]
                    xb, yb = X_device[index], y_device[index]
                output = model.forward(xb, training=True)
                loss, grad = model.loss_and_gradient(output, yb)
                loss_value = backend.to_float(loss)
                if not math.isfinite(loss_value):
                    raise TrainingError(
                        f"the loss became {loss_value} at epoch {epoch + 1}, step {step + 1}; "
                        f"the weights are left as they were before that step. A learning rate "
                        f"that is too high (now {optimizer.current_learning_rate:g}) is the "
                        f"usual cause; lower it, or pass clip_norm=..."
                    )
                model.metric.update(backend, output, yb)
                model.backward(grad)
                if clip_norm is not None:
                    _clip_gradients(model, clip_norm)
                optimizer.step(model.trainable_layers)
                loss_sum += loss_value * xb.shape[0]
                if bar is not None:
                    bar.update(1)
                    if step % 20 == 0:
                        bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
                for callback in callbacks:
                    callback.on_batch_end(step, {"loss": loss_value})
            if bar is not None:
                bar.close()
            seconds = time.perf_counter() - started
            data_loss = loss_sum / n
            logs = {
                "loss": data_loss + model.regularization_loss(),
                "data_loss": data_loss,
                "accuracy": model.metric.result(),
                "learning_rate": optimizer.current_learning_rate,
                "samples_per_second": n / seconds if seconds > 0 else math.inf,
                "seconds": seconds,
            }
            if validation is not None:
                scores = _score(model, *validation, _EVALUATION_BATCH)
                logs["val_loss"] = scores["loss"]
                logs["val_accuracy"] = scores["accuracy"]
            history.append(epoch, logs)
            if verbose:
                print(_format_epoch(epoch + 1, epochs, logs), file=sys.stderr, flush=True)
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            if model.stop_training:
                history.stopped_early = True
                break
    except KeyboardInterrupt:
        # Steps are not interrupted half-way from the user's point of view: the history
        # holds every finished epoch and the model keeps its weights.
        history.interrupted = True
        warnings.warn("training interrupted; the history holds the finished epochs", stacklevel=3)
    finally:
        for callback in callbacks:
            callback.on_train_end(history.last())
    return history


def _format_epoch(epoch: int, epochs: int, logs: dict[str, float]) -> str:
    parts = [f"epoch {epoch}/{epochs}", f"loss {logs['loss']:.4f}", f"acc {logs['accuracy']:.4f}"]
    if "val_loss" in logs:
        parts += [f"val_loss {logs['val_loss']:.4f}", f"val_acc {logs['val_accuracy']:.4f}"]
    parts += [f"lr {logs['learning_rate']:.3g}", f"{logs['samples_per_second']:,.0f} samples/s"]
    return " - ".join(parts)


def evaluate(model: Sequential, X: Any, y: Any, batch_size: int | None = None) -> dict[str, float]:
    """See :meth:`Sequential.evaluate`."""
    if not model.built:
        model.build()
    model._require("evaluate")
    backend = model.backend
    X = check_X("X", X, model.dtype, backend)
    check_features("X", X.shape[1], model.n_features)
    y = prepare_targets(model, y, X.shape[0])
    size = check_positive_int("batch_size", batch_size) if batch_size else _EVALUATION_BATCH
    if getattr(model.metric, "precision", 0) is None:
        model.metric.prepare(y)
    return _score(model, X, y, size)


def _score(model: Sequential, X: Any, y: Any, size: int) -> dict[str, float]:
    """Loss and metric of checked data (host or backend arrays), in batches of ``size``."""
    backend = model.backend
    n = X.shape[0]
    metric = model.metric
    metric.reset()
    total: Any = 0.0
    for start in range(0, n, size):
        xb = backend.asarray(X[start : start + size])
        yb = backend.asarray(y[start : start + size])
        output = model.forward(xb, training=False)
        loss, _ = model.loss_and_gradient(output, yb, with_grad=False)
        total = total + loss * xb.shape[0]
        metric.update(backend, output, yb)
    data_loss = backend.to_float(total) / n
    regularization = model.regularization_loss()
    return {
        "loss": data_loss + regularization,
        "data_loss": data_loss,
        "regularization_loss": regularization,
        "accuracy": metric.result(),
    }
