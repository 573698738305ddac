"""Data for nnback: toy sets, MNIST-format IDX files and a bundled Fashion-MNIST sample.

Everything returns host NumPy arrays; a backend moves them to its device when training.

- :mod:`~nnback.datasets.toy`: :func:`spiral_data`, :func:`vertical_data`, :func:`sine_data`
  and :func:`xor`, generated in code from a seed.
- :mod:`~nnback.datasets.idx`: :func:`read_idx` and :func:`write_idx` for the IDX format.
- :mod:`~nnback.datasets.mnist`: :func:`load_mnist` and :func:`load_fashion_mnist`, found on
  disk (a directory you name, ``$NNBACK_DATA``, the cache, Debian's package) or downloaded
  once with checksums.
- :mod:`~nnback.datasets.sample`: :func:`load_sample`, 6,000 Fashion-MNIST images shipped
  inside the package, for use with no network.
- :mod:`~nnback.datasets.utils`: :func:`one_hot`, :func:`stratified_split`,
  :func:`train_test_split` and :func:`iterate_minibatches`.
"""

from __future__ import annotations

from .catalog import CLASS_NAMES
from .download import DownloadError, download_files
from .idx import IDXFormatError, read_idx, write_idx
from .mnist import DatasetNotFoundError, cache_dir, load_fashion_mnist, load_mnist, search_dirs
from .sample import load_sample
from .toy import sine_data, spiral_data, vertical_data, xor
from .utils import iterate_minibatches, one_hot, stratified_split, train_test_split

__all__ = [
    "CLASS_NAMES",
    "DatasetNotFoundError",
    "DownloadError",
    "IDXFormatError",
    "cache_dir",
    "download_files",
    "iterate_minibatches",
    "load_fashion_mnist",
    "load_mnist",
    "load_sample",
    "one_hot",
    "read_idx",
    "search_dirs",
    "sine_data",
    "spiral_data",
    "stratified_split",
    "train_test_split",
    "vertical_data",
    "write_idx",
    "xor",
]
