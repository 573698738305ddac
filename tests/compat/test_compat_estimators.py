"""MLPClassifier and MLPRegressor: scikit-learn's own estimator checks, the documented
behaviour, and the same fit on every backend."""

from __future__ import annotations

import pickle
import warnings
from typing import Any

import numpy as np
import pytest

import nnback
from nnback.estimators import MLPClassifier as Classifier
from nnback.estimators import MLPRegressor as Regressor

sklearn_checks = pytest.importorskip(
    "sklearn.utils.estimator_checks",
    reason="scikit-learn is not installed: pip install -e '.[dev]'",
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


with warnings.catch_warnings():
    # "does not inherit from BaseEstimator": by design, scikit-learn is not a dependency.
    warnings.simplefilter("ignore", UserWarning)
    with_checks = sklearn_checks.parametrize_with_checks([Classifier(), Regressor()])


@with_checks
def test_scikit_learn_checks(estimator: Any, check: Any) -> None:
    check(estimator)


def test_estimators_are_exported_from_the_package() -> None:
    assert nnback.MLPClassifier is Classifier
    assert nnback.MLPRegressor is Regressor


def blobs(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
    labels = rng.integers(0, 3, n)
    return centers[labels] + 0.5 * rng.standard_normal((n, 2)), labels


def test_same_fit_on_every_backend(backend: Any) -> None:
    X, y = blobs()
    # alpha=0: the reported loss of a penalized model is checked on its own below.
    options = {
        "hidden_layer_sizes": (8,),
        "max_iter": 15,
        "random_state": 0,
        "batch_size": 16,
        "alpha": 0.0,
    }
    reference = Classifier(**options, backend="numpy").fit(X, y)
    clf = Classifier(**options, backend=backend).fit(X, y)
    np.testing.assert_allclose(clf.loss_curve_, reference.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(
        clf.predict_proba(X), reference.predict_proba(X), rtol=1e-8, atol=1e-12
    )
    reg_reference = Regressor(**options, backend="numpy").fit(X, X[:, 0] * X[:, 1])
    reg = Regressor(**options, backend=backend).fit(X, X[:, 0] * X[:, 1])
    np.testing.assert_allclose(reg.predict(X), reg_reference.predict(X), rtol=1e-8, atol=1e-10)


def test_classifier_with_string_labels_scores_and_curves() -> None:
    X, y = blobs(150)
    names = np.array(["cat", "dog", "emu"])[y]
    clf = Classifier(hidden_layer_sizes=(16,), max_iter=60, random_state=1, batch_size=32)
    clf.fit(X, names)
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    assert clf.score(X, names) > 0.9
    assert clf.predict_proba(X).shape == (150, 3)
    np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1.0, rtol=1e-6)
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.t_ == 150 * clf.n_iter_
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    params = clf.get_params()
    assert params["hidden_layer_sizes"] == (16,) and params["backend"] is None
    assert "hidden_layer_sizes=(16,)" in repr(clf)


def test_the_penalty_of_every_layer_counts_in_the_loss(backend: Any) -> None:
    X, y = blobs()
    clf = Classifier(
        hidden_layer_sizes=(8, 8),
        max_iter=1,
        alpha=0.5,
        batch_size=90,
        shuffle=False,
        random_state=0,
        backend=backend,
    ).fit(X, y)
    weights = [w for w in clf.model_.get_weights() if w.shape[0] > 1]  # no biases
    penalty = sum(0.5 * 0.5 / 90 * float(np.sum(w.astype(np.float64) ** 2)) for w in weights)
    data_loss = clf.model_.history["data_loss"][-1]
    assert clf.loss_curve_[-1] == pytest.approx(data_loss + penalty, rel=1e-9)


def test_early_stopping_keeps_validation_scores() -> None:
    X, y = blobs(200)
    clf = Classifier(
        hidden_layer_sizes=(16,),
        max_iter=300,
        early_stopping=True,
        n_iter_no_change=5,
        validation_fraction=0.2,
        random_state=0,
    ).fit(X, y)
    assert clf.n_iter_ < 300
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    reg = Regressor(
        hidden_layer_sizes=(16,),
        max_iter=200,
        early_stopping=True,
        random_state=0,
        learning_rate_init=0.01,
    ).fit(X, X.sum(axis=1))
    assert reg.best_validation_score_ > 0.5


def test_partial_fit_warm_start_and_pickle() -> None:
    X, y = blobs(120)
    clf = Classifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    for _ in range(3):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert clf.n_iter_ == 3
    warm = Classifier(hidden_layer_sizes=(8,), max_iter=5, warm_start=True, random_state=0)
    warm.fit(X, y)
    first = warm.loss_curve_[-1]
    warm.fit(X, y)
    assert warm.n_iter_ == 10 and warm.loss_curve_[-1] < first
    copy = pickle.loads(pickle.dumps(warm))
    np.testing.assert_array_equal(copy.predict_proba(X), warm.predict_proba(X))
    copy.fit(X, y)
    assert copy.n_iter_ == 15


def test_regressor_multi_output_and_errors() -> None:
    X, _ = blobs(100)
    Y = np.column_stack([X[:, 0] - X[:, 1], X[:, 0] * 0.5])
    reg = Regressor(
        hidden_layer_sizes=(32,), max_iter=150, learning_rate_init=0.01, random_state=0
    ).fit(X, Y)
    assert reg.predict(X).shape == (100, 2) and reg.score(X, Y) > 0.8
    with pytest.raises(ValueError, match="features"):
        reg.predict(X[:, :1])
    with pytest.raises(ValueError, match="continuous"):
        Classifier().fit(X, X[:, 0])
    with pytest.raises(ValueError, match="solver"):
        Classifier(solver="lbfgs").fit(X, (X[:, 0] > 0) * 1)
