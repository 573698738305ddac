"""Regenerate the Fashion-MNIST sample shipped in ``nnback/datasets/data/``.

Run as ``python -m nnback.datasets.make_sample`` on a machine with Debian's
``dataset-fashion-mnist`` package (or pass ``--source DIR`` holding the four IDX files).
The result is byte-for-byte reproducible: the same source files, seed and counts always
give the same ``.npz``, so regenerating it leaves version control with nothing to commit.
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .mnist import load_fashion_mnist

DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "data" / "fashion_mnist_sample.npz"
DEFAULT_SEED = 20170825  # the day Fashion-MNIST was published; any fixed value would do
N_CLASSES = 10


def stratified_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Pick ``per_class`` indices of each class without replacement.

    Parameters
    ----------
    labels : numpy.ndarray, shape (n,)
        Class labels in ``0 .. 9``.
    per_class : int
        Indices to draw from each class.
    rng : numpy.random.Generator
        Source of the draw.

    Returns
    -------
    numpy.ndarray, shape (10 * per_class,), uint16
        Sorted indices into ``labels``. Sorting keeps the source order, which Zalando
        already shuffled, so classes come interleaved rather than in blocks.
    """
    chosen = [
        rng.choice(np.flatnonzero(labels == cls), size=per_class, replace=False)
        for cls in range(N_CLASSES)
    ]
    # uint16 holds every index of the 60,000-image set and halves the stored size.
    return np.sort(np.concatenate(chosen)).astype(np.uint16)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as a compressed ``.npz`` that ``numpy.load`` reads.

    Unlike ``numpy.savez_compressed`` it fixes each member's timestamp (so the bytes are
    reproducible) and uses the strongest deflate level (so the file is smaller).

    Parameters
    ----------
    path : pathlib.Path
        Destination, replaced if present.
    arrays : dict of str to numpy.ndarray
        Member name (without ``.npy``) to array.
    """
    with zipfile.ZipFile(path, "w") as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(
                info, buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Build the sample; see ``--help``.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status, 0 on success.
    """
    parser = argparse.ArgumentParser(
        prog="python -m nnback.datasets.make_sample", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="IDX directory")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the .npz")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    args = parser.parse_args(argv)

    (X_train, y_train), (X_test, y_test) = load_fashion_mnist(
        args.source, download=False, normalize=False, flatten=False
    )
    rng = np.random.default_rng(args.seed)
    train_index = stratified_indices(y_train, args.train_per_class, rng)
    test_index = stratified_indices(y_test, args.test_per_class, rng)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_npz(
        args.output,
        {
            "x_train": X_train[train_index],
            "y_train": y_train[train_index].astype(np.uint8),
            "x_test": X_test[test_index],
            "y_test": y_test[test_index].astype(np.uint8),
            # Kept so anyone can check the sample against the full data set.
            "train_index": train_index,
            "test_index": test_index,
        },
    )
    size = args.output.stat().st_size
    print(
        f"wrote {args.output} ({size / 1e6:.2f} MB): {len(train_index)} train and "
        f"{len(test_index)} test images from {args.source}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
