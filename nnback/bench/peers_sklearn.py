"""scikit-learn's ``MLPClassifier`` as a peer: the same network, one ``partial_fit`` per epoch.

``MLPClassifier(hidden_layer_sizes=..., activation="relu", solver="adam",
learning_rate_init=1e-3, alpha=0, batch_size=batch)``; each timed call is one
``partial_fit`` over every sample (scikit-learn shuffles inside it). scikit-learn keeps
float32 input in float32. Missing scikit-learn skips with the reason.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
import warnings
from typing import Any

import numpy

from .data import NETWORKS, mnist_shaped, real_data
from .workload import Prepared, Workload

__all__ = ["SKLEARN", "sklearn_peer", "sklearn_unavailable"]

SKLEARN = "sklearn"
_WARMUP_STEPS = 3
_FAMILIES = ("train_epoch", "real_data_training")


def sklearn_unavailable() -> str | None:
    """None when scikit-learn is importable, else why its benchmarks skip."""
    if importlib.util.find_spec("sklearn") is None:
        return "scikit-learn is not installed (pip install scikit-learn)"
    return None


def _classifier(network: str, batch: int) -> Any:
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        hidden_layer_sizes=NETWORKS[network][1:-1],
        activation="relu",
        solver="adam",
        learning_rate_init=1e-3,
        alpha=0.0,
        batch_size=batch,
        random_state=0,
    )


def _partial_fit(model: Any, X: Any, y: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings say nothing about speed
        model.partial_fit(X, y, classes=numpy.arange(10))


def _setup(work: Workload, samples: int, epochs: int) -> Any:
    real = work.family == "real_data_training"
    network = "784-256-128-10" if real else work.case
    batch, dtype = int(work.batch or 1), work.dtype

    def setup() -> Prepared:
        if real:
            (X, y), (X_test, y_test) = real_data()
            X, X_test = X.astype(dtype, copy=False), X_test.astype(dtype, copy=False)
        else:
            X, y = mnist_shaped(samples, dtype)
            X_test = y_test = None
        state: dict[str, Any] = {"model": _classifier(network, batch), "rates": []}
        warm = min(X.shape[0], _WARMUP_STEPS * batch)

        def run() -> None:
            if real:
                state["model"] = _classifier(network, batch)
            rates = []
            for _ in range(epochs):
                started = time.perf_counter()
                _partial_fit(state["model"], X, y)
                rates.append(X.shape[0] / (time.perf_counter() - started))
            state["rates"] = rates

        def finish() -> dict[str, Any]:
            import sklearn

            model = state["model"]
            info: dict[str, Any] = {"sklearn": sklearn.__version__}
            if getattr(model, "coefs_", None):
                info["computed_dtype"] = str(model.coefs_[0].dtype)
            if real:
                rates = state["rates"]
                info["test_accuracy"] = float(model.score(X_test, y_test))
                info["epochs"] = epochs
                info["epoch_samples_per_second"] = rates
                info["last_over_first"] = rates[-1] / rates[0] if rates else None
            return info

        return Prepared(
            run=run,
            warmup=lambda: _partial_fit(_classifier(network, batch), X[:warm], y[:warm]),
            warmup_amount=warm,
            finish=finish,
        )

    return setup


def sklearn_peer(work: Workload, samples: int = 0, epochs: int = 1) -> Workload | None:
    """The scikit-learn counterpart of a training workload (same group and units), or None."""
    if work.family not in _FAMILIES:
        return None
    epochs = epochs if work.family == "real_data_training" else 1
    ceiling = dataclasses.replace(work.ceiling, device="cpu") if work.ceiling else None
    return dataclasses.replace(
        work,
        runner=SKLEARN,
        setup=_setup(work, samples, epochs),
        skip=sklearn_unavailable(),
        ceiling=ceiling,
    )
