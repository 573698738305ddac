"""Train the textbooks' 784-256-128-10 MNIST network on the full Fashion-MNIST.

ReLU, Adam, 10 epochs, batches of 128; the script reports the test accuracy and the
training speed. scikit-learn's MLPClassifier reaches about 87-88 % on this set. Run on
any backend:

    NNBACK_BACKEND=numba python examples/fashion_mnist_mlp.py
    python examples/fashion_mnist_mlp.py --backend numpy --epochs 10
    python examples/fashion_mnist_mlp.py --quick   # seconds: the sample shipped with nnback

The data come from ``--data-dir``, ``$NNBACK_DATA``, the cache or Debian's
``dataset-fashion-mnist`` package (``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import argparse
import time

import nnback
from nnback.cli import build_classifier
from nnback.datasets import load_fashion_mnist, load_sample


def main() -> None:
    description = " ".join(__doc__.split("\n\n")[0].split())
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of seconds: 2 epochs on the 5,000-image sample shipped with nnback",
    )
    parser.add_argument("--backend", default=None, help="numpy, numba, cupy or auto")
    parser.add_argument("--data-dir", default=None, help="directory with the IDX files")
    parser.add_argument("--epochs", type=int, default=10, help="(default: 10)")
    parser.add_argument("--batch-size", type=int, default=128, help="(default: 128)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 0.001)")
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")
    parser.add_argument("--save", default=None, help="save the trained model here")
    args = parser.parse_args()

    backend = nnback.get_backend(args.backend)
    if args.quick:
        (X, y), (X_test, y_test) = load_sample()
        args.epochs = min(args.epochs, 2)
        print("quick run: 2 epochs on the Fashion-MNIST sample shipped with nnback; expect a")
        print("test accuracy near 0.8, below the full set's figure")
    else:
        (X, y), (X_test, y_test) = load_fashion_mnist(args.data_dir)
    model = build_classifier(
        784, 10, [256, 128], "relu", "adam", args.lr, args.seed, "float32", backend
    )
    print(
        f"Fashion-MNIST {X.shape[0]} training / {X_test.shape[0]} test images, "
        f"backend {backend.name}"
    )
    started = time.perf_counter()
    history = model.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, verbose=2)
    seconds = time.perf_counter() - started
    scores = model.evaluate(X_test, y_test)
    reference = "quick run" if args.quick else "scikit-learn MLPClassifier: about 0.87-0.88"
    print(f"test accuracy {scores['accuracy']:.4f} ({reference})")
    rate = sorted(history["samples_per_second"])[len(history) // 2]
    print(f"training: {seconds:.1f} s, median {rate:,.0f} samples/s")
    if args.save:
        model.save(args.save)


if __name__ == "__main__":
    main()
