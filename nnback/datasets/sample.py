"""A small real data set shipped inside the package: 6,000 Fashion-MNIST images.

It lets the examples and the command line train on real data on a fresh machine with no
network and no downloads. The images are a stratified draw from the official Fashion-MNIST
files (500 per class from the training set, 100 per class from the test set), made by
:mod:`nnback.datasets.make_sample`. Fashion-MNIST is by Zalando Research, MIT License; see
``data/FASHION_MNIST_LICENSE.txt`` beside this module.
"""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import numpy as np

from .idx import IDXFormatError
from .mnist import _images, _labels

__all__ = ["SAMPLE_FILE", "load_sample"]

#: Name of the sample inside the package's ``data`` folder.
SAMPLE_FILE = "fashion_mnist_sample.npz"

_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_sample(
    *, normalize: bool = True, flatten: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load the Fashion-MNIST sample shipped with nnback (no files or network needed).

    Parameters
    ----------
    normalize : bool, default True
        Return float32 pixels scaled to ``[0, 1]``; if False, the raw uint8 values 0..255.
    flatten : bool, default True
        Return images as rows of 784 pixels; if False, as 28 x 28 arrays.

    Returns
    -------
    (X_train, y_train), (X_test, y_test) : tuple of two (ndarray, ndarray) pairs
        ``X_train`` has shape (5000, 784) (or (5000, 28, 28)), ``X_test`` (1000, 784) (or
        (1000, 28, 28)); ``y`` has shape (n,), int64, labels 0..9 named by
        :data:`~nnback.datasets.CLASS_NAMES`, each class equally represented (500 per
        class in train, 100 in test).

    Raises
    ------
    IDXFormatError
        If the packaged file is damaged (a broken installation).
    """
    # importlib.resources, not a path beside __file__, so loading also works when nnback
    # is installed as a zip or wheel; the bytes are read whole since a zip member stream
    # may not support the seeking numpy.load needs.
    resource = resources.files(__package__) / "data" / SAMPLE_FILE
    name = f"{__package__}/data/{SAMPLE_FILE}"
    with resource.open("rb") as stream:
        blob = stream.read()
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        missing = [key for key in _KEYS if key not in archive.files]
        if missing:
            raise IDXFormatError(f"{name}: damaged sample file, missing arrays {missing}")
        arrays = {key: archive[key] for key in _KEYS}
    splits = []
    for split in ("train", "test"):
        X = _images(arrays[f"x_{split}"], Path(name), normalize, flatten)
        y = _labels(arrays[f"y_{split}"], Path(name), len(X), Path(name))
        splits.append((X, y))
    return splits[0], splits[1]
