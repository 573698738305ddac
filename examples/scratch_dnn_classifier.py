"""The "scratch deep neural network classifier" exercise on MNIST-format data.

Trains ``ScratchDeepNeuralNetworkClassifier`` in several depths, activations,
initializers and optimizers, records training and validation loss per epoch, and prints
the test accuracy of each. ``--plot DIR`` writes each configuration's loss curves.

    NNBACK_BACKEND=numba python examples/scratch_dnn_classifier.py
"""

from __future__ import annotations

import os

from _common import Timer, load_digits, parser, plot_dir, report, setup

from nnback.compat.scratch import (
    SGD,
    AdaGrad,
    HeInitializer,
    ReLU,
    ScratchDeepNeuralNetworkClassifier,
    Sigmoid,
    SimpleInitializer,
    Tanh,
    XavierInitializer,
)

# The exercise asks for the comparison itself; it states no accuracy to reach.
TEXT = "no figure stated"

CONFIGURATIONS = [
    (
        "400-200 tanh, Xavier, AdaGrad",
        dict(
            n_nodes=(400, 200),
            activation=Tanh,
            initializer=XavierInitializer,
            optimizer=AdaGrad,
            lr=0.01,
        ),
    ),
    (
        "100 ReLU, He, SGD",
        dict(n_nodes=(100,), activation=ReLU, initializer=HeInitializer, optimizer=SGD, lr=0.1),
    ),
    (
        "400-200-100 ReLU, He, AdaGrad",
        dict(
            n_nodes=(400, 200, 100),
            activation=ReLU,
            initializer=HeInitializer,
            optimizer=AdaGrad,
            lr=0.01,
        ),
    ),
    (
        "200 sigmoid, simple(0.01), SGD",
        dict(
            n_nodes=(200,),
            activation=Sigmoid,
            initializer=SimpleInitializer,
            optimizer=SGD,
            lr=0.5,
            sigma=0.01,
        ),
    ),
]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--plot", default=None, help="directory for the loss curves")
    args = p.parse_args()
    backend = setup(args)
    (X, y, X_test, y_test), dataset = load_digits(args)
    cut = int(len(X) * 0.8)
    X_train, y_train, X_val, y_val = X[:cut], y[:cut], X[cut:], y[cut:]
    epochs = 2 if args.quick else args.epochs
    rows = []
    for name, options in CONFIGURATIONS[: 2 if args.quick else None]:
        clf = ScratchDeepNeuralNetworkClassifier(
            epochs=epochs, batch_size=20, random_state=args.seed, **options
        )
        with Timer() as timer:
            clf.fit(X_train, y_train, X_val, y_val)
        accuracy = clf.score(X_test, y_test)
        print(
            f"{name}: train loss {[round(v, 4) for v in clf.loss]}, "
            f"val loss {[round(v, 4) for v in clf.val_loss]}, test accuracy "
            f"{accuracy:.4f} ({timer.seconds:.1f} s)"
        )
        if plot_dir(args.plot):
            from nnback import plot

            path = os.path.join(args.plot, f"scratch_{len(rows)}.png")
            plot.plot_history(clf, path, title=name)
            print(f"wrote {path}")
        rows.append((name, TEXT, f"test accuracy {accuracy:.4f}"))
    report(rows, f"{dataset}, {epochs} epochs", backend)


if __name__ == "__main__":
    main()
