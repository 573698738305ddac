"""A 784-10-2 sigmoid network that tells handwritten 1s from 7s.

Two sigmoid outputs against one-hot targets, trained with minibatch SGD on the binary
cross-entropy; the prediction is the larger output. On Fashion-MNIST (when MNIST is
missing) the same two class indices are trousers and sneakers.
"""

from __future__ import annotations

import numpy as np
from _common import Timer, load_digits, parser, report, setup

import nnback

TEXT = "not checked here"


def pick(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = (y == 1) | (y == 7)
    return X[keep], (y[keep] == 7).astype(np.int64)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    backend = setup(args)
    (X, y, X_test, y_test), dataset = load_digits(args)
    X, y = pick(X, y)
    X_test, y_test = pick(X_test, y_test)
    model = nnback.Sequential(
        [
            nnback.Dense(784, 10, weight_initializer="xavier"),
            nnback.Sigmoid(),
            nnback.Dense(10, 2, weight_initializer="xavier"),
            nnback.Sigmoid(),
        ],
        loss=nnback.BinaryCrossentropy(),
        optimizer=nnback.SGD(learning_rate=0.5),
        seed=args.seed,
    )
    epochs = 2 if args.quick else args.epochs
    with Timer() as timer:
        model.fit(X, np.eye(2, dtype=np.float32)[y], epochs=epochs, batch_size=32, verbose=2)
    accuracy = float(np.mean(model.predict_classes(X_test) == y_test))
    print(
        f"{len(X)} training images, {epochs} epochs in {timer.seconds:.1f} s; "
        f"test accuracy {accuracy:.4f} on {len(X_test)} images"
    )
    report(
        [("1 versus 7, 784-10-2 sigmoid", TEXT, f"{100 * accuracy:.2f}% test")], dataset, backend
    )


if __name__ == "__main__":
    main()
