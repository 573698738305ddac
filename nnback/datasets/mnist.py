"""MNIST and Fashion-MNIST: find the IDX files on disk, or download them once.

Search order (the first directory holding all four files wins):

1. ``path``, when given, and nothing else;
2. ``$NNBACK_DATA/<name>``;
3. the cache, ``$XDG_CACHE_HOME/nnback/<name>`` or ``~/.cache/nnback/<name>``;
4. for Fashion-MNIST, ``/usr/share/datasets/fashion-mnist`` (Debian's
   ``dataset-fashion-mnist`` package).

``<name>`` is ``mnist`` or ``fashion-mnist``. When nothing is found and ``download`` is
true, the files are downloaded into ``path`` if given (so the next call with the same
``path`` finds them), else into the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import NNBackError
from .catalog import CLASS_NAMES, DATASETS, FILE_STEMS
from .download import DownloadError, download_files
from .idx import IDXFormatError, read_idx

__all__ = [
    "CLASS_NAMES",
    "DatasetNotFoundError",
    "cache_dir",
    "load_fashion_mnist",
    "load_mnist",
    "search_dirs",
]


class DatasetNotFoundError(NNBackError, FileNotFoundError):
    """A data set is neither on disk nor downloadable; the message says what to do."""


def cache_dir(name: str) -> Path:
    """Return the download cache directory of data set ``name``.

    Parameters
    ----------
    name : str
        ``"mnist"`` or ``"fashion-mnist"``.

    Returns
    -------
    pathlib.Path
        ``$XDG_CACHE_HOME/nnback/<name>``, or ``~/.cache/nnback/<name>`` when the variable
        is unset, empty or relative (the XDG specification says to ignore relative paths).
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "nnback" / name


def search_dirs(name: str, path: str | os.PathLike[str] | None = None) -> list[Path]:
    """Return the directories searched for data set ``name``, in order.

    Parameters
    ----------
    name : str
        ``"mnist"`` or ``"fashion-mnist"``.
    path : str or os.PathLike, optional
        A directory named by the user; when given it is the only one searched.

    Returns
    -------
    list of pathlib.Path
        See the module docstring for the order.
    """
    if path is not None:
        return [Path(path).expanduser()]
    dirs = []
    data_root = os.environ.get("NNBACK_DATA", "")
    if data_root:
        dirs.append(Path(data_root).expanduser() / name)
    dirs.append(cache_dir(name))
    dirs.extend(DATASETS[name].system_dirs)
    return dirs


def _find_files(directory: Path) -> tuple[list[Path], str]:
    """Return the four files in ``directory`` (or ``[]``) and a note on what is missing."""
    if not directory.is_dir():
        return [], "does not exist"
    found, missing = [], []
    for stem in FILE_STEMS:
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            missing.append(f"{stem}[.gz]")
    if not missing:
        return found, "complete"
    if not found:
        return [], "none of the four files"
    return [], "missing " + ", ".join(missing)


def _not_found_message(
    name: str, searched: list[tuple[Path, str]], path_given: bool, download_note: str
) -> str:
    dataset = DATASETS[name]
    lines = [f"{dataset.title} not found. Searched, in order:"]
    lines.extend(f"  {directory}  ({status})" for directory, status in searched)
    if not path_given and not os.environ.get("NNBACK_DATA"):
        lines.append("  ($NNBACK_DATA is not set, so no directory under it was searched)")
    lines.append("Expected these four files together in one directory, raw or gzipped (.gz):")
    lines.extend(f"  {stem}[.gz]" for stem in FILE_STEMS)
    lines.append(download_note)
    lines.append("To fix it, do one of:")
    lines.append(f'  - pass path="/dir/with/the/files" to {dataset.loader}()')
    lines.append(f"  - set NNBACK_DATA=/some/dir and put the files in /some/dir/{name}/")
    lines.append(f"  - put the files in the cache directory {cache_dir(name)}/")
    if dataset.apt_package:
        lines.append(f"  - on Debian or Ubuntu: apt-get install {dataset.apt_package}")
    lines.append("  - connect to the network and call again with download=True")
    return "\n".join(lines)


