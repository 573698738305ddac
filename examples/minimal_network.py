"""The minimal Network / FCLayer / ActivationLayer tutorial: XOR, then MNIST 784-100-50-10.

Both programs as the tutorial writes them (import changed), trained sample by sample
(``batch_size=1``, the tutorial's algorithm) on the selected backend. The MNIST part
trains, like the tutorial, on the first 1000 training images for 35 epochs, then also
reports the accuracy on the whole test set, which the tutorial does not.
"""

from __future__ import annotations

import numpy as np
from _common import Timer, load_digits, parser, report, setup

from nnback.compat import minimal
from nnback.compat.minimal import (
    ActivationLayer,
    FCLayer,
    Network,
    mse,
    mse_prime,
    tanh,
    tanh_prime,
)

# From memory of the tutorial (not checked here): XOR outputs close to 0, 1, 1, 0; on
# MNIST it prints three test predictions, all three correct.
TEXT_XOR = "~0, ~1, ~1, ~0 *"
TEXT_MNIST = "3 of 3 shown right *"


def xor() -> tuple[float, np.ndarray]:
    x_train = np.array([[[0, 0]], [[0, 1]], [[1, 0]], [[1, 1]]])
    y_train = np.array([[[0]], [[1]], [[1]], [[0]]])
    net = Network()
    net.add(FCLayer(2, 3))
    net.add(ActivationLayer(tanh, tanh_prime))
    net.add(FCLayer(3, 1))
    net.add(ActivationLayer(tanh, tanh_prime))
    net.use(mse, mse_prime)
    net.fit(x_train, y_train, epochs=1000, learning_rate=0.1, verbose=False)
    return net.errors[-1], np.concatenate(net.predict(x_train)).ravel()


def mnist(args: object, quick: bool) -> tuple[str, float, str]:
    (X, y, X_test, y_test), dataset = load_digits(args)  # type: ignore[arg-type]
    # The quick run keeps the tutorial's 1000 images and cuts the epochs. Fewer images do
    # not show learning: with tanh outputs and squared error on one-hot targets, the first
    # ~1000 steps only pull every output towards 0 (an error of 0.1, all classes alike),
    # and a net stopped there predicts one class for nearly everything (200 images x 5
    # epochs ended at 0.22 accuracy, predicting [4, 4, 4]).
    n_train, epochs = (1000, 5) if quick else (1000, 35)
    if quick:
        print(
            f"quick run: the first {n_train} images for {epochs} of the tutorial's 35 epochs; "
            "the classes separate once the error per sample falls below 0.1 (what all-zero "
            "outputs score); expect a test accuracy near 0.6 on the Fashion-MNIST sample, "
            "below the full run's"
        )
    x_train = X[:n_train].reshape(n_train, 1, 28 * 28)
    y_train = np.eye(10)[y[:n_train]]
    net = Network()
    net.add(FCLayer(28 * 28, 100))
    net.add(ActivationLayer(tanh, tanh_prime))
    net.add(FCLayer(100, 50))
    net.add(ActivationLayer(tanh, tanh_prime))
    net.add(FCLayer(50, 10))
    net.add(ActivationLayer(tanh, tanh_prime))
    net.use(mse, mse_prime)
    with Timer() as timer:
        net.fit(x_train, y_train, epochs=epochs, learning_rate=0.1, verbose=True)
    shown = np.argmax(np.concatenate(net.predict(X_test[:3])), axis=1)
    print(f"predicted values: {shown.tolist()}, true values: {y_test[:3].tolist()}")
    predicted = np.argmax(np.concatenate(net.predict(X_test)), axis=1)
    accuracy = float(np.mean(predicted == y_test))
    print(
        f"{n_train} images x {epochs} epochs in {timer.seconds:.1f} s, test accuracy {accuracy:.4f}"
    )
    return f"{int(np.sum(shown == y_test[:3]))} of 3", accuracy, dataset


def main() -> None:
    args = parser(__doc__).parse_args()
    backend = setup(args)
    # A 2-3-1 tanh network from a uniform draw sometimes stalls on XOR (error ~0.28), so
    # five draws are reported rather than one chosen seed.
    converged = []
    for seed in range(args.seed, args.seed + 5):
        minimal.set_seed(seed)
        error, outputs = xor()
        print(
            f"XOR, weights drawn with seed {seed}: error after 1000 epochs {error:.6f}, "
            f"outputs {np.round(outputs, 3).tolist()}"
        )
        if error < 0.01:
            converged.append(outputs)
    minimal.set_seed(args.seed)
    shown, accuracy, dataset = mnist(args, args.quick)
    first = ", ".join(f"{v:.3f}" for v in converged[0]) if converged else "none"
    report(
        [
            ("XOR outputs", TEXT_XOR, f"{len(converged)} of 5 draws converge; {first}"),
            (
                "784-100-50-10 tanh",
                TEXT_MNIST,
                f"{shown} shown right; test accuracy {accuracy:.4f}",
            ),
        ],
        f"XOR and {dataset}",
        backend,
    )
    print("  * from memory of the tutorial, not checked here")


if __name__ == "__main__":
    main()
