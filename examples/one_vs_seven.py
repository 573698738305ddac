"""A small sigmoid network that tells handwritten 1s from 7s.

Two sigmoid outputs against one-hot targets, trained with minibatch SGD on the binary
cross-entropy; the prediction is the larger output. The digits come from MNIST when it is
at hand (``--data-dir`` or ``--download``, 784-10-2); otherwise, and with ``--quick``,
from scikit-learn's ``load_digits``, which ships 8x8 scans of real handwritten digits
offline (64-10-2). Only without scikit-learn does the script fall back to Fashion-MNIST,
where the same class numbers are trousers and sneakers, and it says so.
"""

from __future__ import annotations

import sys

import numpy as np
from _common import Timer, parser, report, setup

import nnback
from nnback.datasets import DatasetNotFoundError, DownloadError, load_mnist, load_sample

TEXT = "not checked here"


def pick(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 1s and 7s, labelled 0 (a one) and 1 (a seven)."""
    keep = (y == 1) | (y == 7)
    return X[keep], (y[keep] == 7).astype(np.int64)


def sklearn_digits(seed: int) -> tuple[tuple[np.ndarray, ...], str] | None:
    """scikit-learn's 8x8 handwritten digits, scaled to [0, 1] and split 75/25 with a seeded
    shuffle; None when scikit-learn is not installed."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order], digits.target[order]
    cut = (3 * len(X)) // 4
    return (X[:cut], y[:cut], X[cut:], y[cut:]), "scikit-learn digits (8x8 scans)"


def load(args: object) -> tuple[tuple[np.ndarray, ...], str]:
    """MNIST, else scikit-learn's digits, else Fashion-MNIST; prints which and why."""
    if not args.quick:  # type: ignore[attr-defined]
        try:
            (X, y), (X_test, y_test) = load_mnist(args.data_dir, download=args.download)  # type: ignore[attr-defined]
            print("data: MNIST (28x28 handwritten digits)")
            return (X, y, X_test, y_test), "MNIST"
        except (DatasetNotFoundError, DownloadError) as exc:
            print(
                f"MNIST is not at hand ({type(exc).__name__}; --data-dir DIR or --download "
                "to use it)",
                file=sys.stderr,
            )
    found = sklearn_digits(args.seed)  # type: ignore[attr-defined]
    if found is not None:
        print("data: scikit-learn's load_digits, real handwritten 1s and 7s as 8x8 scans")
        return found
    print(
        "scikit-learn is not installed (pip install scikit-learn for real 1s and 7s), so "
        "this run tells Fashion-MNIST TROUSERS (class 1) from SNEAKERS (class 7), not digits",
        file=sys.stderr,
    )
    (X, y), (X_test, y_test) = load_sample()
    return (X, y, X_test, y_test), "Fashion-MNIST sample: trousers against sneakers"


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=10, help="(default: 10)")
    args = p.parse_args()
    backend = setup(args)
    (X, y, X_test, y_test), dataset = load(args)
    X, y = pick(X, y)
    X_test, y_test = pick(X_test, y_test)
    n_features = X.shape[1]
    model = nnback.Sequential(
        [
            nnback.Dense(n_features, 10, weight_initializer="xavier"),
            nnback.Sigmoid(),
            nnback.Dense(10, 2, weight_initializer="xavier"),
            nnback.Sigmoid(),
        ],
        loss=nnback.BinaryCrossentropy(),
        optimizer=nnback.SGD(learning_rate=0.5),
        seed=args.seed,
    )
    epochs = args.epochs  # both quick data sets train in well under a second
    with Timer() as timer:
        model.fit(X, np.eye(2, dtype=np.float32)[y], epochs=epochs, batch_size=32, verbose=2)
    accuracy = float(np.mean(model.predict_classes(X_test) == y_test))
    print(
        f"{len(X)} training images, {epochs} epochs in {timer.seconds:.1f} s; "
        f"test accuracy {accuracy:.4f} on {len(X_test)} images"
    )
    report(
        [(f"1 versus 7, {n_features}-10-2 sigmoid", TEXT, f"{100 * accuracy:.2f}% test")],
        dataset,
        backend,
    )


if __name__ == "__main__":
    main()
