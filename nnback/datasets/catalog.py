"""What MNIST and Fashion-MNIST are: file names, shapes, checksums, mirrors, class names.

Kept as data, apart from the loading code in :mod:`nnback.datasets.mnist`, so that tests can
swap an entry of :data:`DATASETS` (mirrors, digests, system directories) with monkeypatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .download import FileSpec

__all__ = ["CLASS_NAMES", "DATASETS", "FILE_STEMS"]

#: Fashion-MNIST class names, indexed by label.
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: The four standard file names, without the optional ``.gz``, in return order.
FILE_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_SHAPES = ((60000, 28, 28), (60000,), (10000, 28, 28), (10000,))


@dataclass(frozen=True)
class DatasetInfo:
    """Where a data set comes from and how its files are checked.

    Attributes
    ----------
    title : str
        Name shown in messages.
    loader : str
        Name of the public function that loads it, quoted in messages.
    mirrors : tuple of str
        Base URLs tried in order, each ending with ``/``.
    specs : tuple of FileSpec, length 4
        The files, in :data:`FILE_STEMS` order.
    system_dirs : tuple of pathlib.Path
        Directories where an operating-system package installs the files.
    apt_package : str or None
        The Debian package that installs them, if any.
    """

    title: str
    loader: str
    mirrors: tuple[str, ...]
    specs: tuple[FileSpec, ...]
    system_dirs: tuple[Path, ...] = ()
    apt_package: str | None = None


def _specs(digests: dict[str, str], key: str) -> tuple[FileSpec, ...]:
    return tuple(
        FileSpec(name=f"{stem}.gz", shape=shape, **{key: digests[stem]})
        for stem, shape in zip(FILE_STEMS, _SHAPES, strict=True)
    )


# MNIST: the MD5s of the published .gz files (as listed by torchvision, and by many other
# projects, identically). No SHA-256 is published and none is invented here; verify_file
# also checks each file's IDX header and element count against the expected shape.
_MNIST_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}

# Fashion-MNIST: SHA-256 of the decompressed IDX files, computed from Debian's
# dataset-fashion-mnist package. Hashing the payload rather than the .gz makes the same
# digests valid for every mirror, however it compressed the files.
_FASHION_SHA256 = dict(
    zip(
        FILE_STEMS,
        (
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
        strict=True,
    )
)

#: The data sets :mod:`nnback.datasets.mnist` can load, by directory name.
DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        title="MNIST",
        loader="load_mnist",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        specs=_specs(_MNIST_MD5, "archive_md5"),
    ),
    "fashion-mnist": DatasetInfo(
        title="Fashion-MNIST",
        loader="load_fashion_mnist",
        mirrors=(
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            # Plain http only; the checksum, not the transport, vouches for the content.
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
        specs=_specs(_FASHION_SHA256, "payload_sha256"),
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        apt_package="dataset-fashion-mnist",
    ),
}
