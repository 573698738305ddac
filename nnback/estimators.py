"""scikit-learn compatible estimators: :class:`MLPClassifier` and :class:`MLPRegressor`.

They follow scikit-learn's estimator conventions (``fit``/``predict``/``score``,
``get_params``/``set_params``, fitted attributes ending in ``_``, ``partial_fit``,
``warm_start``, early stopping) and pass its ``check_estimator``, without importing
scikit-learn unless it is installed and asks for them (tags, its exception classes).
Training is an nnback :class:`~nnback.Sequential` model on the chosen ``backend``.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import tempfile
import warnings
from typing import Any

import numpy

from .activations import get_activation
from .backends import get_backend
from .callbacks import Callback
from .errors import InputError
from .estimator_input import (
    ConvergenceWarning,
    NotFittedError,
    check_estimator_X,
    check_estimator_y,
    sklearn_class,
)
from .layers import Dense
from .losses import CategoricalCrossentropy, MeanSquaredError
from .model import Sequential
from .optimizers import get_optimizer
from .serialization import load_model

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's names for nnback's activations; nnback's own names are accepted too.
_ACTIVATIONS = {"logistic": "sigmoid", "identity": "linear"}
_ACTIVATION_NAMES = ("relu", "leaky_relu", "tanh", "logistic", "sigmoid", "identity", "linear")


class _Monitor(Callback):
    """Records the loss curve and validation scores; stops as scikit-learn's MLP does."""

    def __init__(self, estimator: Any, validation: tuple[numpy.ndarray, numpy.ndarray] | None):
        self.estimator = estimator
        self.validation = validation

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        est = self.estimator
        est.loss_curve_.append(logs["loss"])
        est.n_iter_ += 1
        est.t_ += est._n_train
        if self.validation is not None:
            score = est._score_encoded(*self.validation)
            est.validation_scores_.append(score)
            improved = score > est.best_validation_score_ + est.tol
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_weights = self.model.get_weights()
        else:
            improved = logs["loss"] < est.best_loss_ - est.tol
            est.best_loss_ = min(est.best_loss_, logs["loss"])
        est._no_improvement = 0 if improved else est._no_improvement + 1
        if est._no_improvement >= est.n_iter_no_change:
            self.model.stop_training = True


