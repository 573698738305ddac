"""Training history and callbacks (early stopping, checkpoints, custom hooks)."""

from __future__ import annotations

import math
import os
import string
from typing import Any

from .errors import InputError

__all__ = ["Callback", "EarlyStopping", "History", "LambdaCallback", "ModelCheckpoint"]

#: What every epoch logs; with validation data also ``VALIDATION_LOGS``.
EPOCH_LOGS = ("loss", "data_loss", "accuracy", "learning_rate", "samples_per_second", "seconds")
VALIDATION_LOGS = ("val_loss", "val_accuracy")


def logged_keys(validating: bool) -> list[str]:
    """The keys of the per-epoch logs a ``fit`` with or without validation data gives."""
    return [*EPOCH_LOGS, *(VALIDATION_LOGS if validating else ())]


class History:
    """Per-epoch training record: ``history["loss"]``, ``history.history``, ``history.epoch``.

    Keys: ``loss``, ``accuracy``, ``val_loss`` and ``val_accuracy`` (when validating),
    ``learning_rate`` (at the end of the epoch), ``samples_per_second`` and ``seconds``.

    After a ``KeyboardInterrupt`` during :meth:`~nnback.model.Sequential.fit`, ``interrupted``
    is True, the record holds every finished epoch, and ``interrupted_at`` is the
    ``(epoch, step)`` (1-based) of the last optimizer step that finished: the model's
    weights are the ones after that step.
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.interrupted = False
        self.interrupted_at: tuple[int, int] | None = None
        self.stopped_early = False
        #: "captured" when full-size steps replayed a CUDA graph, else "eager (why)".
        self.step_mode = "eager"

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __contains__(self, key: str) -> bool:
        return key in self.history

    def __len__(self) -> int:
        return len(self.epoch)

    def last(self) -> dict[str, float]:
        """The logs of the last finished epoch (empty before the first)."""
        return {key: values[-1] for key, values in self.history.items() if values}

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


class Callback:
    """Hooks called by :meth:`Sequential.fit`; ``self.model`` is set before training.

    ``self.params`` is set before ``on_train_begin`` too: ``epochs``, ``batch_size`` and
    ``logs``, the keys the per-epoch logs of this ``fit`` will have.
    """

    model: Any = None
    params: dict[str, Any] = {}  # noqa: RUF012 (replaced, never mutated, by set_params)

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = dict(params)

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None: ...

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None: ...

    def on_batch_end(self, step: int, logs: dict[str, float] | None = None) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...

    def on_train_end(self, logs: dict[str, float] | None = None) -> None: ...


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=print)``."""

    def __init__(self, **hooks: Any) -> None:
        for name, function in hooks.items():
            if not name.startswith("on_") or not hasattr(Callback, name):
                raise InputError(f"LambdaCallback: unknown hook {name!r}")
            setattr(self, name, function)


def _better(mode: str, value: float, best: float, min_delta: float) -> bool:
    if mode == "min":
        return value < best - min_delta
    return value > best + min_delta


def _mode_for(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise InputError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "accuracy" in monitor else "min"
    return mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str
        A history key, ``"val_loss"`` by default (``"loss"`` when there is no validation).
    patience : int
        Epochs without improvement before stopping.
    min_delta : float
        The least change that counts as an improvement.
    restore_best_weights : bool
        Put back the weights of the best epoch when training stops.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = True,
    ) -> None:
        if not isinstance(patience, int) or patience < 0:
            raise InputError(f"EarlyStopping(patience): expected an int >= 0, got {patience!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = abs(float(min_delta))
        self.mode = _mode_for(monitor, mode)
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.best_weights: list[Any] | None = None
        self.wait = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        key = self.monitor if self.monitor in logs else self.monitor.removeprefix("val_")
        if key not in logs:
            raise InputError(
                f"EarlyStopping: {self.monitor!r} is not logged; available: {sorted(logs)}"
            )
        value = logs[key]
        if _better(self.mode, value, self.best, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        if self.model.stop_training and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model every ``every`` epochs, or only when ``monitor`` improves.

    ``path`` may name the epoch's logs in ``str.format`` fields, such as ``{epoch}``
    (1-based) to keep one file per checkpoint, or ``ck_{epoch:03d}_{val_loss:.3f}.npz``.
    The fields are checked when training starts, against the logs that fit will give
    (``val_*`` only with validation data), so a bad template fails before the first
    epoch. Saving is atomic, so an interrupted save leaves the previous file intact.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        every: int = 1,
        save_best_only: bool = False,
        monitor: str = "val_loss",
        mode: str = "auto",
    ) -> None:
        if not isinstance(every, int) or every < 1:
            raise InputError(f"ModelCheckpoint(every): expected an int >= 1, got {every!r}")
        self.path = os.fspath(path)
        self.fields = _template_fields(self.path)
        self.every = every
        self.save_best_only = save_best_only
        self.monitor = monitor
        self.mode = _mode_for(monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.saved: list[str] = []

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        available = self.params.get("logs")
        if available is None:  # called outside fit: nothing to check against
            return
        names = ["epoch", *available]
        missing = [field for field in self.fields if field not in names]
        if missing:
            validation = any(f.startswith("val_") for f in missing) and "val_loss" not in names
            why = " (this fit has no validation data)" if validation else ""
            fix = (
                "pass validation_data=(X_val, y_val) or validation_split to fit, or use "
                if validation
                else "use "
            )
            raise InputError(
                f"ModelCheckpoint(path): the template {self.path!r} uses "
                f"{', '.join('{' + f + '}' for f in missing)}, which fit does not log{why}; "
                f"{fix}only {', '.join('{' + n + '}' for n in names)}"
            )
        try:
            self.path.format(**{name: 1.0 for name in available}, epoch=1)
        except (ValueError, TypeError, IndexError) as exc:
            raise InputError(
                f"ModelCheckpoint(path): the template {self.path!r} cannot be filled in: "
                f"{exc}; fields are numbers: the epoch an int, the logs floats"
            ) from None

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if (epoch + 1) % self.every:
            return
        if self.save_best_only:
            key = self.monitor if self.monitor in logs else self.monitor.removeprefix("val_")
            value = logs.get(key, math.nan)
            if not _better(self.mode, value, self.best, 0.0):
                return
            self.best = value
        path = self.path.format(**logs, epoch=epoch + 1)
        self.model.save(path)
        self.saved.append(path)


def _template_fields(path: str) -> list[str]:
    """The names of the ``{fields}`` in a checkpoint path, or raise if it is malformed."""
    try:
        parsed = list(string.Formatter().parse(path))
    except ValueError as exc:
        raise InputError(
            f"ModelCheckpoint(path): {path!r} is not a valid template ({exc}); write a "
            "literal brace as {{ or }}"
        ) from None
    fields = []
    for _, field, _, _ in parsed:
        if field is None:
            continue
        name = field.split(".")[0].split("[")[0]
        if not name or name.isdigit():
            raise InputError(
                f"ModelCheckpoint(path): {path!r} has a positional field {{{field}}}; name "
                "what to fill in, such as {epoch} or {val_loss:.3f}"
            )
        fields.append(name)
    return fields
