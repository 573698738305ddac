"""Fixtures for the dataset tests: an isolated environment and small synthetic IDX files.

Every test runs with HOME in a temporary directory and NNBACK_DATA / XDG_CACHE_HOME unset,
so nothing reads or writes the real cache, and with the network blocked: a test that
reached for it would fail loudly instead of quietly downloading.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nnback.datasets import download, read_idx, write_idx
from nnback.datasets.catalog import FILE_STEMS

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_SKIP = "Fashion-MNIST not installed: apt-get install dataset-fashion-mnist"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point HOME at an empty directory, clear the data variables, block the network."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NNBACK_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_network(url: str) -> None:
        pytest.fail(f"a test tried to open {url}; tests must use a fake fetch")

    monkeypatch.setattr(download, "urlopen", no_network)
    return home


def make_split(n: int, marker: int | None, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Random uint8 images, shape (n, 28, 28), and labels, shape (n,), 0..9 or all ``marker``."""
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    if marker is None:
        labels = (np.arange(n) % 10).astype(np.uint8)
    else:
        labels = np.full(n, marker, dtype=np.uint8)
    return images, labels


FakeDataset = Callable[..., dict[str, np.ndarray]]


@pytest.fixture
def fake_dataset() -> FakeDataset:
    """Return a function writing a small MNIST-format data set into a directory.

    ``make(directory, n_train=20, n_test=10, marker=None, compress=True, files=FILE_STEMS)``
    writes the requested files and returns the arrays by file stem. A ``marker`` fills the
    labels with one value, so a test can tell which directory a loader read.
    """

    def make(
        directory: Path,
        n_train: int = 20,
        n_test: int = 10,
        marker: int | None = None,
        compress: bool = True,
        files: tuple[str, ...] = FILE_STEMS,
        seed: int = 0,
    ) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        directory.mkdir(parents=True, exist_ok=True)
        train = make_split(n_train, marker, rng)
        test = make_split(n_test, marker, rng)
        arrays = dict(zip(FILE_STEMS, (*train, *test), strict=True))
        for stem in files:
            name = f"{stem}.gz" if compress else stem
            write_idx(directory / name, arrays[stem], compress=compress)
        return arrays

    return make


@pytest.fixture(scope="session")
def debian_fashion() -> dict[str, np.ndarray]:
    """The real Fashion-MNIST arrays by file stem (read once), or skip when not installed."""
    if not all((DEBIAN_DIR / f"{stem}.gz").is_file() for stem in FILE_STEMS):
        pytest.skip(DEBIAN_SKIP)
    return {stem: read_idx(DEBIAN_DIR / f"{stem}.gz") for stem in FILE_STEMS}