class _MLPBase:
    """What the classifier and the regressor share: parameters, validation, training."""

    _estimator_type = ""

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate_init: float = 0.001,
        max_iter: int = 100,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        backend: Any = None,
        dtype: str | None = None,
    ) -> None:
        # Stored exactly as given (scikit-learn's clone relies on it); checked in fit.
        parameters = dict(locals())
        del parameters["self"]
        vars(self).update(parameters)

    # scikit-learn's estimator protocol -----------------------------------------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(name for name in signature.parameters if name != "self")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters and their current values."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> _MLPBase:
        """Set constructor parameters by name; returns the estimator."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise InputError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid!r}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()
        }
        changed = [
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if not (value is defaults.get(name) or _equal(value, defaults.get(name)))
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags, RegressorTags, Tags, TargetTags

        classifier = self._estimator_type == "classifier"
        return Tags(
            estimator_type=self._estimator_type,
            target_tags=TargetTags(required=True, multi_output=not classifier),
            classifier_tags=ClassifierTags() if classifier else None,
            regressor_tags=None if classifier else RegressorTags(),
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        model = state.pop("model_", None)
        if model is not None:  # the model file keeps weights, optimizer state and generator
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "model.npz")
                model.save(path)
                with open(path, "rb") as file:
                    state["_model_file"] = file.read()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        blob = state.pop("_model_file", None)
        self.__dict__.update(state)
        if blob is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "model.npz")
                with open(path, "wb") as file:
                    file.write(blob)
                self.model_ = load_model(path, backend=self._backend())

    # Training ------------------------------------------------------------------------
    def _backend(self) -> Any:
        return get_backend(self.backend)

    def _seed(self) -> int | None:
        state = self.random_state
        if state is None or isinstance(state, numbers.Integral):
            return state
        if hasattr(state, "randint"):
            return int(state.randint(numpy.iinfo(numpy.int32).max))
        raise InputError(f"random_state: expected None, an int or a RandomState, got {state!r}")

    def _check_params(self) -> None:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        problems = {
            "hidden_layer_sizes must be positive integers": any(
                not isinstance(s, numbers.Integral) or s < 1 for s in sizes
            ),
            f"activation must be one of {_ACTIVATION_NAMES}": self.activation
            not in _ACTIVATION_NAMES,
            "validation_fraction must be in (0, 1)": not 0 < self.validation_fraction < 1,
            "max_iter and n_iter_no_change must be positive integers": any(
                not isinstance(v, numbers.Integral) or v < 1
                for v in (self.max_iter, self.n_iter_no_change)
            ),
            "alpha and tol must be >= 0, learning_rate_init > 0": self.alpha < 0
            or self.tol < 0
            or not self.learning_rate_init > 0,
        }
        for message, failed in problems.items():
            if failed:
                raise InputError(f"{type(self).__name__}: {message}")

    def _batch(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        if not isinstance(self.batch_size, numbers.Integral) or self.batch_size < 1:
            raise InputError(
                f"batch_size must be 'auto' or a positive int, got {self.batch_size!r}"
            )
        return min(int(self.batch_size), n)

    def _build(self, n_features: int, n_outputs: int, dtype: Any, batch: int) -> None:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        kind = _ACTIVATIONS.get(self.activation, self.activation)
        init = "he" if kind in ("relu", "leaky_relu") else "glorot_uniform"
        # scikit-learn's penalty: alpha / 2 * sum(w**2) over the batch size, per batch.
        l2 = 0.5 * self.alpha / batch
        options = {"learning_rate": self.learning_rate_init}
        if self.solver == "sgd":
            options["momentum"] = self.momentum
        try:
            optimizer = get_optimizer(self.solver, **options)
        except (InputError, TypeError) as exc:
            raise InputError(f"solver: {exc}") from exc
        model = Sequential(
            loss=self._loss(),
            optimizer=optimizer,
            seed=self._seed(),
            dtype=str(numpy.dtype(dtype)),
            backend=self._backend(),
        )
        width = n_features
        for size in sizes:
            model.add(Dense(width, int(size), weight_initializer=init, weight_regularizer_l2=l2))
            model.add(get_activation(kind))
            width = int(size)
        model.add(
            Dense(width, n_outputs, weight_initializer="glorot_uniform", weight_regularizer_l2=l2)
        )
        model.add(get_activation(self._output_activation))
        self.model_ = model.build()
        self.loss_curve_: list[float] = []
        self.validation_scores_: list[float] | None = [] if self.early_stopping else None
        self.best_loss_ = math.inf
        self.best_validation_score_: float | None = -math.inf if self.early_stopping else None
        self.n_iter_ = 0
        self.t_ = 0
        self._no_improvement = 0

    def _train(self, X: numpy.ndarray, targets: numpy.ndarray, epochs: int, first: bool) -> None:
        validation = None
        if self.early_stopping and first:
            cut = self._split(targets)
            validation = (X[cut:], targets[cut:])
            X, targets = X[:cut], targets[:cut]
        self._n_train = X.shape[0]
        self._best_weights = None
        self._no_improvement = 0
        monitor = _Monitor(self, validation)
        self.model_.fit(
            X,
            targets,
            epochs=epochs,
            batch_size=self._batch(X.shape[0]),
            shuffle=self.shuffle,
            callbacks=[monitor],
            verbose=2 if self.verbose else 0,
        )
        if self._best_weights is not None:
            self.model_.set_weights(self._best_weights)
        self._best_weights = None
        if first and epochs > 1 and not self.model_.stop_training:
            warnings.warn(
                f"{type(self).__name__} reached max_iter={self.max_iter} before the "
                "loss settled; raise max_iter",
                sklearn_class("exceptions", "ConvergenceWarning", ConvergenceWarning),
                stacklevel=3,
            )

    def _split(self, targets: numpy.ndarray) -> int:
        """Shuffle in place order is kept; returns the index where validation rows start."""
        n_val = max(1, int(round(len(targets) * self.validation_fraction)))
        if n_val >= len(targets):
            raise InputError("early_stopping: too few samples for a validation split")
        return len(targets) - n_val

    def _fit(self, X: Any, y: Any, partial: bool, classes: Any = None) -> _MLPBase:
        self._check_params()
        continuing = hasattr(self, "model_") and (partial or self.warm_start)
        X = check_estimator_X(X, self, reset=not continuing)
        y = check_estimator_y(y, X.shape[0], self._estimator_type == "regressor")
        targets = self._encode(y, classes, fitted=continuing, partial=partial)
        if self.early_stopping and not partial and not continuing:
            order = numpy.random.default_rng(self._seed()).permutation(X.shape[0])
            X, targets = X[order], targets[order]
        if not continuing:
            n_out = targets.shape[1] if targets.ndim == 2 else len(self.classes_)
            self._build(X.shape[1], n_out, X.dtype, self._batch(X.shape[0]))
        self._train(X, targets, 1 if partial else self.max_iter, first=not partial)
        return self

    def fit(self, X: Any, y: Any) -> _MLPBase:
        """Train from scratch (or on from the last fit with ``warm_start=True``)."""
        return self._fit(X, y, partial=False)

    def _predict_raw(self, X: Any) -> numpy.ndarray:
        if not hasattr(self, "model_"):
            raise sklearn_class("exceptions", "NotFittedError", NotFittedError)(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )
        return self.model_.predict(check_estimator_X(X, self, reset=False))


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


class MLPClassifier(_MLPBase):
    """A multi-layer perceptron classifier trained by nnback (softmax output, cross-entropy).

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (100,)
    activation : {"relu", "leaky_relu", "tanh", "logistic", "identity"}, default "relu"
    solver : {"adam", "sgd", "rmsprop", "adagrad"}, default "adam"
        ``"sgd"`` uses ``momentum``; no learning-rate schedules.
    alpha : float, default 1e-4
        L2 penalty, scaled as scikit-learn does: ``alpha / 2 * sum(w**2) / batch_size``.
    batch_size : int or "auto", default "auto"
        ``min(200, n_samples)``.
    learning_rate_init : float, default 1e-3
    max_iter : int, default 100
        Epochs (passes over the data).
    shuffle : bool, default True
    random_state : None, int or numpy.random.RandomState
        Seeds initial weights, shuffling and the validation split; the same seed trains the
        same model on every backend.
    tol : float, default 1e-4
    verbose : bool, default False
    warm_start : bool, default False
        ``fit`` goes on from the previous solution instead of starting again.
    momentum : float, default 0.9
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the data and stop when its score has not
        improved by ``tol`` for ``n_iter_no_change`` epochs; the best weights are kept.
    validation_fraction : float, default 0.1
    n_iter_no_change : int, default 10
        Without early stopping, training stops when the training loss has not improved by
        ``tol`` for this many epochs.
    backend : str or Backend, optional
        ``"numpy"``, ``"numba"``, ``"cupy"``, ``"auto"``; default: the selected backend.
    dtype : {"float32", "float64"}, optional
        Default: float32 for float32 input, else float64.

    Attributes
    ----------
    classes_ : numpy.ndarray
    n_features_in_ : int
    loss_curve_ : list of float
        Training loss of each epoch.
    validation_scores_ : list of float or None
        Validation accuracy of each epoch (with ``early_stopping``).
    best_loss_, best_validation_score_ : float
    n_iter_, t_ : int
        Epochs run, and samples seen.
    model_ : nnback.Sequential
    """

    _estimator_type = "classifier"
    _output_activation = "softmax"

    def _loss(self) -> Any:
        return CategoricalCrossentropy()

    def _encode(self, y: numpy.ndarray, classes: Any, fitted: bool, partial: bool) -> numpy.ndarray:
        if y.dtype.kind == "f" and not numpy.all(numpy.mod(y, 1) == 0):
            raise InputError("Unknown label type: continuous. Use MLPRegressor for regression.")
        if not fitted:
            if partial and classes is None:
                raise InputError("classes must be passed on the first call to partial_fit.")
            labels = numpy.unique(numpy.asarray(classes) if partial else y)
            if len(labels) < 2:
                raise InputError(
                    f"y contains only one class ({labels[0]!r}); a classifier needs samples "
                    "of at least 2 classes"
                )
            self.classes_ = labels
        index = numpy.clip(numpy.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
        unseen = self.classes_[index] != y
        if numpy.any(unseen):
            raise InputError(f"y contains labels not in classes_: {numpy.unique(y[unseen])[:5]}")
        return index

    def _score_encoded(self, X: numpy.ndarray, targets: numpy.ndarray) -> float:
        return float(numpy.mean(numpy.argmax(self.model_.predict(X), axis=1) == targets))

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over ``X``, ``y``; the first call needs every label in ``classes``."""
        return self._fit(X, y, partial=True, classes=classes)  # type: ignore[return-value]

    def predict_proba(self, X: Any) -> numpy.ndarray:
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        return self._predict_raw(X)

    def predict_log_proba(self, X: Any) -> numpy.ndarray:
        """``log(predict_proba(X))``."""
        with numpy.errstate(divide="ignore"):
            return numpy.log(self.predict_proba(X))

    def predict(self, X: Any) -> numpy.ndarray:
        """The most probable class of each sample."""
        index = numpy.argmax(self.predict_proba(X), axis=1)
        return self.classes_[index]

    def score(self, X: Any, y: Any) -> float:
        """Mean accuracy of :meth:`predict` on ``X`` against ``y``."""
        return float(numpy.mean(self.predict(X) == numpy.asarray(y).reshape(-1)))