def _locate(name: str, path: str | os.PathLike[str] | None, download: bool) -> list[Path]:
    dirs = search_dirs(name, path)
    # What each directory held is recorded now, before a failed download may create one.
    searched = []
    for directory in dirs:
        found, status = _find_files(directory)
        if found:
            return found
        searched.append((directory, status))
    if not download:
        note = "No download was tried (download=False)."
        raise DatasetNotFoundError(_not_found_message(name, searched, path is not None, note))
    target = dirs[0] if path is not None else cache_dir(name)
    dataset = DATASETS[name]
    try:
        return download_files(dataset.specs, dataset.mirrors, target)
    except DownloadError as exc:
        note = f"Downloading into {target} failed (offline?): {exc}"
        message = _not_found_message(name, searched, path is not None, note)
        raise DatasetNotFoundError(message) from exc


def _images(array: np.ndarray, file: Path, normalize: bool, flatten: bool) -> np.ndarray:
    if array.ndim != 3 or array.dtype != np.uint8:
        raise IDXFormatError(
            f"{file}: expected uint8 images of shape (n, rows, cols), "
            f"got {array.dtype} of shape {array.shape}"
        )
    if flatten:
        array = array.reshape(len(array), -1)
    if normalize:
        # One float32 division (not a multiply by 1/255) gives the correctly rounded
        # quotient, so 255 maps to exactly 1.0.
        return np.divide(array, np.float32(255), dtype=np.float32)
    return array


def _labels(array: np.ndarray, file: Path, n_images: int, images_file: Path) -> np.ndarray:
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise IDXFormatError(
            f"{file}: expected a 1-D integer label array, got {array.dtype} of shape {array.shape}"
        )
    if len(array) != n_images:
        raise IDXFormatError(
            f"{file} holds {len(array)} labels but {images_file} holds {n_images} images"
        )
    return array.astype(np.int64)


def _load(
    name: str,
    path: str | os.PathLike[str] | None,
    download: bool,
    normalize: bool,
    flatten: bool,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    files = _locate(name, path, download)
    splits = []
    for images_file, labels_file in (files[0:2], files[2:4]):
        X = _images(read_idx(images_file), images_file, normalize, flatten)
        y = _labels(read_idx(labels_file), labels_file, len(X), images_file)
        splits.append((X, y))
    return splits[0], splits[1]


_LOAD_DOC = """Load {title}: 60,000 training and 10,000 test images of 28 x 28 pixels.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Directory holding the four IDX files (raw or gzipped). When given, it is the only
        place searched, and a download goes there. Otherwise ``$NNBACK_DATA/{name}`` and
        the cache directory are searched{system} (see :func:`search_dirs`).
    download : bool, default True
        Download missing files (verified by checksum) when no directory has all four.
    normalize : bool, default True
        Return float32 pixels scaled to ``[0, 1]``; if False, the raw uint8 values 0..255.
    flatten : bool, default True
        Return images as rows of 784 pixels; if False, as 28 x 28 arrays.

    Returns
    -------
    (X_train, y_train), (X_test, y_test) : tuple of two (ndarray, ndarray) pairs
        ``X`` has shape (n, 784), or (n, 28, 28) with ``flatten=False``; ``y`` has shape
        (n,), int64, with labels 0..9. ``n`` is 60,000 for train and 10,000 for test.

    Raises
    ------
    DatasetNotFoundError
        If the files are nowhere and cannot be downloaded; the message lists the
        directories searched, the file names expected and the ways to fix it.
    IDXFormatError
        If a file found is truncated, corrupted or not the expected kind of IDX file.
    """


def load_mnist(
    path: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    normalize: bool = True,
    flatten: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    return _load("mnist", path, download, normalize, flatten)


def load_fashion_mnist(
    path: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    normalize: bool = True,
    flatten: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    return _load("fashion-mnist", path, download, normalize, flatten)


# One docstring text for both loaders, so they cannot drift apart.
load_mnist.__doc__ = _LOAD_DOC.format(title="MNIST (handwritten digits)", name="mnist", system="")
load_fashion_mnist.__doc__ = _LOAD_DOC.format(
    title="Fashion-MNIST (labels named by :data:`CLASS_NAMES`)",
    name="fashion-mnist",
    system=", then /usr/share/datasets/fashion-mnist",
)