class MLPRegressor(_MLPBase):
    """A multi-layer perceptron regressor trained by nnback (linear output, squared error).

    Takes the same parameters as :class:`MLPClassifier`; ``y`` may be (n,) or (n, k).
    ``validation_scores_`` holds the validation R² of each epoch.
    """

    _estimator_type = "regressor"
    _output_activation = "linear"

    def _loss(self) -> Any:
        return MeanSquaredError()

    def _encode(self, y: numpy.ndarray, classes: Any, fitted: bool, partial: bool) -> numpy.ndarray:
        try:
            values = y.astype(numpy.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"y: expected numbers for regression: {exc}") from exc
        if not numpy.isfinite(values).all():
            raise InputError("Input y contains NaN or infinity.")
        values = values.reshape(len(values), -1)
        if not fitted:
            self.n_outputs_ = values.shape[1]
            self._y_1d = y.ndim == 1
        elif values.shape[1] != self.n_outputs_:
            raise InputError(f"y has {values.shape[1]} outputs, the model {self.n_outputs_}")
        return values

    def _score_encoded(self, X: numpy.ndarray, targets: numpy.ndarray) -> float:
        return _r2(targets, self.model_.predict(X))

    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One epoch over ``X``, ``y`` (building the model on the first call)."""
        return self._fit(X, y, partial=True)  # type: ignore[return-value]

    def predict(self, X: Any) -> numpy.ndarray:
        """Predicted values, (n,) if the model was fitted on 1-D targets, else (n, k)."""
        raw = self._predict_raw(X).astype(numpy.float64)
        return raw[:, 0] if self._y_1d else raw

    def score(self, X: Any, y: Any) -> float:
        """Coefficient of determination R² (averaged over outputs)."""
        y = numpy.asarray(y, dtype=numpy.float64)
        return _r2(y.reshape(len(y), -1), self.predict(X).reshape(len(y), -1))


def _r2(y_true: numpy.ndarray, y_pred: numpy.ndarray) -> float:
    residual = numpy.sum((y_true - y_pred) ** 2, axis=0)
    total = numpy.sum((y_true - y_true.mean(axis=0)) ** 2, axis=0)
    scores = numpy.where(
        total > 0,
        1 - residual / numpy.where(total > 0, total, 1),
        numpy.where(residual == 0, 1.0, 0.0),
    )
    return float(numpy.mean(scores))
